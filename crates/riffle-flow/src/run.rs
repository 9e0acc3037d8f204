//! Running a [`Flow`]: every consumer's replicas and one HTTP listener for the
//! collectors, endpoints and `/metrics`, in one process, until a stop.
//!
//! [`Flow::start`] starts everything and returns a [`RunningFlow`] (its address,
//! its metrics, a handle to stop it); [`RunningFlow::wait`] waits until the flow
//! is stopped ([`RunningFlow::stop`], or SIGTERM/Ctrl-C when
//! [`RunOptions::signals`] is on), a processor fails, or (for a flow of consumers
//! only) every consumer has read its sources to the end. Then it drains: the
//! listener stops taking connections and answers the requests in hand, every
//! replica finishes, writes and acknowledges the batch in hand, the sinks close.
//! A second signal exits the process at once; what was not written is not
//! acknowledged, so it is read again by the next run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::consumer::{Running, Start};
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::http::{self, Closer};
use crate::metrics::Metrics;

/// How a flow runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the HTTP listener binds (default 127.0.0.1:8000; port 0 picks one).
    pub addr: SocketAddr,
    /// Whether SIGTERM and Ctrl-C stop the flow (the first drains, the second
    /// exits at once); on for `riffle flow run`, off by default for embedding.
    pub signals: bool,
    /// Threads of the runtime that serves HTTP and runs async functions
    /// (default: one per core).
    pub http_threads: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            signals: false,
            http_threads: None,
        }
    }
}

/// What a finished run did, per processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// `(processor id, items in, items out)`.
    pub processors: Vec<(String, u64, u64)>,
}

/// A started flow; see the [module docs](self).
pub struct RunningFlow {
    flow: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    consumers: Vec<Option<Running>>,
    serves_http: bool,
    runtime: tokio::runtime::Runtime,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    shutdown: Arc<tokio::sync::Notify>,
    closers: Vec<Closer>,
}

impl Flow {
    /// Starts the flow; see the [module docs](crate::run).
    ///
    /// ```
    /// use riffle::sinks::TestingSink;
    /// use riffle::sources::TestingSource;
    /// use riffle_flow::{Flow, RunOptions};
    ///
    /// let mut flow = Flow::new("double");
    /// let out = TestingSink::new();
    /// flow.consumer("double", TestingSource::new(vec![1, 2, 3]), out.clone(), |x: i32| {
    ///     Ok::<_, String>([x * 2])
    /// })?;
    /// let options = RunOptions { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    /// // A flow of consumers on bounded sources ends when they are read.
    /// flow.start(options)?.wait()?;
    /// assert_eq!(out.take_sorted(), [2, 4, 6]);
    /// # Ok::<(), riffle_flow::FlowError>(())
    /// ```
    pub fn start(self, options: RunOptions) -> Result<RunningFlow> {
        let Flow {
            id: flow,
            consumers,
            routes,
            dependencies,
            ..
        } = self;
        let dependencies = dependencies.start()?;
        let metrics = Arc::new(Metrics::new(&flow));
        let stop = Arc::new(AtomicBool::new(false));
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = options.http_threads {
            builder.worker_threads(threads.max(1));
        }
        let runtime = builder
            .enable_all()
            .thread_name(format!("{flow}-http"))
            .build()
            .map_err(FlowError::Runtime)?;
        let serves_http = !routes.is_empty();
        let (router, mut closers) = http::router(&flow, routes, &metrics, &dependencies)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(options.addr))
            .map_err(|source| FlowError::Listen {
                addr: options.addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| FlowError::Listen {
            addr: options.addr.to_string(),
            source,
        })?;
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let until = shutdown.clone();
        let server = runtime.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { until.notified().await })
                .await
        });
        let mut running = RunningFlow {
            flow,
            addr,
            stop: stop.clone(),
            metrics: metrics.clone(),
            consumers: Vec::new(),
            serves_http,
            runtime,
            server: Some(server),
            shutdown,
            closers: Vec::new(),
        };
        for entry in consumers {
            let start = Start {
                runtime: running.runtime.handle().clone(),
                options: entry.options,
                stop: stop.clone(),
                metrics: metrics.processor(&entry.id, "consumer"),
                dependencies: dependencies.clone(),
            };
            match (entry.start)(start) {
                Ok(consumer) => running.consumers.push(Some(consumer)),
                Err(e) => {
                    running.closers.append(&mut closers);
                    running.stop();
                    let _ = running.drain();
                    return Err(e);
                }
            }
        }
        running.closers = closers;
        if options.signals {
            listen_for_signals(&running.runtime, stop);
        }
        Ok(running)
    }
}

