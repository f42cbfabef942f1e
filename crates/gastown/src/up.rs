//! `gastown up [--demo]`: ingest, a reconciler worker and (with `--demo`) the simulator in one
//! process, with a live summary on stdout.
//!
//! With `NATS_URL` set it runs against that server. With it unset it uses the **embedded
//! default**: it finds a nats-server ≥ 2.11 (installing the pinned build into the ignored
//! `.gastown/tools` if there is none — the only path where gastown installs anything, and it says
//! so on stderr), starts it on 127.0.0.1:4222 (or a free port when 4222 is taken) with JetStream
//! data under `.gastown/nats/`, and stops it at exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gastown_bus::Names;
use gastown_ingest::{IngestConfig, IngestMetrics};
use gastown_natsd::{NatsBinary, NatsServer, NatsdError, ServerSpec};
use gastown_reconciler::{ReconcilerConfig, ReconcilerMetrics};
use gastown_sim::{SimConfig, SimStats};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::{self, ShareArgs, StreamArgs};
use crate::ingest::IngestTuning;
use crate::reconciler::ReconcilerTuning;
use crate::sim::SimTuning;
use crate::summary::Figures;
use crate::{GlobalArgs, ingest, reconciler, sim};

/// How long `up` waits for its ingest service to answer before seeding the demo towns.
const INGEST_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long seeding the demo towns may take.
const SEED_TIMEOUT: Duration = Duration::from_secs(120);

/// Flags of `gastown up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Also seed demo towns (`demo-1` ...) and run the simulator that plays their agents, executor
    /// and SCM.
    #[arg(long)]
    pub demo: bool,
    /// Demo towns to seed with --demo.
    #[arg(long, env = "GASTOWN_DEMO_TOWNS", default_value_t = 3)]
    pub demo_towns: usize,
    /// Beads slung per demo town with --demo (plus a convoy of three).
    #[arg(long, env = "GASTOWN_DEMO_BEADS", default_value_t = 4)]
    pub demo_beads: usize,
    /// Client port of the embedded nats-server (NATS_URL unset); a free port is used when it is
    /// taken.
    #[arg(long, env = "GASTOWN_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// JetStream data of the embedded nats-server (NATS_URL unset).
    #[arg(long, env = "GASTOWN_NATS_DIR", default_value = ".gastown/nats")]
    pub nats_dir: PathBuf,
    /// Start the embedded nats-server with no data: delete what an earlier run left in
    /// --nats-dir (its towns, events and actions). Refused with NATS_URL.
    #[arg(long)]
    pub fresh: bool,
    /// Seconds between two summary lines (0: no summary).
    #[arg(long, env = "GASTOWN_SUMMARY_EVERY_S", default_value_t = 2)]
    pub summary_every: u64,
    /// Print the summary as JSON lines (the banner then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Ingest settings.
    #[command(flatten)]
    pub ingest: IngestTuning,
    /// Reconciler settings.
    #[command(flatten)]
    pub reconciler: ReconcilerTuning,
    /// Simulator settings (with --demo; `up` defaults to a 5 s work time and a 10 s merge delay).
    #[command(flatten)]
    pub sim: SimTuning,
    /// Stream settings.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Partition-share timings.
    #[command(flatten)]
    pub shares: ShareArgs,
}

/// Where `up` gets its server.
#[derive(Debug, Clone)]
enum Server {
    /// `NATS_URL`.
    External(String),
    /// The embedded default.
    Embedded { port: u16, dir: PathBuf, fresh: bool },
}

/// A checked `gastown up`.
#[derive(Debug, Clone)]
pub(crate) struct UpPlan {
    server: Server,
    names: Names,
    ingest: IngestConfig,
    reconciler: ReconcilerConfig,
    /// The simulator and the demo size, with --demo.
    sim: Option<(SimConfig, usize, usize)>,
    summary_every: Option<Duration>,
    json: bool,
    grace: Duration,
}

