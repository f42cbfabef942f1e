//! Review events: rework requests and the PR facts executors report.

use serde::{Deserialize, Serialize};

/// `rework_requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReworkRequested {
    /// The MR under review.
    pub mr_bead_id: String,
    /// The refinery hooked to it.
    pub agent_id: String,
    /// Title of the rework bead.
    pub title: String,
    /// What to change.
    pub body: String,
}

/// A PR's final state as `pr.status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    /// Merged.
    Merged,
    /// Closed without merge.
    Closed,
}

/// `pr_status_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrStatusChanged {
    /// The MR.
    pub mr_bead_id: String,
    /// Its PR.
    pub pr_url: String,
    /// Final state.
    pub pr_state: PrState,
}

/// `pr_feedback_detected` (E3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrFeedbackDetected {
    /// The MR.
    pub mr_bead_id: String,
    /// Its PR.
    pub pr_url: String,
    /// PR number.
    pub pr_number: i64,
    /// `owner/name`.
    pub repo: String,
    /// PR branch.
    pub branch: String,
    /// Unresolved review comments.
    #[serde(default)]
    pub has_unresolved_comments: bool,
    /// Failing checks.
    #[serde(default)]
    pub has_failing_checks: bool,
    /// Checks not yet run.
    #[serde(default)]
    pub has_unchecked_runs: bool,
}

/// `pr_auto_merge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrAutoMerge {
    /// The MR.
    pub mr_bead_id: String,
    /// Its PR.
    pub pr_url: String,
}

/// `pr_conflict_detected` (E3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrConflictDetected {
    /// The MR.
    pub mr_bead_id: String,
    /// The MR's source, if the executor knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bead_id: Option<String>,
    /// Its PR.
    pub pr_url: String,
    /// PR branch.
    pub branch: String,
}
