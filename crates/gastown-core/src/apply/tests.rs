//! Scenario tests of `apply` (DOMAIN §T): the state each event or decision leaves, written
//! given/when/then with the builders of `testing`. Where a scenario ends with a pass, the pass is
//! asserted too.

use serde_json::{Map, Value, json};

use crate::action::Action;
use crate::constants::{EVENT_DEDUP_HORIZON, RECENT_EVENTS_KEPT};
use crate::event::{
    AgentCheckpointed, AgentDone, CompletionStatus, ContainerState, ConvoyBeadSpec, ConvoyCreated, EscalationAcknowledged,
    EscalationRaised, LostCause, PrAutoMerge, PrConflictDetected, PrFeedbackDetected, PrState, TriageResolved,
};
use crate::state::{AgentStatus, BeadStatus, BeadType, DepKind, Liveness, MergeMode, Role, Severity};
use crate::testing::*;

const P: &str = "https://github.com/acme/app/pull/7";

/// T1's stream: F; [5] @+10s `bead_created{b1}`; [6] @+10s the dispatch of pc-1 on b1.
fn t1_stream() -> Given {
    given(fixture_f()).and([
        bead_created("b1", "r1").at(T0 + secs(10)),
        reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
    ])
}

/// T6 up to +15s: T1's stream and `resumed{pc-1, c1}` at +15s.
fn t6_up_to_15s() -> Given {
    t1_stream().and([resumed_on("pc-1", "c1").at(T0 + secs(15))])
}

/// An action that names `pc-<n>` and creates nothing (its bead does not exist): it only raises
/// `id_seq` to n (R0.2).
fn consume_ids_to(n: u64) -> Action {
    dispatch_creating(&format!("pc-{n}"), "no-such-bead", "r1", Role::Polecat, None)
}

/// b1 in review: pc-1 worked b1 and reported done, creating mr-2 (T10).
fn b1_in_review() -> Given {
    t6_up_to_15s().and([agent_done("pc-1", "gt/toast/b1").at(T0 + mins(1))])
}

/// T13's start: ref-r1 working, alive, hooked to mr-2 (in_progress); b1 in_review.
fn refinery_reviewing() -> Given {
    b1_in_review().and([
        reconciled([
            transition_bead("mr-2", BeadStatus::Open, BeadStatus::InProgress, "popped for review (creating refinery)"),
            dispatch_creating("ref-r1", "mr-2", "r1", Role::Refinery, None),
        ])
        .at(T0 + mins(2)),
        resumed("ref-r1").at(T0 + mins(2) + secs(5)),
    ])
}

fn details(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn poll_result(pr_state: &str, error_kind: Option<&str>) -> Ev {
    let mut d = json!({ "pr_state": pr_state, "awaiting_approval": false });
    if let Some(k) = error_kind {
        d["error_kind"] = json!(k);
    }
    ev(crate::event::ActionResult { bead_id: Some("mr-2".into()), details: details(d), ..action_result("9:0", "poll_pr", true) })
}

// --- E1 ---

#[test]
fn e1_effective_time_never_runs_backwards() {
    let g = given(fixture_f()).and([bead_created("b1", "r1").at(T0 + secs(10)), bead_created("b2", "r1").at(T0 + secs(5))]);
    assert_eq!(g.state.clock, T0 + secs(10));
    assert_eq!(g.bead("b2").created_at, T0 + secs(10));
    assert_eq!(g.state.last_seq, 6);
}

#[test]
fn e1_recent_events_keep_the_last_twenty() {
    let mut g = given(fixture_f());
    for i in 0..30 {
        g.push(bead_created(&format!("b{i}"), "r1").at(T0 + secs(i)));
    }
    assert_eq!(g.state.recent_events.len(), RECENT_EVENTS_KEPT);
    let first = g.state.recent_events.iter().next().map(|e| e.seq);
    assert_eq!(first, Some(34 - 20 + 1));
}

#[test]
fn e1_stored_messages_that_do_not_decode_still_advance_the_sequence() {
    let mut s = given(fixture_f()).state;
    crate::apply_stored(&mut s, 5, &crate::codec::Stored::Broken);
    assert_eq!((s.last_seq, s.clock, s.recent_events.len()), (5, T0, 4));
    let raw = crate::event::RawEnvelope {
        v: 7,
        id: "t1:x".into(),
        event_type: "future_event".into(),
        at: T0 + secs(3),
        source: "hb".into(),
        data: Value::Null,
    };
    crate::apply_stored(&mut s, 6, &crate::codec::Stored::Malformed(raw.clone()));
    assert_eq!((s.last_seq, s.clock, s.recent_events.len()), (6, T0 + secs(3), 5));
    let before = s.clone();
    crate::apply_stored(&mut s, 7, &crate::codec::Stored::Malformed(raw));
    assert_eq!(s.last_seq, 7);
    s.last_seq = 6;
    assert_eq!(s, before, "a repeated malformed id is a duplicate");
}

// --- T7 ---

#[test]
fn t07a_exited_container_idles_the_polecat_keeping_its_hook() {
    let mut g = t6_up_to_15s().and([container_status("pc-1", ContainerState::Exited, Some("oom")).at(T0 + mins(2))]);
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.hook.as_deref(), a.liveness), (AgentStatus::Idle, Some("b1"), Liveness::Lost));
    assert_eq!(
        g.pass_at(T0 + mins(2)),
        [
            unhook_agent("pc-1", "idle agent hooked to live bead"),
            transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
        ]
    );
}

#[test]
fn t07b_failed_completion_fails_the_bead_and_frees_the_polecat() {
    let g = t6_up_to_15s().and([agent_completed("pc-1", CompletionStatus::Failed, None).at(T0 + mins(2))]);
    let b = g.bead("b1");
    assert_eq!(b.status, BeadStatus::Failed);
    assert_eq!(b.failure_reason.as_ref().map(|f| f.code.as_str()), Some("agent_failed"));
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.hook.as_deref(), a.dispatch_attempts), (AgentStatus::Idle, None, 0));
    g.when_reconciled_at(T0 + mins(2)).then_decides_nothing();
}

