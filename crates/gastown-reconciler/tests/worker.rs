//! The reconciler worker end to end against a real nats-server: decisions, published actions,
//! coalescing, deadlines, and partition handover between workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use gastown_bus::{Bus, BusConfig, TownId, headers};
use gastown_core::action::ActionMessage;
use gastown_core::codec::Stored;
use gastown_core::debug::PassFigures;
use gastown_core::state::Role;
use gastown_core::testing::{Ev, bead_created, dispatch_creating, reconciled, rig_added};
use gastown_core::{Action, Envelope, Event, event::BeadLabelsChanged};
use gastown_reconciler::{ReconcilerConfig, ReconcilerError, ReconcilerMetrics, run};
use gastown_testkit::TestServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 8;

async fn within<T>(secs: u64, fault: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.unwrap_or_else(|_| panic!("timed out after {secs} s: {fault}"))
}

fn wall_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn bus_config() -> BusConfig {
    BusConfig { partitions: PARTITIONS, ..BusConfig::default() }
}

fn town(s: &str) -> TownId {
    TownId::try_from(s).unwrap()
}

async fn bus(url: &str) -> Bus {
    let bus = within(10, "connect", Bus::connect(url, bus_config())).await.unwrap();
    within(20, "ensure streams", bus.ensure_streams()).await.unwrap();
    bus
}

async fn append(bus: &Bus, t: &str, id: &str, e: Ev) -> u64 {
    let env = Envelope::new(format!("{t}:e:{id}"), e.at.unwrap_or_else(wall_ms), e.source, e.event);
    within(5, "append", bus.append_event(&town(t), &env, None, None)).await.unwrap().seq
}

struct Running {
    metrics: Arc<ReconcilerMetrics>,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), ReconcilerError>>,
}

fn start(url: &str, worker: &str) -> Running {
    let mut cfg = ReconcilerConfig::new(url, bus_config(), worker);
    cfg.priority_timeout = Duration::from_millis(1000);
    cfg.standby_delay = Duration::from_millis(1500);
    cfg.member_heartbeat = Duration::from_millis(300);
    cfg.shutdown_grace = Duration::from_secs(5);
    let metrics = Arc::new(ReconcilerMetrics::default());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(cfg, Arc::clone(&metrics), shutdown.clone()));
    Running { metrics, shutdown, handle }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        within(10, "graceful shutdown", self.handle).await.unwrap().unwrap();
    }
    fn passes(&self) -> u64 {
        self.metrics.pass_events.count()
    }
}

/// The stored decisions of a town: (seq, base_seq, at, actions).
async fn decisions(bus: &Bus, t: &str) -> Vec<(u64, u64, i64, Vec<Action>)> {
    let events = within(10, "read the town", bus.town_events(&town(t), 0)).await.unwrap();
    events
        .into_iter()
        .filter_map(|(seq, s)| match s {
            Stored::Event(Envelope { event: Event::Reconciled(r), .. }) => Some((seq, r.base_seq, r.at, r.actions)),
            _ => None,
        })
        .collect()
}

