//! Town configuration and rig events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `town_configured`: any S2 keys; a null value restores the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TownConfigured {
    /// The keys set, as given.
    pub keys: Map<String, Value>,
}

/// `rig_added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RigAdded {
    /// Rig id.
    pub rig_id: String,
    /// Unique display name.
    pub name: String,
    /// Clone URL.
    pub git_url: String,
    /// Default branch.
    pub default_branch: String,
    /// Overrides (S2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Map<String, Value>>,
}

/// `rig_configured`: a null value removes an override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RigConfigured {
    /// Rig id.
    pub rig_id: String,
    /// Overrides to merge.
    pub overrides: Map<String, Value>,
}
