//! The side-input retriever on `sideinput.v1.SideInput`: one unary call answers the
//! value to broadcast, or `no_broadcast` to keep the previous one.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Exec, ServerOptions, server_common};
use crate::datum::SideInputValue;
use crate::kind::UdfKind;
use crate::proto::sideinput::v1 as pb;
use crate::udf::SideInput;

/// Serves a [`SideInput`] retriever.
pub struct SideInputServer<U> {
    udf: Arc<U>,
    options: ServerOptions,
}
server_common!(SideInputServer, SideInput, UdfKind::SideInput);

impl<U: SideInput> SideInputServer<U> {
    fn router(self) -> tonic::transport::server::Router {
        let exec = Exec::new(UdfKind::SideInput, self.options.mode);
        let service = pb::side_input_server::SideInputServer::new(Service {
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
impl<U: SideInput> pb::side_input_server::SideInput for Service<U> {
    async fn retrieve_side_input(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::SideInputResponse>, Status> {
        let udf = self.udf.clone();
        let value = self.exec.run(async move { udf.retrieve().await }).await?;
        let response = match value {
            SideInputValue::Broadcast(value) => pb::SideInputResponse {
                value,
                no_broadcast: false,
                metadata: None,
            },
            SideInputValue::NoBroadcast => pb::SideInputResponse {
                value: Vec::new(),
                no_broadcast: true,
                metadata: None,
            },
        };
        Ok(Response::new(response))
    }

    async fn is_ready(&self, _: Request<()>) -> Result<Response<pb::ReadyResponse>, Status> {
        Ok(Response::new(pb::ReadyResponse { ready: true }))
    }
}
