//! The fenced append, reads of a town's events and action publishing against real servers.

mod common;

use std::time::Duration;

use common::*;
use gastown_bus::codec::Stored;
use gastown_bus::{Bus, BusConfig, ErrorKind, headers};
use gastown_core::action::ActionMessage;
use gastown_core::testing::T0;
use gastown_testkit::TestCluster;

#[tokio::test]
async fn a_fenced_append_succeeds_on_the_last_sequence_and_conflicts_on_a_stale_one() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let (t1, t2) = (town("t1"), town("t2"));
    assert_eq!(bus.town_last_seq(&t1).await.unwrap(), 0);

    let a = within(5, "append", bus.append_event(&t1, &event("e1"), Some(0), None)).await.unwrap();
    assert!(!a.duplicate);
    // Another town's events do not move t1's fence.
    let _ = within(5, "append", bus.append_event(&t2, &event("x1"), None, None)).await.unwrap();
    assert_eq!(bus.town_last_seq(&t1).await.unwrap(), a.seq);

    let stale = within(5, "append", bus.append_event(&t1, &event("e2"), Some(0), None)).await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict, "{stale}");

    let b = within(
        5,
        "append",
        bus.append_event(&t1, &event("e2"), Some(a.seq), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
    )
    .await
    .unwrap();
    assert!(b.seq > a.seq && !b.duplicate);
    assert_eq!(bus.town_last_seq(&t1).await.unwrap(), b.seq);

    let stored = bus.js.get_stream("GASTOWN_EVENTS").await.unwrap().direct_get(b.seq).await.unwrap();
    let h = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(h(headers::NATS_MSG_ID).as_deref(), Some("e2"));
    assert_eq!(h(headers::GASTOWN_EVENT).as_deref(), Some("rig_added"));
    assert_eq!(h(headers::CONTENT_TYPE).as_deref(), Some(headers::MSGPACK));
    assert!(h(headers::TRACEPARENT).is_some());
}

