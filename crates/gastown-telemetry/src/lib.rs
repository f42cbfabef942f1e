//! # gastown-telemetry
//!
//! Telemetry shared by every binary (ARCHITECTURE §2: tracing subscriber, OTLP metrics and traces,
//! Sentry; one `init()` for every binary). For now it holds only the metric primitives the
//! services build their named counters from; each service keeps its own struct of counters in one
//! place (`gastown_ingest::metrics`, `gastown_reconciler::metrics`), so exporting them over OTLP
//! later is wiring, not a rewrite.
//!
//! # Layout
//! - `counters`: [`LabelledCounter`], [`DurationStat`], [`Histogram`] and the helpers on plain
//!   atomic counters and gauges ([`inc`], [`add`], [`set`], [`read`]).
//!
//! Not here yet: the tracing subscriber set-up, OTLP export of metrics and traces, Sentry.

#![deny(missing_docs)]

mod counters;

pub use counters::{DurationStat, Histogram, LabelledCounter, add, inc, read, set};
