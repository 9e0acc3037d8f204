//! [`TestingSource`]: items from memory, optionally with explicit epochs.

use std::sync::Arc;

use super::{FixedPartitionedSource, Poll, SourcePartition};
use crate::data::Data;
use crate::error::Result;

/// Items held in memory, read by one worker in batches.
///
/// With [`TestingSource::with_epochs`] each item carries the epoch it enters at, so
/// tests can reason about epochs exactly; epochs must not decrease.
///
/// ```
/// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
/// let flow = Dataflow::new("f");
/// let out = TestingSink::new();
/// flow.input("inp", TestingSource::with_epochs(vec![(0, 'a'), (1, 'b')]))?
///     .inspect_epoch("see", |epoch, item| assert!(*epoch <= 1, "{item}"))?
///     .output("out", out.clone())?;
/// riffle::run_main(&flow)?;
/// assert_eq!(out.take_sorted(), ['a', 'b']);
/// # Ok::<(), riffle::RiffleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TestingSource<T> {
    items: Arc<Vec<(Option<u64>, T)>>,
    batch_size: usize,
}

impl<T: Data> TestingSource<T> {
    /// `items`, entering at the current (wall-clock) epoch.
    pub fn new(items: Vec<T>) -> Self {
        Self {
            items: Arc::new(items.into_iter().map(|i| (None, i)).collect()),
            batch_size: 1024,
        }
    }

    /// `(epoch, item)` pairs, each entering at its epoch.
    pub fn with_epochs(items: Vec<(u64, T)>) -> Self {
        Self {
            items: Arc::new(items.into_iter().map(|(e, i)| (Some(e), i)).collect()),
            batch_size: 1024,
        }
    }

    /// How many items one poll returns at most (default 1024).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }
}

impl<T: Data + Sync> FixedPartitionedSource for TestingSource<T> {
    type Item = T;
    type State = usize;
    type Partition = TestingPartition<T>;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(vec!["testing".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume: Option<usize>,
    ) -> Result<Self::Partition> {
        Ok(TestingPartition {
            items: self.items.clone(),
            next: resume.unwrap_or(0),
            batch_size: self.batch_size,
        })
    }
}

/// The one partition of a [`TestingSource`].
pub struct TestingPartition<T> {
    items: Arc<Vec<(Option<u64>, T)>>,
    next: usize,
    batch_size: usize,
}

impl<T: Data + Sync> SourcePartition for TestingPartition<T> {
    type Item = T;
    type State = usize;

    fn next_batch(&mut self) -> Result<Poll<T>> {
        let rest = &self.items[self.next.min(self.items.len())..];
        let Some((epoch, _)) = rest.first() else {
            return Ok(Poll::Exhausted);
        };
        let epoch = *epoch;
        let len = rest
            .iter()
            .take(self.batch_size)
            .take_while(|(e, _)| *e == epoch)
            .count();
        let batch: Vec<T> = rest[..len].iter().map(|(_, item)| item.clone()).collect();
        self.next += len;
        Ok(match epoch {
            Some(e) => Poll::ReadyAt(e, batch),
            None => Poll::Ready(batch),
        })
    }

    fn snapshot(&self) -> Option<usize> {
        Some(self.next)
    }
}
