//! Sinks with a fallback sink as Dataflow steps: datums a sink answers with fallback
//! go to the fallback sink (in-process or a server, pynumaflow's or Riffle's);
//! datums it refuses are retried, then go where the step's retry strategy says.

mod common;
mod rust_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use riffle::Execution;
use riffle::sources::{GeneratorSource, TestingSource};
use riffle::{Dataflow, Stream};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{OnFailure, SinkRetry, SinkUdf, UdfStreamExt};
use riffle_numaflow::server::{ServerOptions, SinkServer};
use riffle_numaflow::udf::{sink_fn, transform_fn};
use riffle_numaflow::{Datum, Message, SinkResponse, TransformMessage, UdfKind};

use common::{PyServer, python};
use rust_server::RustServer;

/// The (value, id) of every datum a sink wrote.
type Written = Arc<Mutex<Vec<(String, String)>>>;

/// A sink that records every value (and id) it writes and answers `answer(value)`.
fn recording(
    answer: impl Fn(&str, String) -> SinkResponse + Send + Sync + 'static,
) -> (SinkUdf, Written) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let log = written.clone();
    let sink = SinkUdf::new(sink_fn(move |batch: Vec<Datum>| {
        Ok(batch
            .into_iter()
            .map(|d| {
                let value = String::from_utf8_lossy(&d.value).to_string();
                let response = answer(&value, d.id.clone());
                if response.status == riffle_numaflow::SinkStatus::Success {
                    log.lock().unwrap().push((value, d.id));
                }
                response
            })
            .collect())
    }));
    (sink, written)
}

fn values(log: &Written) -> Vec<String> {
    let mut v: Vec<String> = log.lock().unwrap().iter().map(|(v, _)| v.clone()).collect();
    v.sort();
    v
}

fn words(flow: &Dataflow, words: &[&str]) -> Stream<Datum> {
    let datums = words.iter().map(|w| Datum::new(*w)).collect();
    flow.input("in", TestingSource::new(datums)).unwrap()
}

fn py_options(server: &PyServer) -> ClientOptions {
    ClientOptions::new(&server.socket).with_server_info_file(&server.info)
}