#[test]
fn t07c_other_container_statuses_change_nothing() {
    let base = t6_up_to_15s();
    for status in [
        ContainerState::Unknown,
        ContainerState::Failed,
        ContainerState::Stopping,
        ContainerState::Starting,
        ContainerState::Stopped,
        ContainerState::Error,
    ] {
        let g = base.clone().and([container_status("pc-1", status, None).at(T0 + mins(2))]);
        assert_eq!(g.state.agents, base.state.agents, "{status:?}");
        assert_eq!(g.state.beads, base.state.beads, "{status:?}");
        g.when_reconciled_at(T0 + mins(2)).then_decides_nothing();
    }
}

// --- T8 ---

fn t8_resumed_at_20s() -> Given {
    t1_stream().and([resumed("pc-1").at(T0 + secs(20))])
}

#[test]
fn t08_not_found_inside_the_cold_start_grace_changes_nothing() {
    let base = t8_resumed_at_20s();
    let g = base.clone().and([container_status("pc-1", ContainerState::NotFound, None).at(T0 + mins(1))]);
    assert_eq!(g.state.agents, base.state.agents);
}

#[test]
fn t08_not_found_one_ms_before_the_grace_ends_changes_nothing() {
    let base = t8_resumed_at_20s();
    let at = T0 + secs(20) + secs(180) - 1;
    let g = base.clone().and([container_status("pc-1", ContainerState::NotFound, None).at(at)]);
    assert_eq!(g.state.agents, base.state.agents);
}

#[test]
fn t08_not_found_after_the_grace_makes_the_polecat_lost_and_idle() {
    let mut g = t8_resumed_at_20s().and([container_status("pc-1", ContainerState::NotFound, None).at(T0 + mins(3) + secs(20))]);
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.liveness, a.hook.as_deref()), (AgentStatus::Idle, Liveness::Lost, Some("b1")));
    assert_eq!(
        g.pass_at(T0 + mins(3) + secs(20)),
        [
            unhook_agent("pc-1", "idle agent hooked to live bead"),
            transition_bead("b1", BeadStatus::InProgress, BeadStatus::Open, "agent went idle without completing work"),
        ]
    );
}

// --- T10 ---

#[test]
fn t10_polecat_done_creates_a_merge_request_for_its_bead() {
    let g = t6_up_to_15s().and([ev(AgentDone { summary: Some("fix".into()), ..done("pc-1", "gt/toast/b1") }).at(T0 + mins(20))]);
    let mr = g.bead("mr-2");
    assert_eq!(mr.bead_type, BeadType::MergeRequest);
    assert_eq!(mr.status, BeadStatus::Open);
    assert_eq!(mr.title, "Review: gt/toast/b1");
    assert_eq!(mr.body.as_deref(), Some("fix"));
    assert_eq!(mr.rig_id.as_deref(), Some("r1"));
    assert_eq!(mr.labels, ["gt:merge-request"]);
    assert_eq!(mr.created_by, "pc-1");
    assert_eq!(mr.meta_str("source_bead_id"), Some("b1"));
    assert_eq!(mr.meta_str("source_agent_id"), Some("pc-1"));
    assert_eq!(mr.meta_str("convoy_id"), None);
    let review = mr.review.clone().unwrap_or_default();
    assert_eq!((review.branch.as_str(), review.target_branch.as_str(), review.pr_url), ("gt/toast/b1", "main", None));
    assert_eq!(g.state.deps.get("mr-2", "b1"), Some(DepKind::Tracks));
    assert_eq!(g.state.id_seq, 2);
    assert_eq!(g.bead("b1").status, BeadStatus::InReview);
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.hook.as_deref()), (AgentStatus::Idle, None));
}

#[test]
fn t10_done_on_a_convoy_issue_targets_the_feature_branch() {
    let g = given(fixture_f()).and([
        ev(ConvoyCreated {
            convoy_id: "cv1".into(),
            title: "Login".into(),
            merge_mode: MergeMode::ReviewThenLand,
            staged: false,
            feature_branch: Some("convoy/login/cv1/head".into()),
            beads: vec![ConvoyBeadSpec {
                bead_id: "b1".into(),
                title: "Fix login".into(),
                body: None,
                rig_id: "r1".into(),
                priority: None,
                labels: None,
                depends_on: Vec::new(),
            }],
        })
        .at(T0 + secs(10)),
        reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
        agent_done("pc-1", "gt/toast/b1").at(T0 + mins(20)),
    ]);
    let mr = g.bead("mr-2");
    assert_eq!(mr.review.as_ref().map(|r| r.target_branch.as_str()), Some("convoy/login/cv1/head"));
    assert_eq!(mr.meta_str("convoy_id"), Some("cv1"));
}

#[test]
fn t10_done_on_a_rework_bead_closes_it_without_a_merge_request() {
    let g = given(fixture_f()).and([
        ev(crate::event::BeadCreated { labels: vec!["gt:rework".into()], ..bead("b1", Some("r1")) }).at(T0 + secs(10)),
        reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
        agent_done("pc-1", "gt/toast/b1").at(T0 + mins(20)),
    ]);
    assert_eq!(g.bead("b1").status, BeadStatus::Closed);
    assert!(!g.state.beads.values().any(|b| b.bead_type == BeadType::MergeRequest));
    assert_eq!(g.agent("pc-1").hook, None);
}

#[test]
fn t10_done_naming_another_bead_is_stale_and_changes_nothing() {
    let base = t6_up_to_15s();
    let g = base.clone().and([ev(AgentDone { bead_id: Some("b9".into()), ..done("pc-1", "gt/toast/b1") }).at(T0 + mins(20))]);
    assert_eq!(g.state.agents, base.state.agents);
    assert_eq!(g.state.beads, base.state.beads);
    assert_eq!(g.state.id_seq, base.state.id_seq);
}

// --- T12 ---

