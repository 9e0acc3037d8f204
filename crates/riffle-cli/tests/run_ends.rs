//! A pipeline run that ends by a signal is recorded as ended: SIGTERM (how
//! schedulers, Airflow and Kubernetes stop a task) like Ctrl-C, as cancelled; SIGKILL,
//! which no process can answer, as failed and abandoned once the run listing sees
//! that its process is gone. The run is held on its first step by a FIFO as its
//! input file, which blocks until written.

mod common;
use common::text;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn riffle(project: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    cmd.env_remove("RIFFLE_METADATA_URL")
        .env_remove("RIFFLE_ARTIFACTS_URL")
        .args(args)
        .arg("--project")
        .arg(project);
    cmd
}

fn runs_list(project: &Path) -> String {
    let out = riffle(project, &["runs", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Starts `riffle run --workflow sales` reading a FIFO, and waits until its run is
/// recorded as running.
fn start_blocked_run(project: &Path) -> Child {
    let fifo = project.join("sales.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let child = riffle(project, &["run", "--workflow", "sales", "--quiet"])
        .env("RIFFLE_CONFIG_SALES_CSV", &fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !project.join(".riffle/metadata.db").exists() || !runs_list(project).contains("running") {
        assert!(Instant::now() < deadline, "the run was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0);
}

#[test]
fn sigterm_records_the_run_as_cancelled() {
    let project = tempfile::tempdir().unwrap();
    let child = start_blocked_run(project.path());
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let list = runs_list(project.path());
    assert!(list.contains("cancelled"), "{list}");
    assert!(!list.contains("running"), "{list}");
}

#[test]
fn a_run_killed_with_sigkill_is_shown_as_failed_and_abandoned() {
    let project = tempfile::tempdir().unwrap();
    let mut child = start_blocked_run(project.path());
    let pid = child.id();
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let list = runs_list(project.path());
    assert!(list.contains("failed"), "{list}");
    assert!(!list.contains("running"), "{list}");
    let run_id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let out = riffle(project.path(), &["runs", "show", run_id])
        .output()
        .unwrap();
    let show = text(&out.stdout);
    assert!(
        show.contains("abandoned") && show.contains(&format!("process {pid}")),
        "{show}"
    );
}
