//! The rows of the state: rigs (S3), agents (S4), beads (S5) and nudges (S7).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::RigOverrides;
use crate::time::Millis;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? } values = $values:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in the order §S lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The values as messages list them (`a, b, c`).
            pub const VALUES: &'static str = $values;

            /// The wire name.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// An agent's role (S4).
    Role { /// Ephemeral worker, one issue at a time.
    Polecat = "polecat", /// One per rig, reviews and merges MRs.
    Refinery = "refinery", /// One per town, never hooked.
    Mayor = "mayor" } values = "polecat, refinery, mayor"
);

wire_enum!(
    /// An agent's status (S4).
    AgentStatus { /// Not working.
    Idle = "idle", /// Working on its hook.
    Working = "working", /// Force-stopped by GUPP, awaiting auto-idle.
    Stalled = "stalled", /// Reserved: no path sets it.
    Dead = "dead" } values = "idle, working, stalled, dead"
);

wire_enum!(
    /// What the town knows of an agent's heartbeats (S4).
    Liveness { /// No heartbeat since registration or since a dispatch that found it not alive.
    Unseen = "unseen", /// Heartbeating.
    Alive = "alive", /// Silent or gone.
    Lost = "lost" } values = "unseen, alive, lost"
);

wire_enum!(
    /// A bead's type (S5).
    BeadType { /// Work for a polecat.
    Issue = "issue", /// A review for the refinery.
    MergeRequest = "merge_request", /// A group of issues landed together.
    Convoy = "convoy", /// A problem for people.
    Escalation = "escalation", /// Mail.
    Message = "message" } values = "issue, merge_request, convoy, escalation, message"
);

wire_enum!(
    /// A bead's status (S5).
    BeadStatus { /// Waiting for work.
    Open = "open", /// Being worked.
    InProgress = "in_progress", /// Waiting for its MR.
    InReview = "in_review", /// Done (terminal).
    Closed = "closed", /// Given up (terminal).
    Failed = "failed" } values = "open, in_progress, in_review, closed, failed"
);

wire_enum!(
    /// A bead's priority (S5).
    Priority { /// Low.
    Low = "low", /// Medium (default).
    Medium = "medium", /// High.
    High = "high", /// Critical.
    Critical = "critical" } values = "low, medium, high, critical"
);

wire_enum!(
    /// An escalation's severity, ordered low < medium < high < critical.
    Severity { /// Low.
    Low = "low", /// Medium.
    Medium = "medium", /// High.
    High = "high", /// Critical.
    Critical = "critical" } values = "low, medium, high, critical"
);

wire_enum!(
    /// How a convoy's issues reach the default branch (S5).
    MergeMode { /// Each issue is reviewed into the feature branch, then one landing MR lands it.
    ReviewThenLand = "review-then-land", /// Each issue is reviewed and merged on its own.
    ReviewAndMerge = "review-and-merge" } values = "review-then-land, review-and-merge"
);

wire_enum!(
    /// How a nudge is delivered (S7).
    NudgeMode { /// Now.
    Immediate = "immediate", /// When the agent is idle.
    WaitIdle = "wait-idle", /// Queued.
    Queue = "queue" } values = "immediate, wait-idle, queue"
);

wire_enum!(
    /// A nudge's priority (S7).
    NudgePriority { /// Normal.
    Normal = "normal", /// Urgent.
    Urgent = "urgent" } values = "normal, urgent"
);

impl BeadStatus {
    /// `closed` or `failed` (C4).
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Failed)
    }
    /// Not terminal (C4).
    #[must_use]
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }
}

impl Severity {
    /// The next step up; critical stays critical.
    #[must_use]
    pub fn next(self) -> Self {
        match self {
            Self::Low => Self::Medium,
            Self::Medium => Self::High,
            Self::High | Self::Critical => Self::Critical,
        }
    }
    /// The bead priority of the same name.
    #[must_use]
    pub fn priority(self) -> Priority {
        match self {
            Self::Low => Priority::Low,
            Self::Medium => Priority::Medium,
            Self::High => Priority::High,
            Self::Critical => Priority::Critical,
        }
    }
}

/// A rig: a git repository (S3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rig {
    /// Id (C2, at most 48 characters).
    pub rig_id: String,
    /// Display name, unique in the town.
    pub name: String,
    /// Clone URL.
    pub git_url: String,
    /// Merge target (default `main`).
    pub default_branch: String,
    /// Config overrides (S2).
    pub overrides: RigOverrides,
    /// When it was added.
    pub created_at: Millis,
}

