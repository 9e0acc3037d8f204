//! The SQS source: readers long-polling one queue, messages deleted only by the
//! commit hook, their visibility timeout extended while they wait for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::SqsClient;
use super::message::SqsMessage;
use super::settings::SqsSettings;
use crate::format::{Decoder, Format, Utf8};
use crate::reader::{Batches, Reader};
use crate::{ConnectorError, runtime};

/// The most messages one `ReceiveMessage` (and one batch call) takes: SQS's limit.
pub(crate) const BATCH: usize = 10;

/// A reader's position, its snapshot state: how many messages it has emitted, and
/// the receipt handles of those emitted and not yet deleted. A run resuming from
/// a committed snapshot deletes these first (the flow was done with them); a
/// handle that expired meanwhile deletes nothing, and its message comes back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SqsPosition {
    /// Messages emitted so far by this reader, over every run.
    pub received: u64,
    /// Receipt handles emitted and not yet deleted.
    pub pending: Vec<String>,
}

/// Reads one SQS queue; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct SqsSource<F = Utf8> {
    settings: SqsSettings,
    queue: String,
    readers: usize,
    wait: Duration,
    visibility: Duration,
    stop_after_empty: Option<u32>,
    decoder: Decoder<F>,
}

impl SqsSource<Utf8> {
    /// Reads the queue named `queue` (or at this queue URL) with one reader,
    /// bodies as text, long-polling for 20 s, for ever.
    pub fn new(settings: SqsSettings, queue: impl Into<String>) -> Self {
        Self {
            settings,
            queue: queue.into(),
            readers: 1,
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(30),
            stop_after_empty: None,
            decoder: Decoder::new(Utf8),
        }
    }
}

impl<F: Format> SqsSource<F> {
    /// Decodes bodies with `format` ([`crate::format::Json`], ...): items
    /// become `SqsMessage<F::Value>`. A body the format refuses stops the run
    /// with an error naming the queue URL and the message id, unless
    /// [`SqsSource::dead_letters`] takes it.
    ///
    /// ```no_run
    /// use riffle_connectors::format::Json;
    /// use riffle_connectors::sqs::{SqsSettings, SqsSource};
    /// let source = SqsSource::new(SqsSettings::new("us-east-1"), "orders")
    ///     .format(Json::<serde_json::Value>::new())
    ///     .dead_letters(riffle::dead_letters::DeadLetters::stream());
    /// ```
    pub fn format<G: Format>(self, format: G) -> SqsSource<G> {
        SqsSource {
            settings: self.settings,
            queue: self.queue,
            readers: self.readers,
            wait: self.wait,
            visibility: self.visibility,
            stop_after_empty: self.stop_after_empty,
            decoder: self.decoder.format(format),
        }
    }

