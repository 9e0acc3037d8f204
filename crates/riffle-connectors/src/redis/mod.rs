//! Redis Streams: entries in through a consumer group, entries out with `XADD`,
//! at-least-once both ways.
//!
//! ## Source
//!
//! [`RedisSource`] reads one or more streams; each stream key is a partition of the
//! source, read by one worker through a consumer group ([`RedisSource::group`],
//! `riffle.{step id}` by default, made from the stream's start when missing) as one
//! consumer ([`RedisSource::consumer`], `riffle` by default). Entries are
//! acknowledged (`XACK`) only by the commit hook: once the recovery store has
//! committed the snapshot after them, or, without a store, once the flow's sinks
//! have written them. Until then they stay pending on the consumer, and a run that
//! starts again (after a crash, a kill, a failure) reads its pending entries first,
//! then new ones: **at-least-once**, with duplicates only for what was read after
//! the last commit. Entries another consumer of the group has held pending longer
//! than [`RedisSource::claim_idle`] (60 s) are claimed (`XAUTOCLAIM`) and read
//! here, so a replica that went away strands nothing. Items are [`RedisEntry`]s:
//! the stream, the entry id and its fields. [`RedisSource::tail`]`(false)` stops
//! each stream at the last entry it had when the run started.
//!
//! [`RedisSource::format`] decodes each entry's `value` field (another with
//! [`RedisSource::value_field`]) into [`RedisEntry::decoded`], typed by a
//! [`crate::format::Json`], [`crate::format::Utf8`], ... format. An entry the
//! format refuses, or without the field, stops the run with an error naming the
//! step, the stream key, the entry id and the reason, unless
//! [`RedisSource::dead_letters`] was given: then it becomes a letter (`stream`,
//! `id`, `reason`, the value) of the step's dead-letter stream or file, and is
//! acknowledged (`XACK`) with the commit that passes it (see
//! [`riffle::dead_letters`]).
//!
//! ## Sink
//!
//! [`RedisSink`] adds [`RedisRecord`]s to one or more streams (`XADD`, with an
//! optional `MAXLEN ~` trim); a record with a key always goes to the same stream.
//! Records are pipelined and every pipeline is answered before the flow's epoch
//! moves on (and before each snapshot), so sources acknowledge only what was
//! added: **at-least-once** (a pipeline sent again after a dropped connection may
//! add entries twice).
//!
//! ## Settings
//!
//! [`RedisSettings`] are plain data: the server's URL (`redis://host:port/db`,
//! `rediss://` for TLS) and TLS files. Over TLS the server's certificate must
//! chain to a CA of `tls_ca` (else the system's roots) and name the host in the
//! URL; `tls_cert` and `tls_key` are a client certificate. Credentials come from `RIFFLE_REDIS_USERNAME` and
//! `RIFFLE_REDIS_PASSWORD` (or `RIFFLE_REDIS_PASSWORD_FILE`), never from settings.
//! Connections reconnect by themselves when the server goes away: a source waits
//! and says so once, a sink sends again.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::redis::{RedisRecord, RedisSettings, RedisSink, RedisSource};
//!
//! let redis = RedisSettings::new("redis://127.0.0.1:6379");
//! let flow = Dataflow::new("shout");
//! flow.input("in", RedisSource::new(redis.clone(), ["lines"]))?
//!     .filter_map("upper", |e| e.value().map(|v| RedisRecord::new(v.to_uppercase())))?
//!     .output("out", RedisSink::new(redis, ["shouts"]))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is `redis` (redis-rs), pure Rust, on the connectors' shared
//! [`runtime`](crate::runtime).

pub mod admin;
mod entry;
mod reply;
mod retry;
mod settings;
mod sink;
mod source;
pub mod testing;

pub use entry::{RedisEntry, RedisRecord, VALUE_FIELD};
pub use settings::RedisSettings;
pub use sink::{RedisSink, RedisSinkPartition};
pub use source::{RedisPosition, RedisSource, RedisSourcePartition, StreamStart};
