//! Reduce-stream UDFs and accumulators as Dataflow steps: in-process, against
//! Riffle's own servers, and against real pynumaflow 0.14.0 servers.

mod common;
mod rust_server;

use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::window::TumblingWindower;
use riffle::{Dataflow, Execution};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{UdfStreamExt, event_time};
use riffle_numaflow::server::{AccumulatorServer, ReduceStreamServer};
use riffle_numaflow::udf::{Accumulator, DatumStream, MessageSender, ReduceStreamer};
use riffle_numaflow::{Accumulated, DROP, Datum, HandlerResult, Message, Window};

use common::{PyServer, python, script};
use rust_server::RustServer;

fn at(key: &str, ms: u64, value: &str) -> Datum {
    Datum::new(value)
        .with_keys([key])
        .with_event_time(UNIX_EPOCH + Duration::from_millis(ms))
}

fn ms(t: std::time::SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

fn text(m: Message) -> String {
    format!("{} {}", m.keys.join("+"), String::from_utf8_lossy(&m.value))
}

fn accumulated(a: Accumulated) -> String {
    format!(
        "{} {} {} [{}]",
        a.datum.keys.join("+"),
        String::from_utf8_lossy(&a.datum.value),
        ms(a.datum.event_time),
        a.tags.join(",")
    )
}

/// Per keys and window, one message per datum as it arrives: "start:<count>:<sum>".
struct RunningSum;

impl ReduceStreamer for RunningSum {
    async fn reduce_stream(
        &self,
        keys: Vec<String>,
        window: Window,
        mut datums: DatumStream,
        out: MessageSender<Message>,
    ) -> HandlerResult<()> {
        let (mut count, mut sum) = (0, 0i64);
        while let Some(d) = datums.next().await {
            let value: i64 = String::from_utf8_lossy(&d.value).parse()?;
            if value < 0 {
                return Err("negative values are not summed".into());
            }
            count += 1;
            sum += value;
            let text = format!("{}:{count}:{sum}", ms(window.start));
            out.send(Message::new(text).with_keys(keys.clone())).await?;
        }
        if count == 0 {
            out.send(Message::to_drop()).await?;
        }
        Ok(())
    }
}

/// Numbers each stream's datums in the order they come ("v#1", "v#2", ...), tag
/// "rs"; a value "drop" is answered with a dropped output, "boom" fails.
struct Numbered;

impl Accumulator for Numbered {
    async fn accumulate(
        &self,
        mut datums: DatumStream,
        out: MessageSender<Accumulated>,
    ) -> HandlerResult<()> {
        let mut n = 0;
        while let Some(mut d) = datums.next().await {
            n += 1;
            let tags = match d.value.as_slice() {
                b"boom" => return Err("no accumulating today".into()),
                b"drop" => vec![DROP.to_string()],
                _ => vec!["rs".to_string()],
            };
            d.value = format!("{}#{n}", String::from_utf8_lossy(&d.value)).into_bytes();
            out.send(Accumulated { datum: d, tags }).await?;
        }
        Ok(())
    }
}

fn windows_of_ten() -> TumblingWindower {
    TumblingWindower::new(Duration::from_secs(10), 0)
}

/// Datums out of event-time order over two keys and two windows.
fn numbers() -> Vec<Datum> {
    vec![
        at("a", 2_000, "2"),
        at("a", 1_000, "1"),
        at("b", 3_000, "10"),
        at("a", 11_000, "5"),
        at("b", 4_000, "20"),
    ]
}

#[test]
fn an_in_process_reduce_streamer_sends_every_message_of_each_window() {
    let flow = Dataflow::new("reduce-stream-local");
    let out = TestingSink::new();
    let reduced = flow
        .input("in", TestingSource::new(numbers()))
        .unwrap()
        .udf_reduce_stream(
            "running",
            event_time(Duration::from_secs(60)),
            windows_of_ten(),
            RunningSum,
        )
        .unwrap();
    reduced
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    // In event-time order within each window: a's window 0 sees 1 then 2.
    assert_eq!(
        out.take_sorted(),
        ["a 0:1:1", "a 0:2:3", "a 10000:1:5", "b 0:1:10", "b 0:2:30"]
    );
}

#[test]
fn a_failing_reduce_streamer_names_the_step() {
    let flow = Dataflow::new("reduce-stream-fails");
    flow.input("in", TestingSource::new(vec![at("k", 0, "-1")]))
        .unwrap()
        .udf_reduce_stream(
            "sums",
            event_time(Duration::ZERO),
            windows_of_ten(),
            RunningSum,
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"sums\""), "{err}");
    assert!(err.contains("negative values are not summed"), "{err}");
}

