//! `riffle bench udf-map`: a Dataflow calling a map UDF, in-process or over a Unix
//! socket, to measure what the protocol costs.
//!
//! Items `message-<i>` come from a generator, go through an upper-casing map UDF, and
//! are counted by a sink (the checksum `bytes` is the total output length). One report
//! per server variant, chosen with `-P servers=a,b,...` (default: all that can run):
//!
//! - `in-process`: `udf_map` with the UDF in the worker, no socket: the baseline.
//! - `rust-batch`: `udf_call_map` against Riffle's own `BatchMapServer`, started in this
//!   process on a temporary socket (its own runtime thread).
//! - `rust-unary`: the same against Riffle's `MapServer` (unary map).
//! - `pynumaflow`: against a pynumaflow 0.14.0 async map server, started with the
//!   Python given by `-P python=PATH` or `RIFFLE_TEST_PYTHON` (skipped when neither
//!   is set); it gets `-P python_items=N` items (default 50,000).
//!
//! - `pynumaflow-peer`: no Dataflow: pynumaflow's own generated stub drives the same
//!   pynumaflow server from Python, all requests on one stream: the server's own limit.
//!
//! `-P batch=N` sets the client's batch size (default 500). `--items` sets the item
//! count of the other variants (default 1,000,000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use riffle::sinks::{DynamicSink, SinkPartition};
use riffle::sources::GeneratorSource;
use riffle::{Dataflow, Execution, WorkerInfo};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::dataflow::UdfStreamExt;
use riffle_numaflow::server::{BatchMapServer, MapServer};
use riffle_numaflow::udf::{batch_map_fn, map_fn};
use riffle_numaflow::{Datum, HandlerResult, Message};

use super::{BenchArgs, BenchReport, param};

const PYTHON_SERVER: &str = r#"
import sys
from pynumaflow.mapper import MapAsyncServer, Messages, Message

async def handler(keys, datum):
    return Messages(Message(datum.value.upper(), keys=keys))

MapAsyncServer(handler, sock_path=sys.argv[1], server_info_file=sys.argv[2]).start()
"#;

/// The peer measurement: pynumaflow's own stub as the client, all requests on one
/// stream, as fast as the server answers. Prints the seconds taken.
const PYTHON_CLIENT: &str = r#"
import sys, time
import grpc
from google.protobuf import empty_pb2
from pynumaflow.proto.mapper import map_pb2, map_pb2_grpc

sock, n = sys.argv[1], int(sys.argv[2])
channel = grpc.insecure_channel("unix://" + sock, options=[("grpc.default_authority", "localhost")])
stub = map_pb2_grpc.MapStub(channel)
while True:
    try:
        if stub.IsReady(empty_pb2.Empty()).ready:
            break
    except grpc.RpcError:
        time.sleep(0.05)

def requests():
    yield map_pb2.MapRequest(handshake=map_pb2.Handshake(sot=True))
    for i in range(n):
        yield map_pb2.MapRequest(id=str(i), request=map_pb2.MapRequest.Request(value=b"message-%d" % i))

start = time.perf_counter()
got = sum(1 for r in stub.MapFn(requests()) if r.id)
elapsed = time.perf_counter() - start
assert got == n, (got, n)
print(elapsed)
"#;

fn upper(d: Datum) -> HandlerResult<Vec<Message>> {
    Ok(vec![Message::new(d.value.to_ascii_uppercase())])
}

