//! The source-transformer client on `sourcetransformer.v1.SourceTransform`.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::map::{BatchFailure, classify};
use super::{ClientOptions, Connection};
use crate::datum::{Datum, Message, TransformMessage};
use crate::error::Result;
use crate::kind::UdfKind;
use crate::proto::sourcetransformer::v1 as pb;
use crate::wire;

/// A client of a source-transformer server.
pub struct SourceTransformClient {
    conn: Connection,
    stream: Option<(
        mpsc::Sender<pb::SourceTransformRequest>,
        Streaming<pb::SourceTransformResponse>,
    )>,
    next_id: u64,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::source_transform_client::SourceTransformClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

impl SourceTransformClient {
    /// Connects and opens the stream.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        let conn = Connection::open(UdfKind::SourceTransform, &options, is_ready).await?;
        let mut client = Self {
            conn,
            stream: None,
            next_id: 0,
        };
        client.open_stream().await?;
        Ok(client)
    }

    async fn open_stream(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::channel(4096);
        let mut client =
            pb::source_transform_client::SourceTransformClient::new(self.conn.channel.clone())
                .max_decoding_message_size(self.conn.options.max_message_size)
                .max_encoding_message_size(self.conn.options.max_message_size);
        let hs = pb::SourceTransformRequest {
            request: None,
            handshake: Some(pb::Handshake { sot: true }),
        };
        tx.send(hs)
            .await
            .map_err(|_| self.conn.protocol_error("request stream closed"))?;
        let mut responses = client
            .source_transform_fn(ReceiverStream::new(rx))
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        match responses
            .message()
            .await
            .map_err(|s| self.conn.rpc_error(s))?
        {
            Some(r) if r.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(self
                    .conn
                    .protocol_error("the first response was not the handshake"));
            }
        }
        self.stream = Some((tx, responses));
        Ok(())
    }

    /// Ends the stream cleanly: half-closes the requests and waits for the server to
    /// finish its side. Some servers (pynumaflow's async ones) shut down when a
    /// client's stream is cancelled rather than closed, so close before exiting.
    pub async fn close(mut self) -> Result<()> {
        if let Some((tx, mut rx)) = self.stream.take() {
            drop(tx);
            while rx
                .message()
                .await
                .map_err(|s| self.conn.rpc_error(s))?
                .is_some()
            {}
        }
        drop(self);
        super::connection::settle().await;
        Ok(())
    }

    /// Transforms a batch; one entry per input, in input order.
    pub async fn transform_batch(
        &mut self,
        datums: Vec<Datum>,
    ) -> Result<Vec<Vec<TransformMessage>>> {
        let mut attempt = 0;
        loop {
            if self.stream.is_none() {
                self.conn.reopen(is_ready).await?;
                self.open_stream().await?;
            }
            let timeout = self.conn.options.request_timeout;
            match tokio::time::timeout(timeout, self.try_batch(&datums)).await {
                Ok(Ok(out)) => return Ok(out),
                Ok(Err(BatchFailure::Fatal(e))) => {
                    self.stream = None;
                    return Err(e);
                }
                Ok(Err(BatchFailure::Broken(e))) => {
                    self.stream = None;
                    attempt += 1;
                    if attempt > self.conn.options.retries {
                        return Err(e);
                    }
                }
                Err(_) => {
                    self.stream = None;
                    return Err(self
                        .conn
                        .timeout_error(format!("a batch of {} datums", datums.len())));
                }
            }
        }
    }

    async fn try_batch(
        &mut self,
        datums: &[Datum],
    ) -> std::result::Result<Vec<Vec<TransformMessage>>, BatchFailure> {
        let first = self.next_id;
        self.next_id += datums.len() as u64;
        let conn = &self.conn;
        let Some((tx, rx)) = self.stream.as_mut() else {
            return Err(BatchFailure::Broken(conn.protocol_error("no open stream")));
        };
        let tx = tx.clone();
        let send = async move {
            for (i, d) in datums.iter().enumerate() {
                let mut request = wire::transform_request(d);
                request.id = (first + i as u64).to_string();
                let req = pb::SourceTransformRequest {
                    request: Some(request),
                    handshake: None,
                };
                if tx.send(req).await.is_err() {
                    return;
                }
            }
        };
        let count = datums.len();
        let recv = async {
            let mut out: Vec<Option<Vec<TransformMessage>>> = vec![None; count];
            let mut done = 0;
            while done < count {
                let r = match rx.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return Err(BatchFailure::Broken(conn.protocol_error(format!(
                            "the server closed the stream with {} of {count} responses missing",
                            count - done
                        ))));
                    }
                    Err(status) => return Err(classify(conn, status)),
                };
                let index =
                    r.id.parse::<u64>()
                        .ok()
                        .and_then(|n| n.checked_sub(first))
                        .map(|i| i as usize);
                let Some(i) = index.filter(|&i| i < count && out[i].is_none()) else {
                    return Err(BatchFailure::Fatal(
                        conn.protocol_error(format!("unexpected response id {:?}", r.id)),
                    ));
                };
                out[i] = Some(
                    r.results
                        .into_iter()
                        .map(|x| TransformMessage {
                            event_time: wire::to_time(x.event_time.as_ref()),
                            message: Message {
                                keys: x.keys,
                                value: x.value,
                                tags: x.tags,
                            },
                        })
                        .collect(),
                );
                done += 1;
            }
            Ok(out.into_iter().map(Option::unwrap_or_default).collect())
        };
        let ((), out) = tokio::join!(send, recv);
        out
    }
}
