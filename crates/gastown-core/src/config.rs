//! Town configuration (DOMAIN S2): stored in state so replay is exact, set by `town_configured`
//! and `rig_configured`, and resolved rig override → town → default.
//!
//! Every field is optional; `None` means "the default of §K". Setting a key to JSON `null`
//! restores the default. The same key parser serves `apply` (lenient: a bad value is ignored) and
//! command validation (strict: a bad value is a 400 naming the key).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::{Millis, SECOND, hours, mins, secs};

/// How merges reach the default branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// The refinery merges directly.
    #[default]
    Direct,
    /// The refinery opens a pull request that is polled and merged.
    Pr,
}

impl MergeStrategy {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Pr => "pr",
        }
    }
}

/// The `refinery` block of the town config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefineryConfig {
    /// Whether MRs are reviewed by the refinery before merge (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_review: Option<bool>,
    /// Whether green PRs may be merged automatically (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge: Option<bool>,
    /// Minutes a PR must stay green before the executor reports `pr.auto_merge` (default null: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge_delay_minutes: Option<i64>,
    /// Whether PR feedback creates follow-up beads (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resolve_pr_feedback: Option<bool>,
    /// Whether merge conflicts create follow-up beads instead of escalations (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resolve_merge_conflicts: Option<bool>,
    /// Gate names passed to the refinery (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<String>>,
}

/// Town-level parameters (S2). `None` = default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TownConfig {
    /// `direct` or `pr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_strategy: Option<MergeStrategy>,
    /// Whether new convoys are staged unless the command says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_convoys_default: Option<bool>,
    /// Dispatch cap per bead (1..100, default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dispatch_attempts: Option<u32>,
    /// Concurrency cap of working polecats per rig (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_polecats_per_rig: Option<u32>,
    /// Breaker threshold (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_threshold: Option<u32>,
    /// Breaker window in seconds (default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_window_s: Option<i64>,
    /// `not_found` cold-start grace in seconds (default 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found_grace_s: Option<i64>,
    /// GUPP warn tier in seconds (default 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gupp_warn_s: Option<i64>,
    /// GUPP escalate tier in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gupp_escalate_s: Option<i64>,
    /// GUPP force-stop tier in seconds (default 7200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gupp_force_stop_s: Option<i64>,
    /// Idle agents are collected after this many seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_retention_s: Option<i64>,
    /// Refinery settings.
    #[serde(default)]
    pub refinery: RefineryConfig,
}

/// Per-rig overrides (S3): a subset of the town keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigOverrides {
    /// Overrides the town's `merge_strategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_strategy: Option<MergeStrategy>,
    /// Overrides `refinery.code_review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_review: Option<bool>,
    /// Overrides `max_dispatch_attempts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dispatch_attempts: Option<u32>,
    /// Overrides `refinery.auto_resolve_pr_feedback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resolve_pr_feedback: Option<bool>,
    /// Overrides `refinery.auto_resolve_merge_conflicts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resolve_merge_conflicts: Option<bool>,
}

