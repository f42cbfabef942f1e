//! Simulated agent containers: one task per (town, agent) that heartbeats to
//! `<prefix>.hb.<town>.<agent>` (a plain JetStream publish, ARCHITECTURE §4), works for the
//! configured time with an advancing SDK watermark, reports its work through commands, then keeps
//! heartbeating `running` (idle) until it is stopped, restarted or shut down — unless its fault
//! says otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use gastown_bus::{AgentId, TownId, headers};
use gastown_core::event::ContainerState;
use gastown_core::heartbeat::Heartbeat;
use gastown_core::time::Millis;
use serde_json::{Map, Value, json};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::commands::Command;
use crate::error::SimError;
use crate::faults::{FaultKind, FaultPlan};
use crate::shared::Shared;
use crate::stats::SimStats;

/// `exited` heartbeats an exiting container sends before it falls silent.
const EXIT_BEATS: u32 = 3;
/// How long a heartbeat publish may wait for the stream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// SDK event types a working agent cycles through.
const EVENT_TYPES: [&str; 3] = ["tool_use", "tool_result", "assistant_message"];

/// What the container does when its work is over.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Reports `agent.done` with its branch.
    Polecat { branch: String, summary: String },
    /// Merges the MR's branch: directly (`agent.done` without `pr_url`) or, with `pr_git_url`,
    /// through a PR opened at the fake SCM (`agent.done` with its url).
    Refinery { branch: String, pr_git_url: Option<String> },
}

/// One container to start, from a `dispatch_agent` action.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec {
    pub(crate) town: TownId,
    pub(crate) agent: AgentId,
    /// The dispatch's action id: echoed as `dispatch_id` and in the result.
    pub(crate) action_id: String,
    pub(crate) bead_id: Option<String>,
    pub(crate) job: Job,
    pub(crate) fault: Option<FaultPlan>,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    stop: CancellationToken,
}

/// The running containers, by (town, agent).
/// The last generation handed out, and the live slots.
type Slots = (u64, HashMap<(TownId, AgentId), Slot>);

#[derive(Debug, Default)]
pub(crate) struct Containers {
    slots: Mutex<Slots>,
}

impl Containers {
    fn with<R>(&self, f: impl FnOnce(&mut Slots) -> R) -> R {
        let mut guard = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Registers a new container for the agent, stopping the one it replaces; its generation and
    /// stop token.
    fn replace(&self, town: &TownId, agent: &AgentId, parent: &CancellationToken) -> (u64, CancellationToken, bool) {
        let stop = parent.child_token();
        self.with(|(next, slots)| {
            *next += 1;
            let old = slots.insert((town.clone(), agent.clone()), Slot { generation: *next, stop: stop.clone() });
            let replaced = old.map(|o| o.stop.cancel()).is_some();
            (*next, stop, replaced)
        })
    }

    /// Stops the agent's container; whether one was running.
    pub(crate) fn stop(&self, town: &TownId, agent: &AgentId) -> bool {
        self.with(|(_, slots)| slots.remove(&(town.clone(), agent.clone())).map(|s| s.stop.cancel()).is_some())
    }

    /// Forgets a container that ended by itself (only if it was not replaced meanwhile).
    fn ended(&self, town: &TownId, agent: &AgentId, generation: u64) {
        self.with(|(_, slots)| {
            let key = (town.clone(), agent.clone());
            if slots.get(&key).is_some_and(|s| s.generation == generation) {
                slots.remove(&key);
            }
        });
    }

    /// Containers registered right now.
    pub(crate) fn len(&self) -> usize {
        self.with(|(_, slots)| slots.len())
    }
}

/// Starts (or restarts) the container of `spec.agent`: synchronous, so actions take effect in
/// the order they were delivered.
pub(crate) fn start(shared: &Arc<Shared>, spec: ContainerSpec) {
    let (generation, stop, replaced) = shared.containers.replace(&spec.town, &spec.agent, &shared.shutdown);
    let instance = format!("{}-{}", shared.config.member_id, ulid::Ulid::new().to_string().to_lowercase());
    info!(town = %spec.town, agent = %spec.agent, action_id = %spec.action_id, %instance, replaced,
          fault = spec.fault.map(|f| f.kind.as_str()), "container started");
    SimStats::inc(&shared.stats.containers_started);
    let task_shared = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let (town, agent) = (spec.town.clone(), spec.agent.clone());
        run_container(&task_shared, spec, instance, stop).await;
        task_shared.containers.ended(&town, &agent, generation);
    });
}

/// What the heartbeat loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Healthy,
    Hung,
    Flapping,
    Exiting(u32),
}

