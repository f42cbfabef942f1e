//! Published action messages (ARCHITECTURE §4, DOMAIN AC3).
//!
//! The payload is the action's own keys (AC1) followed by the enrichment AC3 lists, computed from
//! the state **after** the whole decision is applied. `serde_json::Map` keeps its keys sorted, so
//! the payload's keys appear in byte order rather than in AC3's order; that order is deterministic,
//! so a re-publication from the same state is byte-identical, which is what executors rely on
//! (they read keys by name).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Action;
use crate::state::{Bead, BeadType, TownState};
use crate::time::Millis;

/// Version of the action message.
const ACTION_MESSAGE_VERSION: u32 = 1;

/// The message sent to `gastown.act.<town>.<type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionMessage {
    /// Message version (1).
    pub v: u32,
    /// `<decision_seq>:<index>`.
    pub action_id: String,
    /// Town.
    pub town: String,
    /// Action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Sequence of the decision.
    pub decision_seq: u64,
    /// Index in the decision.
    pub index: u32,
    /// The decision's `at`.
    pub at: Millis,
    /// AC3 payload.
    pub payload: Map<String, Value>,
}

impl ActionMessage {
    /// The messages of the published actions of the decision stored at `decision_seq`, in
    /// decision order; `index` is the action's position in the whole decision (unpublished
    /// actions included), so `action_id` names the same action as the `reconciled` event does.
    /// `state_after` is the town after folding that decision.
    #[must_use]
    pub fn for_decision(
        town: &str,
        decision_seq: u64,
        at: Millis,
        actions: &[Action],
        state_after: &TownState,
    ) -> Vec<ActionMessage> {
        actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_published())
            .map(|(i, a)| ActionMessage {
                v: ACTION_MESSAGE_VERSION,
                action_id: format!("{decision_seq}:{i}"),
                town: town.to_owned(),
                action_type: a.action_type().to_owned(),
                decision_seq,
                index: u32::try_from(i).unwrap_or(u32::MAX),
                at,
                payload: publish_payload(state_after, a),
            })
            .collect()
    }
}

/// The action's own keys (AC1), without `type`.
fn own_keys(action: &Action) -> Map<String, Value> {
    match serde_json::to_value(action) {
        Ok(Value::Object(mut m)) => {
            m.remove("type");
            m
        }
        _ => Map::new(),
    }
}

fn obj(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), v.into());
    }
}

/// The AC3 payload of a published action, computed from the state after the whole decision (an
/// unpublished action gets its own keys only). A `?` key is left out when it has no value, also
/// when its entity is missing from `after`; so are the keys derived from a missing agent, bead or
/// rig (a later action of the same decision may have removed it).
#[must_use]
pub fn publish_payload(after: &TownState, action: &Action) -> Map<String, Value> {
    let mut m = own_keys(action);
    match action {
        Action::DispatchAgent { agent_id, bead_id, rig_id, .. } => dispatch_enrichment(after, &mut m, agent_id, bead_id, rig_id),
        Action::MergePr { bead_id, .. } => {
            let rig = after.beads.get(bead_id).and_then(|b| b.rig_id.as_deref()).and_then(|r| after.rigs.get(r));
            if let Some(rig) = rig {
                m.insert("rig_id".into(), rig.rig_id.as_str().into());
                m.insert("git_url".into(), rig.git_url.as_str().into());
            }
        }
        Action::SendNudge { nudge_id, .. } | Action::DeliverNudge { nudge_id, .. } => {
            if let Some(n) = after.nudges.get(nudge_id) {
                // `send_nudge` already carries its message as an own key.
                m.entry("message").or_insert_with(|| n.message.as_str().into());
                m.insert("mode".into(), n.mode.as_str().into());
                m.insert("priority".into(), n.priority.as_str().into());
                m.insert("source".into(), n.source.as_str().into());
                m.insert("expires_at".into(), n.expires_at.into());
            }
        }
        Action::DeliverMail { bead_id, .. } => {
            if let Some(b) = after.beads.get(bead_id) {
                put_opt(&mut m, "from", b.mail.as_ref().map(|r| r.from.clone()));
                m.insert("subject".into(), b.title.as_str().into());
                put_opt(&mut m, "body", b.body.clone());
            }
        }
        _ => {}
    }
    m
}

