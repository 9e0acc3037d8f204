//! RabbitMQ (AMQP 0.9.1): messages in from queues with acknowledgements sent only
//! after each commit, messages out with publisher confirms; at-least-once both
//! ways.
//!
//! ## Source
//!
//! [`RabbitSource`] consumes one or more queues; each queue is a partition of the
//! source, consumed by one worker on a connection of its own, with manual
//! acknowledgements and a prefetch ([`RabbitSource::prefetch`], 10,000 by
//! default). Messages are acknowledged only by the commit hook: once the recovery
//! store has committed the snapshot after them, or, without a store, once the
//! flow's sinks have written them (one `basic.ack` with `multiple` per commit).
//! Until then the broker holds them for this consumer; when the run stops (a
//! crash, a kill, a failure) or the connection breaks, the broker puts them back
//! in the queue and they are delivered again, marked
//! [`redelivered`](RabbitMessage::redelivered): **at-least-once**, with
//! duplicates only for what was read after the last commit. A connection lost
//! mid-run is opened again (for as long as it takes, saying so once on stderr).
//! [`RabbitSource::tail`]`(false)` stops each queue after the messages it held
//! ready when the run started (after a broken connection: when it was opened
//! again, the messages the broker gave back included); they are acknowledged by
//! the run's last commit, before its connections close. Several replicas may consume the same queue: the
//! broker shares its messages among them.
//!
//! [`RabbitSource::format`] decodes payloads into typed items (`RabbitMessage<T>`
//! with a [`crate::format::Json`], [`crate::format::Utf8`], ... format). A payload
//! the format refuses stops the run with an error naming the step, the queue, the
//! delivery tag, the message id and the reason, unless
//! [`RabbitSource::dead_letters`] was given: then it becomes a letter (`queue`,
//! `delivery_tag`, `message_id`, `reason`, the payload) of the step's dead-letter
//! stream or file, and is acknowledged with the commit that passes it, like the
//! messages around it (see [`riffle::dead_letters`]).
//!
//! ## Sink
//!
//! [`RabbitSink`] publishes [`RabbitRecord`]s, persistent by default, either
//! straight to queues ([`RabbitSink::queues`]) or to an exchange with routing keys
//! ([`RabbitSink::exchange`]); a record with a key always takes the same queue or
//! routing key. Publishing is `mandatory` with publisher confirms: every batch is
//! confirmed by the broker before the flow's epoch moves on (and before each
//! snapshot), so sources acknowledge only what the broker took, and a message
//! the broker can route to no queue is an error naming the exchange and routing
//! key, never dropped. A batch whose connection broke is published again on a
//! new one: **at-least-once** (a consumer that must not see duplicates can use
//! [`RabbitRecord::message_id`]).
//!
//! ## Settings
//!
//! [`RabbitSettings`] are plain data: the broker's URL (`amqp://host:port/vhost`,
//! `amqps://` for TLS). Credentials come from `RIFFLE_RABBITMQ_USERNAME` and
//! `RIFFLE_RABBITMQ_PASSWORD` (or `RIFFLE_RABBITMQ_PASSWORD_FILE`), never from
//! settings. Queues and exchanges are made and removed by the functions of
//! [`admin`].
//!
//! ## TLS
//!
//! Over `amqps://` the broker's certificate is verified in full: it must chain to
//! a CA of the PEM file [`tls_ca`](RabbitSettings::tls_ca) (the system's trusted
//! roots when none is given) and name the host of the URL (a broker reached by
//! its address needs a certificate naming that address). A client certificate
//! ([`tls_identity`](RabbitSettings::tls_identity): `tls_cert` and `tls_key`, PEM)
//! answers brokers that verify their clients. A refused handshake is an error
//! naming the broker and why (a CA that issued nothing trusted, another host
//! name, a client certificate wanted), given at once: unlike a broker that does
//! not answer, it is not waited out. The TLS options with an `amqp://` URL are
//! an error rather than a plain connection.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::rabbitmq::{RabbitRecord, RabbitSettings, RabbitSink, RabbitSource};
//!
//! let mq = RabbitSettings::new("amqp://127.0.0.1:5672/%2f");
//! let flow = Dataflow::new("shout");
//! flow.input("in", RabbitSource::new(mq.clone(), ["lines"]))?
//!     .filter_map("upper", |m| m.value().map(|v| RabbitRecord::new(v.to_uppercase())))?
//!     .output("out", RabbitSink::queues(mq, ["shouts"]))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is `lapin`, pure Rust, on the connectors' shared
//! [`runtime`](crate::runtime).

pub mod admin;
mod message;
mod retry;
mod settings;
mod sink;
mod source;
pub mod testing;

pub use message::{RabbitMessage, RabbitRecord};
pub use settings::RabbitSettings;
pub use sink::{RabbitSink, RabbitSinkPartition};
pub use source::{RabbitPosition, RabbitSource, RabbitSourcePartition};
