//! How errors cross between the engine and Python.
//!
//! **Building** a flow fails at once, in the call that adds the step: a step id
//! used twice or not valid is a `ValueError`, a function that is not callable or a
//! source or sink of an unknown kind is a `TypeError`, and each message names the
//! step.
//!
//! **Running** a flow fails when a user function raises. The engine only carries
//! text, so the exception itself waits in the flow's [`Failures`]: the step that
//! caught it records it there (the first one wins, later ones are consequences),
//! and returns the exception's summary to the engine, which stops the run
//! everywhere. When the run returns, [`run_error`] raises a `riffle.RiffleError`
//! whose message names the step (and the worker and epoch), whose `step_id`
//! attribute holds it, and whose `__cause__` is the user's exception object itself,
//! with its own traceback: Python prints the user's traceback first, then the step.
//!
//! **Sending** an item to another process of a cluster fails when the item cannot
//! be encoded (`pickle` refuses a lambda, a lock, a generator). The engine cannot
//! stop on that once the item is on its way, so the step that feeds an exchange
//! checks its items first ([`Failures::unsendable`]): the run fails naming the step
//! that produced the item, its type and pickle's reason, caused by pickle's
//! exception. A keyed aggregation that pre-aggregates checks the partial
//! accumulators its user's function makes, which are what it sends
//! ([`Failures::unsendable_accumulator`]), and a value that crosses unchecked
//! (`crate::unchecked`) fails the same way where it arrives and is needed, caused
//! by an exception made again from what pickle said on the sending process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyTypeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    riffle,
    RiffleError,
    PyException,
    "A dataflow failed to build or to run. `step_id` names the step (None when the \
     error is not about one step); when a user function raised, `__cause__` is that \
     exception."
);

/// An exception raised by a user function, and the step it was raised in.
pub(crate) struct Failure {
    step_id: String,
    error: PyErr,
    /// What went wrong, when it is more than the exception's summary.
    what: Option<String>,
}

/// The first exception raised by a user function during a run, kept for
/// [`run_error`], and whether a `TestingSource.ABORT()` marker stopped the run.
/// One per flow, shared by its steps' functions.
///
/// It also says whether the current run is one process of a cluster, where items
/// are checked before they are sent to another process ([`Failures::unsendable`]).
#[derive(Clone, Default)]
pub(crate) struct Failures {
    first: Arc<Mutex<Option<Failure>>>,
    aborted: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    clustered: Arc<AtomicBool>,
}

impl Failures {
    /// Keeps `error` (unless an earlier one is kept) and returns its summary for
    /// the engine's message: `TypeName: message`.
    pub(crate) fn record(&self, step_id: &str, error: PyErr) -> String {
        let summary = crate::attach::attach(|py| summary(py, &error));
        self.keep(step_id, error, None);
        summary
    }

