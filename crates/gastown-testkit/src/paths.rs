//! Where the test kit keeps its tools, and the `nats-server` binary shared by all tests.

use std::path::PathBuf;

use gastown_natsd::NatsBinary;
use tokio::sync::OnceCell;

use crate::TestkitError;

/// The workspace root (two levels above this crate).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// The tools dir for tests: `$GASTOWN_TOOLS_DIR`, else `<workspace>/.gastown/tools`.
#[must_use]
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("GASTOWN_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".gastown").join("tools"),
    }
}

static BINARY: OnceCell<NatsBinary> = OnceCell::const_new();

/// The `nats-server` binary, found or installed once per test process.
///
/// # Errors
/// [`TestkitError::Natsd`] when no suitable binary exists and installing fails.
pub async fn nats_binary() -> Result<NatsBinary, TestkitError> {
    BINARY
        .get_or_try_init(|| async {
            let dir = tools_dir();
            tokio::task::spawn_blocking(move || gastown_natsd::find_or_install(&dir))
                .await
                .map_err(|e| TestkitError::Join(e.to_string()))?
                .map_err(TestkitError::from)
        })
        .await
        .cloned()
}
