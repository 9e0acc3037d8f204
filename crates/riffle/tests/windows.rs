//! Window operators: results, late items, metadata, bounded state, and the same
//! answers on one worker, several workers and a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, PartitionedGenerator, TestingSource};
use riffle::window::{
    Clock, LateReason, SessionWindower, SlidingWindower, TumblingWindower, WindowMeta,
};
use riffle::{Dataflow, Result, testing};

fn event_clock() -> Clock<(i64, u32)> {
    Clock::event(|e: &(i64, u32)| e.0, Duration::ZERO)
}

/// 1,000 keys, one event per millisecond, counted per key in 10-second windows.
/// `(key, (window, count))`.
type Counts = TestingSink<(u64, (i64, u64))>;

fn counts_flow(events: u64) -> Result<(Dataflow, Counts)> {
    let flow = Dataflow::new("counts");
    let out = TestingSink::new();
    flow.input_dynamic(
        "events",
        GeneratorSource::new(events, |i| (i % 1000, (i as i64, 1u32))),
    )?
    .count_window(
        "count",
        Clock::event(|e: &(u64, (i64, u32))| e.1.0, Duration::ZERO),
        TumblingWindower::new(Duration::from_secs(10), 0),
        |e| e.0,
    )?
    .down
    .output("out", out.clone())?;
    Ok((flow, out))
}

#[test]
fn tumbling_counts_are_the_same_on_one_two_and_four_workers() -> Result<()> {
    let (flow, out) = counts_flow(50_000)?;
    testing::run(&flow)?;
    let one = out.take_sorted();
    // 50 s of events: 5 windows per key, 10 events per key and window.
    assert_eq!(one.len(), 5000);
    assert!(one.iter().all(|(_, (_, n))| *n == 10), "{:?}", &one[..3]);
    for workers in [2, 4] {
        let (flow, out) = counts_flow(50_000)?;
        testing::run_workers(&flow, workers)?;
        assert_eq!(out.take_sorted(), one, "{workers} workers");
    }
    let (flow, out) = counts_flow(50_000)?;
    testing::run_cluster(&flow, 2, 2)?;
    assert_eq!(out.take_sorted(), one, "2 processes of 2 workers");
    Ok(())
}

/// What came out late: `(key, late item)`.
type LateEvents = TestingSink<(u64, riffle::window::Late<(u64, i64)>)>;

/// The counts flow read from `parts` partitions that move through event time at
/// the same pace (partition `p` holds events `p`, `p + parts`, ...), with the
/// window's drift set where `drift` says; also returns the late stream.
fn partitioned_counts_flow(
    events: u64,
    parts: u64,
    drift: Option<Duration>,
) -> Result<(Dataflow, Counts, LateEvents)> {
    let flow = Dataflow::new("counts");
    let out = TestingSink::new();
    let late = TestingSink::new();
    let per_part = events / parts;
    let event = move |i: u64| {
        let j = (i % per_part) * parts + i / per_part;
        (j % 1000, j as i64)
    };
    let mut clock = Clock::event(|e: &(u64, i64)| e.1, Duration::ZERO);
    if let Some(drift) = drift {
        clock = clock.max_drift(drift);
    }
    let windows = flow
        .input(
            "events",
            PartitionedGenerator::new(events, parts, event).batch_size(500),
        )?
        .count_window(
            "count",
            clock,
            TumblingWindower::new(Duration::from_secs(10), 0),
            |e| e.0,
        )?;
    windows.down.output("out", out.clone())?;
    windows.late.output("late", late.clone())?;
    Ok((flow, out, late))
}

