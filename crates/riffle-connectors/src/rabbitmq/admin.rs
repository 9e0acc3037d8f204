//! Managing queues and exchanges: what tests, set-up scripts and Flows call to
//! make, inspect and remove what a flow reads and writes. Each function opens a
//! connection of its own and closes it.
//!
//! ```no_run
//! use riffle_connectors::rabbitmq::{admin, RabbitSettings};
//! let mq = RabbitSettings::new("amqp://127.0.0.1:5672/%2f");
//! admin::create_queue(&mq, "orders")?;
//! assert_eq!(admin::message_count(&mq, "orders")?, 0);
//! admin::delete_queue(&mq, "orders")?;
//! # Ok::<(), riffle_connectors::ConnectorError>(())
//! ```

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use super::settings::RabbitSettings;
use crate::{ConnectorError, runtime};

/// Runs `f` on a channel of a fresh connection, within the settings' timeout.
fn with_channel<T>(
    settings: &RabbitSettings,
    what: &str,
    f: impl AsyncFnOnce(&Channel) -> Result<T, lapin::Error>,
) -> Result<T, ConnectorError> {
    runtime::handle().block_on(async {
        let (connection, channel) = settings.connect("admin").await?;
        let timeout = settings.timeout_duration();
        let done = tokio::time::timeout(timeout, f(&channel)).await;
        let _ = connection.close(200, "done".into()).await;
        match done {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(settings.error(what.to_string()).caused_by(e)),
            Err(_) => Err(settings.error(format!("{what}: no answer within {timeout:?}"))),
        }
    })
}

/// Makes a durable queue `queue` unless it exists.
pub fn create_queue(settings: &RabbitSettings, queue: &str) -> Result<(), ConnectorError> {
    let what = format!("cannot make queue {queue:?}");
    with_channel(settings, &what, async |c| {
        let options = QueueDeclareOptions::durable();
        c.queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map(drop)
    })
}

/// Removes `queue` and the messages in it (nothing when it does not exist).
pub fn delete_queue(settings: &RabbitSettings, queue: &str) -> Result<(), ConnectorError> {
    let what = format!("cannot remove queue {queue:?}");
    with_channel(settings, &what, async |c| {
        c.queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .map(drop)
    })
}

/// Removes every message ready in `queue`.
pub fn purge_queue(settings: &RabbitSettings, queue: &str) -> Result<(), ConnectorError> {
    let what = format!("cannot purge queue {queue:?}");
    with_channel(settings, &what, async |c| {
        c.queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .map(drop)
    })
}

/// How many messages are ready in `queue` (not counting those delivered and not
/// yet acknowledged). A missing queue is an error naming it.
pub fn message_count(settings: &RabbitSettings, queue: &str) -> Result<u32, ConnectorError> {
    runtime::handle().block_on(async {
        let (connection, channel) = settings.connect("admin").await?;
        let count = queue_size(settings, &channel, queue).await;
        let _ = connection.close(200, "done".into()).await;
        count
    })
}

/// Makes a durable exchange of `kind` (`direct`, `fanout`, `topic`, `headers`)
/// unless it exists.
pub fn create_exchange(
    settings: &RabbitSettings,
    exchange: &str,
    kind: &str,
) -> Result<(), ConnectorError> {
    let kind = match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => {
            return Err(settings.error(format!(
                "exchange {exchange:?}: unknown kind {other:?} (direct, fanout, topic or headers)"
            )));
        }
    };
    let what = format!("cannot make exchange {exchange:?}");
    with_channel(settings, &what, async |c| {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        c.exchange_declare(exchange.into(), kind, options, FieldTable::default())
            .await
    })
}

/// Removes `exchange`.
pub fn delete_exchange(settings: &RabbitSettings, exchange: &str) -> Result<(), ConnectorError> {
    let what = format!("cannot remove exchange {exchange:?}");
    with_channel(settings, &what, async |c| {
        c.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await
    })
}

/// Binds `queue` to `exchange` for messages with `routing_key`.
pub fn bind_queue(
    settings: &RabbitSettings,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), ConnectorError> {
    let what = format!("cannot bind queue {queue:?} to exchange {exchange:?}");
    with_channel(settings, &what, async |c| {
        c.queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
}

/// The ready messages of `queue` on an open channel; a missing queue is an error
/// naming it. The broker closes a channel whose passive declare fails: use a
/// channel of its own.
pub(crate) async fn queue_size(
    settings: &RabbitSettings,
    channel: &Channel,
    queue: &str,
) -> Result<u32, ConnectorError> {
    let options = QueueDeclareOptions::default().passive();
    match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(q) => Ok(q.message_count()),
        Err(e) if e.to_string().contains("NOT_FOUND") => Err(settings
            .error(format!("queue {queue:?} does not exist"))
            .caused_by(e)),
        Err(e) => Err(settings
            .error(format!("cannot look up queue {queue:?}"))
            .caused_by(e)),
    }
}
