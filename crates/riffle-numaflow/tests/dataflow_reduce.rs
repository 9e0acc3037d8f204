//! Reducers over windows as Dataflow steps: in-process, against Riffle's own reduce
//! server, and against a real pynumaflow reduce server.

mod common;
mod rust_server;

use std::time::{Duration, UNIX_EPOCH};

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::window::{LateReason, SessionWindower, TumblingWindower};
use riffle::{Dataflow, Execution};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{UdfStreamExt, event_time};
use riffle_numaflow::server::ReduceServer;
use riffle_numaflow::udf::reduce_fn;
use riffle_numaflow::{Datum, HandlerResult, Message, Window};

use common::{PyServer, python};
use rust_server::RustServer;

fn at(key: &str, ms: u64, value: &str) -> Datum {
    Datum::new(value)
        .with_keys([key])
        .with_event_time(UNIX_EPOCH + Duration::from_millis(ms))
}

fn ms(t: std::time::SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// "key start..end values", the window's interval in ms and its values in order.
fn describe(keys: &[String], window: &Window, datums: Vec<Datum>) -> HandlerResult<Vec<Message>> {
    let values: Vec<String> = datums
        .iter()
        .map(|d| String::from_utf8_lossy(&d.value).to_string())
        .collect();
    let text = format!(
        "{} {}..{} {}",
        keys.join("+"),
        ms(window.start),
        ms(window.end),
        values.join(",")
    );
    Ok(vec![Message::new(text).with_keys(keys.to_vec())])
}

fn text(m: Message) -> String {
    String::from_utf8_lossy(&m.value).to_string()
}

#[test]
fn an_in_process_reducer_gets_each_keys_window_with_its_interval() {
    let flow = Dataflow::new("reduce-local");
    let out = TestingSink::new();
    // Out of order within the window: the reducer sees event-time order.
    let datums = vec![
        at("a", 3_000, "a2"),
        at("a", 1_000, "a1"),
        at("b", 2_000, "b1"),
        at("a", 12_000, "a3"),
    ];
    let reduced = flow
        .input("in", TestingSource::new(datums))
        .unwrap()
        .udf_reduce(
            "describe",
            event_time(Duration::from_secs(60)),
            TumblingWindower::new(Duration::from_secs(10), 0),
            reduce_fn(describe),
        )
        .unwrap();
    reduced
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(
        out.take_sorted(),
        ["a 0..10000 a1,a2", "a 10000..20000 a3", "b 0..10000 b1"]
    );
}

#[test]
fn session_windows_reduce_on_four_workers() {
    // Key k{i % 7}; every key gets bursts of 5 datums 1 ms apart, 10 s between bursts.
    let source = GeneratorSource::new(700, |i| {
        let key = format!("k{}", i % 7);
        let n = i / 7;
        let t = (n / 5) * 10_000 + n % 5;
        at(&key, t, "1")
    })
    .batch_size(50);
    let flow = Dataflow::new("reduce-sessions");
    let out = TestingSink::new();
    let reduced = flow
        .input_dynamic("in", source)
        .unwrap()
        .udf_reduce(
            "count",
            event_time(Duration::from_secs(3600)),
            SessionWindower::new(Duration::from_secs(1)),
            reduce_fn(|keys: &[String], w: &Window, datums: Vec<Datum>| {
                let span = ms(w.end) - ms(w.start);
                Ok(vec![Message::new(format!(
                    "{} {} {span}",
                    keys[0],
                    datums.len()
                ))])
            }),
        )
        .unwrap();
    reduced
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(4).run(&flow).unwrap();
    let got = out.take_sorted();
    // 700 datums / 7 keys = 100 per key = 20 bursts of 5; a session spans 4 ms plus the gap.
    assert_eq!(got.len(), 7 * 20, "{got:?}");
    assert!(got.iter().all(|l| l.ends_with(" 5 1004")), "{got:?}");
}

#[test]
fn late_datums_come_out_on_the_late_stream() {
    let flow = Dataflow::new("reduce-late");
    let (out, late) = (TestingSink::new(), TestingSink::new());
    // Epochs order the arrival: the datum at 1.5 s arrives after the watermark passed 25 s.
    let datums = vec![
        (0, at("k", 1_000, "1")),
        (1, at("k", 25_000, "2")),
        (2, at("k", 1_500, "3")),
    ];
    let reduced = flow
        .input("in", TestingSource::with_epochs(datums))
        .unwrap()
        .udf_reduce(
            "describe",
            event_time(Duration::ZERO),
            TumblingWindower::new(Duration::from_secs(10), 0),
            reduce_fn(describe),
        )
        .unwrap();
    reduced
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    reduced.late.output("late", late.clone()).unwrap();
    riffle::testing::run(&flow).unwrap();
    assert_eq!(out.take_sorted(), ["k 0..10000 1", "k 20000..30000 2"]);
    let late = late.take();
    assert_eq!(late.len(), 1, "{late:?}");
    let (keys, item) = &late[0];
    assert_eq!(keys, &["k".to_string()]);
    assert_eq!(item.value.value, b"3");
    assert_eq!(item.time, 1_500);
    assert_eq!(item.watermark, 25_000);
    assert_eq!(item.reason, LateReason::WindowClosed);
}

#[test]
fn dropped_messages_do_not_pass_and_a_failing_reducer_names_the_step() {
    let flow = Dataflow::new("reduce-drop");
    let out = TestingSink::new();
    flow.input(
        "in",
        TestingSource::new(vec![at("keep", 0, "x"), at("drop", 0, "y")]),
    )
    .unwrap()
    .udf_reduce(
        "picky",
        event_time(Duration::ZERO),
        TumblingWindower::new(Duration::from_secs(10), 0),
        reduce_fn(|keys: &[String], _: &Window, _| {
            Ok(if keys[0] == "drop" {
                vec![Message::to_drop()]
            } else {
                vec![Message::new(keys[0].clone())]
            })
        }),
    )
    .unwrap()
    .down
    .map("text", text)
    .unwrap()
    .output("out", out.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(out.take(), ["keep"]);

    let flow = Dataflow::new("reduce-fails");
    flow.input("in", TestingSource::new(vec![at("k", 0, "x")]))
        .unwrap()
        .udf_reduce(
            "fussy",
            event_time(Duration::ZERO),
            TumblingWindower::new(Duration::from_secs(10), 0),
            reduce_fn(|_: &[String], _: &Window, _| Err("no reducing today".into())),
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"fussy\""), "{err}");
    assert!(err.contains("no reducing today"), "{err}");
}

#[test]
fn calls_a_riffle_reduce_server_from_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reduce.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        ReduceServer::new(reduce_fn(describe))
            .with_socket(serving)
            .serve_with_shutdown(stop)
    });
    let source = GeneratorSource::new(600, |i| at(&format!("k{}", i % 3), i * 100, &i.to_string()))
        .batch_size(40);
    let flow = Dataflow::new("reduce-remote");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_reduce(
            "describe",
            event_time(Duration::from_secs(3600)),
            TumblingWindower::new(Duration::from_secs(10), 0),
            ClientOptions::new(&socket),
        )
        .unwrap()
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let got = out.take_sorted();
    // 600 datums 100 ms apart: 6 windows of 10 s, each with 100 datums over 3 keys.
    let mut want = Vec::new();
    for key in 0..3u64 {
        for w in 0..6u64 {
            let values: Vec<String> = (w * 100..(w + 1) * 100)
                .filter(|i| i % 3 == key)
                .map(|i| i.to_string())
                .collect();
            want.push(format!(
                "k{key} {}..{} {}",
                w * 10_000,
                (w + 1) * 10_000,
                values.join(",")
            ));
        }
    }
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn calls_a_pynumaflow_reduce_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "reduce", dir.path());
    let options = ClientOptions::new(&server.socket).with_server_info_file(&server.info);
    let datums = vec![
        at("a", 1_000, "1"),
        at("a", 2_000, "2"),
        at("b", 3_000, "10"),
        at("a", 11_000, "5"),
        at("b", 4_000, "20"),
    ];
    let flow = Dataflow::new("reduce-python");
    let out = TestingSink::new();
    flow.input("in", TestingSource::new(datums))
        .unwrap()
        .udf_call_reduce(
            "sum",
            event_time(Duration::from_secs(60)),
            TumblingWindower::new(Duration::from_secs(10), 0),
            options,
        )
        .unwrap()
        .down
        .map("text", |m: Message| {
            format!("{} {}", m.keys.join("+"), text(m))
        })
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    // pynumaflow's reducer answers "<count>:<sum>" per keys and window.
    assert_eq!(out.take_sorted(), ["a 1:5", "a 2:3", "b 2:30"]);
}

#[test]
fn a_reduce_server_that_is_gone_fails_the_run_naming_step_and_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reduce.sock");
    let flow = Dataflow::new("reduce-gone");
    flow.input("in", TestingSource::new(vec![at("k", 0, "1")]))
        .unwrap()
        .udf_call_reduce(
            "remote",
            event_time(Duration::ZERO),
            TumblingWindower::new(Duration::from_secs(10), 0),
            ClientOptions::new(&socket)
                .without_server_info()
                .with_connect_timeout(Duration::from_millis(300)),
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"remote\""), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("reduce"), "{err}");
}
