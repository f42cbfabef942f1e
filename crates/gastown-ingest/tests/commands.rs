//! The command service over the wire, against a real `nats-server` (ARCHITECTURE §3–§4, DOMAIN
//! §E4): replies, stored events and headers, error classes with their status headers, duplicates,
//! the fence under racing clients, the memory reset of a registration, the micro-service verbs,
//! MessagePack bodies, and a foreign (Python) client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use gastown_bus::{Bus, BusConfig, Names, TownId, headers};
use gastown_core::codec::Stored;
use gastown_core::event::Reconciled;
use gastown_core::state::Role;
use gastown_core::testing::dispatch_creating;
use gastown_core::{Envelope, Event, TownState, apply_stored};
use gastown_ingest::IngestMetrics;
use gastown_ingest::commands::{CommandsConfig, run_commands};
use gastown_ingest::memory::MemoryStore;
use gastown_testkit::TestServer;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// A server, its streams, a running command service and a client.
struct Fixture {
    _server: TestServer,
    bus: Arc<Bus>,
    client: async_nats::Client,
    /// A second connection, for racing clients.
    client2: async_nats::Client,
    memory: Arc<MemoryStore>,
    metrics: Arc<IngestMetrics>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), gastown_ingest::IngestError>>>,
}

async fn start() -> Fixture {
    start_with(CommandsConfig::default()).await
}

async fn start_with(cfg: CommandsConfig) -> Fixture {
    let server = timeout(WAIT, TestServer::start()).await.expect("nats-server did not start in time").expect("start nats-server");
    let url = server.url();
    let bus = Bus::connect(&url, bus_config()).await.expect("connect the bus");
    timeout(WAIT, bus.ensure_streams()).await.expect("ensure_streams hung").expect("create streams");
    let bus = Arc::new(bus);
    let memory = Arc::new(MemoryStore::open(&bus).await.expect("open the memory bucket"));
    let metrics = Arc::new(IngestMetrics::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_commands(Arc::clone(&bus), cfg, Arc::clone(&memory), Arc::clone(&metrics), shutdown.clone()));
    let client = async_nats::connect(&url).await.expect("connect a client");
    let client2 = async_nats::connect(&url).await.expect("connect a second client");
    let f = Fixture { _server: server, bus, client, client2, memory, metrics, shutdown, task: Some(task) };
    f.wait_ready().await;
    f
}

fn bus_config() -> BusConfig {
    BusConfig { names: Names::default(), partitions: 32, replicas: 1, hb_max_age: Duration::from_secs(90), max_consumers: 4096 }
}

impl Fixture {
    /// Waits until the service answers `$SRV.PING`.
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ping = timeout(Duration::from_millis(500), self.client.request("$SRV.PING.gastown-ingest", "".into())).await;
            if matches!(ping, Ok(Ok(_))) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the command service never answered $SRV.PING (did run_commands start?)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a command with optional headers and returns the reply.
    async fn send(&self, town: &str, command: &str, body: Vec<u8>, hdrs: HeaderMap) -> async_nats::Message {
        self.send_on(&self.client, town, command, body, hdrs).await
    }

    async fn send_on(
        &self,
        client: &async_nats::Client,
        town: &str,
        command: &str,
        body: Vec<u8>,
        hdrs: HeaderMap,
    ) -> async_nats::Message {
        let subject = format!("gastown.cmd.{town}.{command}");
        timeout(WAIT, client.request_with_headers(subject.clone(), hdrs, body.into()))
            .await
            .unwrap_or_else(|_| panic!("no reply to {subject} in time (service stuck?)"))
            .unwrap_or_else(|e| panic!("request {subject}: {e}"))
    }

    /// Sends a JSON command and returns the reply's JSON and its error code header.
    async fn cmd(&self, town: &str, command: &str, body: Value) -> (Value, Option<String>) {
        self.cmd_with_id(town, command, body, None).await
    }

