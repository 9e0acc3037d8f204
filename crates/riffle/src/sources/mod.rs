//! Sources: where items enter a flow.
//!
//! A source is made of **partitions**. A partition is polled for its next batch
//! without blocking ([`SourcePartition::next_batch`]); it may say when it next wants
//! to be polled ([`SourcePartition::next_awake`]) and, for fixed-partitioned sources,
//! hands out a snapshot of its position that the recovery store keeps, so that a
//! resumed run continues where it left off.
//!
//! - A [`FixedPartitionedSource`] lists a fixed set of named partitions (files, topic
//!   partitions, ...). Every worker lists them; the partition at index `i` of the
//!   sorted list is read by worker `i % workers`.
//! - A [`DynamicSource`] builds one stateless partition on every worker (a generator,
//!   a socket each worker listens to, ...).
//!
//! A partition is told when what it produced is safe ([`SourcePartition::commit`]):
//! that is when a broker's source acknowledges or commits upstream, never earlier,
//! so a crash can always replay what was not committed (at-least-once), and a
//! source whose position lives in the recovery store replays exactly from it.
//! The traits know nothing of timely: a consumer loop outside a Dataflow can poll
//! [`SourcePartition::next_batch`], write to a [`crate::sinks::SinkPartition`],
//! flush it and then call `commit` itself ([`crate::consume`] does just that).
//!
//! Items enter at the current epoch: epochs advance on a wall-clock interval (see
//! [`crate::Execution::epoch_interval`]), unless a partition assigns epochs itself by
//! returning [`Poll::ReadyAt`] (the testing source does); then the source holds the
//! epoch until the partition moves past it.
//!
//! Built in: [`TestingSource`] (in memory), [`FileSource`] (lines of a file or of every
//! file in a directory), [`CsvSource`] and [`JsonLinesSource`] (typed rows through
//! serde), and [`GeneratorSource`] (a function of the item index, for benchmarks).

mod file;
mod generator;
mod operator;
mod ready;
mod testing;

use std::time::Instant;

pub use file::{
    CsvSource, FilePosition, FileSource, JsonLinesSource, LineAt, LineFormat, LinePartition,
    LineSource, Numbered, NumberedFormat,
};
pub use generator::{GeneratorSource, PartitionedGenerator};
pub use testing::TestingSource;

pub(crate) use operator::DEAD_LETTERS;

pub use crate::build::WorkerInfo;
use crate::data::Data;
use crate::error::Result;

/// What a partition has when polled.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll<T> {
    /// These items, at the current epoch.
    Ready(Vec<T>),
    /// These items, at this epoch; later batches of the partition must not go back
    /// to an earlier one.
    ReadyAt(u64, Vec<T>),
    /// Nothing now; poll again later (at [`SourcePartition::next_awake`] if given).
    Pending,
    /// The partition has no more items, ever.
    Exhausted,
}

/// One partition of a source, owned by one worker.
pub trait SourcePartition: 'static {
    /// What it produces.
    type Item: Data;
    /// Its position, for snapshots: enough to build it again where it left off.
    type State: Data;

    /// The next batch, without blocking.
    fn next_batch(&mut self) -> Result<Poll<Self::Item>>;

    /// When to poll next; `None` means as soon as possible after a batch, or soon
    /// after a [`Poll::Pending`].
    fn next_awake(&self) -> Option<Instant> {
        None
    }

    /// Asks the partition to call `ready` when, after a [`Poll::Pending`], it may
    /// have items: a message arrived, its reader task sent a batch. A caller that
    /// idles between polls can then sleep until woken rather than for a fixed
    /// tick. A wake is a hint (poll, and `Pending` again is fine), and one that
    /// comes while the caller is not asleep is not lost if the caller's waiting
    /// keeps it (a thread's park token, a dataflow activation). The default does
    /// nothing: such partitions are polled on the caller's tick, and
    /// [`SourcePartition::next_awake`] still applies.
    fn wake_on_ready(&mut self, _ready: &std::task::Waker) {}

    /// Its current position (None for partitions that cannot resume).
    fn snapshot(&self) -> Option<Self::State> {
        None
    }

    /// Everything the partition produced before `state` (a position it handed out
    /// through [`SourcePartition::snapshot`]) has left the flow for good: the
    /// **commit hook**. Under a recovery store this is called once the snapshot
    /// holding `state` has been committed, so a resumed run never goes back before
    /// it; without a store, once every sink has written (and flushed) the items of
    /// the epochs before it. Only then may a partition acknowledge upstream: delete
    /// queue messages, commit a consumer group's offsets. Calls come in the order
    /// the positions were handed out; a position may be skipped when a later one is
    /// already committed. An error stops the run.
    fn commit(&mut self, _state: &Self::State) -> Result<()> {
        Ok(())
    }

    /// Called once when the run is done with the partition: after the flow has
    /// finished with its items (and after the last [`SourcePartition::commit`]), or
    /// when the run stops early.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A source with a fixed set of named partitions, each readable from a saved position.
