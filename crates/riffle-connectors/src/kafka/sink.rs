//! The Kafka sink: a topic partition per sink partition, an idempotent producer,
//! and Kafka transactions committed by the recovery store's commit hook.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use riffle::RiffleError;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::{Deserialize, Serialize};

use super::message::KafkaRecord;
use super::partitioner::murmur2_partition;
use super::settings::KafkaSettings;

/// Producers started beyond the known ones, to fence those a killed run made after
/// its last snapshot.
const SPARE_SLOTS: u32 = 4;

/// Offsets of records, as inclusive runs.
type Ranges = Vec<(i64, i64)>;

/// Transactional producers made at the start of a partition; more are made when
/// commits lag behind snapshots.
const FIRST_SLOTS: u32 = 2;

/// Writes records to one topic; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct KafkaSink {
    settings: KafkaSettings,
    topic: String,
    transactional: Option<String>,
}

impl KafkaSink {
    /// Writes to `topic` of the cluster of `settings`: at-least-once.
    pub fn new(settings: KafkaSettings, topic: impl Into<String>) -> Self {
        Self {
            settings,
            topic: topic.into(),
            transactional: None,
        }
    }

    /// Writes inside Kafka transactions committed with the recovery store's
    /// snapshots: exactly-once for `read_committed` readers under a store. `id`
    /// names this flow's producers among all of the cluster's (the flow's name is
    /// a good one); it must stay the same across restarts of the flow.
    pub fn exactly_once(mut self, id: impl Into<String>) -> Self {
        self.transactional = Some(id.into());
        self
    }
}

/// A partition's snapshot state, under [`KafkaSink::exactly_once`]: the
/// transactions it had prepared and not yet seen committed, and where their
/// records lie, so a resumed run can commit them again if the first run died
/// before it did (the store may commit several snapshots before a busy partition
/// hears of the first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KafkaSinkState {
    /// The newest transaction number handed out.
    pub seq: u64,
    /// Prepared transactions not known to be committed, oldest first: each one's
    /// number and the offsets of its records, as inclusive runs.
    pub prepared: Vec<(u64, Vec<(i64, i64)>)>,
    /// How many transactional producers the partition had made.
    pub slots: u32,
}

fn split_name(name: &str) -> Option<(&str, i32)> {
    let (topic, n) = name.rsplit_once('/')?;
    Some((topic, n.parse().ok()?))
}

impl FixedPartitionedSink for KafkaSink {
    type Item = KafkaRecord;
    type State = KafkaSinkState;
    type Partition = KafkaSinkPartition;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let topic = &self.topic;
        let ids = super::metadata::partitions(&self.settings, step_id, topic)?;
        Ok(ids.into_iter().map(|id| format!("{topic}/{id}")).collect())
    }

    fn part_fn(&self, item: &KafkaRecord, parts: usize) -> usize {
        match &item.key {
            Some(key) => murmur2_partition(key, parts),
            None => (riffle::exchange::stable_hash(&item.value) % parts.max(1) as u64) as usize,
        }
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<KafkaSinkState>,
    ) -> riffle::Result<KafkaSinkPartition> {
        let (topic, partition) = split_name(for_part).ok_or_else(|| {
            RiffleError::connector(
                step_id,
                format!("{for_part:?} is not a Kafka partition name"),
            )
        })?;
        let mut part = KafkaSinkPartition {
            step_id: step_id.to_string(),
            name: for_part.to_string(),
            topic: topic.to_string(),
            partition,
            settings: self.settings.clone(),
            mode: Mode::Plain(None),
        };
        match &self.transactional {
            None => {
                let producer = part.producer(None)?;
                part.mode = Mode::Plain(Some(producer));
            }
            Some(id) => {
                let base = format!("{id}.{step_id}.{topic}-{partition}");
                let tx = Transactions::open(&part, base, resume_state)?;
                part.mode = Mode::Transactional(Box::new(tx));
            }
        }
        Ok(part)
    }
}

/// What a producer's deliveries said: the first failure, and the offsets written.
#[derive(Default)]
struct Deliveries {
    log: Mutex<DeliveryLog>,
}

