//! I3, I4, I6–I10 — the invariant checks of DOMAIN §I, evaluated read-only on a state at `now`.

use std::collections::BTreeMap;

use super::Violation;
use crate::constants::ORPHANED_SOURCE;
use crate::state::{AgentStatus, BeadStatus, BeadType, Role, TownState};
use crate::time::{Millis, format_iso, older_than};

/// Checks every invariant of §I on `state` at `now` (I0). Read-only, total and deterministic: the
/// violations come ordered by invariant number, then entity id (byte-wise), with at most one
/// violation per (invariant, entity) — several findings for one key are joined into one detail
/// with `; ` (only I10 can have several: two refineries in a rig, one of them misnamed).
#[must_use]
pub fn check(state: &TownState, now: Millis) -> Vec<Violation> {
    let mut out = Vec::new();
    i3_one_direct_review_per_rig(state, &mut out);
    i4_in_review_is_tracked(state, now, &mut out);
    i6_one_agent_per_bead(state, &mut out);
    i7_working_means_hooked(state, &mut out);
    i8_terminal_absorption(state, &mut out);
    i9_hook_coherence(state, &mut out);
    i10_singletons(state, &mut out);
    merge(out)
}

/// Sorts by (invariant, entity) and joins the details of findings sharing a key, in the order
/// they were found (the sort is stable).
fn merge(mut found: Vec<Violation>) -> Vec<Violation> {
    found.sort_by(|a, b| (a.invariant, &a.entity).cmp(&(b.invariant, &b.entity)));
    let mut out: Vec<Violation> = Vec::with_capacity(found.len());
    for v in found {
        match out.last_mut() {
            Some(last) if last.invariant == v.invariant && last.entity == v.entity => {
                last.detail.push_str("; ");
                last.detail.push_str(&v.detail);
            }
            _ => out.push(v),
        }
    }
    out
}

fn push(out: &mut Vec<Violation>, invariant: u8, entity: &str, detail: String) {
    out.push(Violation { invariant, entity: entity.to_owned(), detail });
}

/// I3: each rig has at most one MR `in_progress` without `pr_url` (the direct-strategy reviews Q7
/// serialises). Entity: the rig. MRs without a rig belong to no rig and are not counted.
fn i3_one_direct_review_per_rig(s: &TownState, out: &mut Vec<Violation>) {
    let mut per_rig: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for b in s.beads_in_order() {
        if b.bead_type == BeadType::MergeRequest
            && b.status == BeadStatus::InProgress
            && b.pr_url().is_none()
            && let Some(rig) = b.rig_id.as_deref()
        {
            per_rig.entry(rig).or_default().push(&b.bead_id);
        }
    }
    for (rig, mrs) in per_rig {
        if mrs.len() > 1 {
            let detail = format!("rig {rig} has {} merge requests in_progress without pr_url: {}", mrs.len(), mrs.join(", "));
            push(out, 3, rig, detail);
        }
    }
}

/// I4: every issue `in_review` whose `updated_at` is older than ORPHANED_SOURCE is tracked by at
/// least one `open`/`in_progress` MR. A younger one is B5's transient and never counts. Entity:
/// the issue.
fn i4_in_review_is_tracked(s: &TownState, now: Millis, out: &mut Vec<Violation>) {
    for b in s.beads.values() {
        if b.bead_type != BeadType::Issue
            || b.status != BeadStatus::InReview
            || !older_than(Some(b.updated_at), ORPHANED_SOURCE, now)
        {
            continue;
        }
        let tracked = s.tracking_mrs(&b.bead_id).iter().any(|m| matches!(m.status, BeadStatus::Open | BeadStatus::InProgress));
        if !tracked {
            let detail = format!(
                "issue {} is in_review since {} and no open or in_progress merge request tracks it",
                b.bead_id,
                format_iso(b.updated_at)
            );
            push(out, 4, &b.bead_id, detail);
        }
    }
}