#[test]
fn calls_a_riffle_reduce_stream_server_from_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reducestream.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        ReduceStreamServer::new(RunningSum)
            .with_socket(serving)
            .serve_with_shutdown(stop)
    });
    // 300 datums 100 ms apart over 3 keys: 3 windows of 10 s per key.
    let source =
        GeneratorSource::new(300, |i| at(&format!("k{}", i % 3), i * 100, "1")).batch_size(40);
    let flow = Dataflow::new("reduce-stream-remote");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_reduce_stream(
            "running",
            event_time(Duration::from_secs(3600)),
            windows_of_ten(),
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
    let mut want = Vec::new();
    for key in 0..3u64 {
        for w in 0..3u64 {
            let count = (w * 100..(w + 1) * 100).filter(|i| i % 3 == key).count();
            for n in 1..=count {
                want.push(format!("k{key} {}:{n}:{n}", w * 10_000));
            }
        }
    }
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn calls_a_pynumaflow_reduce_stream_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reducestream.sock");
    let info = dir.path().join("reducestreamer-server-info");
    let mut child = Command::new(&py)
        .arg(script("serve_reduce_stream.py"))
        .arg(&socket)
        .arg(&info)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pynumaflow reduce-stream server");
    let flow = Dataflow::new("reduce-stream-python");
    let out = TestingSink::new();
    flow.input("in", TestingSource::new(numbers()))
        .unwrap()
        .udf_call_reduce_stream(
            "running",
            event_time(Duration::from_secs(60)),
            windows_of_ten(),
            ClientOptions::new(&socket).with_server_info_file(&info),
        )
        .unwrap()
        .down
        .map("text", text)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    let ran = Execution::new().workers(2).run(&flow);
    let _ = child.kill();
    let _ = child.wait();
    ran.unwrap();
    // pynumaflow's streamer answers "<count>:<running sum>" per datum.
    assert_eq!(
        out.take_sorted(),
        ["a 1:1", "a 1:5", "a 2:3", "b 1:10", "b 2:30"]
    );
}

/// Key a: two datums out of order, then one more after a quiet spell of over 5 s
/// (a new stream); key b: one datum, and one the accumulator drops.
fn streams() -> Vec<Datum> {
    vec![
        at("a", 3_000, "a2"),
        at("a", 1_000, "a1"),
        at("b", 2_000, "b1"),
        at("b", 2_500, "drop"),
        at("a", 20_000, "a3"),
    ]
}

#[test]
fn an_in_process_accumulator_gets_each_keys_stream_in_event_time_order() {
    let flow = Dataflow::new("accumulate-local");
    let out = TestingSink::new();
    let accumulation = flow
        .input("in", TestingSource::new(streams()))
        .unwrap()
        .udf_accumulate(
            "number",
            event_time(Duration::from_secs(60)),
            Duration::from_secs(5),
            Numbered,
        )
        .unwrap();
    accumulation
        .down
        .map("text", accumulated)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    assert_eq!(
        out.take_sorted(),
        [
            "a a1#1 1000 [rs]",
            "a a2#2 3000 [rs]",
            "a a3#1 20000 [rs]",
            "b b1#1 2000 [rs]"
        ]
    );
}

#[test]
fn an_accumulator_stream_closes_with_the_watermark_and_late_datums_come_out_late() {
    let flow = Dataflow::new("accumulate-late");
    let out = TestingSink::new();
    let late = TestingSink::new();
    // No lateness, epochs order the arrival: a's stream, open since "a1" at 1 s,
    // closes at 6 s once "b1" at 30 s is seen, so "a0" at 0.5 s comes after it closed.
    let accumulation = flow
        .input(
            "in",
            TestingSource::with_epochs(vec![
                (0, at("a", 1_000, "a1")),
                (1, at("b", 30_000, "b1")),
                (2, at("a", 500, "a0")),
            ]),
        )
        .unwrap()
        .udf_accumulate(
            "number",
            event_time(Duration::ZERO),
            Duration::from_secs(5),
            Numbered,
        )
        .unwrap();
    accumulation
        .down
        .map("text", accumulated)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    accumulation
        .late
        .map(
            "late",
            |(keys, l): (Vec<String>, riffle::window::Late<Datum>)| {
                format!(
                    "{} {}",
                    keys.join("+"),
                    String::from_utf8_lossy(&l.value.value)
                )
            },
        )
        .unwrap()
        .output("late-out", late.clone())
        .unwrap();
    riffle::testing::run(&flow).unwrap();
    assert_eq!(out.take_sorted(), ["a a1#1 1000 [rs]", "b b1#1 30000 [rs]"]);
    assert_eq!(late.take(), ["a a0"]);
}

