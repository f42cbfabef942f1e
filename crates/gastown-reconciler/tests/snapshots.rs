//! The snapshot store against a real nats-server (ARCHITECTURE §3, §9.4): round trips, the
//! `before` choice, bounded and thinned history, schema and corruption fallbacks, a large chunked
//! state, and two workers saving at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::future::Future;
use std::time::{Duration, Instant};

use gastown_bus::{Bus, BusConfig, TownId};
use gastown_core::TownState;
use gastown_core::event::BeadCreated;
use gastown_core::state::SCHEMA_VERSION;
use gastown_core::testing::{Given, T0, bead, bead_created, ev, fixture_f, given, mins, rig_added};
use gastown_reconciler::snapshots::{SnapshotEntry, SnapshotStore, object_name};
use gastown_testkit::TestServer;

/// Awaits `fut` for at most `secs` seconds, naming the likely fault on timeout.
async fn within<T>(secs: u64, fault: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.unwrap_or_else(|_| panic!("timed out after {secs} s: {fault}"))
}

async fn server() -> TestServer {
    within(120, "nats-server did not start (binary install or port)", TestServer::start()).await.expect("start nats-server")
}

async fn bus(url: &str) -> Bus {
    within(10, "connect to nats-server", Bus::connect(url, BusConfig::default())).await.expect("connect")
}

async fn store(bus: &Bus, history: usize) -> SnapshotStore {
    within(10, "open the snapshot store and index", SnapshotStore::open(bus, history)).await.expect("open snapshot store")
}

fn town() -> TownId {
    TownId::try_from("t1").unwrap()
}

/// Fixture F, then one bead per minute after T0.
fn town_with_beads(n: usize) -> Given {
    given(fixture_f()).and((1..=n).map(|i| bead_created(&format!("b{i}"), "r1").at(T0 + mins(i as i64))))
}

/// The state after each of `n` beads (one per minute), in order.
fn states(n: usize) -> Vec<TownState> {
    let mut g = given(fixture_f());
    (1..=n)
        .map(|i| {
            g.push(bead_created(&format!("b{i}"), "r1").at(T0 + mins(i as i64)));
            g.state.clone()
        })
        .collect()
}

async fn save(store: &SnapshotStore, state: &TownState, published_through: u64) -> SnapshotEntry {
    within(20, "save a snapshot", store.save(&town(), state, published_through)).await.expect("save snapshot")
}

async fn load(store: &SnapshotStore, before: Option<i64>) -> Option<(SnapshotEntry, TownState)> {
    within(20, "load a snapshot", store.load_latest(&town(), before)).await.expect("load snapshot")
}

async fn entries(store: &SnapshotStore) -> Vec<SnapshotEntry> {
    within(10, "read the snapshot index", store.entries(&town())).await.expect("read index")
}

/// Replaces the town's index by hand, as another (older or newer) program might have written it.
async fn write_index(bus: &Bus, list: &[SnapshotEntry]) {
    let kv = bus.kv("snapshot-index").await.unwrap();
    within(10, "write the index by hand", kv.put("t1", serde_json::to_vec(list).unwrap().into())).await.unwrap();
}

/// Puts raw bytes as an object of the snapshot store.
async fn put_raw(bus: &Bus, name: &str, bytes: &[u8]) {
    let objects = bus.js.get_object_store("gastown-snapshots").await.unwrap();
    let mut reader = bytes;
    within(10, "put a raw object", objects.put(name, &mut reader)).await.unwrap();
}

