//! The reducer client on `reduce.v1.Reduce`, for reduce and reduce-stream servers:
//! one stream per set of windows.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{ClientOptions, Connection, is_transport_failure};
use crate::datum::{Datum, Message, Window};
use crate::error::{Error, Result};
use crate::kind::UdfKind;
use crate::proto::reduce::v1 as pb;
use crate::wire;

/// A client of a reduce server.
pub struct ReduceClient {
    conn: Connection,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::reduce_client::ReduceClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

fn proto_window(w: &Window) -> pb::Window {
    pb::Window {
        start: Some(wire::to_timestamp(w.start)),
        end: Some(wire::to_timestamp(w.end)),
        slot: w.slot.clone(),
    }
}

impl ReduceClient {
    /// Connects to a reducer.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        Self::connect_kind(UdfKind::Reduce, options).await
    }

    /// Connects to a server of a reduce kind: `Reduce`, or `ReduceStream` (the same
    /// service, whose results arrive while the window is open). The kind decides which
    /// server-info file is awaited (`reducer-server-info`,
    /// `reducestreamer-server-info`) and how errors name the server.
    pub async fn connect_kind(kind: UdfKind, options: ClientOptions) -> Result<Self> {
        if !matches!(kind, UdfKind::Reduce | UdfKind::ReduceStream) {
            return Err(Error::Connect {
                kind,
                socket: options.socket.clone(),
                reason: "the reduce client speaks reduce and reduce-stream only".into(),
            });
        }
        Ok(Self {
            conn: Connection::open(kind, &options, is_ready).await?,
        })
    }

    /// Reduces every datum of one window (grouped by their keys on the server) and
    /// returns all results once the window is closed.
    pub async fn reduce_window(
        &mut self,
        window: &Window,
        datums: &[Datum],
    ) -> Result<Vec<Message>> {
        let mut attempt = 0;
        loop {
            let limit = self.conn.options.request_timeout;
            match tokio::time::timeout(limit, self.try_window(window, datums)).await {
                Ok(Ok(out)) => return Ok(out),
                Ok(Err(status))
                    if is_transport_failure(&status) && attempt < self.conn.options.retries =>
                {
                    attempt += 1;
                    self.conn.reopen(is_ready).await?;
                }
                Ok(Err(status)) => return Err(self.conn.rpc_error(status)),
                Err(_) => {
                    return Err(self
                        .conn
                        .timeout_error(format!("a window of {} datums", datums.len())));
                }
            }
        }
    }

    async fn try_window(
        &self,
        window: &Window,
        datums: &[Datum],
    ) -> std::result::Result<Vec<Message>, tonic::Status> {
        use pb::reduce_request::window_operation::Event;
        let (tx, rx) = mpsc::channel(1024);
        let mut client = pb::reduce_client::ReduceClient::new(self.conn.channel.clone())
            .max_decoding_message_size(self.conn.options.max_message_size)
            .max_encoding_message_size(self.conn.options.max_message_size);
        let w = proto_window(window);
        let requests: Vec<pb::ReduceRequest> = {
            let mut seen = std::collections::HashSet::new();
            datums
                .iter()
                .map(|d| {
                    let event = if seen.insert(d.keys.clone()) {
                        Event::Open
                    } else {
                        Event::Append
                    };
                    pb::ReduceRequest {
                        payload: Some(wire::reduce_payload(d)),
                        operation: Some(pb::reduce_request::WindowOperation {
                            event: event as i32,
                            windows: vec![w.clone()],
                        }),
                    }
                })
                .collect()
        };
        let send = async move {
            for r in requests {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        };
        let recv = async {
            let mut responses = client
                .reduce_fn(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut out = Vec::new();
            let mut closed = false;
            while let Some(r) = responses.message().await? {
                if r.eof {
                    closed = true;
                    continue;
                }
                if let Some(result) = r.result {
                    out.push(Message {
                        keys: result.keys,
                        value: result.value,
                        tags: result.tags,
                    });
                }
            }
            if !closed && !datums.is_empty() {
                return Err(tonic::Status::unavailable(
                    "the reduce stream ended without EOF for the window",
                ));
            }
            Ok(out)
        };
        let ((), out) = tokio::join!(send, recv);
        out
    }
}
