//! Test reports: the lines `cargo test` prints, read into suites and cases, and
//! written as JUnit XML (the report CI servers, Airflow's and GitLab's and
//! Jenkins' test views read).
//!
//! `cargo test` names each test binary before it runs (`Running tests/cli.rs
//! (target/...)`, `Doc-tests demo`), then each test prints a line (`test
//! flows::tests::hello ... ok`, `FAILED`, `ignored`), then the output of every
//! failed test (`---- flows::tests::hello stdout ----`) and a summary with the
//! time. Stable Rust has no machine-readable test output, so these lines are the
//! report's source; anything else is ignored.
//!
//! ```
//! use riffle_project::build::junit::TestReport;
//!
//! let printed = "\
//!      Running unittests src/lib.rs (target/debug/deps/demo-1a2b)
//! running 2 tests
//! test flows::tests::hello ... ok
//! test flows::tests::bye ... FAILED
//!
//! failures:
//!
//! ---- flows::tests::bye stdout ----
//! assertion failed: left == right
//!
//! failures:
//!     flows::tests::bye
//!
//! test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.25s
//! ";
//! let report = TestReport::parse(printed);
//! assert_eq!((report.tests(), report.failures()), (2, 1));
//! let xml = report.to_xml("demo");
//! assert!(xml.contains(r#"<testcase classname="flows::tests" name="bye" time="0">"#));
//! assert!(xml.contains("assertion failed: left == right"));
//! ```

use std::fmt::Write as _;

/// The tests of one run of `cargo test`, by test binary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestReport {
    /// One per test binary (unit tests, each integration test file, doctests).
    pub suites: Vec<Suite>,
}

/// The tests of one test binary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suite {
    /// What cargo called it: `unittests src/lib.rs`, `tests/cli.rs`, `doctests demo`.
    pub name: String,
    /// Its run time in seconds, from its summary line.
    pub seconds: f64,
    /// Its tests, in the order they finished.
    pub cases: Vec<Case>,
}

/// One test and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The test's full path (`flows::tests::hello`).
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed; what it printed (its panic message among it).
    Failed(String),
    /// It was not run (`#[ignore]`).
    Skipped,
}