    /// Messages whose body the format cannot decode go to `letters` (with
    /// `queue_url`, `message_id`, `reason` and the body), the step's dead-letter
    /// stream or a file, and are skipped instead of stopping the run; they are
    /// deleted from the queue with the commit that passes them, once their
    /// letter is safe. See [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: riffle::dead_letters::DeadLetters) -> Self {
        self.decoder = self.decoder.dead_letters(Some(letters));
        self
    }

    /// How many readers poll the queue (default 1): each is a partition of the
    /// source, so a run on several workers spreads them over its workers. Give at
    /// least as many as workers to read on every worker.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long one receive waits for messages (`WaitTimeSeconds`, whole seconds,
    /// at most 20; default 20).
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(20));
        self
    }

    /// How long a received message stays hidden from other readers
    /// (`VisibilityTimeout`, whole seconds, default 30). While the flow has not
    /// committed a message, the source extends it once a third of this time has passed; after a
    /// crash, what was not deleted comes back after at most this long.
    pub fn visibility_timeout(mut self, visibility: Duration) -> Self {
        self.visibility = visibility.max(Duration::from_secs(1));
        self
    }

    /// Bounded mode: each reader finishes once `polls` receives in a row found
    /// the queue empty (for tests and batch jobs). Messages hidden because
    /// another run holds them count as absent: make `polls` times the wait time
    /// longer than the visibility timeout to wait for those.
    pub fn stop_after_empty(mut self, polls: u32) -> Self {
        self.stop_after_empty = Some(polls.max(1));
        self
    }

    fn whole_seconds(d: Duration) -> u64 {
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

impl<F: Format> FixedPartitionedSource for SqsSource<F> {
    type Item = SqsMessage<F::Value>;
    type State = SqsPosition;
    type Partition = SqsSourcePartition<F>;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.readers)
            .map(|i| format!("{}#{i}", self.queue))
            .collect())
    }

    /// The queue's visible messages, as SQS approximates them (those in flight
    /// are being worked on).
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        let (visible, _in_flight) = super::admin::message_count(&self.settings, &self.queue)
            .map_err(|e| e.for_step(step_id))?;
        Ok(Some(visible))
    }

    fn describe(&self, _step_id: &str) -> Option<riffle::sources::SourceInfo> {
        let mut fields = vec![("queue", self.queue.clone())];
        if let Some(region) = &self.settings.region {
            fields.push(("region", region.clone()));
        }
        if let Some(endpoint) = &self.settings.endpoint {
            fields.push(("endpoint", endpoint.clone()));
        }
        Some(riffle::sources::SourceInfo {
            system: "sqs",
            fields,
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<SqsPosition>,
    ) -> riffle::Result<SqsSourcePartition<F>> {
        let position = resume_state.unwrap_or_default();
        let queue = self.queue.clone();
        let (client, url) = runtime::handle()
            .block_on(async {
                let client = SqsClient::new(&self.settings)?;
                let url = client.queue_url(&queue).await?;
                // Emitted before a committed snapshot: the flow is done with them.
                delete(&client, &queue, &url, position.pending.clone()).await;
                Ok::<_, ConnectorError>((client, url))
            })
            .map_err(|e| e.for_step(step_id))?;
        let polling = Polling {
            client: client.clone(),
            queue: Arc::from(queue.as_str()),
            url: url.clone(),
            wait: self.wait,
            visibility: Self::whole_seconds(self.visibility),
            stop_after_empty: self.stop_after_empty,
        };
        let stopped = client
            .settings
            .error(format!("reader {for_part:?} stopped"));
        // One batch waits at most: what is received is emitted (and extended) soon.
        let batches = Reader::start(1, stopped, |batches| polling.run(batches));
        let in_flight = Arc::new(Mutex::new(VecDeque::new()));
        let extender = runtime::handle().spawn(extend_while_held(
            client.clone(),
            Arc::from(queue.as_str()),
            url.clone(),
            in_flight.clone(),
            Duration::from_secs(Self::whole_seconds(self.visibility)),
        ));
        Ok(SqsSourcePartition {
            step_id: step_id.to_string(),
            client,
            queue: Arc::from(queue.as_str()),
            url,
            batches,
            received: position.received,
            decoder: self.decoder.clone(),
            in_flight,
            extender,
            tasks: Vec::new(),
        })
    }
}

/// Messages received, with their receipt handles, and when the receive was sent
/// (their visibility timeout runs from about then): what the polling task hands
/// the partition.
type Received = (Vec<(SqsMessage, String)>, Instant);

/// The task that long-polls the queue for one reader on the shared runtime.
struct Polling {
    client: SqsClient,
    queue: Arc<str>,
    url: String,
    wait: Duration,
    visibility: u64,
    stop_after_empty: Option<u32>,
}

impl Polling {
    /// Receives until a bounded read found the queue empty long enough (or the
    /// partition is gone), or receiving fails for good.
    async fn run(self, batches: Batches<Received>) -> Result<(), ConnectorError> {
        let mut empty = 0;
        let request = json!({
            "QueueUrl": self.url,
            "MaxNumberOfMessages": BATCH,
            "WaitTimeSeconds": self.wait.as_secs(),
            "VisibilityTimeout": self.visibility,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        });
        let queue = self.queue.clone();
        let what = move || format!("receiving from queue {queue:?}");
        loop {
            // Receive only once the partition has room for what comes.
            let Some(room) = batches.room().await else {
                return Ok(());
            };
            // Receiving is safe to try again: what a lost answer handed out
            // comes back after its visibility timeout.
            let asked = Instant::now();
            let answer = self
                .client
                .call("ReceiveMessage", &request, self.wait, &what, None)
                .await;
            let read = match answer {
                Ok(v) => match parse(&self.queue, &v) {
                    Ok(messages) => messages,
                    Err(why) => {
                        return Err(self.client.settings.error(format!(
                            "an unexpected answer receiving from queue {:?}: {why}",
                            self.queue
                        )));
                    }
                },
                Err(e) => return Err(self.client.error(&self.queue, "receiving from", e)),
            };
            if read.is_empty() {
                empty += 1;
                if self.stop_after_empty.is_some_and(|n| empty >= n) {
                    return Ok(());
                }
                continue;
            }
            empty = 0;
            room.send((read, asked));
        }
    }
}

/// The messages of a `ReceiveMessage` answer, with their receipt handles.
fn parse(queue: &Arc<str>, answer: &Value) -> Result<Vec<(SqsMessage, String)>, String> {
    let Some(messages) = answer.get("Messages") else {
        return Ok(Vec::new());
    };
    let messages = messages.as_array().ok_or("Messages is not a list")?;
    let text = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    messages
        .iter()
        .map(|m| {
            let handle = text(m, "ReceiptHandle").ok_or("a message without ReceiptHandle")?;
            let system = m.get("Attributes");
            let attr = |k: &str| system.and_then(|a| text(a, k));
            let mut attributes = BTreeMap::new();
            if let Some(Value::Object(attrs)) = m.get("MessageAttributes") {
                for (name, a) in attrs {
                    if let Some(v) = text(a, "StringValue") {
                        attributes.insert(name.clone(), v);
                    }
                }
            }
            let message = SqsMessage {
                queue: queue.clone(),
                message_id: text(m, "MessageId").unwrap_or_default(),
                body: text(m, "Body").unwrap_or_default(),
                receive_count: attr("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                group_id: attr("MessageGroupId"),
                attributes,
            };
            Ok((message, handle))
        })
        .collect()
}

/// Deletes the messages of `handles` (`DeleteMessageBatch`, ten at a time). A
/// message that cannot be deleted is only delivered again (at-least-once), so
/// failures are said on stderr and the run goes on.
pub(crate) async fn delete(client: &SqsClient, queue: &str, url: &str, handles: Vec<String>) {
    let mut failed = 0;
    let mut why = String::new();
    let what = || format!("deleting messages of queue {queue:?}");
    for chunk in handles.chunks(BATCH) {
        let entries: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "Id": i.to_string(), "ReceiptHandle": h }))
            .collect();
        let body = json!({ "QueueUrl": url, "Entries": entries });
        let patience = Some(client.settings.timeout_duration());
        match client
            .call("DeleteMessageBatch", &body, Duration::ZERO, &what, patience)
            .await
        {
            Ok(answer) => {
                if let Some(Value::Array(f)) = answer.get("Failed") {
                    failed += f.len();
                    if let Some(first) = f.first()
                        && why.is_empty()
                    {
                        why = first.to_string();
                    }
                }
            }
            Err(e) => {
                failed += chunk.len();
                if why.is_empty() {
                    why = e.to_string();
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "sqs at {}: {failed} messages of queue {queue:?} could not be deleted and will \
             be delivered again ({why})",
            client.settings.server()
        );
    }
}

/// Extends the visibility of `handles` to `seconds` (`ChangeMessageVisibilityBatch`).
async fn extend(client: &SqsClient, queue: &str, url: &str, handles: Vec<String>, seconds: u64) {
    let what = || format!("extending the visibility of messages of queue {queue:?}");
    for chunk in handles.chunks(BATCH) {
        let entries: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                json!({ "Id": i.to_string(), "ReceiptHandle": h, "VisibilityTimeout": seconds })
            })
            .collect();
        let body = json!({ "QueueUrl": url, "Entries": entries });
        let patience = Some(client.settings.timeout_duration());
        if let Err(e) = client
            .call(
                "ChangeMessageVisibilityBatch",
                &body,
                Duration::ZERO,
                &what,
                patience,
            )
            .await
        {
            eprintln!(
                "sqs at {}: cannot extend the visibility of {} messages of queue {queue:?}, \
                 which may be delivered again: {e}",
                client.settings.server(),
                chunk.len()
            );
        }
    }
}

