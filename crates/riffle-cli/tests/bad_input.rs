//! Bad input through the real `riffle` binary: each case is a command line (with the
//! files and environment it needs) that must fail with a known exit code and a
//! message naming what was wrong and where, and must leave nothing behind that it
//! should not. One table, so a case that comes back fails here.

mod common;
use common::text;

use std::path::Path;
use std::process::Command;

/// One bad input.
struct Case {
    /// What the case is about, for failure messages.
    name: &'static str,
    /// Arguments; `{dir}` is the case's own temporary folder.
    args: &'static [&'static str],
    /// Environment variables to set (`{dir}` is replaced too).
    env: &'static [(&'static str, &'static str)],
    /// Prepares files in the case's folder.
    setup: fn(&Path),
    /// The exit code: 1 for a refused command, 2 for a command line clap refuses.
    code: i32,
    /// Text the error output must hold, each naming what or where.
    says: &'static [&'static str],
    /// Checks on the folder afterwards (nothing made or changed that should not be).
    after: fn(&Path),
}

fn nothing(_: &Path) {}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn addresses_bad_port(dir: &Path) {
    write(dir, "hosts.txt", b"127.0.0.1:7001\n127.0.0.1:notaport\n");
}
fn addresses_no_host(dir: &Path) {
    write(dir, "hosts.txt", b":7001\n");
}
fn addresses_port_zero(dir: &Path) {
    write(dir, "hosts.txt", b"127.0.0.1:0\n");
}
fn addresses_empty(dir: &Path) {
    write(dir, "hosts.txt", b"# nobody\n\n");
}
fn addresses_two(dir: &Path) {
    write(dir, "hosts.txt", b"127.0.0.1:7001\n127.0.0.1:7002\n");
}
fn a_store(dir: &Path) {
    riffle::recovery::RecoveryStore::init(&dir.join("state"), 2).unwrap();
}
fn a_store_with_garbage(dir: &Path) {
    a_store(dir);
    write(dir, "state/part-1.sqlite3", b"this is not SQLite");
}
fn a_store_with_empty_partition(dir: &Path) {
    a_store(dir);
    write(dir, "state/part-1.sqlite3", b"");
}
fn a_file(dir: &Path) {
    write(dir, "file.txt", b"hello\n");
}

fn garbage_unchanged(dir: &Path) {
    let bytes = std::fs::read(dir.join("state/part-1.sqlite3")).unwrap();
    assert_eq!(
        bytes, b"this is not SQLite",
        "the partition file was changed"
    );
}
fn empty_unchanged(dir: &Path) {
    let len = std::fs::metadata(dir.join("state/part-1.sqlite3"))
        .unwrap()
        .len();
    assert_eq!(len, 0, "the empty partition file was rewritten");
}
fn no_metadata_file_made(dir: &Path) {
    let made: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(made.is_empty(), "files were made: {made:?}");
}
fn no_store_made(dir: &Path) {
    assert!(!dir.join("state/part-0.sqlite3").exists());
}

