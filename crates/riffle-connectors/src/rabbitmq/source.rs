//! The RabbitMQ source: each queue a partition, consumed with manual
//! acknowledgements that only the commit hook sends.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::message::RabbitMessage;
use super::retry;
use super::settings::RabbitSettings;
use crate::format::{Bytes, Decoder, Format};
use crate::{ConnectorError, runtime};

/// The most messages one poll returns.
const BATCH: usize = 4096;

/// A partition's position, its snapshot state: how many messages it has emitted,
/// which the commit hook acknowledges up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RabbitPosition {
    /// Messages emitted so far by this partition, over every run.
    pub emitted: u64,
}

/// Consumes RabbitMQ queues; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RabbitSource<F = Bytes> {
    settings: RabbitSettings,
    queues: Vec<String>,
    prefetch: u16,
    tail: bool,
    decoder: Decoder<F>,
}

impl RabbitSource<Bytes> {
    /// Consumes the queues with these names on the broker of `settings`, bodies
    /// as bytes, following new messages for ever.
    pub fn new<T: Into<String>>(
        settings: RabbitSettings,
        queues: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            settings,
            queues: queues.into_iter().map(Into::into).collect(),
            prefetch: 10_000,
            tail: true,
            decoder: Decoder::new(Bytes),
        }
    }
}

impl<F: Format> RabbitSource<F> {
    /// Decodes bodies with `format` ([`crate::format::Utf8`],
    /// [`crate::format::Json`], ...): items become `RabbitMessage<F::Value>`. A
    /// body the format refuses stops the run with an error naming the queue,
    /// the delivery tag and the message id, unless
    /// [`RabbitSource::dead_letters`] takes it.
    ///
    /// ```no_run
    /// use riffle_connectors::format::Json;
    /// use riffle_connectors::rabbitmq::{RabbitSettings, RabbitSource};
    /// let source = RabbitSource::new(RabbitSettings::new("amqp://127.0.0.1:5672/%2f"), ["orders"])
    ///     .format(Json::<serde_json::Value>::new())
    ///     .dead_letters(riffle::dead_letters::DeadLetters::stream());
    /// ```
    pub fn format<G: Format>(self, format: G) -> RabbitSource<G> {
        RabbitSource {
            settings: self.settings,
            queues: self.queues,
            prefetch: self.prefetch,
            tail: self.tail,
            decoder: self.decoder.format(format),
        }
    }

    /// Messages whose body the format cannot decode go to `letters` (with
    /// `queue`, `delivery_tag`, `message_id`, `reason` and the body), the step's
    /// dead-letter stream or a file, and are skipped instead of stopping the
    /// run; they are acknowledged with the commit that passes them, once their
    /// letter is safe. See [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: riffle::dead_letters::DeadLetters) -> Self {
        self.decoder = self.decoder.dead_letters(Some(letters));
        self
    }

    /// How many messages the broker may deliver to a partition before it has
    /// acknowledged them (default 10,000; AMQP's most is 65,535). Messages are
    /// acknowledged at each commit, so a queue is read at most a prefetch per
    /// commit: with the engine's default 10 s epochs and no store, 1,000
    /// messages a second. Raise it, or commit more often (a shorter epoch or
    /// snapshot interval); a partition that waits says so once on stderr.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Whether to follow new messages for ever (`true`, the default) or stop each
    /// queue after the messages it held ready when the run started.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }
}

impl<F: Format> FixedPartitionedSource for RabbitSource<F> {
    type Item = RabbitMessage<F::Value>;
    type State = RabbitPosition;
    type Partition = RabbitSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.queues.is_empty() {
            return Err(self
                .settings
                .error("the source names no queue")
                .for_step(step_id));
        }
        Ok(self.queues.clone())
    }

    /// The messages ready in the queues (those delivered and not yet
    /// acknowledged are being worked on).
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        let mut total = 0u64;
        for queue in &self.queues {
            total += u64::from(
                super::admin::message_count(&self.settings, queue)
                    .map_err(|e| e.for_step(step_id))?,
            );
        }
        Ok(Some(total))
    }

    fn describe(&self, _step_id: &str) -> Option<riffle::sources::SourceInfo> {
        Some(riffle::sources::SourceInfo {
            system: "rabbitmq",
            fields: vec![("queue", self.queues.join(","))],
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<RabbitPosition>,
    ) -> riffle::Result<RabbitSourcePartition<F>> {
        let mut reader = Reader {
            settings: self.settings.clone(),
            queue: Arc::from(for_part),
            tag: format!("riffle.{step_id}.{}", std::process::id()),
            prefetch: self.prefetch,
            remaining: None,
            done_sent: false,
            generation: 0,
        };
        let (link, ready) = runtime::handle()
            .block_on(reader.open(Some(self.settings.timeout_duration())))
            .map_err(|e| e.for_step(step_id))?;
        if !self.tail {
            reader.remaining = Some(u64::from(ready));
        }
        // Unbounded, yet bounded by the prefetch: the broker delivers no more
        // than that many messages before they are acknowledged.
        let (tx, batches) = mpsc::unbounded_channel();
        let (orders, orders_rx) = mpsc::unbounded_channel();
        let task = runtime::handle().spawn(reader.run(link, tx, orders_rx));
        let position = resume_state.unwrap_or_default();
        Ok(RabbitSourcePartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            queue: Arc::from(for_part),
            decoder: self.decoder.clone(),
            batches,
            orders,
            reader: Some(task),
            emitted: position.emitted,
            generation: 0,
            unacked: VecDeque::new(),
            prefetch: usize::from(self.prefetch),
            told_full: false,
            done: false,
        })
    }
}

