//! The Flow workloads: `flow-http` (a service endpoint and a collector driven by
//! `wrk`) and `flow-consume` (Kafka -> a function -> Kafka through a consumer).
//!
//! **`riffle bench flow-http`** starts a [`Flow`] in this process on
//! 127.0.0.1 (a port of its own) with two HTTP processors:
//! - phase `endpoint`: `POST /quote` of service `bench`, a typed request
//!   `{"sku": "A-1", "quantity": 3, "unit_price": 2.5}` answered with a typed
//!   response `{"sku": "A-1", "total": 7.5}`;
//! - phase `collector`: `POST /readings`, a typed `{"sensor": "s-1", "value": 21.5}`
//!   written to an in-memory sink ([`TestingSink`]) through the flow's
//!   `SinkWriter`, answered once the sink has it.
//!
//! Each route is driven by `wrk` (Debian's package; `RIFFLE_BENCH_WRK` names
//! another binary) for `-P seconds=N` (default 10) after a one-second warm-up,
//! with `-P connections=N` (default 64) over `-P threads=N` (default 2) of wrk's
//! threads, a Lua script setting the POST body, and `--latency`. wrk's own
//! figures are reported: `items` = requests completed, `items_per_s` = its
//! requests/s, `p50_ms` and `p99_ms` from its latency distribution, `non_2xx`
//! and `socket_errors` (a run with either is not a clean run). wrk runs on the
//! same cores as the flow. The flow's HTTP runtime has `--workers` threads
//! (`RunOptions::http_threads`; `bench/flow.sh` gives it one per core).
//! `bench/flow.sh` runs the same endpoint in FastAPI on uvicorn with the same wrk
//! command (`bench/flow_peer.py`).
//!
//! **`riffle bench flow-consume -P brokers=HOST:PORT`** runs a consumer
//! (`KafkaSource` -> copy key and value -> `KafkaSink`, at-least-once) with
//! `--workers` replicas, in up to three phases:
//! - `throughput`: 1,000,000 records of 100 bytes (`--items`, `-P size=`) waiting
//!   in a topic of 4 partitions (`-P partitions=`; filled once and reused, not
//!   timed) are read to the end with a fresh consumer group into a fresh output
//!   topic; the clock runs from the start of the flow until every record is
//!   written and acknowledged.
//! - `latency`: a fresh topic pair; with the flow running, this process produces
//!   `-P latency_items=N` records (default 10,000) at `-P rate=N` records/s
//!   (default 1,000), each value starting with its send time (microseconds since
//!   the Unix epoch), and reads the output topic; a record's latency runs from
//!   its send to the moment it is read back from the output topic (one clock:
//!   both ends are this process). 1,000 records first warm the path up and are
//!   not counted. Reports `p50_ms`, `p99_ms`, `max_ms`; `items_per_s` is what
//!   arrived over the time from the first send to the last arrival. The reader
//!   takes `-P isolation=read_committed` (as the flow's own source reads; default
//!   `read_uncommitted`) and `-P fetch_wait_ms=N` (its `fetch.wait.max.ms`,
//!   default 5); `-P source.NAME=VALUE` sets librdkafka property NAME on the
//!   consumer's source only.
//! - `roundtrip`: the same producer and reader on one fresh topic, no flow between
//!   (workload `kafka-roundtrip`): the broker's own latency on this machine, the
//!   floor under the `latency` phase.
//!
//! `-P phases=throughput,latency,roundtrip` (the default) chooses the phases.

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use riffle::sinks::TestingSink;
use riffle_connectors::kafka::{
    KafkaMessage, KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, StartOffset, admin,
};
use riffle_flow::{Flow, HttpError, Method, RunOptions};

use super::kafka::{fill, records_in};
use serde::{Deserialize, Serialize};

use super::{BenchArgs, BenchReport, param};

/// The endpoint's request: what a client posts to `/quote`.
#[derive(Debug, Clone, Deserialize, riffle_flow::schemars::JsonSchema)]
#[schemars(crate = "riffle_flow::schemars")]
struct QuoteRequest {
    sku: String,
    quantity: u32,
    unit_price: f64,
}

/// The endpoint's response.
#[derive(Debug, Clone, Serialize, riffle_flow::schemars::JsonSchema)]
#[schemars(crate = "riffle_flow::schemars")]
struct Quote {
    sku: String,
    total: f64,
}

