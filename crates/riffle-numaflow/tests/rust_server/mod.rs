//! Riffle's own UDF servers for the Dataflow step tests: any server on its own thread
//! and runtime, stopped (and joined) when dropped.
#![allow(dead_code)]

use std::future::Future;

/// A server running on its own thread until dropped.
pub struct RustServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RustServer {
    /// Runs `serve(shutdown)` on a new thread; `shutdown` resolves when the server is
    /// dropped. A server that fails to serve panics its thread, which the drop reports.
    pub fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(Box<dyn Future<Output = ()> + Send + Unpin>) -> Fut + Send + 'static,
        Fut: Future<Output = riffle_numaflow::Result<()>>,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let shutdown = Box::new(Box::pin(async move {
                let _ = rx.await;
            }));
            rt.block_on(serve(shutdown))
                .expect("the Rust UDF server failed");
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the Rust UDF server's thread panicked");
        }
    }
}
