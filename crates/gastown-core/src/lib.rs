//! # gastown-core
//!
//! The town domain of the reconciler, as a pure library: no I/O, no clock, no randomness. The
//! services around it only move bytes, keep time and talk to NATS; every decision is made here
//! (ARCHITECTURE §2, §9.1).
//!
//! # Layout
//! - [`state`]: the town state (DOMAIN §S) and its derived predicates;
//! - [`event`]: the envelope and every event type (§E1, §E2);
//! - [`apply()`]: folds one stored event into the state (§E1–§E3, §F);
//! - [`action`]: the actions a pass decides, their state changes and published payloads (§A);
//! - [`reconcile()`] and [`next_wakeup`]: the rules (§R);
//! - [`invariant`]: the checks of §I and the reporting policy of I1;
//! - [`heartbeat`]: the ingest filter state machine (§E5);
//! - [`command`]: command validation and replies (§E4);
//! - [`debug`]: the `status`, `dry-run` and `replay` views (§D);
//! - [`config`], [`constants`], [`ids`], [`labels`], [`time`]: parameters, grammar and units;
//! - [`codec`]: MessagePack with named fields;
//! - `testing` (feature `testing`): given/when/then builders for scenario tests.

pub mod action;
mod apply;
pub mod codec;
pub mod command;
pub mod config;
pub mod constants;
pub mod debug;
pub mod event;
pub mod heartbeat;
pub mod ids;
pub mod invariant;
pub mod labels;
mod reconcile;
pub mod state;
pub mod time;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use action::Action;
pub use apply::{apply, apply_stored, recent_event_message};
pub use event::{Envelope, Event};
pub use reconcile::{Decision, next_wakeup, reconcile};
pub use state::TownState;
pub use time::Millis;
