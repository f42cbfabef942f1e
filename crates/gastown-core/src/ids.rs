//! Identifier grammar (DOMAIN C2) and the validated newtypes that guard subjects.
//!
//! Town and agent ids become NATS subject tokens, so they can only be built through
//! `TryFrom<&str>`, which checks `[A-Za-z0-9_-]{1,64}`.

use std::fmt;

/// Longest town or agent id.
pub const TOKEN_MAX: usize = 64;
/// Longest rig id.
pub const RIG_ID_MAX: usize = 48;
/// Longest bead or nudge id.
pub const BEAD_ID_MAX: usize = 128;

/// The pattern of town and agent ids, as messages print it.
pub const TOKEN_PATTERN: &str = "[A-Za-z0-9_-]{1,64}";
/// The pattern of rig ids, as messages print it.
pub const RIG_PATTERN: &str = "[A-Za-z0-9_-]{1,48}";
/// The pattern of bead and nudge ids, as messages print it.
pub const BEAD_PATTERN: &str = "[A-Za-z0-9_.:-]{1,128}";

/// Prefixes of ids allocated from the town counter (C2); `<prefix>-<digits>` is reserved.
pub const RESERVED_PREFIXES: [&str; 10] = ["pc", "mr", "esc", "tri", "tb", "msg", "ndg", "fb", "cf", "rw"];

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `[A-Za-z0-9_-]{1,64}`: town and agent ids.
#[must_use]
pub fn is_token(s: &str) -> bool {
    (1..=TOKEN_MAX).contains(&s.len()) && s.bytes().all(token_char)
}

/// `[A-Za-z0-9_-]{1,48}`: rig ids.
#[must_use]
pub fn is_rig_id(s: &str) -> bool {
    (1..=RIG_ID_MAX).contains(&s.len()) && s.bytes().all(token_char)
}

/// `[A-Za-z0-9_.:-]{1,128}`: bead and nudge ids.
#[must_use]
pub fn is_bead_id(s: &str) -> bool {
    (1..=BEAD_ID_MAX).contains(&s.len()) && s.bytes().all(|b| token_char(b) || b == b'.' || b == b':')
}

/// Whether `s` has the reserved form `<prefix>-<digits>` (C2).
#[must_use]
pub fn is_reserved(s: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| {
        s.strip_prefix(p)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The number `n` of an id `<prefix>-<n>` with a reserved prefix, if it has that form.
#[must_use]
pub fn reserved_number(s: &str) -> Option<u64> {
    let (p, n) = s.split_once('-')?;
    if !RESERVED_PREFIXES.contains(&p) || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// An id that failed its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: must match {pattern}")]
pub struct IdError {
    /// What was being parsed (`town_id`, `agent_id`).
    pub kind: &'static str,
    /// The pattern it must match.
    pub pattern: &'static str,
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                if is_token(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind, pattern: TOKEN_PATTERN })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                if is_token(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError { kind: $kind, pattern: TOKEN_PATTERN })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

token_id!(
    /// A town id: a NATS-safe token.
    TownId,
    "town_id"
);
token_id!(
    /// An agent id: a NATS-safe token.
    AgentId,
    "agent_id"
);

/// FNV-1a (64-bit) over the UTF-8 bytes of an event id: the fixed hash of `recent_event_ids` (S1).
#[must_use]
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserved_ids_are_prefix_dash_digits() {
        assert!(is_reserved("pc-1"));
        assert!(is_reserved("mr-0042"));
        assert!(!is_reserved("pc-"));
        assert!(!is_reserved("pc-1a"));
        assert!(!is_reserved("p1"));
        assert!(!is_reserved("ref-r1"));
        assert_eq!(reserved_number("tri-52"), Some(52));
        assert_eq!(reserved_number("b-52"), None);
    }

    #[test]
    fn fnv1a_is_the_reference_hash() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    proptest! {
        #[test]
        fn token_ids_accept_exactly_the_grammar(s in "\\PC{0,70}") {
            let expected = !s.is_empty() && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            prop_assert_eq!(TownId::try_from(s.as_str()).is_ok(), expected);
            prop_assert_eq!(AgentId::try_from(s.as_str()).is_ok(), expected);
        }

        #[test]
        fn generated_tokens_are_accepted(s in "[A-Za-z0-9_-]{1,64}") {
            prop_assert!(TownId::try_from(s.as_str()).is_ok());
            prop_assert!(is_rig_id(&s) == (s.len() <= 48));
        }

        #[test]
        fn bead_ids_accept_exactly_the_grammar(s in "[A-Za-z0-9_.:/ -]{0,130}") {
            let expected = !s.is_empty() && s.len() <= 128 && !s.contains('/') && !s.contains(' ');
            prop_assert_eq!(is_bead_id(&s), expected);
        }
    }
}
