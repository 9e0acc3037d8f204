//! NATS JetStream as a [`Target`] of the conformance kit, a private server tests
//! can kill and start again, and helpers to put messages in and read them back
//! through an independent consumer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::StreamExt;

use super::admin::{self, StreamSpec};
use super::{NatsMessage, NatsRecord, NatsSettings, NatsSink, NatsSource};
use crate::conformance::Target;

/// A name no other test or run uses (letters, digits and `-`: a valid stream name).
pub fn unique(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{hint}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether tests must not skip (`CI=true`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A running NATS server with JetStream, for tests.
#[derive(Debug)]
pub struct NatsTarget {
    /// Its settings.
    pub settings: NatsSettings,
    /// How many partitions (subjects `{stream}.0` ...) each stream made by
    /// [`Target::create`] has.
    partitions: Mutex<HashMap<String, usize>>,
}

impl NatsTarget {
    /// A target at `settings`.
    pub fn new(settings: NatsSettings) -> Self {
        Self {
            settings,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The server `scripts/test.d/51-nats.sh` started (`RIFFLE_TEST_NATS_URL`);
    /// `None` (with a note) when there is none, a panic under `CI=true`.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RIFFLE_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => Some(Self::new(NatsSettings::new(url))),
            _ if in_ci() => panic!(
                "CI=true but RIFFLE_TEST_NATS_URL is not set: scripts/test.d/51-nats.sh should \
                 have started nats-server"
            ),
            _ => {
                eprintln!(
                    "SKIPPED: RIFFLE_TEST_NATS_URL is not set (scripts/test.d/51-nats.sh starts \
                     nats-server -js)"
                );
                None
            }
        }
    }

    fn partitions_of(&self, stream: &str) -> usize {
        self.partitions
            .lock()
            .ok()
            .and_then(|p| p.get(stream).copied())
            .unwrap_or(1)
    }

    /// Makes stream `name` capturing `{name}.*`, with `partitions` partitions for
    /// the source (its subjects `{name}.0` ...).
    pub fn create_named(&self, name: &str, partitions: usize) {
        admin::create_stream(
            &self.settings,
            &StreamSpec::new(name, [format!("{name}.*")]),
        )
        .expect("a new stream");
        if let Ok(mut p) = self.partitions.lock() {
            p.insert(name.to_string(), partitions.max(1));
        }
    }

    /// Publishes `payloads` to `subject`, waiting for every acknowledgement.
    pub fn publish(&self, subject: &str, payloads: &[String]) {
        let subjects = vec![subject.to_string(); payloads.len()];
        self.publish_to(&subjects, payloads);
    }

    fn publish_to(&self, subjects: &[String], payloads: &[String]) {
        crate::runtime::handle().block_on(async {
            let js = self.settings.jetstream().await.expect("a connection");
            let mut acks = std::collections::VecDeque::new();
            for (subject, payload) in subjects.iter().zip(payloads) {
                let ack = js
                    .publish(subject.clone(), payload.clone().into())
                    .await
                    .expect("published");
                acks.push_back(ack);
                if acks.len() >= 1000
                    && let Some(ack) = acks.pop_front()
                {
                    ack.await.expect("acknowledged");
                }
            }
            for ack in acks {
                ack.await.expect("acknowledged");
            }
        });
    }

    /// Publishes `count` payloads of `size` bytes to the subjects `{stream}.0` ...
    /// `{stream}.{partitions - 1}` in turn, with up to 4096 acknowledgements in
    /// flight (the client's own pace: a benchmark's baseline); returns the time it
    /// took, acknowledgements included.
    pub fn publish_numbered(
        &self,
        stream: &str,
        partitions: usize,
        count: u64,
        size: usize,
    ) -> Duration {
        let subjects: Vec<String> = (0..partitions.max(1))
            .map(|i| format!("{stream}.{i}"))
            .collect();
        let payload = bytes::Bytes::from(vec![b'x'; size]);
        crate::runtime::handle().block_on(async {
            let js = self.settings.jetstream().await.expect("a connection");
            let started = Instant::now();
            let mut acks = std::collections::VecDeque::new();
            for i in 0..count {
                let subject = subjects[(i % subjects.len() as u64) as usize].clone();
                acks.push_back(
                    js.publish(subject, payload.clone())
                        .await
                        .expect("published"),
                );
                if acks.len() >= 4096
                    && let Some(ack) = acks.pop_front()
                {
                    ack.await.expect("acknowledged");
                }
            }
            for ack in acks {
                ack.await.expect("acknowledged");
            }
            started.elapsed()
        })
    }

    /// How many messages `stream` holds.
    pub fn count(&self, stream: &str) -> u64 {
        crate::runtime::handle().block_on(async {
            let js = self.settings.jetstream().await.expect("a connection");
            match js.get_stream(stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            }
        })
    }

    /// Reads every message of `stream` through one pull consumer without keeping
    /// them (a benchmark's baseline); returns how many and the time it took.
    pub fn drain(&self, stream: &str) -> (u64, Duration) {
        let mut n = 0;
        let started = Instant::now();
        self.each_message(stream, |_| n += 1);
        (n, started.elapsed())
    }

    /// Every message of `stream`, in stream order, read by a fresh consumer.
    pub fn messages(&self, stream: &str) -> Vec<NatsMessage> {
        let mut out = Vec::new();
        self.each_message(stream, |m| out.push(m));
        out
    }

    fn each_message(&self, stream: &str, mut each: impl FnMut(NatsMessage)) {
        crate::runtime::handle().block_on(async {
            let js = self.settings.jetstream().await.expect("a connection");
            let mut s = js.get_stream(stream).await.expect("the stream");
            let count = s.info().await.expect("its state").state.messages as usize;
            if count == 0 {
                return;
            }
            let consumer: PullConsumer = s
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(60),
                    ..Default::default()
                })
                .await
                .expect("a reader");
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(4096)
                .messages()
                .await
                .expect("messages");
            let mut seen = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen < count {
                assert!(
                    Instant::now() < deadline,
                    "reading {stream} took over two minutes"
                );
                let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_secs(10), messages.next()).await
                else {
                    panic!("{stream}: {seen} of {count} messages came");
                };
                let m = m.expect("a message");
                let info = m.info().expect("its metadata");
                each(NatsMessage {
                    subject: m.subject.to_string(),
                    payload: m.payload.to_vec(),
                    headers: Vec::new(),
                    sequence: info.stream_sequence,
                    timestamp_ms: 0,
                });
                seen += 1;
            }
        })
    }
}

