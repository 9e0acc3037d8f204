//! Kafka as a [`Target`] of the conformance kit, and the helpers tests use to put
//! records in and read them back through an independent client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{KafkaMessage, KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, Utf8, admin};
use crate::conformance::Target;
pub use crate::conformance::unique;

/// A running Kafka broker for tests.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    /// Its settings.
    pub settings: KafkaSettings,
}

impl KafkaTarget {
    /// The broker `scripts/test.d/50-kafka.sh` started (`RIFFLE_TEST_KAFKA_BROKERS`);
    /// `None` (with a note) when there is none, a panic under `CI=true`.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RIFFLE_TEST_KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => Some(Self {
                settings: KafkaSettings::new(b),
            }),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_KAFKA_BROKERS is not set: scripts/test.d/50-kafka.sh \
                 should have started Kafka"
            ),
            _ => {
                eprintln!(
                    "skipping: RIFFLE_TEST_KAFKA_BROKERS is not set (scripts/test.d/50-kafka.sh \
                     starts a broker)"
                );
                None
            }
        }
    }

    /// The brokers.
    pub fn brokers(&self) -> &str {
        &self.settings.brokers
    }

    /// Writes `records` (value and optional key) to the partitions of `topic` in
    /// turn, and waits until they are delivered.
    pub fn produce(&self, topic: &str, records: &[(Option<String>, String)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .config()
            .set("enable.idempotence", "true")
            .create()
            .expect("a producer");
        let partitions = self.partitions(topic).len() as i32;
        for (i, (key, value)) in records.iter().enumerate() {
            loop {
                let mut rec: BaseRecord<'_, String, String> = BaseRecord::to(topic)
                    .payload(value)
                    .partition(i as i32 % partitions);
                if let Some(key) = key {
                    rec = rec.key(key);
                }
                match producer.send(rec) {
                    Ok(()) => break,
                    // A full queue: let the producer's thread send.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("records delivered");
    }

    /// A client configuration for this broker (its settings and credentials).
    fn config(&self) -> ClientConfig {
        self.settings
            .client_config()
            .expect("a client configuration")
    }

    fn partitions(&self, topic: &str) -> Vec<i32> {
        super::metadata::partitions(&self.settings, "test", topic).expect("the topic's partitions")
    }

    /// Every record of `topic` as `read_committed` readers see it (or every record
    /// written, aborted ones included, when `committed` is false).
    pub fn messages(&self, topic: &str, committed: bool) -> Vec<KafkaMessage> {
        let isolation = if committed {
            "read_committed"
        } else {
            "read_uncommitted"
        };
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .expect("a consumer");
        let parts = self.partitions(topic);
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("a partition");
            let (_, high) = consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .expect("watermarks");
            ends.insert(*p, high);
        }
        consumer.assign(&tpl).expect("assigned");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let position = consumer.position().expect("a position");
            let done = parts.iter().all(|p| {
                match position.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o >= ends[p],
                    _ => ends[p] == 0,
                }
            });
            if done {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "reading {topic} took over two minutes"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("a record");
                out.push(KafkaMessage {
                    topic: topic.into(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: Vec::new(),
                });
            }
        }
    }
}

impl Target for KafkaTarget {
    type Source = KafkaSource<Utf8>;
    type Sink = KafkaSink;

    fn server(&self) -> String {
        self.settings.brokers.clone()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let topic = unique(hint);
        admin::create_topic(&self.settings, &topic, partitions as i32, 1).expect("a new topic");
        topic
    }

    fn write(&self, stream: &str, values: &[String]) {
        let records: Vec<_> = values.iter().map(|v| (None, v.clone())).collect();
        self.produce(stream, &records);
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.messages(stream, true)
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.value.unwrap_or_default()).into_owned())
            .collect()
    }

    fn source(&self, stream: &str) -> KafkaSource<Utf8> {
        KafkaSource::new(self.settings.clone(), [stream])
            .format(Utf8)
            .tail(false)
    }

    fn unreachable_source(&self) -> KafkaSource<Utf8> {
        let nowhere = KafkaSettings::new("127.0.0.1:1").timeout(Duration::from_millis(1500));
        KafkaSource::new(nowhere, ["t"]).format(Utf8).tail(false)
    }

    fn sink(&self, stream: &str, id: &str) -> KafkaSink {
        // The same id on every run of a check (it fences and marks transactions),
        // and no other check's: the output topic is the check's own.
        KafkaSink::new(self.settings.clone(), stream).exactly_once(format!("{id}-{stream}"))
    }

    fn value(item: KafkaMessage<String>) -> Option<String> {
        item.value
    }

    fn record(value: String) -> KafkaRecord {
        KafkaRecord::new(value)
    }

    fn exactly_once(&self) -> bool {
        true
    }
}

