//! Proof that nothing is lost: a real `riffle` process running a keyed, windowed
//! flow is killed with SIGKILL at random moments and resumed each time; the final
//! output equals that of a run that never crashed, with no record missing or
//! repeated. Then the same store is resumed on 1 worker, on 3 workers in 3
//! processes, and finished on 2 processes of 2 workers.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const EVENTS: u64 = 1_000_000;

fn write_events(path: &Path) {
    let mut text = String::with_capacity(16 * EVENTS as usize);
    for i in 0..EVENTS {
        text.push_str(&format!("k{},{}\n", i % 1000, i));
    }
    std::fs::write(path, text).unwrap();
}

fn riffle(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// Kills the child and every process it spawned (its process group).
fn kill_all(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the child's process group, which
    // `process_group(0)` made its own; nothing else is in it.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

fn sorted_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// A tiny xorshift generator: the test prints its seed so a failure can be replayed.
struct Random(u64);
impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn assert_same(got: &[String], expected: &[String], when: &str) {
    let missing = expected
        .iter()
        .filter(|l| got.binary_search(l).is_err())
        .count();
    let mut repeated = 0;
    for pair in got.windows(2) {
        if pair[0] == pair[1] {
            repeated += 1;
        }
    }
    assert!(
        got == expected,
        "{when}: {} lines, expected {}; {missing} missing, {repeated} repeated",
        got.len(),
        expected.len()
    );
}

#[test]
fn killed_twenty_times_and_rescaled_the_output_is_exactly_a_clean_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.csv");
    write_events(&events);
    let events_param = format!("events={}", events.display());
    let flow_args = |out: &Path| -> Vec<String> {
        vec![
            "run".into(),
            "windowed-counts".into(),
            "-P".into(),
            events_param.clone(),
            "-P".into(),
            format!("out={}", out.display()),
        ]
    };

    let clean = tmp.path().join("clean");
    let args = flow_args(&clean);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let status = riffle(&args).arg("-w").arg("2").status().unwrap();
    assert!(status.success());
    let expected = sorted_lines(&clean);
    assert_eq!(expected.len(), 100_000, "1,000 keys x 100 windows of 10 s");

    let store = tmp.path().join("store");
    let store_arg = store.display().to_string();
    let status = riffle(&["recovery", "init", &store_arg, "--partitions", "4"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tmp.path().join("out");
    let mut run_args = flow_args(&out);
    run_args.extend(
        [
            "--recovery",
            &store_arg,
            "--epoch-interval",
            "20ms",
            "--snapshot-interval",
            "40ms",
        ]
        .map(String::from),
    );

    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("random seed {seed}");
    let mut random = Random(seed);
    let start = |workers: &[&str]| -> Child {
        let mut args: Vec<&str> = run_args.iter().map(String::as_str).collect();
        args.extend_from_slice(workers);
        riffle(&args).spawn().unwrap()
    };

    // Kill a 2-worker run at random moments, at least 20 times.
    let mut kills = 0;
    let mut finished_early = 0;
    while kills < 20 {
        let mut child = start(&["-w", "2"]);
        let wait = Duration::from_millis(100 + random.below(400));
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a run failed on its own: {status}");
            finished_early += 1;
            assert!(
                finished_early < 3,
                "the flow finishes before it can be killed"
            );
            // Start over from nothing so that every kill lands mid-run.
            let _ = std::fs::remove_dir_all(&store);
            let _ = std::fs::remove_dir_all(&out);
            riffle(&["recovery", "init", &store_arg, "--partitions", "4"])
                .status()
                .unwrap();
            continue;
        }
        kill_all(&mut child);
        kills += 1;
    }

    // Rescale: 1 worker, then 3 workers in 3 processes, each killed mid-run.
    for workers in [&["-w", "1"][..], &["-p", "3", "-w", "1"][..]] {
        let mut child = start(workers);
        std::thread::sleep(Duration::from_millis(400));
        if child.try_wait().unwrap().is_none() {
            kill_all(&mut child);
        }
    }
    // Finish on 2 processes of 2 workers.
    let output = start(&["-p", "2", "-w", "2"]).wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_same(&sorted_lines(&out), &expected, &format!("seed {seed}"));
}
