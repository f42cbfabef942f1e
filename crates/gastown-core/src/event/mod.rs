//! Town events (DOMAIN §E1, §E2): the envelope and the payload of every event type, grouped by
//! family.
//!
//! # Layout
//! - `town`: configuration and rigs;
//! - `agents`: registration, completion, checkpoints and the heartbeat-derived events;
//! - `beads`: creation, hooks, status, labels, dependencies;
//! - `convoys`: convoy creation and start;
//! - `review`: rework and the PR facts executors report;
//! - `mail`: nudges, mail, escalations and triage;
//! - `results`: executor results and the reconciler's own decisions.
//!
//! [`Envelope`] serializes as the map `{v, id, type, at, source, data}` (ARCHITECTURE §4);
//! [`Event`] is the typed `type` + `data`. An event type this code does not know decodes as
//! [`Event::Unknown`], which `apply` folds as a no-op.

mod agents;
mod beads;
mod convoys;
mod mail;
mod results;
mod review;
mod town;

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use agents::{
    AgentActivity, AgentCheckpointed, AgentCompleted, AgentDone, AgentHeartbeatLost, AgentHeartbeatResumed, AgentRegistered,
    CompletionStatus, ContainerEviction, ContainerState, ContainerStatus, LostCause,
};
pub use beads::{BeadCreated, BeadHooked, BeadLabelsChanged, BeadStatusChanged, DependencyAdded};
pub use convoys::{ConvoyBeadSpec, ConvoyCreated, ConvoyStarted, feature_branch};
pub use mail::{EscalationAcknowledged, EscalationRaised, MailSent, NudgeQueued, TriageResolved};
pub use results::{ActionResult, Reconciled};
pub use review::{PrAutoMerge, PrConflictDetected, PrFeedbackDetected, PrState, PrStatusChanged, ReworkRequested};
pub use town::{RigAdded, RigConfigured, TownConfigured};

use crate::time::Millis;

/// The envelope version this code writes.
pub const ENVELOPE_VERSION: u32 = 1;

macro_rules! events {
    ($($(#[$doc:meta])* $wire:literal => $variant:ident($ty:ty)),+ $(,)?) => {
        /// An event's type and data (E2).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($(#[$doc])* $variant($ty),)+
            /// A type this code does not know: folded as a no-op (E1, ARCHITECTURE §9.5).
            Unknown {
                /// The type name as stored.
                event_type: String,
            },
        }

        /// Every event type this code knows, by wire name.
        pub const EVENT_TYPES: &[&str] = &[$($wire),+];

        impl Event {
            /// The wire name of the type (`agent_done`).
            #[must_use]
            pub fn event_type(&self) -> &str {
                match self {
                    $(Event::$variant(_) => $wire,)+
                    Event::Unknown { event_type } => event_type,
                }
            }

            /// Builds an event from its type name and `data`.
            ///
            /// # Errors
            /// `data` does not fit the type's payload; an unknown type is not an error.
            pub fn from_parts(event_type: &str, data: Value) -> Result<Self, serde_json::Error> {
                match event_type {
                    $($wire => serde_json::from_value(data).map(Event::$variant),)+
                    other => Ok(Event::Unknown { event_type: other.to_owned() }),
                }
            }

            /// The `data` as a JSON value.
            ///
            /// # Errors
            /// Only if a payload holds a map with non-string keys, which none does.
            pub fn data(&self) -> Result<Value, serde_json::Error> {
                serde_json::to_value(DataRef(self))
            }

            fn serialize_data<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Event::$variant(d) => d.serialize(s),)+
                    Event::Unknown { .. } => serde_json::Map::new().serialize(s),
                }
            }
        }

        $(impl From<$ty> for Event {
            fn from(d: $ty) -> Self {
                Event::$variant(d)
            }
        })+
    };
}

