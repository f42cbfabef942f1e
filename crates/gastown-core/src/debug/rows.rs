//! Entity rows of the debug replies (DOMAIN §D): they keep the column names of the original
//! system (snake_case), unlike the camelCase summaries around them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::{Agent, Bead, BeadType, TownState};
use crate::time::format_iso;

/// One agent (§D agent row). `bead_id` is the agent id: agents were beads in the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    /// The agent id.
    pub bead_id: String,
    /// `polecat`, `refinery` or `mayor`.
    pub role: String,
    /// `idle`, `working`, `stalled` or `dead`.
    pub status: String,
    /// The hooked bead.
    pub current_hook_bead_id: Option<String>,
    /// The agent-level counter.
    pub dispatch_attempts: u32,
    /// ISO instant.
    pub last_activity_at: Option<String>,
    /// `unseen`, `alive` or `lost`.
    pub liveness: String,
}

impl AgentRow {
    /// The row of `a`.
    #[must_use]
    pub fn of(a: &Agent) -> Self {
        Self {
            bead_id: a.agent_id.clone(),
            role: a.role.as_str().to_owned(),
            status: a.status.as_str().to_owned(),
            current_hook_bead_id: a.hook.clone(),
            dispatch_attempts: a.dispatch_attempts,
            last_activity_at: a.last_activity_at.map(format_iso),
            liveness: a.liveness.as_str().to_owned(),
        }
    }
}

/// One non-terminal, non-message bead (§D bead row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeadRow {
    /// Bead id.
    pub bead_id: String,
    /// Type name.
    #[serde(rename = "type")]
    pub bead_type: String,
    /// Status name.
    pub status: String,
    /// Title.
    pub title: String,
    /// The assignee (an agent id or `system`).
    pub assignee_agent_bead_id: Option<String>,
    /// ISO instant.
    pub updated_at: String,
    /// Rig.
    pub rig_id: Option<String>,
    /// Creator.
    pub created_by: String,
    /// Labels in order.
    pub labels: Vec<String>,
    /// The bead's metadata plus its typed sub-record fields under the original key names
    /// ([`row_metadata`]); keys sorted.
    pub metadata: Map<String, Value>,
}

impl BeadRow {
    /// The row of `b`.
    #[must_use]
    pub fn of(b: &Bead) -> Self {
        Self {
            bead_id: b.bead_id.clone(),
            bead_type: b.bead_type.as_str().to_owned(),
            status: b.status.as_str().to_owned(),
            title: b.title.clone(),
            assignee_agent_bead_id: b.assignee.clone(),
            updated_at: format_iso(b.updated_at),
            rig_id: b.rig_id.clone(),
            created_by: b.created_by.clone(),
            labels: b.labels.clone(),
            metadata: row_metadata(b),
        }
    }
}

/// A bead's metadata as debug rows show it (S5): the stored map, plus each typed sub-record field
/// the original kept in metadata, under its original name and only when set — `pr_url`,
/// `last_poll_at` (ISO), `poll_null_count` (> 0), `auto_merge_pending` and `awaiting_approval`
/// (when true) of an MR; `ready_to_land` (when true), `feature_branch`, `landing_mr_attempts`
/// (> 0) and `last_landing_mr_attempt_at` (ISO) of a convoy; `failureReason` (the code) and
/// `failureMessage` of a failed bead. A typed field wins over a stored key of the same name.
#[must_use]
pub fn row_metadata(b: &Bead) -> Map<String, Value> {
    let mut m = b.metadata.clone();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    if let Some(r) = &b.review {
        if let Some(pr) = &r.pr_url {
            put("pr_url", Value::from(pr.as_str()));
        }
        if let Some(t) = r.last_poll_at {
            put("last_poll_at", Value::from(format_iso(t)));
        }
        if r.poll_null_count > 0 {
            put("poll_null_count", Value::from(r.poll_null_count));
        }
        if r.auto_merge_pending {
            put("auto_merge_pending", Value::Bool(true));
        }
        if r.awaiting_approval {
            put("awaiting_approval", Value::Bool(true));
        }
    }
    if let Some(c) = &b.convoy {
        if c.ready_to_land {
            put("ready_to_land", Value::Bool(true));
        }
        if let Some(f) = &c.feature_branch {
            put("feature_branch", Value::from(f.as_str()));
        }
        if c.landing_mr_attempts > 0 {
            put("landing_mr_attempts", Value::from(c.landing_mr_attempts));
        }
        if let Some(t) = c.last_landing_mr_attempt_at {
            put("last_landing_mr_attempt_at", Value::from(format_iso(t)));
        }
    }
    if let Some(f) = &b.failure_reason {
        put("failureReason", Value::from(f.code.as_str()));
        put("failureMessage", Value::from(f.message.as_str()));
    }
    m
}

/// Agent rows in C3 order (by agent id).
#[must_use]
pub fn agent_rows(s: &TownState) -> Vec<AgentRow> {
    s.agents.values().map(AgentRow::of).collect()
}

