//! Files in object stores: the conformance kit against a local folder and against
//! S3 on the moto server `scripts/test.d/40-s3.sh` starts
//! (`RIFFLE_TEST_S3_ENDPOINT`; those tests skip with a note without it, or fail
//! under `CI=true`), then what is the objects connector's own.

use std::time::Duration;

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::TestingSink;
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::format::Json;
use riffle_connectors::objects::testing::ObjectsTarget;
use riffle_connectors::objects::{ObjectSink, ObjectSource, STAGING};

#[test]
fn conformance_on_a_local_folder() {
    let local = ObjectsTarget::local();
    conformance::read_after_write(&local);
    conformance::resume_without_loss(&local);
    conformance::rescale(&local);
    conformance::missing_stream(&local);
}

#[test]
fn conformance_on_s3() {
    let Some(s3) = ObjectsTarget::s3_from_env() else {
        return;
    };
    conformance::read_after_write(&s3);
    conformance::resume_without_loss(&s3);
    conformance::missing_stream(&s3);
    conformance::unreachable_server(&s3);
}

#[test]
fn a_bad_line_is_named_by_object_and_line() {
    let local = ObjectsTarget::local();
    let folder = local.create("bad", 1);
    local.write(
        &folder,
        &["{\"a\": 1}".into(), "{\"a\": 2}".into(), "not json".into()],
    );
    let flow = Dataflow::new("bad");
    flow.input(
        "in",
        ObjectSource::new(local.settings(&folder))
            .format(Json::<serde_json::Value>::new())
            .tail(false),
    )
    .unwrap()
    .map("value", |l| l.value.to_string())
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"in\""), "{err}");
    assert!(
        err.contains("in-000.txt") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn bad_lines_go_to_the_dead_letter_file_and_the_run_goes_on() {
    let local = ObjectsTarget::local();
    let folder = local.create("letters", 1);
    local.write(
        &folder,
        &[
            "{\"a\": 1}".into(),
            "not json".into(),
            "{\"a\": 2}".into(),
            "{\"a\": ".into(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    let sink = TestingSink::new();
    let flow = Dataflow::new("letters");
    flow.input(
        "in",
        ObjectSource::new(local.settings(&folder))
            .format(Json::<serde_json::Value>::new())
            .dead_letters(riffle::dead_letters::DeadLetters::file(&letters))
            .tail(false),
    )
    .unwrap()
    .map("value", |l| l.value["a"].to_string())
    .unwrap()
    .output("out", sink.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(sink.take(), ["1", "2"]);
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[0]["step_id"], "in");
    assert_eq!(written[0]["line"], 2);
    assert_eq!(written[0]["text"], "not json");
    assert!(
        written[0]["object"]
            .as_str()
            .unwrap()
            .ends_with("in-000.txt")
    );
    assert!(written[0]["reason"].as_str().unwrap().contains("JSON"));
    assert_eq!(written[1]["line"], 4);
}

#[test]
fn bad_lines_go_to_the_dead_letter_stream_once_through_a_failure_and_resume() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use riffle::dead_letters::{DeadLetter, DeadLetters};
    use riffle::sinks::DirSink;

    let local = ObjectsTarget::local();
    let folder = local.create("letter-stream", 1);
    let lines: Vec<String> = (1..=2000)
        .map(|i| {
            if i % 10 == 0 {
                format!("bad {i}")
            } else {
                format!("{{\"n\": {i}}}")
            }
        })
        .collect();
    local.write(&folder, &lines);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    RecoveryStore::init(&store, 2).unwrap();
    let (good_dir, bad_dir) = (dir.path().join("good"), dir.path().join("bad"));
    let flow = |fail_at: u64| {
        let seen = Arc::new(AtomicU64::new(0));
        let flow = Dataflow::new("letter-stream");
        let values = flow
            .input(
                "in",
                ObjectSource::new(local.settings(&folder))
                    .format(Json::<serde_json::Value>::new())
                    .dead_letters(DeadLetters::stream())
                    .tail(false),
            )
            .unwrap();
        values
            .map("value", move |l| {
                std::thread::sleep(Duration::from_micros(200));
                if seen.fetch_add(1, Ordering::Relaxed) == fail_at {
                    panic!("injected failure");
                }
                let n = l.value["n"].to_string();
                (n.clone(), n)
            })
            .unwrap()
            .output("good", DirSink::new(&good_dir, 2))
            .unwrap();
        values
            .dead_letters()
            .unwrap()
            .map("letter", |l: DeadLetter| {
                let json = l.to_json();
                (
                    json["line"].to_string(),
                    format!("{} {}", json["line"], json["text"]),
                )
            })
            .unwrap()
            .output("bad", DirSink::new(&bad_dir, 2))
            .unwrap();
        flow
    };
    let execution = || {
        Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(5))
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(10)))
    };
    let err = execution().run(&flow(1200)).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    execution().run(&flow(u64::MAX)).unwrap();
    let mut want_bad: Vec<String> = (1..=200)
        .map(|i| format!("{} \"bad {}\"", i * 10, i * 10))
        .collect();
    want_bad.sort();
    assert_eq!(riffle::testing::sorted_lines(&bad_dir), want_bad);
    let mut want_good: Vec<String> = (1..=2000)
        .filter(|i| i % 10 != 0)
        .map(|i| i.to_string())
        .collect();
    want_good.sort();
    assert_eq!(riffle::testing::sorted_lines(&good_dir), want_good);
}

