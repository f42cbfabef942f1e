//! Every counter of the simulator, in one place.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of a running simulator (shared with the CLI's live summary and with tests). All are
/// monotone except `agents_running`, a gauge.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Heartbeats acknowledged by the HB stream.
    pub heartbeats_sent: AtomicU64,
    /// Heartbeats whose publish failed (no stream, timeout).
    pub heartbeat_errors: AtomicU64,
    /// Actions executed (each action id at most once while the simulator runs).
    pub actions_executed: AtomicU64,
    /// Deliveries of an action id already executed (acknowledged without effect).
    pub actions_duplicate: AtomicU64,
    /// Action messages that could not be decoded or lacked a required key.
    pub actions_invalid: AtomicU64,
    /// Actions older than the configured maximum age, acknowledged without effect.
    pub actions_stale: AtomicU64,
    /// Actions handed back for redelivery after their results could not be sent.
    pub actions_retried: AtomicU64,
    /// Commands answered `ok`.
    pub commands_sent: AtomicU64,
    /// Commands refused or left without an answer after their retries.
    pub command_errors: AtomicU64,
    /// Simulated containers heartbeating right now (gauge).
    pub agents_running: AtomicU64,
    /// Containers started (dispatches and restarts).
    pub containers_started: AtomicU64,
    /// Pull requests opened at the fake SCM.
    pub prs_opened: AtomicU64,
    /// Pull requests merged by the fake SCM.
    pub prs_merged: AtomicU64,
    /// Faults that struck a container.
    pub faults_injected: AtomicU64,
}

/// A point-in-time copy of [`SimStats`], for printing or JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs, reason = "the fields mirror SimStats, documented there")]
pub struct SimStatsSnapshot {
    pub heartbeats_sent: u64,
    pub heartbeat_errors: u64,
    pub actions_executed: u64,
    pub actions_duplicate: u64,
    pub actions_invalid: u64,
    pub actions_stale: u64,
    pub actions_retried: u64,
    pub commands_sent: u64,
    pub command_errors: u64,
    pub agents_running: u64,
    pub containers_started: u64,
    pub prs_opened: u64,
    pub prs_merged: u64,
    pub faults_injected: u64,
}

impl SimStats {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[must_use]
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Copies every counter.
    #[must_use]
    pub fn snapshot(&self) -> SimStatsSnapshot {
        let r = Self::read;
        SimStatsSnapshot {
            heartbeats_sent: r(&self.heartbeats_sent),
            heartbeat_errors: r(&self.heartbeat_errors),
            actions_executed: r(&self.actions_executed),
            actions_duplicate: r(&self.actions_duplicate),
            actions_invalid: r(&self.actions_invalid),
            actions_stale: r(&self.actions_stale),
            actions_retried: r(&self.actions_retried),
            commands_sent: r(&self.commands_sent),
            command_errors: r(&self.command_errors),
            agents_running: r(&self.agents_running),
            containers_started: r(&self.containers_started),
            prs_opened: r(&self.prs_opened),
            prs_merged: r(&self.prs_merged),
            faults_injected: r(&self.faults_injected),
        }
    }

    /// Marks a container as running until the returned guard is dropped.
    pub(crate) fn running_guard(&self) -> RunningGuard<'_> {
        Self::inc(&self.agents_running);
        RunningGuard(&self.agents_running)
    }
}

/// Decrements `agents_running` when dropped, however the container ends.
pub(crate) struct RunningGuard<'a>(&'a AtomicU64);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        // Never below zero: every guard was created by an increment.
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

impl fmt::Display for SimStatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agents {} running ({} started), heartbeats {} ({} failed), actions {} ({} duplicate, {} invalid, {} stale, {} retried), \
             commands {} ({} failed), prs {} opened / {} merged, faults {}",
            self.agents_running,
            self.containers_started,
            self.heartbeats_sent,
            self.heartbeat_errors,
            self.actions_executed,
            self.actions_duplicate,
            self.actions_invalid,
            self.actions_stale,
            self.actions_retried,
            self.commands_sent,
            self.command_errors,
            self.prs_opened,
            self.prs_merged,
            self.faults_injected
        )
    }
}