    async fn cmd_on(&self, client: &async_nats::Client, town: &str, command: &str, body: Value) -> (Value, Option<String>) {
        parse(&self.send_on(client, town, command, serde_json::to_vec(&body).unwrap(), HeaderMap::new()).await)
    }

    async fn cmd_with_id(&self, town: &str, command: &str, body: Value, msg_id: Option<&str>) -> (Value, Option<String>) {
        let mut hdrs = HeaderMap::new();
        if let Some(id) = msg_id {
            hdrs.insert(headers::NATS_MSG_ID, id);
        }
        let reply = self.send(town, command, serde_json::to_vec(&body).unwrap(), hdrs).await;
        parse(&reply)
    }

    /// Sends a command that must succeed with an appended event; returns (event_id, seq).
    async fn ok(&self, town: &str, command: &str, body: Value) -> (String, u64) {
        let (reply, code) = self.cmd(town, command, body.clone()).await;
        assert_eq!(code, None, "{command} {body}: {reply}");
        assert_eq!(reply["ok"], json!(true), "{command} {body}: {reply}");
        (reply["event_id"].as_str().unwrap_or_else(|| panic!("{command}: no event_id in {reply}")).to_owned(), seq_of(&reply))
    }

    /// The stored event at `seq` and its headers.
    async fn stored(&self, seq: u64) -> (Envelope, HeaderMap) {
        let stream = self.bus.js.get_stream(self.bus.names.events_stream()).await.expect("events stream");
        let raw = timeout(WAIT, stream.direct_get(seq)).await.expect("direct get hung").expect("direct get");
        match gastown_core::codec::decode_stored(&raw.payload) {
            Stored::Event(env) => (env, raw.headers),
            other => panic!("stored message {seq} is not an event: {other:?}"),
        }
    }

    /// The town folded from the stream.
    async fn fold(&self, town: &str) -> TownState {
        let id = TownId::try_from(town).unwrap();
        let events = timeout(WAIT, self.bus.town_events(&id, 0)).await.expect("town_events hung").expect("town events");
        let mut s = TownState::new(town);
        for (seq, stored) in &events {
            apply_stored(&mut s, *seq, stored);
        }
        s
    }

    /// Every stored event type of a town, in order.
    async fn event_types(&self, town: &str) -> Vec<String> {
        let id = TownId::try_from(town).unwrap();
        let events = self.bus.town_events(&id, 0).await.expect("town events");
        events
            .iter()
            .map(|(_, s)| match s {
                Stored::Event(e) => e.event_type().to_owned(),
                _ => "?".to_owned(),
            })
            .collect()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let r = timeout(WAIT, task).await.expect("run_commands did not stop after shutdown").expect("join");
            r.expect("run_commands returned an error");
        }
    }
}

fn parse(reply: &async_nats::Message) -> (Value, Option<String>) {
    let body: Value = serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(&reply.payload)));
    let code = reply.headers.as_ref().and_then(|h| h.get(headers::SERVICE_ERROR_CODE)).map(|v| v.as_str().to_owned());
    (body, code)
}

fn seq_of(reply: &Value) -> u64 {
    reply["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {reply}"))
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Appends a decision as a reconciler would (unfenced): the command service's cache does not see
/// it, so the next fenced command meets a refusal and refolds.
async fn append_decision(f: &Fixture, town: &str, actions: Vec<gastown_core::Action>) -> u64 {
    let id = TownId::try_from(town).unwrap();
    let base = f.bus.town_last_seq(&id).await.unwrap();
    let now = now_ms();
    let env = Envelope::new(format!("{town}:d:{base}:{now}"), now, "reconciler", Reconciled { at: now, base_seq: base, actions });
    f.bus.append_event(&id, &env, Some(base), None).await.unwrap().seq
}

