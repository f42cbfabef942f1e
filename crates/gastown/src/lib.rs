//! # gastown
//!
//! The command-line front end of the town reconciler. `main` only parses arguments and starts
//! logging; each subcommand is a library `run(config, shutdown)` that tests call with their own
//! shutdown token (STYLE §1).
//!
//! # Layout
//! - [`Cli`] and [`Command`]: the flags and subcommands (clap derive; every deployment flag also
//!   reads a `GASTOWN_*` / `NATS_URL` variable);
//! - `common`: flag groups shared by several services (streams, partition shares) and checks;
//! - `ingest`: `gastown ingest`, the ingest service;
//! - `reconciler`: `gastown reconciler`, a reconciler worker;
//! - `sim`: `gastown sim`, the simulated agents, executor and SCM;
//! - `town`: `gastown town <town> ...`, operator commands over request-reply;
//! - `up`: `gastown up`, everything in one process (with an embedded nats-server by default)
//!   and its live summary (`summary`);
//! - `debug_cmd`: `gastown debug status|dry-run|replay`, the debug views over request-reply;
//! - `shutdown`: SIGINT/SIGTERM → a cancellation token, with a forced exit after a grace period.

mod common;
mod debug_cmd;
mod ingest;
mod reconciler;
mod shutdown;
mod sim;
mod summary;
mod town;
mod up;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use common::{ShareArgs, StreamArgs};
pub use debug_cmd::{DebugArgs, DebugOp};
pub use ingest::{IngestArgs, IngestTuning};
pub use reconciler::{ReconcilerArgs, ReconcilerTuning};
pub use sim::{SimArgs, SimTuning};
pub use town::{AgentCommand, BeadCommand, BeadOpts, ConvoyCommand, EscalationCommand, RigCommand, TownArgs, TownCommand};
pub use up::UpArgs;

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
#[command(next_help_heading = "Deployment (every command)")]
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
    /// Run ingest, a reconciler worker and (with --demo) the simulator in one process; with
    /// NATS_URL unset, against an embedded nats-server (installed on first use).
    Up(UpArgs),
    /// Run the ingest service (heartbeat filter and command service) until SIGINT/SIGTERM.
    Ingest(IngestArgs),
    /// Run a reconciler worker (partition shares, passes, decisions, actions) until SIGINT/SIGTERM.
    Reconciler(ReconcilerArgs),
    /// Run the simulator (agent containers, executor, fake SCM) until SIGINT/SIGTERM.
    Sim(SimArgs),
    /// Send a command to a town and print the reply (NATS_URL defaults to nats://127.0.0.1:4222).
    Town(TownArgs),
    /// Ask the reconcilers about a town: status, dry-run or exact replay (NATS_URL defaults to
    /// nats://127.0.0.1:4222).
    Debug(DebugArgs),
}

impl Cli {
    /// The log filter used when `RUST_LOG` is unset: `info` for the services, `warn` for `up`
    /// (its summary on stdout tells the story) and the short-lived `town` commands.
    #[must_use]
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Up(_) | Command::Town(_) | Command::Debug(_) => "warn",
            Command::Ingest(_) | Command::Reconciler(_) | Command::Sim(_) => "info",
        }
    }
}

/// Starts `tracing` from `RUST_LOG` (default `default_filter`), writing to stderr.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _already = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs a parsed command line and returns the process exit status: 0 on success, 64 for a bad
/// configuration (checked before connecting to anything), 1 for a run-time failure.
#[must_use]
pub fn main_with(cli: Cli) -> ExitCode {
    let grace = Duration::from_secs(cli.global.shutdown_grace_s);
    match cli.command {
        Command::Up(args) => {
            let Some(plan) = checked(up::config(&cli.global, &args)) else { return ExitCode::from(EXIT_USAGE) };
            run_service(grace, |token| up::run(plan, token))
        }
        Command::Ingest(args) => {
            let Some(config) = checked(ingest::config(&cli.global, &args)) else { return ExitCode::from(EXIT_USAGE) };
            run_service(grace, |token| ingest::run(config, token))
        }
        Command::Reconciler(args) => {
            let Some(config) = checked(reconciler::config(&cli.global, &args)) else { return ExitCode::from(EXIT_USAGE) };
            run_service(grace, |token| reconciler::run(config, token))
        }
        Command::Sim(args) => {
            let Some(config) = checked(sim::config(&cli.global, &args)) else { return ExitCode::from(EXIT_USAGE) };
            run_service(grace, |token| sim::run(config, token))
        }
        Command::Town(args) => {
            let Some(request) = checked(town::config(&cli.global, &args)) else { return ExitCode::from(EXIT_USAGE) };
            run_client(town::run(request))
        }
        Command::Debug(args) => {
            let url = cli.global.nats_url.clone().unwrap_or_else(|| town::DEFAULT_LOCAL_URL.to_owned());
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("gastown: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(debug_cmd::run(&url, &cli.global.prefix, args)) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("gastown: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A checked configuration, or the one-line error printed to stderr.
fn checked<T>(result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("gastown: {e:#}");
            None
        }
    }
}

/// Runs a short-lived client command on a `current_thread` runtime (STYLE §8): `Ok(true)`
/// exits 0, `Ok(false)` (the server refused) and errors exit 1.
fn run_client<Fut>(fut: Fut) -> ExitCode
where
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gastown: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gastown: {e:#}");
            ExitCode::FAILURE
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
