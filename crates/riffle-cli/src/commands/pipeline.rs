//! Pipeline subcommands: `run --workflow/--job`, `runs`, `cache`, `lineage`.
//! (Owned by the pipelines work; being written.)

/// The pipelines registered with an [`crate::App`].
#[derive(Default)]
pub struct Registry {}

/// `riffle runs ...`
#[derive(Debug, clap::Args)]
pub struct RunsArgs {}

/// `riffle cache ...`
#[derive(Debug, clap::Args)]
pub struct CacheArgs {}

/// `riffle lineage ARTIFACT`
#[derive(Debug, clap::Args)]
pub struct LineageArgs {}

/// The pipeline part of `riffle run`: `--workflow ID` or `--job WORKFLOW.STEP`.
#[derive(Debug, clap::Args, Default)]
pub struct RunPipelineArgs {}

impl RunPipelineArgs {
    /// Whether the user asked to run a pipeline rather than a dataflow.
    pub fn is_requested(&self) -> bool {
        false
    }
}

pub fn run_pipeline(_app: &crate::App, _args: &RunPipelineArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("pipelines are not available yet")
}

pub fn runs(_app: &crate::App, _args: &RunsArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("pipelines are not available yet")
}

pub fn cache(_app: &crate::App, _args: &CacheArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("pipelines are not available yet")
}

pub fn lineage(_app: &crate::App, _args: &LineageArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("pipelines are not available yet")
}
