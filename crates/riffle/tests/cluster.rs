//! The same flows on 1 worker, 2 workers, and 2 processes x 2 workers (timely's TCP
//! communication over loopback) give the same results, and keyed state lives on
//! exactly one worker per key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use riffle::sources::{GeneratorSource, TestingSource};
use riffle::testing::{Capture, run, run_cluster, run_workers};
use riffle::{Dataflow, Result};

type Runner = fn(&Dataflow) -> Result<()>;

fn runners() -> Vec<(&'static str, Runner)> {
    vec![
        ("1 worker", run as Runner),
        ("2 workers", |f| run_workers(f, 2)),
        ("2 processes x 2 workers", |f| run_cluster(f, 2, 2)),
    ]
}

/// A flow with every keyed operator over many keys; returns its captures.
#[allow(clippy::type_complexity)]
fn keyed_flow() -> (
    Dataflow,
    Capture<(String, u64)>,
    Capture<(String, u64)>,
    Capture<(String, u64)>,
    Capture<(String, (u64, u64))>,
) {
    let flow = Dataflow::new("keyed");
    let events: Vec<(u64, (String, u64))> = (0..20_000u64)
        .map(|i| (i / 5_000, (format!("k{}", i % 97), i)))
        .collect();
    let inp = flow
        .input("inp", TestingSource::with_epochs(events))
        .unwrap()
        .redistribute("spread")
        .unwrap();
    let per_epoch = inp
        .reduce_epoch("sum_epoch", |a, b| a + b)
        .unwrap()
        .capture("per_epoch")
        .unwrap();
    let counts = inp
        .count_final("count", |(k, _): (String, u64)| k)
        .unwrap()
        .capture("counts")
        .unwrap();
    let last_running = inp
        .stateful_map("running", |_| 0u64, |s, v| (Some(s + v), s + v))
        .unwrap()
        .reduce_epoch("max", |a: u64, b: u64| a.max(b))
        .unwrap()
        .capture("running_max")
        .unwrap();
    let folded = inp
        .fold_final(
            "fold",
            |_| (0, 0),
            |(n, s), v| (n + 1, s + v),
            |(a, b), (c, d)| (a + c, b + d),
        )
        .unwrap()
        .capture("folded")
        .unwrap();
    (flow, per_epoch, counts, last_running, folded)
}

#[test]
fn keyed_results_are_the_same_on_every_shape() {
    let mut results = Vec::new();
    for (name, runner) in runners() {
        let (flow, per_epoch, counts, running, folded) = keyed_flow();
        runner(&flow).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = (
            per_epoch.take_sorted(),
            counts.take_sorted(),
            running.take_sorted(),
            folded.take_sorted(),
        );
        assert_eq!(r.1.len(), 97, "{name}");
        assert_eq!(
            r.1.iter().map(|(_, (_, n))| n).sum::<u64>(),
            20_000,
            "{name}"
        );
        assert_eq!(r.0.len(), 97 * 4, "{name}: one sum per key per epoch");
        results.push((name, r));
    }
    for (name, r) in &results[1..] {
        assert_eq!(r, &results[0].1, "{name} differs from {}", results[0].0);
    }
}

#[test]
fn stateless_results_are_the_same_on_every_shape() {
    let mut results = Vec::new();
    for (name, runner) in runners() {
        let flow = Dataflow::new("stateless");
        let out = flow
            .input_dynamic("gen", GeneratorSource::new(50_000, |i| i))
            .unwrap()
            .map("double", |x| x * 2)
            .unwrap()
            .filter("thirds", |x| x % 3 == 0)
            .unwrap()
            .flat_map("twice", |x| [x, x + 1])
            .unwrap()
            .capture("out")
            .unwrap();
        runner(&flow).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut items: Vec<u64> = out.take().into_iter().map(|(_, x)| x).collect();
        items.sort();
        results.push((name, items));
    }
    assert_eq!(results[0].1.len(), 2 * 50_000usize.div_ceil(3));
    for (name, r) in &results[1..] {
        assert_eq!(r, &results[0].1, "{name}");
    }
}