/// Why a config key or value was refused; the command layer words it (E4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a key of S2 (or not an override key).
    Unknown,
    /// The value has the wrong JSON type; the payload is the expected type's name.
    Type(&'static str),
    /// A number outside its range.
    Range,
    /// Not one of the enumerated values; the payload lists them.
    Enum(&'static str),
}

/// A refused key: its path (`refinery.gates`) and the reason.
pub type KeyRefusal = (String, KeyError);

/// The values of `merge_strategy`, as messages list them.
pub const MERGE_STRATEGY_VALUES: &str = "direct, pr";

fn parse_bool(v: &Value) -> Result<bool, KeyError> {
    v.as_bool().ok_or(KeyError::Type("boolean"))
}

fn parse_int(v: &Value, min: i64, max: i64) -> Result<i64, KeyError> {
    let n = v.as_i64().ok_or(KeyError::Type("integer"))?;
    if (min..=max).contains(&n) { Ok(n) } else { Err(KeyError::Range) }
}

fn parse_u32(v: &Value, min: i64, max: i64) -> Result<u32, KeyError> {
    let n = parse_int(v, min, max)?;
    u32::try_from(n).map_err(|_| KeyError::Range)
}

fn parse_strategy(v: &Value) -> Result<MergeStrategy, KeyError> {
    match v.as_str().ok_or(KeyError::Type("string"))? {
        "direct" => Ok(MergeStrategy::Direct),
        "pr" => Ok(MergeStrategy::Pr),
        _ => Err(KeyError::Enum(MERGE_STRATEGY_VALUES)),
    }
}

fn parse_gates(v: &Value) -> Result<Vec<String>, KeyError> {
    let list = v.as_array().ok_or(KeyError::Type("list of strings"))?;
    list.iter().map(|g| g.as_str().map(str::to_owned).ok_or(KeyError::Type("list of strings"))).collect()
}

/// Upper bound of durations in seconds (ten years): keeps arithmetic far from overflow.
const MAX_SECONDS: i64 = 10 * 365 * 86_400;

/// `Option<T>` from a JSON value where `null` means "restore the default".
fn opt<T>(v: &Value, f: impl FnOnce(&Value) -> Result<T, KeyError>) -> Result<Option<T>, KeyError> {
    if v.is_null() { Ok(None) } else { f(v).map(Some) }
}

impl RefineryConfig {
    /// Sets one key of the refinery block; `null` restores its default.
    ///
    /// # Errors
    /// The key is unknown or the value is invalid; nothing is changed then.
    pub fn set_key(&mut self, key: &str, v: &Value) -> Result<(), KeyError> {
        match key {
            "code_review" => self.code_review = opt(v, parse_bool)?,
            "auto_merge" => self.auto_merge = opt(v, parse_bool)?,
            "auto_merge_delay_minutes" => self.auto_merge_delay_minutes = opt(v, |v| parse_int(v, 0, MAX_SECONDS / 60))?,
            "auto_resolve_pr_feedback" => self.auto_resolve_pr_feedback = opt(v, parse_bool)?,
            "auto_resolve_merge_conflicts" => self.auto_resolve_merge_conflicts = opt(v, parse_bool)?,
            "gates" => self.gates = opt(v, parse_gates)?,
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }
}

impl TownConfig {
    /// Sets one S2 key; `null` restores its default; `refinery` takes an object whose keys are set
    /// one by one.
    ///
    /// # Errors
    /// The first refused key (with its path) — earlier keys of a `refinery` object stay set, so
    /// callers that must not change anything on error work on a copy.
    pub fn set_key(&mut self, key: &str, v: &Value) -> Result<(), KeyRefusal> {
        let r = |e| (key.to_owned(), e);
        match key {
            "merge_strategy" => self.merge_strategy = opt(v, parse_strategy).map_err(r)?,
            "staged_convoys_default" => self.staged_convoys_default = opt(v, parse_bool).map_err(r)?,
            "max_dispatch_attempts" => self.max_dispatch_attempts = opt(v, |v| parse_u32(v, 1, 100)).map_err(r)?,
            "max_polecats_per_rig" => self.max_polecats_per_rig = opt(v, |v| parse_u32(v, 1, 1_000_000)).map_err(r)?,
            "circuit_breaker_threshold" => {
                self.circuit_breaker_threshold = opt(v, |v| parse_u32(v, 1, 1_000_000)).map_err(r)?;
            }
            "circuit_breaker_window_s" => self.circuit_breaker_window_s = opt(v, secs_key).map_err(r)?,
            "not_found_grace_s" => self.not_found_grace_s = opt(v, secs_key).map_err(r)?,
            "gupp_warn_s" => self.gupp_warn_s = opt(v, secs_key).map_err(r)?,
            "gupp_escalate_s" => self.gupp_escalate_s = opt(v, secs_key).map_err(r)?,
            "gupp_force_stop_s" => self.gupp_force_stop_s = opt(v, secs_key).map_err(r)?,
            "gc_retention_s" => self.gc_retention_s = opt(v, secs_key).map_err(r)?,
            "refinery" => match v {
                Value::Null => self.refinery = RefineryConfig::default(),
                Value::Object(m) => {
                    for (k, sub) in m {
                        self.refinery.set_key(k, sub).map_err(|e| (format!("refinery.{k}"), e))?;
                    }
                }
                _ => return Err(r(KeyError::Type("object"))),
            },
            _ => return Err(r(KeyError::Unknown)),
        }
        Ok(())
    }

    /// Merges a `town_configured` patch leniently (`apply` is total): a key that does not parse
    /// is skipped.
    pub fn merge_lenient(&mut self, patch: &Map<String, Value>) {
        for (k, v) in patch {
            if k == "refinery"
                && let Value::Object(m) = v
            {
                for (rk, rv) in m {
                    let _ignored = self.refinery.set_key(rk, rv);
                }
                continue;
            }
            let _ignored = self.set_key(k, v);
        }
    }

    /// The town-level dispatch cap (no rig override).
    #[must_use]
    pub fn max_dispatch_attempts(&self) -> u32 {
        self.max_dispatch_attempts.unwrap_or(5)
    }
    /// Breaker threshold.
    #[must_use]
    pub fn circuit_breaker_threshold(&self) -> u32 {
        self.circuit_breaker_threshold.unwrap_or(20)
    }
    /// Breaker window.
    #[must_use]
    pub fn circuit_breaker_window(&self) -> Millis {
        self.circuit_breaker_window_s.map_or(mins(30), |s| s * SECOND)
    }
    /// `not_found` grace.
    #[must_use]
    pub fn not_found_grace(&self) -> Millis {
        self.not_found_grace_s.map_or(secs(180), |s| s * SECOND)
    }
    /// GUPP warn tier.
    #[must_use]
    pub fn gupp_warn(&self) -> Millis {
        self.gupp_warn_s.map_or(mins(15), |s| s * SECOND)
    }
    /// GUPP escalate tier.
    #[must_use]
    pub fn gupp_escalate(&self) -> Millis {
        self.gupp_escalate_s.map_or(hours(1), |s| s * SECOND)
    }
    /// GUPP force-stop tier.
    #[must_use]
    pub fn gupp_force_stop(&self) -> Millis {
        self.gupp_force_stop_s.map_or(hours(2), |s| s * SECOND)
    }
    /// GC retention.
    #[must_use]
    pub fn gc_retention(&self) -> Millis {
        self.gc_retention_s.map_or(hours(24), |s| s * SECOND)
    }
    /// Whether new convoys are staged by default.
    #[must_use]
    pub fn staged_convoys_default(&self) -> bool {
        self.staged_convoys_default.unwrap_or(false)
    }
    /// The resolved refinery flags for a rig (S2: rig override → town → default).
    #[must_use]
    pub fn resolved(&self, rig: Option<&RigOverrides>) -> Resolved {
        let o = rig.cloned().unwrap_or_default();
        Resolved {
            merge_strategy: o.merge_strategy.or(self.merge_strategy).unwrap_or_default(),
            code_review: o.code_review.or(self.refinery.code_review).unwrap_or(true),
            max_dispatch_attempts: o.max_dispatch_attempts.unwrap_or_else(|| self.max_dispatch_attempts()),
            auto_merge: self.refinery.auto_merge.unwrap_or(true),
            auto_merge_delay_minutes: self.refinery.auto_merge_delay_minutes,
            auto_resolve_pr_feedback: o.auto_resolve_pr_feedback.or(self.refinery.auto_resolve_pr_feedback).unwrap_or(false),
            auto_resolve_merge_conflicts: o
                .auto_resolve_merge_conflicts
                .or(self.refinery.auto_resolve_merge_conflicts)
                .unwrap_or(true),
            gates: self.refinery.gates.clone().unwrap_or_default(),
        }
    }
}

fn secs_key(v: &Value) -> Result<i64, KeyError> {
    parse_int(v, 1, MAX_SECONDS)
}

impl RigOverrides {
    /// Sets one override key; `null` removes it.
    ///
    /// # Errors
    /// The key is not an override key, or the value is invalid.
    pub fn set_key(&mut self, key: &str, v: &Value) -> Result<(), KeyError> {
        match key {
            "merge_strategy" => self.merge_strategy = opt(v, parse_strategy)?,
            "code_review" => self.code_review = opt(v, parse_bool)?,
            "max_dispatch_attempts" => self.max_dispatch_attempts = opt(v, |v| parse_u32(v, 1, 100))?,
            "auto_resolve_pr_feedback" => self.auto_resolve_pr_feedback = opt(v, parse_bool)?,
            "auto_resolve_merge_conflicts" => self.auto_resolve_merge_conflicts = opt(v, parse_bool)?,
            _ => return Err(KeyError::Unknown),
        }
        Ok(())
    }

    /// Merges a `rig_configured` patch leniently: a key that does not parse is skipped.
    pub fn merge_lenient(&mut self, patch: &Map<String, Value>) {
        for (k, v) in patch {
            let _ignored = self.set_key(k, v);
        }
    }
}

/// Config values resolved for one rig (or the town when there is no rig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `direct` or `pr`.
    pub merge_strategy: MergeStrategy,
    /// Refinery review on.
    pub code_review: bool,
    /// Dispatch cap.
    pub max_dispatch_attempts: u32,
    /// Auto-merge of green PRs.
    pub auto_merge: bool,
    /// Green time before auto-merge.
    pub auto_merge_delay_minutes: Option<i64>,
    /// Follow-up beads for PR feedback.
    pub auto_resolve_pr_feedback: bool,
    /// Follow-up beads for merge conflicts.
    pub auto_resolve_merge_conflicts: bool,
    /// Gates.
    pub gates: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_restores_the_default_and_rig_overrides_win() {
        let mut c = TownConfig::default();
        c.set_key("max_dispatch_attempts", &json!(7)).unwrap();
        assert_eq!(c.resolved(None).max_dispatch_attempts, 7);
        let rig = RigOverrides { max_dispatch_attempts: Some(9), ..Default::default() };
        assert_eq!(c.resolved(Some(&rig)).max_dispatch_attempts, 9);
        c.set_key("max_dispatch_attempts", &Value::Null).unwrap();
        assert_eq!(c.resolved(None).max_dispatch_attempts, 5);
    }

    #[test]
    fn bad_values_are_refused_with_their_path() {
        let mut c = TownConfig::default();
        assert_eq!(c.set_key("max_dispatch_attempts", &json!(0)), Err(("max_dispatch_attempts".into(), KeyError::Range)));
        assert_eq!(c.set_key("nope", &json!(1)), Err(("nope".into(), KeyError::Unknown)));
        assert_eq!(
            c.set_key("refinery", &json!({"code_review": "yes"})),
            Err(("refinery.code_review".into(), KeyError::Type("boolean")))
        );
        assert_eq!(c.set_key("merge_strategy", &json!("squash")), Err(("merge_strategy".into(), KeyError::Enum("direct, pr"))));
    }

    #[test]
    fn lenient_merge_skips_bad_keys() {
        let mut c = TownConfig::default();
        let patch = json!({"gupp_warn_s": 60, "gc_retention_s": -1, "refinery": {"code_review": false, "gates": 3}});
        c.merge_lenient(patch.as_object().unwrap());
        assert_eq!(c.gupp_warn(), secs(60));
        assert_eq!(c.gc_retention(), hours(24));
        assert!(!c.resolved(None).code_review);
    }
}
