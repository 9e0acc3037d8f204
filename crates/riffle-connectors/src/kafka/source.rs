//! The Kafka source: topic partitions as source partitions, offsets as state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};

use super::message::KafkaMessage;
use super::settings::KafkaSettings;
use crate::format::{Bytes, Decoder, Format};

/// The most messages one poll returns.
const BATCH: usize = 4096;

/// How long one poll may keep taking messages that are already there.
const POLL_SLICE: Duration = Duration::from_millis(1);

/// Where a partition starts reading when the run does not resume from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// From the oldest record kept.
    Earliest,
    /// From the records written after the run starts.
    Latest,
    /// From the first record whose timestamp is at or after this time (ms since the
    /// Unix epoch).
    Timestamp(i64),
    /// From the consumer group's committed offset, or the oldest record when the
    /// group has none.
    Committed,
}

/// Reads topics of a Kafka cluster; see the [module docs](super).
pub struct KafkaSource<F = Bytes> {
    settings: KafkaSettings,
    topics: Vec<String>,
    start: StartOffset,
    group_id: Option<String>,
    tail: bool,
    discover: Option<Duration>,
    decoder: Decoder<F>,
    /// The client [`FixedPartitionedSource::backlog`] reads with, by step id.
    backlog_reader: Mutex<Option<(String, BaseConsumer)>>,
}

impl KafkaSource<Bytes> {
    /// Reads `topics` from the cluster of `settings`, values as bytes, from the
    /// oldest record on, following each partition's new records for ever.
    pub fn new<T: Into<String>>(
        settings: KafkaSettings,
        topics: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            settings,
            topics: topics.into_iter().map(Into::into).collect(),
            start: StartOffset::Earliest,
            group_id: None,
            tail: true,
            discover: Some(Duration::from_secs(30)),
            decoder: Decoder::new(Bytes),
            backlog_reader: Mutex::default(),
        }
    }
}

impl<F: Format> KafkaSource<F> {
    /// Decodes values with `format` ([`super::Utf8`], [`super::Json`], ...).
    pub fn format<G: Format>(self, format: G) -> KafkaSource<G> {
        KafkaSource {
            settings: self.settings,
            topics: self.topics,
            start: self.start,
            group_id: self.group_id,
            tail: self.tail,
            discover: self.discover,
            decoder: self.decoder.format(format),
            backlog_reader: Mutex::default(),
        }
    }

    /// Where partitions start without a snapshot (default: [`StartOffset::Earliest`]).
    pub fn start(mut self, start: StartOffset) -> Self {
        self.start = start;
        self
    }

    /// The consumer group offsets are committed to (default `riffle.{step id}`).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Whether to follow new records for ever (`true`, the default) or stop each
    /// partition at the end offset it had when the run started.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// How often a following source looks for partitions added to its topics
    /// (default every 30 s; `None` never). A new partition starts where
    /// [`KafkaSource::start`] says (from its beginning by default).
    pub fn discover_every(mut self, every: Option<Duration>) -> Self {
        self.discover = every;
        self
    }

