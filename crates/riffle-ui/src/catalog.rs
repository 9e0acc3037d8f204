//! What the project's binary registered: pipeline definitions and dataflow graphs.
//!
//! The metadata store knows what ran; it does not know the steps a pipeline would run,
//! nor its `after` dependencies (which carry no data, so leave no lineage), nor the
//! dataflows, which never touch it. The binary that starts the dashboard knows them,
//! and hands them over as plain data in a [`Catalog`]: no code of the project is ever
//! called by a request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A registered pipeline as the dashboard shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineDefinition {
    pub id: String,
    pub about: String,
    /// The schedule expression (`@daily`, a cron line), if any.
    pub schedule: Option<String>,
    pub steps: Vec<StepDefinition>,
}

/// One step of a registered pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepDefinition {
    pub id: String,
    pub about: String,
    /// The steps whose outputs it reads.
    pub inputs: Vec<String>,
    /// The steps it runs after without reading them.
    pub after: Vec<String>,
    /// The Rust type of its output.
    pub output_type: String,
}

impl PipelineDefinition {
    /// The definition of `pipeline`.
    ///
    /// ```
    /// use riffle_pipeline::Pipeline;
    /// use riffle_ui::PipelineDefinition;
    ///
    /// let mut p = Pipeline::builder("numbers");
    /// let xs = p.step("load", (), |_ctx, ()| Ok(vec![1_u32, 2])).output();
    /// p.step("sum", &xs, |_ctx, xs: Vec<u32>| Ok(xs.iter().sum::<u32>()));
    /// let definition = PipelineDefinition::from_pipeline(&p.build()?);
    /// assert_eq!(definition.steps[1].inputs, vec!["load".to_string()]);
    /// # Ok::<(), riffle_pipeline::Error>(())
    /// ```
    pub fn from_pipeline(pipeline: &riffle_pipeline::Pipeline) -> Self {
        Self {
            id: pipeline.id().to_string(),
            about: pipeline.about().to_string(),
            schedule: pipeline.schedule().map(|s| s.expr().to_string()),
            steps: pipeline
                .steps()
                .iter()
                .map(|s| StepDefinition {
                    id: s.id().to_string(),
                    about: s.about().to_string(),
                    inputs: s.inputs().to_vec(),
                    after: s.after().to_vec(),
                    output_type: s.output_type().to_string(),
                })
                .collect(),
        }
    }
}

/// A registered dataflow: its name, one line about it, and its graph.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataflowEntry {
    pub name: String,
    pub about: String,
    /// The graph `Dataflow::describe()` returned, as JSON (`name`, and `steps` with
    /// `step_id`, `kind`, `upstreams` and `outputs`), or `None` when it could not be
    /// built without parameters.
    pub description: Option<serde_json::Value>,
    /// Why the graph is missing.
    pub error: Option<String>,
}

/// Everything registered with the binary that serves the dashboard.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pipelines: BTreeMap<String, PipelineDefinition>,
    dataflows: BTreeMap<String, DataflowEntry>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pipeline definition.
    pub fn pipeline(mut self, definition: PipelineDefinition) -> Self {
        self.pipelines.insert(definition.id.clone(), definition);
        self
    }

    /// Adds a dataflow.
    pub fn dataflow(mut self, entry: DataflowEntry) -> Self {
        self.dataflows.insert(entry.name.clone(), entry);
        self
    }

    /// The registered pipelines, by id.
    pub fn pipelines(&self) -> impl Iterator<Item = &PipelineDefinition> {
        self.pipelines.values()
    }

    /// A registered pipeline by id.
    pub fn pipeline_definition(&self, id: &str) -> Option<&PipelineDefinition> {
        self.pipelines.get(id)
    }

    /// The registered dataflows, by name.
    pub fn dataflows(&self) -> impl Iterator<Item = &DataflowEntry> {
        self.dataflows.values()
    }

    /// A registered dataflow by name.
    pub fn dataflow_entry(&self, name: &str) -> Option<&DataflowEntry> {
        self.dataflows.get(name)
    }
}
