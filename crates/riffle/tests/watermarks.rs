//! Event-time watermarks per source partition: a slow partition holds the
//! watermark back even on a worker that also reads a fast one, an idle partition
//! stops holding it after the idle timeout, and a finished partition (or a worker
//! that reads none) never holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle::window::{Clock, DEFAULT_IDLE_TIMEOUT, TumblingWindower};
use riffle::{Dataflow, Result, testing};

/// What one partition of a [`Script`] does.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// Sends its times at once, then ends.
    Fast,
    /// Waits until every `Fast` partition has ended, then sends its times.
    Slow,
    /// Sends its times, then waits until a window has closed (or `patience` has
    /// passed) before it ends.
    WaitsForAWindow,
    /// Sends one item at time 0 and ends.
    One,
    /// Sends nothing until every other partition has ended.
    Quiet,
}

/// A source whose partitions play [`Role`]s; each item is `(partition, time)`.
#[derive(Clone)]
struct Script {
    parts: Vec<(&'static str, Role)>,
    /// Times `0, step, 2 * step, ...`, `count` of them, for partitions that send.
    count: i64,
    step: i64,
    patience: Duration,
    fast_left: Arc<AtomicUsize>,
    others_left: Arc<AtomicUsize>,
    window_seen: Arc<AtomicBool>,
    /// Set when a `WaitsForAWindow` partition saw a window close before its
    /// patience ran out.
    closed_in_time: Arc<AtomicBool>,
}

impl Script {
    fn new(parts: Vec<(&'static str, Role)>, count: i64, step: i64) -> Self {
        let fast = parts
            .iter()
            .filter(|(_, r)| matches!(r, Role::Fast))
            .count();
        let others = parts
            .iter()
            .filter(|(_, r)| !matches!(r, Role::Quiet))
            .count();
        Self {
            parts,
            count,
            step,
            patience: Duration::from_secs(10),
            fast_left: Arc::new(AtomicUsize::new(fast)),
            others_left: Arc::new(AtomicUsize::new(others)),
            window_seen: Arc::new(AtomicBool::new(false)),
            closed_in_time: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct Part {
    name: &'static str,
    role: Role,
    script: Script,
    next: i64,
    waiting_since: Option<Instant>,
    done: bool,
}

impl FixedPartitionedSource for Script {
    type Item = (String, i64);
    type State = ();
    type Partition = Part;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(self.parts.iter().map(|(n, _)| n.to_string()).collect())
    }

    fn build_part(&self, _: &str, for_part: &str, _: Option<()>) -> Result<Part> {
        let (name, role) = *self.parts.iter().find(|(n, _)| *n == for_part).unwrap();
        Ok(Part {
            name,
            role,
            script: self.clone(),
            next: 0,
            waiting_since: None,
            done: false,
        })
    }
}

impl Part {
    fn batch(&mut self, limit: i64) -> Vec<(String, i64)> {
        let end = (self.next + 50).min(limit);
        let items = (self.next..end)
            .map(|i| (self.name.to_string(), i * self.script.step))
            .collect();
        self.next = end;
        items
    }

    fn finish(&mut self) -> Poll<(String, i64)> {
        if !self.done {
            self.done = true;
            if matches!(self.role, Role::Fast) {
                self.script.fast_left.fetch_sub(1, Ordering::SeqCst);
            }
            if !matches!(self.role, Role::Quiet) {
                self.script.others_left.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Poll::Exhausted
    }
}

impl SourcePartition for Part {
    type Item = (String, i64);
    type State = ();

    fn next_batch(&mut self) -> Result<Poll<(String, i64)>> {
        let count = self.script.count;
        Ok(match self.role {
            Role::Fast if self.next < count => Poll::Ready(self.batch(count)),
            Role::Slow if self.script.fast_left.load(Ordering::SeqCst) > 0 => Poll::Pending,
            Role::Slow if self.next < count => Poll::Ready(self.batch(count)),
            Role::WaitsForAWindow if self.next < count => Poll::Ready(self.batch(count)),
            Role::WaitsForAWindow => {
                let since = *self.waiting_since.get_or_insert_with(Instant::now);
                if self.script.window_seen.load(Ordering::SeqCst) {
                    self.script.closed_in_time.store(true, Ordering::SeqCst);
                    self.finish()
                } else if since.elapsed() > self.script.patience {
                    self.finish()
                } else {
                    Poll::Pending
                }
            }
            Role::One if self.next < 1 => Poll::Ready(self.batch(1)),
            Role::Quiet if self.script.others_left.load(Ordering::SeqCst) > 0 => Poll::Pending,
            _ => self.finish(),
        })
    }
}

/// `(partition prefix, (window, count))` per 10-second window.
type Counts = TestingSink<(String, (i64, u64))>;
type LateItems = TestingSink<(String, i64)>;

/// The script's items through several stateless steps (so origins travel through
/// map, filter, branch and merge) into a count per 10-second window, keyed by the
/// role in the partition's name.
fn counting_flow(script: &Script, idle: Duration) -> Result<(Dataflow, Counts, LateItems)> {
    let flow = Dataflow::new("watermarks");
    let (counts, late) = (TestingSink::new(), TestingSink::new());
    let seen = script.window_seen.clone();
    let items = flow
        .input("events", script.clone())?
        .map("role", |(part, t): (String, i64)| {
            let role = part.split('-').nth(1).unwrap_or("").to_string();
            (role, t)
        })?
        .filter("all", |(_, t)| *t >= 0)?;
    let (even, odd) = items.branch("split", |(_, t)| (t / 1000) % 2 == 0)?;
    let windows = even
        .merge("join", &[&odd])?
        .key_on("key", |(role, _)| role.clone())?
        .count_window(
            "count",
            Clock::event(|e: &(String, (String, i64))| e.1.1, Duration::ZERO).idle_timeout(idle),
            TumblingWindower::new(Duration::from_secs(10), 0),
            |e| e.0.clone(),
        )?;
    windows
        .down
        .inspect("seen", move |_| seen.store(true, Ordering::SeqCst))?
        .map("strip", |(k, (w, n))| (k, (w, n)))?
        .output("counts", counts.clone())?;
    windows
        .late
        .map("late_value", |(_, late)| late.value.1)?
        .output("late", late.clone())?;
    Ok((flow, counts, late))
}

#[test]
fn a_slow_partition_holds_the_watermark_back_on_a_worker_that_also_reads_a_fast_one() -> Result<()>
{
    // 1,000 items per partition, 100 ms apart: 100 s, ten windows of 100 each.
    type Shape = (
        &'static str,
        Vec<(&'static str, Role)>,
        fn(&Dataflow) -> Result<()>,
    );
    let shapes: Vec<Shape> = vec![
        (
            "1 worker",
            vec![("a-fast", Role::Fast), ("b-slow", Role::Slow)],
            |f| testing::run(f),
        ),
        (
            "2 workers",
            vec![
                ("a-fast", Role::Fast),
                ("b-fast", Role::Fast),
                ("c-slow", Role::Slow),
                ("d-slow", Role::Slow),
            ],
            |f| testing::run_workers(f, 2),
        ),
        (
            "2 processes",
            vec![
                ("a-fast", Role::Fast),
                ("b-fast", Role::Fast),
                ("c-slow", Role::Slow),
                ("d-slow", Role::Slow),
            ],
            |f| testing::run_cluster(f, 2, 1),
        ),
    ];
    for (shape, parts, run) in shapes {
        let per_role = parts
            .iter()
            .filter(|(_, r)| matches!(r, Role::Fast))
            .count() as u64;
        let script = Script::new(parts, 1000, 100);
        let (flow, counts, late) = counting_flow(&script, Duration::from_secs(60))?;
        run(&flow)?;
        let late = late.take();
        assert!(
            late.is_empty(),
            "{shape}: {} slow items came out late",
            late.len()
        );
        let mut expected: Vec<(String, (i64, u64))> = Vec::new();
        for role in ["fast", "slow"] {
            for w in 0..10 {
                expected.push((role.to_string(), (w, 100 * per_role)));
            }
        }
        assert_eq!(counts.take_sorted(), expected, "{shape}");
    }
    Ok(())
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_after_the_idle_timeout() -> Result<()> {
    // The live partition sends 50 s of items, then waits for a window to close
    // while the quiet one sends nothing.
    let parts = vec![("a-live", Role::WaitsForAWindow), ("b-quiet", Role::Quiet)];
    let script = Script::new(parts.clone(), 500, 100);
    let (flow, counts, late) = counting_flow(&script, Duration::from_millis(300))?;
    let started = Instant::now();
    testing::run(&flow)?;
    assert!(
        script.closed_in_time.load(Ordering::SeqCst),
        "no window closed while the quiet partition was idle"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(late.take().is_empty());
    let counts = counts.take_sorted();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.iter().all(|(_, (_, n))| *n == 100), "{counts:?}");

    // With an idle timeout longer than the wait, the quiet partition holds every
    // window open until the input ends.
    let mut script = Script::new(parts, 500, 100);
    script.patience = Duration::from_secs(1);
    let (flow, counts, _) = counting_flow(&script, Duration::from_secs(3600))?;
    testing::run(&flow)?;
    assert!(
        !script.closed_in_time.load(Ordering::SeqCst),
        "a window closed while an open partition had not been heard from"
    );
    assert_eq!(counts.take().len(), 5, "every window closes at the end");
    Ok(())
}

#[test]
fn a_finished_partition_or_a_worker_without_partitions_never_holds_the_watermark() -> Result<()> {
    // One worker: "b-one" sends one item and ends; the idle timeout is an hour,
    // so only its end can let the watermark move.
    let script = Script::new(
        vec![("a-live", Role::WaitsForAWindow), ("b-one", Role::One)],
        500,
        100,
    );
    let (flow, counts, _) = counting_flow(&script, Duration::from_secs(3600))?;
    testing::run(&flow)?;
    assert!(
        script.closed_in_time.load(Ordering::SeqCst),
        "the finished partition held windows open"
    );
    assert_eq!(counts.take().len(), 6, "5 live windows and the one item's");

    // Two workers, one partition: the worker that reads nothing says so at once.
    let script = Script::new(vec![("a-live", Role::WaitsForAWindow)], 500, 100);
    let (flow, counts, _) = counting_flow(&script, Duration::from_secs(3600))?;
    testing::run_workers(&flow, 2)?;
    assert!(
        script.closed_in_time.load(Ordering::SeqCst),
        "the worker without partitions held windows open"
    );
    assert_eq!(counts.take().len(), 5);
    Ok(())
}

#[test]
fn a_failure_in_a_traced_step_stops_the_run_with_the_step_named() -> Result<()> {
    let script = Script::new(
        vec![
            ("a-fast", Role::Fast),
            ("b-fast", Role::Fast),
            ("c-slow", Role::Slow),
        ],
        1000,
        100,
    );
    let flow = Dataflow::new("fails");
    flow.input("events", script)?
        .map("explode", |(part, t): (String, i64)| {
            assert!(t != 50_000 || part != "b-fast", "bad item");
            (part, t)
        })?
        .count_window(
            "count",
            Clock::event(|e: &(String, i64)| e.1, Duration::ZERO),
            TumblingWindower::new(Duration::from_secs(10), 0),
            |e| e.0.clone(),
        )?
        .down
        .output("out", TestingSink::new())?;
    let err = testing::run_workers(&flow, 2).unwrap_err();
    assert!(err.to_string().contains("\"explode\""), "{err}");
    Ok(())
}

/// A source whose partitions send `(name, time)` items at explicit epochs, one
/// item per poll; a partition with a gap waits that long between items.
#[derive(Clone)]
struct AtEpochs(Vec<(&'static str, Duration, Vec<EpochAndTime>)>);

/// An item's epoch and event time.
type EpochAndTime = (u64, i64);

impl AtEpochs {
    fn new(parts: Vec<(&'static str, Vec<(u64, i64)>)>) -> Self {
        Self(
            parts
                .into_iter()
                .map(|(n, items)| (n, Duration::ZERO, items))
                .collect(),
        )
    }
}

struct AtEpochsPart {
    name: &'static str,
    gap: Duration,
    next_at: Instant,
    items: std::vec::IntoIter<(u64, i64)>,
}

impl FixedPartitionedSource for AtEpochs {
    type Item = (String, i64);
    type State = ();
    type Partition = AtEpochsPart;

    fn list_parts(&self, _: &str) -> Result<Vec<String>> {
        Ok(self.0.iter().map(|(n, _, _)| n.to_string()).collect())
    }

    fn build_part(&self, _: &str, for_part: &str, _: Option<()>) -> Result<AtEpochsPart> {
        let (name, gap, items) = self.0.iter().find(|(n, _, _)| *n == for_part).unwrap();
        Ok(AtEpochsPart {
            name,
            gap: *gap,
            next_at: Instant::now(),
            items: items.clone().into_iter(),
        })
    }
}

impl SourcePartition for AtEpochsPart {
    type Item = (String, i64);
    type State = ();

    fn next_batch(&mut self) -> Result<Poll<(String, i64)>> {
        if Instant::now() < self.next_at {
            return Ok(Poll::Pending);
        }
        self.next_at = Instant::now() + self.gap;
        Ok(match self.items.next() {
            Some((epoch, t)) => Poll::ReadyAt(epoch, vec![(self.name.to_string(), t)]),
            None => Poll::Exhausted,
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        Some(self.next_at)
    }
}

fn count_all(events: &riffle::Stream<(String, i64)>) -> Result<(Counts, TestingSink<i64>)> {
    count_all_idle(events, DEFAULT_IDLE_TIMEOUT)
}

fn count_all_idle(
    events: &riffle::Stream<(String, i64)>,
    idle: Duration,
) -> Result<(Counts, TestingSink<i64>)> {
    let (counts, late) = (TestingSink::new(), TestingSink::new());
    let windows = events.count_window(
        "count",
        Clock::event(|e: &(String, i64)| e.1, Duration::ZERO).idle_timeout(idle),
        TumblingWindower::new(Duration::from_secs(10), 0),
        |_| "all".to_string(),
    )?;
    windows.down.output("counts", counts.clone())?;
    windows
        .late
        .map("late_value", |(_, late)| late.value.1)?
        .output("late", late.clone())?;
    Ok((counts, late))
}

#[test]
fn a_partition_that_ends_at_a_later_epoch_is_not_ended_before_its_last_items() -> Result<()> {
    // One worker reads both partitions; "a" holds the source's epoch at 3 while "b"
    // sends at epoch 10 and ends. Its end must be handled after its item, or the
    // watermark (both partitions ended) jumps to the end of time first.
    let flow = Dataflow::new("ends");
    let source = AtEpochs::new(vec![
        ("a", vec![(3, 500), (4, 600)]),
        ("b", vec![(10, 1_000)]),
    ]);
    let (counts, late) = count_all(&flow.input("events", source)?)?;
    testing::run(&flow)?;
    assert_eq!(late.take(), Vec::<i64>::new());
    assert_eq!(counts.take(), [("all".to_string(), (0, 3))]);

    // The same through a merge of two sources: the first one's end travels behind
    // the second one's earlier batches and must keep its own epoch.
    let flow = Dataflow::new("ends-merged");
    let first = flow.input(
        "first",
        AtEpochs::new(vec![("a", vec![(0, 1_000), (5, 2_000)])]),
    )?;
    let second = flow.input(
        "second",
        AtEpochs::new(vec![("b", vec![(0, 500), (1, 600), (2, 700)])]),
    )?;
    let (counts, late) = count_all(&first.merge("both", &[&second])?)?;
    testing::run(&flow)?;
    assert_eq!(late.take(), Vec::<i64>::new());
    assert_eq!(counts.take(), [("all".to_string(), (0, 5))]);
    Ok(())
}

#[test]
fn a_panic_in_the_event_time_function_stops_the_run_naming_the_window() -> Result<()> {
    let flow = Dataflow::new("bad-time");
    let source = AtEpochs::new(vec![("a", vec![(0, 1_000), (1, -1)]), ("b", vec![(0, 5)])]);
    flow.input("events", source)?
        .count_window(
            "count",
            Clock::event(
                |e: &(String, i64)| {
                    assert!(e.1 >= 0, "negative time");
                    e.1
                },
                Duration::ZERO,
            ),
            TumblingWindower::new(Duration::from_secs(10), 0),
            |e| e.0.clone(),
        )?
        .down
        .output("out", TestingSink::new())?;
    for workers in [1, 2] {
        let err = testing::run_workers(&flow, workers).unwrap_err();
        assert!(
            err.to_string().contains("\"count\""),
            "{workers} workers: {err}"
        );
    }
    Ok(())
}

#[test]
fn a_partition_whose_items_wait_for_a_later_epoch_is_busy_not_idle() -> Result<()> {
    // "b" sends its one item at once, at epoch 10; "a" takes 600 ms of wall time
    // for epochs 3 to 5, far past the 100 ms idle timeout, and its last item would
    // close window 0. "b" must hold the watermark until its epoch is handled.
    let flow = Dataflow::new("busy");
    let source = AtEpochs(vec![
        (
            "a",
            Duration::from_millis(200),
            vec![(3, 500), (4, 600), (5, 15_000)],
        ),
        ("b", Duration::ZERO, vec![(10, 1_000)]),
    ]);
    let (counts, late) =
        count_all_idle(&flow.input("events", source)?, Duration::from_millis(100))?;
    testing::run(&flow)?;
    assert_eq!(late.take(), Vec::<i64>::new());
    assert_eq!(
        counts.take_sorted(),
        [("all".to_string(), (0, 3)), ("all".to_string(), (1, 1))]
    );
    Ok(())
}