#[test]
fn a_windowed_flow_on_four_workers_over_eight_partitions_gives_the_one_worker_result() -> Result<()>
{
    let (flow, out, late) = partitioned_counts_flow(200_000, 1, None)?;
    testing::run(&flow)?;
    let one = out.take_sorted();
    // 200 s of events: 20 windows per key, 10 events per key and window.
    assert_eq!(one.len(), 20_000);
    assert!(one.iter().all(|(_, (_, n))| *n == 10), "{:?}", &one[..3]);
    assert!(late.take().is_empty());
    // Pacing on (the default drift, and a drift of 1 ms that holds a partition
    // back after nearly every batch) changes when items are read, never what is
    // counted.
    for drift in [None, Some(Duration::from_millis(1))] {
        for (workers, parts) in [(1, 8), (4, 8)] {
            let (flow, out, late) = partitioned_counts_flow(200_000, parts, drift)?;
            testing::run_workers(&flow, workers)?;
            assert_eq!(
                out.take_sorted(),
                one,
                "{workers} workers over {parts} partitions, drift {drift:?}"
            );
            assert_eq!(late.take(), [], "{workers} workers, drift {drift:?}");
        }
    }
    Ok(())
}

/// Sums and metadata of sliding windows over partitions whose items come out of
/// order (up to 90 ms behind their partition's latest), within the allowed
/// lateness so none is late; and how many values were combined where read.
#[allow(clippy::type_complexity)]
fn combined_sliding_run(
    workers: usize,
) -> Result<(Vec<(u64, (i64, i64))>, Vec<(u64, (i64, WindowMeta))>, u64)> {
    let (events, parts) = (60_000u64, 6u64);
    let per_part = events / parts;
    let event = move |i: u64| {
        let j = (i % per_part) * parts + i / per_part;
        // Within each run of 10 of a partition, later items go first.
        let jitter = (9 - (i % per_part) % 10) as i64 * 10;
        (j % 97, (j as i64) - jitter)
    };
    let flow = Dataflow::new("combined");
    let (out, meta, late) = (TestingSink::new(), TestingSink::new(), TestingSink::new());
    let windows = flow
        .input(
            "events",
            PartitionedGenerator::new(events, parts, event).batch_size(700),
        )?
        .reduce_window(
            "sum",
            Clock::event(|t: &i64| *t, Duration::from_millis(100)),
            SlidingWindower::new(Duration::from_secs(3), Duration::from_secs(1), 0),
            |a, b| a + b,
        )?;
    windows.down.output("out", out.clone())?;
    windows.meta.output("meta", meta.clone())?;
    windows.late.output("late", late.clone())?;
    testing::run_workers(&flow, workers)?;
    assert_eq!(late.take().len(), 0, "{workers} workers: nothing is late");
    Ok((
        out.take_sorted(),
        meta.take_sorted(),
        windows.live.combined(),
    ))
}

#[test]
fn values_combined_where_they_were_read_give_the_one_worker_windows() -> Result<()> {
    let (sums, meta, combined) = combined_sliding_run(1)?;
    assert_eq!(combined, 0, "one worker has no exchange to save");
    // 60 s of events in 3 s windows every 1 s: 62 or 63 windows per key (items
    // moved before 0 open one more), 97 keys.
    assert!((97 * 62..=97 * 63).contains(&meta.len()), "{}", meta.len());
    assert_eq!(sums.len(), meta.len());
    for workers in [2, 3] {
        let (s, m, combined) = combined_sliding_run(workers)?;
        assert!(
            combined > 30_000,
            "{workers} workers combined only {combined} of 60,000 values"
        );
        assert_eq!(s, sums, "{workers} workers: the sums");
        assert_eq!(m, meta, "{workers} workers: the metadata");
    }
    Ok(())
}