impl RunningFlow {
    /// Where the HTTP listener is (the port picked, when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The flow's metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A flag that stops the flow when set (what a signal sets).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Asks the flow to stop; [`RunningFlow::wait`] then drains it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits until the flow stops (see the [module docs](self)), drains it and
    /// says what each processor did; the first processor error, if one failed.
    pub fn wait(mut self) -> Result<RunSummary> {
        let mut failure = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            for slot in &mut self.consumers {
                if slot.as_ref().is_some_and(Running::is_finished)
                    && let Some(done) = slot.take()
                    && let Err(e) = done.join()
                {
                    failure = Some(e);
                }
            }
            if failure.is_some() {
                break;
            }
            let consumers_done = self.consumers.iter().all(Option::is_none);
            if consumers_done && !self.serves_http {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        let drained = self.drain();
        if let Some(e) = failure {
            return Err(e);
        }
        drained?;
        let processors = self
            .metrics
            .snapshot()
            .into_iter()
            .map(|(id, m)| (id, m.items_in(), m.items_out()))
            .collect();
        Ok(RunSummary { processors })
    }

    /// Stops the listener after the requests in hand, joins the replicas, closes
    /// the sinks.
    fn drain(&mut self) -> Result<()> {
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
        if let Some(server) = self.server.take() {
            let served = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), server).await });
            if let Ok(Ok(Err(e))) = served {
                crate::run::say(&format!(
                    "flow {:?}: the HTTP listener stopped with: {e}",
                    self.flow
                ));
            }
        }
        let mut outcome = Ok(());
        for slot in &mut self.consumers {
            if let Some(consumer) = slot.take() {
                let done = consumer.join();
                if outcome.is_ok() {
                    outcome = done;
                }
            }
        }
        for close in self.closers.drain(..) {
            close();
        }
        outcome
    }
}

/// A line on stderr, if stderr is still there: a flow whose parent went away
/// (and took the pipe with it) must still stop on a signal, which `eprintln!`
/// would prevent by panicking.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The first SIGTERM or Ctrl-C sets `stop`; the second exits at once.
fn listen_for_signals(runtime: &tokio::runtime::Runtime, stop: Arc<AtomicBool>) {
    let seen = Arc::new(AtomicUsize::new(0));
    runtime.spawn(async move {
        #[cfg(unix)]
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    crate::run::say(&format!("cannot listen for SIGTERM: {e}"));
                    return;
                }
            };
        loop {
            #[cfg(unix)]
            let got = tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                r = term.recv() => r.is_some(),
            };
            #[cfg(not(unix))]
            let got = tokio::signal::ctrl_c().await.is_ok();
            if !got {
                return;
            }
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                say("stopping: finishing what is in hand (a second signal exits at once)");
                stop.store(true, Ordering::SeqCst);
            } else {
                say("exiting at once: what was not written is read again next run");
                std::process::exit(130);
            }
        }
    });
}

impl Flow {
    /// Starts the flow and waits for it: [`Flow::start`] then
    /// [`RunningFlow::wait`].
    pub fn run(self, options: RunOptions) -> Result<RunSummary> {
        self.start(options)?.wait()
    }
}
