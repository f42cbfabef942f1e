//! The heartbeat consumer against a real nats-server: heartbeats published as agent containers
//! publish them (a plain JetStream publish to `gastown.hb.<town>.<agent>`), events read back from
//! the town's events subject (DOMAIN §E5, ARCHITECTURE §5).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context};
use futures::TryStreamExt;
use gastown_bus::{AgentId, Bus, BusConfig, TownId, headers};
use gastown_core::codec::{Stored, to_msgpack};
use gastown_core::event::ContainerState;
use gastown_core::heartbeat::{Alive, Heartbeat};
use gastown_ingest::heartbeats::{HeartbeatsConfig, run_heartbeats};
use gastown_ingest::memory::MemoryStore;
use gastown_ingest::{IngestError, IngestMetrics};
use gastown_testkit::TestServer;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 32;
/// The partition consumers' pin timeout in these tests.
const PIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The standby delay in these tests (longer than the pin timeout).
const STANDBY_DELAY: Duration = Duration::from_secs(2);
/// How long a test waits for the consumer to drain before it names the fault.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// A server, the streams, an admin bus and a foreign publisher.
struct Env {
    server: TestServer,
    config: BusConfig,
    admin: Bus,
    js: Context,
}

async fn env(hb_max_age: Duration) -> Env {
    let server = timeout(Duration::from_secs(60), TestServer::start())
        .await
        .expect("nats-server did not start within 60 s (binary install stuck?)")
        .expect("nats-server start");
    let config = BusConfig { hb_max_age, ..BusConfig::default() };
    let admin = timeout(Duration::from_secs(10), Bus::connect(&server.url(), config.clone()))
        .await
        .expect("connect timed out")
        .expect("connect");
    timeout(Duration::from_secs(10), admin.ensure_streams()).await.expect("ensure_streams timed out").expect("ensure_streams");
    let client = async_nats::connect(server.url()).await.expect("publisher connect");
    Env { server, config, admin, js: jetstream::new(client) }
}

/// One ingest instance (its own connection), running `run_heartbeats`.
struct Ingest {
    token: CancellationToken,
    handle: JoinHandle<Result<(), IngestError>>,
    metrics: Arc<IngestMetrics>,
    memory: Arc<MemoryStore>,
}

async fn start_ingest(env: &Env, member: &str, heartbeat_lost: Duration) -> Ingest {
    let bus = Arc::new(Bus::connect(&env.server.url(), env.config.clone()).await.expect("ingest connect"));
    let memory = Arc::new(MemoryStore::open(&bus).await.expect("memory bucket"));
    let metrics = Arc::new(IngestMetrics::default());
    let mut cfg = HeartbeatsConfig::new(member, PARTITIONS);
    cfg.heartbeat_lost = heartbeat_lost;
    cfg.priority_timeout = PIN_TIMEOUT;
    cfg.standby_delay = STANDBY_DELAY;
    cfg.member_heartbeat = Duration::from_millis(300);
    let token = CancellationToken::new();
    let handle = tokio::spawn(run_heartbeats(bus, cfg, Arc::clone(&memory), Arc::clone(&metrics), token.clone()));
    Ingest { token, handle, metrics, memory }
}

impl Ingest {
    /// Graceful stop: finish the message in hand and return.
    async fn stop(self) {
        self.token.cancel();
        timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("ingest did not stop within 10 s of shutdown (a loop ignores the token?)")
            .expect("ingest task panicked")
            .expect("ingest returned an error");
    }

    /// A crash: every task dropped where it stands.
    async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    fn heartbeats(&self) -> u64 {
        self.metrics.heartbeats.total()
    }
}

fn town(s: &str) -> TownId {
    TownId::try_from(s).unwrap()
}

fn agent(s: &str) -> AgentId {
    AgentId::try_from(s).unwrap()
}

fn running() -> Heartbeat {
    Heartbeat::new(ContainerState::Running).on("c1").watermark("tool_use", 1_000, &["bash"])
}