/// The collector's request and the item it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

/// The body wrk posts to the endpoint (the FastAPI peer posts the same).
const QUOTE_BODY: &str = r#"{"sku":"A-1","quantity":3,"unit_price":2.5}"#;
/// The body wrk posts to the collector.
const READING_BODY: &str = r#"{"sensor":"s-1","value":21.5}"#;

/// How wrk drives a route.
struct Drive {
    wrk: String,
    seconds: u64,
    connections: u64,
    threads: u64,
    /// The flow's HTTP runtime threads (`--workers`).
    runtime_threads: usize,
}

/// The benchmark of HTTP processors; see the [module docs](self).
pub fn run_http(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let drive = Drive {
        wrk: std::env::var("RIFFLE_BENCH_WRK").unwrap_or_else(|_| "wrk".to_string()),
        seconds: parsed(args, "seconds", 10)?,
        connections: parsed(args, "connections", 64)?,
        threads: parsed(args, "threads", 2)?,
        runtime_threads: args.workers,
    };
    let routes = param(args, "routes").unwrap_or("endpoint,collector");

    let mut flow = Flow::new("bench-http");
    flow.service("bench")?
        .endpoint("/quote", Method::POST, |q: QuoteRequest| async move {
            Ok::<_, HttpError>(Quote {
                total: f64::from(q.quantity) * q.unit_price,
                sku: q.sku,
            })
        })?;
    let sink: TestingSink<Reading> = TestingSink::new();
    flow.collector("/readings", Method::POST, sink.clone(), |r: Reading| {
        Ok::<_, Infallible>([r])
    })?;
    let running = flow.start(RunOptions {
        addr: "127.0.0.1:0".parse()?,
        http_threads: Some(args.workers),
        ..Default::default()
    })?;
    let mut reports = Vec::new();
    let mut outcome = Ok(());
    for route in routes.split(',').map(str::trim) {
        match drive.route(running.addr(), route, &sink) {
            Ok(report) => reports.push(report),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    running.stop();
    running.wait()?;
    outcome?;
    Ok(reports)
}

impl Drive {
    /// Checks one answer of `route` by hand, warms it up for a second, then drives
    /// it for the run's seconds and reports wrk's figures.
    fn route(
        &self,
        addr: std::net::SocketAddr,
        route: &str,
        sink: &TestingSink<Reading>,
    ) -> anyhow::Result<BenchReport> {
        let (path, body, expected) = match route {
            "endpoint" => ("/quote", QUOTE_BODY, r#""total":7.5"#),
            "collector" => ("/readings", READING_BODY, r#""written":1"#),
            other => anyhow::bail!(
                "-P routes: {other:?} is not a route of flow-http (endpoint, collector)"
            ),
        };
        let answer = post_once(addr, path, body)?;
        anyhow::ensure!(
            answer.starts_with("HTTP/1.1 200") && answer.contains(expected),
            "POST {path} answered, instead of 200 with {expected}: {answer}"
        );
        let script = post_script(body)?;
        let script = script.path().to_str().unwrap_or_default();
        let url = format!("http://{addr}{path}");
        run_wrk(&self.wrk, self.threads, self.connections, 1, script, &url)?; // warm-up
        sink.take();
        super::reset_peak_rss();
        let (figures, command) = run_wrk(
            &self.wrk,
            self.threads,
            self.connections,
            self.seconds,
            script,
            &url,
        )?;
        let mut report = BenchReport::new(
            "flow-http",
            self.runtime_threads,
            figures.requests,
            figures.seconds,
        );
        report.items_per_s = figures.requests_per_s;
        report.phase = Some(route.to_string());
        figures.describe(&mut report);
        let extra = &mut report.extra;
        extra.insert("connections".into(), self.connections.into());
        extra.insert("wrk_threads".into(), self.threads.into());
        extra.insert("wrk_command".into(), command.into());
        if route == "collector" {
            extra.insert("sink_items".into(), (sink.take().len() as u64).into());
        }
        Ok(report)
    }
}

/// POSTs `body` to `path` once and returns the whole answer (status line,
/// headers, body).
fn post_once(addr: std::net::SocketAddr, path: &str, body: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .with_context(|| format!("reading the answer of POST {path} from {addr}"))?;
    Ok(answer)
}

/// A Lua script that makes wrk POST `body` as JSON.
fn post_script(body: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix("riffle-bench-post-")
        .suffix(".lua")
        .tempfile()?;
    writeln!(file, "wrk.method = \"POST\"")?;
    writeln!(file, "wrk.headers[\"Content-Type\"] = \"application/json\"")?;
    writeln!(file, "wrk.body = '{body}'")?;
    file.flush()?;
    Ok(file)
}

/// Runs wrk once and reads its figures; also returns the command line it ran.
fn run_wrk(
    wrk: &str,
    threads: u64,
    connections: u64,
    seconds: u64,
    script: &str,
    url: &str,
) -> anyhow::Result<(WrkFigures, String)> {
    let args = [
        "-t".to_string(),
        threads.to_string(),
        "-c".to_string(),
        connections.to_string(),
        "-d".to_string(),
        format!("{seconds}s"),
        "--latency".to_string(),
        "-s".to_string(),
        script.to_string(),
        url.to_string(),
    ];
    let command = format!("{wrk} {}", args.join(" "));
    let output = Command::new(wrk).args(&args).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {wrk:?} ({e}): install Debian's wrk (`apt-get install wrk`) or name \
             one with RIFFLE_BENCH_WRK"
        )
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "`{command}` failed ({}): {}{}",
        output.status,
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = WrkFigures::parse(&text).with_context(|| format!("the output of `{command}`"))?;
    Ok((figures, command))
}

/// What wrk printed, as numbers.
#[derive(Debug, Clone, PartialEq)]
struct WrkFigures {
    requests: u64,
    seconds: f64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
}

impl WrkFigures {
    /// Reads wrk's report (run with `--latency`).
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut requests = None;
        let mut requests_per_s = None;
        let mut p50_ms = None;
        let mut p99_ms = None;
        let mut non_2xx = 0;
        let mut socket_errors = 0;
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["50%", value] => p50_ms = Some(millis(value)?),
                ["99%", value] => p99_ms = Some(millis(value)?),
                [n, "requests", "in", took, ..] => {
                    let took = took.trim_end_matches(',');
                    requests = Some((n.parse::<u64>()?, millis(took)? / 1000.0));
                }
                ["Requests/sec:", value] => requests_per_s = Some(value.parse::<f64>()?),
                ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx = n.parse()?,
                ["Socket", "errors:", rest @ ..] => {
                    socket_errors = rest
                        .iter()
                        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                        .sum();
                }
                _ => {}
            }
        }
        let missing = |what: &str| anyhow::anyhow!("wrk printed no {what}: {text}");
        let (requests, seconds) = requests.ok_or_else(|| missing("`N requests in T` line"))?;
        Ok(Self {
            requests,
            seconds,
            requests_per_s: requests_per_s.ok_or_else(|| missing("Requests/sec"))?,
            p50_ms: p50_ms.ok_or_else(|| missing("50% latency (was --latency given?)"))?,
            p99_ms: p99_ms.ok_or_else(|| missing("99% latency (was --latency given?)"))?,
            non_2xx,
            socket_errors,
        })
    }

    fn describe(&self, report: &mut BenchReport) {
        report.extra.insert("p50_ms".into(), self.p50_ms.into());
        report.extra.insert("p99_ms".into(), self.p99_ms.into());
        report.extra.insert("non_2xx".into(), self.non_2xx.into());
        report
            .extra
            .insert("socket_errors".into(), self.socket_errors.into());
    }
}

