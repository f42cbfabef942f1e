//! The shared apply operations of S10 (`set_status`, `hook`, `unhook`, `complete_review_merged`,
//! `fail_review`, `open_triage_request`, `send_mail`, `open_escalation`) and the id allocation of
//! C2. Every operation takes the effective time `t` and is a no-op on a missing entity.

use serde_json::{Map, Value};

use crate::constants::TRIAGE_OPEN_CAP;
use crate::labels;
use crate::state::{AgentStatus, Bead, BeadStatus, BeadType, EscalationRecord, MailRecord, Role, Severity, TownState};
use crate::time::Millis;

/// `failure_reason.code` of a status set by a `transition_bead` action.
pub(crate) const CODE_RECONCILER: &str = "reconciler";
/// `failure_reason.code` of a status set by `bead.status`.
pub(crate) const CODE_MANUAL: &str = "manual";

/// Options of a `stuck_agent` triage request (S10).
pub(crate) const STUCK_AGENT_OPTIONS: [&str; 6] =
    ["RESTART", "RESTART_WITH_BACKOFF", "NUDGE", "CLOSE_BEAD", "ESCALATE", "REASSIGN_BEAD"];
/// Options of an `escalation` triage request (S10).
pub(crate) const ESCALATION_OPTIONS: [&str; 4] = ["ESCALATE_TO_MAYOR", "RESTART", "CLOSE_BEAD", "REASSIGN_BEAD"];

/// The triage type of escalation requests.
pub(crate) const TRIAGE_ESCALATION: &str = "escalation";

/// The next free town-counter id `<prefix>-<n>` (C2) and its number, without consuming it. Ids
/// are `id_seq + 1` unless an entity already holds that id (only in states no validated history
/// reaches); the caller commits with [`take_id`] once the entity is really created.
pub(crate) fn peek_id(s: &TownState, prefix: &str) -> (String, u64) {
    let mut n = s.id_seq.saturating_add(1);
    let bound = s.beads.len() + s.nudges.len() + s.agents.len() + 1;
    for _ in 0..bound {
        let id = format!("{prefix}-{n}");
        if !s.beads.contains_key(&id) && !s.nudges.contains_key(&id) && !s.agents.contains_key(&id) {
            return (id, n);
        }
        n = n.saturating_add(1);
    }
    (format!("{prefix}-{n}"), n)
}

/// Consumes id number `n`: `id_seq = max(id_seq, n)` (C2, R0.2).
pub(crate) fn take_id(s: &mut TownState, n: u64) {
    s.id_seq = s.id_seq.max(n);
}

/// The caller's id when given, else the next `<prefix>-<n>`; the number is `Some` only for a
/// counter id, to be committed with [`take_id`] once the entity is created.
fn id_or_next(s: &TownState, id: Option<&str>, prefix: &str) -> (String, Option<u64>) {
    match id {
        Some(id) => (id.to_owned(), None),
        None => {
            let (id, n) = peek_id(s, prefix);
            (id, Some(n))
        }
    }
}

/// S4 identity: `<name>-<role>-<first 8 of rig_id>@<first 8 of town_id>`; without a rig (the
/// mayor) the rig part and its dash are left out: `<name>-<role>@<town>`.
#[must_use]
pub(crate) fn identity(name: &str, role: Role, rig_id: Option<&str>, town_id: &str) -> String {
    let town: String = town_id.chars().take(8).collect();
    match rig_id {
        Some(rig) => {
            let rig: String = rig.chars().take(8).collect();
            format!("{name}-{}-{rig}@{town}", role.as_str())
        }
        None => format!("{name}-{}@{town}", role.as_str()),
    }
}

/// `set_status(b, s, reason, code)` (S10): no-op if b is missing, terminal or already `to`; else
/// sets the status and `updated_at`, and on a terminal status `closed_at` and `final_status`
/// (S5.T); `failed` also records `failure_reason`. Returns whether the status changed.
pub(crate) fn set_status(s: &mut TownState, bead_id: &str, to: BeadStatus, reason: Option<&str>, code: &str, t: Millis) -> bool {
    s.beads.get_mut(bead_id).is_some_and(|b| set_status_on(b, to, reason, code, t))
}

