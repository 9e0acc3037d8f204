//! The engine of `riffle udf call` ([`riffle_numaflow::call::call`]) against Riffle's
//! own servers, for the kinds whose server-info file is not the map's.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use riffle_numaflow::call::{CallParams, call};
use riffle_numaflow::client::{ClientOptions, ReduceClient};
use riffle_numaflow::server::{MapStreamServer, ReduceStreamServer, ServerOptions, SinkServer};
use riffle_numaflow::udf::{DatumStream, MapStreamer, MessageSender, ReduceStreamer, sink_fn};
use riffle_numaflow::{Datum, Error, HandlerResult, Message, SinkResponse, UdfKind, Window};

/// Serves until the returned sender is dropped or sent to.
fn serve<Fut>(serving: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut) -> Running
where
    Fut: Future<Output = riffle_numaflow::Result<()>> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel();
    Running {
        stop,
        task: tokio::spawn(serving(stopped)),
    }
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<riffle_numaflow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Patient enough for a server starting beside the test, quick to fail on the wrong
/// server-info file.
fn options(socket: &Path) -> ClientOptions {
    ClientOptions::new(socket)
        .with_info_timeout(Duration::from_secs(5))
        .with_request_timeout(Duration::from_secs(20))
        .with_retries(0)
}

/// A running sum per key, sent after every datum.
struct RunningSum;

impl ReduceStreamer for RunningSum {
    async fn reduce_stream(
        &self,
        keys: Vec<String>,
        _window: Window,
        mut datums: DatumStream,
        out: MessageSender<Message>,
    ) -> HandlerResult<()> {
        let mut sum = 0i64;
        while let Some(d) = datums.next().await {
            sum += String::from_utf8_lossy(&d.value).parse::<i64>()?;
            out.send(Message::new(sum.to_string()).with_keys(keys.clone()))
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_stream_waits_for_the_reduce_stream_server_info() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reducestream.sock");
    let server = ReduceStreamServer::new(RunningSum).with_socket(&socket);
    assert_eq!(
        server.options().server_info,
        dir.path().join("reducestreamer-server-info")
    );
    let running = serve(|stopped| {
        server.serve_with_shutdown(async {
            let _ = stopped.await;
        })
    });
    let datums: Vec<Datum> = (1..=4)
        .map(|i| Datum::new(i.to_string()).with_keys([if i % 2 == 0 { "even" } else { "odd" }]))
        .collect();
    let lines = call(
        UdfKind::ReduceStream,
        options(&socket),
        datums,
        &CallParams::default(),
    )
    .await
    .unwrap();
    let sums = |key: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|line| line["keys"] == json!([key]))
            .map(|line| line["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sums("odd"), ["1", "4"]);
    assert_eq!(sums("even"), ["2", "6"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_success_sink_waits_for_its_own_server_info() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ons-sink.sock");
    let sink = sink_fn(|batch: Vec<Datum>| {
        Ok(batch
            .into_iter()
            .map(|d| SinkResponse::success(d.id))
            .collect())
    });
    let server = SinkServer::with_options(sink, ServerOptions::for_kind(UdfKind::OnSuccessSink))
        .with_socket(&socket);
    assert_eq!(
        server.options().server_info,
        dir.path().join("ons-sinker-server-info")
    );
    let running = serve(|stopped| {
        server.serve_with_shutdown(async {
            let _ = stopped.await;
        })
    });
    let lines = call(
        UdfKind::OnSuccessSink,
        options(&socket),
        vec![Datum::new("a"), Datum::new("b")],
        &CallParams::default(),
    )
    .await
    .unwrap();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|line| line["status"] == "success"),
        "{lines:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reduce_client_refuses_other_kinds() {
    let err = ReduceClient::connect_kind(UdfKind::Map, options(Path::new("/nonexistent/map.sock")))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::Connect {
                kind: UdfKind::Map,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("reduce-stream"), "{err}");
}

/// Two messages per datum: what a unary-map call would cut to one.
struct Twice;

impl MapStreamer for Twice {
    async fn map_stream(&self, datum: Datum, out: MessageSender<Message>) -> HandlerResult<()> {
        out.send(Message::new(datum.value.clone())).await?;
        out.send(Message::new(datum.value)).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_call_to_a_map_stream_server_is_refused_not_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let server = MapStreamServer::new(Twice).with_socket(&socket);
    let running = serve(|stopped| {
        server.serve_with_shutdown(async {
            let _ = stopped.await;
        })
    });
    let datums = || vec![Datum::new("a")];
    let params = CallParams::default();
    // Its server-info says map-stream: a call as map is refused up front.
    let err = call(UdfKind::Map, options(&socket), datums(), &params)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("map-stream") && text.contains("map.sock"),
        "{text}"
    );
    // Without server info, the extra answers give it away.
    let blind = options(&socket).without_server_info();
    let err = call(UdfKind::Map, blind, datums(), &params)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("after every datum was answered"), "{err}");
    // As the right kind, every message arrives.
    let lines = call(UdfKind::MapStream, options(&socket), datums(), &params)
        .await
        .unwrap();
    assert_eq!(
        lines[0]["messages"].as_array().unwrap().len(),
        2,
        "{lines:?}"
    );
    running.stop().await;
}