    fn keep(&self, step_id: &str, error: PyErr, what: Option<String>) {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(Failure {
                step_id: step_id.to_string(),
                error,
                what,
            });
        }
    }

    /// Notes whether the run about to start is one process of a cluster.
    pub(crate) fn set_clustered(&self, clustered: bool) {
        self.clustered.store(clustered, Ordering::SeqCst);
    }

    /// Whether the current run is one process of a cluster, so items bound for a
    /// worker of another process are encoded (`src/wire.rs`).
    #[inline]
    pub(crate) fn clustered(&self) -> bool {
        self.clustered.load(Ordering::Relaxed)
    }

    /// Records that an item of type `item_type` produced by step `producer`
    /// cannot be sent to another process for step `consumer`, and returns the
    /// exception that stops the run: a `RiffleError` saying so, naming the
    /// producer, the type and pickle's reason, caused by pickle's exception.
    pub(crate) fn unsendable(
        &self,
        py: Python<'_>,
        producer: &str,
        consumer: &str,
        item_type: &str,
        refused: crate::wire::Unsendable,
    ) -> PyErr {
        let inside = if refused.type_name == item_type {
            String::new()
        } else {
            format!(" (the {} inside it)", refused.type_name)
        };
        let what = format!(
            "its output cannot be sent to another process for step {consumer:?}: \
             cannot pickle an item of type {item_type}{inside}: {}",
            summary(py, &refused.error)
        );
        self.refuse(py, producer, what, refused.error)
    }

    /// Records that the accumulator of step `step_id`, of type `acc_type`, cannot
    /// be sent to another process, where the owner of its key combines it with
    /// the other workers' (a keyed aggregation that pre-aggregates before its
    /// exchange), and returns the exception that stops the run: a `RiffleError`
    /// naming the step, the type and pickle's reason, caused by pickle's exception.
    pub(crate) fn unsendable_accumulator(
        &self,
        py: Python<'_>,
        step_id: &str,
        acc_type: &str,
        refused: crate::wire::Unsendable,
    ) -> PyErr {
        let inside = if refused.type_name == acc_type {
            String::new()
        } else {
            format!(" (the {} inside it)", refused.type_name)
        };
        let what = format!(
            "its accumulator cannot be sent to another process, where the owner of its \
             key combines it with the other workers' partial results: cannot pickle an \
             accumulator of type {acc_type}{inside}: {}",
            summary(py, &refused.error)
        );
        self.refuse(py, step_id, what, refused.error)
    }

    /// Keeps `error` as the run's failure at `step_id`, described by `what`, and
    /// returns the `RiffleError` that says so, caused by `error`.
    fn refuse(&self, py: Python<'_>, step_id: &str, what: String, error: PyErr) -> PyErr {
        let raised = riffle_error(py, format!("step {step_id:?}: {what}"), Some(step_id));
        raised.set_cause(py, Some(error.clone_ref(py)));
        self.keep(step_id, error, Some(what));
        raised
    }

    /// Stops the run when Ctrl-C was pressed: in the main thread (one worker) the
    /// interpreter's signal handler raises `KeyboardInterrupt` here; in a worker
    /// thread, where it cannot, the flag [`Failures::interrupt`] set is read.
    /// Called by every batch step and Python source before it enters user code.
    pub(crate) fn check_interrupt(&self, py: Python<'_>) -> PyResult<()> {
        if let Err(e) = py.check_signals() {
            self.interrupt();
            return Err(e);
        }
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(PyKeyboardInterrupt::new_err("the run was interrupted"));
        }
        Ok(())
    }

    /// Notes that the run is to stop because of Ctrl-C.
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    /// Whether Ctrl-C stopped the run (the flag is set, or the exception kept is
    /// a `KeyboardInterrupt`, raised by the interpreter inside a user function
    /// on the main thread), forgetting it and the errors it caused.
    pub(crate) fn take_interrupt(&self, py: Python<'_>) -> bool {
        let raised = self
            .lock()
            .as_ref()
            .is_some_and(|f| f.error.is_instance_of::<PyKeyboardInterrupt>(py));
        let interrupted = self.interrupted.swap(false, Ordering::SeqCst) || raised;
        if interrupted {
            self.take();
        }
        interrupted
    }

    /// Whether a user function's exception is kept.
    pub(crate) fn recorded(&self) -> bool {
        self.lock().is_some()
    }

    /// Notes that a `TestingSource.ABORT()` marker is stopping the run on purpose.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    /// Whether the run was stopped by an abort marker (and no user function
    /// raised), forgetting it.
    pub(crate) fn take_abort(&self) -> bool {
        self.aborted.swap(false, Ordering::SeqCst) && self.lock().is_none()
    }

    /// Forgets what an earlier run left.
    pub(crate) fn clear(&self) {
        self.take();
        self.aborted.store(false, Ordering::SeqCst);
        self.interrupted.store(false, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.first.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Failure> {
        self.lock().take()
    }
}

/// `TypeName: message`, as Python's last traceback line shows an exception.
pub(crate) fn summary(py: Python<'_>, error: &PyErr) -> String {
    let name = error
        .get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_string());
    match error.value(py).str() {
        Ok(text) if !text.to_string_lossy().is_empty() => {
            format!("{name}: {}", text.to_string_lossy())
        }
        _ => name,
    }
}

/// The Python exception for a run that returned `error`.
pub(crate) fn run_error(py: Python<'_>, error: riffle::RiffleError, failures: &Failures) -> PyErr {
    let Some(failure) = failures.take() else {
        return riffle_error(py, error.to_string(), error.step_id());
    };
    let where_ = match &error {
        riffle::RiffleError::UserPanic {
            worker, context, ..
        }
        | riffle::RiffleError::UserError {
            worker, context, ..
        } => format!(" on worker {worker}{context}"),
        _ => String::new(),
    };
    let what = match failure.what {
        Some(what) => what,
        None => summary(py, &failure.error),
    };
    let message = format!("step {:?} failed{where_}: {what}", failure.step_id);
    let raised = riffle_error(py, message, Some(&failure.step_id));
    raised.set_cause(py, Some(failure.error));
    raised
}

/// A `RiffleError` with `message` and a `step_id` attribute.
pub(crate) fn riffle_error(py: Python<'_>, message: String, step_id: Option<&str>) -> PyErr {
    let error = RiffleError::new_err(message);
    // Setting an attribute on a fresh exception object cannot fail short of memory
    // exhaustion; the message names the step either way.
    let _ = error.value(py).setattr("step_id", step_id);
    error
}

/// The Python exception for a step the engine refused while the flow was built.
pub(crate) fn build_error(py: Python<'_>, error: riffle::RiffleError) -> PyErr {
    match error {
        riffle::RiffleError::DuplicateStepId { .. } | riffle::RiffleError::InvalidStepId { .. } => {
            PyValueError::new_err(error.to_string())
        }
        other => riffle_error(py, other.to_string(), other.step_id()),
    }
}

/// `value`, checked to be callable: the `TypeError` names the step and the argument.
pub(crate) fn callable<'py>(
    step_id: &str,
    argument: &str,
    value: &Bound<'py, PyAny>,
) -> PyResult<Py<PyAny>> {
    if value.is_callable() {
        Ok(value.clone().unbind())
    } else {
        let kind = value
            .get_type()
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_default();
        Err(PyTypeError::new_err(format!(
            "step {step_id:?}: `{argument}` must be callable; got a {kind} instead"
        )))
    }
}
