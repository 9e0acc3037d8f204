//! One error type for the whole crate, with a [`Result`] alias.
//!
//! Every variant names *where* something went wrong (a step id, a file and line, a
//! worker) and *why*, so that the message alone is enough to find the cause.

use std::path::PathBuf;

/// What can go wrong while building or running a [`crate::Dataflow`].
#[derive(Debug, thiserror::Error)]
pub enum RiffleError {
    /// Two steps were given the same id.
    #[error("step id {step_id:?} is used twice in dataflow {flow:?}; step ids must be unique")]
    DuplicateStepId { flow: String, step_id: String },

    /// A step id that cannot be used (empty, or containing a character that would make
    /// the graph ambiguous).
    #[error("step id {step_id:?} is not valid: {reason}")]
    InvalidStepId { step_id: String, reason: String },

    /// A stream from one dataflow was used in another.
    #[error("step {step_id:?} uses a stream of dataflow {other:?} inside dataflow {flow:?}")]
    ForeignStream {
        flow: String,
        other: String,
        step_id: String,
    },

    /// The flow has no input, or no step that could produce anything.
    #[error("dataflow {flow:?} is not valid: {reason}")]
    InvalidFlow { flow: String, reason: String },

    /// A user function panicked.
    #[error(
        "step {step_id:?} failed on worker {worker}{context}: the function panicked: {message}"
    )]
    UserPanic {
        step_id: String,
        worker: usize,
        /// ` at epoch N, item ...`, where known.
        context: String,
        message: String,
    },

    /// A user function returned an error.
    #[error("step {step_id:?} failed on worker {worker}{context}: {message}")]
    UserError {
        step_id: String,
        worker: usize,
        context: String,
        message: String,
    },

    /// A file could not be opened, read or written.
    #[error("step {step_id:?}: cannot {action} {}: {error}", path.display())]
    Io {
        step_id: String,
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// A line of input could not be parsed.
    #[error("step {step_id:?}: {}:{line}: {reason}", path.display())]
    BadInput {
        step_id: String,
        path: PathBuf,
        line: u64,
        reason: String,
    },

    /// A source or sink failed for a reason of its own; the client's error, if
    /// any, is the [`std::error::Error::source`].
    #[error("step {step_id:?}: {message}")]
    Connector {
        step_id: String,
        message: String,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The execution could not be set up or did not finish cleanly.
    #[error("execution failed: {0}")]
    Execution(String),

    /// The recovery store is missing, damaged, or made for another flow.
    #[error("recovery: {0}")]
    Recovery(String),

    /// A testing helper was used with the wrong flow shape or types.
    #[error("testing: {0}")]
    Testing(String),
}

/// `Result` with [`RiffleError`].
pub type Result<T, E = RiffleError> = std::result::Result<T, E>;

impl RiffleError {
    /// The step this error is about, if it is about one.
    pub fn step_id(&self) -> Option<&str> {
        match self {
            RiffleError::DuplicateStepId { step_id, .. }
            | RiffleError::InvalidStepId { step_id, .. }
            | RiffleError::ForeignStream { step_id, .. }
            | RiffleError::UserPanic { step_id, .. }
            | RiffleError::UserError { step_id, .. }
            | RiffleError::Io { step_id, .. }
            | RiffleError::BadInput { step_id, .. }
            | RiffleError::Connector { step_id, .. } => Some(step_id),
            _ => None,
        }
    }

    /// A connector error for `step_id` with `message`.
    pub fn connector(step_id: &str, message: impl std::fmt::Display) -> Self {
        RiffleError::Connector {
            step_id: step_id.to_string(),
            message: message.to_string(),
            cause: None,
        }
    }

    /// A connector error for `step_id` with `message`, caused by `cause` (kept as
    /// the error's source, so the chain shows the client's own error once).
    pub fn connector_caused(
        step_id: &str,
        message: impl std::fmt::Display,
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        RiffleError::Connector {
            step_id: step_id.to_string(),
            message: message.to_string(),
            cause,
        }
    }
}
