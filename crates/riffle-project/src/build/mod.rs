//! `riffle build`: a project's tests, then its binary. The tests run with `cargo
//! test --no-fail-fast` (what it prints is shown as it comes and kept as a JUnit
//! report, [`junit`]); the binary is built with `cargo build --profile P`, the
//! project's version in `RIFFLE_PROJECT_VERSION` at compile time (read by
//! `riffle_cli::stamped_version!()` in the project's `main.rs`, so `--version`
//! says it). The command then has that binary write its image and its DAGs.
//!
//! `cargo` is the one in `CARGO` (set when this runs under cargo), else the one
//! on `PATH`; `CARGO_TARGET_DIR` and the other cargo settings of the environment
//! apply.
//!
//! ```no_run
//! use std::path::Path;
//! use riffle_project::build::{build_binary, run_tests};
//!
//! let report = run_tests(Path::new("."), Path::new("build/junit.xml"))?;
//! assert_eq!(report.failures(), 0);
//! let binary = build_binary(Path::new("."), "release", "1.5", None)?;
//! println!("{}", binary.display());
//! # Ok::<(), riffle_project::build::BuildError>(())
//! ```

pub mod junit;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use junit::TestReport;

/// What can stop a build, naming the project folder and the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `cargo` could not be started or read.
    #[error("{project}: cannot run `{command}`: {source}")]
    Cargo {
        /// The project folder.
        project: PathBuf,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tests did not all pass (or did not build); the report says which.
    #[error(
        "{project}: tests failed: {} (report: {report})",
        if failed.is_empty() { "the tests did not build or run (see the output above)".to_string() } else { failed.join(", ") }
    )]
    TestsFailed {
        /// The project folder.
        project: PathBuf,
        /// The failed tests (empty when they did not build).
        failed: Vec<String>,
        /// Where the JUnit report is.
        report: PathBuf,
    },
    /// `cargo build` failed.
    #[error("{project}: `cargo build --profile {profile}` failed (see its output above)")]
    BuildFailed {
        /// The project folder.
        project: PathBuf,
        /// The profile.
        profile: String,
    },
    /// The build made no binary, or several and none was chosen.
    #[error("{project}: {why}")]
    Binary {
        /// The project folder.
        project: PathBuf,
        /// What was found.
        why: String,
    },
    /// Writing the report failed.
    #[error("cannot write the test report {path}: {source}")]
    Report {
        /// The report's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The cargo to run.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs the project's tests at `project`, showing what they print, and writes
/// the JUnit report to `report` (its folder made); an error names the failed
/// tests. The report is written in either case.
pub fn run_tests(project: &Path, report: &Path) -> Result<TestReport, BuildError> {
    let command = "cargo test --no-fail-fast";
    let failed_to = |source| BuildError::Cargo {
        project: project.to_path_buf(),
        command: command.to_string(),
        source,
    };
    // One pipe for both streams: cargo names each test binary on standard error
    // before the binary prints its tests on standard output.
    let (reader, writer) = std::io::pipe().map_err(failed_to)?;
    let mut child = cargo()
        .args(["test", "--no-fail-fast", "--color", "never"])
        .current_dir(project)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(failed_to)?)
        .stderr(writer)
        .spawn()
        .map_err(failed_to)?;
    let mut printed = String::new();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(reader).lines() {
        let line = line.map_err(failed_to)?;
        let _ = writeln!(out, "{line}");
        printed.push_str(&line);
        printed.push('\n');
    }
    drop(out);
    let status = child.wait().map_err(failed_to)?;
    let tests = TestReport::parse(&printed);
    let name = project
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "project".to_string());
    if let Some(dir) = report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Report {
            path: report.to_path_buf(),
            source,
        })?;
    }
    let tmp = report.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, tests.to_xml(&name))
        .and_then(|()| std::fs::rename(&tmp, report))
        .map_err(|source| BuildError::Report {
            path: report.to_path_buf(),
            source,
        })?;
    if !status.success() || tests.failures() > 0 {
        return Err(BuildError::TestsFailed {
            project: project.to_path_buf(),
            failed: tests.failed().into_iter().map(str::to_string).collect(),
            report: report.to_path_buf(),
        });
    }
    Ok(tests)
}

/// Builds the project's binary with cargo's `profile` (`release`, `dev`, ...),
/// `version` stamped in, and returns its path. `bin` picks one of several
/// binaries.
pub fn build_binary(
    project: &Path,
    profile: &str,
    version: &str,
    bin: Option<&str>,
) -> Result<PathBuf, BuildError> {
    let mut command = cargo();
    command
        .args([
            "build",
            "--profile",
            profile,
            "--message-format",
            "json-render-diagnostics",
        ])
        .current_dir(project)
        .env("RIFFLE_PROJECT_VERSION", version)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(bin) = bin {
        command.args(["--bin", bin]);
    }
    let output = command.output().map_err(|source| BuildError::Cargo {
        project: project.to_path_buf(),
        command: format!("cargo build --profile {profile}"),
        source,
    })?;
    if !output.status.success() {
        return Err(BuildError::BuildFailed {
            project: project.to_path_buf(),
            profile: profile.to_string(),
        });
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bin"));
        if message["reason"] == "compiler-artifact"
            && is_bin
            && let Some(path) = message["executable"].as_str()
        {
            let name = message["target"]["name"].as_str().unwrap_or_default();
            binaries.push((name.to_string(), PathBuf::from(path)));
        }
    }
    match binaries.len() {
        1 => Ok(binaries.remove(0).1),
        0 => Err(BuildError::Binary {
            project: project.to_path_buf(),
            why: "the build made no binary (a project has one: src/main.rs)".to_string(),
        }),
        _ => Err(BuildError::Binary {
            project: project.to_path_buf(),
            why: format!(
                "the build made several binaries ({}); choose one with --bin",
                binaries
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
