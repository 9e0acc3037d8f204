//! UDFs as steps of a Riffle [`Dataflow`]: in-process, or over the socket.
//!
//! [`UdfStreamExt`] adds methods to `Stream<Datum>`:
//!
//! - `udf_map(step_id, mapper)`, `udf_batch_map`, `udf_transform`: call a UDF trait
//!   object in-process, item by item (or batch by batch), on the worker that holds
//!   the item. Messages tagged [`DROP`](crate::DROP) are dropped, as Numaflow does.
//! - `udf_call_map(step_id, options, batch_size)`: call a map, map-stream or batch-map
//!   server of any language over its Unix socket. Items are grouped into batches of
//!   `batch_size` (a batch is also sent when its epoch closes), each worker keeps its
//!   own connection, and a failed call stops the run with an error that names the
//!   step, the socket and the UDF kind.
//! - `udf_sink(step_id, sinker)` and `udf_call_sink(step_id, options)`: a sink UDF as
//!   the flow's sink; a datum the sink fails (or sends to fallback) stops the run.
//!
//! [`UdfFlowExt`] adds `udf_source(step_id, sourcer, batch_size)` and
//! `udf_call_source(step_id, options, batch_size)` to a [`Dataflow`]: a user-defined
//! source read on worker 0, each batch acknowledged once it entered the flow. Such a
//! source ends when a read returns nothing and the source reports no pending messages.
//!
//! ```
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//! use riffle_numaflow::dataflow::UdfStreamExt;
//! use riffle_numaflow::udf::map_fn;
//! use riffle_numaflow::{Datum, Message};
//!
//! let flow = Dataflow::new("udf");
//! let out = TestingSink::new();
//! flow.input("words", TestingSource::new(vec![Datum::new("a"), Datum::new("skip")]))?
//!     .udf_map("upper", map_fn(|d: Datum| {
//!         if d.value == b"skip" { return Ok(vec![Message::to_drop()]) }
//!         Ok(vec![Message::new(d.value.to_ascii_uppercase())])
//!     }))?
//!     .map("value", |m: Message| String::from_utf8_lossy(&m.value).to_string())?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), ["A"]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use riffle::sinks::{DynamicSink, SinkPartition};
use riffle::sources::{DynamicSource, Poll, SourcePartition};
use riffle::{Dataflow, RiffleError, Stream, WorkerInfo};

use crate::client::{ClientOptions, MapClient, SinkClient, SourceClient};
use crate::datum::{Datum, Message, ReadRequest, SinkResponse, SinkStatus, SourceMessage};
use crate::runtime::block_on;
use crate::udf::{BatchMapper, Mapper, MessageSender, Sinker, SourceTransformer, Sourcer};

/// UDF steps on a stream of [`Datum`]s.
pub trait UdfStreamExt {
    /// Maps every datum in-process with `mapper`; dropped messages do not pass.
    fn udf_map<M: Mapper>(&self, step_id: &str, mapper: M) -> riffle::Result<Stream<Message>>;

