//! CSV objects and managed prefixes of the objects connector, on a local folder
//! and on S3 on the moto server `scripts/test.d/40-s3.sh` starts
//! (`RIFFLE_TEST_S3_ENDPOINT`; the S3 tests skip with a note without it, or fail
//! under `CI=true`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::dead_letters::DeadLetters;
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::TestingSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{Target, unique};
use riffle_connectors::objects::testing::ObjectsTarget;
use riffle_connectors::objects::{ObjectPosition, ObjectSink, ObjectSource, admin};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sale {
    id: u32,
    name: String,
    amount: f64,
}

/// Two objects with their columns in different orders (one with CRLF ends, a
/// blank line, a quoted comma and no end on its last line), one row that does
/// not fit: typed rows out, the bad row in the dead letters with its line.
fn typed_rows_and_a_dead_letter(target: &ObjectsTarget) {
    let folder = target.create("csv", 1);
    target.put(
        &folder,
        "a.csv",
        "id,name,amount\n1,ann,2.5\n2,bob,oops\n3,cy,4\n",
    );
    target.put(
        &folder,
        "b.csv",
        "amount,id,name\r\n10,4,dee\r\n\r\n20,5,\"e, f\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    let sink = TestingSink::new();
    let flow = Dataflow::new("csv");
    flow.input(
        "in",
        ObjectSource::new(target.settings(&folder))
            .csv::<Sale>()
            .dead_letters(DeadLetters::file(&letters))
            .tail(false),
    )
    .unwrap()
    .map("show", |l| {
        let s = l.value;
        format!("{}:{} {} {} {}", l.object, l.line, s.id, s.name, s.amount)
    })
    .unwrap()
    .output("out", sink.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(
        sink.take_sorted(),
        [
            "a.csv:2 1 ann 2.5",
            "a.csv:4 3 cy 4",
            "b.csv:2 4 dee 10",
            "b.csv:4 5 e, f 20"
        ]
    );
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["object"], "a.csv");
    assert_eq!(written[0]["line"], 3);
    assert_eq!(written[0]["text"], "2,bob,oops");
    let reason = written[0]["reason"].as_str().unwrap();
    assert!(reason.contains("field 2"), "{reason}");
}

#[test]
fn csv_objects_on_a_local_folder() {
    typed_rows_and_a_dead_letter(&ObjectsTarget::local());
}

#[test]
fn csv_objects_on_s3() {
    let Some(s3) = ObjectsTarget::s3_from_env() else {
        return;
    };
    typed_rows_and_a_dead_letter(&s3);
}

#[test]
fn strict_csv_names_the_object_and_line_and_line_breaks_in_fields_are_refused() {
    let local = ObjectsTarget::local();
    let run = |folder: &str, letters: Option<DeadLetters>| {
        let mut source = ObjectSource::new(local.settings(folder))
            .csv::<Sale>()
            .tail(false);
        if let Some(letters) = letters {
            source = source.dead_letters(letters);
        }
        let sink = TestingSink::new();
        let flow = Dataflow::new("strict");
        flow.input("in", source)
            .unwrap()
            .map("id", |l| l.value.id.to_string())
            .unwrap()
            .output("out", sink.clone())
            .unwrap();
        riffle::run_main(&flow).map(|()| sink.take_sorted())
    };
    let short = local.create("short", 1);
    local.put(&short, "s.csv", "name,id,amount\nann,1,2\nbob,2\n");
    let err = run(&short, None).unwrap_err().to_string();
    assert!(
        err.contains("\"s.csv\" line 3") && err.contains("2 fields and the header 3"),
        "{err}"
    );

    let broken = local.create("broken", 1);
    local.put(
        &broken,
        "m.csv",
        "id,name,amount\n1,\"two\nlines\",3\n4,dee,5\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    assert_eq!(
        run(&broken, Some(DeadLetters::file(&letters))).unwrap(),
        ["4"]
    );
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<_> = written
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{written:?}");
    let reason = written[0]["reason"].as_str().unwrap();
    assert!(reason.contains("line breaks are not supported"), "{reason}");
    let reason = written[1]["reason"].as_str().unwrap();
    assert!(reason.contains("ends a quoted field"), "{reason}");
}

/// A run stopped in the middle of one CSV object, then resumed: every row is
/// in the sink's objects exactly once, and the resumed run began past the
/// header (so it decoded with the header its state held).
fn resume_mid_object(target: &ObjectsTarget, rows: usize, fail_at: u64) {
    let input = target.create("csv-long-in", 1);
    let output = target.create("csv-long-out", 1);
    let mut text = String::from("name,amount,id\n");
    let mut want = Vec::new();
    for i in 0..rows {
        let name = format!("n{i:06}-{}", "x".repeat(i % 31));
        text.push_str(&format!("{name},{i}.5,{i}\n"));
        want.push(format!("{i} {name} {i}.5"));
    }
    target.put(&input, "long.csv", &text);
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = |fail_at: Option<u64>, first: Arc<AtomicU64>| {
        let flow = Dataflow::new("csv-long");
        flow.input(
            "in",
            ObjectSource::new(target.settings(&input))
                .csv::<Sale>()
                .tail(false),
        )
        .unwrap()
        .map("check", move |l| {
            first.fetch_min(l.line, Ordering::Relaxed);
            // Every 2,000 rows a pause longer than an epoch: however fast the
            // rows are read, epochs close (and snapshots commit) before the
            // failure, so the resumed run has a position past the header.
            if l.line % 2_000 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            if fail_at.is_some_and(|n| l.line == n) {
                std::thread::sleep(Duration::from_millis(300));
                panic!("the test stops the run at line {}", l.line);
            }
            let s = l.value;
            format!("{} {} {}", s.id, s.name, s.amount)
        })
        .unwrap()
        .output("out", ObjectSink::new(target.settings(&output)))
        .unwrap();
        Execution::new()
            .epoch_interval(Duration::from_millis(10))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(10)))
            .run(&flow)
    };
    assert!(run(Some(fail_at), Arc::new(AtomicU64::new(u64::MAX))).is_err());
    let first = Arc::new(AtomicU64::new(u64::MAX));
    run(None, first.clone()).unwrap();
    let first = first.load(Ordering::Relaxed);
    assert!(
        first > 2 && first <= fail_at,
        "the resumed run began at line {first}"
    );
    let mut got = target.read(&output);
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