#[test]
fn keyed_state_lives_on_exactly_one_worker_per_key() {
    for (name, runner) in runners().into_iter().skip(1) {
        let owners: Arc<Mutex<BTreeMap<String, BTreeSet<usize>>>> = Default::default();
        let seen = owners.clone();
        let flow = Dataflow::new("owners");
        flow.input_dynamic(
            "gen",
            GeneratorSource::new(10_000, |i| (format!("key{}", i % 50), i)),
        )
        .unwrap()
        .stateful_map("state", |_| 0u64, |n, _v: u64| (Some(n + 1), n + 1))
        .unwrap()
        .inspect_debug("where", move |_, (key, _), _, worker| {
            seen.lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .insert(worker);
        })
        .unwrap()
        .capture("out")
        .unwrap();
        runner(&flow).unwrap_or_else(|e| panic!("{name}: {e}"));
        let owners = owners.lock().unwrap();
        assert_eq!(owners.len(), 50, "{name}");
        let used: BTreeSet<usize> = owners.values().flatten().copied().collect();
        for (key, workers) in owners.iter() {
            assert_eq!(workers.len(), 1, "{name}: {key} lives on {workers:?}");
            assert_eq!(
                *workers.iter().next().unwrap(),
                riffle::exchange::worker_for(
                    key,
                    if name.starts_with('2') && name.contains("processes") {
                        4
                    } else {
                        2
                    }
                ),
                "{name}: {key} is not on the worker its stable hash names"
            );
        }
        assert!(used.len() > 1, "{name}: every key on one worker: {used:?}");
    }
}

#[test]
fn a_failure_in_one_process_stops_the_whole_cluster() {
    let flow = Dataflow::new("fails");
    flow.input_dynamic("gen", GeneratorSource::new(100_000, |i| i))
        .unwrap()
        .key_on("key", |i| i % 10)
        .unwrap()
        .stateful_map(
            "explode",
            |_| 0u64,
            |n, v: u64| {
                if v == 77_777 {
                    panic!("bad value {v}");
                }
                (Some(n + 1), n)
            },
        )
        .unwrap()
        .capture("out")
        .unwrap();
    let err = run_cluster(&flow, 2, 2).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"explode\"") || text.contains("another process"),
        "{text}"
    );
}

/// Partitions `a` to `d`, one per worker of 2 processes x 2 workers; `d` cannot
/// open.
struct OneBadPartition;

struct Numbers(Vec<u64>);

impl riffle::sources::SourcePartition for Numbers {
    type Item = u64;
    type State = ();

    fn next_batch(&mut self) -> Result<riffle::sources::Poll<u64>> {
        Ok(if self.0.is_empty() {
            riffle::sources::Poll::Exhausted
        } else {
            riffle::sources::Poll::Ready(std::mem::take(&mut self.0))
        })
    }
}

impl riffle::sources::FixedPartitionedSource for OneBadPartition {
    type Item = u64;
    type State = ();
    type Partition = Numbers;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(["a", "b", "c", "d"].map(String::from).to_vec())
    }

    fn build_part(&self, step_id: &str, for_part: &str, _resume: Option<()>) -> Result<Numbers> {
        if for_part == "d" {
            return Err(riffle::RiffleError::connector(
                step_id,
                "partition \"d\": the server refused it",
            ));
        }
        Ok(Numbers((0..100).collect()))
    }
}

#[test]
fn a_partition_that_cannot_open_on_one_process_stops_the_whole_cluster() {
    // The build failed on one worker only, part-way through its flow: its
    // control channel then had another identifier than the peers', which never
    // heard of the failure and waited for ever.
    let flow = Dataflow::new("one-bad");
    flow.input("numbers", OneBadPartition)
        .unwrap()
        .count_final("count", |n: u64| n % 7)
        .unwrap()
        .capture("out")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_cluster(&flow, 2, 2));
    });
    let outcome = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the cluster should stop within a minute, not hang");
    let text = outcome.unwrap_err().to_string();
    assert!(
        text.contains("refused it") || text.contains("another process"),
        "{text}"
    );
}
