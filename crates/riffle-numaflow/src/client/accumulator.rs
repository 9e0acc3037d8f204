//! The accumulator client on `accumulator.v1.Accumulator`: one stream per call.

use std::collections::HashSet;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{ClientOptions, Connection, is_transport_failure};
use crate::datum::{Accumulated, Datum};
use crate::error::Result;
use crate::kind::UdfKind;
use crate::proto::accumulator::v1 as pb;
use crate::wire;

/// A client of an accumulator server.
pub struct AccumulatorClient {
    conn: Connection,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::accumulator_client::AccumulatorClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

fn keyed_window(keys: &[String]) -> pb::KeyedWindow {
    pb::KeyedWindow {
        start: Some(wire::to_timestamp(std::time::UNIX_EPOCH)),
        end: Some(wire::to_timestamp(std::time::UNIX_EPOCH)),
        slot: "slot-0".into(),
        keys: keys.to_vec(),
    }
}

impl AccumulatorClient {
    /// Connects to the accumulator.
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        Ok(Self {
            conn: Connection::open(UdfKind::Accumulator, &options, is_ready).await?,
        })
    }

    /// Sends `datums` (grouped by their keys), closes every key, and returns all
    /// outputs once the server has answered `EOF` for each key.
    pub async fn accumulate(&mut self, datums: &[Datum]) -> Result<Vec<Accumulated>> {
        let mut attempt = 0;
        loop {
            let limit = self.conn.options.request_timeout;
            match tokio::time::timeout(limit, self.try_accumulate(datums)).await {
                Ok(Ok(Ok(out))) => return Ok(out),
                Ok(Ok(Err(reason))) => return Err(self.conn.protocol_error(reason)),
                Ok(Err(status))
                    if is_transport_failure(&status) && attempt < self.conn.options.retries =>
                {
                    attempt += 1;
                    self.conn.reopen(is_ready).await?;
                }
                Ok(Err(status)) => return Err(self.conn.rpc_error(status)),
                Err(_) => return Err(self.conn.timeout_error(format!("{} datums", datums.len()))),
            }
        }
    }

    async fn try_accumulate(
        &self,
        datums: &[Datum],
    ) -> std::result::Result<std::result::Result<Vec<Accumulated>, String>, tonic::Status> {
        use pb::accumulator_request::window_operation::Event;
        let (tx, rx) = mpsc::channel(1024);
        let mut client = pb::accumulator_client::AccumulatorClient::new(self.conn.channel.clone())
            .max_decoding_message_size(self.conn.options.max_message_size)
            .max_encoding_message_size(self.conn.options.max_message_size);
        let mut open: Vec<Vec<String>> = Vec::new();
        let mut seen = HashSet::new();
        let mut requests = Vec::with_capacity(datums.len() + 4);
        for d in datums {
            let event = if seen.insert(d.keys.clone()) {
                open.push(d.keys.clone());
                Event::Open
            } else {
                Event::Append
            };
            requests.push(pb::AccumulatorRequest {
                payload: Some(pb::Payload {
                    keys: d.keys.clone(),
                    value: d.value.clone(),
                    event_time: Some(wire::to_timestamp(d.event_time)),
                    watermark: Some(wire::to_timestamp(d.watermark)),
                    id: d.id.clone(),
                    headers: d
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    metadata: None,
                }),
                operation: Some(pb::accumulator_request::WindowOperation {
                    event: event as i32,
                    keyed_window: Some(keyed_window(&d.keys)),
                }),
            });
        }
        for keys in &open {
            requests.push(pb::AccumulatorRequest {
                payload: None,
                operation: Some(pb::accumulator_request::WindowOperation {
                    event: Event::Close as i32,
                    keyed_window: Some(keyed_window(keys)),
                }),
            });
        }
        let send = async move {
            for r in requests {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        };
        let expected = open.len();
        let recv = async {
            let mut responses = client
                .accumulate_fn(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut out = Vec::new();
            let mut closed = 0;
            // Read to the end of the stream, past the last EOF: a client that stops
            // reading early cancels the call, and pynumaflow's server shuts down on
            // a cancelled call.
            while let Some(r) = responses.message().await? {
                if r.eof {
                    closed += 1;
                    continue;
                }
                if let Some(p) = r.payload {
                    let datum = Datum {
                        keys: p.keys,
                        value: p.value,
                        event_time: wire::to_time(p.event_time.as_ref()),
                        watermark: wire::to_time(p.watermark.as_ref()),
                        headers: p.headers.into_iter().collect(),
                        id: p.id,
                    };
                    out.push(Accumulated {
                        datum,
                        tags: r.tags,
                    });
                }
            }
            if closed < expected {
                return Ok(Err(format!(
                    "the stream ended with {closed} of {expected} keys closed"
                )));
            }
            Ok(Ok(out))
        };
        let ((), out) = tokio::join!(send, recv);
        out
    }
}
