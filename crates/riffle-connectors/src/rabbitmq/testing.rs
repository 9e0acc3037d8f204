//! RabbitMQ as a [`Target`] of the conformance kit, the helpers tests use to
//! publish messages and take them back, and a private broker a test can restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};

use super::{RabbitMessage, RabbitRecord, RabbitSettings, RabbitSink, RabbitSource, admin};
use crate::conformance::Target;
pub use crate::conformance::unique;

/// A running RabbitMQ broker for tests. A "stream of N partitions" of the kit is N
/// queues, `{name}.0` to `{name}.{N-1}`.
#[derive(Debug)]
pub struct RabbitTarget {
    /// Its settings.
    pub settings: RabbitSettings,
    partitions: Mutex<HashMap<String, usize>>,
}

impl RabbitTarget {
    /// The broker `scripts/test.d/53-rabbitmq.sh` started (`RIFFLE_TEST_RABBITMQ_URL`);
    /// `None` (with a note) when there is none, a panic under `CI=true`.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RIFFLE_TEST_RABBITMQ_URL") {
            Ok(url) if !url.is_empty() => Some(Self::new(RabbitSettings::new(url))),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_RABBITMQ_URL is not set: \
                 scripts/test.d/53-rabbitmq.sh should have started RabbitMQ"
            ),
            _ => {
                eprintln!(
                    "skipping: RIFFLE_TEST_RABBITMQ_URL is not set \
                     (scripts/test.d/53-rabbitmq.sh starts a broker)"
                );
                None
            }
        }
    }

    /// A target on the broker of `settings`.
    pub fn new(settings: RabbitSettings) -> Self {
        Self {
            settings,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The queues of `stream` (one when it was not made by [`Target::create`]).
    pub fn queues(&self, stream: &str) -> Vec<String> {
        let n = self
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied();
        match n {
            Some(n) => (0..n).map(|i| format!("{stream}.{i}")).collect(),
            None => vec![stream.to_string()],
        }
    }

    /// Publishes `values` to `queue`, in order, confirmed.
    pub fn publish(&self, queue: &str, values: &[String]) {
        crate::runtime::handle().block_on(async {
            let (connection, channel) = self.settings.connect("test").await.expect("a connection");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            for chunk in values.chunks(1000) {
                let mut confirms = Vec::new();
                for v in chunk {
                    confirms.push(
                        channel
                            .basic_publish(
                                "".into(),
                                queue.into(),
                                BasicPublishOptions::default(),
                                v.as_bytes(),
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await
                            .expect("published"),
                    );
                }
                for c in confirms {
                    assert!(
                        c.await.expect("confirmed").is_ack(),
                        "a message was refused"
                    );
                }
            }
            let _ = connection.close(200, "done".into()).await;
        });
    }

    /// Takes every ready message of `queue` (acknowledging it: they are gone).
    pub fn take(&self, queue: &str) -> Vec<RabbitMessage> {
        crate::runtime::handle().block_on(async {
            let (connection, channel) = self.settings.connect("test").await.expect("a connection");
            let mut out = Vec::new();
            let from: std::sync::Arc<str> = queue.into();
            while let Some(m) = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                out.push(RabbitMessage::delivered(&from, m.delivery));
            }
            let _ = connection.close(200, "done".into()).await;
            out
        })
    }
}

impl Target for RabbitTarget {
    type Source = RabbitSource;
    type Sink = RabbitSink;

    fn server(&self) -> String {
        self.settings.server()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), partitions.max(1));
        for queue in self.queues(&name) {
            admin::create_queue(&self.settings, &queue).expect("a new queue");
        }
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        let queues = self.queues(stream);
        let mut spread = vec![Vec::new(); queues.len()];
        for (i, v) in values.iter().enumerate() {
            spread[i % queues.len()].push(v.clone());
        }
        for (queue, values) in queues.iter().zip(spread) {
            self.publish(queue, &values);
        }
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.queues(stream)
            .iter()
            .flat_map(|q| self.take(q))
            .filter_map(|m| m.value().map(str::to_string))
            .collect()
    }

    fn source(&self, stream: &str) -> RabbitSource {
        RabbitSource::new(self.settings.clone(), self.queues(stream)).tail(false)
    }

    fn unreachable_source(&self) -> RabbitSource {
        let nowhere =
            RabbitSettings::new("amqp://127.0.0.1:1/%2f").timeout(Duration::from_millis(1500));
        RabbitSource::new(nowhere, ["q"]).tail(false)
    }

    fn sink(&self, stream: &str, _id: &str) -> RabbitSink {
        RabbitSink::queues(self.settings.clone(), self.queues(stream))
    }

    fn value(item: RabbitMessage) -> Option<String> {
        item.value().map(str::to_string)
    }

    fn record(value: String) -> RabbitRecord {
        RabbitRecord::new(value)
    }

    fn exactly_once(&self) -> bool {
        false
    }
}

/// A private RabbitMQ broker a test starts, kills and restarts itself (the program
/// `RIFFLE_TEST_RABBITMQ_SERVER` names, Debian's `rabbitmq-server`), for what the
/// shared broker must not go through: a restart mid-run. Its data stays in its own
/// folder across restarts, so durable queues and persistent messages survive.
pub struct RabbitServer {
    program: String,
    dir: tempfile::TempDir,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RabbitServer {
    /// Starts a broker; `None` when there is no `rabbitmq-server` (the note says why).
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Starts a broker whose `rabbitmq.conf` also holds the lines `extra_config`
    /// (a TLS listener and its `ssl_options`, say); `None` as for [`start`](Self::start).
    pub fn start_with(extra_config: &str) -> Option<Self> {
        let program = match std::env::var("RIFFLE_TEST_RABBITMQ_SERVER") {
            Ok(p) if !p.is_empty() => p,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_RABBITMQ_SERVER is not set (scripts/test.d/53-rabbitmq.sh)"
            ),
            _ => {
                eprintln!("skipping: RIFFLE_TEST_RABBITMQ_SERVER is not set");
                return None;
            }
        };
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = {port}\nloopback_users = none\n{extra_config}\n"),
        )
        .expect("a config file");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("a plugins file");
        let mut server = Self {
            program,
            dir,
            port,
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Starts the broker's process (again) on its folder and port, and waits until
    /// it takes connections (a few seconds: it is an Erlang node).
    pub fn run(&mut self) {
        let dir = self.dir.path();
        let node = format!("riffle-test-{}", self.port);
        let mut cmd = std::process::Command::new(&self.program);
        cmd.env("HOME", dir)
            .env("RABBITMQ_NODENAME", format!("{node}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("ERL_EPMD_PORT", epmd_port())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Its own process group, so a kill reaches the Erlang VM under the script.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(cmd.spawn().expect("rabbitmq-server runs"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker's processes with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = child.id() as i32;
            // SAFETY-free: `kill` is a plain command; the group is the broker's own.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Its URL (the default virtual host).
    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The port of the Erlang port mapper the suite's brokers share
/// (`RIFFLE_TEST_RABBITMQ_EPMD_PORT`, set by the test setup; Erlang's 4369 else).
fn epmd_port() -> String {
    std::env::var("RIFFLE_TEST_RABBITMQ_EPMD_PORT").unwrap_or_else(|_| "4369".to_string())
}
