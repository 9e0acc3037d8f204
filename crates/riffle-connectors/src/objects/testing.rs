//! Object folders as a [`Target`] of the conformance kit: a local folder, or S3 on
//! the moto server `scripts/test.d/40-s3.sh` starts.

use std::time::Duration;

use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::source::readable;
use super::{ObjectLine, ObjectSink, ObjectSource, ObjectStoreSettings};
use crate::conformance::{Target, unique};

/// A place to make folders of objects in: a base URL and the store's options.
#[derive(Debug, Clone)]
pub struct ObjectsTarget {
    base: String,
    options: Vec<(String, String)>,
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl ObjectsTarget {
    /// Folders under a new temporary local folder (`file://`).
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        Self {
            base: format!("file://{}", dir.path().display()),
            options: Vec::new(),
            _dir: Some(std::sync::Arc::new(dir)),
        }
    }

    /// Folders in a new bucket of the S3 server `scripts/test.d/40-s3.sh` started
    /// (`RIFFLE_TEST_S3_ENDPOINT`, with its keys set as `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` for this process); `None` (with a note) when there is
    /// none, a panic under `CI=true`.
    pub fn s3_from_env() -> Option<Self> {
        let endpoint = match std::env::var("RIFFLE_TEST_S3_ENDPOINT") {
            Ok(e) if !e.is_empty() => e,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but RIFFLE_TEST_S3_ENDPOINT is not set (scripts/test.d/40-s3.sh)")
            }
            _ => {
                eprintln!("skipping: RIFFLE_TEST_S3_ENDPOINT is not set (scripts/test.d/40-s3.sh)");
                return None;
            }
        };
        Some(Self::s3_at(&endpoint))
    }

    /// Folders in a new bucket of the S3 server at `endpoint` (`http://host:port`,
    /// a moto server: it makes the bucket on an unsigned PUT), with the keys of
    /// `RIFFLE_TEST_S3_ACCESS_KEY_ID` and `RIFFLE_TEST_S3_SECRET_ACCESS_KEY` (or
    /// `test`) set as `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` for this
    /// process.
    pub fn s3_at(endpoint: &str) -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "test".to_string());
        // SAFETY: set before any thread of the test reads the environment.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", var("RIFFLE_TEST_S3_ACCESS_KEY_ID"));
            std::env::set_var(
                "AWS_SECRET_ACCESS_KEY",
                var("RIFFLE_TEST_S3_SECRET_ACCESS_KEY"),
            );
        }
        let region = std::env::var("RIFFLE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
        let bucket = unique("riffle").to_lowercase();
        let options = vec![
            ("aws_endpoint".to_string(), endpoint.to_string()),
            ("aws_allow_http".to_string(), "true".to_string()),
            ("aws_region".to_string(), region),
        ];
        // moto makes a bucket on a PUT of its name (unsigned will do).
        make_bucket(endpoint, &bucket);
        Self {
            base: format!("s3://{bucket}"),
            options,
            _dir: None,
        }
    }

    /// The settings of folder `name`.
    pub fn settings(&self, name: &str) -> ObjectStoreSettings {
        let mut s = ObjectStoreSettings::new(format!("{}/{name}", self.base));
        for (k, v) in &self.options {
            s = s.option(k.clone(), v.clone());
        }
        s
    }

    /// Puts object `object` (a name under the folder, `/` allowed) holding `text`
    /// into folder `name`, making a local folder when needed.
    pub fn put(&self, name: &str, object: &str, text: &str) {
        let folder = self.settings(name).open(true).expect("the folder");
        let path = folder.child(object);
        crate::runtime::handle().block_on(async {
            folder
                .store
                .put(&path, PutPayload::from(text.as_bytes().to_vec()))
                .await
                .unwrap_or_else(|e| panic!("object {object:?} not written: {e}"));
        });
    }

    /// Every object of folder `name` with its text (staged ones included when
    /// asked); one gone between the listing and its read (a staged object moved
    /// into place meanwhile) is left out.
    pub fn objects(&self, name: &str, staged: bool) -> Vec<(String, String)> {
        let settings = self.settings(name);
        let Ok(folder) = settings.open(false) else {
            return Vec::new();
        };
        crate::runtime::handle().block_on(async {
            let mut out = Vec::new();
            let mut listing = folder.store.list(Some(&folder.prefix));
            while let Some(meta) = listing.next().await {
                let meta = meta.expect("a listing");
                let object = folder.name(&meta.location);
                if !staged && !readable(&object) {
                    continue;
                }
                let got = match folder.store.get(&meta.location).await {
                    Ok(got) => got,
                    // Moved away since the listing (a sink's staged object).
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => panic!("object {object:?}: {e}"),
                };
                let bytes = got.bytes().await.expect("its bytes");
                out.push((object, String::from_utf8_lossy(&bytes).into_owned()));
            }
            out.sort();
            out
        })
    }
}

