//! Kafka: topic partitions in, records out, exactly-once under a recovery store.
//!
//! ## Source
//!
//! [`KafkaSource`] reads one or more topics. Each topic partition is a partition of
//! the source (named `topic/N`, spread over the workers like any fixed-partitioned
//! source) and its next offset is the partition's snapshot state, so a run resumed
//! from a recovery store reads on from exactly where the committed snapshot was.
//! Where a partition starts without a snapshot is [`StartOffset`]: the beginning,
//! the end, the first record at or after a time, or the consumer group's committed
//! offset. After each recovery commit (or, without a store, once the flow's sinks
//! have flushed what came before) the offsets are also committed to the consumer
//! group ([`KafkaSource::group_id`]), so `kafka-consumer-groups --describe` shows
//! the flow's lag like any consumer's. Items are [`KafkaMessage`]s: key, value
//! (decoded by a [`Format`]: [`Bytes`], [`Utf8`], [`Json`], `Avro` with a schema in
//! code or a file, raw or in a schema registry's framing), headers, timestamp,
//! topic, partition and offset. [`KafkaSource::tail`]`(false)` stops each partition
//! at the end offset it had when the run started (a batch read).
//!
//! ## Sink
//!
//! [`KafkaSink`] writes [`KafkaRecord`]s to one topic. Each topic partition is a
//! partition of the sink, written by exactly one worker: a record goes to the
//! partition Kafka's own default partitioner would pick for its key (murmur2), or,
//! without a key, one chosen by a stable hash of its value. The producer is
//! idempotent (no duplicates from its own retries).
//!
//! - Without a recovery store, or without [`KafkaSink::exactly_once`]: every
//!   record is delivered before the flow's epoch moves on (`flush`), so sources
//!   commit only what was delivered: **at-least-once**.
//! - With a recovery store and [`KafkaSink::exactly_once`]: each partition writes
//!   inside a Kafka transaction, prepared (flushed) at each snapshot and committed
//!   by the commit hook once the recovery store has committed that snapshot;
//!   records written after the snapshot go into the next transaction meanwhile.
//!   Transactional ids are `{id}.{step}.{topic}-{partition}.{slot}`, so a restarted
//!   run fences every producer of the one it replaces and aborts what that one had
//!   not committed. If a run dies after the store committed a snapshot but before
//!   its transaction committed, the resumed partition reads the records of that
//!   transaction back (their offsets are in the snapshot) and commits them again,
//!   once: a marker committed inside every transaction says which was last. Readers
//!   with `isolation.level=read_committed` then see every record **exactly once**.
//!
//! ## Settings
//!
//! [`KafkaSettings`] are plain data: the bootstrap brokers and any librdkafka
//! property. Credentials come from the environment
//! (`RIFFLE_KAFKA_SASL_USERNAME`, `RIFFLE_KAFKA_SASL_PASSWORD` or
//! `RIFFLE_KAFKA_SASL_PASSWORD_FILE`), never from a settings file.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::kafka::{KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, Utf8};
//!
//! let kafka = KafkaSettings::new("127.0.0.1:9092");
//! let flow = Dataflow::new("shout");
//! flow.input("in", KafkaSource::new(kafka.clone(), ["lines"]).format(Utf8))?
//!     .filter_map("upper", |m| m.value.map(|v| KafkaRecord::new(v.to_uppercase())))?
//!     .output("out", KafkaSink::new(kafka, "shouts").exactly_once("shout"))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is librdkafka (through the `rdkafka` crate, built from its bundled
//! sources with the C compiler alone): it is the reference client for consumer
//! groups, idempotence and transactions, and polls without blocking.

pub mod admin;
#[cfg(feature = "avro")]
mod avro;
mod message;
mod metadata;
mod partitioner;
mod settings;
mod sink;
mod source;
pub mod testing;

pub use crate::format::{Bytes, Format, Json, Utf8};
#[cfg(feature = "avro")]
pub use avro::Avro;
pub use message::{KafkaMessage, KafkaRecord};
pub use partitioner::murmur2_partition;
pub use settings::KafkaSettings;
pub use sink::{KafkaSink, KafkaSinkPartition, KafkaSinkState};
pub use source::{KafkaSource, KafkaSourcePartition, StartOffset};