#[test]
fn a_failing_accumulator_names_the_step() {
    let flow = Dataflow::new("accumulate-fails");
    flow.input("in", TestingSource::new(vec![at("k", 0, "boom")]))
        .unwrap()
        .udf_accumulate(
            "acc",
            event_time(Duration::ZERO),
            Duration::from_secs(1),
            Numbered,
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"acc\""), "{err}");
    assert!(err.contains("no accumulating today"), "{err}");
}

#[test]
fn calls_a_riffle_accumulator_server_from_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("accumulator.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        AccumulatorServer::new(Numbered)
            .with_socket(serving)
            .serve_with_shutdown(stop)
    });
    // 4 keys, each with a datum every 400 ms, a 10 s pause after 5 s: two streams
    // per key under a 2 s timeout.
    let source = GeneratorSource::new(100, |i| {
        let t = i * 100 + if i >= 50 { 10_000 } else { 0 };
        at(&format!("k{}", i % 4), t, &i.to_string())
    })
    .batch_size(16);
    let flow = Dataflow::new("accumulate-remote");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_accumulate(
            "number",
            event_time(Duration::from_secs(3600)),
            Duration::from_secs(2),
            ClientOptions::new(&socket),
        )
        .unwrap()
        .down
        .map("text", accumulated)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let mut want = Vec::new();
    for key in 0..4u64 {
        for half in [0..50u64, 50..100] {
            for (n, i) in half.filter(|i| i % 4 == key).enumerate() {
                let t = i * 100 + if i >= 50 { 10_000 } else { 0 };
                want.push(format!("k{key} {i}#{} {t} [rs]", n + 1));
            }
        }
    }
    want.sort();
    assert_eq!(out.take_sorted(), want);
}

#[test]
fn calls_a_pynumaflow_accumulator_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "accumulator", dir.path());
    let options = ClientOptions::new(&server.socket).with_server_info_file(&server.info);
    // Two keys' streams from two workers, out of event-time order. (pynumaflow
    // 0.14.0's accumulator server shuts itself down when a client cancels a call,
    // so the client reads every call to its end.)
    let datums = vec![
        at("a", 3_000, "a3"),
        at("b", 1_500, "b1"),
        at("a", 1_000, "a1"),
        at("a", 2_000, "a2"),
        at("b", 2_500, "b2"),
    ];
    let flow = Dataflow::new("accumulate-python");
    let out = TestingSink::new();
    flow.input("in", TestingSource::new(datums))
        .unwrap()
        .udf_call_accumulate(
            "number",
            event_time(Duration::from_secs(60)),
            Duration::from_secs(5),
            options,
        )
        .unwrap()
        .down
        .map("text", accumulated)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    // pynumaflow's accumulator numbers the stream's values in the order sent, tag "py".
    assert_eq!(
        out.take_sorted(),
        [
            "a a1#1 1000 [py]",
            "a a2#2 2000 [py]",
            "a a3#3 3000 [py]",
            "b b1#1 1500 [py]",
            "b b2#2 2500 [py]"
        ]
    );
}

#[test]
fn servers_that_are_gone_fail_the_run_naming_step_socket_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let options = |name: &str| {
        ClientOptions::new(dir.path().join(name))
            .without_server_info()
            .with_connect_timeout(Duration::from_millis(300))
    };
    let flow = Dataflow::new("reduce-stream-gone");
    flow.input("in", TestingSource::new(vec![at("k", 0, "1")]))
        .unwrap()
        .udf_call_reduce_stream(
            "streamed",
            event_time(Duration::ZERO),
            windows_of_ten(),
            options("reducestream.sock"),
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"streamed\""), "{err}");
    assert!(err.contains("reducestream.sock"), "{err}");
    assert!(err.contains("reduce-stream"), "{err}");

    let flow = Dataflow::new("accumulate-gone");
    flow.input("in", TestingSource::new(vec![at("k", 0, "1")]))
        .unwrap()
        .udf_call_accumulate(
            "accumulated",
            event_time(Duration::ZERO),
            Duration::from_secs(1),
            options("accumulator.sock"),
        )
        .unwrap()
        .down
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"accumulated\""), "{err}");
    assert!(err.contains("accumulator.sock"), "{err}");
    assert!(err.contains("accumulator"), "{err}");
}
