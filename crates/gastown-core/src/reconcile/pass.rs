//! Per-pass bookkeeping (R0.2) and the action cap (R0.8).

use std::collections::{BTreeMap, BTreeSet};

use super::Decision;
use crate::action::Action;
use crate::constants::{MAX_ACTIONS_PER_PASS, POLECAT_NAMES};
use crate::state::{Agent, AgentStatus, Bead, Role, TownState};
use crate::time::Millis;

/// The state of one pass: the pre-pass town, `now`, and what earlier rules of the pass did.
pub(super) struct Pass<'s> {
    /// The pre-pass state every rule reads.
    pub(super) s: &'s TownState,
    /// The pass's instant.
    pub(super) now: Millis,
    /// `S.draining` is set (R0.6).
    pub(super) draining: bool,
    /// `breaker_count` at `now`, computed once (S8).
    pub(super) breaker_count: u32,
    /// `tripped`, computed once.
    pub(super) tripped: bool,
    /// C4 landings suppressed this pass.
    pub(super) landing_suppressed: u32,
    /// One entry per (rule, entity), in emission order.
    groups: Vec<Vec<Action>>,
    next_id: u64,
    claimed: BTreeSet<String>,
    names_taken: BTreeMap<String, BTreeSet<String>>,
    dispatched_polecats: BTreeMap<String, u32>,
    /// Agents by the bead they are hooked to, built once: rules ask per bead.
    hooks: BTreeMap<&'s str, Vec<&'s Agent>>,
    /// Beads in C3 order, sorted once per pass.
    ordered: Vec<&'s Bead>,
}

impl<'s> Pass<'s> {
    pub(super) fn new(s: &'s TownState, now: Millis) -> Self {
        let breaker_count = s.breaker_count(now);
        let mut hooks: BTreeMap<&'s str, Vec<&'s Agent>> = BTreeMap::new();
        for a in s.agents.values() {
            if let Some(h) = a.hook.as_deref() {
                hooks.entry(h).or_default().push(a);
            }
        }
        Self {
            s,
            now,
            draining: s.draining.is_some(),
            breaker_count,
            tripped: breaker_count >= s.config.circuit_breaker_threshold(),
            landing_suppressed: 0,
            groups: Vec::new(),
            next_id: s.id_seq,
            claimed: BTreeSet::new(),
            names_taken: BTreeMap::new(),
            dispatched_polecats: BTreeMap::new(),
            hooks,
            ordered: s.beads_in_order(),
        }
    }

    /// Agents hooked to `bead_id`, by agent id (the pre-pass state's hooks).
    pub(super) fn hooked(&self, bead_id: &str) -> impl Iterator<Item = &'s Agent> + '_ {
        self.hooks.get(bead_id).into_iter().flat_map(|v| v.iter().copied())
    }

    /// Beads of every type in C3 order.
    pub(super) fn beads_in_order(&self) -> Vec<&'s Bead> {
        self.ordered.clone()
    }

    /// Emits the actions one rule decides for one entity (kept or dropped together by R0.8).
    pub(super) fn emit(&mut self, actions: Vec<Action>) {
        if !actions.is_empty() {
            self.groups.push(actions);
        }
    }

    /// Allocates the next town-counter id `<prefix>-<n>` (C2, R0.2).
    pub(super) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Marks an agent as chosen by a dispatch in this pass.
    pub(super) fn claim(&mut self, agent_id: &str) {
        self.claimed.insert(agent_id.to_owned());
    }

    /// Whether a dispatch of this pass already chose the agent.
    pub(super) fn is_claimed(&self, agent_id: &str) -> bool {
        self.claimed.contains(agent_id)
    }

    /// Records a B1 polecat dispatch in `rig` (for `max_polecats_per_rig`, R0.2).
    pub(super) fn count_polecat_dispatch(&mut self, rig_id: &str) {
        *self.dispatched_polecats.entry(rig_id.to_owned()).or_default() += 1;
    }

    /// `working` polecats of the rig in the pre-pass state plus B1's dispatches so far.
    pub(super) fn working_polecats(&self, rig_id: &str) -> u32 {
        let pre = self
            .s
            .agents
            .values()
            .filter(|a| a.role == Role::Polecat && a.status == AgentStatus::Working && a.rig_id.as_deref() == Some(rig_id))
            .count();
        u32::try_from(pre).unwrap_or(u32::MAX) + self.dispatched_polecats.get(rig_id).copied().unwrap_or(0)
    }

    /// The name of a new polecat of `rig_id` (S4): the first of POLECAT_NAMES not used by an agent
    /// of the rig nor given earlier in this pass, else `Polecat-<n>` with the smallest free n ≥ 1.
    pub(super) fn polecat_name(&mut self, rig_id: &str) -> String {
        let used: BTreeSet<&str> =
            self.s.agents.values().filter(|a| a.rig_id.as_deref() == Some(rig_id)).map(|a| a.name.as_str()).collect();
        let taken = self.names_taken.entry(rig_id.to_owned()).or_default();
        let free = |n: &str| !used.contains(n) && !taken.contains(n);
        let name = POLECAT_NAMES.iter().find(|n| free(n)).map(|n| (*n).to_owned()).unwrap_or_else(|| {
            (1_u64..).map(|i| format!("Polecat-{i}")).find(|n| free(n)).unwrap_or_else(|| "Polecat".to_owned())
        });
        taken.insert(name.clone());
        name
    }

    /// Applies R0.8 and returns the decision.
    pub(super) fn finish(self) -> Decision {
        let mut actions = Vec::new();
        let mut truncated = false;
        for g in self.groups {
            if actions.len() + g.len() > MAX_ACTIONS_PER_PASS {
                truncated = true;
                break;
            }
            actions.extend(g);
        }
        Decision { actions, truncated, landing_suppressed: self.landing_suppressed }
    }
}
