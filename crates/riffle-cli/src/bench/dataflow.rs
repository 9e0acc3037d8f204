//! Dataflow workloads: `stateless`, `wordcount` and `windowed`.
//!
//! - `stateless`: 20,000,000 `u64` (0, 1, 2, ...) -> `map(x * 2)` ->
//!   `filter(x % 3 == 0)` -> `count_final` of what passes.
//! - `wordcount`: 5,000,000 words from [`word`], 10 per line -> `flat_map_into`
//!   split (each word pushed as a `String`) -> `count_final` per word. `-P
//!   split=collect` splits with `flat_map` returning a `Vec` per line instead, as
//!   the figures before `flat_map_into` did; `-P split=each` counts the words of
//!   each line with `count_final_each`, which looks each up as a `&str` and
//!   allocates a `String` only for a word the worker has not counted yet.
//! - `windowed`: 1,000,000 events, key `i % 1000`, event time 2026-01-01 + `i` ms ->
//!   `count_window` over 10-second tumbling windows (event clock, no lateness).
//!   `-P partitions=N` reads them from `N` partitions moving through event time at
//!   the same pace (partition `p` holds events `p`, `p + N`, ...): the cost of one
//!   watermark per partition. Results are tallied on the worker that holds them
//!   (`windows`, `counted`; `combined` is how many events were folded into their
//!   windows before the exchange); `-P sink=testing` collects them into one
//!   in-memory partition on worker 0 instead, as the figures before this option
//!   did.
//!
//! `wordcount -P recovery=1s` measures the cost of recovery: a fixed-partitioned
//! generator, 1 s epochs and a snapshot every second into a fresh store (whose
//! size is reported as `store_bytes`); `-P recovery=none` is the same without a
//! store, the baseline to compare with. `-P vocabulary=N` draws words from `N`
//! distinct ones instead of 10,000 (e.g. 1,000,000 to size a store of 1M keys).
//! `wordcount -P baseline=hashmap` also counts the same lines, generated the same
//! way, with a plain single-threaded `std::collections::HashMap<String, u64>` in
//! the same process right after each run, reported as workload
//! `wordcount-hashmap`: the one-core limit to hold the engine against (the
//! engine's report gains `of_baseline`, its items/s over the baseline's).
//! `-P baseline=foldhash` is the same map with the hasher the engine's keyed
//! state uses (foldhash; the standard library's SipHash is slower), reported with
//! `hasher` `foldhash` where the first says `sip`.
//!
//! Items are generated inside the source, so generation is part of the measured
//! time. The checksum fields (`count`, `distinct`) let a reader check that peers
//! computed the same thing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::operators::keyed;
use riffle::operators::stateless::Emit;
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::{DynamicSink, SinkPartition, TestingSink, WorkerInfo};
use riffle::sources::{GeneratorSource, PartitionedGenerator};
use riffle::window::{Clock, TumblingWindower};
use riffle::{Dataflow, Execution};

use super::{BenchArgs, BenchReport};

/// The vocabulary size of the wordcount workload.
pub const VOCABULARY: u64 = 10_000;
/// Words per generated line.
pub const WORDS_PER_LINE: u64 = 10;
/// The seed of the word generator.
pub const SEED: u64 = 0x5EED;