/// A private Apache Kafka broker a test starts, kills and restarts itself (one
/// KRaft node from the jars in `RIFFLE_TEST_KAFKA_CLASSPATH`), for what the shared
/// broker must not go through: a restart mid-run, a listener that wants SASL
/// credentials.
pub struct KafkaServer {
    classpath: String,
    dir: tempfile::TempDir,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    child: Option<std::process::Child>,
}

/// The user and password a [`KafkaServer::with_sasl`] broker accepts.
pub const SASL_USER: (&str, &str) = ("riffle", "riffle-secret");

impl KafkaServer {
    /// Starts a plain broker; `None` when there are no Kafka jars (the note says why).
    pub fn start() -> Option<Self> {
        Self::launch(false)
    }

    /// Starts a broker whose client listener wants SASL/PLAIN as [`SASL_USER`].
    pub fn with_sasl() -> Option<Self> {
        Self::launch(true)
    }

    fn launch(sasl: bool) -> Option<Self> {
        let classpath = match std::env::var("RIFFLE_TEST_KAFKA_CLASSPATH") {
            Ok(c) if !c.is_empty() => c,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "CI=true but RIFFLE_TEST_KAFKA_CLASSPATH is not set (scripts/test.d/50-kafka.sh)"
                )
            }
            _ => {
                eprintln!("skipping: RIFFLE_TEST_KAFKA_CLASSPATH is not set");
                return None;
            }
        };
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        let (port, controller) = (free(), free());
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (listener, security) = if sasl {
            (
                "SASL_PLAINTEXT",
                "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            )
        } else {
            ("PLAINTEXT", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
        };
        let mut props = format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners={listener}://127.0.0.1:{port}\n\
             inter.broker.listener.name={listener}\n\
             controller.listener.names=CONTROLLER\nlistener.security.protocol.map={security}\n\
             log.dirs={}\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=2\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=2\ngroup.initial.rebalance.delay.ms=0\n",
            dir.path().join("data").display()
        );
        if sasl {
            let (user, password) = SASL_USER;
            props.push_str(&format!(
                "sasl.enabled.mechanisms=PLAIN\nsasl.mechanism.inter.broker.protocol=PLAIN\n\
                 listener.name.sasl_plaintext.plain.sasl.jaas.config=\
                 org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"{user}\" password=\"{password}\" user_{user}=\"{password}\";\n"
            ));
        }
        let config = dir.path().join("server.properties");
        std::fs::write(&config, props).expect("the broker's settings");
        let formatted = std::process::Command::new("java")
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format"])
            .args(["-t", "MkU3OEVBNTcwNTJENDM2Qg", "-c"])
            .arg(&config)
            .output()
            .expect("java runs");
        assert!(
            formatted.status.success(),
            "formatting the broker's folder: {}",
            String::from_utf8_lossy(&formatted.stdout)
        );
        let mut server = Self {
            classpath,
            dir,
            port,
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Starts the broker's process (again) on its folder and ports, and waits until
    /// it takes connections.
    pub fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("a log file");
        let child = std::process::Command::new("java")
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-cp",
                &self.classpath,
                "kafka.Kafka",
            ])
            .arg(self.dir.path().join("server.properties"))
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("java runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private broker did not start in a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker's process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for KafkaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
