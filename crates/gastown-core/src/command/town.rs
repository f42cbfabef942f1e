//! `town.config`, `rig.add`, `rig.config`.
//!
//! Config values are checked with the same key parser `apply` uses leniently
//! ([`TownConfig::set_key`], [`RigOverrides::set_key`]); a JSON `null` is a value here (it restores
//! the default or removes the override).

use serde_json::{Map, Value};

use super::body::IdKind;
use super::{CommandError, Ctx, Outcome};
use crate::config::{KeyError, RigOverrides, TownConfig};
use crate::event::{RigAdded, RigConfigured, TownConfigured};

/// The keys of S2 that `town.config` takes.
pub(super) const TOWN_KEYS: &[&str] = &[
    "merge_strategy",
    "staged_convoys_default",
    "max_dispatch_attempts",
    "max_polecats_per_rig",
    "circuit_breaker_threshold",
    "circuit_breaker_window_s",
    "not_found_grace_s",
    "gupp_warn_s",
    "gupp_escalate_s",
    "gupp_force_stop_s",
    "gc_retention_s",
    "refinery",
];

/// `rig.add` fields, in the row's order.
pub(super) const RIG_ADD: &[&str] = &["rig_id", "name", "git_url", "default_branch", "overrides"];
/// `rig.config` fields.
pub(super) const RIG_CONFIG: &[&str] = &["rig_id", "overrides"];

fn key_error(path: &str, e: &KeyError, unknown: &str) -> CommandError {
    match e {
        KeyError::Unknown => CommandError::bad_request(format!("{unknown}: {path}")),
        KeyError::Type(t) => CommandError::expected(path, t),
        KeyError::Range => CommandError::invalid(path, "out of range"),
        KeyError::Enum(values) => CommandError::invalid(path, &format!("must be one of {values}")),
    }
}

/// `town.config`: any S2 key; 400 `unknown config key: <k>`; 400 `invalid <k>: out of range`.
pub(super) fn config(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let map = ctx.map();
    ctx.fields().check_unknown(TOWN_KEYS, "unknown config key")?;
    let mut scratch = TownConfig::default();
    for (k, v) in map {
        scratch.set_key(k, v).map_err(|(path, e)| key_error(&path, &e, "unknown config key"))?;
    }
    ctx.append(TownConfigured { keys: map.clone() }, false)
}

/// Checks an `overrides` object: unknown keys first (byte order), then each value.
fn overrides(o: &Map<String, Value>) -> Result<(), CommandError> {
    let mut scratch = RigOverrides::default();
    for k in o.keys() {
        if scratch.set_key(k, &Value::Null) == Err(KeyError::Unknown) {
            return Err(CommandError::bad_request(format!("unknown override key: {k}")));
        }
    }
    for (k, v) in o {
        scratch.set_key(k, v).map_err(|e| key_error(&format!("overrides.{k}"), &e, "unknown override key"))?;
    }
    Ok(())
}

/// `rig.add`: 400 `invalid git_url: must start with https:// or git@`; 409 `rig <id> already
/// exists`; 409 `rig name <name> already used`.
pub(super) fn rig_add(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let rig_id = f.req_id("rig_id", IdKind::Rig)?;
    let name = f.req_str("name")?;
    let git_url = f.req_str("git_url")?;
    if !(git_url.starts_with("https://") || git_url.starts_with("git@")) {
        return Err(CommandError::invalid("git_url", "must start with https:// or git@"));
    }
    let default_branch = f.opt_str("default_branch")?.unwrap_or("main");
    let ov = f.opt_obj("overrides")?;
    if let Some(o) = ov {
        overrides(o)?;
    }
    if ctx.state.rigs.contains_key(rig_id) {
        return Err(CommandError::conflict(format!("rig {rig_id} already exists")));
    }
    if ctx.state.rigs.values().any(|r| r.name == name) {
        return Err(CommandError::conflict(format!("rig name {name} already used")));
    }
    let event = RigAdded {
        rig_id: rig_id.to_owned(),
        name: name.to_owned(),
        git_url: git_url.to_owned(),
        default_branch: default_branch.to_owned(),
        overrides: ov.cloned(),
    };
    ctx.append(event, true)
}