/// The `k`-th output of a splitmix64 generator seeded with [`SEED`] (counting from 0).
pub fn splitmix64(k: u64) -> u64 {
    let mut z = SEED.wrapping_add((k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word `k` of the deterministic stream: `word<n>` with `n = splitmix64(k) % 10000`.
pub fn word(k: u64) -> String {
    format!("word{}", splitmix64(k) % VOCABULARY)
}

/// Line `j`: words `10 j .. 10 j + 9` (fewer for the last line), joined by spaces.
pub fn line(j: u64, total_words: u64) -> String {
    line_of(j, total_words, VOCABULARY)
}

/// Line `j` with words drawn from a vocabulary of `vocabulary` words.
pub fn line_of(j: u64, total_words: u64, vocabulary: u64) -> String {
    let start = j * WORDS_PER_LINE;
    let end = (start + WORDS_PER_LINE).min(total_words);
    let mut out = String::with_capacity(10 * (end - start) as usize);
    for k in start..end {
        if k > start {
            out.push(' ');
        }
        out.push_str("word");
        push_decimal(&mut out, splitmix64(k) % vocabulary);
    }
    out
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in digits[..len].iter().rev() {
        out.push(d as char);
    }
}

/// Runs the `stateless` or `wordcount` workload once.
pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    match args.name.as_str() {
        "stateless" => stateless(args),
        "windowed" => windowed(args),
        _ => wordcount(args),
    }
}

fn stateless(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(20_000_000);
    let flow = Dataflow::new("bench-stateless");
    let out = TestingSink::new();
    flow.input_dynamic("numbers", GeneratorSource::new(items, |i| i))?
        .map("double", |x: u64| x * 2)?
        .filter("thirds", |x: &u64| x.is_multiple_of(3))?
        .count_final("count", |_x: u64| ())?
        .output("out", out.clone())?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    let count: u64 = out.take().iter().map(|(_, n)| n).sum();
    let expected = items.div_ceil(3);
    anyhow::ensure!(
        count == expected,
        "stateless counted {count}, expected {expected}"
    );
    let mut report = BenchReport::new("stateless", args.workers, items, seconds);
    report.extra.insert("checksum".into(), count.into());
    Ok(vec![report])
}

fn wordcount(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let words = args.items.unwrap_or(5_000_000);
    let lines = words.div_ceil(WORDS_PER_LINE);
    let recovery = RecoveryMode::from_args(args)?;
    let flow = Dataflow::new("bench-wordcount");
    let out = TestingSink::new();
    let vocabulary = positive_param(args, "vocabulary")?.unwrap_or(VOCABULARY);
    let make_line = move |j| line_of(j, words, vocabulary);
    let input = match &recovery {
        RecoveryMode::Off => flow.input_dynamic(
            "lines",
            GeneratorSource::new(lines, make_line).batch_size(1024),
        )?,
        _ => flow.input(
            "lines",
            PartitionedGenerator::new(lines, 2 * args.workers as u64, make_line).batch_size(1024),
        )?,
    };
    let split = super::param(args, "split").unwrap_or("into");
    let counted = match split {
        "into" => input
            .flat_map_into("split", |line: String, words: &mut Emit<String>| {
                words.extend(line.split(' ').map(str::to_owned))
            })?
            .count_final("count", |word: String| word)?,
        "collect" => input
            .flat_map("split", |line: String| {
                line.split(' ').map(str::to_owned).collect::<Vec<_>>()
            })?
            .count_final("count", |word: String| word)?,
        "each" => {
            input.count_final_each("count", |line: String, words: &mut keyed::Tally<String>| {
                line.split(' ').for_each(|word| words.add(word))
            })?
        }
        v => anyhow::bail!("-P split={v}: the splits are into, collect and each"),
    };
    counted.output("out", out.clone())?;
    let store = tempfile_dir()?;
    let mut execution = Execution::new().workers(args.workers);
    if let RecoveryMode::Every(interval) = recovery {
        RecoveryStore::init(store.path(), args.workers)?;
        execution = execution
            .epoch_interval(interval.min(Duration::from_secs(1)))
            .recovery(Recovery::new(store.path()).snapshot_interval(interval));
    } else if recovery == RecoveryMode::Partitioned {
        execution = execution.epoch_interval(Duration::from_secs(1));
    }
    let started = Instant::now();
    execution.run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    let counts = out.take();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    anyhow::ensure!(
        total == words,
        "wordcount counted {total} words, expected {words}"
    );
    let mut top = counts;
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut report = BenchReport::new("wordcount", args.workers, words, seconds);
    report.extra.insert("distinct".into(), top.len().into());
    report
        .extra
        .insert("recovery".into(), recovery.name().into());
    report.extra.insert("split".into(), split.into());
    let baseline = match super::param(args, "baseline") {
        None => None,
        Some("hashmap") => Some(hashmap_baseline(
            words,
            vocabulary,
            HashMap::<String, u64>::new(),
            "sip",
        )?),
        Some("foldhash") => Some(hashmap_baseline(
            words,
            vocabulary,
            HashMap::<String, u64, foldhash::fast::FixedState>::default(),
            "foldhash",
        )?),
        Some(v) => anyhow::bail!("-P baseline={v}: the baselines are hashmap and foldhash"),
    };
    if let Some(b) = &baseline {
        report.extra.insert(
            "of_baseline".into(),
            (report.items_per_s / b.items_per_s).into(),
        );
    }
    if let RecoveryMode::Every(_) = recovery {
        report
            .extra
            .insert("store_bytes".into(), dir_bytes(store.path()).into());
        // How many snapshots the run committed: a run shorter than the snapshot
        // interval measures nothing of their cost.
        let committed = RecoveryStore::summary(store.path())?.committed;
        report
            .extra
            .insert("committed_epoch".into(), committed.into());
    }
    report.extra.insert(
        "top".into(),
        serde_json::json!(
            top.iter()
                .take(3)
                .map(|(w, n)| serde_json::json!([w, n]))
                .collect::<Vec<_>>()
        ),
    );
    Ok([report].into_iter().chain(baseline).collect())
}

/// The same word count as a plain single-threaded `HashMap` of the same lines,
/// generated the same way: each line is split and a word allocates a `String`
/// only the first time it is seen. `counts` is the empty map, with the standard
/// library's hasher (SipHash, `hasher` "sip") or the engine's (foldhash).
fn hashmap_baseline<S: std::hash::BuildHasher>(
    words: u64,
    vocabulary: u64,
    mut counts: HashMap<String, u64, S>,
    hasher: &str,
) -> anyhow::Result<BenchReport> {
    super::reset_peak_rss();
    let lines = words.div_ceil(WORDS_PER_LINE);
    let started = Instant::now();
    for j in 0..lines {
        let line = line_of(j, words, vocabulary);
        for word in line.split(' ') {
            match counts.get_mut(word) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(word.to_owned(), 1);
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let total: u64 = counts.values().sum();
    anyhow::ensure!(
        total == words,
        "the hashmap baseline counted {total} words, expected {words}"
    );
    let mut report = BenchReport::new("wordcount-hashmap", 1, words, seconds);
    report.extra.insert("distinct".into(), counts.len().into());
    report.extra.insert("hasher".into(), hasher.into());
    Ok(report)
}

/// How the wordcount workload uses recovery (`-P recovery=...`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum RecoveryMode {
    /// `off` (default): a dynamic generator, 10 s epochs, no store.
    Off,
    /// `none`: the partitioned generator and 1 s epochs, no store: the baseline for
    /// measuring the cost of snapshots.
    Partitioned,
    /// A duration such as `1s`: the same, snapshotting that often into a fresh store.
    Every(Duration),
}

impl RecoveryMode {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Self> {
        let value = args
            .params
            .iter()
            .rev()
            .find(|(k, _)| k == "recovery")
            .map(|(_, v)| v.as_str());
        Ok(match value {
            None | Some("off") => Self::Off,
            Some("none") => Self::Partitioned,
            Some(d) => Self::Every(
                crate::commands::run::parse_duration(d)
                    .map_err(|e| anyhow::anyhow!("-P recovery={d}: {e}"))?,
            ),
        })
    }

    fn name(&self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::Partitioned => "none".into(),
            Self::Every(d) => format!("every {} ms", d.as_millis()),
        }
    }
}

/// A fresh temporary directory for a recovery store.
fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("riffle-bench-").tempdir()?)
}

