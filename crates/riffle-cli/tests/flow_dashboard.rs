//! `riffle flow run` records its run in the project's metadata store, with a
//! sample of each processor every second and one at the end (what `riffle ui`'s
//! Flows page draws); a store it cannot write to is a warning, never a stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riffle_pipeline::metadata::{MetadataStore, SqliteStore};

/// A child killed if the test fails before it is waited for.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `riffle flow run notes` with `args`, returns it and its base URL.
fn start_notes(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (KillOnDrop, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle"));
    command
        .current_dir(dir)
        .env_remove("RIFFLE_METADATA_URL")
        .args(["flow", "run", "notes", "--addr", "127.0.0.1:0", "-P"])
        .arg(format!("out={}", dir.join("notes.jsonl").display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = KillOnDrop(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (guard, base)
}

/// SIGTERM, then the exit and stderr.
fn stop(mut guard: KillOnDrop) -> (std::process::ExitStatus, String) {
    let child = guard.0.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let done = child.wait_with_output().unwrap();
    (
        done.status,
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

fn post_note(base: &str) {
    let answer = reqwest::blocking::Client::new()
        .post(format!("{base}/notes"))
        .body(r#"{"author": "ann", "text": "buy tea"}"#)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[test]
fn a_flow_run_and_its_samples_land_in_the_projects_store() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let (guard, base) = start_notes(dir.path(), &["--project", &project.to_string_lossy()], &[]);
    post_note(&base);
    // While it runs, the store has the run, without an end, and a sample a second.
    let path = project.join(".riffle/metadata.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let found = SqliteStore::open(&path).ok().and_then(|store| {
            let run = store
                .flow_runs(Some("notes"), 10)
                .ok()?
                .into_iter()
                .next()?;
            let samples = store.flow_samples(&run.id).ok()?;
            let times: std::collections::BTreeSet<i64> = samples.iter().map(|s| s.at_ms).collect();
            (times.len() >= 2).then_some(run)
        });
        if let Some(run) = found {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "no flow run with two samples in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run.ended_ms, None, "still running");
    assert!(
        run.addr.starts_with("127.0.0.1:") && base.ends_with(&run.addr),
        "{} {base}",
        run.addr
    );
    assert!(run.last_sample_ms.is_some());

    let (status, stderr) = stop(guard);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    // After the drain: the end, and a last sample with the note counted.
    let store = SqliteStore::open(&path).unwrap();
    let runs = store.flow_runs(None, 10).unwrap();
    assert_eq!(runs.len(), 1);
    let ended = &runs[0];
    assert_eq!(ended.id, run.id);
    assert_eq!(ended.flow, "notes");
    assert_eq!(ended.error, None);
    let end = ended.ended_ms.expect("the end is recorded");
    assert!(end >= ended.started_ms);
    let samples = store.flow_samples(&run.id).unwrap();
    let collector: Vec<_> = samples
        .iter()
        .filter(|s| s.processor == "POST /notes")
        .collect();
    assert!(collector.len() >= 3, "{samples:?}");
    let last = collector.last().unwrap();
    assert_eq!(last.kind, "collector");
    assert_eq!((last.items_in, last.items_out), (1, 1), "{last:?}");
    // HTTP processors are served by the one listener: riffle-flow counts no
    // replicas for them (only consumers have pools).
    assert_eq!(last.backlog, None, "{last:?}");
    assert_eq!(Some(last.at_ms), ended.last_sample_ms);
    assert!(last.latency_p50_ms.is_some(), "{last:?}");
    // Every sample time has every processor.
    let processors: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.processor.as_str()).collect();
    assert!(processors.len() >= 2, "{processors:?}");
    assert_eq!(samples.len() % processors.len(), 0, "{samples:?}");
}

#[test]
fn a_store_that_cannot_be_opened_is_a_warning_and_the_flow_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, base) = start_notes(
        dir.path(),
        &[],
        &[("RIFFLE_METADATA_URL", "mysql://nobody@127.0.0.1/riffle")],
    );
    post_note(&base);
    std::thread::sleep(Duration::from_millis(1200));
    post_note(&base);
    let (status, stderr) = stop(guard);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: this flow run is not recorded for the dashboard")
            && stderr.contains("mysql://nobody@127.0.0.1/riffle"),
        "{stderr}"
    );
    assert!(stderr.contains("POST /notes: 2 in, 2 out"), "{stderr}");
    assert!(!dir.path().join(".riffle").exists());
}