async fn run_container(shared: &Arc<Shared>, spec: ContainerSpec, instance: String, stop: CancellationToken) {
    let stats = &shared.stats;
    let _running = stats.running_guard();
    let subject = shared.names.hb(&spec.town, &spec.agent);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(shared.config.heartbeat_every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut mode = Mode::Healthy;
    let mut beat: u64 = 0;
    let mut warned = false;
    let mut reporting = false;
    // The SDK watermark last shown while working: frozen when the agent hangs or goes idle.
    let mut watermark: (String, Millis) = (EVENT_TYPES[0].to_owned(), unix_ms());
    let work_over = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let elapsed = started.elapsed();
        if let Some(f) = spec.fault
            && beat > 0
            && elapsed >= f.after
            && mode == Mode::Healthy
        {
            SimStats::inc(&stats.faults_injected);
            info!(town = %spec.town, agent = %spec.agent, fault = f.kind.as_str(), "fault strikes");
            mode = match f.kind {
                FaultKind::Crash => break,
                FaultKind::Exit => Mode::Exiting(0),
                FaultKind::Hang => Mode::Hung,
                FaultKind::Flap => Mode::Flapping,
            };
        }
        let working = !work_over.load(Ordering::Relaxed);
        if !reporting && working && elapsed >= shared.config.work_time && matches!(mode, Mode::Healthy | Mode::Flapping) {
            reporting = true;
            let report_shared = Arc::clone(shared);
            let report_spec = spec.clone();
            let report_stop = stop.clone();
            let over = Arc::clone(&work_over);
            shared.tracker.spawn(async move {
                over.store(true, Ordering::Relaxed);
                report(&report_shared, &report_spec, &report_stop).await;
            });
        }
        let mut hb = match mode {
            Mode::Exiting(n) if n >= EXIT_BEATS => break,
            Mode::Exiting(n) => {
                mode = Mode::Exiting(n + 1);
                Heartbeat::new(ContainerState::Exited).exit_reason("simulated exit")
            }
            Mode::Flapping if beat % 2 == 1 => Heartbeat::new(ContainerState::Unknown),
            _ => Heartbeat::new(ContainerState::Running),
        };
        let now = unix_ms();
        let busy = mode != Mode::Hung && !work_over.load(Ordering::Relaxed) && !reporting;
        if busy {
            let event_type =
                EVENT_TYPES.get(usize::try_from(beat).unwrap_or(0) % EVENT_TYPES.len()).copied().unwrap_or("tool_use");
            watermark = (event_type.to_owned(), now);
        }
        let tools: &[&str] = if busy || mode == Mode::Hung { &["bash"] } else { &[] };
        hb = hb.on(&instance).watermark(&watermark.0, watermark.1, tools);
        hb.sent_at = Some(now);
        match publish(shared, &subject, &hb).await {
            Ok(()) => SimStats::inc(&stats.heartbeats_sent),
            Err(e) => {
                SimStats::inc(&stats.heartbeat_errors);
                if warned {
                    debug!(town = %spec.town, agent = %spec.agent, cause = %e, "heartbeat failed");
                } else {
                    warn!(town = %spec.town, agent = %spec.agent, cause = %e, "heartbeat failed");
                    warned = true;
                }
            }
        }
        beat += 1;
    }
    debug!(town = %spec.town, agent = %spec.agent, %instance, "container silent");
}

async fn publish(shared: &Shared, subject: &str, hb: &Heartbeat) -> Result<(), String> {
    let (body, content_type) = if shared.config.msgpack_heartbeats {
        (gastown_core::codec::to_msgpack(hb).map_err(|e| e.to_string())?, headers::MSGPACK)
    } else {
        (serde_json::to_vec(hb).map_err(|e| e.to_string())?, headers::JSON)
    };
    let mut h = HeaderMap::new();
    h.insert(headers::CONTENT_TYPE, content_type);
    let ack = shared.js.publish_with_headers(subject.to_owned(), h, Bytes::from(body)).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(PUBLISH_TIMEOUT, ack).await.map_err(|_| "no acknowledgement".to_owned())?.map_err(|e| e.to_string())?;
    Ok(())
}

/// Reports the finished work: `agent.done` (opening a PR first when the job says so), then
/// `action.result` for the dispatch.
async fn report(shared: &Shared, spec: &ContainerSpec, stop: &CancellationToken) {
    let agent = spec.agent.as_str();
    let mut done = Map::new();
    done.insert("agent_id".into(), json!(agent));
    done.insert("dispatch_id".into(), json!(spec.action_id));
    let mut result = Map::new();
    result.insert("action_id".into(), json!(spec.action_id));
    result.insert("action_type".into(), json!("dispatch_agent"));
    result.insert("ok".into(), json!(true));
    result.insert("agent_id".into(), json!(agent));
    if let Some(b) = &spec.bead_id {
        done.insert("bead_id".into(), json!(b));
        result.insert("bead_id".into(), json!(b));
    }
    match &spec.job {
        Job::Polecat { branch, summary } => {
            done.insert("branch".into(), json!(branch));
            done.insert("summary".into(), json!(summary));
        }
        Job::Refinery { branch, pr_git_url } => {
            done.insert("branch".into(), json!(branch));
            if let Some(git_url) = pr_git_url {
                let Some(pr_url) = shared.scm.open(git_url) else {
                    result.insert("ok".into(), json!(false));
                    result.insert("error".into(), json!(format!("cannot open a pull request on {git_url:?}")));
                    let cmd = Command {
                        name: "action.result",
                        body: Value::Object(result),
                        msg_id: format!("sim:result:{}", spec.action_id),
                    };
                    warn!(town = %spec.town, agent, %git_url, "cannot open a pull request");
                    if let Err(e) = shared.commander.send(&spec.town, &cmd, stop).await {
                        debug!(town = %spec.town, agent, cause = %e, "dispatch failure not reported");
                    }
                    return;
                };
                SimStats::inc(&shared.stats.prs_opened);
                info!(town = %spec.town, agent, %pr_url, "pull request opened");
                done.insert("pr_url".into(), json!(pr_url));
            }
        }
    }
    let cmds = [
        Command { name: "agent.done", body: Value::Object(done), msg_id: format!("sim:done:{}", spec.action_id) },
        Command { name: "action.result", body: Value::Object(result), msg_id: format!("sim:result:{}", spec.action_id) },
    ];
    if let Err(e) = shared.commander.send_all(&spec.town, &cmds, stop).await
        && !matches!(e, SimError::Shutdown)
    {
        warn!(town = %spec.town, agent, action_id = %spec.action_id, cause = %e, "work not reported");
    }
}

/// The wall clock in unix milliseconds (heartbeat `sent_at` and the SDK watermark).
pub(crate) fn unix_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}
