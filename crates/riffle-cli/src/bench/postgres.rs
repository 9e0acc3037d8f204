//! The `connector-postgres` workload: a generator into a PostgreSQL table, then the
//! table out again, on a real server.
//!
//! `riffle bench connector-postgres -P url=postgres://USER@HOST:PORT/DB` writes
//! 1,000,000 rows `(id bigint, payload text of 100 bytes)` (`--items`, `-P size=`)
//! into a fresh table through [`PostgresSink::upsert`] by `id` (phase `into`,
//! exactly-once by idempotence), the same rows into a second fresh table through
//! [`PostgresSink::append`] with `COPY` (phase `into-copy`), then reads the second
//! table back through [`PostgresSource`] by `id` (phase `out`). Each phase is one
//! report; the time runs from the start of the flow until every row is committed
//! (`into`, `into-copy`) or read (`out`). The tables are dropped after the run.
//!
//! With `-P cdc=true` (the server needs `wal_level = logical`) a publication and a
//! replication slot are made for the second table before it is written, and phase
//! `cdc` then reads the inserts the `COPY` made back as changes through
//! [`PostgresCdc`] (to what was committed when it starts); the slot and the
//! publication are dropped after the run.
//!
//! `bench/postgres.sh` runs it beside `psql`'s own `COPY` of the same rows in and
//! out, and `pg_recvlogical` decoding them through `pgoutput`, as the server's limit.

use std::sync::atomic::Ordering;
use std::time::Instant;

use riffle::sources::PartitionedGenerator;
use riffle::{Dataflow, Execution};
use riffle_connectors::postgres::admin::{self, Column};
use riffle_connectors::postgres::{PostgresCdc, PostgresSettings, PostgresSink, PostgresSource};

use super::{BenchArgs, BenchReport, param};

/// Rows per run unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;

/// One row of the bench's tables.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    id: i64,
    payload: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let url = match param(args, "url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_POSTGRES_URL").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench connector-postgres needs -P url=postgres://USER@HOST:PORT/DB \
                 (or RIFFLE_POSTGRES_URL)"
            )
        })?,
    };
    let items = args.items.unwrap_or(ITEMS);
    let size: usize = param(args, "size").map_or(Ok(100), str::parse)?;
    let cdc: bool = param(args, "cdc").map_or(Ok(false), str::parse)?;
    let settings = PostgresSettings::new(url);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let upserted = format!("riffle_bench_upsert_{nanos}");
    let copied = format!("riffle_bench_copy_{nanos}");
    let columns = [
        Column::new("id", "bigint NOT NULL"),
        Column::new("payload", "text"),
    ];
    let slot = format!("riffle_bench_slot_{nanos}");
    let publication = format!("riffle_bench_pub_{nanos}");
    // Whatever happens from here, the tables (and the slot, which would hold the
    // server's log back) go when the run does.
    let _cleanup = Cleanup {
        settings: settings.clone(),
        tables: vec![upserted.clone(), copied.clone()],
        slot: cdc.then(|| (slot.clone(), publication.clone())),
    };
    admin::create_table(&settings, &upserted, &columns, &["id"])?;
    admin::create_table(&settings, &copied, &columns, &["id"])?;
    if cdc {
        admin::create_publication(&settings, &publication, &[&copied])?;
        admin::create_slot(&settings, &slot)?;
    }
    let payload = "x".repeat(size);
    let write = |phase: &str, sink: PostgresSink<Row>| -> anyhow::Result<f64> {
        let flow = Dataflow::new(format!("bench-postgres-{phase}"));
        let payload = payload.clone();
        flow.input(
            "gen",
            PartitionedGenerator::new(items, 4, move |i| Row {
                id: i as i64,
                payload: payload.clone(),
            }),
        )?
        .output("out", sink)?;
        let started = Instant::now();
        Execution::new().workers(args.workers).run(&flow)?;
        Ok(started.elapsed().as_secs_f64())
    };
    let count = |table: &str| admin::count_rows(&settings, table);
    let mut reports = Vec::new();
    let seconds = write(
        "into",
        PostgresSink::upsert(settings.clone(), &upserted, ["id"]),
    )?;
    let mut into = report(args, "into", items, seconds, size, "exactly-once (upsert)");
    into.extra
        .insert("rows_in_table".into(), count(&upserted)?.into());
    reports.push(into);

    super::reset_peak_rss();
    let seconds = write("into-copy", PostgresSink::append(settings.clone(), &copied))?;
    let mut copy = report(
        args,
        "into-copy",
        items,
        seconds,
        size,
        "at-least-once (COPY)",
    );
    let written = count(&copied)?;
    copy.extra.insert("rows_in_table".into(), written.into());
    reports.push(copy);

    super::reset_peak_rss();
    let read = Dataflow::new("bench-postgres-out");
    let seen = super::count_and_drop(
        &read.input(
            "in",
            PostgresSource::table(settings.clone(), &copied, "id")
                .batch_size(10_000)
                .tail(false),
        )?,
    )?;
    let started = Instant::now();
    Execution::new().workers(args.workers).run(&read)?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = report(args, "out", written, seconds, size, "exact positions");
    out.extra
        .insert("rows_read".into(), seen.load(Ordering::Relaxed).into());
    reports.push(out);

    if cdc {
        super::reset_peak_rss();
        let changes = Dataflow::new("bench-postgres-cdc");
        let seen = super::count_and_drop(&changes.input(
            "in",
            PostgresCdc::new(settings.clone(), &slot, &publication).tail(false),
        )?)?;
        let started = Instant::now();
        Execution::new().workers(args.workers).run(&changes)?;
        let seconds = started.elapsed().as_secs_f64();
        let read = seen.load(Ordering::Relaxed);
        let mut cdc = report(args, "cdc", read, seconds, size, "at-least-once (changes)");
        cdc.extra.insert("changes_read".into(), read.into());
        cdc.extra.insert("rows_written".into(), written.into());
        reports.push(cdc);
    }
    Ok(reports)
}

/// Drops the bench's tables, and its replication slot and publication, when
/// dropped itself.
struct Cleanup {
    settings: PostgresSettings,
    tables: Vec<String>,
    slot: Option<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((slot, publication)) = &self.slot {
            let _ = admin::drop_slot(&self.settings, slot);
            let _ = admin::drop_publication(&self.settings, publication);
        }
        for table in &self.tables {
            let _ = admin::drop_table(&self.settings, table);
        }
    }
}

fn report(
    args: &BenchArgs,
    phase: &str,
    items: u64,
    seconds: f64,
    size: usize,
    delivery: &str,
) -> BenchReport {
    let mut report = BenchReport::new("connector-postgres", args.workers, items, seconds);
    report.phase = Some(phase.to_string());
    report.extra.insert("bytes_per_row".into(), size.into());
    report.extra.insert("delivery".into(), delivery.into());
    report
}
