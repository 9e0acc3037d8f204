//! The SQS sink: records sent in batches (`SendMessageBatch`, ten a call, within
//! SQS's 256 KiB a call), partial failures sent again, every batch answered before
//! the flow's epoch moves on.

use std::sync::Arc;
use std::time::Duration;

use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde_json::{Value, json};

use super::client::SqsClient;
use super::message::SqsRecord;
use super::settings::SqsSettings;
use super::source::BATCH;
use crate::writer::{BatchWriter, InFlight};
use crate::{ConnectorError, runtime};

/// SQS's limit on one message and on one `SendMessageBatch`, in bytes.
pub const MAX_BYTES: usize = 256 * 1024;

/// How many times entries SQS failed for its own reasons are sent again.
const ATTEMPTS: u32 = 5;

/// Batch calls of one write sent at once (standard queues).
const PARALLEL: usize = 16;

/// Writes a partition keeps in flight before it waits, written at once
/// (standard queues; FIFO queues keep one, so that a group's messages stay in
/// order).
const IN_FLIGHT: usize = 4;

/// Sends records to one SQS queue; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct SqsSink {
    settings: SqsSettings,
    queue: String,
    writers: usize,
    id: Option<String>,
}

impl SqsSink {
    /// Sends to the queue named `queue` (or at this queue URL) with one writer. A
    /// name ending in `.fifo` is a FIFO queue.
    pub fn new(settings: SqsSettings, queue: impl Into<String>) -> Self {
        Self {
            settings,
            queue: queue.into(),
            writers: 1,
            id: None,
        }
    }

    /// How many writers send (default 1): each is a partition of the sink, so a
    /// run on several workers spreads them over its workers. Records of one FIFO
    /// group always go through one writer.
    pub fn writers(mut self, writers: usize) -> Self {
        self.writers = writers.max(1);
        self
    }

    /// The name FIFO de-duplication ids made by the sink start with (default the
    /// step id): keep it when the flow is resumed, change it for a new flow
    /// writing the same queue.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    fn fifo(&self) -> bool {
        self.queue.ends_with(".fifo")
    }
}

impl FixedPartitionedSink for SqsSink {
    type Item = SqsRecord;
    type State = u64;
    type Partition = SqsSinkPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.writers)
            .map(|i| format!("{}#{i}", self.queue))
            .collect())
    }

    fn part_fn(&self, item: &SqsRecord, parts: usize) -> usize {
        let hash = match &item.group_id {
            Some(group) => riffle::exchange::stable_hash(group),
            None => riffle::exchange::stable_hash(&item.body),
        };
        (hash % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<u64>,
    ) -> riffle::Result<SqsSinkPartition> {
        let queue = self.queue.clone();
        let (client, url) = runtime::handle()
            .block_on(async {
                let client = SqsClient::new(&self.settings)?;
                let url = client.queue_url(&queue).await?;
                Ok::<_, ConnectorError>((client, url))
            })
            .map_err(|e| e.for_step(step_id))?;
        let id = self.id.clone().unwrap_or_else(|| step_id.to_string());
        let dedup_prefix = format!("{id}.{}", for_part.rsplit('#').next().unwrap_or("0"))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(100)
            .collect();
        let fifo = self.fifo();
        let writer = Writer {
            client: client.clone(),
            queue: Arc::from(queue.as_str()),
            url: Arc::from(url.as_str()),
            fifo,
        };
        let (server, what) = (self.settings.server(), format!("queue {queue:?}"));
        let batches = if fifo {
            InFlight::start(writer, 1, "sqs", server, what)
        } else {
            InFlight::start_parallel(writer, IN_FLIGHT, IN_FLIGHT, "sqs", server, what)
        };
        Ok(SqsSinkPartition {
            step_id: step_id.to_string(),
            client,
            queue: Arc::from(queue.as_str()),
            fifo,
            dedup_prefix,
            sent: resume_state.unwrap_or(0),
            batches,
        })
    }
}

/// One writer to a queue; made by [`SqsSink`].
pub struct SqsSinkPartition {
    step_id: String,
    client: SqsClient,
    queue: Arc<str>,
    fifo: bool,
    dedup_prefix: String,
    /// Records written by this partition, over every run (FIFO de-duplication
    /// ids are numbered by it).
    sent: u64,
    batches: InFlight<Vec<Entry>>,
}

/// One message of a batch: its entry, and how errors name it.
struct Entry {
    json: Value,
    size: usize,
    names: String,
}

