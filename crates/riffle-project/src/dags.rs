//! Airflow DAG files from pipelines: one file per scheduled pipeline, one task per
//! step, for the Airflow of today (3.x).
//!
//! Every task runs the project's own binary on one step:
//!
//! ```text
//! riffle run --job PIPELINE.STEP --runtime "<the run's logical date>" --config "<Variable>" --no-retries --quiet
//! ```
//!
//! (`--no-retries`: Airflow retries the task as the step's retries say, so the task
//! makes one attempt; tries would multiply otherwise.)
//!
//! with [`KubernetesPodOperator`](Operator::Kubernetes) in the project's image (the
//! default), or with [`BashOperator`](Operator::Bash) running a binary on the Airflow
//! worker (Airflow without Kubernetes, and tests). What the file says, and why:
//!
//! - **Imports** come from `airflow.sdk` and the provider packages, as Airflow 3 wants.
//! - **The schedule** is an explicit `CronDataIntervalTimetable`. With a plain cron
//!   string, Airflow 3 makes a run's logical date the moment it fires; Riffle's runtime
//!   (like BigFlow's and Airflow 2's) is the start of the interval a run processes, so
//!   a daily run at midnight on the 2nd processes the 1st. The timetable keeps that.
//!   Aliases (`@daily`, ...) are written out as cron fields.
//! - **The runtime** is `{{ logical_date }}` formatted `YYYY-MM-DD HH:MM:SS`, the form
//!   `--runtime` reads; **the environment** is the Airflow Variable
//!   ([`DagOptions::env_variable`], `riffle_env` unless set) read in a template, so the
//!   same file runs in dev and prod and nothing is read while the DAG is parsed.
//! - **Retries, retry delay and timeout** are the step's. Note that the binary also
//!   retries a failing step inside one task as the step declares, so a step with
//!   `retries(2, ..)` may run up to 3 x 3 times.
//! - **Secrets** of the pipeline's config become Kubernetes secrets mounted as the
//!   environment variables the config names (`Secret("env", VAR, SECRET, KEY)`, the
//!   secret named `<project>-<pipeline>` by default); their values never appear in
//!   the file. Under `BashOperator` they come from the worker's environment.
//! - **DAG ids carry the version** (`sales__1.5.dev3_g1a2b3c4d`), so two versions of a
//!   project can run side by side while one drains; file names too.
//!
//! ```
//! use riffle_pipeline::Pipeline;
//! use riffle_project::dags::{DagOptions, Operator, render_dag};
//!
//! let mut p = Pipeline::builder("hello");
//! p.schedule("@daily").start("2024-01-01");
//! let greet = p.step("greet", (), |_ctx, ()| Ok(1)).version("1").output();
//! p.step("shout", &greet, |_ctx, n: i32| Ok(n + 1)).version("1");
//! let pipeline = p.build()?;
//!
//! let options = DagOptions::new("demo", "1.4", Operator::Kubernetes {
//!     image: "registry.example/demo:1.4".into(),
//!     namespace: None,
//! });
//! let dag = render_dag(&pipeline, &options).unwrap();
//! assert_eq!(dag.file_name, "hello__1_4.py");
//! assert!(dag.source.contains(r#"dag_id="hello__1.4""#));
//! assert!(dag.source.contains(r#"CronDataIntervalTimetable("0 0 * * *", timezone="UTC")"#));
//! assert!(dag.source.contains(r#"tasks["greet"] >> tasks["shout"]"#));
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use riffle_pipeline::{Pipeline, Runtime};

use crate::version::name_safe;

/// How each task runs the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `KubernetesPodOperator` in `image`, whose entrypoint is the project's binary.
    Kubernetes {
        /// The image reference, e.g. `registry.example/project:1.4`.
        image: String,
        /// The pods' namespace (the connection's default when `None`).
        namespace: Option<String>,
    },
    /// `BashOperator` running `binary` in `workdir` on the Airflow worker.
    Bash {
        /// The binary's absolute path on the worker.
        binary: PathBuf,
        /// The folder the task runs in (the project's `.riffle/` stores are there).
        workdir: PathBuf,
    },
}

