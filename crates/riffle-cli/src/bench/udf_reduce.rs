//! `riffle bench udf-reduce`: a Dataflow calling a reduce UDF server over its socket,
//! to measure what sharing one `ReduceFn` stream among a window's keys saves.
//!
//! `--items` datums (default 200,000) over `-P keys=K` keys (default 1,000) fall in
//! `-P windows=W` tumbling windows of one second (default 20) by event time; the
//! reducer answers each key's window with its datum count, and the run checks that
//! every key's windows add up to every datum. One report per server and per
//! `-P keys-per-stream=a,b` setting (default `1000,1`: a window's keys sharing a
//! stream, then one stream per key and window, as before streams were shared):
//!
//! - `rust`: Riffle's own `ReduceServer`, in this process on its own runtime thread.
//! - `pynumaflow`: a pynumaflow 0.14.0 `ReduceAsyncServer`, started with the Python
//!   of `-P python=PATH` or `RIFFLE_TEST_PYTHON` (skipped when neither is set).
//!
//! `-P servers=rust,pynumaflow` picks servers. Each report says `min_streams`, the
//! fewest `ReduceFn` streams the run can open (windows x ceil(keys /
//! keys-per-stream); more when a window's keys close in several batches).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use riffle::sources::GeneratorSource;
use riffle::window::TumblingWindower;
use riffle::{Dataflow, Execution};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::{UdfStreamExt, event_time};
use riffle_numaflow::server::ReduceServer;
use riffle_numaflow::udf::reduce_fn;
use riffle_numaflow::{Datum, Message, Window};

use super::udf::{CountSink, PyServer, RustServer, ScratchDir};
use super::{BenchArgs, BenchReport, param};

const PYTHON_SERVER: &str = r#"
import sys
from pynumaflow.reducer import Messages, Message, ReduceAsyncServer

async def handler(keys, datums, md):
    n = 0
    async for _ in datums:
        n += 1
    return Messages(Message(str(n).encode(), keys=keys))

ReduceAsyncServer(handler, sock_path=sys.argv[1], server_info_file=sys.argv[2]).start()
"#;

fn number(args: &BenchArgs, name: &str, default: u64) -> anyhow::Result<u64> {
    match param(args, name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("-P {name}={v}: not a whole number")),
        None => Ok(default),
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(200_000);
    let keys = number(args, "keys", 1_000)?.max(1);
    let windows = number(args, "windows", 20)?.max(1);
    let shares: Vec<usize> = param(args, "keys-per-stream")
        .unwrap_or("1000,1")
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .with_context(|| format!("-P keys-per-stream: {v:?} is not a whole number"))
        })
        .collect::<anyhow::Result<_>>()?;
    let python = param(args, "python")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("RIFFLE_TEST_PYTHON").map(PathBuf::from));
    let servers: Vec<String> = match param(args, "servers") {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None if python.is_some() => vec!["rust".into(), "pynumaflow".into()],
        None => vec!["rust".into()],
    };
    let dir = ScratchDir::new()?;
    let mut reports = Vec::new();
    for server in &servers {
        let socket = dir.path().join(format!("{server}.sock"));
        let info = dir.path().join(format!("{server}-server-info"));
        let (_rust, _python, options) = match server.as_str() {
            "rust" => {
                let running = RustServer::start(&socket, |socket, shutdown| async move {
                    ReduceServer::new(reduce_fn(count))
                        .with_socket(&socket)
                        .serve_with_shutdown(shutdown)
                        .await
                })?;
                (Some(running), None, ClientOptions::new(&socket))
            }
            "pynumaflow" => {
                let Some(python) = &python else {
                    anyhow::bail!(
                        "-P servers=pynumaflow needs -P python=PATH (a Python with pynumaflow 0.14.0) or RIFFLE_TEST_PYTHON"
                    );
                };
                let running = PyServer::start(
                    python,
                    dir.path(),
                    "reduce.py",
                    PYTHON_SERVER,
                    &socket,
                    &info,
                )?;
                let options = ClientOptions::new(&socket).with_server_info_file(&info);
                (None, Some(running), options)
            }
            other => anyhow::bail!("unknown server {other:?}; the servers are rust, pynumaflow"),
        };
        for &share in &shares {
            let options = options.clone().with_keys_per_stream(share);
            reports.push(measure(args, server, items, keys, windows, options)?);
        }
    }
    Ok(reports)
}

/// The reducer of the `rust` server: each key's window becomes its datum count.
fn count(
    keys: &[String],
    _: &Window,
    datums: Vec<Datum>,
) -> riffle_numaflow::HandlerResult<Vec<Message>> {
    Ok(vec![
        Message::new(datums.len().to_string()).with_keys(keys.to_vec()),
    ])
}

fn measure(
    args: &BenchArgs,
    server: &str,
    items: u64,
    keys: u64,
    windows: u64,
    options: ClientOptions,
) -> anyhow::Result<BenchReport> {
    let share = options.keys_per_stream;
    let span_ms = windows * 1_000;
    let flow = Dataflow::new("bench-udf-reduce");
    let results = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let source = GeneratorSource::new(items, move |i| {
        Datum::new("x")
            .with_keys([format!("k{}", i % keys)])
            .with_event_time(UNIX_EPOCH + Duration::from_millis(i * span_ms / items.max(1)))
    });
    flow.input_dynamic("datums", source)?
        .udf_call_reduce(
            "count",
            event_time(Duration::from_secs(3600)),
            TumblingWindower::new(Duration::from_secs(1), 0),
            options,
        )?
        .down
        .output_dynamic(
            "results",
            CountSink {
                count: results.clone(),
                sum: counted.clone(),
                // Each result is its key's window's datum count.
                weigh: |m| {
                    std::str::from_utf8(&m.value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                },
            },
        )?;
    super::reset_peak_rss();
    let start = Instant::now();
    Execution::new()
        .workers(args.workers.max(1))
        .run(&flow)
        .with_context(|| format!("udf-reduce against {server}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let counted = counted.load(Ordering::Relaxed);
    anyhow::ensure!(
        counted == items,
        "udf-reduce against {server}: the windows counted {counted} of {items} datums"
    );
    let streams = windows * keys.div_ceil(share as u64);
    let mut report = BenchReport::new("udf-reduce", args.workers.max(1), items, seconds);
    for (name, value) in [
        ("server", serde_json::json!(server)),
        ("keys", serde_json::json!(keys)),
        ("windows", serde_json::json!(windows)),
        ("keys_per_stream", serde_json::json!(share)),
        ("min_streams", serde_json::json!(streams)),
        (
            "results",
            serde_json::json!(results.load(Ordering::Relaxed)),
        ),
    ] {
        report.extra.insert(name.into(), value);
    }
    Ok(report)
}
