//! D1 `status`: a summary of one town at `now`, with the owner's last pass figures.

use serde::{Deserialize, Serialize};

use super::counts::OrderedCounts;
use super::rows::{AgentRow, BeadRow, agent_rows, bead_rows};
use super::{RecentEventText, recent_message};
use crate::constants::ORPHANED_HOOK_AGE;
use crate::state::{AgentStatus, BeadStatus, BeadType, Role, TownState};
use crate::time::{Millis, format_iso, older_than};

/// The figures of the owner's last pass (§M1), as it writes them to the metrics KV entry after
/// each pass (§M3) and D1 shows them under `reconciler`. Every field is null before any pass.
/// Serialized with the camelCase names D1 shows, which is also the KV entry's form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PassFigures {
    /// Id of the worker that ran the pass.
    pub owner_worker: Option<String>,
    /// Duration of the pass (fold + reconcile + append + publish + invariant check).
    pub wall_clock_ms: Option<u64>,
    /// Events folded since the previous pass, own decisions excluded.
    pub events_drained: Option<u64>,
    /// Actions decided.
    pub actions_emitted: Option<u64>,
    /// Actions decided by type, in decision order.
    pub actions_by_type: Option<OrderedCounts>,
    /// Actions published.
    pub side_effects_attempted: Option<u64>,
    /// `action_result` events folded by the pass with `ok`.
    pub side_effects_succeeded: Option<u64>,
    /// `action_result` events folded by the pass without `ok`.
    pub side_effects_failed: Option<u64>,
    /// New invariant violation keys.
    pub invariant_violations: Option<u64>,
    /// Events stored beyond the last folded sequence.
    pub pending_event_count: Option<u64>,
}

/// `alarmStatus.alarm`: the next wake-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// `next_wakeup(S, now)` as ISO.
    pub next_fire_at: Option<String>,
    /// `nextFireAt − now`.
    pub interval_ms: Option<i64>,
    /// Always `event-driven`.
    pub interval_label: String,
}

/// Agents by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounts {
    /// Working.
    pub working: u64,
    /// Idle.
    pub idle: u64,
    /// Stalled.
    pub stalled: u64,
    /// Dead.
    pub dead: u64,
    /// All agents.
    pub total: u64,
}

/// Issues, MRs, convoys and escalations by status; open triage requests apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BeadCounts {
    /// Open.
    pub open: u64,
    /// In progress.
    pub in_progress: u64,
    /// In review.
    pub in_review: u64,
    /// Failed.
    pub failed: u64,
    /// Open triage requests (counted nowhere else).
    pub triage_requests: u64,
}

/// What the patrol rules would see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patrol {
    /// Working or stalled non-mayor agents with warn ≤ e < escalate.
    pub gupp_warnings: u64,
    /// Working or stalled non-mayor agents with e ≥ escalate.
    pub gupp_escalations: u64,
    /// Stalled agents.
    pub stalled_agents: u64,
    /// Idle hooked agents inactive for ORPHANED_HOOK_AGE.
    pub orphaned_hooks: u64,
}

/// The breaker as announced, with the count at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakerRow {
    /// `S.breaker.open`.
    pub open: bool,
    /// `breaker_count` at now.
    pub count: u32,
}

/// The `alarmStatus` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStatus {
    /// Next wake-up.
    pub alarm: Alarm,
    /// Agents by status.
    pub agents: AgentCounts,
    /// Beads by status.
    pub beads: BeadCounts,
    /// Patrol counters.
    pub patrol: Patrol,
    /// The owner's last pass.
    pub reconciler: PassFigures,
    /// `S.recent_events`, newest first.
    pub recent_events: Vec<RecentEventText>,
    /// Whether the town drains.
    pub draining: bool,
    /// ISO start of draining.
    pub drain_started_at: Option<String>,
    /// Breaker.
    pub circuit_breaker: CircuitBreakerRow,
}

/// The D1 reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReply {
    /// Town.
    pub town_id: String,
    /// Last folded sequence.
    pub seq: u64,
    /// Summary.
    pub alarm_status: AlarmStatus,
    /// Agent rows.
    pub agent_meta: Vec<AgentRow>,
    /// Bead rows.
    pub bead_summary: Vec<BeadRow>,
}

super::json_reply!(StatusReply, "D1");

/// Builds D1 for `s` at `now` with the owner's last pass figures (all null before any pass).
#[must_use]
pub fn status(s: &TownState, now: Millis, figures: &PassFigures) -> StatusReply {
    let next = crate::next_wakeup(s, now);
    StatusReply {
        town_id: s.town_id.clone(),
        seq: s.last_seq,
        alarm_status: AlarmStatus {
            alarm: Alarm {
                next_fire_at: next.map(format_iso),
                interval_ms: next.map(|t| t - now),
                interval_label: "event-driven".to_owned(),
            },
            agents: agent_counts(s),
            beads: bead_counts(s),
            patrol: patrol(s, now),
            reconciler: figures.clone(),
            recent_events: s.recent_events.iter().rev().map(recent_message).collect(),
            draining: s.draining.is_some(),
            drain_started_at: s.draining.as_ref().map(|d| format_iso(d.since)),
            circuit_breaker: CircuitBreakerRow { open: s.breaker.open, count: s.breaker_count(now) },
        },
        agent_meta: agent_rows(s),
        bead_summary: bead_rows(s),
    }
}

