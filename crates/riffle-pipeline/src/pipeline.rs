//! Defining a pipeline: typed steps whose inputs are other steps' outputs.
//!
//! [`Pipeline::builder`] starts a definition. [`PipelineBuilder::step`] adds a step: an
//! id, the outputs it reads, and a function from those values to a new one. It returns
//! a [`StepBuilder`] to set the step's options, whose [`StepBuilder::output`] is a
//! typed handle ([`Output<T>`]) that later steps take as input. Because handles are
//! typed, feeding a `Vec<f64>` to a step that wants a `String` does not compile.
//!
//! ```
//! use riffle_pipeline::{Pipeline, StepContext, StepResult};
//!
//! fn numbers(_ctx: &StepContext, (): ()) -> StepResult<Vec<i64>> {
//!     Ok(vec![3, 1, 2])
//! }
//!
//! let mut p = Pipeline::builder("demo");
//! let nums = p.step("numbers", (), numbers).version("1").output();
//! let total = p.step("total", &nums, |_ctx, n: Vec<i64>| Ok(n.iter().sum::<i64>())).output();
//! let scaled = p
//!     .step("scale", (&nums, &total), |ctx, (n, t): (Vec<i64>, i64)| {
//!         let factor: i64 = ctx.param("factor")?;
//!         Ok(n.iter().map(|x| x * factor / t.max(1)).collect::<Vec<_>>())
//!     })
//!     .param("factor", 100)
//!     .retries(2, std::time::Duration::from_millis(100))
//!     .output();
//! p.step("report", (), |_ctx, ()| Ok(())).after(&scaled);
//! let pipeline = p.build()?;
//! assert_eq!(pipeline.step_ids().collect::<Vec<_>>(), ["numbers", "total", "scale", "report"]);
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```
//!
//! A step that reads an output of another type is refused by the compiler:
//!
//! ```compile_fail
//! use riffle_pipeline::Pipeline;
//!
//! let mut p = Pipeline::builder("typed");
//! let nums = p.step("numbers", (), |_ctx, ()| Ok(vec![1.5_f64])).output();
//! // `nums` is an Output<Vec<f64>>; this step wants a String.
//! p.step("shout", &nums, |_ctx, text: String| Ok(text.to_uppercase()));
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, Encoded};
use crate::config::Config;
use crate::dag::{self, Graph};
use crate::error::{Error, Result};
use crate::ids::check_id;
use crate::schedule::Schedule;
use crate::step::{Resources, StepContext, StepResult};

/// A value a step can return: serializable, and owned so it can cross threads.
pub trait Artifact: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Artifact for T {}

/// A typed handle to a step's output, to pass as another step's input.
pub struct Output<T> {
    pipeline: Arc<str>,
    step: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            step: self.step.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> Output<T> {
    /// The id of the step that produces it.
    pub fn step_id(&self) -> &str {
        &self.step
    }
}

/// The inputs of a step: `()`, one `&Output<A>`, or a tuple of up to six of them. Each
/// becomes the step function's second argument, decoded: `A`, or `(A, B, ...)`.
pub trait Inputs {
    /// What the step function receives.
    type Values: Send + 'static;
    /// The (pipeline, step) of each input, in order.
    fn sources(&self) -> Vec<(Arc<str>, Arc<str>)>;
    /// Decodes the input bytes, in the order of [`Inputs::sources`].
    fn decode(bytes: &[Bytes], step: &str, names: &[String]) -> Result<Self::Values>;
}

impl Inputs for () {
    type Values = ();
    fn sources(&self) -> Vec<(Arc<str>, Arc<str>)> {
        Vec::new()
    }
    fn decode(_: &[Bytes], _: &str, _: &[String]) -> Result<()> {
        Ok(())
    }
}

fn decode_input<A: DeserializeOwned>(
    bytes: &[Bytes],
    i: usize,
    step: &str,
    names: &[String],
) -> Result<A> {
    let name = names.get(i).map(String::as_str).unwrap_or("?");
    let data = bytes.get(i).map(|b| &b[..]).unwrap_or(&[]);
    codec::decode(data, &format!("input {name:?} of step {step:?}"))
}

impl<A: Artifact> Inputs for &Output<A> {
    type Values = A;
    fn sources(&self) -> Vec<(Arc<str>, Arc<str>)> {
        vec![(self.pipeline.clone(), self.step.clone())]
    }
    fn decode(bytes: &[Bytes], step: &str, names: &[String]) -> Result<A> {
        decode_input(bytes, 0, step, names)
    }
}

macro_rules! tuple_inputs {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Artifact),+> Inputs for ($(&Output<$t>,)+) {
            type Values = ($($t,)+);
            fn sources(&self) -> Vec<(Arc<str>, Arc<str>)> {
                vec![$((self.$i.pipeline.clone(), self.$i.step.clone())),+]
            }
            fn decode(bytes: &[Bytes], step: &str, names: &[String]) -> Result<Self::Values> {
                Ok(($(decode_input::<$t>(bytes, $i, step, names)?,)+))
            }
        }
    };
}
tuple_inputs!(A 0);
tuple_inputs!(A 0, B 1);
tuple_inputs!(A 0, B 1, C 2);
tuple_inputs!(A 0, B 1, C 2, D 3);
tuple_inputs!(A 0, B 1, C 2, D 3, E 4);
tuple_inputs!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Why a step attempt produced no output.
#[derive(Debug)]
pub(crate) enum StepFailure {
    /// The inputs could not be decoded or the output encoded.
    Codec(Error),
    /// The step function returned an error.
    Failed(String),
    /// The step function panicked.
    Panicked(String),
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFailure::Codec(e) => write!(f, "{e}"),
            StepFailure::Failed(e) => f.write_str(e),
            StepFailure::Panicked(e) => write!(f, "panicked: {e}"),
        }
    }
}

