//! Test kit: real `nats-server` processes for tests, and the Python foreign client.
//!
//! Tests never use a mock broker. Each [`TestServer`] is one JetStream node on free loopback
//! ports with a temporary store; a [`TestCluster`] is a JetStream cluster of such nodes. Both can
//! stop, `kill -9` and restart nodes on the same ports and store, and kill every process when
//! dropped. [`python_with_nats`] gives a Python with `nats-py` for foreign-client tests.
//!
//! The `nats-server` binary comes from [`gastown_natsd::find_or_install`] with the tools dir
//! `<workspace>/.gastown/tools` (or `$GASTOWN_TOOLS_DIR`), so the first test run installs it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gastown_testkit::TestkitError> {
//! let server = gastown_testkit::TestServer::start().await?;
//! let url = server.url(); // nats://127.0.0.1:<port>
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `paths`: the workspace root, tools dir and the cached binary ([`nats_binary`]).
//! - `ports`: free loopback ports.
//! - `server`: [`TestServer`].
//! - `cluster`: [`TestCluster`].
//! - `python`: [`python_with_nats`].
//! - `error`: [`TestkitError`].

mod cluster;
mod error;
mod paths;
mod ports;
mod python;
mod server;

pub use cluster::TestCluster;
pub use error::TestkitError;
pub use gastown_natsd::{NatsBinary, NatsServer};
pub use paths::{nats_binary, tools_dir, workspace_root};
pub use ports::free_ports;
pub use python::python_with_nats;
pub use server::TestServer;