    /// Maps batches of up to `batch_size` datums in-process with `mapper`.
    fn udf_batch_map<B: BatchMapper>(
        &self,
        step_id: &str,
        mapper: B,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>>;

    /// Transforms every datum in-process; the output datums carry the new event time.
    fn udf_transform<T: SourceTransformer>(
        &self,
        step_id: &str,
        transformer: T,
    ) -> riffle::Result<Stream<Datum>>;

    /// Calls a map-family UDF server over its socket, in batches of `batch_size`.
    fn udf_call_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>>;

    /// Writes every datum with `sinker`, in-process.
    fn udf_sink<S: Sinker>(&self, step_id: &str, sinker: S) -> riffle::Result<()>;

    /// Writes every datum to a sink UDF server over its socket.
    fn udf_call_sink(&self, step_id: &str, options: ClientOptions) -> riffle::Result<()>;
}

/// UDF sources of a [`Dataflow`].
pub trait UdfFlowExt {
    /// Reads a [`Sourcer`] in-process, `batch_size` messages per poll.
    fn udf_source<S: Sourcer>(
        &self,
        step_id: &str,
        sourcer: S,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>>;

    /// Reads a source UDF server over its socket, `batch_size` messages per poll.
    fn udf_call_source(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>>;
}

fn step_error(step_id: &str, e: impl std::fmt::Display) -> RiffleError {
    RiffleError::connector(step_id, e)
}

fn keep(messages: Vec<Message>) -> impl Iterator<Item = Message> {
    messages.into_iter().filter(|m| !m.is_drop())
}

impl UdfStreamExt for Stream<Datum> {
    fn udf_map<M: Mapper>(&self, step_id: &str, mapper: M) -> riffle::Result<Stream<Message>> {
        let mapper = Arc::new(mapper);
        let kind = crate::UdfKind::Map;
        self.try_map(step_id, move |datum: Datum| {
            block_on(mapper.map(datum)).map_err(|e| format!("{kind} UDF failed: {e}"))
        })?
        .flat_map(&format!("{step_id}.messages"), keep)
    }

    fn udf_batch_map<B: BatchMapper>(
        &self,
        step_id: &str,
        mapper: B,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>> {
        let mapper = Arc::new(mapper);
        let kind = crate::UdfKind::BatchMap;
        batches(self, step_id, batch_size)?
            .try_map(step_id, move |(_, batch): (u64, Vec<Datum>)| {
                let count = batch.len();
                let out = block_on(mapper.batch_map(batch))
                    .map_err(|e| format!("{kind} UDF failed: {e}"))?;
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

    fn udf_transform<T: SourceTransformer>(
        &self,
        step_id: &str,
        transformer: T,
    ) -> riffle::Result<Stream<Datum>> {
        let transformer = Arc::new(transformer);
        self.try_map(step_id, move |datum: Datum| {
            let base = datum.clone();
            let out = block_on(transformer.transform(datum))
                .map_err(|e| format!("{} UDF failed: {e}", crate::UdfKind::SourceTransform))?;
            Ok::<_, String>(
                out.into_iter()
                    .filter(|t| !t.message.is_drop())
                    .map(|t| Datum {
                        keys: t.message.keys,
                        value: t.message.value,
                        event_time: t.event_time,
                        ..base.clone()
                    })
                    .collect::<Vec<_>>(),
            )
        })?
        .flat_map(&format!("{step_id}.datums"), |d: Vec<Datum>| d)
    }

    fn udf_call_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>> {
        let options = Arc::new(options);
        let step = step_id.to_string();
        batches(self, step_id, batch_size)?
            .try_map(step_id, move |(_, batch): (u64, Vec<Datum>)| {
                call_map(&step, &options, batch)
                    .map(|out| out.into_iter().flatten().collect::<Vec<_>>())
            })?
            .flat_map(&format!("{step_id}.messages"), keep)
    }

    fn udf_sink<S: Sinker>(&self, step_id: &str, sinker: S) -> riffle::Result<()> {
        self.output_dynamic(
            step_id,
            InProcessSink {
                sinker: Arc::new(sinker),
            },
        )
    }

    fn udf_call_sink(&self, step_id: &str, options: ClientOptions) -> riffle::Result<()> {
        self.output_dynamic(step_id, RemoteSink { options })
    }
}

/// Groups a stream into batches of up to `batch_size` (flushed at the end of each epoch).
fn batches(
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

/// The runtime that drives the connections of `udf_call_map` steps: one background
/// thread, shared by every worker of the process. Worker threads block on their own
/// calls; the connections outlive the workers, so a stream can be closed cleanly
/// when its worker thread ends (some servers stop when a stream is cancelled).
fn connections_runtime() -> Result<&'static tokio::runtime::Runtime, crate::Error> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("riffle-udf-io")
            .enable_all()
            .build()
    });
    runtime.as_ref().map_err(|e| crate::Error::Connect {
        kind: crate::UdfKind::Map,
        socket: Default::default(),
        reason: format!("cannot start the UDF connections runtime: {e}"),
    })
}

/// One worker thread's map connections, closed when the thread ends.
#[derive(Default)]
struct MapWorker {
    clients: HashMap<String, MapClient>,
}

impl Drop for MapWorker {
    fn drop(&mut self) {
        let Ok(runtime) = connections_runtime() else {
            return;
        };
        for (_, client) in self.clients.drain() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
            });
        }
    }
}

thread_local! {
    static MAP_WORKER: RefCell<MapWorker> = RefCell::new(MapWorker::default());
}

/// Calls the map server of `step` with one batch, on this worker's connection.
fn call_map(
    step: &str,
    options: &ClientOptions,
    batch: Vec<Datum>,
) -> Result<Vec<Vec<Message>>, crate::Error> {
    let key = format!("{step}\u{0}{}", options.socket.display());
    let runtime = connections_runtime()?;
    let client = MAP_WORKER.with(|w| w.borrow_mut().clients.remove(&key));
    let mut client = match client {
        Some(client) => client,
        None => runtime.block_on(MapClient::connect(options.clone()))?,
    };
    let out = runtime.block_on(client.map_batch(batch));
    MAP_WORKER.with(|w| w.borrow_mut().clients.insert(key, client));
    out
}

fn check_sink_responses(step_id: &str, responses: &[SinkResponse]) -> riffle::Result<()> {
    let bad: Vec<&SinkResponse> = responses
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                SinkStatus::Success | SinkStatus::OnSuccess(_) | SinkStatus::Serve(_)
            )
        })
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(first) => Err(step_error(
            step_id,
            format!(
                "the sink did not write {} of {} datums; first: id {:?}: {:?}",
                bad.len(),
                responses.len(),
                first.id,
                first.status
            ),
        )),
    }
}

