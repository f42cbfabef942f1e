//! `gastown debug status|dry-run|replay <town>`: the debug views of DOMAIN §D over
//! request-reply on `<prefix>.debug.<town>.<op>`, answered by any reconciler worker (service
//! `<prefix>-reconciler`).
//!
//! Replies print as tables for people (agents, beads, recent events; for a replay: the window,
//! the actions and the state rows), or as the raw JSON with `--json`. A refused request prints
//! its code and message on stderr and exits 1; while a replay runs, a spinner with the elapsed
//! time turns on stderr when stderr is a terminal.
//!
//! The equivalent `nats` CLI requests:
//! ```text
//! nats req gastown.debug.t1.status ''
//! nats req gastown.debug.t1.dry-run '{"now":"2026-06-01T10:03:00Z"}'
//! nats req gastown.debug.t1.replay '{"from":"2026-06-01T10:02:00Z","to":"2026-06-01T10:03:00Z"}'
//! ```

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use clap::{Args, Subcommand};
use gastown_bus::{Names, TownId, headers};
use serde_json::{Map, Value};

/// Exit status of a bad argument (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Exit status of a refused request or a failure.
const EXIT_REFUSED: u8 = 1;
/// The reconciler's default replay budget (DOMAIN §K REPLAY_TIMEOUT_MS).
const DEFAULT_REPLAY_TIMEOUT_MS: u64 = 4000;

/// Flags of `gastown debug`.
#[derive(Debug, Clone, Args)]
pub struct DebugArgs {
    /// What to ask.
    #[command(subcommand)]
    pub op: DebugOp,
    /// Print the raw JSON reply instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the reply (a replay waits at least its --timeout-ms plus 5 s).
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
}

/// The operations of `gastown debug`.
#[derive(Debug, Clone, Subcommand)]
pub enum DebugOp {
    /// A town's summary (D1): next wake-up, agents, beads, patrol, the owner's last pass,
    /// recent events.
    Status {
        /// The town id.
        town: String,
    },
    /// What a pass would decide now (D2), and the invariant check; nothing is stored.
    DryRun {
        /// The town id.
        town: String,
        /// The instant to decide at (ISO 8601; default: the responder's clock).
        #[arg(long)]
        now: Option<String>,
    },
    /// The exact state at `--from`, the window [from, to] folded, and what a pass would decide
    /// at `--to` (D3).
    Replay {
        /// The town id.
        town: String,
        /// Start of the window (ISO 8601, inclusive).
        #[arg(long)]
        from: String,
        /// End of the window (ISO 8601, inclusive).
        #[arg(long)]
        to: String,
        /// The responder's budget in milliseconds (default 4000); past it the reply is 413.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

impl DebugOp {
    /// The operation token of the subject.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            DebugOp::Status { .. } => "status",
            DebugOp::DryRun { .. } => "dry-run",
            DebugOp::Replay { .. } => "replay",
        }
    }

    fn town(&self) -> &str {
        match self {
            DebugOp::Status { town } | DebugOp::DryRun { town, .. } | DebugOp::Replay { town, .. } => town,
        }
    }

    /// The request body (JSON text; empty for status and a dry-run without `--now`).
    #[must_use]
    pub fn body(&self) -> String {
        let mut m = Map::new();
        match self {
            DebugOp::Status { .. } | DebugOp::DryRun { now: None, .. } => return String::new(),
            DebugOp::DryRun { now: Some(now), .. } => {
                m.insert("now".into(), Value::String(now.clone()));
            }
            DebugOp::Replay { from, to, timeout_ms, .. } => {
                m.insert("from".into(), Value::String(from.clone()));
                m.insert("to".into(), Value::String(to.clone()));
                if let Some(t) = timeout_ms {
                    m.insert("timeout_ms".into(), Value::from(*t));
                }
            }
        }
        Value::Object(m).to_string()
    }
}

