//! Names of streams, buckets and services, all derived from the deployment prefix
//! (ARCHITECTURE §3), so several deployments can share one NATS account.

use gastown_core::ids::is_token;

use crate::error::{BusError, ErrorKind};

/// The default prefix.
pub(crate) const DEFAULT_PREFIX: &str = "gastown";

/// Every name of one deployment, derived from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// A NATS token: the first token of every subject and the root of every name.
    prefix: String,
}

impl Names {
    /// Names for `prefix`.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] when the prefix is not a token `[A-Za-z0-9_-]{1,64}`.
    pub fn new(prefix: &str) -> Result<Names, BusError> {
        if is_token(prefix) {
            Ok(Names { prefix: prefix.to_owned() })
        } else {
            Err(BusError::new(ErrorKind::Invalid, format!("invalid prefix {prefix:?}: must match [A-Za-z0-9_-]{{1,64}}")))
        }
    }

    /// The prefix (`gastown` by default).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn stream(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix.to_ascii_uppercase())
    }

    /// The heartbeat stream, `<PREFIX>_HB`.
    #[must_use]
    pub fn hb_stream(&self) -> String {
        self.stream("HB")
    }

    /// The town events stream, `<PREFIX>_EVENTS`.
    #[must_use]
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }

    /// The actions outbox stream, `<PREFIX>_ACTIONS`.
    #[must_use]
    pub fn actions_stream(&self) -> String {
        self.stream("ACTIONS")
    }

    /// A KV bucket or object store name, `<prefix>-<name>` (e.g. `gastown-members`).
    #[must_use]
    pub fn bucket(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The command service name, `<prefix>-ingest`.
    #[must_use]
    pub fn ingest_service(&self) -> String {
        self.bucket("ingest")
    }

    /// The debug service name, `<prefix>-reconciler`.
    #[must_use]
    pub fn reconciler_service(&self) -> String {
        self.bucket("reconciler")
    }
}

impl Default for Names {
    fn default() -> Self {
        Names { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_contract() {
        let n = Names::default();
        assert_eq!(n.prefix(), "gastown");
        assert_eq!(n.hb_stream(), "GASTOWN_HB");
        assert_eq!(n.events_stream(), "GASTOWN_EVENTS");
        assert_eq!(n.actions_stream(), "GASTOWN_ACTIONS");
        assert_eq!(n.bucket("members"), "gastown-members");
        assert_eq!(n.ingest_service(), "gastown-ingest");
        assert_eq!(n.reconciler_service(), "gastown-reconciler");
    }

    #[test]
    fn every_name_derives_from_the_prefix() {
        let n = Names::new("acme-2").unwrap();
        assert_eq!(n.hb_stream(), "ACME-2_HB");
        assert_eq!(n.bucket("ingest"), "acme-2-ingest");
        assert_eq!(n.reconciler_service(), "acme-2-reconciler");
    }

    #[test]
    fn a_prefix_that_is_not_a_token_is_rejected() {
        for bad in ["", "a.b", "a b", "a*", "a>", "ü", &"x".repeat(65)] {
            let err = Names::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
        }
    }
}
