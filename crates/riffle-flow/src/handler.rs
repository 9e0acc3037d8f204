//! How a consumer's function is called on a batch: a plain function item by
//! item, or an async one on every item of the batch at once.
//!
//! Either way each item is tried again after a backoff while the function
//! fails, up to the consumer's attempts, and its outcome is what it returned or
//! why it failed the last time (then a dead letter). An async function's calls
//! for one batch run concurrently on the flow's runtime (a batch of lookups
//! waits for the slowest, not for their sum), and their outputs keep the
//! batch's order.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::dependency::ReplicaScope;
use crate::error::Result;
use crate::metrics::ProcessorMetrics;
use crate::retry::Backoff;

/// How often and how patiently an item is tried.
pub(crate) struct Tries<'a> {
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) metrics: &'a ProcessorMetrics,
    /// The replica's dependencies; each item is one request in it.
    pub(crate) scope: &'a ReplicaScope,
}

/// What became of one item: its outputs, or why it failed.
pub(crate) type Outcome<T> = std::result::Result<Vec<T>, String>;

/// A consumer's function over a batch: each item's outcome, or the error that
/// stops the replica (a dependency that could not be made).
pub(crate) trait Handler<X, T>: Send + Sync + 'static {
    fn handle(&self, items: &[X], tries: &Tries<'_>) -> Result<Vec<Outcome<T>>>;
}

/// The types a handler's function works with, named only to pin them down.
type Types<T> = PhantomData<fn() -> T>;

/// A plain function, called item by item.
pub(crate) struct Blocking<F, I, E> {
    f: F,
    _types: Types<(I, E)>,
}

impl<F, I, E> Blocking<F, I, E> {
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            _types: PhantomData,
        }
    }
}

impl<X, T, F, I, E> Handler<X, T> for Blocking<F, I, E>
where
    X: Clone,
    F: Fn(X) -> Result<I, E> + Send + Sync + 'static,
    I: IntoIterator<Item = T> + 'static,
    E: Display + 'static,
{
    fn handle(&self, items: &[X], tries: &Tries<'_>) -> Result<Vec<Outcome<T>>> {
        items
            .iter()
            .map(|item| {
                let mut backoff = Backoff::new(tries.backoff, Duration::MAX);
                let mut attempt = 1;
                loop {
                    match tries.scope.call(None, || (self.f)(item.clone()))? {
                        Ok(made) => return Ok(Ok(made.into_iter().collect())),
                        Err(e) => {
                            tries.metrics.add_error();
                            if attempt >= tries.attempts || !backoff.sleep(tries.stop) {
                                return Ok(Err(failed(attempt, &e)));
                            }
                            attempt += 1;
                        }
                    }
                }
            })
            .collect()
    }
}

/// An async function, called on every item of a batch at once.
pub(crate) struct Awaiting<F, Fut, I, E> {
    f: F,
    runtime: tokio::runtime::Handle,
    _types: Types<(Fut, I, E)>,
}

impl<F, Fut, I, E> Awaiting<F, Fut, I, E> {
    pub(crate) fn new(f: F, runtime: tokio::runtime::Handle) -> Self {
        Self {
            f,
            runtime,
            _types: PhantomData,
        }
    }
}

impl<X, T, F, Fut, I, E> Handler<X, T> for Awaiting<F, Fut, I, E>
where
    X: Clone,
    F: Fn(X) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<I, E>> + 'static,
    I: IntoIterator<Item = T> + 'static,
    E: Display + 'static,
{
    fn handle(&self, items: &[X], tries: &Tries<'_>) -> Result<Vec<Outcome<T>>> {
        let calls = items.iter().map(|item| async move {
            let mut backoff = Backoff::new(tries.backoff, Duration::MAX);
            let mut attempt = 1;
            loop {
                let call = async { (self.f)(item.clone()).await };
                match tries.scope.call_async(None, call).await? {
                    Ok(made) => return Ok(Ok(made.into_iter().collect())),
                    Err(e) => {
                        tries.metrics.add_error();
                        if attempt >= tries.attempts || tries.stop.load(Ordering::Relaxed) {
                            return Ok(Err(failed(attempt, &e)));
                        }
                        tokio::time::sleep(backoff.next_wait()).await;
                        attempt += 1;
                    }
                }
            }
        });
        self.runtime
            .block_on(futures_util::future::join_all(calls))
            .into_iter()
            .collect()
    }
}

fn failed(attempt: u32, e: &dyn Display) -> String {
    format!("failed {attempt} times, the last with: {e}")
}
