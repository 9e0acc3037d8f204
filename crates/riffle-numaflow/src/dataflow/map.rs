//! Map-family steps: a datum in, messages (or transformed datums) out.
//!
//! In-process, the UDF is called on the worker that holds the datum, one datum at a
//! time ([`Mapper`], [`MapStreamer`], [`SourceTransformer`]) or one batch at a time
//! ([`BatchMapper`]). A map-stream UDF's messages are gathered as it sends them and
//! go on, in the order sent, when it returns.
//! Over the socket, every kind goes through one engine, [`call_in_batches`]: datums
//! are grouped into batches of up to `batch_size` (a batch is also sent when its
//! epoch closes), each batch is one call on a client of the step's pool (see
//! [`pool`](super::pool)), and a call that fails stops the run with an error naming
//! the step, the socket and the UDF kind. A server that goes away mid-batch is
//! reconnected and the batch resent by the client, up to its retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use riffle::{Data, Stream};

use super::keep;
use super::pool::{ClientPool, Pooled};
use crate::client::{ClientOptions, MapClient, MapMode, SourceTransformClient};
use crate::datum::{Datum, Message, TransformMessage};
use crate::error::Error;
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::{BatchMapper, MapStreamer, Mapper, MessageSender, SourceTransformer};

pub(super) fn udf_map<M: Mapper>(
    stream: &Stream<Datum>,
    step_id: &str,
    mapper: M,
) -> riffle::Result<Stream<Message>> {
    let mapper = Arc::new(mapper);
    let kind = UdfKind::Map;
    stream
        .try_map(step_id, move |datum: Datum| {
            block_on(mapper.map(datum)).map_err(|e| format!("{kind} UDF failed: {e}"))
        })?
        .flat_map(&format!("{step_id}.messages"), keep)
}

pub(super) fn udf_map_stream<M: MapStreamer>(
    stream: &Stream<Datum>,
    step_id: &str,
    mapper: M,
) -> riffle::Result<Stream<Message>> {
    let mapper = Arc::new(mapper);
    let kind = UdfKind::MapStream;
    stream
        .try_map(step_id, move |datum: Datum| {
            block_on(async {
                let (out, mut sent) = MessageSender::channel(64);
                let mapping = mapper.map_stream(datum, out);
                let collecting = async {
                    let mut messages = Vec::new();
                    while let Some(m) = sent.recv().await {
                        messages.push(m);
                    }
                    messages
                };
                let (mapped, messages) = tokio::join!(mapping, collecting);
                mapped.map(|()| messages)
            })
            .map_err(|e| format!("{kind} UDF failed: {e}"))
        })?
        .flat_map(&format!("{step_id}.messages"), keep)
}

pub(super) fn udf_batch_map<B: BatchMapper>(
    stream: &Stream<Datum>,
    step_id: &str,
    mapper: B,
    batch_size: usize,
) -> riffle::Result<Stream<Message>> {
    let mapper = Arc::new(mapper);
    let kind = UdfKind::BatchMap;
    batches(stream, step_id, batch_size)?
        .try_map(step_id, move |(_, batch): (u64, Vec<Datum>)| {
            let count = batch.len();
            let out =
                block_on(mapper.batch_map(batch)).map_err(|e| format!("{kind} UDF failed: {e}"))?;
            if out.len() != count {
                return Err(format!(
                    "{kind} UDF returned {} results for {count} datums",
                    out.len()
                ));
            }
            Ok(out.into_iter().flatten().collect::<Vec<_>>())
        })?
        .flat_map(&format!("{step_id}.messages"), keep)
}

pub(super) fn udf_transform<T: SourceTransformer>(
    stream: &Stream<Datum>,
    step_id: &str,
    transformer: T,
) -> riffle::Result<Stream<Datum>> {
    let transformer = Arc::new(transformer);
    stream
        .try_map(step_id, move |datum: Datum| {
            let out = block_on(transformer.transform(datum.clone()))
                .map_err(|e| format!("{} UDF failed: {e}", UdfKind::SourceTransform))?;
            Ok::<_, String>(transformed(&datum, out))
        })?
        .flat_map(&format!("{step_id}.datums"), |d: Vec<Datum>| d)
}

/// The datums a transformer made of `base`: its new keys, value and event time, the
/// rest (watermark, headers) kept; dropped messages removed. A single output keeps
/// the input's id; several get `{id}-0`, `{id}-1`, ... (as Numaflow numbers them), so
/// that ids stay unique for a sink downstream.
pub(super) fn transformed(base: &Datum, out: Vec<TransformMessage>) -> Vec<Datum> {
    let kept: Vec<TransformMessage> = out.into_iter().filter(|t| !t.message.is_drop()).collect();
    let numbered = kept.len() > 1 && !base.id.is_empty();
    kept.into_iter()
        .enumerate()
        .map(|(i, t)| Datum {
            keys: t.message.keys,
            value: t.message.value,
            event_time: t.event_time,
            watermark: base.watermark,
            headers: base.headers.clone(),
            id: if numbered {
                format!("{}-{i}", base.id)
            } else {
                base.id.clone()
            },
        })
        .collect()
}