#[tokio::test]
async fn a_repeated_msg_id_is_a_duplicate_with_the_first_sequence() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let t1 = town("t1");
    let first = within(5, "append", bus.append_event(&t1, &event("same"), None, None)).await.unwrap();
    let again = within(5, "append", bus.append_event(&t1, &event("same"), None, None)).await.unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    // nats-server 2.15 checks the fence before the id: a known id with a stale fence is refused.
    let fenced = within(5, "append", bus.append_event(&t1, &event("same"), Some(0), None)).await.unwrap_err();
    assert_eq!(fenced.kind(), ErrorKind::Conflict);
    // With the right fence, the known id is a duplicate again.
    let fenced = within(5, "append", bus.append_event(&t1, &event("same"), Some(first.seq), None)).await.unwrap();
    assert_eq!((fenced.seq, fenced.duplicate), (first.seq, true));
    match within(5, "event_at", bus.event_at(first.seq)).await.unwrap() {
        Stored::Event(env) => assert_eq!(env, event("same")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bus.event_at(first.seq + 100).await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn town_events_returns_exactly_the_towns_events_in_order() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let (t1, t2, t3) = (town("t1"), town("t2"), town("t3"));
    let mut expected = Vec::new();
    for i in 0..20 {
        let a = bus.append_event(&t1, &event(&format!("t1-{i}")), None, None).await.unwrap();
        expected.push((a.seq, format!("t1-{i}")));
        bus.append_event(&t2, &event(&format!("t2-{i}")), None, None).await.unwrap();
    }
    let ids = |events: Vec<(u64, Stored)>| -> Vec<(u64, String)> {
        events
            .into_iter()
            .map(|(seq, s)| match s {
                Stored::Event(env) => (seq, env.id),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let all = within(15, "town_events", bus.town_events(&t1, 0)).await.unwrap();
    assert_eq!(ids(all), expected);
    let tail = within(15, "town_events", bus.town_events(&t1, expected[14].0)).await.unwrap();
    assert_eq!(ids(tail), expected[15..].to_vec());
    let none = within(15, "town_events", bus.town_events(&t1, expected[19].0)).await.unwrap();
    assert!(none.is_empty());
    assert!(within(15, "town_events", bus.town_events(&t3, 0)).await.unwrap().is_empty());

    // Reads delete their consumer.
    let mut stream = bus.js.get_stream("GASTOWN_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
}

#[tokio::test]
async fn an_action_is_published_once_per_id() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let msg = ActionMessage {
        v: 1,
        action_id: "7:0".to_owned(),
        town: "t1".to_owned(),
        action_type: "dispatch_agent".to_owned(),
        decision_seq: 7,
        index: 0,
        at: T0,
        payload: serde_json::Map::new(),
    };
    let first = within(5, "publish action", bus.publish_action(&msg, None)).await.unwrap();
    let again = within(5, "publish action", bus.publish_action(&msg, None)).await.unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    let stored = bus.js.get_stream("GASTOWN_ACTIONS").await.unwrap().get_raw_message(first.seq).await.unwrap();
    assert_eq!(stored.subject.as_str(), "gastown.act.t1.dispatch_agent");
    assert_eq!(stored.headers.get(headers::NATS_MSG_ID).map(|v| v.as_str()), Some("t1:7:0"));
    assert_eq!(stored.headers.get(headers::GASTOWN_ACTION).map(|v| v.as_str()), Some("dispatch_agent"));
    let decoded: ActionMessage = gastown_bus::codec::from_msgpack(&stored.payload).unwrap();
    assert_eq!(decoded, msg);

    let bad = ActionMessage { town: "t.1".to_owned(), ..msg };
    assert_eq!(bus.publish_action(&bad, None).await.unwrap_err().kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn a_stale_fence_on_an_r3_stream_is_a_conflict() {
    let cluster = within(120, "3-node cluster did not start", TestCluster::start(3)).await.expect("start cluster");
    within(30, "no meta leader elected", cluster.wait_for_meta_leader()).await.expect("meta leader");
    let config = BusConfig { replicas: 3, ..Default::default() };
    let bus = within(10, "connect to cluster", Bus::connect(&cluster.urls(), config)).await.unwrap();
    // Stream creation waits for the new R3 groups to elect leaders; retry while unavailable.
    within(30, "R3 streams not created", async {
        loop {
            match bus.ensure_streams().await {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Unavailable => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("ensure_streams: {e}"),
            }
        }
    })
    .await;
    let t1 = town("t1");
    let first = within(15, "first R3 append", async {
        loop {
            match bus.append_event(&t1, &event("r3-1"), Some(0), None).await {
                Ok(a) => break a,
                Err(e) if e.kind() == ErrorKind::Unavailable => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("append: {e}"),
            }
        }
    })
    .await;
    let stale = within(10, "stale R3 append", bus.append_event(&t1, &event("r3-2"), Some(0), None)).await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict, "{stale}");
    // Unlike R1, a clustered stream checks the id before the fence: a repeat is a duplicate.
    let repeat = within(10, "repeated R3 append", bus.append_event(&t1, &event("r3-1"), Some(0), None)).await.unwrap();
    assert_eq!((repeat.seq, repeat.duplicate), (first.seq, true));
    let ok = within(10, "fresh R3 append", bus.append_event(&t1, &event("r3-2"), Some(first.seq), None)).await.unwrap();
    assert!(ok.seq > first.seq);
    assert_eq!(within(10, "last seq", bus.town_last_seq(&t1)).await.unwrap(), ok.seq);

    // Concurrent writers on the same fence: exactly one wins, the others are conflicts.
    let racers = (0..6).map(|i| {
        let (bus, t1) = (bus.clone(), t1.clone());
        tokio::spawn(async move { bus.append_event(&t1, &event(&format!("race-{i}")), Some(ok.seq), None).await })
    });
    let results = within(15, "racing R3 appends", futures::future::join_all(racers)).await;
    let (mut won, mut conflicts) = (0, 0);
    for r in results {
        match r.unwrap() {
            Ok(_) => won += 1,
            Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
            Err(e) => panic!("racing append: {e}"),
        }
    }
    assert_eq!((won, conflicts), (1, 5));
}