/// Extends the visibility of what a reader holds, once a third of its
/// visibility timeout has passed, until the commit hook deletes it: on the
/// runtime, so a worker busy with a slow batch or a slow snapshot does not let
/// SQS hand its messages out again.
async fn extend_while_held(
    client: SqsClient,
    queue: Arc<str>,
    url: String,
    in_flight: Arc<Mutex<VecDeque<InFlight>>>,
    visibility: Duration,
) {
    loop {
        tokio::time::sleep(visibility / 6).await;
        let now = Instant::now();
        let due = now.checked_sub(visibility / 3);
        let mut handles = Vec::new();
        for m in lock(&in_flight).iter_mut() {
            if due.is_some_and(|due| m.hidden_at <= due) {
                m.hidden_at = now;
                handles.push(lock(&m.handle).clone());
            }
        }
        if !handles.is_empty() {
            extend(&client, &queue, &url, handles, visibility.as_secs()).await;
        }
    }
}

/// The latest receipt handle of a message in flight, shared by every reader of
/// the process that was handed it.
type Handle = Arc<Mutex<String>>;

/// The messages in flight in this process, by queue URL and message id: a
/// message handed to a second reader while a first still holds it (a standard
/// queue may do so; moto does under concurrent receives) is not emitted again;
/// its newer receipt handle, the one SQS deletes by, replaces the first's.
fn registry() -> &'static Mutex<HashMap<String, Handle>> {
    static IN_FLIGHT: OnceLock<Mutex<HashMap<String, Handle>>> = OnceLock::new();
    IN_FLIGHT.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A message emitted and not yet deleted.
