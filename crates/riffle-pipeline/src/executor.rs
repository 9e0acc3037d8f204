//! Running a pipeline: ready steps in parallel on a bounded pool, each looked up in
//! the cache first, retried and timed out as declared, every outcome recorded.
//!
//! The executor's thread plans and records; each step that has to run gets a worker
//! thread of its own, at most as many at once as the CPU budget allows (each step
//! takes [`crate::Resources::cpus`] slots, and its memory hint counts against an
//! optional memory budget). A step becomes ready when every step it needs has finished;
//! it is then either a cache hit (its stored output is reused, no thread is started) or
//! handed to a worker.
//!
//! On a failure the run stops starting steps and lets running ones finish (the
//! default), or, with [`RunOptions::keep_going`], goes on with every step that does not
//! depend on the failed one. When the [`CancelToken`] is set (Ctrl-C), nothing new
//! starts, running steps are told through [`crate::StepContext::is_cancelled`] and
//! given [`Executor::cancel_grace`] to finish, and the run is recorded as cancelled.
//!
//! ```
//! use riffle_pipeline::{ArtifactStore, Executor, Pipeline, RunOptions, RunStatus, metadata::SqliteStore};
//! use std::sync::Arc;
//!
//! let mut p = Pipeline::builder("hello");
//! let n = p.step("n", (), |_ctx, ()| Ok(21_u64)).version("1").output();
//! p.step("double", &n, |_ctx, n: u64| Ok(n * 2)).version("1");
//! let pipeline = p.build()?;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let metadata = Arc::new(SqliteStore::open(&dir.path().join("metadata.db"))?);
//! let executor = Executor::new(ArtifactStore::local(&dir.path().join("artifacts"))?, metadata);
//! let first = executor.run(&pipeline, RunOptions::default())?;
//! assert_eq!(first.status, RunStatus::Succeeded);
//! assert_eq!(executor.output::<u64>(&first, "double")?, 42);
//! let second = executor.run(&pipeline, RunOptions::default())?;
//! assert!(second.steps.iter().all(|s| s.cache_hit));
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::artifact_store::ArtifactStore;
use crate::cache::{CacheKeyBuilder, binary_identity};
use crate::codec::{self, ContentHash, Encoded};
use crate::config::ResolvedConfig;
use crate::error::{Error, Result};
use crate::metadata::{
    ArtifactRecord, MetadataStore, PipelineRecord, RunRecord, RunStatus, StepRunEnd, StepStatus,
};
use crate::pipeline::{Pipeline, StepFailure, StepSpec};
use crate::runtime::Runtime;
use crate::step::{CancelToken, Journal, LogLine, StepContext, now_ms};

/// Hears about a run as it goes (a progress bar, a log); every call comes from the
/// executor's thread.
pub trait RunObserver: Send + Sync {
    /// The run started; `steps` are the planned step ids in order.
    fn run_started(&self, _run_id: &str, _steps: &[String]) {}
    /// A worker started running `step`.
    fn step_started(&self, _step: &str) {}
    /// A step finished (ran, was cached, failed, was skipped or cancelled).
    fn step_finished(&self, _report: &StepReport) {}
}

/// How long recorded progress may wait before it is committed for readers.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Reads an environment variable by name (config overrides and secrets).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to run: which runtime and environment, what to do on failure, and how to stop.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The logical date the run processes (default: now).
    pub runtime: Option<Runtime>,
    /// The config environment (default: the pipeline's default environment).
    pub environment: Option<String>,
    /// On a failure, keep running the steps that do not depend on it.
    pub keep_going: bool,
    /// Run only this step (always, ignoring its cache entry), with the steps it needs
    /// taken from the cache or recomputed.
    pub only_step: Option<String>,
    /// Set it to stop the run.
    pub cancel: CancelToken,
    /// Hears about progress.
    pub observer: Option<Arc<dyn RunObserver>>,
    /// Where config overrides and secrets are read from (default: the process's
    /// environment variables).
    pub env_lookup: Option<EnvLookup>,
    /// Make one attempt per step, whatever its retries say: for a scheduler that
    /// retries the task itself (the generated Airflow DAGs), so tries do not
    /// multiply.
    pub no_retries: bool,
}

