//! [`GeneratorSource`]: items computed from their index, spread over the workers.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use super::{DynamicSource, Poll, SourcePartition, WorkerInfo};
use crate::data::Data;
use crate::error::Result;

/// `count` items, item `i` being `f(i)`. Worker `w` of `n` produces the indices
/// `[w * count / n, (w + 1) * count / n)`, in batches.
///
/// ```
/// use riffle::{Dataflow, sources::GeneratorSource, sinks::TestingSink};
/// let flow = Dataflow::new("f");
/// let out = TestingSink::new();
/// flow.input_dynamic("gen", GeneratorSource::new(5, |i| i * 10))?.output("out", out.clone())?;
/// riffle::run_main(&flow)?;
/// assert_eq!(out.take_sorted(), [0, 10, 20, 30, 40]);
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub struct GeneratorSource<T, F> {
    count: u64,
    batch_size: usize,
    f: Arc<F>,
    _item: PhantomData<fn() -> T>,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> GeneratorSource<T, F> {
    /// `count` items, item `i` being `f(i)`.
    pub fn new(count: u64, f: F) -> Self {
        Self {
            count,
            batch_size: 4096,
            f: Arc::new(f),
            _item: PhantomData,
        }
    }

    /// How many items one poll returns at most (default 4096).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> DynamicSource for GeneratorSource<T, F> {
    type Item = T;
    type Partition = GeneratorPartition<F>;

    fn build(&self, _step_id: &str, worker: WorkerInfo) -> Result<Self::Partition> {
        let n = worker.count.max(1) as u128;
        let w = worker.index as u128;
        let start = (w * self.count as u128 / n) as u64;
        let end = ((w + 1) * self.count as u128 / n) as u64;
        Ok(GeneratorPartition {
            range: start..end,
            batch_size: self.batch_size as u64,
            f: self.f.clone(),
        })
    }
}

/// One worker's share of a [`GeneratorSource`].
pub struct GeneratorPartition<F> {
    range: Range<u64>,
    batch_size: u64,
    f: Arc<F>,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> SourcePartition for GeneratorPartition<F> {
    type Item = T;
    type State = u64;

    fn next_batch(&mut self) -> Result<Poll<T>> {
        if self.range.is_empty() {
            return Ok(Poll::Exhausted);
        }
        let end = self.range.end.min(self.range.start + self.batch_size);
        let f = &*self.f;
        let batch: Vec<T> = (self.range.start..end).map(f).collect();
        self.range.start = end;
        Ok(Poll::Ready(batch))
    }

    fn snapshot(&self) -> Option<u64> {
        Some(self.range.start)
    }
}

/// Like [`GeneratorSource`], but split into a fixed number of partitions that
/// resume from a snapshot: usable with a recovery store.
///
/// ```
/// use riffle::{Dataflow, sources::PartitionedGenerator, sinks::TestingSink};
/// let flow = Dataflow::new("f");
/// let out = TestingSink::new();
/// flow.input("numbers", PartitionedGenerator::new(10, 3, |i| i))?.output("out", out.clone())?;
/// riffle::run_main(&flow)?;
/// assert_eq!(out.take_sorted(), (0..10).collect::<Vec<u64>>());
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub struct PartitionedGenerator<T, F> {
    inner: GeneratorSource<T, F>,
    partitions: u64,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> PartitionedGenerator<T, F> {
    /// `count` items in `partitions` contiguous ranges, item `i` being `f(i)`.
    pub fn new(count: u64, partitions: u64, f: F) -> Self {
        Self {
            inner: GeneratorSource::new(count, f),
            partitions: partitions.max(1),
        }
    }

    /// How many items one poll returns at most (default 4096).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.inner = self.inner.batch_size(batch_size);
        self
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> super::FixedPartitionedSource
    for PartitionedGenerator<T, F>
{
    type Item = T;
    type State = u64;
    type Partition = GeneratorPartition<F>;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        // Zero-padded, so that sorting the names keeps their numeric order.
        Ok((0..self.partitions)
            .map(|p| format!("part-{p:06}"))
            .collect())
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<Self::Partition> {
        let p: u64 = for_part
            .strip_prefix("part-")
            .and_then(|n| n.parse().ok())
            .filter(|p| *p < self.partitions)
            .ok_or_else(|| {
                crate::RiffleError::connector(
                    step_id,
                    format!("no generator partition {for_part:?}"),
                )
            })?;
        let n = self.partitions as u128;
        let count = self.inner.count as u128;
        let start = (p as u128 * count / n) as u64;
        let end = ((p as u128 + 1) * count / n) as u64;
        let start = resume_state.unwrap_or(start).clamp(start, end);
        Ok(GeneratorPartition {
            range: start..end,
            batch_size: self.inner.batch_size as u64,
            f: self.inner.f.clone(),
        })
    }
}
