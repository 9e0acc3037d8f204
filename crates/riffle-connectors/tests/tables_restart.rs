//! The Delta table sink on S3 through a server restart: a private moto server is
//! killed with SIGKILL while an exactly-once copy (a Parquet source into a Delta
//! table, on a recovery store) runs against it, and a new one takes its place.
//! The run must ride it out, and the table must then hold every row once, with
//! each `(app id, version)` committed once.
//!
//! ## What "restart" means here, and what it proves
//!
//! moto keeps its buckets in memory: a moto started again is empty, and a table
//! whose log vanished proves nothing about a sink. A real S3 keeps what it
//! stored, so the test gives moto that property with its own request recorder
//! (`MOTO_ENABLE_RECORDING`): every request the first server received is
//! replayed into the second before any client reaches it. The second server
//! therefore holds what the first had received, including requests that were
//! in flight at the kill and whose answer the client never got: the ambiguous
//! commit a crashed server leaves behind, which the sink must settle by reading
//! the log again (a put-if-absent of a log version it already made is refused,
//! and the sink finds its own `txn`).
//!
//! The clients reach moto through a small TCP relay on a port of their own, so
//! that they see one server go away and come back on the same address while the
//! replay runs unseen. While the server is down, the relay takes each
//! connection, notes its request line and closes it unanswered, as a dying
//! server does; the requests it noted show that the sink tried during the
//! outage. (The relay ends a connection moto dropped with a FIN where a network
//! may send a reset; the sink takes both for a server gone.)
//!
//! The server stays away for [`OUTAGE`] at least, longer than the object store
//! client's own ten retries last, so the run rides it out only through the
//! sink's patience (`tables::warehouse`: a staging write or a load is tried
//! again for up to 60 s, said once on stderr).
#![cfg(feature = "tables")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::Target;
use riffle_connectors::objects::ObjectStoreSettings;
use riffle_connectors::tables::delta;
use riffle_connectors::tables::testing::{DeltaTarget, Tables};

/// How long the server stays away at least: longer than the object store
/// client's own retries last (ten, about 2-4 s in all), so that what rides it out
/// is the sink's patience.
const OUTAGE: Duration = Duration::from_secs(5);

