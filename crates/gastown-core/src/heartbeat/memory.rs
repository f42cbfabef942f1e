//! The per-agent memory M of the ingest filter (DOMAIN E5).
//!
//! Ingest keeps one per (town, agent) in the `gastown-ingest` KV bucket and writes it only at the
//! store points of E5 ((i) after a derived event, (ii) when `last_status` changes without one,
//! (iii) reset on registration), so a stored M may hold an older `last_alive_at`, `since_fwd` and
//! `seq` than the live one. It serializes as a map with named fields (JSON or MessagePack); a
//! missing field decodes as its default, so older entries stay readable.

use serde::{Deserialize, Serialize};

use crate::event::ContainerState;
use crate::time::Millis;

/// What ingest last reported of the agent's liveness (`M.alive`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    /// Never reported, or unknown since an `exited` / `not_found` status (E5 step 4).
    #[default]
    Unknown,
    /// Reported alive (`agent_heartbeat_resumed`).
    True,
    /// Reported lost (`agent_heartbeat_lost`).
    False,
}

/// The memory M of E5 for one agent. `Default` is an agent never heard from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentMemory {
    /// `M.alive`.
    pub alive: Alive,
    /// Broker time of the last alive heartbeat.
    pub last_alive_at: Option<Millis>,
    /// Status of the last heartbeat processed.
    pub last_status: Option<ContainerState>,
    /// Last container instance named by an alive heartbeat.
    pub instance: Option<String>,
    /// `last_event_at` of the last forwarded watermark (none: nothing forwarded carried one).
    pub fwd_event_at: Option<Millis>,
    /// Whether the last forwarded watermark had tools in use (an absent list counts as empty).
    pub fwd_tools_nonempty: bool,
    /// Broker time of the last `agent_activity`; none since a `resumed`.
    pub fwd_at: Option<Millis>,
    /// Heartbeats filtered (E5 step 6) since the last forward.
    pub since_fwd: u64,
    /// Stream sequence of the last heartbeat (or expiry marker) processed.
    pub seq: u64,
}

impl AgentMemory {
    /// E5 (iii): the memory of an agent never heard from, written when ingest appends
    /// `agent_registered` for the agent. The caller stores it.
    pub fn reset_for_registration(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = ContainerState> {
        proptest::sample::select(ContainerState::ALL.to_vec())
    }

    fn memory() -> impl Strategy<Value = AgentMemory> {
        (
            proptest::sample::select(vec![Alive::Unknown, Alive::True, Alive::False]),
            proptest::option::of(any::<i64>()),
            proptest::option::of(status()),
            proptest::option::of("[a-z0-9-]{0,12}"),
            proptest::option::of(any::<i64>()),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(alive, last_alive_at, last_status, instance, fwd_event_at, fwd_tools_nonempty, fwd_at, since_fwd, seq)| {
                    AgentMemory {
                        alive,
                        last_alive_at,
                        last_status,
                        instance,
                        fwd_event_at,
                        fwd_tools_nonempty,
                        fwd_at,
                        since_fwd,
                        seq,
                    }
                },
            )
    }

    #[test]
    fn default_is_an_agent_never_heard_from() {
        let m = AgentMemory::default();
        assert_eq!(m.alive, Alive::Unknown);
        assert_eq!((m.last_alive_at, m.last_status, m.instance.as_deref()), (None, None, None));
        assert_eq!((m.fwd_event_at, m.fwd_tools_nonempty, m.fwd_at, m.since_fwd, m.seq), (None, false, None, 0, 0));
    }

    #[test]
    fn reset_for_registration_forgets_everything() {
        let mut m = AgentMemory {
            alive: Alive::True,
            last_alive_at: Some(5),
            last_status: Some(ContainerState::Running),
            instance: Some("c1".into()),
            fwd_event_at: Some(3),
            fwd_tools_nonempty: true,
            fwd_at: Some(4),
            since_fwd: 7,
            seq: 9,
        };
        m.reset_for_registration();
        assert_eq!(m, AgentMemory::default());
    }

    #[test]
    fn wire_form_names_its_fields_and_missing_fields_default() {
        let m = AgentMemory { alive: Alive::False, last_status: Some(ContainerState::NotFound), ..AgentMemory::default() };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["alive"], "false");
        assert_eq!(v["last_status"], "not_found");
        let old: AgentMemory = serde_json::from_str(r#"{"alive":"true","seq":12}"#).unwrap();
        assert_eq!(old, AgentMemory { alive: Alive::True, seq: 12, ..AgentMemory::default() });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn memory_round_trips_through_json_and_msgpack(m in memory()) {
            let json: AgentMemory = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            prop_assert_eq!(&json, &m);
            let mp: AgentMemory = crate::codec::from_msgpack(&crate::codec::to_msgpack(&m).unwrap()).unwrap();
            prop_assert_eq!(mp, m);
        }
    }
}
