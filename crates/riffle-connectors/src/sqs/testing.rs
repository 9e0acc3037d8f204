//! SQS as a [`Target`] of the conformance kit (on moto's server), the helpers tests
//! use to send messages and drain queues, and a private moto server a test can
//! kill and start again.
//!
//! moto is not SQS: it keeps queues in memory, accepts any credentials unless told
//! otherwise, and slows down as a queue grows; tests keep their queues small.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::SqsClient;
use super::{SqsMessage, SqsRecord, SqsSettings, SqsSink, SqsSource, admin};
use crate::conformance::Target;
pub use crate::conformance::unique;

/// A running SQS endpoint for tests. A "stream of N partitions" of the kit is one
/// queue read by N readers (and written by N writers).
pub struct SqsTarget {
    /// Its settings.
    pub settings: SqsSettings,
    partitions: Mutex<HashMap<String, usize>>,
    drained: Mutex<HashMap<String, Vec<String>>>,
}

/// How long the target's readers wait per receive, and how many empty receives
/// end them: longer than [`VISIBILITY`], so messages a failed run left hidden come
/// back to a resumed run before it ends.
const WAIT: Duration = Duration::from_secs(1);
const EMPTY_POLLS: u32 = 5;
/// The visibility timeout of the target's readers.
pub const VISIBILITY: Duration = Duration::from_secs(4);

impl SqsTarget {
    /// The moto server `scripts/test.d/40-s3.sh` started (`RIFFLE_TEST_SQS_ENDPOINT`,
    /// with its dummy keys set as `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// for this process); `None` (with a note) when there is none, a panic under
    /// `CI=true`.
    pub fn from_env() -> Option<Self> {
        let endpoint = match std::env::var("RIFFLE_TEST_SQS_ENDPOINT") {
            Ok(e) if !e.is_empty() => e,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_SQS_ENDPOINT is not set: scripts/test.d/40-s3.sh \
                 should have started moto"
            ),
            _ => {
                eprintln!(
                    "skipping: RIFFLE_TEST_SQS_ENDPOINT is not set (scripts/test.d/40-s3.sh \
                     starts moto)"
                );
                return None;
            }
        };
        set_test_keys();
        let region = std::env::var("RIFFLE_TEST_SQS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Some(Self::new(SqsSettings::new(region).endpoint(endpoint)))
    }

    /// A target at the endpoint of `settings`.
    pub fn new(settings: SqsSettings) -> Self {
        Self {
            settings,
            partitions: Mutex::new(HashMap::new()),
            drained: Mutex::new(HashMap::new()),
        }
    }

    fn readers(&self, queue: &str) -> usize {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(queue)
            .copied()
            .unwrap_or(1)
    }

    /// Sends `values` to `queue` (group `g` on a FIFO queue, each value its own
    /// de-duplication id), sixteen batches of ten at a time.
    pub fn send(&self, queue: &str, values: &[String]) {
        let client = SqsClient::new(&self.settings).expect("a client");
        crate::runtime::handle().block_on(async {
            let url = client.queue_url(queue).await.expect("the queue's URL");
            let fifo = queue.ends_with(".fifo");
            let chunks: Vec<Vec<String>> = values.chunks(10).map(<[String]>::to_vec).collect();
            for wave in chunks.chunks(16) {
                let mut tasks = Vec::new();
                for chunk in wave {
                    let entries: Vec<Value> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let mut e = json!({ "Id": i.to_string(), "MessageBody": v });
                            if fifo {
                                e["MessageGroupId"] = json!("g");
                                e["MessageDeduplicationId"] = json!(v);
                            }
                            e
                        })
                        .collect();
                    let body = json!({ "QueueUrl": url, "Entries": entries });
                    let client = client.clone();
                    tasks.push(tokio::spawn(async move {
                        let what = || "sending test messages".to_string();
                        let answer = client
                            .call("SendMessageBatch", &body, Duration::ZERO, &what, None)
                            .await
                            .expect("messages sent");
                        assert!(
                            answer
                                .get("Failed")
                                .is_none_or(|f| f.as_array().is_none_or(Vec::is_empty)),
                            "messages failed: {answer}"
                        );
                    }));
                }
                for t in tasks {
                    t.await.expect("a sending task");
                }
            }
        });
    }

    /// Receives and deletes every message `queue` has now (until two receives in a
    /// row find none), and returns their bodies together with those drained
    /// before: a queue's messages as a reader sees them.
    pub fn drain(&self, queue: &str) -> Vec<String> {
        let client = SqsClient::new(&self.settings).expect("a client");
        let bodies = crate::runtime::handle().block_on(async {
            let url = client.queue_url(queue).await.expect("the queue's URL");
            let mut bodies = Vec::new();
            let mut empty = 0;
            while empty < 2 {
                let what = || "draining a test queue".to_string();
                let request = json!({
                    "QueueUrl": url, "MaxNumberOfMessages": 10,
                    "WaitTimeSeconds": 0, "VisibilityTimeout": 60,
                });
                let answer = client
                    .call("ReceiveMessage", &request, Duration::ZERO, &what, None)
                    .await
                    .expect("a receive");
                let messages = answer
                    .get("Messages")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if messages.is_empty() {
                    empty += 1;
                    continue;
                }
                empty = 0;
                let mut handles = Vec::new();
                for m in messages {
                    bodies.push(m["Body"].as_str().unwrap_or_default().to_string());
                    handles.push(m["ReceiptHandle"].as_str().unwrap_or_default().to_string());
                }
                super::source::delete(&client, queue, &url, handles).await;
            }
            bodies
        });
        let mut drained = self.drained.lock().unwrap_or_else(|p| p.into_inner());
        let all = drained.entry(queue.to_string()).or_default();
        all.extend(bodies);
        all.clone()
    }

    /// A bounded source on `queue` as the kit reads it.
    pub fn bounded_source(&self, queue: &str) -> SqsSource {
        SqsSource::new(self.settings.clone(), queue)
            .readers(self.readers(queue))
            .wait_time(WAIT)
            .visibility_timeout(VISIBILITY)
            .stop_after_empty(EMPTY_POLLS)
    }
}

