//! Command validation (DOMAIN §E4): a request on `gastown.cmd.<town>.<command>` becomes the one
//! event to append, a no-op, a duplicate answer, or a typed rejection with E4's exact message.
//!
//! [`handle`] is pure: ingest passes its clock (`now`), a fresh ULID and its fold of the town, and
//! does the appending (fenced on the sequence it validated against when the outcome says so).
//!
//! # Order of checks
//! 1. the duplicate check: an entry for the event id in `recent_event_ids` with `t` within
//!    EVENT_DEDUP_HORIZON of `max(now, state.clock)` answers [`Outcome::Duplicate`] before any
//!    validation. The event id is `<town>:c:<Nats-Msg-Id>`; for `action.result` it is
//!    `<town>:r:<action_id>` whatever `Nats-Msg-Id` says, so that check runs once the body is
//!    decoded (step 4) and reads the raw `action_id` string;
//! 2. an unknown command: 404 `unknown command: <command>`;
//! 3. size (256 KiB), then decoding (JSON or MessagePack, an object);
//! 4. unknown fields, the first in byte order;
//! 5. each field in the row's order (missing, type, value), then the row's checks across fields,
//!    then its state conditions in the order E4 writes them.
//!
//! # Layout
//! - this file: [`CommandRequest`], [`Outcome`], [`handle`] and the dispatch table;
//! - `body`: decoding and the field readers with the common 400s;
//! - `reply`: [`CommandError`], [`ErrorCode`] and the JSON [`Reply`] builders;
//! - `town`: `town.config`, `rig.add`, `rig.config`;
//! - `agents`: `agent.register`, `agent.done`, `agent.completed`, `agent.checkpoint`;
//! - `beads`: `bead.create`, `bead.sling`, `bead.status`, `bead.hook`, `bead.label`, `bead.depend`;
//! - `convoys`: `convoy.create`, `convoy.start`;
//! - `review`: `review.request_changes`;
//! - `mail`: `agent.nudge`, `mail.send`, `escalation.raise`, `escalation.ack`, `triage.resolve`;
//! - `results`: `action.result`, `pr.*`, `container.eviction`.

mod agents;
mod beads;
mod body;
mod convoys;
mod mail;
mod reply;
mod results;
mod review;
mod town;

#[cfg(test)]
mod testkit;

use serde_json::{Map, Value};

pub use reply::{CommandError, ErrorBody, ErrorCode, Reply, busy, reply_duplicate, reply_noop, reply_ok};

use crate::constants::EVENT_DEDUP_HORIZON;
use crate::event::{Envelope, Event, source};
use crate::ids::fnv1a;
use crate::state::TownState;
use crate::time::{Millis, within};

/// One command request as ingest received it.
#[derive(Debug, Clone, Copy)]
pub struct CommandRequest<'a> {
    /// The town of the subject.
    pub town_id: &'a str,
    /// The command name (`bead.create`), the subject's tokens after the town.
    pub command: &'a str,
    /// The raw body.
    pub body: &'a [u8],
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The `Nats-Msg-Id` header, if any (an empty one counts as absent).
    pub msg_id: Option<&'a str>,
    /// Ingest's clock; the event's `at` is `max(now, state.clock)`.
    pub now: Millis,
    /// A fresh ULID from ingest: the event id when there is no `Nats-Msg-Id`, and the suffix of
    /// `<prefix>-<ULID>` ids of entities created without a client id.
    pub fresh_id: &'a str,
}

/// What ingest does with a valid request.
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "one outcome per command, moved once: boxing buys nothing")]
pub enum Outcome {
    /// Append this event. `fenced`: the validation read the town's state (state conditions or
    /// state-derived defaults), so the append must carry `Nats-Expected-Last-Subject-Sequence` =
    /// the sequence validated against; executor commands and syntax-only commands are not fenced.
    Append {
        /// The event, with id, `at` and `source` set.
        envelope: Envelope,
        /// Whether the append is fenced.
        fenced: bool,
    },
    /// Nothing to change: answer [`reply_noop`].
    Noop,
    /// Already stored: answer [`reply_duplicate`] with these.
    Duplicate {
        /// The stored event's id.
        event_id: String,
        /// Its stream sequence.
        seq: u64,
    },
}

