//! Labels with meaning (S5).

/// A triage request: never dispatched, never hooked.
pub const TRIAGE_REQUEST: &str = "gt:triage-request";
/// A triage batch (`created_by = patrol`).
pub const TRIAGE: &str = "gt:triage";
/// A rework bead (closed directly by `agent_done`).
pub const REWORK: &str = "gt:rework";
/// A PR-feedback bead.
pub const PR_FEEDBACK: &str = "gt:pr-feedback";
/// A PR-fixup bead.
pub const PR_FIXUP: &str = "gt:pr-fixup";
/// A PR-conflict bead.
pub const PR_CONFLICT: &str = "gt:pr-conflict";
/// Never dispatched.
pub const HELD: &str = "gt:held";
/// Type marker of merge requests.
pub const MERGE_REQUEST: &str = "gt:merge-request";
/// Type marker of convoys.
pub const CONVOY: &str = "gt:convoy";
/// Type marker of escalations.
pub const ESCALATION: &str = "gt:escalation";
/// Type marker of mail.
pub const MESSAGE: &str = "gt:message";

/// Labels that `agent_done` closes directly (E3.1).
pub const FOLLOW_UP: [&str; 4] = [REWORK, PR_FEEDBACK, PR_FIXUP, PR_CONFLICT];

/// Whether commands may not set `label` (S5).
#[must_use]
pub fn is_reserved(label: &str) -> bool {
    [TRIAGE_REQUEST, TRIAGE, MERGE_REQUEST, CONVOY, ESCALATION, MESSAGE].contains(&label)
        || label.starts_with("severity:")
        || label.starts_with("from:")
}
