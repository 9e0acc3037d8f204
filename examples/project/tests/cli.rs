//! The project's binary answers the riffle subcommands for its own pipeline.

use std::process::Command;

fn inventory(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(args)
        .arg("--project")
        .arg(dir)
        .env_remove("RIFFLE_METADATA_URL")
        .env_remove("RIFFLE_ARTIFACTS_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn run_then_list_show_cache_and_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = inventory(
        dir.path(),
        &[
            "run",
            "--workflow",
            "inventory",
            "--config",
            "prod",
            "--quiet",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("succeeded: 4 steps (0 cached)"), "{text}");
    let run_id = text.split_whitespace().nth(1).unwrap().to_string();

    let (ok, text) = inventory(
        dir.path(),
        &[
            "run",
            "--workflow",
            "inventory",
            "--config",
            "prod",
            "--quiet",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("succeeded: 4 steps (3 cached)"), "{text}");

    let (ok, text) = inventory(dir.path(), &["runs", "list"]);
    assert!(ok && text.matches("inventory").count() >= 2, "{text}");

    let (ok, text) = inventory(dir.path(), &["runs", "show", &run_id[..13], "--logs"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("reorder") && text.contains("param  lead_days = 2"),
        "{text}"
    );
    assert!(text.contains("the purchasing team was told"), "{text}");

    let (ok, text) = inventory(dir.path(), &["cache", "ls"]);
    assert!(ok && text.contains("3 entries"), "{text}");
    let hash = text
        .lines()
        .find(|l| l.contains(" reorder "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .to_string();
    let (ok, text) = inventory(dir.path(), &["lineage", &hash]);
    assert!(ok, "{text}");
    assert!(
        text.contains("inventory.stock") && text.contains("inventory.demand"),
        "{text}"
    );

    let (ok, text) = inventory(
        dir.path(),
        &["run", "--job", "inventory.reorder", "--quiet"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("succeeded: 3 steps (2 cached)"), "{text}");

    let (ok, text) = inventory(dir.path(), &["cache", "clear", "--purge"]);
    assert!(ok && text.contains("forgot"), "{text}");
    let (_, text) = inventory(dir.path(), &["cache", "ls"]);
    assert!(text.contains("0 entries"), "{text}");

    let (ok, text) = inventory(dir.path(), &["run", "--workflow", "nope"]);
    assert!(!ok && text.contains("no pipeline named \"nope\""), "{text}");
    let (ok, text) = inventory(dir.path(), &["run", "--job", "inventory.nope"]);
    assert!(!ok && text.contains("no step \"nope\""), "{text}");
}

#[test]
fn ctrl_c_stops_a_run_and_records_it_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(["run", "--workflow", "maintenance", "--quiet", "--project"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt only once the run is under way: the handler is in place by then (a
    // SIGINT before it, on a slow machine, ends the process with nothing recorded).
    let waiting = std::time::Instant::now();
    loop {
        let (_, list) = inventory(dir.path(), &["runs", "list"]);
        if list
            .lines()
            .any(|l| l.contains("maintenance") && l.contains("running"))
        {
            break;
        }
        assert!(
            waiting.elapsed() < std::time::Duration::from_secs(30),
            "the run never showed as running: {list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    let (ok, list) = inventory(dir.path(), &["runs", "list"]);
    assert!(ok, "{list}");
    let row = list.lines().find(|l| l.contains("maintenance")).unwrap();
    assert!(row.contains("cancelled"), "{list}");
}

#[test]
fn the_binary_speaks_of_itself_by_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_inventory"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: inventory "), "{help}");
    // Riffle's own benchmark workloads are not the project's.
    assert!(!help.contains("bench"), "{help}");
    assert!(help.contains("runs") && help.contains("ui"), "{help}");
    let (ok, text) = inventory(dir.path(), &["run"]);
    assert!(!ok && text.contains("`inventory run --list`"), "{text}");
}
