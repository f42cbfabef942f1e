//! Partition shares against a real nats-server: membership by CAS-refreshed KV entries,
//! rendezvous split, expiry of a silent member, and a pinned partition consumer.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use gastown_bus::{Membership, SHARE_GROUP, ShareConfig, partition_consumer, rendezvous_owner};

fn share(member: &str) -> ShareConfig {
    ShareConfig {
        role: "reconciler".to_owned(),
        member_id: member.to_owned(),
        heartbeat: Duration::from_millis(250),
        ..Default::default()
    }
}

/// Waits until `m` sees exactly `expected` as live members.
async fn until_members(m: &Membership, expected: &[&str], fault: &str) {
    let mut changes = m.changes();
    within(10, fault, async {
        while m.members() != expected {
            let _ = tokio::time::timeout(Duration::from_millis(300), changes.changed()).await;
        }
    })
    .await;
}

#[tokio::test]
async fn two_members_split_the_partitions_and_a_silent_one_disappears() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let a = within(10, "join a", Membership::join(&bus, share("a"))).await.unwrap();
    let b = within(10, "join b", Membership::join(&bus, share("b"))).await.unwrap();
    until_members(&a, &["a", "b"], "a never saw b").await;
    until_members(&b, &["a", "b"], "b never saw a").await;

    let members = vec!["a".to_owned(), "b".to_owned()];
    let (pa, pb): (BTreeSet<u32>, BTreeSet<u32>) =
        (a.preferred_partitions().into_iter().collect(), b.preferred_partitions().into_iter().collect());
    assert!(pa.is_disjoint(&pb));
    assert_eq!(pa.len() + pb.len(), 32);
    assert!((8..=24).contains(&pa.len()), "uneven split {} / {}", pa.len(), pb.len());
    for p in 0..32 {
        assert_eq!(a.preferred(p), rendezvous_owner(&members, p) == Some("a"));
    }

    // A member that registered once and never refreshes expires (3 heartbeats after its write).
    let store = bus.kv("members").await.unwrap();
    store.put("reconciler.ghost", "{}".into()).await.unwrap();
    until_members(&a, &["a", "b", "ghost"], "a never saw the ghost").await;
    until_members(&a, &["a", "b"], "the silent ghost never expired").await;

    // Another role's members are not ours.
    let ingest = within(10, "join ingest", Membership::join(&bus, ShareConfig { role: "ingest".to_owned(), ..share("i1") }))
        .await
        .unwrap();
    assert_eq!(ingest.members(), vec!["i1".to_owned()]);

    // Leaving deletes the entry: the survivor owns everything at once.
    within(10, "leave", b.leave()).await.unwrap();
    until_members(&a, &["a"], "b's departure not seen").await;
    assert_eq!(a.preferred_partitions().len(), 32);
    within(10, "leave", a.leave()).await.unwrap();
    drop(ingest);
}

#[tokio::test]
async fn a_pinned_partition_consumer_delivers_to_one_puller() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let p = gastown_bus::partition_of("t1", 32);
    let consumer = within(
        10,
        "partition consumer",
        partition_consumer(&bus, "GASTOWN_EVENTS", "reconciler", p, bus.names.evt_partition_filter(p), Duration::from_secs(3)),
    )
    .await
    .unwrap();
    assert_eq!(consumer.cached_info().name, format!("reconciler-{p}"));
    // Creating it again verifies it.
    within(
        10,
        "partition consumer again",
        partition_consumer(&bus, "GASTOWN_EVENTS", "reconciler", p, bus.names.evt_partition_filter(p), Duration::from_secs(3)),
    )
    .await
    .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, u64)>(64);
    let mut pullers = Vec::new();
    for id in 0..2 {
        let (consumer, tx) = (consumer.clone(), tx.clone());
        pullers.push(tokio::spawn(async move {
            let mut messages = consumer.stream().group(SHARE_GROUP).expires(Duration::from_millis(500)).messages().await.unwrap();
            while let Some(Ok(m)) = messages.next().await {
                let seq = m.info().unwrap().stream_sequence;
                m.ack().await.unwrap();
                if tx.send((id, seq)).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let t1 = town("t1");
    for i in 0..10 {
        bus.append_event(&t1, &event(&format!("e{i}")), None, None).await.unwrap();
    }
    let mut got = Vec::new();
    within(10, "pinned deliveries", async {
        while got.len() < 10 {
            got.push(rx.recv().await.unwrap());
        }
    })
    .await;
    let pullers_used: BTreeSet<usize> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(pullers_used.len(), 1, "both pullers received messages: {got:?}");
    let seqs: Vec<u64> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    for p in pullers {
        p.abort();
    }
}