#[test]
fn letters_for_a_stream_no_step_reads_stop_the_run_saying_so() {
    let local = ObjectsTarget::local();
    let folder = local.create("unread", 1);
    local.write(&folder, &["{\"a\": 1}".into(), "oops".into()]);
    let flow = Dataflow::new("unread");
    flow.input(
        "in",
        ObjectSource::new(local.settings(&folder))
            .format(Json::<serde_json::Value>::new())
            .dead_letters(riffle::dead_letters::DeadLetters::stream())
            .tail(false),
    )
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("\"in\"") && err.contains("dead-letter stream") && err.contains("oops"),
        "{err}"
    );
}

#[test]
fn a_following_source_reads_objects_that_appear_and_not_staged_ones() {
    let local = ObjectsTarget::local();
    let folder = local.create("follow", 1);
    local.write(&folder, &["first".into()]);
    let seen = TestingSink::new();
    let flow = Dataflow::new("follow");
    flow.input(
        "in",
        ObjectSource::new(local.settings(&folder)).discover_every(Duration::from_millis(100)),
    )
    .unwrap()
    .map("value", |l| {
        // The only way a following source ends: the test's own stop word.
        assert!(l.value != "stop", "stop word from {}", l.object);
        assert!(
            l.value != "staged",
            "a staged object was read: {}",
            l.object
        );
        l.value
    })
    .unwrap()
    .output("out", seen.clone())
    .unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(
            Execution::new()
                .epoch_interval(Duration::from_millis(20))
                .run(&flow),
        );
    });
    std::thread::sleep(Duration::from_millis(500));
    let dir = local
        .settings(&folder)
        .url
        .trim_start_matches("file://")
        .to_string();
    std::fs::create_dir_all(format!("{dir}/2024/{STAGING}")).unwrap();
    std::fs::write(format!("{dir}/2024/{STAGING}/x.txt"), "staged\n").unwrap();
    std::fs::write(format!("{dir}/2024/b.txt"), "second\nthird").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(format!("{dir}/2024/c.txt"), "stop\n").unwrap();
    let err = result
        .recv_timeout(Duration::from_secs(30))
        .expect("the stop word in a new object was never read")
        .unwrap_err()
        .to_string();
    assert!(err.contains("stop word from 2024/c.txt"), "{err}");
    assert_eq!(seen.take_sorted(), ["first", "second", "third"]);
}

#[test]
fn a_run_that_ends_cleanly_leaves_every_line_in_place_and_nothing_staged() {
    let local = ObjectsTarget::local();
    let input = local.create("stage-in", 2);
    let output = local.create("stage-out", 1);
    let values: Vec<String> = (0..3000).map(|i| format!("s{i:05}")).collect();
    local.write(&input, &values);
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = || {
        let flow = Dataflow::new("stage");
        flow.input("in", local.source(&input))
            .unwrap()
            .map("slow", |l| {
                std::thread::sleep(Duration::from_micros(300));
                l.value
            })
            .unwrap()
            .output("out", ObjectSink::new(local.settings(&output)).parts(2))
            .unwrap();
        Execution::new()
            .epoch_interval(Duration::from_millis(20))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(50)))
            .run(&flow)
    };
    run().unwrap();
    // Every line in place once; nothing left staged.
    let objects = local.objects(&output, true);
    assert!(
        objects.iter().all(|(name, _)| !name.starts_with(STAGING)),
        "left staged: {objects:?}"
    );
    let mut got = local.read(&output);
    got.sort();
    assert_eq!(got, values);
}

#[test]
fn a_resume_inside_an_object_goes_on_from_the_exact_line() {
    // Lines of many lengths in one object of about a megabyte: many of them cross
    // the chunks the store reads in, and the run stops in the middle of it.
    let local = ObjectsTarget::local();
    let input = local.create("long-in", 1);
    let output = local.create("long-out", 1);
    let values: Vec<String> = (0..40_000)
        .map(|i| format!("{i:06}-{}", "x".repeat(i % 47)))
        .collect();
    local.write(&input, &values);
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = |fail_at: Option<usize>| {
        let flow = Dataflow::new("long");
        flow.input("in", local.source(&input))
            .unwrap()
            .map("check", move |l| {
                if fail_at.is_some_and(|n| l.line as usize == n) {
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the test stops the run at line {n}", n = l.line);
                }
                l.value
            })
            .unwrap()
            .output("out", ObjectSink::new(local.settings(&output)))
            .unwrap();
        Execution::new()
            .epoch_interval(Duration::from_millis(10))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(10)))
            .run(&flow)
    };
    assert!(run(Some(30_000)).is_err());
    run(None).unwrap();
    let mut got = local.read(&output);
    got.sort();
    assert_eq!(got, values);
}