/// The bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// 2026-01-01T00:00:00Z in milliseconds: event `i` happens `i` ms after it.
pub const WINDOW_START_MS: i64 = 1_767_225_600_000;
/// Distinct keys of the windowed workload.
pub const WINDOW_KEYS: u64 = 1000;

/// The value of `-P name=N`, which must be a positive number.
fn positive_param(args: &BenchArgs, name: &str) -> anyhow::Result<Option<u64>> {
    match super::param(args, name) {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("-P {name}={v}: not a positive number")),
        None => Ok(None),
    }
}

/// The windowed workload's results, tallied on the worker that holds them: how
/// many windows closed and how many events they counted.
#[derive(Clone, Default)]
struct Tally {
    windows: Arc<AtomicU64>,
    counted: Arc<AtomicU64>,
}

impl DynamicSink for Tally {
    type Item = (u64, (i64, u64));
    type Partition = Tally;

    fn build(&self, _: &str, _: WorkerInfo) -> riffle::Result<Tally> {
        Ok(self.clone())
    }
}

impl SinkPartition for Tally {
    type Item = (u64, (i64, u64));
    type State = ();

    fn write_batch(&mut self, items: Vec<Self::Item>) -> riffle::Result<()> {
        let counted: u64 = items.iter().map(|(_, (_, n))| n).sum();
        self.windows
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.counted.fetch_add(counted, Ordering::Relaxed);
        Ok(())
    }
}