/// Validates a command against the town's state and returns what to append.
///
/// `state` is ingest's fold of the town (`TownState::new(town)` when it has no events).
///
/// # Errors
/// The rejection of E4: 400, 404 or 409 with its exact message (see the module docs for the order
/// of checks). Never panics, whatever the bytes.
pub fn handle(req: &CommandRequest, state: &TownState) -> Result<Outcome, CommandError> {
    let at = req.now.max(state.clock);
    let msg_id = req.msg_id.filter(|m| !m.is_empty());
    let is_result = req.command == results::ACTION_RESULT;
    if let Some(m) = msg_id
        && !is_result
        && let Some(dup) = duplicate(state, format!("{}:c:{m}", req.town_id), at)
    {
        return Ok(dup);
    }
    let spec = COMMANDS.iter().find(|s| s.name == req.command).ok_or_else(|| CommandError::unknown_command(req.command))?;
    let map = body::decode(req.body, req.content_type)?;
    let event_id = if is_result {
        let action_id = map.get("action_id").and_then(Value::as_str).unwrap_or_default();
        let id = format!("{}:r:{action_id}", req.town_id);
        if let Some(dup) = duplicate(state, id.clone(), at) {
            return Ok(dup);
        }
        id
    } else if let Some(m) = msg_id {
        format!("{}:c:{m}", req.town_id)
    } else {
        req.fresh_id.to_owned()
    };
    let fields = body::Fields::top(&map);
    if let Some(allowed) = spec.fields {
        fields.check_unknown(allowed, "unknown field")?;
    }
    let ctx = Ctx { req, state, fields, event_id, at };
    (spec.run)(&ctx)
}

/// Whether `name` is a command of E4.
#[must_use]
pub fn is_command(name: &str) -> bool {
    COMMANDS.iter().any(|s| s.name == name)
}

/// Every command name of E4, in the table's order.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|s| s.name)
}

fn duplicate(state: &TownState, event_id: String, at: Millis) -> Option<Outcome> {
    let e = state.recent_event_ids.get(fnv1a(&event_id))?;
    within(Some(e.t), EVENT_DEDUP_HORIZON, at).then_some(Outcome::Duplicate { event_id, seq: e.seq })
}

/// What a command's validation sees.
pub(crate) struct Ctx<'a> {
    req: &'a CommandRequest<'a>,
    state: &'a TownState,
    fields: body::Fields<'a>,
    event_id: String,
    at: Millis,
}

impl<'a> Ctx<'a> {
    /// The top-level fields.
    fn fields(&self) -> body::Fields<'a> {
        self.fields
    }

    /// The raw body.
    fn map(&self) -> &'a Map<String, Value> {
        self.fields.map()
    }

    /// `<prefix>-<fresh ULID>`: the id of an entity created without a client id (C2).
    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.req.fresh_id)
    }

    /// The outcome appending `event`.
    fn append(&self, event: impl Into<Event>, fenced: bool) -> Result<Outcome, CommandError> {
        let envelope = Envelope::new(self.event_id.clone(), self.at, source::command(self.req.command), event);
        Ok(Outcome::Append { envelope, fenced })
    }
}

type Run = fn(&Ctx) -> Result<Outcome, CommandError>;

/// One row of E4's table.
struct Spec {
    /// Command name.
    name: &'static str,
    /// The request fields, or `None` when the command checks its keys itself (`town.config`).
    fields: Option<&'static [&'static str]>,
    /// Validation and the event.
    run: Run,
}

