//! The NATS source: subject filters of a JetStream stream as source partitions,
//! stream sequences as state, durable pull consumers acknowledged on commit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::{Client, Subject};
use futures_util::StreamExt;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use tokio::sync::mpsc;

use super::message::NatsMessage;
use super::settings::NatsSettings;
use crate::ConnectorError;
use crate::format::{Bytes, Decoder, Format};
use crate::ready::Ready;

/// The most messages one poll returns, and one pull request asks for.
const BATCH: usize = 1024;

/// Messages the reader may hold ahead of the flow.
const READ_AHEAD: usize = 8192;

/// How long one poll may keep taking messages that are already there.
const POLL_SLICE: Duration = Duration::from_millis(1);

/// Where a partition starts when there is neither a snapshot nor a consumer left
/// by an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first message the stream holds.
    First,
    /// From the messages published after the run starts.
    New,
    /// From this stream sequence.
    Sequence(u64),
}

/// Reads a JetStream stream; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct NatsSource<F = Bytes> {
    settings: NatsSettings,
    stream: String,
    filters: Vec<String>,
    durable: Option<String>,
    start: StartAt,
    tail: bool,
    ack_wait: Duration,
    decoder: Decoder<F>,
}

impl NatsSource<Bytes> {
    /// Reads all of `stream` as one partition, payloads as bytes, from its first
    /// message, following new messages for ever.
    pub fn new(settings: NatsSettings, stream: impl Into<String>) -> Self {
        Self {
            settings,
            stream: stream.into(),
            filters: Vec::new(),
            durable: None,
            start: StartAt::First,
            tail: true,
            ack_wait: Duration::from_secs(30),
            decoder: Decoder::new(Bytes),
        }
    }
}

impl<F: Format> NatsSource<F> {
    /// Decodes payloads with `format` ([`crate::format::Utf8`],
    /// [`crate::format::Json`], ...): items become `NatsMessage<F::Value>`. A
    /// payload the format refuses stops the run with an error naming the
    /// stream, the consumer and the stream sequence, unless
    /// [`NatsSource::dead_letters`] takes it.
    ///
    /// ```no_run
    /// use riffle_connectors::format::Json;
    /// use riffle_connectors::nats::{NatsSettings, NatsSource};
    /// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
    /// struct Order { id: u64 }
    /// let source = NatsSource::new(NatsSettings::new("nats://127.0.0.1:4222"), "ORDERS")
    ///     .format(Json::<Order>::new())
    ///     .dead_letters(riffle::dead_letters::DeadLetters::stream());
    /// ```
    pub fn format<G: Format>(self, format: G) -> NatsSource<G> {
        NatsSource {
            settings: self.settings,
            stream: self.stream,
            filters: self.filters,
            durable: self.durable,
            start: self.start,
            tail: self.tail,
            ack_wait: self.ack_wait,
            decoder: self.decoder.format(format),
        }
    }

