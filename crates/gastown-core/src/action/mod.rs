//! Actions (DOMAIN §A): what a reconcile pass decides. Each is recorded in the `reconciled`
//! event as a flat map `{type, …}`; those [`Action::is_published`] says are also sent to
//! executors after the decision is stored, with the payload `payload` computes (AC3).
//!
//! # Layout
//! - this file: the [`Action`] enum and its wire names;
//! - `apply`: the state change of each action inside a `reconciled` event (AC1);
//! - `payload`: the published message and its enriched payload (AC3).

mod apply;
mod payload;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use apply::{apply_action, apply_result};
pub use payload::{ActionMessage, publish_payload};

use crate::state::{AgentStatus, BeadStatus, Role, Severity};
use crate::time::Millis;

/// `create` of `dispatch_agent`: the agent to create when it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAgent {
    /// `polecat` or `refinery`.
    pub role: Role,
    /// Name (polecats: S4's POLECAT_NAMES rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `flags` of `poll_pr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollFlags {
    /// Auto-merge allowed.
    pub auto_merge: bool,
    /// Green time before auto-merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge_delay_minutes: Option<i64>,
    /// Report feedback.
    pub auto_resolve_pr_feedback: bool,
}

/// A decided action (AC1). Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// `set_status(to, reason, reconciler)`.
    TransitionBead {
        /// Bead.
        bead_id: String,
        /// Pre-pass status (informative).
        from: BeadStatus,
        /// New status.
        to: BeadStatus,
        /// Why.
        reason: String,
    },
    /// Assignee null; unhook every agent hooked to it.
    ClearBeadAssignee {
        /// Bead.
        bead_id: String,
    },
    /// Sets the agent's status.
    TransitionAgent {
        /// Agent.
        agent_id: String,
        /// Pre-pass status (informative).
        from: AgentStatus,
        /// New status.
        to: AgentStatus,
        /// Why.
        reason: String,
    },
    /// `hook(a, b)`.
    HookAgent {
        /// Agent.
        agent_id: String,
        /// Bead.
        bead_id: String,
    },
    /// `unhook(a)`.
    UnhookAgent {
        /// Agent.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// Checkpoint null.
    ClearAgentCheckpoint {
        /// Agent.
        agent_id: String,
    },
    /// Agent counter 0 (and its live hooked bead's).
    ResetAgentDispatchAttempts {
        /// Agent.
        agent_id: String,
    },
    /// Removes the agent, releasing its live beads.
    DeleteAgent {
        /// Agent.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// Starts an agent on a bead (published).
    DispatchAgent {
        /// Agent (created when `create` is set and it does not exist).
        agent_id: String,
        /// Bead.
        bead_id: String,
        /// Rig.
        rig_id: String,
        /// Creation spec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        create: Option<CreateAgent>,
    },
    /// Stops an agent (published).
    StopAgent {
        /// Agent.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// Reads a PR (published).
    PollPr {
        /// MR.
        bead_id: String,
        /// PR.
        pr_url: String,
        /// Executor flags.
        flags: PollFlags,
    },
    /// Merges a PR (published).
    MergePr {
        /// MR.
        bead_id: String,
        /// PR.
        pr_url: String,
    },
    /// Creates and delivers a reconciler nudge (published).
    SendNudge {
        /// Agent.
        agent_id: String,
        /// New nudge id.
        nudge_id: String,
        /// `warn` or `escalate`.
        tier: String,
        /// Text.
        message: String,
    },
    /// Hands a nudge again (published).
    DeliverNudge {
        /// Nudge.
        nudge_id: String,
        /// Agent.
        agent_id: String,
    },
    /// Hands a mail to its recipient (published).
    DeliverMail {
        /// Mail bead.
        bead_id: String,
        /// Recipient.
        agent_id: String,
    },
    /// `open_triage_request` (may be a no-op; the id is consumed).
    CreateTriageRequest {
        /// Agent concerned.
        agent_id: String,
        /// `stuck_agent`, …
        triage_type: String,
        /// Why.
        reason: String,
        /// New request id.
        bead_id: String,
    },
    /// A mail from `reconciler` to the mayor.
    NotifyMayor {
        /// Text.
        message: String,
        /// New mail id.
        bead_id: String,
    },
    /// Records the breaker announcement.
    SetCircuitBreaker {
        /// Open.
        open: bool,
        /// Count announced.
        count: u32,
    },
    /// Writes a convoy's progress.
    UpdateConvoyProgress {
        /// Convoy.
        convoy_id: String,
        /// Terminal issues.
        closed_beads: u32,
        /// Issues.
        total_beads: u32,
    },
    /// Marks a convoy ready to land.
    SetConvoyReadyToLand {
        /// Convoy.
        convoy_id: String,
    },
    /// Creates a landing MR.
    CreateLandingMr {
        /// Convoy.
        convoy_id: String,
        /// Rig.
        rig_id: String,
        /// Branch to land.
        feature_branch: String,
        /// Target.
        target_branch: String,
        /// New MR id.
        bead_id: String,
    },
    /// Closes a convoy.
    CloseConvoy {
        /// Convoy.
        convoy_id: String,
    },
    /// Fails a convoy.
    FailConvoy {
        /// Convoy.
        convoy_id: String,
        /// Why.
        reason: String,
    },
    /// One severity step up.
    ReEscalate {
        /// Escalation.
        bead_id: String,
        /// New severity.
        severity: Severity,
        /// Mayor mail id (severity ≥ medium).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mail_id: Option<String>,
    },
    /// Opens an escalation with its triage request and mayor mail.
    OpenEscalation {
        /// New escalation id.
        bead_id: String,
        /// Severity.
        severity: Severity,
        /// Category.
        category: String,
        /// Title.
        title: String,
        /// Rig.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rig_id: Option<String>,
        /// Context.
        context: Map<String, Value>,
        /// New triage request id.
        request_id: String,
        /// New mail id (severity ≥ medium).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mail_id: Option<String>,
    },
    /// Creates a triage batch.
    CreateTriageBatch {
        /// New batch id.
        bead_id: String,
        /// Rig.
        rig_id: String,
        /// Requests in the batch.
        request_ids: Vec<String>,
    },
    /// Removes nudges created at or before `before`.
    PruneNudges {
        /// Cut-off.
        before: Millis,
    },
    /// Ends draining.
    EndDrain,
}

impl Action {
    /// The wire name of the action type.
    #[must_use]
    pub fn action_type(&self) -> &'static str {
        match self {
            Self::TransitionBead { .. } => "transition_bead",
            Self::ClearBeadAssignee { .. } => "clear_bead_assignee",
            Self::TransitionAgent { .. } => "transition_agent",
            Self::HookAgent { .. } => "hook_agent",
            Self::UnhookAgent { .. } => "unhook_agent",
            Self::ClearAgentCheckpoint { .. } => "clear_agent_checkpoint",
            Self::ResetAgentDispatchAttempts { .. } => "reset_agent_dispatch_attempts",
            Self::DeleteAgent { .. } => "delete_agent",
            Self::DispatchAgent { .. } => "dispatch_agent",
            Self::StopAgent { .. } => "stop_agent",
            Self::PollPr { .. } => "poll_pr",
            Self::MergePr { .. } => "merge_pr",
            Self::SendNudge { .. } => "send_nudge",
            Self::DeliverNudge { .. } => "deliver_nudge",
            Self::DeliverMail { .. } => "deliver_mail",
            Self::CreateTriageRequest { .. } => "create_triage_request",
            Self::NotifyMayor { .. } => "notify_mayor",
            Self::SetCircuitBreaker { .. } => "set_circuit_breaker",
            Self::UpdateConvoyProgress { .. } => "update_convoy_progress",
            Self::SetConvoyReadyToLand { .. } => "set_convoy_ready_to_land",
            Self::CreateLandingMr { .. } => "create_landing_mr",
            Self::CloseConvoy { .. } => "close_convoy",
            Self::FailConvoy { .. } => "fail_convoy",
            Self::ReEscalate { .. } => "re_escalate",
            Self::OpenEscalation { .. } => "open_escalation",
            Self::CreateTriageBatch { .. } => "create_triage_batch",
            Self::PruneNudges { .. } => "prune_nudges",
            Self::EndDrain => "end_drain",
        }
    }

    /// Whether the action is also sent to executors (AC1 "published").
    #[must_use]
    pub fn is_published(&self) -> bool {
        matches!(
            self,
            Self::DispatchAgent { .. }
                | Self::StopAgent { .. }
                | Self::PollPr { .. }
                | Self::MergePr { .. }
                | Self::SendNudge { .. }
                | Self::DeliverNudge { .. }
                | Self::DeliverMail { .. }
        )
    }

    /// Every id this action names that could be a town-counter id (R0.2): applying the action
    /// raises `id_seq` to the greatest `<prefix>-<n>` among them.
    #[must_use]
    pub fn named_ids(&self) -> Vec<&str> {
        match self {
            Self::DispatchAgent { agent_id, .. } => vec![agent_id],
            Self::SendNudge { nudge_id, .. } => vec![nudge_id],
            Self::CreateTriageRequest { bead_id, .. }
            | Self::NotifyMayor { bead_id, .. }
            | Self::CreateLandingMr { bead_id, .. }
            | Self::CreateTriageBatch { bead_id, .. } => vec![bead_id],
            Self::ReEscalate { mail_id, .. } => mail_id.iter().map(String::as_str).collect(),
            Self::OpenEscalation { bead_id, request_id, mail_id, .. } => {
                let mut v = vec![bead_id.as_str(), request_id.as_str()];
                v.extend(mail_id.as_deref());
                v
            }
            _ => Vec::new(),
        }
    }
}
