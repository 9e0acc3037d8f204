//! The user-defined source on `source.v1.Source`.
//!
//! `ReadFn` and `AckFn` are bidirectional streams opened by a handshake. Each read
//! request is answered by one response per datum read, then a response whose status
//! says `eot`; each ack request by one ack response. `PendingFn` answers the backlog
//! (`-1` when unknown), `PartitionsFn` the partitions, `NackFn` rejects offsets.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::datum::ReadRequest;
use crate::kind::UdfKind;
use crate::proto::source::v1 as pb;
use crate::udf::{MessageSender, Sourcer};
use crate::wire;

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResponse, Status>> + Send>>;
type AckStream = Pin<Box<dyn Stream<Item = Result<pb::AckResponse, Status>> + Send>>;

/// Serves a [`Sourcer`].
pub struct SourceServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(SourceServer, Sourcer, UdfKind::Source);

impl<U: Sourcer> SourceServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::Source, self.options.mode);
        let service = pb::source_server::SourceServer::new(Service {
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

fn ok_status(eot: bool) -> pb::read_response::Status {
    pb::read_response::Status {
        eot,
        code: pb::read_response::status::Code::Success as i32,
        error: None,
        msg: None,
    }
}

#[tonic::async_trait]
impl<U: Sourcer> pb::source_server::Source for Service<U> {
    type ReadFnStream = ReadStream;
    type AckFnStream = AckStream;

    async fn read_fn(
        &self,
        request: Request<Streaming<pb::ReadRequest>>,
    ) -> Result<Response<Self::ReadFnStream>, Status> {
        let mut input = request.into_inner();
        match input.message().await? {
            Some(req) if req.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "source read: the first message must be the handshake (sot)",
                ));
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx
            .send(Ok(pb::ReadResponse {
                result: None,
                status: Some(ok_status(false)),
                handshake: Some(pb::Handshake { sot: true }),
            }))
            .await;
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
                let read = ReadRequest {
                    count: body.num_records,
                    timeout: Duration::from_millis(u64::from(body.timeout_in_ms)),
                };
                let (sender, mut messages) = MessageSender::channel(256);
                let reader = udf.clone();
                let handler =
                    tokio::spawn(exec.run(async move { reader.read(read, sender).await }));
                while let Some(m) = messages.recv().await {
                    let response = pb::ReadResponse {
                        result: Some(wire::read_result(m)),
                        status: Some(ok_status(false)),
                        handshake: None,
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                let done = match handler.await {
                    Ok(Ok(())) => Ok(pb::ReadResponse {
                        result: None,
                        status: Some(ok_status(true)),
                        handshake: None,
                    }),
                    Ok(Err(status)) => Err(status),
                    Err(e) => Err(Status::internal(format!(
                        "source read handler panicked: {e}"
                    ))),
                };
                let failed = done.is_err();
                if tx.send(done).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack_fn(
        &self,
        request: Request<Streaming<pb::AckRequest>>,
    ) -> Result<Response<Self::AckFnStream>, Status> {
        let mut input = request.into_inner();
        match input.message().await? {
            Some(req) if req.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "source ack: the first message must be the handshake (sot)",
                ));
            }
        }
        let (tx, rx) = mpsc::channel(64);
        let _ = tx
            .send(Ok(pb::AckResponse {
                result: Some(pb::ack_response::Result { success: Some(()) }),
                handshake: Some(pb::Handshake { sot: true }),
            }))
            .await;
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
                let offsets = req
                    .request
                    .map(|r| r.offsets.into_iter().map(wire::offset_from_proto).collect())
                    .unwrap_or_default();
                let udf = udf.clone();
                let response = exec
                    .run(async move { udf.ack(offsets).await })
                    .await
                    .map(|()| pb::AckResponse {
                        result: Some(pb::ack_response::Result { success: Some(()) }),
                        handshake: None,
                    });
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn nack_fn(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let offsets = request
            .into_inner()
            .request
            .map(|r| r.offsets.into_iter().map(wire::offset_from_proto).collect())
            .unwrap_or_default();
        let udf = self.udf.clone();
        self.exec
            .run(async move { udf.nack(offsets).await })
            .await?;
        Ok(Response::new(pb::NackResponse {
            result: Some(pb::nack_response::Result { success: Some(()) }),
        }))
    }

    async fn pending_fn(&self, _: Request<()>) -> Result<Response<pb::PendingResponse>, Status> {
        let udf = self.udf.clone();
        let pending = self.exec.run(async move { udf.pending().await }).await?;
        let count = pending
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        Ok(Response::new(pb::PendingResponse {
            result: Some(pb::pending_response::Result { count }),
        }))
    }

    async fn partitions_fn(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::PartitionsResponse>, Status> {
        let udf = self.udf.clone();
        let total = self.udf.total_partitions();
        let partitions = self.exec.run(async move { udf.partitions().await }).await?;
        Ok(Response::new(pb::PartitionsResponse {
            result: Some(pb::partitions_response::Result {
                partitions,
                total_partitions: total,
            }),
        }))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
