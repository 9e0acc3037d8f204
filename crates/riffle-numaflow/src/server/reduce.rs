//! Reduce and reduce-stream on `reduce.v1.Reduce` (no handshake on this service).
//!
//! Each request names one window and carries one datum; `OPEN` starts a task for the
//! (window, keys) pair, `APPEND` feeds an open one (or opens it). A task's results go
//! out tagged with their window as soon as it produces them: all at once when a
//! [`Reducer`] returns, one by one for a [`ReduceStreamer`]. When the client closes
//! its side, every task's input ends; once all tasks are done the server sends one
//! `EOF` response per distinct window.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::datum::{Datum, Message, Window};
use crate::error::HandlerResult;
use crate::kind::UdfKind;
use crate::proto::reduce::v1 as pb;
use crate::udf::{DatumStream, MessageSender, ReduceStreamer, Reducer};
use crate::wire;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ReduceResponse, Status>> + Send>>;
type Run = Pin<Box<dyn Future<Output = HandlerResult<()>> + Send>>;

/// Serves a [`Reducer`].
pub struct ReduceServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(ReduceServer, Reducer, UdfKind::Reduce);

/// Serves a [`ReduceStreamer`] (results streamed while the window is open).
pub struct ReduceStreamServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(ReduceStreamServer, ReduceStreamer, UdfKind::ReduceStream);

/// How one keyed window's task runs: the trait method, its output sent to `out`.
trait Runner: Send + Sync + 'static {
    fn run(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
        out: MessageSender<Message>,
    ) -> Run;
}

struct Whole<U>(Arc<U>);

impl<U: Reducer> Runner for Whole<U> {
    fn run(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
        out: MessageSender<Message>,
    ) -> Run {
        let udf = self.0.clone();
        Box::pin(async move {
            for m in udf.reduce(keys, window, datums).await? {
                out.send(m).await?;
            }
            Ok(())
        })
    }
}

struct Streamed<U>(Arc<U>);

impl<U: ReduceStreamer> Runner for Streamed<U> {
    fn run(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
        out: MessageSender<Message>,
    ) -> Run {
        let udf = self.0.clone();
        Box::pin(async move { udf.reduce_stream(keys, window, datums, out).await })
    }
}

fn router<R: Runner>(runner: R, options: &ServerOptions) -> tonic::transport::server::Router {
    let exec = Exec::new(options.kind, options.mode);
    let service = pb::reduce_server::ReduceServer::new(Service {
        runner: Arc::new(runner),
        exec,
    })
    .max_decoding_message_size(options.max_message_size)
    .max_encoding_message_size(options.max_message_size);
    tonic::transport::Server::builder().add_service(service)
}

impl<U: Reducer> ReduceServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        router(Whole(self.udf), &self.options)
    }
}

impl<U: ReduceStreamer> ReduceStreamServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        router(Streamed(self.udf), &self.options)
    }
}

struct Service<R> {
    runner: Arc<R>,
    exec: Exec,
}

type TaskKey = (i64, i64, String, Vec<String>);

struct Task {
    input: mpsc::Sender<Datum>,
    window: pb::Window,
    handle: tokio::task::JoinHandle<Result<(), Status>>,
    forwarder: tokio::task::JoinHandle<()>,
}

fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl<R: Runner> pb::reduce_server::Reduce for Service<R> {
    type ReduceFnStream = ResponseStream;

    async fn reduce_fn(
        &self,
        request: Request<Streaming<pb::ReduceRequest>>,
    ) -> Result<Response<Self::ReduceFnStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let runner = self.runner.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            let mut tasks: HashMap<TaskKey, Task> = HashMap::new();
            let mut order: Vec<TaskKey> = Vec::new();
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(req) => req,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let Some(op) = req.operation else { continue };
                use pb::reduce_request::window_operation::Event;
                if !matches!(
                    Event::try_from(op.event),
                    Ok(Event::Open) | Ok(Event::Append)
                ) {
                    continue;
                }
                if op.windows.len() != 1 {
                    let _ = tx
                        .send(Err(Status::invalid_argument(format!(
                            "reduce: a request must name exactly one window, got {}",
                            op.windows.len()
                        ))))
                        .await;
                    return;
                }
                let window = op.windows.into_iter().next().unwrap_or_default();
                let Some(payload) = req.payload else { continue };
                let datum = wire::datum_from_reduce(payload);
                let key: TaskKey = (
                    millis(window.start.as_ref()),
                    millis(window.end.as_ref()),
                    window.slot.clone(),
                    datum.keys.clone(),
                );
                let task = tasks.entry(key.clone()).or_insert_with(|| {
                    order.push(key.clone());
                    let (sender, datums) = DatumStream::channel(1024);
                    let (out, mut produced) = MessageSender::channel(256);
                    let w = Window {
                        start: wire::to_time(window.start.as_ref()),
                        end: wire::to_time(window.end.as_ref()),
                        slot: window.slot.clone(),
                    };
                    let run = runner.run(datum.keys.clone(), w, datums, out);
                    let handle = tokio::spawn(exec.run(run));
                    let forward_tx = tx.clone();
                    let forward_window = window.clone();
                    let forwarder = tokio::spawn(async move {
                        while let Some(m) = produced.recv().await {
                            let response = pb::ReduceResponse {
                                result: Some(pb::reduce_response::Result {
                                    keys: m.keys,
                                    value: m.value,
                                    tags: m.tags,
                                    metadata: None,
                                }),
                                window: Some(forward_window.clone()),
                                eof: false,
                            };
                            if forward_tx.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                    });
                    Task {
                        input: sender,
                        window: window.clone(),
                        handle,
                        forwarder,
                    }
                });
                // A task that already failed has dropped its input; its error is reported below.
                let _ = task.input.send(datum).await;
            }
            let mut windows: Vec<pb::Window> = Vec::new();
            for key in order {
                let Some(task) = tasks.remove(&key) else {
                    continue;
                };
                drop(task.input);
                let outcome = match task.handle.await {
                    Ok(r) => r,
                    Err(e) => Err(Status::internal(format!("reduce handler panicked: {e}"))),
                };
                let _ = task.forwarder.await;
                if let Err(status) = outcome {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if !windows.contains(&task.window) {
                    windows.push(task.window);
                }
            }
            for window in windows {
                let eof = pb::ReduceResponse {
                    result: None,
                    window: Some(window),
                    eof: true,
                };
                let _ = tx.send(Ok(eof)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
