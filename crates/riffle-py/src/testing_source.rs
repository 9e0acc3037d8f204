//! `TestingSource` with bytewax's markers among its items: `TestingSource.EOF()`
//! ends the stream there, `TestingSource.ABORT()` stops the run there the way a
//! crash would (once per marker object).
//!
//! Items without markers go to the engine's own
//! [`riffle::sources::TestingSource`]. With markers, [`MarkedSource`] reads them:
//! the same single partition and batches, and its position is the index of the
//! next entry, so a resumed run goes on after an EOF, as bytewax's does.
//!
//! An abort is an error from the partition, which stops the run without flushing
//! what is in flight; the flow's [`Failures`] notes it was on purpose, so
//! `run_main` returns instead of raising. A marker that has aborted once has
//! `_triggered` set (the attribute bytewax's marker has) and is passed over by
//! later runs.

use std::sync::Arc;

use pyo3::prelude::*;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};

use crate::failure::Failures;
use crate::item::PyItem;

/// One entry of a marked `TestingSource`.
pub(crate) enum Entry {
    Item(PyItem),
    /// `TestingSource.EOF()`: the stream ends here.
    Eof,
    /// `TestingSource.ABORT()`: the run stops here, unless this marker did so
    /// before.
    Abort(Py<PyAny>),
}

/// The entries of a `TestingSource` that holds markers.
pub(crate) struct MarkedSource {
    step_id: String,
    entries: Arc<Vec<Entry>>,
    batch_size: usize,
    failures: Failures,
}

impl MarkedSource {
    pub(crate) fn new(
        step_id: &str,
        entries: Vec<Entry>,
        batch_size: usize,
        failures: Failures,
    ) -> Self {
        Self {
            step_id: step_id.to_string(),
            entries: Arc::new(entries),
            batch_size: batch_size.max(1),
            failures,
        }
    }
}

impl FixedPartitionedSource for MarkedSource {
    type Item = PyItem;
    type State = usize;
    type Partition = MarkedPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok(vec!["iterable".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume: Option<usize>,
    ) -> riffle::Result<MarkedPartition> {
        Ok(MarkedPartition {
            step_id: self.step_id.clone(),
            entries: self.entries.clone(),
            next: resume.unwrap_or(0),
            batch_size: self.batch_size,
            failures: self.failures.clone(),
            stop: None,
        })
    }
}

/// Why a [`MarkedPartition`] stops.
#[derive(Clone, Copy)]
enum Stop {
    Eof,
    Abort,
}

/// The one partition of a [`MarkedSource`].
pub(crate) struct MarkedPartition {
    step_id: String,
    entries: Arc<Vec<Entry>>,
    /// The index of the next entry to read.
    next: usize,
    batch_size: usize,
    failures: Failures,
    /// A marker met at the end of the last batch, acted on at the next poll.
    stop: Option<Stop>,
}

impl MarkedPartition {
    /// Whether the abort marker `marker` has not stopped a run yet; marks it.
    fn triggers(marker: &Py<PyAny>) -> bool {
        crate::attach::attach(|py| {
            let marker = marker.bind(py);
            let triggered = marker
                .getattr("_triggered")
                .and_then(|t| t.is_truthy())
                .unwrap_or(false);
            if !triggered {
                // A marker without the attribute (it is a dataclass field) still
                // aborts; it then aborts on every run.
                let _ = marker.setattr("_triggered", true);
            }
            !triggered
        })
    }
}

impl SourcePartition for MarkedPartition {
    type Item = PyItem;
    type State = usize;

    fn next_batch(&mut self) -> riffle::Result<Poll<PyItem>> {
        match self.stop {
            Some(Stop::Eof) => return Ok(Poll::Exhausted),
            Some(Stop::Abort) => {
                self.failures.abort();
                return Err(riffle::RiffleError::connector(
                    &self.step_id,
                    "TestingSource.ABORT() stopped the run",
                ));
            }
            None => {}
        }
        let mut batch = Vec::new();
        while let Some(entry) = self.entries.get(self.next) {
            match entry {
                Entry::Item(item) => {
                    batch.push(item.clone());
                    self.next += 1;
                    if batch.len() >= self.batch_size {
                        break;
                    }
                }
                Entry::Eof => {
                    // A resumed run goes on after the marker.
                    self.next += 1;
                    self.stop = Some(Stop::Eof);
                    break;
                }
                Entry::Abort(marker) => {
                    // A resumed run reads the marker again and passes over it.
                    if Self::triggers(marker) {
                        self.stop = Some(Stop::Abort);
                        break;
                    }
                    self.next += 1;
                }
            }
        }
        if batch.is_empty() {
            return match self.stop {
                Some(_) => self.next_batch(),
                None => Ok(Poll::Exhausted),
            };
        }
        Ok(Poll::Ready(batch))
    }

    fn snapshot(&self) -> Option<usize> {
        Some(self.next)
    }
}
