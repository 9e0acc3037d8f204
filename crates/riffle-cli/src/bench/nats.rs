//! The `connector-nats` workload: NATS JetStream -> map -> NATS JetStream on a real
//! server, against the client's own publish and consume rates on the same server.
//!
//! `riffle bench connector-nats -P servers=nats://HOST:PORT` reads 1,000,000
//! messages of 100 bytes (`--items`, `-P size=`) from a stream whose subjects
//! `{stream}.0` ... `{stream}.3` are the source's 4 partitions (`-P partitions=`),
//! turns each into a record whose message id is its stream position (the
//! exactly-once path; `-P ids=false` publishes without ids), and publishes it to a
//! fresh output stream, every acknowledgement awaited. The time runs from the
//! start of the flow until every record is acknowledged. Two baselines come first,
//! on the same server, each printed as its own line: `connector-nats-publish`
//! fills the input stream with one async-nats client (4096 acknowledgements in
//! flight), and `connector-nats-consume` reads it back through one pull consumer.
//! They say what one client of this server can do on this machine, so the flow's
//! figure reads as a fraction of it (`nats bench` is not packaged for Debian).
//! `-P recovery=1s` runs the flow on a fresh recovery store, snapshotting every
//! second.

use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::nats::admin::{self, StreamSpec};
use riffle_connectors::nats::testing::NatsTarget;
use riffle_connectors::nats::{NatsRecord, NatsSettings, NatsSink, NatsSource};

use super::{BenchArgs, BenchReport, param};

/// Messages per run unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let servers = match param(args, "servers") {
        Some(s) => s.to_string(),
        None => std::env::var("RIFFLE_NATS_URL").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench connector-nats needs -P servers=nats://HOST:PORT (or RIFFLE_NATS_URL)"
            )
        })?,
    };
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let partitions: usize = param(args, "partitions").map_or(Ok(4), str::parse)?;
    let ids: bool = param(args, "ids").map_or(Ok(true), str::parse)?;
    let snapshots = match param(args, "recovery") {
        None | Some("none") => None,
        Some(d) => Some(
            crate::commands::run::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("-P recovery={d}: {e}"))?,
        ),
    };
    let settings = NatsSettings::new(servers).timeout(Duration::from_secs(30));
    let nats = NatsTarget::new(settings.clone());
    let mut reports = Vec::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();

    // Baselines: one client publishing the input, then one consumer reading it.
    let input = format!("riffle-bench-in-{nanos}");
    admin::create_stream(&settings, &StreamSpec::new(&input, [format!("{input}.*")]))?;
    let published = nats.publish_numbered(&input, partitions, items, size);
    let mut report = BenchReport::new("connector-nats-publish", 1, items, published.as_secs_f64());
    report.extra.insert("bytes_per_message".into(), size.into());
    reports.push(report);
    let (read, took) = nats.drain(&input);
    let mut report = BenchReport::new("connector-nats-consume", 1, read, took.as_secs_f64());
    report.extra.insert("bytes_per_message".into(), size.into());
    reports.push(report);

    // The flow.
    let output = format!("riffle-bench-out-{nanos}");
    admin::create_stream(
        &settings,
        &StreamSpec::new(&output, [format!("{output}.*")]),
    )?;
    let flow = Dataflow::new("bench-nats");
    flow.input(
        "in",
        NatsSource::new(settings.clone(), &input)
            .filters((0..partitions.max(1)).map(|i| format!("{input}.{i}")))
            .durable(format!("bench-{nanos}"))
            .tail(false),
    )?
    .map("copy", move |m| {
        let record = NatsRecord::new(m.payload);
        if ids {
            record.id(m.sequence.to_string())
        } else {
            record
        }
    })?
    .output(
        "out",
        NatsSink::new(settings.clone(), format!("{output}.copy")).publishers(partitions),
    )?;
    let mut execution = Execution::new()
        .workers(args.workers)
        .epoch_interval(Duration::from_secs(1));
    let store = match snapshots {
        Some(interval) => {
            let dir = tempfile::Builder::new().prefix("riffle-bench-").tempdir()?;
            RecoveryStore::init(dir.path(), args.workers.max(1))?;
            execution = execution.recovery(Recovery::new(dir.path()).snapshot_interval(interval));
            Some(dir)
        }
        None => None,
    };
    super::reset_peak_rss();
    let started = Instant::now();
    execution.run(&flow)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    let written = nats.count(&output);
    let _ = admin::delete_stream(&settings, &output);
    let _ = admin::delete_stream(&settings, &input);
    let mut report = BenchReport::new("connector-nats", args.workers, items, seconds);
    report.extra.insert("bytes_per_message".into(), size.into());
    report.extra.insert("partitions".into(), partitions.into());
    report.extra.insert("message_ids".into(), ids.into());
    report.extra.insert(
        "recovery".into(),
        snapshots
            .map_or("none".to_string(), |d| {
                format!("every {} ms", d.as_millis())
            })
            .into(),
    );
    report
        .extra
        .insert("output_messages".into(), written.into());
    reports.push(report);
    Ok(reports)
}