#[test]
fn in_process_fallback_on_two_workers_gets_exactly_the_handed_on_datums() {
    let source = GeneratorSource::new(3_000, |i| Datum::new(i.to_string())).batch_size(200);
    let (primary, written) = recording(|v, id| {
        if v.parse::<u64>().unwrap().is_multiple_of(3) {
            SinkResponse::fallback(id)
        } else {
            SinkResponse::success(id)
        }
    });
    let (fallback, parked) = recording(|_, id| SinkResponse::success(id));
    let flow = Dataflow::new("fallback-local");
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_sink_with_fallback("write", primary, fallback)
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    let sorted = |keep: fn(u64) -> bool| {
        let mut v: Vec<String> = (0..3_000u64)
            .filter(|&n| keep(n))
            .map(|n| n.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(values(&written), sorted(|n| !n.is_multiple_of(3)));
    assert_eq!(values(&parked), sorted(|n| n.is_multiple_of(3)));
}

#[test]
fn a_pynumaflow_sink_hands_on_to_a_riffle_fallback_sink_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let primary = PyServer::start(&py, "sink", dir.path());
    // Riffle's sink server started as Numaflow starts a fallback sink container.
    let fb_dir = tempfile::tempdir().unwrap();
    let fb_socket = fb_dir.path().join("fb-sink.sock");
    let serving = fb_socket.clone();
    let parked = Arc::new(Mutex::new(Vec::new()));
    let park = parked.clone();
    let _fallback = RustServer::start(move |stop| {
        let udf = sink_fn(move |batch: Vec<Datum>| {
            Ok(batch
                .into_iter()
                .map(|d| {
                    park.lock().unwrap().push(d.keys.join(","));
                    SinkResponse::success(d.id)
                })
                .collect())
        });
        SinkServer::with_options(udf, ServerOptions::for_kind(UdfKind::FallbackSink))
            .with_socket(serving)
            .serve_with_shutdown(stop)
    });
    // pynumaflow's sink answers "fb" with fallback; the keys tell the datums apart.
    let datums: Vec<Datum> = (0..40)
        .map(|i| {
            let value = if i % 4 == 0 { "fb" } else { "ok" };
            Datum::new(value).with_keys([format!("k{i}")])
        })
        .collect();
    let flow = Dataflow::new("fallback-remote");
    flow.input("in", TestingSource::new(datums))
        .unwrap()
        .udf_sink_with_fallback(
            "write",
            SinkUdf::call(py_options(&primary)),
            SinkUdf::call(ClientOptions::new(&fb_socket)),
        )
        .unwrap();
    Execution::new().workers(2).run(&flow).unwrap();
    drop(flow);
    let mut got = parked.lock().unwrap().clone();
    got.sort();
    let mut want: Vec<String> = (0..40).step_by(4).map(|i| format!("k{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn an_in_process_sink_hands_on_to_a_pynumaflow_fallback_sink() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fallback = PyServer::start(&py, "sink", dir.path());
    let (primary, written) = recording(|v, id| {
        if v.starts_with("big") {
            SinkResponse::fallback(id)
        } else {
            SinkResponse::success(id)
        }
    });
    let flow = Dataflow::new("fallback-python");
    words(&flow, &["a", "big1", "b", "big2"])
        .udf_sink_with_fallback("write", primary, SinkUdf::call(py_options(&fallback)))
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(values(&written), ["a", "b"]);

    // The pynumaflow fallback sink refuses "fail": the run stops naming the step.
    let (primary, _) = recording(|_, id| SinkResponse::fallback(id));
    let flow = Dataflow::new("fallback-python-refuses");
    words(&flow, &["fine", "fail"])
        .udf_sink_with_fallback("park", primary, SinkUdf::call(py_options(&fallback)))
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"park\""), "{err}");
    assert!(err.contains("fallback sink did not write 1 of 2"), "{err}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn a_pynumaflow_sinks_failures_are_retried_then_sent_to_the_fallback_and_nothing_is_lost() {
    // 10,000 datums, 1% of which pynumaflow's sink refuses (Response.as_failure,
    // every time): the run goes on, the good datums of every batch are written, and
    // the refused ones reach the fallback sink after the retries.
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let primary = PyServer::start(&py, "sink", dir.path());
    let (fallback, parked) = recording(|_, id| SinkResponse::success(id));
    let source = GeneratorSource::new(10_000, |i| {
        Datum::new(if i % 100 == 0 {
            "fail".to_string()
        } else {
            i.to_string()
        })
    })
    .batch_size(500);
    let flow = Dataflow::new("sink-retry-fallback");
    let retry = SinkRetry::default().backoff(Duration::from_millis(1), 2);
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_sink_with_fallback(
            "write",
            SinkUdf::call(py_options(&primary)).with_retry(retry),
            fallback,
        )
        .unwrap();
    riffle::run_main(&flow).unwrap();
    assert_eq!(values(&parked), vec!["fail".to_string(); 100]);
}

#[test]
fn a_failure_goes_to_the_fallback_or_stops_the_run_or_is_dropped_as_told() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut primary = PyServer::start(&py, "sink", dir.path());
    let quick = SinkRetry::default().backoff(Duration::from_millis(1), 2);
    // By default, with a fallback sink, what is refused goes there.
    let flow = Dataflow::new("sink-failure");
    words(&flow, &["ok", "fail"])
        .udf_sink_with_fallback(
            "write",
            SinkUdf::call(py_options(&primary)).with_retry(quick),
            SinkUdf::new(sink_fn(|batch: Vec<Datum>| {
                Ok(batch
                    .into_iter()
                    .map(|d| SinkResponse::success(d.id))
                    .collect())
            })),
        )
        .unwrap();
    riffle::run_main(&flow).unwrap();
    // By default, without one, nowhere to put it: the run stops, after 3 retries.
    let flow = Dataflow::new("sink-failure-alone");
    words(&flow, &["ok", "fail"])
        .udf_call_sink("write", py_options(&primary))
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"write\""), "{err}");
    assert!(err.contains("did not write 1 of 2"), "{err}");
    assert!(
        err.contains("after 3 retries") && err.contains("refused"),
        "{err}"
    );
    // Told to stop: the fallback gets nothing.
    let (fallback, parked) = recording(|_, id| SinkResponse::success(id));
    let flow = Dataflow::new("sink-failure-stop");
    words(&flow, &["ok", "fb", "fail"])
        .udf_sink_with_fallback(
            "write",
            SinkUdf::call(py_options(&primary)).with_retry(quick.on_failure(OnFailure::Stop)),
            fallback,
        )
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("did not write 1 of 3"), "{err}");
    assert!(values(&parked).is_empty(), "{:?}", values(&parked));
    // The stopped run ended its stream cleanly: pynumaflow shuts down on a cancelled one.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        primary.child.try_wait().unwrap().is_none(),
        "the pynumaflow sink exited after a run stopped"
    );
    // Told to drop: the run goes on, and the fallback sink gets nothing.
    let flow = Dataflow::new("sink-failure-drop");
    words(&flow, &["ok", "fail"])
        .udf_sink_with_fallback(
            "write",
            SinkUdf::call(py_options(&primary)).with_retry(quick.on_failure(OnFailure::Drop)),
            SinkUdf::new(sink_fn(|batch: Vec<Datum>| {
                assert!(batch.is_empty(), "a dropped datum reached the fallback");
                Ok(Vec::new())
            })),
        )
        .unwrap();
    riffle::run_main(&flow).unwrap();
}

