//! What a step is given while it runs ([`StepContext`]), what it may return
//! ([`StepResult`]), and the options that shape how the executor runs it
//! ([`Resources`], [`CancelToken`]).
//!
//! A step reaches the outside world only through its context: its parameters, the run's
//! runtime and configuration (when it declared it uses them, so they enter its cache
//! key), secrets, a log and metrics. Everything it logs or measures is stored with its
//! step run in the metadata store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::de::DeserializeOwned;

use crate::config::ResolvedConfig;
use crate::runtime::Runtime;

/// Any error a step returns; `?` converts every `std::error::Error` and strings into it.
pub type StepError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a step function returns.
pub type StepResult<T> = std::result::Result<T, StepError>;

/// Resource hints of a step: the executor runs at once only as many steps as fit in
/// its CPU and memory budgets; deployments read them too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// CPU cores the step keeps busy (at least 1 slot of the pool is always taken).
    pub cpus: u32,
    /// Memory the step needs, in MiB, if known.
    pub memory_mib: Option<u64>,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpus: 1,
            memory_mib: None,
        }
    }
}

/// A flag shared by a run and its steps: set it (Ctrl-C does) and the executor starts
/// nothing new, tells running steps through [`StepContext::is_cancelled`], and records
/// the run as cancelled.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One line a step logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `info` or `warn`.
    pub level: String,
    /// The text.
    pub message: String,
}

#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) metrics: BTreeMap<String, f64>,
}

/// What a running step can see and report.
pub struct StepContext {
    pub(crate) pipeline: Arc<str>,
    pub(crate) step: Arc<str>,
    pub(crate) run_id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) params: Arc<BTreeMap<String, serde_json::Value>>,
    pub(crate) runtime: Option<Runtime>,
    pub(crate) config_keys: Arc<[String]>,
    pub(crate) config: Arc<ResolvedConfig>,
    pub(crate) cancel: CancelToken,
    pub(crate) journal: Mutex<Journal>,
}

impl StepContext {
    /// A context for calling a step function by hand (in a unit test of the function).
    pub fn for_test(step: &str, params: BTreeMap<String, serde_json::Value>) -> Self {
        Self {
            pipeline: Arc::from("test"),
            step: Arc::from(step),
            run_id: Arc::from("test-run"),
            attempt: 1,
            params: Arc::new(params),
            runtime: None,
            config_keys: Arc::from(Vec::new()),
            config: Arc::new(ResolvedConfig::default()),
            cancel: CancelToken::new(),
            journal: Mutex::new(Journal::default()),
        }
    }

    /// The pipeline's id.
    pub fn pipeline_id(&self) -> &str {
        &self.pipeline
    }

    /// This step's id.
    pub fn step_id(&self) -> &str {
        &self.step
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The parameter `name` decoded as `T`; a missing or mistyped parameter is an error
    /// naming the step and the parameter.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> StepResult<T> {
        let value = self
            .params
            .get(name)
            .ok_or_else(|| format!("step {:?} has no parameter {name:?}", &*self.step))?;
        serde_json::from_value(value.clone()).map_err(|e| {
            format!(
                "parameter {name:?} of step {:?} is not a {}: {e}",
                &*self.step,
                std::any::type_name::<T>()
            )
            .into()
        })
    }

    /// The run's runtime; only for steps that declared `uses_runtime()`.
    pub fn runtime(&self) -> StepResult<Runtime> {
        self.runtime.ok_or_else(|| {
            format!(
                "step {:?} reads the runtime but did not declare uses_runtime()",
                &*self.step
            )
            .into()
        })
    }

    /// A configuration value; only keys the step declared with `uses_config`.
    pub fn config(&self, key: &str) -> StepResult<&str> {
        if !self.config_keys.iter().any(|k| k == key) {
            return Err(format!(
                "step {:?} reads config {key:?} but did not declare it with uses_config",
                &*self.step
            )
            .into());
        }
        self.config.value(key).ok_or_else(|| {
            format!(
                "config {key:?} is not set in environment {:?}",
                self.config.environment()
            )
            .into()
        })
    }

    /// The environment this run uses (`dev`, `prod`, ...).
    pub fn environment(&self) -> &str {
        self.config.environment()
    }

    /// A secret's value, read from its environment variable when the run started.
    pub fn secret(&self, key: &str) -> StepResult<&str> {
        let secret = self
            .config
            .secret(key)
            .ok_or_else(|| format!("no secret {key:?} is declared"))?;
        secret.expose().ok_or_else(|| {
            format!(
                "secret {key:?}: environment variable {} is not set",
                secret.var()
            )
            .into()
        })
    }

    /// Whether the run was asked to stop; long steps should check it and return early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Logs a line, stored with this step run.
    pub fn log(&self, message: impl Into<String>) {
        self.push_log("info", message.into());
    }

    /// Logs a warning, stored with this step run.
    pub fn warn(&self, message: impl Into<String>) {
        self.push_log("warn", message.into());
    }

    fn push_log(&self, level: &str, message: String) {
        tracing::info!(step = &*self.step, "{message}");
        let at_ms = now_ms();
        if let Ok(mut journal) = self.journal.lock() {
            journal.logs.push(LogLine {
                at_ms,
                level: level.to_string(),
                message,
            });
        }
    }

    /// Records a metric (the last value for a name wins).
    pub fn metric(&self, name: &str, value: f64) {
        if let Ok(mut journal) = self.journal.lock() {
            journal.metrics.insert(name.to_string(), value);
        }
    }

    pub(crate) fn take_journal(&self) -> Journal {
        self.journal
            .lock()
            .map(|mut j| std::mem::take(&mut *j))
            .unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