#[test]
fn a_delta_copy_on_s3_rides_out_a_server_killed_and_restarted_mid_run() {
    let Some(binary) = moto_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("recording.jsonl");
    let mut moto = Moto::start(&binary, dir.path(), &recording, true);
    let relay = Relay::start(moto.port);
    // SAFETY: set before this test starts any thread that reads the environment.
    unsafe { std::env::set_var("RIFFLE_TEST_S3_ENDPOINT", relay.url()) };
    let tables = Tables::s3_from_env().expect("the private server");
    let lake = DeltaTarget(tables.clone());
    let input = lake.create("restart-in", 2);
    let output = lake.create("restart-out", 1);
    let values: Vec<String> = (0..30_000).map(|i| format!("v{i:05}")).collect();
    lake.write(&input, &values);

    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 1).unwrap();
    let run = || {
        let flow = Dataflow::new("restart");
        flow.input("in", lake.source(&input))
            .unwrap()
            .filter_map("upper", |row| {
                // Slow enough that the kill lands mid-run.
                std::thread::sleep(Duration::from_micros(100));
                DeltaTarget::value(row).map(|v| DeltaTarget::record(v.to_uppercase()))
            })
            .unwrap()
            .output("out", lake.sink(&output, "restart"))
            .unwrap();
        // One worker: the sink's writes reach the server one at a time, so the
        // recording replays them in the order the server took them.
        Execution::new()
            .workers(1)
            .epoch_interval(Duration::from_millis(100))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(200)))
            .run(&flow)
    };

    let settings = tables.settings(&output);
    let started = Instant::now();
    let mut before = None;
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(run);
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(30) {
            let versions = log_versions(&settings);
            // Version 0 makes the table; a later one is a committed epoch.
            if versions.len() > 1 {
                relay.down();
                let killed = Instant::now();
                moto.kill();
                before = Some(versions.len());
                keep_whole_entries(&recording);
                moto = Moto::start(&binary, dir.path(), &recording, false);
                moto.replay();
                if let Some(left) = OUTAGE.checked_sub(killed.elapsed()) {
                    std::thread::sleep(left);
                }
                relay.up(moto.port);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join().unwrap()
    });
    let before = before.expect("the copy finished before the kill: make it longer");
    outcome.unwrap_or_else(|e| panic!("the run should ride out the restart: {e:?}"));

    let tried = relay.refused();
    assert!(
        tried.iter().any(|r| r.contains(&output)),
        "the sink made no request while the server was down, so the test proves \
         nothing: {tried:?}"
    );
    let versions = log_versions(&settings);
    assert!(
        versions.len() > before,
        "no epoch was committed after the restart ({before} log versions then, {} now)",
        versions.len()
    );
    // Every partition's versions are 1, 2, 3, ..., each committed once.
    let mut txns: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for text in versions.values() {
        for line in text.lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(txn) = action.get("txn") {
                txns.entry(txn["appId"].as_str().unwrap().to_string())
                    .or_default()
                    .push(txn["version"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(txns.len(), 2, "one app id per sink partition: {txns:?}");
    for (app, got) in &txns {
        let want: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(got, &want, "versions of {app} missing or committed twice");
    }
    let mut got = lake.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "rows lost or doubled through the restart"
    );
    assert_eq!(got, want);
}

/// The `moto_server` beside `RIFFLE_TEST_PYTHON` (the venv of
/// `scripts/test.d/10-python.sh`, moto from `40-s3.sh`); `None` with a note
/// without it, a panic under `CI=true`.
fn moto_server() -> Option<PathBuf> {
    let found = std::env::var_os("RIFFLE_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|bin| bin.join("moto_server")))
        .filter(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but no moto_server beside RIFFLE_TEST_PYTHON (scripts/test.d/40-s3.sh)"
            );
        }
        eprintln!("SKIPPED: no moto_server beside RIFFLE_TEST_PYTHON (scripts/test.d/40-s3.sh)");
    }
    found
}

/// Drops a last entry of the recording that the killed server had not finished
/// writing down: a request it had not taken yet.
fn keep_whole_entries(recording: &Path) {
    let text = std::fs::read_to_string(recording).expect("the recording");
    let mut lines: Vec<&str> = text.lines().collect();
    if lines
        .last()
        .is_some_and(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
    {
        lines.pop();
        std::fs::write(recording, lines.join("\n") + "\n").expect("the recording");
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One private moto server, recording every request it gets into one file.
struct Moto {
    port: u16,
    child: Child,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers; `record` makes it
    /// append every request to `recording`, which it replays from on
    /// [`Moto::replay`] either way.
    fn start(binary: &Path, dir: &Path, recording: &Path, record: bool) -> Self {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("moto.log"))
            .expect("a log file");
        let mut command = Command::new(binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", recording)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log);
        if record {
            command.env("MOTO_ENABLE_RECORDING", "true");
        } else {
            command.env_remove("MOTO_ENABLE_RECORDING");
        }
        let child = command.spawn().expect("moto_server started");
        let mut moto = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while moto.call("GET", "/moto-api/").is_none() {
            if Instant::now() > deadline || moto.child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(dir.join("moto.log")).unwrap_or_default();
                panic!("moto_server did not answer on port {port}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// One request without a body straight to this server: its status line.
    fn call(&self, method: &str, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).ok()?;
        (!status.is_empty()).then_some(status)
    }

    /// Replays the recording into this server (answered once all is replayed).
    fn replay(&self) {
        let status = self
            .call("POST", "/moto-api/recorder/replay-recording")
            .expect("an answer to the replay");
        assert!(status.contains(" 200 "), "the replay failed: {status}");
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay on a port of its own to the moto server of the moment; while
/// down, it closes every connection unanswered, noting its request line.
struct Relay {
    port: u16,
    upstream: Arc<Mutex<Option<u16>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().expect("its address").port();
        let relay = Self {
            port,
            upstream: Arc::new(Mutex::new(Some(upstream))),
            refused: Arc::default(),
        };
        let (to, refused) = (relay.upstream.clone(), relay.refused.clone());
        // Runs until the test's process ends.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let to = *to.lock().unwrap();
                let refused = refused.clone();
                std::thread::spawn(move || serve(client, to, &refused));
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn down(&self) {
        *self.upstream.lock().unwrap() = None;
    }

    fn up(&self, upstream: u16) {
        *self.upstream.lock().unwrap() = Some(upstream);
    }

    /// The request lines of the connections closed while down.
    fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

/// One client connection of the relay: piped both ways to `upstream`, or noted
/// and closed without an answer when there is none.
fn serve(client: TcpStream, upstream: Option<u16>, refused: &Mutex<Vec<String>>) {
    let server = upstream.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok());
    let Some(server) = server else {
        let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let _ = BufReader::new(&client).read_line(&mut line);
        refused.lock().unwrap().push(line.trim_end().to_string());
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            // Either side gone: both are.
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        })
    };
    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(client, server);
    pipe(s, c);
}

/// The Delta log of the table at `settings`: each version's text by number
/// (empty while there is no table).
fn log_versions(settings: &ObjectStoreSettings) -> BTreeMap<u64, String> {
    let url = url::Url::parse(&settings.url).unwrap();
    let mut options: Vec<(String, String)> = settings.options.clone().into_iter().collect();
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        options.push((key.to_lowercase(), std::env::var(key).unwrap()));
    }
    let (store, prefix) = object_store::parse_url_opts(&url, options).unwrap();
    let log = prefix.join(delta::LOG);
    riffle_connectors::runtime::handle().block_on(async {
        let mut out = BTreeMap::new();
        let mut listing = store.list(Some(&log));
        while let Some(meta) = listing.next().await {
            let Ok(meta) = meta else {
                return BTreeMap::new();
            };
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(version) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = store.get(&meta.location).await.unwrap().bytes().await;
            out.insert(version, String::from_utf8(bytes.unwrap().to_vec()).unwrap());
        }
        out
    })
}