#[derive(Default)]
struct DeliveryLog {
    failed: Option<KafkaError>,
    ranges: Vec<(i64, i64)>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(m) => {
                let offset = m.offset();
                match log.ranges.last_mut() {
                    Some((_, end)) if *end + 1 == offset => *end = offset,
                    _ => log.ranges.push((offset, offset)),
                }
            }
            Err((e, _)) => {
                log.failed.get_or_insert_with(|| e.clone());
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

enum Mode {
    /// Idempotent, not transactional.
    Plain(Option<KafkaProducer>),
    Transactional(Box<Transactions>),
}

/// One topic partition being written; made by [`KafkaSink`].
pub struct KafkaSinkPartition {
    step_id: String,
    name: String,
    topic: String,
    partition: i32,
    settings: KafkaSettings,
    mode: Mode,
}

impl KafkaSinkPartition {
    fn fail(&self, action: String, e: KafkaError) -> RiffleError {
        self.settings
            .error(action)
            .caused_by(e)
            .for_step(&self.step_id)
    }

    /// A producer, transactional under `transactional_id`.
    fn producer(&self, transactional_id: Option<&str>) -> riffle::Result<KafkaProducer> {
        let mut config = self
            .settings
            .client_config()
            .map_err(|e| e.for_step(&self.step_id))?;
        config.set("enable.idempotence", "true");
        if let Some(id) = transactional_id {
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000");
        } else if config.get("linger.ms").is_none()
            && config.get("queue.buffering.max.ms").is_none()
        {
            // A plain producer's every write waits for its delivery (a Flow
            // answers and acknowledges after it), and its callers already hand
            // it whole batches: lingering would only add the client's 5 ms to
            // each write. A transaction's records wait for the commit anyway.
            config.set("linger.ms", "0");
        }
        let producer: KafkaProducer = config
            .create_with_context(Deliveries::default())
            .map_err(|e| self.fail("cannot create a producer".into(), e))?;
        if transactional_id.is_some() {
            producer
                .init_transactions(self.settings.timeout_duration())
                .map_err(|e| {
                    self.fail(
                        format!("cannot start transactions for {} (transactional.id {transactional_id:?})", self.name),
                        e,
                    )
                })?;
        }
        Ok(producer)
    }

    /// Sends `records` through `producer`, waiting while its queue is full.
    fn send(&self, producer: &KafkaProducer, records: Vec<KafkaRecord>) -> riffle::Result<()> {
        for record in records {
            let headers = (!record.headers.is_empty()).then(|| {
                record
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |hs, (k, v)| {
                        hs.insert(Header {
                            key: k,
                            value: Some(v),
                        })
                    })
            });
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).partition(self.partition);
            if let Some(key) = &record.key {
                rec = rec.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                rec = rec.payload(value.as_slice());
            }
            if let Some(ts) = record.timestamp {
                rec = rec.timestamp(ts);
            }
            if let Some(h) = headers {
                rec = rec.headers(h);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The producer's queue is full: its own thread is sending;
                        // wait for room (back-pressure on the flow).
                        rec = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        return Err(self.fail(format!("cannot send a record to {}", self.name), e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until everything sent through `producer` is delivered; a failed
    /// delivery is an error.
    /// `prompt`: wait for the delivery reports themselves (the plain producer
    /// of a Flow, where every write waits for this); otherwise the client's
    /// `flush`, which waits in whole 100 ms polls (a transaction's prepare, once
    /// per snapshot).
    fn deliver(&self, producer: &KafkaProducer, prompt: bool) -> riffle::Result<Vec<(i64, i64)>> {
        let patience = self
            .settings
            .timeout_duration()
            .max(Duration::from_secs(60));
        let late = |e| {
            self.fail(
                format!("records for {} were not delivered in time", self.name),
                e,
            )
        };
        if prompt {
            // A flush that does not wait sends what lingers at once; its "timed
            // out" only says that records are on their way. Then wait until
            // nothing is in flight, which (librdkafka's out-queue length)
            // includes delivery reports not yet served, so the delivery log
            // below is complete when it reads 0.
            let _ = producer.flush(Duration::ZERO);
            let deadline = Instant::now() + patience;
            while producer.in_flight_count() > 0 {
                if Instant::now() >= deadline {
                    return Err(late(rdkafka::error::KafkaError::Flush(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            producer.flush(patience).map_err(late)?;
        }
        let mut log = producer
            .context()
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = log.failed.take() {
            return Err(self.fail(format!("a record for {} was not delivered", self.name), e));
        }
        Ok(std::mem::take(&mut log.ranges))
    }
}

impl SinkPartition for KafkaSinkPartition {
    type Item = KafkaRecord;
    type State = KafkaSinkState;

    fn write_batch(&mut self, items: Vec<KafkaRecord>) -> riffle::Result<()> {
        match &mut self.mode {
            Mode::Plain(producer) => {
                let producer = producer.take().ok_or_else(|| {
                    RiffleError::connector(
                        &self.step_id,
                        "the Kafka sink was written after it closed",
                    )
                })?;
                let sent = self.send(&producer, items);
                if let Mode::Plain(slot) = &mut self.mode {
                    *slot = Some(producer);
                }
                sent
            }
            Mode::Transactional(_) => {
                let slot = self.open_slot()?;
                let sent = self.send(&slot.producer, items);
                self.tx().open = Some(slot);
                sent
            }
        }
    }

    fn flush(&mut self) -> riffle::Result<()> {
        // Without a recovery store: delivered (and, transactional, committed) now.
        match &self.mode {
            Mode::Plain(Some(producer)) => self.deliver(producer, true).map(drop),
            Mode::Plain(None) => Ok(()),
            Mode::Transactional(_) => {
                self.prepare()?;
                let state = self.state();
                self.commit(&state)
            }
        }
    }

    fn snapshot(&mut self) -> riffle::Result<Option<KafkaSinkState>> {
        match &self.mode {
            Mode::Plain(Some(producer)) => self.deliver(producer, true).map(|_| None),
            Mode::Plain(None) => Ok(None),
            Mode::Transactional(_) => {
                self.prepare()?;
                Ok(Some(self.state()))
            }
        }
    }

    fn commit(&mut self, state: &KafkaSinkState) -> riffle::Result<()> {
        if !matches!(self.mode, Mode::Transactional(_)) {
            return Ok(());
        }
        while let Some((seq, _, _)) = self.tx().prepared.front() {
            if *seq > state.seq {
                break;
            }
            let Some((seq, _, slot)) = self.tx().prepared.pop_front() else {
                break;
            };
            slot.producer
                .commit_transaction(self.settings.timeout_duration())
                .map_err(|e| {
                    self.fail(
                        format!("cannot commit transaction {seq} of {}", self.name),
                        e,
                    )
                })?;
            self.tx().idle.push(slot);
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        match &self.mode {
            Mode::Plain(Some(producer)) => {
                self.deliver(producer, true)?;
            }
            Mode::Plain(None) => {}
            Mode::Transactional(_) => {
                // The run ended cleanly: what is prepared or open is final.
                self.prepare()?;
                let state = self.state();
                self.commit(&state)?;
            }
        }
        self.mode = Mode::Plain(None);
        Ok(())
    }
}

/// Transactions of one partition: a producer per slot, each with its own
/// transactional id; one slot takes new records while earlier ones wait, prepared,
/// for the commit of their snapshot.
struct Transactions {
    base: String,
    marker: ConsumerGroupMetadata,
    idle: Vec<Slot>,
    open: Option<Slot>,
    /// Prepared transactions: number, the offsets of their records, producer.
    prepared: VecDeque<(u64, Ranges, Slot)>,
    next_seq: u64,
    slots: u32,
}

struct Slot {
    producer: KafkaProducer,
}

impl Transactions {
    /// Starts the partition's producers (fencing those of an earlier run of the
    /// flow and aborting what they left open) and, after a crash, commits again
    /// the transaction the store committed but Kafka did not.
    fn open(
        part: &KafkaSinkPartition,
        base: String,
        resume: Option<KafkaSinkState>,
    ) -> riffle::Result<Transactions> {
        // Start (and so fence) every producer a killed run may have used: those its
        // last committed snapshot knew of, and a few it may have made since (an
        // unfenced one's open transaction would hold back the marker read and
        // `read_committed` readers until the broker timed it out).
        let slots = resume
            .as_ref()
            .map_or(FIRST_SLOTS, |s| s.slots.max(FIRST_SLOTS))
            + SPARE_SLOTS;
        let mut idle = Vec::new();
        for i in 0..slots {
            idle.push(Slot {
                producer: part.producer(Some(&format!("{base}.{i}")))?,
            });
        }
        let mut config = part
            .settings
            .client_config()
            .map_err(|e| e.for_step(&part.step_id))?;
        config
            .set("group.id", &base)
            .set("enable.auto.commit", "false");
        let marker_reader: BaseConsumer = config
            .create()
            .map_err(|e| part.fail("cannot create a consumer".into(), e))?;
        let marker = marker_reader.group_metadata().ok_or_else(|| {
            RiffleError::connector(
                &part.step_id,
                format!("kafka: no group metadata for {base:?}"),
            )
        })?;
        let mut tx = Transactions {
            base,
            marker,
            idle,
            open: None,
            prepared: VecDeque::new(),
            next_seq: 1,
            slots,
        };
        if let Some(state) = resume {
            tx.next_seq = state.seq + 1;
            if !state.prepared.is_empty() {
                // Transactions commit in order, and each records its number: those
                // after the last recorded one were lost with the run.
                let done = last_marker(part, &marker_reader)?;
                for (seq, ranges) in &state.prepared {
                    if done.is_none_or(|d| d < *seq) && !ranges.is_empty() {
                        tx.finish(part, *seq, ranges)?;
                    }
                }
            }
        }
        Ok(tx)
    }

    /// Sends the records of prepared transaction `seq` (at `ranges`) again, read
    /// back from the log (they stay there, aborted), in one new transaction, and
    /// commits it with its marker.
    fn finish(
        &mut self,
        part: &KafkaSinkPartition,
        seq: u64,
        ranges: &[(i64, i64)],
    ) -> riffle::Result<()> {
        let records = read_back(part, ranges)?;
        let slot = self.idle.pop().ok_or_else(|| {
            RiffleError::connector(
                &part.step_id,
                "kafka: no producer to finish a transaction with",
            )
        })?;
        slot.producer
            .begin_transaction()
            .map_err(|e| part.fail(format!("cannot begin a transaction for {}", part.name), e))?;
        let count = records.len();
        part.send(&slot.producer, records)?;
        part.deliver(&slot.producer, false)?;
        self.mark(part, &slot, seq)?;
        slot.producer
            .commit_transaction(part.settings.timeout_duration())
            .map_err(|e| {
                part.fail(
                    format!("cannot commit transaction {seq} of {}", part.name),
                    e,
                )
            })?;
        eprintln!(
            "step {:?}: {}: committed transaction {} again after a restart ({count} records)",
            part.step_id, part.name, seq
        );
        self.idle.push(slot);
        Ok(())
    }

    /// Records, inside the open transaction of `slot`, that transaction `seq` is
    /// the partition's last: an offset of the marker group.
    fn mark(&self, part: &KafkaSinkPartition, slot: &Slot, seq: u64) -> riffle::Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&part.topic, part.partition, Offset::Offset(seq as i64))
            .map_err(|e| part.fail("bad marker".into(), e))?;
        slot.producer
            .send_offsets_to_transaction(&tpl, &self.marker, part.settings.timeout_duration())
            .map_err(|e| {
                part.fail(
                    format!(
                        "cannot record transaction {seq} of {} in group {:?}",
                        part.name, self.base
                    ),
                    e,
                )
            })
    }
}

impl KafkaSinkPartition {
    fn tx(&mut self) -> &mut Transactions {
        match &mut self.mode {
            Mode::Transactional(tx) => tx,
            Mode::Plain(_) => unreachable!("only transactional partitions have transactions"),
        }
    }

    /// The slot taking new records, beginning a transaction on an idle one (or a
    /// new one) if none is open.
    fn open_slot(&mut self) -> riffle::Result<Slot> {
        if let Some(slot) = self.tx().open.take() {
            return Ok(slot);
        }
        let slot = match self.tx().idle.pop() {
            Some(slot) => slot,
            None => {
                let tx = self.tx();
                let id = format!("{}.{}", tx.base, tx.slots);
                let slot = Slot {
                    producer: self.producer(Some(&id))?,
                };
                self.tx().slots += 1;
                slot
            }
        };
        if let Err(e) = slot.producer.begin_transaction() {
            return Err(self.fail(format!("cannot begin a transaction for {}", self.name), e));
        }
        Ok(slot)
    }

    /// Prepares the open transaction, if there is one: delivers its records and
    /// its marker; it then waits for its commit.
    fn prepare(&mut self) -> riffle::Result<()> {
        let Some(slot) = self.tx().open.take() else {
            return Ok(());
        };
        let ranges = match self.deliver(&slot.producer, false) {
            Ok(r) => r,
            Err(e) => {
                let _ = slot
                    .producer
                    .abort_transaction(self.settings.timeout_duration());
                return Err(e);
            }
        };
        let seq = self.tx().next_seq;
        if let Mode::Transactional(tx) = &self.mode {
            tx.mark(self, &slot, seq)?;
        }
        let tx = self.tx();
        tx.next_seq += 1;
        tx.prepared.push_back((seq, ranges, slot));
        Ok(())
    }

    /// The partition's state: every prepared transaction not yet committed.
    fn state(&mut self) -> KafkaSinkState {
        let tx = self.tx();
        KafkaSinkState {
            seq: tx.next_seq.saturating_sub(1),
            prepared: tx
                .prepared
                .iter()
                .map(|(seq, ranges, _)| (*seq, ranges.clone()))
                .collect(),
            slots: tx.slots,
        }
    }
}

impl Drop for KafkaSinkPartition {
    fn drop(&mut self) {
        // A run that stopped early: what was not committed must not become
        // visible (a resumed run writes it again, or commits it from the log).
        if let Mode::Transactional(tx) = &mut self.mode {
            let timeout = Duration::from_secs(5);
            if let Some(slot) = tx.open.take() {
                let _ = slot.producer.abort_transaction(timeout);
            }
            for (_, _, slot) in tx.prepared.drain(..) {
                let _ = slot.producer.abort_transaction(timeout);
            }
        }
    }
}

/// The last transaction number the partition's marker group holds.
fn last_marker(part: &KafkaSinkPartition, reader: &BaseConsumer) -> riffle::Result<Option<u64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&part.topic, part.partition);
    let committed = reader
        .committed_offsets(tpl, part.settings.timeout_duration())
        .map_err(|e| {
            part.fail(
                format!("cannot read the transaction marker of {}", part.name),
                e,
            )
        })?;
    Ok(
        match committed
            .find_partition(&part.topic, part.partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
            _ => None,
        },
    )
}

/// Reads the records at `ranges` of the partition, including those of aborted
/// transactions.
fn read_back(part: &KafkaSinkPartition, ranges: &[(i64, i64)]) -> riffle::Result<Vec<KafkaRecord>> {
    let Some(&(first, _)) = ranges.first() else {
        return Ok(Vec::new());
    };
    let last = ranges.iter().map(|r| r.1).max().unwrap_or(first);
    let mut config = part
        .settings
        .client_config()
        .map_err(|e| e.for_step(&part.step_id))?;
    config
        .set("group.id", format!("riffle.read-back.{}", part.name))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted");
    let reader: BaseConsumer = config
        .create()
        .map_err(|e| part.fail("cannot create a consumer".into(), e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&part.topic, part.partition, Offset::Offset(first))
        .and_then(|()| reader.assign(&tpl))
        .map_err(|e| part.fail(format!("cannot read back {}", part.name), e))?;
    let wanted = |o: i64| ranges.iter().any(|&(a, b)| a <= o && o <= b);
    let deadline = Instant::now()
        + part
            .settings
            .timeout_duration()
            .max(Duration::from_secs(30));
    let mut records = Vec::new();
    let mut at = first;
    while at <= last {
        if Instant::now() > deadline {
            return Err(RiffleError::connector(
                &part.step_id,
                format!(
                    "kafka at brokers {}: reading back the records of {} (offsets {first}..={last}) \
                     stopped at {at}: they are no longer in the log",
                    part.settings.brokers, part.name
                ),
            ));
        }
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => return Err(part.fail(format!("cannot read back {}", part.name), e)),
            Some(Ok(m)) => {
                at = m.offset() + 1;
                if wanted(m.offset()) {
                    records.push(KafkaRecord {
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|hs| {
                                hs.iter()
                                    .map(|h| {
                                        (h.key.to_string(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        timestamp: m.timestamp().to_millis(),
                    });
                }
            }
        }
    }
    Ok(records)
}
