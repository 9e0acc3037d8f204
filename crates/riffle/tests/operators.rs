//! Every operator, on one worker, with explicit epochs.

use riffle::sinks::TestingSink;
use riffle::sources::TestingSource;
use riffle::testing::run;
use riffle::{Dataflow, RiffleError};

fn strings(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(e, s)| (*e, s.to_string())).collect()
}

#[test]
fn map_uppercases_the_seed_example() {
    let flow = Dataflow::new("t");
    let out = flow
        .input(
            "inp",
            TestingSource::with_epochs(strings(&[(0, "a"), (1, "b"), (2, "c")])),
        )
        .unwrap()
        .map("up", |s: String| s.to_uppercase())
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(out.take_sorted(), strings(&[(0, "A"), (1, "B"), (2, "C")]));
}

#[test]
fn filter_filter_map_flat_map() {
    let flow = Dataflow::new("t");
    let inp = flow
        .input(
            "inp",
            TestingSource::with_epochs(vec![(0, 1u32), (0, 2), (1, 3), (1, 4)]),
        )
        .unwrap();
    let evens = inp
        .filter("even", |x| x % 2 == 0)
        .unwrap()
        .capture("evens")
        .unwrap();
    let halves = inp
        .filter_map("half", |x| (x % 2 == 0).then_some(x / 2))
        .unwrap()
        .capture("halves")
        .unwrap();
    let repeated = inp
        .flat_map("repeat", |x| std::iter::repeat_n(x, x as usize))
        .unwrap()
        .capture("repeated")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(evens.take_sorted(), [(0, 2), (1, 4)]);
    assert_eq!(halves.take_sorted(), [(0, 1), (1, 2)]);
    let repeated = repeated.take_sorted();
    assert_eq!(repeated.len(), 1 + 2 + 3 + 4);
    assert_eq!(
        repeated.iter().filter(|(e, x)| *e == 1 && *x == 4).count(),
        4
    );
}

#[test]
fn flat_map_into_emits_what_flat_map_returns_in_the_same_epochs() {
    let flow = Dataflow::new("t");
    let lines = strings(&[(0, "a b"), (0, ""), (1, "c d e"), (2, "f")]);
    let inp = flow
        .input("inp", TestingSource::with_epochs(lines))
        .unwrap();
    let returned = inp
        .flat_map("split", |line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap()
        .capture("returned")
        .unwrap();
    let emitted = inp
        .flat_map_into(
            "split_into",
            |line: String, words: &mut riffle::operators::stateless::Emit<String>| {
                let mut parts = line.split_whitespace();
                if let Some(first) = parts.next() {
                    words.push(first.to_uppercase());
                }
                words.extend(parts.map(str::to_owned));
            },
        )
        .unwrap()
        .capture("emitted")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(
        returned.take_sorted(),
        strings(&[(0, "a"), (0, "b"), (1, "c"), (1, "d"), (1, "e"), (2, "f")])
    );
    // One worker, one batch per epoch: the items keep the order they were pushed in.
    assert_eq!(
        emitted.take(),
        strings(&[(0, "A"), (0, "b"), (1, "C"), (1, "d"), (1, "e"), (2, "F")])
    );
}

#[test]
fn inspect_and_inspect_epoch_see_every_item() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let flow = Dataflow::new("t");
    let out = flow
        .input("inp", TestingSource::with_epochs(vec![(3, 'x'), (5, 'y')]))
        .unwrap()
        .inspect_epoch("look", move |e, c| seen2.lock().unwrap().push((*e, *c)))
        .unwrap()
        .inspect("look2", |_| {})
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [(3, 'x'), (5, 'y')]);
    assert_eq!(out.take_sorted(), [(3, 'x'), (5, 'y')]);
}

#[test]
fn key_on_branch_merge_redistribute() {
    let flow = Dataflow::new("t");
    let inp = flow
        .input(
            "inp",
            TestingSource::with_epochs((0..10u32).map(|i| (0, i)).collect()),
        )
        .unwrap();
    let (small, big) = inp.branch("split", |x| *x < 5).unwrap();
    let small_out = small.capture("small").unwrap();
    let merged = small
        .merge("merge", &[&big])
        .unwrap()
        .redistribute("spread")
        .unwrap()
        .key_on("key", |x| format!("k{}", x % 2))
        .unwrap()
        .capture("keyed")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(
        small_out.take_sorted(),
        (0..5).map(|i| (0, i)).collect::<Vec<_>>()
    );
    let keyed = merged.take_sorted();
    assert_eq!(keyed.len(), 10);
    assert!(keyed.contains(&(0, ("k1".to_string(), 7))));
}

