//! Sources and sinks against real files, and the errors bad input gets.

use std::path::Path;

use riffle::sinks::{CsvSink, DirSink, FileSink, JsonLinesSink, TestingSink};
use riffle::sources::{CsvSource, FileSource, JsonLinesSource, TestingSource};
use riffle::testing::{run, run_workers};
use riffle::{Dataflow, RiffleError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Order {
    id: u32,
    item: String,
    qty: u32,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_directory_is_one_partition_per_file_spread_over_workers() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write(
            &dir.path().join(format!("f{i}.txt")),
            &format!("a{i}\nb{i}\n"),
        );
    }
    let flow = Dataflow::new("dir");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen2 = seen.clone();
    let out = TestingSink::new();
    flow.input("lines", FileSource::new(dir.path()))
        .unwrap()
        .inspect_debug("who", move |_, _, _, w| {
            seen2.lock().unwrap().insert(w);
        })
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    run_workers(&flow, 2).unwrap();
    assert_eq!(out.take().len(), 10);
    assert_eq!(seen.lock().unwrap().len(), 2, "both workers read files");
}

#[test]
fn a_missing_file_names_the_file_and_the_step() {
    let flow = Dataflow::new("missing");
    flow.input("lines", FileSource::new("/nonexistent/riffle/input.txt"))
        .unwrap()
        .capture("out")
        .unwrap();
    let err = run(&flow).unwrap_err();
    assert!(matches!(err, RiffleError::Io { .. }), "{err:?}");
    assert_eq!(
        err.to_string().split(": No such file").next().unwrap(),
        "step \"lines\": cannot read /nonexistent/riffle/input.txt"
    );
}

#[test]
fn invalid_utf8_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, b"fine\nalso fine\n\xff\xfe broken\n").unwrap();
    let flow = Dataflow::new("utf8");
    flow.input("lines", FileSource::new(&path))
        .unwrap()
        .capture("out")
        .unwrap();
    let err = run(&flow).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "step \"lines\": {}:3: not valid UTF-8",
            path.display()
        )),
        "{text}"
    );
}

#[test]
fn csv_rows_parse_and_a_bad_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.csv");
    write(&path, "id,item,qty\n1,apple,3\n2,pear,5\n3,plum,many\n");
    let flow = Dataflow::new("csv");
    flow.input("orders", CsvSource::<Order>::new(&path))
        .unwrap()
        .capture("out")
        .unwrap();
    let err = run(&flow).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "step \"orders\": {}:4: bad CSV row",
            path.display()
        )),
        "{text}"
    );

    let good = dir.path().join("good.csv");
    write(&good, "id,item,qty\n1,apple,3\n2,\"pear, green\",5\n");
    let flow = Dataflow::new("csv2");
    let out = flow
        .input("orders", CsvSource::<Order>::new(&good))
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    let rows: Vec<Order> = out.take_sorted().into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        rows[1],
        Order {
            id: 2,
            item: "pear, green".into(),
            qty: 5
        }
    );
}

#[test]
fn a_wrong_number_of_csv_fields_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.csv");
    write(&path, "id,item,qty\n1,apple\n");
    let flow = Dataflow::new("csv");
    flow.input("orders", CsvSource::<Order>::new(&path))
        .unwrap()
        .capture("out")
        .unwrap();
    let text = run(&flow).unwrap_err().to_string();
    assert!(
        text.contains(":2: bad CSV row: 2 field(s) where the header has 3"),
        "{text}"
    );
}

#[test]
fn bad_json_lines_go_to_the_dead_letter_file_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    write(
        &path,
        "{\"id\":1,\"item\":\"apple\",\"qty\":3}\nnot json\n\n{\"id\":2,\"item\":\"pear\"}\n{\"id\":3,\"item\":\"fig\",\"qty\":1}\n",
    );
    let dead = dir.path().join("dead.jsonl");
    let flow = Dataflow::new("json");
    let out = flow
        .input(
            "orders",
            JsonLinesSource::<Order>::new(&path).dead_letter_file(&dead),
        )
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    let ids: Vec<u32> = out.take_sorted().into_iter().map(|(_, o)| o.id).collect();
    assert_eq!(ids, [1, 3]);
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["line"], 2);
    assert_eq!(letters[0]["text"], "not json");
    assert_eq!(letters[1]["line"], 4);
    assert!(
        letters[1]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field `qty`")
    );
    assert_eq!(letters[0]["step_id"], "orders");

    // Without a dead-letter file the same input stops the run at line 2.
    let flow = Dataflow::new("json2");
    flow.input("orders", JsonLinesSource::<Order>::new(&path))
        .unwrap()
        .capture("out")
        .unwrap();
    let text = run(&flow).unwrap_err().to_string();
    assert!(
        text.contains(&format!("{}:2: bad JSON", path.display())),
        "{text}"
    );
}

#[test]
fn file_csv_json_and_dir_sinks_write_what_they_get() {
    let dir = tempfile::tempdir().unwrap();
    let orders = vec![
        Order {
            id: 1,
            item: "apple".into(),
            qty: 3,
        },
        Order {
            id: 2,
            item: "pear, green".into(),
            qty: 5,
        },
    ];
    let flow = Dataflow::new("sinks");
    let inp = flow
        .input("inp", TestingSource::new(orders.clone()))
        .unwrap();
    inp.output(
        "csv",
        CsvSink::new(dir.path().join("o.csv"), &["id", "item", "qty"]),
    )
    .unwrap();
    inp.output("json", JsonLinesSink::new(dir.path().join("o.jsonl")))
        .unwrap();
    inp.map("name", |o: Order| o.item)
        .unwrap()
        .output("txt", FileSink::new(dir.path().join("o.txt")))
        .unwrap();
    inp.map("keyed", |o: Order| (o.id, format!("{}={}", o.id, o.qty)))
        .unwrap()
        .output("dir", DirSink::new(dir.path().join("parts"), 2))
        .unwrap();
    run_workers(&flow, 2).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("o.csv")).unwrap(),
        "id,item,qty\n1,apple,3\n2,\"pear, green\",5\n"
    );
    let back: Vec<Order> = std::fs::read_to_string(dir.path().join("o.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, orders);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("o.txt")).unwrap(),
        "apple\npear, green\n"
    );
    let mut parts = String::new();
    for i in 0..2 {
        parts += &std::fs::read_to_string(dir.path().join(format!("parts/part-{i:05}"))).unwrap();
    }
    let mut lines: Vec<&str> = parts.lines().collect();
    lines.sort();
    assert_eq!(lines, ["1=3", "2=5"]);

    // The same CSV read back through the CSV source round-trips.
    let flow = Dataflow::new("back");
    let out = flow
        .input("inp", CsvSource::<Order>::new(dir.path().join("o.csv")))
        .unwrap()
        .capture("out")
        .unwrap();
    run(&flow).unwrap();
    assert_eq!(
        out.take_sorted()
            .into_iter()
            .map(|(_, o)| o)
            .collect::<Vec<_>>(),
        orders
    );
}

#[test]
fn an_unwritable_sink_names_its_file() {
    let flow = Dataflow::new("unwritable");
    flow.input("inp", TestingSource::new(vec!["x".to_string()]))
        .unwrap()
        .output("out", FileSink::new("/nonexistent/dir/out.txt"))
        .unwrap();
    let text = run(&flow).unwrap_err().to_string();
    assert!(
        text.starts_with("step \"out\": cannot create /nonexistent/dir/out.txt"),
        "{text}"
    );
}
