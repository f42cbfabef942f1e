//! D3 `replay`: the exact state at `from`, the window `[from, to]` folded and counted, and what
//! `reconcile(S, to)` decides then. A pure, incremental fold: the service feeds events in stream
//! order and stops when told to (or when its `timeout_ms` runs out, answering 413).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::counts::OrderedCounts;
use super::error::{DebugError, FROM_AFTER_TO, INVALID_DATE, INVALID_TIMEOUT, MISSING_FROM_TO};
use super::rows::{AgentRow, BeadRow, agent_rows, bead_rows};
use crate::action::Action;
use crate::codec::Stored;
use crate::constants::REPLAY_TIMEOUT_MS;
use crate::event::Envelope;
use crate::state::TownState;
use crate::time::{Millis, parse_iso};

/// A parsed replay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRequest {
    /// Start of the window (inclusive).
    pub from: Millis,
    /// End of the window (inclusive).
    pub to: Millis,
    /// Budget for folding and replaying (default REPLAY_TIMEOUT_MS).
    pub timeout_ms: u64,
}

impl ReplayRequest {
    /// Parses `{"from": ISO, "to": ISO, "timeout_ms": int?}`; a null field counts as absent and
    /// a body that is not a JSON object has no fields.
    ///
    /// # Errors
    /// The 400s of D3, first match in this order: `Missing required fields: from, to (ISO
    /// timestamps)`; `Invalid date format. Use ISO 8601 timestamps.`; `"from" must be before or
    /// equal to "to"`; `invalid timeout_ms` (not an integer ≥ 1).
    pub fn parse(body: &[u8]) -> Result<Self, DebugError> {
        let fields = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let field = |k: &str| fields.get(k).filter(|v| !v.is_null());
        let (Some(from), Some(to)) = (field("from"), field("to")) else {
            return Err(DebugError::bad_request(MISSING_FROM_TO));
        };
        let instant = |v: &Value| v.as_str().and_then(parse_iso).ok_or_else(|| DebugError::bad_request(INVALID_DATE));
        let (from, to) = (instant(from)?, instant(to)?);
        if from > to {
            return Err(DebugError::bad_request(FROM_AFTER_TO));
        }
        let timeout_ms = match field("timeout_ms") {
            None => REPLAY_TIMEOUT_MS,
            Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| DebugError::bad_request(INVALID_TIMEOUT))?,
        };
        Ok(Self { from, to, timeout_ms })
    }
}

/// A stored snapshot as the replay base choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The last sequence folded into it.
    pub seq: u64,
    /// Its state's `clock`.
    pub clock: Millis,
}

/// The snapshot a replay from `from` starts at: the latest (greatest `seq`) whose clock is
/// before `from`, so that it holds no event of the window; `None` = fold from empty.
#[must_use]
pub fn replay_base_choice(snapshots: &[SnapshotRef], from: Millis) -> Option<SnapshotRef> {
    snapshots.iter().filter(|s| s.clock < from).max_by_key(|s| s.seq).copied()
}

/// Where a fed event fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Fed {
    /// Effective time before `from`: folded into the pre-state.
    PreState,
    /// Effective time in `[from, to]`: folded and counted.
    Window,
    /// Effective time after `to`: not folded; stop feeding.
    PastWindow,
    /// At or below the last folded sequence: ignored.
    AlreadyFolded,
}

/// An incremental replay.
#[derive(Debug, Clone)]
pub struct Replay {
    state: TownState,
    from: Millis,
    to: Millis,
    events_replayed: u64,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    past: bool,
}

impl Replay {
    /// Starts from `base`: a snapshot whose clock is before `from` ([`replay_base_choice`]) or
    /// the empty town.
    #[must_use]
    pub fn new(base: TownState, from: Millis, to: Millis) -> Self {
        Self { state: base, from, to, events_replayed: 0, from_seq: None, to_seq: None, past: false }
    }

    /// Feeds the event stored at `seq` (the next one in stream order).
    pub fn feed(&mut self, seq: u64, env: &Envelope) -> Fed {
        let t = env.at.max(self.state.clock);
        self.step(seq, t, |s| crate::apply(s, seq, env))
    }

