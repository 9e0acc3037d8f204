//! Riffle's connectors: sources and sinks for the systems data lives in.
//!
//! Each system has a folder of its own (`kafka/`, and next `nats/`, `redis/`,
//! `sqs/`, ...) holding its settings, its source, its sink and their tests, behind a
//! cargo feature of the same name; the default features (and so the `riffle`
//! binary) include them all.
//!
//! Every connector is built on the engine's partitioned model
//! ([`riffle::sources::FixedPartitionedSource`] and
//! [`riffle::sinks::FixedPartitionedSink`]): a broker's partitions are the source's
//! partitions, the position inside one (a Kafka offset) is its snapshot state, and
//! the **commit hook** ([`riffle::sources::SourcePartition::commit`],
//! [`riffle::sinks::SinkPartition::commit`]) tells a partition when what it did is
//! safe, so that it acknowledges upstream, or makes its writes visible, only then.
//! Polling never blocks a worker thread on the network: the clients do their I/O on
//! threads of their own (librdkafka's) or on the one shared [`runtime`] of the
//! process.
//!
//! The same sources and sinks work outside a Dataflow: [`riffle::consume`] runs a
//! consumer loop over them (poll, transform, write, flush, then commit).
//!
//! | connector | source | sink | delivery |
//! |---|---|---|---|
//! | Kafka ([`kafka`]) | topic partitions, offsets in snapshots, group offsets committed after each recovery commit | by key (Kafka's own murmur2 partitioning), idempotent producer | source: exactly-once positions under a store, at-least-once without; sink: exactly-once with a store and transactions, at-least-once otherwise |
//! | NATS JetStream ([`nats`]) | a stream, or one partition per subject filter; durable pull consumers acknowledged after each commit, stream sequences in snapshots | publish with `Nats-Msg-Id`, acknowledgements awaited before each commit | source: at-least-once (positions exact under a store); sink: exactly-once within the stream's duplicate window for records with stable ids, at-least-once otherwise |
//! | Files in object stores ([`objects`]) | every object under a prefix (S3, GCS, Azure, local), lines decoded by a format, the byte offset and line in snapshots, new objects found while following | new objects per partition, staged at each snapshot and moved into place by the commit hook | source: resumes exactly from the committed line; sink: exactly-once under a store, at-least-once otherwise |
//! | PostgreSQL ([`postgres`]) | a table or query read by an increasing column behind a fence of the transactions in progress, the last value in snapshots | batched upsert by key columns (`INSERT ... ON CONFLICT`), or `COPY` | source: exact positions; sink: upsert exactly-once by idempotence, `COPY` at-least-once |
//! | Redis Streams ([`redis`]) | stream keys, read through a consumer group, entries acknowledged after each commit, abandoned ones claimed | `XADD` to streams by key, pipelined, optional `MAXLEN ~` | at-least-once both ways |
//! | RabbitMQ ([`rabbitmq`]) | queues, consumed with a prefetch, messages acknowledged after each commit, put back by the broker when a run stops | publish with confirms to queues or an exchange, unroutable messages an error | at-least-once both ways |
//! | Parquet and Delta Lake tables ([`tables`]) | every Parquet object under a prefix, typed rows (serde through Arrow), the row group and row in snapshots | a Parquet dataset (the object sink with Parquet files) or appends to a Delta table, one Delta commit per partition and snapshot epoch with a `txn` version | source: resumes exactly from the committed row; sinks: exactly-once under a store (replayed epochs found in the Delta log), at-least-once otherwise |
//! | DuckDB (`duckdb`, feature `duckdb`, not default) | a query, read once (position: rows emitted) or by an increasing column (position: the last value), optionally following new rows | appended through DuckDB's appender, staged at each snapshot and moved into the table by the commit hook, the epoch recorded in the same transaction | source: exact positions for a total order; sink: exactly-once under a store, at-least-once otherwise |
//! | AWS SQS ([`sqs`]) | one queue long-polled by N readers, messages deleted after each commit, visibility extended while in flight | `SendMessageBatch` (10 a call, 256 KiB), FIFO groups and de-duplication ids | at-least-once both ways; FIFO sink de-duplicated within SQS's 5-minute window |
//!
//! Every connector passes the [`conformance`] kit against its real server.
//!
//! Settings are plain data (serde), so they can come from `riffle.toml`;
//! credentials come only from the environment or from files.
#![warn(missing_docs)]

pub mod conformance;
mod credentials;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod error;
pub mod format;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "objects")]
pub mod objects;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(any(feature = "objects", feature = "redis", feature = "sqs"))]
mod reader;
#[cfg(any(
    feature = "objects",
    feature = "redis",
    feature = "sqs",
    feature = "nats"
))]
mod ready;
#[cfg(feature = "redis")]
pub mod redis;
pub mod runtime;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "tables")]
pub mod tables;
#[cfg(any(
    feature = "nats",
    feature = "postgres",
    feature = "redis",
    feature = "rabbitmq"
))]
mod tls;
#[cfg(any(
    feature = "redis",
    feature = "rabbitmq",
    feature = "postgres",
    feature = "sqs"
))]
mod writer;

pub use error::ConnectorError;
