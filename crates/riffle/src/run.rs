//! Executing a [`Dataflow`]: in this thread, on several threads, or as one process of
//! a cluster, all on timely dataflow.
//!
//! Every worker builds the same operators from the flow's description, then steps
//! them until the flow is done. A process of a cluster first connects to every
//! other process ([`crate::cluster`]), then runs its workers over those
//! connections. A flow is done when every source is exhausted and
//! every item has reached its sinks (timely's frontier of the flow is empty).
//!
//! **Failures.** A user function that panics or returns an error, or a source or sink
//! that fails, records the first error of the run and raises an abort flag. Sources
//! stop producing and drop their capabilities, operators drop what they hold, so the
//! flow drains and every worker returns; the run returns the recorded error, which
//! names the step. Across processes the abort travels through a small control
//! dataflow that every worker builds beside the main one: the failing worker sends one
//! message there, broadcast to every worker of every process.
//!
//! ```
//! use riffle::{Dataflow, Execution, sources::TestingSource, sinks::TestingSink};
//!
//! let flow = Dataflow::new("double");
//! let out = TestingSink::new();
//! flow.input("inp", TestingSource::new((0..1000u64).collect()))?
//!     .map("double", |x| x * 2)?
//!     .output("out", out.clone())?;
//! Execution::new().workers(2).run(&flow)?;
//! assert_eq!(out.take().len(), 1000);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::allocator::AllocatorBuilder;
use timely::dataflow::InputHandleVec;
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::vec::{Broadcast, Input};

use crate::build::BuildCtx;
use crate::dataflow::Dataflow;
use crate::error::{Result, RiffleError};
use crate::recovery::{Recovery, RecoveryRun};

/// The default wall-clock length of an epoch, as in bytewax.
pub const DEFAULT_EPOCH_INTERVAL: Duration = Duration::from_secs(10);

/// How many keys a worker's pre-aggregation (`count_final`, `fold_final`,
/// `reduce_epoch`) holds before it sends its partial results on, unless
/// [`Execution::preaggregate_limit`] says otherwise.
pub const DEFAULT_PREAGGREGATE_LIMIT: usize = 100_000;

/// Environment variables through which [`spawn_cluster`] tells each child process
/// who it is.
pub const ENV_PROCESS_ID: &str = "RIFFLE_PROCESS_ID";
/// The comma-separated `host:port` addresses of all processes, in process order.
pub const ENV_ADDRESSES: &str = "RIFFLE_ADDRESSES";
/// Worker threads per process, for spawned children.
pub const ENV_WORKERS: &str = "RIFFLE_WORKERS_PER_PROCESS";

/// State shared by the workers of one process during one run.
pub(crate) struct RunShared {
    abort: AtomicBool,
    error: Mutex<Option<RiffleError>>,
    pub epoch_interval: Duration,
    pub start: Instant,
    /// The first epoch of this run (after the resumed one, under recovery).
    pub epoch_base: u64,
    /// The recovery store, when the run snapshots.
    pub recovery: Option<Arc<RecoveryRun>>,
    /// How far event-time windows let their source partitions run ahead.
    pub pace: Arc<crate::window::pace::Pace>,
    /// How many keys a worker's pre-aggregation holds before it sends its partial
    /// results on to the keys' owners.
    pub preaggregate_limit: usize,
}

impl RunShared {
    pub fn new(epoch_interval: Duration) -> Self {
        Self {
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            epoch_interval: epoch_interval.max(Duration::from_millis(1)),
            start: Instant::now(),
            epoch_base: 0,
            recovery: None,
            pace: Default::default(),
            preaggregate_limit: DEFAULT_PREAGGREGATE_LIMIT,
        }
    }

    /// The same, snapshotting into `recovery` and resuming where it says.
    pub fn with_recovery(mut self, recovery: RecoveryRun) -> Self {
        self.epoch_base = recovery.first_epoch();
        self.recovery = Some(Arc::new(recovery));
        self
    }