    /// Feeds a stored message whatever it decoded to (a broken one takes the clock as its time,
    /// E1).
    pub fn feed_stored(&mut self, seq: u64, stored: &Stored) -> Fed {
        let at = match stored {
            Stored::Event(env) => env.at,
            Stored::Malformed(raw) => raw.at,
            Stored::Broken => self.state.clock,
        };
        let t = at.max(self.state.clock);
        self.step(seq, t, |s| crate::apply_stored(s, seq, stored))
    }

    fn step(&mut self, seq: u64, t: Millis, fold: impl FnOnce(&mut TownState)) -> Fed {
        if self.state.exists() && seq <= self.state.last_seq {
            return Fed::AlreadyFolded;
        }
        if self.past || t > self.to {
            self.past = true;
            return Fed::PastWindow;
        }
        fold(&mut self.state);
        if t < self.from {
            return Fed::PreState;
        }
        self.events_replayed += 1;
        self.from_seq.get_or_insert(seq);
        self.to_seq = Some(seq);
        Fed::Window
    }

    /// The state folded so far.
    #[must_use]
    pub fn state(&self) -> &TownState {
        &self.state
    }

    /// Runs `reconcile(S, to)` on the state after the window and builds the reply.
    #[must_use]
    pub fn finish(self) -> ReplayReply {
        let actions = crate::reconcile(&self.state, self.to).actions;
        ReplayReply {
            events_replayed: self.events_replayed,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            actions_by_type: OrderedCounts::of_actions(&actions),
            actions,
            state_snapshot: StateSnapshot { agents: agent_rows(&self.state), non_terminal_beads: bead_rows(&self.state) },
        }
    }
}

/// `stateSnapshot` of D3: the state the live worker held after `toSeq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSnapshot {
    /// Agent rows.
    pub agents: Vec<AgentRow>,
    /// Bead rows.
    pub non_terminal_beads: Vec<BeadRow>,
}

/// The D3 reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReply {
    /// Events in the window.
    pub events_replayed: u64,
    /// First sequence of the window.
    pub from_seq: Option<u64>,
    /// Last sequence of the window.
    pub to_seq: Option<u64>,
    /// What `reconcile(S, to)` decides.
    pub actions: Vec<Action>,
    /// By type, in decision order.
    pub actions_by_type: OrderedCounts,
    /// The state after the window.
    pub state_snapshot: StateSnapshot,
}

