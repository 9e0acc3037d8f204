//! The accumulator on `accumulator.v1.Accumulator` (no handshake on this service).
//!
//! Datums are grouped by the keys of their keyed window. `OPEN` and `APPEND` feed the
//! keys' task (starting it if needed); `CLOSE` ends its input, waits for its outputs
//! and answers `EOF` with the closed window. Every output goes out with a window from
//! the epoch to the latest watermark the task produced. When the client closes its
//! side, the remaining tasks end the same way.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::datum::{Accumulated, Datum};
use crate::kind::UdfKind;
use crate::proto::accumulator::v1 as pb;
use crate::udf::{Accumulator, DatumStream, MessageSender};
use crate::wire;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::AccumulatorResponse, Status>> + Send>>;

/// Serves an [`Accumulator`].
pub struct AccumulatorServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(AccumulatorServer, Accumulator, UdfKind::Accumulator);

impl<U: Accumulator> AccumulatorServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::Accumulator, self.options.mode);
        let service = pb::accumulator_server::AccumulatorServer::new(Service {
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

struct Task {
    input: mpsc::Sender<Datum>,
    keys: Vec<String>,
    handle: tokio::task::JoinHandle<Result<(), Status>>,
    forwarder: tokio::task::JoinHandle<SystemTime>,
}

fn payload(d: Datum) -> pb::Payload {
    pb::Payload {
        keys: d.keys,
        value: d.value,
        event_time: Some(wire::to_timestamp(d.event_time)),
        watermark: Some(wire::to_timestamp(d.watermark)),
        id: d.id,
        headers: d.headers.into_iter().collect(),
        metadata: None,
    }
}

fn datum(p: pb::Payload) -> Datum {
    Datum {
        keys: p.keys,
        value: p.value,
        event_time: wire::to_time(p.event_time.as_ref()),
        watermark: wire::to_time(p.watermark.as_ref()),
        headers: p.headers.into_iter().collect(),
        id: p.id,
    }
}

fn window_to(keys: &[String], end: SystemTime) -> pb::KeyedWindow {
    pb::KeyedWindow {
        start: Some(wire::to_timestamp(UNIX_EPOCH)),
        end: Some(wire::to_timestamp(end)),
        slot: "slot-0".into(),
        keys: keys.to_vec(),
    }
}

type Sender = mpsc::Sender<Result<pb::AccumulatorResponse, Status>>;

/// Ends a task's input, waits for it, and sends its EOF (with `closing` or the
/// window up to its watermark). `false` when the task failed (its error was sent).
async fn finish(task: Task, closing: Option<pb::KeyedWindow>, tx: &Sender) -> bool {
    drop(task.input);
    let outcome = match task.handle.await {
        Ok(r) => r,
        Err(e) => Err(Status::internal(format!(
            "accumulator handler panicked: {e}"
        ))),
    };
    let watermark = task.forwarder.await.unwrap_or(UNIX_EPOCH);
    if let Err(status) = outcome {
        let _ = tx.send(Err(status)).await;
        return false;
    }
    let window = closing.unwrap_or_else(|| window_to(&task.keys, watermark));
    let eof = pb::AccumulatorResponse {
        payload: None,
        window: Some(window),
        tags: Vec::new(),
        eof: true,
    };
    tx.send(Ok(eof)).await.is_ok()
}

#[tonic::async_trait]
impl<U: Accumulator> pb::accumulator_server::Accumulator for Service<U> {
    type AccumulateFnStream = ResponseStream;

    async fn accumulate_fn(
        &self,
        request: Request<Streaming<pb::AccumulatorRequest>>,
    ) -> Result<Response<Self::AccumulateFnStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let udf = self.udf.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            use pb::accumulator_request::window_operation::Event;
            let mut tasks: HashMap<Vec<String>, Task> = HashMap::new();
            let mut order: Vec<Vec<String>> = Vec::new();
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(req) => req,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let Some(op) = req.operation else { continue };
                let window = op.keyed_window.unwrap_or_default();
                let keys = window.keys.clone();
                match Event::try_from(op.event) {
                    Ok(Event::Close) => {
                        let Some(task) = tasks.remove(&keys) else {
                            let _ = tx
                                .send(Err(Status::invalid_argument(format!(
                                    "accumulator: CLOSE for keys {keys:?}, which are not open"
                                ))))
                                .await;
                            return;
                        };
                        order.retain(|k| k != &keys);
                        if !finish(task, Some(window), &tx).await {
                            return;
                        }
                    }
                    Ok(Event::Open) | Ok(Event::Append) => {
                        let Some(p) = req.payload else { continue };
                        let task = tasks.entry(keys.clone()).or_insert_with(|| {
                            order.push(keys.clone());
                            let (sender, datums) = DatumStream::channel(1024);
                            let (out, mut produced) = MessageSender::<Accumulated>::channel(256);
                            let runner = udf.clone();
                            let handle = tokio::spawn(
                                exec.run(async move { runner.accumulate(datums, out).await }),
                            );
                            let forward_tx = tx.clone();
                            let task_keys = keys.clone();
                            let forwarder = tokio::spawn(async move {
                                let mut latest = UNIX_EPOCH;
                                while let Some(a) = produced.recv().await {
                                    latest = latest.max(a.datum.watermark);
                                    let response = pb::AccumulatorResponse {
                                        payload: Some(payload(a.datum)),
                                        window: Some(window_to(&task_keys, latest)),
                                        tags: a.tags,
                                        eof: false,
                                    };
                                    if forward_tx.send(Ok(response)).await.is_err() {
                                        break;
                                    }
                                }
                                latest
                            });
                            Task {
                                input: sender,
                                keys: keys.clone(),
                                handle,
                                forwarder,
                            }
                        });
                        let _ = task.input.send(datum(p)).await;
                    }
                    Err(_) => continue,
                }
            }
            for keys in order {
                if let Some(task) = tasks.remove(&keys)
                    && !finish(task, None, &tx).await
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