pub(super) fn udf_call_map(
    stream: &Stream<Datum>,
    step_id: &str,
    options: ClientOptions,
    batch_size: usize,
) -> riffle::Result<Stream<Message>> {
    call_in_batches(
        stream,
        step_id,
        "messages",
        options,
        batch_size,
        MapClient::connect,
        map_kept,
    )
}

pub(super) fn udf_call_batch_map(
    stream: &Stream<Datum>,
    step_id: &str,
    options: ClientOptions,
    batch_size: usize,
) -> riffle::Result<Stream<Message>> {
    call_in_batches(
        stream,
        step_id,
        "messages",
        options,
        batch_size,
        connect_batch_map,
        map_kept,
    )
}

pub(super) fn udf_call_transform(
    stream: &Stream<Datum>,
    step_id: &str,
    options: ClientOptions,
    batch_size: usize,
) -> riffle::Result<Stream<Datum>> {
    call_in_batches(
        stream,
        step_id,
        "datums",
        options,
        batch_size,
        SourceTransformClient::connect,
        async |client: &mut SourceTransformClient, batch: Vec<Datum>| {
            let bases: Vec<Datum> = batch.iter().map(without_payload).collect();
            let out = client.transform_batch(batch).await?;
            Ok(bases
                .iter()
                .zip(out)
                .flat_map(|(base, out)| transformed(base, out))
                .collect())
        },
    )
}

/// One batch on a map-family client, the outputs flattened, dropped messages removed.
async fn map_kept(client: &mut MapClient, batch: Vec<Datum>) -> crate::Result<Vec<Message>> {
    let out = client.map_batch(batch).await?;
    Ok(out.into_iter().flatten().filter(|m| !m.is_drop()).collect())
}

/// Connects a batch-map server: one whose server info announces batch-map mode, or
/// any map server when the options skip the server info.
async fn connect_batch_map(options: ClientOptions) -> crate::Result<MapClient> {
    if !options.check_server_info {
        return MapClient::connect_with_mode(options, MapMode::Batch).await;
    }
    let client = MapClient::connect(options).await?;
    if client.mode() != MapMode::Batch {
        let conn = client.connection();
        return Err(Error::Incompatible {
            kind: UdfKind::BatchMap,
            socket: conn.socket.clone(),
            reason: format!(
                "the server info announces the {} mode, not batch-map",
                conn.kind
            ),
        });
    }
    Ok(client)
}

/// What a transformed datum keeps of its input: everything but keys and value.
fn without_payload(d: &Datum) -> Datum {
    Datum {
        keys: Vec::new(),
        value: Vec::new(),
        event_time: d.event_time,
        watermark: d.watermark,
        headers: d.headers.clone(),
        id: d.id.clone(),
    }
}

/// Groups a stream into batches of up to `batch_size` (flushed at the end of each epoch).
pub(super) fn batches(
    stream: &Stream<Datum>,
    step_id: &str,
    batch_size: usize,
) -> riffle::Result<Stream<(u64, Vec<Datum>)>> {
    let batch_size = batch_size.max(1) as u64;
    let counter = Arc::new(AtomicU64::new(0));
    stream
        .key_on(&format!("{step_id}.group"), move |_: &Datum| {
            (counter.fetch_add(1, Ordering::Relaxed) / batch_size) % 64
        })?
        .collect(&format!("{step_id}.batch"), batch_size as usize)
}

/// The engine of every batched remote step: batches of `batch_size` datums, each one
/// `call` on a client of the step's pool (made by `connect` when none is idle),
/// the outputs flattened into step `{step_id}.{outputs}`.
pub(super) fn call_in_batches<C: Pooled, O: Data>(
    stream: &Stream<Datum>,
    step_id: &str,
    outputs: &str,
    options: ClientOptions,
    batch_size: usize,
    connect: impl AsyncFn(ClientOptions) -> crate::Result<C> + Send + Sync + 'static,
    call: impl AsyncFn(&mut C, Vec<Datum>) -> crate::Result<Vec<O>> + Send + Sync + 'static,
) -> riffle::Result<Stream<O>> {
    let pool = ClientPool::new(options);
    batches(stream, step_id, batch_size)?
        .try_map(step_id, move |(_, batch): (u64, Vec<Datum>)| {
            let call = &call;
            pool.call(&connect, async move |client: &mut C| {
                call(client, batch).await
            })
        })?
        .flat_map(&format!("{step_id}.{outputs}"), |out: Vec<O>| out)
}
