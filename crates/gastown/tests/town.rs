//! The `gastown` binary as an operator runs it: configuration errors exit 64 before connecting to
//! anything, and `gastown town ...` talks to a real ingest service (run in-process against a real
//! `nats-server`), printing the reply, or the code and message with exit 1 when refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unreachable_pub)]

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use gastown_bus::{BusConfig, Names};
use gastown_ingest::{IngestConfig, IngestMetrics};
use gastown_testkit::TestServer;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

/// Runs the real binary with `args`, NATS_URL as given (removed when `None`), and a bounded wait.
async fn gastown(url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gastown"));
    cmd.args(args).env_remove("GASTOWN_PREFIX").env("RUST_LOG", "warn").kill_on_drop(true);
    match url {
        Some(u) => cmd.env("NATS_URL", u),
        None => cmd.env_remove("NATS_URL"),
    };
    timeout(WAIT, cmd.output()).await.unwrap_or_else(|_| panic!("gastown {args:?} did not finish in time")).expect("run gastown")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn configuration_errors_exit_64_before_connecting() {
    let cases: &[(Option<&str>, &[&str], &str)] = &[
        (None, &["reconciler"], "NATS_URL"),
        (None, &["ingest"], "NATS_URL"),
        (None, &["sim"], "NATS_URL"),
        // A URL nothing listens on: the check fails first, so nothing is dialled.
        (Some("nats://127.0.0.1:1"), &["--prefix", "bad prefix", "reconciler"], "--prefix"),
        (Some("nats://127.0.0.1:1"), &["--prefix", "a.b", "ingest"], "--prefix"),
        (Some("nats://127.0.0.1:1"), &["--replicas", "2", "up"], "--replicas"),
        (Some("nats://127.0.0.1:1"), &["up", "--fresh"], "--fresh"),
        (Some("nats://127.0.0.1:1"), &["up", "--demo", "--fault", "boom:*"], "--fault"),
        (Some("nats://127.0.0.1:1"), &["reconciler", "--compact-after", "100"], "compaction"),
        (Some("nats://127.0.0.1:1"), &["sim", "--seed-demo", "0"], "demo towns"),
        (Some("nats://127.0.0.1:1"), &["reconciler", "--worker-id", "no spaces"], "--worker-id"),
        (Some("nats://127.0.0.1:1"), &["reconciler", "--standby-delay", "1", "--pin-timeout", "5"], "--standby-delay"),
        (Some("nats://127.0.0.1:1"), &["town", "bad town", "convoy", "start", "c1"], "town"),
        (Some("nats://127.0.0.1:1"), &["town", "t1", "config", "--set", "novalue"], "key=value"),
        (Some("nats://127.0.0.1:1"), &["town", "t1", "send", "bead.create", "{not json"], "JSON"),
        (Some("nats://127.0.0.1:1"), &["town", "t1", "send", "bead.*", "{}"], "invalid command"),
    ];
    for (url, args, needle) in cases {
        let out = gastown(*url, args).await;
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(64), "gastown {args:?}: expected exit 64, stderr: {err}");
        assert!(err.contains(needle), "gastown {args:?}: stderr should name {needle:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "gastown {args:?}: one line on stderr: {err}");
    }
}

#[tokio::test]
async fn town_without_a_server_exits_1() {
    let out = gastown(Some("nats://127.0.0.1:1"), &["town", "t1", "convoy", "start", "c1", "--timeout", "2"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("cannot connect"), "stderr: {err}");
}

/// A server with ingest running in-process.
struct Ingest {
    server: TestServer,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), gastown_ingest::IngestError>>,
}

async fn start_ingest() -> Ingest {
    let server = timeout(WAIT, TestServer::start()).await.expect("nats-server did not start in time").expect("start nats-server");
    let config = IngestConfig {
        nats_url: server.url(),
        bus: BusConfig {
            names: Names::default(),
            partitions: 4,
            replicas: 1,
            hb_max_age: Duration::from_secs(90),
            max_consumers: 256,
        },
        member_id: "cli-test".to_owned(),
        activity_granularity: Duration::from_secs(300),
        append_retries: 3,
        cache_towns: 16,
        standby_delay: Duration::from_secs(10),
        priority_timeout: Duration::from_secs(5),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(gastown_ingest::run(config, Arc::new(IngestMetrics::default()), shutdown.clone()));
    let client = async_nats::connect(server.url()).await.expect("connect");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ping = timeout(Duration::from_millis(500), client.request("$SRV.PING.gastown-ingest", "".into())).await;
        if matches!(ping, Ok(Ok(_))) {
            break;
        }
        assert!(!task.is_finished(), "ingest stopped before it answered $SRV.PING");
        assert!(tokio::time::Instant::now() < deadline, "ingest never answered $SRV.PING (did gastown_ingest::run start?)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ingest { server, shutdown, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn town_commands_print_replies_and_refusals() {
    let ingest = start_ingest().await;
    let url = ingest.server.url();
    let url = Some(url.as_str());

    let out = gastown(url, &["town", "t1", "rig", "add", "r1", "--name", "main", "--git-url", "https://example.com/r.git"]).await;
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "rig add: {err}");
    assert!(stdout.starts_with("ok: event ") && stdout.contains("appended at seq"), "rig add printed: {stdout}");

    // The same rig again: a 409 with E4's message, exit 1.
    let out =
        gastown(url, &["town", "t1", "rig", "add", "r1", "--name", "other", "--git-url", "https://example.com/r.git"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "duplicate rig: {err}");
    assert!(err.contains("conflict") && err.contains("rig r1 already exists"), "stderr: {err}");

    // A validation error (400).
    let out = gastown(url, &["town", "t1", "rig", "add", "r2", "--name", "two", "--git-url", "ftp://nope"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "bad git_url: {err}");
    assert!(err.contains("bad_request") && err.contains("invalid git_url"), "stderr: {err}");

    // --json prints the raw reply.
    let out = gastown(url, &["town", "t1", "bead", "sling", "Fix the login page", "--rig", "r1", "--id", "b1", "--json"]).await;
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "bead sling: {err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("--json prints JSON");
    assert_eq!(v["ok"], true, "reply: {v}");
    assert!(v["seq"].as_u64().is_some(), "reply: {v}");

    let out = gastown(url, &["town", "t1", "config", "--set", "merge_strategy=pr"]).await;
    assert_eq!(out.status.code(), Some(0), "config: {}", text(&out).1);

    let out = gastown(url, &["town", "t1", "agent", "register", "mayor", "--role", "mayor"]).await;
    assert_eq!(out.status.code(), Some(0), "agent register: {}", text(&out).1);

    let out = gastown(
        url,
        &["town", "t1", "convoy", "create", "Launch", "--bead", "one:r1", "--bead", "two:r1", "--staged", "--id", "cv1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "convoy create: {}", text(&out).1);
    let out = gastown(url, &["town", "t1", "convoy", "start", "cv1"]).await;
    assert_eq!(out.status.code(), Some(0), "convoy start: {}", text(&out).1);

    let out = gastown(url, &["town", "t1", "bead", "status", "b1", "in_progress"]).await;
    assert_eq!(out.status.code(), Some(0), "bead status: {}", text(&out).1);
    let out = gastown(url, &["town", "t1", "bead", "status", "b1", "in_progress"]).await;
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "same status again: {err}");
    assert!(stdout.contains("noop"), "same status is a noop: {stdout}");
    let out = gastown(url, &["town", "t1", "bead", "status", "b1", "closed", "--reason", "done"]).await;
    assert_eq!(out.status.code(), Some(0), "bead status closed: {}", text(&out).1);
    let out = gastown(url, &["town", "t1", "bead", "status", "b1", "open"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "reopening a closed bead: {err}");
    assert!(err.contains("conflict: bead b1 is closed; terminal statuses are final"), "stderr: {err}");

    // A retried request with the same Nats-Msg-Id is answered as a duplicate.
    for i in 0..2 {
        let out = gastown(url, &["town", "t1", "--msg-id", "m-1", "bead", "create", "Retried"]).await;
        let (stdout, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "bead create #{i}: {err}");
        assert_eq!(stdout.contains("already stored"), i == 1, "bead create #{i}: {stdout}");
    }

    let out = gastown(url, &["town", "t1", "escalation", "ack", "nope"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "escalation ack: {err}");
    assert!(err.contains("unknown escalation: nope"), "stderr: {err}");

    let out = gastown(url, &["town", "t1", "send", "no.such", "{}"]).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "unknown command: {err}");
    assert!(err.contains("unknown_command") && err.contains("unknown command: no.such"), "stderr: {err}");

    let out = gastown(url, &["town", "t1", "send", "agent.nudge", r#"{"agent_id":"mayor","message":"hello"}"#]).await;
    assert_eq!(out.status.code(), Some(0), "send agent.nudge: {}", text(&out).1);

    ingest.shutdown.cancel();
    let stopped = timeout(WAIT, ingest.task).await.expect("ingest did not stop after shutdown");
    stopped.expect("ingest task").expect("ingest stopped cleanly");
}