/// What every DAG of one build shares.
#[derive(Debug, Clone)]
pub struct DagOptions {
    /// The project (the app's name): in tags and Kubernetes secret names.
    pub project: String,
    /// The project's version: in DAG ids, file names and tags.
    pub version: String,
    /// How tasks run.
    pub operator: Operator,
    /// The Airflow Variable holding the config environment (`dev`, `prod`, ...).
    pub env_variable: String,
    /// The DAGs' start date when a pipeline's schedule has none.
    pub default_start: Runtime,
    /// Extra environment variables for every task (not secrets: they are written in
    /// the file), e.g. `RIFFLE_METADATA_URL` for a shared metadata store.
    pub env: Vec<(String, String)>,
    /// The Kubernetes secret holding the pipelines' secrets; `<project>-<pipeline>`
    /// when `None`.
    pub secret_name: Option<String>,
}

impl DagOptions {
    /// Options with the defaults: Variable `riffle_env`, start today (UTC) for
    /// pipelines whose schedule has no start, no extra environment.
    pub fn new(project: &str, version: &str, operator: Operator) -> Self {
        let today: Runtime = Runtime::now()
            .date()
            .to_string()
            .parse()
            .unwrap_or_else(|_| Runtime::now());
        Self {
            project: project.to_string(),
            version: version.to_string(),
            operator,
            env_variable: "riffle_env".to_string(),
            default_start: today,
            env: Vec::new(),
            secret_name: None,
        }
    }
}

/// Why a DAG could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DagError {
    /// The pipeline has no schedule, so Airflow would never run it.
    #[error(
        "pipeline {pipeline:?} has no schedule, so it has no DAG; give it one with .schedule(\"@daily\") or leave it out"
    )]
    NoSchedule {
        /// The pipeline's id.
        pipeline: String,
    },
    /// A name used in the file is not valid.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// What it names.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// Writing the DAG folder failed.
    #[error("cannot write the DAG folder {dir}: {source}")]
    Write {
        /// The folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One DAG file: its name and its Python source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagFile {
    /// The DAG id, `<pipeline>__<version>`.
    pub dag_id: String,
    /// The file name, `<dag id with . as _>.py`.
    pub file_name: String,
    /// The Python source.
    pub source: String,
}

/// The DAG id of `pipeline` at `version`: only `[A-Za-z0-9_.-]`, as Airflow allows.
pub fn dag_id(pipeline: &str, version: &str) -> String {
    format!("{}__{}", name_safe(pipeline), name_safe(version))
}

