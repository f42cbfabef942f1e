//! A real three-node JetStream cluster: formation, kill -9 of a node, restart.

use std::time::Duration;

use gastown_testkit::TestCluster;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn three_node_cluster_should_form_and_survive_a_node_restart() {
    let started = std::time::Instant::now();
    let mut cluster = timeout(LIMIT, TestCluster::start(3)).await.expect("cluster start hung").unwrap();
    eprintln!("cluster formed in {:?}", started.elapsed());
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.urls().split(',').count(), 3, "{}", cluster.urls());

    let leader = cluster.meta_leader(0).await.unwrap();
    assert!(!leader.is_empty());
    for i in 0..3 {
        assert_eq!(cluster.meta_leader(i).await.unwrap(), leader, "node {i} should agree on the meta leader");
        let jsz = cluster.node(i).unwrap().monitor_get("/jsz").await.unwrap();
        let jsz: serde_json::Value = serde_json::from_str(&jsz.body).unwrap();
        assert_eq!(jsz.pointer("/meta_cluster/cluster_size").and_then(|v| v.as_u64()), Some(3), "{jsz}");
    }
    assert!(cluster.node(3).is_none());

    // Kill the meta leader's node: the others elect a new one; the node comes back on restart.
    let leader_index = (0..3).find(|i| cluster.node(*i).unwrap().spec().name == leader).unwrap();
    let pid = cluster.node(leader_index).unwrap().pid().unwrap();
    timeout(LIMIT, cluster.kill(leader_index)).await.expect("kill hung").unwrap();
    assert!(cluster.node(leader_index).unwrap().pid().is_none(), "process {pid} should be gone");
    timeout(LIMIT, cluster.wait_for_meta_leader()).await.expect("re-election hung").unwrap();
    let survivor = (leader_index + 1) % 3;
    let new_leader = cluster.meta_leader(survivor).await.unwrap();
    assert_ne!(new_leader, leader, "a killed node cannot stay meta leader");

    let started = std::time::Instant::now();
    timeout(LIMIT, cluster.restart(leader_index)).await.expect("restart hung").unwrap();
    eprintln!("node restarted and rejoined in {:?}", started.elapsed());
    assert!(!cluster.meta_leader(leader_index).await.unwrap().is_empty());
}