#[test]
fn t12_direct_merge_closes_the_source_and_live_siblings_but_not_failed_ones() {
    // mr-2 (T12's mr-a), mr-3 (mr-b) and mr-4 (mr-c) all track b1.
    let mut g = b1_in_review().and([
        bead_hooked("b1", "pc-1").at(T0 + mins(2)),
        agent_done("pc-1", "gt/toast/b1").at(T0 + mins(3)),
        bead_hooked("b1", "pc-1").at(T0 + mins(4)),
        agent_done("pc-1", "gt/toast/b1").at(T0 + mins(5)),
        reconciled([
            transition_bead("mr-2", BeadStatus::Open, BeadStatus::Failed, "test"),
            transition_bead("mr-4", BeadStatus::Open, BeadStatus::InProgress, "popped for review (creating refinery)"),
            dispatch_creating("ref-r1", "mr-4", "r1", Role::Refinery, None),
        ])
        .at(T0 + mins(6)),
        resumed("ref-r1").at(T0 + mins(6) + secs(5)),
        agent_done("ref-r1", "gt/toast/b1").at(T0 + mins(10)),
    ]);
    assert_eq!(g.bead("mr-4").status, BeadStatus::Closed);
    assert_eq!(g.bead("b1").status, BeadStatus::Closed);
    assert_eq!(g.bead("mr-3").status, BeadStatus::Closed);
    assert_eq!(g.bead("mr-2").status, BeadStatus::Failed);
    let r = g.agent("ref-r1");
    assert_eq!((r.status, r.hook.as_deref()), (AgentStatus::Idle, None));
    assert_eq!(g.pass_at(T0 + mins(10)), []);
}

// --- T13 ---

fn t13_pr_open() -> Given {
    refinery_reviewing().and([agent_done_pr("ref-r1", "gt/toast/b1", P).at(T0 + mins(10))])
}

#[test]
fn t13_refinery_done_with_a_pr_stores_it_and_keeps_the_review_in_progress() {
    let g = t13_pr_open();
    let mr = g.bead("mr-2");
    assert_eq!((mr.status, mr.pr_url()), (BeadStatus::InProgress, Some(P)));
    let r = g.agent("ref-r1");
    assert_eq!((r.status, r.hook.as_deref()), (AgentStatus::Idle, None));
}

#[test]
fn t13a_merged_pr_closes_the_review_and_its_source() {
    let g = t13_pr_open().and([pr_status_changed("mr-2", P, PrState::Merged).at(T0 + mins(11) + secs(1))]);
    assert_eq!(g.bead("mr-2").status, BeadStatus::Closed);
    assert_eq!(g.bead("b1").status, BeadStatus::Closed);
}

#[test]
fn t13b_closed_pr_fails_the_review_and_reopens_the_source_unassigned() {
    let g = t13_pr_open().and([pr_status_changed("mr-2", P, PrState::Closed).at(T0 + mins(11) + secs(1))]);
    let mr = g.bead("mr-2");
    assert_eq!(mr.status, BeadStatus::Failed);
    let reason = mr.failure_reason.clone().unwrap_or_else(|| panic!("no failure reason"));
    assert_eq!((reason.code.as_str(), reason.message.as_str()), ("pr_closed", "PR closed without merge"));
    let b1 = g.bead("b1");
    assert_eq!((b1.status, b1.assignee.as_deref()), (BeadStatus::Open, None));
}

#[test]
fn t13c_invalid_pr_url_fails_the_review_and_reopens_the_source() {
    let g = refinery_reviewing().and([agent_done_pr("ref-r1", "gt/toast/b1", "http://example.com/7").at(T0 + mins(10))]);
    let mr = g.bead("mr-2");
    assert_eq!(mr.status, BeadStatus::Failed);
    assert_eq!(mr.failure_reason.as_ref().map(|f| f.code.as_str()), Some("invalid_pr_url"));
    assert_eq!(mr.pr_url(), None);
    assert_eq!(g.bead("b1").status, BeadStatus::Open);
}

// --- T14 ---

/// T14's state: b1 in_review, mr-2 (T14's mr-c) in_progress assigned to ref-r1, which is idle and
/// unhooked; no polecat; `id_seq` 10.
fn t14_refinery_lost_its_hook() -> Given {
    refinery_reviewing().and([reconciled([
        unhook_agent("ref-r1", "test"),
        Action::DeleteAgent { agent_id: "pc-1".into(), reason: "test".into() },
        consume_ids_to(10),
    ])
    .at(T0 + mins(3))])
}

#[test]
fn t14_refinery_done_without_hook_and_pr_fails_the_review_and_escalates() {
    let mut g = t14_refinery_lost_its_hook();
    assert_eq!(g.state.id_seq, 10);
    g.push(ev(AgentDone { summary: Some("LGTM".into()), ..done("ref-r1", "gt/toast/b1") }).at(T0 + hours(1)));
    let mr = g.bead("mr-2");
    assert_eq!(mr.status, BeadStatus::Failed);
    assert_eq!(mr.final_status, Some(BeadStatus::Failed));
    assert_eq!(mr.failure_reason.as_ref().map(|f| f.code.as_str()), Some("refinery_unhooked_done"));
    let b1 = g.bead("b1");
    assert_eq!((b1.status, b1.assignee.as_deref()), (BeadStatus::Open, None));
    let esc = g.bead("esc-11");
    let rec = esc.escalation.clone().unwrap_or_else(|| panic!("not an escalation"));
    assert_eq!((rec.severity, rec.category.as_str()), (Severity::High, "refinery_unhooked_done"));
    assert_eq!(esc.labels, ["gt:escalation", "severity:high"]);
    let tri = g.bead("tri-12");
    assert!(tri.is_triage_request());
    assert_eq!(tri.meta_str("triage_type"), Some("escalation"));
    assert_eq!(tri.rig_id.as_deref(), Some("r1"));
    let mail = g.bead("msg-13");
    assert_eq!((mail.bead_type, mail.assignee.as_deref()), (BeadType::Message, Some("mayor")));
    assert_eq!(mail.title, "Escalation (high): Refinery done without pr_url after hook loss");
    assert_eq!(g.state.id_seq, 13);
    assert_eq!(
        g.pass_at(T0 + hours(1)),
        [
            dispatch_creating("pc-14", "b1", "r1", Role::Polecat, Some("Toast")),
            Action::DeliverMail { bead_id: "msg-13".into(), agent_id: "mayor".into() },
            Action::CreateTriageBatch { bead_id: "tb-15".into(), rig_id: "r1".into(), request_ids: vec!["tri-12".into()] },
        ]
    );
}

