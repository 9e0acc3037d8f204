//! Side inputs: a value retrieved on a schedule and read by the flow's steps.
//!
//! In Numaflow a side input is a [`SideInput`] UDF the platform calls on a schedule;
//! each value it broadcasts reaches every vertex that reads it, and vertices start
//! only once a value exists. In a Riffle flow, `flow.udf_side_input(step_id,
//! side_input, refresh)` (or `udf_call_side_input` for a side-input server of any
//! language) adds a side-input step and returns a [`SideInputHandle`]: a shared cell
//! holding the latest broadcast value. Steps read it by capturing a clone of the
//! handle in their closures (or in a UDF struct) and calling [`SideInputHandle::get`].
//!
//! How the value stays fresh:
//!
//! - When a run builds the flow, the side-input step starts a background thread
//!   that calls `retrieve` at once and then every `refresh`. Every worker waits in
//!   the build for that first retrieval, so steps see the value from their first
//!   item; if no retrieval has succeeded yet, the run fails with an error naming the
//!   step.
//! - An answer of [`SideInputValue::Broadcast`] replaces the value (and counts in
//!   [`SideInputHandle::broadcasts`]); [`SideInputValue::NoBroadcast`] keeps the
//!   previous one. A retrieval that fails later keeps the previous value too; its
//!   error is logged and kept in [`SideInputHandle::last_error`] until a retrieval
//!   succeeds.
//! - The thread stops when the flow and every handle are dropped, or at
//!   [`SideInputHandle::stop`]; later runs of the same flow share the running
//!   thread.
//!
//! **In a cluster each process retrieves on its own.** Every process builds its own
//! flow and its own side-input step, so N processes call the retriever N times per
//! interval, and two processes may hold different values for up to one interval
//! (Numaflow instead retrieves once and broadcasts through its key-value store). Use
//! a retriever that is cheap to call and whose answers converge (a file, a config
//! service), not one that answers each call differently.
//!
//! ```
//! use std::time::Duration;
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//! use riffle_numaflow::dataflow::UdfFlowExt;
//! use riffle_numaflow::udf::side_input_fn;
//! use riffle_numaflow::SideInputValue;
//!
//! let flow = Dataflow::new("prices");
//! let rate = flow.udf_side_input(
//!     "eur-rate",
//!     side_input_fn(|| Ok(SideInputValue::Broadcast(b"1.25".to_vec()))),
//!     Duration::from_secs(60),
//! )?;
//! let out = TestingSink::new();
//! flow.input("usd", TestingSource::new(vec![4.0, 8.0]))?
//!     .map("eur", move |usd: f64| {
//!         let rate: f64 = std::str::from_utf8(&rate.get().unwrap()).unwrap().parse().unwrap();
//!         usd * rate
//!     })?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take(), [5.0, 10.0]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use riffle::sources::{DynamicSource, Poll, SourcePartition};
use riffle::{Dataflow, WorkerInfo};

use super::step_error;
use crate::client::{ClientOptions, SideInputClient};
use crate::datum::SideInputValue;
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::SideInput;

/// The latest value of a side-input step, for the flow's steps to read; cloning it
/// is cheap. See the [module docs](self).
#[derive(Clone)]
pub struct SideInputHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SideInputHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideInputHandle")
            .field("step_id", &self.shared.step_id)
            .field("broadcasts", &self.broadcasts())
            .finish()
    }
}

/// What the handles of one side-input step share.
struct Shared {
    step_id: String,
    refresh: Duration,
    value: RwLock<Option<Arc<[u8]>>>,
    state: Mutex<State>,
    changed: Condvar,
}

/// The refresher's progress.
struct State {
    /// The retriever, until the refresher thread takes it.
    retriever: Option<Box<dyn Retriever>>,
    /// Tells the refresher to stop; dropped with the last handle, which stops it too.
    stop: Option<mpsc::Sender<()>>,
    retrievals: u64,
    successes: u64,
    broadcasts: u64,
    last_error: Option<String>,
}

/// Calls a side input once, on the refresher thread.
trait Retriever: Send + 'static {
    fn retrieve(&mut self) -> Result<SideInputValue, String>;
}

struct InProcess<S>(Arc<S>);

impl<S: SideInput> Retriever for InProcess<S> {
    fn retrieve(&mut self) -> Result<SideInputValue, String> {
        block_on(self.0.retrieve()).map_err(|e| format!("{} UDF failed: {e}", UdfKind::SideInput))
    }
}

/// A side-input server, connected on the first retrieval; the client reconnects by
/// itself after the server restarted.
struct Remote {
    options: ClientOptions,
    client: Option<SideInputClient>,
}

impl Retriever for Remote {
    fn retrieve(&mut self) -> Result<SideInputValue, String> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let client = block_on(SideInputClient::connect(self.options.clone()))
                    .map_err(|e| e.to_string())?;
                self.client.insert(client)
            }
        };
        block_on(client.retrieve()).map_err(|e| e.to_string())
    }
}

