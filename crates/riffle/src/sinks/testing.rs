//! [`TestingSink`]: items collected in memory.

use std::sync::{Arc, Mutex};

use super::{FixedPartitionedSink, SinkPartition};
use crate::data::Data;
use crate::error::Result;

/// Collects every item in memory; clone it before handing it to `output` and read
/// the clone after the run. All items go to one partition, so they arrive in one
/// worker's order. Delivery under recovery: at-least-once.
#[derive(Debug)]
pub struct TestingSink<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for TestingSink<T> {
    fn clone(&self) -> Self {
        Self {
            items: self.items.clone(),
        }
    }
}

impl<T: Data> Default for TestingSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> TestingSink<T> {
    /// An empty sink.
    pub fn new() -> Self {
        Self {
            items: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Takes the items collected so far, in arrival order.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes the items collected so far, sorted.
    pub fn take_sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut items = self.take();
        items.sort();
        items
    }
}

impl<T: Data> FixedPartitionedSink for TestingSink<T> {
    type Item = T;
    type State = ();
    type Partition = Self;

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(vec!["testing".to_string()])
    }

    fn build_part(&self, _step_id: &str, _for_part: &str, _resume: Option<()>) -> Result<Self> {
        Ok(self.clone())
    }
}

impl<T: Data> SinkPartition for TestingSink<T> {
    type Item = T;
    type State = ();

    fn write_batch(&mut self, mut items: Vec<T>) -> Result<()> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut items);
        Ok(())
    }
}