#[tokio::test]
async fn a_saved_snapshot_loads_back_equal_and_saving_it_again_changes_nothing() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let store = store(&bus, 8).await;
    assert_eq!(load(&store, None).await, None, "a town without snapshots folds from the first event");

    let state = town_with_beads(3).state;
    let entry = save(&store, &state, 2).await;
    assert_eq!(
        entry,
        SnapshotEntry { seq: 7, clock: T0 + mins(3), published_through: 2, schema: SCHEMA_VERSION, object: "t1.7".into() }
    );
    assert_eq!(entry.object, object_name(&town(), state.last_seq));
    assert_eq!(load(&store, None).await, Some((entry.clone(), state.clone())));

    let kv = bus.kv("snapshot-index").await.unwrap();
    let revision = kv.entry("t1").await.unwrap().unwrap().revision;
    assert_eq!(save(&store, &state, 2).await, entry, "the same seq again is the same entry");
    assert_eq!(save(&store, &state, 1).await, entry, "an older outbox position changes nothing");
    assert_eq!(kv.entry("t1").await.unwrap().unwrap().revision, revision, "nothing was written");

    let later = save(&store, &state, 5).await;
    assert_eq!(later.published_through, 5, "a greater outbox position is recorded");
    assert_eq!(entries(&store).await, [later]);

    let other = TownId::try_from("t2").unwrap();
    let err = store.save(&other, &state, 0).await.unwrap_err();
    assert_eq!(err.kind(), gastown_bus::ErrorKind::Invalid, "another town's state is refused: {err}");
    let err = store.save(&town(), &TownState::new("t1"), 0).await.unwrap_err();
    assert_eq!(err.kind(), gastown_bus::ErrorKind::Invalid, "a town without events is refused: {err}");
}

#[tokio::test]
async fn before_picks_the_latest_snapshot_whose_clock_is_strictly_before() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let store = store(&bus, 8).await;
    let states = states(3);
    for s in &states {
        save(&store, s, 0).await;
    }
    let clock_of = |i: usize| states[i].clock;
    let seq_loaded = |got: Option<(SnapshotEntry, TownState)>| got.map(|(e, s)| (e.seq, s.last_seq));

    assert_eq!(seq_loaded(load(&store, None).await), Some((7, 7)), "no bound: the latest");
    assert_eq!(seq_loaded(load(&store, Some(clock_of(2) + 1)).await), Some((7, 7)));
    assert_eq!(seq_loaded(load(&store, Some(clock_of(2))).await), Some((6, 6)), "a snapshot at `from` may hold window events");
    assert_eq!(seq_loaded(load(&store, Some(clock_of(1))).await), Some((5, 5)));
    assert_eq!(load(&store, Some(clock_of(0))).await, None, "nothing before the first snapshot");
}

#[tokio::test]
async fn history_is_bounded_and_thinned_and_dropped_objects_leave_nothing_behind() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let store = store(&bus, 5).await;
    let states = states(30);
    for s in &states {
        save(&store, s, 0).await;
    }
    let kept = entries(&store).await;
    let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), 5, "history bounded: {seqs:?}");
    assert_eq!(seqs[0], 5, "the oldest stays: {seqs:?}");
    assert_eq!(seqs[3..], [33, 34], "the newest two stay (history 5): {seqs:?}");
    assert!(seqs[1] - seqs[0] > 1 && seqs[2] - seqs[1] > 1, "old ones are spread out: {seqs:?}");

    // Every kept object loads, and the store holds exactly the kept objects: one metadata message
    // and one chunk each (dropped ones leave no tombstone).
    for e in &kept {
        let (entry, state) = load(&store, Some(e.clock + 1)).await.unwrap();
        assert_eq!((&entry, state.last_seq), (e, e.seq));
    }
    let mut stream = bus.js.get_stream("OBJ_gastown-snapshots").await.unwrap();
    let info = within(10, "object store stream info", stream.info()).await.unwrap();
    assert_eq!(info.state.messages, 2 * kept.len() as u64, "only the kept objects remain");
}

