//! # gastown-bus
//!
//! The wire contract of the town reconciler on NATS JetStream (ARCHITECTURE §3–§4, §9.2–§9.3,
//! §9.9): every name derives from one prefix, subjects are formatted in one place, header names
//! are constants, streams and buckets are created or verified against the configuration the
//! server echoes back, the fenced append turns the server's "wrong last sequence" into
//! [`ErrorKind::Conflict`], and partition shares spread the HB and EVENTS partitions over the
//! live members of a role. No async-nats error type leaks out: everything becomes a
//! [`BusError`] with a [`kind`](BusError::kind) the caller branches on.
//!
//! # Layout
//! - [`Names`] (`names`): stream, bucket and service names from the prefix;
//! - `subjects`: the subject builders and parsers on [`Names`], and [`partition_of`];
//! - [`headers`]: header names and content types;
//! - `error`: [`BusError`] and [`ErrorKind`], and the one translation of async-nats errors;
//! - `setup`: [`Bus::connect`], the server version check, [`Bus::ensure_streams`], [`Bus::kv`];
//! - `append`: the fenced [`Bus::append_event`], [`Bus::event_at`], [`Bus::publish_action`],
//!   [`Bus::town_events`], [`Bus::town_last_seq`];
//! - [`codec`]: body codecs (re-exported from core);
//! - `shares`: [`Membership`], [`rendezvous_owner`] and [`partition_consumer`];
//! - [`lease`]: the owner/standby loop of one partition ([`lease::Lease`]) around a role's
//!   [`lease::PartitionHandler`], and the retry helpers ([`lease::Backoff`], [`lease::retry_when`]).

#![deny(missing_docs)]

mod append;
pub mod codec;
mod error;
pub mod headers;
pub mod lease;
mod names;
mod setup;
mod shares;
mod subjects;

pub use append::Appended;
pub use error::{BusError, ErrorKind};
pub use gastown_core::ids::{AgentId, TownId};
pub use names::Names;
pub use setup::{Bus, BusConfig, Ensured, MIN_SERVER_VERSION};
pub use shares::{Membership, SHARE_GROUP, ShareConfig, partition_consumer, rendezvous_owner};
pub use subjects::partition_of;
