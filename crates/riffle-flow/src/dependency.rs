//! Dependencies: the clients, pools and caches a flow's processors share, each
//! made once per **scope** and handed to the functions that ask for it.
//!
//! [`Flow::dependency`](crate::Flow::dependency) declares one: a name, a
//! [`Scope`] and a function that makes it. It returns a [`Dependency`] handle;
//! a processor's function (or another dependency's maker) calls
//! [`Dependency::get`] for the value, an `Arc<T>`:
//! - [`Scope::Flow`]: one for the whole process, made when the flow starts
//!   (a maker that fails stops the start, naming the dependency);
//! - [`Scope::Replica`]: one per replica, made the first time that replica asks
//!   for it and dropped when the replica ends (a consumer's replicas are its
//!   threads; every endpoint and collector of a process shares the process's);
//! - [`Scope::Request`]: a new one for each item a consumer handles or each
//!   HTTP request, shared by everything that asks during that call.
//!
//! A maker may use dependencies declared before it of its own scope or a wider
//! one. Asking for a narrower one (a flow-wide pool made from a per-request
//! value) is an error naming both: the narrower value would outlive its scope.
//!
//! A dependency that cannot be made is not the item's fault: the consumer's
//! replica stops with the error (its messages stay unacknowledged, read again
//! after a restart) instead of sending the item to the dead letters, and an
//! HTTP call is answered 503.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use riffle::sinks::TestingSink;
//! use riffle::sources::TestingSource;
//! use riffle_flow::{Flow, RunOptions, Scope};
//!
//! let mut flow = Flow::new("prices");
//! // A rate table made once for the process.
//! let rates = flow.dependency("rates", Scope::Flow, || Ok(vec![("EUR", 2u32), ("USD", 3)]))?;
//! // A counter of its own for each replica.
//! let handled = flow.dependency("handled", Scope::Replica, || Ok(AtomicUsize::new(0)))?;
//! let out = TestingSink::new();
//! let orders = vec![("EUR".to_string(), 10u32), ("USD".to_string(), 5)];
//! flow.consumer("convert", TestingSource::new(orders), out.clone(),
//!     move |(currency, amount): (String, u32)| {
//!         let rates = rates.get()?;
//!         handled.get()?.fetch_add(1, Ordering::Relaxed);
//!         let rate = rates.iter().find(|(c, _)| *c == currency).map_or(0, |(_, r)| *r);
//!         Ok::<_, riffle_flow::FlowError>([amount * rate])
//!     })?;
//! flow.run(RunOptions { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() })?;
//! assert_eq!(out.take_sorted(), [15, 20]);
//! # Ok::<(), riffle_flow::FlowError>(())
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::HeaderMap;

use crate::error::{FlowError, Result};
use crate::http::HttpError;

/// What a dependency's maker may fail with: any error (`?` on most errors,
/// `anyhow`'s included, or `Err("...".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one made value of a dependency lives, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// One for the whole process, made when the flow starts.
    Flow,
    /// One per replica of a processor, made on its first use there.
    Replica,
    /// One per item a consumer handles or per HTTP request.
    Request,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Flow => "flow",
            Scope::Replica => "replica",
            Scope::Request => "request",
        })
    }
}

/// A declared dependency: [`Dependency::get`] gives its value in the scope of
/// the call that asks. Cheap to clone into every function that uses it.
pub struct Dependency<T> {
    index: usize,
    flow: Arc<str>,
    name: Arc<str>,
    scope: Scope,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Dependency<T> {
    fn clone(&self) -> Self {
        Self {
            index: self.index,
            flow: self.flow.clone(),
            name: self.name.clone(),
            scope: self.scope,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Dependency<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dependency {:?} ({} scope)", self.name, self.scope)
    }
}

impl<T: Send + Sync + 'static> Dependency<T> {
    /// Its value in the scope of the processor call (or the maker) that asks,
    /// made now if this scope has none yet.
    ///
    /// Errors: asked outside a processor's function, from a maker of a wider
    /// scope, from another flow, or its maker failed; each names the
    /// dependency.
    pub fn get(&self) -> Result<Arc<T>> {
        let frame = FRAME
            .try_with(Arc::clone)
            .map_err(|_| self.wrong("is asked for outside a consumer's, collector's or endpoint's function (or a dependency's maker)".into()))?;
        if *frame.set.flow_name != *self.flow {
            return Err(self.wrong(format!(
                "belongs to flow {:?}, not to flow {:?}",
                self.flow, frame.set.flow_name
            )));
        }
        let value = frame.value(self.index)?;
        value
            .downcast::<T>()
            .map_err(|_| self.wrong("holds a value of another type".into()))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    fn wrong(&self, what: String) -> FlowError {
        FlowError::Dependency {
            dependency: self.name.to_string(),
            scope: self.scope,
            what,
            answer: None,
        }
    }
}

/// The value of header `name` of the HTTP request being answered (by an
/// endpoint, a collector or a WebSocket's upgrade), for a request-scoped
/// dependency's maker; `None` without one, or outside an HTTP call.
pub fn request_header(name: &str) -> Option<String> {
    FRAME
        .try_with(|frame| {
            let value = frame.headers.as_ref()?.get(name)?;
            value.to_str().ok().map(str::to_string)
        })
        .ok()
        .flatten()
}

/// The bearer token of the HTTP request being answered (`Authorization:
/// Bearer TOKEN`), or a `401 Unauthorized` to answer: what a request-scoped
/// dependency checking callers starts from. A maker's [`HttpError`] is the
/// answer of every call that asks for the dependency.
///
/// ```
/// use riffle_flow::{Flow, HttpError, Scope};
/// use riffle_flow::dependency::bearer_token;
///
/// let mut flow = Flow::new("api");
/// let caller = flow.dependency("caller", Scope::Request, || {
///     let token = bearer_token()?;
///     match token.as_str() {
///         "s3cret" => Ok("ann".to_string()),
///         _ => Err(HttpError::unauthorized("unknown token").into()),
///     }
/// })?;
/// # Ok::<(), riffle_flow::FlowError>(())
/// ```
pub fn bearer_token() -> std::result::Result<String, HttpError> {
    let header = request_header("authorization")
        .ok_or_else(|| HttpError::unauthorized("no Authorization header"))?;
    match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_string())
        }
        _ => Err(HttpError::unauthorized(
            "the Authorization header is not `Bearer TOKEN`",
        )),
    }
}

