//! The map family: unary map, map-stream and batch-map, all on the `map.v1.Map` service.
//!
//! All three share one stream shape: the client's first message is the handshake
//! (`sot`), answered in kind; then requests carry an `id` that every response echoes.
//! A unary map answers each request with one response holding all its results, in
//! whatever order the handlers finish. A map-stream answers each request with one
//! response per result as it is produced, then an `eot` response with the same id. A
//! batch map collects requests until the client's `eot`, calls the handler once for
//! the batch, answers every id, then sends its own `eot`.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::datum::Datum;
use crate::kind::UdfKind;
use crate::proto::map::v1 as pb;
use crate::udf::{BatchMapper, MapStreamer, Mapper, MessageSender};
use crate::wire;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::MapResponse, Status>> + Send>>;

/// Serves a [`Mapper`] as Numaflow's unary map (`MAP_MODE=unary-map`).
///
/// ```no_run
/// # async fn run() -> riffle_numaflow::Result<()> {
/// use riffle_numaflow::server::MapServer;
/// use riffle_numaflow::udf::map_fn;
/// use riffle_numaflow::Message;
///
/// MapServer::new(map_fn(|d| Ok(vec![Message::new(d.value)])))
///     .with_socket("/tmp/riffle/map.sock")
///     .serve()
///     .await
/// # }
/// ```
pub struct MapServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(MapServer, Mapper, UdfKind::Map);

/// Serves a [`MapStreamer`] as Numaflow's map-stream (`MAP_MODE=stream-map`).
pub struct MapStreamServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(MapStreamServer, MapStreamer, UdfKind::MapStream);

/// Serves a [`BatchMapper`] as Numaflow's batch map (`MAP_MODE=batch-map`).
pub struct BatchMapServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(BatchMapServer, BatchMapper, UdfKind::BatchMap);

fn handshake() -> pb::MapResponse {
    pb::MapResponse {
        handshake: Some(pb::Handshake { sot: true }),
        ..Default::default()
    }
}

fn eot(id: String) -> pb::MapResponse {
    pb::MapResponse {
        id,
        status: Some(pb::TransmissionStatus { eot: true }),
        ..Default::default()
    }
}

/// Reads the handshake that must open every map stream.
async fn expect_handshake(
    kind: UdfKind,
    input: &mut Streaming<pb::MapRequest>,
) -> Result<(), Status> {
    match input.message().await? {
        Some(req) if req.handshake.is_some_and(|h| h.sot) => Ok(()),
        Some(_) => Err(Status::invalid_argument(format!(
            "{kind}: the first message of a stream must be the handshake (sot)"
        ))),
        None => Err(Status::cancelled(format!(
            "{kind}: the stream closed before the handshake"
        ))),
    }
}

fn into_response(rx: mpsc::Receiver<Result<pb::MapResponse, Status>>) -> Response<ResponseStream> {
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

#[derive(Clone)]
struct Unary<U> {
    udf: Arc<U>,
    exec: Exec,
}

impl<U: Mapper> MapServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::Map, self.options.mode);
        let service = pb::map_server::MapServer::new(Unary {
            udf: self.udf,
            exec,
        })
        .max_decoding_message_size(self.options.max_message_size)
        .max_encoding_message_size(self.options.max_message_size);
        tonic::transport::Server::builder().add_service(service)
    }
}

#[tonic::async_trait]
impl<U: Mapper> pb::map_server::Map for Unary<U> {
    type MapFnStream = ResponseStream;

    async fn map_fn(
        &self,
        request: Request<Streaming<pb::MapRequest>>,
    ) -> Result<Response<Self::MapFnStream>, Status> {
        let mut input = request.into_inner();
        expect_handshake(UdfKind::Map, &mut input).await?;
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx.send(Ok(handshake())).await;
        let udf = self.udf.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            loop {
                let req = match input.next().await {
                    Some(Ok(req)) => req,
                    Some(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    None => return,
                };
                let Some(body) = req.request else { continue };
                let datum = wire::datum_from_map(req.id.clone(), body);
                let udf = udf.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let id = req.id;
                    let out = exec.run(async move { udf.map(datum).await }).await;
                    let response = out.map(|messages| pb::MapResponse {
                        results: messages.into_iter().map(wire::map_result).collect(),
                        id,
                        ..Default::default()
                    });
                    let _ = tx.send(response).await;
                });
            }
        });
        Ok(into_response(rx))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}

