//! `riffle bench pipeline`: chains of trivial steps, first and cached runs.
//! (Owned by the pipelines work; being written.)

use super::{BenchArgs, BenchReport};

pub fn run(_app: &crate::App, _args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    anyhow::bail!("the pipeline workload is not available yet")
}