impl SqsSinkPartition {
    fn entry(&mut self, record: SqsRecord) -> Result<Entry, ConnectorError> {
        self.sent += 1;
        let size = record.size();
        let preview: String = record.body.chars().take(40).collect();
        let names = format!("record {} ({preview:?})", self.sent);
        if size > MAX_BYTES {
            return Err(self.client.settings.error(format!(
                "{names} for queue {:?} is {size} bytes, over SQS's limit of {MAX_BYTES}",
                self.queue
            )));
        }
        let mut json = json!({ "MessageBody": record.body });
        if !record.attributes.is_empty() {
            let attrs: serde_json::Map<String, Value> = record
                .attributes
                .into_iter()
                .map(|(k, v)| (k, json!({ "DataType": "String", "StringValue": v })))
                .collect();
            json["MessageAttributes"] = Value::Object(attrs);
        }
        if self.fifo {
            json["MessageGroupId"] = json!(record.group_id.unwrap_or_else(|| "riffle".into()));
            json["MessageDeduplicationId"] = json!(
                record
                    .dedup_id
                    .unwrap_or_else(|| format!("{}.{}", self.dedup_prefix, self.sent))
            );
        }
        Ok(Entry { json, size, names })
    }
}

/// Sends the records of one write on the shared runtime: in calls of at most
/// ten, several at once (standard queues) or one after the other (FIFO).
#[derive(Clone)]
struct Writer {
    client: SqsClient,
    queue: Arc<str>,
    url: Arc<str>,
    fifo: bool,
}

impl BatchWriter for Writer {
    type Batch = Vec<Entry>;

    async fn write(&mut self, entries: Vec<Entry>) -> Result<(), ConnectorError> {
        let (client, queue, url) = (&self.client, &self.queue, &self.url);
        let mut pending = batches(entries).into_iter();
        loop {
            // FIFO: one batch at a time, in order; standard: several at once.
            let wave: Vec<_> = pending
                .by_ref()
                .take(if self.fifo { 1 } else { PARALLEL })
                .map(|b| tokio::spawn(send_batch(client.clone(), queue.clone(), url.clone(), b)))
                .collect();
            if wave.is_empty() {
                return Ok(());
            }
            for task in wave {
                match task.await {
                    Ok(r) => r?,
                    Err(e) => {
                        return Err(client
                            .settings
                            .error(format!("sending to queue {queue:?} stopped"))
                            .caused_by(e));
                    }
                }
            }
        }
    }
}

/// Sends one batch (at most ten entries, at most [`MAX_BYTES`]), sending again
/// what SQS failed for its own reasons; an entry it refuses for good, or that keeps
/// failing, is an error naming the queue and the record.
async fn send_batch(
    client: SqsClient,
    queue: Arc<str>,
    url: Arc<str>,
    mut batch: Vec<Entry>,
) -> Result<(), ConnectorError> {
    let what = || format!("sending to queue {queue:?}");
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        let entries: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut json = e.json.clone();
                json["Id"] = json!(i.to_string());
                json
            })
            .collect();
        let body = json!({ "QueueUrl": &*url, "Entries": entries });
        let patience = Some(client.settings.timeout_duration());
        let answer = client
            .call("SendMessageBatch", &body, Duration::ZERO, &what, patience)
            .await
            .map_err(|e| client.error(&queue, "sending to", e))?;
        let failed = match answer.get("Failed") {
            Some(Value::Array(failed)) if !failed.is_empty() => failed.clone(),
            _ => return Ok(()),
        };
        let mut again = Vec::new();
        let mut taken: Vec<Option<Entry>> = batch.into_iter().map(Some).collect();
        for f in &failed {
            let index = f
                .get("Id")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<usize>().ok());
            let Some(entry) = index.and_then(|i| taken.get_mut(i)).and_then(Option::take) else {
                continue;
            };
            let code = f.get("Code").and_then(Value::as_str).unwrap_or("?");
            let message = f.get("Message").and_then(Value::as_str).unwrap_or("");
            let sender_fault = f
                .get("SenderFault")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if sender_fault || attempt == ATTEMPTS {
                let tries = if sender_fault {
                    "refused".to_string()
                } else {
                    format!("failed {ATTEMPTS} times")
                };
                return Err(client.settings.error(format!(
                    "queue {queue:?} {tries} {}: {code}: {message}",
                    entry.names
                )));
            }
            again.push(entry);
        }
        if again.is_empty() {
            return Ok(());
        }
        batch = again;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    Ok(())
}

/// Splits `entries` into batches of at most ten and [`MAX_BYTES`], keeping order.
fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        match out.last_mut() {
            Some(last) if last.len() < BATCH && bytes + e.size <= MAX_BYTES => {
                bytes += e.size;
                last.push(e);
            }
            _ => {
                bytes = e.size;
                out.push(vec![e]);
            }
        }
    }
    out
}

impl SinkPartition for SqsSinkPartition {
    type Item = SqsRecord;
    type State = u64;

    fn write_batch(&mut self, items: Vec<SqsRecord>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(items.len());
        for record in items {
            entries.push(self.entry(record).map_err(|e| e.for_step(&self.step_id))?);
        }
        self.batches
            .send(entries)
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.batches.flush().map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<u64>> {
        self.flush()?;
        Ok(Some(self.sent))
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.flush()
    }
}
