//! C1–C4 — convoys (group C): track progress, close review-and-merge convoys, and land
//! review-then-land convoys through one landing MR at a time.
//!
//! Each convoy with status `open`, in C3 order, runs C1–C4 in order (R0.1).

use serde_json::{Map, Value};

use super::pass::Pass;
use crate::action::Action;
use crate::constants::{LANDING_APPROVAL_TIMEOUT, LANDING_MR_MAX_ATTEMPTS, landing_cooldown};
use crate::state::{Bead, BeadStatus, BeadType, ConvoyRecord, MergeMode, Severity, TownState};
use crate::time::{Millis, older_than, within};

/// Escalation category of a landing held back by an MR awaiting approval (C4).
const LANDING_AWAITING_APPROVAL: &str = "landing_awaiting_approval";

/// Runs the group's rules for the pass.
pub(super) fn run(p: &mut Pass<'_>) {
    for convoy in p.beads_in_order() {
        if convoy.bead_type != BeadType::Convoy || convoy.status != BeadStatus::Open {
            continue;
        }
        let Some(rec) = convoy.convoy.as_ref() else { continue };
        let done = c1_progress(p, convoy, rec);
        if !done {
            continue;
        }
        // C2: review-and-merge (or no feature branch) → close.
        if rec.merge_mode == MergeMode::ReviewAndMerge || rec.feature_branch.is_none() {
            p.emit(vec![Action::CloseConvoy { convoy_id: convoy.bead_id.clone() }]);
        }
        // C3: ready to land.
        if rec.merge_mode == MergeMode::ReviewThenLand && rec.feature_branch.is_some() && !rec.ready_to_land {
            p.emit(vec![Action::SetConvoyReadyToLand { convoy_id: convoy.bead_id.clone() }]);
        }
        if rec.ready_to_land {
            c4_landing(p, convoy, rec);
        }
    }
}

/// C1: writes (closed, total) when they changed; returns *done*.
fn c1_progress(p: &mut Pass<'_>, convoy: &Bead, rec: &ConvoyRecord) -> bool {
    let s = p.s;
    let issues = s.convoy_issues(&convoy.bead_id);
    let total = u32::try_from(issues.len()).unwrap_or(u32::MAX);
    let closed = u32::try_from(issues.iter().filter(|b| b.is_terminal()).count()).unwrap_or(u32::MAX);
    if (closed, total) != (rec.closed_beads, rec.total_beads) {
        p.emit(vec![Action::UpdateConvoyProgress {
            convoy_id: convoy.bead_id.clone(),
            closed_beads: closed,
            total_beads: total,
        }]);
    }
    let in_flight = issues
        .iter()
        .any(|i| s.tracking_mrs(&i.bead_id).iter().any(|m| matches!(m.status, BeadStatus::Open | BeadStatus::InProgress)));
    total > 0 && closed == total && !in_flight
}

/// What C4 sees of a ready convoy's landing MRs, before its attempt checks.
enum Landing<'s> {
    /// Some landing MR is closed.
    Landed,
    /// Some landing MR is live.
    InFlight,
    /// Some failed landing MR awaits approval: `m` is the first; `latest` the latest `closed_at`
    /// among the landing MRs.
    Suppressed { m: &'s Bead, latest: Option<Millis> },
    /// None of the above.
    Free,
}

fn landing<'s>(s: &'s TownState, convoy_id: &str) -> Landing<'s> {
    let l = s.tracking_mrs(convoy_id);
    if l.iter().any(|m| m.status == BeadStatus::Closed) {
        return Landing::Landed;
    }
    if l.iter().any(|m| m.status.is_live()) {
        return Landing::InFlight;
    }
    let awaiting = l.iter().find(|m| m.status == BeadStatus::Failed && m.review.as_ref().is_some_and(|r| r.awaiting_approval));
    match awaiting {
        Some(m) => Landing::Suppressed { m, latest: l.iter().filter_map(|m| m.closed_at).max() },
        None => Landing::Free,
    }
}

/// Whether an escalation of any status with category `landing_awaiting_approval` names the convoy
/// in `context.convoy_id`.
fn has_approval_escalation(s: &TownState, convoy_id: &str) -> bool {
    s.beads.values().any(|b| {
        b.escalation.as_ref().is_some_and(|e| e.category == LANDING_AWAITING_APPROVAL)
            && b.metadata.get("context").and_then(|c| c.get("convoy_id")).and_then(Value::as_str) == Some(convoy_id)
    })
}