/// `set_status` on a bead already looked up.
pub(crate) fn set_status_on(b: &mut Bead, to: BeadStatus, reason: Option<&str>, code: &str, t: Millis) -> bool {
    if b.is_terminal() || b.status == to {
        return false;
    }
    b.status = to;
    b.updated_at = t;
    if to.is_terminal() {
        b.closed_at = Some(t);
        b.final_status = Some(to);
    }
    if to == BeadStatus::Failed {
        b.failure_reason =
            Some(crate::state::FailureReason { code: code.to_owned(), message: reason.unwrap_or_default().to_owned() });
    }
    true
}

/// `set_status` without a reason (not to `failed`).
pub(crate) fn set_plain(s: &mut TownState, bead_id: &str, to: BeadStatus, t: Millis) -> bool {
    set_status(s, bead_id, to, None, CODE_RECONCILER, t)
}

/// `unhook(a)` (S10): no-op without a hook; else hook null, `idle`, `stalled_at` and checkpoint
/// cleared. The bead's assignee is kept.
pub(crate) fn unhook(s: &mut TownState, agent_id: &str) {
    let Some(a) = s.agents.get_mut(agent_id) else {
        return;
    };
    if a.hook.is_none() {
        return;
    }
    a.hook = None;
    a.status = AgentStatus::Idle;
    a.stalled_at = None;
    a.checkpoint = None;
}

/// Ids of the agents hooked to `bead_id`, by agent id.
pub(crate) fn hooked_ids(s: &TownState, bead_id: &str) -> Vec<String> {
    s.agents.values().filter(|a| a.hook.as_deref() == Some(bead_id)).map(|a| a.agent_id.clone()).collect()
}

/// `unhook` every agent hooked to `bead_id`.
pub(crate) fn unhook_all(s: &mut TownState, bead_id: &str) {
    for id in hooked_ids(s, bead_id) {
        unhook(s, &id);
    }
}

/// `hook(a, b)` (S10): no-op if either is missing, b is terminal or not hookable, or a is already
/// hooked. Every other agent hooked to b is unhooked; a becomes idle and hooked to b, and b's
/// assignee. Returns whether the hook took.
pub(crate) fn hook(s: &mut TownState, agent_id: &str, bead_id: &str, t: Millis) -> bool {
    let Some(b) = s.beads.get(bead_id) else {
        return false;
    };
    if b.is_terminal() || !b.is_hookable() {
        return false;
    }
    match s.agents.get(agent_id) {
        Some(a) if a.hook.is_none() => {}
        _ => return false,
    }
    unhook_all(s, bead_id);
    if let Some(a) = s.agents.get_mut(agent_id) {
        a.hook = Some(bead_id.to_owned());
        a.status = AgentStatus::Idle;
        a.last_activity_at = Some(t);
    }
    if let Some(b) = s.beads.get_mut(bead_id) {
        b.assignee = Some(agent_id.to_owned());
        b.updated_at = t;
    }
    true
}

/// `complete_review_merged(m)` (S10): closes the MR, its source and the source's other live MRs
/// (failed siblings stay failed); a convoy source lands at `t`.
pub(crate) fn complete_review_merged(s: &mut TownState, mr_id: &str, t: Millis) {
    match s.beads.get(mr_id) {
        Some(m) if m.status.is_live() => {}
        _ => return,
    }
    set_plain(s, mr_id, BeadStatus::Closed, t);
    let Some(source) = s.mr_source(mr_id).map(|b| (b.bead_id.clone(), b.bead_type, b.status.is_live())) else {
        return;
    };
    let (source_id, source_type, source_live) = source;
    set_plain(s, &source_id, BeadStatus::Closed, t);
    let siblings: Vec<String> =
        s.tracking_mrs(&source_id).into_iter().filter(|m| m.status.is_live()).map(|m| m.bead_id.clone()).collect();
    for id in siblings {
        set_plain(s, &id, BeadStatus::Closed, t);
    }
    if source_type == BeadType::Convoy
        && source_live
        && let Some(c) = s.beads.get_mut(&source_id).and_then(|b| b.convoy.as_mut())
    {
        c.landed_at = Some(t);
    }
}

/// `fail_review(m, reason, code)` (S10): fails a live MR and reopens, unassigned, a live issue
/// source; a convoy source is left alone.
pub(crate) fn fail_review(s: &mut TownState, mr_id: &str, reason: &str, code: &str, t: Millis) {
    match s.beads.get(mr_id) {
        Some(m) if m.status.is_live() => {}
        _ => return,
    }
    set_status(s, mr_id, BeadStatus::Failed, Some(reason), code, t);
    let Some(source_id) =
        s.mr_source(mr_id).filter(|b| b.bead_type == BeadType::Issue && b.status.is_live()).map(|b| b.bead_id.clone())
    else {
        return;
    };
    set_plain(s, &source_id, BeadStatus::Open, t);
    if let Some(src) = s.beads.get_mut(&source_id) {
        src.assignee = None;
    }
}