#[test]
fn map_value_reduce_and_reduce_epoch() {
    let flow = Dataflow::new("t");
    let items = vec![
        (0, ('a', 1)),
        (0, ('b', 1)),
        (0, ('a', 2)),
        (1, ('a', 4)),
        (1, ('b', 10)),
    ];
    let inp = flow
        .input("inp", TestingSource::with_epochs(items))
        .unwrap();
    let doubled = inp
        .map_value("double", |v| v * 2)
        .unwrap()
        .capture("doubled")
        .unwrap();
    let per_epoch = inp
        .reduce_epoch("sum", |a, b| a + b)
        .unwrap()
        .capture("per_epoch")
        .unwrap();
    let local = inp
        .reduce_epoch_local("sum_local", |a, b| a + b)
        .unwrap()
        .capture("local")
        .unwrap();
    let complete = inp
        .reduce("until5", |a, b| a + b, |acc| *acc >= 5)
        .unwrap()
        .capture("complete")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(doubled.take().len(), 5);
    assert_eq!(
        per_epoch.take_sorted(),
        [(0, ('a', 3)), (0, ('b', 1)), (1, ('a', 4)), (1, ('b', 10))]
    );
    assert_eq!(
        local.take_sorted(),
        [(0, ('a', 3)), (0, ('b', 1)), (1, ('a', 4)), (1, ('b', 10))]
    );
    // a: 1+2+4 = 7 completes at epoch 1; b: 1+10 = 11 completes at epoch 1.
    assert_eq!(complete.take_sorted(), [(1, ('a', 7)), (1, ('b', 11))]);
}

#[test]
fn stateful_map_forgets_a_key_on_none() {
    let flow = Dataflow::new("t");
    let items = vec![(0, ('a', 1)), (0, ('a', 1)), (1, ('a', 1)), (1, ('a', 1))];
    // Count up to 2, then forget: the third item starts again at 1.
    let out = flow
        .input("inp", TestingSource::with_epochs(items))
        .unwrap()
        .stateful_map(
            "count",
            |_| 0u32,
            |n, _v: i32| {
                let n = n + 1;
                (if n == 2 { None } else { Some(n) }, n)
            },
        )
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(
        out.take_sorted(),
        [(0, ('a', 1)), (0, ('a', 2)), (1, ('a', 1)), (1, ('a', 2))]
    );
}

#[test]
fn fold_final_count_final_and_collect() {
    let flow = Dataflow::new("t");
    let items = vec![(0, ('a', 1)), (0, ('b', 2)), (1, ('a', 3)), (2, ('a', 4))];
    let inp = flow
        .input("inp", TestingSource::with_epochs(items))
        .unwrap();
    let folded = inp
        .fold_final("fold", |_| 0, |acc, v| acc + v, |a, b| a + b)
        .unwrap()
        .capture("folded")
        .unwrap();
    let counted = inp
        .count_final("count", |(k, _)| k.to_string())
        .unwrap()
        .capture("counted")
        .unwrap();
    let collected = inp
        .collect("collect", 10)
        .unwrap()
        .capture("collected")
        .unwrap();
    let bounded = inp
        .collect("collect2", 1)
        .unwrap()
        .capture("bounded")
        .unwrap();
    run(&flow).unwrap();
    // Final results come out once, at the last epoch.
    assert_eq!(folded.take_sorted(), [(2, ('a', 8)), (2, ('b', 2))]);
    assert_eq!(
        counted.take_sorted(),
        [(2, ("a".to_string(), 3)), (2, ("b".to_string(), 1))]
    );
    assert_eq!(
        collected.take_sorted(),
        [
            (0, ('a', vec![1])),
            (0, ('b', vec![2])),
            (1, ('a', vec![3])),
            (2, ('a', vec![4]))
        ]
    );
    assert_eq!(bounded.take().len(), 4);
}

