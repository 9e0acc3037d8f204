//! The Delta table sink on S3 through a server restart: a private moto server is
//! killed with SIGKILL while an exactly-once copy (a Parquet source into a Delta
//! table, on a recovery store) runs against it, and a new one takes its place.
//! The run must ride it out, and the table must then hold every row once, with
//! each `(app id, version)` committed once.
//!
//! The restart is [`common::PrivateS3::restart`]: moto is memory-only, so the
//! new server is given every request the killed one had received (its own
//! recorder, replayed), including those in flight at the kill: the ambiguous
//! commit a crashed server leaves behind, which the sink must settle by reading
//! the log again (a put-if-absent of a log version it already made is refused,
//! and the sink finds its own `txn`). Clients reach it through a relay that
//! notes the requests it turned away while there was no server.
//!
//! The server stays away for [`OUTAGE`] at least, longer than the object store
//! client's own ten retries last, so the run rides it out only through the
//! sink's patience (`tables::warehouse`: a staging write or a load is tried
//! again for up to 60 s, said once on stderr).
#![cfg(feature = "tables")]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::Target;
use riffle_connectors::objects::ObjectStoreSettings;
use riffle_connectors::tables::delta;
use riffle_connectors::tables::testing::{DeltaTarget, Tables};

/// How long the server stays away at least: longer than the object store
/// client's own retries last (ten, about 2-4 s in all), so that what rides it out
/// is the sink's patience.
const OUTAGE: Duration = Duration::from_secs(5);

#[test]
fn a_delta_copy_on_s3_rides_out_a_server_killed_and_restarted_mid_run() {
    let Some(mut s3) = common::PrivateS3::start() else {
        return;
    };
    // SAFETY: set before this test starts any thread that reads the environment.
    unsafe { std::env::set_var("RIFFLE_TEST_S3_ENDPOINT", s3.url()) };
    let tables = Tables::s3_from_env().expect("the private server");
    let lake = DeltaTarget(tables.clone());
    let input = lake.create("restart-in", 2);
    let output = lake.create("restart-out", 1);
    let values: Vec<String> = (0..30_000).map(|i| format!("v{i:05}")).collect();
    lake.write(&input, &values);

    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = || {
        let flow = Dataflow::new("restart");
        flow.input("in", lake.source(&input))
            .unwrap()
            .filter_map("upper", |row| {
                // Slow enough that the kill lands mid-run.
                std::thread::sleep(Duration::from_micros(100));
                DeltaTarget::value(row).map(|v| DeltaTarget::record(v.to_uppercase()))
            })
            .unwrap()
            .output("out", lake.sink(&output, "restart"))
            .unwrap();
        // One worker: the sink's writes reach the server one at a time, so the
        // recording replays them in the order the server took them.
        Execution::new()
            .workers(1)
            .epoch_interval(Duration::from_millis(100))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(200)))
            .run(&flow)
    };

    let settings = tables.settings(&output);
    let started = Instant::now();
    let mut before = None;
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(run);
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(30) {
            let versions = log_versions(&settings);
            // Version 0 makes the table; a later one is a committed epoch.
            if versions.len() > 1 {
                before = Some(versions.len());
                s3.restart(OUTAGE);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join().unwrap()
    });
    let before = before.expect("the copy finished before the kill: make it longer");
    outcome.unwrap_or_else(|e| panic!("the run should ride out the restart: {e:?}"));

    let tried = s3.refused();
    assert!(
        tried.iter().any(|r| r.contains(&output)),
        "the sink made no request while the server was down, so the test proves \
         nothing: {tried:?}"
    );
    let versions = log_versions(&settings);
    assert!(
        versions.len() > before,
        "no epoch was committed after the restart ({before} log versions then, {} now)",
        versions.len()
    );
    // Every partition's versions are 1, 2, 3, ..., each committed once.
    let mut txns: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for text in versions.values() {
        for line in text.lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(txn) = action.get("txn") {
                txns.entry(txn["appId"].as_str().unwrap().to_string())
                    .or_default()
                    .push(txn["version"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(txns.len(), 2, "one app id per sink partition: {txns:?}");
    for (app, got) in &txns {
        let want: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(got, &want, "versions of {app} missing or committed twice");
    }
    let mut got = lake.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "rows lost or doubled through the restart"
    );
    assert_eq!(got, want);
}

/// The Delta log of the table at `settings`: each version's text by number
/// (empty while there is no table).
fn log_versions(settings: &ObjectStoreSettings) -> BTreeMap<u64, String> {
    let url = url::Url::parse(&settings.url).unwrap();
    let mut options: Vec<(String, String)> = settings.options.clone().into_iter().collect();
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        options.push((key.to_lowercase(), std::env::var(key).unwrap()));
    }
    let (store, prefix) = object_store::parse_url_opts(&url, options).unwrap();
    let log = prefix.join(delta::LOG);
    riffle_connectors::runtime::handle().block_on(async {
        let mut out = BTreeMap::new();
        let mut listing = store.list(Some(&log));
        while let Some(meta) = listing.next().await {
            let Ok(meta) = meta else {
                return BTreeMap::new();
            };
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(version) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = store.get(&meta.location).await.unwrap().bytes().await;
            out.insert(version, String::from_utf8(bytes.unwrap().to_vec()).unwrap());
        }
        out
    })
}
