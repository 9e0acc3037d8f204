//! Source-transform and batch-map servers called from Dataflow steps: real pynumaflow
//! servers and Riffle's own, batching, a restart mid-run, and errors that name the step.

mod common;
mod rust_server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riffle::sinks::TestingSink;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::{Dataflow, Execution};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::UdfStreamExt;
use riffle_numaflow::server::{BatchMapServer, MapServer, SourceTransformServer};
use riffle_numaflow::udf::{batch_map_fn, map_fn, transform_fn};
use riffle_numaflow::{Datum, Message, TransformMessage};

use common::{PyServer, python};
use rust_server::RustServer;

fn options(server: &PyServer) -> ClientOptions {
    ClientOptions::new(&server.socket).with_server_info_file(&server.info)
}

fn secs_since_2024(t: SystemTime) -> u64 {
    let base = UNIX_EPOCH + Duration::from_secs(1_704_067_200); // 2024-01-01T00:00:00Z
    t.duration_since(base).unwrap().as_secs()
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).to_string()
}

#[test]
fn a_pynumaflow_transformer_moves_event_times_and_keeps_the_rest() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "transform", dir.path());
    let watermark = UNIX_EPOCH + Duration::from_secs(7);
    let datums: Vec<Datum> = ["a", "bb", "ccc", "dddd", "eeeee"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Datum::new(*v)
                .with_keys([format!("k{i}")])
                .with_watermark(watermark)
                .with_header("from", "test")
                .with_id(format!("id{i}"))
        })
        .collect();
    let flow = Dataflow::new("transform-python");
    let out = TestingSink::new();
    flow.input("in", TestingSource::new(datums))
        .unwrap()
        .udf_call_transform("retime", options(&server), 2)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let mut got: Vec<Datum> = out.take();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got.len(), 5);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.id, format!("id{i}"));
        assert_eq!(
            d.value,
            "abcde"[i..=i].to_uppercase().repeat(i + 1).as_bytes()
        );
        assert_eq!(d.keys, [format!("k{i}")]);
        // pynumaflow's transformer: 2024-01-01 plus one second per byte.
        assert_eq!(secs_since_2024(d.event_time), i as u64 + 1);
        assert_eq!(d.watermark, watermark);
        assert_eq!(d.headers.get("from").map(String::as_str), Some("test"));
    }
}

#[test]
fn a_transform_server_restarted_mid_run_transforms_every_datum_once() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Mutex::new(PyServer::start(&py, "transform", dir.path())));
    let opts = options(&server.lock().unwrap());
    let restarting = server.clone();
    // The generator restarts the server once, while the flow is running.
    let source = GeneratorSource::new(2_000, move |i| {
        if i == 1_000 {
            restarting.lock().unwrap().restart();
        }
        Datum::new(format!("v{i}"))
    })
    .batch_size(100);
    let flow = Dataflow::new("transform-restart");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_transform("upper", opts, 64)
        .unwrap()
        .map("value", |d: Datum| text(&d.value))
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let got = out.take_sorted();
    let mut want: Vec<String> = (0..2_000).map(|i| format!("V{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_riffle_transformer_drops_and_a_failing_one_names_the_step_and_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sourcetransform.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        SourceTransformServer::new(transform_fn(|d: Datum| {
            if d.value == b"boom" {
                return Err("boom requested".into());
            }
            if d.value == b"drop" {
                return Ok(vec![TransformMessage::new(
                    Message::to_drop(),
                    d.event_time,
                )]);
            }
            let t = UNIX_EPOCH + Duration::from_secs(d.value.len() as u64);
            Ok(vec![
                TransformMessage::new(Message::new(d.value.clone()).with_keys(["x"]), t),
                TransformMessage::new(Message::new(d.value).with_keys(["y"]), t),
            ])
        }))
        .with_socket(serving)
        .serve_with_shutdown(stop)
    });

    let flow = Dataflow::new("transform-riffle");
    let out = TestingSink::new();
    flow.input(
        "in",
        TestingSource::new(vec![Datum::new("ab"), Datum::new("drop")]),
    )
    .unwrap()
    .udf_call_transform("twice", ClientOptions::new(&socket), 8)
    .unwrap()
    .map("line", |d: Datum| {
        let at = d.event_time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        format!("{} {} {at}", d.keys.join(","), text(&d.value))
    })
    .unwrap()
    .output("out", out.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(out.take_sorted(), ["x ab 2", "y ab 2"]);

    let flow = Dataflow::new("transform-fails");
    flow.input("in", TestingSource::new(vec![Datum::new("boom")]))
        .unwrap()
        .udf_call_transform("explode", ClientOptions::new(&socket), 8)
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"explode\""), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("source-transform"), "{err}");
    assert!(err.contains("boom requested"), "{err}");
}

#[test]
fn a_pynumaflow_batch_map_server_in_batches_from_two_workers() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "batch-map", dir.path());
    let source = GeneratorSource::new(1_000, |i| Datum::new(i.to_string())).batch_size(100);
    let flow = Dataflow::new("batch-map-python");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_batch_map("bang", options(&server), 50)
        .unwrap()
        .map("value", |m: Message| text(&m.value))
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let got = out.take_sorted();
    let mut want: Vec<String> = (0..1_000).map(|i| format!("{i}!")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_riffle_batch_map_server_sees_the_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("batchmap.sock");
    let serving = socket.clone();
    let sizes = Arc::new(Mutex::new(HashMap::<usize, usize>::new()));
    let seen = sizes.clone();
    let _server = RustServer::start(move |stop| {
        BatchMapServer::new(batch_map_fn(move |batch: Vec<Datum>| {
            *seen.lock().unwrap().entry(batch.len()).or_default() += 1;
            Ok(batch
                .into_iter()
                .map(|d| vec![Message::new(d.value)])
                .collect())
        }))
        .with_socket(serving)
        .serve_with_shutdown(stop)
    });
    let source = GeneratorSource::new(1_000, |i| Datum::new(i.to_string())).batch_size(500);
    let flow = Dataflow::new("batch-map-riffle");
    let out = TestingSink::new();
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_call_batch_map("same", ClientOptions::new(&socket), 25)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(out.take().len(), 1_000);
    let sizes = sizes.lock().unwrap();
    assert!(sizes.keys().all(|&n| n <= 25), "{sizes:?}");
    assert_eq!(sizes.iter().map(|(n, c)| n * c).sum::<usize>(), 1_000);
}

#[test]
fn calling_a_unary_map_server_as_batch_map_names_the_step_and_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let serving = socket.clone();
    let _server = RustServer::start(move |stop| {
        MapServer::new(map_fn(|d: Datum| Ok(vec![Message::new(d.value)])))
            .with_socket(serving)
            .serve_with_shutdown(stop)
    });
    let flow = Dataflow::new("batch-map-wrong-kind");
    flow.input("in", TestingSource::new(vec![Datum::new("x")]))
        .unwrap()
        .udf_call_batch_map("batchy", ClientOptions::new(&socket), 8)
        .unwrap()
        .output("out", TestingSink::new())
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"batchy\""), "{err}");
    assert!(err.contains("batch-map"), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
}