/// Polls `check` every 50 ms until it gives a value.
async fn eventually<T, F, Fut>(secs: u64, fault: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(secs, fault, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn kv_get(store: &kv::Store, key: &str) -> Option<Vec<u8>> {
    store.get(key).await.unwrap().map(|b| b.to_vec())
}

#[tokio::test]
async fn a_slung_bead_is_dispatched_once_and_published_after_its_decision() {
    let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
    let bus = bus(&server.url()).await;
    append(&bus, "t1", "rig", rig_added("r1")).await;
    let bead_seq = append(&bus, "t1", "b1", bead_created("b1", "r1")).await;
    let w = start(&server.url(), "w1");

    let (seq, base, at, actions) =
        eventually(15, "no decision stored", || async { decisions(&bus, "t1").await.into_iter().next() }).await;
    assert_eq!(base, bead_seq, "decided on the last folded event");
    assert!(matches!(actions.first(), Some(Action::DispatchAgent { .. })), "{actions:?}");

    // Exactly one action message, with the fixed id and fields.
    let actions_stream = bus.js.get_stream(bus.names.actions_stream()).await.unwrap();
    let subject = "gastown.act.t1.dispatch_agent";
    let raw =
        eventually(10, "no action published", || async { actions_stream.get_last_raw_message_by_subject(subject).await.ok() })
            .await;
    assert_eq!(raw.headers.get(headers::NATS_MSG_ID).unwrap().as_str(), format!("t1:{seq}:0"));
    assert_eq!(raw.headers.get(headers::GASTOWN_ACTION).unwrap().as_str(), "dispatch_agent");
    let msg: ActionMessage = gastown_core::codec::from_msgpack(&raw.payload).unwrap();
    assert_eq!((msg.v, msg.town.as_str(), msg.action_type.as_str()), (1, "t1", "dispatch_agent"));
    assert_eq!((msg.decision_seq, msg.index, msg.action_id.clone(), msg.at), (seq, 0, format!("{seq}:0"), at));
    assert_eq!(msg.payload.get("bead_id").and_then(|v| v.as_str()), Some("b1"));
    let mut info = actions_stream.info_with_subjects(subject).await.unwrap();
    use futures::StreamExt;
    let counted: Vec<_> = info.by_ref().collect().await;
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].as_ref().unwrap().1, 1, "exactly one message on {subject}");

    // published_through and the pass figures.
    let outbox = bus.kv("outbox").await.unwrap();
    let pt = eventually(5, "published_through not written", || async { kv_get(&outbox, "t1").await }).await;
    assert_eq!(String::from_utf8(pt).unwrap(), seq.to_string());
    let figures = bus.kv("town-metrics").await.unwrap();
    let fig: PassFigures = serde_json::from_slice(&kv_get(&figures, "t1").await.unwrap()).unwrap();
    assert_eq!(fig.owner_worker.as_deref(), Some("w1"));
    assert!(w.metrics.actions.get(&["dispatch_agent"]) >= 1);
    assert_eq!(w.metrics.side_effects_published.get(&["dispatch_agent"]), 1);
    w.stop().await;
    assert_eq!(decisions(&bus, "t1").await.len(), 1, "one settled decision");
}