fn number(args: &BenchArgs, name: &str, default: u64) -> anyhow::Result<u64> {
    match param(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .with_context(|| format!("-P {name}={v} is not a whole number")),
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let items = args.items.unwrap_or(1_000_000);
    let batch = number(args, "batch", 500)?.max(1) as usize;
    let python_items = number(args, "python_items", 50_000)?;
    let python = param(args, "python")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("RIFFLE_TEST_PYTHON").map(PathBuf::from));
    let servers: Vec<String> = match param(args, "servers") {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => {
            let mut all = vec![
                "in-process".to_string(),
                "rust-batch".to_string(),
                "rust-unary".to_string(),
            ];
            if python.is_some() {
                all.push("pynumaflow".to_string());
                all.push("pynumaflow-peer".to_string());
            }
            all
        }
    };
    let dir = ScratchDir::new()?;
    let mut reports = Vec::new();
    for server in &servers {
        let report = match server.as_str() {
            "in-process" => measure(args, server, items, batch, |flow| {
                Ok(flow.udf_map("upper", map_fn(upper))?)
            })?,
            "rust-batch" | "rust-unary" => {
                let socket = dir.path().join(format!("{server}.sock"));
                let batch_server = server == "rust-batch";
                let _running = RustServer::start(&socket, move |socket, shutdown| async move {
                    if batch_server {
                        let udf = batch_map_fn(|batch: Vec<Datum>| {
                            Ok(batch
                                .into_iter()
                                .map(|d| upper(d).unwrap_or_default())
                                .collect())
                        });
                        BatchMapServer::new(udf)
                            .with_socket(&socket)
                            .serve_with_shutdown(shutdown)
                            .await
                    } else {
                        MapServer::new(map_fn(upper))
                            .with_socket(&socket)
                            .serve_with_shutdown(shutdown)
                            .await
                    }
                })?;
                let options = ClientOptions::new(&socket);
                measure(args, server, items, batch, move |flow| {
                    Ok(flow.udf_call_map("upper", options.clone(), batch)?)
                })?
            }
            "pynumaflow" => {
                let Some(python) = &python else {
                    anyhow::bail!(
                        "-P servers=pynumaflow needs -P python=PATH (a Python with pynumaflow 0.14.0) or RIFFLE_TEST_PYTHON"
                    );
                };
                let socket = dir.path().join("py.sock");
                let info = dir.path().join("py-server-info");
                let _running =
                    PyServer::start(python, dir.path(), "map.py", PYTHON_SERVER, &socket, &info)?;
                let options = ClientOptions::new(&socket).with_server_info_file(&info);
                measure(args, server, python_items, batch, move |flow| {
                    Ok(flow.udf_call_map("upper", options.clone(), batch)?)
                })?
            }
            "pynumaflow-peer" => {
                let Some(python) = &python else {
                    anyhow::bail!(
                        "-P servers=pynumaflow-peer needs -P python=PATH or RIFFLE_TEST_PYTHON"
                    );
                };
                let socket = dir.path().join("peer.sock");
                let info = dir.path().join("peer-server-info");
                let _running =
                    PyServer::start(python, dir.path(), "map.py", PYTHON_SERVER, &socket, &info)?;
                let script = dir.path().join("bench_map_client.py");
                std::fs::write(&script, PYTHON_CLIENT)
                    .context("cannot write the Python client script")?;
                let out = Command::new(python)
                    .arg(&script)
                    .arg(&socket)
                    .arg(python_items.to_string())
                    .output()
                    .context("cannot run the Python client")?;
                anyhow::ensure!(
                    out.status.success(),
                    "the Python client failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let seconds: f64 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .context("the Python client printed no time")?;
                let mut report = BenchReport::new("udf-map", 1, python_items, seconds);
                report
                    .extra
                    .insert("server".into(), serde_json::json!("pynumaflow-peer"));
                report
                    .extra
                    .insert("client".into(), serde_json::json!("pynumaflow-stub"));
                report
            }
            other => anyhow::bail!(
                "unknown server {other:?}; the servers are in-process, rust-batch, rust-unary, pynumaflow, pynumaflow-peer"
            ),
        };
        reports.push(report);
    }
    if let Some(base) = reports
        .iter()
        .find(|r| r.extra.get("server").and_then(|v| v.as_str()) == Some("in-process"))
        .map(|r| r.items_per_s)
    {
        for r in &mut reports {
            if r.items_per_s > 0.0 {
                r.extra.insert(
                    "vs_in_process".into(),
                    serde_json::json!((base / r.items_per_s * 100.0).round() / 100.0),
                );
            }
        }
    }
    Ok(reports)
}

type Stage = dyn Fn(&riffle::Stream<Datum>) -> anyhow::Result<riffle::Stream<Message>>;

fn measure(
    args: &BenchArgs,
    server: &str,
    items: u64,
    batch: usize,
    stage: impl Fn(&riffle::Stream<Datum>) -> anyhow::Result<riffle::Stream<Message>> + 'static,
) -> anyhow::Result<BenchReport> {
    let stage: Box<Stage> = Box::new(stage);
    let flow = Dataflow::new("bench-udf-map");
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let datums = flow.input_dynamic(
        "numbers",
        GeneratorSource::new(items, |i| Datum::new(format!("message-{i}"))),
    )?;
    stage(&datums)?.output_dynamic(
        "count",
        CountSink {
            count: count.clone(),
            sum: bytes.clone(),
            weigh: |m| m.value.len() as u64,
        },
    )?;
    super::reset_peak_rss();
    let start = Instant::now();
    Execution::new()
        .workers(args.workers.max(1))
        .run(&flow)
        .with_context(|| format!("udf-map against {server}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let counted = count.load(Ordering::Relaxed);
    anyhow::ensure!(
        counted == items,
        "udf-map against {server}: {counted} of {items} items came out"
    );
    let mut report = BenchReport::new("udf-map", args.workers.max(1), items, seconds);
    report
        .extra
        .insert("server".into(), serde_json::json!(server));
    report
        .extra
        .insert("batch".into(), serde_json::json!(batch));
    report.extra.insert(
        "bytes".into(),
        serde_json::json!(bytes.load(Ordering::Relaxed)),
    );
    let client = if server == "in-process" {
        "none"
    } else {
        "riffle-dataflow"
    };
    report
        .extra
        .insert("client".into(), serde_json::json!(client));
    Ok(report)
}

/// Counts the messages that reach it, and adds up `weigh` of each.
pub(super) struct CountSink {
    pub(super) count: Arc<AtomicU64>,
    pub(super) sum: Arc<AtomicU64>,
    pub(super) weigh: fn(&Message) -> u64,
}

impl DynamicSink for CountSink {
    type Item = Message;
    type Partition = CountSink;

    fn build(&self, _step_id: &str, _worker: WorkerInfo) -> riffle::Result<CountSink> {
        Ok(CountSink {
            count: self.count.clone(),
            sum: self.sum.clone(),
            weigh: self.weigh,
        })
    }
}

impl SinkPartition for CountSink {
    type Item = Message;
    type State = ();

    fn write_batch(&mut self, items: Vec<Message>) -> riffle::Result<()> {
        self.count.fetch_add(items.len() as u64, Ordering::Relaxed);
        self.sum.fetch_add(
            items.iter().map(|m| (self.weigh)(m)).sum(),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

/// What a Riffle UDF server in a bench waits on to stop.
pub(super) type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A Riffle UDF server on its own thread and runtime, stopped when dropped.
pub(super) struct RustServer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RustServer {
    /// Runs `serve(socket, shutdown)` (a server's `serve_with_shutdown`) and waits
    /// until the socket exists.
    pub(super) fn start<F, Fut>(socket: &Path, serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(PathBuf, Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = riffle_numaflow::Result<()>>,
    {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let socket = socket.to_path_buf();
        let ready = socket.clone();
        let thread = std::thread::spawn(move || {
            let shutdown: Shutdown = Box::pin(async move {
                while stopped.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                    riffle_numaflow::runtime::sleep(Duration::from_millis(20)).await;
                }
            });
            if let Err(e) = riffle_numaflow::runtime::block_on(serve(socket, shutdown)) {
                eprintln!("bench server failed: {e}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bench server did not bind {}",
                ready.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A pynumaflow server process, killed when dropped.
pub(super) struct PyServer {
    child: Child,
}

impl PyServer {
    /// Runs `script` (Python source, given the socket and the server-info file as its
    /// arguments), written as `dir/name`.
    pub(super) fn start(
        python: &Path,
        dir: &Path,
        name: &str,
        script: &str,
        socket: &Path,
        info: &Path,
    ) -> anyhow::Result<Self> {
        let path = dir.join(name);
        std::fs::write(&path, script).context("cannot write the pynumaflow server script")?;
        let script = path;
        let child = Command::new(python)
            .arg(&script)
            .arg(socket)
            .arg(info)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (a Python with pynumaflow 0.14.0)",
                    python.display()
                )
            })?;
        Ok(Self { child })
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder for the sockets of one bench run, removed afterwards.
pub(super) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(super) fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("riffle-bench-udf-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
