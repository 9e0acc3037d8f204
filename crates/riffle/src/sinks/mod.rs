//! Sinks: where items leave a flow.
//!
//! Sinks mirror sources. A [`FixedPartitionedSink`] has a fixed set of named
//! partitions (files, table shards, ...); every item is routed to one partition by
//! [`FixedPartitionedSink::part_fn`], and partition `i` of the sorted list lives on
//! worker `i % workers`, so each partition is written by exactly one worker, in
//! order. Its partitions can snapshot their position and be rebuilt from it, which is
//! how the file sinks give exactly-once output on resume (they truncate to the
//! committed position). A [`DynamicSink`] builds one stateless partition on every
//! worker and writes whatever that worker holds.
//!
//! Every partition has a **commit hook** ([`SinkPartition::commit`]): under a
//! recovery store it hears when the snapshot holding its position has been
//! committed, which is how a two-phase sink (a Kafka transaction per snapshot)
//! becomes exactly-once: prepare at the snapshot, make visible on the commit.
//! [`SinkPartition::flush`] makes what was written durable; sources acknowledge
//! upstream only after the sinks have flushed their items.
//!
//! Built in: [`TestingSink`] (in memory), [`StdOutSink`], [`FileSink`] (lines),
//! [`CsvSink`] and [`JsonLinesSink`] (typed rows through serde), and [`DirSink`]
//! (a directory of files, items routed by key).
//!
//! ## Delivery under recovery, per sink
//!
//! | sink | on resume | delivery |
//! |---|---|---|
//! | [`FileSink`], [`CsvSink`], [`JsonLinesSink`], [`DirSink`] | each file is truncated to its committed length, then written on | exactly-once |
//! | [`StdOutSink`] | lines printed after the last commit are printed again | at-least-once |
//! | [`TestingSink`] | items taken after the last commit are taken again | at-least-once |
//! | a [`DynamicSink`] of your own | no position to return to | at-least-once |
//! | a [`FixedPartitionedSink`] of your own | rebuilt from its snapshot: exactly-once if it truncates or writes idempotently from there | yours to choose |

mod file;
mod operator;
mod stdout;
mod testing;

pub use file::{CsvSink, DirSink, FileSink, JsonLinesSink, LineSink};
pub use stdout::StdOutSink;
pub use testing::TestingSink;

pub use crate::build::WorkerInfo;
use crate::data::Data;
use crate::error::Result;

/// One partition of a sink, owned by one worker.
pub trait SinkPartition: 'static {
    /// What it writes.
    type Item: Data;
    /// Its position, for snapshots.
    type State: Data;

    /// Writes a batch of items, in order.
    fn write_batch(&mut self, items: Vec<Self::Item>) -> Result<()>;

    /// Makes everything written so far durable and visible: called, without a
    /// recovery store, whenever the flow's epochs move on, so that sources commit
    /// upstream only what the sinks made durable (under a store,
    /// [`SinkPartition::snapshot`] does this job). Sinks that write through at once
    /// need not implement it.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Its current position (None for partitions that cannot resume), with
    /// everything written so far durable (or, for a two-phase sink, prepared).
    fn snapshot(&mut self) -> Result<Option<Self::State>> {
        Ok(None)
    }

    /// The snapshot holding `state` has been committed by the recovery store: the
    /// **commit hook**. A two-phase sink makes the writes it prepared up to `state`
    /// visible now (a Kafka transaction commits, a file is renamed into place), so
    /// a crash can never leave visible output that a resumed run writes again.
    /// Called only under a recovery store, in the order the states were handed
    /// out; a state may be skipped when a later one is already committed. When it
    /// is rebuilt from a committed state after a crash, a two-phase partition
    /// finishes or aborts what it had prepared in
    /// [`FixedPartitionedSink::build_part`].
    fn commit(&mut self, _state: &Self::State) -> Result<()> {
        Ok(())
    }

    /// Called once when the flow is done with it.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink with a fixed set of named partitions.
pub trait FixedPartitionedSink: Send + Sync + 'static {
    /// What it writes.
    type Item: Data;
    /// A partition's position.
    type State: Data;
    /// Its partitions.
    type Partition: SinkPartition<Item = Self::Item, State = Self::State>;

    /// The names of all partitions, in a fixed order; every worker must get the same.
    fn list_parts(&self, step_id: &str) -> Result<Vec<String>>;

    /// The index (into [`FixedPartitionedSink::list_parts`]) of the partition `item`
    /// goes to. Must be the same on every worker and run; the default sends
    /// everything to the first partition.
    fn part_fn(&self, _item: &Self::Item, _parts: usize) -> usize {
        0
    }

    /// Opens partition `for_part`, at `resume_state` if the run resumes.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<Self::State>,
    ) -> Result<Self::Partition>;

    /// Whether a partition opened without a position (`resume_state` `None`)
    /// throws away what an earlier run left there: a file sink that starts its
    /// files empty (unless told to append). A dataflow opens partitions without a
    /// position only on a run that does not resume, where that is the point; a
    /// host that opens them so on every start (a Flow's processors) refuses such
    /// a sink rather than lose what the last run wrote. Default: `false`.
    fn fresh_start_discards(&self) -> bool {
        false
    }
}

/// A sink that builds one stateless partition on every worker.
pub trait DynamicSink: Send + Sync + 'static {
    /// What it writes.
    type Item: Data;
    /// The partition each worker writes.
    type Partition: SinkPartition<Item = Self::Item>;

    /// The partition of `worker`.
    fn build(&self, step_id: &str, worker: WorkerInfo) -> Result<Self::Partition>;
}

impl<T: Data> crate::dataflow::Stream<T> {
    /// Writes every item to a fixed-partitioned sink; step `step_id`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![1, 2]))?.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [1, 2]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn output<S: FixedPartitionedSink<Item = T>>(&self, step_id: &str, sink: S) -> Result<()> {
        operator::add_fixed(self, step_id, sink)
    }

    /// Writes every item to a dynamic sink (one partition per worker); step `step_id`.
    pub fn output_dynamic<S: DynamicSink<Item = T>>(&self, step_id: &str, sink: S) -> Result<()> {
        operator::add_dynamic(self, step_id, sink)
    }
}