fn windowed(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let events = args.items.unwrap_or(1_000_000);
    let flow = Dataflow::new("bench-windowed");
    // Where the results go: tallied on each worker (the default), or, with
    // `-P sink=testing`, collected into one in-memory partition on worker 0 (the
    // harness of earlier figures: every result crosses to one worker).
    let collect = match super::param(args, "sink") {
        None | Some("tally") => false,
        Some("testing") => true,
        Some(other) => anyhow::bail!("-P sink={other}: expected tally or testing"),
    };
    let out = TestingSink::new();
    let tally = Tally::default();
    let late = TestingSink::new();
    let event = |j: u64| (j % WINDOW_KEYS, WINDOW_START_MS + j as i64);
    let input = match positive_param(args, "partitions")? {
        None => flow.input_dynamic("events", GeneratorSource::new(events, event))?,
        Some(parts) => {
            anyhow::ensure!(
                events.is_multiple_of(parts),
                "-P partitions={parts}: the {events} events must divide evenly among them"
            );
            // Partition `p` holds events p, p + parts, p + 2 * parts, ...: every
            // partition moves through event time at the same pace, and the windows
            // are the same as with one partition.
            let per_part = events / parts;
            let interleaved = move |i: u64| event((i % per_part) * parts + i / per_part);
            flow.input(
                "events",
                PartitionedGenerator::new(events, parts, interleaved),
            )?
        }
    };
    let windows = input.count_window(
        "count",
        Clock::event(|e: &(u64, i64)| e.1, Duration::ZERO),
        TumblingWindower::new(Duration::from_secs(10), WINDOW_START_MS),
        |e| e.0,
    )?;
    if collect {
        windows.down.output("out", out.clone())?;
    } else {
        windows.down.output_dynamic("out", tally.clone())?;
    }
    windows.late.output("late", late.clone())?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    let combined = windows.live.combined();
    let counts = out.take();
    let (closed, counted) = if collect {
        (
            counts.len() as u64,
            counts.iter().map(|(_, (_, n))| n).sum(),
        )
    } else {
        (
            tally.windows.load(Ordering::Relaxed),
            tally.counted.load(Ordering::Relaxed),
        )
    };
    let late = late.take().len() as u64;
    anyhow::ensure!(
        counted + late == events,
        "windowed counted {counted} and {late} late of {events} events"
    );
    let mut report = BenchReport::new("windowed", args.workers, events, seconds);
    if let Some(parts) = positive_param(args, "partitions")? {
        report.extra.insert("partitions".into(), parts.into());
    }
    report.extra.insert("windows".into(), closed.into());
    report.extra.insert("combined".into(), combined.into());
    report.extra.insert("counted".into(), counted.into());
    report.extra.insert("late".into(), late.into());
    Ok(vec![report])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_matches_the_published_first_words() {
        // The first words for seed 0x5EED, as bench/bytewax/README.md lists them.
        let first: Vec<String> = (0..12).map(word).collect();
        assert_eq!(
            first.join(" "),
            "word6052 word6005 word9891 word1197 word693 word3130 word2368 word6705 word3795 word6071 word4393 word6506"
        );
        assert_eq!(
            line(0, 25).split(' ').collect::<Vec<_>>(),
            (0..10).map(word).collect::<Vec<_>>()
        );
        assert_eq!(line(2, 25).split(' ').count(), 5);
    }
}