#[test]
fn t14_refinery_done_without_hook_but_with_a_pr_keeps_the_review() {
    let g = t14_refinery_lost_its_hook()
        .and([agent_done_pr("ref-r1", "gt/toast/b1", "https://github.com/acme/app/pull/9").at(T0 + hours(1))]);
    let mr = g.bead("mr-2");
    assert_eq!((mr.status, mr.pr_url()), (BeadStatus::InProgress, Some("https://github.com/acme/app/pull/9")));
    assert!(!g.state.beads.values().any(|b| b.bead_type == BeadType::Escalation));
    assert_eq!(g.state.id_seq, 10);
}

// --- T15 ---

fn t15_polling() -> Given {
    t13_pr_open().and([reconciled([poll_pr("mr-2", P)]).at(T0 + mins(10))])
}

#[test]
fn t15_auto_merge_sets_pending_and_merge_pr_clears_it() {
    let g = t15_polling().and([ev(PrAutoMerge { mr_bead_id: "mr-2".into(), pr_url: P.into() }).at(T0 + mins(10) + secs(10))]);
    assert_eq!(g.bead("mr-2").review.as_ref().map(|r| r.auto_merge_pending), Some(true));
    let g = g.and([reconciled([merge_pr("mr-2", P)]).at(T0 + mins(10) + secs(10))]);
    let r = g.bead("mr-2").review.clone().unwrap_or_default();
    assert_eq!((r.auto_merge_pending, r.merge_requested_at), (false, Some(T0 + mins(10) + secs(10))));
    let g = g.and([pr_status_changed("mr-2", P, PrState::Merged).at(T0 + mins(10) + secs(20))]);
    assert_eq!(g.bead("mr-2").status, BeadStatus::Closed);
}

#[test]
fn t15_ten_unknown_polls_fail_the_review() {
    let mut g = t15_polling();
    for i in 0..10 {
        g.push(poll_result("unknown", Some("transient")).id(&format!("t1:r:9:{i}")));
    }
    let mr = g.bead("mr-2");
    assert_eq!(mr.status, BeadStatus::Failed);
    assert_eq!(mr.failure_reason.as_ref().map(|f| f.code.as_str()), Some("pr_poll_failed"));
    assert_eq!(g.bead("b1").status, BeadStatus::Open);
}

#[test]
fn t15_nine_unknown_polls_keep_the_review() {
    let mut g = t15_polling();
    for i in 0..9 {
        g.push(poll_result("unknown", Some("transient")).id(&format!("t1:r:9:{i}")));
    }
    assert_eq!(g.bead("mr-2").status, BeadStatus::InProgress);
    assert_eq!(g.bead("mr-2").review.as_ref().map(|r| r.poll_null_count), Some(9));
}

#[test]
fn t15_an_open_poll_in_between_resets_the_count() {
    let mut g = t15_polling();
    for i in 0..5 {
        g.push(poll_result("unknown", None).id(&format!("t1:r:9:{i}")));
    }
    g.push(poll_result("open", None).id("t1:r:9:open"));
    for i in 5..14 {
        g.push(poll_result("unknown", None).id(&format!("t1:r:9:{i}")));
    }
    assert_eq!(g.bead("mr-2").status, BeadStatus::InProgress);
    g.push(poll_result("unknown", None).id("t1:r:9:last"));
    assert_eq!(g.bead("mr-2").status, BeadStatus::Failed);
}

#[test]
fn t15_three_permanent_errors_fail_the_review_and_two_do_not() {
    let mut g = t15_polling();
    for i in 0..2 {
        g.push(poll_result("unknown", Some("permanent")).id(&format!("t1:r:9:{i}")));
    }
    assert_eq!(g.bead("mr-2").status, BeadStatus::InProgress);
    g.push(poll_result("unknown", Some("permanent")).id("t1:r:9:2"));
    assert_eq!(g.bead("mr-2").status, BeadStatus::Failed);
}

// --- T16 ---

fn feedback() -> Ev {
    ev(PrFeedbackDetected {
        mr_bead_id: "mr-2".into(),
        pr_url: P.into(),
        pr_number: 7,
        repo: "acme/app".into(),
        branch: "gt/toast/b1".into(),
        has_unresolved_comments: false,
        has_failing_checks: true,
        has_unchecked_runs: false,
    })
}

fn conflict() -> Ev {
    ev(PrConflictDetected { mr_bead_id: "mr-2".into(), source_bead_id: None, pr_url: P.into(), branch: "gt/toast/b1".into() })
}

/// T16: mr-2 (T16's mr-c) in_progress with P in r1, polled; p1 idle alive; `id_seq` 20.
fn t16_pr_under_review() -> Given {
    t15_polling().and([
        polecat_registered("p1").at(T0 + mins(10)),
        resumed("p1").at(T0 + mins(10)),
        reconciled([consume_ids_to(20)]).at(T0 + mins(10)),
    ])
}