fn with_ids(mut items: Vec<Datum>, next: &mut u64) -> Vec<Datum> {
    for d in &mut items {
        if d.id.is_empty() {
            d.id = next.to_string();
            *next += 1;
        }
    }
    items
}

struct InProcessSink<S> {
    sinker: Arc<S>,
}

struct InProcessSinkPart<S> {
    step_id: String,
    sinker: Arc<S>,
    next_id: u64,
}

impl<S: Sinker> DynamicSink for InProcessSink<S> {
    type Item = Datum;
    type Partition = InProcessSinkPart<S>;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        Ok(InProcessSinkPart {
            step_id: step_id.to_string(),
            sinker: self.sinker.clone(),
            next_id: 0,
        })
    }
}

impl<S: Sinker> SinkPartition for InProcessSinkPart<S> {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let items = with_ids(items, &mut self.next_id);
        let responses = block_on(self.sinker.sink(items))
            .map_err(|e| step_error(&self.step_id, format!("sink UDF failed: {e}")))?;
        check_sink_responses(&self.step_id, &responses)
    }
}

struct RemoteSink {
    options: ClientOptions,
}

struct RemoteSinkPart {
    step_id: String,
    client: Option<SinkClient>,
}

impl DynamicSink for RemoteSink {
    type Item = Datum;
    type Partition = RemoteSinkPart;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let client = block_on(SinkClient::connect(self.options.clone()))
            .map_err(|e| step_error(step_id, e))?;
        Ok(RemoteSinkPart {
            step_id: step_id.to_string(),
            client: Some(client),
        })
    }
}

impl SinkPartition for RemoteSinkPart {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let Some(client) = self.client.as_mut() else {
            return Err(step_error(&self.step_id, "the sink was already closed"));
        };
        let responses =
            block_on(client.sink_batch(items)).map_err(|e| step_error(&self.step_id, e))?;
        check_sink_responses(&self.step_id, &responses)
    }

    fn close(&mut self) -> riffle::Result<()> {
        match self.client.take() {
            Some(client) => block_on(client.close()).map_err(|e| step_error(&self.step_id, e)),
            None => Ok(()),
        }
    }
}

