//! Flow runs and their samples over time in the metadata store, on each backend:
//! recorded, read back newest first, found by prefix, a sample replaced, the run's
//! latest sample time kept, and kept across a reopen.

mod common;

use common::each_backend;
use riffle_pipeline::metadata::{
    FlowRunRecord, FlowSampleRecord, MetadataStore, RunOwner, SqliteStore,
};

fn run(flow: &str, started_ms: i64) -> FlowRunRecord {
    let mut r = FlowRunRecord::starting(flow, "127.0.0.1:8000");
    r.started_ms = started_ms;
    r
}

fn sample(run: &str, at_ms: i64, processor: &str, replicas: u64) -> FlowSampleRecord {
    let mut s = FlowSampleRecord::new(run, at_ms, processor, "consumer");
    s.replicas = replicas;
    s
}

#[test]
fn flow_runs_and_samples_are_recorded_and_read_back() {
    each_backend(|project| {
        let md = &project.metadata;
        let first = run("shop", 1_000);
        let second = run("shop", 5_000);
        let other = run("audit", 3_000);
        for r in [&first, &second, &other] {
            md.start_flow_run(r).unwrap();
        }
        assert!(
            RunOwner::parse(&first.owner).is_some(),
            "the owner is this process, as text: {}",
            first.owner
        );

        // Two processors, three times; one with a backlog, the other without.
        let mut samples = Vec::new();
        for (i, at) in [2_000, 3_000, 4_000].into_iter().enumerate() {
            let mut orders = sample(&first.id, at, "orders", 1 + i as u64);
            orders.backlog = Some(300 - 100 * i as u64);
            orders.items_in = 10 * i as u64;
            orders.items_out = 10 * i as u64 - i as u64;
            orders.errors = i as u64;
            orders.dead_letters = 1;
            orders.in_flight = 2;
            orders.latency_p50_ms = Some(1.5);
            orders.latency_p99_ms = Some(12.25);
            samples.push(orders);
            let mut api = sample(&first.id, at, "POST /orders", 1);
            api.kind = "collector".into();
            api.items_in = u64::MAX; // stored as the largest SQL integer
            samples.push(api);
        }
        md.record_flow_samples(&samples).unwrap();
        // A second write of the same run, processor and time replaces the first.
        let mut again = sample(&first.id, 4_000, "orders", 7);
        again.backlog = Some(0);
        md.record_flow_samples(&[again]).unwrap();
        md.end_flow_run(&first.id, 4_500, Some("stopped by a signal"))
            .unwrap();

        let runs = md.flow_runs(None, 10).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [&second.id, &other.id, &first.id],
            "newest first"
        );
        let shop = md.flow_runs(Some("shop"), 10).unwrap();
        assert_eq!(shop.len(), 2);
        assert_eq!(md.flow_runs(None, 1).unwrap().len(), 1);
        let ended = md.flow_run(&first.id).unwrap();
        assert_eq!(ended.ended_ms, Some(4_500));
        assert_eq!(ended.last_sample_ms, Some(4_000));
        assert_eq!(ended.error.as_deref(), Some("stopped by a signal"));
        assert_eq!(ended.addr, "127.0.0.1:8000");
        let going = md.flow_run(&second.id.to_ascii_uppercase()).unwrap();
        assert_eq!((going.ended_ms, going.last_sample_ms), (None, None));
        // Ids are time-ordered, so runs started together share a prefix.
        assert!(md.flow_run(&first.id[..4]).is_err(), "ambiguous");
        assert!(md.flow_run("%").is_err());
        assert!(md.flow_run("abcdef").is_err());

        let read = md.flow_samples(&first.id).unwrap();
        assert_eq!(read.len(), 6);
        assert_eq!(
            read.iter()
                .map(|s| (s.at_ms, s.processor.as_str()))
                .collect::<Vec<_>>(),
            [
                (2_000, "POST /orders"),
                (2_000, "orders"),
                (3_000, "POST /orders"),
                (3_000, "orders"),
                (4_000, "POST /orders"),
                (4_000, "orders"),
            ]
        );
        assert_eq!(read[1], samples[0]);
        assert_eq!(read[3], samples[2]);
        assert_eq!((read[5].replicas, read[5].backlog), (7, Some(0)));
        assert_eq!(read[0].kind, "collector");
        assert_eq!(read[0].backlog, None);
        assert_eq!(read[0].items_in, i64::MAX as u64);
        assert!(md.flow_samples(&second.id).unwrap().is_empty());
    });
}

#[test]
fn flow_runs_survive_a_reopen_of_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let started = {
        let store = SqliteStore::open(&path).unwrap();
        let r = run("shop", 10);
        store.start_flow_run(&r).unwrap();
        store
            .record_flow_samples(&[sample(&r.id, 20, "orders", 2)])
            .unwrap();
        r
    };
    let store = SqliteStore::open(&path).unwrap();
    let runs = store.flow_runs(None, 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, started.id);
    assert_eq!(runs[0].last_sample_ms, Some(20));
    assert_eq!(store.flow_samples(&started.id).unwrap()[0].replicas, 2);
}
