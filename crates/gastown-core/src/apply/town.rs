//! Apply of the town events: `town_configured`, `rig_added`, `rig_configured` (E2).

use crate::config::RigOverrides;
use crate::event::{RigAdded, RigConfigured, TownConfigured};
use crate::state::{Rig, TownState};
use crate::time::Millis;

/// Merges the keys into the config; a null value restores the default, a bad one is skipped.
pub(super) fn town_configured(s: &mut TownState, d: &TownConfigured) {
    s.config.merge_lenient(&d.keys);
}

/// Creates the rig; no-op if the id exists or another rig has the name.
pub(super) fn rig_added(s: &mut TownState, d: &RigAdded, t: Millis) {
    if s.rigs.contains_key(&d.rig_id) || s.rigs.values().any(|r| r.name == d.name) {
        return;
    }
    let mut overrides = RigOverrides::default();
    if let Some(o) = &d.overrides {
        overrides.merge_lenient(o);
    }
    s.rigs.insert(
        d.rig_id.clone(),
        Rig {
            rig_id: d.rig_id.clone(),
            name: d.name.clone(),
            git_url: d.git_url.clone(),
            default_branch: d.default_branch.clone(),
            overrides,
            created_at: t,
        },
    );
}

/// Merges the overrides of an existing rig (a null value removes a key).
pub(super) fn rig_configured(s: &mut TownState, d: &RigConfigured) {
    if let Some(r) = s.rigs.get_mut(&d.rig_id) {
        r.overrides.merge_lenient(&d.overrides);
    }
}
