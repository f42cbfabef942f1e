//! The `summary` of each entry of the recent-events ring (S1) and the one-line message D1 builds
//! from it. The summary is a few short `(key, value)` pairs taken from the event's data: ids, a
//! status or cause, a shortened title or name, an action count. The message is for people and
//! not part of the contract.

use std::fmt::Write as _;

use crate::event::{AgentActivity, AgentCheckpointed, CompletionStatus, Event, PrAutoMerge, PrFeedbackDetected, PrState};
use crate::state::RecentEvent;

/// Longest title, name or branch kept in a summary, in characters.
const SHORT: usize = 40;
/// Distinct action types a `reconciled` summary names.
const TYPES_SHOWN: usize = 3;

/// Writes a summary into an entry's pair list, reusing the strings already there (the ring
/// recycles its oldest entry), so a steady fold allocates nothing for it.
struct Writer<'a> {
    out: &'a mut Vec<(String, String)>,
    n: usize,
}

impl Writer<'_> {
    /// Sets the next pair to `k` and the value `f` writes into an empty string.
    fn put(&mut self, k: &str, f: impl FnOnce(&mut String)) {
        match self.out.get_mut(self.n) {
            Some((key, value)) => {
                key.clear();
                key.push_str(k);
                value.clear();
                f(value);
            }
            None => {
                let mut value = String::new();
                f(&mut value);
                self.out.push((k.to_owned(), value));
            }
        }
        self.n += 1;
    }

    fn kv(&mut self, k: &str, v: &str) {
        self.put(k, |out| out.push_str(v));
    }

    /// `v` cut to [`SHORT`] characters, with `…` when cut.
    fn short(&mut self, k: &str, v: &str) {
        self.put(k, |out| match v.char_indices().nth(SHORT) {
            None => out.push_str(v),
            Some((i, _)) => {
                out.push_str(v.get(..i).unwrap_or(v));
                out.push('…');
            }
        });
    }

    fn num(&mut self, k: &str, n: usize) {
        self.put(k, |out| {
            let _infallible = write!(out, "{n}");
        });
    }

    fn finish(self) {
        self.out.truncate(self.n);
    }
}

/// The distinct action types of a decision, in order, at most [`TYPES_SHOWN`], then `…`.
fn action_types(actions: &[crate::action::Action], out: &mut String) {
    let mut shown: [&str; TYPES_SHOWN] = [""; TYPES_SHOWN];
    let mut n = 0;
    for a in actions {
        let ty = a.action_type();
        if shown.iter().take(n).any(|s| *s == ty) {
            continue;
        }
        if n == TYPES_SHOWN {
            out.push_str(", …");
            return;
        }
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(ty);
        if let Some(slot) = shown.get_mut(n) {
            *slot = ty;
        }
        n += 1;
    }
}

