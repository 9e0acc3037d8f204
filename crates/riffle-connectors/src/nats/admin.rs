//! Managed streams and consumers: create and delete them, for set-up, tests and
//! the applications that own their streams (`riffle flow plan/apply/destroy`).
//!
//! Each function connects, does one thing and answers whether anything changed, so
//! calling it again is harmless.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, StorageType};
use serde::{Deserialize, Serialize};

use super::settings::NatsSettings;
use crate::ConnectorError;

/// What a managed stream holds and for how long it remembers message ids.
///
/// ```
/// use riffle_connectors::nats::admin::StreamSpec;
/// let spec = StreamSpec::new("ORDERS", ["orders.>"]);
/// assert_eq!(spec.duplicate_window_ms, 120_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    /// The stream's name (no spaces, `.`, `*` or `>`).
    pub name: String,
    /// The subjects it captures (wildcards allowed).
    pub subjects: Vec<String>,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a republished
    /// message, in ms (the server's default is 2 minutes). The sink's
    /// exactly-once holds only for replays within this window.
    #[serde(default = "default_window_ms")]
    pub duplicate_window_ms: u64,
    /// Keep messages in memory instead of files.
    #[serde(default)]
    pub memory: bool,
}

fn default_window_ms() -> u64 {
    120_000
}

impl StreamSpec {
    /// A file-backed stream `name` capturing `subjects`, with a 2-minute
    /// duplicate window.
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        subjects: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            name: name.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            duplicate_window_ms: default_window_ms(),
            memory: false,
        }
    }

    /// The same with another duplicate window.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window_ms = window.as_millis() as u64;
        self
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    crate::runtime::handle().block_on(f)
}

/// Creates the stream `spec` describes. Returns `false` when a stream of that
/// name already existed (left as it is).
pub fn create_stream(settings: &NatsSettings, spec: &StreamSpec) -> Result<bool, ConnectorError> {
    block_on(async {
        let js = settings.jetstream().await?;
        if js.get_stream(&spec.name).await.is_ok() {
            return Ok(false);
        }
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            duplicate_window: Duration::from_millis(spec.duplicate_window_ms),
            storage: if spec.memory {
                StorageType::Memory
            } else {
                StorageType::File
            },
            ..Default::default()
        };
        js.create_stream(config).await.map_err(|e| {
            settings
                .error(format!("cannot create stream {:?}", spec.name))
                .caused_by(e)
        })?;
        Ok(true)
    })
}

/// Deletes the stream `name` with its messages and consumers. Returns `false`
/// when there was no such stream.
pub fn delete_stream(settings: &NatsSettings, name: &str) -> Result<bool, ConnectorError> {
    block_on(async {
        let js = settings.jetstream().await?;
        if js.get_stream(name).await.is_err() {
            return Ok(false);
        }
        js.delete_stream(name).await.map_err(|e| {
            settings
                .error(format!("cannot delete stream {name:?}"))
                .caused_by(e)
        })?;
        Ok(true)
    })
}

/// Creates the durable pull consumer `durable` on `stream`, reading `filter` (all
/// the stream when empty) from its first message, acknowledging cumulatively as
/// the source does. Returns `false` when it already existed.
pub fn create_consumer(
    settings: &NatsSettings,
    stream: &str,
    durable: &str,
    filter: &str,
) -> Result<bool, ConnectorError> {
    block_on(async {
        let js = settings.jetstream().await?;
        let s = js.get_stream(stream).await.map_err(|e| {
            settings
                .error(format!("stream {stream:?} does not exist"))
                .caused_by(e)
        })?;
        if s.consumer_info(durable).await.is_ok() {
            return Ok(false);
        }
        s.create_consumer(pull::Config {
            durable_name: Some(durable.to_string()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            filter_subject: filter.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            settings
                .error(format!(
                    "cannot create consumer {durable:?} on stream {stream:?}"
                ))
                .caused_by(e)
        })?;
        Ok(true)
    })
}

/// Deletes the consumer `durable` of `stream`. Returns `false` when there was no
/// such consumer (or no such stream).
pub fn delete_consumer(
    settings: &NatsSettings,
    stream: &str,
    durable: &str,
) -> Result<bool, ConnectorError> {
    block_on(async {
        let js = settings.jetstream().await?;
        let Ok(s) = js.get_stream(stream).await else {
            return Ok(false);
        };
        if s.consumer_info(durable).await.is_err() {
            return Ok(false);
        }
        s.delete_consumer(durable).await.map_err(|e| {
            settings
                .error(format!(
                    "cannot delete consumer {durable:?} of stream {stream:?}"
                ))
                .caused_by(e)
        })?;
        Ok(true)
    })
}

/// Whether stream `name` exists.
pub fn stream_exists(settings: &NatsSettings, name: &str) -> Result<bool, ConnectorError> {
    block_on(async {
        let js = settings.jetstream().await?;
        match js.get_stream(name).await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(settings
                .error(format!("cannot look for stream {name:?}"))
                .caused_by(e)),
        }
    })
}
