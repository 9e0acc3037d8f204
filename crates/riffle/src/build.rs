//! Building a [`crate::Dataflow`] inside one timely worker.
//!
//! A `Dataflow` is a description; executing it runs every step's builder, in the order
//! the steps were added, inside every worker. Each builder looks up the timely streams
//! of its upstream steps in a [`BuildCtx`] by key, adds its operators, and stores its
//! own output streams under its keys.
//!
//! Timely's streams borrow the worker's scope (`Stream<'scope, ...>`), so they cannot
//! be stored as `Box<dyn Any>` (which needs `'static`). The context keeps them as
//! `Box<dyn AnySlot<'s>>` instead and downcasts by the element's `TypeId`: every slot
//! in one context has the same `'s`, so only the element type needs checking.

use std::any::TypeId;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::error::{Result, RiffleError};
use crate::origin::{Origins, Traced};
use crate::run::RunShared;

/// A timely stream of `T` at epoch timestamps, borrowed from a worker's scope.
pub(crate) type TStream<'s, T> = StreamVec<'s, u64, T>;

trait AnySlot<'s> {
    fn elem_type(&self) -> TypeId;
    fn elem_type_name(&self) -> &'static str;
    fn probe_with(&self, probe: &ProbeHandle<u64>);
    fn consumed(&self) -> bool;
}

/// A stream, and whether a step has taken it as its input.
struct Slot<'s, T: 'static> {
    stream: TStream<'s, T>,
    consumed: Cell<bool>,
}

impl<'s, T: Clone + 'static> AnySlot<'s> for Slot<'s, T> {
    fn elem_type(&self) -> TypeId {
        TypeId::of::<T>()
    }
    fn elem_type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn probe_with(&self, probe: &ProbeHandle<u64>) {
        let _ = self.stream.clone().probe_with(probe);
    }
    fn consumed(&self) -> bool {
        self.consumed.get()
    }
}

/// Which worker is building, out of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// This worker's index, from 0 to `count - 1`, unique across the cluster.
    pub index: usize,
    /// The number of workers in the whole cluster.
    pub count: usize,
}

/// What a step builder sees while building inside one worker.
pub(crate) struct BuildCtx<'s> {
    pub scope: Scope<'s, u64>,
    pub worker: WorkerInfo,
    pub shared: Arc<RunShared>,
    /// Whether sources and stateless steps carry origins (the flow has an
    /// event-time window; see [`crate::origin`]).
    pub trace_origins: bool,
    /// The whole flow's progress on this worker (every stream and every sink's
    /// progress): a source commits what the flow has passed.
    pub progress: ProbeHandle<u64>,
    /// What to do once the flow has finished on this worker without a failure.
    pub finally: Finally,
    streams: HashMap<String, Box<dyn AnySlot<'s> + 's>>,
    origins: HashMap<String, Origins<'s>>,
    sinks: Vec<TStream<'s, ()>>,
}

/// Work a step leaves for the end of a run that finished cleanly, such as a
/// source's last commit and close once every sink has written its items. Run by
/// the worker, in order, after its dataflow is complete.
#[derive(Clone, Default)]
pub(crate) struct Finally(std::rc::Rc<std::cell::RefCell<Vec<Task>>>);

/// One piece of work for the end of a run.
type Task = Box<dyn FnOnce() -> Result<()>>;

impl Finally {
    /// Adds `task`.
    pub fn push(&self, task: impl FnOnce() -> Result<()> + 'static) {
        self.0.borrow_mut().push(Box::new(task));
    }

    /// Runs every task, returning the first error.
    pub fn run(&self) -> Result<()> {
        let tasks = std::mem::take(&mut *self.0.borrow_mut());
        let mut first = Ok(());
        for task in tasks {
            if let Err(e) = task()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl<'s> BuildCtx<'s> {
    pub fn new(
        scope: Scope<'s, u64>,
        shared: Arc<RunShared>,
        trace_origins: bool,
        progress: ProbeHandle<u64>,
    ) -> Self {
        let worker = WorkerInfo {
            index: scope.index(),
            count: scope.peers(),
        };
        Self {
            scope,
            worker,
            shared,
            trace_origins,
            progress,
            finally: Finally::default(),
            streams: HashMap::new(),
            origins: HashMap::new(),
            sinks: Vec::new(),
        }
    }

    /// The stream stored under `key`, which must carry `T`.
    pub fn stream<T: Clone + 'static>(&self, key: &str) -> Result<TStream<'s, T>> {
        let slot = self.streams.get(key).ok_or_else(|| {
            RiffleError::Execution(format!("stream {key:?} was used before it was built"))
        })?;
        if slot.elem_type() != TypeId::of::<T>() {
            return Err(RiffleError::Execution(format!(
                "stream {key:?} carries {} but {} was expected",
                slot.elem_type_name(),
                std::any::type_name::<T>()
            )));
        }
        let ptr = &**slot as *const (dyn AnySlot<'s> + 's) as *const Slot<'s, T>;
        // SAFETY: the slot was created by `insert::<T>` as a `Slot<'s, T>` (its element
        // type id was checked just above), and every slot of this context shares `'s`.
        let slot = unsafe { &*ptr };
        slot.consumed.set(true);
        Ok(slot.stream.clone())
    }

    /// Watches the flow's ends with `probe`: every stream built so far that no step
    /// took as its input, and every sink's progress. Its frontier is the flow's: a
    /// step's output holds back every epoch its input still carries, so the ends
    /// hold every epoch in flight. (A probe is an operator: on a stream that also
    /// feeds a step, every batch would be copied for it.)
    pub fn probe_all(&mut self, probe: &ProbeHandle<u64>) {
        for slot in self.streams.values() {
            if !slot.consumed() {
                slot.probe_with(probe);
            }
        }
        for stream in self.sinks.drain(..) {
            let _ = stream.probe_with(probe);
        }
    }

    /// Adds a sink's progress stream to what [`BuildCtx::probe_all`] watches.
    pub fn watch_sink(&mut self, stream: TStream<'s, ()>) {
        self.sinks.push(stream);
    }

    /// The stream stored under `key` with its origins, if it carries them.
    pub fn traced<T: Clone + 'static>(&self, key: &str) -> Result<Traced<'s, T>> {
        Ok((self.stream(key)?, self.origins.get(key).cloned()))
    }

    /// Stores `stream` under `key`, with its origins if it has them.
    pub fn insert_traced<T: Clone + 'static>(
        &mut self,
        key: String,
        (stream, origins): Traced<'s, T>,
    ) {
        if let Some(origins) = origins {
            self.origins.insert(key.clone(), origins);
        }
        self.insert(key, stream);
    }

    /// Stores the origins of the stream under `key`.
    pub fn insert_origins(&mut self, key: String, origins: Origins<'s>) {
        self.origins.insert(key, origins);
    }

    /// Stores `stream` under `key`.
    pub fn insert<T: Clone + 'static>(&mut self, key: String, stream: TStream<'s, T>) {
        self.streams.insert(
            key,
            Box::new(Slot {
                stream,
                consumed: Cell::new(false),
            }),
        );
    }
}