pub(crate) type StepFn =
    Arc<dyn Fn(&StepContext, &[Bytes]) -> std::result::Result<Encoded, StepFailure> + Send + Sync>;

/// One step of a pipeline, as defined.
#[derive(Clone)]
pub struct StepSpec {
    pub(crate) id: String,
    pub(crate) about: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) after: Vec<String>,
    pub(crate) params: BTreeMap<String, serde_json::Value>,
    pub(crate) retries: u32,
    pub(crate) retry_pause: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) resources: Resources,
    pub(crate) code_version: Option<String>,
    pub(crate) uses_runtime: bool,
    pub(crate) config_keys: Vec<String>,
    pub(crate) always_run: bool,
    pub(crate) output_type: &'static str,
    pub(crate) run: StepFn,
}

impl StepSpec {
    /// The step's id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its one-line description.
    pub fn about(&self) -> &str {
        &self.about
    }
    /// The steps whose outputs it reads, in argument order.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }
    /// The steps it runs after without reading their output.
    pub fn after(&self) -> &[String] {
        &self.after
    }
    /// Its parameters.
    pub fn params(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.params
    }
    /// How many times a failed attempt is retried, and the pause between attempts.
    pub fn retries(&self) -> (u32, Duration) {
        (self.retries, self.retry_pause)
    }
    /// The time limit of one attempt.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Its resource hints.
    pub fn resources(&self) -> Resources {
        self.resources
    }
    /// Its explicit code version; `None` means "the build of the running binary".
    pub fn code_version(&self) -> Option<&str> {
        self.code_version.as_deref()
    }
    /// The Rust type of its output.
    pub fn output_type(&self) -> &'static str {
        self.output_type
    }
    /// Whether it reads the runtime.
    pub fn uses_runtime(&self) -> bool {
        self.uses_runtime
    }
    /// Whether it runs every time, never from the cache.
    pub fn is_always_run(&self) -> bool {
        self.always_run
    }
    /// The config keys it reads.
    pub fn config_keys(&self) -> &[String] {
        &self.config_keys
    }
}

/// A pipeline being defined; see the [module docs](self).
pub struct PipelineBuilder {
    id: Arc<str>,
    about: String,
    steps: Vec<StepSpec>,
    schedule: Option<Schedule>,
    config: Config,
    errors: Vec<Error>,
}

