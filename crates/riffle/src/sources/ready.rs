//! Waking a dataflow's source when a partition says it has items.
//!
//! A source operator polls its partitions; when none has anything it asks to be
//! scheduled again after a short tick. A partition that can tell when items
//! arrive ([`SourcePartition::wake_on_ready`](super::SourcePartition::wake_on_ready):
//! Kafka's queue callback, a reader task's channel) is handed a [`Waker`] made
//! here, which activates the source operator from any thread and unparks its
//! worker: the items are read at once instead of at the next tick.

use std::sync::Arc;
use std::task::{Wake, Waker};

use timely::scheduling::SyncActivator;

/// Activates one operator from any thread.
struct Activation(SyncActivator);

impl Wake for Activation {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // An error means the worker is gone: nothing left to wake.
        let _ = self.0.activate();
    }
}

/// A waker that schedules the operator `activator` addresses.
pub(super) fn activation_waker(activator: SyncActivator) -> Waker {
    Waker::from(Arc::new(Activation(activator)))
}