/// I6: no bead has more than one agent hooked to it. Entity: the bead (whether or not it exists).
fn i6_one_agent_per_bead(s: &TownState, out: &mut Vec<Violation>) {
    let mut hooked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in s.agents.values() {
        if let Some(h) = a.hook.as_deref() {
            hooked.entry(h).or_default().push(&a.agent_id);
        }
    }
    for (bead, agents) in hooked {
        if agents.len() > 1 {
            let detail = format!("bead {bead} has {} agents hooked to it: {}", agents.len(), agents.join(", "));
            push(out, 6, bead, detail);
        }
    }
}

/// I7: no agent other than the mayor is `working` without a hook. Entity: the agent.
fn i7_working_means_hooked(s: &TownState, out: &mut Vec<Violation>) {
    for a in s.agents.values() {
        if a.status == AgentStatus::Working && a.role != Role::Mayor && a.hook.is_none() {
            let detail = format!("agent {} ({}) is working without a hook", a.agent_id, a.role);
            push(out, 7, &a.agent_id, detail);
        }
    }
}

/// I8: `closed_at` is set exactly when the status is terminal, and then `status = final_status`.
/// Entity: the bead; the first broken clause is reported.
fn i8_terminal_absorption(s: &TownState, out: &mut Vec<Violation>) {
    for b in s.beads.values() {
        let detail = match (b.status.is_terminal(), b.closed_at, b.final_status) {
            (false, Some(at), _) => format!("bead {} is {} but closed_at is set ({})", b.bead_id, b.status, format_iso(at)),
            (true, None, _) => format!("bead {} is {} but closed_at is not set", b.bead_id, b.status),
            (true, Some(_), None) => format!("bead {} is {} but final_status is not set", b.bead_id, b.status),
            (true, Some(_), Some(f)) if f != b.status => {
                format!("bead {} is {} but its final_status is {f}", b.bead_id, b.status)
            }
            _ => continue,
        };
        push(out, 8, &b.bead_id, detail);
    }
}

/// I9: every hook names an existing, live, hookable bead whose assignee is the hooked agent.
/// Entity: the agent; the first broken clause is reported.
fn i9_hook_coherence(s: &TownState, out: &mut Vec<Violation>) {
    for a in s.agents.values() {
        let Some(hook) = a.hook.as_deref() else { continue };
        let agent = &a.agent_id;
        let detail = match s.beads.get(hook) {
            None => format!("agent {agent} is hooked to {hook}, which does not exist"),
            Some(b) if b.is_terminal() => format!("agent {agent} is hooked to {hook}, which is {}", b.status),
            Some(b) if b.is_triage_request() => {
                format!("agent {agent} is hooked to {hook}, a triage request, which cannot be hooked")
            }
            Some(b) if !b.is_hookable() => {
                format!("agent {agent} is hooked to {hook}, a bead of type {}, which cannot be hooked", b.bead_type)
            }
            Some(b) => match b.assignee.as_deref() {
                Some(x) if x == agent => continue,
                Some(x) => format!("agent {agent} is hooked to {hook}, which is assigned to {x}"),
                None => format!("agent {agent} is hooked to {hook}, which has no assignee"),
            },
        };
        push(out, 9, agent, detail);
    }
}