/// Bead rows: non-terminal, non-message beads ordered by type name, then status name (both
/// byte-wise), then C3 (`created_at`, `bead_id`).
#[must_use]
pub fn bead_rows(s: &TownState) -> Vec<BeadRow> {
    let mut beads: Vec<&Bead> = s.beads.values().filter(|b| b.status.is_live() && b.bead_type != BeadType::Message).collect();
    beads.sort_by(|a, b| {
        (a.bead_type.as_str(), a.status.as_str(), a.created_at, &a.bead_id).cmp(&(
            b.bead_type.as_str(),
            b.status.as_str(),
            b.created_at,
            &b.bead_id,
        ))
    });
    beads.into_iter().map(BeadRow::of).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{ConvoyBeadSpec, ConvoyCreated, EscalationRaised, MailSent, PrAutoMerge};
    use crate::state::{MergeMode, Role, Severity};
    use crate::testing::*;

    const PR: &str = "https://github.com/acme/app/pull/7";

    /// F; convoy cv1 with issue c1; b1 dispatched to pc-1, done with a PR (mr-2, b1 in_review),
    /// green for auto-merge; escalation e1 with its triage request tri-3; a mail to the mayor.
    fn mixed_town() -> Given {
        given(fixture_f()).and([
            ev(ConvoyCreated {
                convoy_id: "cv1".into(),
                title: "Login".into(),
                merge_mode: MergeMode::ReviewThenLand,
                staged: false,
                feature_branch: Some("convoy/login/cv1/head".into()),
                beads: vec![ConvoyBeadSpec {
                    bead_id: "c1".into(),
                    title: "Form".into(),
                    body: None,
                    rig_id: "r1".into(),
                    priority: None,
                    labels: None,
                    depends_on: Vec::new(),
                }],
            })
            .at(T0 + secs(1)),
            bead_created("b1", "r1").at(T0 + secs(2)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(2)),
            agent_done_pr("pc-1", "fix/login", PR).at(T0 + secs(3)),
            ev(EscalationRaised {
                bead_id: "e1".into(),
                severity: Severity::Low,
                category: "general".into(),
                title: "Flaky CI".into(),
                body: None,
                rig_id: None,
                agent_id: None,
                context: serde_json::Map::new(),
            })
            .at(T0 + secs(4)),
            ev(MailSent {
                bead_id: "m1".into(),
                to_agent_id: "mayor".into(),
                from: "operator".into(),
                subject: "Hello".into(),
                body: None,
            })
            .at(T0 + secs(5)),
            ev(PrAutoMerge { mr_bead_id: "mr-2".into(), pr_url: PR.into() }).at(T0 + secs(6)),
        ])
    }

    #[test]
    fn bead_rows_order_by_type_then_status_then_creation_and_skip_messages() {
        let rows = bead_rows(&mixed_town().state);
        let got: Vec<(&str, &str, &str)> =
            rows.iter().map(|r| (r.bead_id.as_str(), r.bead_type.as_str(), r.status.as_str())).collect();
        assert_eq!(
            got,
            [
                ("cv1", "convoy", "open"),
                ("e1", "escalation", "open"),
                ("b1", "issue", "in_review"),
                ("c1", "issue", "open"),
                ("tri-3", "issue", "open"),
                ("mr-2", "merge_request", "open"),
            ]
        );
    }

    #[test]
    fn typed_sub_record_fields_appear_in_metadata_under_their_original_names_only_when_set() {
        let town = mixed_town();
        assert_eq!(
            Value::Object(row_metadata(town.bead("mr-2"))),
            json!({"source_bead_id": "b1", "source_agent_id": "pc-1", "pr_url": PR, "auto_merge_pending": true})
        );
        assert_eq!(Value::Object(row_metadata(town.bead("cv1"))), json!({"feature_branch": "convoy/login/cv1/head"}));
        assert_eq!(Value::Object(row_metadata(town.bead("b1"))), json!({}));
    }

    #[test]
    fn failed_beads_show_their_failure_reason_and_message() {
        // b1 fails at its cap (B1 #2) through a decision.
        let town = given(fixture_f()).and([
            bead_created("b1", "r1").at(T0),
            reconciled([transition_bead(
                "b1",
                crate::state::BeadStatus::Open,
                crate::state::BeadStatus::Failed,
                "max dispatch attempts exceeded (5)",
            )])
            .at(T0),
        ]);
        assert_eq!(
            Value::Object(row_metadata(town.bead("b1"))),
            json!({"failureReason": "reconciler", "failureMessage": "max dispatch attempts exceeded (5)"})
        );
        assert!(bead_rows(&town.state).is_empty(), "terminal beads have no row");
    }

    #[test]
    fn agent_rows_follow_agent_ids_with_iso_instants() {
        let town = mixed_town();
        let rows = agent_rows(&town.state);
        let ids: Vec<&str> = rows.iter().map(|r| r.bead_id.as_str()).collect();
        assert_eq!(ids, ["mayor", "pc-1"]);
        let pc1 = &rows[1];
        assert_eq!(pc1.role, "polecat");
        assert_eq!(pc1.current_hook_bead_id, None);
        assert_eq!(pc1.last_activity_at.as_deref(), Some("2026-06-01T10:00:03.000Z"));
    }
}
