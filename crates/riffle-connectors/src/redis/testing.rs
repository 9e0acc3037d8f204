//! Redis as a [`Target`] of the conformance kit, the helpers tests use to add
//! entries and read them back, and a private server a test can restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{RedisEntry, RedisRecord, RedisSettings, RedisSink, RedisSource, admin, reply};
use crate::conformance::Target;
pub use crate::conformance::unique;

/// A running Redis server for tests. A "stream of N partitions" of the kit is N
/// stream keys, `{name}:0` to `{name}:{N-1}`.
#[derive(Debug)]
pub struct RedisTarget {
    /// Its settings.
    pub settings: RedisSettings,
    partitions: Mutex<HashMap<String, usize>>,
}

impl RedisTarget {
    /// The server `scripts/test.d/52-redis.sh` started (`RIFFLE_TEST_REDIS_URL`);
    /// `None` (with a note) when there is none, a panic under `CI=true`.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RIFFLE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(Self::new(RedisSettings::new(url))),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_REDIS_URL is not set: scripts/test.d/52-redis.sh \
                 should have started Redis"
            ),
            _ => {
                eprintln!(
                    "skipping: RIFFLE_TEST_REDIS_URL is not set (scripts/test.d/52-redis.sh \
                     starts a server)"
                );
                None
            }
        }
    }

    /// A target on the server of `settings`.
    pub fn new(settings: RedisSettings) -> Self {
        Self {
            settings,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The stream keys of `stream` (one when it was not made by [`Target::create`]).
    pub fn keys(&self, stream: &str) -> Vec<String> {
        let n = self
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied();
        match n {
            Some(n) => (0..n).map(|i| format!("{stream}:{i}")).collect(),
            None => vec![stream.to_string()],
        }
    }

    /// Adds `values` (field `value`) to `key`, in order.
    pub fn add(&self, key: &str, values: &[String]) {
        crate::runtime::handle().block_on(async {
            let mut conn = self.settings.connect().await.expect("a connection");
            for chunk in values.chunks(1000) {
                let mut pipe = redis::pipe();
                for v in chunk {
                    pipe.cmd("XADD")
                        .arg(key)
                        .arg("*")
                        .arg("value")
                        .arg(v)
                        .ignore();
                }
                pipe.query_async::<redis::Value>(&mut conn)
                    .await
                    .expect("entries added");
            }
        });
    }

    /// Every entry of `key`, oldest first.
    pub fn entries(&self, key: &str) -> Vec<RedisEntry> {
        crate::runtime::handle().block_on(async {
            let mut conn = self.settings.connect().await.expect("a connection");
            let v: redis::Value = redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            let stream: std::sync::Arc<str> = key.into();
            reply::to_entries(&stream, reply::entries(&v).expect("entries"))
        })
    }

    /// How many entries of `key` are pending (read, not acknowledged) in `group`.
    pub fn pending(&self, key: &str, group: &str) -> u64 {
        crate::runtime::handle().block_on(async {
            let mut conn = self.settings.connect().await.expect("a connection");
            let v: redis::Value = redis::cmd("XPENDING")
                .arg(key)
                .arg(group)
                .query_async(&mut conn)
                .await
                .expect("XPENDING");
            match v {
                redis::Value::Array(parts) => match parts.first() {
                    Some(redis::Value::Int(n)) => *n as u64,
                    _ => 0,
                },
                _ => 0,
            }
        })
    }
}

impl Target for RedisTarget {
    type Source = RedisSource;
    type Sink = RedisSink;

    fn server(&self) -> String {
        self.settings.server()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), partitions.max(1));
        for key in self.keys(&name) {
            admin::create_stream(&self.settings, &key, None).expect("a new stream");
        }
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        let keys = self.keys(stream);
        let mut spread = vec![Vec::new(); keys.len()];
        for (i, v) in values.iter().enumerate() {
            spread[i % keys.len()].push(v.clone());
        }
        for (key, values) in keys.iter().zip(spread) {
            self.add(key, &values);
        }
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.keys(stream)
            .iter()
            .flat_map(|key| self.entries(key))
            .filter_map(|e| e.value().map(str::to_string))
            .collect()
    }

    fn source(&self, stream: &str) -> RedisSource {
        RedisSource::new(self.settings.clone(), self.keys(stream)).tail(false)
    }

    fn unreachable_source(&self) -> RedisSource {
        let nowhere =
            RedisSettings::new("redis://127.0.0.1:1").timeout(Duration::from_millis(1500));
        RedisSource::new(nowhere, ["s"]).tail(false)
    }

    fn sink(&self, stream: &str, _id: &str) -> RedisSink {
        RedisSink::new(self.settings.clone(), self.keys(stream))
    }

    fn value(item: RedisEntry) -> Option<String> {
        item.value().map(str::to_string)
    }

    fn record(value: String) -> RedisRecord {
        RedisRecord::new(value)
    }

    fn exactly_once(&self) -> bool {
        false
    }
}

/// A private `redis-server` a test starts, kills and restarts itself (the program
/// `RIFFLE_TEST_REDIS_SERVER` names), for what the shared server must not go
/// through: a restart mid-run, a password. It keeps an append-only file, synced on
/// every write, so what it acknowledged survives a SIGKILL.
pub struct RedisServer {
    program: String,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    password: Option<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts a server; `None` when there is no `redis-server` (the note says why).
    pub fn start() -> Option<Self> {
        Self::launch(None)
    }

    /// Starts a server that wants `password` (`requirepass`).
    pub fn with_password(password: &str) -> Option<Self> {
        Self::launch(Some(password.to_string()))
    }

    fn launch(password: Option<String>) -> Option<Self> {
        let program = match std::env::var("RIFFLE_TEST_REDIS_SERVER") {
            Ok(p) if !p.is_empty() => p,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "CI=true but RIFFLE_TEST_REDIS_SERVER is not set (scripts/test.d/52-redis.sh)"
                )
            }
            _ => {
                eprintln!("skipping: RIFFLE_TEST_REDIS_SERVER is not set");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self {
            program,
            dir: tempfile::tempdir().expect("a temporary folder"),
            port,
            password,
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Starts the server's process (again) on its folder and port, and waits until
    /// it takes connections.
    pub fn run(&mut self) {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(cmd.spawn().expect("redis-server runs"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private Redis did not start in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server's process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
