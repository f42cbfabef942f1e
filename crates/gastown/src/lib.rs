//! # gastown
//!
//! The command-line front end of the town reconciler. `main` only parses arguments and starts
//! logging; each subcommand is a library `run(config, shutdown)` that tests call with their own
//! shutdown token (STYLE §1).
//!
//! # Layout
//! - [`Cli`] and [`Command`]: the flags and subcommands (clap derive; every deployment flag also
//!   reads a `GASTOWN_*` / `NATS_URL` variable);
//! - `ingest`: `gastown ingest`, the ingest service;
//! - `shutdown`: SIGINT/SIGTERM → a cancellation token, with a forced exit after a grace period.

mod ingest;
mod shutdown;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use ingest::IngestArgs;

/// Exit status of a configuration error (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// gastown — an event-sourced town reconciler on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "gastown", version, about)]
pub struct Cli {
    /// Settings shared by every service.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every service shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// Prefix of every subject, stream, bucket and service name.
    #[arg(long, env = "GASTOWN_PREFIX", default_value = "gastown", global = true)]
    pub prefix: String,
    /// Partitions of the HB and EVENTS streams (fixed at creation).
    #[arg(long, env = "GASTOWN_PARTITIONS", default_value_t = 32, global = true)]
    pub partitions: u32,
    /// Stream replicas: 1 on one server, 3 in a cluster.
    #[arg(long, env = "GASTOWN_REPLICAS", default_value_t = 1, global = true)]
    pub replicas: usize,
    /// Grace period of a shutdown before the process exits by force, in seconds.
    #[arg(long, env = "GASTOWN_SHUTDOWN_GRACE_S", default_value_t = 20, global = true)]
    pub shutdown_grace_s: u64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ingest service (heartbeat filter and command service) until SIGINT/SIGTERM.
    Ingest(IngestArgs),
}

/// Starts `tracing` from `RUST_LOG` (default `info`), writing to stderr.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs a parsed command line and returns the process exit status: 0 on success, 64 for a bad
/// configuration (checked before connecting to anything), 1 for a run-time failure.
#[must_use]
pub fn main_with(cli: Cli) -> ExitCode {
    let grace = Duration::from_secs(cli.global.shutdown_grace_s);
    match cli.command {
        Command::Ingest(args) => {
            let config = match ingest::config(&cli.global, &args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("gastown: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            run_service(grace, |token| ingest::run(config, token))
        }
    }
}

fn run_service<F, Fut>(grace: Duration, f: F) -> ExitCode
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gastown: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let token = tokio_util::sync::CancellationToken::new();
        shutdown::on_signals(token.clone(), grace);
        f(token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %format!("{e:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
