//! `apply` (DOMAIN E1–E3, S10, §F): folds one stored event into the town state. Total: an event
//! that no longer fits is a no-op, never a panic or an error.
//!
//! # Layout
//! - this file: the envelope fold of E1 (dedup, effective time, `last_seq`, the two rings) and
//!   the dispatch to the event families;
//! - `ops`: the shared operations of S10 and id allocation (C2), callable by other modules;
//! - `town`, `agents`, `beads`, `convoys`, `review`, `mail`, `results`: the apply column of E2
//!   for each event family, mirroring `crate::event`;
//! - `summary`: the short `summary` of each recent event and D1's one-line message.

mod agents;
mod beads;
mod convoys;
mod mail;
pub(crate) mod ops;
mod results;
mod review;
mod summary;
mod town;

#[cfg(test)]
pub(crate) mod strategies;
#[cfg(test)]
mod tests;

pub(crate) use agents::new_agent;
pub(crate) use mail::create_nudge;
pub use summary::recent_event_message;

use crate::codec::Stored;
use crate::constants::{EVENT_DEDUP_HORIZON, RECENT_EVENTS_KEPT};
use crate::event::{Envelope, Event};
use crate::ids::fnv1a;
use crate::state::{RecentEvent, RecentId, TownState};
use crate::time::{Millis, within};

/// Folds one event stored at `seq` (E1): a duplicate id within EVENT_DEDUP_HORIZON only moves
/// `last_seq`; otherwise the clock, the rings and the type's semantics (E2) apply.
pub fn apply(state: &mut TownState, seq: u64, env: &Envelope) {
    let Some(t) = envelope(state, seq, &env.id, env.at) else {
        return;
    };
    let mut entry = recycled_entry(state, seq, t, env.event_type());
    summary::summarize_into(&env.event, &mut entry.summary);
    state.recent_events.push(entry, RECENT_EVENTS_KEPT);
    event(state, seq, t, &env.event);
}

/// Folds a stored message whatever it decoded to (E1): a malformed envelope runs steps 1–2 with
/// its id and time and changes nothing else; broken bytes only advance `last_seq`.
pub fn apply_stored(state: &mut TownState, seq: u64, stored: &Stored) {
    match stored {
        Stored::Event(env) => apply(state, seq, env),
        Stored::Malformed(raw) => {
            if let Some(t) = envelope(state, seq, &raw.id, raw.at) {
                let mut entry = recycled_entry(state, seq, t, &raw.event_type);
                entry.summary.clear();
                state.recent_events.push(entry, RECENT_EVENTS_KEPT);
            }
        }
        Stored::Broken => state.last_seq = seq,
    }
}

/// The entry for the recent-events ring, reusing the buffers of the oldest one when the ring is
/// full (the summary is left for the caller to overwrite).
fn recycled_entry(state: &mut TownState, seq: u64, t: Millis, event_type: &str) -> RecentEvent {
    match state.recent_events.take_oldest_if_full(RECENT_EVENTS_KEPT) {
        Some(mut e) => {
            e.seq = seq;
            e.t = t;
            e.event_type.clear();
            e.event_type.push_str(event_type);
            e
        }
        None => RecentEvent { seq, t, event_type: event_type.to_owned(), summary: Vec::new() },
    }
}

/// E1 steps 1–2 (the recent-events entry aside): returns the effective time, or `None` for a
/// duplicate, of which only `last_seq` is recorded.
fn envelope(state: &mut TownState, seq: u64, id: &str, at: Millis) -> Option<Millis> {
    let hash = fnv1a(id);
    let t = at.max(state.clock);
    state.last_seq = seq;
    if state.recent_event_ids.get(hash).is_some_and(|e| within(Some(e.t), EVENT_DEDUP_HORIZON, t)) {
        return None;
    }
    state.clock = t;
    state.recent_event_ids.insert(RecentId { hash, seq, t });
    state.recent_event_ids.prune(t, EVENT_DEDUP_HORIZON);
    Some(t)
}

/// E1 step 3: the type's semantics at effective time `t`.
fn event(s: &mut TownState, seq: u64, t: Millis, e: &Event) {
    match e {
        Event::TownConfigured(d) => town::town_configured(s, d),
        Event::RigAdded(d) => town::rig_added(s, d, t),
        Event::RigConfigured(d) => town::rig_configured(s, d),
        Event::AgentRegistered(d) => agents::agent_registered(s, d, t),
        Event::BeadCreated(d) => beads::bead_created(s, d, t),
        Event::BeadHooked(d) => {
            ops::hook(s, &d.agent_id, &d.bead_id, t);
        }
        Event::BeadStatusChanged(d) => beads::bead_status_changed(s, d, t),
        Event::BeadLabelsChanged(d) => beads::bead_labels_changed(s, d, t),
        Event::DependencyAdded(d) => beads::dependency_added(s, d),
        Event::ConvoyCreated(d) => convoys::convoy_created(s, d, t),
        Event::ConvoyStarted(d) => convoys::convoy_started(s, d),
        Event::AgentDone(d) => agents::agent_done(s, d, t),
        Event::AgentCompleted(d) => agents::agent_completed(s, d, t),
        Event::AgentCheckpointed(d) => agents::agent_checkpointed(s, d),
        Event::ReworkRequested(d) => review::rework_requested(s, d, t),
        Event::NudgeQueued(d) => mail::nudge_queued(s, d, t),
        Event::MailSent(d) => mail::mail_sent(s, d, t),
        Event::EscalationRaised(d) => mail::escalation_raised(s, d, t),
        Event::EscalationAcknowledged(d) => mail::escalation_acknowledged(s, d, t),
        Event::TriageResolved(d) => mail::triage_resolved(s, d, t),
        Event::AgentHeartbeatResumed(d) => agents::heartbeat_resumed(s, d, t),
        Event::AgentHeartbeatLost(d) => agents::heartbeat_lost(s, d),
        Event::ContainerStatus(d) => agents::container_status(s, d, t),
        Event::AgentActivity(d) => agents::agent_activity(s, d, t),
        Event::ActionResult(d) => results::action_result(s, d, t),
        Event::PrStatusChanged(d) => review::pr_status_changed(s, d, t),
        Event::PrFeedbackDetected(d) => review::pr_feedback_detected(s, d, t),
        Event::PrAutoMerge(d) => review::pr_auto_merge(s, d, t),
        Event::PrConflictDetected(d) => review::pr_conflict_detected(s, d, t),
        Event::ContainerEviction(d) => agents::container_eviction(s, d, t),
        Event::Reconciled(d) => results::reconciled(s, seq, t, d),
        Event::Unknown { .. } => {}
    }
}