/// Writes the DAG of one scheduled pipeline.
pub fn render_dag(pipeline: &Pipeline, options: &DagOptions) -> Result<DagFile, DagError> {
    let Some(schedule) = pipeline.schedule() else {
        return Err(DagError::NoSchedule {
            pipeline: pipeline.id().to_string(),
        });
    };
    check_variable(&options.env_variable)?;
    for (key, _) in &options.env {
        check_env_name(key)?;
    }
    let dag_id = dag_id(pipeline.id(), &options.version);
    let cron = cron_fields(schedule.expr());
    let start = schedule.start().unwrap_or(options.default_start).datetime();
    let mut py = String::new();
    let about = if pipeline.about().is_empty() {
        String::new()
    } else {
        format!(": {}", pipeline.about())
    };
    let _ = writeln!(
        py,
        "\"\"\"{}{}\n\nWritten by `riffle build-dags` for project {}, version {}.\nChange the pipeline in the project and build again rather than editing this file.\n\"\"\"\n",
        doc_safe(pipeline.id()),
        doc_safe(&about),
        doc_safe(&options.project),
        doc_safe(&options.version)
    );
    py.push_str("import datetime\n\n");
    py.push_str("from airflow.sdk import DAG\n");
    py.push_str("from airflow.timetables.interval import CronDataIntervalTimetable\n");
    match &options.operator {
        Operator::Kubernetes { .. } => {
            py.push_str(
                "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator\n",
            );
            py.push_str("from airflow.providers.cncf.kubernetes.secret import Secret\n");
        }
        Operator::Bash { .. } => {
            py.push_str("from airflow.providers.standard.operators.bash import BashOperator\n");
        }
    }
    py.push('\n');
    let _ = writeln!(py, "VERSION = {}", py_str(&options.version));
    let _ = writeln!(
        py,
        "# The run's logical date (the start of its data interval) in the form --runtime reads."
    );
    let _ = writeln!(
        py,
        "RUNTIME = {}",
        py_str("{{ logical_date.strftime('%Y-%m-%d %H:%M:%S') }}")
    );
    let _ = writeln!(
        py,
        "# The config environment, from the Airflow Variable {:?}.",
        options.env_variable
    );
    let _ = writeln!(
        py,
        "CONFIG = {}",
        py_str(&format!("{{{{ var.value.{} }}}}", options.env_variable))
    );
    let mut env: Vec<(String, String)> = options.env.clone();
    match &options.operator {
        Operator::Kubernetes { image, namespace } => {
            let _ = writeln!(py, "IMAGE = {}", py_str(image));
            let _ = writeln!(
                py,
                "NAMESPACE = {}",
                namespace.as_deref().map(py_str).unwrap_or("None".into())
            );
            let secret = options
                .secret_name
                .clone()
                .unwrap_or_else(|| k8s_name(&format!("{}-{}", options.project, pipeline.id())));
            py.push_str("SECRETS = [\n");
            for (key, var) in pipeline.config().secrets() {
                check_env_name(var)?;
                let _ = writeln!(
                    py,
                    "    Secret(\"env\", {}, {}, {}),",
                    py_str(var),
                    py_str(&secret),
                    py_str(key)
                );
            }
            py.push_str("]\n");
        }
        Operator::Bash { binary, workdir } => {
            let _ = writeln!(py, "BINARY = {}", py_str(&binary.display().to_string()));
            let _ = writeln!(py, "WORKDIR = {}", py_str(&workdir.display().to_string()));
            env.push(("RIFFLE_RUNTIME".into(), "{{RUNTIME}}".into()));
            env.push(("RIFFLE_ENV".into(), "{{CONFIG}}".into()));
            env.push(("RIFFLE_BINARY".into(), "{{BINARY}}".into()));
        }
    }
    py.push_str("ENV = {\n");
    for (key, value) in &env {
        let value = match value.as_str() {
            "{{RUNTIME}}" => "RUNTIME".to_string(),
            "{{CONFIG}}" => "CONFIG".to_string(),
            "{{BINARY}}" => "BINARY".to_string(),
            other => py_str(other),
        };
        let _ = writeln!(py, "    {}: {value},", py_str(key));
    }
    py.push_str("}\n\n");

    let _ = writeln!(py, "with DAG(");
    let _ = writeln!(py, "    dag_id={},", py_str(&dag_id));
    if !pipeline.about().is_empty() {
        let _ = writeln!(py, "    description={},", py_str(pipeline.about()));
    }
    let _ = writeln!(
        py,
        "    # Runs at the end of each interval; its logical date is the interval's start."
    );
    let _ = writeln!(
        py,
        "    schedule=CronDataIntervalTimetable({}, timezone=\"UTC\"),",
        py_str(&cron)
    );
    let _ = writeln!(
        py,
        "    start_date=datetime.datetime({}, {}, {}, {}, {}, {}, tzinfo=datetime.timezone.utc),",
        start.format("%Y"),
        start.format("%-m"),
        start.format("%-d"),
        start.format("%-H"),
        start.format("%-M"),
        start.format("%-S")
    );
    let _ = writeln!(py, "    catchup=False,");
    let _ = writeln!(py, "    max_active_runs=1,");
    let _ = writeln!(
        py,
        "    tags=[\"riffle\", {}, {}],",
        py_str(&format!("project:{}", options.project)),
        py_str(&format!("version:{}", options.version))
    );
    let _ = writeln!(py, ") as dag:");
    let _ = writeln!(py, "    tasks = {{}}");
    for step in pipeline.steps() {
        let job = format!("{}.{}", pipeline.id(), step.id());
        let (retries, pause) = step.retries();
        let mut args = Vec::new();
        args.push(format!("task_id={}", py_str(step.id())));
        match &options.operator {
            Operator::Kubernetes { .. } => {
                args.push(format!(
                    "name={}",
                    py_str(&k8s_name(&format!("{}-{}", pipeline.id(), step.id())))
                ));
                args.push("image=IMAGE".into());
                args.push("namespace=NAMESPACE".into());
                args.push(format!(
                    "arguments=[\"run\", \"--job\", {}, \"--runtime\", RUNTIME, \"--config\", CONFIG, \"--no-retries\", \"--quiet\"]",
                    py_str(&job)
                ));
                args.push("env_vars=ENV".into());
                args.push("secrets=SECRETS".into());
                args.push("on_finish_action=\"delete_pod\"".into());
            }
            Operator::Bash { .. } => {
                args.push(format!(
                    "bash_command={}",
                    py_str(&format!(
                        "\"$RIFFLE_BINARY\" run --job {job} --runtime \"$RIFFLE_RUNTIME\" --config \"$RIFFLE_ENV\" --no-retries --quiet"
                    ))
                ));
                args.push("env=ENV".into());
                args.push("append_env=True".into());
                args.push("cwd=WORKDIR".into());
                // Exit code 99 means "skipped" to BashOperator by default; every
                // failure of the binary is a failure.
                args.push("skip_on_exit_code=None".into());
            }
        }
        args.push(format!("retries={retries}"));
        args.push(format!("retry_delay={}", py_timedelta(pause)));
        if let Some(limit) = step.timeout() {
            args.push(format!("execution_timeout={}", py_timedelta(limit)));
        }
        if !step.about().is_empty() {
            args.push(format!("doc={}", py_str(step.about())));
        }
        let operator = match options.operator {
            Operator::Kubernetes { .. } => "KubernetesPodOperator",
            Operator::Bash { .. } => "BashOperator",
        };
        let _ = writeln!(py, "    tasks[{}] = {operator}(", py_str(step.id()));
        for arg in args {
            let _ = writeln!(py, "        {arg},");
        }
        let _ = writeln!(py, "    )");
    }
    for step in pipeline.steps() {
        let mut upstream: Vec<&String> = step.inputs().iter().chain(step.after()).collect();
        upstream.sort();
        upstream.dedup();
        for up in upstream {
            let _ = writeln!(
                py,
                "    tasks[{}] >> tasks[{}]",
                py_str(up),
                py_str(step.id())
            );
        }
    }
    Ok(DagFile {
        file_name: format!("{}.py", dag_id.replace('.', "_")),
        dag_id,
        source: py,
    })
}

