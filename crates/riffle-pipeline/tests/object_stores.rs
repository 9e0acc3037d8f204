//! The artifact store against a real S3-compatible HTTP server: `s3://` URLs given to
//! [`ArtifactStore::from_url`], with the endpoint and credentials in the environment
//! variables object_store reads (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
//!
//! The server is the one scripts/test.d/40-s3.sh starts (moto in server mode) and
//! announces in `RIFFLE_TEST_S3_ENDPOINT`; without it these tests skip with a note, or
//! fail under `CI=true`. What the store wrote is checked through a second, independent
//! S3 client (object_store's own builder, configured directly), so a store that only
//! kept objects in memory would fail.

use std::io::{Read, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use riffle_pipeline::{ArtifactStore, codec};

/// The test server's endpoint and credentials, from scripts/test.d/40-s3.sh.
struct Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
}

fn server() -> Option<Server> {
    match std::env::var("RIFFLE_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let var = |name: &str, default: &str| {
                std::env::var(name).unwrap_or_else(|_| default.to_string())
            };
            let server = Server {
                endpoint,
                access_key: var("RIFFLE_TEST_S3_ACCESS_KEY_ID", "riffle-test"),
                secret_key: var("RIFFLE_TEST_S3_SECRET_ACCESS_KEY", "riffle-test-secret"),
                region: var("RIFFLE_TEST_S3_REGION", "us-east-1"),
            };
            point_object_store_at(&server);
            Some(server)
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but RIFFLE_TEST_S3_ENDPOINT is not set: scripts/test.d/40-s3.sh \
             should have started the S3-compatible server"
        ),
        _ => {
            eprintln!(
                "skipping the S3 object-store test: RIFFLE_TEST_S3_ENDPOINT is not set \
                 (scripts/test.d/40-s3.sh starts a server)"
            );
            None
        }
    }
}

/// Sets the variables `ArtifactStore::from_url` hands to object_store, as a user would
/// in their shell, and clears the aliases that would otherwise compete with them.
fn point_object_store_at(server: &Server) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test in this binary calls this before it starts any thread or
        // store of its own, and `Once` makes the others wait until it is done, so no
        // other thread of this process reads the environment meanwhile.
        unsafe {
            std::env::set_var("AWS_ENDPOINT", &server.endpoint);
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("AWS_REGION", &server.region);
            std::env::set_var("AWS_ACCESS_KEY_ID", &server.access_key);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", &server.secret_key);
            for alias in [
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3",
                "AWS_SESSION_TOKEN",
                "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
            ] {
                std::env::remove_var(alias);
            }
        }
    });
}

/// A bucket of its own for each test, made with a plain HTTP `PUT /bucket` (the S3
/// API's CreateBucket; the test server does not ask for a signature).
fn new_bucket(server: &Server, what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "riffle-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let host = server
        .endpoint
        .strip_prefix("http://")
        .expect("RIFFLE_TEST_S3_ENDPOINT is an http:// URL")
        .trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("connecting to the S3 server at {host}: {e}"));
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {response}"
    );
    bucket
}

/// A second client for the same bucket, configured directly rather than through the
/// environment, to look at the objects behind the store's back.
struct Bucket {
    s3: AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    fn open(server: &Server, bucket: &str) -> Self {
        let s3 = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region(&server.region)
            .with_access_key_id(&server.access_key)
            .with_secret_access_key(&server.secret_key)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self { s3, rt }
    }

