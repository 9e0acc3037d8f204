//! NATS JetStream: a stream's subjects in, records out, exactly-once into a stream
//! by message id within its duplicate window.
//!
//! ## Source
//!
//! [`NatsSource`] reads one JetStream stream. By default the whole stream is one
//! partition of the source (named after the stream); [`NatsSource::filters`]
//! splits it into one partition per subject filter (`{stream}/{filter}`), spread
//! over the workers like any fixed-partitioned source, so a stream whose subjects
//! end in a shard number (`orders.0` ... `orders.7`) is read in parallel. Each
//! partition reads through a **durable pull consumer** that acknowledges
//! cumulatively (`AckPolicy::All`), and its position, the stream sequence of the
//! next message, is its snapshot state.
//!
//! - Messages are acknowledged only in the commit hook: after the recovery store
//!   committed the snapshot that holds their position, or, without a store, after
//!   the flow's sinks wrote and flushed them. Delivery is **at-least-once**; under a
//!   store, positions resume exactly (the flow sees each message once per
//!   committed epoch, as with Kafka offsets).
//! - On start the partition makes its consumer again, delivering from its
//!   position: the snapshot's sequence when the run resumes from a store, else
//!   the earlier consumer's acknowledged floor, else where [`NatsSource::start`]
//!   says. So messages a killed run had been handed are read again at once,
//!   instead of after the consumer's `ack_wait` (30 s by default), and nothing the
//!   store committed is read twice. The consumer's state stays visible to the
//!   usual tools (`nats consumer info`) like a consumer group's lag.
//! - A message the server delivers again during a run (an `ack_wait` that ran out
//!   while a snapshot took long) lies before the position and is dropped.
//!
//! [`NatsSource::tail`]`(false)` stops each partition at the stream's last message
//! when the run started (a batch read). Items are [`NatsMessage`]s: subject,
//! payload, headers, stream sequence and time.
//!
//! [`NatsSource::format`] decodes payloads into typed items (`NatsMessage<T>`
//! with a [`crate::format::Json`], [`crate::format::Utf8`], ... format). A payload
//! the format refuses stops the run with an error naming the step, the stream,
//! the consumer, the stream sequence and the reason, unless
//! [`NatsSource::dead_letters`] was given: then it becomes a letter (`stream`,
//! `consumer`, `sequence`, `reason`, the payload) of the step's dead-letter
//! stream or file, and is acknowledged with the commit that passes it, like the
//! messages around it (see [`riffle::dead_letters`]).
//!
//! ## Sink
//!
//! [`NatsSink`] publishes [`NatsRecord`]s to a subject (or the record's own) that a
//! stream captures, through a few partitions, each a connection publishing in
//! order. Every publish's acknowledgement from JetStream is awaited before the
//! epoch moves on (`flush`) and before a snapshot is taken, so a source commits
//! only what the stream stored.
//!
//! A record's [`NatsRecord::id`] is sent as the `Nats-Msg-Id` header, and
//! JetStream drops a message whose id it stored within the stream's **duplicate
//! window** (2 minutes unless the stream says otherwise). A resumed run replays
//! the epochs after its last committed snapshot; if the replayed records carry the
//! same ids (derive them from what the record stands for: the input's stream and
//! sequence, a key and its version, a word and its count), the stream keeps each
//! once: **exactly-once within the duplicate window**. Records without an id, or a
//! replay that comes later than the window (a run down for longer), are
//! **at-least-once**. The sink does not number records itself: the order in which
//! records reach a partition is not the same on a replay, so a counter would give
//! a replayed record another record's id, and the stream would drop it.
//!
//! ## Settings
//!
//! [`NatsSettings`] are plain data: server URLs, a credentials file, the timeout,
//! TLS options. TLS is on for `tls://` URLs or when `tls_ca` is set: the
//! server's certificate must chain to a CA of the PEM file `tls_ca` (else the
//! system's roots) and name the host dialled; `tls_cert` and `tls_key` are a
//! client certificate for servers that verify clients. An untrusted certificate
//! is an error naming the servers and the reason.
//! User and password, or a token, come from the environment
//! (`RIFFLE_NATS_USER` and `RIFFLE_NATS_PASSWORD[_FILE]`, `RIFFLE_NATS_TOKEN[_FILE]`,
//! `RIFFLE_NATS_CREDS`), never from a settings file. Streams and consumers are
//! managed by the functions of [`admin`].
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::nats::{NatsRecord, NatsSettings, NatsSink, NatsSource};
//!
//! let nats = NatsSettings::new("nats://127.0.0.1:4222");
//! let flow = Dataflow::new("shout");
//! flow.input("in", NatsSource::new(nats.clone(), "LINES"))?
//!     .filter_map("upper", |m| {
//!         let id = format!("shout:{}", m.sequence);
//!         m.text().map(|t| NatsRecord::new(t.to_uppercase()).id(id))
//!     })?
//!     .output("out", NatsSink::new(nats, "shouts"))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is `async-nats` (pure Rust, with rustls), running on the shared
//! [`crate::runtime`]; partitions poll its queues without blocking.

pub mod admin;
mod message;
mod settings;
mod sink;
mod source;
pub mod testing;

pub use message::{NatsMessage, NatsRecord};
pub use settings::NatsSettings;
pub use sink::{NatsSink, NatsSinkPartition};
pub use source::{NatsSource, NatsSourcePartition, StartAt};
