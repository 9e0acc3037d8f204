//! Recovery: a run that fails part-way resumes from its last committed snapshot and
//! ends with exactly the output of a run that never failed; bad stores are refused.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::DirSink;
use riffle::sources::{FileSource, GeneratorSource, TestingSource};
use riffle::testing::sorted_lines;
use riffle::window::{Clock, TumblingWindower};
use riffle::{Dataflow, Execution, Result};

/// An input file of `key,time_ms` lines in time order: 40 keys, one event per
/// millisecond. (One partition: the watermark is tracked per upstream worker, so
/// partitions read by one worker must not drift apart in event time; see
/// `riffle::window`.)
fn write_events(dir: &Path, events: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::new();
    for i in 0..events {
        text.push_str(&format!("k{},{}\n", i % 40, i));
    }
    std::fs::write(dir.join("events.csv"), text).unwrap();
}

/// Counts per key and 1-second window, plus a running total per key, written to 3
/// files. Panics on the item numbered `fail_at` (counted across the run) if given.
fn flow(input: &Path, output: &Path, fail_at: Arc<AtomicU64>) -> Result<Dataflow> {
    let flow = Dataflow::new("windowed-counts");
    let seen = Arc::new(AtomicU64::new(0));
    let events = flow
        .input("events", FileSource::new(input).batch_size(50))?
        .map("parse", move |line: String| {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            if n == fail_at.load(Ordering::Relaxed) {
                panic!("injected failure at item {n}");
            }
            let (key, time) = line.split_once(',').expect("key,time");
            (key.to_string(), time.parse::<i64>().expect("a time"))
        })?;
    let windows = events.window(
        "count",
        Clock::event(|t: &i64| *t, Duration::ZERO).idle_timeout(Duration::from_millis(200)),
        TumblingWindower::new(Duration::from_secs(1), 0),
        |_| 0u64,
        |n, _, _| *n += 1,
        |n, m| *n += m,
    )?;
    let totals = events.stateful_map("total", |_| 0u64, |n, _| (Some(n + 1), n + 1))?;
    let lines = windows.down.map("window_line", |(k, (w, n))| {
        (k.clone(), format!("w {k} {w} {n}"))
    })?;
    let last = totals
        .filter("every_1000th", |(_, n)| n % 1000 == 0)?
        .map("total_line", |(k, n)| (k.clone(), format!("t {k} {n}")))?;
    let late = windows.late.map("late_line", |(k, late)| {
        (k.clone(), format!("l {k} {}", late.time))
    })?;
    lines
        .merge("lines", &[&last, &late])?
        .output("out", DirSink::new(output, 3))?;
    Ok(flow)
}

/// Asserts two sorted line lists are equal, showing only what differs.
fn same_lines(got: &[String], expected: &[String]) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|l| got.binary_search(l).is_err())
        .collect();
    let extra: Vec<&String> = got
        .iter()
        .filter(|l| expected.binary_search(l).is_err())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got.len() == expected.len(),
        "{} lines, expected {}; {} missing (first: {:?}), {} unexpected (first: {:?})",
        got.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
    );
}

#[test]
fn a_failed_run_resumes_and_writes_exactly_what_a_clean_run_writes() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    write_events(&input, 60_000);

    let never = Arc::new(AtomicU64::new(u64::MAX));
    let clean = tmp.path().join("clean");
    Execution::new()
        .workers(2)
        .run(&flow(&input, &clean, never.clone())?)?;
    let expected = sorted_lines(&clean);
    assert_eq!(
        expected.iter().filter(|l| l.starts_with("w ")).count(),
        60 * 40
    );

    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 3)?;
    let out = tmp.path().join("out");
    let recovery = Recovery::new(&store).snapshot_interval(Duration::from_millis(10));
    let execution = |workers| {
        Execution::new()
            .workers(workers)
            .epoch_interval(Duration::from_millis(5))
            .recovery(recovery.clone())
    };
    // Fail three times at different places (items counted from each resume), with
    // different worker counts.
    for (fail_at, workers) in [(20_000, 2), (15_000, 1), (10_000, 3)] {
        let err = execution(workers)
            .run(&flow(&input, &out, Arc::new(AtomicU64::new(fail_at)))?)
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let resumed = RecoveryStore::open(
            &store,
            "windowed-counts",
            &flow(&input, &out, never.clone())?.fingerprint(),
        )?
        .resume_epoch()?;
        assert!(
            resumed.is_some(),
            "a snapshot was committed before item {fail_at}"
        );
    }
    execution(2).run(&flow(&input, &out, never.clone())?)?;
    same_lines(&sorted_lines(&out), &expected);
    Ok(())
}