impl Target for ObjectsTarget {
    type Source = ObjectSource;
    type Sink = ObjectSink;

    fn server(&self) -> String {
        self.base.clone()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        // A folder with `partitions` empty objects: the kit writes them afterwards.
        self.partitions_of(&name, partitions);
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        let parts = self.partitions_in(stream).max(1);
        let mut texts = vec![String::new(); parts];
        for (i, v) in values.iter().enumerate() {
            texts[i % parts].push_str(v);
            texts[i % parts].push('\n');
        }
        let folder = self.settings(stream).open(true).expect("the folder");
        crate::runtime::handle().block_on(async {
            for (i, text) in texts.into_iter().enumerate() {
                let path = folder.child(&format!("in-{i:03}.txt"));
                folder
                    .store
                    .put(&path, PutPayload::from(text.into_bytes()))
                    .await
                    .expect("an object written");
            }
        });
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.objects(stream, false)
            .into_iter()
            .flat_map(|(_, text)| text.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    fn source(&self, stream: &str) -> ObjectSource {
        ObjectSource::new(self.settings(stream)).tail(false)
    }

    fn unreachable_source(&self) -> ObjectSource {
        let nowhere = ObjectStoreSettings::new("s3://nowhere/in")
            .option("aws_endpoint", "http://127.0.0.1:1")
            .option("aws_allow_http", "true")
            .option("aws_region", "us-east-1")
            .option("aws_skip_signature", "true")
            .option("timeout", "2s");
        // No patience: the server never answers, so no outage to ride out.
        ObjectSource::new(nowhere)
            .tail(false)
            .patience(Duration::ZERO)
    }

    fn sink(&self, stream: &str, _id: &str) -> ObjectSink {
        ObjectSink::new(self.settings(stream)).parts(2)
    }

    fn value(item: ObjectLine<String>) -> Option<String> {
        Some(item.value)
    }

    fn record(value: String) -> String {
        value
    }

    fn exactly_once(&self) -> bool {
        true
    }
}

impl ObjectsTarget {
    fn partitions_of(&self, name: &str, partitions: usize) {
        let folder = self.settings(name).open(true).expect("the folder");
        crate::runtime::handle().block_on(async {
            // A marker of the partition count, hidden from sources (a `.` name).
            let path = folder.child(".partitions");
            folder
                .store
                .put(&path, PutPayload::from(partitions.to_string().into_bytes()))
                .await
                .expect("a marker written");
        });
    }

    fn partitions_in(&self, name: &str) -> usize {
        self.objects(name, true)
            .into_iter()
            .find(|(o, _)| o == ".partitions")
            .and_then(|(_, t)| t.parse().ok())
            .unwrap_or(1)
    }
}

/// `PUT /{bucket}` on the S3 server at `endpoint` (`http://host:port`).
fn make_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("cannot reach the S3 server at {endpoint}: {e}"));
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("a request sent");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "making bucket {bucket} at {endpoint}: {}",
        answer.lines().next().unwrap_or_default()
    );
}