pub trait FixedPartitionedSource: Send + Sync + 'static {
    /// What it produces.
    type Item: Data;
    /// A partition's position.
    type State: Data;
    /// Its partitions.
    type Partition: SourcePartition<Item = Self::Item, State = Self::State>;

    /// The names of all partitions; every worker must get the same list.
    fn list_parts(&self, step_id: &str) -> Result<Vec<String>>;

    /// Opens partition `for_part`, at `resume_state` if the run resumes.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<Self::State>,
    ) -> Result<Self::Partition>;

    /// How often to list the partitions again while the run goes on, to pick up
    /// new ones (partitions added to a topic); `None` (the default) lists them once.
    /// A partition found while running is read by the worker the stable hash of
    /// its name picks ([`crate::exchange::worker_for`]), from where a new partition
    /// starts; a source that discovers partitions runs until the flow is stopped,
    /// even on a worker that has none yet.
    fn discover_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// How many items wait in the source that `step_id` has not yet committed,
    /// when the system behind it can say: a Kafka group's lag, an SQS queue's
    /// approximate count. `None` (the default) when it cannot. Autoscalers read
    /// it; it asks the server, so call it every few seconds, not per item.
    fn backlog(&self, _step_id: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    /// What the source reads, for tools outside the run (a Kubernetes
    /// autoscaler's trigger, a listing): the system and where, without
    /// credentials. `None` (the default) for sources that are not a broker's.
    fn describe(&self, _step_id: &str) -> Option<SourceInfo> {
        None
    }
}

/// What a broker's source reads: see [`FixedPartitionedSource::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The system: `kafka`, `sqs`, `redis`, `nats`, `rabbitmq`.
    pub system: &'static str,
    /// Where and what, by name (`brokers`, `topic`, `group`, `queue`, ...).
    pub fields: Vec<(&'static str, String)>,
}

impl SourceInfo {
    /// Field `name`, if the source gave it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A source that builds one stateless partition on every worker.
pub trait DynamicSource: Send + Sync + 'static {
    /// What it produces.
    type Item: Data;
    /// The partition each worker reads.
    type Partition: SourcePartition<Item = Self::Item>;

    /// The partition of `worker`.
    fn build(&self, step_id: &str, worker: WorkerInfo) -> Result<Self::Partition>;
}

impl crate::dataflow::Dataflow {
    /// Adds a fixed-partitioned source as step `step_id`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource};
    /// let flow = Dataflow::new("f");
    /// let numbers = flow.input("numbers", TestingSource::new(vec![1, 2, 3]))?;
    /// assert_eq!(numbers.step_id(), "numbers");
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn input<S: FixedPartitionedSource>(
        &self,
        step_id: &str,
        source: S,
    ) -> Result<crate::Stream<S::Item>> {
        operator::add_fixed(self, step_id, source)
    }

    /// Adds a dynamic source (one partition per worker) as step `step_id`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::GeneratorSource};
    /// let flow = Dataflow::new("f");
    /// let squares = flow.input_dynamic("squares", GeneratorSource::new(100, |i| i * i))?;
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn input_dynamic<S: DynamicSource>(
        &self,
        step_id: &str,
        source: S,
    ) -> Result<crate::Stream<S::Item>> {
        operator::add_dynamic(self, step_id, source)
    }
}
