//! Stream creation and verification against a real nats-server: create then verify, mutable
//! settings updated, immutable ones refused, the partition transform, HB expiry markers.

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use common::*;
use futures::StreamExt;
use gastown_bus::{AgentId, BusConfig, Ensured, ErrorKind, headers, partition_of};

#[tokio::test]
async fn streams_are_created_then_verified_without_writes() {
    let server = server().await;
    let bus = within(10, "connect", gastown_bus::Bus::connect(&server.url(), BusConfig::default())).await.unwrap();
    let first = within(20, "first ensure_streams", bus.ensure_streams()).await.unwrap();
    assert_eq!(
        first,
        vec![
            ("GASTOWN_HB".to_owned(), Ensured::Created),
            ("GASTOWN_EVENTS".to_owned(), Ensured::Created),
            ("GASTOWN_ACTIONS".to_owned(), Ensured::Created)
        ]
    );
    let second = within(20, "second ensure_streams", bus.ensure_streams()).await.unwrap();
    assert!(second.iter().all(|(_, e)| *e == Ensured::Verified), "{second:?}");

    let events = bus.js.get_stream("GASTOWN_EVENTS").await.unwrap();
    let cfg = &events.cached_info().config;
    assert_eq!(cfg.max_consumers, 4096);
    assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
    assert!(cfg.allow_direct);
    assert_eq!((cfg.max_age, cfg.max_bytes, cfg.max_messages), (Duration::ZERO, -1, -1));
    let hb = bus.js.get_stream("GASTOWN_HB").await.unwrap();
    let cfg = &hb.cached_info().config;
    assert_eq!(cfg.max_messages_per_subject, 1);
    assert!(cfg.allow_message_ttl);
    assert_eq!(cfg.subject_delete_marker_ttl, Some(Duration::from_secs(60)));
    let bucket = within(10, "kv", bus.kv("members")).await.unwrap();
    assert_eq!(within(10, "kv status", bucket.status()).await.unwrap().history(), 1);
}

#[tokio::test]
async fn a_mutable_difference_is_updated() {
    let server = server().await;
    let _ = bus_with(&server.url(), BusConfig { hb_max_age: Duration::from_secs(90), ..Default::default() }).await;
    let short = within(
        10,
        "connect",
        gastown_bus::Bus::connect(&server.url(), BusConfig { hb_max_age: Duration::from_secs(3), ..Default::default() }),
    )
    .await
    .unwrap();
    let report = within(20, "ensure_streams", short.ensure_streams()).await.unwrap();
    assert_eq!(report[0], ("GASTOWN_HB".to_owned(), Ensured::Updated(vec!["max_age"])));
    assert_eq!(report[1].1, Ensured::Verified);
    let hb = short.js.get_stream("GASTOWN_HB").await.unwrap();
    assert_eq!(hb.cached_info().config.max_age, Duration::from_secs(3));
    let again = within(20, "ensure_streams", short.ensure_streams()).await.unwrap();
    assert!(again.iter().all(|(_, e)| *e == Ensured::Verified), "{again:?}");
}

#[tokio::test]
async fn an_immutable_difference_is_refused() {
    let server = server().await;
    let _ = bus(&server.url()).await;
    let other =
        within(10, "connect", gastown_bus::Bus::connect(&server.url(), BusConfig { partitions: 16, ..Default::default() }))
            .await
            .unwrap();
    let err = within(20, "ensure_streams", other.ensure_streams()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Mismatch);
    let msg = err.to_string();
    assert!(msg.contains("subject_transform") && msg.contains("partition(32,1)") && msg.contains("partition(16,1)"), "{msg}");
}

#[tokio::test]
async fn the_partition_transform_matches_partition_of() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let stream = bus.js.get_stream("GASTOWN_EVENTS").await.unwrap();
    for (i, name) in ["t1", "t2", "acme", "town-42", "Z_z"].iter().enumerate() {
        let t = town(name);
        let a = within(5, "append", bus.append_event(&t, &event(&format!("e{i}")), None, None)).await.unwrap();
        let stored = within(5, "direct get", stream.direct_get(a.seq)).await.unwrap();
        assert_eq!(stored.subject.as_str(), format!("gastown.evt.{}.{name}", partition_of(name, 32)));
        assert_eq!(bus.names.parse_evt_stored(stored.subject.as_str()), Some((partition_of(name, 32), t)));
    }
    // The verified fixed point: t1 lands in partition 22 of 32.
    let a = within(5, "append", bus.append_event(&town("t1"), &event("again"), None, None)).await.unwrap();
    assert_eq!(stream.direct_get(a.seq).await.unwrap().subject.as_str(), "gastown.evt.22.t1");
}

#[tokio::test]
async fn a_silent_agent_gets_a_max_age_marker_on_its_subject() {
    let server = server().await;
    let bus = bus_with(&server.url(), BusConfig { hb_max_age: Duration::from_secs(2), ..Default::default() }).await;
    let (t, a) = (town("t1"), AgentId::try_from("a1").unwrap());
    within(5, "heartbeat publish", async {
        bus.js.publish(bus.names.hb(&t, &a), "{\"status\":\"running\"}".into()).await.unwrap().await
    })
    .await
    .unwrap();
    let stream = bus.js.get_stream("GASTOWN_HB").await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: bus.names.hb_agent_stored_filter(&t, &a),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let first = within(5, "heartbeat delivery", messages.next()).await.unwrap().unwrap();
    assert_eq!(first.subject.as_str(), "gastown.hb.22.t1.a1");
    assert_eq!(bus.names.parse_hb_stored(first.subject.as_str()), Some((22, t.clone(), a.clone())));
    let started = tokio::time::Instant::now();
    let marker = within(10, "no MaxAge marker (subject_delete_marker_ttl not applied?)", messages.next()).await.unwrap().unwrap();
    assert_eq!(marker.subject.as_str(), "gastown.hb.22.t1.a1");
    assert!(marker.payload.is_empty());
    let reason = marker.headers.as_ref().and_then(|h| h.get(headers::MARKER_REASON)).map(|v| v.as_str().to_owned());
    assert_eq!(reason.as_deref(), Some(headers::MARKER_MAX_AGE));
    assert!(started.elapsed() < Duration::from_secs(5), "marker came late: {:?}", started.elapsed());
}