#[tokio::test]
async fn every_command_answers_ok_and_stores_its_event() {
    let f = start().await;
    let t = "t1";
    // (command, body, expected event type)
    let steps: Vec<(&str, Value, &str)> = vec![
        ("town.config", json!({"max_dispatch_attempts": 3}), "town_configured"),
        ("rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"}), "rig_added"),
        ("rig.config", json!({"rig_id": "r1", "overrides": {"code_review": true}}), "rig_configured"),
        ("agent.register", json!({"agent_id": "mayor", "role": "mayor"}), "agent_registered"),
        ("agent.register", json!({"agent_id": "p1", "role": "polecat", "rig_id": "r1"}), "agent_registered"),
        ("agent.register", json!({"agent_id": "ref-r1", "role": "refinery", "rig_id": "r1"}), "agent_registered"),
        ("bead.create", json!({"bead_id": "b1", "title": "Fix login", "rig_id": "r1"}), "bead_created"),
        ("bead.sling", json!({"bead_id": "b2", "title": "Add tests", "rig_id": "r1"}), "bead_created"),
        ("bead.create", json!({"bead_id": "b3", "title": "Docs", "rig_id": "r1"}), "bead_created"),
        ("bead.hook", json!({"bead_id": "b3", "agent_id": "p1"}), "bead_hooked"),
        ("bead.label", json!({"bead_id": "b2", "add": ["ui"]}), "bead_labels_changed"),
        ("bead.depend", json!({"bead_id": "b2", "depends_on": "b1"}), "dependency_added"),
        ("bead.status", json!({"bead_id": "b2", "status": "closed", "reason": "dup"}), "bead_status_changed"),
        (
            "convoy.create",
            json!({"convoy_id": "cv1", "title": "Launch", "staged": true,
                   "beads": [{"bead_id": "c1", "title": "a", "rig_id": "r1"}]}),
            "convoy_created",
        ),
        ("convoy.start", json!({"convoy_id": "cv1"}), "convoy_started"),
        ("agent.checkpoint", json!({"agent_id": "p1", "checkpoint": {"step": 1}}), "agent_checkpointed"),
        ("agent.nudge", json!({"agent_id": "p1", "message": "rebase", "ttl_s": 600}), "nudge_queued"),
        ("mail.send", json!({"to_agent_id": "mayor", "from": "bob", "subject": "hi"}), "mail_sent"),
        ("escalation.raise", json!({"bead_id": "e1", "title": "Disk full", "severity": "high"}), "escalation_raised"),
        ("escalation.ack", json!({"bead_id": "e1", "by": "op"}), "escalation_acknowledged"),
        ("agent.completed", json!({"status": "completed"}), "agent_completed"),
        ("agent.done", json!({"agent_id": "p1", "branch": "fix/docs"}), "agent_done"),
        ("action.result", json!({"action_id": "6:0", "action_type": "dispatch_agent", "ok": true}), "action_result"),
        ("pr.status", json!({"mr_bead_id": "mr-9", "pr_url": "https://x/pull/1", "pr_state": "merged"}), "pr_status_changed"),
        (
            "pr.feedback",
            json!({"mr_bead_id": "mr-9", "pr_url": "https://x/pull/1", "pr_number": 1, "repo": "a/b", "branch": "f",
                   "has_failing_checks": true}),
            "pr_feedback_detected",
        ),
        ("pr.auto_merge", json!({"mr_bead_id": "mr-9", "pr_url": "https://x/pull/1"}), "pr_auto_merge"),
        ("pr.conflict", json!({"mr_bead_id": "mr-9", "pr_url": "https://x/pull/1", "branch": "f"}), "pr_conflict_detected"),
    ];
    let mut last = 0;
    for (command, body, event_type) in steps {
        let (id, seq) = f.ok(t, command, body.clone()).await;
        assert!(seq > last, "{command}: seq {seq} after {last}");
        last = seq;
        let (env, hdrs) = f.stored(seq).await;
        assert_eq!(env.event_type(), event_type, "{command} {body}");
        assert_eq!(env.id, id, "{command}: stored id");
        assert_eq!(env.source, format!("cmd:{command}"));
        if command == "action.result" {
            assert_eq!(id, "t1:r:6:0", "action.result ids are <town>:r:<action_id>");
        } else {
            assert!(is_ulid(&id), "{command}: event id {id} is not a ULID");
        }
        assert_eq!(hdrs.get(headers::NATS_MSG_ID).map(|v| v.as_str()), Some(id.as_str()), "{command}: Nats-Msg-Id");
        assert_eq!(hdrs.get(headers::GASTOWN_EVENT).map(|v| v.as_str()), Some(event_type), "{command}: Gastown-Event");
    }

    // review.request_changes and triage.resolve need reconciler decisions (a dispatch, a triage
    // request): appended directly, so the service's fold is stale and its fenced append refolds.
    append_decision(&f, t, vec![dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).await;
    f.ok(t, "agent.done", json!({"agent_id": "pc-1", "branch": "fix/login"})).await;
    let mr = f.fold(t).await.beads.values().find(|b| b.title == "Review: fix/login").map(|b| b.bead_id.clone()).expect("the MR");
    let (_, seq) = f.ok(t, "bead.hook", json!({"bead_id": mr, "agent_id": "ref-r1"})).await;
    assert_eq!(f.stored(seq).await.0.event_type(), "bead_hooked");
    let (_, seq) = f.ok(t, "review.request_changes", json!({"mr_bead_id": mr, "agent_id": "ref-r1", "body": "rename"})).await;
    assert_eq!(f.stored(seq).await.0.event_type(), "rework_requested");
    append_decision(
        &f,
        t,
        vec![gastown_core::Action::CreateTriageRequest {
            agent_id: "pc-1".into(),
            triage_type: "stuck_agent".into(),
            reason: "GUPP escalation".into(),
            bead_id: "tri-1".into(),
        }],
    )
    .await;
    let (_, seq) = f.ok(t, "triage.resolve", json!({"request_bead_id": "tri-1", "action": "RESTART"})).await;
    assert_eq!(f.stored(seq).await.0.event_type(), "triage_resolved");
    let (_, seq) = f.ok(t, "container.eviction", json!({"reason": "node drain"})).await;
    assert_eq!(f.stored(seq).await.0.event_type(), "container_eviction");

    // A request that changes nothing: already draining.
    let (reply, code) = f.cmd(t, "container.eviction", json!({})).await;
    assert_eq!((reply, code), (json!({"ok": true, "event_id": null, "seq": null, "noop": true}), None));

    assert_eq!(f.metrics.commands.get(&["agent.register", "ok"]), 3);
    assert_eq!(f.metrics.events_appended.get(&["rig_added", "cmd"]), 1);
    assert_eq!(f.metrics.side_effect_results.get(&["dispatch_agent", "ok"]), 1);
    assert_eq!(f.metrics.commands.get(&["container.eviction", "noop"]), 1);
    f.stop().await;
}

