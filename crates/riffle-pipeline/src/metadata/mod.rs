//! The metadata store: what ran, when, with what, and what it made.
//!
//! Every run, step run, artifact and lineage edge is a row. The executor writes through
//! the [`MetadataStore`] trait; the CLI (`riffle runs`, `riffle cache`, `riffle lineage`)
//! and the dashboard read through the same trait, so they work on any backend:
//! [`SqliteStore`] (the default, `.riffle/metadata.db`) or [`PostgresStore`].
//!
//! ## The schema (version 5)
//!
//! | table | one row per | key columns |
//! |---|---|---|
//! | `pipelines` | pipeline ever run | `id`, `schedule`, `about`, `last_seen_ms` |
//! | `run_owners` | run (version 3) | `run_id`, `owner` (host, pid and process start: see [`RunOwner`]), `heartbeat_ms` (version 4) |
//! | `runs` | run | `id`, `pipeline_id`, `status`, `runtime`, `environment`, `config` (JSON, no secrets), `started_ms`, `finished_ms`, `error` |
//! | `step_runs` | step of a run | `id`, `run_id`, `step_id`, `status`, `attempts`, `cache_key`, `cache_hit`, `started_ms`, `finished_ms`, `error`, `output_hash` |
//! | `artifacts` | distinct artifact | `hash`, `size`, `type_name`, `uri`, `created_ms` |
//! | `lineage` | edge between a step run and an artifact | `step_run_id`, `artifact_hash`, `direction` (`input`/`output`), `name` |
//! | `cache_entries` | reusable output | `cache_key`, `pipeline_id`, `step_id`, `artifact_hash`, `created_ms` |
//! | `params` | parameter of a step run | `step_run_id`, `name`, `value` (JSON) |
//! | `metrics` | metric of a step run | `step_run_id`, `name`, `value` |
//! | `logs` | log line of a step run | `step_run_id`, `at_ms`, `level`, `message` |
//! | `flow_runs` | run of a Flow (version 5) | `id`, `flow`, `started_ms`, `ended_ms`, `last_sample_ms`, `owner`, `addr`, `error` |
//! | `flow_samples` | processor of a flow run, each time it is sampled (version 5) | `run_id`, `at_ms`, `processor`, `kind`, `replicas`, `backlog`, `items_in`, `items_out`, `errors`, `dead_letters`, `in_flight`, `latency_p50_ms`, `latency_p99_ms` |
//!
//! Times are milliseconds since the Unix epoch. Indexes cover the reads below: runs by
//! pipeline and start time, step runs by run, lineage by artifact, cache entries by
//! pipeline, artifacts by creation time (version 2, for the dashboard). Migrations are
//! numbered; opening a store applies the missing ones in a transaction and refuses a
//! database from a newer version.
//!
//! ## Flow runs
//!
//! A Flow (`riffle flow run`) runs until stopped, so what is kept of it is a time
//! series: a [`FlowRunRecord`] when it starts, then a [`FlowSampleRecord`] per
//! processor every second or so (replicas, backlog, totals so far), and its end.
//! The dashboard's Flows page draws replicas and backlog over time from them.
//!
//! ```
//! use riffle_pipeline::metadata::{FlowRunRecord, FlowSampleRecord, MetadataStore, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(&dir.path().join("metadata.db"))?;
//! let run = FlowRunRecord::starting("shop", "127.0.0.1:8000");
//! store.start_flow_run(&run)?;
//! let mut sample = FlowSampleRecord::new(&run.id, run.started_ms + 1000, "orders", "consumer");
//! sample.replicas = 2;
//! sample.backlog = Some(150);
//! store.record_flow_samples(&[sample])?;
//! store.end_flow_run(&run.id, run.started_ms + 2000, None)?;
//! let runs = store.flow_runs(None, 10)?;
//! assert_eq!((runs[0].flow.as_str(), runs[0].ended_ms), ("shop", Some(run.started_ms + 2000)));
//! assert_eq!(store.flow_samples(&run.id)?[0].backlog, Some(150));
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

mod owner;
mod postgres;
mod sqlite;

pub use self::owner::{HEARTBEAT, OwnedRun, RunOwner, STALE_AFTER, reap_abandoned, reap_stale};
pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