    /// Messages whose payload the format cannot decode go to `letters` (with
    /// `stream`, `consumer`, `sequence`, `reason` and the payload), the step's
    /// dead-letter stream or a file, and are skipped instead of stopping the
    /// run; they are acknowledged with the commit that passes them, once their
    /// letter is safe. See [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: riffle::dead_letters::DeadLetters) -> Self {
        self.decoder = self.decoder.dead_letters(Some(letters));
        self
    }

    /// Reads these subject filters of the stream, one partition each (named
    /// `{stream}/{filter}`), instead of the whole stream as one. The filters must
    /// not overlap, or a message would be read twice.
    pub fn filters<T: Into<String>>(mut self, filters: impl IntoIterator<Item = T>) -> Self {
        self.filters = filters.into_iter().map(Into::into).collect();
        self
    }

    /// The durable consumers' name (default `riffle-{step id}`); a partition of a
    /// filter adds `-` and a stable hash of the filter.
    pub fn durable(mut self, name: impl Into<String>) -> Self {
        self.durable = Some(name.into());
        self
    }

    /// Where partitions start without a snapshot or an earlier consumer (default
    /// [`StartAt::First`]).
    pub fn start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Whether to follow new messages for ever (`true`, the default) or stop each
    /// partition at the stream's last message when the run started.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// How long the server waits for an acknowledgement before it delivers a
    /// message again (default 30 s). Messages are acknowledged at each commit,
    /// so keep it well above the snapshot interval.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    fn durable_name(&self, step_id: &str, filter: &str) -> String {
        let base = self.durable.clone().unwrap_or_else(|| {
            let step: String = step_id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("riffle-{step}")
        });
        if filter.is_empty() {
            base
        } else {
            format!("{base}-{:08x}", fnv1a(filter.as_bytes()))
        }
    }

    fn part_names(&self) -> Vec<String> {
        if self.filters.is_empty() {
            vec![self.stream.clone()]
        } else {
            self.filters
                .iter()
                .map(|f| format!("{}/{f}", self.stream))
                .collect()
        }
    }

    fn fail(&self, step_id: &str, action: String) -> riffle::RiffleError {
        self.settings.error(action).for_step(step_id)
    }
}

/// A stable 32-bit hash (FNV-1a), for names that must not change between runs.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn missing_stream(
    settings: &NatsSettings,
    stream: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> ConnectorError {
    settings
        .error(format!("cannot open stream {stream:?} (does it exist?)"))
        .caused_by(e)
}