    /// Records whose value the format cannot decode go to `letters` (with
    /// `topic`, `partition`, `offset`, `reason` and the value), the step's
    /// dead-letter stream or a file, and are skipped instead of stopping the run;
    /// see [`riffle::dead_letters`]. No letter is lost to a crash.
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.decoder = self.decoder.dead_letters(Some(letters));
        self
    }

    fn group(&self, step_id: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("riffle.{step_id}"))
    }

    fn consumer(&self, step_id: &str) -> riffle::Result<BaseConsumer> {
        let mut config = self
            .settings
            .client_config()
            .map_err(|e| e.for_step(step_id))?;
        // One consumer per partition: keep each one's read-ahead modest (librdkafka
        // prefetches up to 64 MiB per consumer by default), unless the settings say.
        if !self
            .settings
            .properties
            .contains_key("queued.max.messages.kbytes")
        {
            config.set("queued.max.messages.kbytes", "8192");
        }
        config
            .set("group.id", self.group(step_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        config.create().map_err(|e| {
            self.settings
                .error("cannot create a consumer")
                .caused_by(e)
                .for_step(step_id)
        })
    }
}

/// Splits a partition name `topic/N`.
fn split_name(name: &str) -> Option<(&str, i32)> {
    let (topic, n) = name.rsplit_once('/')?;
    Some((topic, n.parse().ok()?))
}

impl<F: Format> FixedPartitionedSource for KafkaSource<F> {
    type Item = KafkaMessage<F::Value>;
    type State = i64;
    type Partition = KafkaSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.topics.is_empty() {
            return Err(self
                .settings
                .error("the source names no topic")
                .for_step(step_id));
        }
        let mut names = Vec::new();
        for topic in &self.topics {
            let ids = super::metadata::partitions(&self.settings, step_id, topic)?;
            names.extend(ids.into_iter().map(|id| format!("{topic}/{id}")));
        }
        Ok(names)
    }

    fn discover_every(&self) -> Option<Duration> {
        // A batch read stops at the ends it saw at the start: nothing to discover.
        self.discover.filter(|_| self.tail)
    }

    /// The group's lag: for every partition, its end offset less the group's
    /// committed offset (its start when the group has none).
    ///
    /// One client, made at the first reading, serves every later one.
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        let mut kept = self
            .backlog_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let consumer = match kept.take() {
            Some((step, consumer)) if step == step_id => kept.insert((step, consumer)),
            _ => kept.insert((step_id.to_string(), self.consumer(step_id)?)),
        };
        let consumer = &consumer.1;
        let timeout = self.settings.timeout_duration();
        let mut tpl = TopicPartitionList::new();
        for topic in &self.topics {
            for id in super::metadata::partitions_with(consumer, &self.settings, step_id, topic)? {
                tpl.add_partition(topic, id);
            }
        }
        let fail = |action: String, e: rdkafka::error::KafkaError| {
            self.settings.error(action).caused_by(e).for_step(step_id)
        };
        let committed = committed_offsets(consumer, tpl, timeout)
            .map_err(|e| fail("cannot read the group's committed offsets".into(), e))?;
        let mut lag = 0u64;
        for part in committed.elements() {
            let (low, high) = consumer
                .fetch_watermarks(part.topic(), part.partition(), timeout)
                .map_err(|e| {
                    fail(
                        format!(
                            "cannot read the offsets of {}/{}",
                            part.topic(),
                            part.partition()
                        ),
                        e,
                    )
                })?;
            let from = match part.offset() {
                Offset::Offset(o) => o.max(low),
                _ => low,
            };
            lag += u64::try_from(high - from).unwrap_or(0);
        }
        Ok(Some(lag))
    }

    fn describe(&self, step_id: &str) -> Option<riffle::sources::SourceInfo> {
        Some(riffle::sources::SourceInfo {
            system: "kafka",
            fields: vec![
                ("brokers", self.settings.brokers.clone()),
                ("topic", self.topics.join(",")),
                ("group", self.group(step_id)),
            ],
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<i64>,
    ) -> riffle::Result<KafkaSourcePartition<F>> {
        let (topic, partition) = split_name(for_part).ok_or_else(|| {
            riffle::RiffleError::connector(
                step_id,
                format!("{for_part:?} is not a Kafka partition name (topic/N)"),
            )
        })?;
        let consumer = self.consumer(step_id)?;
        let timeout = self.settings.timeout_duration();
        let fail = |action: String, e: rdkafka::error::KafkaError| {
            self.settings.error(action).caused_by(e).for_step(step_id)
        };
        let start = match (resume_state, self.start) {
            (Some(next), _) => Offset::Offset(next),
            (None, StartOffset::Earliest) => Offset::Beginning,
            (None, StartOffset::Latest) => Offset::End,
            (None, StartOffset::Committed) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition);
                let committed = committed_offsets(&consumer, tpl, timeout).map_err(|e| {
                    fail(format!("cannot read the committed offset of {for_part}"), e)
                })?;
                match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::Beginning,
                }
            }
            (None, StartOffset::Timestamp(ms)) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(ms))
                    .map_err(|e| fail(format!("bad timestamp {ms} for {for_part}"), e))?;
                let found = consumer.offsets_for_times(tpl, timeout).map_err(|e| {
                    fail(format!("cannot find the offset at {ms} in {for_part}"), e)
                })?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::End,
                }
            }
        };
        // Where to stop, for a batch read: the end when the run started.
        let end = if self.tail {
            None
        } else {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| fail(format!("cannot read the end offset of {for_part}"), e))?;
            Some(high)
        };
        // The position as a number: where a snapshot resumes.
        let next = match start {
            Offset::Offset(o) => o,
            Offset::Beginning
            | Offset::End
            | Offset::Stored
            | Offset::Invalid
            | Offset::OffsetTail(_) => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(|e| fail(format!("cannot read the offsets of {for_part}"), e))?;
                if start == Offset::End { high } else { low }
            }
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(next))
            .map_err(|e| fail(format!("bad offset {next} for {for_part}"), e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| fail(format!("cannot assign {for_part}"), e))?;
        Ok(KafkaSourcePartition {
            step_id: step_id.to_string(),
            name: for_part.to_string(),
            topic: Arc::from(topic),
            partition,
            consumer,
            decoder: self.decoder.clone(),
            settings: self.settings.clone(),
            next,
            end,
            committed: None,
            troubled: false,
        })
    }
}

/// One topic partition being read; made by [`KafkaSource`].
pub struct KafkaSourcePartition<F> {
    step_id: String,
    name: String,
    topic: Arc<str>,
    partition: i32,
    consumer: BaseConsumer,
    decoder: Decoder<F>,
    settings: KafkaSettings,
    /// The offset of the next message to emit.
    next: i64,
    /// Where a batch read stops.
    end: Option<i64>,
    /// The last offset committed to the group.
    committed: Option<i64>,
    /// Whether a transient error was reported and nothing read since.
    troubled: bool,
}