/// I10: at most one mayor per town (entity: the town); at most one refinery per rig, with id
/// `ref-<rig>` (entity: the rig; a refinery without a rig is reported against the town).
fn i10_singletons(s: &TownState, out: &mut Vec<Violation>) {
    let town = s.town_id.as_str();
    let mayors: Vec<&str> = s.agents.values().filter(|a| a.role == Role::Mayor).map(|a| a.agent_id.as_str()).collect();
    if mayors.len() > 1 {
        let detail = format!("town {town} has {} mayors: {}", mayors.len(), mayors.join(", "));
        push(out, 10, town, detail);
    }
    let mut per_rig: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in s.agents.values().filter(|a| a.role == Role::Refinery) {
        match a.rig_id.as_deref() {
            Some(rig) => per_rig.entry(rig).or_default().push(&a.agent_id),
            None => push(out, 10, town, format!("refinery {} has no rig", a.agent_id)),
        }
    }
    for (rig, refineries) in per_rig {
        if refineries.len() > 1 {
            let detail = format!("rig {rig} has {} refineries: {}", refineries.len(), refineries.join(", "));
            push(out, 10, rig, detail);
        }
        let expected = format!("ref-{rig}");
        for r in refineries.iter().filter(|r| **r != expected) {
            push(out, 10, rig, format!("refinery {r} of rig {rig} is not named {expected}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Action;
    use crate::constants::INVARIANT_REPORT_INTERVAL;
    use crate::invariant::Reporter;
    use crate::invariant::fixtures::{POPPED_AT, keys, two_reviews_in_r1, unchecked_from};
    use crate::state::{Agent, BeadStatus::*, Liveness};
    use crate::testing::*;

    // --- I3 ---

    #[test]
    fn t40_two_direct_reviews_in_progress_in_one_rig_break_invariant_3() {
        let g = two_reviews_in_r1(None);
        assert_eq!((g.bead("mr-3").status, g.bead("mr-3").pr_url()), (InProgress, None));
        assert_eq!((g.bead("mr-4").status, g.bead("mr-4").pr_url()), (InProgress, None));

        assert_eq!(
            check(&g.state, POPPED_AT),
            [Violation {
                invariant: 3,
                entity: "r1".into(),
                detail: "rig r1 has 2 merge requests in_progress without pr_url: mr-3, mr-4".into(),
            }]
        );
    }

    #[test]
    fn t40_a_pr_review_beside_one_direct_review_keeps_invariant_3() {
        let g = two_reviews_in_r1(Some("https://github.com/acme/app/pull/2"));
        assert_eq!(g.bead("mr-4").status, InProgress);
        assert_eq!(g.bead("mr-4").pr_url(), Some("https://github.com/acme/app/pull/2"));

        assert_eq!(check(&g.state, POPPED_AT), []);
    }

    // --- I4 (and T23's invariant part) ---

    /// F; b1 created at T0 and set `in_review` at T0 by an operator: no MR ever tracks it.
    fn untracked_in_review_b1() -> Given {
        given(fixture_f()).and([bead_created("b1", "r1").at(T0), bead_status_changed("b1", InReview).at(T0)])
    }

    #[test]
    fn t40_in_review_issue_untracked_for_orphaned_source_breaks_invariant_4() {
        let g = untracked_in_review_b1();
        assert_eq!((g.bead("b1").status, g.bead("b1").updated_at), (InReview, T0));

        assert_eq!(keys(&check(&g.state, T0 + ORPHANED_SOURCE)), [(4, "b1")]);
    }

    #[test]
    fn t40_in_review_issue_untracked_just_short_of_orphaned_source_keeps_invariant_4() {
        let g = untracked_in_review_b1();
        assert_eq!(g.bead("b1").status, InReview);

        assert_eq!(check(&g.state, T0 + ORPHANED_SOURCE - 1), []);
    }

    #[test]
    fn t40_in_review_issue_tracked_by_an_open_mr_keeps_invariant_4() {
        let g = given(fixture_f()).and([
            bead_created("b1", "r1").at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
            agent_done("pc-1", "fix-b1").at(T0 + mins(1)),
        ]);
        assert_eq!((g.bead("b1").status, g.bead("mr-2").status), (InReview, Open));

        assert_eq!(check(&g.state, T0 + hours(1)), []);
    }

    #[test]
    fn t23_untracked_in_review_issue_is_not_reported_before_its_repair_deadline() {
        let mut g = untracked_in_review_b1();

        assert_eq!(g.settle_at(T0 + ORPHANED_SOURCE - 1), [Vec::<Action>::new()]);
        assert_eq!(check(&g.state, T0 + ORPHANED_SOURCE - 1), []);
        g.when_reconciled_at(T0 + ORPHANED_SOURCE - 1).then_decides_nothing().and_wakes_at(T0 + ORPHANED_SOURCE);
    }

    #[test]
    fn t23_untracked_in_review_issue_is_reported_once_at_its_repair_deadline() {
        let mut g = untracked_in_review_b1();
        let mut reporter = Reporter::new();

        let before = T0 + ORPHANED_SOURCE - 1;
        g.settle_at(before);
        let early = reporter.observe(TOWN, g.state.last_seq, before, &check(&g.state, before), INVARIANT_REPORT_INTERVAL);

        // B5 never acts on an issue no MR tracks: the pass at the deadline decides nothing.
        let deadline = T0 + ORPHANED_SOURCE;
        assert_eq!(g.settle_at(deadline), [Vec::<Action>::new()]);
        let at_deadline =
            reporter.observe(TOWN, g.state.last_seq, deadline, &check(&g.state, deadline), INVARIANT_REPORT_INTERVAL);
        let later = T0 + ORPHANED_SOURCE + mins(1);
        let after = reporter.observe(TOWN, g.state.last_seq, later, &check(&g.state, later), INVARIANT_REPORT_INTERVAL);

        assert_eq!((early.new_keys.len(), early.active.get(&4).copied()), (0, Some(0)));
        let fingerprints: Vec<Vec<String>> = at_deadline.new_keys.iter().map(|r| r.fingerprint.clone()).collect();
        assert_eq!(fingerprints, [["gastown-invariant", "4", "t1", "b1"]]);
        assert_eq!((after.new_keys.len(), after.repeats.len(), after.active.get(&4).copied()), (0, 0, Some(1)));
    }

    // --- I6 ---

    /// F; p1, p2 polecats of r1; b1 hooked by p1 (`bead.hook`).
    fn b1_hooked_by_p1() -> Given {
        given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            polecat_registered("p2").at(T0),
            bead_created("b1", "r1").at(T0 + secs(5)),
            bead_hooked("b1", "p1").at(T0 + secs(5)),
        ])
    }

    #[test]
    fn t40_two_agents_hooked_to_one_bead_break_invariant_6() {
        let g = b1_hooked_by_p1();
        assert_eq!((g.agent("p1").hook.as_deref(), g.bead("b1").assignee.as_deref()), (Some("b1"), Some("p1")));
        // `hook` unhooks every other agent, so no history hooks p2 as well.
        let s = unchecked_from(g, |s| s.agents.get_mut("p2").unwrap().hook = Some("b1".into()));

        let found = check(&s, T0 + secs(5));

        // p2 also breaks hook coherence (I9): b1's assignee is p1.
        assert_eq!(keys(&found), [(6, "b1"), (9, "p2")]);
        assert_eq!(found[0].detail, "bead b1 has 2 agents hooked to it: p1, p2");
    }

    #[test]
    fn t40_one_agent_hooked_to_a_bead_keeps_invariant_6() {
        let g = b1_hooked_by_p1();
        assert_eq!(g.agent("p1").hook.as_deref(), Some("b1"));

        assert_eq!(check(&g.state, T0 + secs(5)), []);
    }

    // --- I7 ---

    /// F; b1 dispatched to pc-1 at +10s, pc-1 alive at +15s; at +20s a decision unhooks pc-1 and
    /// sets it working again.
    fn pc1_working_alive_without_hook() -> Given {
        given(fixture_f()).and([
            bead_created("b1", "r1").at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
            resumed("pc-1").at(T0 + secs(15)),
            reconciled([
                unhook_agent("pc-1", "test: drop the hook"),
                transition_agent("pc-1", AgentStatus::Idle, AgentStatus::Working, "test: working without hook"),
            ])
            .at(T0 + secs(20)),
        ])
    }

    #[test]
    fn t40_working_polecat_without_hook_breaks_invariant_7_and_is_idled() {
        let g = pc1_working_alive_without_hook();
        let pc1 = g.agent("pc-1");
        assert_eq!((pc1.status, pc1.liveness, pc1.hook.as_deref()), (AgentStatus::Working, Liveness::Alive, None));

        assert_eq!(
            check(&g.state, T0 + secs(20)),
            [Violation { invariant: 7, entity: "pc-1".into(), detail: "agent pc-1 (polecat) is working without a hook".into() }]
        );
        // dry-run lists the A1 repair beside the violation.
        g.when_reconciled_at(T0 + secs(20)).then_decides([transition_agent(
            "pc-1",
            AgentStatus::Working,
            AgentStatus::Idle,
            "working agent has no hook",
        )]);
    }

    #[test]
    fn t40_mayor_working_without_hook_keeps_invariant_7() {
        let g = given(fixture_f());
        let mayor = g.agent("mayor");
        assert_eq!((mayor.role, mayor.status, mayor.hook.as_deref()), (Role::Mayor, AgentStatus::Working, None));

        assert_eq!(check(&g.state, T0), []);
    }

    // --- I8 ---

    /// F; b1 created and closed by an operator at T0.
    fn b1_closed() -> Given {
        given(fixture_f()).and([bead_created("b1", "r1").at(T0), bead_status_changed("b1", Closed).at(T0)])
    }

    #[test]
    fn t40_closed_bead_whose_status_differs_from_final_status_breaks_invariant_8() {
        let g = b1_closed();
        assert_eq!((g.bead("b1").final_status, g.bead("b1").closed_at), (Some(Closed), Some(T0)));
        // Terminal absorption (S5.T): no history rewrites a terminal status.
        let s = unchecked_from(g, |s| s.beads.get_mut("b1").unwrap().status = Failed);

        assert_eq!(
            check(&s, T0),
            [Violation { invariant: 8, entity: "b1".into(), detail: "bead b1 is failed but its final_status is closed".into() }]
        );
    }

    #[test]
    fn t40_closed_bead_with_closed_at_and_final_status_keeps_invariant_8() {
        let g = b1_closed();
        assert_eq!((g.bead("b1").status, g.bead("b1").final_status, g.bead("b1").closed_at), (Closed, Some(Closed), Some(T0)));

        assert_eq!(check(&g.state, T0), []);
    }

    #[test]
    fn i8_closed_at_must_be_set_exactly_on_terminal_beads() {
        let g = given(fixture_f()).and([
            bead_created("b1", "r1").at(T0),
            bead_created("b2", "r1").at(T0),
            bead_status_changed("b2", Closed).at(T0),
        ]);
        let s = unchecked_from(g, |s| {
            s.beads.get_mut("b1").unwrap().closed_at = Some(T0);
            s.beads.get_mut("b2").unwrap().closed_at = None;
        });

        let found = check(&s, T0);

        assert_eq!(keys(&found), [(8, "b1"), (8, "b2")]);
        assert_eq!(found[0].detail, "bead b1 is open but closed_at is set (2026-06-01T10:00:00.000Z)");
        assert_eq!(found[1].detail, "bead b2 is closed but closed_at is not set");
    }

    // --- I9 ---

    #[test]
    fn t40_agent_hooked_to_a_closed_bead_breaks_invariant_9() {
        // `transition_bead` closes a bead without unhooking (only `bead.status` and `clear_bead_assignee` do).
        let g = given(fixture_f()).and([
            bead_created("b1", "r1").at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
            reconciled([transition_bead("b1", InProgress, Closed, "test: closed under its agent")]).at(T0 + secs(20)),
        ]);
        assert_eq!((g.agent("pc-1").hook.as_deref(), g.bead("b1").status), (Some("b1"), Closed));

        assert_eq!(
            check(&g.state, T0 + secs(20)),
            [Violation { invariant: 9, entity: "pc-1".into(), detail: "agent pc-1 is hooked to b1, which is closed".into() }]
        );
    }

    #[test]
    fn t40_agent_hooked_to_a_bead_assigned_to_another_agent_breaks_invariant_9() {
        // `hook` always makes the hooked agent the assignee.
        let s = unchecked_from(b1_hooked_by_p1(), |s| s.beads.get_mut("b1").unwrap().assignee = Some("p2".into()));

        assert_eq!(
            check(&s, T0 + secs(5)),
            [Violation { invariant: 9, entity: "p1".into(), detail: "agent p1 is hooked to b1, which is assigned to p2".into() }]
        );
    }

    #[test]
    fn i9_hook_to_a_missing_or_unhookable_bead_breaks_invariant_9() {
        let g = given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            polecat_registered("p2").at(T0),
            polecat_registered("p3").at(T0),
            bead_created("b1", "r1").at(T0),
            ev(crate::event::MailSent {
                bead_id: "m1".into(),
                to_agent_id: "p3".into(),
                from: "operator".into(),
                subject: "hello".into(),
                body: Some("hi".into()),
            })
            .at(T0),
        ]);
        assert!(g.state.beads.contains_key("m1"));
        let s = unchecked_from(g, |s| {
            s.agents.get_mut("p1").unwrap().hook = Some("gone".into());
            s.agents.get_mut("p2").unwrap().hook = Some("b1".into());
            s.agents.get_mut("p3").unwrap().hook = Some("m1".into());
        });

        let found = check(&s, T0);

        assert_eq!(keys(&found), [(9, "p1"), (9, "p2"), (9, "p3")]);
        assert_eq!(found[0].detail, "agent p1 is hooked to gone, which does not exist");
        assert_eq!(found[1].detail, "agent p2 is hooked to b1, which has no assignee");
        assert_eq!(found[2].detail, "agent p3 is hooked to m1, a bead of type message, which cannot be hooked");
    }

    // --- I10 ---

    #[test]
    fn t40_two_refineries_in_one_rig_break_invariant_10() {
        let g = given(fixture_f()).and([agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0)]);
        assert_eq!(g.agent("ref-r1").role, Role::Refinery);
        // `agent_registered` and `dispatch_agent` refuse a second refinery.
        let s = unchecked_from(g, |s| {
            let second = Agent { agent_id: "refinery-2".into(), ..s.agents["ref-r1"].clone() };
            s.agents.insert("refinery-2".into(), second);
        });

        assert_eq!(
            check(&s, T0),
            [Violation {
                invariant: 10,
                entity: "r1".into(),
                detail: "rig r1 has 2 refineries: ref-r1, refinery-2; refinery refinery-2 of rig r1 is not named ref-r1".into(),
            }]
        );
    }

    #[test]
    fn t40_one_refinery_per_rig_keeps_invariant_10() {
        let g = given(fixture_f()).and([agent_registered("ref-r1", Role::Refinery, Some("r1")).at(T0)]);
        assert_eq!(g.agent("ref-r1").rig_id.as_deref(), Some("r1"));

        assert_eq!(check(&g.state, T0), []);
    }

    #[test]
    fn t40_second_mayor_breaks_invariant_10_for_the_town() {
        let s = unchecked_from(given(fixture_f()), |s| {
            let second = Agent { agent_id: "mayor-2".into(), ..s.agents["mayor"].clone() };
            s.agents.insert("mayor-2".into(), second);
        });

        assert_eq!(
            check(&s, T0),
            [Violation { invariant: 10, entity: "t1".into(), detail: "town t1 has 2 mayors: mayor, mayor-2".into() }]
        );
    }

    // --- order ---

    #[test]
    fn violations_come_by_invariant_then_entity() {
        let g = given(fixture_f()).and([
            polecat_registered("p2").at(T0),
            polecat_registered("p1").at(T0),
            bead_created("b2", "r1").at(T0),
            bead_created("b1", "r1").at(T0),
        ]);
        let s = unchecked_from(g, |s| {
            for (agent, bead) in [("p2", "b2"), ("p1", "b1")] {
                let a = s.agents.get_mut(agent).unwrap();
                a.status = AgentStatus::Working;
                a.hook = Some(bead.into());
            }
            s.beads.get_mut("b2").unwrap().closed_at = Some(T0);
            s.beads.get_mut("b1").unwrap().closed_at = Some(T0);
        });

        let found = check(&s, T0);

        assert_eq!(keys(&found), [(8, "b1"), (8, "b2"), (9, "p1"), (9, "p2")]);
        assert_eq!(check(&s, T0), found);
    }

    // --- totality and determinism ---

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// On any folded history, `check` never panics, is deterministic, and returns keys in
        /// strictly increasing (invariant, entity) order, each a listed invariant number.
        #[test]
        fn check_is_total_deterministic_and_ordered(
            events in crate::apply::strategies::arb_history(80),
            later in 0..hours(3),
        ) {
            let mut s = TownState::new(TOWN);
            for (i, env) in events.iter().enumerate() {
                crate::apply(&mut s, u64::try_from(i).unwrap() + 1, env);
            }
            let now = s.clock + later;

            let found = check(&s, now);

            proptest::prop_assert_eq!(&check(&s.clone(), now), &found);
            for pair in found.windows(2) {
                proptest::prop_assert!((pair[0].invariant, &pair[0].entity) < (pair[1].invariant, &pair[1].entity));
            }
            for v in &found {
                proptest::prop_assert!(crate::invariant::INVARIANTS.contains(&v.invariant), "{:?}", v);
            }
        }
    }
}