#[derive(Clone)]
struct Streamed<U> {
    udf: Arc<U>,
    exec: Exec,
}

impl<U: MapStreamer> MapStreamServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::MapStream, self.options.mode);
        let service = pb::map_server::MapServer::new(Streamed {
            udf: self.udf,
            exec,
        })
        .max_decoding_message_size(self.options.max_message_size)
        .max_encoding_message_size(self.options.max_message_size);
        tonic::transport::Server::builder().add_service(service)
    }
}

#[tonic::async_trait]
impl<U: MapStreamer> pb::map_server::Map for Streamed<U> {
    type MapFnStream = ResponseStream;

    async fn map_fn(
        &self,
        request: Request<Streaming<pb::MapRequest>>,
    ) -> Result<Response<Self::MapFnStream>, Status> {
        let mut input = request.into_inner();
        expect_handshake(UdfKind::MapStream, &mut input).await?;
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx.send(Ok(handshake())).await;
        let udf = self.udf.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(req) => req,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let Some(body) = req.request else { continue };
                let id = req.id;
                let datum = wire::datum_from_map(id.clone(), body);
                let (sender, mut messages) = MessageSender::channel(64);
                let udf = udf.clone();
                let handler =
                    tokio::spawn(exec.run(async move { udf.map_stream(datum, sender).await }));
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = messages.recv().await {
                        let response = pb::MapResponse {
                            results: vec![wire::map_result(m)],
                            id: id.clone(),
                            ..Default::default()
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    let done = match handler.await {
                        Ok(Ok(())) => Ok(eot(id)),
                        Ok(Err(status)) => Err(status),
                        Err(e) => Err(Status::internal(format!(
                            "map-stream handler panicked: {e}"
                        ))),
                    };
                    let _ = tx.send(done).await;
                });
            }
        });
        Ok(into_response(rx))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}

#[derive(Clone)]
struct Batched<U> {
    udf: Arc<U>,
    exec: Exec,
}

impl<U: BatchMapper> BatchMapServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::BatchMap, self.options.mode);
        let service = pb::map_server::MapServer::new(Batched {
            udf: self.udf,
            exec,
        })
        .max_decoding_message_size(self.options.max_message_size)
        .max_encoding_message_size(self.options.max_message_size);
        tonic::transport::Server::builder().add_service(service)
    }
}

#[tonic::async_trait]
impl<U: BatchMapper> pb::map_server::Map for Batched<U> {
    type MapFnStream = ResponseStream;

    async fn map_fn(
        &self,
        request: Request<Streaming<pb::MapRequest>>,
    ) -> Result<Response<Self::MapFnStream>, Status> {
        let mut input = request.into_inner();
        expect_handshake(UdfKind::BatchMap, &mut input).await?;
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx.send(Ok(handshake())).await;
        let udf = self.udf.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            let mut batch: Vec<Datum> = Vec::new();
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(req) => req,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if let Some(body) = req.request {
                    batch.push(wire::datum_from_map(req.id, body));
                }
                if !req.status.is_some_and(|s| s.eot) {
                    continue;
                }
                let datums = std::mem::take(&mut batch);
                let ids: Vec<String> = datums.iter().map(|d| d.id.clone()).collect();
                let udf = udf.clone();
                let outputs = match exec.run(async move { udf.batch_map(datums).await }).await {
                    Ok(outputs) => outputs,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if outputs.len() != ids.len() {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "batch-map handler returned {} results for a batch of {} datums",
                            outputs.len(),
                            ids.len()
                        ))))
                        .await;
                    return;
                }
                for (id, messages) in ids.into_iter().zip(outputs) {
                    let response = pb::MapResponse {
                        results: messages.into_iter().map(wire::map_result).collect(),
                        id,
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                if tx.send(Ok(eot(String::new()))).await.is_err() {
                    return;
                }
            }
        });
        Ok(into_response(rx))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
