//! Primitives: the resources a Flow reads and writes (Kafka topics, SQS queues,
//! Redis streams, NATS streams, PostgreSQL tables), declared with the flow so
//! that `riffle flow plan`, `apply` and `destroy` can make and remove them
//! ([`crate::plan`]).
//!
//! A [`Primitive`] knows its kind, its name, the server it lives on, what it
//! should look like (its spec: partitions, subjects, columns), and how to tell
//! whether it exists, make it and delete it, each through the connector's admin
//! functions. Credentials stay in the connector's settings, read from the
//! environment; nothing secret goes into a spec or the state file.
//!
//! ```
//! use riffle_connectors::kafka::KafkaSettings;
//! use riffle_flow::Flow;
//! use riffle_flow::primitives::KafkaTopic;
//!
//! let mut flow = Flow::new("shop");
//! flow.manage(KafkaTopic::new(KafkaSettings::new("127.0.0.1:9092"), "orders", 4))?;
//! assert_eq!(flow.primitives()[0].kind(), "kafka topic");
//! # Ok::<(), riffle_flow::FlowError>(())
//! ```

use serde_json::{Value, json};

/// A resource a Flow manages; see the [module docs](self).
pub trait Primitive: Send + Sync {
    /// What it is (`kafka topic`, `sqs queue`, ...).
    fn kind(&self) -> &'static str;
    /// Its name on its server.
    fn name(&self) -> &str;
    /// The server, as errors and plans name it (no credentials).
    fn server(&self) -> String;
    /// What it should look like, for the plan and the state file.
    fn spec(&self) -> Value;
    /// Whether it exists now.
    fn exists(&self) -> Result<bool, String>;
    /// Makes it.
    fn create(&self) -> Result<(), String>;
    /// Deletes it (and what it holds).
    fn delete(&self) -> Result<(), String>;
}