/// `rig.config`: 400 `unknown override key: <k>` (a missing rig is not checked).
pub(super) fn rig_config(ctx: &Ctx) -> Result<Outcome, CommandError> {
    let f = ctx.fields();
    let rig_id = f.req_id("rig_id", IdKind::Rig)?;
    let ov = f.req_obj("overrides")?;
    overrides(ov)?;
    ctx.append(RigConfigured { rig_id: rig_id.to_owned(), overrides: ov.clone() }, false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{ErrorCode, Outcome};
    use super::*;
    use crate::event::Event;
    use crate::state::TownState;
    use crate::testing::*;

    fn empty() -> TownState {
        TownState::new(TOWN)
    }

    #[test]
    fn town_config_appends_the_keys_as_given() {
        let body = json!({"max_dispatch_attempts": 3, "refinery": {"code_review": false}, "gupp_warn_s": null});
        let (env, fenced) = appended_fenced(run(&empty(), "town.config", body.clone()));
        let Value::Object(keys) = body else { unreachable!() };
        assert_eq!(env.event, Event::TownConfigured(TownConfigured { keys }));
        assert!(!fenced);
        let env = appended(run(&empty(), "town.config", json!({})));
        assert_eq!(env.event, Event::TownConfigured(TownConfigured::default()));
    }

    #[test]
    fn town_config_rejects_unknown_keys_before_bad_values() {
        assert_eq!(msg(&empty(), "town.config", json!({"max_dispatch_attempts": 0, "zzz": 1})), "unknown config key: zzz");
        assert_eq!(msg(&empty(), "town.config", json!({"refinery": {"colour": 1}})), "unknown config key: refinery.colour");
    }

    #[test]
    fn town_config_rejects_values_outside_s2() {
        let e = run_err(&empty(), "town.config", json!({"max_dispatch_attempts": 101}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, "invalid max_dispatch_attempts: out of range"));
        assert_eq!(msg(&empty(), "town.config", json!({"gupp_warn_s": 0})), "invalid gupp_warn_s: out of range");
        assert_eq!(
            msg(&empty(), "town.config", json!({"refinery": {"auto_merge_delay_minutes": -1}})),
            "invalid refinery.auto_merge_delay_minutes: out of range"
        );
        assert_eq!(
            msg(&empty(), "town.config", json!({"staged_convoys_default": "yes"})),
            "invalid staged_convoys_default: expected boolean"
        );
        assert_eq!(
            msg(&empty(), "town.config", json!({"merge_strategy": "squash"})),
            "invalid merge_strategy: must be one of direct, pr"
        );
        assert_eq!(msg(&empty(), "town.config", json!({"refinery": 3})), "invalid refinery: expected object");
        assert_eq!(
            msg(&empty(), "town.config", json!({"refinery": {"gates": ["a", 1]}})),
            "invalid refinery.gates: expected list of strings"
        );
    }

    #[test]
    fn rig_add_yields_rig_added_with_main_as_default_branch() {
        let body = json!({"rig_id": "r2", "name": "api", "git_url": "git@github.com:acme/api.git"});
        let (env, fenced) = appended_fenced(run(&given(fixture_f()).state, "rig.add", body));
        let expected = RigAdded {
            rig_id: "r2".into(),
            name: "api".into(),
            git_url: "git@github.com:acme/api.git".into(),
            default_branch: "main".into(),
            overrides: None,
        };
        assert_eq!((env.event, fenced), (Event::RigAdded(expected), true));
    }

    #[test]
    fn rig_add_carries_default_branch_and_overrides() {
        let body = json!({"rig_id": "r2", "name": "api", "git_url": "https://x/y.git", "default_branch": "trunk",
                          "overrides": {"code_review": false}});
        let env = appended(run(&empty(), "rig.add", body));
        let Event::RigAdded(r) = env.event else { panic!("not rig_added") };
        assert_eq!((r.default_branch.as_str(), r.overrides), ("trunk", json!({"code_review": false}).as_object().cloned()));
    }

    #[test]
    fn rig_add_validates_its_fields() {
        let s = empty();
        assert_eq!(msg(&s, "rig.add", json!({"name": "a", "git_url": "https://x"})), "missing required field: rig_id");
        assert_eq!(
            msg(&s, "rig.add", json!({"rig_id": "r".repeat(49), "name": "a", "git_url": "https://x"})),
            "invalid rig_id: must match [A-Za-z0-9_-]{1,48}"
        );
        assert_eq!(msg(&s, "rig.add", json!({"rig_id": "r2", "git_url": "https://x"})), "missing required field: name");
        assert_eq!(
            msg(&s, "rig.add", json!({"rig_id": "r2", "name": "a", "git_url": "http://x"})),
            "invalid git_url: must start with https:// or git@"
        );
        assert_eq!(
            msg(&s, "rig.add", json!({"rig_id": "r2", "name": "a", "git_url": "https://x", "overrides": {"gupp_warn_s": 5}})),
            "unknown override key: gupp_warn_s"
        );
        assert_eq!(
            msg(
                &s,
                "rig.add",
                json!({"rig_id": "r2", "name": "a", "git_url": "https://x", "overrides": {"max_dispatch_attempts": 0}})
            ),
            "invalid overrides.max_dispatch_attempts: out of range"
        );
        assert_eq!(
            msg(&s, "rig.add", json!({"rig_id": "r2", "name": "a", "git_url": "https://x", "default_branch": 1})),
            "invalid default_branch: expected string"
        );
    }

    #[test]
    fn rig_add_conflicts_with_an_existing_rig_or_name() {
        let s = given(fixture_f()).state;
        let e = run_err(&s, "rig.add", json!({"rig_id": "r1", "name": "other", "git_url": "https://x"}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "rig r1 already exists"));
        assert_eq!(
            msg(&s, "rig.add", json!({"rig_id": "r2", "name": "app", "git_url": "https://x"})),
            "rig name app already used"
        );
    }

    #[test]
    fn rig_config_yields_rig_configured() {
        let body = json!({"rig_id": "r1", "overrides": {"merge_strategy": "pr", "code_review": null}});
        let (env, fenced) = appended_fenced(run(&empty(), "rig.config", body));
        let overrides = json!({"merge_strategy": "pr", "code_review": null}).as_object().cloned().unwrap();
        assert_eq!((env.event, fenced), (Event::RigConfigured(RigConfigured { rig_id: "r1".into(), overrides }), false));
    }

    #[test]
    fn rig_config_rejects_unknown_override_keys() {
        let s = empty();
        assert_eq!(msg(&s, "rig.config", json!({"rig_id": "r1", "overrides": {"staged": true}})), "unknown override key: staged");
        assert_eq!(msg(&s, "rig.config", json!({"rig_id": "r1"})), "missing required field: overrides");
        assert_eq!(msg(&s, "rig.config", json!({"rig_id": "r1", "overrides": []})), "invalid overrides: expected object");
        assert_eq!(
            msg(&s, "rig.config", json!({"rig_id": "r1", "overrides": {"merge_strategy": "x"}})),
            "invalid overrides.merge_strategy: must be one of direct, pr"
        );
        assert!(matches!(run(&s, "rig.config", json!({"rig_id": "r1", "overrides": {}})), Ok(Outcome::Append { .. })));
    }
}