#[test]
fn sliding_windows_count_each_item_in_every_window_it_falls_in() -> Result<()> {
    let flow = Dataflow::new("sliding");
    let out = TestingSink::new();
    let items: Vec<(char, (i64, u32))> = (0..100).map(|t| ('k', (t * 100, 0))).collect();
    flow.input("inp", TestingSource::new(items))?
        .fold_window(
            "count",
            event_clock(),
            SlidingWindower::new(Duration::from_secs(2), Duration::from_secs(1), 0),
            |_| 0u32,
            |n, _| n + 1,
            |a, b| a + b,
        )?
        .down
        .output("out", out.clone())?;
    testing::run(&flow)?;
    let got: BTreeMap<i64, u32> = out.take().into_iter().map(|(_, w)| w).collect();
    // Items at 0..10 s: windows start every second from -1 s; the edges are half full.
    let expected: BTreeMap<i64, u32> = [
        (-1, 10),
        (0, 20),
        (1, 20),
        (2, 20),
        (3, 20),
        (4, 20),
        (5, 20),
        (6, 20),
        (7, 20),
        (8, 20),
        (9, 10),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn late_items_come_out_on_the_late_stream_with_the_reason() -> Result<()> {
    let flow = Dataflow::new("late");
    let (down, late, meta) = (TestingSink::new(), TestingSink::new(), TestingSink::new());
    // Epochs order the arrival: the item at 1 s arrives after the watermark passed 20 s.
    let items = vec![
        (0, ('k', (1_000, 1))),
        (1, ('k', (25_000, 2))),
        (2, ('k', (1_500, 3))),
    ];
    let out = flow
        .input("inp", TestingSource::with_epochs(items))?
        .collect_window(
            "collect",
            event_clock(),
            TumblingWindower::new(Duration::from_secs(10), 0),
        )?;
    out.down.output("down", down.clone())?;
    out.late.output("late", late.clone())?;
    out.meta.output("meta", meta.clone())?;
    testing::run(&flow)?;
    assert_eq!(
        down.take_sorted(),
        [('k', (0, vec![(1_000, 1)])), ('k', (2, vec![(25_000, 2)]))]
    );
    let late = late.take();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1.value, (1_500, 3));
    assert_eq!(late[0].1.reason, LateReason::WindowClosed);
    assert_eq!(late[0].1.watermark, 25_000);
    assert_eq!(
        meta.take_sorted(),
        [
            (
                'k',
                (
                    0,
                    WindowMeta {
                        open_time: 0,
                        close_time: 10_000
                    }
                )
            ),
            (
                'k',
                (
                    2,
                    WindowMeta {
                        open_time: 20_000,
                        close_time: 30_000
                    }
                )
            ),
        ]
    );
    Ok(())
}

#[test]
fn allowed_lateness_keeps_windows_open_for_stragglers() -> Result<()> {
    let flow = Dataflow::new("lateness");
    let (down, late) = (TestingSink::new(), TestingSink::new());
    let items = vec![
        (0, ('k', (1_000i64, 1u32))),
        (1, ('k', (12_000, 2))),
        (2, ('k', (9_000, 3))),
    ];
    let out = flow
        .input("inp", TestingSource::with_epochs(items))?
        .reduce_window(
            "max",
            Clock::event(|e: &(i64, u32)| e.0, Duration::from_secs(5)),
            TumblingWindower::new(Duration::from_secs(10), 0),
            |a, b| if b.1 > a.1 { b } else { a },
        )?;
    out.down.output("down", down.clone())?;
    out.late.output("late", late.clone())?;
    testing::run(&flow)?;
    assert_eq!(
        down.take_sorted(),
        [('k', (0, (9_000, 3))), ('k', (1, (12_000, 2)))]
    );
    assert!(late.take().is_empty());
    Ok(())
}

#[test]
fn sessions_merge_and_max_min_pick_by_key_function() -> Result<()> {
    let flow = Dataflow::new("sessions");
    let (max, min) = (TestingSink::new(), TestingSink::new());
    let items: Vec<(char, (i64, u32))> = vec![
        ('u', (0, 5)),
        ('u', (8_000, 9)),
        ('u', (4_000, 1)), // bridges nothing new: within 5 s of both
        ('u', (30_000, 7)),
    ];
    let stream = flow.input("inp", TestingSource::new(items))?;
    let gap = SessionWindower::new(Duration::from_secs(5));
    stream
        .max_window("max", event_clock(), gap.clone(), |e| e.1)?
        .down
        .output("max_out", max.clone())?;
    stream
        .min_window("min", event_clock(), gap, |e| e.1)?
        .down
        .output("min_out", min.clone())?;
    testing::run(&flow)?;
    let max: Vec<u32> = max
        .take_sorted()
        .into_iter()
        .map(|(_, (_, e))| e.1)
        .collect();
    let min: Vec<u32> = min
        .take_sorted()
        .into_iter()
        .map(|(_, (_, e))| e.1)
        .collect();
    assert_eq!(max, [9, 7]);
    assert_eq!(min, [1, 7]);
    Ok(())
}

#[test]
fn join_window_pairs_both_sides_of_each_window() -> Result<()> {
    let flow = Dataflow::new("join");
    let out = TestingSink::new();
    let clicks = flow.input(
        "clicks",
        TestingSource::new(vec![('u', (1_000i64, 1u32)), ('u', (15_000, 2))]),
    )?;
    let views = flow.input(
        "views",
        TestingSource::new(vec![('u', (2_000i64, "home".to_string()))]),
    )?;
    clicks
        .join_window(
            "join",
            event_clock(),
            Clock::event(|v: &(i64, String)| v.0, Duration::ZERO),
            TumblingWindower::new(Duration::from_secs(10), 0),
            &views,
        )?
        .down
        .output("out", out.clone())?;
    testing::run(&flow)?;
    let got = out.take_sorted();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1.1.0, [(1_000, 1)]);
    assert_eq!(got[0].1.1.1, [(2_000, "home".to_string())]);
    assert_eq!(got[1].1.1.0, [(15_000, 2)]);
    assert!(got[1].1.1.1.is_empty());
    Ok(())
}