#[test]
fn fallback_without_a_fallback_sink_stops_the_run() {
    let flow = Dataflow::new("no-fallback");
    words(&flow, &["x"])
        .udf_sink(
            "only",
            sink_fn(|batch: Vec<Datum>| {
                Ok(batch
                    .into_iter()
                    .map(|d| SinkResponse::fallback(d.id))
                    .collect())
            }),
        )
        .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"only\""), "{err}");
    assert!(err.contains("no fallback sink"), "{err}");
}

#[test]
fn ids_are_given_checked_and_numbered_by_transforms() {
    // A transformer that makes two datums of one keeps ids unique: x-0, x-1.
    let (sink, written) = recording(|_, id| SinkResponse::success(id));
    let flow = Dataflow::new("ids");
    flow.input(
        "in",
        TestingSource::new(vec![Datum::new("v").with_id("x"), Datum::new("w")]),
    )
    .unwrap()
    .udf_transform(
        "twice",
        transform_fn(|d: Datum| {
            let t = UNIX_EPOCH + Duration::from_secs(1);
            Ok(vec![
                TransformMessage::new(Message::new(d.value.clone()), t),
                TransformMessage::new(Message::new(d.value), t),
            ])
        }),
    )
    .unwrap()
    .udf_sink_with_fallback(
        "write",
        sink,
        recording(|_, id| SinkResponse::success(id)).0,
    )
    .unwrap();
    riffle::run_main(&flow).unwrap();
    let mut got = written.lock().unwrap().clone();
    got.sort();
    assert_eq!(got[0], ("v".to_string(), "x-0".to_string()));
    assert_eq!(got[1], ("v".to_string(), "x-1".to_string()));
    // Datums without ids get distinct ones.
    assert!(got[2].1.starts_with("riffle-") && got[3].1.starts_with("riffle-"));
    assert_ne!(got[2].1, got[3].1);

    // Two datums of one batch with the same id cannot be answered apart.
    let (sink, _) = recording(|_, id| SinkResponse::success(id));
    let flow = Dataflow::new("ids-twice");
    flow.input(
        "in",
        TestingSource::new(vec![
            Datum::new("a").with_id("same"),
            Datum::new("b").with_id("same"),
        ]),
    )
    .unwrap()
    .udf_sink_with_fallback(
        "write",
        sink,
        recording(|_, id| SinkResponse::success(id)).0,
    )
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"write\""), "{err}");
    assert!(err.contains("\"same\""), "{err}");
}

#[test]
fn on_success_answers_are_forwarded_to_the_on_success_sink() {
    // Even values: forwarded with a message of the sink's own; multiples of 3 (odd):
    // forwarded as they are; the rest: plain successes, forwarded nowhere.
    let (primary, _) = recording(|v, id| {
        let n: u64 = v.parse().unwrap();
        let status = if n.is_multiple_of(2) {
            riffle_numaflow::SinkStatus::OnSuccess(Some(
                Message::new(format!("done-{n}")).with_keys(["k"]),
            ))
        } else if n.is_multiple_of(3) {
            riffle_numaflow::SinkStatus::OnSuccess(None)
        } else {
            riffle_numaflow::SinkStatus::Success
        };
        SinkResponse { id, status }
    });
    let (on_success, forwarded) = recording(|_, id| SinkResponse::success(id));
    let source = GeneratorSource::new(12, |i| Datum::new(i.to_string())).batch_size(5);
    let flow = Dataflow::new("on-success");
    flow.input_dynamic("in", source)
        .unwrap()
        .udf_sink_with_fallback(
            "write",
            primary.with_on_success(on_success),
            SinkUdf::new(sink_fn(|batch: Vec<Datum>| {
                Ok(batch
                    .into_iter()
                    .map(|d| SinkResponse::success(d.id))
                    .collect())
            })),
        )
        .unwrap();
    riffle::run_main(&flow).unwrap();
    let mut expected: Vec<String> = (0..12u64)
        .filter_map(|n| {
            if n.is_multiple_of(2) {
                Some(format!("done-{n}"))
            } else if n.is_multiple_of(3) {
                Some(n.to_string())
            } else {
                None
            }
        })
        .collect();
    expected.sort();
    assert_eq!(values(&forwarded), expected);
}