/// C4: landing of a done, ready convoy (first match).
fn c4_landing(p: &mut Pass<'_>, convoy: &Bead, rec: &ConvoyRecord) {
    let s = p.s;
    match landing(s, &convoy.bead_id) {
        Landing::Landed => {
            p.emit(vec![Action::CloseConvoy { convoy_id: convoy.bead_id.clone() }]);
            return;
        }
        Landing::InFlight => return,
        Landing::Suppressed { m, latest } => {
            p.landing_suppressed += 1;
            if latest.is_some()
                && older_than(latest, LANDING_APPROVAL_TIMEOUT, p.now)
                && !has_approval_escalation(s, &convoy.bead_id)
            {
                let mut context = Map::new();
                context.insert("convoy_id".to_owned(), Value::String(convoy.bead_id.clone()));
                context.insert("mr_bead_id".to_owned(), Value::String(m.bead_id.clone()));
                let bead_id = p.new_id("esc");
                let request_id = p.new_id("tri");
                let mail_id = p.new_id("msg");
                p.emit(vec![Action::OpenEscalation {
                    bead_id,
                    severity: Severity::Medium,
                    category: LANDING_AWAITING_APPROVAL.to_owned(),
                    title: format!("Convoy landing awaiting approval: {}", convoy.title),
                    rig_id: m.rig_id.clone(),
                    context,
                    request_id,
                    mail_id: Some(mail_id),
                }]);
            }
            return;
        }
        Landing::Free => {}
    }
    if rec.landing_mr_attempts >= LANDING_MR_MAX_ATTEMPTS {
        p.emit(vec![Action::FailConvoy {
            convoy_id: convoy.bead_id.clone(),
            reason: format!("Landing MR creation failed after {LANDING_MR_MAX_ATTEMPTS} attempts"),
        }]);
        return;
    }
    if rec.landing_mr_attempts > 0 && within(rec.last_landing_mr_attempt_at, landing_cooldown(rec.landing_mr_attempts), p.now) {
        return;
    }
    let Some(feature_branch) = rec.feature_branch.clone() else { return };
    let Some(rig_id) = s.convoy_issues(&convoy.bead_id).into_iter().find_map(|i| i.rig_id.clone()) else { return };
    let target_branch = s.rigs.get(&rig_id).map_or_else(|| "main".to_owned(), |r| r.default_branch.clone());
    let bead_id = p.new_id("mr");
    p.emit(vec![Action::CreateLandingMr { convoy_id: convoy.bead_id.clone(), rig_id, feature_branch, target_branch, bead_id }]);
}