impl SideInputHandle {
    fn new(step_id: &str, refresh: Duration, retriever: Box<dyn Retriever>) -> Self {
        Self {
            shared: Arc::new(Shared {
                step_id: step_id.to_string(),
                refresh,
                value: RwLock::new(None),
                state: Mutex::new(State {
                    retriever: Some(retriever),
                    stop: None,
                    retrievals: 0,
                    successes: 0,
                    broadcasts: 0,
                    last_error: None,
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// The side-input step's id.
    pub fn step_id(&self) -> &str {
        &self.shared.step_id
    }

    /// The latest value broadcast, or `None` before the first broadcast.
    pub fn get(&self) -> Option<Arc<[u8]>> {
        self.shared
            .value
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many values have been broadcast so far (a version of the value).
    pub fn broadcasts(&self) -> u64 {
        self.shared.state().broadcasts
    }

    /// The error of the latest retrieval, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.shared.state().last_error.clone()
    }

    /// Waits until at least `broadcasts` values have been broadcast; `false` when
    /// `timeout` passed first.
    pub fn wait_for_broadcasts(&self, broadcasts: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while state.broadcasts < broadcasts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Stops refreshing: the value stays as it is. The refresher does not start again.
    pub fn stop(&self) {
        if let Some(stop) = self.shared.state().stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one retrieval's outcome.
    fn record(&self, outcome: Result<SideInputValue, String>) {
        let mut state = self.state();
        state.retrievals += 1;
        match outcome {
            Ok(value) => {
                state.successes += 1;
                state.last_error = None;
                if let SideInputValue::Broadcast(bytes) = value {
                    *self.value.write().unwrap_or_else(|p| p.into_inner()) = Some(bytes.into());
                    state.broadcasts += 1;
                }
            }
            Err(e) => {
                if state.successes > 0 {
                    tracing::warn!(step_id = %self.step_id, error = %e, "side input retrieval failed; keeping the previous value");
                }
                state.last_error = Some(e);
            }
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// Starts the refresher if it has not started, and waits for its first retrieval.
fn start_and_wait(shared: &Arc<Shared>, step_id: &str) -> riffle::Result<()> {
    let mut state = shared.state();
    if let Some(retriever) = state.retriever.take() {
        let (stop, stopped) = mpsc::channel();
        state.stop = Some(stop);
        let weak = Arc::downgrade(shared);
        let refresh = shared.refresh;
        std::thread::Builder::new()
            .name(format!("riffle-side-input-{step_id}"))
            .spawn(move || refresh_loop(weak, retriever, refresh, stopped))
            .map_err(|e| step_error(step_id, format!("cannot start the side input: {e}")))?;
    }
    while state.retrievals == 0 {
        state = shared
            .changed
            .wait(state)
            .unwrap_or_else(|p| p.into_inner());
    }
    if state.successes == 0 {
        let reason = state.last_error.clone().unwrap_or_default();
        return Err(step_error(
            step_id,
            format!("the side input has no value: {reason}"),
        ));
    }
    Ok(())
}

/// The refresher thread: retrieves now and every `refresh` until told to stop or
/// until every handle is gone.
fn refresh_loop(
    shared: Weak<Shared>,
    mut retriever: Box<dyn Retriever>,
    refresh: Duration,
    stopped: mpsc::Receiver<()>,
) {
    loop {
        let outcome = retriever.retrieve();
        match shared.upgrade() {
            Some(shared) => shared.record(outcome),
            None => return,
        }
        match stopped.recv_timeout(refresh) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

pub(super) fn udf_side_input<S: SideInput>(
    flow: &Dataflow,
    step_id: &str,
    side_input: S,
    refresh: Duration,
) -> riffle::Result<SideInputHandle> {
    let retriever = Box::new(InProcess(Arc::new(side_input)));
    add_step(
        flow,
        step_id,
        SideInputHandle::new(step_id, refresh, retriever),
    )
}

pub(super) fn udf_call_side_input(
    flow: &Dataflow,
    step_id: &str,
    options: ClientOptions,
    refresh: Duration,
) -> riffle::Result<SideInputHandle> {
    let retriever = Box::new(Remote {
        options,
        client: None,
    });
    add_step(
        flow,
        step_id,
        SideInputHandle::new(step_id, refresh, retriever),
    )
}

fn add_step(
    flow: &Dataflow,
    step_id: &str,
    handle: SideInputHandle,
) -> riffle::Result<SideInputHandle> {
    flow.input_dynamic(
        step_id,
        SideInputStep {
            shared: handle.shared.clone(),
        },
    )?;
    Ok(handle)
}

/// The side-input step: its build starts the refresher; it produces no items.
struct SideInputStep {
    shared: Arc<Shared>,
}

/// A side-input step's partition: empty, done at once.
struct NoItems;

impl DynamicSource for SideInputStep {
    type Item = ();
    type Partition = NoItems;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<NoItems> {
        start_and_wait(&self.shared, step_id)?;
        Ok(NoItems)
    }
}

impl SourcePartition for NoItems {
    type Item = ();
    type State = ();

    fn next_batch(&mut self) -> riffle::Result<Poll<()>> {
        Ok(Poll::Exhausted)
    }
}
