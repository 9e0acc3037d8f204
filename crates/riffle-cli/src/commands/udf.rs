//! `riffle udf ...`: call a UDF server over Numaflow's protocol, for debugging.
//! (Owned by the UDF work; being written.)

/// `riffle udf call --socket PATH --kind KIND < inputs.jsonl`
#[derive(Debug, clap::Args)]
pub struct UdfArgs {}

pub fn udf(_args: &UdfArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("UDF calls are not available yet")
}
