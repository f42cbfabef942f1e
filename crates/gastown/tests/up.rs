//! `gastown up --demo` as a person runs it, against `NATS_URL` of a real `nats-server`: it prints
//! the banner and the live summary, the demo towns get `reconciled` decisions on the events stream
//! (ingest, reconciler and simulator working together in one process), and SIGTERM stops it
//! cleanly with exit 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unreachable_pub)]

use std::process::Stdio;
use std::time::Duration;

use gastown_bus::{Bus, BusConfig, Names, TownId};
use gastown_core::codec::Stored;
use gastown_testkit::TestServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(15);
/// How long the demo towns may take to get their first decisions.
const DECISIONS_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_shows_the_summary_and_towns_get_decisions() {
    let server = timeout(WAIT, TestServer::start()).await.expect("nats-server did not start in time").expect("start nats-server");
    let url = server.url();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gastown"))
        .args(["--partitions", "4", "up", "--demo", "--demo-towns", "2", "--demo-beads", "2", "--summary-every", "1"])
        .env("NATS_URL", &url)
        .env_remove("GASTOWN_PREFIX")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gastown up");
    let pid = child.id().expect("pid");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = line_tx.send(line);
        }
    });
    let err_task = tokio::spawn(async move {
        let mut text = String::new();
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    // The banner names the server and the `nats req` line of a demo town; then summary lines come.
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !seen.iter().any(|l: &String| l.starts_with('[') && l.contains("towns") && l.contains("passes")) {
        let line = timeout(deadline.saturating_duration_since(Instant::now()), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no summary line within {WAIT:?}; stdout so far: {seen:#?}"))
            .unwrap_or_else(|| panic!("gastown up closed stdout; stdout: {seen:#?}"));
        seen.push(line);
    }
    let banner = seen.join("\n");
    assert!(banner.contains(&url), "the banner names the server: {banner}");
    assert!(banner.contains("req gastown.cmd.demo-1.bead.sling"), "the banner shows a nats req line: {banner}");

    // Every demo town gets `reconciled` decisions on the events stream.
    let bus =
        Bus::connect(&url, BusConfig { names: Names::default(), partitions: 4, ..BusConfig::default() }).await.expect("connect");
    let deadline = Instant::now() + DECISIONS_WITHIN;
    for town in ["demo-1", "demo-2"] {
        let town = TownId::try_from(town).expect("town id");
        loop {
            let events = timeout(WAIT, bus.town_events(&town, 0)).await.expect("town_events hung").expect("read town events");
            let decisions = events
                .iter()
                .filter(|(_, stored)| matches!(stored, Stored::Event(env) if env.event_type() == "reconciled"))
                .count();
            if decisions > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{town} has no reconciled decision after {DECISIONS_WITHIN:?} ({} events stored): is the reconciler running in `up`?",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // The summary moves: a later line shows passes and published actions.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = timeout(deadline.saturating_duration_since(Instant::now()), lines.recv())
            .await
            .expect("the summary stopped")
            .expect("gastown up closed stdout");
        if line.contains("decided)") && !line.contains("(0 decided)") && !line.contains("actions 0 published") {
            break;
        }
    }

    // SIGTERM: a graceful stop with exit 0.
    let killed = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("run kill");
    assert!(killed.success(), "kill -TERM failed");
    let status =
        timeout(Duration::from_secs(25), child.wait()).await.expect("gastown up did not stop after SIGTERM").expect("wait");
    let err = timeout(WAIT, err_task).await.expect("stderr did not close").expect("stderr task");
    assert_eq!(status.code(), Some(0), "gastown up exit status; stderr:\n{err}");
    assert!(!err.contains("ERROR"), "no error logged; stderr:\n{err}");
}