struct InFlight {
    /// The reader's count when it was emitted.
    seq: u64,
    /// Its key in the [`registry`].
    key: String,
    handle: Handle,
    /// When its visibility was last set (received or extended).
    hidden_at: Instant,
}

/// One reader of a queue; made by [`SqsSource`].
pub struct SqsSourcePartition<F = Utf8> {
    step_id: String,
    decoder: Decoder<F>,
    client: SqsClient,
    queue: Arc<str>,
    url: String,
    batches: Reader<Received>,
    /// Messages emitted so far (the position's count).
    received: u64,
    /// Emitted and not yet deleted, oldest first.
    in_flight: Arc<Mutex<VecDeque<InFlight>>>,
    extender: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<F: Format> SqsSourcePartition<F> {
    /// The message with its body decoded; `None` when it went to the dead letters.
    fn decode(&self, message: SqsMessage) -> riffle::Result<Option<SqsMessage<F::Value>>> {
        let position = || {
            [
                ("queue_url", self.url.as_str().into()),
                ("message_id", message.message_id.as_str().into()),
            ]
        };
        let fail = |what: String| self.client.settings.error(what).for_step(&self.step_id);
        let bytes = message.body.as_bytes();
        let Some(body) = self.decoder.decode(&self.step_id, position, bytes, fail)? else {
            return Ok(None);
        };
        Ok(Some(SqsMessage {
            queue: message.queue,
            message_id: message.message_id,
            body,
            receive_count: message.receive_count,
            group_id: message.group_id,
            attributes: message.attributes,
        }))
    }
}

impl<F: Format> SourcePartition for SqsSourcePartition<F> {
    type Item = SqsMessage<F::Value>;
    type State = SqsPosition;

    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.batches.wake_on_ready(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<SqsMessage<F::Value>>> {
        self.tasks.retain(|t| !t.is_finished());
        let mut out = Vec::new();
        while out.len() < 1000 {
            let Some((messages, asked)) = self.batches.try_next(&self.step_id)? else {
                break;
            };
            let mut registry = lock(registry());
            for (message, handle) in messages {
                let key = format!("{}\n{}", self.url, message.message_id);
                if let Some(held) = registry.get(&key) {
                    *lock(held) = handle;
                    continue;
                }
                let handle = Arc::new(Mutex::new(handle));
                registry.insert(key.clone(), handle.clone());
                self.received += 1;
                lock(&self.in_flight).push_back(InFlight {
                    seq: self.received,
                    key,
                    handle,
                    hidden_at: asked,
                });
                // A body set aside as a dead letter is still received: the
                // commit that passes it deletes it.
                if let Some(message) = self.decode(message)? {
                    out.push(message);
                }
            }
        }
        // Once exhausted, what it holds is committed at the end of the run;
        // meanwhile other readers may be handed it again when its visibility
        // ends, and the registry keeps them from emitting it twice.
        Ok(self.batches.poll(out))
    }

    fn snapshot(&self) -> Option<SqsPosition> {
        Some(SqsPosition {
            received: self.received,
            pending: lock(&self.in_flight)
                .iter()
                .map(|m| lock(&m.handle).clone())
                .collect(),
        })
    }

    fn commit(&mut self, position: &SqsPosition) -> riffle::Result<()> {
        // The letters of the messages this position passed are safe before
        // those messages are deleted.
        self.decoder.sync(&self.step_id)?;
        let mut handles = Vec::new();
        let mut in_flight = lock(&self.in_flight);
        while in_flight
            .front()
            .is_some_and(|m| m.seq <= position.received)
        {
            if let Some(m) = in_flight.pop_front() {
                lock(registry()).remove(&m.key);
                handles.push(lock(&m.handle).clone());
            }
        }
        drop(in_flight);
        if handles.is_empty() {
            return Ok(());
        }
        let client = self.client.clone();
        let (queue, url) = (self.queue.clone(), self.url.clone());
        self.tasks.push(runtime::handle().spawn(async move {
            delete(&client, &queue, &url, handles).await;
        }));
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.batches.stop();
        self.extender.abort();
        // Let the last deletes land.
        let tasks = std::mem::take(&mut self.tasks);
        let timeout = self.client.settings.timeout_duration() * 2;
        runtime::handle().block_on(async {
            let all = async {
                for t in tasks {
                    let _ = t.await;
                }
            };
            let _ = tokio::time::timeout(timeout, all).await;
        });
        Ok(())
    }
}

impl<F> Drop for SqsSourcePartition<F> {
    fn drop(&mut self) {
        self.batches.stop();
        self.extender.abort();
        let mut registry = lock(registry());
        for m in lock(&self.in_flight).iter() {
            registry.remove(&m.key);
        }
    }
}