#[test]
fn a_million_short_sessions_leave_no_state_behind() -> Result<()> {
    // Every session is one key seen twice, 1 ms apart; keys never repeat.
    let sessions = 1_000_000u64;
    let flow = Dataflow::new("sessions");
    let out = TestingSink::new();
    let windows = flow
        .input_dynamic(
            "events",
            GeneratorSource::new(sessions * 2, |i| (i / 2, (i as i64, 0u32))),
        )?
        .count_window(
            "count",
            Clock::event(|e: &(u64, (i64, u32))| e.1.0, Duration::ZERO)
                .idle_timeout(Duration::from_secs(60)),
            SessionWindower::new(Duration::from_millis(10)),
            |e| e.0,
        )?;
    let live = windows.live.clone();
    windows
        .down
        .filter("not_two", |(_, (_, n))| *n != 2)?
        .output("out", out.clone())?;
    testing::run(&flow)?;
    assert!(out.take().is_empty(), "every session has its two events");
    assert_eq!(live.keys(), 0, "nothing is left open");
    // Sessions close 10 ms after they end: only a few batches' worth are ever open.
    assert!(live.peak() < 20_000, "peak {} open keys", live.peak());
    Ok(())
}

#[test]
fn the_system_clock_closes_windows_as_time_passes() -> Result<()> {
    let flow = Dataflow::new("system");
    let out = TestingSink::new();
    flow.input(
        "inp",
        TestingSource::new(vec![('k', 1u32), ('k', 2), ('j', 3)]),
    )?
    .fold_window(
        "sum",
        Clock::system(),
        TumblingWindower::new(Duration::from_secs(3600), 0),
        |_| 0u32,
        |a, v| a + v,
        |a, b| a + b,
    )?
    .down
    .output("out", out.clone())?;
    testing::run(&flow)?;
    let got: Vec<(char, u32)> = out
        .take_sorted()
        .into_iter()
        .map(|(k, (_, n))| (k, n))
        .collect();
    assert_eq!(got, [('j', 3), ('k', 3)]);
    Ok(())
}
