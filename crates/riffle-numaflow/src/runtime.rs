//! A small tokio runtime per thread, for calling async UDFs from synchronous code
//! (a Dataflow's workers, the CLI).
//!
//! Dataflow workers are plain threads; a UDF handler or client is async. Each worker
//! thread gets its own current-thread runtime, created on first use, and drives the
//! future to completion on it. Calling this from inside another tokio runtime is not
//! allowed (tokio forbids nested runtimes): run Dataflows outside async code.

use std::cell::OnceCell;
use std::future::Future;

thread_local! {
    static RUNTIME: OnceCell<tokio::runtime::Runtime> = const { OnceCell::new() };
}

/// Runs `future` to completion on this thread's runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|cell| {
        let runtime = cell.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot start a tokio runtime for UDF calls: {e}"))
        });
        runtime.block_on(future)
    })
}

/// Waits `duration` (inside [`block_on`] or any tokio runtime).
pub async fn sleep(duration: std::time::Duration) {
    tokio::time::sleep(duration).await;
}
