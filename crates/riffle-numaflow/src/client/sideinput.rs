//! The side-input client on `sideinput.v1.SideInput`.

use tonic::transport::Channel;

use super::{ClientOptions, Connection, is_transport_failure};
use crate::datum::SideInputValue;
use crate::error::Result;
use crate::kind::UdfKind;
use crate::proto::sideinput::v1 as pb;

/// A client of a side-input retriever.
pub struct SideInputClient {
    conn: Connection,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::side_input_client::SideInputClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

impl SideInputClient {
    /// Connects to the retriever.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        Ok(Self {
            conn: Connection::open(UdfKind::SideInput, &options, is_ready).await?,
        })
    }

    /// Asks for the current value (reconnecting once if the server restarted).
    pub async fn retrieve(&mut self) -> Result<SideInputValue> {
        let mut attempt = 0;
        loop {
            let mut client = pb::side_input_client::SideInputClient::new(self.conn.channel.clone())
                .max_decoding_message_size(self.conn.options.max_message_size)
                .max_encoding_message_size(self.conn.options.max_message_size);
            let call = tokio::time::timeout(
                self.conn.options.request_timeout,
                client.retrieve_side_input(()),
            );
            match call.await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    return Ok(if r.no_broadcast {
                        SideInputValue::NoBroadcast
                    } else {
                        SideInputValue::Broadcast(r.value)
                    });
                }
                Ok(Err(status))
                    if is_transport_failure(&status) && attempt < self.conn.options.retries =>
                {
                    attempt += 1;
                    self.conn.reopen(is_ready).await?;
                }
                Ok(Err(status)) => return Err(self.conn.rpc_error(status)),
                Err(_) => return Err(self.conn.timeout_error("RetrieveSideInput")),
            }
        }
    }
}