fn dispatch_enrichment(after: &TownState, m: &mut Map<String, Value>, agent_id: &str, bead_id: &str, rig_id: &str) {
    if let Some(a) = after.agents.get(agent_id) {
        m.insert("role".into(), a.role.as_str().into());
        m.insert("name".into(), a.name.as_str().into());
        m.insert("identity".into(), a.identity.as_str().into());
        put_opt(m, "checkpoint", a.checkpoint.clone().map(Value::Object));
    }
    if let Some(r) = after.rigs.get(rig_id) {
        let rig = obj([
            ("rig_id", r.rig_id.as_str().into()),
            ("git_url", r.git_url.as_str().into()),
            ("default_branch", r.default_branch.as_str().into()),
        ]);
        m.insert("rig".into(), rig);
    }
    if let Some(b) = after.beads.get(bead_id) {
        m.insert("bead".into(), bead_block(b));
        if let Some(r) = b.review.as_ref().filter(|_| b.bead_type == BeadType::MergeRequest) {
            let mut review = Map::new();
            review.insert("branch".into(), r.branch.as_str().into());
            review.insert("target_branch".into(), r.target_branch.as_str().into());
            put_opt(&mut review, "pr_url", r.pr_url.clone());
            m.insert("review".into(), Value::Object(review));
        }
        if let Some(c) = convoy_for(after, b) {
            m.insert("convoy".into(), c);
        }
    }
    let resolved = after.resolved(Some(rig_id));
    m.insert("merge_strategy".into(), resolved.merge_strategy.as_str().into());
    let mut refinery = Map::new();
    refinery.insert("code_review".into(), resolved.code_review.into());
    refinery.insert("auto_merge".into(), resolved.auto_merge.into());
    put_opt(&mut refinery, "auto_merge_delay_minutes", resolved.auto_merge_delay_minutes);
    refinery.insert("auto_resolve_pr_feedback".into(), resolved.auto_resolve_pr_feedback.into());
    refinery.insert("auto_resolve_merge_conflicts".into(), resolved.auto_resolve_merge_conflicts.into());
    refinery.insert("gates".into(), resolved.gates.into());
    m.insert("refinery".into(), Value::Object(refinery));
}

fn bead_block(b: &Bead) -> Value {
    let mut m = Map::new();
    m.insert("bead_id".into(), b.bead_id.as_str().into());
    m.insert("type".into(), b.bead_type.as_str().into());
    m.insert("title".into(), b.title.as_str().into());
    put_opt(&mut m, "body", b.body.clone());
    m.insert("labels".into(), b.labels.clone().into());
    m.insert("metadata".into(), Value::Object(b.metadata.clone()));
    put_opt(&mut m, "branch", b.branch.clone());
    Value::Object(m)
}

