//! The whole town loop on a real nats-server: ingest, a reconciler worker and the simulator run
//! together (issue "Reconciler workers, the simulator, and `gastown up`", item 4). Towns are driven
//! only through commands on the wire; the assertions fold the stored events with gastown-core.

#![allow(clippy::indexing_slicing, reason = "test code: a missing key fails the test")]

use std::sync::Arc;
use std::time::Duration;

use gastown_bus::{Bus, BusConfig, Names, TownId};
use gastown_core::action::{Action, ActionMessage};
use gastown_core::codec::{Stored, from_msgpack};
use gastown_core::state::{BeadStatus, BeadType};
use gastown_core::{Event, TownState, apply_stored};
use gastown_e2e::eventually;
use gastown_ingest::{IngestConfig, IngestMetrics};
use gastown_reconciler::{ReconcilerConfig, ReconcilerMetrics};
use gastown_sim::faults::{FaultKind, FaultRule, Faults};
use gastown_sim::{SimConfig, SimStats};
use gastown_testkit::TestServer;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HB_MAX_AGE: Duration = Duration::from_secs(2);

fn bus_config() -> BusConfig {
    BusConfig { hb_max_age: HB_MAX_AGE, ..BusConfig::default() }
}

/// Ingest, one worker and the simulator, in this process, until dropped.
struct Stack {
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    async fn start(url: &str, faults: Faults) -> anyhow::Result<Self> {
        let token = CancellationToken::new();
        let mut tasks = Vec::new();
        let ingest = IngestConfig {
            nats_url: url.to_owned(),
            bus: bus_config(),
            member_id: "i1".into(),
            activity_granularity: Duration::from_secs(300),
            append_retries: 3,
            cache_towns: 64,
            standby_delay: Duration::from_secs(4),
            priority_timeout: Duration::from_secs(2),
        };
        let t = token.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = gastown_ingest::run(ingest, Arc::new(IngestMetrics::default()), t).await {
                eprintln!("ingest stopped: {e}");
            }
        }));
        let client = async_nats::connect(url).await?;
        eventually(Duration::from_secs(20), "ingest to answer $SRV.PING", || async {
            tokio::time::timeout(Duration::from_millis(500), client.request("$SRV.PING.gastown-ingest", "".into()))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|_| ())
        })
        .await?;
        let mut rec = ReconcilerConfig::new(url.to_owned(), bus_config(), "w1");
        rec.standby_delay = Duration::from_secs(4);
        rec.priority_timeout = Duration::from_secs(2);
        let t = token.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = gastown_reconciler::run(rec, Arc::new(ReconcilerMetrics::default()), t).await {
                eprintln!("reconciler stopped: {e}");
            }
        }));
        let sim = SimConfig {
            nats_url: url.to_owned(),
            names: Names::default(),
            heartbeat_every: Duration::from_millis(500),
            work_time: Duration::from_secs(1),
            merge_delay: Duration::from_secs(1),
            faults,
            ..SimConfig::default()
        };
        let t = token.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = gastown_sim::run(sim, Arc::new(SimStats::default()), t).await {
                eprintln!("sim stopped: {e}");
            }
        }));
        Ok(Self { token, tasks })
    }

    async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

async fn command(client: &async_nats::Client, town: &str, name: &str, body: Value) -> anyhow::Result<Value> {
    let reply = client.request(format!("gastown.cmd.{town}.{name}"), serde_json::to_vec(&body)?.into()).await?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(v["ok"] == true, "{name} answered {v}");
    Ok(v)
}

async fn fold(bus: &Bus, town: &str) -> anyhow::Result<(TownState, Vec<(u64, Stored)>)> {
    let id = TownId::try_from(town)?;
    let events = bus.town_events(&id, 0).await?;
    let mut s = TownState::new(town);
    for (seq, e) in &events {
        apply_stored(&mut s, *seq, e);
    }
    Ok((s, events))
}

