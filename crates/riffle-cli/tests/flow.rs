//! `riffle flow run` as a user runs it: the bundled `notes` flow on a free port,
//! a note posted and written before the answer, a bad one refused naming the
//! field, `/metrics`, then SIGTERM drains and exits 0; an unknown flow is named.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn notes_runs_answers_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("notes.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffle"))
        // The run's record goes to the project's store: this folder's.
        .current_dir(dir.path())
        .args(["flow", "run", "notes", "--addr", "127.0.0.1:0", "-P"])
        .arg(format!("out={}", out.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = KillOnDrop(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let client = reqwest::blocking::Client::new();
    let answer = client
        .post(format!("{base}/notes"))
        .body(r#"{"author": "ann", "text": "buy tea"}"#)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Answered means on disk.
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.trim(), r#"{"author":"ann","text":"buy tea"}"#);
    let bad = client
        .post(format!("{base}/notes"))
        .body(r#"{"author": "bob", "text": 7}"#)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<serde_json::Value>().unwrap()["field"], "text");
    let echo: Vec<u64> = client
        .get(format!("{base}/notes/3/echo?times=2"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(echo, [3, 3]);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"riffle_flow_items_out_total{flow="notes",processor="POST /notes",kind="collector"} 1"#),
        "{metrics}"
    );
    let child = guard.0.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("POST /notes: 2 in, 1 out"), "{stderr}");
}

#[test]
fn an_unknown_flow_is_named_with_the_registered_ones() {
    let done = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["flow", "run", "nope", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!done.status.success());
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("no flow named \"nope\"; registered: kafka-to-postgres, notes"),
        "{stderr}"
    );
}

#[test]
fn plan_apply_and_destroy_the_primitives_of_a_flow_from_the_command_line() {
    use riffle_connectors::kafka::testing::{KafkaTarget, unique};
    use riffle_connectors::postgres::testing::PostgresTarget;
    let (Some(kafka), Some(pg)) = (KafkaTarget::from_env(), PostgresTarget::from_env()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("cli-managed");
    let table = topic.replace('-', "_");
    let riffle = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(dir.path())
            .args([
                "flow",
                what,
                "kafka-to-postgres",
                "--env",
                "test",
                "-P",
                "partitions=2",
            ])
            .args(["-P", &format!("brokers={}", kafka.brokers())])
            .args(["-P", &format!("topic={topic}")])
            .args(["-P", &format!("postgres={}", pg.settings.url)])
            .args(["-P", &format!("table={table}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "riffle flow {what}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let plan = riffle("plan");
    assert!(
        plan.contains(&format!("+ create kafka topic {topic} at brokers")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("+ create postgres table {table} at")),
        "{plan}"
    );
    riffle("apply");
    assert!(
        dir.path()
            .join(".riffle/flows/kafka-to-postgres-test.json")
            .exists()
    );
    let kept = riffle("plan");
    assert_eq!(
        kept.lines().filter(|l| l.starts_with("= keep")).count(),
        2,
        "{kept}"
    );
    let destroyed = riffle("destroy");
    assert_eq!(
        destroyed
            .lines()
            .filter(|l| l.starts_with("- delete"))
            .count(),
        2,
        "{destroyed}"
    );
    assert!(!riffle_connectors::postgres::admin::table_exists(&pg.settings, &table).unwrap());
}

#[test]
fn settings_come_from_riffle_toml_for_the_environment_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("riffle.toml"),
        "[env.test.settings]\nbrokers = \"127.0.0.1:9\"\ntopic = \"people\"\n",
    )
    .unwrap();
    let riffle = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(dir.path())
            .args(args)
            .env_remove("RIFFLE_POSTGRES")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // brokers and topic came from the file: the first setting missing is postgres.
    let err = riffle(&["flow", "plan", "kafka-to-postgres", "--env", "test"]);
    assert!(err.contains("setting \"postgres\" is missing"), "{err}");
    assert!(err.contains("[env.ENV.settings]"), "{err}");
    let err = riffle(&["flow", "plan", "kafka-to-postgres", "--env", "prod"]);
    assert!(
        err.contains("no environment \"prod\" (known: test)"),
        "{err}"
    );
}

/// The validator a setup file installed, from `var`; `None` (a note) when it is
/// not set, a panic under `CI=true`.
fn validator(var: &str, setup: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but {var} is not set: scripts/test.d/{setup} installs it")
        }
        _ => {
            eprintln!("SKIPPED: {var} is not set (scripts/test.d/{setup})");
            None
        }
    }
}

#[test]
fn flow_manifests_pass_the_kubernetes_and_keda_schemas() {
    let (Some(kubernetes), Some(keda)) = (
        validator("RIFFLE_TEST_KUBERNETES_VALIDATE", "70-kubernetes.sh"),
        validator("RIFFLE_TEST_KEDA_VALIDATE", "71-keda.sh"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let riffle = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let consumers = riffle(&[
        "flow",
        "manifests",
        "kafka-to-postgres",
        "--image",
        "registry.example/app:1.0",
        "--env",
        "prod",
        "-P",
        "brokers=kafka-0.kafka:9092",
        "-P",
        "topic=people",
        "-P",
        "postgres=postgres://app@db/app",
        "-P",
        "table=people",
        "-P",
        "append_table=people_log",
        "-P",
        "min_replicas=0",
        "-P",
        "max_replicas=6",
    ]);
    // The notes service scales across pods on its requests in flight, which
    // KEDA reads through Prometheus: refused without a server, named.
    let without = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .current_dir(dir.path())
        .args([
            "flow",
            "manifests",
            "notes",
            "--image",
            "registry.example/app:1.0",
        ])
        .args(["-P", "max_replicas=4"])
        .output()
        .unwrap();
    assert!(!without.status.success());
    let said = String::from_utf8_lossy(&without.stderr);
    assert!(
        said.contains("\"notes\"") && said.contains("--prometheus"),
        "{said}"
    );
    let http = riffle(&[
        "flow",
        "manifests",
        "notes",
        "--image",
        "registry.example/app:1.0",
        "-P",
        "max_replicas=4",
        "--prometheus",
        "http://prometheus.monitoring:9090",
    ]);
    let squeezed_http: String = http.split_whitespace().collect();
    assert!(
        squeezed_http.contains(
            r#""query":"sum(riffle_flow_in_flight{flow=\"notes\",processor=~\"notes.*\"})""#
        ),
        "{http}"
    );
    let docs: Vec<&str> = consumers
        .split("---\n")
        .chain(http.split("---\n"))
        .filter(|d| !d.trim().is_empty())
        .collect();
    let (scaled, core): (Vec<&str>, Vec<&str>) = docs
        .iter()
        .partition(|d| d.contains(r#""kind": "ScaledObject""#));
    assert_eq!(
        scaled.len(),
        3,
        "one per consumer, one for the notes service"
    );
    assert_eq!(
        core.len(),
        6,
        "a Deployment per unit, a Service per HTTP unit"
    );
    let squeezed: String = consumers.split_whitespace().collect();
    for needle in [
        r#""--only","upsert""#,
        r#""consumerGroup":"riffle-flow-people-append""#,
        r#""minReplicaCount":0"#,
        r#""maxReplicaCount":6"#,
        r#""--env","prod""#,
    ] {
        assert!(squeezed.contains(needle), "{needle} in {consumers}");
    }
    let write = |name: &str, docs: &[&str]| {
        let text: String = docs.iter().map(|d| format!("---\n{d}")).collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write("core.yaml", &core);
    write("keda.yaml", &scaled);
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = run(&kubernetes, &["--strict", "-k", "1.30.0", "core.yaml"]);
    assert!(ok, "{said}");
    assert_eq!(said.matches("passed").count(), 6, "{said}");
    let (ok, said) = run("node", &[&keda, "keda.yaml"]);
    assert!(ok, "{said}");
    assert_eq!(said.matches("passed").count(), 3, "{said}");
    // The KEDA schema does refuse a broken object.
    write(
        "broken.yaml",
        &[&scaled[0].replace(r#""maxReplicaCount": 6"#, r#""maxReplicaCount": "six""#)],
    );
    assert!(!run("node", &[&keda, "broken.yaml"]).0);
}

#[test]
fn reload_drains_and_restarts_when_the_program_file_changes() {
    // A copy of the binary, so that changing it changes nothing else.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let program = dir.path().join("riffle");
    std::fs::copy(env!("CARGO_BIN_EXE_riffle"), &program).unwrap();
    let out = dir.path().join("notes.jsonl");
    let mut child = Command::new(&program)
        .current_dir(dir.path())
        .args([
            "flow",
            "run",
            "notes",
            "--addr",
            "127.0.0.1:0",
            "--reload",
            "-P",
        ])
        .arg(format!("out={}", out.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Whatever fails below, the flow does not outlive the test.
    let child = KillOnDrop(Some(child));
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on http://"), "{first}");
    let base = first.rsplit(' ').next().unwrap().to_string();
    let posted = reqwest::blocking::Client::new()
        .post(format!("{base}/notes"))
        .body(r#"{"author": "ann", "text": "before"}"#)
        .send()
        .unwrap();
    assert_eq!(posted.status(), 200);
    // A build replaces the program: here its modification time moves on.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    // (Opened for reading: a running program cannot be opened for writing.)
    std::fs::File::open(&program)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(second.contains("listening on http://"), "{second}");
    let base = second.rsplit(' ').next().unwrap().to_string();
    let posted = reqwest::blocking::Client::new()
        .post(format!("{base}/notes"))
        .body(r#"{"author": "ann", "text": "after"}"#)
        .send()
        .unwrap();
    assert_eq!(posted.status(), 200);
    let mut guard = child;
    let child = guard.0.take().unwrap();
    // SAFETY: signalling our own child (the same process, now the new program).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(
        stderr.contains("changed: draining, then restarting"),
        "{stderr}"
    );
    // The file sink appends: the note from before the restart is kept.
    let notes = std::fs::read_to_string(&out).unwrap();
    assert_eq!(notes.lines().count(), 2, "{notes}");
}

/// Kills the child it holds when dropped (a failed assertion included).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