#[test]
fn dynamic_sources_and_stores_of_other_flows_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 1)?;
    let recovery = Recovery::new(&store);

    let flow = Dataflow::new("generated");
    flow.input_dynamic("numbers", GeneratorSource::new(10, |i| i))?
        .inspect("look", |_| {})?;
    let err = Execution::new()
        .recovery(recovery.clone())
        .run(&flow)
        .unwrap_err();
    assert!(
        err.to_string().contains("dynamic source cannot resume"),
        "{err}"
    );

    let other = Dataflow::new("another");
    let input = tmp.path().join("in");
    write_events(&input, 10);
    other
        .input("lines", FileSource::new(&input))?
        .inspect("look", |_| {})?;
    let err = Execution::new().recovery(recovery).run(&other).unwrap_err();
    assert!(
        err.to_string().contains("made for flow \"generated\""),
        "{err}"
    );

    let missing = Execution::new()
        .recovery(Recovery::new(tmp.path().join("nowhere")))
        .run(&other)
        .unwrap_err();
    assert!(missing.to_string().contains(" recovery init "), "{missing}");
    Ok(())
}

/// Per epoch `e` of 100: `a` and `b` at time `10 e` ms, and a straggler `c` at
/// time 0, late from epoch 6 on. Counted in 50 ms tumbling windows; windows and
/// late items written to 2 files. Panics on the `fail_at`-th item.
fn stragglers(out: &Path, fail_at: u64) -> Result<Dataflow> {
    let flow = Dataflow::new("stragglers");
    let items: Vec<(u64, (char, i64))> = (0..100u64)
        .flat_map(|e| {
            [
                (e, ('a', 10 * e as i64)),
                (e, ('b', 10 * e as i64)),
                (e, ('c', 0)),
            ]
        })
        .collect();
    let seen = Arc::new(AtomicU64::new(0));
    let windows = flow
        .input("events", TestingSource::with_epochs(items))?
        .map("fail", move |item| {
            if seen.fetch_add(1, Ordering::Relaxed) == fail_at {
                panic!("injected failure");
            }
            item
        })?
        .count_window(
            "count",
            Clock::event(|e: &(char, i64)| e.1, Duration::ZERO)
                .idle_timeout(Duration::from_secs(60)),
            TumblingWindower::new(Duration::from_millis(50), 0),
            |e| e.0,
        )?;
    let down = windows
        .down
        .map("down_line", |(k, (w, n))| (k, format!("w {k} {w} {n}")))?;
    let late = windows
        .late
        .map("late_line", |(k, late)| (k, format!("l {k} {}", late.time)))?;
    down.merge("lines", &[&late])?
        .output("out", DirSink::new(out, 2))?;
    Ok(flow)
}

#[test]
fn a_window_that_closed_before_a_failure_stays_closed_after_the_resume() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    Execution::new().run(&stragglers(&clean, u64::MAX)?)?;
    let expected = sorted_lines(&clean);
    // c's only window holds its first straggler; the 94 after epoch 5 are late.
    assert!(expected.contains(&"w c 0 6".to_string()), "{expected:?}");
    assert_eq!(expected.iter().filter(|l| l.starts_with("l c")).count(), 94);

    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 2)?;
    let out = tmp.path().join("out");
    let execution = || {
        Execution::new()
            .epoch_interval(Duration::from_millis(1))
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(1)))
    };
    let err = execution().run(&stragglers(&out, 200)?).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let flow = stragglers(&out, u64::MAX)?;
    let resumed = RecoveryStore::open(&store, "stragglers", &flow.fingerprint())?.resume_epoch()?;
    assert!(resumed.is_some_and(|e| e >= 10), "resumed at {resumed:?}");
    execution().run(&flow)?;
    same_lines(&sorted_lines(&out), &expected);
    Ok(())
}

