//! [`StdOutSink`]: items printed, one per line.

use std::fmt::Debug;
use std::io::Write;
use std::marker::PhantomData;

use super::{FixedPartitionedSink, SinkPartition};
use crate::data::Data;
use crate::error::{Result, RiffleError};

/// Prints every item on standard output with its `Debug` form (strings without
/// quotes), one per line, from a single worker so lines never interleave.
/// Delivery under recovery: at-least-once (what was printed after the last commit
/// is printed again on resume).
pub struct StdOutSink<T>(PhantomData<fn(T)>);

impl<T> Default for StdOutSink<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> StdOutSink<T> {
    /// A new sink.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Data> FixedPartitionedSink for StdOutSink<T> {
    type Item = T;
    type State = ();
    type Partition = StdOutPartition<T>;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(vec!["stdout".to_string()])
    }

    fn build_part(&self, step_id: &str, _: &str, _: Option<()>) -> Result<Self::Partition> {
        Ok(StdOutPartition {
            step_id: step_id.to_string(),
            _item: PhantomData,
        })
    }
}

/// The one partition of a [`StdOutSink`].
pub struct StdOutPartition<T> {
    step_id: String,
    _item: PhantomData<fn(T)>,
}

fn line<T: Debug + 'static>(item: &T) -> String {
    match (item as &dyn std::any::Any).downcast_ref::<String>() {
        Some(s) => s.clone(),
        None => format!("{item:?}"),
    }
}

impl<T: Data> SinkPartition for StdOutPartition<T> {
    type Item = T;
    type State = ();

    fn write_batch(&mut self, items: Vec<T>) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for item in &items {
            writeln!(out, "{}", line(item)).map_err(|e| {
                RiffleError::connector(
                    &self.step_id,
                    format!("cannot write to standard output: {e}"),
                )
            })?;
        }
        Ok(())
    }
}