#[tokio::test]
async fn another_schema_is_ignored_and_missing_or_undecodable_objects_are_skipped() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let store = store(&bus, 8).await;
    let states = states(4);
    let usable = save(&store, &states[0], 0).await;

    // A newer program's snapshot (schema + 1) with a real object, a missing object, garbage
    // bytes, and an object holding another seq's state: all newer than the usable one.
    let newer = save(&store, &states[1], 0).await;
    let mut list = entries(&store).await;
    list.retain(|e| e.seq != newer.seq);
    list.push(SnapshotEntry { schema: SCHEMA_VERSION + 1, ..newer.clone() });
    list.push(SnapshotEntry {
        seq: 7,
        clock: states[2].clock,
        published_through: 0,
        schema: SCHEMA_VERSION,
        object: "t1.7".into(),
    });
    put_raw(&bus, "t1.8", b"\xc1 not messagepack").await;
    list.push(SnapshotEntry {
        seq: 8,
        clock: states[3].clock,
        published_through: 0,
        schema: SCHEMA_VERSION,
        object: "t1.8".into(),
    });
    put_raw(&bus, "t1.9", &gastown_core::codec::to_msgpack(&states[1]).unwrap()).await;
    list.push(SnapshotEntry {
        seq: 9,
        clock: states[3].clock + 1,
        published_through: 0,
        schema: SCHEMA_VERSION,
        object: "t1.9".into(),
    });
    write_index(&bus, &list).await;
    assert_eq!(entries(&store).await.len(), 5);

    let (entry, state) = load(&store, None).await.expect("the usable snapshot");
    assert_eq!(entry, usable);
    assert_eq!(state, states[0]);

    // Saving a listed seq whose object went missing writes the object again, and keeps the
    // other entries of the hand-written index.
    save(&store, &states[2], 0).await;
    assert_eq!(entries(&store).await.len(), 5);
    let (entry, state) = load(&store, Some(states[3].clock)).await.unwrap();
    assert_eq!((entry.seq, &state), (7, &states[2]));

    // An index that does not decode counts as empty and is replaced by the next save.
    let kv = bus.kv("snapshot-index").await.unwrap();
    kv.put("t1", "not json".into()).await.unwrap();
    assert_eq!(load(&store, None).await, None);
    save(&store, &states[3], 0).await;
    assert_eq!(entries(&store).await.len(), 1);
    assert_eq!(load(&store, None).await.unwrap().1, states[3], "the garbage under t1.8 was replaced");
}

#[tokio::test]
async fn a_large_state_round_trips_through_the_chunked_object_store() {
    let server = server().await;
    let bus = bus(&server.url()).await;
    let store = store(&bus, 8).await;
    let body = "lorem ipsum dolor sit amet ".repeat(40);
    let town = given([rig_added("r1").at(T0)]).and((1..=5_000).map(|i| {
        let id = format!("bead-{i:05}");
        ev(BeadCreated { body: Some(body.clone()), labels: vec!["load".into(), format!("n{i}")], ..bead(&id, Some("r1")) })
    }));
    let state = town.state;
    assert_eq!(state.beads.len(), 5_000);
    let bytes = gastown_core::codec::to_msgpack(&state).unwrap().len();
    assert!(bytes > 4 * 1024 * 1024, "the state should be several MB, is {bytes} bytes");

    let started = Instant::now();
    let entry = save(&store, &state, 0).await;
    let saved_in = started.elapsed();
    let objects = bus.js.get_object_store("gastown-snapshots").await.unwrap();
    let info = objects.info(&entry.object).await.unwrap();
    assert_eq!(info.size, bytes);
    assert!(info.chunks > 1, "the store chunks it: {} chunks", info.chunks);

    let started = Instant::now();
    let (loaded_entry, loaded) = load(&store, None).await.expect("the large snapshot loads");
    let loaded_in = started.elapsed();
    assert_eq!(loaded_entry, entry);
    assert!(loaded == state, "the large state round-trips");
    eprintln!("large snapshot: {bytes} bytes in {} chunks, saved in {saved_in:?}, loaded in {loaded_in:?}", info.chunks);
}

#[tokio::test]
async fn concurrent_saves_of_two_workers_both_end_up_in_the_index() {
    let server = server().await;
    let (bus_a, bus_b) = (bus(&server.url()).await, bus(&server.url()).await);
    let (a, b) = (store(&bus_a, 64).await, store(&bus_b, 64).await);
    let states = states(20);
    let t1 = town();
    for pair in states.chunks(2) {
        let (ra, rb) =
            within(30, "two concurrent saves", async { tokio::join!(a.save(&t1, &pair[0], 0), b.save(&t1, &pair[1], 0)) }).await;
        ra.unwrap();
        rb.unwrap();
    }
    let seqs: Vec<u64> = entries(&a).await.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = states.iter().map(|s| s.last_seq).collect();
    assert_eq!(seqs, expected, "every save of both workers is listed");

    // Both save the very same snapshot at once: one entry, one object.
    let last =
        within(30, "two identical saves", async { tokio::join!(a.save(&t1, &states[19], 3), b.save(&t1, &states[19], 3)) }).await;
    assert_eq!(last.0.unwrap(), last.1.unwrap());
    assert_eq!(entries(&b).await.len(), 20);
    assert_eq!(load(&b, None).await.unwrap().1, states[19]);
}