#[test]
fn duplicate_step_ids_are_refused_when_added() {
    let flow = Dataflow::new("dup");
    let inp = flow.input("inp", TestingSource::new(vec![1])).unwrap();
    inp.map("same", |x| x).unwrap();
    let err = inp.map("same", |x| x + 1).unwrap_err();
    assert!(matches!(err, RiffleError::DuplicateStepId { .. }));
    assert_eq!(
        err.to_string(),
        "step id \"same\" is used twice in dataflow \"dup\"; step ids must be unique"
    );
    let err = inp.map("", |x| x).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn a_panic_names_the_step_and_the_item() {
    let flow = Dataflow::new("t");
    let out = TestingSink::new();
    flow.input(
        "inp",
        TestingSource::with_epochs(vec![(0, 1), (0, 13), (1, 2)]),
    )
    .unwrap()
    .filter("picky", |x: &i32| {
        assert!(*x != 13, "unlucky number");
        true
    })
    .unwrap()
    .output("out", out.clone())
    .unwrap();
    let err = run(&flow).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("step \"picky\""), "{text}");
    assert!(text.contains("on item 13"), "{text}");
    assert!(text.contains("unlucky number"), "{text}");
    assert_eq!(err.step_id(), Some("picky"));
}

#[test]
fn a_panic_stops_every_worker() {
    let flow = Dataflow::new("t");
    flow.input("inp", TestingSource::new((0..10_000u32).collect()))
        .unwrap()
        .redistribute("spread")
        .unwrap()
        .map("boom", |x| {
            if x == 5_000 {
                panic!("boom at {x}");
            }
            x
        })
        .unwrap()
        .capture("out")
        .unwrap();
    let err = riffle::testing::run_workers(&flow, 2).unwrap_err();
    assert!(err.to_string().contains("step \"boom\""), "{err}");
    assert!(err.to_string().contains("boom at 5000"), "{err}");
}

#[test]
fn describe_reports_steps_kinds_and_upstreams() {
    let flow = Dataflow::new("shape");
    let inp = flow.input("inp", TestingSource::new(vec![1u8])).unwrap();
    let (a, b) = inp.branch("split", |x| *x > 0).unwrap();
    a.merge("join", &[&b]).unwrap().capture("out").unwrap();
    let d = flow.describe();
    let kinds: Vec<(&str, &str)> = d
        .steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("inp", "input"),
            ("split", "branch"),
            ("join", "merge"),
            ("out", "capture")
        ]
    );
    let join = &d.steps[2];
    let ups: Vec<(&str, &str)> = join
        .upstreams
        .iter()
        .map(|u| (u.step_id.as_str(), u.port.as_str()))
        .collect();
    assert_eq!(ups, [("split", "trues"), ("split", "falses")]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["steps"][1]["outputs"],
        serde_json::json!(["trues", "falses"])
    );
    let tree = d.to_tree();
    assert!(tree.contains("    split (branch)"), "{tree}");
}

/// `count_final`, `fold_final` and `reduce_epoch` over 20,000 items of 5,000 keys in
/// three epochs: what each emits for the limits given.
/// `(epoch, (key, value))` as captured.
type Emitted = Vec<(u64, (u64, u64))>;

fn preaggregated(workers: usize, limit: Option<usize>) -> (Emitted, Emitted, Emitted) {
    use riffle::sources::PartitionedGenerator;
    let flow = Dataflow::new("pre");
    let items = flow
        .input(
            "items",
            PartitionedGenerator::new(20_000, 4, |i| ((i * 7919) % 5_000, i)),
        )
        .unwrap();
    let counts = items
        .count_final("count", |(k, _): (u64, u64)| k)
        .unwrap()
        .capture("counts")
        .unwrap();
    let sums = items
        .fold_final("sum", |_k| 0u64, |a, v| a + v, |a, b| a + b)
        .unwrap()
        .capture("sums")
        .unwrap();
    let maxima = items
        .reduce_epoch("max", |a: u64, b: u64| a.max(b))
        .unwrap()
        .capture("maxima")
        .unwrap();
    let mut execution = riffle::Execution::new()
        .workers(workers)
        .epoch_interval(std::time::Duration::from_secs(3600));
    if let Some(limit) = limit {
        execution = execution.preaggregate_limit(limit);
    }
    execution.run(&flow).unwrap();
    (
        counts.take_sorted(),
        sums.take_sorted(),
        maxima.take_sorted(),
    )
}