/// Checks the flags and builds the plan, before connecting to or installing anything.
pub(crate) fn config(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<UpPlan> {
    let server = match global.nats_url.clone().filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            anyhow::ensure!(!args.fresh, "--fresh only applies to the embedded nats-server (NATS_URL unset)");
            Server::External(url)
        }
        None => {
            anyhow::ensure!(args.nats_port != 0, "--nats-port must not be 0");
            Server::Embedded { port: args.nats_port, dir: args.nats_dir.clone(), fresh: args.fresh }
        }
    };
    // The URL is known once the embedded server runs; the configurations get it then.
    let url = match &server {
        Server::External(url) => url.clone(),
        Server::Embedded { port, .. } => format!("nats://127.0.0.1:{port}"),
    };
    let names = common::names(global)?;
    let ingest = ingest::config_with_url(global, url.clone(), &args.ingest, &args.streams, &args.shares)?;
    let reconciler = reconciler::config_with_url(global, url.clone(), &args.reconciler, &args.streams, &args.shares)?;
    let sim = if args.demo {
        let (towns, beads) = sim::demo_size(args.demo_towns, args.demo_beads)?;
        let base = SimConfig { work_time: Duration::from_secs(5), merge_delay: Duration::from_secs(10), ..SimConfig::default() };
        Some((sim::sim_config(global, url, names.clone(), &args.sim, base)?, towns, beads))
    } else {
        None
    };
    Ok(UpPlan {
        server,
        names,
        ingest,
        reconciler,
        sim,
        summary_every: (args.summary_every > 0).then(|| Duration::from_secs(args.summary_every)),
        json: args.json,
        grace: Duration::from_secs(global.shutdown_grace_s),
    })
}

/// Runs everything until `shutdown` (or until a service fails), then stops the embedded server.
pub(crate) async fn run(mut plan: UpPlan, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (url, mut embedded) = match &plan.server {
        Server::External(url) => (url.clone(), None),
        Server::Embedded { port, dir, fresh } => {
            let server = tokio::select! {
                started = start_embedded(*port, dir, *fresh) => started?,
                () = shutdown.cancelled() => return Ok(()),
            };
            (server.url(), Some(server))
        }
    };
    plan.ingest.nats_url.clone_from(&url);
    plan.reconciler.nats_url.clone_from(&url);
    if let Some((sim, ..)) = &mut plan.sim {
        sim.nats_url.clone_from(&url);
    }
    let result = run_services(plan, &url, shutdown).await;
    if let Some(server) = &mut embedded {
        match server.stop().await {
            Ok(()) => eprintln!("gastown up: embedded nats-server stopped"),
            Err(e) => eprintln!("gastown up: stopping the embedded nats-server: {e}"),
        }
    }
    result
}

