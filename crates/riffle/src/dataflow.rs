//! [`Dataflow`]: the description of a streaming computation, and [`Stream`], a typed
//! handle on one of its streams.
//!
//! Building a flow runs nothing. Each operator call checks its step id, records a
//! [`StepInfo`] (id, kind, upstreams) and stores a builder that will add the real
//! timely operators inside every worker when the flow is executed (see
//! [`crate::run`]). [`Dataflow::describe`] returns the recorded graph as data.
//!
//! ```
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//!
//! let flow = Dataflow::new("shout");
//! let out = TestingSink::new();
//! flow.input("inp", TestingSource::new(vec!["a".to_string(), "b".to_string()]))?
//!     .map("upper", |s: String| s.to_uppercase())?
//!     .output("out", out.clone())?;
//! // A second step with the same id is refused when it is added:
//! assert!(flow.input("inp", TestingSource::new(vec![1u32])).is_err());
//!
//! let graph = flow.describe();
//! assert_eq!(graph.steps.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>(), ["inp", "upper", "out"]);
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), ["A", "B"]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::build::BuildCtx;
use crate::data::Data;
use crate::error::{Result, RiffleError};

/// Adds a step's operators inside one worker.
pub(crate) type StepBuilder = Arc<dyn for<'s> Fn(&mut BuildCtx<'s>) -> Result<()> + Send + Sync>;

/// A reference to an upstream stream: the step that produces it and which of its
/// outputs (`down` for steps with one output).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Upstream {
    pub step_id: String,
    pub port: String,
}

/// One step of a flow, as [`Dataflow::describe`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    /// The id the user gave, unique within the flow.
    pub step_id: String,
    /// The operator: `input`, `map`, `count_final`, `output`, ...
    pub kind: String,
    /// The streams it reads.
    pub upstreams: Vec<Upstream>,
    /// The names of its outputs (`down`, or e.g. `trues`/`falses` for `branch`).
    pub outputs: Vec<String>,
}

/// The graph of a flow: its steps in the order they were added (which is a
/// topological order: a step can only read streams that already exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataflowGraph {
    pub name: String,
    pub steps: Vec<StepInfo>,
}

impl DataflowGraph {
    /// The graph as an indented tree, one line per step, children under parents.
    pub fn to_tree(&self) -> String {
        let mut out = format!("dataflow {}\n", self.name);
        let roots: Vec<&StepInfo> = self
            .steps
            .iter()
            .filter(|s| s.upstreams.is_empty())
            .collect();
        let mut seen = HashSet::new();
        for root in roots {
            self.tree_lines(root, "", None, &mut seen, &mut out);
        }
        out
    }

    fn tree_lines(
        &self,
        step: &StepInfo,
        indent: &str,
        via: Option<&str>,
        seen: &mut HashSet<String>,
        out: &mut String,
    ) {
        let via = via.map(|p| format!(" <-{p}-")).unwrap_or_default();
        let again = !seen.insert(step.step_id.clone());
        out.push_str(&format!(
            "{indent}{}{via} ({}){}\n",
            step.step_id,
            step.kind,
            if again { " (see above)" } else { "" }
        ));
        if again {
            return;
        }
        let child_indent = format!("{indent}    ");
        for child in &self.steps {
            for up in child.upstreams.iter().filter(|u| u.step_id == step.step_id) {
                let port = (up.port != "down").then_some(up.port.as_str());
                self.tree_lines(child, &child_indent, port, seen, out);
            }
        }
    }
}

pub(crate) struct DataflowInner {
    pub name: String,
    pub steps: Vec<StepInfo>,
    pub builders: Vec<StepBuilder>,
    /// Set by event-time windows: sources and stateless steps then carry the
    /// partition each item came from ([`crate::origin`]).
    pub trace_origins: bool,
    ids: HashSet<String>,
}

/// A streaming computation: steps connected by typed [`Stream`]s.
///
/// Cloning a `Dataflow` gives another handle on the same flow.
#[derive(Clone)]
pub struct Dataflow {
    pub(crate) inner: Arc<Mutex<DataflowInner>>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataflow")
            .field("name", &self.name())
            .finish()
    }
}

