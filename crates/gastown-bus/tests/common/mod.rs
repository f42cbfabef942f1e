//! Shared helpers of the bus tests: a real nats-server per test, a connected bus, events.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use gastown_bus::{Bus, BusConfig, TownId};
use gastown_core::Envelope;
use gastown_core::testing::{T0, rig_added};
use gastown_testkit::TestServer;

/// Awaits `fut` for at most `secs` seconds, naming the likely fault on timeout.
pub async fn within<T>(secs: u64, fault: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.unwrap_or_else(|_| panic!("timed out after {secs} s: {fault}"))
}

/// A fresh single-node server.
pub async fn server() -> TestServer {
    within(120, "nats-server did not start (binary install or port)", TestServer::start()).await.expect("start nats-server")
}

/// A bus on `url` with `config`, streams ensured.
pub async fn bus_with(url: &str, config: BusConfig) -> Bus {
    let bus = within(10, "connect to nats-server", Bus::connect(url, config)).await.expect("connect");
    within(20, "ensure streams", bus.ensure_streams()).await.expect("ensure streams");
    bus
}

/// A bus with the default configuration.
pub async fn bus(url: &str) -> Bus {
    bus_with(url, BusConfig::default()).await
}

pub fn town(s: &str) -> TownId {
    TownId::try_from(s).unwrap()
}

/// A `rig_added` event with id `id`.
pub fn event(id: &str) -> Envelope {
    let e = rig_added("r1");
    Envelope::new(id, T0, e.source, e.event)
}