impl PipelineBuilder {
    /// Adds step `id` reading `inputs` and computing its output with `f`.
    pub fn step<I, T, F>(&mut self, id: &str, inputs: I, f: F) -> StepBuilder<'_, T>
    where
        I: Inputs,
        T: Artifact,
        F: Fn(&StepContext, I::Values) -> StepResult<T> + Send + Sync + 'static,
    {
        if let Err(e) = check_id("step", id) {
            self.errors.push(e);
        }
        let mut names = Vec::new();
        for (pipeline, step) in inputs.sources() {
            if *pipeline != *self.id {
                self.errors.push(Error::MissingInput {
                    pipeline: self.id.to_string(),
                    step: id.to_string(),
                    input: format!("{pipeline}.{step}"),
                });
            }
            names.push(step.to_string());
        }
        let step_id = id.to_string();
        let input_names = names.clone();
        let run: StepFn = Arc::new(move |ctx: &StepContext, bytes: &[Bytes]| {
            let values = I::decode(bytes, &step_id, &input_names).map_err(StepFailure::Codec)?;
            let value = f(ctx, values).map_err(|e| StepFailure::Failed(error_chain(&*e)))?;
            codec::encode(&value, &format!("output of step {step_id:?}"))
                .map_err(StepFailure::Codec)
        });
        self.steps.push(StepSpec {
            id: id.to_string(),
            about: String::new(),
            inputs: names,
            after: Vec::new(),
            params: BTreeMap::new(),
            retries: 0,
            retry_pause: Duration::ZERO,
            timeout: None,
            resources: Resources::default(),
            code_version: None,
            uses_runtime: false,
            config_keys: Vec::new(),
            always_run: false,
            output_type: std::any::type_name::<T>(),
            run,
        });
        let index = self.steps.len() - 1;
        StepBuilder {
            builder: self,
            index,
            _type: PhantomData,
        }
    }

    /// A one-line description of the pipeline.
    pub fn about(&mut self, text: &str) -> &mut Self {
        self.about = text.to_string();
        self
    }

    /// When the pipeline should run (a cron expression or `@daily`, ...); an invalid
    /// expression fails [`PipelineBuilder::build`].
    pub fn schedule(&mut self, expr: &str) -> &mut Self {
        match Schedule::parse(expr) {
            Ok(s) => self.schedule = Some(s),
            Err(Error::InvalidSchedule { expr, why, .. }) => {
                self.errors.push(Error::InvalidSchedule {
                    expr,
                    why,
                    pipeline: self.id.to_string(),
                })
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// The first runtime the schedule applies from, as `YYYY-MM-DD[ HH:MM:SS]`.
    pub fn start(&mut self, runtime: &str) -> &mut Self {
        match (runtime.parse(), self.schedule.take()) {
            (Ok(start), Some(s)) => self.schedule = Some(s.starting(start)),
            (Ok(_), None) => self.errors.push(Error::InvalidSchedule {
                expr: String::new(),
                why: format!("start {runtime:?} given before a schedule"),
                pipeline: self.id.to_string(),
            }),
            (Err(e), s) => {
                self.schedule = s;
                self.errors.push(e)
            }
        }
        self
    }

    /// The configuration per environment.
    pub fn config(&mut self, config: Config) -> &mut Self {
        self.config = config;
        self
    }

    /// Checks the definition (ids, missing inputs, cycles, schedule) and returns the
    /// pipeline.
    pub fn build(mut self) -> Result<Pipeline> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        let nodes: Vec<dag::Node<'_>> = self
            .steps
            .iter()
            .map(|s| dag::Node {
                id: &s.id,
                inputs: &s.inputs,
                after: &s.after,
            })
            .collect();
        let graph = dag::check(&self.id, &nodes)?;
        drop(nodes);
        Ok(Pipeline {
            id: self.id.to_string(),
            about: self.about,
            steps: self.steps,
            graph,
            schedule: self.schedule,
            config: self.config,
        })
    }
}

/// Sets the options of the step just added; [`StepBuilder::output`] ends it with a
/// typed handle to its output.
pub struct StepBuilder<'a, T> {
    builder: &'a mut PipelineBuilder,
    index: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T> StepBuilder<'_, T> {
    fn spec(&mut self) -> &mut StepSpec {
        &mut self.builder.steps[self.index]
    }

    /// The step's code version: change it when the function's behaviour changes, and
    /// its cached outputs are no longer reused. Without one, the step's cache entries
    /// are tied to the build of the running binary.
    pub fn version(mut self, version: &str) -> Self {
        self.spec().code_version = Some(version.to_string());
        self
    }

    /// The step's code version, derived from the text of its source: what
    /// [`step!`](crate::step) passes, the closure's tokens as `stringify!` prints
    /// them. Any edit to the code (not to its spacing or comments) is a new version.
    pub fn source_version(self, source: &str) -> Self {
        let hash = codec::ContentHash::of(source.as_bytes()).to_hex();
        self.version(&format!("src-{}", &hash[..16]))
    }

    /// A one-line description.
    pub fn about(mut self, text: &str) -> Self {
        self.spec().about = text.to_string();
        self
    }

    /// A parameter, read by the step with [`StepContext::param`]; part of its cache key.
    pub fn param(mut self, name: &str, value: impl Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(v) => {
                self.spec().params.insert(name.to_string(), v);
            }
            Err(source) => {
                let step = self.spec().id.clone();
                self.builder.errors.push(Error::Param {
                    step,
                    name: name.to_string(),
                    source,
                });
            }
        }
        self
    }