impl Dataflow {
    /// A new, empty flow called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(DataflowInner {
                name: name.into(),
                steps: Vec::new(),
                builders: Vec::new(),
                trace_origins: false,
                ids: HashSet::new(),
            })),
        }
    }

    /// The flow's name.
    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    /// The graph: steps with ids, kinds and upstreams.
    pub fn describe(&self) -> DataflowGraph {
        let inner = self.lock();
        DataflowGraph {
            name: inner.name.clone(),
            steps: inner.steps.clone(),
        }
    }

    /// A short fingerprint of the flow's shape (step ids, kinds, upstreams): a
    /// recovery store refuses a flow whose fingerprint differs from its own.
    pub fn fingerprint(&self) -> String {
        let inner = self.lock();
        type Shape<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
        let shape: Vec<Shape<'_>> = inner
            .steps
            .iter()
            .map(|s| {
                let ups = s
                    .upstreams
                    .iter()
                    .map(|u| (u.step_id.as_str(), u.port.as_str()))
                    .collect();
                (s.step_id.as_str(), s.kind.as_str(), ups)
            })
            .collect();
        format!("{:016x}", crate::exchange::stable_hash(&shape))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, DataflowInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn builders(&self) -> Vec<StepBuilder> {
        self.lock().builders.clone()
    }

    /// Whether the flow traces origins (see [`crate::origin`]).
    pub(crate) fn traces_origins(&self) -> bool {
        self.lock().trace_origins
    }

    /// Makes the flow trace origins: an event-time window needs them.
    pub(crate) fn trace_origins(&self) {
        self.lock().trace_origins = true;
    }

    /// Records a step: checks its id and upstreams, stores its description and builder.
    pub(crate) fn add_step(
        &self,
        step_id: &str,
        kind: &str,
        upstreams: &[&dyn AnyStream],
        outputs: &[&str],
        builder: StepBuilder,
    ) -> Result<()> {
        check_step_id(step_id)?;
        let mut inner = self.lock();
        for up in upstreams {
            if !Arc::ptr_eq(&up.dataflow().inner, &self.inner) {
                return Err(RiffleError::ForeignStream {
                    flow: inner.name.clone(),
                    other: up.dataflow().name(),
                    step_id: step_id.to_string(),
                });
            }
        }
        if !inner.ids.insert(step_id.to_string()) {
            return Err(RiffleError::DuplicateStepId {
                flow: inner.name.clone(),
                step_id: step_id.to_string(),
            });
        }
        inner.steps.push(StepInfo {
            step_id: step_id.to_string(),
            kind: kind.to_string(),
            upstreams: upstreams.iter().map(|u| u.upstream()).collect(),
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
        });
        inner.builders.push(builder);
        Ok(())
    }

    /// A handle on output `port` of step `step_id` (which must exist).
    pub(crate) fn stream_of<T: Data>(&self, step_id: &str, port: &str) -> Stream<T> {
        Stream {
            flow: self.clone(),
            step_id: step_id.to_string(),
            port: port.to_string(),
            _item: PhantomData,
        }
    }
}

fn check_step_id(step_id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(RiffleError::InvalidStepId {
            step_id: step_id.to_string(),
            reason: reason.to_string(),
        })
    };
    if step_id.is_empty() {
        return bad("it is empty");
    }
    if step_id.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if let Some(c) = step_id
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | ':'))
    {
        return bad(&format!(
            "it contains {c:?}; step ids may not contain '/', ':' or control characters"
        ));
    }
    Ok(())
}

/// A typed stream of items of `T`, produced by one step of a [`Dataflow`].
///
/// Operators are methods on it (see the [`crate::operators`] docs for the list); each
/// takes a step id first and returns the stream it produces.
pub struct Stream<T> {
    pub(crate) flow: Dataflow,
    pub(crate) step_id: String,
    pub(crate) port: String,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            flow: self.flow.clone(),
            step_id: self.step_id.clone(),
            port: self.port.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Stream({}.{} of {})",
            self.step_id,
            self.port,
            std::any::type_name::<T>()
        )
    }
}

impl<T: Data> Stream<T> {
    /// The id of the step that produces this stream.
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// The flow this stream belongs to.
    pub fn dataflow(&self) -> &Dataflow {
        &self.flow
    }

    /// The dead letters of this input step: what its source could not decode,
    /// when the source was given [`DeadLetters::stream`]; see
    /// [`crate::dead_letters`]. Only the stream of an input step has them.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource};
    /// let flow = Dataflow::new("f");
    /// let lines = flow.input("lines", TestingSource::new(vec!["a".to_string()]))?;
    /// assert_eq!(lines.dead_letters()?.step_id(), "lines");
    /// assert!(lines.map("upper", |l| l.to_uppercase())?.dead_letters().is_err());
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    ///
    /// [`DeadLetters::stream`]: crate::dead_letters::DeadLetters::stream
    pub fn dead_letters(&self) -> Result<Stream<crate::dead_letters::DeadLetter>> {
        let port = crate::sources::DEAD_LETTERS;
        let inner = self.flow.lock();
        let has = inner
            .steps
            .iter()
            .any(|s| s.step_id == self.step_id && s.outputs.iter().any(|o| o == port));
        if !has || self.port != "down" {
            return Err(RiffleError::InvalidFlow {
                flow: inner.name.clone(),
                reason: format!(
                    "stream {}.{} has no dead letters: only the stream of an input step has them",
                    self.step_id, self.port
                ),
            });
        }
        drop(inner);
        Ok(self.flow.stream_of(&self.step_id, port))
    }

    /// The key the stream is stored under while a worker builds the flow.
    pub(crate) fn key(&self) -> String {
        stream_key(&self.step_id, &self.port)
    }
}

pub(crate) fn stream_key(step_id: &str, port: &str) -> String {
    format!("{step_id}:{port}")
}

/// Any stream, whatever it carries: what [`Dataflow::add_step`] needs of upstreams.
pub(crate) trait AnyStream {
    fn dataflow(&self) -> &Dataflow;
    fn upstream(&self) -> Upstream;
}

impl<T> AnyStream for Stream<T> {
    fn dataflow(&self) -> &Dataflow {
        &self.flow
    }
    fn upstream(&self) -> Upstream {
        Upstream {
            step_id: self.step_id.clone(),
            port: self.port.clone(),
        }
    }
}
