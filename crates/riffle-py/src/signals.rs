//! Ctrl-C while the engine runs.
//!
//! The interpreter runs its signal handlers only in its main thread, and only when
//! that thread runs Python. A run therefore goes on a thread of its own while the
//! calling thread waits for it and, every 50 ms, attaches and lets the handlers run:
//! a `KeyboardInterrupt` they raise is handed to the caller's `on_interrupt`, which
//! asks the run to stop. The wait ends the moment the run does, not at the next
//! 50 ms tick.

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

/// How often the waiting thread lets the signal handlers run.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Runs `work` on a new thread and returns its result (`Err` with the payload if it
/// panicked), calling `on_interrupt` each time a signal handler raises meanwhile.
pub(crate) fn run_watching_signals<R: Send>(
    work: impl FnOnce() -> R + Send,
    on_interrupt: impl Fn(),
) -> std::thread::Result<R> {
    let (done, finished) = channel::<()>();
    std::thread::scope(|scope| {
        let run = scope.spawn(move || {
            // Dropped when `work` returns or unwinds: the waiting thread wakes.
            let _done = done;
            work()
        });
        while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(SIGNAL_CHECK) {
            if crate::attach::attach(|py| py.check_signals()).is_err() {
                on_interrupt();
            }
        }
        run.join()
    })
}
