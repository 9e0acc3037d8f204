//! The sink on `sink.v1.Sink`: after the handshake, the client sends a batch of
//! requests closed by an `eot` status; the server calls the handler once per batch
//! and answers with one response holding a result per datum id, then its own `eot`.
//! The same server serves as a fallback or on-success sink on their own sockets.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::kind::UdfKind;
use crate::proto::sink::v1 as pb;
use crate::udf::Sinker;
use crate::wire;

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::SinkResponse, Status>> + Send>>;

/// Serves a [`Sinker`].
///
/// For a fallback sink use
/// `SinkServer::with_options(sink, ServerOptions::for_kind(UdfKind::FallbackSink))`.
pub struct SinkServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(SinkServer, Sinker, UdfKind::Sink);

impl<U: Sinker> SinkServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(self.options.kind, self.options.mode);
        let service = pb::sink_server::SinkServer::new(Service {
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

#[tonic::async_trait]
impl<U: Sinker> pb::sink_server::Sink for Service<U> {
    type SinkFnStream = ResponseStream;

    async fn sink_fn(
        &self,
        request: Request<Streaming<pb::SinkRequest>>,
    ) -> Result<Response<Self::SinkFnStream>, Status> {
        let mut input = request.into_inner();
        match input.message().await? {
            Some(req) if req.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "sink: the first message of a stream must be the handshake (sot)",
                ));
            }
        }
        let (tx, rx) = mpsc::channel(64);
        let _ = tx
            .send(Ok(pb::SinkResponse {
                handshake: Some(pb::Handshake { sot: true }),
                ..Default::default()
            }))
            .await;
        let udf = self.udf.clone();
        let exec = self.exec;
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(req) = input.next().await {
                let req = match req {
                    Ok(req) => req,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if let Some(body) = req.request {
                    batch.push(wire::datum_from_sink(body));
                }
                if !req.status.is_some_and(|s| s.eot) {
                    continue;
                }
                let datums = std::mem::take(&mut batch);
                let udf = udf.clone();
                match exec.run(async move { udf.sink(datums).await }).await {
                    Ok(responses) => {
                        let results = responses.into_iter().map(wire::sink_result).collect();
                        let batch_done = pb::SinkResponse {
                            results,
                            ..Default::default()
                        };
                        let eot = pb::SinkResponse {
                            status: Some(pb::TransmissionStatus { eot: true }),
                            ..Default::default()
                        };
                        if tx.send(Ok(batch_done)).await.is_err() || tx.send(Ok(eot)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