impl UdfFlowExt for Dataflow {
    fn udf_source<S: Sourcer>(
        &self,
        step_id: &str,
        sourcer: S,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>> {
        self.input_dynamic(
            step_id,
            InProcessSource {
                sourcer: Arc::new(sourcer),
                batch_size,
            },
        )
    }

    fn udf_call_source(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>> {
        self.input_dynamic(
            step_id,
            RemoteSource {
                options,
                batch_size,
            },
        )
    }
}

struct InProcessSource<S> {
    sourcer: Arc<S>,
    batch_size: u64,
}

struct InProcessSourcePart<S> {
    step_id: String,
    sourcer: Option<Arc<S>>,
    batch_size: u64,
}

impl<S: Sourcer> DynamicSource for InProcessSource<S> {
    type Item = SourceMessage;
    type Partition = InProcessSourcePart<S>;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let sourcer = (worker.index == 0).then(|| self.sourcer.clone());
        Ok(InProcessSourcePart {
            step_id: step_id.to_string(),
            sourcer,
            batch_size: self.batch_size.max(1),
        })
    }
}

impl<S: Sourcer> SourcePartition for InProcessSourcePart<S> {
    type Item = SourceMessage;
    type State = ();

    fn next_batch(&mut self) -> riffle::Result<Poll<SourceMessage>> {
        let Some(sourcer) = &self.sourcer else {
            return Ok(Poll::Exhausted);
        };
        let request = ReadRequest {
            count: self.batch_size,
            timeout: Duration::from_millis(10),
        };
        let step_id = &self.step_id;
        let read = block_on(async {
            let (out, mut rx) = MessageSender::channel(self.batch_size as usize);
            let reading = sourcer.read(request, out);
            let collecting = async {
                let mut all = Vec::new();
                while let Some(m) = rx.recv().await {
                    all.push(m);
                }
                all
            };
            let (done, all) = tokio::join!(reading, collecting);
            done.map(|()| all)
        })
        .map_err(|e| step_error(step_id, format!("source UDF read failed: {e}")))?;
        if read.is_empty() {
            let pending = block_on(sourcer.pending())
                .map_err(|e| step_error(step_id, format!("source UDF pending failed: {e}")))?;
            return Ok(if pending == Some(0) {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        let offsets = read.iter().map(|m| m.offset.clone()).collect();
        block_on(sourcer.ack(offsets))
            .map_err(|e| step_error(step_id, format!("source UDF ack failed: {e}")))?;
        Ok(Poll::Ready(read))
    }
}

struct RemoteSource {
    options: ClientOptions,
    batch_size: u64,
}

struct RemoteSourcePart {
    step_id: String,
    client: Option<SourceClient>,
    batch_size: u64,
}

impl DynamicSource for RemoteSource {
    type Item = SourceMessage;
    type Partition = RemoteSourcePart;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let client = if worker.index == 0 {
            Some(
                block_on(SourceClient::connect(self.options.clone()))
                    .map_err(|e| step_error(step_id, e))?,
            )
        } else {
            None
        };
        Ok(RemoteSourcePart {
            step_id: step_id.to_string(),
            client,
            batch_size: self.batch_size.max(1),
        })
    }
}

impl SourcePartition for RemoteSourcePart {
    type Item = SourceMessage;
    type State = ();

    fn next_batch(&mut self) -> riffle::Result<Poll<SourceMessage>> {
        let Some(client) = self.client.as_mut() else {
            return Ok(Poll::Exhausted);
        };
        let step_id = &self.step_id;
        let read = block_on(client.read(self.batch_size, Duration::from_millis(10)))
            .map_err(|e| step_error(step_id, e))?;
        if read.is_empty() {
            let pending = block_on(client.pending()).map_err(|e| step_error(step_id, e))?;
            return Ok(if pending == Some(0) {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        let offsets: Vec<_> = read.iter().map(|m| m.offset.clone()).collect();
        block_on(client.ack(&offsets)).map_err(|e| step_error(step_id, e))?;
        Ok(Poll::Ready(read))
    }

    fn close(&mut self) -> riffle::Result<()> {
        match self.client.take() {
            Some(client) => block_on(client.close()).map_err(|e| step_error(&self.step_id, e)),
            None => Ok(()),
        }
    }
}
