//! Subject builders and parsers (ARCHITECTURE §3): the only place subject strings are formatted.
//!
//! Towns and agents are validated [`TownId`]/[`AgentId`] tokens, so a built subject is always
//! well formed. Heartbeats and events are stored with a partition token inserted after the
//! family token by the stream's subject transform `{{partition(N,1)}}`; [`partition_of`]
//! computes the same number.

use gastown_core::ids::{AgentId, TownId};

use crate::error::{BusError, ErrorKind};
use crate::names::Names;

const HB: &str = "hb";
const CMD: &str = "cmd";
const EVT: &str = "evt";
const ACT: &str = "act";
const DEBUG: &str = "debug";

/// The partition the server's `{{partition(partitions,1)}}` transform assigns to `town`:
/// FNV-1a (32-bit) of the token's bytes modulo `partitions` (0 when `partitions` is 0).
#[must_use]
pub fn partition_of(town: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in town.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.checked_rem(partitions).unwrap_or(0)
}

impl Names {
    /// A heartbeat as an agent publishes it: `<prefix>.hb.<town>.<agent>`.
    #[must_use]
    pub fn hb(&self, town: &TownId, agent: &AgentId) -> String {
        format!("{}.{HB}.{town}.{agent}", self.prefix())
    }

    /// Every stored heartbeat of partition `p`: `<prefix>.hb.<p>.>`.
    #[must_use]
    pub fn hb_partition_filter(&self, p: u32) -> String {
        format!("{}.{HB}.{p}.>", self.prefix())
    }

    /// One agent's stored heartbeat, whatever its partition: `<prefix>.hb.*.<town>.<agent>`.
    #[must_use]
    pub fn hb_agent_stored_filter(&self, town: &TownId, agent: &AgentId) -> String {
        format!("{}.{HB}.*.{town}.{agent}", self.prefix())
    }

    /// A command request: `<prefix>.cmd.<town>.<command>` (`command` may span tokens, `rig.add`).
    #[must_use]
    pub fn cmd(&self, town: &TownId, command: &str) -> String {
        format!("{}.{CMD}.{town}.{command}", self.prefix())
    }

    /// What the command service listens on: `<prefix>.cmd.*.>`.
    #[must_use]
    pub fn cmd_wildcard(&self) -> String {
        format!("{}.{CMD}.*.>", self.prefix())
    }

    /// Where a town's events are published: `<prefix>.evt.<town>`.
    #[must_use]
    pub fn evt(&self, town: &TownId) -> String {
        format!("{}.{EVT}.{town}", self.prefix())
    }

    /// A town's stored events, whatever the partition: `<prefix>.evt.*.<town>`; also the
    /// subject of the fence (`Nats-Expected-Last-Subject-Sequence-Subject`).
    #[must_use]
    pub fn evt_town_filter(&self, town: &TownId) -> String {
        format!("{}.{EVT}.*.{town}", self.prefix())
    }

    /// Every stored event of partition `p`: `<prefix>.evt.<p>.*`.
    #[must_use]
    pub fn evt_partition_filter(&self, p: u32) -> String {
        format!("{}.{EVT}.{p}.*", self.prefix())
    }

    /// An action message: `<prefix>.act.<town>.<action_type>`.
    #[must_use]
    pub fn act(&self, town: &TownId, action_type: &str) -> String {
        format!("{}.{ACT}.{town}.{action_type}", self.prefix())
    }

    /// Every action of one type, all towns: `<prefix>.act.*.<action_type>` (executor filters).
    #[must_use]
    pub fn act_type_filter(&self, action_type: &str) -> String {
        format!("{}.{ACT}.*.{action_type}", self.prefix())
    }

    /// A debug request: `<prefix>.debug.<town>.<op>`.
    #[must_use]
    pub fn debug(&self, town: &TownId, op: &str) -> String {
        format!("{}.{DEBUG}.{town}.{op}", self.prefix())
    }

    /// What the debug service listens on: `<prefix>.debug.*.*`.
    #[must_use]
    pub fn debug_wildcard(&self) -> String {
        format!("{}.{DEBUG}.*.*", self.prefix())
    }