/// Publishes raw bytes on a subject as an agent container does; returns the stream sequence.
async fn publish_raw(js: &Context, subject: String, body: Vec<u8>, content_type: Option<&str>) -> u64 {
    let mut h = HeaderMap::new();
    if let Some(ct) = content_type {
        h.insert(headers::CONTENT_TYPE, ct);
    }
    let ack =
        timeout(Duration::from_secs(5), async { js.publish_with_headers(subject, h, body.into()).await.expect("publish").await })
            .await
            .expect("heartbeat publish not acked within 5 s (HB stream missing?)")
            .expect("publish ack");
    ack.sequence
}

/// Publishes a heartbeat (JSON or MessagePack, alternating by the caller's choice).
async fn publish(env: &Env, t: &str, a: &str, hb: &Heartbeat, msgpack: bool) -> u64 {
    let subject = env.admin.names.hb(&town(t), &agent(a));
    if msgpack {
        publish_raw(&env.js, subject, to_msgpack(hb).unwrap(), Some(headers::MSGPACK)).await
    } else {
        publish_raw(&env.js, subject, serde_json::to_vec(hb).unwrap(), None).await
    }
}

/// A stored event: (id, type, data, at).
type Ev = (String, String, serde_json::Value, i64);

/// The events of a town, in order.
async fn events(env: &Env, t: &str) -> Vec<Ev> {
    let stored = timeout(Duration::from_secs(10), env.admin.town_events(&town(t), 0))
        .await
        .expect("reading the town's events timed out")
        .expect("town_events");
    stored
        .into_iter()
        .map(|(_, s)| match s {
            Stored::Event(env) => (env.id.clone(), env.event_type().to_owned(), env.event.data().unwrap(), env.at),
            other => panic!("undecodable event stored: {other:?}"),
        })
        .collect()
}

fn ids(events: &[Ev]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.0.clone()).collect();
    ids.sort();
    ids
}

