//! pynumaflow 0.14.0's own generated gRPC stubs drive Riffle's Rust servers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use riffle_numaflow::info::ServerInfo;
use riffle_numaflow::server::{
    BatchMapServer, MapServer, MapStreamServer, ReduceServer, ServerMode, SideInputServer,
    SinkServer, SourceServer, SourceTransformServer,
};
use riffle_numaflow::udf::{
    MapStreamer, MessageSender, SideInput, Sourcer, batch_map_fn, map_fn, reduce_fn, sink_fn,
    transform_fn,
};
use riffle_numaflow::{
    Datum, HandlerResult, Message, Offset, ReadRequest, SideInputValue, SinkResponse,
    SourceMessage, TransformMessage,
};

use common::{python, script};

fn drive(python: &Path, kind: &str, socket: &Path) -> Value {
    let out = Command::new(python)
        .arg(script("drive.py"))
        .arg(kind)
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "drive.py {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `serve` (a server's `serve_with_shutdown`) in the background until dropped.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<riffle_numaflow::Result<()>>>,
}

impl Running {
    fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = riffle_numaflow::Result<()>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let fut = serve(Box::pin(async move {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            task: Some(tokio::spawn(fut)),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

async fn wait_for_info(path: &Path) -> ServerInfo {
    ServerInfo::wait_for(path, Duration::from_secs(10))
        .await
        .unwrap()
}

fn upper() -> impl riffle_numaflow::udf::Mapper {
    map_fn(|d: Datum| {
        if d.value == b"boom" {
            return Err("boom requested by the test".into());
        }
        if d.value == b"drop" {
            return Ok(vec![Message::to_drop()]);
        }
        Ok(vec![
            Message::new(d.value.to_ascii_uppercase())
                .with_keys(d.keys)
                .with_tags(["rs"]),
        ])
    })
}

fn check_map_output(out: &Value, info: &ServerInfo) {
    assert_eq!(out["ready"], json!(true));
    let responses = out["responses"].as_array().unwrap();
    assert_eq!(responses[0]["handshake"], json!(true));
    let mut by_id: Vec<&Value> = responses[1..].iter().collect();
    by_id.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    assert_eq!(by_id.len(), 3);
    assert_eq!(
        by_id[0]["results"],
        json!([{"keys": ["k0"], "value": "HELLO", "tags": ["rs"]}])
    );
    assert_eq!(by_id[1]["results"][0]["tags"], json!(["U+005C__DROP__"]));
    assert_eq!(by_id[2]["results"][0]["value"], json!("A,B"));
    assert_eq!(info.language, "rust");
    assert_eq!(info.metadata["MAP_MODE"], "unary-map");
    // A handler error is a gRPC error with its message on that stream only.
    assert_eq!(out["no_handshake"]["code"], json!("INVALID_ARGUMENT"));
    assert_eq!(out["boom"]["code"], json!("INTERNAL"));
    assert!(
        out["boom"]["details"]
            .as_str()
            .unwrap()
            .contains("boom requested by the test")
    );
    let after: Vec<&str> = out["after_boom"].as_array().unwrap()[1..]
        .iter()
        .map(|r| r["results"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(after.len(), 2);
    assert!(after.contains(&"STILL") && after.contains(&"SERVING"));
    assert_eq!(out["big_len"], json!(5 * 1024 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_server_async() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let server = MapServer::new(upper()).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    assert_eq!(info_path, dir.path().join("mapper-server-info"));
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    let info = wait_for_info(&info_path).await;
    let text = std::fs::read_to_string(&info_path).unwrap();
    assert!(text.ends_with("U+005C__END__"), "{text}");
    let out = tokio::task::spawn_blocking(move || drive(&py, "map", &socket))
        .await
        .unwrap();
    check_map_output(&out, &info);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_server_sync_thread_pool() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let blocking = map_fn(|d: Datum| {
        // A blocking handler: fine on the sync server's thread pool.
        std::thread::sleep(Duration::from_millis(1));
        if d.value == b"boom" {
            return Err("boom requested by the test".into());
        }
        if d.value == b"drop" {
            return Ok(vec![Message::to_drop()]);
        }
        Ok(vec![
            Message::new(d.value.to_ascii_uppercase())
                .with_keys(d.keys)
                .with_tags(["rs"]),
        ])
    });
    let server = MapServer::new(blocking)
        .with_socket(&socket)
        .with_mode(ServerMode::Sync { threads: 4 });
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    let info = wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "map", &socket))
        .await
        .unwrap();
    check_map_output(&out, &info);
    running.stop().await;
}

struct SplitCommas;

impl MapStreamer for SplitCommas {
    async fn map_stream(&self, datum: Datum, out: MessageSender<Message>) -> HandlerResult<()> {
        for part in datum.value.split(|b| *b == b',') {
            out.send(Message::new(part.to_vec()).with_keys(datum.keys.clone()))
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_stream_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mapstream.sock");
    let server = MapStreamServer::new(SplitCommas).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    let info = wait_for_info(&info_path).await;
    assert_eq!(info.metadata["MAP_MODE"], "stream-map");
    let out = tokio::task::spawn_blocking(move || drive(&py, "map-stream", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    let for_id = |id: &str| -> (Vec<String>, usize) {
        let mine: Vec<&Value> = responses.iter().filter(|r| r["id"] == json!(id)).collect();
        let values = mine
            .iter()
            .flat_map(|r| r["results"].as_array().unwrap().iter())
            .map(|x| x["value"].as_str().unwrap().to_string())
            .collect();
        (
            values,
            mine.iter().filter(|r| r["eot"] == json!(true)).count(),
        )
    };
    assert_eq!(for_id("0"), (vec!["hello".to_string()], 1));
    assert_eq!(for_id("2"), (vec!["a".to_string(), "b".to_string()], 1));
    // The end of each id's results comes last for that id.
    let last_for_2 = responses
        .iter()
        .rposition(|r| r["id"] == json!("2"))
        .unwrap();
    assert_eq!(responses[last_for_2]["eot"], json!(true));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_map_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("batchmap.sock");
    let udf = batch_map_fn(|batch: Vec<Datum>| {
        Ok(batch
            .into_iter()
            .map(|d| vec![Message::new([d.value, b"!".to_vec()].concat())])
            .collect())
    });
    let server = BatchMapServer::new(udf).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    assert_eq!(
        wait_for_info(&info_path).await.metadata["MAP_MODE"],
        "batch-map"
    );
    let out = tokio::task::spawn_blocking(move || drive(&py, "batch-map", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 5, "{responses:?}");
    assert_eq!(responses[1]["id"], json!("0"));
    assert_eq!(responses[1]["results"][0]["value"], json!("hello!"));
    assert_eq!(responses[3]["results"][0]["value"], json!("a,b!"));
    assert_eq!(responses[4]["eot"], json!(true));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_transform_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sourcetransform.sock");
    let udf = transform_fn(|d: Datum| {
        let moved = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + d.value.len() as u64);
        Ok(vec![TransformMessage::new(
            Message::new(d.value.to_ascii_uppercase()).with_keys(d.keys),
            moved,
        )])
    });
    let server = SourceTransformServer::new(udf).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    assert_eq!(info_path, dir.path().join("sourcetransformer-server-info"));
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "transform", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    assert_eq!(responses[0]["handshake"], json!(true));
    let t1 = responses.iter().find(|r| r["id"] == json!("t1")).unwrap();
    assert_eq!(
        t1["results"],
        json!([{"value": "HELLO", "keys": ["k"], "event_time": 1_704_067_205}])
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sink.sock");
    let udf = sink_fn(|batch: Vec<Datum>| {
        Ok(batch
            .into_iter()
            .map(|d| match d.value.as_slice() {
                b"fail" => SinkResponse::failure(d.id, "refused"),
                b"fb" => SinkResponse::fallback(d.id),
                _ => SinkResponse::success(d.id),
            })
            .collect())
    });
    let server = SinkServer::new(udf).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "sink", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 5, "{responses:?}");
    assert_eq!(responses[0]["handshake"], json!(true));
    for batch in 0..2 {
        let results = &responses[1 + batch * 2]["results"];
        assert_eq!(
            results,
            &json!([
                {"id": format!("{batch}-0"), "status": "SUCCESS", "err_msg": ""},
                {"id": format!("{batch}-1"), "status": "FAILURE", "err_msg": "refused"},
                {"id": format!("{batch}-2"), "status": "FALLBACK", "err_msg": ""},
            ])
        );
        assert_eq!(responses[2 + batch * 2]["eot"], json!(true));
    }
    running.stop().await;
}

struct TenMessages {
    next: AtomicU64,
    acked: Mutex<std::collections::HashSet<Vec<u8>>>,
}

impl Sourcer for TenMessages {
    async fn read(
        &self,
        request: ReadRequest,
        out: MessageSender<SourceMessage>,
    ) -> HandlerResult<()> {
        for _ in 0..request.count {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= 10 {
                return Ok(());
            }
            let message =
                SourceMessage::new(format!("m{i}"), Offset::new(i.to_string(), 0)).with_keys(["k"]);
            out.send(message).await?;
        }
        Ok(())
    }

    async fn ack(&self, offsets: Vec<Offset>) -> HandlerResult<()> {
        self.acked
            .lock()
            .unwrap()
            .extend(offsets.into_iter().map(|o| o.offset));
        Ok(())
    }

    async fn nack(&self, offsets: Vec<Offset>) -> HandlerResult<()> {
        let mut acked = self.acked.lock().unwrap();
        for o in offsets {
            acked.remove(&o.offset);
        }
        Ok(())
    }

    async fn pending(&self) -> HandlerResult<Option<u64>> {
        Ok(Some(10 - self.acked.lock().unwrap().len() as u64))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("source.sock");
    let udf = TenMessages {
        next: AtomicU64::new(0),
        acked: Mutex::new(Default::default()),
    };
    let server = SourceServer::new(udf).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "source", &socket))
        .await
        .unwrap();
    assert_eq!(out["pending_before"], json!(10));
    assert_eq!(out["partitions"], json!([0]));
    let reads = out["reads"].as_array().unwrap();
    assert_eq!(reads[0]["handshake"], json!(true));
    let payloads: Vec<&str> = reads.iter().filter_map(|r| r["payload"].as_str()).collect();
    assert_eq!(
        payloads,
        ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]
    );
    assert_eq!(reads.iter().filter(|r| r["eot"] == json!(true)).count(), 2);
    assert_eq!(
        reads[5]["eot"],
        json!(true),
        "the first read ends after 4 messages"
    );
    assert_eq!(
        out["acks"],
        json!([{"handshake": true, "success": true}, {"handshake": false, "success": true}])
    );
    assert_eq!(out["pending_after"], json!(6));
    assert_eq!(out["pending_after_nack"], json!(7));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reduce.sock");
    let udf = reduce_fn(|keys: &[String], _window, datums: Vec<Datum>| {
        let sum: i64 = datums
            .iter()
            .map(|d| {
                String::from_utf8_lossy(&d.value)
                    .parse::<i64>()
                    .unwrap_or(0)
            })
            .sum();
        Ok(vec![
            Message::new(format!("{}:{sum}", datums.len())).with_keys(keys.to_vec()),
        ])
    });
    let server = ReduceServer::new(udf).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    assert_eq!(info_path, dir.path().join("reducer-server-info"));
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "reduce", &socket))
        .await
        .unwrap();
    assert_eq!(
        out["responses"],
        json!([
            {"eof": false, "window": [60, 120], "keys": ["odd"], "value": "5:25"},
            {"eof": false, "window": [60, 120], "keys": ["even"], "value": "5:30"},
            {"eof": true, "window": [60, 120], "keys": [], "value": ""},
        ])
    );
    running.stop().await;
}

struct RunningSum;

impl riffle_numaflow::udf::ReduceStreamer for RunningSum {
    async fn reduce_stream(
        &self,
        keys: Vec<String>,
        _window: riffle_numaflow::Window,
        mut datums: riffle_numaflow::udf::DatumStream,
        out: MessageSender<Message>,
    ) -> HandlerResult<()> {
        let mut sum = 0i64;
        while let Some(d) = datums.next().await {
            sum += String::from_utf8_lossy(&d.value).parse::<i64>()?;
            out.send(Message::new(sum.to_string()).with_keys(keys.clone()))
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_stream_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("reducestream.sock");
    let server = riffle_numaflow::server::ReduceStreamServer::new(RunningSum).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    assert_eq!(info_path, dir.path().join("reducestreamer-server-info"));
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "reduce", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    let sums = |key: &str| -> Vec<String> {
        responses
            .iter()
            .filter(|r| r["keys"] == json!([key]))
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sums("odd"), ["1", "4", "9", "16", "25"]);
    assert_eq!(sums("even"), ["2", "6", "12", "20", "30"]);
    assert_eq!(responses.last().unwrap()["eof"], json!(true));
    assert_eq!(
        responses.iter().filter(|r| r["eof"] == json!(true)).count(),
        1
    );
    running.stop().await;
}

struct Numbered;

impl riffle_numaflow::udf::Accumulator for Numbered {
    async fn accumulate(
        &self,
        mut datums: riffle_numaflow::udf::DatumStream,
        out: MessageSender<riffle_numaflow::Accumulated>,
    ) -> HandlerResult<()> {
        let mut n = 0;
        while let Some(mut d) = datums.next().await {
            n += 1;
            d.value = format!("{}#{n}", String::from_utf8_lossy(&d.value)).into_bytes();
            let mut a = riffle_numaflow::Accumulated::new(d);
            a.tags = vec!["acc".into()];
            out.send(a).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulator_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("accumulator.sock");
    let server = riffle_numaflow::server::AccumulatorServer::new(Numbered).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    assert_eq!(info_path, dir.path().join("accumulator-server-info"));
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    assert_eq!(
        wait_for_info(&info_path).await.minimum_numaflow_version,
        "1.5.0-z"
    );
    let out = tokio::task::spawn_blocking(move || drive(&py, "accumulator", &socket))
        .await
        .unwrap();
    let responses = out["responses"].as_array().unwrap();
    let of = |key: &str| -> Vec<&Value> {
        responses
            .iter()
            .filter(|r| r["keys"] == json!([key]))
            .collect()
    };
    let a = of("a");
    assert_eq!(a.len(), 3, "{responses:?}");
    assert_eq!(a[0]["value"], json!("a1#1"));
    assert_eq!(a[0]["tags"], json!(["acc"]));
    assert_eq!(a[1]["value"], json!("a2#2"));
    assert_eq!(
        a[1]["window_end"],
        json!(20),
        "the window ends at the latest watermark"
    );
    assert_eq!(a[2]["eof"], json!(true));
    assert_eq!(
        a[2]["window_end"],
        json!(100),
        "CLOSE answers with the closed window"
    );
    let b = of("b");
    assert_eq!(b.len(), 3, "{responses:?}");
    assert_eq!(b[1]["value"], json!("b2#2"));
    assert_eq!(b[2]["eof"], json!(true));
    assert_eq!(b[2]["window_end"], json!(30));
    running.stop().await;
}

struct EveryOther(AtomicI64);

impl SideInput for EveryOther {
    async fn retrieve(&self) -> HandlerResult<SideInputValue> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(if n % 2 == 0 {
            SideInputValue::NoBroadcast
        } else {
            SideInputValue::Broadcast(format!("side-{n}").into_bytes())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_input_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sideinput.sock");
    let server = SideInputServer::new(EveryOther(AtomicI64::new(0))).with_socket(&socket);
    let info_path = server.options().server_info.clone();
    let running = Running::spawn(|stop| server.serve_with_shutdown(stop));
    wait_for_info(&info_path).await;
    let out = tokio::task::spawn_blocking(move || drive(&py, "sideinput", &socket))
        .await
        .unwrap();
    assert_eq!(
        out["values"],
        json!([
            {"value": "side-1", "no_broadcast": false},
            {"value": "", "no_broadcast": true},
            {"value": "side-3", "no_broadcast": false},
        ])
    );
    running.stop().await;
}

fn _paths_compile(_: PathBuf) {}