#[tokio::test]
async fn validation_errors_answer_their_exact_message_and_status_header() {
    let f = start().await;
    let t = "t2";
    f.ok(t, "rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"})).await;
    f.ok(t, "bead.create", json!({"bead_id": "b1", "title": "x"})).await;
    let before = f.event_types(t).await.len();
    let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
        ("bead.create", json!({"title": "x", "zeta": 1, "alpha": 2}), "400", "bad_request", "unknown field: alpha"),
        ("bead.create", json!({"priority": "low"}), "400", "bad_request", "missing required field: title"),
        (
            "agent.nudge",
            json!({"agent_id": "p1", "message": "m", "mode": "later"}),
            "400",
            "bad_request",
            "invalid mode: must be one of immediate, wait-idle, queue",
        ),
        ("bead.create", json!({"bead_id": "mr-7", "title": "x"}), "400", "bad_request", "id mr-7 is reserved"),
        ("bead.create", json!({"title": "x", "labels": ["gt:convoy"]}), "400", "bad_request", "label gt:convoy is reserved"),
        ("bead.frobnicate", json!({}), "404", "unknown_command", "unknown command: bead.frobnicate"),
        ("bead.create", json!({"bead_id": "b1", "title": "again"}), "409", "conflict", "bead b1 already exists"),
        ("rig.add", json!({"rig_id": "r2", "name": "web", "git_url": "git@x:y"}), "409", "conflict", "rig name web already used"),
    ];
    for (command, body, status, code, message) in cases {
        let (reply, header) = f.cmd(t, command, body.clone()).await;
        assert_eq!(reply, json!({"ok": false, "error": {"code": code, "message": message}}), "{command} {body}");
        assert_eq!(header.as_deref(), Some(status), "{command} {body}: Nats-Service-Error-Code");
    }
    // A body that is not an object, and one over 256 KiB.
    let reply = f.send(t, "bead.create", b"[1,2]".to_vec(), HeaderMap::new()).await;
    let (body, header) = parse(&reply);
    assert_eq!(body["error"]["message"], "invalid body: expected object");
    assert_eq!(header.as_deref(), Some("400"));
    assert_eq!(
        reply.headers.as_ref().and_then(|h| h.get(headers::SERVICE_ERROR)).map(|v| v.as_str().to_owned()).as_deref(),
        Some("invalid body: expected object"),
        "Nats-Service-Error carries the message"
    );
    let big = serde_json::to_vec(&json!({"title": "x".repeat(256 * 1024)})).unwrap();
    let (body, header) = parse(&f.send(t, "bead.create", big, HeaderMap::new()).await);
    assert_eq!((body["error"]["message"].as_str(), header.as_deref()), (Some("payload too large"), Some("400")));
    // A bad town token never reaches validation.
    let (body, header) = parse(&f.send("t$1", "bead.create", b"{}".to_vec(), HeaderMap::new()).await);
    assert_eq!(header.as_deref(), Some("400"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("town_id"), "a bad town token is named: {message}");

    assert_eq!(f.event_types(t).await.len(), before, "a rejected command appends nothing");
    assert_eq!(f.metrics.rejected.get(&["conflict"]), 2);
    assert_eq!(f.metrics.commands.get(&["unknown", "unknown_command"]), 1);

    // The endpoint statistics count the errors ($SRV.STATS).
    let stats = timeout(WAIT, f.client.request("$SRV.STATS.gastown-ingest", "".into())).await.unwrap().unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    let endpoint = &stats["endpoints"][0];
    assert_eq!(endpoint["num_errors"], json!(11), "{stats}");
    assert_eq!(endpoint["num_requests"], json!(13), "{stats}");
    f.stop().await;
}

