//! The user-defined-source client on `source.v1.Source`.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::{ClientOptions, Connection};
use crate::datum::{Offset, SourceMessage};
use crate::error::Result;
use crate::kind::UdfKind;
use crate::proto::source::v1 as pb;
use crate::wire;

/// A client of a user-defined source: read, ack, nack, pending, partitions.
pub struct SourceClient {
    conn: Connection,
    read: Option<(mpsc::Sender<pb::ReadRequest>, Streaming<pb::ReadResponse>)>,
    ack: Option<(mpsc::Sender<pb::AckRequest>, Streaming<pb::AckResponse>)>,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::source_client::SourceClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

impl SourceClient {
    /// Connects and opens the read and ack streams.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        let conn = Connection::open(UdfKind::Source, &options, is_ready).await?;
        let mut client = Self {
            conn,
            read: None,
            ack: None,
        };
        client.open_streams().await?;
        Ok(client)
    }

    fn grpc(&self) -> pb::source_client::SourceClient<Channel> {
        pb::source_client::SourceClient::new(self.conn.channel.clone())
            .max_decoding_message_size(self.conn.options.max_message_size)
            .max_encoding_message_size(self.conn.options.max_message_size)
    }

    async fn open_streams(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::channel(64);
        let hs = pb::ReadRequest {
            request: None,
            handshake: Some(pb::Handshake { sot: true }),
        };
        tx.send(hs)
            .await
            .map_err(|_| self.conn.protocol_error("read stream closed"))?;
        let mut reads = self
            .grpc()
            .read_fn(ReceiverStream::new(rx))
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        match reads.message().await.map_err(|s| self.conn.rpc_error(s))? {
            Some(r) if r.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(self
                    .conn
                    .protocol_error("the read stream did not start with the handshake"));
            }
        }
        let (atx, arx) = mpsc::channel(64);
        let hs = pb::AckRequest {
            request: None,
            handshake: Some(pb::Handshake { sot: true }),
        };
        atx.send(hs)
            .await
            .map_err(|_| self.conn.protocol_error("ack stream closed"))?;
        let mut acks = self
            .grpc()
            .ack_fn(ReceiverStream::new(arx))
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        match acks.message().await.map_err(|s| self.conn.rpc_error(s))? {
            Some(r) if r.handshake.is_some_and(|h| h.sot) => {}
            _ => {
                return Err(self
                    .conn
                    .protocol_error("the ack stream did not start with the handshake"));
            }
        }
        self.read = Some((tx, reads));
        self.ack = Some((atx, acks));
        Ok(())
    }

    /// Ends the stream cleanly: half-closes the requests and waits for the server to
    /// finish its side. Some servers (pynumaflow's async ones) shut down when a
    /// client's stream is cancelled rather than closed, so close before exiting.
    pub async fn close(mut self) -> Result<()> {
        if let Some((tx, mut rx)) = self.read.take() {
            drop(tx);
            while rx
                .message()
                .await
                .map_err(|s| self.conn.rpc_error(s))?
                .is_some()
            {}
        }
        if let Some((tx, mut rx)) = self.ack.take() {
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

    /// Reads up to `count` messages, waiting at most `timeout` on the server's side.
    pub async fn read(&mut self, count: u64, timeout: Duration) -> Result<Vec<SourceMessage>> {
        if self.read.is_none() {
            self.conn.reopen(is_ready).await?;
            self.open_streams().await?;
        }
        let limit = self.conn.options.request_timeout;
        let conn = self.conn.clone();
        let Some((tx, rx)) = self.read.as_mut() else {
            return Err(conn.protocol_error("no read stream"));
        };
        let request = pb::ReadRequest {
            request: Some(pb::read_request::Request {
                num_records: count,
                timeout_in_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            }),
            handshake: None,
        };
        let exchange = async {
            tx.send(request)
                .await
                .map_err(|_| conn.protocol_error("the read stream closed"))?;
            let mut out = Vec::new();
            loop {
                let Some(r) = rx.message().await.map_err(|s| conn.rpc_error(s))? else {
                    return Err(conn.protocol_error("the server closed the read stream mid-read"));
                };
                if let Some(status) = &r.status
                    && status.code == pb::read_response::status::Code::Failure as i32
                {
                    return Err(conn.protocol_error(format!(
                        "read failed: {}",
                        status.msg.clone().unwrap_or_default()
                    )));
                }
                if let Some(result) = r.result {
                    out.push(wire::source_message_from(result));
                }
                if r.status.is_some_and(|s| s.eot) {
                    return Ok(out);
                }
            }
        };
        let result = match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(conn.timeout_error(format!("a read of {count}"))),
        };
        if result.is_err() {
            self.read = None;
            self.ack = None;
        }
        result
    }

    /// Acknowledges offsets.
    pub async fn ack(&mut self, offsets: &[Offset]) -> Result<()> {
        if self.ack.is_none() {
            self.conn.reopen(is_ready).await?;
            self.open_streams().await?;
        }
        let limit = self.conn.options.request_timeout;
        let conn = self.conn.clone();
        let Some((tx, rx)) = self.ack.as_mut() else {
            return Err(conn.protocol_error("no ack stream"));
        };
        let request = pb::AckRequest {
            request: Some(pb::ack_request::Request {
                offsets: offsets.iter().map(wire::offset_to_proto).collect(),
            }),
            handshake: None,
        };
        let exchange = async {
            tx.send(request)
                .await
                .map_err(|_| conn.protocol_error("the ack stream closed"))?;
            match rx.message().await.map_err(|s| conn.rpc_error(s))? {
                Some(r) if r.result.is_some() => Ok(()),
                Some(_) => Err(conn.protocol_error("an ack response without a result")),
                None => Err(conn.protocol_error("the server closed the ack stream")),
            }
        };
        let result = match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(conn.timeout_error("an ack")),
        };
        if result.is_err() {
            self.read = None;
            self.ack = None;
        }
        result
    }

    /// Rejects offsets so they are read again.
    pub async fn nack(&mut self, offsets: &[Offset]) -> Result<()> {
        let request = pb::NackRequest {
            request: Some(pb::nack_request::Request {
                offsets: offsets.iter().map(wire::offset_to_proto).collect(),
            }),
        };
        self.grpc()
            .nack_fn(request)
            .await
            .map_err(|s| self.conn.rpc_error(s))?;
        Ok(())
    }

    /// The number of pending messages; `None` when the source does not know.
    pub async fn pending(&mut self) -> Result<Option<u64>> {
        let r = self
            .grpc()
            .pending_fn(())
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        let count = r.result.map(|r| r.count).unwrap_or(-1);
        Ok(u64::try_from(count).ok())
    }

    /// The partitions the source reads, and the total when it knows it.
    pub async fn partitions(&mut self) -> Result<(Vec<i32>, Option<i32>)> {
        let r = self
            .grpc()
            .partitions_fn(())
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        let result = r.result.unwrap_or_default();
        Ok((result.partitions, result.total_partitions))
    }
}
