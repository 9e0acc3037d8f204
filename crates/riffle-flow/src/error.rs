//! [`FlowError`]: what can go wrong defining or running a Flow, always naming the
//! flow, processor or address it is about.

use std::sync::Arc;

/// A Flow's error.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The flow's definition is wrong (a duplicate id, a route taken twice, ...).
    #[error("flow {flow:?}: {what}")]
    Definition {
        /// The flow.
        flow: String,
        /// What is wrong.
        what: String,
    },
    /// A processor could not start or stopped with an error of the engine or a
    /// connector (which names the server and the step).
    #[error("processor {processor:?}: {what}")]
    Processor {
        /// The processor's id.
        processor: String,
        /// What it was doing.
        what: String,
        /// The error underneath.
        #[source]
        source: Arc<riffle::RiffleError>,
    },
    /// A processor gave up on an item and has nowhere to put it.
    #[error("processor {processor:?}: {what}")]
    Failed {
        /// The processor's id.
        processor: String,
        /// What failed and why.
        what: String,
    },
    /// A dependency could not be made or was asked for where it cannot be
    /// ([`crate::dependency`]).
    #[error("dependency {dependency:?} ({scope} scope) {what}")]
    Dependency {
        /// The dependency's name.
        dependency: String,
        /// Its scope.
        scope: crate::Scope,
        /// What went wrong.
        what: String,
        /// The HTTP answer its maker chose (a `401` from a token check), if
        /// it failed with one; else an HTTP call is answered `503`.
        answer: Option<crate::HttpError>,
    },
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The runtime that hosts the HTTP side could not start.
    #[error("cannot start the flow's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl FlowError {
    pub(crate) fn processor(
        processor: &str,
        what: impl Into<String>,
        source: impl Into<Arc<riffle::RiffleError>>,
    ) -> Self {
        Self::Processor {
            processor: processor.to_string(),
            what: what.into(),
            source: source.into(),
        }
    }
}

impl FlowError {
    /// The error with every cause after it, `: `-separated: what a log line or an
    /// HTTP answer shows.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

/// A Flow's result.
pub type Result<T, E = FlowError> = std::result::Result<T, E>;