use crate::error::Result;
use crate::step::LogLine;

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Still going (a run whose process died on this host is marked failed by
    /// [`reap_abandoned`]).
    Running,
    /// Every planned step succeeded or was cached.
    Succeeded,
    /// A step failed.
    Failed,
    /// Stopped by Ctrl-C or a [`crate::CancelToken`].
    Cancelled,
}

/// The state of a step run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Started and not yet finished.
    Running,
    /// Ran and produced an output.
    Succeeded,
    /// Its output was reused from the cache.
    Cached,
    /// Every attempt failed (or timed out).
    Failed,
    /// Not run: a step it needs failed, or the run stopped at a failure.
    Skipped,
    /// Not run, or interrupted, because the run was cancelled.
    Cancelled,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),+ }) => {
        impl $t {
            /// The status as stored and shown.
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            /// The status from its stored text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($s => Some(Self::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
text_enum!(RunStatus { Running = "running", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled" });
text_enum!(StepStatus { Running = "running", Succeeded = "succeeded", Cached = "cached", Failed = "failed", Skipped = "skipped", Cancelled = "cancelled" });

/// A row of `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub pipeline_id: String,
    pub status: RunStatus,
    /// The runtime, as `YYYY-MM-DD HH:MM:SS`.
    pub runtime: String,
    pub environment: String,
    /// The environment's config values as a JSON object (never secrets).
    pub config: String,
    /// The step run alone with `--job`, if any.
    pub only_step: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub error: Option<String>,
}

/// A row of `step_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRunRecord {
    pub id: i64,
    pub run_id: String,
    pub step_id: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub cache_key: Option<String>,
    pub cache_hit: bool,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub error: Option<String>,
    pub output_hash: Option<String>,
}

/// A row of `artifacts`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactRecord {
    pub hash: String,
    pub size: u64,
    pub type_name: String,
    pub uri: String,
    pub created_ms: i64,
}

/// A row of `cache_entries` joined with its artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub cache_key: String,
    pub pipeline_id: String,
    pub step_id: String,
    pub artifact: ArtifactRecord,
    pub created_ms: i64,
}

/// A row of `pipelines`.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRecord {
    pub id: String,
    pub about: String,
    pub schedule: Option<String>,
    pub last_seen_ms: i64,
}

/// Whether an artifact entered or left a step run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The step run read it.
    Input,
    /// The step run produced (or reused) it.
    Output,
}
text_enum!(Direction { Input = "input", Output = "output" });

/// A row of `lineage` with the step run it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageEdge {
    pub step_run_id: i64,
    pub run_id: String,
    pub pipeline_id: String,
    pub step_id: String,
    pub artifact_hash: String,
    pub direction: Direction,
    /// The input's name (the producing step) or `output`.
    pub name: String,
}

/// Everything the executor records when a step run ends.
#[derive(Debug, Clone, Default)]
pub struct StepRunEnd {
    pub status: Option<StepStatus>,
    pub attempts: u32,
    pub cache_key: Option<String>,
    pub cache_hit: bool,
    pub started_ms: Option<i64>,
    pub finished_ms: i64,
    pub error: Option<String>,
    /// The output, when there is one.
    pub output: Option<ArtifactRecord>,
    /// The inputs, by name and hash.
    pub inputs: Vec<(String, String)>,
    /// Parameters as JSON text.
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub logs: Vec<LogLine>,
    /// Whether to add a cache entry for `cache_key` pointing at `output`.
    pub cacheable: bool,
}

/// A row of `flow_runs`: one run of a Flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRunRecord {
    /// A time-ordered id (hex digits and dashes, like a pipeline run's).
    pub id: String,
    /// The Flow's name.
    pub flow: String,
    pub started_ms: i64,
    /// When it stopped; `None` while it runs (or when its process was killed).
    pub ended_ms: Option<i64>,
    /// When its latest sample was taken (updated by
    /// [`MetadataStore::record_flow_samples`]); a run with no end whose last sample is
    /// old was killed.
    pub last_sample_ms: Option<i64>,
    /// The process that runs it, as [`RunOwner::to_text`] writes it.
    pub owner: String,
    /// The address its HTTP listener serves on.
    pub addr: String,
    /// Why it stopped, when it failed.
    pub error: Option<String>,
}

