//! Free loopback ports.

use std::net::TcpListener;

use crate::TestkitError;

/// `n` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// All are bound at once (so they differ), then released for the server to take. Another
/// process may grab one in between: callers retry on [`gastown_natsd::NatsdError::AddressInUse`].
///
/// # Errors
/// [`TestkitError::Io`] when binding fails.
pub fn free_ports(n: usize) -> Result<Vec<u16>, TestkitError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)).map_err(|e| TestkitError::io("binding a free port on", "127.0.0.1", e)))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| TestkitError::io("reading the port of", "127.0.0.1", e)))
        .collect()
}