    fn read(&self, key: &str) -> Option<Bytes> {
        self.rt.block_on(async {
            match self.s3.get(&Path::from(key)).await {
                Ok(got) => Some(got.bytes().await.unwrap()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("reading {key}: {e}"),
            }
        })
    }

    fn write(&self, key: &str, bytes: &'static [u8]) {
        self.rt
            .block_on(
                self.s3
                    .put(&Path::from(key), PutPayload::from_static(bytes)),
            )
            .unwrap();
    }
}

fn artifact_key(prefix: &str, hash: &riffle_pipeline::ContentHash) -> String {
    let hex = hash.to_hex();
    format!("{prefix}/artifacts/{}/{hex}", &hex[..2])
}

#[test]
fn artifacts_round_trip_through_an_s3_server_and_are_deleted_there() {
    let Some(server) = server() else { return };
    let bucket = new_bucket(&server, "roundtrip");
    let url = format!("s3://{bucket}/runs/prefix");
    let store = ArtifactStore::from_url(&url).unwrap();
    assert_eq!(store.url(), url);

    let value = codec::encode(&(0..10_000u32).collect::<Vec<_>>(), "numbers").unwrap();
    let uri = store.put(&value).unwrap();
    let hex = value.hash.to_hex();
    assert_eq!(uri, format!("{url}/artifacts/{}/{hex}", &hex[..2]));
    assert_eq!(store.get(&value.hash).unwrap().unwrap(), value.bytes);

    // The object is on the server, under the URL's prefix, byte for byte ...
    let raw = Bucket::open(&server, &bucket);
    let key = artifact_key("runs/prefix", &value.hash);
    assert_eq!(raw.read(&key).unwrap(), value.bytes);
    // ... so a store opened afresh from the same URL finds it.
    let again = ArtifactStore::from_url(&url).unwrap();
    assert_eq!(again.get(&value.hash).unwrap().unwrap(), value.bytes);

    // Writing the same bytes twice is the same object.
    assert_eq!(again.put(&value).unwrap(), uri);

    store.delete(&value.hash).unwrap();
    assert!(raw.read(&key).is_none(), "{key} is still on the server");
    assert!(store.get(&value.hash).unwrap().is_none());
    assert!(again.get(&value.hash).unwrap().is_none());
    // Deleting what is gone is fine.
    store.delete(&value.hash).unwrap();
}

#[test]
fn a_tampered_or_missing_object_on_the_server_reads_as_absent() {
    let Some(server) = server() else { return };
    let bucket = new_bucket(&server, "tamper");
    let store = ArtifactStore::from_url(&format!("s3://{bucket}/p")).unwrap();
    let raw = Bucket::open(&server, &bucket);

    let value = codec::encode(&"the real bytes", "text").unwrap();
    store.put(&value).unwrap();
    let key = artifact_key("p", &value.hash);
    raw.write(&key, b"someone else's bytes");
    assert_eq!(raw.read(&key).unwrap(), &b"someone else's bytes"[..]);
    assert!(store.get(&value.hash).unwrap().is_none());
    // Putting it again repairs it.
    store.put(&value).unwrap();
    assert_eq!(store.get(&value.hash).unwrap().unwrap(), value.bytes);

    let never_stored = codec::encode(&"never stored", "text").unwrap();
    assert!(store.get(&never_stored.hash).unwrap().is_none());
}

#[test]
fn named_files_round_trip_beside_the_artifacts_on_the_server() {
    let Some(server) = server() else { return };
    let bucket = new_bucket(&server, "files");
    let store = ArtifactStore::from_url(&format!("s3://{bucket}/backups/state")).unwrap();
    let raw = Bucket::open(&server, &bucket);

    let part: Bytes = (0..=255u8).cycle().take(300_000).collect::<Vec<_>>().into();
    store.put_file("part-0.sqlite3", part.clone()).unwrap();
    assert_eq!(store.get_file("part-0.sqlite3").unwrap().unwrap(), part);
    assert_eq!(raw.read("backups/state/part-0.sqlite3").unwrap(), part);

    // A later write replaces the file whole.
    store
        .put_file("part-0.sqlite3", Bytes::from_static(b"newer"))
        .unwrap();
    assert_eq!(
        store.get_file("part-0.sqlite3").unwrap().unwrap(),
        &b"newer"[..]
    );
    assert!(store.get_file("part-1.sqlite3").unwrap().is_none());

    for bad in ["../escape", "a/b", ".hidden"] {
        let err = store.put_file(bad, Bytes::new()).unwrap_err().to_string();
        assert!(err.contains("not a plain file name"), "{bad:?}: {err}");
    }
}

#[test]
fn two_prefixes_in_one_bucket_do_not_see_each_others_objects() {
    let Some(server) = server() else { return };
    let bucket = new_bucket(&server, "prefixes");
    let one = ArtifactStore::from_url(&format!("s3://{bucket}/team")).unwrap();
    // A prefix that starts with the other's name as text is still another folder.
    let two = ArtifactStore::from_url(&format!("s3://{bucket}/team-b")).unwrap();

    let only_one = codec::encode(&"only in one", "text").unwrap();
    one.put(&only_one).unwrap();
    one.put_file("part-0.sqlite3", Bytes::from_static(b"one's"))
        .unwrap();
    assert!(two.get(&only_one.hash).unwrap().is_none());
    assert!(two.get_file("part-0.sqlite3").unwrap().is_none());

    let both = codec::encode(&"in both", "text").unwrap();
    one.put(&both).unwrap();
    two.put(&both).unwrap();
    two.put_file("part-0.sqlite3", Bytes::from_static(b"two's"))
        .unwrap();
    one.delete(&both.hash).unwrap();
    assert!(one.get(&both.hash).unwrap().is_none());
    assert_eq!(two.get(&both.hash).unwrap().unwrap(), both.bytes);
    assert_eq!(
        one.get_file("part-0.sqlite3").unwrap().unwrap(),
        &b"one's"[..]
    );
    assert_eq!(
        two.get_file("part-0.sqlite3").unwrap().unwrap(),
        &b"two's"[..]
    );
}

#[test]
fn a_bucket_that_does_not_exist_is_an_error_naming_the_url() {
    let Some(_server) = server() else { return };
    let url = "s3://riffle-no-such-bucket/p";
    let store = ArtifactStore::from_url(url).unwrap();
    let value = codec::encode(&1u8, "n").unwrap();
    let err = store.put(&value).unwrap_err().to_string();
    assert!(err.contains(url), "{err}");
    let err = store
        .put_file("part-0.sqlite3", Bytes::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains(url), "{err}");
}