impl TestReport {
    /// Reads the lines `cargo test` printed (standard output and error together,
    /// in the order printed).
    pub fn parse(printed: &str) -> Self {
        let mut report = TestReport::default();
        // The failed test whose output is being read, with its suite.
        let mut output_of: Option<(usize, String)> = None;
        let mut output = String::new();
        let finish = |report: &mut TestReport, of: Option<(usize, String)>, output: &mut String| {
            if let Some((suite, name)) = of {
                let text = std::mem::take(output).trim_end().to_string();
                if let Some(case) = report.suites[suite]
                    .cases
                    .iter_mut()
                    .find(|c| c.name == name)
                {
                    case.outcome = Outcome::Failed(text);
                }
            }
            output.clear();
        };
        for line in printed.lines() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.strip_prefix("Running ") {
                finish(&mut report, output_of.take(), &mut output);
                let name = rest.split(" (").next().unwrap_or(rest).to_string();
                report.suites.push(Suite {
                    name,
                    ..Suite::default()
                });
                continue;
            }
            if let Some(krate) = trimmed.strip_prefix("Doc-tests ") {
                finish(&mut report, output_of.take(), &mut output);
                report.suites.push(Suite {
                    name: format!("doctests {krate}"),
                    ..Suite::default()
                });
                continue;
            }
            let Some(suite) = report.suites.len().checked_sub(1) else {
                continue;
            };
            if let Some(name) = line
                .strip_prefix("---- ")
                .and_then(|l| l.strip_suffix(" stdout ----"))
            {
                finish(&mut report, output_of.take(), &mut output);
                output_of = Some((suite, name.to_string()));
                continue;
            }
            if output_of.is_some() {
                if line == "failures:" {
                    finish(&mut report, output_of.take(), &mut output);
                } else {
                    output.push_str(line);
                    output.push('\n');
                }
                continue;
            }
            if let Some(summary) = line.strip_prefix("test result: ") {
                if let Some(seconds) = summary
                    .rsplit_once("finished in ")
                    .and_then(|(_, t)| t.trim_end_matches('s').parse::<f64>().ok())
                {
                    report.suites[suite].seconds = seconds;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("test ")
                && let Some((name, result)) = rest.rsplit_once(" ... ")
            {
                let outcome = match result.trim() {
                    "ok" => Outcome::Passed,
                    "FAILED" => Outcome::Failed(String::new()),
                    r if r.starts_with("ignored") => Outcome::Skipped,
                    _ => continue,
                };
                report.suites[suite].cases.push(Case {
                    name: name.to_string(),
                    outcome,
                });
            }
        }
        finish(&mut report, output_of.take(), &mut output);
        report
    }

    /// How many tests ran or were skipped.
    pub fn tests(&self) -> usize {
        self.suites.iter().map(|s| s.cases.len()).sum()
    }

    /// How many failed.
    pub fn failures(&self) -> usize {
        self.cases()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .count()
    }

    /// How many were skipped.
    pub fn skipped(&self) -> usize {
        self.cases()
            .filter(|c| c.outcome == Outcome::Skipped)
            .count()
    }

    /// The names of the failed tests.
    pub fn failed(&self) -> Vec<&str> {
        self.cases()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .map(|c| c.name.as_str())
            .collect()
    }

    fn cases(&self) -> impl Iterator<Item = &Case> {
        self.suites.iter().flat_map(|s| s.cases.iter())
    }

    /// The report as a JUnit XML document named `name` (the project).
    pub fn to_xml(&self, name: &str) -> String {
        let seconds: f64 = self.suites.iter().map(|s| s.seconds).sum();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{seconds}\">",
            escape(name),
            self.tests(),
            self.failures(),
            self.skipped(),
        );
        for suite in &self.suites {
            let failures = suite
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
                .count();
            let skipped = suite
                .cases
                .iter()
                .filter(|c| c.outcome == Outcome::Skipped)
                .count();
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
                escape(&suite.name),
                suite.cases.len(),
                suite.seconds,
            );
            for case in &suite.cases {
                let (class, test) = match case.name.rsplit_once("::") {
                    Some((class, test)) => (class, test),
                    None => (suite.name.as_str(), case.name.as_str()),
                };
                let open = format!(
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                    escape(class),
                    escape(test)
                );
                match &case.outcome {
                    Outcome::Passed => {
                        let _ = writeln!(xml, "{open}/>");
                    }
                    Outcome::Skipped => {
                        let _ = writeln!(xml, "{open}>\n      <skipped/>\n    </testcase>");
                    }
                    Outcome::Failed(output) => {
                        let message = output
                            .lines()
                            .find(|l| !l.trim().is_empty() && !l.starts_with("thread '"))
                            .unwrap_or("failed");
                        let _ = writeln!(
                            xml,
                            "{open}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                            escape(message),
                            escape(output)
                        );
                    }
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

/// Text as XML character data or attribute value; characters XML cannot hold
/// (control characters such as a terminal's escapes) are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = "\
   Compiling demo v0.1.0 (/tmp/demo)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 2.01s
     Running unittests src/lib.rs (target/debug/deps/demo-aaaa)

running 3 tests
test flows::tests::hello ... ok
test pipelines::tests::words ... ok
test slow ... ignored, takes a minute
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.50s

     Running tests/cli.rs (target/debug/deps/cli-bbbb)

running 2 tests
test runs_hello ... FAILED
test lists ... ok

failures:

---- runs_hello stdout ----

thread 'runs_hello' panicked at tests/cli.rs:9:5:
said <nothing> & \"more\"\x1b[0m
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    runs_hello

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.25s

   Doc-tests demo

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";

    #[test]
    fn every_binary_is_a_suite_and_every_test_a_case() {
        let report = TestReport::parse(PRINTED);
        let names: Vec<&str> = report.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["unittests src/lib.rs", "tests/cli.rs", "doctests demo"]
        );
        assert_eq!(report.tests(), 5);
        assert_eq!(report.failures(), 1);
        assert_eq!(report.skipped(), 1);
        assert_eq!(report.failed(), ["runs_hello"]);
        assert_eq!(report.suites[1].seconds, 1.25);
        let Outcome::Failed(output) = &report.suites[1].cases[0].outcome else {
            panic!("runs_hello failed");
        };
        assert!(output.contains("panicked at tests/cli.rs:9:5"), "{output}");
        assert!(!output.contains("failures:"), "{output}");
    }

    #[test]
    fn the_xml_escapes_what_it_must_and_drops_terminal_escapes() {
        let xml = TestReport::parse(PRINTED).to_xml("demo");
        assert!(xml.contains(
            r#"<testsuites name="demo" tests="5" failures="1" errors="0" skipped="1" time="1.75">"#
        ));
        assert!(xml.contains(r#"<testcase classname="flows::tests" name="hello" time="0"/>"#));
        assert!(xml.contains(r#"<testcase classname="tests/cli.rs" name="runs_hello" time="0">"#));
        assert!(
            xml.contains("said &lt;nothing&gt; &amp; &quot;more&quot;[0m"),
            "{xml}"
        );
        assert!(!xml.contains('\x1b'));
        assert!(xml.contains("<skipped/>"));
    }
}
