//! Code constants of DOMAIN §K. Town-level parameters (S2) are read from state, never from here
//! directly; their defaults live in `config`.

use crate::time::{Millis, hours, mins, secs};

/// Silence after which an agent counts as lost; also the `GASTOWN_HB` stream's max age.
pub const HEARTBEAT_LOST: Millis = secs(90);
/// Default heartbeat cadence of agents and the simulator.
pub const HEARTBEAT_INTERVAL: Millis = secs(5);
/// Default coalescing window of `agent_activity` (E5 step 5; an ingest flag).
pub const ACTIVITY_GRANULARITY: Millis = mins(5);
/// B4: an `in_progress` issue without a live agent is reopened after this.
pub const STALE_IN_PROGRESS: Millis = mins(5);
/// B5 / I4: an `in_review` issue whose MRs all ended is repaired after this.
pub const ORPHANED_SOURCE: Millis = mins(5);
/// Q5: an `in_progress` MR without PR and without agent is reopened after this.
pub const ABANDONED_MR: Millis = mins(2);
/// Q4: an `in_progress` MR without PR and without a working agent is reopened after this.
pub const STUCK_REVIEW: Millis = mins(30);
/// Q1: a PR review nobody polls is failed after this.
pub const ORPHANED_PR_REVIEW: Millis = mins(30);
/// A3: an agent's dispatch counter is reset after this much inactivity.
pub const AGENT_ATTEMPTS_RESET_AFTER: Millis = mins(30);
/// A2: a stalled agent is idled after this.
pub const STALLED_AUTO_IDLE: Millis = hours(2) + mins(30);
/// G2/G3: one reconciler nudge per tier and agent within this window.
pub const NUDGE_DEDUP_WINDOW: Millis = mins(60);
/// Lifetime of a reconciler or triage nudge.
pub const NUDGE_TTL: Millis = hours(1);
/// H2: an undelivered nudge is handed again after this.
pub const NUDGE_REDELIVER_AFTER: Millis = secs(60);
/// H1: an undelivered mail is handed again after this.
pub const MAIL_REDELIVER_AFTER: Millis = secs(60);
/// X2: nudges older than this are pruned.
pub const NUDGE_RETENTION: Millis = hours(24);
/// Q2: a PR is polled at most this often.
pub const PR_POLL_INTERVAL: Millis = secs(60);
/// AC2: this many `unknown` poll results fail the review.
pub const POLL_NULL_LIMIT: u32 = 10;
/// AC2: this many permanent poll errors fail the review.
pub const POLL_ERROR_LIMIT: u32 = 3;
/// C4: landing MR creation attempts before the convoy fails.
pub const LANDING_MR_MAX_ATTEMPTS: u32 = 5;
/// C4: a landing awaiting approval this long gets one escalation.
pub const LANDING_APPROVAL_TIMEOUT: Millis = hours(24);
/// Cap on open non-escalation triage requests (S10 `open_triage_request`).
pub const TRIAGE_OPEN_CAP: usize = 5;
/// H4: no new triage batch within this time after a failed one.
pub const TRIAGE_BATCH_COOLDOWN: Millis = mins(2);
/// H3: an unacknowledged escalation moves one severity step per this much age.
pub const ESCALATION_STEP: Millis = hours(4);
/// H3: at most this many re-escalations.
pub const MAX_RE_ESCALATIONS: u32 = 3;
/// F1: draining ends after this.
pub const DRAIN_TIMEOUT: Millis = mins(7);
/// E1: event ids are remembered this long for deduplication.
pub const EVENT_DEDUP_HORIZON: Millis = hours(1);
/// S1: how many recent events the state keeps for `status`.
pub const RECENT_EVENTS_KEPT: usize = 20;
/// R0.8: a decision holds at most this many actions.
pub const MAX_ACTIONS_PER_PASS: usize = 256;
/// Largest heartbeat payload (ARCHITECTURE §4).
pub const HEARTBEAT_MAX_BYTES: usize = 16 * 1024;
/// Largest command body (E4).
pub const COMMAND_MAX_BYTES: usize = 256 * 1024;
/// Largest checkpoint, measured as its JSON encoding (E4).
pub const CHECKPOINT_MAX_BYTES: usize = 64 * 1024;
/// D1: idle hooked agents older than this count as orphaned hooks.
pub const ORPHANED_HOOK_AGE: Millis = mins(5);
/// R0.4: passes at one `now` before settling counts as a defect (default of a reconciler flag).
pub const SETTLE_MAX_PASSES: usize = 10;
/// Events arriving within this window cost one pass (default of a reconciler flag).
pub const PASS_COALESCE: Millis = 20;
/// I1: a persisting violation is re-reported at most this often (default of a reconciler flag).
pub const INVARIANT_REPORT_INTERVAL: Millis = hours(1);
/// E4: refold-and-retry count for a fenced command append (default of an ingest flag).
pub const COMMAND_APPEND_RETRIES: u32 = 3;
/// D3: default replay budget.
pub const REPLAY_TIMEOUT_MS: u64 = 4000;
/// S4: names given to new polecats, in order.
pub const POLECAT_NAMES: [&str; 20] = [
    "Toast", "Maple", "Biscuit", "Pepper", "Clover", "Juniper", "Sprocket", "Nutmeg", "Pickle", "Tango", "Waffle", "Cobalt",
    "Fennel", "Marble", "Pixel", "Quill", "Rusty", "Saffron", "Thistle", "Ziggy",
];

/// S8 `backoff(n)`: the wait after the n-th dispatch attempt.
#[must_use]
pub const fn backoff(attempts: u32) -> Millis {
    match attempts {
        0 | 1 => secs(30),
        2 => mins(1),
        3 => mins(2),
        4 => mins(5),
        _ => mins(10),
    }
}

/// C4 `cooldown(n)` = min(2^n × 30 s, 30 min).
#[must_use]
pub fn landing_cooldown(attempts: u32) -> Millis {
    let factor = 1_i64.checked_shl(attempts.min(20)).unwrap_or(i64::MAX);
    factor.saturating_mul(secs(30)).min(mins(30))
}