fn agent_counts(s: &TownState) -> AgentCounts {
    let mut c = AgentCounts::default();
    for a in s.agents.values() {
        match a.status {
            AgentStatus::Working => c.working += 1,
            AgentStatus::Idle => c.idle += 1,
            AgentStatus::Stalled => c.stalled += 1,
            AgentStatus::Dead => c.dead += 1,
        }
        c.total += 1;
    }
    c
}

fn bead_counts(s: &TownState) -> BeadCounts {
    let mut c = BeadCounts::default();
    for b in s.beads.values() {
        if b.bead_type == BeadType::Message {
            continue;
        }
        if b.is_triage_request() {
            if b.status == BeadStatus::Open {
                c.triage_requests += 1;
            }
            continue;
        }
        match b.status {
            BeadStatus::Open => c.open += 1,
            BeadStatus::InProgress => c.in_progress += 1,
            BeadStatus::InReview => c.in_review += 1,
            BeadStatus::Failed => c.failed += 1,
            BeadStatus::Closed => {}
        }
    }
    c
}

fn patrol(s: &TownState, now: Millis) -> Patrol {
    let (warn, escalate) = (s.config.gupp_warn(), s.config.gupp_escalate());
    let mut p = Patrol::default();
    for a in s.agents.values() {
        if a.status == AgentStatus::Stalled {
            p.stalled_agents += 1;
        }
        if a.status == AgentStatus::Idle && a.hook.is_some() && older_than(a.last_activity_at, ORPHANED_HOOK_AGE, now) {
            p.orphaned_hooks += 1;
        }
        if a.role == Role::Mayor || !matches!(a.status, AgentStatus::Working | AgentStatus::Stalled) {
            continue;
        }
        let Some(at) = TownState::activity_at(a) else { continue };
        let e = now - at;
        if e >= escalate {
            p.gupp_escalations += 1;
        } else if e >= warn {
            p.gupp_warnings += 1;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug::t39::{squash, t39_live_up_to};
    use crate::testing::*;

    const D1_EXAMPLE: &str = r#"{"townId":"t1","seq":8,
 "alarmStatus":{
  "alarm":{"nextFireAt":"2026-06-01T10:15:15.000Z","intervalMs":735000,"intervalLabel":"event-driven"},
  "agents":{"working":2,"idle":0,"stalled":0,"dead":0,"total":2},
  "beads":{"open":0,"inProgress":1,"inReview":0,"failed":0,"triageRequests":0},
  "patrol":{"guppWarnings":0,"guppEscalations":0,"stalledAgents":0,"orphanedHooks":0},
  "reconciler":{"ownerWorker":"w1","wallClockMs":1,"eventsDrained":1,"actionsEmitted":0,"actionsByType":{},
   "sideEffectsAttempted":0,"sideEffectsSucceeded":0,"sideEffectsFailed":0,"invariantViolations":0,"pendingEventCount":0},
  "recentEvents":[
   {"time":"2026-06-01T10:03:00.000Z","type":"agent_heartbeat_lost","message":"pc-1 heartbeat lost (expired)"},
   {"time":"2026-06-01T10:00:15.000Z","type":"agent_heartbeat_resumed","message":"pc-1 heartbeat resumed (running)"},
   {"time":"2026-06-01T10:00:10.000Z","type":"reconciled","message":"1 action: dispatch_agent"},
   {"time":"2026-06-01T10:00:10.000Z","type":"bead_created","message":"b1 created in r1: Fix login"},
   {"time":"2026-06-01T10:00:00.000Z","type":"agent_heartbeat_resumed","message":"mayor heartbeat resumed (running)"},
   {"time":"2026-06-01T10:00:00.000Z","type":"agent_registered","message":"mayor registered (mayor)"},
   {"time":"2026-06-01T10:00:00.000Z","type":"rig_added","message":"r1 added: app"},
   {"time":"2026-06-01T10:00:00.000Z","type":"town_configured","message":"town configured"}],
  "draining":false,"drainStartedAt":null,"circuitBreaker":{"open":false,"count":0}},
 "agentMeta":[
  {"bead_id":"mayor","role":"mayor","status":"working","current_hook_bead_id":null,"dispatch_attempts":0,"last_activity_at":"2026-06-01T10:00:00.000Z","liveness":"alive"},
  {"bead_id":"pc-1","role":"polecat","status":"working","current_hook_bead_id":"b1","dispatch_attempts":0,"last_activity_at":"2026-06-01T10:00:15.000Z","liveness":"lost"}],
 "beadSummary":[
  {"bead_id":"b1","type":"issue","status":"in_progress","title":"Fix login","assignee_agent_bead_id":"pc-1","updated_at":"2026-06-01T10:00:10.000Z","rig_id":"r1","created_by":"operator","labels":[],"metadata":{}}]}"#;

    /// The owner's figures of D1's example: worker w1's last pass at 10:00:15 folded [7].
    fn w1_figures() -> PassFigures {
        PassFigures {
            owner_worker: Some("w1".into()),
            wall_clock_ms: Some(1),
            events_drained: Some(1),
            actions_emitted: Some(0),
            actions_by_type: Some(OrderedCounts::new()),
            side_effects_attempted: Some(0),
            side_effects_succeeded: Some(0),
            side_effects_failed: Some(0),
            invariant_violations: Some(0),
            pending_event_count: Some(0),
        }
    }

    #[test]
    fn t39_status_at_three_minutes_is_the_d1_example() {
        let s = t39_live_up_to(8);
        let reply = status(&s, T0 + mins(3), &w1_figures());
        assert_eq!(reply.to_json_string(), squash(D1_EXAMPLE));
    }

    #[test]
    fn before_any_pass_every_reconciler_figure_is_null() {
        let s = t39_live_up_to(8);
        let json = status(&s, T0 + mins(3), &PassFigures::default()).to_json_string();
        let expected = r#""reconciler":{"ownerWorker":null,"wallClockMs":null,"eventsDrained":null,"actionsEmitted":null,"actionsByType":null,"sideEffectsAttempted":null,"sideEffectsSucceeded":null,"sideEffectsFailed":null,"invariantViolations":null,"pendingEventCount":null}"#;
        assert!(json.contains(expected), "{json}");
    }

    #[test]
    fn pass_figures_round_trip_through_the_kv_encoding_keeping_type_order() {
        let mut f = w1_figures();
        f.actions_by_type = Some([("unhook_agent", 1), ("transition_bead", 1)].into_iter().collect());
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains(r#""actionsByType":{"unhook_agent":1,"transition_bead":1}"#), "{json}");
        assert_eq!(serde_json::from_str::<PassFigures>(&json).unwrap(), f);
        assert_eq!(serde_json::from_str::<PassFigures>("{}").unwrap(), PassFigures::default());
    }

    #[test]
    fn open_triage_requests_are_counted_apart_from_the_other_beads() {
        // An escalation opens its triage request (S10); neither a message nor a closed bead counts.
        let town = given(fixture_f()).and([
            ev(crate::event::EscalationRaised {
                bead_id: "e1".into(),
                severity: crate::state::Severity::Low,
                category: "general".into(),
                title: "Flaky CI".into(),
                body: None,
                rig_id: None,
                agent_id: None,
                context: serde_json::Map::new(),
            })
            .at(T0),
            bead_created("b2", "r1").at(T0),
            bead_status_changed("b2", crate::state::BeadStatus::Closed).at(T0),
        ]);
        let beads = status(&town.state, T0, &PassFigures::default()).alarm_status.beads;
        assert_eq!(beads, BeadCounts { open: 1, in_progress: 0, in_review: 0, failed: 0, triage_requests: 1 });
    }

    #[test]
    fn gupp_tiers_count_from_the_sdk_watermark() {
        // pc-1 working since its dispatch at +10s, alive, with no SDK activity since +10s.
        let town = given(fixture_f()).and([
            bead_created("b1", "r1").at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
            agent_activity("pc-1", T0 + secs(10), &[]).at(T0 + secs(10)),
            resumed("pc-1").at(T0 + secs(10)),
        ]);
        let warn = T0 + secs(10) + mins(15);
        let escalate = T0 + secs(10) + hours(1);
        let patrol_at = |now| status(&town.state, now, &PassFigures::default()).alarm_status.patrol;
        assert_eq!(patrol_at(warn - 1), Patrol::default());
        assert_eq!(patrol_at(warn), Patrol { gupp_warnings: 1, ..Patrol::default() });
        assert_eq!(patrol_at(escalate - 1), Patrol { gupp_warnings: 1, ..Patrol::default() });
        assert_eq!(patrol_at(escalate), Patrol { gupp_escalations: 1, ..Patrol::default() });
    }

    #[test]
    fn an_idle_hooked_agent_is_an_orphaned_hook_after_five_minutes() {
        // p1 hooked to b1 by the sling at +0; idle since.
        let town = given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            ev(crate::event::BeadCreated { agent_id: Some("p1".into()), ..bead("b1", Some("r1")) }).at(T0),
        ]);
        assert_eq!(town.agent("p1").hook.as_deref(), Some("b1"));
        let orphaned = |now| status(&town.state, now, &PassFigures::default()).alarm_status.patrol.orphaned_hooks;
        assert_eq!(orphaned(T0 + ORPHANED_HOOK_AGE - 1), 0);
        assert_eq!(orphaned(T0 + ORPHANED_HOOK_AGE), 1);
    }

    #[test]
    fn draining_shows_its_start() {
        let town = given(fixture_f()).and([container_eviction(Some("c1")).at(T0 + mins(1))]);
        let a = status(&town.state, T0 + mins(2), &PassFigures::default()).alarm_status;
        assert!(a.draining);
        assert_eq!(a.drain_started_at.as_deref(), Some("2026-06-01T10:01:00.000Z"));
    }
}