#[tokio::test]
async fn a_repeated_msg_id_answers_the_original_event_and_appends_nothing() {
    let f = start().await;
    let t = "t3";
    let body = json!({"bead_id": "b1", "title": "Fix login"});
    let (first, code) = f.cmd_with_id(t, "bead.create", body.clone(), Some("req-42")).await;
    assert_eq!(code, None);
    let seq = seq_of(&first);
    assert_eq!(first, json!({"ok": true, "event_id": "t3:c:req-42", "seq": seq}));
    for _ in 0..2 {
        let (again, code) = f.cmd_with_id(t, "bead.create", body.clone(), Some("req-42")).await;
        assert_eq!(code, None);
        assert_eq!(again, json!({"ok": true, "event_id": "t3:c:req-42", "seq": seq, "duplicate": true}));
    }
    // Even a body that would now be refused answers the original.
    let (again, _) = f.cmd_with_id(t, "bead.create", json!({"nonsense": true}), Some("req-42")).await;
    assert_eq!(again["duplicate"], json!(true));
    assert_eq!(f.event_types(t).await, ["bead_created"]);
    let (env, hdrs) = f.stored(seq).await;
    assert_eq!(env.id, "t3:c:req-42");
    assert_eq!(hdrs.get(headers::NATS_MSG_ID).map(|v| v.as_str()), Some("t3:c:req-42"));
    assert_eq!(f.metrics.commands.get(&["bead.create", "duplicate"]), 3);

    // A repeated executor result: `<town>:r:<action_id>` whatever its Nats-Msg-Id.
    let id = TownId::try_from(t).unwrap();
    let result = json!({"action_id": "3:1", "action_type": "stop_agent", "ok": false, "error": "gone"});
    let (r1, _) = f.cmd_with_id(t, "action.result", result.clone(), Some("x-1")).await;
    let (r2, _) = f.cmd_with_id(t, "action.result", result, Some("x-2")).await;
    assert_eq!(r2, json!({"ok": true, "event_id": "t3:r:3:1", "seq": r1["seq"], "duplicate": true}));
    assert_eq!(f.bus.town_events(&id, 0).await.unwrap().len(), 2);
    assert_eq!(f.metrics.side_effect_results.get(&["stop_agent", "failed"]), 1);

    // Events stored behind the service's back (another ingest instance): the cached fold does
    // not know their ids. A fenced command meets the fence first (nats-server 2.15 checks the
    // expected last sequence before the duplicate window), refolds and answers the original.
    let other = Envelope::new("t3:c:req-77", now_ms(), "cmd:bead.create", gastown_core::testing::bead("b9", None));
    let stored_seq = f.bus.append_event(&id, &other, None, None).await.unwrap().seq;
    let (reply, code) = f.cmd_with_id(t, "bead.create", json!({"bead_id": "b9", "title": "x"}), Some("req-77")).await;
    assert_eq!(code, None);
    assert_eq!(reply, json!({"ok": true, "event_id": "t3:c:req-77", "seq": stored_seq, "duplicate": true}));
    // An unfenced one (an executor result) is answered `duplicate` by the broker itself.
    let result = gastown_core::testing::action_result("4:2", "poll_pr", true);
    let other = Envelope::new("t3:r:4:2", now_ms(), "cmd:action.result", result);
    let stored_seq = f.bus.append_event(&id, &other, None, None).await.unwrap().seq;
    let (reply, _) = f.cmd(t, "action.result", json!({"action_id": "4:2", "action_type": "poll_pr", "ok": true})).await;
    assert_eq!(reply, json!({"ok": true, "event_id": "t3:r:4:2", "seq": stored_seq, "duplicate": true}));
    assert_eq!(IngestMetrics::read(&f.metrics.events_duplicates), 1, "the broker's duplicate answer is counted");
    assert_eq!(f.bus.town_events(&id, 0).await.unwrap().len(), 4, "nothing appended for the repeats");
    f.stop().await;
}