/// A wrk duration (`850.00us`, `1.23ms`, `2.00s`, `1.00m`) in milliseconds.
fn millis(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow::anyhow!("{text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        other => anyhow::bail!("{text:?}: unknown unit {other:?}"),
    };
    Ok(number * scale)
}

/// `-P key=N`, or `default`.
pub(super) fn parsed<T: std::str::FromStr>(
    args: &BenchArgs,
    key: &str,
    default: T,
) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match param(args, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e| anyhow::anyhow!("-P {key}={v}: {e}")),
    }
}

/// Records of the throughput phase unless `--items` says otherwise.
const ITEMS: u64 = 1_000_000;
/// Records that warm the latency phase's path before it counts.
const WARM_UP: u64 = 1_000;

/// The benchmark of a Kafka consumer; see the [module docs](self).
pub fn run_consume(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let brokers = match param(args, "brokers") {
        Some(b) => b.to_string(),
        None => std::env::var("RIFFLE_KAFKA_BROKERS").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench flow-consume needs -P brokers=HOST:PORT (or RIFFLE_KAFKA_BROKERS)"
            )
        })?,
    };
    let settings = KafkaSettings::new(brokers);
    let size: usize = parsed(args, "size", 100)?;
    anyhow::ensure!(
        size >= 16,
        "-P size={size}: a record needs at least 16 bytes"
    );
    let partitions: i32 = parsed(args, "partitions", 4)?;
    let phases = param(args, "phases").unwrap_or("throughput,latency,roundtrip");
    let mut reports = Vec::new();
    for phase in phases.split(',').map(str::trim) {
        let report = match phase {
            "throughput" => consume_throughput(args, &settings, size, partitions)?,
            "latency" => consume_latency(args, &settings, size, partitions, true)?,
            "roundtrip" => consume_latency(args, &settings, size, partitions, false)?,
            other => anyhow::bail!(
                "-P phases: {other:?} is not a phase of flow-consume \
                 (throughput, latency, roundtrip)"
            ),
        };
        reports.push(report);
    }
    Ok(reports)
}