super::json_reply!(ReplayReply, "D3");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug::require_town;
    use crate::debug::t39::{squash, t39_live_up_to, t39_stream};
    use crate::state::{AgentStatus, BeadStatus};
    use crate::testing::*;

    const D3_EXAMPLE: &str = r#"{"eventsReplayed":2,"fromSeq":8,"toSeq":9,
 "actions":[{"type":"unhook_agent","agent_id":"pc-1","reason":"idle agent hooked to live bead"},
  {"type":"transition_bead","bead_id":"b1","from":"in_progress","to":"open","reason":"agent went idle without completing work"}],
 "actionsByType":{"unhook_agent":1,"transition_bead":1},
 "stateSnapshot":{
  "agents":[
   {"bead_id":"mayor","role":"mayor","status":"working","current_hook_bead_id":null,"dispatch_attempts":0,"last_activity_at":"2026-06-01T10:00:00.000Z","liveness":"alive"},
   {"bead_id":"pc-1","role":"polecat","status":"idle","current_hook_bead_id":"b1","dispatch_attempts":0,"last_activity_at":"2026-06-01T10:00:15.000Z","liveness":"lost"}],
  "nonTerminalBeads":[
   {"bead_id":"b1","type":"issue","status":"in_progress","title":"Fix login","assignee_agent_bead_id":"pc-1","updated_at":"2026-06-01T10:00:10.000Z","rig_id":"r1","created_by":"operator","labels":[],"metadata":{}}]}}"#;

    /// Feeds the T39 stream after `base` until the replay says stop; returns the replay and
    /// where each fed event fell.
    fn replay_t39(base: TownState, from: Millis, to: Millis) -> (Replay, Vec<(u64, Fed)>) {
        let mut r = Replay::new(base, from, to);
        let mut fed = Vec::new();
        for (seq, env) in t39_stream() {
            let f = r.feed(seq, &env);
            fed.push((seq, f));
            if f == Fed::PastWindow {
                break;
            }
        }
        (r, fed)
    }

    fn at(hh_mm_ss: &str) -> Millis {
        parse_iso(&format!("2026-06-01T{hh_mm_ss}.000Z")).unwrap()
    }

    #[test]
    fn t39a_replay_before_the_loss_shows_pc1_working_on_b1() {
        let (r, fed) = replay_t39(TownState::new(TOWN), at("10:00:05"), at("10:02:00"));
        assert_eq!(fed.last(), Some(&(8, Fed::PastWindow)), "stops at the first event after `to`");
        let s = r.state().clone();
        let reply = r.finish();
        assert_eq!((reply.events_replayed, reply.from_seq, reply.to_seq), (3, Some(5), Some(7)));
        assert_eq!(reply.actions, []);
        assert_eq!(reply.actions_by_type, OrderedCounts::new());
        let pc1 = s.agents.get("pc-1").unwrap();
        assert_eq!((pc1.status, pc1.hook.as_deref()), (AgentStatus::Working, Some("b1")));
        assert_eq!(s.beads.get("b1").unwrap().status, BeadStatus::InProgress);
        assert_eq!(s, t39_live_up_to(7), "the state the live worker held after [7]");
    }

    #[test]
    fn t39b_replay_of_the_loss_is_the_d3_example() {
        let (r, _) = replay_t39(TownState::new(TOWN), at("10:02:00"), at("10:03:00"));
        let live = t39_live_up_to(9);
        assert_eq!(r.state(), &live, "no caveat: the live state after [9]");
        let reply = r.finish();
        assert_eq!(reply.to_json_string(), squash(D3_EXAMPLE));
        assert_eq!(
            reply.actions,
            [
                unhook_agent("pc-1", "idle agent hooked to live bead"),
                transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
            ]
        );
        assert_eq!(reply.actions, crate::reconcile(&live, T0 + mins(3)).actions, "the next live decision");
    }

    #[test]
    fn t39b_replay_from_a_snapshot_before_from_gives_the_same_reply() {
        let snapshots = [
            SnapshotRef { seq: 4, clock: T0 },
            SnapshotRef { seq: 7, clock: T0 + secs(15) },
            SnapshotRef { seq: 9, clock: T0 + mins(3) },
        ];
        let base = replay_base_choice(&snapshots, at("10:02:00")).unwrap();
        assert_eq!(base.seq, 7);
        let (from_snapshot, fed) = replay_t39(t39_live_up_to(base.seq), at("10:02:00"), at("10:03:00"));
        assert!(fed.iter().take(7).all(|(_, f)| *f == Fed::AlreadyFolded), "{fed:?}");
        let (from_empty, _) = replay_t39(TownState::new(TOWN), at("10:02:00"), at("10:03:00"));
        assert_eq!(from_snapshot.finish(), from_empty.finish());
    }

    #[test]
    fn the_base_is_the_latest_snapshot_strictly_before_from() {
        let snapshots = [SnapshotRef { seq: 9, clock: T0 + mins(3) }, SnapshotRef { seq: 4, clock: T0 }];
        assert_eq!(replay_base_choice(&snapshots, T0 + mins(3)), Some(SnapshotRef { seq: 4, clock: T0 }));
        assert_eq!(replay_base_choice(&snapshots, T0 + mins(3) + 1), Some(SnapshotRef { seq: 9, clock: T0 + mins(3) }));
        assert_eq!(replay_base_choice(&snapshots, T0), None, "a snapshot at `from` may hold window events");
    }

    #[test]
    fn an_empty_window_has_null_sequences() {
        let (r, _) = replay_t39(TownState::new(TOWN), at("10:00:20"), at("10:02:00"));
        let json = r.finish().to_json_string();
        assert!(
            json.starts_with(r#"{"eventsReplayed":0,"fromSeq":null,"toSeq":null,"actions":[],"actionsByType":{},"#),
            "{json}"
        );
    }

    #[test]
    fn events_at_from_and_at_to_belong_to_the_window() {
        let (r, _) = replay_t39(TownState::new(TOWN), at("10:00:10"), at("10:00:10"));
        let reply = r.finish();
        assert_eq!((reply.events_replayed, reply.from_seq, reply.to_seq), (2, Some(5), Some(6)));
        // One millisecond later, [5] and [6] fold into the pre-state and the window is empty.
        let (r, _) = replay_t39(TownState::new(TOWN), at("10:00:10") + 1, at("10:00:14"));
        let reply = r.finish();
        assert_eq!((reply.events_replayed, reply.from_seq, reply.to_seq), (0, None, None));
    }

    #[test]
    fn stored_messages_fold_like_events_and_broken_ones_take_the_clock() {
        let mut r = Replay::new(TownState::new(TOWN), at("10:00:10"), at("10:03:00"));
        for (seq, env) in t39_stream().into_iter().take(6) {
            assert_ne!(r.feed_stored(seq, &Stored::Event(env)), Fed::PastWindow);
        }
        assert_eq!(r.feed_stored(7, &Stored::Broken), Fed::Window);
        assert_eq!(r.state().last_seq, 7);
        let reply = r.finish();
        assert_eq!((reply.events_replayed, reply.from_seq, reply.to_seq), (3, Some(5), Some(7)));
    }

    fn err(body: &str) -> String {
        ReplayRequest::parse(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn t39c_replay_requests_are_refused_word_for_word_in_order() {
        let missing = "Missing required fields: from, to (ISO timestamps)";
        let invalid_date = "Invalid date format. Use ISO 8601 timestamps.";
        let order = "\"from\" must be before or equal to \"to\"";
        let timeout = "invalid timeout_ms";
        assert_eq!(err(r#"{"to":"2026-06-01T10:03:00Z"}"#), missing);
        assert_eq!(err(r#"{"from":"2026-06-01T10:02:00Z"}"#), missing);
        assert_eq!(err(r#"{"from":null,"to":"2026-06-01T10:03:00Z"}"#), missing);
        assert_eq!(err("{}"), missing);
        assert_eq!(err(""), missing);
        assert_eq!(err(r#"{"from":"yesterday","to":"nope","timeout_ms":0}"#), invalid_date, "dates before order and timeout");
        assert_eq!(err(r#"{"from":"2026-06-01T10:02:00Z","to":17}"#), invalid_date);
        assert_eq!(err(r#"{"from":"2026-06-01T10:03:00Z","to":"2026-06-01T10:02:00Z","timeout_ms":0}"#), order);
        for bad in ["0", "-1", "1.5", "\"100\"", "true"] {
            assert_eq!(
                err(&format!(r#"{{"from":"2026-06-01T10:02:00Z","to":"2026-06-01T10:03:00Z","timeout_ms":{bad}}}"#)),
                timeout
            );
        }
        let e = ReplayRequest::parse(br#"{"from":"x","to":"y"}"#).unwrap_err();
        assert_eq!(
            (e.status, e.to_json_string()),
            (400, r#"{"error":"Invalid date format. Use ISO 8601 timestamps."}"#.to_owned())
        );
    }

    #[test]
    fn t39c_any_operation_on_a_town_without_events_is_unknown() {
        let e = require_town(&TownState::new("t9")).unwrap_err();
        assert_eq!((e.status, e.to_json_string()), (404, r#"{"error":"unknown town: t9"}"#.to_owned()));
        assert!(require_town(&t39_live_up_to(1)).is_ok());
    }

    #[test]
    fn a_valid_request_defaults_its_timeout() {
        let ok = |b: &str| ReplayRequest::parse(b.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"from":"2026-06-01T10:02:00Z","to":"2026-06-01T10:02:00Z"}"#),
            ReplayRequest { from: at("10:02:00"), to: at("10:02:00"), timeout_ms: 4000 }
        );
        assert_eq!(ok(r#"{"from":"2026-06-01T10:02:00Z","to":"2026-06-01T10:03:00Z","timeout_ms":1}"#).timeout_ms, 1);
    }
}