fn id(t: &str, a: &str, seq: u64, event_type: &str) -> String {
    format!("{t}:h:{a}:{seq}:{event_type}")
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every heartbeat stored has been processed and acked by some ingest instance.
async fn drained(env: &Env) -> bool {
    let Ok(stream) = env.js.get_stream(env.admin.names.hb_stream()).await else { return false };
    let Ok(infos) = stream.consumers().try_collect::<Vec<_>>().await else { return false };
    let pending = infos.iter().map(|i| i.num_pending + i.num_ack_pending as u64).sum::<u64>();
    infos.len() == PARTITIONS as usize && pending == 0
}

async fn wait_drained(env: &Env) {
    eventually("the heartbeat consumers draining (ingest not pulling, or a message never acked)", DRAIN_LIMIT, || drained(env))
        .await;
}

/// Waits until every partition consumer exists and has a pull waiting: from then on, ingest sees
/// each heartbeat before the next one of the same agent replaces it (the stream keeps one per
/// agent), unless it lags.
async fn wait_ready(env: &Env) {
    eventually("ingest pulling every partition", DRAIN_LIMIT, || async {
        let Ok(stream) = env.js.get_stream(env.admin.names.hb_stream()).await else { return false };
        let Ok(infos) = stream.consumers().try_collect::<Vec<_>>().await else { return false };
        infos.len() == PARTITIONS as usize && infos.iter().all(|i| i.num_waiting > 0)
    })
    .await;
}

async fn wait_events(env: &Env, t: &str, n: usize) {
    eventually(&format!("{n} events in town {t}"), DRAIN_LIMIT, || async { events(env, t).await.len() >= n }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_running_heartbeats_append_nothing_after_the_first_resumed() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let agents: Vec<String> = (0..20).map(|i| format!("pc-{i}")).collect();
    let mut first = Vec::new();
    for a in &agents {
        first.push(id("t1", a, publish(&env, "t1", a, &running(), false).await, "agent_heartbeat_resumed"));
    }
    wait_events(&env, "t1", 20).await;
    wait_drained(&env).await;
    let before = ingest.heartbeats();
    for round in 0..60 {
        for a in &agents {
            publish(&env, "t1", a, &running(), round % 2 == 0).await;
        }
    }
    wait_drained(&env).await;
    let evs = events(&env, "t1").await;
    first.sort();
    assert_eq!(ids(&evs), first, "only each agent's first heartbeat appends (its resumed)");
    let seen = ingest.heartbeats() - before;
    assert!(seen > 0, "ingest saw none of the 1200 steady heartbeats");
    assert_eq!(IngestMetrics::read(&ingest.metrics.heartbeats_filtered), seen, "every steady heartbeat is counted as filtered");
    assert_eq!(ingest.metrics.events_appended.get(&["agent_heartbeat_resumed", "hb"]), 20);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_non_alive_heartbeat_of_an_unseen_agent_appends_lost_and_its_status() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let seq = publish(&env, "t2", "pc-1", &Heartbeat::new(ContainerState::Exited).exit_reason("oom"), true).await;
    wait_events(&env, "t2", 2).await;
    wait_drained(&env).await;
    let evs = events(&env, "t2").await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    let (lost, status) = (&evs[0], &evs[1]);
    assert_eq!(lost.0, id("t2", "pc-1", seq, "agent_heartbeat_lost"));
    assert_eq!(lost.2["cause"], "not_alive");
    assert_eq!(status.0, id("t2", "pc-1", seq, "container_status"));
    assert_eq!((status.2["status"].as_str(), status.2["exit_reason"].as_str()), (Some("exited"), Some("oom")));
    assert_eq!(ingest.metrics.heartbeats.get(&["exited"]), 1);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_running_status_changes_append_one_container_status_per_change() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let resumed = publish(&env, "t3", "pc-1", &running(), false).await;
    let mut expected = vec![id("t3", "pc-1", resumed, "agent_heartbeat_resumed")];
    for status in [ContainerState::Unknown, ContainerState::Stopping, ContainerState::Unknown] {
        // The stream keeps one heartbeat per agent: let ingest see each before the next.
        wait_drained(&env).await;
        let first = publish(&env, "t3", "pc-1", &Heartbeat::new(status), false).await;
        wait_drained(&env).await;
        publish(&env, "t3", "pc-1", &Heartbeat::new(status), true).await;
        expected.push(id("t3", "pc-1", first, "container_status"));
    }
    let evs = events(&env, "t3").await;
    expected.sort();
    assert_eq!(ids(&evs), expected, "A→B→A among non-running statuses: three container_status, no lost");
    let statuses: Vec<&str> = evs.iter().filter(|e| e.1 == "container_status").map(|e| e.2["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["unknown", "stopping", "unknown"]);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_appends_one_expired_lost_and_a_later_heartbeat_one_resumed() {
    let lost_after = Duration::from_secs(2);
    let env = env(lost_after).await;
    let ingest = start_ingest(&env, "m1", lost_after).await;
    wait_ready(&env).await;
    let first = publish(&env, "t4", "pc-1", &running(), false).await;
    wait_events(&env, "t4", 1).await;
    let silent_since = Instant::now();
    eventually("agent_heartbeat_lost after silence", Duration::from_secs(10), || async {
        events(&env, "t4").await.iter().any(|e| e.1 == "agent_heartbeat_lost")
    })
    .await;
    assert!(silent_since.elapsed() >= Duration::from_millis(1500), "lost reported before the agent was silent for 2 s");
    // Longer silence adds nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let evs = events(&env, "t4").await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[1].2["cause"], "expired");
    let again = publish(&env, "t4", "pc-1", &running(), true).await;
    wait_events(&env, "t4", 3).await;
    wait_drained(&env).await;
    let evs = events(&env, "t4").await;
    let types: Vec<&str> = evs.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(types, ["agent_heartbeat_resumed", "agent_heartbeat_lost", "agent_heartbeat_resumed"]);
    assert_eq!(evs[0].0, id("t4", "pc-1", first, "agent_heartbeat_resumed"));
    assert_eq!(evs[2].0, id("t4", "pc-1", again, "agent_heartbeat_resumed"));
    ingest.stop().await;
}

/// The towns and agents of the restart and handover scenarios, and the events an undisturbed
/// run stores for them.
struct Fleet {
    towns: Vec<String>,
    expected: Vec<(String, String)>,
    /// The status `pc-2` reports.
    pc2: ContainerState,
}

impl Fleet {
    fn new(towns: usize) -> Self {
        Self { towns: (0..towns).map(|i| format!("f{i}")).collect(), expected: Vec::new(), pc2: ContainerState::Running }
    }

    /// First heartbeats: `pc-1`, `pc-2` running (resumed), `pc-3` unknown (lost + status).
    async fn start(&mut self, env: &Env) {
        for t in &self.towns {
            for a in ["pc-1", "pc-2"] {
                let seq = publish(env, t, a, &running(), false).await;
                self.expected.push((t.clone(), id(t, a, seq, "agent_heartbeat_resumed")));
            }
            let seq = publish(env, t, "pc-3", &Heartbeat::new(ContainerState::Unknown), true).await;
            self.expected.push((t.clone(), id(t, "pc-3", seq, "agent_heartbeat_lost")));
            self.expected.push((t.clone(), id(t, "pc-3", seq, "container_status")));
        }
    }

    /// `rounds` rounds of steady heartbeats: nothing to append.
    async fn steady(&self, env: &Env, rounds: usize) {
        for r in 0..rounds {
            for t in &self.towns {
                publish(env, t, "pc-1", &running(), r % 2 == 0).await;
                let pc2 = if self.pc2 == ContainerState::Running { running() } else { Heartbeat::new(self.pc2) };
                publish(env, t, "pc-2", &pc2, r % 2 == 1).await;
                publish(env, t, "pc-3", &Heartbeat::new(ContainerState::Unknown), false).await;
            }
        }
    }

    /// `pc-2` of every town stops: one container_status each.
    async fn transition(&mut self, env: &Env) {
        for t in &self.towns {
            let seq = publish(env, t, "pc-2", &Heartbeat::new(ContainerState::Stopping), false).await;
            self.expected.push((t.clone(), id(t, "pc-2", seq, "container_status")));
        }
        self.pc2 = ContainerState::Stopping;
    }

    async fn check(&self, env: &Env) {
        for t in &self.towns {
            let mut want: Vec<String> = self.expected.iter().filter(|(town, _)| town == t).map(|(_, id)| id.clone()).collect();
            want.sort();
            eventually(&format!("the undisturbed run's events in {t}"), DRAIN_LIMIT, || async {
                ids(&events(env, t).await).len() >= want.len()
            })
            .await;
            assert_eq!(ids(&events(env, t).await), want, "town {t}: exactly the event ids of an undisturbed run");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_steady_statuses_stores_exactly_the_events_of_an_undisturbed_run() {
    let env = env(Duration::from_secs(90)).await;
    let mut fleet = Fleet::new(4);
    let first = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    fleet.start(&env).await;
    fleet.steady(&env, 3).await;
    fleet.transition(&env).await;
    wait_drained(&env).await;
    fleet.check(&env).await;
    first.kill().await;
    // Let the dead instance's pulls expire, then keep heartbeating across the gap.
    tokio::time::sleep(PIN_TIMEOUT).await;
    fleet.steady(&env, 3).await;
    let second = start_ingest(&env, "m1-restarted", Duration::from_secs(90)).await;
    fleet.steady(&env, 3).await;
    wait_drained(&env).await;
    assert!(second.heartbeats() > 0, "the restarted instance processed nothing");
    fleet.check(&env).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_to_a_second_replica_stores_exactly_the_events_of_an_undisturbed_run() {
    let env = env(Duration::from_secs(90)).await;
    let mut fleet = Fleet::new(8);
    let one = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    let two = start_ingest(&env, "m2", Duration::from_secs(90)).await;
    // Let both see each other and settle their shares.
    tokio::time::sleep(STANDBY_DELAY + PIN_TIMEOUT).await;
    wait_ready(&env).await;
    fleet.start(&env).await;
    fleet.steady(&env, 2).await;
    wait_drained(&env).await;
    fleet.check(&env).await;
    let (by_one, by_two) = (one.heartbeats(), two.heartbeats());
    assert!(by_one > 0 && by_two > 0, "both replicas should own partitions: {by_one} / {by_two}");
    one.stop().await;
    fleet.steady(&env, 2).await;
    fleet.transition(&env).await;
    wait_drained(&env).await;
    fleet.check(&env).await;
    assert!(two.heartbeats() > by_two + 8, "the survivor took over the stopped replica's partitions");
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_missed_while_no_ingest_ran_is_found_at_start_up() {
    let env = env(Duration::from_secs(90)).await;
    let first = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let s1 = publish(&env, "t9", "pc-1", &running(), false).await;
    wait_drained(&env).await;
    publish(&env, "t9", "pc-1", &running(), false).await;
    wait_drained(&env).await;
    first.kill().await;
    // The agent's heartbeat and its marker are gone by the time ingest comes back.
    let stream = env.js.get_stream(env.admin.names.hb_stream()).await.unwrap();
    let subject = env.admin.names.hb_agent_stored_filter(&town("t9"), &agent("pc-1"));
    stream.purge().filter(subject.clone()).await.unwrap();
    let held = stream.get_last_raw_message_by_subject(&subject).await;
    assert!(held.is_err(), "the purge left a message on the subject: {:?}", held.map(|m| m.headers));
    let second = start_ingest(&env, "m2", Duration::from_secs(90)).await;
    wait_events(&env, "t9", 2).await;
    let evs = events(&env, "t9").await;
    assert_eq!(
        ids(&evs),
        [id("t9", "pc-1", s1, "agent_heartbeat_lost"), id("t9", "pc-1", s1, "agent_heartbeat_resumed")],
        "lost under the stored M.seq (the last store point)"
    );
    assert_eq!(evs[1].2["cause"], "expired");
    assert_eq!(evs[1].3 - evs[0].3, 90_000, "at = the stored last_alive_at + heartbeat_lost");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_rides_out_a_broker_restart() {
    let mut env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    publish(&env, "t10", "pc-1", &running(), false).await;
    wait_events(&env, "t10", 1).await;
    timeout(Duration::from_secs(30), env.server.restart()).await.expect("restart timed out").expect("restart");
    // Publishing retries until the publisher has reconnected.
    let seq = timeout(Duration::from_secs(20), async {
        loop {
            let subject = env.admin.names.hb(&town("t10"), &agent("pc-1"));
            let body = serde_json::to_vec(&Heartbeat::new(ContainerState::Stopping)).unwrap();
            if let Ok(ack) = env.js.publish(subject, body.into()).await
                && let Ok(ack) = ack.await
            {
                break ack.sequence;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the publisher did not reconnect within 20 s");
    wait_events(&env, "t10", 2).await;
    wait_drained(&env).await;
    let evs = events(&env, "t10").await;
    assert_eq!(evs[1].0, id("t10", "pc-1", seq, "container_status"));
    assert_eq!(evs.len(), 2, "{evs:?}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_reset_makes_the_next_heartbeat_of_an_alive_agent_resume() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let first = publish(&env, "t7", "pc-1", &running(), false).await;
    publish(&env, "t7", "pc-1", &running(), false).await;
    wait_drained(&env).await;
    assert_eq!(events(&env, "t7").await.len(), 1);
    // The command service's instance (its own store over the same bucket) appends
    // agent_registered and resets M.
    let commands = MemoryStore::open(&env.admin).await.unwrap();
    commands.reset_for_registration(&town("t7"), &agent("pc-1")).await.unwrap();
    eventually("the owner seeing the reset through its watch", Duration::from_secs(5), || async {
        ingest.memory.cached(&town("t7"), &agent("pc-1")).is_some_and(|(m, _)| m.alive == Alive::Unknown)
    })
    .await;
    let next = publish(&env, "t7", "pc-1", &running(), true).await;
    wait_events(&env, "t7", 2).await;
    wait_drained(&env).await;
    let evs = events(&env, "t7").await;
    assert_eq!(
        ids(&evs),
        [id("t7", "pc-1", first, "agent_heartbeat_resumed"), id("t7", "pc-1", next, "agent_heartbeat_resumed")]
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heartbeats_append_nothing_and_are_counted() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let subject = |a: &str| format!("{}.hb.t8.{a}", env.admin.names.prefix());
    publish_raw(&env.js, subject("b1"), br#"{"status": "running""#.to_vec(), None).await;
    publish_raw(&env.js, subject("b2"), b"\xc1\x00".to_vec(), Some(headers::MSGPACK)).await;
    publish_raw(&env.js, subject("b3"), br#"{"status":"sleeping"}"#.to_vec(), Some(headers::JSON)).await;
    publish_raw(&env.js, subject(&"a".repeat(65)), br#"{"status":"running"}"#.to_vec(), None).await;
    let pad = "x".repeat(16 * 1024);
    publish_raw(&env.js, subject("b5"), format!(r#"{{"status":"running","pad":"{pad}"}}"#).into_bytes(), None).await;
    let ok = publish(&env, "t8", "ok", &running(), false).await;
    wait_events(&env, "t8", 1).await;
    wait_drained(&env).await;
    assert_eq!(ids(&events(&env, "t8").await), [id("t8", "ok", ok, "agent_heartbeat_resumed")]);
    let rejected = &ingest.metrics.rejected;
    for reason in ["bad_json", "bad_msgpack", "unknown_status", "bad_id", "too_large"] {
        assert_eq!(rejected.get(&[reason]), 1, "rejected{{{reason}}}: {:?}", rejected.snapshot());
    }
    assert_eq!(rejected.total(), 5);
    assert_eq!(ingest.metrics.heartbeats.get(&["running"]), 1, "rejected heartbeats are not counted as received");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_of_the_heartbeat_consumer() {
    let env = env(Duration::from_secs(90)).await;
    let ingest = start_ingest(&env, "m1", Duration::from_secs(90)).await;
    wait_ready(&env).await;
    let agents: Vec<(TownId, AgentId)> = (0..200).map(|i| (town(&format!("tp{}", i % 10)), agent(&format!("pc-{i}")))).collect();
    let body = serde_json::to_vec(&running()).unwrap();
    let start = Instant::now();
    let mut published = 0_u64;
    for _round in 0..100 {
        let mut acks = Vec::with_capacity(agents.len());
        for (t, a) in &agents {
            acks.push(env.js.publish(env.admin.names.hb(t, a), body.clone().into()).await.expect("publish"));
        }
        for ack in acks {
            timeout(Duration::from_secs(5), ack).await.expect("publish ack timed out").expect("publish ack");
            published += 1;
        }
    }
    let publish_time = start.elapsed();
    wait_drained(&env).await;
    let elapsed = start.elapsed();
    let processed = ingest.heartbeats();
    eprintln!(
        "heartbeat ingest: {published} published in {publish_time:?}, {processed} processed (the stream keeps one per agent), \
         drained after {elapsed:?}: {:.0} heartbeats/s processed",
        processed as f64 / elapsed.as_secs_f64()
    );
    let resumed: usize = {
        let mut n = 0;
        for i in 0..10 {
            n += events(&env, &format!("tp{i}")).await.len();
        }
        n
    };
    assert_eq!(resumed, 200, "one resumed per agent, nothing else");
    ingest.stop().await;
}
