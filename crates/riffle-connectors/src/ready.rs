//! The waker a source partition is handed
//! ([`SourcePartition::wake_on_ready`](riffle::sources::SourcePartition::wake_on_ready)),
//! kept where the partition's reader task can wake it: the shared
//! [`reader`](crate::reader) wakes it after each batch it hands over, the NATS
//! reader when a message finds its queue empty. Whoever polls the partition (a
//! dataflow's source operator, a Flow's consumer replica) then reads at once
//! instead of at its next tick.

use std::sync::{Arc, Mutex};
use std::task::Waker;

/// A partition's waker, shared with its reader task; none until one is set.
#[derive(Clone, Default)]
pub(crate) struct Ready(Arc<Mutex<Option<Waker>>>);

impl Ready {
    /// Keeps `waker` to be woken from now on.
    pub(crate) fn set(&self, waker: &Waker) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
    }

    /// Wakes the waker kept, if any.
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            waker.wake_by_ref();
        }
    }
}