/// The consumer under test: copy key and value from `input` to `output`.
/// `-P source.NAME=VALUE` sets librdkafka property NAME of the consumer's source
/// only (`source.fetch.wait.max.ms=10`), to try the source's settings.
fn copy_flow(
    args: &BenchArgs,
    settings: &KafkaSettings,
    input: &str,
    output: &str,
    group: &str,
    tail: bool,
) -> anyhow::Result<Flow> {
    let replicas = args.workers;
    let mut flow = Flow::new("bench-consume");
    let mut source_settings = settings.clone();
    for (key, value) in &args.params {
        if let Some(property) = key.strip_prefix("source.") {
            source_settings = source_settings.property(property, value);
        }
    }
    let source = KafkaSource::new(source_settings, [input])
        .group_id(group)
        .start(StartOffset::Earliest)
        .tail(tail);
    flow.consumer(
        "copy",
        source,
        KafkaSink::new(settings.clone(), output),
        |m: KafkaMessage| {
            Ok::<_, Infallible>(Some(KafkaRecord {
                key: m.key,
                value: m.value,
                headers: Vec::new(),
                timestamp: None,
            }))
        },
    )?
    .replicas(replicas);
    Ok(flow)
}

fn consume_throughput(
    args: &BenchArgs,
    settings: &KafkaSettings,
    size: usize,
    partitions: i32,
) -> anyhow::Result<BenchReport> {
    let items = args.items.unwrap_or(ITEMS);
    let input = format!("riffle-flowbench-{items}x{size}-p{partitions}");
    fill(settings, &input, partitions, items, size)?;
    let id = unique();
    let output = format!("riffle-flowbench-out-{id}");
    admin::create_topic(settings, &output, partitions, 1)?;
    let flow = copy_flow(
        args,
        settings,
        &input,
        &output,
        &format!("riffle-flowbench-{id}"),
        false,
    )?;
    super::reset_peak_rss();
    let started = Instant::now();
    let summary = flow.run(RunOptions {
        addr: "127.0.0.1:0".parse()?,
        ..Default::default()
    });
    let seconds = started.elapsed().as_secs_f64();
    let written = records_in(settings, &output, partitions).unwrap_or(-1);
    let _ = admin::delete_topic(settings, &output);
    let summary = summary?;
    let mut report = BenchReport::new("flow-consume", args.workers, items, seconds);
    report.phase = Some("throughput".into());
    report.extra.insert("bytes_per_record".into(), size.into());
    report.extra.insert("partitions".into(), partitions.into());
    report.extra.insert("replicas".into(), args.workers.into());
    report.extra.insert("output_records".into(), written.into());
    if let Some((_, read, out)) = summary.processors.first() {
        report.extra.insert("consumer_in".into(), (*read).into());
        report.extra.insert("consumer_out".into(), (*out).into());
    }
    Ok(report)
}