#[test]
fn t16_pr_feedback_creates_one_blocking_follow_up() {
    let at = T0 + mins(10) + secs(30);
    let g = t16_pr_under_review().and([feedback().at(at)]);
    let fb = g.bead("fb-21");
    assert_eq!((fb.status, fb.labels.as_slice()), (BeadStatus::Open, ["gt:pr-feedback".to_owned()].as_slice()));
    assert_eq!(fb.title, "Address failing CI on PR #7 (app)");
    assert_eq!((fb.parent_bead_id.as_deref(), fb.rig_id.as_deref()), (Some("mr-2"), Some("r1")));
    assert_eq!(fb.meta_str("pr_feedback_for"), Some("mr-2"));
    assert_eq!(g.state.deps.get("mr-2", "fb-21"), Some(DepKind::Blocks));
    g.when_reconciled_at(at).then_decides([dispatch_agent("p1", "fb-21", "r1")]);
    let again = g.clone().and([feedback().at(T0 + mins(12))]);
    assert_eq!(again.state.beads, g.state.beads);
    assert_eq!(again.state.id_seq, 21);
}

#[test]
fn t16_conflict_while_feedback_is_live_marks_the_feedback_bead() {
    let g = t16_pr_under_review().and([feedback().at(T0 + mins(11)), conflict().at(T0 + mins(12))]);
    assert!(g.bead("fb-21").meta_flag("has_conflicts"));
    assert_eq!(g.state.id_seq, 21);
}

#[test]
fn t16_conflict_creates_a_conflict_bead_and_later_feedback_marks_it() {
    let g = t16_pr_under_review().and([conflict().at(T0 + mins(11))]);
    let cf = g.bead("cf-21");
    assert_eq!(cf.title, "Resolve merge conflicts on PR: gt/toast/b1");
    assert_eq!(cf.labels, ["gt:pr-conflict"]);
    assert_eq!(g.state.deps.get("mr-2", "cf-21"), Some(DepKind::Blocks));
    let g = g.and([feedback().at(T0 + mins(12)), conflict().at(T0 + mins(13))]);
    assert!(g.bead("cf-21").meta_flag("has_feedback"));
    assert_eq!(g.state.id_seq, 21);
}

#[test]
fn t16_conflict_without_auto_resolve_escalates_once_per_merge_request() {
    let g = t16_pr_under_review().and([
        rig_configured("r1", json!({"auto_resolve_merge_conflicts": false})).at(T0 + mins(11)),
        conflict().at(T0 + mins(11)),
    ]);
    let esc = g.bead("esc-21");
    let rec = esc.escalation.clone().unwrap_or_else(|| panic!("not an escalation"));
    assert_eq!((rec.severity, rec.category.as_str()), (Severity::High, "merge_conflict"));
    assert_eq!(esc.title, "Merge conflict detected: gt/toast/b1");
    assert_eq!(esc.metadata.get("context").and_then(|c| c.get("mr_bead_id")), Some(&json!("mr-2")));
    assert_eq!(g.bead("tri-22").meta_str("triage_type"), Some("escalation"));
    assert_eq!(g.bead("msg-23").assignee.as_deref(), Some("mayor"));
    let again = g.clone().and([conflict().at(T0 + mins(12))]);
    assert_eq!(again.state.beads, g.state.beads);
    assert_eq!(again.state.id_seq, 23);
}

// --- T20 ---

fn t20_refinery_working() -> Given {
    refinery_reviewing().and([ev(AgentCheckpointed {
        agent_id: "ref-r1".into(),
        checkpoint: details(json!({"step": 1})).unwrap_or_default(),
    })
    .at(T0 + mins(3))])
}

#[test]
fn t20_exited_refinery_goes_idle_keeping_its_live_hook() {
    let g = t20_refinery_working().and([container_status("ref-r1", ContainerState::Exited, None).at(T0 + mins(12))]);
    let r = g.agent("ref-r1");
    assert_eq!((r.status, r.hook.as_deref(), r.liveness), (AgentStatus::Idle, Some("mr-2"), Liveness::Lost));
}

#[test]
fn t20_exited_refinery_on_a_closed_merge_request_is_unhooked() {
    let mut g = t20_refinery_working().and([
        reconciled([transition_bead("mr-2", BeadStatus::InProgress, BeadStatus::Closed, "test")]).at(T0 + mins(4)),
        container_status("ref-r1", ContainerState::Exited, None).at(T0 + mins(5)),
    ]);
    let r = g.agent("ref-r1");
    assert_eq!((r.status, r.hook.as_deref(), r.checkpoint.is_none()), (AgentStatus::Idle, None, true));
    assert_eq!(g.pass_at(T0 + mins(5)), []);
}

// --- T34 ---

fn t34_low_escalation() -> Given {
    given([
        town_configured().at(T0),
        agent_registered("mayor", Role::Mayor, None).at(T0),
        resumed("mayor").at(T0),
        ev(EscalationRaised {
            bead_id: "e1".into(),
            severity: Severity::Low,
            category: "general".into(),
            title: "Flaky CI".into(),
            body: None,
            rig_id: None,
            agent_id: None,
            context: Map::new(),
        })
        .at(T0),
    ])
}

#[test]
fn t34_low_escalation_opens_a_triage_request_and_sends_no_mail() {
    let g = t34_low_escalation();
    let e1 = g.bead("e1");
    assert_eq!(
        (e1.status, e1.labels.as_slice()),
        (BeadStatus::Open, ["gt:escalation".to_owned(), "severity:low".to_owned()].as_slice())
    );
    assert_eq!(g.bead("tri-1").meta_str("triage_type"), Some("escalation"));
    assert!(!g.state.beads.values().any(|b| b.bead_type == BeadType::Message));
    assert_eq!(g.state.id_seq, 1);
    g.when_reconciled_at(T0).then_decides_nothing();
}

#[test]
fn t34_re_escalation_raises_severity_and_mails_the_mayor() {
    let g = t34_low_escalation().and([reconciled([Action::ReEscalate {
        bead_id: "e1".into(),
        severity: Severity::Medium,
        mail_id: Some("msg-2".into()),
    }])
    .at(T0 + hours(4))]);
    let e1 = g.bead("e1");
    assert_eq!(e1.labels, ["gt:escalation", "severity:medium"]);
    assert_eq!(e1.escalation.as_ref().map(|e| (e.severity, e.re_escalation_count)), Some((Severity::Medium, 1)));
    let mail = g.bead("msg-2");
    assert_eq!((mail.title.as_str(), mail.assignee.as_deref()), ("Escalation re-raised (medium): Flaky CI", Some("mayor")));
    assert_eq!(g.state.id_seq, 2);
}