async fn seed_rig(client: &async_nats::Client, town: &str) -> anyhow::Result<()> {
    command(client, town, "rig.add", json!({"rig_id": "r1", "name": "app", "git_url": "https://github.com/acme/app.git"}))
        .await?;
    Ok(())
}

fn decisions(events: &[(u64, Stored)]) -> Vec<(u64, Vec<Action>, i64)> {
    events
        .iter()
        .filter_map(|(seq, s)| match s {
            Stored::Event(env) => match &env.event {
                Event::Reconciled(r) => Some((*seq, r.actions.clone(), r.at)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_slung_bead_is_dispatched_worked_reviewed_merged_and_closed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let stack = Stack::start(&server.url(), Faults::none()).await?;
    let client = async_nats::connect(server.url()).await?;
    let bus = Bus::connect(&server.url(), bus_config()).await?;
    seed_rig(&client, "t1").await?;
    command(&client, "t1", "bead.sling", json!({"bead_id": "b1", "title": "Fix login", "rig_id": "r1"})).await?;

    let (state, events) = eventually(Duration::from_secs(60), "b1 to close", || async {
        let (s, ev) = fold(&bus, "t1").await.ok()?;
        (s.beads.get("b1")?.status == BeadStatus::Closed).then_some((s, ev))
    })
    .await?;

    // The dispatch was decided and published in the fixed format, after its decision.
    let ds = decisions(&events);
    let (dseq, actions, at) = ds
        .iter()
        .find(|(_, a, _)| a.iter().any(|x| matches!(x, Action::DispatchAgent { bead_id, .. } if bead_id == "b1")))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no dispatch of b1 among {ds:?}"))?;
    let index = actions.iter().position(|x| matches!(x, Action::DispatchAgent { .. })).unwrap_or(0);
    let stream = async_nats::jetstream::new(client.clone()).get_stream("GASTOWN_ACTIONS").await?;
    let msg = stream.get_last_raw_message_by_subject("gastown.act.t1.dispatch_agent").await?;
    let published: ActionMessage = from_msgpack(&msg.payload)?;
    assert_eq!(published.town, "t1");
    assert_eq!(published.action_type, "dispatch_agent");
    assert!(published.decision_seq >= dseq, "the message follows its stored decision");
    let first: ActionMessage = {
        let mut found = None;
        for seq in 1..=msg.sequence {
            if let Ok(m) = stream.get_raw_message(seq).await
                && m.subject.as_str() == "gastown.act.t1.dispatch_agent"
            {
                found = Some(from_msgpack::<ActionMessage>(&m.payload)?);
                break;
            }
        }
        found.ok_or_else(|| anyhow::anyhow!("no dispatch message stored"))?
    };
    assert_eq!(first.action_id, format!("{dseq}:{index}"));
    assert_eq!(first.decision_seq, dseq);
    assert_eq!(first.at, at);
    assert_eq!(first.payload.get("bead").and_then(|b| b.get("title")), Some(&json!("Fix login")));
    assert_eq!(first.payload.get("role"), Some(&json!("polecat")));

    // The polecat's work became a merge request, the refinery was dispatched on it, and it merged.
    let mr = state
        .beads
        .values()
        .find(|b| b.bead_type == BeadType::MergeRequest && b.meta_str("source_bead_id") == Some("b1"))
        .ok_or_else(|| anyhow::anyhow!("no MR for b1"))?;
    assert_eq!(mr.status, BeadStatus::Closed, "the MR merged");
    assert!(
        ds.iter().any(|(_, a, _)| a.iter().any(
            |x| matches!(x, Action::DispatchAgent { agent_id, bead_id, .. } if agent_id == "ref-r1" && *bead_id == mr.bead_id)
        )),
        "the refinery was dispatched on {}",
        mr.bead_id
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_convoy_of_three_beads_lands() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let stack = Stack::start(&server.url(), Faults::none()).await?;
    let client = async_nats::connect(server.url()).await?;
    let bus = Bus::connect(&server.url(), bus_config()).await?;
    seed_rig(&client, "t2").await?;
    command(&client, "t2", "town.config", json!({"max_polecats_per_rig": 3})).await?;
    command(
        &client,
        "t2",
        "convoy.create",
        json!({"convoy_id": "cv1", "title": "Release", "merge_mode": "review-then-land", "beads": [
            {"bead_id": "c1", "title": "one", "rig_id": "r1"},
            {"bead_id": "c2", "title": "two", "rig_id": "r1"},
            {"bead_id": "c3", "title": "three", "rig_id": "r1", "depends_on": ["c1"]}]}),
    )
    .await?;
    let state = eventually(Duration::from_secs(90), "cv1 to land", || async {
        let (s, _) = fold(&bus, "t2").await.ok()?;
        (s.beads.get("cv1")?.status == BeadStatus::Closed).then_some(s)
    })
    .await?;
    let cv = state.beads.get("cv1").and_then(|b| b.convoy.clone()).ok_or_else(|| anyhow::anyhow!("cv1 has no convoy record"))?;
    assert!(cv.landed_at.is_some(), "landed");
    assert!(cv.landing_mr_attempts >= 1, "through a landing MR");
    for b in ["c1", "c2", "c3"] {
        assert_eq!(state.beads.get(b).map(|x| x.status), Some(BeadStatus::Closed), "{b} closed");
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_crashed_agent_is_idled_after_silence_and_its_bead_redispatched_with_backoff() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let faults = Faults::none().with(FaultRule::new(FaultKind::Crash, "pc-1").after(Duration::from_millis(600)));
    let stack = Stack::start(&server.url(), faults).await?;
    let client = async_nats::connect(server.url()).await?;
    let bus = Bus::connect(&server.url(), bus_config()).await?;
    seed_rig(&client, "t3").await?;
    command(&client, "t3", "bead.sling", json!({"bead_id": "b1", "title": "Fix login", "rig_id": "r1"})).await?;

    // heartbeat_lost is a code constant (90 s): the agent is idled 90 s after its last sign of life.
    let events = eventually(Duration::from_secs(150), "a second dispatch of b1", || async {
        let (_, ev) = fold(&bus, "t3").await.ok()?;
        let n = decisions(&ev)
            .iter()
            .flat_map(|(_, a, _)| a.iter())
            .filter(|x| matches!(x, Action::DispatchAgent { bead_id, .. } if bead_id == "b1"))
            .count();
        (n >= 2).then_some(ev)
    })
    .await?;
    let ds = decisions(&events);
    let dispatch_times: Vec<i64> = ds
        .iter()
        .filter(|(_, a, _)| a.iter().any(|x| matches!(x, Action::DispatchAgent { bead_id, .. } if bead_id == "b1")))
        .map(|(_, _, at)| *at)
        .collect();
    let idled_at = ds
        .iter()
        .find(|(_, a, _)| a.iter().any(|x| matches!(x, Action::TransitionAgent { agent_id, reason, .. } if agent_id == "pc-1" && reason == "heartbeat lost")))
        .map(|(_, _, at)| *at)
        .ok_or_else(|| anyhow::anyhow!("pc-1 was never idled for a lost heartbeat: {ds:?}"))?;
    let (first, second) = (dispatch_times[0], dispatch_times[1]);
    assert!(idled_at - first >= 90_000, "idled only after heartbeat_lost of silence");
    assert!(second >= idled_at, "re-dispatched after the agent was idled");
    assert!(second - first >= 30_000, "the re-dispatch respects backoff(1) = 30 s");
    let lost = events
        .iter()
        .any(|(_, s)| matches!(s, Stored::Event(e) if matches!(&e.event, Event::AgentHeartbeatLost(l) if l.agent_id == "pc-1")));
    assert!(lost, "the silence became agent_heartbeat_lost through the broker's expiry marker");
    stack.stop().await;
    Ok(())
}