/// The latency phase; without `through_flow` the records are read back from the
/// input topic itself, no flow between (the broker's own round trip).
fn consume_latency(
    args: &BenchArgs,
    settings: &KafkaSettings,
    size: usize,
    partitions: i32,
    through_flow: bool,
) -> anyhow::Result<BenchReport> {
    let counted: u64 = parsed(args, "latency_items", 10_000)?;
    let rate: u64 = parsed(args, "rate", 1_000)?;
    let isolation = param(args, "isolation")
        .unwrap_or("read_uncommitted")
        .to_string();
    let fetch_wait: u64 = parsed(args, "fetch_wait_ms", 5)?;
    anyhow::ensure!(rate > 0, "-P rate=0: the latency phase needs a rate");
    let id = unique();
    let input = format!("riffle-flowbench-live-{id}");
    let output = if through_flow {
        format!("riffle-flowbench-liveout-{id}")
    } else {
        input.clone()
    };
    admin::create_topic(settings, &input, partitions, 1)?;
    if through_flow {
        admin::create_topic(settings, &output, partitions, 1)?;
    }
    let cleanup = || {
        let _ = admin::delete_topic(settings, &input);
        if through_flow {
            let _ = admin::delete_topic(settings, &output);
        }
    };
    super::reset_peak_rss();
    let running = if through_flow {
        let group = format!("riffle-flowbench-{id}");
        let started = copy_flow(args, settings, &input, &output, &group, true).and_then(|flow| {
            Ok(flow.start(RunOptions {
                addr: "127.0.0.1:0".parse()?,
                ..Default::default()
            })?)
        });
        match started {
            Ok(r) => Some(r),
            Err(e) => {
                cleanup();
                return Err(e);
            }
        }
    } else {
        None
    };
    let total = WARM_UP + counted;
    let progress = Arc::new(Progress::default());
    let reader = {
        let settings = settings.clone();
        let output = output.clone();
        let progress = progress.clone();
        let isolation = isolation.clone();
        std::thread::spawn(move || {
            read_back(
                &settings, &output, partitions, total, &isolation, fetch_wait, &progress,
            )
        })
    };
    let outcome = produce(settings, &input, partitions, size, counted, rate, &progress);
    if outcome.is_err() {
        progress.give_up.store(true, Ordering::Relaxed);
    }
    let latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the read-back thread panicked"));
    let waited = running.map(|running| {
        running.stop();
        running.wait()
    });
    cleanup();
    let first = outcome?;
    let (mut latencies, last) = latencies??;
    waited.transpose()?;
    let seconds = last.saturating_duration_since(first).as_secs_f64();
    latencies.sort_unstable();
    let arrived = latencies.len() as u64;
    let mut report = if through_flow {
        BenchReport::new("flow-consume", args.workers, arrived, seconds)
    } else {
        // The floor: the same producer and reader, no flow between.
        BenchReport::new("kafka-roundtrip", 1, arrived, seconds)
    };
    report.phase = Some("latency".into());
    report.extra.insert("rate".into(), rate.into());
    report.extra.insert("sent".into(), counted.into());
    report.extra.insert("bytes_per_record".into(), size.into());
    report.extra.insert("partitions".into(), partitions.into());
    if through_flow {
        report.extra.insert("replicas".into(), args.workers.into());
    }
    report
        .extra
        .insert("isolation".into(), isolation.clone().into());
    report
        .extra
        .insert("fetch_wait_ms".into(), fetch_wait.into());
    report
        .extra
        .insert("p50_ms".into(), percentile(&latencies, 0.50).into());
    report
        .extra
        .insert("p99_ms".into(), percentile(&latencies, 0.99).into());
    report.extra.insert(
        "max_ms".into(),
        (latencies.last().copied().unwrap_or(0) as f64 / 1000.0).into(),
    );
    Ok(report)
}

/// How far the read-back is, and whether it should give up.
#[derive(Default)]
struct Progress {
    /// Records read back so far.
    seen: AtomicU64,
    /// Set when the producer failed: nothing more will come.
    give_up: AtomicBool,
}

