//! `gastown debug` as a real process against real services: a status as JSON, a replay, and the
//! refusals (exit 1 with the reply's message) — issue "Debug over request-reply".

use std::time::Duration;

use gastown_e2e::{eventually, gastown_bin, spawn_gastown};
use gastown_testkit::TestServer;
use serde_json::Value;

async fn debug(url: &str, args: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = tokio::process::Command::new(gastown_bin()?).arg("debug").args(args).env("NATS_URL", url).output().await?;
    Ok((out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[tokio::test]
async fn debug_status_replay_and_refusals_over_the_cli() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let share = ["--standby-delay", "3", "--pin-timeout", "1"];
    let _ingest = spawn_gastown(&url, &[&["ingest", "--member-id", "i1"][..], &share[..]].concat())?;
    let _worker = spawn_gastown(&url, &[&["reconciler", "--worker-id", "w1"][..], &share[..]].concat())?;
    let client = async_nats::connect(url.clone()).await?;
    for svc in ["gastown-ingest", "gastown-reconciler"] {
        eventually(Duration::from_secs(20), "the services to answer $SRV.PING", || async {
            tokio::time::timeout(Duration::from_millis(500), client.request(format!("$SRV.PING.{svc}"), "".into()))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|_| ())
        })
        .await?;
    }
    let reply = client
        .request("gastown.cmd.d1.rig.add", r#"{"rig_id":"r1","name":"app","git_url":"https://github.com/acme/app.git"}"#.into())
        .await?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(v.get("ok"), Some(&Value::Bool(true)), "rig.add answered {v}");
    client.request("gastown.cmd.d1.bead.sling", r#"{"bead_id":"b1","title":"Fix login","rig_id":"r1"}"#.into()).await?;

    let status = eventually(Duration::from_secs(20), "a status naming the owner worker", || async {
        let (code, out, _) = debug(&url, &["status", "d1", "--json"]).await.ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        (code == Some(0) && v.pointer("/alarmStatus/reconciler/ownerWorker") == Some(&Value::from("w1"))).then_some(v)
    })
    .await?;
    assert_eq!(status.get("townId"), Some(&Value::from("d1")));
    assert!(status.pointer("/beadSummary/0/bead_id") == Some(&Value::from("b1")), "b1 is listed: {status}");

    let (code, out, _) =
        debug(&url, &["replay", "d1", "--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--json"]).await?;
    assert_eq!(code, Some(0), "replay answered: {out}");
    let replay: Value = serde_json::from_str(&out)?;
    assert!(replay.get("eventsReplayed").and_then(Value::as_u64).unwrap_or(0) >= 3, "the whole history replays: {replay}");

    let (code, _, err) = debug(&url, &["status", "nowhere"]).await?;
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown town: nowhere"), "stderr: {err}");
    let (code, _, err) = debug(&url, &["replay", "d1", "--from", "yesterday", "--to", "2100-01-01T00:00:00Z"]).await?;
    assert_eq!(code, Some(1));
    assert!(err.contains("Invalid date format. Use ISO 8601 timestamps."), "stderr: {err}");
    Ok(())
}