/// Line `i` of the word count tests: three words of 7, 500 and 1,000 distinct.
fn three_words(i: u64) -> String {
    format!("w{} w{} w{}", i % 7, i % 500, (i * 31) % 1_000)
}

/// Counts of the words of 3,000 lines (one epoch) by `count_final_each` on
/// `workers` workers with a pre-aggregation limit of `limit` keys.
fn counted_each(workers: usize, limit: usize) -> Vec<(u64, (String, u64))> {
    use riffle::operators::keyed::Tally;
    use riffle::sources::PartitionedGenerator;
    let flow = Dataflow::new("each");
    let counts = flow
        .input("lines", PartitionedGenerator::new(3_000, 4, three_words))
        .unwrap()
        .count_final_each("count", |line: String, words: &mut Tally<String>| {
            line.split(' ').for_each(|w| words.add(w))
        })
        .unwrap()
        .capture("counts")
        .unwrap();
    riffle::Execution::new()
        .workers(workers)
        .epoch_interval(std::time::Duration::from_secs(3600))
        .preaggregate_limit(limit)
        .run(&flow)
        .unwrap();
    counts.take_sorted()
}

#[test]
fn count_final_each_counts_what_flat_map_and_count_final_count() {
    let flow = Dataflow::new("split");
    let counts = flow
        .input(
            "lines",
            riffle::sources::PartitionedGenerator::new(3_000, 4, three_words),
        )
        .unwrap()
        .flat_map("split", |line: String| {
            line.split(' ').map(str::to_owned).collect::<Vec<_>>()
        })
        .unwrap()
        .count_final("count", |w: String| w)
        .unwrap()
        .capture("counts")
        .unwrap();
    riffle::Execution::new()
        .epoch_interval(std::time::Duration::from_secs(3600))
        .run(&flow)
        .unwrap();
    let expected = counts.take_sorted();
    assert_eq!(
        expected.iter().map(|(_, (_, n))| n).sum::<u64>(),
        9_000,
        "every word counted"
    );
    for workers in [1, 2] {
        // 1: every new key flushes; 100,000: the partial count holds them all.
        for limit in [1, 100, 100_000] {
            assert_eq!(
                counted_each(workers, limit),
                expected,
                "{workers} worker(s), limit {limit}"
            );
        }
    }
}

#[test]
fn the_preaggregation_limit_does_not_change_results() {
    let expected = preaggregated(1, None);
    assert_eq!(expected.0.len(), 5_000);
    assert!(
        expected.0.iter().all(|(_, (_, n))| *n == 4),
        "{:?}",
        &expected.0[..3]
    );
    assert_eq!(
        expected.1.iter().map(|(_, (_, s))| s).sum::<u64>(),
        (0..20_000u64).sum::<u64>()
    );
    for workers in [1, 2] {
        for limit in [1, 7, 4_999] {
            assert_eq!(
                preaggregated(workers, Some(limit)),
                expected,
                "{workers} worker(s), limit {limit}"
            );
        }
    }
}

#[test]
fn a_parse_step_names_the_file_and_line_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "1,apple\n2,pear\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "3,plum\nfour,fig\n").unwrap();
    let parse = |text: String| -> Result<(u32, String), String> {
        let (n, name) = text.split_once(',').ok_or("no comma")?;
        let n = n.parse::<u32>().map_err(|e| format!("id {n:?}: {e}"))?;
        Ok((n, name.to_string()))
    };
    let good = riffle::sinks::TestingSink::new();
    let flow = Dataflow::new("numbered");
    flow.input(
        "rows",
        riffle::sources::FileSource::new(dir.path().join("a.csv")).numbered(),
    )
    .unwrap()
    .parse("parse", parse)
    .unwrap()
    .output("out", good.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(
        good.take_sorted(),
        [(1, "apple".to_string()), (2, "pear".to_string())]
    );

    let flow = Dataflow::new("numbered");
    flow.input(
        "rows",
        riffle::sources::FileSource::new(dir.path()).numbered(),
    )
    .unwrap()
    .parse("parse", parse)
    .unwrap()
    .output("out", riffle::sinks::TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"parse\""), "{err}");
    assert!(err.contains("b.csv:2:"), "{err}");
    assert!(err.contains("id \"four\""), "{err}");
}