#[test]
fn t34_acknowledging_closes_the_escalation() {
    let g =
        t34_low_escalation().and([ev(EscalationAcknowledged { bead_id: "e1".into(), by: "operator".into() }).at(T0 + hours(5))]);
    let e1 = g.bead("e1");
    assert_eq!(e1.status, BeadStatus::Closed);
    assert_eq!(e1.escalation.as_ref().map(|e| (e.acknowledged, e.acknowledged_at)), Some((true, Some(T0 + hours(5)))));
}

// --- T35 ---

/// T35: pc-1 working alive hooked b1; p2 idle alive; tri-1 open (stuck_agent, pc-1, b1); p2
/// dispatched on the batch tb-2.
fn t35_triage_in_progress() -> Given {
    t6_up_to_15s().and([
        polecat_registered("p2").at(T0 + mins(1)),
        resumed("p2").at(T0 + mins(1)),
        reconciled([Action::CreateTriageRequest {
            agent_id: "pc-1".into(),
            triage_type: "stuck_agent".into(),
            reason: "GUPP escalation".into(),
            bead_id: "tri-1".into(),
        }])
        .at(T0 + mins(2)),
        reconciled([Action::CreateTriageBatch {
            bead_id: "tb-2".into(),
            rig_id: "r1".into(),
            request_ids: vec!["tri-1".into()],
        }])
        .at(T0 + mins(3)),
        reconciled([dispatch_agent("p2", "tb-2", "r1")]).at(T0 + mins(3)),
    ])
}

#[test]
fn t35_restart_resolution_closes_the_request_and_reopens_the_bead() {
    let mut g = t35_triage_in_progress();
    let tri = g.bead("tri-1");
    assert_eq!((tri.meta_str("agent_bead_id"), tri.meta_str("hooked_bead_id")), (Some("pc-1"), Some("b1")));
    g.push(
        ev(TriageResolved { request_bead_id: "tri-1".into(), action: "RESTART".into(), note: None, resolved_by: "p2".into() })
            .at(T0 + mins(4)),
    );
    let tri = g.bead("tri-1");
    assert_eq!(tri.status, BeadStatus::Closed);
    assert_eq!(tri.metadata.get("resolution").and_then(|r| r.get("action")), Some(&json!("RESTART")));
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.hook.as_deref()), (AgentStatus::Idle, Some("b1")));
    assert_eq!(g.bead("b1").status, BeadStatus::Open);
    assert_eq!(g.pass_at(T0 + mins(4)), [dispatch_agent("pc-1", "b1", "r1")]);
}

#[test]
fn t35_triage_batch_done_closes_it_without_a_merge_request() {
    let g = t35_triage_in_progress().and([agent_done("p2", "triage").at(T0 + mins(5))]);
    assert_eq!(g.bead("tb-2").status, BeadStatus::Closed);
    assert!(!g.state.beads.values().any(|b| b.bead_type == BeadType::MergeRequest));
}

#[test]
fn t35_resolution_with_an_action_outside_the_options_changes_nothing() {
    let base = t35_triage_in_progress();
    let g = base.clone().and([ev(TriageResolved {
        request_bead_id: "tri-1".into(),
        action: "ESCALATE_TO_MAYOR".into(),
        note: None,
        resolved_by: "p2".into(),
    })
    .at(T0 + mins(4))]);
    assert_eq!(g.state.beads, base.state.beads);
}

// --- T36 ---

/// T36's draining: pc-1 working hooked b2 (in_progress), then a container eviction of c1.
fn t36_evicted() -> Given {
    given(fixture_f()).and([
        bead_created("b2", "r1").at(T0 + mins(30)),
        reconciled([dispatch_creating("pc-1", "b2", "r1", Role::Polecat, Some("Toast"))]).at(T0 + mins(30)),
        container_eviction(Some("c1")).at(T0 + mins(31)),
    ])
}

#[test]
fn t36_eviction_starts_draining() {
    let g = t36_evicted();
    let d = g.state.draining.clone().unwrap_or_else(|| panic!("not draining"));
    assert_eq!((d.since, d.container_instance_id.as_deref()), (T0 + mins(31), Some("c1")));
    let again = g.clone().and([container_eviction(Some("c9")).at(T0 + mins(32))]);
    assert_eq!(again.state.draining, g.state.draining);
}

#[test]
fn t36_completion_for_container_eviction_reopens_the_bead_unassigned() {
    let g =
        t36_evicted().and([agent_completed("pc-1", CompletionStatus::Completed, Some("container eviction")).at(T0 + mins(33))]);
    let b2 = g.bead("b2");
    assert_eq!((b2.status, b2.assignee.as_deref()), (BeadStatus::Open, None));
    assert_eq!(g.agent("pc-1").hook, None);
}

#[test]
fn t36_plain_completion_leaves_the_bead_in_progress() {
    let g = t36_evicted().and([agent_completed("pc-1", CompletionStatus::Completed, None).at(T0 + mins(33))]);
    assert_eq!(g.bead("b2").status, BeadStatus::InProgress);
}

#[test]
fn t36_resumed_on_a_new_container_ends_draining() {
    let g = t36_evicted().and([resumed_on("pc-1", "c2").at(T0 + mins(35))]);
    assert_eq!(g.state.draining, None);
}

#[test]
fn t36_resumed_on_the_evicted_container_keeps_draining() {
    let g = t36_evicted().and([resumed_on("pc-1", "c1").at(T0 + mins(35)), resumed("pc-1").at(T0 + mins(36))]);
    assert!(g.state.draining.is_some());
}

// --- T37 ---