impl Target for NatsTarget {
    type Source = NatsSource;
    type Sink = NatsSink;

    fn server(&self) -> String {
        self.settings.servers.clone()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        self.create_named(&name, partitions);
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        let n = self.partitions_of(stream);
        let subjects: Vec<String> = (0..values.len())
            .map(|i| format!("{stream}.{}", i % n))
            .collect();
        self.publish_to(&subjects, values);
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.messages(stream)
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }

    fn source(&self, stream: &str) -> NatsSource {
        let n = self.partitions_of(stream);
        NatsSource::new(self.settings.clone(), stream)
            .filters((0..n).map(|i| format!("{stream}.{i}")))
            .tail(false)
    }

    fn unreachable_source(&self) -> NatsSource {
        let nowhere = NatsSettings::new("nats://127.0.0.1:1").timeout(Duration::from_millis(1500));
        NatsSource::new(nowhere, "S").tail(false)
    }

    fn sink(&self, stream: &str, _id: &str) -> NatsSink {
        NatsSink::new(self.settings.clone(), format!("{stream}.out"))
    }

    fn value(item: NatsMessage) -> Option<String> {
        item.text().map(str::to_string)
    }

    fn record(value: String) -> NatsRecord {
        // The values of the checks are unique: each one is its own id.
        NatsRecord::new(value.clone()).id(value)
    }

    fn exactly_once(&self) -> bool {
        true
    }
}

/// A private `nats-server -js` on a free loopback port with its own store folder,
/// which a test may kill (SIGKILL) and start again on the same folder. Extra
/// arguments (`--user`, `--pass`, ...) go to the server.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one from `RIFFLE_TEST_NATS_SERVER` (the binary
    /// `scripts/test.d/51-nats.sh` installed); `None` (with a note) without it.
    pub fn start(args: &[&str]) -> Option<Self> {
        let binary = match std::env::var("RIFFLE_TEST_NATS_SERVER") {
            Ok(b) if !b.is_empty() => PathBuf::from(b),
            _ if in_ci() => panic!(
                "CI=true but RIFFLE_TEST_NATS_SERVER is not set: scripts/test.d/51-nats.sh sets it"
            ),
            _ => {
                eprintln!(
                    "SKIPPED: RIFFLE_TEST_NATS_SERVER is not set (scripts/test.d/51-nats.sh)"
                );
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self {
            binary,
            dir: tempfile::tempdir().expect("a temporary folder"),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("a log file");
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("nats-server started");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
