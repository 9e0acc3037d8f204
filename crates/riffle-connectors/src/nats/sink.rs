//! The NATS sink: records published to JetStream with their message ids, every
//! acknowledgement awaited before an epoch may be committed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use tokio::sync::{mpsc, oneshot};

use super::message::NatsRecord;
use super::settings::NatsSettings;
use super::source::fnv1a;
use crate::ConnectorError;

/// Publishes awaiting their acknowledgement, per partition, before the next
/// publish waits for the oldest.
const IN_FLIGHT: usize = 4096;

/// Batches queued for a partition's publisher before `write_batch` waits.
const QUEUED_BATCHES: usize = 16;

/// Publishes [`NatsRecord`]s to a JetStream stream; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct NatsSink {
    settings: NatsSettings,
    subject: String,
    publishers: usize,
}

impl NatsSink {
    /// Publishes to `subject` (a record may name its own), which a stream must
    /// capture, through 4 publishers (partitions of the sink).
    pub fn new(settings: NatsSettings, subject: impl Into<String>) -> Self {
        Self {
            settings,
            subject: subject.into(),
            publishers: 4,
        }
    }

    /// How many partitions (each a connection publishing in order) the sink has.
    /// Records with the same id, or else the same subject and payload, go
    /// through the same one.
    pub fn publishers(mut self, n: usize) -> Self {
        self.publishers = n.max(1);
        self
    }
}

impl FixedPartitionedSink for NatsSink {
    type Item = NatsRecord;
    type State = u64;
    type Partition = NatsSinkPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.publishers)
            .map(|i| format!("{}#{i}", self.subject))
            .collect())
    }

    fn part_fn(&self, item: &NatsRecord, parts: usize) -> usize {
        let hash = match &item.id {
            Some(id) => fnv1a(id.as_bytes()),
            None => fnv1a(&item.payload) ^ fnv1a(item.subject.as_deref().unwrap_or("").as_bytes()),
        };
        hash as usize % parts.max(1)
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<u64>,
    ) -> riffle::Result<NatsSinkPartition> {
        let settings = self.settings.clone();
        let subject = self.subject.clone();
        let context = crate::runtime::handle()
            .block_on(async {
                let js = settings.jetstream().await?;
                // Publishing where no stream listens would fail on every message.
                js.stream_by_subject(subject.clone()).await.map_err(|e| {
                    settings
                        .error(format!("no stream captures subject {subject:?}"))
                        .caused_by(e)
                })?;
                Ok::<_, ConnectorError>(js)
            })
            .map_err(|e| e.for_step(step_id))?;
        let failure = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
        let publisher = Publisher {
            context,
            settings: self.settings.clone(),
            subject: self.subject.clone(),
            failure: failure.clone(),
            in_flight: VecDeque::new(),
            acknowledged: resume_state.unwrap_or(0),
        };
        let task = crate::runtime::handle().spawn(publisher.run(rx));
        Ok(NatsSinkPartition {
            step_id: step_id.to_string(),
            name: for_part.to_string(),
            settings: self.settings.clone(),
            tx,
            failure,
            task,
        })
    }
}

/// What a partition asks of its publisher.
enum Command {
    Publish(Vec<NatsRecord>),
    /// Answer, with the count of records acknowledged so far, once every record
    /// published before has been acknowledged.
    Flush(oneshot::Sender<u64>),
}