/// T37: b1 closed (its MR mr-1 still open, assignee p1), p1 with a checkpoint.
fn t37_closed_bead() -> Given {
    given(fixture_f()).and([
        polecat_registered("p1").at(T0),
        resumed("p1").at(T0),
        bead_created("b1", "r1").at(T0),
        reconciled([dispatch_agent("p1", "b1", "r1")]).at(T0),
        agent_done("p1", "gt/p1/b1").at(T0 + mins(1)),
        bead_status_changed("b1", BeadStatus::Closed).at(T0 + mins(2)),
        bead_hooked("mr-1", "p1").at(T0 + mins(2)),
        ev(AgentCheckpointed { agent_id: "p1".into(), checkpoint: details(json!({"step": 3})).unwrap_or_default() })
            .at(T0 + mins(3)),
    ])
}

#[test]
fn t37_a_decision_cannot_reopen_a_closed_bead_but_clears_the_checkpoint() {
    let g = t37_closed_bead();
    assert!(g.agent("p1").checkpoint.is_some());
    let before = g.bead("b1").clone();
    let g =
        g.and([reconciled([transition_bead("b1", BeadStatus::Closed, BeadStatus::Open, "test"), clear_agent_checkpoint("p1")])
            .at(T0 + mins(4))]);
    assert_eq!(g.bead("b1"), &before);
    assert_eq!((before.closed_at, before.final_status), (Some(T0 + mins(2)), Some(BeadStatus::Closed)));
    assert_eq!(g.agent("p1").checkpoint, None);
}

#[test]
fn t37_closed_pr_fails_the_merge_request_and_leaves_the_closed_source() {
    let g = t37_closed_bead();
    let before = g.bead("b1").clone();
    let g = g.and([pr_status_changed("mr-1", P, PrState::Closed).at(T0 + mins(4))]);
    assert_eq!(g.bead("mr-1").status, BeadStatus::Failed);
    assert_eq!(g.bead("b1"), &before);
}

#[test]
fn t37_deleting_the_assignee_leaves_the_closed_bead() {
    let g = t37_closed_bead();
    let before = g.bead("b1").clone();
    let g = g.and([reconciled([Action::DeleteAgent { agent_id: "p1".into(), reason: "test".into() }]).at(T0 + mins(4))]);
    assert_eq!(g.bead("b1"), &before);
    assert!(!g.state.agents.contains_key("p1"));
    let mr = g.bead("mr-1");
    assert_eq!((mr.status, mr.assignee.as_deref()), (BeadStatus::Open, None));
}

// --- T38 ---

#[test]
fn t38_a_duplicate_command_within_the_horizon_only_moves_last_seq() {
    let mut g = given(fixture_f());
    g.push(bead_created("b1", "r1").at(T0 + secs(10)).id("t1:c:req-42"));
    g.push(reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)));
    let after_6 = g.state.clone();
    g.push(bead_created("b1", "r1").at(T0 + mins(5)).id("t1:c:req-42"));
    assert_eq!(g.state.last_seq, 7);
    let mut s = g.state.clone();
    s.last_seq = 6;
    assert_eq!(s, after_6);
}

#[test]
fn t38_agent_done_stored_twice_creates_one_merge_request() {
    let mut g = t6_up_to_15s();
    g.push(agent_done("pc-1", "gt/toast/b1").at(T0 + mins(20)).id("t1:c:done-1"));
    g.push(polecat_registered("p7").at(T0 + mins(21)));
    g.push(bead_hooked("b1", "pc-1").at(T0 + mins(21)));
    g.push(agent_done("pc-1", "gt/toast/b1").at(T0 + mins(22)).id("t1:c:done-1"));
    let mrs = g.state.beads.values().filter(|b| b.bead_type == BeadType::MergeRequest).count();
    assert_eq!(mrs, 1);
    assert_eq!(g.agent("pc-1").hook.as_deref(), Some("b1"));
}

#[test]
fn t38_a_decision_stored_twice_applies_once() {
    let mut g = given(fixture_f());
    g.push(bead_created("b1", "r1").at(T0 + secs(10)));
    let decision = reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))])
        .at(T0 + secs(10))
        .id("t1:d:5:1780308010000");
    g.push(decision.clone());
    g.push(decision.at(T0 + secs(40)));
    assert_eq!(g.agent("pc-1").dispatch_attempts, 1);
    assert_eq!(g.bead("b1").dispatch_attempts, 1);
    assert_eq!(g.state.last_seq, 7);
}

#[test]
fn t38_a_repeat_one_ms_inside_the_horizon_is_still_a_duplicate() {
    let mut g = t1_stream();
    let d = reconciled([dispatch_agent("pc-1", "b1", "r1")]).id("t1:d:again");
    g.push(d.clone().at(T0 + secs(20)));
    g.push(d.at(T0 + secs(20) + EVENT_DEDUP_HORIZON - 1));
    assert_eq!(g.bead("b1").dispatch_attempts, 2);
}

#[test]
fn t38_a_repeat_outside_the_horizon_applies_again() {
    let mut g = t1_stream();
    let d = reconciled([dispatch_agent("pc-1", "b1", "r1")]).id("t1:d:again");
    g.push(d.clone().at(T0 + secs(20)));
    g.push(d.at(T0 + secs(20) + EVENT_DEDUP_HORIZON));
    assert_eq!(g.bead("b1").dispatch_attempts, 3);
}

// --- AC1 odds and ends ---

#[test]
fn t01_dispatch_creates_the_polecat_and_starts_it() {
    let g = t1_stream();
    let a = g.agent("pc-1");
    assert_eq!((a.status, a.hook.as_deref(), a.liveness), (AgentStatus::Working, Some("b1"), Liveness::Unseen));
    assert_eq!(
        (a.last_activity_at, a.dispatch_attempts, a.current_dispatch_id.as_deref()),
        (Some(T0 + secs(10)), 1, Some("6:0"))
    );
    assert_eq!((a.name.as_str(), a.identity.as_str()), ("Toast", "Toast-polecat-r1@t1"));
    let b = g.bead("b1");
    assert_eq!((b.status, b.assignee.as_deref(), b.dispatch_attempts), (BeadStatus::InProgress, Some("pc-1"), 1));
    assert_eq!(b.last_dispatch_attempt_at, Some(T0 + secs(10)));
    assert_eq!(g.state.id_seq, 1);
}

