//! Helpers for the end-to-end tests: find (or build) the real `gastown` binary and run it as a
//! child process against test servers.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// The `gastown` binary of this build, built once per test process with the cargo that runs the
/// tests (a no-op when `cargo test --workspace` already built it).
///
/// # Errors
/// The build fails.
pub fn gastown_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = BIN.get() {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("current test executable")?;
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).context("target profile dir")?.to_path_buf();
    let target_dir = profile_dir.parent().context("target dir")?.to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", "gastown", "--bin", "gastown"]).env("CARGO_TARGET_DIR", &target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build for the gastown binary")?;
    if !status.success() {
        bail!("cargo build -p gastown failed: {status}");
    }
    let bin = profile_dir.join("gastown");
    if !bin.exists() {
        bail!("built gastown binary not found at {}", bin.display());
    }
    Ok(BIN.get_or_init(|| bin).clone())
}

/// Starts `gastown <args>` with `NATS_URL` set, logs to the test's stderr.
///
/// # Errors
/// The binary cannot be found, built or spawned.
pub fn spawn_gastown(nats_url: &str, args: &[&str]) -> anyhow::Result<Child> {
    let bin = gastown_bin()?;
    let child = Command::new(bin)
        .args(args)
        .env("NATS_URL", nats_url)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning gastown")?;
    Ok(child)
}

/// Sends SIGTERM to a child (through `kill`, as the crate forbids `unsafe`).
///
/// # Errors
/// The child has no pid or `kill` fails.
pub async fn sigterm(child: &Child) -> anyhow::Result<()> {
    let pid = child.id().context("child has exited")?;
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    if !status.success() {
        bail!("kill -TERM {pid} failed");
    }
    Ok(())
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `limit` naming `what`.
///
/// # Errors
/// The limit passes first.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