/// Writes `files` as the whole content of folder `dir`, atomically: they are written
/// into a new folder beside it, which then replaces `dir` by renames, so Airflow's
/// DAG processor never sees half a set of files (the last rename swaps the folders).
pub fn write_dag_folder(dir: &Path, files: &[DagFile]) -> Result<(), DagError> {
    let failed = |source| DagError::Write {
        dir: dir.to_path_buf(),
        source,
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(failed)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dags".into());
    let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(failed)?;
    let written = (|| {
        for file in files {
            std::fs::write(staging.join(&file.file_name), &file.source)?;
        }
        std::fs::File::open(&staging)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(failed(e));
    }
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(failed)?;
    }
    if let Err(e) = std::fs::rename(&staging, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(failed(e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// A cron alias written out as five fields, as Airflow's timetables read them.
fn cron_fields(expr: &str) -> String {
    match expr.trim() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        other => other,
    }
    .to_string()
}

/// A Python string literal.
fn py_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe inside a Python docstring.
fn doc_safe(text: &str) -> String {
    text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"")
}

fn py_timedelta(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("datetime.timedelta(seconds={})", ms / 1000)
    } else {
        format!("datetime.timedelta(milliseconds={ms})")
    }
}

/// A Kubernetes object name: lower case letters, digits and `-`, at most 63
/// characters, starting and ending with a letter or digit.
pub fn k8s_name(text: &str) -> String {
    let mut name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let mut name: String = name.trim_matches('-').chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() {
        name.push_str("riffle");
    }
    name
}

fn check_variable(name: &str) -> Result<(), DagError> {
    check_identifier("Airflow Variable name", name)
}

fn check_env_name(name: &str) -> Result<(), DagError> {
    check_identifier("environment variable name", name)
}

/// `name` must be letters, digits and `_`, not starting with a digit.
fn check_identifier(what: &'static str, name: &str) -> Result<(), DagError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DagError::Invalid {
            what,
            value: name.to_string(),
            why: "use letters, digits and _ (not starting with a digit)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(schedule: Option<&str>) -> Pipeline {
        let mut p = Pipeline::builder("sales");
        p.about("a \"quoted\" pipeline");
        if let Some(s) = schedule {
            p.schedule(s).start("2024-02-01");
        }
        p.config(
            riffle_pipeline::Config::new()
                .env("dev", [("x", "1")])
                .secret("db_password", "SALES_DB_PASSWORD"),
        );
        let a = p
            .step("read", (), |_c, ()| Ok(1))
            .retries(2, Duration::from_millis(200))
            .timeout(Duration::from_secs(90))
            .version("1")
            .output();
        let b = p.step("left", &a, |_c, x: i32| Ok(x)).version("1").output();
        let c = p
            .step("right", &a, |_c, x: i32| Ok(x))
            .version("1")
            .output();
        p.step("join", (&b, &c), |_c, (x, y): (i32, i32)| Ok(x + y))
            .version("1");
        p.build().unwrap()
    }

    fn k8s() -> DagOptions {
        DagOptions::new(
            "shop",
            "1.5.dev3+g1a2b3c4d",
            Operator::Kubernetes {
                image: "reg.example/shop:1.5".into(),
                namespace: Some("jobs".into()),
            },
        )
    }

    #[test]
    fn a_kubernetes_dag_has_one_task_per_step_with_its_settings() {
        let dag = render_dag(&pipeline(Some("@daily")), &k8s()).unwrap();
        assert_eq!(dag.dag_id, "sales__1.5.dev3_g1a2b3c4d");
        assert_eq!(dag.file_name, "sales__1_5_dev3_g1a2b3c4d.py");
        let s = &dag.source;
        assert!(s.contains(r#"description="a \"quoted\" pipeline""#), "{s}");
        assert!(s.contains(r#"schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC")"#));
        assert!(s.contains("start_date=datetime.datetime(2024, 2, 1, 0, 0, 0, tzinfo"));
        assert!(
            s.contains(r#""--job", "sales.read", "--runtime", RUNTIME"#),
            "{s}"
        );
        assert!(s.contains("retries=2,\n        retry_delay=datetime.timedelta(milliseconds=200)"));
        assert!(s.contains("execution_timeout=datetime.timedelta(seconds=90)"));
        assert!(s.contains(r#"Secret("env", "SALES_DB_PASSWORD", "shop-sales", "db_password")"#));
        assert!(s.contains(r#"name="sales-read""#));
        for edge in [
            r#"tasks["read"] >> tasks["left"]"#,
            r#"tasks["read"] >> tasks["right"]"#,
            r#"tasks["left"] >> tasks["join"]"#,
            r#"tasks["right"] >> tasks["join"]"#,
        ] {
            assert!(s.contains(edge), "{edge} in {s}");
        }
        assert!(!s.contains("datetime.now"));
    }

    #[test]
    fn a_pipeline_without_schedule_is_refused_by_name() {
        let err = render_dag(&pipeline(None), &k8s()).unwrap_err();
        assert!(
            err.to_string().contains("\"sales\" has no schedule"),
            "{err}"
        );
    }

    #[test]
    fn names_are_checked_and_made_safe() {
        let mut options = k8s();
        options.env_variable = "bad-name".into();
        assert!(render_dag(&pipeline(Some("@daily")), &options).is_err());
        assert_eq!(k8s_name("My_Pipeline--Step_"), "my-pipeline-step");
        assert_eq!(k8s_name(&"a".repeat(80)).len(), 63);
        assert_eq!(py_str("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }

    #[test]
    fn the_dag_folder_is_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dags");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("stale.py"), "old").unwrap();
        let dag = render_dag(&pipeline(Some("@hourly")), &k8s()).unwrap();
        write_dag_folder(&dir, std::slice::from_ref(&dag)).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, std::slice::from_ref(&dag.file_name));
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
