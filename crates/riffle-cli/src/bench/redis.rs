//! The `connector-redis` workload: a generator into Redis streams, then those
//! streams out again, on a real server.
//!
//! `riffle bench connector-redis -P url=redis://HOST:PORT` first writes 1,000,000
//! entries of 100 bytes (`--items`, `-P size=`) into 4 fresh streams
//! (`-P streams=`) through [`RedisSink`] (phase `into`), then reads them all back
//! through [`RedisSource`] with a fresh consumer group, acknowledging as it goes
//! (phase `out`). Each phase is one report; the time runs from the start of the
//! flow until every entry is added (`into`) or read and acknowledged (`out`). The
//! streams are deleted after the run. `bench/redis.sh` runs it beside
//! `redis-benchmark`'s own `XADD`, pipelined the same way, as the server's limit.

use std::time::Instant;

use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::redis::{RedisRecord, RedisSettings, RedisSink, RedisSource, admin};

use super::{BenchArgs, BenchReport, param};

/// Entries per run unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let url = match param(args, "url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_REDIS_URL").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench connector-redis needs -P url=redis://HOST:PORT (or RIFFLE_REDIS_URL)"
            )
        })?,
    };
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let count: usize = param(args, "streams").map_or(Ok(4), str::parse)?;
    let settings = RedisSettings::new(url);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let streams: Vec<String> = (0..count.max(1))
        .map(|i| format!("riffle-bench-{nanos}:{i}"))
        .collect();
    let value = vec![b'x'; size];

    let into = Dataflow::new("bench-redis-into");
    into.input(
        "gen",
        PartitionedGenerator::new(items, count as u64, move |i| {
            RedisRecord::new(value.clone()).key(i.to_le_bytes().to_vec())
        }),
    )?
    .output("out", RedisSink::new(settings.clone(), streams.clone()))?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&into)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut written = 0;
    for s in &streams {
        written += admin::length(&settings, s)?;
    }
    let mut reports = vec![report(args, "into", items, seconds, size, count)];
    reports[0]
        .extra
        .insert("entries_in_streams".into(), written.into());

    super::reset_peak_rss();
    let read = Dataflow::new("bench-redis-out");
    let seen = super::count_and_drop(
        &read.input(
            "in",
            RedisSource::new(settings.clone(), streams.clone())
                .group(format!("riffle-bench-{nanos}"))
                .tail(false),
        )?,
    )?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = report(args, "out", written, seconds, size, count);
    out.extra.insert(
        "entries_read".into(),
        seen.load(std::sync::atomic::Ordering::Relaxed).into(),
    );
    reports.push(out);
    for s in &streams {
        let _ = admin::delete_stream(&settings, s);
    }
    Ok(reports)
}

fn report(
    args: &BenchArgs,
    phase: &str,
    items: u64,
    seconds: f64,
    size: usize,
    streams: usize,
) -> BenchReport {
    let mut report = BenchReport::new("connector-redis", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("bytes_per_entry".into(), size.into());
    report.extra.insert("streams".into(), streams.into());
    report
        .extra
        .insert("delivery".into(), "at-least-once".into());
    report
}