impl<F: Format> FixedPartitionedSource for NatsSource<F> {
    type Item = NatsMessage<F::Value>;
    type State = u64;
    type Partition = NatsSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.stream.is_empty() {
            return Err(self.fail(step_id, "the source names no stream".into()));
        }
        crate::runtime::handle()
            .block_on(async {
                let js = self.settings.jetstream().await?;
                js.get_stream(&self.stream)
                    .await
                    .map_err(|e| missing_stream(&self.settings, &self.stream, e))?;
                Ok::<_, ConnectorError>(())
            })
            .map_err(|e| e.for_step(step_id))?;
        Ok(self.part_names())
    }

    /// For each filter's durable consumer, the messages not yet delivered to it
    /// and those delivered and not acknowledged; the stream's messages while a
    /// consumer does not exist yet.
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        let filters: Vec<String> = if self.filters.is_empty() {
            vec![String::new()]
        } else {
            self.filters.clone()
        };
        crate::runtime::handle()
            .block_on(async {
                let js = self.settings.jetstream().await?;
                let mut stream = js
                    .get_stream(&self.stream)
                    .await
                    .map_err(|e| missing_stream(&self.settings, &self.stream, e))?;
                let mut total = 0u64;
                for filter in &filters {
                    let durable = self.durable_name(step_id, filter);
                    match stream.consumer_info(&durable).await {
                        Ok(info) => total += info.num_pending + info.num_ack_pending as u64,
                        Err(_) if filter.is_empty() => {
                            let info = stream.info().await.map_err(|e| {
                                self.settings
                                    .error(format!("cannot read stream {:?}", self.stream))
                                    .caused_by(e)
                            })?;
                            total += info.state.messages;
                        }
                        Err(_) => {
                            let cannot = |e: &dyn std::fmt::Display| {
                                self.settings.error(format!(
                                    "cannot count the messages of {filter:?} in stream {:?}: {e}",
                                    self.stream
                                ))
                            };
                            let mut subjects = stream
                                .info_with_subjects(filter)
                                .await
                                .map_err(|e| cannot(&e))?;
                            while let Some(subject) = subjects.next().await {
                                total += subject.map_err(|e| cannot(&e))?.1 as u64;
                            }
                        }
                    }
                }
                Ok::<_, ConnectorError>(Some(total))
            })
            .map_err(|e| e.for_step(step_id))
    }

    fn describe(&self, step_id: &str) -> Option<riffle::sources::SourceInfo> {
        let filter = self.filters.first().cloned().unwrap_or_default();
        Some(riffle::sources::SourceInfo {
            system: "nats",
            fields: vec![
                ("servers", self.settings.servers.clone()),
                ("stream", self.stream.clone()),
                ("consumer", self.durable_name(step_id, &filter)),
            ],
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<u64>,
    ) -> riffle::Result<NatsSourcePartition<F>> {
        let filter = if self.filters.is_empty() && for_part == self.stream {
            String::new()
        } else {
            self.filters
                .iter()
                .find(|f| format!("{}/{f}", self.stream) == for_part)
                .cloned()
                .ok_or_else(|| {
                    self.fail(
                        step_id,
                        format!(
                            "{for_part:?} is not a partition of stream {:?}",
                            self.stream
                        ),
                    )
                })?
        };
        let durable = self.durable_name(step_id, &filter);
        let opened = crate::runtime::handle()
            .block_on(self.open(&durable, &filter, resume_state))
            .map_err(|e| e.for_step(step_id))?;
        let Opened {
            client,
            consumer,
            next,
            end,
        } = opened;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let ready = Ready::default();
        let reader = crate::runtime::handle().spawn(read(consumer, tx, ready.clone()));
        Ok(NatsSourcePartition {
            step_id: step_id.to_string(),
            name: for_part.to_string(),
            settings: self.settings.clone(),
            stream: Arc::from(self.stream.as_str()),
            consumer: durable,
            decoder: self.decoder.clone(),
            client,
            rx,
            ready,
            reader,
            next,
            end,
            done: false,
            unacked: VecDeque::new(),
            troubled: false,
        })
    }
}

/// A partition's consumer, ready to read.
struct Opened {
    client: Client,
    consumer: PullConsumer,
    next: u64,
    /// For a batch read: the stream's last sequence when the run started, or
    /// `None` when there is nothing to read.
    end: Option<Option<u64>>,
}

impl<F: Format> NatsSource<F> {
    /// Makes the partition's durable consumer deliver from its position: the
    /// snapshot's sequence when resuming, else what an earlier consumer of the
    /// same name had acknowledged, else where [`NatsSource::start`] says. The
    /// consumer is made again each time (its start cannot be changed in place),
    /// so messages the server handed to a dead run are read again at once rather
    /// than after their `ack_wait`.
    async fn open(
        &self,
        durable: &str,
        filter: &str,
        resume: Option<u64>,
    ) -> Result<Opened, ConnectorError> {
        let js = self.settings.jetstream().await?;
        let mut stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| missing_stream(&self.settings, &self.stream, e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| {
                self.settings
                    .error(format!("cannot read the state of stream {:?}", self.stream))
                    .caused_by(e)
            })?
            .state
            .clone();
        let earlier = stream.consumer_info(durable).await.ok();
        let next = match (resume, &earlier) {
            (Some(next), _) => next,
            (None, Some(info)) => {
                let from = match info.config.deliver_policy {
                    DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
                    _ => 1,
                };
                (info.ack_floor.stream_sequence + 1).max(from)
            }
            (None, None) => match self.start {
                StartAt::First => state.first_sequence,
                StartAt::New => state.last_sequence + 1,
                StartAt::Sequence(n) => n,
            },
        }
        .max(1);
        if earlier.is_some() {
            stream.delete_consumer(durable).await.map_err(|e| {
                self.settings
                    .error(format!(
                        "cannot replace consumer {durable:?} of stream {:?}",
                        self.stream
                    ))
                    .caused_by(e)
            })?;
        }
        let mut consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.to_string()),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ack_policy: AckPolicy::All,
                ack_wait: self.ack_wait,
                // Everything read since the last commit is unacknowledged.
                max_ack_pending: -1,
                filter_subject: filter.to_string(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                self.settings
                    .error(format!(
                        "cannot create consumer {durable:?} on stream {:?}",
                        self.stream
                    ))
                    .caused_by(e)
            })?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| {
                self.settings
                    .error(format!("cannot read consumer {durable:?}"))
                    .caused_by(e)
            })?
            .num_pending;
        let end = if self.tail {
            None
        } else if pending == 0 || next > state.last_sequence {
            Some(None)
        } else {
            Some(Some(state.last_sequence))
        };
        Ok(Opened {
            client: js.client(),
            consumer,
            next,
            end,
        })
    }
}

