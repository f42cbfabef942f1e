//! A JetStream cluster of nodes on one host, for failover tests.

use std::time::Duration;

use gastown_natsd::{ClusterSpec, NatsServer, NatsdError, ServerSpec};
use tempfile::TempDir;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::server::{PORT_RETRIES, monitor_json, unique_name};
use crate::{TestkitError, free_ports, nats_binary};

/// How long the cluster may take to elect a JetStream meta leader.
const META_LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A JetStream cluster of `n` `nats-server` nodes on free loopback ports with temporary stores.
///
/// Dropping it kills every node and deletes the stores.
#[derive(Debug)]
pub struct TestCluster {
    // Field order matters: the processes are killed before their stores are deleted.
    nodes: Vec<NatsServer>,
    dir: TempDir,
}

impl TestCluster {
    /// Starts `n` nodes routed to each other and waits until each has JetStream enabled and
    /// every node sees the same JetStream meta leader.
    ///
    /// # Errors
    /// [`TestkitError`] when a node does not start or no meta leader is elected in time.
    pub async fn start(n: usize) -> Result<Self, TestkitError> {
        let binary = nats_binary().await?;
        let dir = tempfile::Builder::new()
            .prefix("gastown-nats-cluster-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating temporary store dir in", std::env::temp_dir(), e))?;
        let cluster_name = unique_name("tc");
        let mut attempt = 0;
        let nodes = loop {
            attempt += 1;
            let ports = free_ports(3 * n)?;
            let (client_ports, rest) = ports.split_at(n);
            let (http_ports, route_ports) = rest.split_at(n);
            let mut nodes = Vec::with_capacity(n);
            let mut spawned = Ok(());
            for (i, ((port, http_port), route_port)) in client_ports.iter().zip(http_ports).zip(route_ports).enumerate() {
                let routes = route_ports.iter().copied().filter(|p| p != route_port).collect();
                let spec = ServerSpec::new(format!("{cluster_name}-n{i}"), *port, *http_port, dir.path().join(format!("n{i}")))
                    .with_cluster(ClusterSpec { name: cluster_name.clone(), port: *route_port, routes });
                match NatsServer::spawn(&binary, spec) {
                    Ok(node) => nodes.push(node),
                    Err(e) => {
                        spawned = Err(e);
                        break;
                    }
                }
            }
            if spawned.is_ok() {
                for node in &mut nodes {
                    spawned = node.wait_ready().await;
                    if spawned.is_err() {
                        break;
                    }
                }
            }
            match spawned {
                Ok(()) => break nodes,
                Err(NatsdError::AddressInUse { .. }) if attempt < PORT_RETRIES => {
                    debug!(cluster = %cluster_name, attempt, "port taken; retrying with other ports");
                    // Dropping `nodes` kills the ones that started.
                }
                Err(e) => return Err(e.into()),
            }
        };
        let cluster = Self { nodes, dir };
        cluster.wait_for_meta_leader().await?;
        info!(cluster = %cluster_name, urls = %cluster.urls(), "nats cluster ready");
        Ok(cluster)
    }

    /// The client URLs of all nodes, comma-joined (the form clients accept for a server list).
    #[must_use]
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The number of nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, if there is one.
    #[must_use]
    pub fn node(&self, i: usize) -> Option<&NatsServer> {
        self.nodes.get(i)
    }

    /// The temporary dir holding every node's store.
    #[must_use]
    pub fn temp_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut NatsServer, TestkitError> {
        let nodes = self.nodes.len();
        self.nodes.get_mut(i).ok_or(TestkitError::NoSuchNode { index: i, nodes })
    }

    /// Kills node `i` with SIGKILL, as in a crash.
    ///
    /// # Errors
    /// [`TestkitError::NoSuchNode`] or [`TestkitError::Natsd`].
    pub async fn kill(&mut self, i: usize) -> Result<(), TestkitError> {
        Ok(self.node_mut(i)?.kill().await?)
    }

    /// Stops node `i` gracefully.
    ///
    /// # Errors
    /// [`TestkitError::NoSuchNode`] or [`TestkitError::Natsd`].
    pub async fn stop(&mut self, i: usize) -> Result<(), TestkitError> {
        Ok(self.node_mut(i)?.stop().await?)
    }

    /// Restarts node `i` on the same ports and store (stopping it first if it runs), then waits
    /// until it is ready and every running node sees a meta leader.
    ///
    /// # Errors
    /// [`TestkitError::NoSuchNode`], [`TestkitError::Natsd`] or [`TestkitError::Timeout`].
    pub async fn restart(&mut self, i: usize) -> Result<(), TestkitError> {
        self.node_mut(i)?.restart().await?;
        self.wait_for_meta_leader().await
    }

    /// The JetStream meta leader's server name as node `i` sees it (empty when none).
    ///
    /// # Errors
    /// [`TestkitError::NoSuchNode`] or [`TestkitError::Natsd`] when `/jsz` cannot be read.
    pub async fn meta_leader(&self, i: usize) -> Result<String, TestkitError> {
        let node = self.nodes.get(i).ok_or(TestkitError::NoSuchNode { index: i, nodes: self.nodes.len() })?;
        let jsz = monitor_json(node, "/jsz").await?;
        Ok(jsz.pointer("/meta_cluster/leader").and_then(|v| v.as_str()).unwrap_or_default().to_owned())
    }

    /// Waits until every running node reports the same meta leader in `/jsz`, and that leader is
    /// one of the running nodes (right after a kill the survivors still name the dead one).
    ///
    /// # Errors
    /// [`TestkitError::Timeout`] with the last observation.
    pub async fn wait_for_meta_leader(&self) -> Result<(), TestkitError> {
        let started = Instant::now();
        loop {
            let mut leaders = Vec::new();
            let mut problem = None;
            for (i, node) in self.nodes.iter().enumerate() {
                if node.pid().is_none() {
                    continue;
                }
                match self.meta_leader(i).await {
                    Ok(leader) if !leader.is_empty() => leaders.push(leader),
                    Ok(_) => problem = Some(format!("node {i} sees no meta leader")),
                    Err(e) => problem = Some(format!("node {i}: {e}")),
                }
            }
            let agreed = leaders.windows(2).all(|w| w.first() == w.last());
            let running = |name: &String| self.nodes.iter().any(|n| n.pid().is_some() && &n.spec().name == name);
            let detail = match (problem, leaders.first()) {
                (None, Some(leader)) if agreed && running(leader) => return Ok(()),
                (None, Some(leader)) if agreed => format!("meta leader {leader} is not running"),
                (None, _) => format!("running nodes disagree on the meta leader: {leaders:?}"),
                (Some(problem), _) => problem,
            };
            if started.elapsed() >= META_LEADER_TIMEOUT {
                return Err(TestkitError::Timeout {
                    what: "JetStream meta leader".to_owned(),
                    waited_ms: started.elapsed().as_millis(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