#[test]
fn t30_triage_request_that_is_a_no_op_still_consumes_its_id() {
    let g = t6_up_to_15s().and([
        reconciled([Action::CreateTriageRequest {
            agent_id: "pc-1".into(),
            triage_type: "stuck_agent".into(),
            reason: "GUPP escalation".into(),
            bead_id: "tri-52".into(),
        }])
        .at(T0 + hours(1)),
        reconciled([Action::CreateTriageRequest {
            agent_id: "pc-1".into(),
            triage_type: "stuck_agent".into(),
            reason: "GUPP force stop".into(),
            bead_id: "tri-53".into(),
        }])
        .at(T0 + hours(2)),
    ]);
    assert!(g.state.beads.contains_key("tri-52"));
    assert!(!g.state.beads.contains_key("tri-53"));
    assert_eq!(g.state.id_seq, 53);
}

#[test]
fn t33_delete_agent_releases_live_beads_and_drops_nudges() {
    let g = t6_up_to_15s().and([
        ev(crate::event::NudgeQueued {
            nudge_id: "n1".into(),
            agent_id: "pc-1".into(),
            message: "hi".into(),
            mode: crate::state::NudgeMode::Immediate,
            priority: crate::state::NudgePriority::Normal,
            source: "cmd".into(),
            ttl_s: 3600,
        })
        .at(T0 + mins(1)),
        reconciled([Action::DeleteAgent { agent_id: "pc-1".into(), reason: "GC: idle > 24h".into() }]).at(T0 + mins(2)),
    ]);
    let b1 = g.bead("b1");
    assert_eq!((b1.status, b1.assignee.as_deref()), (BeadStatus::Open, None));
    assert!(g.state.nudges.is_empty());
    assert!(!g.state.agents.contains_key("pc-1"));
}

#[test]
fn t06_lost_then_resumed_repairs_an_idle_hooked_polecat() {
    let g = t6_up_to_15s().and([
        heartbeat_lost("pc-1", LostCause::Expired).at(T0 + mins(3)),
        reconciled([transition_agent("pc-1", AgentStatus::Working, AgentStatus::Idle, "heartbeat lost")]).at(T0 + mins(3)),
        resumed_on("pc-1", "c1").at(T0 + mins(3) + secs(1)),
    ]);
    let a = g.agent("pc-1");
    assert_eq!(
        (a.status, a.liveness, a.last_activity_at, a.dispatch_attempts),
        (AgentStatus::Working, Liveness::Alive, Some(T0 + mins(3) + secs(1)), 0)
    );
}

// --- properties ---

mod props {
    use proptest::prelude::*;

    use crate::apply::strategies::{arb_action, arb_action_message, arb_envelope, arb_history};
    use crate::codec::{from_msgpack, to_msgpack};
    use crate::event::{EVENT_TYPES, Envelope};
    use crate::state::TownState;
    use crate::{Action, apply};

    fn fold(s: &mut TownState, from_seq: u64, events: &[Envelope]) {
        for (i, e) in events.iter().enumerate() {
            let seq = from_seq + i as u64;
            apply(s, seq, e);
            assert_eq!(s.last_seq, seq, "last_seq after {}", e.event_type());
        }
    }

    /// A MessagePack map marker: fixmap, map16 or map32.
    fn is_map(bytes: &[u8]) -> bool {
        matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf))
    }

    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = to_msgpack(v).unwrap();
        assert!(is_map(&bytes), "encoded as a map: {:#04x?}", bytes.first());
        let back: T = from_msgpack(&bytes).unwrap();
        assert_eq!(&back, v);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn apply_is_total_and_always_advances_last_seq(events in arb_history(80)) {
            let mut s = TownState::new("t1");
            fold(&mut s, 1, &events);
            prop_assert_eq!(s.last_seq, events.len() as u64);
            prop_assert!(s.clock >= crate::testing::T0 || events.is_empty());
        }

        #[test]
        fn a_snapshot_plus_its_tail_folds_to_the_full_history(events in arb_history(80), cut in 0usize..90) {
            let cut = cut.min(events.len());
            let (head, tail) = events.split_at(cut);
            let mut full = TownState::new("t1");
            fold(&mut full, 1, &events);
            let mut part = TownState::new("t1");
            fold(&mut part, 1, head);
            let mut restored: TownState = from_msgpack(&to_msgpack(&part).unwrap()).unwrap();
            prop_assert_eq!(&restored, &part);
            fold(&mut restored, cut as u64 + 1, tail);
            prop_assert_eq!(restored, full);
        }

        #[test]
        fn town_states_round_trip_as_maps(events in arb_history(60)) {
            let mut s = TownState::new("t1");
            fold(&mut s, 1, &events);
            round_trip(&s);
        }

        #[test]
        fn envelopes_round_trip_as_maps(e in arb_envelope()) {
            round_trip(&e);
        }

        #[test]
        fn actions_round_trip_as_maps(a in arb_action()) {
            round_trip(&a);
        }

        #[test]
        fn action_messages_round_trip_as_maps(m in arb_action_message()) {
            round_trip(&m);
        }
    }

    #[test]
    fn the_strategies_cover_every_event_type_and_action() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let mut seen = std::collections::BTreeSet::new();
        let mut actions = std::collections::BTreeSet::new();
        let env = arb_envelope();
        let act = arb_action();
        for _ in 0..800 {
            let e = env.new_tree(&mut runner).unwrap().current();
            seen.insert(e.event_type().to_owned());
            let a: Action = act.new_tree(&mut runner).unwrap().current();
            actions.insert(a.action_type());
        }
        for t in EVENT_TYPES {
            assert!(seen.contains(*t), "no {t} generated");
        }
        assert_eq!(actions.len(), 28, "{actions:?}");
    }
}
