//! The RabbitMQ sink: records published with publisher confirms, each routing key
//! a partition of the sink, confirmed before the flow's epoch moves on.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};

use super::message::RabbitRecord;
use super::retry;
use super::settings::RabbitSettings;
use crate::writer::{BatchWriter, InFlight};
use crate::{ConnectorError, runtime};

/// The most batches a partition keeps in flight before it waits.
const IN_FLIGHT: usize = 8;

/// How many times a batch is published (the first time included) before its
/// failure stops the run.
const TRIES: u32 = 3;

/// Publishes records to RabbitMQ; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RabbitSink {
    settings: RabbitSettings,
    exchange: String,
    routing_keys: Vec<String>,
    persistent: bool,
}

impl RabbitSink {
    /// Publishes straight to the queues with these names (through the default
    /// exchange, whose routing keys are queue names); a record with a key always
    /// goes to the same queue. The queues must exist.
    pub fn queues<T: Into<String>>(
        settings: RabbitSettings,
        queues: impl IntoIterator<Item = T>,
    ) -> Self {
        Self::exchange(settings, "", queues)
    }

    /// Publishes to `exchange` with these routing keys; a record with a key
    /// always goes with the same routing key. Every message must reach a queue:
    /// one the exchange routes nowhere is an error naming it.
    pub fn exchange<T: Into<String>>(
        settings: RabbitSettings,
        exchange: impl Into<String>,
        routing_keys: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            settings,
            exchange: exchange.into(),
            routing_keys: routing_keys.into_iter().map(Into::into).collect(),
            persistent: true,
        }
    }

    /// Whether messages are persistent (delivery mode 2, the default: a durable
    /// queue keeps them through a broker restart) or transient.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    fn target(&self, routing_key: &str) -> String {
        if self.exchange.is_empty() {
            format!("queue {routing_key:?}")
        } else {
            format!("exchange {:?} (routing key {routing_key:?})", self.exchange)
        }
    }
}

impl FixedPartitionedSink for RabbitSink {
    type Item = RabbitRecord;
    type State = ();
    type Partition = RabbitSinkPartition;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.routing_keys.is_empty() {
            let what = if self.exchange.is_empty() {
                "the sink names no queue".to_string()
            } else {
                format!(
                    "the sink names no routing key for exchange {:?}",
                    self.exchange
                )
            };
            return Err(self.settings.error(what).for_step(step_id));
        }
        Ok(self.routing_keys.clone())
    }

    fn part_fn(&self, item: &RabbitRecord, parts: usize) -> usize {
        let hash = match &item.key {
            Some(key) => riffle::exchange::stable_hash(key),
            None => riffle::exchange::stable_hash(&item.payload),
        };
        (hash % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        _resume_state: Option<()>,
    ) -> riffle::Result<RabbitSinkPartition> {
        let mut writer = Writer {
            settings: self.settings.clone(),
            exchange: self.exchange.clone(),
            routing_key: for_part.to_string(),
            target: self.target(for_part),
            persistent: self.persistent,
            link: None,
        };
        runtime::handle()
            .block_on(writer.open(Some(self.settings.timeout_duration())))
            .map_err(|e| e.for_step(step_id))?;
        let target = writer.target.clone();
        let batches = InFlight::start(
            writer,
            IN_FLIGHT,
            "rabbitmq",
            self.settings.server(),
            target,
        );
        Ok(RabbitSinkPartition {
            step_id: step_id.to_string(),
            batches,
        })
    }
}

/// The task that publishes one partition's batches in order on a channel in
/// confirm mode, connecting again when the broker goes away.
struct Writer {
    settings: RabbitSettings,
    exchange: String,
    routing_key: String,
    target: String,
    persistent: bool,
    link: Option<(Connection, Channel)>,
}

/// Why a batch was not confirmed.
enum Failure {
    /// The connection broke: publish the batch again on a new one.
    Lost(String),
    /// The broker said no: stop.
    Refused(ConnectorError),
}