impl FlowRunRecord {
    /// A run of `flow` starting now in this process, serving on `addr`.
    pub fn starting(flow: &str, addr: &str) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            flow: flow.to_string(),
            started_ms: crate::step::now_ms(),
            ended_ms: None,
            last_sample_ms: None,
            owner: RunOwner::current().to_text(),
            addr: addr.to_string(),
            error: None,
        }
    }
}

/// A row of `flow_samples`: one processor of a flow run at one moment. Counters are
/// totals since the run started.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSampleRecord {
    pub run_id: String,
    pub at_ms: i64,
    /// The processor's id (a consumer's id, a collector's or endpoint's route).
    pub processor: String,
    /// `consumer`, `collector` or `endpoint`.
    pub kind: String,
    pub replicas: u64,
    /// Messages waiting in its source, where the source can say.
    pub backlog: Option<u64>,
    pub items_in: u64,
    pub items_out: u64,
    pub errors: u64,
    pub dead_letters: u64,
    pub in_flight: i64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl FlowSampleRecord {
    /// A sample of `processor` (of kind `kind`) in run `run_id` at `at_ms`, every
    /// number zero and nothing unknown known.
    pub fn new(run_id: &str, at_ms: i64, processor: &str, kind: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            at_ms,
            processor: processor.to_string(),
            kind: kind.to_string(),
            replicas: 0,
            backlog: None,
            items_in: 0,
            items_out: 0,
            errors: 0,
            dead_letters: 0,
            in_flight: 0,
            latency_p50_ms: None,
            latency_p99_ms: None,
        }
    }
}

/// Reads and writes of run history; see the [module docs](self) for the schema.
///
/// Implementations are shared between threads; each call is its own transaction.
pub trait MetadataStore: Send + Sync {
    /// Where the store is (a path or a URL without password), for messages.
    fn location(&self) -> String;

    // ---- writes (the executor) ----