/// Whether `b` is an open triage request.
fn is_open_request(b: &Bead) -> bool {
    b.status == BeadStatus::Open && b.is_triage_request()
}

/// `context.escalation_bead_id` of a request's metadata.
fn request_escalation_id(b: &Bead) -> Option<&str> {
    b.metadata.get("context").and_then(|c| c.get("escalation_bead_id")).and_then(Value::as_str)
}

/// What `open_triage_request` needs (S10).
pub(crate) struct TriageSpec<'a> {
    /// The agent concerned, if any.
    pub(crate) agent_id: Option<&'a str>,
    /// `stuck_agent`, `escalation`, …
    pub(crate) triage_type: &'a str,
    /// Becomes the title `Triage: <reason>`.
    pub(crate) reason: &'a str,
    /// Free context (`rig_id` gives the rig when the agent has none).
    pub(crate) context: Map<String, Value>,
    /// The caller's id, else `tri-n`.
    pub(crate) id: Option<&'a str>,
}

/// `open_triage_request(agent?, type, reason, context, options)` (S10). Returns the id of the
/// request created, or `None` when it was a no-op (duplicate, cap, or id taken).
pub(crate) fn open_triage_request(s: &mut TownState, spec: TriageSpec<'_>, t: Millis) -> Option<String> {
    let is_escalation = spec.triage_type == TRIAGE_ESCALATION;
    let escalation_id = spec.context.get("escalation_bead_id").and_then(Value::as_str);
    let mut open_other = 0_usize;
    for b in s.beads.values().filter(|b| is_open_request(b)) {
        let b_type = b.meta_str("triage_type");
        if b_type != Some(TRIAGE_ESCALATION) {
            open_other += 1;
        }
        if b_type != Some(spec.triage_type) {
            continue;
        }
        let duplicate =
            if is_escalation { request_escalation_id(b) == escalation_id } else { b.meta_str("agent_bead_id") == spec.agent_id };
        if duplicate {
            return None;
        }
    }
    if !is_escalation && open_other >= TRIAGE_OPEN_CAP {
        return None;
    }
    let (id, n) = id_or_next(s, spec.id, "tri");
    if s.beads.contains_key(&id) {
        return None;
    }
    let agent = spec.agent_id.and_then(|a| s.agents.get(a));
    let hooked = agent.and_then(|a| a.hook.clone());
    let rig =
        agent.and_then(|a| a.rig_id.clone()).or_else(|| spec.context.get("rig_id").and_then(Value::as_str).map(str::to_owned));
    let options: Vec<Value> = if is_escalation {
        ESCALATION_OPTIONS.iter().map(|o| Value::from(*o)).collect()
    } else {
        STUCK_AGENT_OPTIONS.iter().map(|o| Value::from(*o)).collect()
    };
    let mut b = Bead::new(&id, BeadType::Issue, &format!("Triage: {}", spec.reason), "system", t);
    b.labels.push(labels::TRIAGE_REQUEST.to_owned());
    b.assignee = spec.agent_id.map(str::to_owned);
    b.rig_id = rig;
    b.metadata.insert("triage_type".to_owned(), Value::from(spec.triage_type));
    if let Some(a) = spec.agent_id {
        b.metadata.insert("agent_bead_id".to_owned(), Value::from(a));
    }
    if let Some(h) = hooked {
        b.metadata.insert("hooked_bead_id".to_owned(), Value::from(h));
    }
    b.metadata.insert("context".to_owned(), Value::Object(spec.context));
    b.metadata.insert("options".to_owned(), Value::Array(options));
    s.beads.insert(id.clone(), b);
    if let Some(n) = n {
        take_id(s, n);
    }
    Some(id)
}

/// What `send_mail` needs (S10).
pub(crate) struct MailSpec<'a> {
    /// Recipient agent id (`None`: the town has no mayor to send to).
    pub(crate) to: Option<&'a str>,
    /// Sender.
    pub(crate) from: &'a str,
    /// Subject: the bead's title.
    pub(crate) subject: &'a str,
    /// Body.
    pub(crate) body: Option<&'a str>,
    /// The caller's id, else `msg-n`.
    pub(crate) id: Option<&'a str>,
}