#[tokio::test]
async fn racing_hooks_are_applied_once_and_the_loser_is_refused() {
    let f = start().await;
    let t = "t4";
    f.ok(t, "rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"})).await;
    for round in 0..5 {
        let agent = format!("p{round}");
        f.ok(t, "agent.register", json!({"agent_id": agent, "role": "polecat", "rig_id": "r1"})).await;
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        f.ok(t, "bead.create", json!({"bead_id": a, "title": "a", "rig_id": "r1"})).await;
        f.ok(t, "bead.create", json!({"bead_id": b, "title": "b", "rig_id": "r1"})).await;
        // Two clients (two connections) hook the same agent to different beads at once.
        let (ra, rb) = tokio::join!(
            f.cmd_on(&f.client, t, "bead.hook", json!({"bead_id": a, "agent_id": agent})),
            f.cmd_on(&f.client2, t, "bead.hook", json!({"bead_id": b, "agent_id": agent})),
        );
        let oks = [&ra, &rb].iter().filter(|(r, _)| r.get("seq").is_some_and(Value::is_u64)).count();
        assert_eq!(oks, 1, "exactly one hook wins: {ra:?} {rb:?}");
        let loser = if ra.0.get("seq").is_some_and(Value::is_u64) { &rb } else { &ra };
        assert_eq!(loser.1.as_deref(), Some("409"), "the loser is refused: {loser:?}");
        assert!(loser.0["error"]["message"].as_str().unwrap().starts_with(&format!("agent {agent} is hooked to ")));
        // The same hook twice at once: one appends, the other is a no-op.
        f.ok(t, "agent.register", json!({"agent_id": format!("q{round}"), "role": "polecat", "rig_id": "r1"})).await;
        f.ok(t, "bead.create", json!({"bead_id": format!("c{round}"), "title": "c", "rig_id": "r1"})).await;
        let same = json!({"bead_id": format!("c{round}"), "agent_id": format!("q{round}")});
        let (c, d) = tokio::join!(f.cmd_on(&f.client, t, "bead.hook", same.clone()), f.cmd_on(&f.client2, t, "bead.hook", same));
        let noops = [&c, &d].iter().filter(|(r, _)| r["noop"] == json!(true)).count();
        let appended = [&c, &d].iter().filter(|(r, _)| r.get("seq").is_some_and(Value::is_u64)).count();
        assert_eq!((appended, noops), (1, 1), "{c:?} {d:?}");
    }
    let types = f.event_types(t).await;
    assert_eq!(types.iter().filter(|e| *e == "bead_hooked").count(), 10, "one hook per race: {types:?}");
    assert_eq!(f.metrics.commands.get(&["bead.hook", "ok"]), 10);
    let s = f.fold(t).await;
    for round in 0..5 {
        assert!(s.agents[&format!("p{round}")].hook.is_some());
    }
    f.stop().await;
}