/// An agent (S4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Id (C2).
    pub agent_id: String,
    /// Role.
    pub role: Role,
    /// Rig; `None` for the mayor.
    pub rig_id: Option<String>,
    /// Display name.
    pub name: String,
    /// `<name>-<role>-<first 8 of rig_id>@<first 8 of town_id>`.
    pub identity: String,
    /// Status.
    pub status: AgentStatus,
    /// The bead it is hooked to.
    pub hook: Option<String>,
    /// Action id (`<seq>:<index>`) of the last dispatch applied to it.
    pub current_dispatch_id: Option<String>,
    /// Agent-level dispatch counter (A3).
    pub dispatch_attempts: u32,
    /// Opaque checkpoint sent with `dispatch_agent`.
    pub checkpoint: Option<Map<String, Value>>,
    /// Last sign of life (register, resume, activity, hook, dispatch, done, completed).
    pub last_activity_at: Option<Millis>,
    /// Heartbeat knowledge.
    pub liveness: Liveness,
    /// Last reported container.
    pub container_instance_id: Option<String>,
    /// SDK watermark: last event type.
    pub last_event_type: Option<String>,
    /// SDK watermark: last event time.
    pub last_event_at: Option<Millis>,
    /// SDK watermark: tools in use.
    pub active_tools: Vec<String>,
    /// When it entered `stalled`.
    pub stalled_at: Option<Millis>,
    /// When a stop was last requested.
    pub stop_requested_at: Option<Millis>,
    /// Error of the last failed dispatch.
    pub last_dispatch_error: Option<String>,
    /// When it was created.
    pub created_at: Millis,
}

/// Why a bead failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    /// Machine code (`reconciler`, `manual`, `agent_failed`, `pr_closed`, …).
    pub code: String,
    /// Human message.
    pub message: String,
}

/// The review sub-record of a merge request (S5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// Branch under review.
    pub branch: String,
    /// Branch it merges into.
    pub target_branch: String,
    /// PR, when the refinery opened one.
    pub pr_url: Option<String>,
    /// Merge commit, when known.
    pub merge_commit: Option<String>,
    /// Retry counter.
    pub retry_count: u32,
    /// Consecutive `unknown` poll results.
    pub poll_null_count: u32,
    /// Consecutive permanent poll errors.
    pub poll_error_count: u32,
    /// Last poll decided.
    pub last_poll_at: Option<Millis>,
    /// Set by `pr_auto_merge`, cleared by `merge_pr`.
    pub auto_merge_pending: bool,
    /// The PR awaits a human approval.
    pub awaiting_approval: bool,
    /// When a merge was last requested.
    pub merge_requested_at: Option<Millis>,
}

/// The convoy sub-record (S5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvoyRecord {
    /// Issues tracking the convoy, as last written by C1.
    pub total_beads: u32,
    /// Terminal ones among them, as last written by C1.
    pub closed_beads: u32,
    /// Merge mode.
    pub merge_mode: MergeMode,
    /// Staged convoys are not dispatched until started.
    pub staged: bool,
    /// `convoy/<slug>/<first 8 of id>/head`.
    pub feature_branch: Option<String>,
    /// Set by C3.
    pub ready_to_land: bool,
    /// When it landed.
    pub landed_at: Option<Millis>,
    /// Landing MRs created.
    pub landing_mr_attempts: u32,
    /// When the last landing MR was created.
    pub last_landing_mr_attempt_at: Option<Millis>,
}

#[allow(clippy::derivable_impls, reason = "wire_enum! takes no per-variant attributes, so #[default] cannot be placed")]
impl Default for MergeMode {
    fn default() -> Self {
        Self::ReviewThenLand
    }
}

/// The escalation sub-record (S5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRecord {
    /// Current severity.
    pub severity: Severity,
    /// Category (`general`, `merge_conflict`, …).
    pub category: String,
    /// Whether someone acknowledged it.
    pub acknowledged: bool,
    /// When.
    pub acknowledged_at: Option<Millis>,
    /// H3 steps taken.
    pub re_escalation_count: u32,
}

/// The mail sub-record of a message bead (S5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRecord {
    /// Sender.
    pub from: String,
    /// Last hand-over to the recipient.
    pub delivery_attempted_at: Option<Millis>,
    /// Confirmed delivery.
    pub delivered_at: Option<Millis>,
}