/// The task that publishes a partition's records in order, on the shared runtime.
struct Publisher {
    context: Context,
    settings: NatsSettings,
    subject: String,
    failure: Arc<Mutex<Option<ConnectorError>>>,
    in_flight: VecDeque<(NatsRecord, PublishAckFuture)>,
    acknowledged: u64,
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            let result = match command {
                Command::Publish(records) => self.publish_all(records).await,
                Command::Flush(answer) => match self.settle(0).await {
                    Ok(()) => {
                        let _ = answer.send(self.acknowledged);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert(e);
                }
                // Dropping the queue tells the partition; it reads the failure.
                return;
            }
        }
    }

    fn message(record: &NatsRecord) -> PublishMessage {
        let mut message = PublishMessage::build().payload(record.payload.clone().into());
        if !record.headers.is_empty() {
            let mut headers = HeaderMap::new();
            for (name, value) in &record.headers {
                headers.append(name.as_str(), value.as_str());
            }
            message = message.headers(headers);
        }
        if let Some(id) = &record.id {
            message = message.message_id(id);
        }
        message
    }

    async fn publish_all(&mut self, records: Vec<NatsRecord>) -> Result<(), ConnectorError> {
        for record in records {
            self.settle(IN_FLIGHT - 1).await?;
            let ack = self.send(&record).await?;
            self.in_flight.push_back((record, ack));
        }
        Ok(())
    }

    /// Publishes `record` (retrying while the server is away, up to the timeout).
    async fn send(&self, record: &NatsRecord) -> Result<PublishAckFuture, ConnectorError> {
        let subject = record.subject.as_deref().unwrap_or(&self.subject);
        let deadline = Instant::now() + self.settings.timeout_duration() * 3;
        loop {
            match self
                .context
                .send_publish(subject.to_string(), Self::message(record))
                .await
            {
                Ok(ack) => return Ok(ack),
                Err(e) if e.kind() == PublishErrorKind::TimedOut && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(self
                        .settings
                        .error(format!("cannot publish to {subject:?}"))
                        .caused_by(e));
                }
            }
        }
    }

    /// Awaits acknowledgements until at most `keep` publishes are in flight. A
    /// publish whose acknowledgement does not come (the server restarting) is sent
    /// again, and so is every publish in flight behind it: with an id, JetStream
    /// keeps each once.
    async fn settle(&mut self, keep: usize) -> Result<(), ConnectorError> {
        while self.in_flight.len() > keep {
            let Some((record, ack)) = self.in_flight.pop_front() else {
                break;
            };
            let mut ack = ack;
            let deadline = Instant::now() + self.settings.timeout_duration() * 3;
            loop {
                match ack.await {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        let subject = record.subject.as_deref().unwrap_or(&self.subject);
                        eprintln!(
                            "nats at server {}: publishing to {subject:?} again: {e}",
                            self.settings.servers
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        ack = self.send(&record).await?;
                        // Every publish still in flight went out before the server
                        // went away, and an acknowledgement's timeout only starts
                        // when it is awaited: awaited in turn, each would wait the
                        // whole timeout. Send them all again now, in order.
                        let waiting: Vec<NatsRecord> =
                            self.in_flight.drain(..).map(|(r, _)| r).collect();
                        for again in waiting {
                            let again_ack = self.send(&again).await?;
                            self.in_flight.push_back((again, again_ack));
                        }
                    }
                    Err(e) => {
                        let subject = record.subject.as_deref().unwrap_or(&self.subject);
                        return Err(self
                            .settings
                            .error(format!("no acknowledgement publishing to {subject:?}"))
                            .caused_by(e));
                    }
                }
            }
            self.acknowledged += 1;
        }
        Ok(())
    }
}

/// One publisher of a [`NatsSink`].
pub struct NatsSinkPartition {
    step_id: String,
    name: String,
    settings: NatsSettings,
    tx: mpsc::Sender<Command>,
    failure: Arc<Mutex<Option<ConnectorError>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NatsSinkPartition {
    /// The publisher's failure, once it has stopped.
    fn failed(&self) -> riffle::RiffleError {
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        failure
            .unwrap_or_else(|| {
                self.settings
                    .error(format!("the publisher of {} stopped", self.name))
            })
            .for_step(&self.step_id)
    }

    /// Waits until everything written is acknowledged; answers how many records
    /// this partition has had acknowledged.
    fn settle(&mut self) -> riffle::Result<u64> {
        let (answer, acknowledged) = oneshot::channel();
        if self.tx.blocking_send(Command::Flush(answer)).is_err() {
            return Err(self.failed());
        }
        acknowledged.blocking_recv().map_err(|_| self.failed())
    }
}

impl SinkPartition for NatsSinkPartition {
    type Item = NatsRecord;
    type State = u64;

    fn write_batch(&mut self, items: Vec<NatsRecord>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        // Waits only when the publisher is many batches behind (back-pressure).
        self.tx
            .blocking_send(Command::Publish(items))
            .map_err(|_| self.failed())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.settle().map(|_| ())
    }

    fn snapshot(&mut self) -> riffle::Result<Option<u64>> {
        self.settle().map(Some)
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.settle().map(|_| ())
    }
}

impl Drop for NatsSinkPartition {
    fn drop(&mut self) {
        self.task.abort();
    }
}
