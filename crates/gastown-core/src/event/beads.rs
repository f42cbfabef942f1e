//! Bead events: creation, hooks, status, labels and dependencies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::{BeadStatus, DepKind, Priority};

fn medium() -> Priority {
    Priority::Medium
}

fn operator() -> String {
    "operator".to_owned()
}

/// `bead_created`: an open issue, optionally hooked at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeadCreated {
    /// Bead id.
    pub bead_id: String,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Rig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig_id: Option<String>,
    /// Parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_bead_id: Option<String>,
    /// Priority.
    #[serde(default = "medium")]
    pub priority: Priority,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Creator.
    #[serde(default = "operator")]
    pub created_by: String,
    /// `blocks` edges to these beads.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `tracks` edge to this convoy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convoy_id: Option<String>,
    /// Hook this agent at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `bead_hooked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeadHooked {
    /// Bead id.
    pub bead_id: String,
    /// Agent id.
    pub agent_id: String,
}

/// `bead_status_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeadStatusChanged {
    /// Bead id.
    pub bead_id: String,
    /// New status.
    pub status: BeadStatus,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who.
    #[serde(default = "operator")]
    pub actor: String,
}

/// `bead_labels_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeadLabelsChanged {
    /// Bead id.
    pub bead_id: String,
    /// Labels to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Labels to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `dependency_added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyAdded {
    /// Dependent bead.
    pub bead_id: String,
    /// What it depends on.
    pub depends_on: String,
    /// Edge kind.
    pub kind: DepKind,
}