#[test]
fn resuming_into_another_output_folder_is_refused_naming_the_step() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    write_events(&input, 20_000);
    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 1)?;
    let never = Arc::new(AtomicU64::new(u64::MAX));
    let execution = || {
        Execution::new()
            .epoch_interval(Duration::from_millis(2))
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(2)))
    };
    execution().run(&flow(&input, &tmp.path().join("out"), never.clone())?)?;
    let err = execution()
        .run(&flow(&input, &tmp.path().join("elsewhere"), never)?)
        .unwrap_err()
        .to_string();
    assert!(err.contains("step \"out\""), "{err}");
    assert!(
        err.contains("resume with the same output location"),
        "{err}"
    );
    Ok(())
}

/// A source of `count` numbers that then waits, idle, until its commit hook has
/// been told every one of them is committed, and only then ends (or gives up after
/// `patience`, saying so in `gave_up`).
struct IdleAfter {
    count: u64,
    patience: Duration,
    gave_up: Arc<AtomicU64>,
}

struct IdleAfterPart {
    count: u64,
    sent: u64,
    committed: u64,
    idle_since: Option<std::time::Instant>,
    patience: Duration,
    gave_up: Arc<AtomicU64>,
}

impl riffle::sources::FixedPartitionedSource for IdleAfter {
    type Item = (String, u64);
    type State = u64;
    type Partition = IdleAfterPart;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(vec!["only".to_string()])
    }

    fn build_part(&self, _: &str, _: &str, resume: Option<u64>) -> Result<IdleAfterPart> {
        Ok(IdleAfterPart {
            count: self.count,
            sent: resume.unwrap_or(0),
            committed: 0,
            idle_since: None,
            patience: self.patience,
            gave_up: self.gave_up.clone(),
        })
    }
}

impl riffle::sources::SourcePartition for IdleAfterPart {
    type Item = (String, u64);
    type State = u64;

    fn next_batch(&mut self) -> Result<riffle::sources::Poll<(String, u64)>> {
        use riffle::sources::Poll;
        if self.sent < self.count {
            self.sent += 1;
            return Ok(Poll::Ready(vec![(
                format!("k{}", self.sent % 3),
                self.sent,
            )]));
        }
        if self.committed >= self.count {
            return Ok(Poll::Exhausted);
        }
        let since = *self.idle_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() > self.patience {
            self.gave_up.store(self.committed + 1, Ordering::SeqCst);
            return Ok(Poll::Exhausted);
        }
        Ok(Poll::Pending)
    }

    fn snapshot(&self) -> Option<u64> {
        Some(self.sent)
    }

    fn commit(&mut self, state: &u64) -> Result<()> {
        self.committed = self.committed.max(*state);
        Ok(())
    }
}

#[test]
fn an_idle_flow_with_a_keyed_step_still_commits_what_it_has_read() -> Result<()> {
    // A keyed step kept a capability for the last epoch that brought it items, so
    // once its source went idle the flow's progress, and with it every recovery
    // commit, stopped there: the last items read were never acknowledged upstream
    // (and a two-phase sink never made them visible) until more items came.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 1)?;
    let gave_up = Arc::new(AtomicU64::new(0));
    let flow = Dataflow::new("idle");
    flow.input(
        "numbers",
        IdleAfter {
            count: 20,
            patience: Duration::from_secs(10),
            gave_up: gave_up.clone(),
        },
    )?
    .stateful_map("sum", |_| 0u64, |s, n: u64| (Some(s + n), s + n))?
    .map("line", |(k, sum): (String, u64)| {
        (k.clone(), format!("{k},{sum}"))
    })?
    .output("out", DirSink::new(tmp.path().join("out"), 1))?;
    Execution::new()
        .epoch_interval(Duration::from_millis(20))
        .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(40)))
        .run(&flow)?;
    assert_eq!(
        gave_up.load(Ordering::SeqCst),
        0,
        "the source waited 10 s for the commit of its last items, idle, in vain"
    );
    Ok(())
}