type Value = Arc<dyn Any + Send + Sync>;
type Maker = Box<dyn Fn() -> std::result::Result<Value, BoxError> + Send + Sync>;

struct Declared {
    name: Arc<str>,
    scope: Scope,
    make: Maker,
}

/// A flow's declared dependencies, in the order declared.
pub(crate) struct Dependencies {
    flow: Arc<str>,
    declared: Vec<Declared>,
}

impl Dependencies {
    pub(crate) fn new(flow: &str) -> Self {
        Self {
            flow: flow.into(),
            declared: Vec::new(),
        }
    }

    /// Declares `name`; a name taken is an error.
    pub(crate) fn declare<T, F>(
        &mut self,
        name: &str,
        scope: Scope,
        make: F,
    ) -> Result<Dependency<T>>
    where
        T: Send + Sync + 'static,
        F: Fn() -> std::result::Result<T, BoxError> + Send + Sync + 'static,
    {
        if name.trim().is_empty() {
            return Err(FlowError::Definition {
                flow: self.flow.to_string(),
                what: "a dependency's name is empty".into(),
            });
        }
        if self.declared.iter().any(|d| &*d.name == name) {
            return Err(FlowError::Definition {
                flow: self.flow.to_string(),
                what: format!("dependency {name:?} is declared twice"),
            });
        }
        let name: Arc<str> = name.into();
        self.declared.push(Declared {
            name: name.clone(),
            scope,
            make: Box::new(move || make().map(|v| Arc::new(v) as Value)),
        });
        Ok(Dependency {
            index: self.declared.len() - 1,
            flow: self.flow.clone(),
            name,
            scope,
            _type: PhantomData,
        })
    }

    /// Makes every flow-scoped dependency, in the order declared: what the flow
    /// runs with.
    pub(crate) fn start(self) -> Result<Arc<Made>> {
        let set = Arc::new(Made {
            flow: Slots::new(self.declared.len()),
            has_request: self.declared.iter().any(|d| d.scope == Scope::Request),
            flow_name: self.flow.clone(),
            declared: self.declared,
        });
        let frame = Arc::new(Frame::new(set.clone(), None));
        for (index, declared) in set.declared.iter().enumerate() {
            if declared.scope == Scope::Flow {
                FRAME.sync_scope(frame.clone(), || frame.value(index))?;
            }
        }
        Ok(set)
    }
}

/// A running flow's dependencies: what they are and the flow-scoped values.
pub(crate) struct Made {
    flow_name: Arc<str>,
    declared: Vec<Declared>,
    flow: Slots,
    /// Whether any dependency is request-scoped (else calls need no slots).
    has_request: bool,
}

impl Made {
    /// Whether the flow declared none (then calls need no scope).
    pub(crate) fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }

    /// A replica's scope: its own slots, the flow's beside them.
    pub(crate) fn replica(self: &Arc<Self>) -> ReplicaScope {
        ReplicaScope {
            slots: Arc::new(Slots::new(self.declared.len())),
            set: self.clone(),
        }
    }
}

/// One replica's dependencies; [`ReplicaScope::call`] runs one request in it.
#[derive(Clone)]
pub(crate) struct ReplicaScope {
    set: Arc<Made>,
    slots: Arc<Slots>,
}