/// Sends the request and prints the reply; the exit code: 0 answered, 1 refused (code and
/// message on stderr), 64 a bad argument (checked before connecting).
///
/// # Errors
/// The server cannot be reached, nothing answers, or no reply comes in time.
pub(crate) async fn run(nats_url: &str, prefix: &str, args: DebugArgs) -> anyhow::Result<u8> {
    let names = match Names::new(prefix) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("gastown: invalid prefix {prefix:?}: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let town = match TownId::try_from(args.op.town()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gastown: invalid town id {:?}: {e}", args.op.town());
            return Ok(EXIT_USAGE);
        }
    };
    let op = args.op.name();
    let subject = names.debug(&town, op);
    let mut wait = Duration::from_secs(args.timeout.max(1));
    if let DebugOp::Replay { timeout_ms, .. } = &args.op {
        wait = wait.max(Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_REPLAY_TIMEOUT_MS)) + Duration::from_secs(5));
    }
    let connect_wait = Duration::from_secs(args.timeout.max(1));
    let client = tokio::time::timeout(
        connect_wait,
        async_nats::ConnectOptions::new().connection_timeout(connect_wait).request_timeout(Some(wait)).connect(nats_url),
    )
    .await
    .map_err(|_| anyhow::anyhow!("cannot connect to {nats_url} within {} s", connect_wait.as_secs()))?
    .map_err(|e| anyhow::anyhow!("cannot connect to {nats_url}: {e}"))?;

    let spinner = (matches!(args.op, DebugOp::Replay { .. }) && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(spin(format!("replaying {town}"))));
    let sent = tokio::time::timeout(wait + Duration::from_secs(1), client.request(subject.clone(), args.op.body().into())).await;
    if let Some(s) = spinner {
        s.abort();
        eprint!("\r\x1b[2K");
    }
    let reply =
        sent.map_err(|_| anyhow::anyhow!("no reply on {subject} within {} s", wait.as_secs()))?.map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => anyhow::anyhow!(
                "nothing answers on {subject}: is a reconciler worker running (`gastown reconciler` or `gastown up`)?"
            ),
            async_nats::RequestErrorKind::TimedOut => anyhow::anyhow!("no reply on {subject} within {} s", wait.as_secs()),
            _ => anyhow::anyhow!("request on {subject} failed: {e}"),
        })?;
    let _flushed = client.drain().await;

    let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
    if args.json {
        println!("{}", String::from_utf8_lossy(&reply.payload));
    }
    if let Some(code) = header(headers::SERVICE_ERROR_CODE) {
        let message = serde_json::from_slice::<Value>(&reply.payload)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| header(headers::SERVICE_ERROR))
            .unwrap_or_default();
        eprintln!("gastown: debug {op} {town} refused: {code}: {message}");
        return Ok(EXIT_REFUSED);
    }
    if !args.json {
        let v: Value =
            serde_json::from_slice(&reply.payload).map_err(|e| anyhow::anyhow!("the reply on {subject} is not JSON: {e}"))?;
        let text = match &args.op {
            DebugOp::Status { .. } => render_status(&v),
            DebugOp::DryRun { .. } => render_dry_run(&v),
            DebugOp::Replay { from, to, .. } => render_replay(&v, from, to),
        };
        print!("{text}");
    }
    Ok(0)
}

/// A spinner with the elapsed time on stderr, until aborted.
async fn spin(what: String) {
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for frame in FRAMES.iter().cycle() {
        tick.tick().await;
        let mut err = std::io::stderr().lock();
        let _ignored = write!(err, "\r\x1b[2K{frame} {what}… {:.1} s", started.elapsed().as_secs_f64());
        let _ignored = err.flush();
    }
}

/// A cell: strings as they are, null as `-`, anything else as compact JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "-".to_owned(),
        Some(Value::Object(o)) if o.is_empty() => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// A plain-text table: a header row, then one row per item; columns padded to their widest cell
/// (by characters), the last one left unpadded.
#[must_use]
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        let mut pending = String::new();
        for (i, c) in cells.enumerate() {
            if !first {
                pending.push_str("  ");
            }
            first = false;
            pending.push_str(c);
            let w = widths.get(i).copied().unwrap_or(0);
            for _ in c.chars().count()..w {
                pending.push(' ');
            }
        }
        out.push_str(pending.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut head.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// Rows of `items` (objects) taking `keys` in order.
fn rows(items: Option<&Value>, keys: &[&str]) -> Vec<Vec<String>> {
    items
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|item| keys.iter().map(|k| cell(item.get(*k))).collect()).collect())
        .unwrap_or_default()
}