    /// Whether the run is being aborted.
    #[inline]
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Records `error` (the first one wins) and aborts the run.
    pub fn fail(&self, error: RiffleError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            tracing::error!("{error}");
            *slot = Some(error);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Aborts because another process failed.
    pub fn abort_from_peer(&self) {
        if !self.abort.swap(true, Ordering::SeqCst) {
            tracing::warn!("aborting: another worker of the cluster failed");
        }
    }

    fn failed_locally(&self) -> bool {
        self.error.lock().map(|e| e.is_some()).unwrap_or(true)
    }

    fn take_error(&self) -> Option<RiffleError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The wall-clock epoch at `now`.
    pub fn epoch_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        self.epoch_base + (elapsed.as_nanos() / self.epoch_interval.as_nanos()) as u64
    }

    /// When `epoch` begins.
    pub fn epoch_start(&self, epoch: u64) -> Instant {
        let since_base = epoch.saturating_sub(self.epoch_base);
        self.start
            + self
                .epoch_interval
                .saturating_mul(since_base.min(u32::MAX as u64) as u32)
    }

    /// Runs `f`, turning a panic into a recorded [`RiffleError::UserPanic`] for
    /// `step_id`; returns `None` when it panicked.
    #[inline]
    pub fn guard<R>(
        &self,
        step_id: &str,
        worker: usize,
        context: impl FnOnce() -> String,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(payload) => {
                self.fail(RiffleError::UserPanic {
                    step_id: step_id.to_string(),
                    worker,
                    context: context(),
                    message: panic_message(&payload),
                });
                None
            }
        }
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// How to execute a flow: how many workers and processes, and how long an epoch is.
#[derive(Debug, Clone)]
pub struct Execution {
    workers: usize,
    processes: usize,
    process_id: Option<usize>,
    addresses: Vec<String>,
    epoch_interval: Duration,
    recovery: Option<Recovery>,
    preaggregate_limit: usize,
    connect_timeout: Duration,
}

impl Default for Execution {
    fn default() -> Self {
        Self::new()
    }
}

impl Execution {
    /// One worker in this thread, epochs of [`DEFAULT_EPOCH_INTERVAL`].
    pub fn new() -> Self {
        Self {
            workers: 1,
            processes: 1,
            process_id: None,
            addresses: Vec::new(),
            epoch_interval: DEFAULT_EPOCH_INTERVAL,
            recovery: None,
            preaggregate_limit: DEFAULT_PREAGGREGATE_LIMIT,
            connect_timeout: crate::cluster::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Snapshot into a recovery store and resume from it (see [`crate::recovery`]).
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Worker threads per process.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Spawn this many processes of the current program on this machine (see
    /// [`spawn_cluster`]).
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = processes.max(1);
        self
    }

    /// Join a cluster as process `process_id` of the processes at `addresses`
    /// (`host:port`, one per process, in process order).
    pub fn cluster(mut self, process_id: usize, addresses: Vec<String>) -> Self {
        self.process_id = Some(process_id);
        self.addresses = addresses;
        self
    }

    /// How long a process of a cluster waits for the others to connect before its
    /// run fails naming the missing ones (default
    /// [`crate::cluster::DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The wall-clock length of an epoch.
    pub fn epoch_interval(mut self, interval: Duration) -> Self {
        self.epoch_interval = interval;
        self
    }

    /// How many keys each worker's pre-aggregation may hold (at least 1; default
    /// [`DEFAULT_PREAGGREGATE_LIMIT`]). Steps that combine values before sending
    /// them to each key's owner (`count_final`, `fold_final`, `reduce_epoch`) keep a
    /// partial result per key seen in the epoch; past this many keys a worker
    /// sends them on and starts again, so its memory stays bounded however many
    /// keys it sees. Results do not change; a smaller limit sends more partial
    /// results through the exchange.
    ///
    /// ```
    /// use riffle::{Dataflow, Execution, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// let words = ["a", "b", "a", "c", "a"].map(String::from).to_vec();
    /// flow.input("words", TestingSource::new(words))?
    ///     .count_final("count", |w: String| w)?
    ///     .output("out", out.clone())?;
    /// Execution::new().preaggregate_limit(1).run(&flow)?;
    /// let expected = [("a", 3), ("b", 1), ("c", 1)].map(|(w, n)| (w.to_string(), n));
    /// assert_eq!(out.take_sorted(), expected);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn preaggregate_limit(mut self, keys: usize) -> Self {
        self.preaggregate_limit = keys.max(1);
        self
    }

    /// If this process was started by [`spawn_cluster`], joins the cluster the
    /// environment describes (process id, addresses, workers).
    pub fn from_env(mut self) -> Result<Self> {
        let Ok(id) = std::env::var(ENV_PROCESS_ID) else {
            return Ok(self);
        };
        let id: usize = id.parse().map_err(|_| {
            RiffleError::Execution(format!("{ENV_PROCESS_ID}={id:?} is not a number"))
        })?;
        let addresses = std::env::var(ENV_ADDRESSES).map_err(|_| {
            RiffleError::Execution(format!(
                "{ENV_PROCESS_ID} is set but {ENV_ADDRESSES} is not"
            ))
        })?;
        if let Ok(w) = std::env::var(ENV_WORKERS) {
            self.workers = w.parse().map_err(|_| {
                RiffleError::Execution(format!("{ENV_WORKERS}={w:?} is not a number"))
            })?;
        }
        self.processes = 1;
        Ok(self.cluster(id, addresses.split(',').map(str::to_string).collect()))
    }

    /// Runs `flow` to completion.
    pub fn run(&self, flow: &Dataflow) -> Result<()> {
        let mut shared = RunShared::new(self.epoch_interval);
        shared.preaggregate_limit = self.preaggregate_limit;
        self.run_with(flow, shared)
    }

    pub(crate) fn run_with(&self, flow: &Dataflow, shared: RunShared) -> Result<()> {
        let shared = match &self.recovery {
            // A parent that only spawns the cluster leaves the store to its children.
            Some(recovery) if !(self.process_id.is_none() && self.processes > 1) => {
                let run = RecoveryRun::open(
                    recovery,
                    shared.epoch_interval,
                    &flow.name(),
                    &flow.fingerprint(),
                    self.process_id.unwrap_or(0),
                )?;
                shared.with_recovery(run)
            }
            _ => shared,
        };
        let shared = Arc::new(shared);
        if let Some(process_id) = self.process_id {
            if process_id >= self.addresses.len() {
                return Err(RiffleError::Execution(format!(
                    "process id {process_id} is out of range: the cluster has {} address(es)",
                    self.addresses.len()
                )));
            }
            // The connections are made here rather than by timely, whose start
            // waits a second before each retry (see `crate::cluster`).
            let sockets =
                crate::cluster::connect(&self.addresses, process_id, self.connect_timeout)?;
            let (builders, guard) = crate::cluster::allocators(sockets, process_id, self.workers)?;
            return execute(flow, builders, Box::new(guard), shared);
        }
        if self.processes > 1 {
            return spawn_cluster(self.processes, self.workers);
        }
        if self.workers == 1 {
            let builders = flow.builders();
            let (name, trace) = (flow.name(), flow.traces_origins());
            let inner = shared.clone();
            let result = timely::execute_directly(move |worker| {
                drive(worker, &name, &builders, trace, &inner)
            });
            return shared.take_error().map_or(result, Err);
        }
        let (builders, others) = timely::CommunicationConfig::Process(self.workers)
            .try_build()
            .map_err(RiffleError::Execution)?;
        execute(flow, builders, others, shared)
    }
}

/// Runs `flow` with one worker in the current thread.
pub fn run_main(flow: &Dataflow) -> Result<()> {
    Execution::new().run(flow)
}

/// Runs `flow` as process `proc_id` of a cluster whose processes listen at
/// `addresses`, with `workers_per_proc` worker threads here.
pub fn cluster_main(
    flow: &Dataflow,
    addresses: &[String],
    proc_id: usize,
    workers_per_proc: usize,
) -> Result<()> {
    Execution::new()
        .workers(workers_per_proc)
        .cluster(proc_id, addresses.to_vec())
        .run(flow)
}

/// Starts `processes` copies of the current program on this machine, each with
/// `workers_per_proc` workers, connected over loopback TCP, and waits for all of them.
///
/// Each child gets the same command line and learns its place in the cluster from
/// [`ENV_PROCESS_ID`], [`ENV_ADDRESSES`] and [`ENV_WORKERS`]; a program that runs its
/// flow with [`Execution::from_env`] (as the `riffle` binary does) joins the cluster.
/// If a child fails, the others are stopped and the error names the child.
pub fn spawn_cluster(processes: usize, workers_per_proc: usize) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| RiffleError::Execution(format!("cannot find the current program: {e}")))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addresses = free_loopback_addresses(processes)?;
    let mut children = Vec::new();
    for id in 0..processes {
        let mut command = Command::new(&exe);
        command
            .args(&args)
            .env(ENV_PROCESS_ID, id.to_string())
            .env(ENV_ADDRESSES, addresses.join(","))
            .env(ENV_WORKERS, workers_per_proc.to_string());
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| {
            RiffleError::Execution(format!(
                "cannot start process {id} ({}): {e}",
                exe.display()
            ))
        })?;
        children.push(child);
    }
    let mut failure = None;
    let mut done = vec![false; processes];
    while done.iter().any(|d| !d) {
        for (id, child) in children.iter_mut().enumerate() {
            if done[id] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    done[id] = true;
                    if !status.success() && failure.is_none() {
                        failure = Some(format!("process {id} of {processes} exited with {status}"));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    done[id] = true;
                    failure.get_or_insert(format!("cannot wait for process {id}: {e}"));
                }
            }
        }
        if failure.is_some() {
            // Give the others a moment to stop on their own (the abort travels through
            // the cluster), then stop what is left.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && children
                    .iter_mut()
                    .any(|c| matches!(c.try_wait(), Ok(None)))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            for child in children.iter_mut() {
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match failure {
        Some(message) => Err(RiffleError::Execution(message)),
        None => Ok(()),
    }
}

/// Makes the child started by `command` die when this process dies. Children left
/// running after their parent was killed would go on snapshotting and writing while
/// a rerun of the same command works on the same store and output. On Linux the
/// kernel sends the child SIGKILL when its parent ends (`PR_SET_PDEATHSIG`), and a
/// child whose parent is already gone when it starts does not start.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; the closure runs in the forked child
    // before exec and calls only prctl and getppid, which are async-signal-safe too,
    // and allocates nothing on its success path.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent process is gone"));
            }
            Ok(())
        });
    }
}

