//! The one error type of this crate and its [`Result`] alias.
//!
//! Every variant names what failed (a pipeline, a step, a file, a URL) and why, so a
//! message read on its own in a terminal or a log is enough to act on.

use std::path::PathBuf;

/// What can go wrong while defining, storing or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id (pipeline, step, environment, config key) is empty or has characters
    /// outside `[A-Za-z0-9_-]`.
    #[error("{kind} id {id:?} is not valid: {why}")]
    InvalidId {
        /// What the id names ("pipeline", "step", ...).
        kind: &'static str,
        /// The id as given.
        id: String,
        /// Why it was refused.
        why: &'static str,
    },
    /// Two steps of one pipeline share an id.
    #[error("pipeline {pipeline:?} has two steps named {step:?}")]
    DuplicateStep { pipeline: String, step: String },
    /// A step reads from, or runs after, a step that the pipeline does not have.
    #[error(
        "step {step:?} of pipeline {pipeline:?} depends on {input:?}, which is not a step of this pipeline"
    )]
    MissingInput {
        pipeline: String,
        step: String,
        input: String,
    },
    /// The steps' dependencies form a cycle; `steps` lists it in order, first repeated last.
    #[error("pipeline {pipeline:?} has a dependency cycle: {}", steps.join(" -> "))]
    Cycle {
        pipeline: String,
        steps: Vec<String>,
    },
    /// A step named on the command line or in a call does not exist.
    #[error("pipeline {pipeline:?} has no step {step:?}")]
    UnknownStep { pipeline: String, step: String },
    /// A schedule expression could not be parsed.
    #[error("schedule {expr:?} is not valid: {why}")]
    InvalidSchedule {
        expr: String,
        why: String,
        /// The pipeline whose schedule it is (empty when parsed on its own).
        pipeline: String,
    },
    /// A parameter set from outside is declared by no step of the pipeline.
    #[error("pipeline {pipeline:?} has no parameter {name:?}; its steps declare: {known}")]
    UnknownParam {
        pipeline: String,
        name: String,
        known: String,
    },
    /// A runtime (the logical date of a run) could not be parsed.
    #[error("runtime {text:?} is not valid: expected \"YYYY-MM-DD\" or \"YYYY-MM-DD HH:MM:SS\"")]
    InvalidRuntime { text: String },
    /// The configuration asked for is missing or incomplete.
    #[error("configuration of pipeline {pipeline:?}: {why}")]
    Config { pipeline: String, why: String },
    /// A value could not be encoded or decoded.
    #[error("{what}: {source}")]
    Codec {
        what: String,
        #[source]
        source: postcard::Error,
    },
    /// A parameter value could not be encoded as JSON.
    #[error("parameter {name:?} of step {step:?}: {source}")]
    Param {
        step: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// The artifact store failed.
    #[error("artifact store {url}: {what}: {source}")]
    ArtifactStore {
        url: String,
        what: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// An artifact store URL could not be understood.
    #[error("artifact store URL {url:?} is not valid: {why}")]
    InvalidStoreUrl { url: String, why: String },
    /// A metadata store location names a scheme Riffle does not know.
    #[error("metadata store URL {url:?} is not valid: {why}")]
    InvalidMetadataUrl { url: String, why: String },
    /// The SQLite metadata store failed.
    #[error("metadata store {path}: {what}: {source}")]
    Sqlite {
        path: String,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The Postgres metadata store failed.
    #[error("metadata store {url}: {what}: {source}")]
    Postgres {
        url: String,
        what: String,
        #[source]
        source: Box<postgres::Error>,
    },
    /// The metadata store holds data written by a newer version of Riffle.
    #[error(
        "metadata store {location} has schema version {found}, newer than this build knows ({known})"
    )]
    SchemaTooNew {
        location: String,
        found: i64,
        known: i64,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A run, artifact or step run looked up by id does not exist (or a prefix is ambiguous).
    #[error("{kind} {id:?} {why}")]
    NotFound {
        kind: &'static str,
        id: String,
        why: &'static str,
    },
    /// A worker thread could not be started.
    #[error("could not start a worker thread for step {step:?}: {source}")]
    Thread {
        step: String,
        #[source]
        source: std::io::Error,
    },
}

/// The result of every fallible call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The pipeline this error is about, when it names one: how a command line that
    /// registers many pipelines tells which one failed to build.
    ///
    /// ```
    /// let mut p = riffle_pipeline::Pipeline::builder("sales");
    /// p.schedule("61 * * * *");
    /// assert_eq!(p.build().unwrap_err().pipeline(), Some("sales"));
    /// ```
    pub fn pipeline(&self) -> Option<&str> {
        match self {
            Error::DuplicateStep { pipeline, .. }
            | Error::MissingInput { pipeline, .. }
            | Error::Cycle { pipeline, .. }
            | Error::UnknownStep { pipeline, .. }
            | Error::UnknownParam { pipeline, .. }
            | Error::Config { pipeline, .. } => Some(pipeline),
            Error::InvalidSchedule { pipeline, .. } if !pipeline.is_empty() => Some(pipeline),
            Error::InvalidId {
                kind: "pipeline",
                id,
                ..
            } => Some(id),
            _ => None,
        }
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            what: what.into(),
            source,
        }
    }
}