const AGENT_KEYS: [&str; 7] =
    ["bead_id", "role", "status", "current_hook_bead_id", "dispatch_attempts", "last_activity_at", "liveness"];
const AGENT_HEAD: [&str; 7] = ["AGENT", "ROLE", "STATUS", "HOOK", "ATTEMPTS", "LAST ACTIVITY", "LIVENESS"];
const BEAD_KEYS: [&str; 7] = ["bead_id", "type", "status", "assignee_agent_bead_id", "rig_id", "updated_at", "title"];
const BEAD_HEAD: [&str; 7] = ["BEAD", "TYPE", "STATUS", "ASSIGNEE", "RIG", "UPDATED", "TITLE"];

/// A section: its title, then the table or `(none)`.
fn section(out: &mut String, title: &str, head: &[&str], rows: &[Vec<String>]) {
    let _ignored = writeln!(out, "\n{title} ({})", rows.len());
    if rows.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&table(head, rows));
    }
}

/// `key value` pairs of an object on one line, `-` for null: the keys of `order` first (the
/// order of DOMAIN §D; a parsed `Value` sorts its keys), then any other, skipping `skip`.
fn pairs_in(v: Option<&Value>, order: &[&str], skip: &[&str]) -> String {
    let Some(o) = v.and_then(Value::as_object) else { return "-".to_owned() };
    let known = order.iter().filter_map(|k| o.get_key_value(*k));
    let others = o.iter().filter(|(k, _)| !order.contains(&k.as_str()));
    let parts: Vec<String> =
        known.chain(others).filter(|(k, _)| !skip.contains(&k.as_str())).map(|(k, v)| format!("{k} {}", cell(Some(v)))).collect();
    parts.join(", ")
}

/// `key value` pairs in the object's own order.
fn pairs(v: Option<&Value>) -> String {
    pairs_in(v, &[], &[])
}

const AGENT_COUNTS: [&str; 5] = ["working", "idle", "stalled", "dead", "total"];
const BEAD_COUNTS: [&str; 5] = ["open", "inProgress", "inReview", "failed", "triageRequests"];
const PATROL: [&str; 4] = ["guppWarnings", "guppEscalations", "stalledAgents", "orphanedHooks"];
const PASS_FIGURES: [&str; 10] = [
    "ownerWorker",
    "wallClockMs",
    "eventsDrained",
    "actionsEmitted",
    "actionsByType",
    "sideEffectsAttempted",
    "sideEffectsSucceeded",
    "sideEffectsFailed",
    "invariantViolations",
    "pendingEventCount",
];
const DRY_RUN_METRICS: [&str; 4] = ["actionsEmitted", "actionsByType", "pendingEventCount", "eventsDrained"];

