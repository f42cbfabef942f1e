//! Apply of the review events: rework, PR status, auto-merge and the PR follow-ups of E3.5.

use serde_json::{Map, Value};

use super::ops::{self, EscalationSpec};
use crate::event::{PrAutoMerge, PrConflictDetected, PrFeedbackDetected, PrState, PrStatusChanged, ReworkRequested};
use crate::labels;
use crate::state::{Bead, BeadType, DepKind, Severity, TownState};
use crate::time::Millis;

/// A live merge request.
fn live_mr<'a>(s: &'a TownState, id: &str) -> Option<&'a Bead> {
    s.beads.get(id).filter(|b| b.bead_type == BeadType::MergeRequest && b.status.is_live())
}

/// Creates `rw-n` blocking a live MR the agent is hooked to; no-op otherwise.
pub(super) fn rework_requested(s: &mut TownState, d: &ReworkRequested, t: Millis) {
    let Some(mr) = live_mr(s, &d.mr_bead_id) else {
        return;
    };
    if s.agents.get(&d.agent_id).is_none_or(|a| a.hook.as_deref() != Some(d.mr_bead_id.as_str())) {
        return;
    }
    let (rig, branch) = (mr.rig_id.clone(), mr.review.as_ref().map(|r| r.branch.clone()));
    let (id, n) = ops::peek_id(s, "rw");
    let mut b = Bead::new(&id, BeadType::Issue, &d.title, "system", t);
    b.body = Some(d.body.clone());
    b.labels.push(labels::REWORK.to_owned());
    b.rig_id = rig;
    b.branch = branch;
    b.parent_bead_id = Some(d.mr_bead_id.clone());
    s.beads.insert(id.clone(), b);
    ops::take_id(s, n);
    s.deps.insert(&d.mr_bead_id, &id, DepKind::Blocks);
    if let Some(mr) = s.beads.get_mut(&d.mr_bead_id) {
        mr.updated_at = t;
    }
}

/// merged → `complete_review_merged`; closed → `fail_review(m, "PR closed without merge",
/// pr_closed)`.
pub(super) fn pr_status_changed(s: &mut TownState, d: &PrStatusChanged, t: Millis) {
    if live_mr(s, &d.mr_bead_id).is_none() {
        return;
    }
    match d.pr_state {
        PrState::Merged => ops::complete_review_merged(s, &d.mr_bead_id, t),
        PrState::Closed => ops::fail_review(s, &d.mr_bead_id, "PR closed without merge", "pr_closed", t),
    }
}

/// A live MR: `auto_merge_pending = true`, `updated_at = t`.
pub(super) fn pr_auto_merge(s: &mut TownState, d: &PrAutoMerge, t: Millis) {
    if live_mr(s, &d.mr_bead_id).is_none() {
        return;
    }
    if let Some(mr) = s.beads.get_mut(&d.mr_bead_id) {
        mr.review.get_or_insert_with(Default::default).auto_merge_pending = true;
        mr.updated_at = t;
    }
}

/// The first live open blocker of `mr` carrying `label`, by id.
fn live_blocker(s: &TownState, mr: &str, label: &str) -> Option<String> {
    s.open_blockers(mr).find(|b| b.has_label(label)).map(|b| b.bead_id.clone())
}

/// Sets a boolean metadata flag on a bead.
fn flag(s: &mut TownState, bead_id: &str, key: &str) {
    if let Some(b) = s.beads.get_mut(bead_id) {
        b.metadata.insert(key.to_owned(), Value::Bool(true));
    }
}

/// A follow-up issue blocking `mr` (E3.5): open, labelled, in the MR's rig, child of the MR.
fn create_follow_up(
    s: &mut TownState,
    mr: &str,
    prefix: &str,
    title: &str,
    label: &str,
    metadata: Map<String, Value>,
    t: Millis,
) {
    let rig = s.beads.get(mr).and_then(|b| b.rig_id.clone());
    let (id, n) = ops::peek_id(s, prefix);
    let mut b = Bead::new(&id, BeadType::Issue, title, "system", t);
    b.labels.push(label.to_owned());
    b.rig_id = rig;
    b.parent_bead_id = Some(mr.to_owned());
    b.metadata = metadata;
    s.beads.insert(id.clone(), b);
    ops::take_id(s, n);
    s.deps.insert(mr, &id, DepKind::Blocks);
}

