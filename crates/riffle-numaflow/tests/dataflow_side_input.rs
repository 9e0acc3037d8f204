//! Side inputs feeding a value to Dataflow steps: retrieved in-process, from Riffle's
//! side-input server and from a real pynumaflow one, refreshed on an interval.

mod common;
mod rust_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::{Dataflow, Execution};
use riffle_numaflow::SideInputValue;
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{SideInputHandle, UdfFlowExt, UdfStreamExt};
use riffle_numaflow::server::SideInputServer;
use riffle_numaflow::udf::{map_fn, side_input_fn};
use riffle_numaflow::{Datum, Message};

use common::{PyServer, python};
use rust_server::RustServer;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// A retriever that broadcasts "v1", "v2", ... and counts its calls.
fn counting() -> (impl riffle_numaflow::udf::SideInput, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let side = side_input_fn(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(SideInputValue::Broadcast(format!("v{n}").into_bytes()))
    });
    (side, calls)
}

#[test]
fn map_steps_on_two_workers_read_the_value_from_their_first_datum() {
    let (side, calls) = counting();
    let flow = Dataflow::new("side-local");
    let version = flow
        .udf_side_input("version", side, Duration::from_secs(3600))
        .unwrap();
    let out = TestingSink::new();
    let reader = version.clone();
    flow.input_dynamic("in", GeneratorSource::new(500, |i| i).batch_size(50))
        .unwrap()
        .map("tag", move |i: u64| {
            let v = reader.get().map(|v| text(&v)).unwrap_or_default();
            format!("{i}@{v}")
        })
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let got = out.take();
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|s| s.ends_with("@v1")), "{got:?}");
    // One retrieval for the process, however many workers built the step.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(version.broadcasts(), 1);
    assert_eq!(version.step_id(), "version");
}

#[test]
fn the_value_is_refreshed_on_the_interval_and_a_udf_can_read_it() {
    let (side, calls) = counting();
    let flow = Dataflow::new("side-refresh");
    let version = flow
        .udf_side_input("version", side, Duration::from_millis(20))
        .unwrap();
    // A map UDF holding the handle, as a Mapper struct would.
    let reader = version.clone();
    let out = TestingSink::new();
    flow.input("in", TestingSource::new(vec![Datum::new("x")]))
        .unwrap()
        .udf_map(
            "tag",
            map_fn(move |d: Datum| {
                let v = reader.get().unwrap();
                Ok(vec![Message::new([&d.value[..], b"@", &v[..]].concat())])
            }),
        )
        .unwrap()
        .map("text", |m: Message| text(&m.value))
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(out.take(), ["x@v1"]);
    assert!(version.wait_for_broadcasts(4, Duration::from_secs(10)));
    let now = text(&version.get().unwrap());
    let n: u64 = now[1..].parse().unwrap();
    assert!(n >= 4, "{now}");

    // Stopped, the value stays and no more calls are made.
    version.stop();
    std::thread::sleep(Duration::from_millis(50));
    let after_stop = calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), after_stop);
    assert_eq!(version.broadcasts(), after_stop);
}

#[test]
fn dropping_the_flow_and_its_handles_stops_the_refresher() {
    let (side, calls) = counting();
    let flow = Dataflow::new("side-drop");
    let version = flow
        .udf_side_input("version", side, Duration::from_millis(10))
        .unwrap();
    flow.input("in", TestingSource::new(vec![1]))
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert!(version.wait_for_broadcasts(2, Duration::from_secs(10)));
    drop(version);
    drop(flow);
    std::thread::sleep(Duration::from_millis(50));
    let after_drop = calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), after_drop);
}

#[test]
fn no_value_at_the_start_fails_the_run_and_later_failures_keep_the_value() {
    let flow = Dataflow::new("side-fails");
    flow.udf_side_input(
        "config",
        side_input_fn(|| Err("the config service is down".into())),
        Duration::from_secs(3600),
    )
    .unwrap();
    flow.input("in", TestingSource::new(vec![1]))
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"config\""), "{err}");
    assert!(err.contains("the config service is down"), "{err}");

    // Only the first retrieval succeeds: the value stays, the error is kept.
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let flow = Dataflow::new("side-fails-later");
    let config = flow
        .udf_side_input(
            "config",
            side_input_fn(move || match seen.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(SideInputValue::Broadcast(b"first".to_vec())),
                _ => Err("flaky".into()),
            }),
            Duration::from_millis(10),
        )
        .unwrap();
    flow.input("in", TestingSource::new(vec![1]))
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while config.last_error().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(config.last_error().unwrap().contains("flaky"));
    assert_eq!(&config.get().unwrap()[..], b"first");
    assert_eq!(config.broadcasts(), 1);
}

#[test]
fn a_riffle_side_input_server_feeds_a_flow() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sideinput.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        SideInputServer::new(side_input_fn(|| {
            Ok(SideInputValue::Broadcast(b"from-riffle".to_vec()))
        }))
        .with_socket(serving)
        .serve_with_shutdown(stop)
    });
    let flow = Dataflow::new("side-riffle");
    let side = flow
        .udf_call_side_input(
            "remote",
            ClientOptions::new(&socket),
            Duration::from_secs(3600),
        )
        .unwrap();
    let out = TestingSink::new();
    let reader = side.clone();
    flow.input(
        "in",
        TestingSource::new(vec!["a".to_string(), "b".to_string()]),
    )
    .unwrap()
    .map("tag", move |s: String| {
        format!("{s}@{}", text(&reader.get().unwrap()))
    })
    .unwrap()
    .output("out", out.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(out.take(), ["a@from-riffle", "b@from-riffle"]);
}

#[test]
fn a_pynumaflow_side_input_that_skips_broadcasts_keeps_the_previous_value() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "sideinput", dir.path());
    let options = ClientOptions::new(&server.socket).with_server_info_file(&server.info);
    let flow = Dataflow::new("side-python");
    let side: SideInputHandle = flow
        .udf_call_side_input("every-other", options, Duration::from_millis(30))
        .unwrap();
    let out = TestingSink::new();
    let reader = side.clone();
    flow.input("in", TestingSource::new(vec![1]))
        .unwrap()
        .map("tag", move |_: i32| text(&reader.get().unwrap()))
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    // pynumaflow's retriever broadcasts "side-1", "side-3", ... on odd calls only.
    assert_eq!(out.take(), ["side-1"]);
    assert!(side.wait_for_broadcasts(3, Duration::from_secs(20)));
    let value = text(&side.get().unwrap());
    let n: u64 = value.strip_prefix("side-").unwrap().parse().unwrap();
    assert!(n % 2 == 1 && n >= 5, "{value}");
    assert!(side.last_error().is_none());
}

#[test]
fn a_side_input_server_that_is_gone_fails_the_run_naming_step_and_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sideinput.sock");
    let flow = Dataflow::new("side-gone");
    flow.udf_call_side_input(
        "remote",
        ClientOptions::new(&socket)
            .without_server_info()
            .with_connect_timeout(Duration::from_millis(300)),
        Duration::from_secs(3600),
    )
    .unwrap();
    flow.input("in", TestingSource::new(vec![1]))
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"remote\""), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("side-input"), "{err}");
}