/// Writes the summary of an event's data into `out`, replacing what it held.
pub(super) fn summarize_into(e: &Event, out: &mut Vec<(String, String)>) {
    let mut w = Writer { out, n: 0 };
    match e {
        Event::TownConfigured(_) | Event::Unknown { .. } => {}
        Event::RigAdded(d) => {
            w.kv("rig", &d.rig_id);
            w.short("name", &d.name);
        }
        Event::RigConfigured(d) => w.kv("rig", &d.rig_id),
        Event::AgentRegistered(d) => {
            w.kv("agent", &d.agent_id);
            w.kv("role", d.role.as_str());
        }
        Event::BeadCreated(d) => {
            w.kv("bead", &d.bead_id);
            if let Some(r) = &d.rig_id {
                w.kv("rig", r);
            }
            w.short("title", &d.title);
        }
        Event::BeadHooked(d) => {
            w.kv("bead", &d.bead_id);
            w.kv("agent", &d.agent_id);
        }
        Event::BeadStatusChanged(d) => {
            w.kv("bead", &d.bead_id);
            w.kv("status", d.status.as_str());
        }
        Event::BeadLabelsChanged(d) => w.kv("bead", &d.bead_id),
        Event::DependencyAdded(d) => {
            w.kv("bead", &d.bead_id);
            w.kv("on", &d.depends_on);
            w.kv("kind", d.kind.as_str());
        }
        Event::ConvoyCreated(d) => {
            w.kv("convoy", &d.convoy_id);
            w.short("title", &d.title);
            w.num("beads", d.beads.len());
        }
        Event::ConvoyStarted(d) => w.kv("convoy", &d.convoy_id),
        Event::AgentDone(d) => {
            w.kv("agent", &d.agent_id);
            w.short("branch", &d.branch);
        }
        Event::AgentCompleted(d) => {
            w.kv("agent", d.agent_id.as_deref().unwrap_or("mayor"));
            w.kv(
                "status",
                match d.status {
                    CompletionStatus::Completed => "completed",
                    CompletionStatus::Failed => "failed",
                },
            );
            if let Some(r) = &d.reason {
                w.short("reason", r);
            }
        }
        Event::AgentCheckpointed(AgentCheckpointed { agent_id, .. }) | Event::AgentActivity(AgentActivity { agent_id, .. }) => {
            w.kv("agent", agent_id);
        }
        Event::ReworkRequested(d) => {
            w.kv("bead", &d.mr_bead_id);
            w.kv("agent", &d.agent_id);
        }
        Event::NudgeQueued(d) => {
            w.kv("nudge", &d.nudge_id);
            w.kv("agent", &d.agent_id);
        }
        Event::MailSent(d) => {
            w.kv("bead", &d.bead_id);
            w.kv("agent", &d.to_agent_id);
            w.short("title", &d.subject);
        }
        Event::EscalationRaised(d) => {
            w.kv("bead", &d.bead_id);
            w.kv("status", d.severity.as_str());
            w.short("title", &d.title);
        }
        Event::EscalationAcknowledged(d) => w.kv("bead", &d.bead_id),
        Event::TriageResolved(d) => {
            w.kv("bead", &d.request_bead_id);
            w.short("status", &d.action);
        }
        Event::AgentHeartbeatResumed(d) => {
            w.kv("agent", &d.agent_id);
            w.kv("status", d.status.as_str());
        }
        Event::AgentHeartbeatLost(d) => {
            w.kv("agent", &d.agent_id);
            w.kv("cause", d.cause.as_str());
        }
        Event::ContainerStatus(d) => {
            w.kv("agent", &d.agent_id);
            w.kv("status", d.status.as_str());
            if let Some(r) = &d.exit_reason {
                w.short("cause", r);
            }
        }
        Event::ActionResult(d) => {
            w.short("action", &d.action_id);
            w.short("type", &d.action_type);
            w.kv("status", if d.ok { "ok" } else { "failed" });
        }
        Event::PrStatusChanged(d) => {
            w.kv("bead", &d.mr_bead_id);
            w.kv(
                "status",
                match d.pr_state {
                    PrState::Merged => "merged",
                    PrState::Closed => "closed",
                },
            );
        }
        Event::PrFeedbackDetected(PrFeedbackDetected { mr_bead_id, .. }) | Event::PrAutoMerge(PrAutoMerge { mr_bead_id, .. }) => {
            w.kv("bead", mr_bead_id);
        }
        Event::PrConflictDetected(d) => {
            w.kv("bead", &d.mr_bead_id);
            w.short("branch", &d.branch);
        }
        Event::ContainerEviction(d) => {
            if let Some(c) = &d.container_instance_id {
                w.short("container", c);
            }
        }
        Event::Reconciled(d) => {
            w.num("actions", d.actions.len());
            w.put("types", |out| action_types(&d.actions, out));
        }
    }
    w.finish();
}

/// The value of `key` in an entry's summary.
fn get<'a>(e: &'a RecentEvent, key: &str) -> Option<&'a str> {
    e.summary.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// D1's one-line message for a recent event, built from its summary, e.g. `pc-1 heartbeat lost
