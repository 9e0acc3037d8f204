//! Joins of keyed streams: complete, running and final modes, on one and several
//! workers, and across a failure with a recovery store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use riffle::operators::join::JoinMode;
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::{DirSink, TestingSink};
use riffle::sources::TestingSource;
use riffle::testing::{run, run_workers};
use riffle::{Dataflow, Execution, Result};

/// Orders (left side) and payments (right side) of 1,000 customers, 3 orders
/// each, payments for even customers only.
/// `(customer, (order, payment))` as the join emits it.
type Paid = (u32, (u32, u32));

fn orders_and_payments() -> Result<(Dataflow, TestingSink<Paid>)> {
    let flow = Dataflow::new("orders");
    let orders: Vec<(u32, u32)> = (0..3_000).map(|i| (i % 1_000, i)).collect();
    let payments: Vec<(u32, u32)> = (0..1_000)
        .filter(|c| c % 2 == 0)
        .map(|c| (c, c * 10))
        .collect();
    let orders = flow.input("orders", TestingSource::new(orders).batch_size(100))?;
    let payments = flow.input("payments", TestingSource::new(payments).batch_size(100))?;
    let out = TestingSink::new();
    orders.join("paid", &payments)?.output("out", out.clone())?;
    Ok((flow, out))
}

#[test]
fn a_complete_join_emits_each_key_once_both_sides_are_there_on_any_worker_count() -> Result<()> {
    let mut results = Vec::new();
    for workers in [1, 2, 4] {
        let (flow, out) = orders_and_payments()?;
        run_workers(&flow, workers)?;
        let mut got = out.take();
        got.sort_by_key(|(c, _)| *c);
        // One pair per paying customer: the key is forgotten once joined, and no
        // further payment comes to start a second round.
        assert_eq!(got.len(), 500, "{workers} workers");
        for (customer, (order, payment)) in &got {
            assert_eq!(customer % 2, 0);
            assert_eq!(order % 1_000, *customer);
            assert_eq!(*payment, customer * 10);
        }
        results.push(
            got.into_iter()
                .map(|(c, (_, p))| (c, p))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    Ok(())
}

#[test]
fn a_complete_join_starts_a_new_round_after_it_emits() -> Result<()> {
    let flow = Dataflow::new("rounds");
    let left = flow.input(
        "left",
        TestingSource::with_epochs(vec![(0, ('a', 1)), (1, ('a', 2)), (3, ('a', 3))]),
    )?;
    let right = flow.input(
        "right",
        TestingSource::with_epochs(vec![(0, ('a', 10)), (2, ('a', 20))]),
    )?;
    let out = left.join("join", &right)?.capture("out")?;
    run(&flow)?;
    // Epoch 0 completes the first round; epoch 1's left value waits for epoch 2's
    // right value; epoch 3's left value never finds a partner.
    assert_eq!(
        out.take_sorted(),
        [(0, ('a', (1, 10))), (2, ('a', (2, 20)))]
    );
    Ok(())
}

#[test]
fn a_running_join_emits_on_every_value_and_a_final_join_once_per_key() -> Result<()> {
    let flow = Dataflow::new("modes");
    let left = flow.input(
        "left",
        TestingSource::with_epochs(vec![(0, ('a', 1)), (1, ('b', 2)), (2, ('a', 3))]),
    )?;
    let right = flow.input("right", TestingSource::with_epochs(vec![(1, ('a', 10))]))?;
    let running = left
        .join_running("running", &right, JoinMode::Running)?
        .capture("running_out")?;
    let last = left
        .join_running("final", &right, JoinMode::Final)?
        .capture("final_out")?;
    run(&flow)?;
    assert_eq!(
        running.take_sorted(),
        [
            (0, ('a', (Some(1), None))),
            (1, ('a', (Some(1), Some(10)))),
            (1, ('b', (Some(2), None))),
            (2, ('a', (Some(3), Some(10)))),
        ]
    );
    let mut last: Vec<_> = last.take().into_iter().map(|(_, item)| item).collect();
    last.sort();
    assert_eq!(last, [('a', (Some(3), Some(10))), ('b', (Some(2), None))]);
    Ok(())
}

#[test]
fn join_all_takes_any_number_of_sides() -> Result<()> {
    let flow = Dataflow::new("three");
    let a = flow.input(
        "a",
        TestingSource::with_epochs(vec![(0, ('x', 1)), (0, ('y', 1))]),
    )?;
    let b = flow.input(
        "b",
        TestingSource::with_epochs(vec![(0, ('x', 2)), (1, ('y', 2))]),
    )?;
    let c = flow.input("c", TestingSource::with_epochs(vec![(1, ('x', 3))]))?;
    let complete = a
        .join_all("complete", &[&b, &c], JoinMode::Complete)?
        .capture("c_out")?;
    let running = a
        .join_all("running", &[&b, &c], JoinMode::Running)?
        .capture("r_out")?;
    run_workers(&flow, 2)?;
    assert_eq!(
        complete.take_sorted(),
        [(1, ('x', vec![Some(1), Some(2), Some(3)]))]
    );
    let running = running.take_sorted();
    assert_eq!(running.len(), 5, "{running:?}");
    assert!(running.contains(&(1, ('y', vec![Some(1), Some(2), None]))));
    assert!(running.contains(&(1, ('x', vec![Some(1), Some(2), Some(3)]))));
    Ok(())
}

/// A running join: epoch 0 brings one left value per key, each later epoch one
/// right value per key, so every line written depends on the left value held in
/// the join's state since epoch 0. Panics on the `fail_at`-th right item.
fn running_join(out: &Path, fail_at: u64) -> Result<Dataflow> {
    let flow = Dataflow::new("running-join");
    let left: Vec<(u64, (u32, u32))> = (0..300).map(|k| (0, (k, k * 7))).collect();
    let right: Vec<(u64, (u32, u64))> = (1..=100u64)
        .flat_map(|e| (0..300).map(move |k| (e, (k, e))))
        .collect();
    let seen = Arc::new(AtomicU64::new(0));
    let left = flow.input("left", TestingSource::with_epochs(left).batch_size(50))?;
    let right = flow
        .input("right", TestingSource::with_epochs(right).batch_size(50))?
        .map("count", move |item| {
            if seen.fetch_add(1, Ordering::Relaxed) == fail_at {
                panic!("injected failure");
            }
            item
        })?;
    left.join_running("join", &right, JoinMode::Running)?
        .map("line", |(k, (l, r))| (k, format!("{k} {l:?} {r:?}")))?
        .output("out", DirSink::new(out, 2))?;
    Ok(flow)
}

#[test]
fn a_join_resumes_from_its_snapshot_after_a_failure() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    Execution::new()
        .workers(2)
        .run(&running_join(&clean, u64::MAX)?)?;
    let read = |dir: &Path| {
        let mut lines: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                text.lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        lines
    };
    let expected = read(&clean);
    assert_eq!(expected.len(), 300 + 300 * 100);
    assert!(expected.contains(&"299 Some(2093) Some(100)".to_string()));

    let store = tmp.path().join("store");
    RecoveryStore::init(&store, 2)?;
    let out = tmp.path().join("out");
    let execution = |workers| {
        Execution::new()
            .workers(workers)
            .epoch_interval(Duration::from_millis(1))
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(1)))
    };
    let err = execution(2).run(&running_join(&out, 15_000)?).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let flow = running_join(&out, u64::MAX)?;
    let resumed =
        RecoveryStore::open(&store, "running-join", &flow.fingerprint())?.resume_epoch()?;
    assert!(
        resumed.is_some_and(|e| e > 0),
        "a snapshot after epoch 0 was committed before the failure: {resumed:?}"
    );
    execution(3).run(&flow)?;
    let got = read(&out);
    let missing = expected
        .iter()
        .filter(|l| got.binary_search(l).is_err())
        .count();
    let repeated = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        got == expected,
        "resumed at {resumed:?}: {} lines, expected {}; {missing} missing, {repeated} repeated (first: {:?})",
        got.len(),
        expected.len(),
        got.windows(2).find(|w| w[0] == w[1]).map(|w| &w[0]),
    );
    Ok(())
}
