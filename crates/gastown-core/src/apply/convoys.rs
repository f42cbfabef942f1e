//! Apply of the convoy events (E2).

use std::collections::BTreeSet;

use crate::event::{ConvoyCreated, ConvoyStarted};
use crate::labels;
use crate::state::{Bead, BeadType, ConvoyRecord, DepKind, Priority, TownState};
use crate::time::Millis;

/// Who creates convoy beads: the event names no creator; like `bead.create`'s default, the
/// operator who sent `convoy.create`.
const CREATED_BY: &str = "operator";

/// The convoy bead (open, `gt:convoy`, no rig, total = its issues) and each issue, open, with a
/// `tracks` edge to the convoy and its `blocks` edges. No-op if the convoy id or an issue id
/// exists (or repeats), or the `blocks` edges would close a cycle.
pub(super) fn convoy_created(s: &mut TownState, d: &ConvoyCreated, t: Millis) {
    let mut ids = BTreeSet::new();
    ids.insert(d.convoy_id.as_str());
    for b in &d.beads {
        if !ids.insert(b.bead_id.as_str()) {
            return;
        }
    }
    if ids.iter().any(|id| s.beads.contains_key(*id)) {
        return;
    }
    if d.beads.iter().any(|b| !b.depends_on.is_empty()) {
        let mut deps = s.deps.clone();
        for b in &d.beads {
            for dep in &b.depends_on {
                if deps.blocks_path(&b.bead_id, dep) {
                    return;
                }
                deps.insert(&b.bead_id, dep, DepKind::Blocks);
            }
        }
    }
    let mut c = Bead::new(&d.convoy_id, BeadType::Convoy, &d.title, CREATED_BY, t);
    c.labels.push(labels::CONVOY.to_owned());
    c.convoy = Some(ConvoyRecord {
        total_beads: u32::try_from(d.beads.len()).unwrap_or(u32::MAX),
        closed_beads: 0,
        merge_mode: d.merge_mode,
        staged: d.staged,
        feature_branch: d.feature_branch.clone(),
        ..ConvoyRecord::default()
    });
    s.beads.insert(d.convoy_id.clone(), c);
    for spec in &d.beads {
        let mut b = Bead::new(&spec.bead_id, BeadType::Issue, &spec.title, CREATED_BY, t);
        b.body.clone_from(&spec.body);
        b.rig_id = Some(spec.rig_id.clone());
        b.priority = spec.priority.unwrap_or(Priority::Medium);
        for l in spec.labels.iter().flatten() {
            b.add_label(l);
        }
        s.beads.insert(spec.bead_id.clone(), b);
        s.deps.insert(&spec.bead_id, &d.convoy_id, DepKind::Tracks);
        for dep in &spec.depends_on {
            s.deps.insert(&spec.bead_id, dep, DepKind::Blocks);
        }
    }
}

/// `staged = false` on a live convoy.
pub(super) fn convoy_started(s: &mut TownState, d: &ConvoyStarted) {
    if let Some(c) = s.beads.get_mut(&d.convoy_id).filter(|b| b.status.is_live()).and_then(|b| b.convoy.as_mut()) {
        c.staged = false;
    }
}
