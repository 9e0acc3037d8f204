//! The `riffle` binary as a user runs it: real processes, real files.

mod common;
use common::{sorted_lines, text};

use std::process::{Command, Output};

fn riffle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(args)
        .output()
        .expect("the riffle binary runs")
}

#[test]
fn wordcount_prints_the_top_words_and_a_throughput_line() {
    let out = riffle(&["run", "wordcount"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{stdout}");
    assert!(lines[0].starts_with("  1. the"), "{stdout}");
    assert!(
        text(&out.stderr).contains("wordcount: 364 words in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wordcount_reads_a_directory_given_as_a_parameter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "zebra zebra apple\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "Zebra, apple! kiwi\n").unwrap();
    let input = format!("input={}", dir.path().display());
    let out = riffle(&["run", "wordcount", "-w", "2", "-P", &input, "-P", "top=2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let words: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(words, [vec!["1.", "zebra", "3"], vec!["2.", "apple", "2"]]);
}

#[test]
fn one_worker_two_workers_and_two_processes_write_the_same_files() {
    let base = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, extra) in [
        ("1x1", vec![]),
        ("1x2", vec!["-w", "2"]),
        ("2x2", vec!["-p", "2", "-w", "2"]),
    ] {
        let out_dir = base.path().join(name);
        let out_param = format!("out={}", out_dir.display());
        let mut args = vec![
            "run",
            "keyed-sums",
            "-P",
            "events=50000",
            "-P",
            "keys=37",
            "-P",
            &out_param,
        ];
        args.extend(extra);
        let out = riffle(&args);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let lines = sorted_lines(&out_dir);
        assert_eq!(lines.len(), 37, "{name}");
        results.push((name, lines));
    }
    // key0 gets 0, 37, 74, ...: check one line by hand.
    let n = (50_000u64).div_ceil(37);
    let sum: u64 = (0..n).map(|i| i * 37).sum();
    assert!(
        results[0].1.contains(&format!("key0,{n},{sum}")),
        "{:?}",
        &results[0].1[..3]
    );
    for (name, lines) in &results[1..] {
        assert_eq!(lines, &results[0].1, "{name}");
    }
}

#[test]
fn a_cluster_joined_by_addresses_file_and_process_ids() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = riffle::run::free_loopback_addresses(2).unwrap();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, addresses.join("\n")).unwrap();
    let out_dir = dir.path().join("out");
    let out_param = format!("out={}", out_dir.display());
    let hosts_arg = hosts.display().to_string();
    let children: Vec<_> = (0..2)
        .map(|id| {
            Command::new(env!("CARGO_BIN_EXE_riffle"))
                .args([
                    "run",
                    "keyed-sums",
                    "-P",
                    "events=10000",
                    "-P",
                    "keys=10",
                    "-P",
                    &out_param,
                ])
                .args(["-i", &id.to_string(), "-a", &hosts_arg])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(sorted_lines(&out_dir).len(), 10);
}

#[test]
fn inspect_prints_a_tree_and_json() {
    let out = riffle(&["inspect", "wordcount"]);
    assert!(out.status.success());
    let tree = text(&out.stdout);
    assert!(
        tree.starts_with("dataflow wordcount\nlines (input)\n    split (flat_map)\n"),
        "{tree}"
    );
    let out = riffle(&["inspect", "wordcount", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "wordcount");
    assert_eq!(json["steps"][2]["step_id"], "count");
    assert_eq!(json["steps"][2]["kind"], "count_final");
    assert_eq!(json["steps"][2]["upstreams"][0]["step_id"], "split");
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
    let out = riffle(&["run", "no-such-flow"]);
    assert!(!out.status.success());
    // `duckdb-wordcount` is there when the binary is built with the feature.
    let duckdb = if cfg!(feature = "duckdb") {
        "duckdb-wordcount, "
    } else {
        ""
    };
    assert!(text(&out.stderr).contains(&format!(
        "no dataflow named \"no-such-flow\"; registered: delta-wordcount, {duckdb}kafka-wordcount, keyed-sums, nats-wordcount, objects-wordcount, postgres-cdc, postgres-wordcount, rabbitmq-wordcount, redis-wordcount, sqs-wordcount, windowed-counts, wordcount"
    )));

    let out = riffle(&["run", "wordcount", "-P", "input=/nonexistent/words.txt"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("dataflow \"wordcount\" failed"), "{err}");
    assert!(
        err.contains("step \"lines\": cannot read /nonexistent/words.txt"),
        "{err}"
    );

    let out = riffle(&["run", "wordcount", "-P", "top=lots"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("parameter top=\"lots\" is not valid"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, "127.0.0.1:1234\nnot-an-address\n").unwrap();
    let out = riffle(&[
        "run",
        "wordcount",
        "-i",
        "0",
        "-a",
        &hosts.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(":2: \"not-an-address\" is not host:port"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_prints_one_json_object_per_run() {
    let out = riffle(&[
        "bench",
        "wordcount",
        "--items",
        "20000",
        "--runs",
        "2",
        "--json",
        "-w",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let runs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["workload"], "wordcount");
        assert_eq!(run["workers"], 2);
        assert_eq!(run["items"], 20000);
        assert!(run["seconds"].as_f64().unwrap() > 0.0);
        assert!(run["items_per_s"].as_f64().unwrap() > 0.0);
        assert!(run["peak_rss_bytes"].as_u64().unwrap() > 1_000_000);
        assert!(run["distinct"].as_u64().unwrap() > 5000);
    }
    let out = riffle(&["bench", "stateless", "--items", "30000", "--json"]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["checksum"], 10000);
}

#[test]
fn bench_wordcount_splits_count_the_same_words() {
    let mut tops = Vec::new();
    for split in ["into", "collect", "each"] {
        let out = riffle(&[
            "bench",
            "wordcount",
            "--items",
            "30000",
            "-w",
            "2",
            "--json",
            "-P",
            &format!("split={split}"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(run["split"], split);
        assert_eq!(run["items"], 30000);
        tops.push((run["distinct"].clone(), run["top"].clone()));
    }
    assert!(tops.iter().all(|t| *t == tops[0]), "{tops:?}");
    let out = riffle(&["bench", "wordcount", "-P", "split=lines"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-P split=lines: the splits are into, collect and each"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_files_reads_every_row_of_csv_and_json_lines() {
    for format in ["csv", "jsonl"] {
        let out = riffle(&[
            "bench",
            "files",
            "--items",
            "5000",
            "-w",
            "2",
            "--json",
            "-P",
            &format!("format={format}"),
            "-P",
            "files=3",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(run["workload"], "files");
        assert_eq!(run["format"], format);
        assert_eq!(run["items"], 5000);
        assert_eq!(run["files"], 3);
        assert!(run["bytes"].as_u64().unwrap() > 5000 * 30, "{run}");
    }
    let out = riffle(&["bench", "files", "-P", "format=xml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-P format=xml: the formats are csv and jsonl"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_udf_reduce_shares_a_windows_stream_among_its_keys_or_not_as_told() {
    let out = riffle(&[
        "bench",
        "udf-reduce",
        "--items",
        "3000",
        "-P",
        "keys=30",
        "-P",
        "windows=3",
        "-P",
        "servers=rust",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The bench itself fails unless the windows' counts add up to every datum.
    let shares: Vec<_> = runs.iter().map(|r| r["keys_per_stream"].clone()).collect();
    assert_eq!(shares, [1000, 1]);
    for run in &runs {
        assert_eq!(run["workload"], "udf-reduce");
        assert_eq!(run["results"], 90, "30 keys in 3 windows: {run}");
    }
    assert_eq!(runs[0]["min_streams"], 3);
    assert_eq!(runs[1]["min_streams"], 90);
}

#[test]
fn bench_runs_a_list_of_worker_counts_beside_a_hashmap_baseline() {
    let out = riffle(&[
        "bench",
        "wordcount",
        "--items",
        "20000",
        "--json",
        "-w",
        "1,2",
        "-P",
        "baseline=hashmap",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per worker count: the engine's run, then the baseline's.
    assert_eq!(runs.len(), 4, "{runs:?}");
    for (run, (workload, workers)) in runs.iter().zip([
        ("wordcount", 1),
        ("wordcount-hashmap", 1),
        ("wordcount", 2),
        ("wordcount-hashmap", 1),
    ]) {
        assert_eq!(run["workload"], workload, "{run}");
        assert_eq!(run["workers"], workers, "{run}");
        assert_eq!(run["items"], 20000, "{run}");
        assert_eq!(run["distinct"], runs[0]["distinct"], "{run}");
    }
    assert!(runs[0]["of_baseline"].as_f64().unwrap() > 0.0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("scaling wordcount: 2 worker(s)") && stderr.contains("x 1 worker(s)"),
        "{stderr}"
    );
    let out = riffle(&[
        "bench",
        "wordcount",
        "--items",
        "100",
        "-P",
        "baseline=btree",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-P baseline=btree: the baselines are hashmap and foldhash"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_windowed_over_many_partitions_counts_the_same_windows() {
    let windowed = |extra: &[&str]| {
        let mut args = vec!["bench", "windowed", "--items", "60000", "--json", "-w", "2"];
        args.extend_from_slice(extra);
        let out = riffle(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let one = windowed(&[]);
    let many = windowed(&["-P", "partitions=30"]);
    assert_eq!(many["partitions"], 30);
    for run in [&one, &many] {
        assert_eq!(run["late"], 0, "{run}");
        assert_eq!(run["counted"], 60000, "{run}");
    }
    assert_eq!(many["windows"], one["windows"]);
    let out = riffle(&["bench", "windowed", "--items", "1000", "-P", "partitions=7"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-P partitions=7: the 1000 events must divide evenly"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failure_under_two_processes_exits_non_zero_and_names_the_step() {
    let started = std::time::Instant::now();
    let out = riffle(&[
        "run",
        "wordcount",
        "-p",
        "2",
        "-w",
        "2",
        "-P",
        "input=/nonexistent/words.txt",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("step \"lines\": cannot read /nonexistent/words.txt"),
        "{err}"
    );
    assert!(err.contains("exited with"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_recovery_store_is_backed_up_to_a_url_or_folder_and_restored_to_resume_from() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.csv");
    let mut text_in = String::new();
    for i in 0..200_000u64 {
        text_in.push_str(&format!("k{},{}\n", i % 100, i));
    }
    std::fs::write(&events, text_in).unwrap();
    let events_param = format!("events={}", events.display());

    let clean = tmp.path().join("clean");
    let out = riffle(&[
        "run",
        "windowed-counts",
        "-P",
        &events_param,
        "-P",
        &format!("out={}", clean.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let url = format!("file://{}", tmp.path().join("bucket/state").display());
    let folder = tmp.path().join("folder").display().to_string();
    for (i, target) in [url.as_str(), folder.as_str()].into_iter().enumerate() {
        let store = tmp.path().join(format!("store{i}")).display().to_string();
        let out = riffle(&["recovery", "init", &store, "--partitions", "2"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let written = tmp.path().join(format!("out{i}"));
        let out = riffle(&[
            "run",
            "windowed-counts",
            "-P",
            &events_param,
            "-P",
            &format!("out={}", written.display()),
            "--recovery",
            &store,
            "--epoch-interval",
            "5ms",
            "--snapshot-interval",
            "10ms",
            "--backup",
            target,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));

        // The backup holds the store as of its last commit: restored into a new
        // folder it is a store of the same flow, and resuming the flow from it
        // leaves exactly what the clean run wrote.
        let restored = tmp
            .path()
            .join(format!("restored{i}"))
            .display()
            .to_string();
        let out = riffle(&["recovery", "restore", target, &restored]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("restored 2 partition(s)"),
            "{}",
            text(&out.stdout)
        );
        let out = riffle(&["recovery", "show", &restored]);
        let shown = text(&out.stdout);
        assert!(shown.contains("flow:       windowed-counts"), "{shown}");
        assert!(shown.contains("committed:  epoch "), "{shown}");
        let out = riffle(&[
            "run",
            "windowed-counts",
            "-P",
            &events_param,
            "-P",
            &format!("out={}", written.display()),
            "--recovery",
            &restored,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(sorted_lines(&written), sorted_lines(&clean), "{target}");
        let out = riffle(&["recovery", "restore", target, &restored]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("already holds a recovery store"),
            "{}",
            text(&out.stderr)
        );
    }

    let out = riffle(&[
        "recovery",
        "restore",
        "file:///nonexistent/backup",
        &tmp.path().join("x").display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no backup here"),
        "{}",
        text(&out.stderr)
    );
    let store = tmp.path().join("store-bad").display().to_string();
    riffle(&["recovery", "init", &store]);
    let out = riffle(&[
        "run",
        "windowed-counts",
        "-P",
        &events_param,
        "--recovery",
        &store,
        "--backup",
        "nope://x/y",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--backup nope://x/y"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn two_processes_print_only_the_flows_output_on_stdout_and_one_summary() {
    // Timely reports its connection progress with println!; those lines belong on
    // stderr, not among a StdOutSink's results.
    let out = riffle(&["run", "wordcount", "-p", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{stdout}");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.trim_start().starts_with(&format!("{}. ", i + 1))),
        "{stdout}"
    );
    // One throughput summary, from the parent, counting what both children read.
    let stderr = text(&out.stderr);
    let summaries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("wordcount"))
        .collect();
    assert_eq!(summaries.len(), 1, "{stderr}");
    assert!(
        summaries[0].starts_with("wordcount: 364 words in"),
        "{stderr}"
    );
}

#[test]
fn a_parent_killed_before_it_cleaned_up_leaves_nothing_behind_for_long() {
    // What a SIGKILLed `riffle run -p N` leaves in the temp folder is removed by the
    // next one; a live parent's folder is kept.
    let tmp = tempfile::tempdir().unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = tmp.path().join(format!("riffle-counts-{dead}"));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("process-0"), "words 1\n").unwrap();
    let live = tmp
        .path()
        .join(format!("riffle-counts-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["run", "wordcount", "-p", "2"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!stale.exists(), "the dead parent's folder is still there");
    assert!(live.exists(), "a live parent's folder was removed");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn the_riffle_binary_lists_its_benchmarks() {
    let out = riffle(&["--help"]);
    assert!(text(&out.stdout).contains("bench"), "{}", text(&out.stdout));
}