/// What the reading task hands the partition.
enum Read {
    /// Messages delivered on the channel of `generation`, with their delivery tags.
    Messages {
        generation: u64,
        messages: Vec<(u64, RabbitMessage)>,
    },
    /// A bounded read reached its end.
    Done,
    /// Reading failed for good.
    Failed(ConnectorError),
}

/// What the partition asks of the reading task, in order.
enum Order {
    /// Acknowledge every delivery up to `tag` on the channel of `generation`
    /// (nothing when that channel is gone: the broker gave its messages back).
    Ack { generation: u64, tag: u64 },
    /// Send the acknowledgements asked so far, close the connection, answer.
    Close(oneshot::Sender<Result<(), ConnectorError>>),
}

/// One open connection with its consumer.
struct Link {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

/// The task that consumes one queue on the shared runtime and sends the
/// acknowledgements on the same channel; it opens a new connection (a new
/// generation of delivery tags) when the broker goes away.
struct Reader {
    settings: RabbitSettings,
    queue: Arc<str>,
    tag: String,
    prefetch: u16,
    /// For a bounded read: how many messages are still to come.
    remaining: Option<u64>,
    /// Whether the bounded read's end was announced.
    done_sent: bool,
    generation: u64,
}

impl Reader {
    /// Connects and starts consuming; the queue's ready messages with the link.
    async fn open(
        &self,
        patience: Option<std::time::Duration>,
    ) -> Result<(Link, u32), ConnectorError> {
        let what = format!("consuming queue {:?}", self.queue);
        let (connection, channel) =
            retry::connect(&self.settings, &self.tag, &what, patience).await?;
        // Each request bounded: a broker that takes the connection and then does
        // not answer (still starting, or gone again) is an error, tried again.
        let ready = retry::within(
            &self.settings,
            || format!("cannot look up queue {:?}", self.queue),
            super::admin::queue_size(&self.settings, &channel, &self.queue),
        )
        .await?;
        retry::within(
            &self.settings,
            || format!("cannot set the prefetch (queue {:?})", self.queue),
            async {
                channel
                    .basic_qos(self.prefetch, BasicQosOptions::default())
                    .await
                    .map_err(|e| self.error("cannot set the prefetch").caused_by(e))
            },
        )
        .await?;
        let consumer = retry::within(
            &self.settings,
            || format!("cannot consume (queue {:?})", self.queue),
            async {
                channel
                    .basic_consume(
                        (&*self.queue).into(),
                        self.tag.as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.error("cannot consume").caused_by(e))
            },
        )
        .await?;
        Ok((
            Link {
                connection,
                channel,
                consumer,
            },
            ready,
        ))
    }

    fn error(&self, action: &str) -> ConnectorError {
        self.settings
            .error(format!("{action} (queue {:?})", self.queue))
    }