/// A bead (S5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bead {
    /// Id (C2).
    pub bead_id: String,
    /// Type.
    #[serde(rename = "type")]
    pub bead_type: BeadType,
    /// Status; written only through `set_status` (S10).
    pub status: BeadStatus,
    /// Title.
    pub title: String,
    /// Body.
    pub body: Option<String>,
    /// Rig.
    pub rig_id: Option<String>,
    /// Parent bead.
    pub parent_bead_id: Option<String>,
    /// Branch of a rework bead (from its MR).
    pub branch: Option<String>,
    /// Agent id, `system`, or none.
    pub assignee: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Ordered set of labels.
    pub labels: Vec<String>,
    /// Free metadata; some keys are read by rules (S5).
    pub metadata: Map<String, Value>,
    /// Creator.
    pub created_by: String,
    /// Creation time (C3 order).
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// When it became terminal.
    pub closed_at: Option<Millis>,
    /// The first terminal status, never rewritten.
    pub final_status: Option<BeadStatus>,
    /// Bead-level dispatch counter.
    pub dispatch_attempts: u32,
    /// Last dispatch.
    pub last_dispatch_attempt_at: Option<Millis>,
    /// Why it failed.
    pub failure_reason: Option<FailureReason>,
    /// MR sub-record.
    pub review: Option<ReviewRecord>,
    /// Convoy sub-record.
    pub convoy: Option<ConvoyRecord>,
    /// Escalation sub-record.
    pub escalation: Option<EscalationRecord>,
    /// Mail sub-record.
    pub mail: Option<MailRecord>,
}

impl Bead {
    /// A new open bead of `bead_type` with empty optional fields, created at `t` by `created_by`.
    #[must_use]
    pub fn new(bead_id: &str, bead_type: BeadType, title: &str, created_by: &str, t: Millis) -> Self {
        Self {
            bead_id: bead_id.to_owned(),
            bead_type,
            status: BeadStatus::Open,
            title: title.to_owned(),
            body: None,
            rig_id: None,
            parent_bead_id: None,
            branch: None,
            assignee: None,
            priority: Priority::Medium,
            labels: Vec::new(),
            metadata: Map::new(),
            created_by: created_by.to_owned(),
            created_at: t,
            updated_at: t,
            closed_at: None,
            final_status: None,
            dispatch_attempts: 0,
            last_dispatch_attempt_at: None,
            failure_reason: None,
            review: None,
            convoy: None,
            escalation: None,
            mail: None,
        }
    }

    /// Whether the bead carries `label`.
    #[must_use]
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    /// Adds a label unless present (labels are an ordered set).
    pub fn add_label(&mut self, label: &str) {
        if !self.has_label(label) {
            self.labels.push(label.to_owned());
        }
    }

    /// Terminal status (C4).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// A triage request (`gt:triage-request`).
    #[must_use]
    pub fn is_triage_request(&self) -> bool {
        self.has_label(crate::labels::TRIAGE_REQUEST)
    }

    /// Hookable (C4): not an escalation, convoy or message, and not a triage request.
    #[must_use]
    pub fn is_hookable(&self) -> bool {
        !matches!(self.bead_type, BeadType::Escalation | BeadType::Convoy | BeadType::Message) && !self.is_triage_request()
    }

    /// A string metadata value.
    #[must_use]
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// A boolean metadata value (absent = false).
    #[must_use]
    pub fn meta_flag(&self, key: &str) -> bool {
        self.metadata.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// The PR of an MR, when set.
    #[must_use]
    pub fn pr_url(&self) -> Option<&str> {
        self.review.as_ref().and_then(|r| r.pr_url.as_deref())
    }
}

/// A nudge for an agent (S7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nudge {
    /// Id.
    pub nudge_id: String,
    /// Recipient.
    pub agent_id: String,
    /// Text.
    pub message: String,
    /// Delivery mode.
    pub mode: NudgeMode,
    /// Priority.
    pub priority: NudgePriority,
    /// `reconciler:<tier>`, `triage`, or the sender.
    pub source: String,
    /// Creation.
    pub created_at: Millis,
    /// Last hand-over to an executor.
    pub handed_at: Option<Millis>,
    /// Confirmed delivery.
    pub delivered_at: Option<Millis>,
    /// Expiry.
    pub expires_at: Millis,
}
