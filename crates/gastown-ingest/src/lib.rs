//! # gastown-ingest
//!
//! The ingest service: I/O around gastown-core's heartbeat filter (DOMAIN §E5) and command
//! validation (§E4). It turns agent heartbeats into the rare town events they imply and commands
//! into validated, appended events, and answers the commands over request-reply.
//!
//! # Layout
//! - [`IngestConfig`] and [`run`]: the service as a whole, until shutdown;
//! - `heartbeats`: the HB partition consumers (shares as ARCHITECTURE §9.3), the filter, expiry
//!   markers and the start-up check;
//! - `memory`: the filter's durable per-agent memory in KV `<prefix>-ingest` (compare-and-set,
//!   watched by the partition owner);
//! - `commands`: the micro service `<prefix>-ingest` on `<prefix>.cmd.*.>`;
//! - `cache`: a bounded cache of folded towns, refreshed from the tail, for validation;
//! - [`metrics`]: every counter of DOMAIN §M2, in one place.

pub mod metrics;

pub use metrics::IngestMetrics;