/// Sets the dummy keys of `scripts/test.d/40-s3.sh` as `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` for this process (moto takes any).
pub fn set_test_keys() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "riffle-test".to_string());
    // SAFETY: set before any client of the test reads them; tests set the same
    // values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", var("RIFFLE_TEST_SQS_ACCESS_KEY_ID"));
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            var("RIFFLE_TEST_SQS_SECRET_ACCESS_KEY"),
        );
    }
}

impl Target for SqsTarget {
    type Source = SqsSource;
    type Sink = SqsSink;

    fn server(&self) -> String {
        self.settings.server()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), partitions.max(1));
        admin::create_queue(&self.settings, &name, None).expect("a new queue");
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        self.send(stream, values);
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.drain(stream)
    }

    fn source(&self, stream: &str) -> SqsSource {
        self.bounded_source(stream)
    }

    fn unreachable_source(&self) -> SqsSource {
        let nowhere = SqsSettings::new("us-east-1")
            .endpoint("http://127.0.0.1:1")
            .timeout(Duration::from_millis(1500));
        SqsSource::new(nowhere, "q").stop_after_empty(1)
    }

    fn sink(&self, stream: &str, id: &str) -> SqsSink {
        SqsSink::new(self.settings.clone(), stream)
            .writers(self.readers(stream))
            .id(id)
    }

    fn value(item: SqsMessage) -> Option<String> {
        Some(item.body)
    }

    fn record(value: String) -> SqsRecord {
        SqsRecord::new(value)
    }

    fn exactly_once(&self) -> bool {
        false
    }

    /// moto answers a receive in time that grows with the queue: 200 and 300
    /// messages instead of 4,000 and 6,000.
    fn may_repeat(&self) -> bool {
        // A standard queue may deliver a message twice; moto does under
        // concurrent receives.
        true
    }

    fn shrink(&self) -> usize {
        20
    }
}

/// A private moto server a test starts, kills and starts again (through the
/// Python `RIFFLE_TEST_PYTHON` names). moto keeps queues in memory, so a restart
/// loses them and their messages: the server makes the queues it is given before
/// it listens, standing for SQS, whose queues outlive any outage.
pub struct MotoServer {
    python: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    queues: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<std::process::Child>,
}

const SERVE: &str = r#"
import sys, time
from moto.server import ThreadedMotoServer
from moto.sqs.models import sqs_backends
port, queues = int(sys.argv[1]), sys.argv[2:]
for q in queues:
    attrs = {"FifoQueue": "true"} if q.endswith(".fifo") else {}
    sqs_backends["123456789012"]["us-east-1"].create_queue(q, **attrs)
ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
while True:
    time.sleep(3600)
"#;

impl MotoServer {
    /// Starts a server holding `queues`, with extra environment `env` (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0` to check credentials); `None` when there
    /// is no test Python (the note says why).
    pub fn start(queues: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        let python = match std::env::var("RIFFLE_TEST_PYTHON") {
            Ok(p) if !p.is_empty() => p,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but RIFFLE_TEST_PYTHON is not set (scripts/test.d/10-python.sh)")
            }
            _ => {
                eprintln!("skipping: RIFFLE_TEST_PYTHON is not set");
                return None;
            }
        };
        set_test_keys();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self {
            python,
            port,
            queues: queues.iter().map(|q| q.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Starts the server's process (again) on its port with its queues, and waits
    /// until it takes connections.
    pub fn run(&mut self) {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg("-c")
            .arg(SERVE)
            .arg(self.port.to_string())
            .args(&self.queues)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.child = Some(cmd.spawn().expect("moto's server runs"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private moto server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server's process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its settings (region `us-east-1`).
    pub fn settings(&self) -> SqsSettings {
        SqsSettings::new("us-east-1").endpoint(format!("http://127.0.0.1:{}", self.port))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}