const fn row(name: &'static str, fields: &'static [&'static str], run: Run) -> Spec {
    Spec { name, fields: Some(fields), run }
}

const COMMANDS: &[Spec] = &[
    Spec { name: "town.config", fields: None, run: town::config },
    row("rig.add", town::RIG_ADD, town::rig_add),
    row("rig.config", town::RIG_CONFIG, town::rig_config),
    row("agent.register", agents::REGISTER, agents::register),
    row("bead.create", beads::CREATE, beads::create),
    row("bead.sling", beads::CREATE, beads::sling),
    row("bead.status", beads::STATUS, beads::status),
    row("bead.hook", beads::HOOK, beads::hook),
    row("bead.label", beads::LABEL, beads::label),
    row("bead.depend", beads::DEPEND, beads::depend),
    row("convoy.create", convoys::CREATE, convoys::create),
    row("convoy.start", convoys::START, convoys::start),
    row("agent.done", agents::DONE, agents::done),
    row("agent.completed", agents::COMPLETED, agents::completed),
    row("agent.checkpoint", agents::CHECKPOINT, agents::checkpoint),
    row("agent.nudge", mail::NUDGE, mail::nudge),
    row("mail.send", mail::MAIL, mail::send),
    row("escalation.raise", mail::RAISE, mail::raise),
    row("escalation.ack", mail::ACK, mail::ack),
    row("triage.resolve", mail::RESOLVE, mail::resolve),
    row("review.request_changes", review::REQUEST_CHANGES, review::request_changes),
    row(results::ACTION_RESULT, results::RESULT, results::action_result),
    row("pr.status", results::PR_STATUS, results::pr_status),
    row("pr.feedback", results::PR_FEEDBACK, results::pr_feedback),
    row("pr.auto_merge", results::PR_AUTO_MERGE, results::pr_auto_merge),
    row("pr.conflict", results::PR_CONFLICT, results::pr_conflict),
    row("container.eviction", results::EVICTION, results::eviction),
];

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::testkit::*;
    use super::*;
    use crate::constants::EVENT_DEDUP_HORIZON;
    use crate::event::BeadCreated;
    use crate::state::Priority;
    use crate::testing::*;

    #[test]
    fn an_unknown_command_is_a_404() {
        let e = run_err(&TownState::new(TOWN), "bead.frobnicate", json!({}));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::UnknownCommand, "unknown command: bead.frobnicate"));
    }

    #[test]
    fn an_unknown_command_is_reported_before_a_bad_body() {
        let r = CommandRequest { body: b"[1]", ..request("nope", &json!({})) };
        assert_eq!(handle(&r, &TownState::new(TOWN)).unwrap_err().message, "unknown command: nope");
    }

    #[test]
    fn size_is_checked_before_decoding_and_fields() {
        let big = vec![b'x'; 256 * 1024 + 1];
        let r = CommandRequest { body: &big, ..request("bead.create", &json!({})) };
        assert_eq!(handle(&r, &TownState::new(TOWN)).unwrap_err().message, "payload too large");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_rejected() {
        let r = CommandRequest { body: b"[\"title\"]", ..request("bead.create", &json!({})) };
        assert_eq!(handle(&r, &TownState::new(TOWN)).unwrap_err().message, "invalid body: expected object");
    }

    #[test]
    fn messagepack_bodies_are_accepted() {
        let mp = rmp_serde::to_vec_named(&json!({"bead_id": "b1", "title": "Fix login"})).unwrap();
        let r = CommandRequest { body: &mp, ..request("bead.create", &json!({})) };
        let env = appended(handle(&r, &TownState::new(TOWN)));
        assert_eq!(env.event, Event::BeadCreated(BeadCreated { title: "Fix login".into(), ..bead("b1", None) }));
    }

    #[test]
    fn the_first_unknown_field_in_byte_order_is_reported_before_a_missing_field() {
        let e = run_err(&TownState::new(TOWN), "bead.create", json!({"zeta": 1, "alpha": 2, "priority": "urgent"}));
        assert_eq!(e.message, "unknown field: alpha");
    }

    #[test]
    fn fields_are_checked_in_the_rows_order() {
        // title (missing) comes before priority (bad value) in bead.create's row.
        let e = run_err(&TownState::new(TOWN), "bead.create", json!({"priority": "urgent"}));
        assert_eq!(e.message, "missing required field: title");
        // bead_id (grammar) comes before title (missing).
        let e = run_err(&TownState::new(TOWN), "bead.create", json!({"bead_id": "b 1"}));
        assert_eq!(e.message, "invalid bead_id: must match [A-Za-z0-9_.:-]{1,128}");
    }

    #[test]
    fn event_ids_follow_e1() {
        let s = TownState::new(TOWN);
        let with_msg = CommandRequest { msg_id: Some("req-42"), ..request("bead.create", &json!({"title": "x"})) };
        let body = serde_json::to_vec(&json!({"title": "x"})).unwrap();
        let with_msg = CommandRequest { body: &body, ..with_msg };
        assert_eq!(appended(handle(&with_msg, &s)).id, "t1:c:req-42");
        let plain = appended(run(&s, "bead.create", json!({"title": "x"})));
        assert_eq!((plain.id.as_str(), plain.source.as_str(), plain.at), (ULID, "cmd:bead.create", NOW));
        let empty_msg = CommandRequest { msg_id: Some(""), body: &body, ..request("bead.create", &json!({})) };
        assert_eq!(appended(handle(&empty_msg, &s)).id, ULID);
    }

    #[test]
    fn at_is_the_later_of_ingest_clock_and_town_clock() {
        let s = given(fixture_f()).and([bead_created("b0", "r1").at(T0 + mins(5))]).state;
        let r = request_at("bead.create", &json!({"title": "x"}), T0 + mins(1));
        let body = serde_json::to_vec(&json!({"title": "x"})).unwrap();
        let env = appended(handle(&CommandRequest { body: &body, ..r }, &s));
        assert_eq!(env.at, T0 + mins(5));
    }

    #[test]
    fn a_repeated_msg_id_is_a_duplicate_before_any_validation() {
        let s = given(fixture_f()).and([bead_created("b1", "r1").id("t1:c:req-1").at(T0 + secs(10))]).state;
        let body = b"not even an object".to_vec();
        let r = CommandRequest { body: &body, msg_id: Some("req-1"), ..request_at("whatever", &json!({}), T0 + secs(20)) };
        assert_eq!(handle(&r, &s).unwrap(), Outcome::Duplicate { event_id: "t1:c:req-1".into(), seq: 5 });
    }

    #[test]
    fn t38_repeated_bead_create_answers_the_stored_event_until_the_horizon() {
        let mut g = given(fixture_f());
        g.push(ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).id("t1:c:req-42").at(T0 + secs(10)));
        g.push(reconciled([dispatch_creating("pc-1", "b1", "r1", crate::state::Role::Polecat, Some("Toast"))]).at(T0 + secs(10)));
        let body = serde_json::to_vec(&json!({"bead_id": "b1", "title": "Fix login", "rig_id": "r1"})).unwrap();
        let at = |now| CommandRequest { body: &body, msg_id: Some("req-42"), ..request_at("bead.create", &json!({}), now) };
        let last_inside = T0 + secs(10) + EVENT_DEDUP_HORIZON - 1;
        for now in [T0 + secs(11), T0 + mins(30), last_inside] {
            assert_eq!(handle(&at(now), &g.state).unwrap(), Outcome::Duplicate { event_id: "t1:c:req-42".into(), seq: 5 });
        }
        let e = handle(&at(T0 + hours(1) + secs(10)), &g.state).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Conflict, "bead b1 already exists"));
    }

    #[test]
    fn t38_near_miss_the_duplicate_ends_exactly_at_the_horizon() {
        let s = given(fixture_f()).and([bead_created("b1", "r1").id("t1:c:req-42").at(T0 + secs(10))]).state;
        let body = serde_json::to_vec(&json!({"bead_id": "b1", "title": "Fix login"})).unwrap();
        let at = |now| CommandRequest { body: &body, msg_id: Some("req-42"), ..request_at("bead.create", &json!({}), now) };
        assert!(matches!(handle(&at(T0 + secs(10) + EVENT_DEDUP_HORIZON - 1), &s), Ok(Outcome::Duplicate { .. })));
        assert_eq!(handle(&at(T0 + secs(10) + EVENT_DEDUP_HORIZON), &s).unwrap_err().message, "bead b1 already exists");
    }

    #[test]
    fn a_repeated_action_result_is_a_duplicate_whatever_its_msg_id() {
        let mut g = given(fixture_f());
        g.push(ev(action_result("6:0", "dispatch_agent", true)).id("t1:r:6:0").at(T0 + secs(20)));
        let body = serde_json::to_vec(&json!({"action_id": "6:0", "action_type": "dispatch_agent", "ok": true})).unwrap();
        let r = CommandRequest { body: &body, msg_id: Some("other"), ..request_at("action.result", &json!({}), T0 + secs(30)) };
        assert_eq!(handle(&r, &g.state).unwrap(), Outcome::Duplicate { event_id: "t1:r:6:0".into(), seq: 5 });
        let fresh = serde_json::to_vec(&json!({"action_id": "6:1", "action_type": "dispatch_agent", "ok": true})).unwrap();
        let r = CommandRequest { body: &fresh, ..r };
        assert_eq!(appended(handle(&r, &g.state)).id, "t1:r:6:1");
    }

    #[test]
    fn deeply_nested_bodies_are_rejected_without_overflowing_the_stack() {
        let mut mp = vec![0x91_u8; 200_000];
        mp.push(0xc0);
        let r = CommandRequest { body: &mp, ..request("bead.create", &json!({})) };
        assert_eq!(handle(&r, &TownState::new(TOWN)).unwrap_err().message, "invalid body: expected object");
        let mut js = "[".repeat(200_000);
        js.insert(0, '{');
        let r = CommandRequest { body: js.as_bytes(), ..r };
        assert_eq!(handle(&r, &TownState::new(TOWN)).unwrap_err().message, "invalid body: expected object");
    }

    #[test]
    fn every_command_of_e4_is_dispatched() {
        let names: Vec<_> = command_names().collect();
        assert_eq!(names.len(), 27);
        assert!(is_command("review.request_changes") && !is_command("review"));
    }

    #[test]
    fn defaults_are_filled_in() {
        let env = appended(run(&TownState::new(TOWN), "bead.create", json!({"title": "x"})));
        let Event::BeadCreated(b) = env.event else { panic!("not bead_created") };
        assert_eq!((b.bead_id, b.priority, b.created_by.as_str()), (format!("b-{ULID}"), Priority::Medium, "operator"));
    }

    /// Values that often pass a field's checks (ids, enum values, URLs) and some that do not.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            1 => Just(json!(null)),
            2 => any::<bool>().prop_map(|b| json!(b)),
            2 => prop_oneof![any::<i64>(), 50..4000_i64].prop_map(|n| json!(n)),
            12 => prop::sample::select(vec![
                "r1",
                "b1",
                "b2",
                "p1",
                "mayor",
                "ref-r1",
                "cv1",
                "pc-3",
                "polecat",
                "refinery",
                "mayor",
                "open",
                "closed",
                "merged",
                "completed",
                "blocks",
                "tracks",
                "low",
                "urgent",
                "wait-idle",
                "review-and-merge",
                "1:2",
                "6:0",
                "https://x/y.git",
                "RESTART",
                "gt:held",
                "gt:convoy",
                "",
            ])
            .prop_map(|s| json!(s)),
            2 => "[a-z0-9_:. -]{0,12}".prop_map(|s| json!(s)),
        ];
        let nested = leaf.clone().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["bead_id", "title", "rig_id", "depends_on", "code_review", "x"]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        });
        prop_oneof![6 => leaf, 1 => nested]
    }

    /// A body each command accepts on [`rich_state`] (or answers with a state condition).
    fn valid_body(command: &str) -> Value {
        match command {
            "town.config" => json!({"max_dispatch_attempts": 3, "refinery": {"code_review": false}}),
            "rig.add" => json!({"rig_id": "r2", "name": "api", "git_url": "https://x/y.git", "overrides": {"code_review": true}}),
            "rig.config" => json!({"rig_id": "r1", "overrides": {"code_review": false}}),
            "agent.register" => json!({"agent_id": "p2", "role": "polecat", "rig_id": "r1"}),
            "bead.create" | "bead.sling" => {
                json!({"bead_id": "b3", "title": "t", "rig_id": "r1", "depends_on": ["b1"], "labels": ["ui"], "metadata": {}})
            }
            "bead.status" => json!({"bead_id": "b1", "status": "in_review", "reason": "r"}),
            "bead.hook" => json!({"bead_id": "b3", "agent_id": "p2"}),
            "bead.label" => json!({"bead_id": "b1", "add": ["ui"], "remove": ["x"]}),
            "bead.depend" => json!({"bead_id": "b2", "depends_on": "b1", "kind": "blocks"}),
            "convoy.create" => json!({"convoy_id": "cv1", "title": "L", "merge_mode": "review-then-land", "beads": [
                {"bead_id": "c1", "title": "a", "rig_id": "r1"},
                {"bead_id": "c2", "title": "b", "rig_id": "r1", "depends_on": ["c1"], "labels": ["ui"]}]}),
            "convoy.start" => json!({"convoy_id": "cv1"}),
            "agent.done" => json!({"agent_id": "p1", "branch": "fix", "pr_url": "https://x/pull/1"}),
            "agent.completed" => json!({"status": "completed"}),
            "agent.checkpoint" => json!({"agent_id": "p1", "checkpoint": {"step": 1}}),
            "agent.nudge" => json!({"agent_id": "p1", "message": "m", "ttl_s": 600, "mode": "queue"}),
            "mail.send" => json!({"to_agent_id": "mayor", "from": "bob", "subject": "s"}),
            "escalation.raise" => json!({"title": "T", "severity": "high", "context": {"k": 1}}),
            "escalation.ack" | "triage.resolve" => json!({"bead_id": "b1", "request_bead_id": "b1", "action": "RESTART"}),
            "review.request_changes" => json!({"mr_bead_id": "b1", "agent_id": "p1", "body": "b"}),
            "action.result" => json!({"action_id": "6:0", "action_type": "dispatch_agent", "ok": true, "details": {}}),
            "pr.status" => json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_state": "merged"}),
            "pr.feedback" => json!({"mr_bead_id": "mr-2", "pr_url": "u", "pr_number": 7, "repo": "a/b", "branch": "f",
                                    "has_failing_checks": true}),
            "pr.auto_merge" => json!({"mr_bead_id": "mr-2", "pr_url": "u"}),
            "pr.conflict" => json!({"mr_bead_id": "mr-2", "pr_url": "u", "branch": "f"}),
            _ => json!({}),
        }
    }

    /// A command and a mutation of its valid body (fields removed, replaced or added, nested
    /// `beads` elements too), or arbitrary bytes.
    fn any_request() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
        (0..=COMMANDS.len()).prop_flat_map(|i| {
            let (name, mut names) = match COMMANDS.get(i) {
                Some(s) => (s.name, s.fields.unwrap_or(town::TOWN_KEYS).to_vec()),
                None => ("nope", vec!["title"]),
            };
            names.push("x");
            let edit = (prop::sample::select(names), prop::option::weighted(0.7, any_value()), any::<bool>());
            let object = prop::collection::vec(edit, 0..4).prop_map(move |edits| {
                let mut body = valid_body(name);
                for (k, v, nested) in edits {
                    let target = match body.get_mut("beads").and_then(|b| b.get_mut(0)).and_then(Value::as_object_mut) {
                        Some(first) if nested => first,
                        _ => body.as_object_mut().unwrap(),
                    };
                    match v {
                        Some(v) => target.insert(k.to_owned(), v),
                        None => target.remove(k),
                    };
                }
                serde_json::to_vec(&body).unwrap()
            });
            (Just(name), prop_oneof![8 => object, 1 => prop::collection::vec(any::<u8>(), 0..64)])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
        #[test]
        fn handle_never_panics((cmd, body) in any_request(), msgpack in any::<bool>(), msg in prop::option::of("[a-z0-9-]{0,6}")) {
            let s = rich_state();
            let bytes = if msgpack {
                serde_json::from_slice::<Value>(&body).map_or(body.clone(), |v| rmp_serde::to_vec_named(&v).unwrap())
            } else { body };
            let r = CommandRequest { body: &bytes, msg_id: msg.as_deref(), ..request(cmd, &json!({})) };
            match handle(&r, &s) {
                Ok(Outcome::Append { envelope, .. }) => {
                    prop_assert_eq!(envelope.source.clone(), format!("cmd:{cmd}"));
                    prop_assert_eq!(envelope.at, NOW.max(s.clock));
                    let stored = crate::codec::to_msgpack(&envelope).unwrap();
                    prop_assert_eq!(crate::codec::from_msgpack::<Envelope>(&stored).unwrap(), envelope);
                }
                Ok(_) => {}
                Err(e) => prop_assert!(!e.message.is_empty() && [400, 404, 409].contains(&e.code.status())),
            }
        }
    }
}
