//! Test fixture: the stream of DOMAIN T39 as stored envelopes, and helpers shared by the debug
//! tests.

use crate::event::{BeadCreated, Envelope, Event, LostCause};
use crate::state::{AgentStatus, Role, TownState};
use crate::testing::*;

/// The events of T39, [1]–[9] (sequence = position + 1).
pub(super) fn t39_events() -> Vec<Ev> {
    let mut evs = fixture_f();
    evs.extend([
        ev(BeadCreated { title: "Fix login".into(), ..bead("b1", Some("r1")) }).at(T0 + secs(10)),
        reconciled([dispatch_creating("pc-1", "b1", "r1", Role::Polecat, Some("Toast"))]).at(T0 + secs(10)),
        resumed("pc-1").at(T0 + secs(15)),
        heartbeat_lost("pc-1", LostCause::Expired).at(T0 + mins(3)),
        reconciled([transition_agent("pc-1", AgentStatus::Working, AgentStatus::Idle, "heartbeat lost")]).at(T0 + mins(3)),
    ]);
    evs
}

/// Stored envelopes for `evs` at sequences 1, 2, …, with the ids and `reconciled` fields that
/// `testing::Given::push` gives them.
pub(super) fn stored(evs: Vec<Ev>) -> Vec<(u64, Envelope)> {
    let mut out = Vec::new();
    for (i, e) in evs.into_iter().enumerate() {
        let seq = u64::try_from(i).unwrap() + 1;
        let at = e.at.expect("T39 events carry their time");
        let mut event = e.event;
        let mut id = e.id;
        if let Event::Reconciled(r) = &mut event {
            r.at = at;
            r.base_seq = seq - 1;
            id = id.or_else(|| Some(format!("{TOWN}:d:{}:{at}", seq - 1)));
        }
        let id = id.unwrap_or_else(|| format!("{TOWN}:e:{seq}"));
        out.push((seq, Envelope::new(id, at, e.source, event)));
    }
    out
}

/// The T39 stream, stored.
pub(super) fn t39_stream() -> Vec<(u64, Envelope)> {
    stored(t39_events())
}

/// The live state after folding the T39 stream up to and including `last`.
pub(super) fn t39_live_up_to(last: u64) -> TownState {
    let mut s = TownState::new(TOWN);
    for (seq, env) in t39_stream().iter().filter(|(seq, _)| *seq <= last) {
        crate::apply(&mut s, *seq, env);
    }
    s
}

/// Removes whitespace outside JSON string literals, so a reply compares with an example as the
/// spec lays it out.
pub(super) fn squash(json: &str) -> String {
    let (mut out, mut in_str, mut escaped) = (String::new(), false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}
