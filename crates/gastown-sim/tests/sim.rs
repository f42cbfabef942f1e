//! The simulator against a real nats-server with ingest's command service and heartbeat consumer
//! running in-process: actions are published as the reconciler publishes them
//! (`Bus::publish_action`), and the town events stream is where every effect must show.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use gastown_bus::{Bus, BusConfig, Names, TownId, headers};
use gastown_core::action::ActionMessage;
use gastown_core::codec::{Stored, to_msgpack};
use gastown_ingest::commands::{CommandsConfig, run_commands};
use gastown_ingest::heartbeats::{HeartbeatsConfig, run_heartbeats};
use gastown_ingest::memory::MemoryStore;
use gastown_ingest::{IngestError, IngestMetrics};
use gastown_sim::{FaultKind, FaultRule, Faults, SimConfig, SimError, SimStats, seed_demo};
use gastown_testkit::TestServer;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// The HB stream's max age (and ingest's heartbeat_lost) in these tests: silence shows in ~2 s.
const HB_MAX_AGE: Duration = Duration::from_secs(2);
/// How long a test waits for an effect before naming the fault.
const WAIT: Duration = Duration::from_secs(15);

/// One (event type, data) of a town's stream.
type Ev = (String, Value);

struct Env {
    _server: TestServer,
    bus: Arc<Bus>,
    client: async_nats::Client,
    ingest_stop: CancellationToken,
    ingest: Vec<JoinHandle<Result<(), IngestError>>>,
    sim: Option<Sim>,
}

struct Sim {
    stop: CancellationToken,
    task: JoinHandle<Result<(), SimError>>,
    stats: Arc<SimStats>,
}

fn bus_config() -> BusConfig {
    BusConfig { names: Names::default(), partitions: 32, replicas: 1, hb_max_age: HB_MAX_AGE, max_consumers: 4096 }
}

