//! The connections of steps that call UDF servers: one open client per step, server
//! and worker thread, kept between batches.
//!
//! A Dataflow worker is a plain thread that handles one batch at a time, so each
//! worker keeps its own client of every server its steps call ([`with_client`]): the
//! first batch connects (waiting for the server info and `IsReady` as the client
//! does), later batches reuse the open stream, and the client itself reconnects and
//! resends a batch when the server went away mid-call. The clients are driven by one
//! background runtime shared by the process; worker threads block on their own calls.
//! The clients outlive the batches and are closed when their worker thread ends, so
//! a stream is ended cleanly (some servers stop when a stream is cancelled instead).
//!
//! Every remote step (map, batch map, transform, reduce) goes through here: a new kind
//! of client only says how it closes ([`Pooled`]).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use crate::client::{ClientOptions, MapClient, ReduceClient, SourceTransformClient};
use crate::error::Error;
use crate::kind::UdfKind;

/// A client a worker keeps open between calls.
pub(crate) trait Pooled: Send + 'static {
    /// Ends the client's streams cleanly (errors are of no use at that point).
    fn close(self) -> impl Future<Output = ()> + Send;
}

impl Pooled for MapClient {
    async fn close(self) {
        let _ = MapClient::close(self).await;
    }
}

impl Pooled for SourceTransformClient {
    async fn close(self) {
        let _ = SourceTransformClient::close(self).await;
    }
}

/// A reduce client opens one stream per window and holds none in between.
impl Pooled for ReduceClient {
    async fn close(self) {}
}

/// A pooled client of any type, as the per-thread map holds it.
trait Held: Send {
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn close_boxed(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<C: Pooled> Held for C {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn close_boxed(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(Pooled::close(*self))
    }
}

/// The runtime that drives the pooled clients: one background thread, shared by
/// every worker of the process.
fn connections_runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("riffle-udf-io")
            .enable_all()
            .build()
    });
    runtime.as_ref().map_err(|e| Error::Connect {
        kind: UdfKind::Map,
        socket: Default::default(),
        reason: format!("cannot start the UDF connections runtime: {e}"),
    })
}

/// One worker thread's clients, closed when the thread ends.
#[derive(Default)]
struct WorkerClients {
    clients: HashMap<String, Box<dyn Held>>,
}

impl Drop for WorkerClients {
    fn drop(&mut self) {
        let Ok(runtime) = connections_runtime() else {
            return;
        };
        for (_, client) in self.clients.drain() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.close_boxed()).await;
            });
        }
    }
}

thread_local! {
    static CLIENTS: RefCell<WorkerClients> = RefCell::new(WorkerClients::default());
}

/// Runs `call` on this worker's client of `step`'s server, connecting it with
/// `connect` first if this thread has none yet. The client is kept for the next call
/// whatever the outcome: after a failure it reconnects by itself.
pub(crate) fn with_client<C: Pooled, T>(
    step: &str,
    options: &ClientOptions,
    connect: impl AsyncFnOnce(ClientOptions) -> crate::Result<C>,
    call: impl AsyncFnOnce(&mut C) -> crate::Result<T>,
) -> crate::Result<T> {
    let key = format!(
        "{step}\u{0}{}\u{0}{}",
        options.socket.display(),
        std::any::type_name::<C>()
    );
    let runtime = connections_runtime()?;
    let held = CLIENTS.with(|w| w.borrow_mut().clients.remove(&key));
    let mut client = match held.and_then(|h| h.into_any().downcast::<C>().ok()) {
        Some(client) => *client,
        None => runtime.block_on(connect(options.clone()))?,
    };
    let out = runtime.block_on(call(&mut client));
    CLIENTS.with(|w| w.borrow_mut().clients.insert(key, Box::new(client)));
    out
}
