//! UDFs as Dataflow steps: in-process, against Riffle's own server, and against
//! real pynumaflow servers, on several workers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::{Dataflow, Execution};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{UdfFlowExt, UdfStreamExt};
use riffle_numaflow::server::MapServer;
use riffle_numaflow::udf::{batch_map_fn, map_fn, sink_fn};
use riffle_numaflow::{Datum, Message, SinkResponse};

use common::{PyServer, python};

/// A Riffle map server on its own thread and runtime, stopped when dropped.
struct RustServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RustServer {
    fn start(socket: &std::path::Path) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let socket = socket.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                MapServer::new(map_fn(|d: Datum| {
                    let n: u64 = String::from_utf8_lossy(&d.value).parse().unwrap_or(0);
                    if n.is_multiple_of(10) {
                        return Ok(vec![Message::to_drop()]);
                    }
                    Ok(vec![Message::new((n * 2).to_string())])
                }))
                .with_socket(socket)
                .serve_with_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn numbers(count: u64) -> GeneratorSource<Datum, impl Fn(u64) -> Datum + Send + Sync + 'static> {
    GeneratorSource::new(count, |i| Datum::new(i.to_string())).batch_size(500)
}

#[test]
fn calls_a_rust_map_server_over_the_socket_from_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let _server = RustServer::start(&socket);
    let flow = Dataflow::new("udf-remote");
    let out = TestingSink::new();
    flow.input_dynamic("numbers", numbers(5000))
        .unwrap()
        .udf_call_map("double", ClientOptions::new(&socket), 256)
        .unwrap()
        .map("parse", |m: Message| {
            String::from_utf8_lossy(&m.value).parse::<u64>().unwrap()
        })
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let got = out.take_sorted();
    let want: Vec<u64> = {
        let mut v: Vec<u64> = (0..5000u64)
            .filter(|n| !n.is_multiple_of(10))
            .map(|n| n * 2)
            .collect();
        v.sort();
        v
    };
    assert_eq!(got, want);
}

#[test]
fn in_process_batch_map_and_sink() {
    let flow = Dataflow::new("udf-local");
    let written = Arc::new(Mutex::new(Vec::new()));
    let seen = written.clone();
    flow.input(
        "in",
        TestingSource::new((0..100).map(|i| Datum::new(format!("{i}"))).collect()),
    )
    .unwrap()
    .udf_batch_map(
        "bang",
        batch_map_fn(|batch: Vec<Datum>| {
            Ok(batch
                .into_iter()
                .map(|d| vec![Message::new([d.value, b"!".to_vec()].concat())])
                .collect())
        }),
        16,
    )
    .unwrap()
    .map("datum", |m: Message| Datum::new(m.value))
    .unwrap()
    .udf_sink(
        "collect",
        sink_fn(move |batch: Vec<Datum>| {
            let mut w = seen.lock().unwrap();
            Ok(batch
                .into_iter()
                .map(|d| {
                    w.push(String::from_utf8_lossy(&d.value).to_string());
                    SinkResponse::success(d.id)
                })
                .collect())
        }),
    )
    .unwrap();
    riffle::run_main(&flow).unwrap();
    let mut got = written.lock().unwrap().clone();
    got.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("{i}!")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_sink_failure_stops_the_run_naming_the_step() {
    let flow = Dataflow::new("udf-sink-fails");
    flow.input(
        "in",
        TestingSource::new(vec![Datum::new("ok"), Datum::new("bad")]),
    )
    .unwrap()
    .udf_sink(
        "picky",
        sink_fn(|batch: Vec<Datum>| {
            Ok(batch
                .into_iter()
                .map(|d| {
                    if d.value == b"bad" {
                        SinkResponse::failure(d.id, "no bad values")
                    } else {
                        SinkResponse::success(d.id)
                    }
                })
                .collect())
        }),
    )
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"picky\""), "{err}");
    assert!(err.contains("no bad values"), "{err}");
}

#[test]
fn a_map_server_that_is_gone_fails_the_run_naming_step_and_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let info = dir.path().join("mapper-server-info");
    std::fs::write(
        &info,
        riffle_numaflow::info::ServerInfo::riffle("1.4.0-z").to_file_text(),
    )
    .unwrap();
    let flow = Dataflow::new("udf-gone");
    let out = TestingSink::<Message>::new();
    flow.input("in", TestingSource::new(vec![Datum::new("1")]))
        .unwrap()
        .udf_call_map(
            "remote",
            ClientOptions::new(&socket).with_connect_timeout(Duration::from_millis(300)),
            8,
        )
        .unwrap()
        .output("out", out)
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"remote\""), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
}

#[test]
fn pynumaflow_map_sink_and_source_as_steps() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let map = PyServer::start(&py, "map-async", dir.path());
    let source = PyServer::start(&py, "source", dir.path());
    let sink = PyServer::start(&py, "sink", dir.path());
    let opts = |s: &PyServer| ClientOptions::new(&s.socket).with_server_info_file(&s.info);

    let flow = Dataflow::new("udf-python");
    let out = TestingSink::new();
    let upper = flow
        .udf_call_source("read", opts(&source), 4)
        .unwrap()
        .map("datum", |m: riffle_numaflow::SourceMessage| {
            Datum::new(m.payload).with_keys(m.keys)
        })
        .unwrap()
        .udf_call_map("upper", opts(&map), 3)
        .unwrap()
        .map("datum2", |m: Message| Datum::new(m.value))
        .unwrap();
    upper.udf_call_sink("write", opts(&sink)).unwrap();
    upper
        .map("text", |d: Datum| {
            String::from_utf8_lossy(&d.value).to_string()
        })
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(
        out.take_sorted(),
        ["M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M9"]
    );
}