#[tokio::test]
async fn a_town_that_keeps_moving_is_answered_busy_and_a_refold_recovers() {
    let f = start_with(CommandsConfig { append_retries: 0, ..CommandsConfig::default() }).await;
    let t = "t5";
    f.ok(t, "rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"})).await;
    f.ok(t, "bead.create", json!({"bead_id": "b1", "title": "x", "rig_id": "r1"})).await;
    // Another writer appends behind the service's back: its fold is one event short.
    append_decision(&f, t, vec![]).await;
    let (reply, code) = f.cmd(t, "bead.status", json!({"bead_id": "b1", "status": "closed"})).await;
    assert_eq!(reply, json!({"ok": false, "error": {"code": "unavailable", "message": "town busy, retry"}}));
    assert_eq!(code.as_deref(), Some("503"));
    // The refusal refolded the town: the retry goes through.
    let (reply, code) = f.cmd(t, "bead.status", json!({"bead_id": "b1", "status": "closed"})).await;
    assert_eq!(code, None, "{reply}");
    f.stop().await;

    let f = start_with(CommandsConfig { append_retries: 1, ..CommandsConfig::default() }).await;
    f.ok(t, "rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"})).await;
    append_decision(&f, t, vec![]).await;
    f.ok(t, "bead.create", json!({"bead_id": "b1", "title": "x", "rig_id": "r1"})).await;
    assert_eq!(f.event_types(t).await, ["rig_added", "reconciled", "bead_created"]);
    f.stop().await;
}

#[tokio::test]
async fn agent_register_resets_the_agents_heartbeat_memory() {
    let f = start().await;
    let t = "t6";
    let (town, agent) = (TownId::try_from(t).unwrap(), gastown_bus::AgentId::try_from("p1").unwrap());
    // An agent that heartbeated before its registration: its memory says alive.
    let heard = gastown_core::heartbeat::AgentMemory {
        alive: gastown_core::heartbeat::Alive::True,
        last_alive_at: Some(5),
        seq: 9,
        ..Default::default()
    };
    f.memory.store_cas(&town, &agent, &heard, 0).await.expect("store M");
    f.ok(t, "rig.add", json!({"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"})).await;
    f.ok(t, "agent.register", json!({"agent_id": "p1", "role": "polecat", "rig_id": "r1"})).await;
    // Read the bucket through a fresh store (no cache).
    let kv = f.bus.kv(gastown_ingest::memory::BUCKET).await.unwrap();
    let fresh = MemoryStore::from_store(kv);
    let (m, revision) = fresh.load(&town, &agent).await.unwrap();
    assert_eq!(m, gastown_core::heartbeat::AgentMemory::default(), "registration resets M");
    assert!(revision > 1, "the reset is a new revision");
    // A refused registration resets nothing.
    f.memory.store_cas(&town, &agent, &heard, revision).await.unwrap();
    let (reply, code) = f.cmd(t, "agent.register", json!({"agent_id": "p1", "role": "polecat", "rig_id": "r1"})).await;
    assert_eq!((reply["error"]["message"].as_str(), code.as_deref()), (Some("agent p1 already exists"), Some("409")));
    assert_eq!(fresh.load(&town, &agent).await.unwrap().0, heard);
    f.stop().await;
}