/// Finds (or installs) nats-server and starts it with data under `dir`.
async fn start_embedded(port: u16, dir: &Path, fresh: bool) -> anyhow::Result<NatsServer> {
    let tools = gastown_natsd::default_tools_dir();
    eprintln!(
        "gastown up: NATS_URL is unset, so gastown starts its own nats-server (JetStream data in {}).\n\
         gastown up: looking for nats-server >= {}; if none is found, the pinned {} is installed into {} \
         (the only thing gastown ever installs; set NATS_URL to use your own server).",
        dir.display(),
        gastown_natsd::MIN_VERSION,
        gastown_natsd::PINNED_VERSION,
        tools.display()
    );
    let binary: NatsBinary = tokio::task::spawn_blocking(move || gastown_natsd::find_or_install(&tools))
        .await
        .map_err(|e| anyhow::anyhow!("finding nats-server: {e}"))??;
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let dir = std::path::absolute(dir).map_err(|e| anyhow::anyhow!("resolving {}: {e}", dir.display()))?;
    let data = dir.join("jetstream");
    if data.exists() {
        if fresh {
            std::fs::remove_dir_all(&data).map_err(|e| anyhow::anyhow!("deleting {}: {e}", data.display()))?;
            eprintln!("gastown up: --fresh: deleted the data of earlier runs ({})", data.display());
        } else {
            eprintln!(
                "gastown up: continuing with the data of earlier runs in {} (--fresh starts over; agents that were \
                 working when gastown stopped are recovered once their heartbeats count as lost, 90 s)",
                data.display()
            );
        }
    }
    let mut port = if port_is_free(port) {
        port
    } else {
        let free = free_port()?;
        eprintln!("gastown up: port {port} is taken; the embedded nats-server listens on {free} instead");
        free
    };
    for attempt in 0..3 {
        let spec = ServerSpec::new("gastown-up", port, free_port()?, &dir);
        match NatsServer::start(&binary, spec).await {
            Ok(server) => {
                eprintln!(
                    "gastown up: nats-server {} ({}) listening on {}, log in {}",
                    binary.version,
                    binary.path.display(),
                    server.url(),
                    dir.join(gastown_natsd::server::LOG_FILE).display()
                );
                return Ok(server);
            }
            Err(NatsdError::AddressInUse { .. }) if attempt < 2 => {
                let free = free_port()?;
                eprintln!("gastown up: port {port} was taken meanwhile; trying {free}");
                port = free;
            }
            Err(e) => return Err(anyhow::anyhow!("starting the embedded nats-server: {e}")),
        }
    }
    Err(anyhow::anyhow!("starting the embedded nats-server: no free port"))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| anyhow::anyhow!("finding a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| anyhow::anyhow!("finding a free port: {e}"))?.port())
}

type Task = (&'static str, anyhow::Result<()>);

/// Runs the services, prints the banner and the summary, and stops them all when one fails or
/// `shutdown` comes.
async fn run_services(plan: UpPlan, url: &str, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let services = shutdown.child_token();
    let ingest_metrics = Arc::new(IngestMetrics::default());
    let rec_metrics = Arc::new(ReconcilerMetrics::default());
    let sim_stats = plan.sim.as_ref().map(|_| Arc::new(SimStats::default()));
    let mut tasks: JoinSet<Task> = JoinSet::new();
    {
        let (m, token) = (Arc::clone(&ingest_metrics), services.clone());
        let config = plan.ingest.clone();
        tasks.spawn(async move { ("ingest", gastown_ingest::run(config, m, token).await.map_err(anyhow::Error::from)) });
    }
    {
        let (m, token) = (Arc::clone(&rec_metrics), services.clone());
        let config = plan.reconciler.clone();
        tasks.spawn(async move { ("reconciler", gastown_reconciler::run(config, m, token).await.map_err(anyhow::Error::from)) });
    }
    if let (Some((config, towns, beads)), Some(stats)) = (plan.sim.clone(), &sim_stats) {
        let (stats, token, names) = (Arc::clone(stats), services.clone(), plan.names.clone());
        tasks.spawn(async move { ("simulator", run_demo(config, names, towns, beads, stats, token).await) });
    }
    print_banner(&plan, url);

    let mut failure: Option<anyhow::Error> = None;
    let mut tick = tokio::time::interval(plan.summary_every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let print = |json: bool| {
        let f = Figures::read(started.elapsed(), &ingest_metrics, &rec_metrics, sim_stats.as_deref());
        println!("{}", if json { f.json() } else { f.line() });
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            joined = tasks.join_next() => {
                failure = ended(joined, &shutdown);
                if failure.is_some() || tasks.is_empty() {
                    break;
                }
            }
            _ = tick.tick(), if plan.summary_every.is_some() => print(plan.json),
        }
    }
    services.cancel();
    // The process exits by force after the grace period of a signal; a failure has no signal, so
    // the wait is bounded here too.
    let deadline = Instant::now() + plan.grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(joined) => {
                if let Some(e) = ended(joined, &shutdown)
                    && failure.is_none()
                {
                    failure = Some(e);
                }
            }
            Err(_) => {
                tasks.abort_all();
                failure.get_or_insert_with(|| anyhow::anyhow!("the services did not stop within the grace period"));
                break;
            }
        }
    }
    if plan.summary_every.is_some() {
        print(plan.json);
    }
    failure.map_or(Ok(()), Err)
}