#[tokio::test]
async fn a_burst_of_events_costs_one_pass() {
    let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
    let bus = bus(&server.url()).await;
    append(&bus, "t2", "rig", rig_added("r1")).await;
    let w = start(&server.url(), "w1");
    eventually(15, "the town was never passed", || async { (w.passes() > 0).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = w.passes();
    let folded = w.metrics.events_folded.load(Ordering::Relaxed);
    let burst = (0..20).map(|i| {
        let e = Ev {
            event: BeadLabelsChanged { bead_id: "none".into(), add: vec![format!("l{i}")], remove: vec![] }.into(),
            at: None,
            id: None,
            source: "cmd:bead.label".into(),
        };
        let env = Envelope::new(format!("t2:e:burst{i}"), wall_ms(), e.source, e.event);
        let bus = &bus;
        async move { bus.append_event(&town("t2"), &env, None, None).await.unwrap() }
    });
    within(5, "burst", futures::future::join_all(burst)).await;
    eventually(5, "the burst was not folded", || async {
        (w.metrics.events_folded.load(Ordering::Relaxed) >= folded + 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.passes() - before, 1, "20 events in a burst cost one pass");
    w.stop().await;
}

#[tokio::test]
async fn a_deadline_is_met_without_any_event() {
    let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
    let bus = bus(&server.url()).await;
    // A polecat dispatched 88.5 s ago that never sent a heartbeat: A1 idles it at dispatch + 90 s.
    let dispatched = wall_ms() - 88_500;
    append(&bus, "t3", "rig", rig_added("r1").at(dispatched)).await;
    append(&bus, "t3", "b1", bead_created("b1", "r1").at(dispatched)).await;
    let mut d = reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(dispatched);
    if let Event::Reconciled(r) = &mut d.event {
        r.at = dispatched;
        r.base_seq = 2;
    }
    let env = Envelope::new(format!("t3:d:2:{dispatched}"), dispatched, d.source, d.event);
    bus.append_event(&town("t3"), &env, None, None).await.unwrap();
    let w = start(&server.url(), "w1");
    let due = dispatched + 90_000;
    let (_, _, at, actions) =
        eventually(10, "the deadline passed unnoticed", || async { decisions(&bus, "t3").await.into_iter().nth(1) }).await;
    assert!(matches!(actions.first(), Some(Action::TransitionAgent { agent_id, .. }) if agent_id == "pc-1"), "{actions:?}");
    assert!(at >= due, "not before the deadline ({} ms early)", due - at);
    assert!(at - due < 1000, "met within a second of the deadline ({} ms late)", at - due);
    // The seeded decision (seq 3) had never been published: the takeover re-published it.
    let actions_stream = bus.js.get_stream(bus.names.actions_stream()).await.unwrap();
    let first = actions_stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.headers.get(headers::NATS_MSG_ID).unwrap().as_str(), "t3:3:0");
    assert_eq!(w.metrics.republished_decisions.load(Ordering::Relaxed), 1);
    w.stop().await;
}

#[tokio::test]
async fn three_workers_share_the_partitions_and_survivors_take_a_dead_ones_towns() {
    let server = within(120, "nats-server did not start", TestServer::start()).await.unwrap();
    let bus = bus(&server.url()).await;
    let towns: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    for t in &towns {
        append(&bus, t, "rig", rig_added("r1")).await;
    }
    let workers = [start(&server.url(), "w0"), start(&server.url(), "w1"), start(&server.url(), "w2")];
    let figures = bus.kv("town-metrics").await.unwrap();
    let owner = |t: String| {
        let figures = figures.clone();
        async move {
            let raw = kv_get(&figures, &t).await?;
            serde_json::from_slice::<PassFigures>(&raw).ok()?.owner_worker
        }
    };
    // Every town settles under some worker and each worker holds a share.
    eventually(20, "towns not owned by all three workers", || async {
        let owned: Vec<u64> = workers.iter().map(|w| w.metrics.towns_owned.load(Ordering::Relaxed)).collect();
        (owned.iter().all(|n| *n > 0) && owned.iter().sum::<u64>() == 12).then_some(())
    })
    .await;
    for t in &towns {
        eventually(10, "a town never passed", || owner(t.clone())).await;
    }
    // Kill w0 (no graceful leave): its towns move to the survivors and keep converging.
    let [w0, w1, w2] = workers;
    let victims: Vec<String> = {
        let mut v = Vec::new();
        for t in &towns {
            if owner(t.clone()).await.as_deref() == Some("w0") {
                v.push(t.clone());
            }
        }
        v
    };
    assert!(!victims.is_empty());
    w0.handle.abort();
    let _ = w0.handle.await;
    for t in &victims {
        append(&bus, t, "b1", bead_created("b1", "r1")).await;
    }
    for t in &victims {
        let (_, _, _, actions) =
            eventually(15, "a dead worker's town was not taken over", || async { decisions(&bus, t).await.into_iter().next() })
                .await;
        assert!(matches!(actions.first(), Some(Action::DispatchAgent { .. })));
        let new_owner = owner(t.clone()).await;
        assert!(matches!(new_owner.as_deref(), Some("w1" | "w2")), "{t} now owned by {new_owner:?}");
    }
    assert_eq!(w1.metrics.towns_owned.load(Ordering::Relaxed) + w2.metrics.towns_owned.load(Ordering::Relaxed), 12);
    w1.stop().await;
    w2.stop().await;
}
