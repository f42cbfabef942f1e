//! Convoy events.

use serde::{Deserialize, Serialize};

use crate::state::{MergeMode, Priority};

/// One issue of a new convoy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvoyBeadSpec {
    /// Bead id.
    pub bead_id: String,
    /// Title.
    pub title: String,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Rig.
    pub rig_id: String,
    /// Priority (default medium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// `blocks` edges (to beads of the convoy or existing ones).
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `convoy_created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvoyCreated {
    /// Convoy bead id.
    pub convoy_id: String,
    /// Title.
    pub title: String,
    /// Merge mode.
    pub merge_mode: MergeMode,
    /// Staged convoys wait for `convoy.start`.
    pub staged: bool,
    /// `convoy/<slug>/<first 8 of id>/head`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_branch: Option<String>,
    /// The issues.
    pub beads: Vec<ConvoyBeadSpec>,
}

/// `convoy_started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvoyStarted {
    /// Convoy bead id.
    pub convoy_id: String,
}

/// The feature branch of a convoy (S5): `convoy/<slug>/<first 8 of id>/head`, where the slug is
/// the title lower-cased, each run of characters other than `a-z0-9` replaced by `-`, one leading
/// and one trailing `-` removed, cut to 40 characters, `convoy` when empty.
#[must_use]
pub fn feature_branch(convoy_id: &str, title: &str) -> String {
    let mut slug = String::new();
    let mut in_run = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
            in_run = false;
        } else if !in_run {
            slug.push('-');
            in_run = true;
        }
    }
    let slug = slug.strip_prefix('-').unwrap_or(&slug);
    let slug = slug.strip_suffix('-').unwrap_or(slug);
    let slug: String = slug.chars().take(40).collect();
    let slug = if slug.is_empty() { "convoy".to_owned() } else { slug };
    let short: String = convoy_id.chars().take(8).collect();
    format!("convoy/{slug}/{short}/head")
}

#[cfg(test)]
mod tests {
    use super::feature_branch;

    #[test]
    fn feature_branch_slugs_the_title() {
        assert_eq!(feature_branch("cv1", "Login"), "convoy/login/cv1/head");
        assert_eq!(feature_branch("cv3", "Release"), "convoy/release/cv3/head");
        assert_eq!(feature_branch("cv-0123456789", "  Big -- Fix!! "), "convoy/big-fix/cv-01234/head");
        assert_eq!(feature_branch("c", "!!!"), "convoy/convoy/c/head");
    }
}