impl Writer {
    /// Connects, checks the target exists and turns confirms on.
    async fn open(&mut self, patience: Option<std::time::Duration>) -> Result<(), ConnectorError> {
        let what = format!("publishing to {}", self.target);
        let (connection, channel) = retry::connect(&self.settings, "sink", &what, patience).await?;
        // Each request bounded: a broker that takes the connection and then does
        // not answer is an error naming it, never a wait for ever.
        if self.exchange.is_empty() {
            retry::within(
                &self.settings,
                || format!("cannot look up queue {:?}", self.routing_key),
                super::admin::queue_size(&self.settings, &channel, &self.routing_key),
            )
            .await?;
        } else {
            let options = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            retry::within(
                &self.settings,
                || format!("cannot look up exchange {:?}", self.exchange),
                async {
                    channel
                        .exchange_declare(
                            self.exchange.as_str().into(),
                            ExchangeKind::Direct,
                            options,
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| {
                            let why = if e.to_string().contains("NOT_FOUND") {
                                format!("exchange {:?} does not exist", self.exchange)
                            } else {
                                format!("cannot look up exchange {:?}", self.exchange)
                            };
                            self.settings.error(why).caused_by(e)
                        })
                },
            )
            .await?;
        }
        retry::within(
            &self.settings,
            || format!("cannot turn on publisher confirms for {}", self.target),
            async {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| {
                        self.settings
                            .error(format!(
                                "cannot turn on publisher confirms for {}",
                                self.target
                            ))
                            .caused_by(e)
                    })
            },
        )
        .await?;
        self.link = Some((connection, channel));
        Ok(())
    }

    /// Publishes `records` until confirmed, through reconnections: a batch the
    /// broker took before the connection broke is then published twice
    /// (at-least-once), never lost. Each try waits for the broker's confirms no
    /// longer than the settings' timeout (a connection that stopped answering
    /// counts as broken), and after a failure connecting again may take as long;
    /// after [`TRIES`] tries the batch is an error naming the server and target.
    async fn deliver(&mut self, records: &[RabbitRecord]) -> Result<(), ConnectorError> {
        let timeout = self.settings.timeout_duration();
        let mut tries = 0;
        loop {
            tries += 1;
            let why = match self.connected(timeout).await? {
                Some(why) => why,
                None => match tokio::time::timeout(timeout, self.publish(records)).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(Failure::Refused(e))) => return Err(e),
                    Ok(Err(Failure::Lost(why))) => why,
                    Err(_) => self.unconfirmed(timeout),
                },
            };
            if let Some((connection, _)) = self.link.take() {
                retry::close(&self.settings, &connection, "reconnecting").await;
            }
            if tries >= TRIES {
                return Err(self.settings.error(format!(
                    "cannot publish {} messages to {} ({tries} tries): {why}",
                    records.len(),
                    self.target
                )));
            }
        }
    }

    /// Connects again unless connected, waiting for the broker up to `timeout`
    /// (and as long for a restarted broker to recover the target): `Some(why)`
    /// when it did not answer (worth another try), an error when it said no.
    async fn connected(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<String>, ConnectorError> {
        if self.link.is_some() {
            return Ok(None);
        }
        let mut missing_since = None;
        loop {
            match self.open(Some(timeout)).await {
                Ok(()) => return Ok(None),
                Err(e) if retry::transient(&e) => return Ok(Some(e.to_string())),
                // A broker just restarted may not have recovered the queue or
                // exchange yet.
                Err(e)
                    if retry::missing(&e)
                        && missing_since
                            .get_or_insert_with(tokio::time::Instant::now)
                            .elapsed()
                            < timeout =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Why a batch is unconfirmed after `timeout`: the broker blocking publishers
    /// (a memory or disk alarm) said as such.
    fn unconfirmed(&self, timeout: std::time::Duration) -> String {
        let blocked = self
            .link
            .as_ref()
            .is_some_and(|(connection, _)| connection.status().blocked());
        if blocked {
            format!(
                "not confirmed within {timeout:?}: the broker blocks publishers \
                 (a memory or disk alarm)"
            )
        } else {
            format!("not confirmed within {timeout:?}")
        }
    }

    async fn publish(&mut self, records: &[RabbitRecord]) -> Result<(), Failure> {
        let Some((_, channel)) = &self.link else {
            return Err(Failure::Lost("not connected".into()));
        };
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let mut confirms = Vec::with_capacity(records.len());
        for record in records {
            let mut properties = BasicProperties::default();
            if self.persistent {
                properties = properties.with_delivery_mode(2);
            }
            if let Some(id) = &record.message_id {
                properties = properties.with_message_id(id.as_str().into());
            }
            let confirm = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    self.routing_key.as_str().into(),
                    options,
                    &record.payload,
                    properties,
                )
                .await
                .map_err(|e| Failure::Lost(e.to_string()))?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(|e| Failure::Lost(e.to_string()))? {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(_)) => {
                    let why = if self.exchange.is_empty() {
                        format!("queue {:?} does not exist", self.routing_key)
                    } else {
                        format!(
                            "exchange {:?} routes routing key {:?} to no queue",
                            self.exchange, self.routing_key
                        )
                    };
                    return Err(Failure::Refused(
                        self.settings
                            .error(format!("a message was returned: {why}")),
                    ));
                }
                Confirmation::Nack(_) => {
                    return Err(Failure::Refused(self.settings.error(format!(
                        "the broker refused a message for {} (a negative confirm)",
                        self.target
                    ))));
                }
            }
        }
        Ok(())
    }
}

impl BatchWriter for Writer {
    type Batch = Vec<RabbitRecord>;

    async fn write(&mut self, records: Vec<RabbitRecord>) -> Result<(), ConnectorError> {
        self.deliver(&records).await
    }

    async fn close(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            retry::close(&self.settings, &connection, "the run is over").await;
        }
    }
}

/// One routing key being published to; made by [`RabbitSink`].
pub struct RabbitSinkPartition {
    step_id: String,
    batches: InFlight<Vec<RabbitRecord>>,
}

impl SinkPartition for RabbitSinkPartition {
    type Item = RabbitRecord;
    type State = ();

    fn write_batch(&mut self, items: Vec<RabbitRecord>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.batches
            .send(items)
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.batches.flush().map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<()>> {
        self.flush()?;
        Ok(Some(()))
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.flush()
    }
}