/// What a finished service task means: an error unless it stopped because of shutdown.
fn ended(joined: Option<Result<Task, tokio::task::JoinError>>, shutdown: &CancellationToken) -> Option<anyhow::Error> {
    match joined {
        None => None,
        Some(Ok((_, Ok(())))) if shutdown.is_cancelled() => None,
        Some(Ok((name, Ok(())))) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
        Some(Ok((name, Err(e)))) => Some(e.context(format!("{name} failed"))),
        Some(Err(e)) => Some(anyhow::anyhow!("a service task failed: {e}")),
    }
}

/// With --demo: waits for ingest, seeds the demo towns, then runs the simulator.
async fn run_demo(
    config: SimConfig,
    names: Names,
    towns: usize,
    beads: usize,
    stats: Arc<SimStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = async_nats::connect(config.nats_url.as_str()).await.map_err(|e| anyhow::anyhow!("connecting: {e}"))?;
    let ping = format!("$SRV.PING.{}", names.ingest_service());
    let deadline = Instant::now() + INGEST_READY_TIMEOUT;
    loop {
        let answered = tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(500), client.request(ping.clone(), "".into())) => matches!(r, Ok(Ok(_))),
            () = shutdown.cancelled() => return Ok(()),
        };
        if answered {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ingest service did not answer within {} s",
            INGEST_READY_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::select! {
        seeded = tokio::time::timeout(SEED_TIMEOUT, gastown_sim::seed_demo(&client, &names, towns, beads)) => {
            seeded.map_err(|_| anyhow::anyhow!("seeding the demo towns took over {} s", SEED_TIMEOUT.as_secs()))??;
        }
        () = shutdown.cancelled() => return Ok(()),
    }
    tracing::info!(towns, beads_per_town = beads, "demo towns seeded");
    gastown_sim::run(config, stats, shutdown).await?;
    Ok(())
}

/// The start-up lines: where the server is and the `nats req` lines to talk to it.
fn print_banner(plan: &UpPlan, url: &str) {
    let prefix = plan.names.prefix();
    let (town, title) = match plan.sim {
        Some(_) => (gastown_sim::demo_town(1), "Write the release notes"),
        None => ("my-town".to_owned(), "Fix the login page"),
    };
    let server = if matches!(plan.server, Server::Embedded { .. }) { format!(" --server {url}") } else { String::new() };
    let mut lines = vec![
        format!("gastown up: ingest and a reconciler worker on {url} (prefix {prefix:?})"),
        match &plan.sim {
            Some((_, towns, beads)) => format!(
                "gastown up: demo: {towns} towns ({}..{}) with rig r1, {beads} beads and a convoy each, played by the simulator",
                gastown_sim::demo_town(1),
                gastown_sim::demo_town(*towns)
            ),
            None => "gastown up: no demo (add --demo for simulated towns)".to_owned(),
        },
        "Talk to it:".to_owned(),
    ];
    if plan.sim.is_none() {
        lines.push(format!(
            "  nats{server} req {prefix}.cmd.{town}.rig.add '{{\"rig_id\":\"r1\",\"name\":\"app\",\"git_url\":\"https://github.com/acme/app.git\"}}'"
        ));
    }
    lines.push(format!("  nats{server} req {prefix}.cmd.{town}.bead.sling '{{\"title\":\"{title}\",\"rig_id\":\"r1\"}}'"));
    let mut gastown = "gastown".to_owned();
    if url != crate::town::DEFAULT_LOCAL_URL {
        gastown.push_str(&format!(" --nats-url {url}"));
    }
    if prefix != Names::default().prefix() {
        gastown.push_str(&format!(" --prefix {prefix}"));
    }
    lines.push(format!("  {gastown} town {town} bead sling \"{title}\" --rig r1"));
    lines.push(format!("  nats{server} sub '{prefix}.act.{town}.>'   # the actions the reconciler publishes"));
    lines.push(format!("  nats{server} req {prefix}.debug.{town}.status ''             # or: {gastown} debug status {town}"));
    lines.push(format!("  nats{server} req {prefix}.debug.{town}.dry-run ''"));
    let text = lines.join("\n");
    if plan.json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}