/// One primitive's identity across runs: kind, server and name.
pub fn key(p: &dyn Primitive) -> String {
    format!("{} {} at {}", p.kind(), p.name(), p.server())
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A Kafka topic with its partitions (replication 1 unless given).
#[cfg(feature = "kafka")]
pub struct KafkaTopic {
    settings: riffle_connectors::kafka::KafkaSettings,
    name: String,
    partitions: i32,
    replication: i32,
}

#[cfg(feature = "kafka")]
impl KafkaTopic {
    /// Topic `name` with `partitions` partitions on the cluster of `settings`.
    pub fn new(
        settings: riffle_connectors::kafka::KafkaSettings,
        name: impl Into<String>,
        partitions: i32,
    ) -> Self {
        Self {
            settings,
            name: name.into(),
            partitions,
            replication: 1,
        }
    }

    /// Copies of each partition the cluster keeps (default 1).
    pub fn replication(mut self, n: i32) -> Self {
        self.replication = n;
        self
    }
}

#[cfg(feature = "kafka")]
impl Primitive for KafkaTopic {
    fn kind(&self) -> &'static str {
        "kafka topic"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn server(&self) -> String {
        format!("brokers {}", self.settings.brokers)
    }
    fn spec(&self) -> Value {
        json!({ "partitions": self.partitions, "replication": self.replication })
    }
    fn exists(&self) -> Result<bool, String> {
        riffle_connectors::kafka::admin::topic_partitions(&self.settings, &self.name)
            .map(|p| p.is_some())
            .map_err(text)
    }
    fn create(&self) -> Result<(), String> {
        riffle_connectors::kafka::admin::create_topic(
            &self.settings,
            &self.name,
            self.partitions,
            self.replication,
        )
        .map(drop)
        .map_err(text)
    }
    fn delete(&self) -> Result<(), String> {
        riffle_connectors::kafka::admin::delete_topic(&self.settings, &self.name)
            .map(drop)
            .map_err(text)
    }
}

/// An SQS queue (FIFO when its name ends in `.fifo`).
#[cfg(feature = "sqs")]
pub struct SqsQueue {
    settings: riffle_connectors::sqs::SqsSettings,
    name: String,
}

#[cfg(feature = "sqs")]
impl SqsQueue {
    /// Queue `name` at the endpoint of `settings`.
    pub fn new(settings: riffle_connectors::sqs::SqsSettings, name: impl Into<String>) -> Self {
        Self {
            settings,
            name: name.into(),
        }
    }
}

#[cfg(feature = "sqs")]
impl Primitive for SqsQueue {
    fn kind(&self) -> &'static str {
        "sqs queue"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn server(&self) -> String {
        self.settings.server()
    }
    fn spec(&self) -> Value {
        json!({ "fifo": self.name.ends_with(".fifo") })
    }
    fn exists(&self) -> Result<bool, String> {
        riffle_connectors::sqs::admin::queue_exists(&self.settings, &self.name).map_err(text)
    }
    fn create(&self) -> Result<(), String> {
        riffle_connectors::sqs::admin::create_queue(&self.settings, &self.name, None)
            .map(drop)
            .map_err(text)
    }
    fn delete(&self) -> Result<(), String> {
        riffle_connectors::sqs::admin::delete_queue(&self.settings, &self.name).map_err(text)
    }
}

/// A Redis stream, with a consumer group if one is named.
#[cfg(feature = "redis")]
pub struct RedisStream {
    settings: riffle_connectors::redis::RedisSettings,
    name: String,
    group: Option<String>,
}

#[cfg(feature = "redis")]
impl RedisStream {
    /// Stream `name` on the server of `settings`.
    pub fn new(settings: riffle_connectors::redis::RedisSettings, name: impl Into<String>) -> Self {
        Self {
            settings,
            name: name.into(),
            group: None,
        }
    }

    /// Makes consumer group `group` with it.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

#[cfg(feature = "redis")]
impl Primitive for RedisStream {
    fn kind(&self) -> &'static str {
        "redis stream"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn server(&self) -> String {
        self.settings.server()
    }
    fn spec(&self) -> Value {
        json!({ "group": self.group })
    }
    fn exists(&self) -> Result<bool, String> {
        riffle_connectors::redis::admin::stream_exists(&self.settings, &self.name).map_err(text)
    }
    fn create(&self) -> Result<(), String> {
        riffle_connectors::redis::admin::create_stream(
            &self.settings,
            &self.name,
            self.group.as_deref(),
        )
        .map_err(text)
    }
    fn delete(&self) -> Result<(), String> {
        riffle_connectors::redis::admin::delete_stream(&self.settings, &self.name).map_err(text)
    }
}

/// A NATS JetStream stream.
#[cfg(feature = "nats")]
pub struct NatsStream {
    settings: riffle_connectors::nats::NatsSettings,
    spec: riffle_connectors::nats::admin::StreamSpec,
}

#[cfg(feature = "nats")]
impl NatsStream {
    /// The stream `spec` describes, on the server of `settings`.
    pub fn new(
        settings: riffle_connectors::nats::NatsSettings,
        spec: riffle_connectors::nats::admin::StreamSpec,
    ) -> Self {
        Self { settings, spec }
    }
}

#[cfg(feature = "nats")]
impl Primitive for NatsStream {
    fn kind(&self) -> &'static str {
        "nats stream"
    }
    fn name(&self) -> &str {
        &self.spec.name
    }
    fn server(&self) -> String {
        format!("server {}", self.settings.servers)
    }
    fn spec(&self) -> Value {
        serde_json::to_value(&self.spec).unwrap_or(Value::Null)
    }
    fn exists(&self) -> Result<bool, String> {
        riffle_connectors::nats::admin::stream_exists(&self.settings, &self.spec.name).map_err(text)
    }
    fn create(&self) -> Result<(), String> {
        riffle_connectors::nats::admin::create_stream(&self.settings, &self.spec)
            .map(drop)
            .map_err(text)
    }
    fn delete(&self) -> Result<(), String> {
        riffle_connectors::nats::admin::delete_stream(&self.settings, &self.spec.name)
            .map(drop)
            .map_err(text)
    }
}

/// A PostgreSQL table with its columns and key.
#[cfg(feature = "postgres")]
pub struct PostgresTable {
    settings: riffle_connectors::postgres::PostgresSettings,
    name: String,
    columns: Vec<riffle_connectors::postgres::admin::Column>,
    key: Vec<String>,
}

#[cfg(feature = "postgres")]
impl PostgresTable {
    /// Table `name` with `columns` (name, SQL type) and primary key `key` (may be
    /// empty).
    pub fn new(
        settings: riffle_connectors::postgres::PostgresSettings,
        name: impl Into<String>,
        columns: &[(&str, &str)],
        key: &[&str],
    ) -> Self {
        Self {
            settings,
            name: name.into(),
            columns: columns
                .iter()
                .map(|(n, t)| riffle_connectors::postgres::admin::Column::new(*n, *t))
                .collect(),
            key: key.iter().map(|k| k.to_string()).collect(),
        }
    }
}

#[cfg(feature = "postgres")]
impl Primitive for PostgresTable {
    fn kind(&self) -> &'static str {
        "postgres table"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn server(&self) -> String {
        self.settings.server()
    }
    fn spec(&self) -> Value {
        json!({
            "columns": self.columns.iter().map(|c| [c.name.clone(), c.sql_type.clone()]).collect::<Vec<_>>(),
            "key": self.key,
        })
    }
    fn exists(&self) -> Result<bool, String> {
        riffle_connectors::postgres::admin::table_exists(&self.settings, &self.name).map_err(text)
    }
    fn create(&self) -> Result<(), String> {
        let key: Vec<&str> = self.key.iter().map(String::as_str).collect();
        riffle_connectors::postgres::admin::create_table(
            &self.settings,
            &self.name,
            &self.columns,
            &key,
        )
        .map_err(text)
    }
    fn delete(&self) -> Result<(), String> {
        riffle_connectors::postgres::admin::drop_table(&self.settings, &self.name).map_err(text)
    }
}