/// The convoy the bead tracks, or the one an MR's `metadata.convoy_id` names.
fn convoy_for(after: &TownState, b: &Bead) -> Option<Value> {
    let convoy = after.convoy_of(&b.bead_id).or_else(|| {
        b.meta_str("convoy_id")
            .filter(|_| b.bead_type == BeadType::MergeRequest)
            .and_then(|id| after.beads.get(id))
            .filter(|c| c.bead_type == BeadType::Convoy)
    })?;
    let rec = convoy.convoy.as_ref()?;
    let mut m = Map::new();
    m.insert("convoy_id".into(), convoy.bead_id.as_str().into());
    put_opt(&mut m, "feature_branch", rec.feature_branch.clone());
    m.insert("merge_mode".into(), rec.merge_mode.as_str().into());
    Some(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{AgentCheckpointed, BeadCreated, ConvoyBeadSpec, ConvoyCreated, MailSent, NudgeQueued};
    use crate::state::{AgentStatus, BeadStatus, MergeMode, NudgeMode, NudgePriority, Role};
    use crate::testing::*;

    const GIT: &str = "https://github.com/acme/app.git";
    const PR: &str = "https://github.com/acme/app/pull/7";

    fn payload(town: &Given, a: &Action) -> Value {
        Value::Object(publish_payload(&town.state, a))
    }

    /// F; [5] @+10s b1 "Fix login"; [6] the decision dispatching pc-1 (created as Toast).
    fn t1_after_dispatch() -> Given {
        given(fixture_f()).and([
            ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).at(T0 + secs(10)),
            reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
        ])
    }

    #[test]
    fn dispatch_that_creates_a_polecat_names_it_from_the_after_state() {
        let town = t1_after_dispatch();
        let a = dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"));
        assert_eq!(
            payload(&town, &a),
            json!({
                "agent_id": "pc-1", "bead_id": "b1", "rig_id": "r1", "create": {"role": "polecat", "name": "Toast"},
                "role": "polecat", "name": "Toast", "identity": "Toast-polecat-r1@t1",
                "rig": {"rig_id": "r1", "git_url": GIT, "default_branch": "main"},
                "bead": {"bead_id": "b1", "type": "issue", "title": "Fix login", "labels": [], "metadata": {}},
                "merge_strategy": "direct",
                "refinery": {"code_review": true, "auto_merge": true, "auto_resolve_pr_feedback": false,
                             "auto_resolve_merge_conflicts": true, "gates": []}
            })
        );
    }

    #[test]
    fn dispatch_carries_the_agents_checkpoint() {
        let mut checkpoint = Map::new();
        checkpoint.insert("step".into(), json!(3));
        let town = given(fixture_f()).and([
            polecat_registered("p1").at(T0),
            ev(AgentCheckpointed { agent_id: "p1".into(), checkpoint }).at(T0),
            bead_created("b1", "r1").at(T0 + secs(1)),
            reconciled([dispatch_agent("p1", "b1", "r1")]).at(T0 + secs(1)),
        ]);
        let p = payload(&town, &dispatch_agent("p1", "b1", "r1"));
        assert_eq!(p["checkpoint"], json!({"step": 3}));
        assert_eq!((p["name"].as_str(), p["identity"].as_str()), (Some("p1"), Some("p1-polecat-r1@t1")));
        assert!(p.get("create").is_none());
    }

    /// Town config `pr` with gates and an auto-merge delay, r1 without code review; convoy cv1
    /// (review-then-land) whose issue c1 pc-1 finished without a PR (mr-2 into the feature
    /// branch); the decision popping mr-2 for a new refinery.
    fn refinery_on_convoy_mr() -> Given {
        given(fixture_f()).and([
            town_configured_with(
                json!({"merge_strategy": "pr", "refinery": {"auto_merge_delay_minutes": 10, "gates": ["lint"]}}),
            )
            .at(T0),
            rig_configured("r1", json!({"code_review": false})).at(T0),
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
            reconciled([dispatch_creating("pc-1", "c1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(2)),
            agent_done("pc-1", "fix/form").at(T0 + secs(3)),
            reconciled([
                transition_bead("mr-2", BeadStatus::Open, BeadStatus::InProgress, "popped for review (creating refinery)"),
                dispatch_creating("ref-r1", "mr-2", "r1", Role::Refinery, None),
            ])
            .at(T0 + secs(4)),
        ])
    }

    #[test]
    fn dispatch_of_a_refinery_adds_review_convoy_and_the_config_resolved_for_the_rig() {
        let town = refinery_on_convoy_mr();
        let a = dispatch_creating("ref-r1", "mr-2", "r1", Role::Refinery, None);
        assert_eq!(
            payload(&town, &a),
            json!({
                "agent_id": "ref-r1", "bead_id": "mr-2", "rig_id": "r1", "create": {"role": "refinery"},
                "role": "refinery", "name": "refinery", "identity": "refinery-refinery-r1@t1",
                "rig": {"rig_id": "r1", "git_url": GIT, "default_branch": "main"},
                "bead": {"bead_id": "mr-2", "type": "merge_request", "title": "Review: fix/form", "labels": ["gt:merge-request"],
                         "metadata": {"source_bead_id": "c1", "source_agent_id": "pc-1", "convoy_id": "cv1"}},
                "review": {"branch": "fix/form", "target_branch": "convoy/login/cv1/head"},
                "convoy": {"convoy_id": "cv1", "feature_branch": "convoy/login/cv1/head", "merge_mode": "review-then-land"},
                "merge_strategy": "pr",
                "refinery": {"code_review": false, "auto_merge": true, "auto_merge_delay_minutes": 10,
                             "auto_resolve_pr_feedback": false, "auto_resolve_merge_conflicts": true, "gates": ["lint"]}
            })
        );
    }

    #[test]
    fn merge_pr_names_the_mrs_repository() {
        let town = refinery_on_convoy_mr();
        assert_eq!(
            payload(&town, &merge_pr("mr-2", PR)),
            json!({"bead_id": "mr-2", "pr_url": PR, "rig_id": "r1", "git_url": GIT})
        );
        assert_eq!(payload(&town, &merge_pr("mr-9", PR)), json!({"bead_id": "mr-9", "pr_url": PR}), "missing MR: own keys");
    }

    #[test]
    fn stop_agent_and_poll_pr_carry_their_own_keys() {
        let town = refinery_on_convoy_mr();
        assert_eq!(
            payload(&town, &stop_agent("ref-r1", "MR bead mr-2 is closed")),
            json!({"agent_id": "ref-r1", "reason": "MR bead mr-2 is closed"})
        );
        assert_eq!(
            payload(&town, &poll_pr("mr-2", PR)),
            json!({"bead_id": "mr-2", "pr_url": PR, "flags": {"auto_merge": true, "auto_resolve_pr_feedback": false}})
        );
    }

    #[test]
    fn send_nudge_adds_the_created_nudges_delivery_fields() {
        let t = T0 + mins(15) + secs(10);
        let send = Action::SendNudge {
            agent_id: "pc-1".into(),
            nudge_id: "ndg-2".into(),
            tier: "warn".into(),
            message: "You have been idle for 15 minutes with no tool activity. Please check your progress.".into(),
        };
        let town = t1_after_dispatch().and([reconciled([send.clone()]).at(t)]);
        assert_eq!(
            payload(&town, &send),
            json!({
                "agent_id": "pc-1", "nudge_id": "ndg-2", "tier": "warn",
                "message": "You have been idle for 15 minutes with no tool activity. Please check your progress.",
                "mode": "immediate", "priority": "urgent", "source": "reconciler:warn", "expires_at": t + hours(1)
            })
        );
    }

    #[test]
    fn deliver_nudge_adds_the_nudges_text_and_delivery_fields() {
        let town = t1_after_dispatch().and([ev(NudgeQueued {
            nudge_id: "n1".into(),
            agent_id: "pc-1".into(),
            message: "rebase first".into(),
            mode: NudgeMode::WaitIdle,
            priority: NudgePriority::Normal,
            source: "cmd".into(),
            ttl_s: 600,
        })
        .at(T0 + mins(1))]);
        let a = Action::DeliverNudge { nudge_id: "n1".into(), agent_id: "pc-1".into() };
        assert_eq!(
            payload(&town, &a),
            json!({"nudge_id": "n1", "agent_id": "pc-1", "message": "rebase first", "mode": "wait-idle",
                   "priority": "normal", "source": "cmd", "expires_at": T0 + mins(11)})
        );
        let gone = Action::DeliverNudge { nudge_id: "n9".into(), agent_id: "pc-1".into() };
        assert_eq!(payload(&town, &gone), json!({"nudge_id": "n9", "agent_id": "pc-1"}));
    }

    #[test]
    fn deliver_mail_adds_sender_subject_and_body_when_set() {
        let mail = |id: &str, body: Option<&str>| {
            ev(MailSent {
                bead_id: id.into(),
                to_agent_id: "mayor".into(),
                from: "operator".into(),
                subject: "Hello".into(),
                body: body.map(Into::into),
            })
            .at(T0 + secs(1))
        };
        let town = given(fixture_f()).and([mail("m1", Some("hi")), mail("m2", None)]);
        let deliver = |id: &str| Action::DeliverMail { bead_id: id.into(), agent_id: "mayor".into() };
        assert_eq!(
            payload(&town, &deliver("m1")),
            json!({"bead_id": "m1", "agent_id": "mayor", "from": "operator", "subject": "Hello", "body": "hi"})
        );
        assert_eq!(
            payload(&town, &deliver("m2")),
            json!({"bead_id": "m2", "agent_id": "mayor", "from": "operator", "subject": "Hello"})
        );
    }

    #[test]
    fn messages_of_a_decision_cover_its_published_actions_at_their_index() {
        let town = t1_after_dispatch();
        let actions = [
            transition_agent("pc-1", AgentStatus::Working, AgentStatus::Idle, "heartbeat lost"),
            dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast")),
            stop_agent("pc-1", "exceeded 2h GUPP limit"),
        ];
        let msgs = ActionMessage::for_decision("t1", 6, T0 + secs(10), &actions, &town.state);
        let heads: Vec<(&str, &str, u32)> =
            msgs.iter().map(|m| (m.action_id.as_str(), m.action_type.as_str(), m.index)).collect();
        assert_eq!(heads, [("6:1", "dispatch_agent", 1), ("6:2", "stop_agent", 2)]);
        assert!(msgs.iter().all(|m| m.v == 1 && m.town == "t1" && m.decision_seq == 6 && m.at == T0 + secs(10)));
        assert_eq!(msgs[1].payload, publish_payload(&town.state, &actions[2]));
        let again = ActionMessage::for_decision("t1", 6, T0 + secs(10), &actions, &town.state);
        assert_eq!(crate::codec::to_msgpack(&msgs).unwrap(), crate::codec::to_msgpack(&again).unwrap(), "byte-identical");
    }
}
