//! The source transformer on `sourcetransformer.v1.SourceTransform`: like a unary map,
//! with the datum's id inside the request and an event time on every result.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{Exec, ServerOptions, server_common};
use crate::kind::UdfKind;
use crate::proto::sourcetransformer::v1 as pb;
use crate::udf::SourceTransformer;
use crate::wire;

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::SourceTransformResponse, Status>> + Send>>;

/// Serves a [`SourceTransformer`].
pub struct SourceTransformServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(
    SourceTransformServer,
    SourceTransformer,
    UdfKind::SourceTransform
);

impl<U: SourceTransformer> SourceTransformServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::SourceTransform, self.options.mode);
        let service = pb::source_transform_server::SourceTransformServer::new(Service {
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
impl<U: SourceTransformer> pb::source_transform_server::SourceTransform for Service<U> {
    type SourceTransformFnStream = ResponseStream;

    async fn source_transform_fn(
        &self,
        request: Request<Streaming<pb::SourceTransformRequest>>,
    ) -> Result<Response<Self::SourceTransformFnStream>, Status> {
        let mut input = request.into_inner();
        match input.message().await? {
            Some(req) if req.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "source-transform: the first message of a stream must be the handshake (sot)",
                ));
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx
            .send(Ok(pb::SourceTransformResponse {
                handshake: Some(pb::Handshake { sot: true }),
                ..Default::default()
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
                let datum = wire::datum_from_transform(body);
                let id = datum.id.clone();
                let udf = udf.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let out = exec.run(async move { udf.transform(datum).await }).await;
                    let response = out.map(|messages| pb::SourceTransformResponse {
                        results: messages
                            .into_iter()
                            .map(|t| pb::source_transform_response::Result {
                                keys: t.message.keys,
                                value: t.message.value,
                                event_time: Some(wire::to_timestamp(t.event_time)),
                                tags: t.message.tags,
                                metadata: None,
                            })
                            .collect(),
                        id,
                        handshake: None,
                    });
                    let _ = tx.send(response).await;
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
