//! `gastown ingest` as a real process against a real nats-server: configuration errors, commands
//! and heartbeats over the wire, graceful shutdown on SIGTERM, and a kill -9 and restart that
//! stores exactly the events of an undisturbed run (issue "On a real NATS JetStream", item 8).

use std::collections::BTreeSet;
use std::time::Duration;

use gastown_bus::{Bus, BusConfig, TownId};
use gastown_core::codec::Stored;
use gastown_e2e::{eventually, gastown_bin, sigterm, spawn_gastown};
use gastown_testkit::TestServer;

const HB_MAX_AGE_S: u64 = 2;

fn ingest_args() -> Vec<&'static str> {
    vec!["ingest", "--hb-max-age", "2", "--standby-delay", "4", "--pin-timeout", "2", "--member-id", "e2e"]
}

async fn bus(url: &str) -> anyhow::Result<Bus> {
    let config = BusConfig { hb_max_age: Duration::from_secs(HB_MAX_AGE_S), ..BusConfig::default() };
    Ok(Bus::connect(url, config).await?)
}

async fn wait_for_service(client: &async_nats::Client) -> anyhow::Result<()> {
    eventually(Duration::from_secs(20), "the gastown-ingest service to answer $SRV.PING", || async {
        tokio::time::timeout(Duration::from_millis(500), client.request("$SRV.PING.gastown-ingest", "".into()))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|_| ())
    })
    .await
}

/// Event ids and types stored for a town.
async fn events(bus: &Bus, town: &str) -> anyhow::Result<Vec<(String, String)>> {
    let town = TownId::try_from(town)?;
    Ok(bus
        .town_events(&town, 0)
        .await?
        .into_iter()
        .filter_map(|(_, s)| match s {
            Stored::Event(e) => Some((e.id.clone(), e.event_type().to_owned())),
            _ => None,
        })
        .collect())
}

async fn heartbeat(js: &async_nats::jetstream::Context, town: &str, agent: &str, status: &str) -> anyhow::Result<()> {
    let body = format!(r#"{{"status":"{status}","container_instance_id":"c1","sent_at":0}}"#);
    js.publish(format!("gastown.hb.{town}.{agent}"), body.into()).await?.await?;
    Ok(())
}

#[tokio::test]
async fn ingest_without_nats_url_exits_with_a_usage_error() -> anyhow::Result<()> {
    let bin = gastown_bin()?;
    let out = tokio::process::Command::new(bin).arg("ingest").env_remove("NATS_URL").output().await?;
    assert_eq!(out.status.code(), Some(64), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NATS_URL"), "the error names what is missing");
    Ok(())
}

#[tokio::test]
async fn ingest_answers_commands_turns_heartbeats_into_events_and_stops_on_sigterm() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut child = spawn_gastown(&server.url(), &ingest_args())?;
    let client = async_nats::connect(server.url()).await?;
    wait_for_service(&client).await?;

    let reply = client
        .request("gastown.cmd.t1.rig.add", r#"{"rig_id":"r1","name":"app","git_url":"https://github.com/acme/app.git"}"#.into())
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(body["ok"], true, "rig.add answered {body}");
    assert_eq!(body["seq"], 1);

    let js = async_nats::jetstream::new(client.clone());
    heartbeat(&js, "t1", "a1", "running").await?;
    let bus = bus(&server.url()).await?;
    let stored = eventually(Duration::from_secs(10), "agent_heartbeat_resumed for a1", || async {
        let ev = events(&bus, "t1").await.ok()?;
        ev.iter().any(|(_, t)| t == "agent_heartbeat_resumed").then_some(ev)
    })
    .await?;
    assert_eq!(stored.len(), 2, "rig_added and one resumed: {stored:?}");

    sigterm(&child).await?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .map_err(|_| anyhow::anyhow!("gastown ingest did not stop within 15 s of SIGTERM"))??;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    Ok(())
}

#[tokio::test]
async fn ingest_killed_and_restarted_stores_exactly_the_events_of_an_undisturbed_run() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let bus = bus(&server.url()).await?;
    let agents = ["a1", "a2", "a3"];

    let mut first = spawn_gastown(&server.url(), &ingest_args())?;
    wait_for_service(&client).await?;
    for a in agents {
        heartbeat(&js, "t2", a, "running").await?;
    }
    eventually(Duration::from_secs(10), "three resumed events", || async {
        let ev = events(&bus, "t2").await.ok()?;
        (ev.len() == 3).then_some(())
    })
    .await?;

    // kill -9: no graceful anything. Statuses stay steady across the gap.
    first.kill().await?;
    for a in agents {
        heartbeat(&js, "t2", a, "running").await?;
    }
    let mut second = spawn_gastown(&server.url(), &ingest_args())?;
    wait_for_service(&client).await?;
    for _ in 0..3 {
        for a in agents {
            heartbeat(&js, "t2", a, "running").await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Silence: each agent's subject expires after HB_MAX_AGE_S and ingest reports it once.
    let stored = eventually(Duration::from_secs(15), "three expired events after the silence", || async {
        let ev = events(&bus, "t2").await.ok()?;
        (ev.iter().filter(|(_, t)| t == "agent_heartbeat_lost").count() == 3).then_some(ev)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = events(&bus, "t2").await?;
    assert_eq!(again, stored, "nothing more is appended after the expiry");

    let types: Vec<&str> = stored.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types.iter().filter(|t| **t == "agent_heartbeat_resumed").count(), 3, "one resumed per agent: {stored:?}");
    assert_eq!(stored.len(), 6, "the restart re-emitted nothing: {stored:?}");
    let ids: BTreeSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 6, "ids are unique");
    for (id, t) in &stored {
        assert!(id.starts_with("t2:h:a") && id.ends_with(&format!(":{t}")), "heartbeat-derived id grammar: {id}");
    }
    second.kill().await?;
    Ok(())
}
