//! Wrong credentials on S3: the object source and sink, the Parquet source and
//! the Delta sink, given keys the server refuses, must fail at once (no outage to
//! ride out) with an error that names the folder's URL and carries the server's
//! refusal.
//!
//! moto accepts any keys by default, so these tests start a private moto with
//! IAM authentication on: `INITIAL_NO_AUTH_ACTION_COUNT=4` lets the first four
//! requests in unchecked (they make a user, its access key, a policy allowing
//! everything and the bucket, through boto3 from `RIFFLE_TEST_PYTHON`) and checks
//! every request after them against the users it knows. Each test first proves
//! the user's real keys work (a control: the refusal is about the keys, not the
//! server), then tries an unknown key id (`InvalidAccessKeyId`) and the right key
//! id with a wrong secret (`SignatureDoesNotMatch`).
//!
//! Credentials come only from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`), so the tests of this file take turns through one lock
//! while they set them. Without a `moto_server` beside `RIFFLE_TEST_PYTHON` they
//! skip with a note (a failure under `CI=true`).
#![cfg(feature = "objects")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle::sources::TestingSource;
use riffle::{Dataflow, Execution};
use riffle_connectors::objects::{ObjectSink, ObjectSource, ObjectStoreSettings};

/// Held while a test sets the keys in the environment.
static KEYS: Mutex<()> = Mutex::new(());

/// How fast a refusal must come back: far below the 60 s patience a store that
/// went away is given, so a refusal is never taken for an outage.
const PROMPTLY: Duration = Duration::from_secs(20);

/// A private moto server that checks every request's keys, with one bucket and
/// one user allowed everything.
struct AuthS3 {
    child: Child,
    endpoint: String,
    bucket: String,
    key_id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

impl AuthS3 {
    /// Starts one, or `None` (with a note) without `moto_server`; a panic then
    /// under `CI=true`.
    fn start() -> Option<Self> {
        let python = std::env::var_os("RIFFLE_TEST_PYTHON").map(PathBuf::from);
        let binary = python
            .as_ref()
            .and_then(|p| p.parent().map(|bin| bin.join("moto_server")))
            .filter(|p| p.exists());
        let (Some(python), Some(binary)) = (python, binary) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no moto_server beside RIFFLE_TEST_PYTHON (40-s3.sh)");
            }
            eprintln!("SKIPPED: no moto_server beside RIFFLE_TEST_PYTHON (40-s3.sh)");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("a log file");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("moto_server started");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = Self {
            child,
            endpoint,
            bucket: format!("riffle-keys-{}", std::process::id()),
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        server.wait_until_it_answers(port);
        let (key_id, secret) = server.make_user_and_bucket(&python);
        server.key_id = key_id;
        server.secret = secret;
        Some(server)
    }

