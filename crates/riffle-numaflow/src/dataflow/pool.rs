//! The connections of steps that call UDF servers: each step keeps a pool of open
//! clients of its server, one per worker that is calling it at the moment.
//!
//! A Dataflow worker is a plain thread that handles one batch at a time. When it
//! calls a step's server it takes an idle client from the step's [`ClientPool`], or
//! connects a new one (waiting for the server info and `IsReady`, as the client
//! does), makes the call, and puts the client back; so a step holds as many
//! connections as workers call it at once, and each batch reuses an open stream. The
//! client itself reconnects and resends a batch when the server went away mid-call.
//! The clients are driven by one background runtime shared by the process; worker
//! threads block on their own calls.
//!
//! The pool lives as long as the flow that holds the step, across runs: dropping
//! the flow ends every stream cleanly (some servers stop when a stream is cancelled
//! instead). Every remote step (map, batch map, transform, reduce, reduce-stream,
//! accumulator) goes through here: a new kind of client only says how it closes
//! ([`Pooled`]).

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::client::{
    AccumulatorClient, ClientOptions, MapClient, ReduceClient, SourceTransformClient,
};
use crate::error::Error;
use crate::kind::UdfKind;

/// A client a step keeps open between calls.
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

/// An accumulator client opens one stream per call (each key opened and closed on
/// it) and holds none in between.
impl Pooled for AccumulatorClient {
    async fn close(self) {}
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

/// The idle clients of one step's server.
pub(crate) struct ClientPool<C: Pooled> {
    options: ClientOptions,
    idle: Mutex<Vec<C>>,
}

impl<C: Pooled> ClientPool<C> {
    /// An empty pool of clients connected with `options`.
    pub(crate) fn new(options: ClientOptions) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `call` on an idle client, or on one made by `connect` when none is idle.
    /// The client goes back to the pool whatever the outcome: after a failure it
    /// reconnects by itself on its next call.
    pub(crate) fn call<T>(
        &self,
        connect: impl AsyncFnOnce(ClientOptions) -> crate::Result<C>,
        call: impl AsyncFnOnce(&mut C) -> crate::Result<T>,
    ) -> crate::Result<T> {
        let runtime = connections_runtime()?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut client = match idle {
            Some(client) => client,
            None => runtime.block_on(connect(self.options.clone()))?,
        };
        let out = runtime.block_on(call(&mut client));
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(client);
        out
    }
}

impl<C: Pooled> Drop for ClientPool<C> {
    fn drop(&mut self) {
        let clients = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if clients.is_empty() {
            return;
        }
        let Ok(runtime) = connections_runtime() else {
            return;
        };
        let closing = async move {
            let mut all = tokio::task::JoinSet::new();
            for client in clients {
                all.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
                });
            }
            while all.join_next().await.is_some() {}
        };
        // Wait for the streams to end, unless dropped inside async code (a flow
        // dropped in a tokio task), where blocking is not allowed.
        if tokio::runtime::Handle::try_current().is_ok() {
            runtime.spawn(closing);
        } else {
            runtime.block_on(closing);
        }
    }
}