events! {
    /// `town.config`.
    "town_configured" => TownConfigured(TownConfigured),
    /// `rig.add`.
    "rig_added" => RigAdded(RigAdded),
    /// `rig.config`.
    "rig_configured" => RigConfigured(RigConfigured),
    /// `agent.register`.
    "agent_registered" => AgentRegistered(AgentRegistered),
    /// `bead.create`, `bead.sling`.
    "bead_created" => BeadCreated(BeadCreated),
    /// `bead.hook`.
    "bead_hooked" => BeadHooked(BeadHooked),
    /// `bead.status`.
    "bead_status_changed" => BeadStatusChanged(BeadStatusChanged),
    /// `bead.label`.
    "bead_labels_changed" => BeadLabelsChanged(BeadLabelsChanged),
    /// `bead.depend`.
    "dependency_added" => DependencyAdded(DependencyAdded),
    /// `convoy.create`.
    "convoy_created" => ConvoyCreated(ConvoyCreated),
    /// `convoy.start`.
    "convoy_started" => ConvoyStarted(ConvoyStarted),
    /// `agent.done` (E3.1).
    "agent_done" => AgentDone(AgentDone),
    /// `agent.completed` (E3.2).
    "agent_completed" => AgentCompleted(AgentCompleted),
    /// `agent.checkpoint`.
    "agent_checkpointed" => AgentCheckpointed(AgentCheckpointed),
    /// `review.request_changes`.
    "rework_requested" => ReworkRequested(ReworkRequested),
    /// `agent.nudge`.
    "nudge_queued" => NudgeQueued(NudgeQueued),
    /// `mail.send`.
    "mail_sent" => MailSent(MailSent),
    /// `escalation.raise`.
    "escalation_raised" => EscalationRaised(EscalationRaised),
    /// `escalation.ack`.
    "escalation_acknowledged" => EscalationAcknowledged(EscalationAcknowledged),
    /// `triage.resolve` (E3.4).
    "triage_resolved" => TriageResolved(TriageResolved),
    /// Ingest: an alive heartbeat after silence or from a new container (E3.3).
    "agent_heartbeat_resumed" => AgentHeartbeatResumed(AgentHeartbeatResumed),
    /// Ingest: expiry marker or non-alive heartbeats for heartbeat_lost (E3.3).
    "agent_heartbeat_lost" => AgentHeartbeatLost(AgentHeartbeatLost),
    /// Ingest: a non-running status, once per change (E3.3).
    "container_status" => ContainerStatus(ContainerStatus),
    /// Ingest: the SDK watermark moved (coalesced).
    "agent_activity" => AgentActivity(AgentActivity),
    /// Executor result (AC2).
    "action_result" => ActionResult(ActionResult),
    /// `pr.status`.
    "pr_status_changed" => PrStatusChanged(PrStatusChanged),
    /// `pr.feedback` (E3.5).
    "pr_feedback_detected" => PrFeedbackDetected(PrFeedbackDetected),
    /// `pr.auto_merge`.
    "pr_auto_merge" => PrAutoMerge(PrAutoMerge),
    /// `pr.conflict` (E3.5).
    "pr_conflict_detected" => PrConflictDetected(PrConflictDetected),
    /// `container.eviction` (§F).
    "container_eviction" => ContainerEviction(ContainerEviction),
    /// A reconcile pass's decision (R0.5).
    "reconciled" => Reconciled(Reconciled),
}

struct DataRef<'a>(&'a Event);

impl Serialize for DataRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_data(s)
    }
}

/// Where an event came from: `cmd:<command>`, `hb` or `reconciler`.
pub mod source {
    /// Heartbeat-derived events.
    pub const HEARTBEAT: &str = "hb";
    /// Decisions.
    pub const RECONCILER: &str = "reconciler";

    /// The source of an event appended for a command.
    #[must_use]
    pub fn command(name: &str) -> String {
        format!("cmd:{name}")
    }
}

/// A stored event (E1): envelope fields and the typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Envelope version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// Event id (E1 grammar); also the `Nats-Msg-Id`.
    pub id: String,
    /// Writer's time, unix ms.
    pub at: Millis,
    /// `cmd:<command>`, `hb` or `reconciler`.
    pub source: String,
    /// Type and data.
    pub event: Event,
}

impl Envelope {
    /// An envelope of the current version.
    #[must_use]
    pub fn new(id: impl Into<String>, at: Millis, source: impl Into<String>, event: impl Into<Event>) -> Self {
        Self { v: ENVELOPE_VERSION, id: id.into(), at, source: source.into(), event: event.into() }
    }

    /// The event's wire type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        self.event.event_type()
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Envelope", 6)?;
        st.serialize_field("v", &self.v)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("type", self.event.event_type())?;
        st.serialize_field("at", &self.at)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("data", &DataRef(&self.event))?;
        st.end()
    }
}

/// The envelope with `data` left undecoded: what a reader can still learn from a message whose
/// data does not fit its type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEnvelope {
    /// Envelope version.
    pub v: u32,
    /// Event id.
    pub id: String,
    /// Type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Writer's time.
    pub at: Millis,
    /// Source.
    pub source: String,
    /// Undecoded data.
    #[serde(default)]
    pub data: Value,
}

impl RawEnvelope {
    /// Decodes `data` for the type.
    ///
    /// # Errors
    /// An unknown envelope version, or data that does not fit a known type.
    pub fn into_envelope(self) -> Result<Envelope, serde_json::Error> {
        if self.v != ENVELOPE_VERSION {
            return Err(serde_json::Error::custom(format!("unknown envelope version {}", self.v)));
        }
        let event = Event::from_parts(&self.event_type, self.data)?;
        Ok(Envelope { v: self.v, id: self.id, at: self.at, source: self.source, event })
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawEnvelope::deserialize(d)?.into_envelope().map_err(D::Error::custom)
    }
}
