//! The live summary of `gastown up`: a few figures read from the services' metrics structs (one
//! per service: [`IngestMetrics`], [`ReconcilerMetrics`], [`SimStats`]), one line every few
//! seconds, for people or as JSON.

use std::time::Duration;

use gastown_ingest::IngestMetrics;
use gastown_reconciler::ReconcilerMetrics;
use gastown_sim::SimStats;
use serde_json::json;

/// The figures of one summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    /// Seconds since start.
    pub(crate) uptime_s: u64,
    /// Towns held by the reconciler worker.
    pub(crate) towns: u64,
    /// Simulated containers running (`None` without the simulator).
    pub(crate) agents_running: Option<u64>,
    /// Simulated containers started so far.
    pub(crate) agents_started: Option<u64>,
    /// Heartbeats received by ingest.
    pub(crate) heartbeats_in: u64,
    /// Heartbeats that appended nothing.
    pub(crate) heartbeats_filtered: u64,
    /// Events appended by ingest (heartbeat-derived and commands).
    pub(crate) events_appended: u64,
    /// Commands ingest answered.
    pub(crate) commands: u64,
    /// Reconcile passes run.
    pub(crate) passes: u64,
    /// Passes that stored a decision.
    pub(crate) decisions: u64,
    /// Actions published to the ACTIONS stream.
    pub(crate) actions_published: u64,
    /// Actions the simulator executed (`None` without it).
    pub(crate) actions_executed: Option<u64>,
    /// Invariant violations seen.
    pub(crate) violations: u64,
}

impl Figures {
    /// Reads the figures now.
    pub(crate) fn read(uptime: Duration, ingest: &IngestMetrics, rec: &ReconcilerMetrics, sim: Option<&SimStats>) -> Self {
        Self {
            uptime_s: uptime.as_secs(),
            towns: ReconcilerMetrics::read(&rec.towns_owned),
            agents_running: sim.map(|s| SimStats::read(&s.agents_running)),
            agents_started: sim.map(|s| SimStats::read(&s.containers_started)),
            heartbeats_in: ingest.heartbeats.total(),
            heartbeats_filtered: IngestMetrics::read(&ingest.heartbeats_filtered),
            events_appended: ingest.events_appended.total(),
            commands: ingest.commands.total(),
            passes: rec.passes.total(),
            decisions: rec.passes.get(&["decided"]),
            actions_published: rec.side_effects_published.total(),
            actions_executed: sim.map(|s| SimStats::read(&s.actions_executed)),
            violations: rec.invariant_violations.total(),
        }
    }

    /// One line for people.
    pub(crate) fn line(&self) -> String {
        let mut s = format!("[{:>4}s] towns {}", self.uptime_s, self.towns);
        if let (Some(running), Some(started)) = (self.agents_running, self.agents_started) {
            s.push_str(&format!(" | agents {running} running ({started} started)"));
        }
        s.push_str(&format!(
            " | heartbeats {} in / {} filtered | events {} appended ({} commands) | passes {} ({} decided) | actions {} published",
            self.heartbeats_in,
            self.heartbeats_filtered,
            self.events_appended,
            self.commands,
            self.passes,
            self.decisions,
            self.actions_published
        ));
        if let Some(done) = self.actions_executed {
            s.push_str(&format!(", {done} executed"));
        }
        if self.violations > 0 {
            s.push_str(&format!(" | invariant violations {}", self.violations));
        }
        s
    }

    /// One JSON object (`--json`).
    pub(crate) fn json(&self) -> String {
        json!({
            "uptime_s": self.uptime_s,
            "towns": self.towns,
            "agents_running": self.agents_running,
            "agents_started": self.agents_started,
            "heartbeats_in": self.heartbeats_in,
            "heartbeats_filtered": self.heartbeats_filtered,
            "events_appended": self.events_appended,
            "commands": self.commands,
            "passes": self.passes,
            "decisions": self.decisions,
            "actions_published": self.actions_published,
            "actions_executed": self.actions_executed,
            "invariant_violations": self.violations,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_for_people_and_one_for_machines() {
        let f = Figures {
            uptime_s: 12,
            towns: 3,
            agents_running: Some(5),
            agents_started: Some(7),
            heartbeats_in: 240,
            heartbeats_filtered: 228,
            events_appended: 87,
            commands: 30,
            passes: 45,
            decisions: 20,
            actions_published: 60,
            actions_executed: Some(58),
            violations: 0,
        };
        assert_eq!(
            f.line(),
            "[  12s] towns 3 | agents 5 running (7 started) | heartbeats 240 in / 228 filtered | events 87 appended (30 commands) \
             | passes 45 (20 decided) | actions 60 published, 58 executed"
        );
        let v: serde_json::Value = serde_json::from_str(&f.json()).unwrap_or_default();
        assert_eq!(v["passes"], 45);
        assert_eq!(v["agents_running"], 5);
        let without_sim = Figures { agents_running: None, agents_started: None, actions_executed: None, ..f };
        assert!(!without_sim.line().contains("agents"));
    }
}
