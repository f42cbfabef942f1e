//! Derived predicates (S8) and iteration orders (C3), evaluated on a state at `now`.

use super::{Agent, AgentStatus, Bead, BeadStatus, BeadType, DepKind, Liveness, Nudge, Role, TownState};
use crate::config::Resolved;
use crate::constants::{HEARTBEAT_LOST, backoff};
use crate::labels;
use crate::time::{Millis, older_than, within};

impl TownState {
    /// Beads of every type in C3 order: (`created_at`, `bead_id`).
    #[must_use]
    pub fn beads_in_order(&self) -> Vec<&Bead> {
        let mut v: Vec<&Bead> = self.beads.values().collect();
        v.sort_by(|a, b| (a.created_at, &a.bead_id).cmp(&(b.created_at, &b.bead_id)));
        v
    }

    /// Nudges in C3 order: (`created_at`, `nudge_id`).
    #[must_use]
    pub fn nudges_in_order(&self) -> Vec<&Nudge> {
        let mut v: Vec<&Nudge> = self.nudges.values().collect();
        v.sort_by(|a, b| (a.created_at, &a.nudge_id).cmp(&(b.created_at, &b.nudge_id)));
        v
    }

    /// The town's mayor, if any.
    #[must_use]
    pub fn mayor(&self) -> Option<&Agent> {
        self.agents.values().find(|a| a.role == Role::Mayor)
    }

    /// The refinery of `rig_id`, if any.
    #[must_use]
    pub fn refinery_of(&self, rig_id: &str) -> Option<&Agent> {
        self.agents.values().find(|a| a.role == Role::Refinery && a.rig_id.as_deref() == Some(rig_id))
    }

    /// Agents hooked to `bead_id`, by agent id.
    pub fn hooked_agents<'a>(&'a self, bead_id: &'a str) -> impl Iterator<Item = &'a Agent> + 'a {
        self.agents.values().filter(move |a| a.hook.as_deref() == Some(bead_id))
    }

    /// Config resolved for a rig id (S2); a missing or absent rig resolves to the town values.
    #[must_use]
    pub fn resolved(&self, rig_id: Option<&str>) -> Resolved {
        let rig = rig_id.and_then(|r| self.rigs.get(r)).map(|r| &r.overrides);
        self.config.resolved(rig)
    }

    /// `max_attempts(rig)` (S8).
    #[must_use]
    pub fn max_attempts(&self, rig_id: Option<&str>) -> u32 {
        self.resolved(rig_id).max_dispatch_attempts
    }

    /// `in_backoff(b)` (S8).
    #[must_use]
    pub fn in_backoff(&self, b: &Bead, now: Millis) -> bool {
        within(b.last_dispatch_attempt_at, backoff(b.dispatch_attempts), now)
    }

    /// `silent(a)` (S8): not alive and `last_activity_at` older than heartbeat_lost.
    #[must_use]
    pub fn silent(&self, a: &Agent, now: Millis) -> bool {
        a.liveness != Liveness::Alive && older_than(a.last_activity_at, HEARTBEAT_LOST, now)
    }

    /// `heard(a)` = not silent.
    #[must_use]
    pub fn heard(&self, a: &Agent, now: Millis) -> bool {
        !self.silent(a, now)
    }

    /// `gc_eligible(a)` (S8).
    #[must_use]
    pub fn gc_eligible(&self, a: &Agent, now: Millis) -> bool {
        matches!(a.role, Role::Polecat | Role::Refinery)
            && matches!(a.status, AgentStatus::Idle | AgentStatus::Dead)
            && a.hook.is_none()
            && a.liveness != Liveness::Alive
            && older_than(a.last_activity_at, self.config.gc_retention(), now)
    }

    /// Whether `b` shows a dispatch failure for the breaker (S8).
    #[must_use]
    pub fn counts_for_breaker(&self, b: &Bead, now: Millis) -> bool {
        b.status != BeadStatus::Closed
            && within(b.last_dispatch_attempt_at, self.config.circuit_breaker_window(), now)
            && (b.dispatch_attempts >= 2 || b.status == BeadStatus::Failed)
    }

    /// `breaker_count` (S8).
    #[must_use]
    pub fn breaker_count(&self, now: Millis) -> u32 {
        let n = self.beads.values().filter(|b| self.counts_for_breaker(b, now)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// `tripped` (S8).
    #[must_use]
    pub fn tripped(&self, now: Millis) -> bool {
        self.breaker_count(now) >= self.config.circuit_breaker_threshold()
    }

    /// Open blockers of `bead_id`: targets of its `blocks` edges that exist and are live
    /// (a missing target blocks nothing).
    pub fn open_blockers<'a>(&'a self, bead_id: &str) -> impl Iterator<Item = &'a Bead> + 'a {
        self.deps.targets(bead_id, DepKind::Blocks).filter_map(|t| self.beads.get(t)).filter(|b| b.status.is_live())
    }

    /// Whether `bead_id` has an open blocker.
    #[must_use]
    pub fn has_open_blocker(&self, bead_id: &str) -> bool {
        self.open_blockers(bead_id).next().is_some()
    }

    /// `staged(b)` (S8): b tracks a convoy with `staged = true`.
    #[must_use]
    pub fn staged(&self, bead_id: &str) -> bool {
        self.deps
            .targets(bead_id, DepKind::Tracks)
            .filter_map(|t| self.beads.get(t))
            .any(|c| c.convoy.as_ref().is_some_and(|r| r.staged))
    }

    /// The convoy `bead_id` tracks, if any.
    #[must_use]
    pub fn convoy_of(&self, bead_id: &str) -> Option<&Bead> {
        self.deps.targets(bead_id, DepKind::Tracks).filter_map(|t| self.beads.get(t)).find(|c| c.bead_type == BeadType::Convoy)
    }

    /// The source an MR tracks (`tracks` target), if it exists.
    #[must_use]
    pub fn mr_source(&self, mr_id: &str) -> Option<&Bead> {
        self.deps.targets(mr_id, DepKind::Tracks).filter_map(|t| self.beads.get(t)).next()
    }

    /// MRs that track `source_id`, in C3 order.
    #[must_use]
    pub fn tracking_mrs(&self, source_id: &str) -> Vec<&Bead> {
        let mut v: Vec<&Bead> = self
            .deps
            .sources(source_id, DepKind::Tracks)
            .filter_map(|s| self.beads.get(s))
            .filter(|b| b.bead_type == BeadType::MergeRequest)
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.bead_id).cmp(&(b.created_at, &b.bead_id)));
        v
    }

    /// Issues that track convoy `convoy_id`, in C3 order.
    #[must_use]
    pub fn convoy_issues(&self, convoy_id: &str) -> Vec<&Bead> {
        let mut v: Vec<&Bead> = self
            .deps
            .sources(convoy_id, DepKind::Tracks)
            .filter_map(|s| self.beads.get(s))
            .filter(|b| b.bead_type == BeadType::Issue)
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.bead_id).cmp(&(b.created_at, &b.bead_id)));
        v
    }

    /// Whether the bead is a `gt:triage` batch created by `patrol`.
    #[must_use]
    pub fn is_triage_batch(b: &Bead) -> bool {
        b.has_label(labels::TRIAGE) && b.created_by == "patrol"
    }

    /// `activity_at(a)` (S8).
    #[must_use]
    pub fn activity_at(a: &Agent) -> Option<Millis> {
        a.last_event_at.or(a.last_activity_at)
    }
}
