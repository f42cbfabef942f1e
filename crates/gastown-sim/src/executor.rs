//! The reference executor: a durable pull consumer on the ACTIONS stream, filtered by the action
//! types it executes, idempotent on the action id (`Nats-Msg-Id` = `<town>:<decision_seq>:<index>`),
//! reporting through commands (DOMAIN AC1–AC3, E4).
//!
//! The effect of an action on the simulation (a container started or stopped, a PR polled or
//! merged) happens in the pull loop, in delivery order; the commands it sends run as bounded
//! concurrent tasks, which acknowledge the message once the commands are answered. An action whose
//! commands could not be sent is handed back (nak) and executed again later: its commands carry
//! `Nats-Msg-Id`s, so the events are stored once.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use gastown_bus::{AgentId, BusError, ErrorKind, TownId};
use gastown_core::action::ActionMessage;
use gastown_core::ids::fnv1a;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::commands::Command;
use crate::container::{self, ContainerSpec, Job, unix_ms};
use crate::error::SimError;
use crate::shared::Shared;
use crate::stats::SimStats;

/// The action types this executor executes (its consumer's filters).
pub const EXECUTED_ACTION_TYPES: [&str; 7] =
    ["dispatch_agent", "stop_agent", "poll_pr", "merge_pr", "send_nudge", "deliver_nudge", "deliver_mail"];

/// Action ids remembered as executed (oldest forgotten first).
const EXECUTED_MEMORY: usize = 100_000;
/// Messages requested per pull.
const PULL_BATCH: usize = 64;
/// Unacknowledged actions the consumer lets out at once.
const MAX_ACK_PENDING: i64 = 1024;
/// How long the server waits for an acknowledgement before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Redelivery delay of an action whose commands failed.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// Pause before retrying a stream or consumer that is not there yet, doubled up to 2 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Action ids already executed, bounded.
#[derive(Debug, Default)]
struct Executed {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Executed {
    /// Records `key`; false if it was already there.
    fn insert(&mut self, key: &str) -> bool {
        if !self.set.insert(key.to_owned()) {
            return false;
        }
        self.order.push_back(key.to_owned());
        while self.order.len() > EXECUTED_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    fn forget(&mut self, key: &str) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }
}

/// Runs the executor until `shutdown`; then finishes the actions in hand (their commands may retry
/// for the configured grace) and returns.
pub(crate) async fn run_executor(shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(), SimError> {
    let Some(mut consumer) = open_consumer(&shared, &shutdown).await? else {
        return Ok(());
    };
    info!(consumer = %shared.config.consumer, member = %shared.config.member_id, "executor started");
    let executed = Arc::new(Mutex::new(Executed::default()));
    let permits = Arc::new(Semaphore::new(shared.config.max_in_flight.max(1)));
    let handlers = TaskTracker::new();
    let handler_stop = CancellationToken::new();
    let mut pause = BACKOFF_MIN;
    let mut reopen = false;
    let mut failure = None;
    'pull: while !shutdown.is_cancelled() {
        if reopen {
            // The consumer may have been deleted: create it again (or wait for the stream).
            match open_consumer(&shared, &shutdown).await {
                Ok(Some(c)) => consumer = c,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let pull = consumer.stream().max_messages_per_batch(PULL_BATCH).expires(Duration::from_secs(5)).messages().await;
        let mut messages = match pull {
            Ok(m) => m,
            Err(e) => {
                warn!(cause = %BusError::from(e), "cannot pull actions, opening the consumer again");
                reopen = true;
                if sleep_or_stop(&shutdown, &mut pause).await {
                    break;
                }
                continue;
            }
        };
        reopen = false;
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break 'pull,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break 'pull,
                },
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => break 'pull,
                next = messages.next() => next,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    debug!(cause = %e, "pull interrupted, pulling again");
                    reopen = true;
                    if sleep_or_stop(&shutdown, &mut pause).await {
                        break 'pull;
                    }
                    continue 'pull;
                }
                None => continue 'pull,
            };
            pause = BACKOFF_MIN;
            let Some((town, key, cmds)) = take(&shared, &executed, &msg) else {
                // Invalid, duplicate or stale: acknowledged without effect.
                if let Err(e) = msg.ack_with(AckKind::Ack).await {
                    debug!(cause = %e, "ack failed");
                }
                continue;
            };
            let (shared, executed, stop) = (Arc::clone(&shared), Arc::clone(&executed), handler_stop.clone());
            handlers.spawn(async move {
                let _permit = permit;
                match shared.commander.send_all(&town, &cmds, &stop).await {
                    Ok(()) => {
                        if let Err(e) = msg.ack().await {
                            debug!(town = %town, cause = %e, "ack failed");
                        }
                    }
                    Err(e) if e.is_retriable() || matches!(e, SimError::Shutdown) => {
                        warn!(town = %town, cause = %e, "action results not sent, handing the action back");
                        lock(&executed).forget(&key);
                        SimStats::inc(&shared.stats.actions_retried);
                        if let Err(e) = msg.ack_with(AckKind::Nak(Some(NAK_DELAY))).await {
                            debug!(town = %town, cause = %e, "nak failed");
                        }
                    }
                    Err(e) => {
                        // Refused by the service: retrying cannot help.
                        warn!(town = %town, cause = %e, "action result refused");
                        if let Err(e) = msg.ack().await {
                            debug!(town = %town, cause = %e, "ack failed");
                        }
                    }
                }
            });
        }
    }
    handlers.close();
    tokio::select! {
        () = handlers.wait() => {}
        () = tokio::time::sleep(shared.config.shutdown_grace) => {
            handler_stop.cancel();
            handlers.wait().await;
        }
    }
    info!("executor stopped");
    failure.map_or(Ok(()), Err)
}