    async fn run(
        mut self,
        mut link: Link,
        tx: mpsc::UnboundedSender<Read>,
        mut orders: mpsc::UnboundedReceiver<Order>,
    ) {
        loop {
            match self.consume(&mut link, &tx, &mut orders).await {
                Ok(()) => return,
                Err(Lost(e)) => {
                    // The broker gives back what was delivered and not acknowledged:
                    // it comes again on the next connection (at-least-once).
                    eprintln!(
                        "rabbitmq at {}: the connection consuming queue {:?} broke ({e}); \
                         connecting again",
                        self.settings.server(),
                        self.queue
                    );
                    retry::close(&self.settings, &link.connection, "reconnecting").await;
                    // Tried for ever, a timeout at a time, while the partition lives.
                    let patience = Some(self.settings.timeout_duration());
                    let mut missing_since = None;
                    loop {
                        if tx.is_closed() {
                            return;
                        }
                        match self.open(patience).await {
                            Ok((next, ready)) => {
                                link = next;
                                self.generation += 1;
                                // A bounded read ends after what the queue holds now.
                                // Unless it was over, the messages given back
                                // included.
                                if self.remaining.is_some() && !self.done_sent {
                                    self.remaining = Some(u64::from(ready));
                                }
                                break;
                            }
                            Err(e) if retry::transient(&e) => {}
                            // A broker just restarted may not have recovered the
                            // queue yet.
                            Err(e)
                                if retry::missing(&e)
                                    && missing_since
                                        .get_or_insert_with(tokio::time::Instant::now)
                                        .elapsed()
                                        < self.settings.timeout_duration() =>
                            {
                                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                            }
                            Err(e) => {
                                let _ = tx.send(Read::Failed(e));
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Consumes until done (`Ok`) or until the connection breaks.
    async fn consume(
        &mut self,
        link: &mut Link,
        tx: &mpsc::UnboundedSender<Read>,
        orders: &mut mpsc::UnboundedReceiver<Order>,
    ) -> Result<(), Lost> {
        // A bounded read ends (`Done`) once `remaining` is 0; its last
        // acknowledgements come with the run's last commit, before the close.
        let mut finished = self.remaining == Some(0);
        if finished && !self.done_sent {
            self.done_sent = true;
            let _ = tx.send(Read::Done);
        }
        loop {
            tokio::select! {
                biased;
                order = orders.recv() => match order {
                    Some(Order::Ack { generation, tag }) => {
                        if generation == self.generation {
                            let timeout = self.settings.timeout_duration();
                            let acked = link
                                .channel
                                .basic_ack(tag, BasicAckOptions { multiple: true });
                            match tokio::time::timeout(timeout, acked).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => return Err(Lost(e.to_string())),
                                Err(_) => {
                                    return Err(Lost(format!(
                                        "an acknowledgement was not sent within {timeout:?}"
                                    )));
                                }
                            }
                        }
                    }
                    Some(Order::Close(answer)) => {
                        let closed = retry::within(
                            &self.settings,
                            || format!("cannot close the connection (queue {:?})", self.queue),
                            async {
                                link.connection
                                    .close(200, "the run is over".into())
                                    .await
                                    .map_err(|e| self.error("cannot close the connection").caused_by(e))
                            },
                        )
                        .await;
                        let _ = answer.send(closed);
                        return Ok(());
                    }
                    // The partition is gone; the broker gives back what was not
                    // acknowledged when the connection closes.
                    None => {
                        retry::close(&self.settings, &link.connection, "dropped").await;
                        return Ok(());
                    }
                },
                delivery = link.consumer.next(), if !finished => {
                    let mut messages = Vec::new();
                    let mut next = delivery;
                    loop {
                        match next {
                            Some(Ok(d)) => {
                                messages.push((d.delivery_tag, RabbitMessage::delivered(&self.queue, d)));
                                if let Some(r) = self.remaining.as_mut() {
                                    *r -= 1;
                                    if *r == 0 {
                                        finished = true;
                                        break;
                                    }
                                }
                            }
                            Some(Err(e)) => {
                                self.send(tx, messages);
                                return Err(Lost(e.to_string()));
                            }
                            None => {
                                self.send(tx, messages);
                                return Err(Lost("the broker cancelled the consumer".into()));
                            }
                        }
                        if messages.len() >= BATCH {
                            break;
                        }
                        match link.consumer.next().now_or_never() {
                            Some(more) => next = more,
                            None => break,
                        }
                    }
                    self.send(tx, messages);
                    if finished {
                        self.done_sent = true;
                        let _ = tx.send(Read::Done);
                    }
                }
            }
        }
    }

    fn send(&self, tx: &mpsc::UnboundedSender<Read>, messages: Vec<(u64, RabbitMessage)>) {
        if !messages.is_empty() {
            let _ = tx.send(Read::Messages {
                generation: self.generation,
                messages,
            });
        }
    }
}

/// The connection broke: why.
struct Lost(String);

/// One queue being consumed; made by [`RabbitSource`].
pub struct RabbitSourcePartition<F = Bytes> {
    step_id: String,
    settings: RabbitSettings,
    queue: Arc<str>,
    decoder: Decoder<F>,
    batches: mpsc::UnboundedReceiver<Read>,
    orders: mpsc::UnboundedSender<Order>,
    /// The reading task; dropping the partition closes its channels, and the
    /// task then closes the connection and ends.
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Messages emitted so far (the position's count).
    emitted: u64,
    /// The channel generation of the newest delivery.
    generation: u64,
    /// Emitted and not yet acknowledged: (count when emitted, generation, tag).
    unacked: VecDeque<(u64, u64, u64)>,
    /// The prefetch: with this many unacknowledged, the broker sends no more.
    prefetch: usize,
    /// Whether a full prefetch window was reported.
    told_full: bool,
    done: bool,
}

impl<F: Format> RabbitSourcePartition<F> {
    /// The message of delivery `tag` with its body decoded; `None` when it went
    /// to the dead letters.
    fn decode(
        &self,
        tag: u64,
        message: RabbitMessage,
    ) -> riffle::Result<Option<RabbitMessage<F::Value>>> {
        let position = || {
            [
                ("queue", (*self.queue).into()),
                ("delivery_tag", tag.into()),
                ("message_id", message.message_id.clone().into()),
            ]
        };
        let fail = |what: String| self.settings.error(what).for_step(&self.step_id);
        let bytes = &message.payload;
        let Some(payload) = self.decoder.decode(&self.step_id, position, bytes, fail)? else {
            return Ok(None);
        };
        Ok(Some(RabbitMessage {
            queue: message.queue,
            exchange: message.exchange,
            routing_key: message.routing_key,
            redelivered: message.redelivered,
            message_id: message.message_id,
            payload,
        }))
    }

    fn stopped(&self) -> riffle::RiffleError {
        self.settings
            .error(format!("the consumer of queue {:?} stopped", self.queue))
            .for_step(&self.step_id)
    }
}

impl<F: Format> SourcePartition for RabbitSourcePartition<F> {
    type Item = RabbitMessage<F::Value>;
    type State = RabbitPosition;

    fn next_batch(&mut self) -> riffle::Result<Poll<RabbitMessage<F::Value>>> {
        if self.done {
            return Ok(Poll::Exhausted);
        }
        let mut out = Vec::new();
        while out.len() < BATCH {
            match self.batches.try_recv() {
                Ok(Read::Messages {
                    generation,
                    messages,
                }) => {
                    if generation != self.generation {
                        // The old channel is gone and its deliveries with it.
                        self.unacked.clear();
                        self.generation = generation;
                    }
                    for (tag, message) in messages {
                        self.emitted += 1;
                        self.unacked.push_back((self.emitted, generation, tag));
                        // A body set aside as a dead letter is still consumed:
                        // the commit that passes it acknowledges it.
                        if let Some(message) = self.decode(tag, message)? {
                            out.push(message);
                        }
                    }
                }
                Ok(Read::Done) => {
                    self.done = true;
                    break;
                }
                Ok(Read::Failed(e)) => return Err(e.for_step(&self.step_id)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(self.stopped()),
            }
        }
        if out.is_empty() {
            if self.unacked.len() >= self.prefetch && !self.told_full {
                // Reading waits for the next commit: say so once, and what helps.
                self.told_full = true;
                eprintln!(
                    "step {:?}: rabbitmq at {}: queue {:?} waits for the next commit with \
                     {} messages unacknowledged (the prefetch); a queue is read at most \
                     a prefetch per commit: raise the prefetch or commit more often \
                     (a shorter epoch or snapshot interval)",
                    self.step_id,
                    self.settings.server(),
                    self.queue,
                    self.prefetch
                );
            }
            return Ok(if self.done {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        Ok(Poll::Ready(out))
    }

    fn snapshot(&self) -> Option<RabbitPosition> {
        Some(RabbitPosition {
            emitted: self.emitted,
        })
    }

    fn commit(&mut self, position: &RabbitPosition) -> riffle::Result<()> {
        // The letters of the messages this position passed are safe before
        // those messages are acknowledged.
        self.decoder.sync(&self.step_id)?;
        let mut last = None;
        while let Some(&(n, generation, tag)) = self.unacked.front() {
            if n > position.emitted {
                break;
            }
            self.unacked.pop_front();
            last = Some((generation, tag));
        }
        if let Some((generation, tag)) = last
            && self.orders.send(Order::Ack { generation, tag }).is_err()
        {
            return Err(self.stopped());
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        let Some(reader) = self.reader.take() else {
            return Ok(());
        };
        let (answer, closed) = oneshot::channel();
        if self.orders.send(Order::Close(answer)).is_err() {
            // The reader stopped: what it said is in the batches.
            while let Ok(read) = self.batches.try_recv() {
                if let Read::Failed(e) = read {
                    return Err(e.for_step(&self.step_id));
                }
            }
            return Ok(());
        }
        let timeout = self.settings.timeout_duration();
        let closed = runtime::handle().block_on(async {
            let closed = tokio::time::timeout(timeout, closed).await;
            reader.abort();
            closed
        });
        match closed {
            Ok(Ok(result)) => result.map_err(|e| e.for_step(&self.step_id)),
            Ok(Err(_)) => Err(self.stopped()),
            Err(_) => Err(self
                .settings
                .error(format!(
                    "closing the consumer of queue {:?}: no answer within {timeout:?}",
                    self.queue
                ))
                .for_step(&self.step_id)),
        }
    }
}
