//! The map-family client: unary map, map-stream and batch map on `map.v1.Map`.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::{ClientOptions, Connection, is_transport_failure};
use crate::datum::{Datum, Message};
use crate::error::{Error, Result};
use crate::info::MAP_MODE_KEY;
use crate::kind::UdfKind;
use crate::proto::map::v1 as pb;
use crate::wire;

/// How a map server answers, as its server info announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    /// One response per request.
    Unary,
    /// Responses per result, then an `eot` per request.
    Stream,
    /// The whole batch answered after the client's `eot`, closed by the server's `eot`.
    Batch,
}

impl MapMode {
    pub(crate) fn kind(self) -> UdfKind {
        match self {
            MapMode::Unary => UdfKind::Map,
            MapMode::Stream => UdfKind::MapStream,
            MapMode::Batch => UdfKind::BatchMap,
        }
    }

    fn from_info(mode: Option<&str>) -> Self {
        match mode {
            Some("stream-map") => MapMode::Stream,
            Some("batch-map") => MapMode::Batch,
            _ => MapMode::Unary,
        }
    }
}

struct OpenStream {
    tx: mpsc::Sender<pb::MapRequest>,
    rx: Streaming<pb::MapResponse>,
}

/// A client of a map, map-stream or batch-map server (the mode comes from its server info).
///
/// ```no_run
/// # async fn run() -> riffle_numaflow::Result<()> {
/// use riffle_numaflow::client::{ClientOptions, MapClient};
/// use riffle_numaflow::Datum;
///
/// let mut client = MapClient::connect(ClientOptions::new("/var/run/numaflow/map.sock")).await?;
/// let outputs = client.map_batch(vec![Datum::new("a"), Datum::new("b")]).await?;
/// assert_eq!(outputs.len(), 2);
/// # Ok(())
/// # }
/// ```
pub struct MapClient {
    conn: Connection,
    mode: MapMode,
    stream: Option<OpenStream>,
    next_id: u64,
}

async fn is_ready(channel: Channel) -> std::result::Result<bool, tonic::Status> {
    let mut client = pb::map_client::MapClient::new(channel);
    Ok(client.is_ready(()).await?.into_inner().ready)
}

impl MapClient {
    /// Connects, reading the map mode from the server info (unary when absent).
    pub async fn connect(options: ClientOptions) -> Result<Self> {
        let conn = Connection::open(UdfKind::Map, &options, is_ready).await?;
        let mode = MapMode::from_info(
            conn.info
                .as_ref()
                .and_then(|i| i.metadata.get(MAP_MODE_KEY))
                .map(String::as_str),
        );
        Self::with_connection(conn, mode).await
    }

    /// Connects to a server known to be in `mode` (for servers without server info).
    pub async fn connect_with_mode(options: ClientOptions, mode: MapMode) -> Result<Self> {
        let conn = Connection::open(mode.kind(), &options, is_ready).await?;
        Self::with_connection(conn, mode).await
    }

    async fn with_connection(mut conn: Connection, mode: MapMode) -> Result<Self> {
        conn.kind = mode.kind();
        let mut client = Self {
            conn,
            mode,
            stream: None,
            next_id: 0,
        };
        client.open_stream().await?;
        Ok(client)
    }

    /// The server's map mode.
    pub fn mode(&self) -> MapMode {
        self.mode
    }

