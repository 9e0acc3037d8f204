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
}