/// The outcome of one step in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step_id: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub duration: Duration,
    pub cache_hit: bool,
    pub error: Option<String>,
    /// The hash of its output, when it has one.
    pub output: Option<ContentHash>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline_id: String,
    pub status: RunStatus,
    pub runtime: Runtime,
    pub environment: String,
    /// The planned steps, in the order they finished.
    pub steps: Vec<StepReport>,
    pub duration: Duration,
    /// The first failure, if any.
    pub error: Option<String>,
}

impl RunReport {
    /// The report of step `id`.
    pub fn step(&self, id: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step_id == id)
    }
}

/// Runs pipelines against an artifact store and a metadata store.
pub struct Executor {
    artifacts: ArtifactStore,
    metadata: Arc<dyn MetadataStore>,
    cpu_slots: u32,
    memory_budget_mib: Option<u64>,
    cancel_grace: Duration,
}

struct Done {
    index: usize,
    result: std::result::Result<(Encoded, String), String>,
    attempts: u32,
    journal: Journal,
    started_ms: i64,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Finished,
}

impl Executor {
    /// An executor with as many CPU slots as the machine has cores (at least 2).
    pub fn new(artifacts: ArtifactStore, metadata: Arc<dyn MetadataStore>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            artifacts,
            metadata,
            cpu_slots: cores.max(2) as u32,
            memory_budget_mib: None,
            cancel_grace: Duration::from_secs(5),
        }
    }

    /// At most `slots` CPU slots busy at once (at least 1).
    pub fn parallelism(mut self, slots: u32) -> Self {
        self.cpu_slots = slots.max(1);
        self
    }

    /// Runs steps with memory hints only while their sum stays within `mib`.
    pub fn memory_budget_mib(mut self, mib: u64) -> Self {
        self.memory_budget_mib = Some(mib);
        self
    }

    /// How long running steps may take to finish after a cancel (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// The artifact store.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// Reads and decodes the output of step `step` in `report`.
    pub fn output<T: DeserializeOwned>(&self, report: &RunReport, step: &str) -> Result<T> {
        let hash = report
            .step(step)
            .and_then(|s| s.output)
            .ok_or_else(|| Error::NotFound {
                kind: "output of step",
                id: step.to_string(),
                why: "was not produced by this run",
            })?;
        let bytes = self.artifacts.get(&hash)?.ok_or_else(|| Error::NotFound {
            kind: "artifact",
            id: hash.to_string(),
            why: "is missing from the artifact store",
        })?;
        codec::decode(&bytes, &format!("output of step {step:?}"))
    }

    /// Runs `pipeline`; a failed or cancelled run is an `Ok` report with that status,
    /// an `Err` means the run could not be planned or recorded.
    pub fn run(&self, pipeline: &Pipeline, options: RunOptions) -> Result<RunReport> {
        Run::new(self, pipeline, options)?.execute()
    }
}

/// One run in progress.
struct Run<'a> {
    ex: &'a Executor,
    pipeline: &'a Pipeline,
    options: RunOptions,
    run_id: Arc<str>,
    pipeline_id: Arc<str>,
    runtime: Runtime,
    config: Arc<ResolvedConfig>,
    planned: Vec<bool>,
    forced: Option<usize>,
    users: Vec<Vec<usize>>,
    missing: Vec<usize>,
    remaining_users: Vec<usize>,
    state: Vec<State>,
    outputs: Vec<Option<(Bytes, ContentHash)>>,
    keys: Vec<Option<String>>,
    reports: Vec<StepReport>,
    ready: VecDeque<usize>,
    cpu_used: u32,
    mem_used: u64,
    running: usize,
    failure: Option<String>,
    started: Instant,
    pool: Pool,
}

/// The run's worker threads: started as steps need them (never more than the steps
/// running at once), fed through one queue, gone when the run ends.
#[derive(Default)]
struct Pool {
    queue: Option<mpsc::Sender<Job>>,
    receiver: Option<Arc<Mutex<mpsc::Receiver<Job>>>>,
    threads: usize,
}

impl Pool {
    /// Queues `job`, first starting a thread if fewer than `busy` exist.
    fn submit(&mut self, job: Job, busy: usize, done: &mpsc::Sender<Done>) -> Result<()> {
        if self.queue.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            self.queue = Some(tx);
            self.receiver = Some(Arc::new(Mutex::new(rx)));
        }
        if self.threads < busy {
            let receiver = self
                .receiver
                .clone()
                .unwrap_or_else(|| unreachable!("set above"));
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("riffle-step-{}", self.threads))
                .spawn(move || worker(receiver, done))
                .map_err(|source| Error::Thread {
                    step: job.spec.id.clone(),
                    source,
                })?;
            self.threads += 1;
        }
        if let Some(queue) = &self.queue {
            let _ = queue.send(job);
        }
        Ok(())
    }
}