/// The last `/`-separated segment of `owner/name`.
fn repo_name(repo: &str) -> &str {
    repo.rsplit('/').next().unwrap_or(repo)
}

/// E3.5 `pr_feedback_detected`: one live `gt:pr-feedback` bead per MR; a live conflict bead gets
/// `has_feedback` instead.
pub(super) fn pr_feedback_detected(s: &mut TownState, d: &PrFeedbackDetected, t: Millis) {
    if live_mr(s, &d.mr_bead_id).is_none() || live_blocker(s, &d.mr_bead_id, labels::PR_FEEDBACK).is_some() {
        return;
    }
    if let Some(cf) = live_blocker(s, &d.mr_bead_id, labels::PR_CONFLICT) {
        flag(s, &cf, "has_feedback");
        return;
    }
    let mut what = Vec::new();
    if d.has_unresolved_comments {
        what.push("review comments");
    }
    if d.has_failing_checks {
        what.push("failing CI");
    } else if d.has_unchecked_runs {
        what.push("unchecked CI runs");
    }
    let what = if what.is_empty() { "feedback".to_owned() } else { what.join(" & ") };
    let title = format!("Address {what} on PR #{} ({})", d.pr_number, repo_name(&d.repo));
    let mut metadata = Map::new();
    metadata.insert("pr_feedback_for".to_owned(), Value::from(d.mr_bead_id.as_str()));
    metadata.insert("pr_url".to_owned(), Value::from(d.pr_url.as_str()));
    metadata.insert("branch".to_owned(), Value::from(d.branch.as_str()));
    create_follow_up(s, &d.mr_bead_id, "fb", &title, labels::PR_FEEDBACK, metadata, t);
}

/// Whether a live `merge_conflict` escalation for `mr` exists.
fn conflict_escalated(s: &TownState, mr: &str) -> bool {
    s.beads.values().any(|b| {
        b.status.is_live()
            && b.escalation.as_ref().is_some_and(|e| e.category == "merge_conflict")
            && b.metadata.get("context").and_then(|c| c.get("mr_bead_id")).and_then(Value::as_str) == Some(mr)
    })
}

/// E3.5 `pr_conflict_detected`: one live `gt:pr-conflict` bead per MR when the rig resolves
/// conflicts automatically (a live feedback bead gets `has_conflicts` instead); otherwise one
/// live escalation per conflicted MR.
pub(super) fn pr_conflict_detected(s: &mut TownState, d: &PrConflictDetected, t: Millis) {
    let Some(mr) = live_mr(s, &d.mr_bead_id) else {
        return;
    };
    let rig = mr.rig_id.clone();
    if live_blocker(s, &d.mr_bead_id, labels::PR_CONFLICT).is_some() {
        return;
    }
    if s.resolved(rig.as_deref()).auto_resolve_merge_conflicts {
        if let Some(fb) = live_blocker(s, &d.mr_bead_id, labels::PR_FEEDBACK) {
            flag(s, &fb, "has_conflicts");
            return;
        }
        let title = format!("Resolve merge conflicts on PR: {}", d.branch);
        let mut metadata = Map::new();
        metadata.insert("pr_url".to_owned(), Value::from(d.pr_url.as_str()));
        metadata.insert("branch".to_owned(), Value::from(d.branch.as_str()));
        create_follow_up(s, &d.mr_bead_id, "cf", &title, labels::PR_CONFLICT, metadata, t);
        return;
    }
    if conflict_escalated(s, &d.mr_bead_id) {
        return;
    }
    let mut context = Map::new();
    context.insert("mr_bead_id".to_owned(), Value::from(d.mr_bead_id.as_str()));
    context.insert("pr_url".to_owned(), Value::from(d.pr_url.as_str()));
    context.insert("branch".to_owned(), Value::from(d.branch.as_str()));
    let title = format!("Merge conflict detected: {}", d.branch);
    ops::open_escalation(
        s,
        EscalationSpec {
            id: None,
            severity: Severity::High,
            category: "merge_conflict",
            title: &title,
            body: None,
            rig_id: rig.as_deref(),
            agent_id: None,
            context,
            request_id: None,
            mail_id: None,
        },
        t,
    );
}