    /// Retries a failed attempt up to `count` times, pausing `pause` between attempts.
    pub fn retries(mut self, count: u32, pause: Duration) -> Self {
        let spec = self.spec();
        spec.retries = count;
        spec.retry_pause = pause;
        self
    }

    /// Fails an attempt that runs longer than `limit` (the attempt's thread is left to
    /// finish on its own; its result is discarded).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.spec().timeout = Some(limit);
        self
    }

    /// CPU cores the step keeps busy.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.spec().resources.cpus = cpus.max(1);
        self
    }

    /// Memory the step needs, in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.spec().resources.memory_mib = Some(mib);
        self
    }

    /// Runs after step `step_id` without reading its output.
    pub fn after_id(mut self, step_id: &str) -> Self {
        self.spec().after.push(step_id.to_string());
        self
    }

    /// Runs after the step producing `output` without reading it.
    pub fn after<U>(self, output: &Output<U>) -> Self {
        let id = output.step.to_string();
        self.after_id(&id)
    }

    /// Declares that the step reads the runtime: it becomes part of its cache key.
    pub fn uses_runtime(mut self) -> Self {
        self.spec().uses_runtime = true;
        self
    }

    /// Declares the config keys the step reads: their values become part of its cache key.
    pub fn uses_config(mut self, keys: &[&str]) -> Self {
        let spec = self.spec();
        spec.config_keys.extend(keys.iter().map(|k| k.to_string()));
        spec.config_keys.sort();
        spec.config_keys.dedup();
        self
    }

    /// Runs the step every time, never from the cache: for steps that read the outside
    /// world (a file, a table, an API) whose content their key cannot know. Steps
    /// downstream are still cached by the content of what it returns.
    pub fn always_run(mut self) -> Self {
        self.spec().always_run = true;
        self
    }

    /// The typed handle to this step's output.
    pub fn output(self) -> Output<T> {
        Output {
            pipeline: self.builder.id.clone(),
            step: Arc::from(self.builder.steps[self.index].id.as_str()),
            _type: PhantomData,
        }
    }
}

/// A checked pipeline: its steps, their graph, schedule and configuration.
#[derive(Clone)]
pub struct Pipeline {
    id: String,
    about: String,
    steps: Vec<StepSpec>,
    graph: Graph,
    schedule: Option<Schedule>,
    config: Config,
}

impl Pipeline {
    /// Starts defining pipeline `id` (`[A-Za-z0-9_-]`).
    pub fn builder(id: &str) -> PipelineBuilder {
        let mut errors = Vec::new();
        if let Err(e) = check_id("pipeline", id) {
            errors.push(e);
        }
        PipelineBuilder {
            id: Arc::from(id),
            about: String::new(),
            steps: Vec::new(),
            schedule: None,
            config: Config::default(),
            errors,
        }
    }

    /// The pipeline's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its one-line description.
    pub fn about(&self) -> &str {
        &self.about
    }

    /// Its steps, in definition order.
    pub fn steps(&self) -> &[StepSpec] {
        &self.steps
    }

