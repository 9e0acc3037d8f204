//! The reducer on `reduce.v1.Reduce` (no handshake on this service).
//!
//! Each request names one window and carries one datum; `OPEN` starts a task for the
//! (window, keys) pair, `APPEND` feeds an open one (or opens it). When the client
//! closes its side, every task's input ends; the server sends each task's results
//! tagged with their window, then one `EOF` response per distinct window.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::datum::Window;
use crate::kind::UdfKind;
use crate::proto::reduce::v1 as pb;
use crate::udf::{DatumStream, Reducer};
use crate::wire;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ReduceResponse, Status>> + Send>>;

/// Serves a [`Reducer`].
pub struct ReduceServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(ReduceServer, Reducer, UdfKind::Reduce);

impl<U: Reducer> ReduceServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::Reduce, self.options.mode);
        let service = pb::reduce_server::ReduceServer::new(Service {
            udf: self.udf,
            exec,
        })
        .max_decoding_message_size(self.options.max_message_size)
        .max_encoding_message_size(self.options.max_message_size);
        tonic::transport::Server::builder().add_service(service)
    }
}

struct Service<U> {
    udf: Arc<U>,
    exec: Exec,
}

type TaskKey = (i64, i64, String, Vec<String>);

struct Task {
    input: mpsc::Sender<crate::datum::Datum>,
    window: pb::Window,
    handle: tokio::task::JoinHandle<Result<Vec<crate::datum::Message>, Status>>,
}

fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl<U: Reducer> pb::reduce_server::Reduce for Service<U> {
    type ReduceFnStream = ResponseStream;

    async fn reduce_fn(
        &self,
        request: Request<Streaming<pb::ReduceRequest>>,
    ) -> Result<Response<Self::ReduceFnStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let udf = self.udf.clone();
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
                let event = pb::reduce_request::window_operation::Event::try_from(op.event);
                if !matches!(
                    event,
                    Ok(pb::reduce_request::window_operation::Event::Open)
                        | Ok(pb::reduce_request::window_operation::Event::Append)
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
                    let udf = udf.clone();
                    let keys = datum.keys.clone();
                    let w = Window {
                        start: wire::to_time(window.start.as_ref()),
                        end: wire::to_time(window.end.as_ref()),
                        slot: window.slot.clone(),
                    };
                    let handle =
                        tokio::spawn(exec.run(async move { udf.reduce(keys, w, datums).await }));
                    Task {
                        input: sender,
                        window: window.clone(),
                        handle,
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
                let messages = match task.handle.await {
                    Ok(Ok(messages)) => messages,
                    Ok(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!(
                                "reduce handler panicked: {e}"
                            ))))
                            .await;
                        return;
                    }
                };
                for m in messages {
                    let response = pb::ReduceResponse {
                        result: Some(pb::reduce_response::Result {
                            keys: m.keys,
                            value: m.value,
                            tags: m.tags,
                            metadata: None,
                        }),
                        window: Some(task.window.clone()),
                        eof: false,
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                if !windows.contains(&task.window) {
                    windows.push(task.window);
                }
            }
            for window in windows {
                let _ = tx
                    .send(Ok(pb::ReduceResponse {
                        result: None,
                        window: Some(window),
                        eof: true,
                    }))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