const CASES: &[Case] = &[
    Case {
        name: "run without a name",
        args: &["run"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["name a dataflow to run", "`riffle run --list`"],
        after: nothing,
    },
    Case {
        name: "an unknown dataflow",
        args: &["run", "wordcont"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["no dataflow named \"wordcont\"", "wordcount"],
        after: nothing,
    },
    Case {
        name: "zero workers",
        args: &["run", "wordcount", "-w", "0"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--workers", "0 is not allowed"],
        after: nothing,
    },
    Case {
        name: "zero processes",
        args: &["run", "wordcount", "-p", "0"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--processes", "0 is not allowed"],
        after: nothing,
    },
    Case {
        name: "workers not a number",
        args: &["run", "wordcount", "-w", "two"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--workers", "\"two\" is not a whole number"],
        after: nothing,
    },
    Case {
        name: "a misspelt dataflow parameter",
        args: &["run", "wordcount", "-P", "inptu=x"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["dataflow \"wordcount\" has no parameter \"inptu\"", "input"],
        after: nothing,
    },
    Case {
        name: "a parameter without a value",
        args: &["run", "wordcount", "-P", "input"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--param", "\"input\" is not key=value"],
        after: nothing,
    },
    Case {
        name: "a parameter value that does not parse",
        args: &["run", "wordcount", "-P", "top=ten"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["parameter top=\"ten\" is not valid"],
        after: nothing,
    },
    Case {
        name: "a zero epoch interval",
        args: &["run", "wordcount", "--epoch-interval", "0s"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--epoch-interval", "must be positive"],
        after: nothing,
    },
    Case {
        name: "an epoch interval in an unknown unit",
        args: &["run", "wordcount", "--epoch-interval", "1h"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--epoch-interval", "the unit must be ms, s or m"],
        after: nothing,
    },
    Case {
        name: "a missing input file",
        args: &["run", "wordcount", "-P", "input={dir}/missing.txt"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["missing.txt", "No such file"],
        after: nothing,
    },
    Case {
        name: "a missing addresses file",
        args: &["run", "wordcount", "-i", "0", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["cannot read the addresses file", "hosts.txt"],
        after: nothing,
    },
    Case {
        name: "an address whose port is not a number",
        args: &["run", "wordcount", "-i", "0", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: addresses_bad_port,
        code: 1,
        says: &[
            "hosts.txt:2",
            "\"notaport\"",
            "not a number from 1 to 65535",
        ],
        after: nothing,
    },
    Case {
        name: "an address without a host",
        args: &["run", "wordcount", "-i", "0", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: addresses_no_host,
        code: 1,
        says: &["hosts.txt:1", "has no host"],
        after: nothing,
    },
    Case {
        name: "an address with port 0",
        args: &["run", "wordcount", "-i", "0", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: addresses_port_zero,
        code: 1,
        says: &["hosts.txt:1", "port 0"],
        after: nothing,
    },
    Case {
        name: "an addresses file with no addresses",
        args: &["run", "wordcount", "-i", "0", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: addresses_empty,
        code: 1,
        says: &["hosts.txt", "no addresses in the file"],
        after: nothing,
    },
    Case {
        name: "a process id outside the cluster",
        args: &["run", "wordcount", "-i", "2", "-a", "{dir}/hosts.txt"],
        env: &[],
        setup: addresses_two,
        code: 1,
        says: &["--process-id 2", "hosts.txt", "ids 0 to 1"],
        after: nothing,
    },
    Case {
        name: "a process id without addresses",
        args: &["run", "wordcount", "-i", "0"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--addresses"],
        after: nothing,
    },
    Case {
        name: "a recovery folder that is not a store",
        args: &["run", "wordcount", "--recovery", "{dir}/state"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &[
            "state is not a recovery store",
            "`riffle recovery init {dir}/state",
        ],
        after: no_store_made,
    },
    Case {
        name: "a backup without recovery",
        args: &["run", "wordcount", "--backup", "{dir}/b"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--recovery"],
        after: nothing,
    },
    Case {
        name: "an unknown pipeline",
        args: &["run", "--workflow", "sails", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["no pipeline named \"sails\"", "sales"],
        after: nothing,
    },
    Case {
        name: "a job that is not WORKFLOW.STEP",
        args: &["run", "--job", "sales", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["--job \"sales\" is not WORKFLOW.STEP"],
        after: nothing,
    },
    Case {
        name: "a job naming an unknown step",
        args: &["run", "--job", "sales.fit", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["pipeline \"sales\" has no step \"fit\""],
        after: nothing,
    },
    Case {
        name: "a runtime that is not a date",
        args: &[
            "run",
            "--workflow",
            "sales",
            "--runtime",
            "2024-13-45",
            "--project",
            "{dir}",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["runtime \"2024-13-45\" is not valid", "YYYY-MM-DD"],
        after: nothing,
    },
    Case {
        name: "a misspelt pipeline parameter",
        args: &[
            "run",
            "--workflow",
            "sales",
            "-P",
            "min_dasy=5",
            "--project",
            "{dir}",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &[
            "pipeline \"sales\" has no parameter \"min_dasy\"",
            "fit_trend.min_days",
        ],
        after: nothing,
    },
    Case {
        name: "an unknown config environment",
        args: &[
            "run",
            "--workflow",
            "sales",
            "--config",
            "staging",
            "--project",
            "{dir}",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["\"staging\""],
        after: nothing,
    },
    Case {
        name: "a run id that is not an id",
        args: &["runs", "show", "zz", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["run \"zz\"", "not a valid id"],
        after: nothing,
    },
    Case {
        name: "a run id that is not there",
        args: &["runs", "show", "0123abcd", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["run \"0123abcd\""],
        after: nothing,
    },
    Case {
        name: "an artifact that is not there",
        args: &["lineage", "abcdef0123", "--project", "{dir}"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["artifact \"abcdef0123\""],
        after: nothing,
    },
    Case {
        name: "a metadata URL of an unknown scheme",
        args: &["runs", "list"],
        env: &[("RIFFLE_METADATA_URL", "mysql://u@db/riffle")],
        setup: nothing,
        code: 1,
        says: &["mysql://u@db/riffle", "postgres://"],
        after: no_metadata_file_made,
    },
    Case {
        name: "a misspelt postgres URL",
        args: &["runs", "list"],
        env: &[("RIFFLE_METADATA_URL", "postgress://u@db/riffle")],
        setup: nothing,
        code: 1,
        says: &["postgress://u@db/riffle", "is not valid"],
        after: no_metadata_file_made,
    },
    Case {
        name: "recovery show of a folder without a store",
        args: &["recovery", "show", "{dir}/state"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["state is not a recovery store", "part-0.sqlite3"],
        after: no_store_made,
    },
    Case {
        name: "recovery show of a store with a garbage partition",
        args: &["recovery", "show", "{dir}/state"],
        env: &[],
        setup: a_store_with_garbage,
        code: 1,
        says: &["part-1.sqlite3", "not a database", "1 damaged or missing"],
        after: garbage_unchanged,
    },
    Case {
        name: "recovery show of a store with an empty partition",
        args: &["recovery", "show", "{dir}/state"],
        env: &[],
        setup: a_store_with_empty_partition,
        code: 1,
        says: &["part-1.sqlite3", "is empty (0 bytes)"],
        after: empty_unchanged,
    },
    Case {
        name: "a store of no partitions",
        args: &["recovery", "init", "{dir}/state", "--partitions", "0"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["at least one partition"],
        after: no_store_made,
    },
    Case {
        name: "a store made twice",
        args: &["recovery", "init", "{dir}/state"],
        env: &[],
        setup: a_store,
        code: 1,
        says: &["state already holds a recovery store"],
        after: nothing,
    },
    Case {
        name: "a restore from nowhere",
        args: &["recovery", "restore", "{dir}/nothing", "{dir}/state"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["nothing", "no backup here"],
        after: nothing,
    },
    Case {
        name: "a dashboard on a named store that is not there",
        args: &["ui", "--addr", "127.0.0.1:0", "--store", "{dir}/m.db"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["no metadata store at", "m.db"],
        after: no_metadata_file_made,
    },
    Case {
        name: "a dashboard address that is not an address",
        args: &["ui", "--addr", "localhost:http"],
        env: &[],
        setup: nothing,
        code: 2,
        says: &["--addr", "localhost:http"],
        after: nothing,
    },
    Case {
        name: "a UDF call to a socket that is not there",
        args: &[
            "udf",
            "call",
            "--socket",
            "{dir}/map.sock",
            "--no-server-info",
            "--timeout",
            "1",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["map.sock"],
        after: nothing,
    },
    Case {
        name: "a UDF server that never starts",
        args: &[
            "udf",
            "call",
            "--socket",
            "{dir}/map.sock",
            "--timeout",
            "3",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &[
            "waiting for the server-info file {dir}/mapper-server-info",
            "no complete server info after 3s",
            "the map server should listen on {dir}/map.sock",
        ],
        after: nothing,
    },
    Case {
        name: "a UDF call with a zero timeout",
        args: &[
            "udf",
            "call",
            "--socket",
            "{dir}/map.sock",
            "--timeout",
            "0",
        ],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["--timeout must be a positive number"],
        after: nothing,
    },
    Case {
        name: "inspect of an unknown dataflow",
        args: &["inspect", "wordcont"],
        env: &[],
        setup: nothing,
        code: 1,
        says: &["no dataflow named \"wordcont\""],
        after: nothing,
    },
    Case {
        name: "a file given as a recovery store",
        args: &["recovery", "show", "{dir}/file.txt"],
        env: &[],
        setup: a_file,
        code: 1,
        says: &["file.txt is not a recovery store"],
        after: nothing,
    },
];

#[test]
fn every_bad_input_is_refused_with_a_message_naming_what_and_where() {
    assert!(CASES.len() >= 30, "the table holds {} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let fill = |s: &str| s.replace("{dir}", &dir.path().display().to_string());
        (case.setup)(dir.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
        cmd.args(case.args.iter().map(|a| fill(a)))
            .current_dir(dir.path())
            .env_remove("RIFFLE_METADATA_URL")
            .env_remove("RIFFLE_ARTIFACTS_URL")
            .stdin(std::process::Stdio::null());
        for (k, v) in case.env {
            cmd.env(k, fill(v));
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        let code = out.status.code();
        let missing: Vec<&&str> = case
            .says
            .iter()
            .filter(|s| !stderr.contains(&fill(s)))
            .collect();
        if code != Some(case.code) || !missing.is_empty() || stderr.contains("panicked") {
            failures.push(format!(
                "{}: exit {code:?} (expected {}), missing {missing:?} in:\n{stderr}",
                case.name, case.code
            ));
            continue;
        }
        (case.after)(dir.path());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_pipeline_that_fails_to_register_is_reported_as_itself() {
    use riffle_pipeline::Pipeline;
    let app = riffle_cli::App::new("project")
        .pipeline(|| {
            let mut p = Pipeline::builder("hourly");
            p.schedule("61 * * * *");
            p.step("only", (), |_ctx, ()| Ok(1_u8)).version("1");
            p.build()
        })
        .pipeline(|| {
            let mut p = Pipeline::builder("loop");
            let a = p.step("a", (), |_ctx, ()| Ok(1_u8)).after_id("b").output();
            p.step("b", &a, |_ctx, x: u8| Ok(x)).version("1");
            p.build()
        });
    for (id, says) in [
        ("hourly", "schedule \"61 * * * *\" is not valid"),
        ("loop", "dependency cycle"),
    ] {
        let err = app
            .run_with_args(["project", "run", "--workflow", id])
            .err()
            .unwrap_or_else(|| panic!("{id} ran"));
        let err = format!("{err:#}");
        assert!(
            err.starts_with(&format!("pipeline {id:?} failed to register: ")) && err.contains(says),
            "{err}"
        );
    }
}

#[test]
fn a_directory_source_follows_links_to_files_and_says_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(dir.path().join("real.txt"), "zebra zebra\n").unwrap();
    std::fs::write(input.join("a.txt"), "apple\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.txt"), input.join("linked.txt")).unwrap();
    std::fs::create_dir(input.join("nested")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "wordcount", "-P"])
        .arg(format!("input={}", input.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("zebra") && stdout.contains("2"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("skipping") && stderr.contains("nested") && stderr.contains("directory"),
        "{stderr}"
    );
}

#[test]
fn a_sink_call_that_gets_failures_exits_non_zero_after_printing_every_answer() {
    use riffle_numaflow::server::SinkServer;
    use riffle_numaflow::udf::sink_fn;
    use riffle_numaflow::{Datum, SinkResponse};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sink.sock");
    let sink = sink_fn(|batch: Vec<Datum>| {
        Ok(batch
            .into_iter()
            .map(|d| {
                if d.value == b"bad" {
                    SinkResponse::failure(d.id, "refused: bad")
                } else {
                    SinkResponse::success(d.id)
                }
            })
            .collect())
    });
    let server = SinkServer::new(sink).with_socket(&socket);
    // The server lives until the test process ends.
    std::thread::spawn(move || riffle_numaflow::runtime::block_on(server.serve()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["udf", "call", "--kind", "sink", "--socket"])
        .arg(&socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"value\": \"a\"}\n{\"value\": \"bad\"}\n{\"value\": \"c\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("refused: bad"), "{stdout}");
    assert!(stderr.contains("failure for 1 of 3 datum(s)"), "{stderr}");
}
