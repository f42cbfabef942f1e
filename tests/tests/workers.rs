//! Reconciler workers as real processes: two `gastown reconciler` processes share the partitions,
//! and after one is killed with SIGKILL the survivor takes its towns over and keeps them
//! converging (issue "Reconciler workers, the simulator, and `gastown up`", item 4).

#![allow(clippy::indexing_slicing, reason = "test code: a missing key fails the test")]

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use gastown_bus::{Bus, BusConfig, TownId};
use gastown_core::Event;
use gastown_core::action::Action;
use gastown_core::codec::Stored;
use gastown_e2e::{eventually, spawn_gastown};
use gastown_testkit::TestServer;
use serde_json::{Value, json};

const TOWNS: usize = 8;

async fn command(client: &async_nats::Client, town: &str, name: &str, body: Value) -> anyhow::Result<()> {
    let reply = client.request(format!("gastown.cmd.{town}.{name}"), serde_json::to_vec(&body)?.into()).await?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(v["ok"] == true, "{name} on {town} answered {v}");
    Ok(())
}

/// Whether the town has a stored decision dispatching `bead`.
async fn dispatched(bus: &Bus, town: &str, bead: &str) -> bool {
    let Ok(id) = TownId::try_from(town) else { return false };
    let Ok(events) = bus.town_events(&id, 0).await else { return false };
    events.iter().any(|(_, s)| {
        matches!(s, Stored::Event(e) if matches!(&e.event, Event::Reconciled(r)
            if r.actions.iter().any(|a| matches!(a, Action::DispatchAgent { bead_id, .. } if bead_id == bead))))
    })
}

/// The worker each town's last pass figures name.
async fn owners(kv: &jetstream::kv::Store) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in 0..TOWNS {
        let town = format!("w{i}");
        if let Ok(Some(bytes)) = kv.get(&town).await
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(w) = v["ownerWorker"].as_str()
        {
            out.insert(town, w.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_killed_worker_hands_its_towns_to_the_survivor() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let share = ["--standby-delay", "3", "--pin-timeout", "1"];
    let mut ingest = spawn_gastown(&url, &[&["ingest", "--member-id", "i1"][..], &share[..]].concat())?;
    let client = async_nats::connect(url.clone()).await?;
    eventually(Duration::from_secs(20), "ingest to answer", || async {
        tokio::time::timeout(Duration::from_millis(500), client.request("$SRV.PING.gastown-ingest", "".into()))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|_| ())
    })
    .await?;
    let w1 = spawn_gastown(&url, &[&["reconciler", "--worker-id", "rw1"][..], &share[..]].concat())?;
    let w2 = spawn_gastown(&url, &[&["reconciler", "--worker-id", "rw2"][..], &share[..]].concat())?;

    let bus = Bus::connect(&url, BusConfig::default()).await?;
    for i in 0..TOWNS {
        let town = format!("w{i}");
        command(&client, &town, "rig.add", json!({"rig_id": "r1", "name": "app", "git_url": "https://github.com/acme/app.git"}))
            .await?;
        command(&client, &town, "bead.sling", json!({"bead_id": "b1", "title": "first", "rig_id": "r1"})).await?;
    }
    for i in 0..TOWNS {
        let town = format!("w{i}");
        eventually(Duration::from_secs(30), "every town's first dispatch", || async {
            dispatched(&bus, &town, "b1").await.then_some(())
        })
        .await?;
    }
    let kv = jetstream::new(client.clone()).get_key_value("gastown-town-metrics").await?;
    let before = eventually(Duration::from_secs(10), "pass figures for every town", || async {
        let o = owners(&kv).await;
        (o.len() == TOWNS).then_some(o)
    })
    .await?;
    let victim = if before.values().any(|w| w == "rw1") { "rw1" } else { "rw2" };
    let victim_towns: Vec<String> = before.iter().filter(|(_, w)| *w == victim).map(|(t, _)| t.clone()).collect();
    assert!(!victim_towns.is_empty(), "the victim owns towns: {before:?}");

    // SIGKILL: no graceful leave, no final snapshot.
    let (mut killed, mut survivor, survivor_id) = if victim == "rw1" { (w1, w2, "rw2") } else { (w2, w1, "rw1") };
    killed.kill().await?;

    for i in 0..TOWNS {
        command(&client, &format!("w{i}"), "bead.sling", json!({"bead_id": "b2", "title": "second", "rig_id": "r1"})).await?;
    }
    for i in 0..TOWNS {
        let town = format!("w{i}");
        eventually(Duration::from_secs(60), "every town's second dispatch after the kill", || async {
            dispatched(&bus, &town, "b2").await.then_some(())
        })
        .await?;
    }
    let after = owners(&kv).await;
    for t in &victim_towns {
        assert_eq!(after.get(t).map(String::as_str), Some(survivor_id), "{t} is now decided by the survivor");
    }
    survivor.kill().await?;
    ingest.kill().await?;
    let _ = killed.wait().await;
    Ok(())
}