/// `send_mail(to, from, subject, body)` (S10): an open message bead assigned to `to`. No-op when
/// the id exists. Returns whether the mail was created.
pub(crate) fn send_mail(s: &mut TownState, spec: &MailSpec<'_>, t: Millis) -> bool {
    let (id, n) = id_or_next(s, spec.id, "msg");
    if s.beads.contains_key(&id) {
        return false;
    }
    let mut b = Bead::new(&id, BeadType::Message, spec.subject, "system", t);
    b.body = spec.body.map(str::to_owned);
    b.labels.push(labels::MESSAGE.to_owned());
    b.add_label(&format!("from:{}", spec.from));
    b.assignee = spec.to.map(str::to_owned);
    b.mail = Some(MailRecord { from: spec.from.to_owned(), delivery_attempted_at: None, delivered_at: None });
    s.beads.insert(id, b);
    if let Some(n) = n {
        take_id(s, n);
    }
    true
}

/// The mayor's id, the recipient of system mail.
pub(crate) fn mayor_id(s: &TownState) -> Option<String> {
    s.mayor().map(|m| m.agent_id.clone())
}

/// What `open_escalation` needs (S10).
pub(crate) struct EscalationSpec<'a> {
    /// The caller's id, else `esc-n`.
    pub(crate) id: Option<&'a str>,
    /// Severity (also the priority).
    pub(crate) severity: Severity,
    /// Category.
    pub(crate) category: &'a str,
    /// Title.
    pub(crate) title: &'a str,
    /// Body (also the mayor mail's body).
    pub(crate) body: Option<&'a str>,
    /// Rig.
    pub(crate) rig_id: Option<&'a str>,
    /// Agent concerned.
    pub(crate) agent_id: Option<&'a str>,
    /// Free context.
    pub(crate) context: Map<String, Value>,
    /// Id of its triage request (the `open_escalation` action names it), else `tri-n`.
    pub(crate) request_id: Option<&'a str>,
    /// Id of its mayor mail, else `msg-n`.
    pub(crate) mail_id: Option<&'a str>,
}

/// `open_escalation(id?, severity, category, title, body, rig?, agent?, context)` (S10): the
/// escalation bead, its escalation triage request and, at medium or above, a mail to the mayor.
/// No-op when the id exists.
pub(crate) fn open_escalation(s: &mut TownState, spec: EscalationSpec<'_>, t: Millis) {
    let (id, n) = id_or_next(s, spec.id, "esc");
    if s.beads.contains_key(&id) {
        return;
    }
    let mut b = Bead::new(&id, BeadType::Escalation, spec.title, "system", t);
    b.body = spec.body.map(str::to_owned);
    b.labels.push(labels::ESCALATION.to_owned());
    b.labels.push(format!("severity:{}", spec.severity.as_str()));
    b.priority = spec.severity.priority();
    b.rig_id = spec.rig_id.map(str::to_owned);
    b.metadata.insert("context".to_owned(), Value::Object(spec.context.clone()));
    b.escalation = Some(EscalationRecord {
        severity: spec.severity,
        category: spec.category.to_owned(),
        acknowledged: false,
        acknowledged_at: None,
        re_escalation_count: 0,
    });
    s.beads.insert(id.clone(), b);
    if let Some(n) = n {
        take_id(s, n);
    }
    let mut context = spec.context;
    context.insert("escalation_bead_id".to_owned(), Value::from(id.as_str()));
    if let Some(rig) = spec.rig_id {
        context.insert("rig_id".to_owned(), Value::from(rig));
    }
    open_triage_request(
        s,
        TriageSpec { agent_id: spec.agent_id, triage_type: TRIAGE_ESCALATION, reason: spec.title, context, id: spec.request_id },
        t,
    );
    if spec.severity >= Severity::Medium {
        let mayor = mayor_id(s);
        let subject = format!("Escalation ({}): {}", spec.severity.as_str(), spec.title);
        send_mail(s, &MailSpec { to: mayor.as_deref(), from: "system", subject: &subject, body: spec.body, id: spec.mail_id }, t);
    }
}

/// A `https://` URL: the only `pr_url` stored (E3.1).
#[must_use]
pub(crate) fn valid_pr_url(url: &str) -> bool {
    url.starts_with("https://")
}