#[test]
fn a_csv_resume_inside_an_object_on_a_local_folder() {
    resume_mid_object(&ObjectsTarget::local(), 40_000, 30_000);
}

#[test]
fn a_csv_resume_inside_an_object_on_s3() {
    let Some(s3) = ObjectsTarget::s3_from_env() else {
        return;
    };
    resume_mid_object(&s3, 40_000, 30_000);
}

#[test]
fn a_resume_state_without_the_header_reads_it_again() {
    let local = ObjectsTarget::local();
    let folder = local.create("reread", 1);
    let text = "amount,name,id\n1,a,1\n2,b,2\n3,c,3\n4,d,4\n";
    local.put(&folder, "r.csv", text);
    // Past line 3, as a state written without the header would say.
    let offset = text.match_indices('\n').nth(2).unwrap().0 as u64 + 1;
    let state: ObjectPosition =
        serde_json::from_value(serde_json::json!({ "offset": offset, "line": 3 })).unwrap();
    assert_eq!(state.header, None);
    let source = ObjectSource::new(local.settings(&folder))
        .csv::<Sale>()
        .tail(false);
    assert_eq!(source.list_parts("in").unwrap(), ["r.csv"]);
    let mut part = source.build_part("in", "r.csv", Some(state)).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match part.next_batch().unwrap() {
            Poll::Ready(items) | Poll::ReadyAt(_, items) => got.extend(items),
            Poll::Pending => std::thread::sleep(Duration::from_millis(5)),
            Poll::Exhausted => break,
        }
        assert!(Instant::now() < deadline, "the partition never ended");
    }
    let rows: Vec<_> = got
        .iter()
        .map(|l| (l.line, l.value.id, l.value.amount))
        .collect();
    assert_eq!(rows, [(4, 3, 3.0), (5, 4, 4.0)]);
    // The header read again is in the next snapshot, and goes in the state.
    let snapshot = part.snapshot().unwrap();
    assert_eq!(snapshot.header.as_deref(), Some("amount,name,id"));
    assert_eq!(snapshot.line, 5);
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["header"], "amount,name,id");
}

/// Make, see, list and remove a prefix; a sibling prefix that starts with the
/// same letters is left alone.
fn managed_prefix(target: &ObjectsTarget) {
    let name = unique("managed");
    let prefix = target.settings(&name);
    let sibling = format!("{name}-sibling");
    assert!(!admin::prefix_exists(&prefix).unwrap());
    assert_eq!(admin::list_objects(&prefix).unwrap(), Vec::<String>::new());
    assert!(admin::create_prefix(&prefix).unwrap());
    assert!(!admin::create_prefix(&prefix).unwrap());
    assert!(admin::prefix_exists(&prefix).unwrap());
    target.put(&name, "2024/a.jsonl", "{}\n");
    target.put(&name, "_staging/out-0-run-1.jsonl", "{}\n");
    target.put(&sibling, "keep.jsonl", "{}\n");
    assert_eq!(
        admin::list_objects(&prefix).unwrap(),
        [admin::MARKER, "2024/a.jsonl", "_staging/out-0-run-1.jsonl"]
    );
    assert_eq!(admin::delete_prefix(&prefix).unwrap(), 3);
    assert!(!admin::prefix_exists(&prefix).unwrap());
    assert_eq!(admin::delete_prefix(&prefix).unwrap(), 0);
    assert_eq!(
        admin::list_objects(&target.settings(&sibling)).unwrap(),
        ["keep.jsonl"]
    );
}

#[test]
fn managed_prefixes_on_a_local_folder() {
    managed_prefix(&ObjectsTarget::local());
}

#[test]
fn managed_prefixes_on_s3() {
    let Some(s3) = ObjectsTarget::s3_from_env() else {
        return;
    };
    managed_prefix(&s3);
    // A bucket that is not there: an error naming the URL.
    let mut missing = s3.settings("x");
    missing.url = "s3://riffle-no-such-bucket/in".into();
    for err in [
        admin::create_prefix(&missing).unwrap_err().to_string(),
        admin::prefix_exists(&missing).unwrap_err().to_string(),
    ] {
        assert!(err.contains("s3://riffle-no-such-bucket/in"), "{err}");
    }
}
