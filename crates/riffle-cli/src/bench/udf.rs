//! `riffle bench udf-map`: a dataflow calling a map UDF over a Unix socket.
//! (Owned by the UDF work; being written.)

use super::{BenchArgs, BenchReport};

pub fn run(_args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    anyhow::bail!("the udf-map workload is not available yet")
}