/// (expired)`, `1 action: dispatch_agent`, `b1 created in r1: Fix login`.
#[must_use]
pub fn recent_event_message(e: &RecentEvent) -> String {
    let f = |k: &str| get(e, k).unwrap_or("?");
    let agent = f("agent");
    let bead = f("bead");
    match e.event_type.as_str() {
        "town_configured" => "town configured".to_owned(),
        "rig_added" => format!("{} added: {}", f("rig"), f("name")),
        "rig_configured" => format!("{} configured", f("rig")),
        "agent_registered" => format!("{agent} registered ({})", f("role")),
        "bead_created" => match get(e, "rig") {
            Some(rig) => format!("{bead} created in {rig}: {}", f("title")),
            None => format!("{bead} created: {}", f("title")),
        },
        "bead_hooked" => format!("{bead} hooked to {agent}"),
        "bead_status_changed" => format!("{bead} set to {}", f("status")),
        "bead_labels_changed" => format!("{bead} labels changed"),
        "dependency_added" => format!("{bead} depends on {} ({})", f("on"), f("kind")),
        "convoy_created" => format!("{} created: {} ({} beads)", f("convoy"), f("title"), f("beads")),
        "convoy_started" => format!("{} started", f("convoy")),
        "agent_done" => format!("{agent} done: {}", f("branch")),
        "agent_completed" => match get(e, "reason") {
            Some(r) => format!("{agent} {} ({r})", f("status")),
            None => format!("{agent} {}", f("status")),
        },
        "agent_checkpointed" => format!("{agent} checkpointed"),
        "rework_requested" => format!("rework requested on {bead} by {agent}"),
        "nudge_queued" => format!("nudge {} queued for {agent}", f("nudge")),
        "mail_sent" => format!("mail {bead} to {agent}: {}", f("title")),
        "escalation_raised" => format!("{bead} raised ({}): {}", f("status"), f("title")),
        "escalation_acknowledged" => format!("{bead} acknowledged"),
        "triage_resolved" => format!("{bead} resolved: {}", f("status")),
        "agent_heartbeat_resumed" => format!("{agent} heartbeat resumed ({})", f("status")),
        "agent_heartbeat_lost" => format!("{agent} heartbeat lost ({})", f("cause")),
        "container_status" => match get(e, "cause") {
            Some(c) => format!("{agent} container {} ({c})", f("status")),
            None => format!("{agent} container {}", f("status")),
        },
        "agent_activity" => format!("{agent} activity"),
        "action_result" => format!("{} {} {}", f("type"), f("action"), f("status")),
        "pr_status_changed" => format!("{bead} PR {}", f("status")),
        "pr_feedback_detected" => format!("{bead} PR feedback"),
        "pr_auto_merge" => format!("{bead} PR ready to auto-merge"),
        "pr_conflict_detected" => format!("{bead} PR conflict: {}", f("branch")),
        "container_eviction" => match get(e, "container") {
            Some(c) => format!("container {c} evicted"),
            None => "container evicted".to_owned(),
        },
        "reconciled" => {
            let n = f("actions");
            let noun = if n == "1" { "action" } else { "actions" };
            format!("{n} {noun}: {}", f("types"))
        }
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn messages(events: Vec<Ev>) -> Vec<String> {
        let g = given(events);
        g.state.recent_events.iter().rev().map(recent_event_message).collect()
    }

    #[test]
    fn recent_events_read_as_d1_example() {
        let msgs = messages(
            fixture_f()
                .into_iter()
                .chain([
                    ev(crate::event::BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).at(T0 + secs(10)),
                    reconciled([dispatch_creating("pc-1", "b1", "r1", crate::state::Role::Polecat, Some("Toast"))])
                        .at(T0 + secs(10)),
                    resumed("pc-1").at(T0 + secs(15)),
                    heartbeat_lost("pc-1", crate::event::LostCause::Expired).at(T0 + mins(3)),
                ])
                .collect(),
        );
        assert_eq!(
            msgs,
            [
                "pc-1 heartbeat lost (expired)",
                "pc-1 heartbeat resumed (running)",
                "1 action: dispatch_agent",
                "b1 created in r1: Fix login",
                "mayor heartbeat resumed (running)",
                "mayor registered (mayor)",
                "r1 added: app",
                "town configured",
            ]
        );
    }

    #[test]
    fn long_titles_are_shortened() {
        let long = "x".repeat(100);
        let msgs = messages(vec![ev(crate::event::BeadCreated { title: long, ..bead("b1", None) }).at(T0)]);
        assert_eq!(msgs, [format!("b1 created: {}…", "x".repeat(SHORT))]);
    }
}