/// Sends the warm-up records, waits until they came back, then sends `counted`
/// records at `rate` per second, each value starting with its send time (µs) and
/// its number; returns when the first counted one was sent.
fn produce(
    settings: &KafkaSettings,
    input: &str,
    partitions: i32,
    size: usize,
    counted: u64,
    rate: u64,
    progress: &Progress,
) -> anyhow::Result<Instant> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("linger.ms", "1")
        .create()?;
    let mut value = vec![b'x'; size];
    let mut send = |seq: u64| -> anyhow::Result<()> {
        value[..8].copy_from_slice(&now_micros().to_le_bytes());
        value[8..16].copy_from_slice(&seq.to_le_bytes());
        let key = seq.to_le_bytes();
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(input)
            .key(&key[..])
            .payload(&value[..])
            .partition((seq % partitions as u64) as i32);
        producer
            .send(record)
            .map_err(|(e, _)| anyhow::anyhow!("producing to {input}: {e}"))
    };
    // Warm-up: until the consumer and the read-back are moving.
    for seq in 0..WARM_UP {
        send(seq)?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.seen.load(Ordering::Relaxed) < WARM_UP {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the warm-up records sent to {input} did not come back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = Instant::now();
    for i in 0..counted {
        let due = first + Duration::from_secs_f64(i as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        send(WARM_UP + i)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(first)
}

/// Reads `topic` from the start until `total` records came (or 60 s pass with
/// nothing new); returns the latencies (µs) of the records past the warm-up and
/// when the last one came.
fn read_back(
    settings: &KafkaSettings,
    topic: &str,
    partitions: i32,
    total: u64,
    isolation: &str,
    fetch_wait: u64,
    progress: &Progress,
) -> anyhow::Result<(Vec<u64>, Instant)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", format!("riffle-flowbench-reader-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait.to_string())
        .set("isolation.level", isolation)
        .create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut latencies = Vec::with_capacity(total.saturating_sub(WARM_UP) as usize);
    let mut count = 0;
    let mut last = Instant::now();
    while count < total {
        if progress.give_up.load(Ordering::Relaxed) {
            anyhow::bail!("stopped: the producer failed");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let arrived = now_micros();
                last = Instant::now();
                count += 1;
                progress.seen.store(count, Ordering::Relaxed);
                let value = message.payload().unwrap_or_default();
                if value.len() >= 16 {
                    let sent = u64::from_le_bytes(value[..8].try_into()?);
                    let seq = u64::from_le_bytes(value[8..16].try_into()?);
                    if seq >= WARM_UP {
                        latencies.push(arrived.saturating_sub(sent));
                    }
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic} back: {e}"),
            None => anyhow::ensure!(
                last.elapsed() < Duration::from_secs(60),
                "{topic}: {count} of {total} records came back, then nothing for 60 s"
            ),
        }
    }
    Ok((latencies, last))
}

/// The `q` quantile of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn unique() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:40000/quote
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  612.00us  21.06ms   88.12%
    Req/Sec    29.61k     2.05k   35.02k    71.50%
  Latency Distribution
     50%  850.00us
     75%    1.30ms
     90%    1.80ms
     99%    3.21ms
  589312 requests in 10.00s, 70.25MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:  58925.43
Transfer/sec:      7.02MB
";

    #[test]
    fn reads_wrks_report() {
        let f = WrkFigures::parse(WRK).unwrap();
        assert_eq!(f.requests, 589_312);
        assert!((f.seconds - 10.0).abs() < 1e-9);
        assert!((f.requests_per_s - 58_925.43).abs() < 1e-6);
        assert!((f.p50_ms - 0.85).abs() < 1e-9);
        assert!((f.p99_ms - 3.21).abs() < 1e-9);
        assert_eq!(f.non_2xx, 12);
        assert_eq!(f.socket_errors, 3);
    }

    #[test]
    fn a_report_without_latencies_is_an_error_that_says_so() {
        let cut: String = WRK
            .lines()
            .filter(|l| !l.contains('%'))
            .collect::<Vec<_>>()
            .join("\n");
        let e = WrkFigures::parse(&cut).unwrap_err().to_string();
        assert!(e.contains("50% latency"), "{e}");
        assert!(millis("2.5xs").is_err());
        assert_eq!(millis("1.00m").unwrap(), 60_000.0);
    }

    #[test]
    fn percentiles_take_the_rank_at_or_above() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&us, 0.50), 50.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