#[tokio::test]
async fn the_service_answers_ping_info_and_messagepack_bodies() {
    let f = start().await;
    let ping = timeout(WAIT, f.client.request("$SRV.PING.gastown-ingest", "".into())).await.unwrap().unwrap();
    let ping: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "gastown-ingest");
    let info = timeout(WAIT, f.client.request("$SRV.INFO.gastown-ingest", "".into())).await.unwrap().unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["endpoints"][0]["subject"], "gastown.cmd.*.>", "{info}");
    let any_info = timeout(WAIT, f.client.request("$SRV.INFO", "".into())).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&any_info.payload).unwrap()["name"], "gastown-ingest");

    // MessagePack, told apart by Content-Type and by sniffing.
    let body =
        gastown_core::codec::to_msgpack(&json!({"rig_id": "r1", "name": "web", "git_url": "git@example.com:web"})).unwrap();
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::CONTENT_TYPE, headers::MSGPACK);
    let (reply, code) = parse(&f.send("t7", "rig.add", body, hdrs).await);
    assert_eq!(code, None, "{reply}");
    let body = gastown_core::codec::to_msgpack(&json!({"bead_id": "b1", "title": "Fix login"})).unwrap();
    let (reply, code) = parse(&f.send("t7", "bead.create", body, HeaderMap::new()).await);
    assert_eq!(code, None, "{reply}");
    let (env, _) = f.stored(seq_of(&reply)).await;
    let Event::BeadCreated(b) = env.event else { panic!("not bead_created") };
    assert_eq!(b.title, "Fix login");
    f.stop().await;
}

#[tokio::test]
async fn a_foreign_python_client_heartbeats_and_sends_commands() {
    let python = timeout(Duration::from_secs(300), gastown_testkit::python_with_nats())
        .await
        .expect("provisioning the Python venv took too long")
        .expect("a Python with nats-py");
    let f = start().await;
    let hb_cfg = gastown_ingest::heartbeats::HeartbeatsConfig::new("m1", f.bus.config.partitions);
    let hb = tokio::spawn(gastown_ingest::heartbeats::run_heartbeats(
        Arc::clone(&f.bus),
        hb_cfg,
        Arc::clone(&f.memory),
        Arc::clone(&f.metrics),
        f.shutdown.clone(),
    ));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("foreign_client.py");
    let url = f._server.url();
    let out = timeout(Duration::from_secs(60), tokio::process::Command::new(&python).arg(&script).arg(&url).arg("t8").output())
        .await
        .expect("the Python client hung (no reply from the service?)")
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "foreign client failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let commands: Vec<String> = f.event_types("t8").await.into_iter().filter(|e| !e.starts_with("agent_heartbeat")).collect();
    assert_eq!(commands, ["rig_added", "agent_registered", "bead_created"]);
    // The JSON heartbeats reached the filter: p1 is reported alive.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f.event_types("t8").await.iter().any(|e| e == "agent_heartbeat_resumed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent_heartbeat_resumed from the foreign heartbeats (is run_heartbeats pulling?)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.shutdown.cancel();
    timeout(WAIT, hb).await.expect("run_heartbeats did not stop").expect("join").expect("run_heartbeats failed");
    f.stop().await;
}