    fn wait_until_it_answers(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The moto API is not an action: it does not use up the unchecked four.
            let answered = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                let asked = write!(
                    s,
                    "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                );
                let mut status = String::new();
                asked.is_ok()
                    && BufReader::new(s).read_line(&mut status).is_ok()
                    && status.contains(" 200 ")
            });
            if answered {
                return;
            }
            let died = self.child.try_wait().ok().flatten().is_some();
            if died || Instant::now() > deadline {
                let log = std::fs::read_to_string(self._dir.path().join("moto.log"));
                panic!("moto_server did not answer on port {port}: {log:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The four unchecked requests: a user, its key, its policy, the bucket.
    /// Returns the key id and secret.
    fn make_user_and_bucket(&self, python: &Path) -> (String, String) {
        const SETUP: &str = r#"
import json, sys
import boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="riffle")
key = iam.create_access_key(UserName="riffle")["AccessKey"]
iam.put_user_policy(UserName="riffle", PolicyName="everything", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let out = Command::new(python)
            .args(["-c", SETUP, &self.endpoint, &self.bucket])
            .output()
            .expect("python started");
        assert!(
            out.status.success(),
            "making the user and bucket on {}: {}",
            self.endpoint,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let key_id = words.next().expect("a key id").to_string();
        let secret = words.next().expect("a secret").to_string();
        (key_id, secret)
    }

    /// The folder `name` in the bucket.
    fn settings(&self, name: &str) -> ObjectStoreSettings {
        ObjectStoreSettings::new(format!("s3://{}/{name}", self.bucket))
            .option("aws_endpoint", self.endpoint.clone())
            .option("aws_allow_http", "true")
            .option("aws_region", "us-east-1")
    }

    /// The two kinds of wrong keys, each with the error code the server answers:
    /// a key id it does not know, and the user's key id with a wrong secret.
    fn wrong_keys(&self) -> [(&'static str, String, String); 2] {
        [
            (
                "InvalidAccessKeyId",
                "AKIARIFFLEWRONGKEY00".to_string(),
                self.secret.clone(),
            ),
            (
                "SignatureDoesNotMatch",
                self.key_id.clone(),
                "not-the-secret".to_string(),
            ),
        ]
    }
}

impl Drop for AuthS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the keys this process's stores read.
fn use_keys(key_id: &str, secret: &str) {
    // SAFETY: the tests of this file set the environment only while holding
    // `KEYS`, and no flow of theirs runs while they do.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", key_id);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
        std::env::remove_var("AWS_SESSION_TOKEN");
    }
}

/// Runs `flow`, which must fail promptly: its error, as the run reports it.
fn refused(flow: &Dataflow, what: &str) -> String {
    let started = Instant::now();
    let result = Execution::new().run(flow);
    let took = started.elapsed();
    let err = match result {
        Ok(()) => panic!("{what} ran with wrong keys"),
        Err(e) => chain(&e),
    };
    assert!(
        took < PROMPTLY,
        "{what} took {took:?} to fail, as if riding out an outage: {err}"
    );
    err
}

/// `error` and every error under it, as `riffle run` prints them: `a: b: c`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Asserts that `err` names `url` and carries the server's `code` and its
/// refusal (HTTP 403, Forbidden).
fn assert_names_the_refusal(err: &str, url: &str, code: &str, what: &str) {
    assert!(
        err.contains(url),
        "{what}: the error does not name {url}: {err}"
    );
    assert!(
        err.contains(code),
        "{what}: the error does not carry the server's {code}: {err}"
    );
    assert!(
        err.contains("403") || err.to_ascii_lowercase().contains("forbidden"),
        "{what}: the error does not say access was refused (403 Forbidden): {err}"
    );
}

fn lines_flow(name: &str, settings: ObjectStoreSettings, out: &TestingSink<String>) -> Dataflow {
    let flow = Dataflow::new(name);
    flow.input("in", ObjectSource::new(settings).tail(false))
        .unwrap()
        .map("value", |l| l.value)
        .unwrap()
        .output("out", out.clone())
        .unwrap();
    flow
}

fn write_flow(name: &str, settings: ObjectStoreSettings, lines: &[&str]) -> Dataflow {
    let flow = Dataflow::new(name);
    let items: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    flow.input("in", TestingSource::new(items))
        .unwrap()
        .output("out", ObjectSink::new(settings))
        .unwrap();
    flow
}

#[test]
fn the_object_source_and_sink_refuse_wrong_keys_naming_the_folder() {
    let _turn = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s3) = AuthS3::start() else {
        return;
    };

    // The control: the user's keys write and read.
    use_keys(&s3.key_id, &s3.secret);
    let lines = s3.settings("lines");
    Execution::new()
        .run(&write_flow("write", lines.clone(), &["a", "b", "c"]))
        .expect("the user's keys write");
    let out = TestingSink::new();
    Execution::new()
        .run(&lines_flow("read", lines.clone(), &out))
        .expect("the user's keys read");
    assert_eq!(out.take_sorted(), ["a", "b", "c"]);

    for (n, (code, key_id, secret)) in s3.wrong_keys().into_iter().enumerate() {
        use_keys(&key_id, &secret);
        let err = refused(
            &lines_flow("read", lines.clone(), &TestingSink::new()),
            "the object source",
        );
        assert_names_the_refusal(&err, &lines.url, code, "the object source");

        let folder = s3.settings(&format!("out-{n}"));
        let err = refused(
            &write_flow("write", folder.clone(), &["x"]),
            "the object sink",
        );
        assert_names_the_refusal(&err, &folder.url, code, "the object sink");
    }
}

#[cfg(feature = "tables")]
#[test]
fn the_parquet_source_and_delta_sink_refuse_wrong_keys_naming_the_table() {
    use riffle_connectors::tables::{DeltaSink, ParquetSource};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        id: i64,
        name: String,
    }

    fn delta_flow(table: &ObjectStoreSettings, rows: Vec<Row>) -> Dataflow {
        let flow = Dataflow::new("load");
        flow.input("in", TestingSource::new(rows))
            .unwrap()
            .output("out", DeltaSink::<Row>::new(table.clone()))
            .unwrap();
        flow
    }

    fn parquet_flow(table: &ObjectStoreSettings, out: &TestingSink<i64>) -> Dataflow {
        let flow = Dataflow::new("scan");
        flow.input("in", ParquetSource::<Row>::new(table.clone()).tail(false))
            .unwrap()
            .map("id", |r| r.value.id)
            .unwrap()
            .output("out", out.clone())
            .unwrap();
        flow
    }

    let _turn = KEYS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s3) = AuthS3::start() else {
        return;
    };
    let rows = |ids: std::ops::Range<i64>| {
        ids.map(|id| Row {
            id,
            name: format!("n{id}"),
        })
        .collect::<Vec<_>>()
    };

    // The control: the user's keys make the table and read its files.
    use_keys(&s3.key_id, &s3.secret);
    let table = s3.settings("table");
    Execution::new()
        .run(&delta_flow(&table, rows(0..5)))
        .expect("the user's keys load the table");
    let out = TestingSink::new();
    Execution::new()
        .run(&parquet_flow(&table, &out))
        .expect("the user's keys read the table's files");
    assert_eq!(out.take_sorted(), (0..5).collect::<Vec<i64>>());

    for (code, key_id, secret) in s3.wrong_keys() {
        use_keys(&key_id, &secret);
        let err = refused(
            &parquet_flow(&table, &TestingSink::new()),
            "the Parquet source",
        );
        assert_names_the_refusal(&err, &table.url, code, "the Parquet source");

        let err = refused(&delta_flow(&table, rows(5..8)), "the Delta sink");
        assert_names_the_refusal(&err, &table.url, code, "the Delta sink");
    }

    // Nothing the wrong keys tried reached the table.
    use_keys(&s3.key_id, &s3.secret);
    let out = TestingSink::new();
    Execution::new().run(&parquet_flow(&table, &out)).unwrap();
    assert_eq!(out.take_sorted(), (0..5).collect::<Vec<i64>>());
}
