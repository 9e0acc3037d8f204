//! The object source and sink on S3 through a server that goes away: a copy from
//! one folder to another (object source, object sink, a recovery store) runs in
//! a child process (the `copy_role` test of this file) against a private moto
//! server ([`common::PrivateS3`]: killed with SIGKILL, and a new one given every
//! request the old one had received) while the test kills and restarts it.
//!
//! The server goes away twice, each time the moment a chosen request passes the
//! relay ([`PrivateS3::trip_on`]): the source's first listing of its folder, and
//! the sink's first move of a staged object into place. It stays away until the
//! run says on stderr that the store went away: the object store client's own
//! ten retries are spent by then, so the run rides it out only through the
//! connectors' patience (`objects::outage`: a request is tried again for up to
//! 60 s, said once on stderr). Every line must then be in exactly one visible object, whole, and
//! nothing left staged. A server that stays away longer than the sink's patience
//! ends the run with an error naming the folder's URL.
#![cfg(feature = "objects")]

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::Target;
use riffle_connectors::objects::testing::ObjectsTarget;
use riffle_connectors::objects::{ObjectSink, ObjectSource, ObjectStoreSettings, STAGING};

use common::PrivateS3;

/// Set, the copy `copy_role` makes: JSON `{from, to, store, patience_ms}`.
const COPY: &str = "RIFFLE_TEST_OBJECTS_COPY";

/// Not a test of its own: with [`COPY`] set, copies the lines of the objects of
/// `from` into objects of `to` in upper case (two sink partitions, the sink's
/// patience `patience_ms` when given), exactly-once on the recovery store
/// `store`, one worker. Exits 0 when the run ends well, 3 (the error on stderr)
/// otherwise.
#[test]
fn copy_role() {
    let Ok(copy) = std::env::var(COPY) else {
        return;
    };
    let copy: serde_json::Value = serde_json::from_str(&copy).expect("the copy's JSON");
    let settings = |key: &str| -> ObjectStoreSettings {
        serde_json::from_value(copy[key].clone()).expect("a folder's settings")
    };
    let mut sink = ObjectSink::new(settings("to")).parts(2);
    if let Some(ms) = copy["patience_ms"].as_u64() {
        sink = sink.patience(Duration::from_millis(ms));
    }
    let flow = Dataflow::new("copy");
    flow.input("in", ObjectSource::new(settings("from")).tail(false))
        .unwrap()
        .map("upper", |line| {
            // Slow enough that snapshots and commits go on after the restart
            // (about 2 s for 20,000 lines).
            if line.line % 100 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            line.value.to_uppercase()
        })
        .unwrap()
        .output("out", sink)
        .unwrap();
    let store = copy["store"].as_str().expect("the store's path");
    let outcome = Execution::new()
        .workers(1)
        .epoch_interval(Duration::from_millis(100))
        .recovery(Recovery::new(store).snapshot_interval(Duration::from_millis(200)))
        .run(&flow);
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("copy_role: {why}");
            3
        }
    };
    std::process::exit(code);
}

/// A running `copy_role`, its stderr in a file.
struct CopyRun {
    child: Child,
    stderr: std::path::PathBuf,
}

impl CopyRun {
    /// Starts copying `from` into `to` on the recovery store `store` (made here).
    fn start(
        from: &ObjectStoreSettings,
        to: &ObjectStoreSettings,
        store: &Path,
        patience: Option<Duration>,
    ) -> Self {
        RecoveryStore::init(store, 1).unwrap();
        let copy = serde_json::json!({
            "from": from,
            "to": to,
            "store": store,
            "patience_ms": patience.map(|p| p.as_millis() as u64),
        });
        let stderr = store.with_extension("stderr");
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "copy_role", "--nocapture"])
            .env(COPY, copy.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr }
    }

    /// Whether the run said `text` on stderr so far.
    fn said(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.stderr).is_ok_and(|s| s.contains(text))
    }

    fn finished(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the end of the run (at most `limit`): its status and stderr.
    fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        while !self.finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        match self.child.try_wait().unwrap() {
            Some(status) => (status, stderr),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the copy did not end within {limit:?}; its stderr:\n{stderr}");
            }
        }
    }
}