/// An action as one line: its type, then its other fields.
fn action_line(a: &Value) -> String {
    let kind = cell(a.get("type"));
    let rest = a
        .as_object()
        .map(|o| {
            o.iter().filter(|(k, _)| k.as_str() != "type").map(|(k, v)| format!("{k}={}", cell(Some(v)))).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if rest.is_empty() { kind } else { format!("{kind}  {}", rest.join(" ")) }
}

fn actions(out: &mut String, list: Option<&Value>) {
    let list = list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let _ignored = writeln!(out, "\nactions ({})", list.len());
    if list.is_empty() {
        out.push_str("  (none)\n");
    }
    for (i, a) in list.iter().enumerate() {
        let _ignored = writeln!(out, "  {i:>2}. {}", action_line(a));
    }
}

/// D1 for people.
#[must_use]
pub(crate) fn render_status(v: &Value) -> String {
    let mut out = String::new();
    let a = v.get("alarmStatus");
    let get = |k: &str| a.and_then(|a| a.get(k));
    let alarm = get("alarm");
    let _ignored = writeln!(out, "town {}  seq {}", cell(v.get("townId")), cell(v.get("seq")));
    let next = cell(alarm.and_then(|x| x.get("nextFireAt")));
    let interval = alarm.and_then(|x| x.get("intervalMs")).and_then(Value::as_i64);
    let _ignored = match interval {
        Some(ms) => writeln!(out, "next wake-up  {next} (in {:.1} s)", ms as f64 / 1000.0),
        None => writeln!(out, "next wake-up  none"),
    };
    let _ignored = writeln!(out, "agents        {}", pairs_in(get("agents"), &AGENT_COUNTS, &[]));
    let _ignored = writeln!(out, "beads         {}", pairs_in(get("beads"), &BEAD_COUNTS, &[]));
    let _ignored = writeln!(out, "patrol        {}", pairs_in(get("patrol"), &PATROL, &[]));
    let _ignored = writeln!(
        out,
        "draining      {}{}",
        cell(get("draining")),
        match get("drainStartedAt") {
            Some(Value::String(s)) => format!(" since {s}"),
            _ => String::new(),
        }
    );
    let _ignored = writeln!(out, "breaker       {}", pairs_in(get("circuitBreaker"), &["open", "count"], &[]));
    let rec = get("reconciler");
    let _ignored = writeln!(out, "owner         {}", cell(rec.and_then(|r| r.get("ownerWorker"))));
    let _ignored = writeln!(out, "last pass     {}", pairs_in(rec, &PASS_FIGURES, &["ownerWorker"]));
    section(&mut out, "agents", &AGENT_HEAD, &rows(v.get("agentMeta"), &AGENT_KEYS));
    section(&mut out, "beads", &BEAD_HEAD, &rows(v.get("beadSummary"), &BEAD_KEYS));
    section(&mut out, "recent events", &["TIME", "TYPE", "MESSAGE"], &rows(get("recentEvents"), &["time", "type", "message"]));
    out
}

/// D2 for people.
#[must_use]
pub(crate) fn render_dry_run(v: &Value) -> String {
    let mut out = String::new();
    let _ignored = writeln!(out, "seq {}  now {}", cell(v.get("seq")), cell(v.get("now")));
    let _ignored = writeln!(out, "metrics  {}", pairs_in(v.get("metrics"), &DRY_RUN_METRICS, &[]));
    actions(&mut out, v.get("actions"));
    section(
        &mut out,
        "invariant violations",
        &["INVARIANT", "ENTITY", "MESSAGE"],
        &rows(v.get("invariantViolations"), &["invariant", "entity", "message"]),
    );
    out
}

/// D3 for people.
#[must_use]
pub(crate) fn render_replay(v: &Value, from: &str, to: &str) -> String {
    let mut out = String::new();
    let _ignored = writeln!(out, "window   {from} .. {to}");
    let _ignored = writeln!(
        out,
        "events   {} replayed (seq {} .. {})",
        cell(v.get("eventsReplayed")),
        cell(v.get("fromSeq")),
        cell(v.get("toSeq"))
    );
    let _ignored = writeln!(out, "by type  {}", pairs(v.get("actionsByType")));
    actions(&mut out, v.get("actions"));
    let snapshot = v.get("stateSnapshot");
    section(&mut out, "agents at `to`", &AGENT_HEAD, &rows(snapshot.and_then(|s| s.get("agents")), &AGENT_KEYS));
    section(
        &mut out,
        "non-terminal beads at `to`",
        &BEAD_HEAD,
        &rows(snapshot.and_then(|s| s.get("nonTerminalBeads")), &BEAD_KEYS),
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DebugArgs,
    }

    fn parse(args: &[&str]) -> DebugArgs {
        let mut full = vec!["debug"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn flags_build_the_request_bodies() {
        assert_eq!(parse(&["status", "t1"]).op.body(), "");
        assert_eq!(parse(&["dry-run", "t1"]).op.body(), "");
        assert_eq!(parse(&["dry-run", "t1", "--now", "2026-06-01T10:03:00Z"]).op.body(), r#"{"now":"2026-06-01T10:03:00Z"}"#);
        let a = parse(&[
            "replay",
            "t1",
            "--from",
            "2026-06-01T10:02:00Z",
            "--to",
            "2026-06-01T10:03:00Z",
            "--timeout-ms",
            "50",
            "--json",
        ]);
        assert!(a.json);
        assert_eq!(a.op.name(), "replay");
        assert_eq!(a.op.body(), r#"{"from":"2026-06-01T10:02:00Z","timeout_ms":50,"to":"2026-06-01T10:03:00Z"}"#);
        assert!(Cli::try_parse_from(["debug", "replay", "t1", "--from", "x"]).is_err(), "--to is required");
    }

    #[test]
    fn tables_pad_columns_and_show_null_as_a_dash() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "-".into()], vec!["x".into(), "y".into()]]);
        assert_eq!(t, "A     BB\nlong  -\nx     y\n");
    }

    #[test]
    fn the_d1_example_renders_its_rows() {
        let v: Value = serde_json::from_str(
            r#"{"townId":"t1","seq":8,
 "alarmStatus":{
  "alarm":{"nextFireAt":"2026-06-01T10:15:15.000Z","intervalMs":735000,"intervalLabel":"event-driven"},
  "agents":{"working":2,"idle":0,"stalled":0,"dead":0,"total":2},
  "beads":{"open":0,"inProgress":1,"inReview":0,"failed":0,"triageRequests":0},
  "patrol":{"guppWarnings":0,"guppEscalations":0,"stalledAgents":0,"orphanedHooks":0},
  "reconciler":{"ownerWorker":"w1","wallClockMs":1,"eventsDrained":1,"actionsEmitted":0,"actionsByType":{},
   "sideEffectsAttempted":0,"sideEffectsSucceeded":0,"sideEffectsFailed":0,"invariantViolations":0,"pendingEventCount":0},
  "recentEvents":[{"time":"2026-06-01T10:03:00.000Z","type":"agent_heartbeat_lost","message":"pc-1 heartbeat lost (expired)"}],
  "draining":false,"drainStartedAt":null,"circuitBreaker":{"open":false,"count":0}},
 "agentMeta":[
  {"bead_id":"pc-1","role":"polecat","status":"working","current_hook_bead_id":"b1","dispatch_attempts":0,"last_activity_at":"2026-06-01T10:00:15.000Z","liveness":"lost"}],
 "beadSummary":[
  {"bead_id":"b1","type":"issue","status":"in_progress","title":"Fix login","assignee_agent_bead_id":"pc-1","updated_at":"2026-06-01T10:00:10.000Z","rig_id":"r1","created_by":"operator","labels":[],"metadata":{}}]}"#,
        )
        .unwrap();
        let text = render_status(&v);
        assert!(text.starts_with("town t1  seq 8\nnext wake-up  2026-06-01T10:15:15.000Z (in 735.0 s)\n"), "{text}");
        assert!(text.contains("owner         w1\n"), "{text}");
        assert!(text.contains("pc-1   polecat  working  b1    0         2026-06-01T10:00:15.000Z  lost"), "{text}");
        assert!(text.contains("b1    issue  in_progress  pc-1      r1   2026-06-01T10:00:10.000Z  Fix login"), "{text}");
        assert!(text.contains("agent_heartbeat_lost  pc-1 heartbeat lost (expired)"), "{text}");
    }

    #[test]
    fn the_d3_example_renders_window_actions_and_state() {
        let v: Value = serde_json::from_str(
            r#"{"eventsReplayed":2,"fromSeq":8,"toSeq":9,
 "actions":[{"type":"unhook_agent","agent_id":"pc-1","reason":"idle agent hooked to live bead"}],
 "actionsByType":{"unhook_agent":1},
 "stateSnapshot":{"agents":[],"nonTerminalBeads":[]}}"#,
        )
        .unwrap();
        let text = render_replay(&v, "2026-06-01T10:02:00Z", "2026-06-01T10:03:00Z");
        assert!(text.contains("events   2 replayed (seq 8 .. 9)"), "{text}");
        assert!(text.contains("   0. unhook_agent  agent_id=pc-1 reason=idle agent hooked to live bead"), "{text}");
        assert!(text.contains("agents at `to` (0)\n  (none)"), "{text}");
        let dry: Value = serde_json::from_str(
            r#"{"seq":8,"now":"2026-06-01T10:03:00.000Z","actions":[],"metrics":{"actionsEmitted":0,"actionsByType":{},"pendingEventCount":0,"eventsDrained":2},"invariantViolations":[]}"#,
        )
        .unwrap();
        let text = render_dry_run(&dry);
        assert!(text.starts_with("seq 8  now 2026-06-01T10:03:00.000Z\nmetrics  actionsEmitted 0, actionsByType -, pendingEventCount 0, eventsDrained 2\n"), "{text}");
    }
}
