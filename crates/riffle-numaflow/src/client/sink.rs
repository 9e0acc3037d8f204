//! The sink client on `sink.v1.Sink`.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::map::{BatchFailure, classify};
use super::{ClientOptions, Connection};
use crate::datum::{Datum, SinkResponse};
use crate::error::Result;
use crate::kind::UdfKind;
use crate::proto::sink::v1 as pb;
use crate::wire;

/// A client of a sink (or fallback / on-success sink) server.
pub struct SinkClient {
    conn: Connection,
    stream: Option<(mpsc::Sender<pb::SinkRequest>, Streaming<pb::SinkResponse>)>,
    next_id: u64,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::sink_client::SinkClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

impl SinkClient {
    /// Connects to a sink server and opens the stream.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        Self::connect_kind(UdfKind::Sink, options).await
    }

    /// Connects to a server of a sink kind (`Sink`, `FallbackSink`, `OnSuccessSink`).
    pub async fn connect_kind(kind: UdfKind, options: ClientOptions) -> Result<Self> {
        let conn = Connection::open(kind, &options, is_ready).await?;
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
        let mut client = pb::sink_client::SinkClient::new(self.conn.channel.clone())
            .max_decoding_message_size(self.conn.options.max_message_size)
            .max_encoding_message_size(self.conn.options.max_message_size);
        let hs = pb::SinkRequest {
            handshake: Some(pb::Handshake { sot: true }),
            ..Default::default()
        };
        tx.send(hs)
            .await
            .map_err(|_| self.conn.protocol_error("request stream closed"))?;
        let mut responses = client
            .sink_fn(ReceiverStream::new(rx))
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

    /// Writes a batch; one response per datum, in input order. Datums without an id
    /// get one; a datum's own id is kept and echoed.
    pub async fn sink_batch(&mut self, datums: Vec<Datum>) -> Result<Vec<SinkResponse>> {
        let mut datums = datums;
        for d in &mut datums {
            if d.id.is_empty() {
                d.id = format!("riffle-{}", self.next_id);
                self.next_id += 1;
            }
        }
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
    ) -> std::result::Result<Vec<SinkResponse>, BatchFailure> {
        let conn = &self.conn;
        let Some((tx, rx)) = self.stream.as_mut() else {
            return Err(BatchFailure::Broken(conn.protocol_error("no open stream")));
        };
        let tx = tx.clone();
        let send = async move {
            for d in datums {
                let req = pb::SinkRequest {
                    request: Some(wire::sink_request(d)),
                    ..Default::default()
                };
                if tx.send(req).await.is_err() {
                    return;
                }
            }
            let eot = pb::SinkRequest {
                status: Some(pb::TransmissionStatus { eot: true }),
                ..Default::default()
            };
            let _ = tx.send(eot).await;
        };
        let recv = async {
            let mut by_id: HashMap<String, SinkResponse> = HashMap::new();
            loop {
                let r = match rx.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return Err(BatchFailure::Broken(
                            conn.protocol_error("the server closed the stream mid-batch"),
                        ));
                    }
                    Err(status) => return Err(classify(conn, status)),
                };
                for result in r.results {
                    let response = wire::sink_response_from(result);
                    by_id.insert(response.id.clone(), response);
                }
                if r.status.is_some_and(|s| s.eot) {
                    break;
                }
            }
            let mut out = Vec::with_capacity(datums.len());
            for d in datums {
                match by_id.remove(&d.id) {
                    Some(r) => out.push(r),
                    None => {
                        return Err(BatchFailure::Fatal(
                            conn.protocol_error(format!("no response for datum id {:?}", d.id)),
                        ));
                    }
                }
            }
            Ok(out)
        };
        let ((), out) = tokio::join!(send, recv);
        out
    }
}