fn sim_config(url: &str) -> SimConfig {
    SimConfig {
        nats_url: url.to_owned(),
        heartbeat_every: Duration::from_millis(200),
        work_time: Duration::from_secs(1),
        merge_delay: Duration::from_secs(2),
        member_id: "sim-test".to_owned(),
        shutdown_grace: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

/// A server with the streams, ingest (commands and heartbeats) and, when `sim` is given, a simulator.
async fn env(sim: Option<fn(SimConfig) -> SimConfig>, granularity: Duration) -> Env {
    let server = timeout(Duration::from_secs(60), TestServer::start())
        .await
        .expect("nats-server did not start within 60 s (binary install stuck?)")
        .expect("start nats-server");
    let url = server.url();
    let bus = Arc::new(Bus::connect(&url, bus_config()).await.expect("connect the bus"));
    timeout(WAIT, bus.ensure_streams()).await.expect("ensure_streams hung").expect("create streams");
    let memory = Arc::new(MemoryStore::open(&bus).await.expect("open the memory bucket"));
    let metrics = Arc::new(IngestMetrics::default());
    let ingest_stop = CancellationToken::new();
    let mut hb = HeartbeatsConfig::new("ingest-test", 32);
    hb.heartbeat_lost = HB_MAX_AGE;
    hb.granularity = granularity;
    hb.priority_timeout = Duration::from_secs(1);
    hb.standby_delay = Duration::from_secs(2);
    hb.member_heartbeat = Duration::from_millis(300);
    let ingest = vec![
        tokio::spawn(run_commands(
            Arc::clone(&bus),
            CommandsConfig::default(),
            Arc::clone(&memory),
            Arc::clone(&metrics),
            ingest_stop.clone(),
        )),
        tokio::spawn(run_heartbeats(Arc::clone(&bus), hb, memory, metrics, ingest_stop.clone())),
    ];
    let client = async_nats::connect(&url).await.expect("connect a client");
    let sim = sim.map(|f| {
        let stats = Arc::new(SimStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(gastown_sim::run(f(sim_config(&url)), Arc::clone(&stats), stop.clone()));
        Sim { stop, task, stats }
    });
    let env = Env { _server: server, bus, client, ingest_stop, ingest, sim };
    env.wait_ready().await;
    env
}

impl Env {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ping = timeout(Duration::from_millis(500), self.client.request("$SRV.PING.gastown-ingest", "".into())).await;
            if matches!(ping, Ok(Ok(_))) {
                return;
            }
            assert!(Instant::now() < deadline, "the command service never answered $SRV.PING (did run_commands start?)");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stats(&self) -> &SimStats {
        &self.sim.as_ref().expect("no simulator in this test").stats
    }

    async fn publish(&self, town: &str, seq: u64, index: u32, action_type: &str, payload: Value) -> ActionMessage {
        let msg = action(town, seq, index, action_type, payload);
        let published = timeout(WAIT, self.bus.publish_action(&msg, None)).await.expect("publish hung").expect("publish action");
        assert!(!published.duplicate, "action {}:{} published twice", town, msg.action_id);
        msg
    }

    /// Every event of `town`, as (type, data).
    async fn events(&self, town: &str) -> Vec<Ev> {
        let town = TownId::try_from(town).unwrap();
        let stored = timeout(WAIT, self.bus.town_events(&town, 0)).await.expect("reading events hung").expect("read events");
        stored
            .into_iter()
            .filter_map(|(_, s)| match s {
                Stored::Event(env) => Some((env.event.event_type().to_owned(), env.event.data().unwrap())),
                _ => None,
            })
            .collect()
    }

    /// Waits until `pred` holds on the town's events; returns them.
    async fn wait_for(&self, town: &str, what: &str, pred: impl Fn(&[Ev]) -> bool) -> Vec<Ev> {
        let deadline = Instant::now() + WAIT;
        loop {
            let evs = self.events(town).await;
            if pred(&evs) {
                return evs;
            }
            assert!(Instant::now() < deadline, "town {town}: no {what} within {WAIT:?}; events: {evs:#?}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Stops the simulator (it must return promptly and leave no container running), then ingest.
    async fn stop(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.stop.cancel();
            timeout(Duration::from_secs(10), sim.task)
                .await
                .expect("the simulator did not stop within 10 s of shutdown (a loop ignores the token?)")
                .expect("simulator task panicked")
                .expect("simulator returned an error");
            assert_eq!(sim.stats.agents_running.load(Ordering::Relaxed), 0, "containers still running after shutdown");
        }
        self.ingest_stop.cancel();
        for task in self.ingest.drain(..) {
            timeout(Duration::from_secs(10), task).await.expect("ingest did not stop").expect("ingest panicked").expect("ingest");
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn action(town: &str, seq: u64, index: u32, action_type: &str, payload: Value) -> ActionMessage {
    let Value::Object(payload) = payload else { panic!("payload must be an object") };
    ActionMessage {
        v: 1,
        action_id: format!("{seq}:{index}"),
        town: town.to_owned(),
        action_type: action_type.to_owned(),
        decision_seq: seq,
        index,
        at: now_ms(),
        payload,
    }
}

fn polecat_dispatch(agent: &str, bead: &str) -> Value {
    json!({"agent_id": agent, "bead_id": bead, "rig_id": "r1", "create": {"role": "polecat"}, "role": "polecat",
           "name": "Toast", "identity": agent,
           "rig": {"rig_id": "r1", "git_url": "https://github.com/acme/app.git", "default_branch": "main"},
           "bead": {"bead_id": bead, "type": "issue", "title": "Fix the login", "labels": [], "metadata": {}},
           "merge_strategy": "direct",
           "refinery": {"code_review": true, "auto_merge": true, "auto_resolve_pr_feedback": false,
                        "auto_resolve_merge_conflicts": true, "gates": []}})
}

fn refinery_dispatch(mr: &str, strategy: &str) -> Value {
    json!({"agent_id": "ref-r1", "bead_id": mr, "rig_id": "r1", "role": "refinery", "name": "refinery", "identity": "ref-r1",
           "rig": {"rig_id": "r1", "git_url": "https://github.com/acme/app.git", "default_branch": "main"},
           "bead": {"bead_id": mr, "type": "merge_request", "title": "Review: gt/pc-1/b1", "labels": ["gt:merge-request"], "metadata": {}},
           "review": {"branch": "gt/pc-1/b1", "target_branch": "main"},
           "merge_strategy": strategy,
           "refinery": {"code_review": true, "auto_merge": true, "auto_resolve_pr_feedback": false,
                        "auto_resolve_merge_conflicts": true, "gates": []}})
}

fn is(ev: &Ev, ty: &str, key: &str, value: &str) -> bool {
    ev.0 == ty && ev.1.get(key).and_then(Value::as_str) == Some(value)
}

fn position(evs: &[Ev], pred: impl Fn(&Ev) -> bool) -> Option<usize> {
    evs.iter().position(pred)
}

fn count(evs: &[Ev], pred: impl Fn(&Ev) -> bool) -> usize {
    evs.iter().filter(|e| pred(e)).count()
}

fn result_of<'a>(evs: &'a [Ev], action_id: &str) -> Option<&'a Value> {
    evs.iter().find(|e| is(e, "action_result", "action_id", action_id)).map(|e| &e.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatched_polecat_heartbeats_reports_done_once_and_falls_silent_when_stopped() {
    let env = env(Some(|c| c), Duration::from_secs(300)).await;
    let t = "t1";
    let dispatch = env.publish(t, 10, 0, "dispatch_agent", polecat_dispatch("pc-1", "b1")).await;

    let evs = env
        .wait_for(t, "agent_done and action_result 10:0", |evs| {
            position(evs, |e| e.0 == "agent_done").is_some() && result_of(evs, "10:0").is_some()
        })
        .await;
    let resumed = position(&evs, |e| is(e, "agent_heartbeat_resumed", "agent_id", "pc-1")).expect("no agent_heartbeat_resumed");
    let resumed_data = &evs[resumed].1;
    assert_eq!(resumed_data["status"], "running");
    assert!(resumed_data["container_instance_id"].as_str().is_some_and(|i| i.starts_with("sim-test-")), "{resumed_data}");
    let done = position(&evs, |e| is(e, "agent_done", "agent_id", "pc-1")).unwrap();
    let d = &evs[done].1;
    assert_eq!(d["branch"], "gt/pc-1/b1");
    assert_eq!(d["bead_id"], "b1");
    assert_eq!(d["dispatch_id"], "10:0");
    assert!(d.get("pr_url").is_none_or(Value::is_null), "a polecat opens no PR: {d}");
    let result = result_of(&evs, "10:0").unwrap();
    assert_eq!(result["action_type"], "dispatch_agent");
    assert_eq!(result["ok"], true);
    assert_eq!(result["agent_id"], "pc-1");
    assert_eq!(result["bead_id"], "b1");
    let result_pos = position(&evs, |e| is(e, "action_result", "action_id", "10:0")).unwrap();
    assert!(resumed < done && done < result_pos, "expected resumed, done, result in that order: {evs:#?}");

    // The same action id again: once through the stream's duplicate window, once under another
    // Nats-Msg-Id so that the executor itself sees the copy.
    let again = env.bus.publish_action(&dispatch, None).await.expect("publish again");
    assert!(again.duplicate, "the ACTIONS stream should absorb a re-publish with the same Nats-Msg-Id");
    let mut h = HeaderMap::new();
    h.insert(headers::NATS_MSG_ID, "copy-under-another-id");
    h.insert(headers::CONTENT_TYPE, headers::MSGPACK);
    let ack =
        env.bus.js.publish_with_headers("gastown.act.t1.dispatch_agent", h, to_msgpack(&dispatch).unwrap().into()).await.unwrap();
    ack.await.unwrap();
    let deadline = Instant::now() + WAIT;
    while env.stats().actions_duplicate.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "the executor never saw the copy of action 10:0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.stats().containers_started.load(Ordering::Relaxed), 1, "a repeated action id started a second container");

    // Stop: a result, then silence becomes agent_heartbeat_lost{expired}.
    env.publish(t, 11, 0, "stop_agent", json!({"agent_id": "pc-1", "reason": "done"})).await;
    let evs = env
        .wait_for(t, "agent_heartbeat_lost{expired} for pc-1", |evs| {
            evs.iter().any(|e| is(e, "agent_heartbeat_lost", "agent_id", "pc-1") && e.1["cause"] == "expired")
        })
        .await;
    let stop = result_of(&evs, "11:0").expect("no result for stop_agent");
    assert_eq!(stop["ok"], true);
    assert_eq!(stop["details"]["was_running"], true);
    assert_eq!(count(&evs, |e| e.0 == "agent_done"), 1, "the work was reported more than once");
    assert_eq!(count(&evs, |e| e.0 == "action_result" && e.1["action_id"] == "10:0"), 1);
    assert_eq!(env.stats().agents_running.load(Ordering::Relaxed), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refineries_merge_directly_or_through_a_pr_that_the_fake_scm_merges_after_the_delay() {
    let env = env(Some(|c| SimConfig { msgpack_heartbeats: true, ..c }), Duration::from_secs(300)).await;
    env.publish("tp", 20, 0, "dispatch_agent", refinery_dispatch("mr-1", "pr")).await;
    env.publish("td", 20, 0, "dispatch_agent", refinery_dispatch("mr-1", "direct")).await;

    let evs = env.wait_for("tp", "agent_done of the refinery", |evs| result_of(evs, "20:0").is_some()).await;
    assert!(position(&evs, |e| is(e, "agent_heartbeat_resumed", "agent_id", "ref-r1")).is_some(), "msgpack heartbeats not seen");
    let done = &evs[position(&evs, |e| is(e, "agent_done", "agent_id", "ref-r1")).unwrap()].1;
    let pr_url = done["pr_url"].as_str().expect("a pr-strategy refinery reports a pr_url").to_owned();
    assert!(pr_url.starts_with("https://github.com/acme/app/pull/"), "{pr_url}");
    assert_eq!(done["branch"], "gt/pc-1/b1");
    assert_eq!(done["bead_id"], "mr-1");
    assert_eq!(done["dispatch_id"], "20:0");

    let evs = env.wait_for("td", "agent_done of the direct refinery", |evs| result_of(evs, "20:0").is_some()).await;
    let done = &evs[position(&evs, |e| is(e, "agent_done", "agent_id", "ref-r1")).unwrap()].1;
    assert!(done.get("pr_url").is_none_or(Value::is_null), "a direct merge carries no pr_url: {done}");
    assert_eq!(done["branch"], "gt/pc-1/b1");

    // Polled at once: still open.
    let flags = json!({"auto_merge": true, "auto_resolve_pr_feedback": false});
    let opened = Instant::now();
    env.publish("tp", 21, 0, "poll_pr", json!({"bead_id": "mr-1", "pr_url": pr_url, "flags": flags})).await;
    let evs = env.wait_for("tp", "result of poll 21:0", |evs| result_of(evs, "21:0").is_some()).await;
    let poll = result_of(&evs, "21:0").unwrap();
    assert_eq!(poll["ok"], true);
    assert_eq!(poll["bead_id"], "mr-1");
    assert_eq!(poll["details"], json!({"pr_state": "open", "awaiting_approval": false}));
    assert_eq!(count(&evs, |e| e.0 == "pr_status_changed"), 0);

    // After the merge delay: merged.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(opened.elapsed())).await;
    env.publish("tp", 22, 0, "poll_pr", json!({"bead_id": "mr-1", "pr_url": pr_url, "flags": flags})).await;
    let evs = env.wait_for("tp", "result of poll 22:0", |evs| result_of(evs, "22:0").is_some()).await;
    assert_eq!(result_of(&evs, "22:0").unwrap()["details"]["pr_state"], "merged");
    let status = &evs[position(&evs, |e| e.0 == "pr_status_changed").expect("no pr_status_changed")].1;
    assert_eq!(*status, json!({"mr_bead_id": "mr-1", "pr_url": pr_url, "pr_state": "merged"}));

    // merge_pr merges at once, but never outside the rig's repository.
    let merge = |pr: &str, git: &str| json!({"bead_id": "mr-2", "pr_url": pr, "rig_id": "r1", "git_url": git});
    env.publish("tp", 23, 0, "merge_pr", merge("https://github.com/acme/app/pull/99", "https://github.com/acme/app.git")).await;
    env.publish("tp", 23, 1, "merge_pr", merge("https://github.com/evil/app/pull/1", "https://github.com/acme/app.git")).await;
    // Nudges and mail: delivered.
    env.publish("tp", 24, 0, "send_nudge", json!({"agent_id": "ref-r1", "nudge_id": "ndg-1", "tier": "warn", "message": "hi"}))
        .await;
    env.publish("tp", 24, 1, "deliver_nudge", json!({"nudge_id": "ndg-2", "agent_id": "ref-r1"})).await;
    env.publish("tp", 24, 2, "deliver_mail", json!({"bead_id": "msg-1", "agent_id": "ref-r1", "from": "x", "subject": "s"}))
        .await;
    let evs = env
        .wait_for("tp", "results of 23:* and 24:*", |evs| {
            ["23:0", "23:1", "24:0", "24:1", "24:2"].iter().all(|id| result_of(evs, id).is_some())
        })
        .await;
    assert!(evs.iter().any(|e| is(e, "pr_status_changed", "mr_bead_id", "mr-2") && e.1["pr_state"] == "merged"));
    assert_eq!(result_of(&evs, "23:0").unwrap()["ok"], true);
    let refused = result_of(&evs, "23:1").unwrap();
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"], "pull request outside the rig's repository");
    assert_eq!(count(&evs, |e| is(e, "pr_status_changed", "mr_bead_id", "mr-2")), 1);
    let nudge = result_of(&evs, "24:0").unwrap();
    assert_eq!((&nudge["ok"], &nudge["nudge_id"], &nudge["agent_id"]), (&json!(true), &json!("ndg-1"), &json!("ref-r1")));
    assert_eq!(result_of(&evs, "24:1").unwrap()["nudge_id"], "ndg-2");
    let mail = result_of(&evs, "24:2").unwrap();
    assert_eq!((&mail["ok"], &mail["bead_id"]), (&json!(true), &json!("msg-1")));
    let stats = env.stats().snapshot();
    assert_eq!((stats.prs_opened, stats.prs_merged), (1, 2), "{stats}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_shows_its_signature_in_the_events() {
    fn faulty(c: SimConfig) -> SimConfig {
        let faults = Faults { seed: 42, rules: vec![] }
            .with(FaultRule::new(FaultKind::Crash, "crash-*").after(Duration::from_millis(400)))
            .with(FaultRule::new(FaultKind::Exit, "exit-*").after(Duration::from_millis(400)))
            .with(FaultRule::new(FaultKind::Hang, "hang-*").after(Duration::from_millis(800)))
            .with(FaultRule::new(FaultKind::Flap, "flap-*"))
            .with(FaultRule::new(FaultKind::Crash, "never-*").probability(0.0));
        SimConfig { faults, work_time: Duration::from_secs(2), ..c }
    }
    // A short activity granularity so that a moving watermark shows as agent_activity events.
    let env = env(Some(faulty), Duration::from_millis(300)).await;
    let t = "tf";
    for (i, agent) in ["crash-1", "exit-1", "hang-1", "flap-1", "never-1"].into_iter().enumerate() {
        env.publish(t, 30, u32::try_from(i).unwrap(), "dispatch_agent", polecat_dispatch(agent, &format!("b{i}"))).await;
    }
    let lost = |agent: &'static str| move |e: &Ev| is(e, "agent_heartbeat_lost", "agent_id", agent) && e.1["cause"] == "expired";
    let evs = env
        .wait_for(t, "the faults' signatures", |evs| {
            position(evs, lost("crash-1")).is_some()
                && position(evs, lost("exit-1")).is_some()
                && count(evs, |e| is(e, "container_status", "agent_id", "flap-1")) >= 2
                && position(evs, |e| is(e, "agent_done", "agent_id", "flap-1")).is_some()
                && position(evs, |e| is(e, "agent_done", "agent_id", "never-1")).is_some()
        })
        .await;
    let of = |agent: &str| evs.iter().filter(|e| e.1["agent_id"] == agent).map(|e| e.0.as_str()).collect::<Vec<_>>();

    // Crash: seen alive, then silence; never done.
    let crash = of("crash-1");
    assert_eq!(crash.first(), Some(&"agent_heartbeat_resumed"), "{crash:?}");
    assert!(!crash.contains(&"agent_done") && !crash.contains(&"container_status"), "{crash:?}");
    // Exit: exited once (not once per heartbeat), then silence; never done.
    let exit = of("exit-1");
    let exited = evs.iter().filter(|e| is(e, "container_status", "agent_id", "exit-1")).collect::<Vec<_>>();
    assert_eq!(exited.len(), 1, "{exit:?}");
    assert_eq!(exited[0].1["status"], "exited");
    assert_eq!(exited[0].1["exit_reason"], "simulated exit");
    let exited_at = position(&evs, |e| is(e, "container_status", "agent_id", "exit-1")).unwrap();
    assert!(exited_at < position(&evs, lost("exit-1")).unwrap());
    assert!(!exit.contains(&"agent_done"), "{exit:?}");
    // Flap: one container_status{unknown} per swing, and the work still gets reported.
    assert!(evs.iter().filter(|e| is(e, "container_status", "agent_id", "flap-1")).all(|e| e.1["status"] == "unknown"));
    assert!(!of("flap-1").contains(&"agent_heartbeat_lost"));
    // No fault drawn: a normal run.
    assert!(!of("never-1").contains(&"container_status"));

    // Hang: heartbeats go on (no lost), the watermark stops (no more activity), no done.
    let hung_activity = count(&evs, |e| is(e, "agent_activity", "agent_id", "hang-1"));
    assert!(hung_activity >= 1, "the watermark should have moved before the hang: {:?}", of("hang-1"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = env.events(t).await;
    let hang = later.iter().filter(|e| e.1["agent_id"] == "hang-1").map(|e| e.0.as_str()).collect::<Vec<_>>();
    assert_eq!(
        count(&later, |e| is(e, "agent_activity", "agent_id", "hang-1")),
        hung_activity,
        "watermark moved after the hang: {hang:?}"
    );
    assert!(!hang.contains(&"agent_done") && !hang.contains(&"agent_heartbeat_lost"), "{hang:?}");
    assert_eq!(env.stats().faults_injected.load(Ordering::Relaxed), 4);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_demo_creates_the_demo_towns_and_can_run_again() {
    let env = env(None, Duration::from_secs(300)).await;
    let names = Names::default();
    timeout(WAIT, seed_demo(&env.client, &names, 2, 2)).await.expect("seed_demo hung").expect("seed_demo");
    for town in ["demo-1", "demo-2"] {
        let evs = env.events(town).await;
        let types: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(types, ["town_configured", "rig_added", "bead_created", "bead_created", "convoy_created"], "{town}");
        assert_eq!(evs[1].1["git_url"], "https://github.com/acme/app.git");
        assert_eq!(evs[4].1["beads"].as_array().map(Vec::len), Some(3));
        assert_eq!(evs[4].1["merge_mode"], "review-then-land");
    }
    // Again: answered as duplicates, nothing new stored.
    timeout(WAIT, seed_demo(&env.client, &names, 2, 2)).await.expect("second seed_demo hung").expect("second seed_demo");
    assert_eq!(env.events("demo-1").await.len(), 5);
    env.stop().await;
}
