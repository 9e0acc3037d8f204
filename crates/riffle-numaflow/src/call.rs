//! Call a UDF server of any kind once, with datums in and JSON out: the engine of
//! `riffle udf call`, for debugging a UDF container by hand.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::{
    AccumulatorClient, ClientOptions, MapClient, MapMode, ReduceClient, SideInputClient,
    SinkClient, SourceClient, SourceTransformClient,
};
use crate::datum::{Datum, Message, Window};
use crate::error::Result;
use crate::jsonl;
use crate::kind::UdfKind;

/// What a call needs beyond the datums.
#[derive(Debug, Clone)]
pub struct CallParams {
    /// Reduce: the window every datum falls in.
    pub window: Window,
    /// Source: how many messages to read.
    pub read_count: u64,
    /// Source: how long the server may take to read them.
    pub read_timeout: Duration,
    /// Source: acknowledge what was read.
    pub ack: bool,
}

impl Default for CallParams {
    fn default() -> Self {
        Self {
            window: Window::new(UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(60)),
            read_count: 10,
            read_timeout: Duration::from_secs(1),
            ack: false,
        }
    }
}

/// Calls the server of `kind` with `datums` and returns one JSON value per output line.
///
/// Map-family kinds and source-transform answer one line per input (`{"input": i,
/// "messages": [...]}`); a sink (main, fallback or on-success) one line per datum;
/// reduce and reduce-stream one line per result, in the order the server sent them; a
/// source one line per message read, then `{"pending": n, "partitions": [...]}`; a
/// side input one line. The kind also decides which server-info file is awaited.
pub async fn call(
    kind: UdfKind,
    options: ClientOptions,
    datums: Vec<Datum>,
    params: &CallParams,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    match kind {
        UdfKind::Map | UdfKind::MapStream | UdfKind::BatchMap => {
            let mode = match kind {
                UdfKind::MapStream => MapMode::Stream,
                UdfKind::BatchMap => MapMode::Batch,
                _ => MapMode::Unary,
            };
            let socket = options.socket.clone();
            let mut client = if options.check_server_info {
                MapClient::connect(options).await?
            } else {
                MapClient::connect_with_mode(options, mode).await?
            };
            // Answering a datum in another mode loses messages or misreads them.
            if client.mode() != mode {
                let theirs = client.mode().kind();
                return Err(crate::error::Error::Incompatible {
                    kind,
                    socket,
                    reason: format!(
                        "its server-info says it is a {theirs} server, not {kind}; \
                         call it as {theirs}"
                    ),
                });
            }
            for (i, messages) in client.map_batch(datums).await?.iter().enumerate() {
                out.push(json!({"input": i, "messages": messages.iter().map(jsonl::message_json).collect::<Vec<_>>()}));
            }
            client.close().await?;
        }
        UdfKind::SourceTransform => {
            let mut client = SourceTransformClient::connect(options).await?;
            for (i, messages) in client.transform_batch(datums).await?.iter().enumerate() {
                out.push(json!({"input": i, "messages": messages.iter().map(jsonl::transform_json).collect::<Vec<_>>()}));
            }
            client.close().await?;
        }
        UdfKind::Sink | UdfKind::FallbackSink | UdfKind::OnSuccessSink => {
            let mut client = SinkClient::connect_kind(kind, options).await?;
            out.extend(
                client
                    .sink_batch(datums)
                    .await?
                    .iter()
                    .map(jsonl::sink_json),
            );
            client.close().await?;
        }
        UdfKind::Reduce | UdfKind::ReduceStream => {
            let mut client = ReduceClient::connect_kind(kind, options).await?;
            for m in client.reduce_window(&params.window, &datums).await? {
                out.push(jsonl::message_json(&m));
            }
        }
        UdfKind::Source => {
            let mut client = SourceClient::connect(options).await?;
            let read = client.read(params.read_count, params.read_timeout).await?;
            out.extend(read.iter().map(jsonl::source_json));
            if params.ack && !read.is_empty() {
                let offsets: Vec<_> = read.iter().map(|m| m.offset.clone()).collect();
                client.ack(&offsets).await?;
            }
            let pending = client.pending().await?;
            let (partitions, total) = client.partitions().await?;
            out.push(
                json!({"pending": pending, "partitions": partitions, "total_partitions": total}),
            );
            client.close().await?;
        }
        UdfKind::SideInput => {
            let mut client = SideInputClient::connect(options).await?;
            out.push(jsonl::side_input_json(&client.retrieve().await?));
        }
        UdfKind::Accumulator => {
            let mut client = AccumulatorClient::connect(options).await?;
            for a in client.accumulate(&datums).await? {
                let mut line = jsonl::message_json(&Message {
                    keys: a.datum.keys,
                    value: a.datum.value,
                    tags: a.tags,
                });
                line["event_time_ms"] = json!(jsonl::to_ms(a.datum.event_time));
                line["watermark_ms"] = json!(jsonl::to_ms(a.datum.watermark));
                out.push(line);
            }
        }
    }
    Ok(out)
}