/// A worker thread: runs jobs until the queue closes; a job that panics outside the
/// step function still reports back, so the run never waits for it forever.
fn worker(receiver: Arc<Mutex<mpsc::Receiver<Job>>>, done: mpsc::Sender<Done>) {
    loop {
        let job = {
            let Ok(rx) = receiver.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let index = job.index;
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or_else(|panic| Done {
                index,
                result: Err(format!("the executor panicked: {}", panic_message(&*panic))),
                attempts: 1,
                journal: Journal::default(),
                started_ms: now_ms(),
                started,
            });
        if done.send(outcome).is_err() {
            return;
        }
    }
}

impl<'a> Run<'a> {
    fn new(ex: &'a Executor, pipeline: &'a Pipeline, options: RunOptions) -> Result<Self> {
        let graph = pipeline.graph();
        let n = pipeline.steps().len();
        let lookup: EnvLookup = options
            .env_lookup
            .clone()
            .unwrap_or_else(|| Arc::new(|k: &str| std::env::var(k).ok()));
        let config =
            pipeline
                .config()
                .resolve(pipeline.id(), options.environment.as_deref(), |k| lookup(k))?;
        let (planned, forced) = match &options.only_step {
            None => (vec![true; n], None),
            Some(step) => {
                let target = *graph.index.get(step).ok_or_else(|| Error::UnknownStep {
                    pipeline: pipeline.id().to_string(),
                    step: step.clone(),
                })?;
                let mut planned = vec![false; n];
                let mut stack = vec![target];
                while let Some(i) = stack.pop() {
                    if !planned[i] {
                        planned[i] = true;
                        stack.extend(graph.needs[i].iter().copied());
                    }
                }
                (planned, Some(target))
            }
        };
        let mut users = vec![Vec::new(); n];
        let mut missing = vec![0; n];
        let mut remaining_users = vec![0; n];
        for i in 0..n {
            if !planned[i] {
                continue;
            }
            for &d in &graph.needs[i] {
                users[d].push(i);
                missing[i] += 1;
            }
            for &d in &graph.inputs[i] {
                remaining_users[d] += 1;
            }
        }
        let ready = graph
            .order
            .iter()
            .copied()
            .filter(|&i| planned[i] && missing[i] == 0)
            .collect();
        Ok(Self {
            ex,
            pipeline,
            run_id: Arc::from(uuid::Uuid::now_v7().to_string()),
            pipeline_id: Arc::from(pipeline.id()),
            runtime: options.runtime.unwrap_or_else(Runtime::now),
            config: Arc::new(config),
            options,
            planned,
            forced,
            users,
            missing,
            remaining_users,
            state: vec![State::Pending; n],
            outputs: vec![None; n],
            keys: vec![None; n],
            reports: Vec::with_capacity(n),
            ready,
            cpu_used: 0,
            mem_used: 0,
            running: 0,
            failure: None,
            started: Instant::now(),
            pool: Pool::default(),
        })
    }

    fn spec(&self, i: usize) -> &'a StepSpec {
        &self.pipeline.steps()[i]
    }

    fn execute(mut self) -> Result<RunReport> {
        let md = self.ex.metadata.clone();
        md.record_pipeline(&PipelineRecord {
            id: self.pipeline.id().to_string(),
            about: self.pipeline.about().to_string(),
            schedule: self.pipeline.schedule().map(|s| s.to_string()),
            last_seen_ms: now_ms(),
        })?;
        md.start_run(&RunRecord {
            id: self.run_id.to_string(),
            pipeline_id: self.pipeline.id().to_string(),
            status: RunStatus::Running,
            runtime: self.runtime.to_string(),
            environment: self.config.environment().to_string(),
            config: serde_json::to_string(self.config.values()).unwrap_or_else(|_| "{}".into()),
            only_step: self.options.only_step.clone(),
            started_ms: now_ms(),
            finished_ms: None,
            error: None,
        })?;
        md.claim_run(
            &self.run_id,
            &crate::metadata::RunOwner::current().to_text(),
        )?;
        let heartbeat = Heartbeat::start(md.clone(), &self.run_id);
        md.hold_writes();
        let outcome = self.flushed_drive(&md);
        drop(heartbeat);
        let released = md.release_writes();
        let outcome = outcome.and(released);
        let status = if self.options.cancel.is_cancelled() {
            RunStatus::Cancelled
        } else if self.failure.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let error = match (&outcome, status) {
            (Err(e), _) => Some(e.to_string()),
            (_, RunStatus::Cancelled) => Some("cancelled".to_string()),
            _ => self.failure.clone(),
        };
        let status = if outcome.is_err() {
            RunStatus::Failed
        } else {
            status
        };
        let finish = md.finish_run(&self.run_id, status, now_ms(), error.as_deref());
        outcome?;
        finish?;
        Ok(RunReport {
            run_id: self.run_id.to_string(),
            pipeline_id: self.pipeline.id().to_string(),
            status,
            runtime: self.runtime,
            environment: self.config.environment().to_string(),
            steps: self.reports,
            duration: self.started.elapsed(),
            error,
        })
    }

    fn flushed_drive(&mut self, md: &Arc<dyn MetadataStore>) -> Result<()> {
        md.flush()?;
        if let Some(obs) = &self.options.observer {
            let planned: Vec<String> = self
                .pipeline
                .graph()
                .order
                .iter()
                .filter(|&&i| self.planned[i])
                .map(|&i| self.spec(i).id.clone())
                .collect();
            obs.run_started(&self.run_id, &planned);
        }
        self.drive()
    }

    fn stopping(&self) -> bool {
        self.options.cancel.is_cancelled() || (self.failure.is_some() && !self.options.keep_going)
    }

    fn drive(&mut self) -> Result<()> {
        let (tx, rx) = mpsc::channel::<Done>();
        let mut cancel_deadline: Option<Instant> = None;
        let mut last_flush = Instant::now();
        loop {
            while !self.stopping() {
                let Some(&i) = self.ready.front() else { break };
                // A step waiting for a free slot was looked up already (`keys[i]` is set).
                let lookup =
                    self.forced != Some(i) && !self.spec(i).always_run && self.keys[i].is_none();
                if lookup && self.try_cache(i)? {
                    self.ready.pop_front();
                    continue;
                }
                let res = self.spec(i).resources;
                let cpus = res.cpus.min(self.ex.cpu_slots);
                let mem = res.memory_mib.unwrap_or(0);
                let fits_cpu = self.cpu_used + cpus <= self.ex.cpu_slots;
                let fits_mem = self
                    .ex
                    .memory_budget_mib
                    .is_none_or(|b| self.mem_used + mem <= b);
                if self.running > 0 && !(fits_cpu && fits_mem) {
                    break;
                }
                self.ready.pop_front();
                self.dispatch(i, cpus, mem, tx.clone())?;
            }
            if self.running == 0 && (self.ready.is_empty() || self.stopping()) {
                break;
            }
            if self.options.cancel.is_cancelled() && cancel_deadline.is_none() {
                cancel_deadline = Some(Instant::now() + self.ex.cancel_grace);
            }
            if let Some(deadline) = cancel_deadline
                && Instant::now() >= deadline
            {
                break;
            }
            // Commit what was recorded at most every FLUSH_EVERY while steps complete
            // quickly, and whenever a wait runs out: readers see progress within tens
            // of milliseconds, and a chain of fast steps does not pay a commit each.
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.ex.metadata.flush()?;
                last_flush = Instant::now();
            }
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(done) => self.finish(done)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.ex.metadata.flush()?;
                    last_flush = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // Whatever did not finish: interrupted by a cancel, or never started.
        let cancelled = self.options.cancel.is_cancelled();
        for i in self.pipeline.graph().order.clone() {
            if !self.planned[i] || self.state[i] == State::Finished {
                continue;
            }
            let (status, why) = match (self.state[i], cancelled) {
                (State::Running, _) => (
                    StepStatus::Cancelled,
                    "the run was cancelled while the step ran".to_string(),
                ),
                (_, true) => (StepStatus::Cancelled, "the run was cancelled".to_string()),
                _ => (
                    StepStatus::Skipped,
                    format!(
                        "not started: {}",
                        self.failure.as_deref().unwrap_or("the run stopped")
                    ),
                ),
            };
            self.record_unrun(i, status, why)?;
        }
        Ok(())
    }

    fn cache_key(&self, i: usize) -> String {
        let spec = self.spec(i);
        let version = spec
            .code_version
            .as_deref()
            .unwrap_or_else(|| binary_identity());
        let mut key = CacheKeyBuilder::new(&self.pipeline_id, &spec.id, version, spec.output_type);
        for (name, value) in &spec.params {
            key.param(name, value);
        }
        if spec.uses_runtime {
            key.runtime(&self.runtime);
        }
        for k in &spec.config_keys {
            key.config(k, self.config.value(k));
        }
        for &d in &self.pipeline.graph().inputs[i] {
            if let Some((_, hash)) = &self.outputs[d] {
                key.input(&self.spec(d).id, hash);
            }
        }
        key.finish().to_hex()
    }

    fn input_list(&self, i: usize) -> Vec<(String, String)> {
        self.pipeline.graph().inputs[i]
            .iter()
            .filter_map(|&d| {
                self.outputs[d]
                    .as_ref()
                    .map(|(_, h)| (self.spec(d).id.clone(), h.to_hex()))
            })
            .collect()
    }

    fn params_list(&self, i: usize) -> Vec<(String, String)> {
        self.spec(i)
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    /// Looks step `i` up in the cache; on a verified hit, records it and returns true.
    fn try_cache(&mut self, i: usize) -> Result<bool> {
        let started = Instant::now();
        let key = self.cache_key(i);
        self.keys[i] = Some(key.clone());
        let md = self.ex.metadata.clone();
        let Some(artifact) = md.cache_lookup(&key)? else {
            return Ok(false);
        };
        let hash: Option<ContentHash> = artifact.hash.parse().ok();
        let bytes = match hash {
            Some(h) => self.ex.artifacts.get(&h)?,
            None => None,
        };
        let (Some(hash), Some(bytes)) = (hash, bytes) else {
            tracing::info!(step = %self.spec(i).id, "cache entry's artifact is missing or damaged; running the step");
            md.cache_forget(&key)?;
            return Ok(false);
        };
        let now = now_ms();
        md.finish_step(
            &self.run_id,
            &self.spec(i).id,
            &StepRunEnd {
                status: Some(StepStatus::Cached),
                attempts: 0,
                cache_key: Some(key),
                cache_hit: true,
                started_ms: Some(now),
                finished_ms: now,
                output: Some(artifact),
                inputs: self.input_list(i),
                params: self.params_list(i),
                ..Default::default()
            },
        )?;
        self.state[i] = State::Finished;
        self.complete_ok(i, bytes, hash, StepStatus::Cached, 0, started.elapsed());
        Ok(true)
    }

    fn dispatch(&mut self, i: usize, cpus: u32, mem: u64, tx: mpsc::Sender<Done>) -> Result<()> {
        let mut spec = self.spec(i).clone();
        if self.options.no_retries {
            spec.retries = 0;
        }
        self.ex
            .metadata
            .start_step(&self.run_id, &spec.id, now_ms())?;
        if let Some(obs) = &self.options.observer {
            obs.step_started(&spec.id);
        }
        let inputs: Vec<Bytes> = self.pipeline.graph().inputs[i]
            .iter()
            .map(|&d| {
                self.outputs[d]
                    .as_ref()
                    .map(|(b, _)| b.clone())
                    .unwrap_or_default()
            })
            .collect();
        let job = Job {
            index: i,
            spec,
            inputs,
            pipeline: self.pipeline_id.clone(),
            run_id: self.run_id.clone(),
            runtime: self.runtime,
            config: self.config.clone(),
            cancel: self.options.cancel.clone(),
            artifacts: self.ex.artifacts.clone(),
        };
        self.pool.submit(job, self.running + 1, &tx)?;
        self.state[i] = State::Running;
        self.running += 1;
        self.cpu_used += cpus;
        self.mem_used += mem;
        Ok(())
    }

    fn finish(&mut self, done: Done) -> Result<()> {
        let i = done.index;
        let res = self.spec(i).resources;
        self.running -= 1;
        self.cpu_used -= res.cpus.min(self.ex.cpu_slots);
        self.mem_used -= res.memory_mib.unwrap_or(0);
        self.state[i] = State::Finished;
        let now = now_ms();
        let key = match &self.keys[i] {
            Some(k) => k.clone(),
            None => self.cache_key(i),
        };
        let mut end = StepRunEnd {
            attempts: done.attempts,
            cache_key: Some(key),
            started_ms: Some(done.started_ms),
            finished_ms: now,
            inputs: self.input_list(i),
            params: self.params_list(i),
            metrics: done.journal.metrics.into_iter().collect(),
            logs: done.journal.logs,
            ..Default::default()
        };
        let duration = done.started.elapsed();
        match done.result {
            Ok((encoded, uri)) => {
                end.status = Some(StepStatus::Succeeded);
                end.output = Some(ArtifactRecord {
                    hash: encoded.hash.to_hex(),
                    size: encoded.bytes.len() as u64,
                    type_name: encoded.type_name.to_string(),
                    uri,
                    created_ms: now,
                });
                end.cacheable = !self.spec(i).always_run;
                self.ex
                    .metadata
                    .finish_step(&self.run_id, &self.spec(i).id, &end)?;
                self.complete_ok(
                    i,
                    encoded.bytes,
                    encoded.hash,
                    StepStatus::Succeeded,
                    done.attempts,
                    duration,
                );
            }
            Err(error) => {
                let cancelled = self.options.cancel.is_cancelled();
                end.status = Some(if cancelled {
                    StepStatus::Cancelled
                } else {
                    StepStatus::Failed
                });
                end.error = Some(error.clone());
                self.ex
                    .metadata
                    .finish_step(&self.run_id, &self.spec(i).id, &end)?;
                let id = self.spec(i).id.clone();
                if !cancelled && self.failure.is_none() {
                    self.failure = Some(format!("step {id:?} failed: {error}"));
                }
                self.push_report(StepReport {
                    step_id: id.clone(),
                    status: end.status.unwrap_or(StepStatus::Failed),
                    attempts: done.attempts,
                    duration,
                    cache_hit: false,
                    error: Some(error),
                    output: None,
                });
                if self.options.keep_going && !cancelled {
                    self.skip_downstream(i, &id)?;
                }
            }
        }
        Ok(())
    }

    fn skip_downstream(&mut self, failed: usize, failed_id: &str) -> Result<()> {
        let mut stack = self.users[failed].clone();
        while let Some(u) = stack.pop() {
            if self.state[u] != State::Pending {
                continue;
            }
            self.record_unrun(
                u,
                StepStatus::Skipped,
                format!("step {failed_id:?} it depends on failed"),
            )?;
            stack.extend(self.users[u].iter().copied());
        }
        Ok(())
    }

    fn record_unrun(&mut self, i: usize, status: StepStatus, why: String) -> Result<()> {
        self.state[i] = State::Finished;
        let id = self.spec(i).id.clone();
        self.ex.metadata.finish_step(
            &self.run_id,
            &id,
            &StepRunEnd {
                status: Some(status),
                finished_ms: now_ms(),
                error: Some(why.clone()),
                params: self.params_list(i),
                ..Default::default()
            },
        )?;
        self.push_report(StepReport {
            step_id: id,
            status,
            attempts: 0,
            duration: Duration::ZERO,
            cache_hit: false,
            error: Some(why),
            output: None,
        });
        Ok(())
    }

    fn complete_ok(
        &mut self,
        i: usize,
        bytes: Bytes,
        hash: ContentHash,
        status: StepStatus,
        attempts: u32,
        duration: Duration,
    ) {
        self.outputs[i] = Some((bytes, hash));
        for &d in &self.pipeline.graph().inputs[i] {
            self.remaining_users[d] = self.remaining_users[d].saturating_sub(1);
            if self.remaining_users[d] == 0
                && let Some((bytes, _)) = &mut self.outputs[d]
            {
                *bytes = Bytes::new();
            }
        }
        for k in 0..self.users[i].len() {
            let u = self.users[i][k];
            self.missing[u] -= 1;
            if self.missing[u] == 0 && self.state[u] == State::Pending {
                self.ready.push_back(u);
            }
        }
        self.push_report(StepReport {
            step_id: self.spec(i).id.clone(),
            status,
            attempts,
            duration,
            cache_hit: status == StepStatus::Cached,
            error: None,
            output: Some(hash),
        });
    }

    fn push_report(&mut self, report: StepReport) {
        if let Some(obs) = &self.options.observer {
            obs.step_finished(&report);
        }
        self.reports.push(report);
    }
}

/// What a worker thread needs to run one step.
struct Job {
    index: usize,
    spec: StepSpec,
    inputs: Vec<Bytes>,
    pipeline: Arc<str>,
    run_id: Arc<str>,
    runtime: Runtime,
    config: Arc<ResolvedConfig>,
    cancel: CancelToken,
    artifacts: ArtifactStore,
}

impl Job {
    fn context(&self, attempt: u32) -> StepContext {
        StepContext {
            pipeline: self.pipeline.clone(),
            step: Arc::from(self.spec.id.as_str()),
            run_id: self.run_id.clone(),
            attempt,
            params: Arc::new(self.spec.params.clone()),
            runtime: self.spec.uses_runtime.then_some(self.runtime),
            config_keys: Arc::from(self.spec.config_keys.clone()),
            config: self.config.clone(),
            cancel: self.cancel.clone(),
            journal: Mutex::new(Journal::default()),
        }
    }

    fn run(self) -> Done {
        let started = Instant::now();
        let started_ms = now_ms();
        let mut journal = Journal::default();
        let mut attempt = 0;
        let inputs = Arc::new(self.inputs.clone());
        let result = loop {
            attempt += 1;
            let ctx = Arc::new(self.context(attempt));
            let outcome = match self.spec.timeout {
                None => call(&self.spec, &ctx, &inputs),
                Some(limit) => call_with_timeout(&self.spec, &ctx, &inputs, limit),
            };
            let outcome = outcome.and_then(|encoded| match self.artifacts.put(&encoded) {
                Ok(uri) => Ok((encoded, uri)),
                Err(e) => Err(e.to_string()),
            });
            let attempt_journal = ctx.take_journal();
            journal.logs.extend(attempt_journal.logs);
            journal.metrics.extend(attempt_journal.metrics);
            match outcome {
                Ok(ok) => break Ok(ok),
                Err(error) => {
                    let last = attempt > self.spec.retries || self.cancel.is_cancelled();
                    journal.logs.push(LogLine {
                        at_ms: now_ms(),
                        level: "warn".into(),
                        message: format!("attempt {attempt} failed: {error}"),
                    });
                    if last {
                        let error = if attempt > 1 {
                            format!("{error} (after {attempt} attempts)")
                        } else {
                            error
                        };
                        break Err(error);
                    }
                    pause(self.spec.retry_pause, &self.cancel);
                }
            }
        };
        Done {
            index: self.index,
            result,
            attempts: attempt,
            journal,
            started_ms,
            started,
        }
    }
}

fn call(
    spec: &StepSpec,
    ctx: &StepContext,
    inputs: &[Bytes],
) -> std::result::Result<Encoded, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| (spec.run)(ctx, inputs))) {
        Ok(Ok(encoded)) => Ok(encoded),
        Ok(Err(failure)) => Err(failure.to_string()),
        Err(panic) => Err(StepFailure::Panicked(panic_message(&*panic)).to_string()),
    }
}