    /// Records that pipeline `id` exists (updated every run).
    fn record_pipeline(&self, record: &PipelineRecord) -> Result<()>;
    /// Records a run starting.
    fn start_run(&self, run: &RunRecord) -> Result<()>;
    /// Records which process runs `run_id` (a [`RunOwner`] as text), so a run whose
    /// process died can be told from one still going.
    fn claim_run(&self, run_id: &str, owner: &str) -> Result<()>;
    /// Records that the owner of `run_id` is alive at `at_ms` (its heartbeat).
    fn beat(&self, run_id: &str, at_ms: i64) -> Result<()>;
    /// The `running` runs that have an owner, with it and its last heartbeat.
    fn running_owners(&self) -> Result<Vec<OwnedRun>>;
    /// Records a run's end.
    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        finished_ms: i64,
        error: Option<&str>,
    ) -> Result<()>;
    /// Records a step run starting; returns its id.
    fn start_step(&self, run_id: &str, step_id: &str, started_ms: i64) -> Result<i64>;
    /// Records a step run's end (creating the row if it was never started), with its
    /// artifact, lineage, parameters, metrics, logs and cache entry; returns its id.
    fn finish_step(&self, run_id: &str, step_id: &str, end: &StepRunEnd) -> Result<i64>;
    /// The artifact stored for cache key `key`, if any.
    fn cache_lookup(&self, key: &str) -> Result<Option<ArtifactRecord>>;
    /// Forgets cache entry `key` (its artifact is gone or damaged).
    fn cache_forget(&self, key: &str) -> Result<()>;

    /// Lets the writes that follow accumulate in one transaction until [`flush`]
    /// (a store may ignore this and commit every call). The executor holds writes
    /// during a run and flushes whenever it waits, so a dashboard sees progress while
    /// a chain of cached steps costs one commit instead of one per step.
    ///
    /// [`flush`]: MetadataStore::flush
    fn hold_writes(&self) {}
    /// Commits the writes held so far.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Ends one [`hold_writes`](MetadataStore::hold_writes), committing what is held.
    fn release_writes(&self) -> Result<()> {
        Ok(())
    }

    // ---- reads (the CLI and the dashboard) ----

    /// Every pipeline that has run, by id.
    fn pipelines(&self) -> Result<Vec<PipelineRecord>>;
    /// The latest `limit` runs, newest first, of one pipeline or all.
    fn runs(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<RunRecord>>;
    /// A run by id or unique id prefix.
    fn run(&self, id_or_prefix: &str) -> Result<RunRecord>;
    /// The step runs of a run, in start order.
    fn step_runs(&self, run_id: &str) -> Result<Vec<StepRunRecord>>;
    /// The parameters of a step run, by name (JSON text).
    fn step_params(&self, step_run_id: i64) -> Result<Vec<(String, String)>>;
    /// The metrics of a step run, by name.
    fn step_metrics(&self, step_run_id: i64) -> Result<Vec<(String, f64)>>;
    /// The log of a step run, in order.
    fn step_logs(&self, step_run_id: i64) -> Result<Vec<LogLine>>;
    /// An artifact by hash or unique hash prefix.
    fn artifact(&self, hash_or_prefix: &str) -> Result<ArtifactRecord>;
    /// The lineage edges touching an artifact (who made it, who read it).
    fn edges_of_artifact(&self, hash: &str) -> Result<Vec<LineageEdge>>;
    /// The lineage edges of a step run (what it read, what it made).
    fn edges_of_step_run(&self, step_run_id: i64) -> Result<Vec<LineageEdge>>;
    /// The cache entries, of one pipeline or all, newest first.
    fn cache_entries(&self, pipeline: Option<&str>) -> Result<Vec<CacheEntry>>;
    /// Removes the cache entries of one pipeline or all; returns how many.
    fn clear_cache(&self, pipeline: Option<&str>) -> Result<u64>;
    /// Hashes of artifacts no cache entry points at any more.
    fn unreferenced_artifacts(&self) -> Result<Vec<String>>;

    // ---- flow runs (see the module docs) ----

    /// Records a flow run starting.
    fn start_flow_run(&self, run: &FlowRunRecord) -> Result<()>;
    /// Records samples of a flow run (in one transaction) and moves the run's
    /// `last_sample_ms` to the latest; a sample of the same run, processor and time
    /// as one already stored replaces it.
    fn record_flow_samples(&self, samples: &[FlowSampleRecord]) -> Result<()>;
    /// Records a flow run's end.
    fn end_flow_run(&self, run_id: &str, ended_ms: i64, error: Option<&str>) -> Result<()>;
    /// The latest `limit` flow runs, newest first, of one flow or all.
    fn flow_runs(&self, flow: Option<&str>, limit: u32) -> Result<Vec<FlowRunRecord>>;
    /// A flow run by id or unique id prefix.
    fn flow_run(&self, id_or_prefix: &str) -> Result<FlowRunRecord>;
    /// The samples of a flow run, oldest first (by processor within a time).
    fn flow_samples(&self, run_id: &str) -> Result<Vec<FlowSampleRecord>>;
}

/// Opens the metadata store at `location`: a `postgres://` or `postgresql://` URL, or a
/// path to an SQLite file (created with its folder if missing).
///
/// Any other `scheme://` is refused rather than taken for a file name:
///
/// ```
/// let err = riffle_pipeline::metadata::open("mysql://u@db/riffle").err().unwrap();
/// assert!(err.to_string().contains("mysql://u@db/riffle"));
/// ```
pub fn open(location: &str) -> Result<std::sync::Arc<dyn MetadataStore>> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return PostgresStore::open_dyn(location);
    }
    if let Some(path) = location.strip_prefix("sqlite://") {
        return Ok(std::sync::Arc::new(SqliteStore::open(
            std::path::Path::new(path),
        )?));
    }
    if let Some((scheme, _)) = location.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(crate::Error::InvalidMetadataUrl {
            url: location.to_string(),
            why: format!(
                "{scheme}:// is not a metadata store Riffle knows; use postgres://, \
                 postgresql://, sqlite://PATH or a plain file path"
            ),
        });
    }
    Ok(std::sync::Arc::new(SqliteStore::open(
        std::path::Path::new(location),
    )?))
}

/// A stored time (milliseconds since the Unix epoch) as `YYYY-MM-DD HH:MM:SS` UTC.
///
/// ```
/// assert_eq!(riffle_pipeline::metadata::format_ms(0), "1970-01-01 00:00:00");
/// ```
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}