/// Errors the client recovers from by itself: the cluster is (briefly) away.
fn transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    matches!(
        e,
        KafkaError::MessageConsumption(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorNotAvailable
                | Code::CoordinatorLoadInProgress
        )
    )
}

impl<F: Format> KafkaSourcePartition<F> {
    fn message(
        &self,
        m: &rdkafka::message::BorrowedMessage<'_>,
    ) -> riffle::Result<Option<KafkaMessage<F::Value>>> {
        let value = match m.payload() {
            None => None,
            Some(bytes) => {
                let position = || {
                    [
                        ("topic", (*self.topic).into()),
                        ("partition", self.partition.into()),
                        ("offset", m.offset().into()),
                    ]
                };
                let fail = |what: String| self.settings.error(what).for_step(&self.step_id);
                match self.decoder.decode(&self.step_id, position, bytes, fail)? {
                    Some(value) => Some(value),
                    // Set aside as a dead letter.
                    None => return Ok(None),
                }
            }
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(KafkaMessage {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value,
            headers,
        }))
    }
}

impl<F: Format> SourcePartition for KafkaSourcePartition<F> {
    type Item = KafkaMessage<F::Value>;
    type State = i64;

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        if self.end.is_some_and(|end| self.next >= end) {
            return Ok(Poll::Exhausted);
        }
        let mut items = Vec::new();
        let until = Instant::now() + POLL_SLICE;
        while items.len() < BATCH {
            let Some(polled) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            match polled {
                Ok(m) => {
                    self.troubled = false;
                    // Skip what lies before the position (a transaction's markers
                    // take offsets too, so the next offset may jump).
                    if m.offset() < self.next {
                        continue;
                    }
                    if self.end.is_some_and(|end| m.offset() >= end) {
                        self.next = m.offset();
                        break;
                    }
                    if let Some(message) = self.message(&m)? {
                        items.push(message);
                    }
                    self.next = m.offset() + 1;
                }
                Err(e) if transient(&e) => {
                    // The client reconnects by itself (a broker restarting, a
                    // leader moving): say so once, and poll again later.
                    if !self.troubled {
                        self.troubled = true;
                        eprintln!(
                            "step {:?}: kafka at brokers {}: {} waits for the cluster: {e}",
                            self.step_id, self.settings.brokers, self.name
                        );
                    }
                    break;
                }
                Err(e) => {
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
            if self.end.is_some_and(|end| self.next >= end) {
                return Ok(Poll::Exhausted);
            }
            // A batch read whose end lies past aborted records and markers: the
            // consumer's position tells when nothing readable is left.
            if let Some(end) = self.end
                && let Ok(pos) = self.consumer.position()
                && let Some(Offset::Offset(p)) = pos
                    .find_partition(&self.topic, self.partition)
                    .map(|e| e.offset())
                && p >= end
            {
                self.next = end;
                return Ok(Poll::Exhausted);
            }
            return Ok(Poll::Pending);
        }
        Ok(Poll::Ready(items))
    }

    /// librdkafka calls `ready` when the partition's queue goes from empty to
    /// not empty (from its own thread), so a waiting reader wakes as a record
    /// arrives instead of at its next tick.
    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        let ready = ready.clone();
        self.consumer
            .set_nonempty_callback(move || ready.wake_by_ref());
    }

    fn snapshot(&self) -> Option<i64> {
        Some(self.next)
    }

    fn commit(&mut self, next: &i64) -> riffle::Result<()> {
        // The letters of the records this offset passed are on disk before it counts.
        self.decoder.sync(&self.step_id)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(*next))
            .and_then(|()| self.consumer.commit(&tpl, CommitMode::Async))
            .map_err(|e| {
                self.settings
                    .error(format!(
                        "cannot commit offset {next} of {} to the group",
                        self.name
                    ))
                    .caused_by(e)
                    .for_step(&self.step_id)
            })?;
        self.committed = Some(*next);
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        // Make the last commit land before the consumer goes (commits are
        // asynchronous while the run goes on); never commit more than was.
        if let Some(next) = self.committed.take() {
            let mut tpl = TopicPartitionList::new();
            if tpl
                .add_partition_offset(&self.topic, self.partition, Offset::Offset(next))
                .is_ok()
            {
                let _ = self.consumer.commit(&tpl, CommitMode::Sync);
            }
        }
        Ok(())
    }
}

/// The group's committed offsets of `tpl`. A group's first use on a fresh broker
/// finds its coordinator still being chosen or loaded: ask again until `timeout`.
fn committed_offsets(
    consumer: &BaseConsumer,
    tpl: TopicPartitionList,
    timeout: Duration,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.committed_offsets(tpl.clone(), timeout) {
            Err(e) if coordinator_moving(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            done => return done,
        }
    }
}

/// Whether `e` says the group's coordinator is being chosen or loaded (it passes).
fn coordinator_moving(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::NotCoordinator | Code::CoordinatorLoadInProgress | Code::CoordinatorNotAvailable
        )
    )
}
