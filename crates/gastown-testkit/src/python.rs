//! A Python with `nats-py`, the foreign client for interoperability tests.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use fs4::fs_std::FileExt;
use tokio::sync::OnceCell;
use tracing::info;

use crate::{TestkitError, workspace_root};

/// The pinned foreign client.
const REQUIREMENT: &str = "nats-py==2.16.0";
/// Written into the venv once `nats-py` is installed and imports.
const MARKER: &str = ".gastown-nats-py-2.16.0";

static PYTHON: OnceCell<PathBuf> = OnceCell::const_new();

/// The python of a venv at `<workspace>/.gastown/venv` with `nats-py==2.16.0` installed.
///
/// Created once (under a file lock shared by parallel test processes) with `python3 -m venv`
/// and `pip install`; later calls return at once.
///
/// # Errors
/// [`TestkitError::Python`] when creating the venv or installing fails.
pub async fn python_with_nats() -> Result<PathBuf, TestkitError> {
    PYTHON
        .get_or_try_init(|| async {
            let venv = workspace_root().join(".gastown").join("venv");
            tokio::task::spawn_blocking(move || ensure_venv(&venv)).await.map_err(|e| TestkitError::Join(e.to_string()))?
        })
        .await
        .cloned()
}

fn ensure_venv(venv: &Path) -> Result<PathBuf, TestkitError> {
    let python = venv.join("bin").join("python");
    let marker = venv.join(MARKER);
    if marker.is_file() && python.is_file() {
        return Ok(python);
    }
    let parent = venv.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&parent).map_err(|e| TestkitError::io("creating", &parent, e))?;
    let lock_path = parent.join("venv.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| TestkitError::io("opening lock file", &lock_path, e))?;
    FileExt::lock_exclusive(&lock).map_err(|e| TestkitError::io("locking", &lock_path, e))?;
    // Another process may have finished while this one waited.
    if marker.is_file() && python.is_file() {
        return Ok(python);
    }
    run("creating the venv", Command::new("python3").args(["-m", "venv", "--clear"]).arg(venv))?;
    run(
        "pip install nats-py",
        Command::new(venv.join("bin").join("pip")).args(["install", "--disable-pip-version-check", "--quiet", REQUIREMENT]),
    )?;
    run("import nats", Command::new(&python).args(["-c", "import nats"]))?;
    fs::write(&marker, REQUIREMENT).map_err(|e| TestkitError::io("writing", &marker, e))?;
    info!(venv = %venv.display(), requirement = REQUIREMENT, "created python venv");
    let _ = FileExt::unlock(&lock);
    Ok(python)
}

fn run(step: &str, command: &mut Command) -> Result<(), TestkitError> {
    let out = command.output().map_err(|e| TestkitError::Python { step: step.to_owned(), output: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(TestkitError::Python { step: step.to_owned(), output: format!("{}: {}", out.status, output.trim()) })
}
