//! `riffle run --backup s3://...` and `riffle recovery restore s3://...` against a real
//! S3-compatible HTTP server, configured only through the environment variables a user
//! sets (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`).
//!
//! The server is the one scripts/test.d/40-s3.sh starts (moto in server mode) and
//! announces in `RIFFLE_TEST_S3_ENDPOINT`; without it the test skips with a note, or
//! fails under `CI=true`.

mod common;
use common::{sorted_lines, text};

use std::io::{Read, Write};
use std::process::{Command, Output};

/// The S3 variables for the test server, as a user would export them.
fn s3_env() -> Option<Vec<(&'static str, String)>> {
    match std::env::var("RIFFLE_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let var = |name: &str, default: &str| {
                std::env::var(name).unwrap_or_else(|_| default.to_string())
            };
            Some(vec![
                ("AWS_ENDPOINT", endpoint),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_REGION", var("RIFFLE_TEST_S3_REGION", "us-east-1")),
                (
                    "AWS_ACCESS_KEY_ID",
                    var("RIFFLE_TEST_S3_ACCESS_KEY_ID", "riffle-test"),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    var("RIFFLE_TEST_S3_SECRET_ACCESS_KEY", "riffle-test-secret"),
                ),
            ])
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but RIFFLE_TEST_S3_ENDPOINT is not set: scripts/test.d/40-s3.sh \
             should have started the S3-compatible server"
        ),
        _ => {
            eprintln!(
                "skipping the S3 backup test: RIFFLE_TEST_S3_ENDPOINT is not set \
                 (scripts/test.d/40-s3.sh starts a server)"
            );
            None
        }
    }
}

fn riffle(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    // Only the variables given here point object_store anywhere.
    for alias in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    ] {
        cmd.env_remove(alias);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("the riffle binary runs")
}

/// Creates `bucket` with a plain HTTP `PUT /bucket` (the S3 API's CreateBucket; the
/// test server does not ask for a signature).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint
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
}

#[test]
fn a_recovery_store_backed_up_to_an_s3_server_restores_and_resumes() {
    let Some(env) = s3_env() else { return };
    let bucket = format!("riffle-backup-{}", std::process::id());
    create_bucket(&env[0].1, &bucket);
    let backup = format!("s3://{bucket}/state");

    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.csv");
    let mut text_in = String::new();
    for i in 0..200_000u64 {
        text_in.push_str(&format!("k{},{}\n", i % 100, i));
    }
    std::fs::write(&events, text_in).unwrap();
    let events_param = format!("events={}", events.display());

    let clean = tmp.path().join("clean");
    let out = riffle(
        &[],
        &[
            "run",
            "windowed-counts",
            "-P",
            &events_param,
            "-P",
            &format!("out={}", clean.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let store = tmp.path().join("store").display().to_string();
    let out = riffle(&[], &["recovery", "init", &store, "--partitions", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = tmp.path().join("out");
    let out = riffle(
        &env,
        &[
            "run",
            "windowed-counts",
            "-P",
            &events_param,
            "-P",
            &format!("out={}", written.display()),
            "--recovery",
            &store,
            "--epoch-interval",
            "5ms",
            "--snapshot-interval",
            "10ms",
            "--backup",
            &backup,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The backup is on the server: restored into a new folder it is a store of the
    // same flow with a committed epoch.
    let restored = tmp.path().join("restored").display().to_string();
    let out = riffle(&env, &["recovery", "restore", &backup, &restored]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("restored 2 partition(s) from {backup}")),
        "{}",
        text(&out.stdout)
    );
    let out = riffle(&[], &["recovery", "show", &restored]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("flow:       windowed-counts"), "{shown}");
    assert!(shown.contains("committed:  epoch "), "{shown}");

    // Resuming the flow from the restored store leaves exactly what the clean run
    // wrote.
    let out = riffle(
        &[],
        &[
            "run",
            "windowed-counts",
            "-P",
            &events_param,
            "-P",
            &format!("out={}", written.display()),
            "--recovery",
            &restored,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sorted_lines(&written), sorted_lines(&clean));

    // Another prefix of the same bucket holds no backup.
    let elsewhere = format!("s3://{bucket}/other");
    let out = riffle(
        &env,
        &[
            "recovery",
            "restore",
            &elsewhere,
            &tmp.path().join("x").display().to_string(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("{elsewhere}: no backup here")),
        "{}",
        text(&out.stderr)
    );
}