/// What the reader task hands the partition.
enum Delivery {
    Message {
        message: NatsMessage,
        reply: Option<Subject>,
        pending: u64,
    },
    /// A trouble the client rides out (the server away for a while).
    Trouble(String),
    /// The end: the consumer is gone or the server refused to go on.
    Failed(async_nats::jetstream::consumer::pull::MessagesError),
}

/// Pulls messages on the shared runtime and queues them for the partition.
/// Each message that finds the queue empty wakes the partition (`ready`).
async fn read(consumer: PullConsumer, tx: mpsc::Sender<Delivery>, ready: Ready) {
    let messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await;
    let mut messages = match messages {
        Ok(m) => m,
        Err(e) => {
            let _ = tx
                .send(Delivery::Trouble(format!("cannot start pulling: {e}")))
                .await;
            ready.wake();
            return;
        }
    };
    while let Some(next) = messages.next().await {
        let delivery = match next {
            Ok(m) => {
                let Ok(info) = m.info() else { continue };
                let sequence = info.stream_sequence;
                let pending = info.pending;
                let timestamp_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
                let message = m.message;
                let headers = message
                    .headers
                    .as_ref()
                    .map(|h| {
                        h.iter()
                            .flat_map(|(name, values)| {
                                values
                                    .iter()
                                    .map(move |v| (name.to_string(), v.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Delivery::Message {
                    message: NatsMessage {
                        subject: message.subject.to_string(),
                        payload: message.payload.to_vec(),
                        headers,
                        sequence,
                        timestamp_ms,
                    },
                    reply: message.reply,
                    pending,
                }
            }
            Err(e) => match e.kind() {
                MessagesErrorKind::MissingHeartbeat
                | MessagesErrorKind::Pull
                | MessagesErrorKind::NoResponders
                | MessagesErrorKind::Other => Delivery::Trouble(e.to_string()),
                _ => Delivery::Failed(e),
            },
        };
        let failed = matches!(delivery, Delivery::Failed(_));
        let was_empty = tx.capacity() == tx.max_capacity();
        if tx.send(delivery).await.is_err() || failed {
            ready.wake();
            return;
        }
        if was_empty {
            ready.wake();
        }
    }
}

/// One subject filter (or the whole stream) being read; made by [`NatsSource`].
pub struct NatsSourcePartition<F = Bytes> {
    step_id: String,
    name: String,
    settings: NatsSettings,
    stream: Arc<str>,
    /// The durable consumer's name, for dead letters.
    consumer: String,
    decoder: Decoder<F>,
    client: Client,
    rx: mpsc::Receiver<Delivery>,
    ready: Ready,
    reader: tokio::task::JoinHandle<()>,
    /// The stream sequence after the last message emitted.
    next: u64,
    /// Where a batch read stops (see [`Opened::end`]).
    end: Option<Option<u64>>,
    /// A batch read has reached its end.
    done: bool,
    /// Emitted messages not acknowledged yet: their sequence and ack subject.
    unacked: VecDeque<(u64, Subject)>,
    /// Whether a trouble was reported and nothing read since.
    troubled: bool,
}

impl<F: Format> NatsSourcePartition<F> {
    /// The message with its payload decoded; `None` when it went to the dead
    /// letters.
    fn decode(&self, message: NatsMessage) -> riffle::Result<Option<NatsMessage<F::Value>>> {
        let position = || {
            [
                ("stream", (*self.stream).into()),
                ("consumer", self.consumer.as_str().into()),
                ("sequence", message.sequence.into()),
            ]
        };
        let fail = |what: String| self.settings.error(what).for_step(&self.step_id);
        let Some(payload) = self
            .decoder
            .decode(&self.step_id, position, &message.payload, fail)?
        else {
            return Ok(None);
        };
        Ok(Some(NatsMessage {
            subject: message.subject,
            payload,
            headers: message.headers,
            sequence: message.sequence,
            timestamp_ms: message.timestamp_ms,
        }))
    }
}

impl<F: Format> SourcePartition for NatsSourcePartition<F> {
    type Item = NatsMessage<F::Value>;
    type State = u64;

    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.ready.set(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<NatsMessage<F::Value>>> {
        if self.done || self.end == Some(None) {
            return Ok(Poll::Exhausted);
        }
        let mut items = Vec::new();
        let until = Instant::now() + POLL_SLICE;
        while items.len() < BATCH {
            let delivery = match self.rx.try_recv() {
                Ok(d) => d,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(self
                        .settings
                        .error(format!("the reader of {} stopped", self.name))
                        .for_step(&self.step_id));
                }
            };
            match delivery {
                Delivery::Message {
                    message,
                    reply,
                    pending,
                } => {
                    self.troubled = false;
                    // A message delivered again (its ack_wait ran out) lies
                    // before the position: it was emitted already.
                    if message.sequence < self.next {
                        continue;
                    }
                    if let Some(Some(end)) = self.end
                        && message.sequence > end
                    {
                        self.done = true;
                        break;
                    }
                    self.next = message.sequence + 1;
                    if let Some(reply) = reply {
                        self.unacked.push_back((message.sequence, reply));
                    }
                    let last = matches!(self.end, Some(Some(end)) if message.sequence >= end);
                    // A payload set aside as a dead letter is still read: the
                    // commit that passes it acknowledges it.
                    if let Some(message) = self.decode(message)? {
                        items.push(message);
                    }
                    if last || (self.end.is_some() && pending == 0) {
                        self.done = true;
                        break;
                    }
                }
                Delivery::Trouble(why) => {
                    if !self.troubled {
                        self.troubled = true;
                        eprintln!(
                            "step {:?}: nats at server {}: {} waits for the server: {why}",
                            self.step_id, self.settings.servers, self.name
                        );
                    }
                }
                Delivery::Failed(e) => {
                    return Err(self
                        .settings
                        .error(format!("cannot read {}", self.name))
                        .caused_by(e)
                        .for_step(&self.step_id));
                }
            }
            if items.len() % 256 == 0 && Instant::now() >= until {
                break;
            }
        }
        if items.is_empty() {
            return Ok(if self.done {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        Ok(Poll::Ready(items))
    }

    fn snapshot(&self) -> Option<u64> {
        Some(self.next)
    }

    fn commit(&mut self, next: &u64) -> riffle::Result<()> {
        // The letters of the messages this position passed are safe before
        // those messages are acknowledged.
        self.decoder.sync(&self.step_id)?;
        // The consumer acknowledges cumulatively: acknowledging the last message
        // before the position acknowledges all before it.
        let mut last = None;
        while self.unacked.front().is_some_and(|(seq, _)| seq < next) {
            last = self.unacked.pop_front().map(|(_, reply)| reply);
        }
        if let Some(reply) = last {
            let next = *next;
            let client = self.client.clone();
            let (settings, step, stream) = (
                self.settings.clone(),
                self.step_id.clone(),
                self.stream.clone(),
            );
            crate::runtime::handle().spawn(async move {
                if let Err(e) = client.publish(reply, "+ACK".into()).await {
                    eprintln!(
                        "step {step:?}: nats at server {}: cannot acknowledge stream {stream:?} \
                         up to {next}: {e}",
                        settings.servers
                    );
                }
            });
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.reader.abort();
        // Let the last acknowledgements reach the server before the connection goes.
        let client = self.client.clone();
        let timeout = self.settings.timeout_duration();
        let _ = crate::runtime::handle()
            .block_on(async move { tokio::time::timeout(timeout, client.flush()).await });
        Ok(())
    }
}

impl<F> Drop for NatsSourcePartition<F> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