#[test]
fn a_run_that_completes_commits_its_end_and_the_same_run_again_reads_only_what_is_new() -> Result<()>
{
    // A bounded run used to end without committing its last snapshot: started
    // again on the same store, it resumed at an older one (or, with no snapshot
    // committed at all, at the start) and read everything after it again.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let lines =
        |from: u64, to: u64| -> String { (from..to).map(|i| format!("k{}\n", i % 4)).collect() };
    std::fs::write(input.join("a.txt"), lines(0, 1000)).unwrap();
    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 2)?;
    let out = tmp.path().join("out");
    let run = |workers: usize| -> Result<u64> {
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let flow = Dataflow::new("counts");
        flow.input("lines", FileSource::new(&input).batch_size(100))?
            .map("key", move |line: String| {
                counter.fetch_add(1, Ordering::Relaxed);
                (line, 1u64)
            })?
            .stateful_map("count", |_| 0u64, |n, one: u64| (Some(n + one), n + one))?
            .filter("every_100th", |(_, n)| n % 100 == 0)?
            .map("line", |(k, n): (String, u64)| {
                (k.clone(), format!("{k} {n}"))
            })?
            .output("out", DirSink::new(&out, 2))?;
        // Snapshots every 10 s: a run of a few milliseconds passes none.
        Execution::new()
            .workers(workers)
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_secs(10)))
            .run(&flow)?;
        Ok(read.load(Ordering::Relaxed))
    };
    assert_eq!(run(2)?, 1000);
    let first = sorted_lines(&out);
    assert_eq!(first.len(), 8, "{first:?}");
    assert_eq!(run(1)?, 0, "the same run again reads nothing new");
    assert_eq!(sorted_lines(&out), first);
    // New input: only it is read, and the counts go on from the committed end.
    std::fs::write(input.join("b.txt"), lines(1000, 1400)).unwrap();
    assert_eq!(run(2)?, 400);
    let mut expected = first.clone();
    expected.extend((0..4).map(|k| format!("k{k} 300")));
    expected.sort();
    same_lines(&sorted_lines(&out), &expected);
    Ok(())
}

#[test]
fn a_run_with_final_aggregations_completes_and_commits_its_end() {
    // A final aggregation (count_final) kept the capability of the last epoch
    // that brought it items until its input ended, so the flow's progress stayed
    // there: a completed run's end could never be committed, and the run waited
    // for that commit for ever.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("words.txt");
    let words: String = (0..600).map(|i| format!("w{}\n", i % 6)).collect();
    std::fs::write(&input, words).unwrap();
    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 1).unwrap();
    let out = tmp.path().join("out");
    let flow = || -> Result<Dataflow> {
        let flow = Dataflow::new("final-counts");
        flow.input("words", FileSource::new(&input).batch_size(50))?
            .count_final("count", |w: String| w)?
            .map("line", |(w, n): (String, u64)| {
                (w.clone(), format!("{w} {n}"))
            })?
            .output("out", DirSink::new(&out, 1))?;
        Ok(flow)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (store2, flow2) = (store.clone(), flow().unwrap());
    std::thread::spawn(move || {
        let outcome = Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(5))
            .recovery(Recovery::new(&store2).snapshot_interval(Duration::from_millis(20)))
            .run(&flow2);
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the run should complete, not wait for ever")
        .unwrap();
    let expected: Vec<String> = (0..6).map(|w| format!("w{w} 100")).collect();
    assert_eq!(sorted_lines(&out), expected);
    // Its end is committed: the same run again reads nothing and writes the same.
    Execution::new()
        .workers(1)
        .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(20)))
        .run(&flow().unwrap())
        .unwrap();
    assert_eq!(sorted_lines(&out), expected);
}