    /// The same pipeline with parameters set from outside (`riffle run --workflow ID
    /// -P name=value`): `name` sets that parameter of every step that declares it,
    /// `step.name` only that step's. A value is read as JSON (`3`, `true`, `[1,2]`,
    /// `"text"`), else taken as text. A name no step declares is refused, so a typo
    /// is not silently ignored. The new values are part of the steps' cache keys.
    ///
    /// ```
    /// use riffle_pipeline::Pipeline;
    ///
    /// let mut p = Pipeline::builder("p");
    /// p.step("fit", (), |ctx, ()| Ok(ctx.param::<u32>("min_days")?)).param("min_days", 3);
    /// let p = p.build()?;
    /// let set = p.with_params(&[("min_days".into(), "5".into())])?;
    /// assert_eq!(set.step("fit")?.params()["min_days"], 5);
    /// assert!(p.with_params(&[("min_dasy".into(), "5".into())]).is_err());
    /// # Ok::<(), riffle_pipeline::Error>(())
    /// ```
    pub fn with_params(&self, values: &[(String, String)]) -> Result<Pipeline> {
        let mut pipeline = self.clone();
        for (name, text) in values {
            let value = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone()));
            let (step, param) = match name.split_once('.') {
                Some((step, param)) => (Some(step), param),
                None => (None, name.as_str()),
            };
            let mut set = 0;
            for spec in &mut pipeline.steps {
                if step.is_none_or(|s| s == spec.id) && spec.params.contains_key(param) {
                    spec.params.insert(param.to_string(), value.clone());
                    set += 1;
                }
            }
            if set == 0 {
                let known: Vec<String> = self
                    .steps
                    .iter()
                    .flat_map(|s| s.params.keys().map(move |k| format!("{}.{k}", s.id)))
                    .collect();
                return Err(Error::UnknownParam {
                    pipeline: self.id.clone(),
                    name: name.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        Ok(pipeline)
    }

    /// The step ids, in definition order.
    pub fn step_ids(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.id.as_str())
    }

    /// A step by id.
    pub fn step(&self, id: &str) -> Result<&StepSpec> {
        self.graph
            .index
            .get(id)
            .map(|&i| &self.steps[i])
            .ok_or_else(|| Error::UnknownStep {
                pipeline: self.id.clone(),
                step: id.to_string(),
            })
    }

    /// The schedule, if any.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The configuration per environment.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("id", &self.id)
            .field("steps", &self.step_ids().collect::<Vec<_>>())
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// An error and its causes, as one line.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Adds a step whose code version is derived from the source of its function:
/// `step!(builder, id, inputs, closure)` is `builder.step(id, inputs, closure)`
/// with [`StepBuilder::source_version`] of the closure's tokens, so editing the
/// closure's code invalidates its cached outputs (and, by content, those of the steps
/// after it whose inputs change) with no version to bump by hand.
///
/// The macro sees only the tokens it is given, so it takes a closure written in
/// place and refuses anything else at compile time: for a named function it would
/// hash the function's name, and an edit to its body would go on reusing stale
/// cached outputs. Give a named function an explicit [`StepBuilder::version`] (and
/// bump it when the function changes); the same goes for a closure whose behaviour
/// lives in helpers it calls or values it captures.
///
/// ```compile_fail
/// use riffle_pipeline::{Pipeline, StepContext, StepResult, step};
///
/// fn load(_ctx: &StepContext, (): ()) -> StepResult<u32> { Ok(1) }
/// let mut p = Pipeline::builder("named");
/// step!(p, "load", (), load); // error: step! needs the step's code as a closure
/// ```
///
/// ```
/// use riffle_pipeline::{Pipeline, step};
///
/// let mut p = Pipeline::builder("versions");
/// let xs = step!(p, "numbers", (), |_ctx, ()| Ok(vec![1.0_f64, 2.0])).output();
/// step!(p, "mean", &xs, |_ctx, xs: Vec<f64>| Ok(xs.iter().sum::<f64>() / xs.len() as f64));
/// let pipeline = p.build()?;
/// let version = pipeline.step("mean")?.code_version().unwrap().to_string();
/// assert!(version.starts_with("src-"));
///
/// let mut q = Pipeline::builder("versions");
/// let xs = step!(q, "numbers", (), |_ctx, ()| Ok(vec![1.0_f64, 2.0])).output();
/// step!(q, "mean", &xs, |_ctx, xs: Vec<f64>| Ok(xs.iter().sum::<f64>() / (xs.len() as f64).max(1.0)));
/// let edited = q.build()?;
/// assert_ne!(edited.step("mean")?.code_version().unwrap(), version);
/// assert_eq!(edited.step("numbers")?.code_version(), pipeline.step("numbers")?.code_version());
/// # Ok::<(), riffle_pipeline::Error>(())
/// ```
#[macro_export]
macro_rules! step {
    ($builder:expr, $id:expr, $inputs:expr, move | $($rest:tt)+) => {
        $builder
            .step($id, $inputs, move | $($rest)+)
            .source_version(stringify!(move | $($rest)+))
    };
    ($builder:expr, $id:expr, $inputs:expr, | $($rest:tt)+) => {
        $builder
            .step($id, $inputs, | $($rest)+)
            .source_version(stringify!(| $($rest)+))
    };
    ($builder:expr, $id:expr, $inputs:expr, $($function:tt)+) => {
        ::core::compile_error!(concat!(
            "step! needs the step's code as a closure written in place, not `",
            stringify!($($function)+),
            "`: it versions a step by the tokens it is given, so a function's name would ",
            "not change when its body does. Use `.step(id, inputs, ",
            stringify!($($function)+),
            ").version(\"1\")` and bump the version when the function changes."
        ))
    };
}