/// Elsewhere children are not tied to their parent's life.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// `n` loopback addresses with ports that were free a moment ago.
pub fn free_loopback_addresses(n: usize) -> Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| RiffleError::Execution(format!("cannot find free loopback ports: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| RiffleError::Execution(format!("cannot find free loopback ports: {e}")))
}

/// Runs `flow` on a worker thread per allocator of `allocators`; `others` holds
/// what the allocators need while they run (a cluster's network threads).
fn execute(
    flow: &Dataflow,
    allocators: Vec<AllocatorBuilder>,
    others: Box<dyn Any + Send>,
    shared: Arc<RunShared>,
) -> Result<()> {
    let steps = flow.builders();
    let (name, trace) = (flow.name(), flow.traces_origins());
    let inner = shared.clone();
    let guards = timely::execute::execute_from(
        allocators,
        others,
        timely::WorkerConfig::default(),
        move |worker| drive(worker, &name, &steps, trace, &inner),
    )
    .map_err(RiffleError::Execution)?;
    let mut first = None;
    for result in guards.join() {
        let outcome = match result {
            Ok(r) => r,
            Err(panic) => Err(RiffleError::Execution(format!(
                "a worker thread panicked: {panic}"
            ))),
        };
        if let Err(e) = outcome {
            first.get_or_insert(e);
        }
    }
    if let Some(e) = shared.take_error() {
        return Err(e);
    }
    first.map_or(Ok(()), Err)
}

/// One worker's whole run: build the flow and the control dataflow, step until done.
fn drive(
    worker: &mut timely::worker::Worker,
    name: &str,
    builders: &[crate::dataflow::StepBuilder],
    trace_origins: bool,
    shared: &Arc<RunShared>,
) -> Result<()> {
    // The control dataflow comes first: its channels then have the same
    // identifiers on every worker, even where building the flow failed part-way
    // (a partition that could not open on one worker), so a failure always
    // reaches the peers.
    let peer_abort = shared.clone();
    let mut control: InputHandleVec<u64, usize> =
        worker.dataflow_named("riffle-control", |scope| {
            let (handle, stream) = scope.new_input::<usize>();
            stream
                .broadcast()
                .inspect(move |_from: &usize| peer_abort.abort_from_peer());
            handle
        });
    let main_index = worker.next_dataflow_index();
    let probe = timely::dataflow::ProbeHandle::<u64>::new();
    let finally = crate::build::Finally::default();
    let built: Result<()> = worker.dataflow_named::<u64, _, _>(name, |scope| {
        let mut ctx = BuildCtx::new(scope, shared.clone(), trace_origins, probe.clone());
        ctx.finally = finally.clone();
        for builder in builders {
            builder(&mut ctx)?;
        }
        ctx.probe_all(&probe);
        Ok(())
    });
    // Worker 0 records commits: once the whole flow is past a snapshot epoch, every
    // step, source and sink has written its snapshot of it.
    let committer = shared.recovery.clone().filter(|_| worker.index() == 0);
    let mut committed = shared.recovery.as_ref().and_then(|r| r.resume);
    if let Err(e) = built {
        // A build that failed on this worker only (a partition it could not
        // open) left its flow part-built: the flow is dropped below, here and,
        // once they hear of it, on the peers.
        shared.fail(e);
    }
    let mut told_peers = false;
    loop {
        if !told_peers && shared.failed_locally() {
            control.send(worker.index());
            control.flush();
            told_peers = true;
        }
        if shared.aborted() {
            // The run has failed: nothing of the flow is needed any more, and a
            // part-built flow (here or on a peer) would never complete.
            worker.drop_dataflow(main_index);
        }
        if !worker.installed_dataflows().contains(&main_index) {
            break;
        }
        worker.step_or_park(Some(Duration::from_millis(50)));
        if let Some(recovery) = &committer
            && !shared.aborted()
            && let Some(low) = probe.with_frontier(|f| f.first().copied())
            && let Some(epoch) = recovery.snapshot_before(low)
            && committed.is_none_or(|c| epoch > c)
        {
            match recovery.commit(epoch) {
                Ok(()) => committed = Some(epoch),
                Err(e) => shared.fail(e),
            }
        }
    }
    drop(control);
    while worker.step_or_park(Some(Duration::from_millis(50))) {}
    // Work left for a clean end (a source's last commit): the run's error, if any.
    if !shared.aborted()
        && let Err(e) = finally.run()
    {
        shared.fail(e);
    }
    if shared.aborted() {
        Err(RiffleError::Execution(
            "the run was aborted because another process of the cluster failed".to_string(),
        ))
    } else {
        Ok(())
    }
}