    /// The connection (server info, socket, kind).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn open_stream(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::channel(4096);
        let mut client = pb::map_client::MapClient::new(self.conn.channel.clone())
            .max_decoding_message_size(self.conn.options.max_message_size)
            .max_encoding_message_size(self.conn.options.max_message_size);
        let handshake = pb::MapRequest {
            handshake: Some(pb::Handshake { sot: true }),
            ..Default::default()
        };
        tx.send(handshake)
            .await
            .map_err(|_| self.conn.protocol_error("request stream closed"))?;
        let mut responses = client
            .map_fn(ReceiverStream::new(rx))
            .await
            .map_err(|s| self.conn.rpc_error(s))?
            .into_inner();
        match responses
            .message()
            .await
            .map_err(|s| self.conn.rpc_error(s))?
        {
            Some(r) if r.handshake.is_some_and(|h| h.sot) => {}
            Some(_) => {
                return Err(self
                    .conn
                    .protocol_error("the first response was not the handshake"));
            }
            None => {
                return Err(self
                    .conn
                    .protocol_error("the stream closed before the handshake"));
            }
        }
        self.stream = Some(OpenStream { tx, rx: responses });
        Ok(())
    }

    /// Ends the stream cleanly: half-closes the requests and waits for the server to
    /// finish its side. Some servers (pynumaflow's async ones) shut down when a
    /// client's stream is cancelled rather than closed, so close before exiting.
    pub async fn close(mut self) -> Result<()> {
        let mut extra = 0usize;
        if let Some(OpenStream { tx, mut rx }) = self.stream.take() {
            drop(tx);
            while rx
                .message()
                .await
                .map_err(|s| self.conn.rpc_error(s))?
                .is_some()
            {
                extra += 1;
            }
        }
        // Every datum was answered: anything more means the server answers in
        // another mode, and what it said was cut short.
        if extra > 0 {
            return Err(self.conn.protocol_error(format!(
                "the server sent {extra} response(s) after every datum was answered: it \
                 answers in another mode than {} (a map-stream or batch-map server?), so \
                 its answers were cut short",
                self.mode.kind()
            )));
        }
        drop(self);
        super::connection::settle().await;
        Ok(())
    }

    /// Maps one datum.
    pub async fn map(&mut self, datum: Datum) -> Result<Vec<Message>> {
        let mut out = self.map_batch(vec![datum]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Maps a batch; the result has one entry per input, in input order.
    ///
    /// If the server goes away mid-batch, the client reconnects and resends the whole
    /// batch (up to `retries` times); a handler error is returned at once.
    pub async fn map_batch(&mut self, datums: Vec<Datum>) -> Result<Vec<Vec<Message>>> {
        if datums.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 0;
        loop {
            if self.stream.is_none() {
                let ready = is_ready;
                self.conn.reopen(ready).await?;
                self.open_stream().await?;
            }
            let timeout = self.conn.options.request_timeout;
            let outcome = tokio::time::timeout(timeout, self.try_batch(&datums)).await;
            match outcome {
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
                    tracing::warn!(error = %e, attempt, "map stream broke; reconnecting and resending the batch");
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
    ) -> std::result::Result<Vec<Vec<Message>>, BatchFailure> {
        let first_id = self.next_id;
        self.next_id += datums.len() as u64;
        let mode = self.mode;
        let conn = &self.conn;
        let Some(stream) = self.stream.as_mut() else {
            return Err(BatchFailure::Broken(conn.protocol_error("no open stream")));
        };
        let tx = stream.tx.clone();
        let send = async move {
            for (i, d) in datums.iter().enumerate() {
                let req = pb::MapRequest {
                    request: Some(wire::map_request(d)),
                    id: (first_id + i as u64).to_string(),
                    ..Default::default()
                };
                if tx.send(req).await.is_err() {
                    return false;
                }
            }
            if mode == MapMode::Batch {
                let eot = pb::MapRequest {
                    status: Some(pb::TransmissionStatus { eot: true }),
                    ..Default::default()
                };
                if tx.send(eot).await.is_err() {
                    return false;
                }
            }
            true
        };
        let rx = &mut stream.rx;
        let recv = receive(conn, rx, mode, first_id, datums.len());
        let (sent, received) = tokio::join!(send, recv);
        let out = received?;
        if !sent {
            return Err(BatchFailure::Broken(
                conn.protocol_error("the request stream closed"),
            ));
        }
        Ok(out)
    }
}

pub(crate) enum BatchFailure {
    /// The stream broke (server gone): worth reconnecting and resending.
    Broken(Error),
    /// The server answered with an error or broke the protocol: resending will not help.
    Fatal(Error),
}

pub(crate) fn classify(conn: &Connection, status: tonic::Status) -> BatchFailure {
    if is_transport_failure(&status) {
        BatchFailure::Broken(conn.rpc_error(status))
    } else {
        BatchFailure::Fatal(conn.rpc_error(status))
    }
}

async fn receive(
    conn: &Connection,
    rx: &mut Streaming<pb::MapResponse>,
    mode: MapMode,
    first_id: u64,
    count: usize,
) -> std::result::Result<Vec<Vec<Message>>, BatchFailure> {
    let mut out: Vec<Option<Vec<Message>>> = vec![None; count];
    let mut streamed: HashMap<usize, Vec<Message>> = HashMap::new();
    let mut done = 0usize;
    let index_of = |id: &str| -> Option<usize> {
        let n: u64 = id.parse().ok()?;
        let i = n.checked_sub(first_id)? as usize;
        (i < count).then_some(i)
    };
    loop {
        if done == count && mode != MapMode::Batch {
            break;
        }
        let response = match rx.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(BatchFailure::Broken(conn.protocol_error(format!(
                    "the server closed the stream with {} of {count} responses missing",
                    count - done
                ))));
            }
            Err(status) => return Err(classify(conn, status)),
        };
        let eot = response.status.is_some_and(|s| s.eot);
        match mode {
            MapMode::Batch if eot => {
                if done != count {
                    return Err(BatchFailure::Fatal(conn.protocol_error(format!(
                        "end of batch with {} of {count} ids unanswered",
                        count - done
                    ))));
                }
                break;
            }
            MapMode::Stream => {
                let Some(i) = index_of(&response.id) else {
                    return Err(BatchFailure::Fatal(conn.protocol_error(format!(
                        "response for unknown id {:?}",
                        response.id
                    ))));
                };
                let entry = streamed.entry(i).or_default();
                entry.extend(response.results.into_iter().map(wire::message_from_map));
                if eot {
                    if out[i].is_some() {
                        return Err(BatchFailure::Fatal(
                            conn.protocol_error(format!("two ends for id {:?}", response.id)),
                        ));
                    }
                    out[i] = Some(streamed.remove(&i).unwrap_or_default());
                    done += 1;
                }
            }
            MapMode::Unary if eot => {
                return Err(BatchFailure::Fatal(conn.protocol_error(
                    "the server sent an end-of-transmission mark, as only a map-stream or \
                     batch-map server does: it is not a unary map server, so its answers \
                     would be cut short; call it as map-stream or batch-map",
                )));
            }
            _ => {
                let Some(i) = index_of(&response.id) else {
                    return Err(BatchFailure::Fatal(conn.protocol_error(format!(
                        "response for unknown id {:?}",
                        response.id
                    ))));
                };
                if out[i].is_some() {
                    return Err(BatchFailure::Fatal(
                        conn.protocol_error(format!("two responses for id {:?}", response.id)),
                    ));
                }
                out[i] = Some(
                    response
                        .results
                        .into_iter()
                        .map(wire::message_from_map)
                        .collect(),
                );
                done += 1;
            }
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}
