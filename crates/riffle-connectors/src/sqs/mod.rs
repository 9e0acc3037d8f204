//! AWS SQS: messages in by long polling, deleted after each commit; messages out in
//! batches. At-least-once both ways.
//!
//! ## Source
//!
//! [`SqsSource`] reads one queue with one or more **readers**
//! ([`SqsSource::readers`]): each reader is a partition of the source, named
//! `{queue}#{n}`, and every reader long-polls the same queue (`ReceiveMessage`
//! with `WaitTimeSeconds`, ten messages a call). SQS hands each message to one
//! reader at a time, so readers on several workers (or several processes) share a
//! queue without coordinating; give a run at least as many readers as workers.
//!
//! A received message stays hidden from other readers for its visibility timeout
//! ([`SqsSource::visibility_timeout`], 30 s). It is deleted (`DeleteMessageBatch`)
//! only by the commit hook: once the recovery store has committed the snapshot
//! after it, or, without a store, once the flow's sinks have written it. Until
//! then the source extends its visibility (`ChangeMessageVisibilityBatch`) once a
//! third of the timeout has passed, so a slow snapshot does not let SQS hand it out again. A reader's
//! snapshot holds how many messages it emitted and the receipt handles of those
//! not yet deleted; a run resuming from it deletes those first.
//!
//! After a crash, a kill or a failed run, what was received and not deleted comes
//! back by itself once its visibility timeout runs out (to any reader of the queue,
//! in this run or another): **at-least-once**, with duplicates for what was read
//! after the last commit (and for a delete that failed: SQS's receipt handles
//! expire, and a message whose delete fails is delivered again; the source says so
//! on stderr and goes on). [`SqsMessage::receive_count`] tells a redelivery.
//! Standard queues may also deliver a message twice by themselves.
//!
//! [`SqsSource::stop_after_empty`] makes the source bounded: each reader finishes
//! once that many receives in a row found the queue empty (tests, batch jobs).
//!
//! [`SqsSource::format`] decodes bodies into typed items (`SqsMessage<T>` with a
//! [`crate::format::Json`] format; text by default). A body the format refuses
//! stops the run with an error naming the step, the queue URL, the message id
//! and the reason, unless [`SqsSource::dead_letters`] was given: then it becomes
//! a letter (`queue_url`, `message_id`, `reason`, the body) of the step's
//! dead-letter stream or file, and is deleted with the commit that passes it,
//! like the messages around it (see [`riffle::dead_letters`]).
//!
//! ## Sink
//!
//! [`SqsSink`] sends [`SqsRecord`]s to one queue with `SendMessageBatch`: ten
//! messages a call and at most 256 KiB a call (a record over 256 KiB is an error
//! naming it and the queue). Entries SQS fails for its own reasons are sent again
//! (five times, with a growing pause); one it refuses (`SenderFault`), or that keeps
//! failing, stops the run with an error naming the queue and the record. Every
//! batch is answered before the flow's epoch moves on (and before each snapshot),
//! so sources acknowledge only what was sent: **at-least-once**.
//!
//! A queue whose name ends in `.fifo` is a FIFO queue: each message goes with its
//! [`SqsRecord::group_id`] (`MessageGroupId`, `riffle` when unset; a group's
//! records go through one writer, one batch at a time, in order) and a
//! `MessageDeduplicationId`: the record's [`SqsRecord::dedup_id`], else
//! `{sink id}.{writer}.{n}`, the record's number in its writer's output, which the
//! snapshots keep. SQS drops a message whose de-duplication id it has seen in the
//! last **5 minutes**. So an epoch replayed after a resume is not delivered twice
//! when it is replayed within 5 minutes of its first sending **and** either the
//! records carry their own stable ids (e.g. an upstream message id), or the
//! upstream replays the same records in the same order to the same writer (files,
//! Kafka partitions, ...). Past 5 minutes, or with an upstream that replays in
//! another order (SQS itself), it is at-least-once.
//!
//! ## Settings
//!
//! [`SqsSettings`] are plain data: a region and an optional endpoint (moto,
//! ElasticMQ, a VPC endpoint); both fall back to the variables the AWS tools read
//! (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`). Credentials come
//! only from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (or
//! `AWS_SECRET_ACCESS_KEY_FILE`) and `AWS_SESSION_TOKEN`: profiles in
//! `~/.aws/credentials` and instance roles are not read yet. Requests that cannot
//! reach the endpoint (it restarts, the network drops) are tried again: a running
//! source waits for ever and says so once on stderr, other calls for the
//! settings' timeout.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::sqs::{SqsRecord, SqsSettings, SqsSink, SqsSource};
//!
//! let sqs = SqsSettings::new("eu-west-1");
//! let flow = Dataflow::new("shout");
//! flow.input("in", SqsSource::new(sqs.clone(), "lines").readers(2))?
//!     .map("upper", |m| SqsRecord::new(m.body.to_uppercase()))?
//!     .output("out", SqsSink::new(sqs, "shouts"))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is the crate's own: SQS's AWS JSON 1.0 protocol over reqwest (rustls
//! with aws-lc-rs), requests signed with AWS Signature Version 4 on `hmac` and
//! `sha2`, on the connectors' shared [`runtime`](crate::runtime).

pub mod admin;
mod client;
mod message;
mod settings;
mod sigv4;
mod sink;
mod source;
pub mod testing;

pub use message::{SqsMessage, SqsRecord};
pub use settings::SqsSettings;
pub use sink::{MAX_BYTES, SqsSink, SqsSinkPartition};
pub use source::{SqsPosition, SqsSource, SqsSourcePartition};