fn call_with_timeout(
    spec: &StepSpec,
    ctx: &Arc<StepContext>,
    inputs: &Arc<Vec<Bytes>>,
    limit: Duration,
) -> std::result::Result<Encoded, String> {
    let (tx, rx) = mpsc::sync_channel(1);
    let (spec2, ctx2, inputs2) = (spec.clone(), ctx.clone(), inputs.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("attempt-{}", spec.id))
        .spawn(move || {
            let _ = tx.send(call(&spec2, &ctx2, &inputs2));
        });
    if let Err(e) = spawned {
        return Err(format!("could not start the attempt's thread: {e}"));
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:.3} s", limit.as_secs_f64())),
    }
}

fn pause(total: Duration, cancel: &CancelToken) {
    let end = Instant::now() + total;
    while !cancel.is_cancelled() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Records the run's heartbeat every [`HEARTBEAT`](crate::metadata::HEARTBEAT) on
/// a thread of its own until dropped, so that a run whose host went away can be told
/// abandoned (see [`reap_abandoned`](crate::metadata::reap_abandoned)).
struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(md: Arc<dyn MetadataStore>, run_id: &str) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let run_id = run_id.to_string();
        let thread = std::thread::Builder::new()
            .name("riffle-heartbeat".into())
            .spawn(move || {
                let mut warned = false;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(crate::metadata::HEARTBEAT)
                {
                    // Written at once, past the writes the executor holds back.
                    let beat = md.beat(&run_id, now_ms()).and_then(|()| md.flush());
                    if let Err(e) = beat
                        && !warned
                    {
                        warned = true;
                        eprintln!("run {run_id}: cannot record its heartbeat: {e}");
                    }
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
