//! Apply of the bead events: creation, status, labels and dependencies (E2).

use super::ops;
use crate::event::{BeadCreated, BeadLabelsChanged, BeadStatusChanged, DependencyAdded};
use crate::state::{AgentStatus, Bead, BeadType, DepKind, Role, TownState};
use crate::time::Millis;

/// Creates an open issue with its `blocks` and `tracks` edges, then hooks `agent_id`. The whole
/// event is a no-op if the id exists, `convoy_id` is not a convoy, a `depends_on` edge would
/// close a `blocks` cycle, or the agent is not an idle, unhooked polecat of the bead's rig.
pub(super) fn bead_created(s: &mut TownState, d: &BeadCreated, t: Millis) {
    if s.beads.contains_key(&d.bead_id) {
        return;
    }
    if let Some(c) = &d.convoy_id
        && s.beads.get(c).is_none_or(|b| b.bead_type != BeadType::Convoy)
    {
        return;
    }
    // Edges may name beads not created yet, so an older edge can already point at this id.
    if d.depends_on.iter().any(|x| s.deps.blocks_path(&d.bead_id, x)) {
        return;
    }
    if let Some(agent) = &d.agent_id {
        let fits = s.agents.get(agent).is_some_and(|a| {
            a.role == Role::Polecat && a.status == AgentStatus::Idle && a.hook.is_none() && a.rig_id == d.rig_id
        });
        if !fits {
            return;
        }
    }
    let mut b = Bead::new(&d.bead_id, BeadType::Issue, &d.title, &d.created_by, t);
    b.body.clone_from(&d.body);
    b.rig_id.clone_from(&d.rig_id);
    b.parent_bead_id.clone_from(&d.parent_bead_id);
    b.priority = d.priority;
    for l in &d.labels {
        b.add_label(l);
    }
    b.metadata.clone_from(&d.metadata);
    s.beads.insert(d.bead_id.clone(), b);
    for dep in &d.depends_on {
        s.deps.insert(&d.bead_id, dep, DepKind::Blocks);
    }
    if let Some(c) = &d.convoy_id {
        s.deps.insert(&d.bead_id, c, DepKind::Tracks);
    }
    if let Some(agent) = &d.agent_id {
        ops::hook(s, agent, &d.bead_id, t);
    }
}

/// No-op on a terminal bead; else `set_status(b, status, reason, manual)`, and a terminal status
/// unhooks every agent hooked to it.
pub(super) fn bead_status_changed(s: &mut TownState, d: &BeadStatusChanged, t: Millis) {
    if s.beads.get(&d.bead_id).is_none_or(Bead::is_terminal) {
        return;
    }
    ops::set_status(s, &d.bead_id, d.status, d.reason.as_deref(), ops::CODE_MANUAL, t);
    if d.status.is_terminal() {
        ops::unhook_all(s, &d.bead_id);
    }
}

/// Removes then adds labels (a label in both lists ends up present); `updated_at = t`.
pub(super) fn bead_labels_changed(s: &mut TownState, d: &BeadLabelsChanged, t: Millis) {
    let Some(b) = s.beads.get_mut(&d.bead_id) else {
        return;
    };
    b.labels.retain(|l| !d.remove.contains(l));
    for l in &d.add {
        b.add_label(l);
    }
    b.updated_at = t;
}

/// Adds the edge; no-op for a self-edge, an existing pair, a `tracks` edge to a non-convoy, or a
/// `blocks` edge that would close a cycle.
pub(super) fn dependency_added(s: &mut TownState, d: &DependencyAdded) {
    if d.bead_id == d.depends_on || s.deps.get(&d.bead_id, &d.depends_on).is_some() {
        return;
    }
    match d.kind {
        DepKind::Tracks if s.beads.get(&d.depends_on).is_none_or(|b| b.bead_type != BeadType::Convoy) => return,
        DepKind::Blocks if s.deps.blocks_path(&d.bead_id, &d.depends_on) => return,
        _ => {}
    }
    s.deps.insert(&d.bead_id, &d.depends_on, d.kind);
}