    /// Splits a stored heartbeat subject `<prefix>.hb.<p>.<town>.<agent>`; `None` for any
    /// other shape or an invalid id.
    #[must_use]
    pub fn parse_hb_stored(&self, subject: &str) -> Option<(u32, TownId, AgentId)> {
        let rest = self.strip_family(subject, HB)?;
        let mut it = rest.split('.');
        let (p, town, agent) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some((p.parse().ok()?, TownId::try_from(town).ok()?, AgentId::try_from(agent).ok()?))
    }

    /// Splits a stored event subject `<prefix>.evt.<p>.<town>`; `None` for any other shape.
    #[must_use]
    pub fn parse_evt_stored(&self, subject: &str) -> Option<(u32, TownId)> {
        let rest = self.strip_family(subject, EVT)?;
        let (p, town) = rest.split_once('.')?;
        Some((p.parse().ok()?, TownId::try_from(town).ok()?))
    }

    /// Splits a command subject `<prefix>.cmd.<town>.<command…>` into the town and the command
    /// name (its tokens joined with `.`).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] when the subject is not a command subject, the town is not a valid
    /// id or the command is missing.
    pub fn parse_cmd(&self, subject: &str) -> Result<(TownId, String), BusError> {
        let invalid = |what: &str| BusError::new(ErrorKind::Invalid, format!("invalid command subject {subject:?}: {what}"));
        let rest = self.strip_family(subject, CMD).ok_or_else(|| invalid("not a command subject"))?;
        let (town, command) = rest.split_once('.').ok_or_else(|| invalid("missing command"))?;
        let town = TownId::try_from(town).map_err(|e| invalid(&e.to_string()))?;
        if command.split('.').any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t', '\r', '\n'])) {
            return Err(invalid("malformed command"));
        }
        Ok((town, command.to_owned()))
    }

    /// `<prefix>.<family>.` stripped from `subject`.
    fn strip_family<'a>(&self, subject: &'a str, family: &str) -> Option<&'a str> {
        subject.strip_prefix(self.prefix())?.strip_prefix('.')?.strip_prefix(family)?.strip_prefix('.')
    }

    /// The HB stream's subjects, as agents publish: `<prefix>.hb.*.*`.
    pub(crate) fn hb_stream_subject(&self) -> String {
        format!("{}.{HB}.*.*", self.prefix())
    }

    /// The HB stream's transform destination, inserting the partition of the town token.
    pub(crate) fn hb_transform_destination(&self, partitions: u32) -> String {
        format!("{}.{HB}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}", self.prefix())
    }

    /// The EVENTS stream's subjects, as writers publish: `<prefix>.evt.*`.
    pub(crate) fn evt_stream_subject(&self) -> String {
        format!("{}.{EVT}.*", self.prefix())
    }

    /// The EVENTS stream's transform destination, inserting the partition of the town token.
    pub(crate) fn evt_transform_destination(&self, partitions: u32) -> String {
        format!("{}.{EVT}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}", self.prefix())
    }

    /// The ACTIONS stream's subjects: `<prefix>.act.>`.
    pub(crate) fn act_stream_subject(&self) -> String {
        format!("{}.{ACT}.>", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn town(s: &str) -> TownId {
        TownId::try_from(s).unwrap()
    }
    fn agent(s: &str) -> AgentId {
        AgentId::try_from(s).unwrap()
    }

    #[test]
    fn subjects_follow_the_contract() {
        let n = Names::default();
        let (t, a) = (town("t1"), agent("a1"));
        assert_eq!(n.hb(&t, &a), "gastown.hb.t1.a1");
        assert_eq!(n.hb_partition_filter(7), "gastown.hb.7.>");
        assert_eq!(n.hb_agent_stored_filter(&t, &a), "gastown.hb.*.t1.a1");
        assert_eq!(n.cmd(&t, "rig.add"), "gastown.cmd.t1.rig.add");
        assert_eq!(n.cmd_wildcard(), "gastown.cmd.*.>");
        assert_eq!(n.evt(&t), "gastown.evt.t1");
        assert_eq!(n.evt_town_filter(&t), "gastown.evt.*.t1");
        assert_eq!(n.evt_partition_filter(22), "gastown.evt.22.*");
        assert_eq!(n.act(&t, "dispatch_agent"), "gastown.act.t1.dispatch_agent");
        assert_eq!(n.act_type_filter("dispatch_agent"), "gastown.act.*.dispatch_agent");
        assert_eq!(n.debug(&t, "status"), "gastown.debug.t1.status");
        assert_eq!(n.debug_wildcard(), "gastown.debug.*.*");
    }

    #[test]
    fn stream_definitions_use_the_partition_transform() {
        let n = Names::new("acme").unwrap();
        assert_eq!(n.hb_stream_subject(), "acme.hb.*.*");
        assert_eq!(n.hb_transform_destination(32), "acme.hb.{{partition(32,1)}}.{{wildcard(1)}}.{{wildcard(2)}}");
        assert_eq!(n.evt_stream_subject(), "acme.evt.*");
        assert_eq!(n.evt_transform_destination(8), "acme.evt.{{partition(8,1)}}.{{wildcard(1)}}");
        assert_eq!(n.act_stream_subject(), "acme.act.>");
    }

    #[test]
    fn partition_of_is_fnv1a_32_mod_n() {
        // Verified against nats-server 2.15.1: gastown.evt.t1 is stored as gastown.evt.22.t1.
        assert_eq!(partition_of("t1", 32), 22);
        assert_eq!(partition_of("", 32), 0x811c_9dc5 % 32);
        assert_eq!(partition_of("t1", 1), 0);
        assert_eq!(partition_of("t1", 0), 0);
        for n in 1..64 {
            assert!(partition_of("some-town", n) < n);
        }
    }

    #[test]
    fn stored_subjects_parse_back() {
        let n = Names::default();
        assert_eq!(n.parse_hb_stored("gastown.hb.22.t1.a1"), Some((22, town("t1"), agent("a1"))));
        assert_eq!(n.parse_evt_stored("gastown.evt.22.t1"), Some((22, town("t1"))));
        assert_eq!(n.parse_evt_stored("gastown.evt.x.t1"), None);
        assert_eq!(n.parse_evt_stored("gastown.evt.t1"), None);
        assert_eq!(n.parse_evt_stored("gastown.evt.1.t1.x"), None);
        assert_eq!(n.parse_evt_stored("other.evt.1.t1"), None);
        assert_eq!(n.parse_hb_stored("gastown.hb.22.t1"), None);
        assert_eq!(n.parse_hb_stored("gastown.hb.22.t1.a1.x"), None);
        assert_eq!(n.parse_hb_stored("gastown.hbx.22.t1.a1"), None);
        assert_eq!(n.parse_hb_stored("gastownx.hb.22.t1.a1"), None);
    }

    #[test]
    fn command_subjects_parse_with_multi_token_commands() {
        let n = Names::default();
        assert_eq!(n.parse_cmd("gastown.cmd.t1.rig.add").unwrap(), (town("t1"), "rig.add".to_owned()));
        assert_eq!(n.parse_cmd("gastown.cmd.t1.bead.create").unwrap().1, "bead.create");
        assert_eq!(n.parse_cmd("gastown.cmd.t1.ping").unwrap().1, "ping");
        for bad in ["gastown.cmd.t1", "gastown.cmd.t1.", "gastown.cmd.t1.a..b", "gastown.evt.t1.x", "x.cmd.t1.a", "gastown.cmd"] {
            assert_eq!(n.parse_cmd(bad).unwrap_err().kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn bad_tokens_are_rejected_before_they_reach_a_subject() {
        for bad in ["", "a.b", "a*", "a>", "a b", "é", &"x".repeat(65)] {
            assert!(TownId::try_from(bad).is_err(), "{bad:?}");
            assert!(AgentId::try_from(bad).is_err(), "{bad:?}");
        }
        let n = Names::default();
        assert_eq!(n.parse_cmd("gastown.cmd.t*.ping").unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(n.parse_hb_stored("gastown.hb.1.t1.a*"), None);
        assert!(TownId::try_from("x".repeat(64).as_str()).is_ok());
    }
}
