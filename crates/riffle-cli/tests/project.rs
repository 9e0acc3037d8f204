//! The project commands as a user runs them: `project-version` and `release` on a git
//! repository the test makes, and `build-dags` proven in a real Apache Airflow 3
//! (installed by `scripts/test.d/50-airflow.sh`, which exports `RIFFLE_TEST_AIRFLOW`
//! and a migrated `RIFFLE_TEST_AIRFLOW_HOME`; without them the Airflow test skips
//! with a note, or fails under `CI=true`).

mod common;
use common::text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn riffle(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the riffle binary runs")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn project_version_and_release_follow_the_tags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = riffle(d, &["project-version"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not inside a git repository"),
        "{}",
        text(&out.stderr)
    );

    git(d, &["init", "-q"]);
    std::fs::write(d.join("a.txt"), "a").unwrap();
    git(d, &["add", "a.txt"]);
    git(d, &["commit", "-q", "-m", "first"]);
    git(d, &["tag", "v1.4"]);
    let out = riffle(d, &["project-version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1.4");

    std::fs::write(d.join("a.txt"), "b").unwrap();
    let out = riffle(d, &["release"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("uncommitted changes (a.txt)"), "{stderr}");
    let out = riffle(d, &["project-version", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let head = git(d, &["rev-parse", "HEAD"]);
    assert_eq!(json["tag"], "v1.4");
    assert_eq!(json["commit"], head.as_str());
    assert_eq!(json["release"], false);
    let dirty = json["dirty"].as_str().unwrap();
    assert_eq!(
        json["version"],
        format!("1.5.dev0+g{}.dirty.{dirty}", &head[..8]).as_str()
    );

    git(d, &["commit", "-q", "-am", "second"]);
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare"]);
    let url = remote.path().display().to_string();
    let out = riffle(d, &["release", "--push", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("tagged v1.5\npushed v1.5 to {url}\n")
    );
    assert_eq!(
        git(remote.path(), &["rev-parse", "v1.5^{commit}"]),
        git(d, &["rev-parse", "HEAD"])
    );
    let out = riffle(d, &["project-version"]);
    assert_eq!(text(&out.stdout).trim(), "1.5");
}

/// Airflow's command line with its own home (a copy of the migrated template), DAG
/// folder and no examples.
struct Airflow {
    program: PathBuf,
    home: PathBuf,
    dags: PathBuf,
}

impl Airflow {
    fn new(template: &Path, program: PathBuf, root: &Path) -> Self {
        let home = root.join("airflow-home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::copy(template.join("airflow.db"), home.join("airflow.db")).unwrap();
        let dags = root.join("dags");
        std::fs::create_dir_all(&dags).unwrap();
        Self {
            program,
            home,
            dags,
        }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .env("AIRFLOW_HOME", &self.home)
            .env(
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                format!("sqlite:///{}", self.home.join("airflow.db").display()),
            )
            .env("AIRFLOW__CORE__DAGS_FOLDER", &self.dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("airflow runs")
    }

    /// The last line of stdout parsed as JSON (Airflow logs warnings before it).
    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "airflow {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        Self::last_json(args, &out)
    }

    fn last_json(args: &[&str], out: &Output) -> serde_json::Value {
        let stdout = text(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('['))
            .unwrap_or_else(|| panic!("no JSON from airflow {args:?}: {stdout}"));
        serde_json::from_str(line).unwrap()
    }
}

fn airflow_or_skip() -> Option<(PathBuf, PathBuf)> {
    match (
        std::env::var("RIFFLE_TEST_AIRFLOW"),
        std::env::var("RIFFLE_TEST_AIRFLOW_HOME"),
    ) {
        (Ok(p), Ok(h)) => Some((PathBuf::from(p), PathBuf::from(h))),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but RIFFLE_TEST_AIRFLOW is not set: scripts/test.d/50-airflow.sh installs it"
            )
        }
        _ => {
            eprintln!(
                "skipping the Airflow test: RIFFLE_TEST_AIRFLOW is not set (source scripts/test.d/50-airflow.sh)"
            );
            None
        }
    }
}

#[test]
fn generated_dags_import_render_and_run_in_airflow() {
    let Some((program, template)) = airflow_or_skip() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let airflow = Airflow::new(&template, program, root.path());
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();

    // The KubernetesPodOperator DAG (the default) and the BashOperator one, under two
    // versions so both live in one DAG folder, as two deployed versions would.
    let k8s_dir = airflow.dags.join("k8s");
    let out = riffle(
        &project,
        &[
            "build-dags",
            "--project-version",
            "1.5",
            "--image",
            "registry.example/riffle:1.5",
            "--out",
            k8s_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bash_dir = airflow.dags.join("bash");
    let out = riffle(
        &project,
        &[
            "build-dags",
            "--operator",
            "bash",
            "--project-version",
            "1.6.dev2+g0123abcd",
            "--out",
            bash_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Both import without errors, and the check does see a broken file.
    let errors = airflow.json(
        &["dags", "list-import-errors", "--local", "-o", "json"],
        &[],
    );
    assert_eq!(errors, serde_json::json!([]), "{errors}");
    std::fs::write(
        airflow.dags.join("broken.py"),
        "from airflow.sdk import DAG, Nope\n",
    )
    .unwrap();
    let args = ["dags", "list-import-errors", "--local", "-o", "json"];
    let out = airflow.run(&args, &[]);
    assert!(!out.status.success());
    let errors = Airflow::last_json(&args, &out);
    assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
    assert!(errors.to_string().contains("broken.py"), "{errors}");
    std::fs::remove_file(airflow.dags.join("broken.py")).unwrap();
    let dags = airflow.json(&["dags", "list", "--local", "-o", "json"], &[]);
    let mut ids: Vec<&str> = dags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["sales__1.5", "sales__1.6.dev2_g0123abcd"]);

    // A task's arguments: the runtime from the logical date, the environment from
    // the Airflow Variable (given here through Airflow's AIRFLOW_VAR_ variables).
    let out = airflow.run(
        &["tasks", "render", "sales__1.5", "fit_trend", "2024-03-01"],
        &[("AIRFLOW_VAR_RIFFLE_ENV", "prod")],
    );
    let rendered = text(&out.stdout);
    assert!(out.status.success(), "{rendered}{}", text(&out.stderr));
    assert!(
        rendered.contains(
            "['run', '--job', 'sales.fit_trend', '--runtime', '2024-03-01 00:00:00', '--config', 'prod', '--no-retries', '--quiet']"
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains("registry.example/riffle:1.5"),
        "{rendered}"
    );

    // The BashOperator DAG runs every step through this binary.
    let reports = root.path().join("reports");
    let reports_env = reports.display().to_string();
    let out = airflow.run(
        &["dags", "test", "sales__1.6.dev2_g0123abcd", "2024-03-01"],
        &[
            ("AIRFLOW_VAR_RIFFLE_ENV", "dev"),
            ("RIFFLE_CONFIG_REPORT_DIR", &reports_env),
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = std::fs::read_to_string(reports.join("sales-2024-03-01.md")).unwrap();
    assert!(report.contains("2024-03-01"), "{report}");
    // Seven steps, seven runs of one job each, recorded in the project's store.
    let out = riffle(&project, &["runs", "list"]);
    let runs = text(&out.stdout);
    assert_eq!(
        runs.lines()
            .filter(|l| l.contains("sales")
                && l.contains("succeeded")
                && l.contains("2024-03-01 00:00:00"))
            .count(),
        7,
        "{runs}"
    );

    // A failing step fails the run and its downstream tasks never run.
    let out = airflow.run(
        &["dags", "test", "sales__1.6.dev2_g0123abcd", "2024-03-02"],
        &[
            ("AIRFLOW_VAR_RIFFLE_ENV", "dev"),
            ("RIFFLE_CONFIG_SALES_CSV", "/nonexistent/sales.csv"),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let runs = airflow.json(
        &[
            "dags",
            "list-runs",
            "sales__1.6.dev2_g0123abcd",
            "-o",
            "json",
        ],
        &[],
    );
    let failed = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["logical_date"]
                .as_str()
                .unwrap()
                .starts_with("2024-03-02")
        })
        .unwrap();
    assert_eq!(failed["state"], "failed", "{runs}");
    let states = airflow.json(
        &[
            "tasks",
            "states-for-dag-run",
            "sales__1.6.dev2_g0123abcd",
            failed["run_id"].as_str().unwrap(),
            "-o",
            "json",
        ],
        &[],
    );
    for task in states.as_array().unwrap() {
        let expected = if task["task_id"] == "read_csv" {
            "failed"
        } else {
            "upstream_failed"
        };
        assert_eq!(task["state"], expected, "{states}");
    }
    assert!(!reports.join("sales-2024-03-02.md").exists());
}

#[test]
fn build_dags_refuses_an_unknown_pipeline_and_keeps_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let out_dir = root.path().join("dags");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep.py"), "# deployed\n").unwrap();
    let out = riffle(
        root.path(),
        &[
            "build-dags",
            "--project-version",
            "1.0",
            "--workflow",
            "nope",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no pipeline named \"nope\""),
        "{}",
        text(&out.stderr)
    );
    assert!(out_dir.join("keep.py").exists());
    // Outside git and without --project-version: a clear error.
    let out = riffle(
        root.path(),
        &["build-dags", "--out", out_dir.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--project-version"), "{stderr}");
    assert!(stderr.contains("not inside a git repository"), "{stderr}");
    assert!(out_dir.join("keep.py").exists());
}

#[test]
fn cluster_manifests_pass_the_kubernetes_schemas() {
    let validator = match std::env::var("RIFFLE_TEST_KUBERNETES_VALIDATE") {
        Ok(v) => PathBuf::from(v),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but RIFFLE_TEST_KUBERNETES_VALIDATE is not set: scripts/test.d/70-kubernetes.sh installs it"
            )
        }
        Err(_) => {
            eprintln!(
                "skipping the manifest validation: RIFFLE_TEST_KUBERNETES_VALIDATE is not set (source scripts/test.d/70-kubernetes.sh)"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = riffle(
        d,
        &[
            "build-manifests",
            "windowed-counts",
            "--processes",
            "3",
            "-w",
            "2",
            "-P",
            "events=/data/events.csv",
            "--recovery-size",
            "5Gi",
            "--project-version",
            "1.5",
            "--out",
            "cluster.yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = std::fs::read_to_string(d.join("cluster.yaml")).unwrap();
    for needle in [
        r#""image": "riffle:1.5""#,
        r#""replicas": 3"#,
        "windowed-counts-2.windowed-counts:2101",
        r#""claimName": "windowed-counts-recovery""#,
    ] {
        assert!(yaml.contains(needle), "{needle} in {yaml}");
    }
    let validate = |file: &str| {
        Command::new(&validator)
            .current_dir(d)
            .args(["--strict", "-k", "1.30.0", file])
            .output()
            .expect("kubernetes-validate runs")
    };
    let checked = validate("cluster.yaml");
    assert!(
        checked.status.success(),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    assert_eq!(text(&checked.stdout).matches("passed").count(), 4);
    // The validator does refuse a broken manifest.
    std::fs::write(
        d.join("broken.yaml"),
        yaml.replace(r#""replicas": 3"#, r#""replicas": "three""#),
    )
    .unwrap();
    assert!(!validate("broken.yaml").status.success());

    let out = riffle(d, &["build-manifests", "nope", "--project-version", "1.5"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no dataflow named \"nope\""));
}

#[test]
fn a_new_project_builds_and_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let out = riffle(dir.path(), &["new", "demo-app"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let project = dir.path().join("demo-app");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/dataflows.rs",
        "src/pipelines.rs",
        "src/flows.rs",
        "tests/cli.rs",
        "resources/words.txt",
        "riffle.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    // A second time: refused, nothing touched.
    let out = riffle(dir.path(), &["new", "demo-app"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("exists already"));
    let out = riffle(dir.path(), &["new", "Bad Name"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("\"Bad Name\" is not valid"));

    // Its tests pass, built in this workspace's target folder so Riffle's crates
    // compiled for the suite are reused.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&project)
        .args(["test", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "cargo test in the new project: {stdout}{}",
        text(&out.stderr)
    );
    // Three unit tests and three command-line tests ran and passed.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(passed, 6, "{stdout}");

    // `riffle build` on it, as a release would: tests into a JUnit report, the
    // binary with the version from git stamped in, its image and its DAGs.
    git(&project, &["init", "-q"]);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "first"]);
    git(&project, &["tag", "v1.2"]);
    let build = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(dir)
            .args(["build", "--profile", "dev"])
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("the riffle binary runs")
    };
    let out = build(&project);
    assert!(
        out.status.success(),
        "riffle build: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report = std::fs::read_to_string(project.join("build/junit.xml")).unwrap();
    assert!(
        report.contains(r#"tests="6" failures="0""#),
        "build/junit.xml: {report}"
    );
    let binary = text(&out.stdout)
        .lines()
        .find(|l| l.ends_with("/demo-app"))
        .map(PathBuf::from)
        .expect("the binary's path printed");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(text(&version.stdout).trim(), "demo-app 1.2");
    assert!(project.join("build/image.tar").is_file());
    let dags: Vec<_> = std::fs::read_dir(project.join("build/dags"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(dags.iter().any(|d| d.ends_with(".py")), "{dags:?}");

    // A failing test stops the build before the binary, named in the error and
    // the report.
    std::fs::remove_file(project.join("build/image.tar")).unwrap();
    std::fs::write(
        project.join("tests/broken.rs"),
        "#[test]\nfn adds_up() {\n    assert_eq!(1 + 1, 3, \"arithmetic\");\n}\n",
    )
    .unwrap();
    let out = build(&project);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tests failed: adds_up") && stderr.contains("junit.xml"),
        "{stderr}"
    );
    let report = std::fs::read_to_string(project.join("build/junit.xml")).unwrap();
    assert!(
        report.contains(r#"tests="7" failures="1""#) && report.contains("arithmetic"),
        "{report}"
    );
    assert!(
        !project.join("build/image.tar").exists(),
        "no image after failed tests"
    );
}