impl ReplicaScope {
    /// The frame of one request (a consumer's item, an HTTP call) in this
    /// replica.
    pub(crate) fn request(&self, headers: Option<HeaderMap>) -> Option<Arc<Frame>> {
        (!self.set.is_empty()).then(|| {
            let mut frame = Frame::new(self.set.clone(), Some(self.slots.clone()));
            frame.headers = headers;
            Arc::new(frame)
        })
    }

    /// Runs `f` as one request; a dependency that could not be made in it is
    /// the error.
    pub(crate) fn call<R>(&self, headers: Option<HeaderMap>, f: impl FnOnce() -> R) -> Result<R> {
        match self.request(headers) {
            None => Ok(f()),
            Some(frame) => {
                let out = FRAME.sync_scope(frame.clone(), f);
                frame.outcome().map(|()| out)
            }
        }
    }

    /// Runs `fut` as one request; a dependency that could not be made in it is
    /// the error.
    pub(crate) async fn call_async<R>(
        &self,
        headers: Option<HeaderMap>,
        fut: impl Future<Output = R>,
    ) -> Result<R> {
        match self.request(headers) {
            None => Ok(fut.await),
            Some(frame) => {
                let out = FRAME.scope(frame.clone(), fut).await;
                frame.outcome().map(|()| out)
            }
        }
    }
}

/// One value per declared dependency, made on first use.
struct Slots(Vec<Mutex<Option<Value>>>);

impl Slots {
    fn new(n: usize) -> Self {
        Self((0..n).map(|_| Mutex::new(None)).collect())
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Option<Value>> {
        self.0[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

tokio::task_local! {
    /// The dependencies of the call running now.
    static FRAME: Arc<Frame>;
}

thread_local! {
    /// The dependencies being made on this thread, innermost last: whose maker
    /// is asking.
    static MAKING: RefCell<Vec<(Arc<str>, Scope)>> = const { RefCell::new(Vec::new()) };
}

/// The dependencies one call sees: the flow's, its replica's, its own.
pub(crate) struct Frame {
    set: Arc<Made>,
    replica: Option<Arc<Slots>>,
    request: Slots,
    /// The HTTP request's headers, when the call answers one.
    headers: Option<HeaderMap>,
    /// The first dependency that could not be made during the call.
    failure: Mutex<Option<FlowError>>,
}

impl Frame {
    fn new(set: Arc<Made>, replica: Option<Arc<Slots>>) -> Self {
        let n = set.declared.len();
        Self {
            replica,
            // Slots per call only when a request-scoped dependency can fill them.
            request: Slots::new(if set.has_request { n } else { 0 }),
            headers: None,
            failure: Mutex::new(None),
            set,
        }
    }

    /// What went wrong making a dependency during the call, if anything.
    pub(crate) fn outcome(&self) -> Result<()> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn value(&self, index: usize) -> Result<Value> {
        let outcome = self.made(index);
        if let Err(FlowError::Dependency {
            dependency,
            scope,
            what,
            answer,
        }) = &outcome
        {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if failure.is_none() {
                *failure = Some(FlowError::Dependency {
                    dependency: dependency.clone(),
                    scope: *scope,
                    what: what.clone(),
                    answer: answer.clone(),
                });
            }
        }
        outcome
    }

    fn made(&self, index: usize) -> Result<Value> {
        let declared = &self.set.declared[index];
        let wrong = |what: String| FlowError::Dependency {
            dependency: declared.name.to_string(),
            scope: declared.scope,
            what,
            answer: None,
        };
        if let Some((maker, scope)) = MAKING.with(|m| m.borrow().last().cloned())
            && declared.scope > scope
        {
            return Err(wrong(format!(
                "cannot be used to make {maker:?} ({scope} scope): a narrower scope cannot make a wider one"
            )));
        }
        let slots = match declared.scope {
            Scope::Flow => &self.set.flow,
            Scope::Replica => self.replica.as_deref().ok_or_else(|| {
                wrong("is asked for outside a replica (while the flow starts)".into())
            })?,
            Scope::Request => &self.request,
        };
        let mut slot = slots.lock(index);
        if let Some(value) = &*slot {
            return Ok(value.clone());
        }
        MAKING.with(|m| m.borrow_mut().push((declared.name.clone(), declared.scope)));
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (declared.make)()));
        MAKING.with(|m| m.borrow_mut().pop());
        let value = match made {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                return Err(FlowError::Dependency {
                    dependency: declared.name.to_string(),
                    scope: declared.scope,
                    what: format!("cannot be made: {}", chain(&*e)),
                    answer: e.downcast_ref::<HttpError>().cloned(),
                });
            }
            Err(_) => return Err(wrong("cannot be made: its maker panicked".into())),
        };
        *slot = Some(value.clone());
        Ok(value)
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