/// Pushes the R9 deadlines of this group's rules whose guard holds in `p.s`.
pub(super) fn deadlines(p: &Pass<'_>, out: &mut Vec<Millis>) {
    let s = p.s;
    for convoy in s.beads.values() {
        if convoy.bead_type != BeadType::Convoy || convoy.status != BeadStatus::Open {
            continue;
        }
        let Some(rec) = convoy.convoy.as_ref().filter(|r| r.ready_to_land) else { continue };
        match landing(s, &convoy.bead_id) {
            // C4 (approval): latest closed_at + LANDING_APPROVAL_TIMEOUT.
            Landing::Suppressed { latest: Some(latest), .. } if !has_approval_escalation(s, &convoy.bead_id) => {
                out.push(latest + LANDING_APPROVAL_TIMEOUT);
            }
            // C4: last attempt + cooldown(attempts), attempts 1..4, no live landing MR.
            Landing::Free | Landing::Suppressed { .. } | Landing::Landed => {
                if (1..LANDING_MR_MAX_ATTEMPTS).contains(&rec.landing_mr_attempts)
                    && let Some(last) = rec.last_landing_mr_attempt_at
                {
                    out.push(last + landing_cooldown(rec.landing_mr_attempts));
                }
            }
            Landing::InFlight => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use crate::action::Action;
    use crate::constants::{LANDING_APPROVAL_TIMEOUT, landing_cooldown};
    use crate::event::{ActionResult, ConvoyBeadSpec, ConvoyCreated, PrState, feature_branch};
    use crate::state::{BeadStatus, MergeMode, Role, Severity};
    use crate::testing::*;

    use BeadStatus::{Closed, Failed, InProgress, Open};

    const P: &str = "https://github.com/acme/app/pull/7";

    fn convoy_created(id: &str, title: &str, mode: MergeMode, beads: &[&str]) -> Ev {
        ev(ConvoyCreated {
            convoy_id: id.into(),
            title: title.into(),
            merge_mode: mode,
            staged: false,
            feature_branch: Some(feature_branch(id, title)),
            beads: beads
                .iter()
                .map(|b| ConvoyBeadSpec {
                    bead_id: (*b).into(),
                    title: (*b).into(),
                    body: None,
                    rig_id: "r1".into(),
                    priority: None,
                    labels: None,
                    depends_on: Vec::new(),
                })
                .collect(),
        })
    }
    fn update_convoy_progress(convoy: &str, closed: u32, total: u32) -> Action {
        Action::UpdateConvoyProgress { convoy_id: convoy.into(), closed_beads: closed, total_beads: total }
    }
    fn close_convoy(convoy: &str) -> Action {
        Action::CloseConvoy { convoy_id: convoy.into() }
    }
    fn set_convoy_ready_to_land(convoy: &str) -> Action {
        Action::SetConvoyReadyToLand { convoy_id: convoy.into() }
    }
    fn create_landing_mr(convoy: &str, branch: &str, mr: &str) -> Action {
        Action::CreateLandingMr {
            convoy_id: convoy.into(),
            rig_id: "r1".into(),
            feature_branch: branch.into(),
            target_branch: "main".into(),
            bead_id: mr.into(),
        }
    }

    // --- T26 Convoy review-and-merge (C1, C2) ---

    /// cv2 {review-and-merge, closed 0, total 2}; c3 closed; c4 in_review, tracked by mr-3
    /// {in_progress, P, polled at +2min, nothing hooked}.
    fn t26() -> Given {
        let mut town =
            given(fixture_f()).and([convoy_created("cv2", "Ship", MergeMode::ReviewAndMerge, &["c3", "c4"]).at(T0 + secs(10))]);
        town.pass_at(T0 + secs(10));
        town.and([
            bead_status_changed("c3", Closed).at(T0 + mins(1)),
            agent_done_pr("pc-2", "gt/maple/c4", P).at(T0 + mins(2)),
            reconciled([transition_bead("mr-3", Open, InProgress, "test"), poll_pr("mr-3", P)]).at(T0 + mins(2)),
        ])
    }

    #[test]
    fn t26_progress_is_written_when_an_issue_closes() {
        let town = t26();
        let cv = town.bead("cv2").convoy.clone().unwrap();
        assert_eq!((cv.closed_beads, cv.total_beads), (0, 2));
        town.when_reconciled_at(T0 + mins(2)).then_decides([update_convoy_progress("cv2", 1, 2)]);
    }

    #[test]
    fn t26_review_and_merge_convoy_closes_when_its_last_mr_merges() {
        let mut town = t26();
        town.pass_at(T0 + mins(2));
        let mut town = town.and([pr_status_changed("mr-3", P, PrState::Merged).at(T0 + mins(3))]);
        assert_eq!(town.bead("c4").status, Closed);
        town.when_reconciled_at(T0 + mins(3)).then_decides([update_convoy_progress("cv2", 2, 2), close_convoy("cv2")]);
        town.pass_at(T0 + mins(3));
        let cv = town.bead("cv2");
        assert_eq!(cv.status, Closed);
        assert_eq!(cv.convoy.as_ref().unwrap().landed_at, Some(T0 + mins(3)));
    }

    // --- T27 Convoy review-then-land (C3, C4, Q7) ---

    const LAND_AT: Millis = T0 + mins(1);

    fn release_branch() -> String {
        feature_branch("cv3", "Release")
    }

    /// cv3 {review-then-land, closed 2, total 2}; c5 closed, c6 failed; ref-r1 idle unhooked
    /// alive; `id_seq` 30.
    fn t27() -> Given {
        given(fixture_f()).and([
            agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0),
            resumed("ref-r1").at(T0),
            convoy_created("cv3", "Release", MergeMode::ReviewThenLand, &["c5", "c6"]).at(T0),
            bead_status_changed("c5", Closed).at(T0),
            bead_status_changed("c6", Failed).at(T0),
            // Progress as C1 last wrote it; the no-op dispatch consumes ids up to 30.
            reconciled([update_convoy_progress("cv3", 2, 2), dispatch_agent("pc-30", "none", "r1")]).at(T0),
        ])
    }

    /// T27 settled at LAND_AT: mr-31 popped to ref-r1.
    fn t27_popped() -> Given {
        let mut town = t27();
        town.settle_at(LAND_AT);
        town
    }

    #[test]
    fn t27_done_convoy_settles_into_a_popped_landing_mr() {
        let mut town = t27();
        assert_eq!(release_branch(), "convoy/release/cv3/head");
        assert_eq!(town.state.id_seq, 30);
        assert_eq!(
            town.settle_at(LAND_AT),
            vec![
                vec![set_convoy_ready_to_land("cv3")],
                vec![create_landing_mr("cv3", &release_branch(), "mr-31")],
                vec![
                    transition_bead("mr-31", Open, InProgress, "popped for review"),
                    hook_agent("ref-r1", "mr-31"),
                    dispatch_agent("ref-r1", "mr-31", "r1"),
                ],
                vec![],
            ]
        );
        let mr = town.bead("mr-31");
        assert_eq!(mr.created_by, "system");
        assert_eq!(town.state.mr_source("mr-31").map(|b| b.bead_id.as_str()), Some("cv3"));
        let cv = town.bead("cv3").convoy.clone().unwrap();
        assert_eq!((cv.landing_mr_attempts, cv.last_landing_mr_attempt_at), (1, Some(LAND_AT)));
    }

    #[test]
    fn t27_ready_convoy_creates_its_landing_mr_on_the_next_pass() {
        let mut town = t27();
        town.when_reconciled_at(LAND_AT).then_decides([set_convoy_ready_to_land("cv3")]);
        town.pass_at(LAND_AT);
        town.when_reconciled_at(LAND_AT).then_decides([create_landing_mr("cv3", &release_branch(), "mr-31")]);
    }

    #[test]
    fn t27_merged_landing_closes_the_convoy() {
        let town = t27_popped().and([agent_done("ref-r1", &release_branch()).at(LAND_AT + mins(10))]);
        assert_eq!(town.bead("mr-31").status, Closed);
        let cv = town.bead("cv3");
        assert_eq!(cv.status, Closed);
        assert_eq!(cv.convoy.as_ref().unwrap().landed_at, Some(LAND_AT + mins(10)));
        town.when_reconciled_at(LAND_AT + mins(10)).then_decides_nothing();
    }

    // --- T28 Landing retry, suppression, exhaustion (C4) ---

    fn landing_failed(town: Given, at: Millis) -> Given {
        town.and([agent_done_pr("ref-r1", &release_branch(), "http://bad").at(at)])
    }

    #[test]
    fn t28_failed_landing_waits_for_its_cooldown() {
        let town = landing_failed(t27_popped(), LAND_AT + secs(30));
        assert_eq!(town.bead("mr-31").status, Failed);
        assert_eq!(town.bead("cv3").status, Open);
        town.when_reconciled_at(LAND_AT + secs(30)).then_decides_nothing();
        town.when_reconciled_at(LAND_AT + landing_cooldown(1) - 1)
            .then_decides_nothing()
            .and_wakes_at(LAND_AT + landing_cooldown(1));
    }

    #[test]
    fn t28_failed_landing_is_retried_after_its_cooldown() {
        let mut town = landing_failed(t27_popped(), LAND_AT + secs(30));
        assert_eq!(landing_cooldown(1), secs(60));
        town.when_reconciled_at(LAND_AT + secs(60)).then_decides([create_landing_mr("cv3", &release_branch(), "mr-32")]);
        town.pass_at(LAND_AT + secs(60));
        assert_eq!(town.bead("cv3").convoy.as_ref().unwrap().landing_mr_attempts, 2);
    }

    /// mr-31 got a PR, its poll reported it awaiting approval, then the PR was closed at
    /// LAND_AT + 30s: mr-31 failed with `awaiting_approval`.
    fn t28_awaiting_approval() -> Given {
        let mut town = t27_popped().and([agent_done_pr("ref-r1", &release_branch(), P).at(LAND_AT + secs(10))]);
        let details: Map<String, Value> = json!({"pr_state": "open", "awaiting_approval": true}).as_object().unwrap().clone();
        let result =
            ActionResult { details: Some(details), bead_id: Some("mr-31".into()), ..action_result("99:0", "poll_pr", true) };
        town.push(ev(result).at(LAND_AT + secs(20)));
        town.and([pr_status_changed("mr-31", P, PrState::Closed).at(LAND_AT + secs(30))])
    }

    fn approval_escalation() -> Action {
        let mut context = Map::new();
        context.insert("convoy_id".into(), json!("cv3"));
        context.insert("mr_bead_id".into(), json!("mr-31"));
        Action::OpenEscalation {
            bead_id: "esc-32".into(),
            severity: Severity::Medium,
            category: "landing_awaiting_approval".into(),
            title: "Convoy landing awaiting approval: Release".into(),
            rig_id: Some("r1".into()),
            context,
            request_id: "tri-33".into(),
            mail_id: Some("msg-34".into()),
        }
    }

    #[test]
    fn t28_landing_awaiting_approval_is_suppressed_not_retried() {
        let town = t28_awaiting_approval();
        let mr = town.bead("mr-31");
        assert_eq!(mr.status, Failed);
        assert!(mr.review.as_ref().unwrap().awaiting_approval);
        let then = town.when_reconciled_at(LAND_AT + secs(60)).then_decides_nothing();
        assert_eq!(then.decision.landing_suppressed, 1);
        let then = town.when_reconciled_at(LAND_AT + hours(2)).then_decides_nothing();
        assert_eq!(then.decision.landing_suppressed, 1);
    }

    #[test]
    fn t28_landing_awaiting_approval_is_not_escalated_before_the_timeout() {
        let at = LAND_AT + secs(30) + LANDING_APPROVAL_TIMEOUT;
        t28_awaiting_approval().when_reconciled_at(at - 1).then_decides_nothing().and_wakes_at(at);
    }

    #[test]
    fn t28_landing_awaiting_approval_is_escalated_once_after_the_timeout() {
        let at = LAND_AT + secs(30) + LANDING_APPROVAL_TIMEOUT;
        assert_eq!(at, LAND_AT + hours(24) + secs(30));
        let then = t28_awaiting_approval().when_reconciled_at(at).then_decides([approval_escalation()]);
        assert_eq!(then.decision.landing_suppressed, 1);
    }

    #[test]
    fn t28_landing_awaiting_approval_is_never_escalated_twice() {
        let at = LAND_AT + secs(30) + LANDING_APPROVAL_TIMEOUT;
        let mut town = t28_awaiting_approval();
        town.settle_at(at);
        assert!(town.state.beads.contains_key("esc-32"));
        for now in [at + mins(1), at + hours(30)] {
            let d = town.when_reconciled_at(now).decision;
            assert!(!d.actions.iter().any(|a| matches!(a, Action::OpenEscalation { .. } | Action::CreateLandingMr { .. })));
        }
    }

    /// T27 with its first `n` landing MRs failed, each retried once its cooldown passed; returns
    /// the town and the instant of the last attempt.
    fn landings_failed(n: u32) -> (Given, Millis) {
        let mut town = t27_popped();
        let mut last = LAND_AT;
        for k in 1..=n {
            town = landing_failed(town, last + secs(1));
            if k == n {
                break;
            }
            let retry = last + landing_cooldown(k);
            town.when_reconciled_at(retry - 1).then_decides_nothing();
            let mr = format!("mr-{}", 31 + k);
            assert_eq!(town.settle_at(retry)[0], vec![create_landing_mr("cv3", &release_branch(), &mr)]);
            last = retry;
        }
        (town, last)
    }

    #[test]
    fn t28_fourth_failed_landing_is_still_retried() {
        let (town, last) = landings_failed(4);
        assert_eq!(town.bead("cv3").convoy.as_ref().unwrap().landing_mr_attempts, 4);
        town.when_reconciled_at(last + landing_cooldown(4)).then_decides([create_landing_mr("cv3", &release_branch(), "mr-35")]);
    }

    #[test]
    fn t28_fifth_failed_landing_fails_the_convoy() {
        let (mut town, last) = landings_failed(5);
        assert_eq!(town.bead("cv3").convoy.as_ref().unwrap().landing_mr_attempts, 5);
        assert!(town.state.tracking_mrs("cv3").iter().all(|m| m.status == Failed));
        let fail = Action::FailConvoy { convoy_id: "cv3".into(), reason: "Landing MR creation failed after 5 attempts".into() };
        town.when_reconciled_at(last + secs(1)).then_decides([fail]);
        town.pass_at(last + secs(1));
        let cv = town.bead("cv3");
        assert_eq!(cv.status, Failed);
        assert_eq!(cv.failure_reason.as_ref().map(|r| r.code.as_str()), Some("landing_mr_exhausted"));
        // I8: closed_at set exactly when terminal, and status = final_status.
        assert_eq!((cv.closed_at, cv.final_status), (Some(last + secs(1)), Some(Failed)));
    }
}
