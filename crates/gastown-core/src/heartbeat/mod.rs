//! The heartbeat ingest filter (DOMAIN §E5, ARCHITECTURE §4–§5) as a pure state machine.
//!
//! Heartbeats never reach the town stream as such: ingest decodes each one ([`decode()`]), runs
//! it through [`Filter::on_heartbeat`] with the agent's durable memory [`AgentMemory`], and
//! appends the derived events the [`Step`] returns (`agent_heartbeat_resumed`,
//! `agent_heartbeat_lost`, `container_status`, `agent_activity`, in that order), storing the memory
//! when [`Step::store`] says so. Expiry markers go through [`Filter::on_expiry_marker`], the
//! start-up / handover rule through [`Filter::on_startup`], and the registration reset through
//! [`AgentMemory::reset_for_registration`]. Nothing here reads a clock: the broker's timestamp of
//! each message is an argument.
//!
//! # Layout
//! - `decode`: payload decoding, the body-format rule, and the rejection reasons (E5 step 1);
//! - `memory`: the per-agent memory M (serde, stored by ingest);
//! - `filter`: steps 2–6, expiry markers and the start-up rule.

mod decode;
mod filter;
mod memory;

pub use decode::{BodyFormat, Heartbeat, Reject, body_format, decode, subject_ids};
pub use filter::{Filter, HeldMessage, Step, event_id};
pub use memory::{AgentMemory, Alive};
