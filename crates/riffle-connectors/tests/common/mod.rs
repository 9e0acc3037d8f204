//! A private S3 server that a test can kill and restart mid-run, for the restart
//! tests of the connectors on `object_store` (`tables_restart.rs`,
//! `objects_restart.rs`). Each test uses a part of it.
//!
//! ## What "restart" means here, and what it proves
//!
//! moto keeps its buckets in memory: a moto started again is empty, and a store
//! whose objects vanished proves nothing about a connector. A real S3 keeps what
//! it stored, so [`PrivateS3`] gives moto that property with its own request
//! recorder (`MOTO_ENABLE_RECORDING`): every request the first server received
//! is replayed into the second before any client reaches it. The second server
//! therefore holds what the first had received, including requests that were
//! in flight at the kill and whose answer the client never got: the ambiguous
//! write a crashed server leaves behind, which a connector must settle when it
//! tries again.
//!
//! The clients reach moto through a small TCP relay on a port of their own, so
//! that they see one server go away and come back on the same address while the
//! replay runs unseen. While the server is down, the relay takes each
//! connection, notes its request line and closes it unanswered, as a dying
//! server does; the requests it noted show that the connector tried during the
//! outage. (The relay ends a connection moto dropped with a FIN where a network
//! may send a reset; the connectors take both for a server gone.) Armed with a
//! pattern ([`PrivateS3::trip_on`]), the relay takes the server away itself the
//! moment a request containing it passes, so that an outage lands on a chosen
//! step of a run however busy the machine is.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A private moto server behind a relay, recording every request so that a new
/// server can take its place holding what it held.
pub struct PrivateS3 {
    binary: PathBuf,
    dir: tempfile::TempDir,
    recording: PathBuf,
    moto: Moto,
    relay: Relay,
}

impl PrivateS3 {
    /// Starts one, or `None` (with a note) without a `moto_server` beside
    /// `RIFFLE_TEST_PYTHON`; a panic then under `CI=true`.
    pub fn start() -> Option<Self> {
        let binary = moto_server()?;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let recording = dir.path().join("recording.jsonl");
        let moto = Moto::start(&binary, dir.path(), &recording);
        let relay = Relay::start(moto.port);
        Some(Self {
            binary,
            dir,
            recording,
            moto,
            relay,
        })
    }

    /// The address clients use: `http://127.0.0.1:PORT`, the relay's.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.relay.port)
    }

    /// Kills the server (SIGKILL) and starts a new one holding what the old one
    /// had received (and recording in its turn, for the next restart); clients
    /// find no server for `outage` at least.
    pub fn restart(&mut self, outage: Duration) {
        let killed = Instant::now();
        self.restart_when(|| killed.elapsed() >= outage);
    }

    /// [`PrivateS3::restart`], the new server reachable only once `back` says
    /// so (asked every 50 ms, for at most a minute).
    pub fn restart_when(&mut self, mut back: impl FnMut() -> bool) {
        self.relay.down();
        let killed = Instant::now();
        self.moto.kill();
        keep_whole_entries(&self.recording);
        self.moto = Moto::start(&self.binary, self.dir.path(), &self.recording);
        self.moto.replay();
        while !back() {
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "the server was to come back within a minute"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.relay.up(self.moto.port);
    }

    /// Takes the server away as soon as a client sends `pattern` (see
    /// [`PrivateS3::tripped`]), that request unanswered.
    pub fn trip_on(&self, pattern: &str) {
        self.relay.trip_on(pattern);
    }

    /// Waits (at most `limit`) until a request tripped the pattern of
    /// [`PrivateS3::trip_on`]: whether one did. The server is away from then on,
    /// until [`PrivateS3::restart`].
    pub fn tripped(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.relay.state.tripped.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Kills the server (SIGKILL) for good: clients find none from now on.
    pub fn kill(&mut self) {
        self.relay.down();
        self.moto.kill();
    }

    /// The request lines of the connections the relay closed while there was no
    /// server.
    pub fn refused(&self) -> Vec<String> {
        self.relay.state.refused.lock().unwrap().clone()
    }
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
    /// Starts moto on a free port and waits until it answers; it appends every
    /// request to `recording` (a replay excepted), which it replays from on
    /// [`Moto::replay`].
    fn start(binary: &Path, dir: &Path, recording: &Path) -> Self {
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
            .env("MOTO_ENABLE_RECORDING", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log);
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
/// down, it closes every connection unanswered, noting its request line. Armed
/// with a pattern ([`Relay::trip_on`]), it goes down by itself as a request
/// containing it passes, and drops that request.
struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

/// What the relay's threads share.
#[derive(Default)]
struct RelayState {
    upstream: Mutex<Option<u16>>,
    refused: Mutex<Vec<String>>,
    armed: Mutex<Option<Vec<u8>>>,
    tripped: AtomicBool,
}

impl RelayState {
    /// Whether `seen` (what a client sent lately) trips the armed pattern: then
    /// the relay is down and disarmed.
    fn trips(&self, seen: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let hit = armed
            .as_deref()
            .is_some_and(|p| seen.windows(p.len()).any(|w| w == p));
        if hit {
            *armed = None;
            *self.upstream.lock().unwrap() = None;
            self.tripped.store(true, Ordering::SeqCst);
        }
        hit
    }
}

impl Relay {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new(RelayState::default());
        *state.upstream.lock().unwrap() = Some(upstream);
        let shared = state.clone();
        // Runs until the test's process ends.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(client, &state));
            }
        });
        Self { port, state }
    }

    fn down(&self) {
        *self.state.upstream.lock().unwrap() = None;
    }

    fn up(&self, upstream: u16) {
        *self.state.upstream.lock().unwrap() = Some(upstream);
    }

    /// Goes down by itself when a client sends `pattern` (in a request line, a
    /// header: any bytes), dropping that request unanswered.
    fn trip_on(&self, pattern: &str) {
        self.state.tripped.store(false, Ordering::SeqCst);
        *self.state.armed.lock().unwrap() = Some(pattern.as_bytes().to_vec());
    }
}

/// One client connection of the relay: piped both ways to the server of the
/// moment, or noted and closed without an answer when there is none.
fn serve(client: TcpStream, state: &Arc<RelayState>) {
    let upstream = *state.upstream.lock().unwrap();
    let server = upstream.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok());
    let Some(server) = server else {
        let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let _ = BufReader::new(&client).read_line(&mut line);
        state
            .refused
            .lock()
            .unwrap()
            .push(line.trim_end().to_string());
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(client, server, Some(state.clone()));
    pipe(s, c, None);
}

/// Copies `from` to `to` on a thread of its own until either side is gone;
/// `watch`ed, a chunk that trips its pattern is dropped and both are closed.
fn pipe(mut from: TcpStream, mut to: TcpStream, watch: Option<Arc<RelayState>>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        // The last bytes sent, so that a pattern split over two reads is seen.
        let mut seen: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(state) = &watch {
                seen.extend_from_slice(&buffer[..n]);
                if state.trips(&seen) {
                    break;
                }
                let keep = seen.len().saturating_sub(1024);
                seen.drain(..keep);
            }
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        // Either side gone: both are.
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
