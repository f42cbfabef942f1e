//! Nudges, mail, escalations and triage.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::{NudgeMode, NudgePriority, Severity};

/// `nudge_queued`: exactly one nudge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NudgeQueued {
    /// Nudge id.
    pub nudge_id: String,
    /// Recipient.
    pub agent_id: String,
    /// Text.
    pub message: String,
    /// Mode.
    pub mode: NudgeMode,
    /// Priority.
    pub priority: NudgePriority,
    /// Sender.
    pub source: String,
    /// Lifetime in seconds.
    pub ttl_s: i64,
}

/// `mail_sent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailSent {
    /// Mail bead id.
    pub bead_id: String,
    /// Recipient.
    pub to_agent_id: String,
    /// Sender.
    pub from: String,
    /// Subject (the bead's title).
    pub subject: String,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn general() -> String {
    "general".to_owned()
}

/// `escalation_raised`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRaised {
    /// Escalation bead id.
    pub bead_id: String,
    /// Severity.
    pub severity: Severity,
    /// Category.
    #[serde(default = "general")]
    pub category: String,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Rig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig_id: Option<String>,
    /// Agent concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Free context.
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// `escalation_acknowledged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationAcknowledged {
    /// Escalation bead id.
    pub bead_id: String,
    /// Who.
    #[serde(default = "operator")]
    pub by: String,
}

fn operator() -> String {
    "operator".to_owned()
}

/// `triage_resolved` (E3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageResolved {
    /// The triage request.
    pub request_bead_id: String,
    /// One of its options (`RESTART`, …).
    pub action: String,
    /// Note (the nudge text for `NUDGE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who.
    #[serde(default = "operator")]
    pub resolved_by: String,
}