impl Drop for CopyRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The start of the request that moves a staged object of `folder` into place
/// (a copy onto the folder; a staged object's put goes to `_staging/`).
fn move_into_place(folder: &ObjectStoreSettings) -> String {
    let path = folder.url.trim_start_matches("s3://");
    format!("PUT /{path}/out-")
}

/// Waits until a request of `run` tripped the pattern armed on `s3`; panics
/// with the run's stderr when it does not within 30 s.
fn trips(s3: &PrivateS3, run: &mut CopyRun, what: &str) {
    if !s3.tripped(Duration::from_secs(30)) {
        let stderr = std::fs::read_to_string(&run.stderr).unwrap_or_default();
        panic!(
            "the copy never sent {what} (ended: {}); its stderr:\n{stderr}",
            run.finished()
        );
    }
}

#[test]
fn an_object_copy_on_s3_rides_out_a_server_killed_and_restarted_mid_run() {
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let objects = ObjectsTarget::s3_at(&s3.url());
    let input = objects.create("in", 3);
    let values: Vec<String> = (0..20_000).map(|i| format!("v{i:05}")).collect();
    objects.write(&input, &values);
    let output = objects.create("out", 1);
    let to = objects.settings(&output);

    // Away as the source lists its folder, then mid-run as the sink moves its
    // first object into place (the request dropped: it never reached the server).
    s3.trip_on(&format!("prefix={input}"));
    let dir = tempfile::tempdir().unwrap();
    let mut run = CopyRun::start(
        &objects.settings(&input),
        &to,
        &dir.path().join("store"),
        None,
    );
    trips(&s3, &mut run, "a listing of its folder");
    s3.trip_on(&move_into_place(&to));
    s3.restart_when(|| run.said("the store went away while listing the folder"));
    trips(&s3, &mut run, "a move into place");
    s3.restart_when(|| run.said("the store went away while moving object"));
    let (status, stderr) = run.wait(Duration::from_secs(60));
    assert!(status.success(), "the run should ride out both: {stderr}");

    for said in [
        "the store went away while listing the folder",
        "listing the folder goes on",
        "the store went away while moving object",
        "into place goes on",
    ] {
        assert!(stderr.contains(said), "{said:?} not said: {stderr}");
    }
    // The client's own retries found no server either.
    let tried = s3.refused();
    assert!(
        tried.iter().any(|r| r.starts_with(&move_into_place(&to))),
        "no move into place tried while the server was down: {tried:?}"
    );

    let all = objects.objects(&output, true);
    let staged: Vec<_> = all.iter().filter(|(o, _)| o.starts_with(STAGING)).collect();
    assert!(staged.is_empty(), "left staged: {staged:?}");
    let visible = objects.objects(&output, false);
    for (object, text) in &visible {
        assert!(
            text.ends_with('\n'),
            "object {object:?} is not whole: {text:?}"
        );
    }
    let mut got = objects.read(&output);
    got.sort();
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "lines lost or doubled through the restarts"
    );
    assert_eq!(got, want);
}

#[test]
fn an_outage_longer_than_the_patience_ends_the_run_naming_the_folder() {
    let Some(mut s3) = PrivateS3::start() else {
        return;
    };
    let objects = ObjectsTarget::s3_at(&s3.url());
    let output = objects.create("out", 1);
    let local = ObjectsTarget::local();
    let input = local.create("in", 1);
    let values: Vec<String> = (0..30_000).map(|i| format!("v{i:05}")).collect();
    local.write(&input, &values);

    let dir = tempfile::tempdir().unwrap();
    let to = objects.settings(&output);
    s3.trip_on(&move_into_place(&to));
    let mut run = CopyRun::start(
        &local.settings(&input),
        &to,
        &dir.path().join("store"),
        Some(Duration::from_secs(1)),
    );
    trips(&s3, &mut run, "a move into place");
    s3.kill();
    let (status, stderr) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "the run should fail: {stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("copy_role: "))
        .unwrap_or_else(|| panic!("no error on stderr: {stderr}"));
    for part in [
        "\"out\"",
        to.url.as_str(),
        "the store did not come back within 1s",
    ] {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
}