/// Sleeps the current backoff (doubling it); true if shutdown came first.
async fn sleep_or_stop(shutdown: &CancellationToken, pause: &mut Duration) -> bool {
    let d = *pause;
    *pause = (*pause * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// Waits for the ACTIONS stream, then creates or opens the durable consumer; `None` at shutdown.
async fn open_consumer(
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<Option<consumer::Consumer<consumer::pull::Config>>, SimError> {
    let stream_name = shared.names.actions_stream();
    let config = consumer::pull::Config {
        durable_name: Some(shared.config.consumer.clone()),
        description: Some("gastown-sim reference executor".to_owned()),
        filter_subjects: EXECUTED_ACTION_TYPES.iter().map(|t| shared.names.act_type_filter(t)).collect(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    };
    let mut pause = BACKOFF_MIN;
    let mut waiting_logged = false;
    loop {
        let attempt = async {
            let stream = shared.js.get_stream(&stream_name).await.map_err(BusError::from)?;
            stream.get_or_create_consumer(&shared.config.consumer, config.clone()).await.map_err(BusError::from)
        };
        match attempt.await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Unavailable) => {
                if !waiting_logged {
                    info!(stream = %stream_name, cause = %e, "waiting for the actions stream");
                    waiting_logged = true;
                }
                if sleep_or_stop(shutdown, &mut pause).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lock(executed: &Mutex<Executed>) -> std::sync::MutexGuard<'_, Executed> {
    executed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decodes a delivered action and, unless it is invalid, already executed or stale, carries out
/// its effect on the simulation and returns the commands that report it.
fn take(
    shared: &Arc<Shared>,
    executed: &Mutex<Executed>,
    msg: &async_nats::jetstream::Message,
) -> Option<(TownId, String, Vec<Command>)> {
    let stats = &shared.stats;
    let action: ActionMessage = match gastown_core::codec::from_msgpack(&msg.payload) {
        Ok(a) => a,
        Err(e) => {
            SimStats::inc(&stats.actions_invalid);
            warn!(subject = %msg.subject, cause = %e, "undecodable action message dropped");
            return None;
        }
    };
    let Ok(town) = TownId::try_from(action.town.as_str()) else {
        SimStats::inc(&stats.actions_invalid);
        warn!(town = %action.town, action_id = %action.action_id, "action with an invalid town dropped");
        return None;
    };
    // The Nats-Msg-Id the reconciler sets, rebuilt from the body so a copy under another header
    // (or none) is still recognised.
    let key = format!("{town}:{}", action.action_id);
    if !lock(executed).insert(&key) {
        SimStats::inc(&stats.actions_duplicate);
        debug!(town = %town, action_id = %action.action_id, "action already executed");
        return None;
    }
    if let Some(max_age) = shared.config.action_max_age {
        let age = unix_ms().saturating_sub(action.at);
        if u128::try_from(age).is_ok_and(|age| age > max_age.as_millis()) {
            SimStats::inc(&stats.actions_stale);
            info!(town = %town, action_id = %action.action_id, event_type = %action.action_type, age_ms = age, "stale action skipped");
            return None;
        }
    }
    SimStats::inc(&stats.actions_executed);
    debug!(town = %town, action_id = %action.action_id, event_type = %action.action_type, "executing action");
    let cmds = match execute(shared, &town, &action) {
        Ok(cmds) => cmds,
        Err(reason) => {
            SimStats::inc(&stats.actions_invalid);
            warn!(town = %town, action_id = %action.action_id, event_type = %action.action_type, %reason, "action refused");
            vec![result(&action, false, Some(&reason), [])]
        }
    };
    Some((town, key, cmds))
}

fn text<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

fn required<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    text(p, key).ok_or_else(|| format!("missing {key}"))
}

/// `action.result` for `action`, echoing the payload's ids.
fn result<const N: usize>(action: &ActionMessage, ok: bool, error: Option<&str>, extra: [(&str, Value); N]) -> Command {
    let mut body = Map::new();
    body.insert("action_id".into(), json!(action.action_id));
    body.insert("action_type".into(), json!(action.action_type));
    body.insert("ok".into(), json!(ok));
    for key in ["agent_id", "bead_id", "nudge_id"] {
        if let Some(v) = text(&action.payload, key) {
            body.insert(key.into(), json!(v));
        }
    }
    if let Some(e) = error {
        body.insert("error".into(), json!(e));
    }
    for (k, v) in extra {
        body.insert(k.into(), v);
    }
    Command { name: "action.result", body: Value::Object(body), msg_id: format!("sim:result:{}", action.action_id) }
}

/// Carries out one action; the commands to send, or why it cannot be executed.
fn execute(shared: &Arc<Shared>, town: &TownId, action: &ActionMessage) -> Result<Vec<Command>, String> {
    let p = &action.payload;
    match action.action_type.as_str() {
        "dispatch_agent" => {
            dispatch(shared, town, action)?;
            Ok(Vec::new())
        }
        "stop_agent" => {
            let agent = agent_id(p)?;
            let was_running = shared.containers.stop(town, &agent);
            info!(town = %town, agent = %agent, action_id = %action.action_id, was_running, "container stopped");
            Ok(vec![result(action, true, None, [("details", json!({"was_running": was_running}))])])
        }
        "send_nudge" | "deliver_nudge" | "deliver_mail" => {
            agent_id(p)?;
            Ok(vec![result(action, true, None, [])])
        }
        "poll_pr" => poll_pr(shared, action),
        "merge_pr" => merge_pr(shared, action),
        other => Err(format!("action type {other} is not executed here")),
    }
}

fn agent_id(p: &Map<String, Value>) -> Result<AgentId, String> {
    let a = required(p, "agent_id")?;
    AgentId::try_from(a).map_err(|e| format!("invalid agent_id: {e}"))
}

fn dispatch(shared: &Arc<Shared>, town: &TownId, action: &ActionMessage) -> Result<(), String> {
    let p = &action.payload;
    let agent = agent_id(p)?;
    let bead_id = text(p, "bead_id").map(str::to_owned);
    let role = text(p, "role").or_else(|| p.get("create").and_then(|c| c.get("role")).and_then(Value::as_str));
    let review = p.get("review").filter(|r| r.is_object());
    let default_branch = format!("gt/{agent}/{}", bead_id.as_deref().unwrap_or("work"));
    let job = match (role, review) {
        (Some("refinery"), Some(review)) => {
            let branch = review.get("branch").and_then(Value::as_str).map_or(default_branch, str::to_owned);
            let pr_git_url = (text(p, "merge_strategy") == Some("pr"))
                .then(|| p.get("rig").and_then(|r| r.get("git_url")).and_then(Value::as_str).unwrap_or_default().to_owned());
            Job::Refinery { branch, pr_git_url }
        }
        _ => {
            let bead = p.get("bead");
            let branch = bead.and_then(|b| b.get("branch")).and_then(Value::as_str).map_or(default_branch, str::to_owned);
            let title = bead.and_then(|b| b.get("title")).and_then(Value::as_str).unwrap_or("the bead");
            Job::Polecat { branch, summary: format!("Simulated work on {title}") }
        }
    };
    let fault = shared.config.faults.decide(town.as_str(), agent.as_str(), &action.action_id);
    container::start(
        shared,
        ContainerSpec { town: town.clone(), agent, action_id: action.action_id.clone(), bead_id, job, fault },
    );
    Ok(())
}

/// `pr.status merged` for an MR, under a `Nats-Msg-Id` that a repeat of any poll or merge shares.
fn merged(bead_id: &str, pr_url: &str) -> Command {
    Command {
        name: "pr.status",
        body: json!({"mr_bead_id": bead_id, "pr_url": pr_url, "pr_state": "merged"}),
        msg_id: format!("sim:merged:{bead_id}:{:016x}", fnv1a(pr_url)),
    }
}

fn poll_pr(shared: &Shared, action: &ActionMessage) -> Result<Vec<Command>, String> {
    let p = &action.payload;
    let bead_id = required(p, "bead_id")?;
    let pr_url = required(p, "pr_url")?;
    let Some(poll) = shared.scm.poll(pr_url) else {
        let details = json!({"pr_state": "unknown", "error_kind": "permanent", "awaiting_approval": false});
        return Ok(vec![result(action, false, Some("not a pull request url"), [("details", details)])]);
    };
    if poll.newly_merged {
        SimStats::inc(&shared.stats.prs_merged);
        info!(bead = bead_id, %pr_url, "pull request merged");
    }
    let mut cmds = Vec::with_capacity(2);
    if poll.state == crate::scm::PrState::Merged {
        cmds.push(merged(bead_id, pr_url));
    }
    let details = json!({"pr_state": poll.state.as_str(), "awaiting_approval": false});
    cmds.push(result(action, true, None, [("details", details)]));
    Ok(cmds)
}

fn merge_pr(shared: &Shared, action: &ActionMessage) -> Result<Vec<Command>, String> {
    let p = &action.payload;
    let bead_id = required(p, "bead_id")?;
    let pr_url = required(p, "pr_url")?;
    let git_url = text(p, "git_url").unwrap_or_default();
    match shared.scm.merge(pr_url, git_url) {
        Ok(newly) => {
            if newly {
                SimStats::inc(&shared.stats.prs_merged);
                info!(bead = bead_id, %pr_url, "pull request merged on request");
            }
            Ok(vec![merged(bead_id, pr_url), result(action, true, None, [])])
        }
        Err(reason) => Ok(vec![result(action, false, Some(reason), [])]),
    }
}
