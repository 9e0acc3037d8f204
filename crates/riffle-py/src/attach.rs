//! Entering the interpreter from the engine's own threads, cheaply.
//!
//! A thread needs a Python thread state to run Python. The engine's worker threads
//! (and the threads of a cluster's processes) are not Python's: on such a thread
//! `Python::attach` makes a thread state, takes the GIL, and when it returns
//! releases the GIL and destroys the thread state again. Once per batch that is
//! nothing; once per item (a `PyItem` cloned where a stream feeds two steps, encoded
//! for another process, decoded from one) it was most of a run's time: a
//! system call for the thread's id, allocations and the interpreter's lock of its
//! thread list, per item.
//!
//! [`keep_thread_state`] gives such a thread one thread state for the rest of its
//! life: made once, the GIL released at once, so later attaches only take and give
//! back the GIL. It is cleared and freed when the thread ends. Threads that already
//! have a thread state (the interpreter's own, and threads started by Python) are
//! left as they are.

use std::cell::RefCell;

use pyo3::ffi;
use pyo3::prelude::*;

/// This thread's kept thread state: the one made by `PyGILState_Ensure`, and how to
/// give it back.
struct Kept {
    thread_state: *mut ffi::PyThreadState,
    gil_state: ffi::PyGILState_STATE,
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: `thread_state` is this thread's, saved by `PyEval_SaveThread` and
        // not current, so restoring it takes the GIL; the release of the matching
        // `PyGILState_Ensure` then brings its count to zero, which clears and
        // deletes it and releases the GIL. An interpreter already finalized freed it.
        unsafe {
            if ffi::Py_IsInitialized() == 0 {
                return;
            }
            ffi::PyEval_RestoreThread(self.thread_state);
            ffi::PyGILState_Release(self.gil_state);
        }
    }
}

thread_local! {
    /// `Some` once this thread keeps a thread state; `None` before, and on threads
    /// that have their own.
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// `Python::attach(f)`, on a thread that keeps its thread state (see the module's
/// documentation). Use it for every entry into Python from the engine's threads.
#[inline]
pub(crate) fn attach<F, R>(f: F) -> R
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    keep_thread_state();
    Python::attach(f)
}

/// Makes this thread keep a Python thread state from now on, if it has none (a
/// thread with one, Python's own or one inside an attach, is left as it is).
#[inline]
pub(crate) fn keep_thread_state() {
    if KEPT.with(|kept| kept.borrow().is_some()) {
        return;
    }
    // SAFETY: plain queries of the interpreter; `PyGILState_Ensure` on a thread
    // without a thread state makes one and takes the GIL, and `PyEval_SaveThread`
    // releases the GIL again keeping the thread state, which `Kept::drop` gives back.
    unsafe {
        if ffi::Py_IsInitialized() == 0 || !ffi::PyGILState_GetThisThreadState().is_null() {
            return;
        }
        let gil_state = ffi::PyGILState_Ensure();
        let thread_state = ffi::PyEval_SaveThread();
        KEPT.with(|kept| {
            *kept.borrow_mut() = Some(Kept {
                thread_state,
                gil_state,
            })
        });
    }
}
