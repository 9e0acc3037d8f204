//! Proof that nothing is lost or repeated: a real `riffle` process running a keyed,
//! windowed flow on 1,000,000 events is killed with SIGKILL and resumed again and
//! again on one recovery store: 20 times after the killed run committed and its
//! windows closed into the file sink, spread over the first half of the output, and
//! now and then early, while it opens the store. After every kill the test
//! reads the store's committed epoch (`riffle recovery show`) and the output files:
//! the epoch only moves forward and has moved during the killed run, and the lines
//! on disk are lines of a clean run with none repeated. Then the store, as the kills
//! left it, is resumed three ways: on 1 worker, on 2 processes of 2 workers, and on
//! 3 workers, each killed a few more times and then run to the end (the 2 processes
//! also once by killing only their parent: the children must die with it, and a
//! second run started beside them must be refused); every finished
//! output equals a clean run's line for line, and the finishing run read fewer than
//! all the events, so it resumed rather than started over.
//!
//! The seed is printed; `RIFFLE_CRASH_SEED=N` replays one.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const EVENTS: u64 = 1_000_000;
const KEYS: u64 = 1_000;
const WINDOW_MS: u64 = 10_000;
/// Kills after the killed run committed, against the one store, before rescaling.
const KILLS: usize = 20;

fn write_events(path: &Path) {
    let mut text = String::with_capacity(16 * EVENTS as usize);
    for i in 0..EVENTS {
        text.push_str(&format!("k{},{}\n", i % KEYS, i));
    }
    std::fs::write(path, text).unwrap();
}

/// What any correct run writes: one line per key and 10 s window, each counting
/// the 10 events of that key in it.
fn computed_expectation() -> Vec<String> {
    let per_window = WINDOW_MS / KEYS;
    let mut lines = Vec::new();
    for key in 0..KEYS {
        for start in (0..EVENTS).step_by(WINDOW_MS as usize) {
            lines.push(format!("k{key},{start},{per_window}"));
        }
    }
    lines.sort();
    lines
}

fn riffle(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    cmd.args(args);
    cmd
}

/// The complete lines of every file in `dir` (a line cut short by a kill, after the
/// last newline of a file, is left out), and the bytes on disk.
fn lines_on_disk(dir: &Path) -> (Vec<String>, u64) {
    let mut lines = Vec::new();
    let mut bytes = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (lines, 0);
    };
    for entry in entries {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        bytes += text.len() as u64;
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        lines.extend(complete.lines().map(str::to_string));
    }
    lines.sort();
    (lines, bytes)
}

/// The bytes in the files of `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Lines of `got` (sorted) that are not in `expected` (sorted) or are repeated.
fn strays(got: &[String], expected: &[String]) -> (Vec<String>, Vec<String>) {
    let unexpected = got
        .iter()
        .filter(|l| expected.binary_search(l).is_err())
        .cloned()
        .collect();
    let repeated = got
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].clone())
        .collect();
    (unexpected, repeated)
}

fn assert_same(got: &[String], expected: &[String], when: &str) {
    if got == expected {
        return;
    }
    let (unexpected, repeated) = strays(got, expected);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|l| got.binary_search(l).is_err())
        .collect();
    panic!(
        "{when}: {} lines, expected {}; {} missing (e.g. {:?}), {} repeated (e.g. {:?}), \
         {} not in the clean output (e.g. {:?})",
        got.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        repeated.len(),
        &repeated[..repeated.len().min(5)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)],
    );
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

/// Whether any process of process group `group` is still alive (not a zombie).
fn group_alive(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        pgrp == Some(group) && state != "Z" && state != "X"
    })
}

/// When to kill a run.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// At a random moment in its first 100 ms (while it opens and restores the store
    /// and truncates the output), committed or not.
    Early,
    /// Once it has committed an epoch of its own and its output files hold this
    /// share of the clean output's bytes, plus a random delay of up to 30 ms.
    /// Steering by the output, not by time, keeps the kills spread over the run
    /// however fast the machine is.
    Written(f64),
}

/// What a kill left behind.
struct Kill {
    workers: String,
    moment: Moment,
    /// The committed epoch when the killed run started, and after the kill.
    before: Option<u64>,
    after: Option<u64>,
    /// Complete lines in the output files after the kill.
    lines: Vec<String>,
    bytes: u64,
    ran: Duration,
}

/// The flow under test, its store, its output and the kills so far.
struct Crash {
    dir: PathBuf,
    store: PathBuf,
    out: PathBuf,
    run_args: Vec<String>,
    expected: Vec<String>,
    expected_bytes: u64,
    random: Random,
    seed: u64,
    kills: Vec<Kill>,
}

impl Crash {
    fn start(&self, workers: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join("run.log")).unwrap();
        riffle(&self.run_args.iter().map(String::as_str).collect::<Vec<_>>())
            .args(workers)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    /// The store's committed epoch, as `riffle recovery show` prints it.
    fn committed(&self) -> Option<u64> {
        let output = riffle(&["recovery", "show", &self.store.display().to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "recovery show: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("committed:"))
            .unwrap_or_else(|| panic!("recovery show prints no committed line: {text}"))
            .trim();
        if line == "nothing yet" {
            return None;
        }
        let epoch = line
            .strip_prefix("epoch ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("recovery show: {line:?} is not `epoch N`"));
        Some(epoch)
    }

    /// One kill in five early; the others once the output holds a random share
    /// of the clean output between `from` and `to`.
    fn moment(&mut self, from: f64, to: f64) -> Moment {
        if self.random.below(5) == 0 {
            Moment::Early
        } else {
            Moment::Written(from + (to - from) * self.random.below(1000) as f64 / 1000.0)
        }
    }

    /// Starts a run on `workers`, SIGKILLs it and every process it spawned at
    /// `moment`, and checks what the kill left: the committed epoch did not go
    /// back (and moved, after commits of the run's own), and the output holds only
    /// lines of the clean output, none twice.
    fn kill(&mut self, workers: &[&str], moment: Moment) -> &Kill {
        let n = self.kills.len() + 1;
        let seed = self.seed;
        let before = self.committed();
        let started = Instant::now();
        let mut child = self.start(workers);
        let finished = |child: &mut Child, crash: &Crash| {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "seed {seed}: run {n} ({workers:?}) ended on its own with {status} before \
                     its kill at {moment:?}:\n{}",
                    crash.log()
                );
            }
        };
        // An epoch the run committed before its kill, for a kill after a commit.
        let mut seen_committed = None;
        match moment {
            Moment::Early => {
                let deadline = started + Duration::from_millis(self.random.below(100));
                while Instant::now() < deadline {
                    finished(&mut child, self);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Moment::Written(share) => {
                // A cluster takes a second to connect before its first commit.
                loop {
                    finished(&mut child, self);
                    let now = self.committed();
                    if now > before {
                        seen_committed = now;
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "seed {seed}: run {n} ({workers:?}) resumed from {before:?} and \
                         committed nothing within 30 s:\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                let bytes = (share * self.expected_bytes as f64) as u64;
                while bytes_on_disk(&self.out) < bytes {
                    finished(&mut child, self);
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "seed {seed}: run {n} ({workers:?}) wrote less than {bytes} bytes \
                         within 30 s:\n{}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(self.random.below(30)));
            }
        }
        finished(&mut child, self);
        let group = child.id();
        // SAFETY: kill(2) with a negative pid signals the child's process group, which
        // `process_group(0)` made its own; it holds only the run and its children.
        unsafe {
            libc::kill(-(group as i32), libc::SIGKILL);
        }
        let _ = child.wait();
        let ran = started.elapsed();
        // Spawned processes are not our children: wait until none can still write.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(group) {
            assert!(
                Instant::now() < deadline,
                "process group {group} survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(2));
        }

        let after = self.committed();
        assert!(
            after >= before,
            "seed {seed}: kill {n}: the committed epoch went back from {before:?} to {after:?}"
        );
        assert!(
            after >= seen_committed,
            "seed {seed}: kill {n}: committed {after:?}, below the {seen_committed:?} seen \
             before the kill"
        );
        let (lines, bytes) = lines_on_disk(&self.out);
        let (unexpected, repeated) = strays(&lines, &self.expected);
        assert!(
            unexpected.is_empty() && repeated.is_empty(),
            "seed {seed}: after kill {n} ({workers:?}, {moment:?}) the output holds {} lines \
             not in the clean output (e.g. {:?}) and {} repeated lines (e.g. {:?})",
            unexpected.len(),
            &unexpected[..unexpected.len().min(5)],
            repeated.len(),
            &repeated[..repeated.len().min(5)],
        );
        self.kills.push(Kill {
            workers: workers.join(" "),
            moment,
            before,
            after,
            lines,
            bytes,
            ran,
        });
        self.kills.last().unwrap()
    }

    /// Starts a cluster on `workers` (`-p N`), and once it has committed and written
    /// a little: runs the same command beside it, which must be refused since the
    /// store is in use; then kills only the parent, whose children must die with it
    /// rather than write on while a rerun truncates their output.
    fn kill_parent_only(&mut self, workers: &[&str]) {
        let seed = self.seed;
        let before = self.committed();
        let mut child = self.start(workers);
        let started = Instant::now();
        while self.committed() <= before || bytes_on_disk(&self.out) == 0 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "seed {seed}: the run ended before the parent could be killed:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "seed {seed}: {workers:?} committed nothing within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let second = riffle(&self.run_args.iter().map(String::as_str).collect::<Vec<_>>())
            .args(["-w", "1"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&second.stderr);
        assert!(
            !second.status.success() && said.contains("is in use by process"),
            "seed {seed}: a second run on the store in use was not refused: {}\n{said}",
            second.status
        );
        let group = child.id();
        // SAFETY: kill(2) of the one process this test started, not of its group.
        unsafe {
            libc::kill(group as i32, libc::SIGKILL);
        }
        let _ = child.wait();
        // The kernel kills them as the parent ends; a second is ample.
        let deadline = Instant::now() + Duration::from_secs(1);
        while group_alive(group) {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: the children of {workers:?} outlived their killed parent by 1 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let (lines, _) = lines_on_disk(&self.out);
        assert!(
            lines.len() < self.expected.len(),
            "seed {seed}: the run was done before its parent was killed; kill it earlier"
        );
        let (unexpected, repeated) = strays(&lines, &self.expected);
        assert!(
            unexpected.is_empty() && repeated.is_empty(),
            "seed {seed}: after killing the parent of {workers:?} the output holds {} lines \
             not in the clean output and {} repeated lines",
            unexpected.len(),
            repeated.len(),
        );
        println!(
            "killed only the parent of {workers:?} after {} ms: its children ended with it, \
             and a second run beside it was refused",
            started.elapsed().as_millis()
        );
    }

    /// Runs to the end on `workers`; returns how many events the finishing run
    /// read (summed over its processes).
    fn finish(&self, workers: &[&str]) -> u64 {
        let mut child = self.start(workers);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                // SAFETY: as in `kill`: the run's own process group.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                panic!("seed {}: {workers:?} did not finish in 60 s", self.seed);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let log = self.log();
        assert!(
            status.success(),
            "seed {}: {workers:?}: {status}\n{log}",
            self.seed
        );
        // One `windowed-counts: N events in ...` line: the run's, or under `-p N` the
        // parent's summary of its children's counts.
        let counts: Vec<u64> = log
            .lines()
            .filter_map(|l| l.strip_prefix("windowed-counts: "))
            .filter_map(|l| l.split_once(" events in "))
            .map(|(n, _)| n.parse().unwrap())
            .collect();
        assert!(
            !counts.is_empty(),
            "no events line in the run's log:\n{log}"
        );
        counts.iter().sum()
    }

    fn copy_dir(from: &Path, to: &Path) {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn killed_twenty_times_and_rescaled_the_output_is_exactly_a_clean_runs() {
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.csv");
    write_events(&events);
    let events_param = format!("events={}", events.display());

    // A clean run, with the flow's defaults and no recovery.
    let clean = tmp.path().join("clean");
    let status = riffle(&[
        "run",
        "windowed-counts",
        "-P",
        &events_param,
        "-P",
        &format!("out={}", clean.display()),
        "-w",
        "2",
    ])
    .stderr(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success());
    let (expected, expected_bytes) = lines_on_disk(&clean);
    assert_same(
        &expected,
        &computed_expectation(),
        "the clean run (1,000 keys x 100 windows of 10 s, 10 events each)",
    );

    let seed = match std::env::var("RIFFLE_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("RIFFLE_CRASH_SEED is a number"),
        Err(_) => {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    };
    println!("random seed {seed} (replay with RIFFLE_CRASH_SEED={seed})");

    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    let store_arg = store.display().to_string();
    let status = riffle(&["recovery", "init", &store_arg, "--partitions", "4"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // A worker that reads nothing stops holding the watermark back after 50 ms, so
    // windows close, and the sink writes, early in every run.
    let run_args: Vec<String> = [
        "run",
        "windowed-counts",
        "-P",
        &events_param,
        "-P",
        &format!("out={}", out.display()),
        "-P",
        "idle=50ms",
        "--recovery",
        &store_arg,
        "--epoch-interval",
        "20ms",
        "--snapshot-interval",
        "40ms",
    ]
    .map(String::from)
    .to_vec();
    let mut crash = Crash {
        dir: tmp.path().to_path_buf(),
        store: store.clone(),
        out: out.clone(),
        run_args,
        expected,
        expected_bytes,
        random: Random(seed),
        seed,
        kills: Vec::new(),
    };

    // 2 workers, killed until 20 kills have come after commits of the killed run's
    // own, spread over the first half of the output; now and then one is killed
    // early instead, while it opens the store.
    let mut late = 0;
    let mut wrote = 0;
    let mut not_empty = 0;
    let mut seen: HashSet<String> = HashSet::new();
    while late < KILLS {
        let share = late as f64 / KILLS as f64 / 2.0;
        let moment = crash.moment(share, share + 0.5 / KILLS as f64);
        let kill = crash.kill(&["-w", "2"], moment);
        if let Moment::Written(_) = kill.moment {
            late += 1;
            not_empty += usize::from(kill.bytes > 0);
            wrote += usize::from(kill.lines.iter().any(|l| !seen.contains(l)));
        }
        seen.extend(kill.lines.iter().cloned());
    }
    let phase_one = crash.kills.len();
    let first = crash.kills[0].before;
    let last = crash.kills.last().unwrap().after;
    let done = crash.kills.last().unwrap().bytes as f64 / expected_bytes as f64;
    println!(
        "{phase_one} kills on 2 workers ({late} after commits of the killed run): committed \
         {first:?} -> {last:?}, output {:.0}% written; output on disk at {not_empty} of them, \
         new lines from the killed run at {wrote} ({:.1} s)",
        done * 100.0,
        began.elapsed().as_secs_f64()
    );
    assert!(
        not_empty >= KILLS * 9 / 10,
        "seed {seed}: output files were empty at {} of {KILLS} kills",
        KILLS - not_empty
    );
    assert!(
        wrote >= KILLS / 2,
        "seed {seed}: only {wrote} of {KILLS} killed runs wrote a line before their kill"
    );

    // The store and output as the kills left them, for the rescaled resumes below.
    let saved_store = tmp.path().join("saved-store");
    let saved_out = tmp.path().join("saved-out");
    Crash::copy_dir(&store, &saved_store);
    Crash::copy_dir(&out, &saved_out);

    for (i, workers) in [&["-w", "1"][..], &["-p", "2", "-w", "2"], &["-w", "3"]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            Crash::copy_dir(&saved_store, &store);
            Crash::copy_dir(&saved_out, &out);
        }
        let from = crash.committed();
        if workers.contains(&"-p") {
            crash.kill_parent_only(workers);
        }
        // Three more kills, spread up to 85% of the output.
        let step = (0.85 - done).max(0.0) / 3.0;
        for k in 0..3 {
            let share = done + step * k as f64;
            let moment = crash.moment(share, share + step);
            crash.kill(workers, moment);
        }
        let killed_at = crash.committed();
        let read = crash.finish(workers);
        println!(
            "{workers:?}: from epoch {from:?}, killed 3 times (then {killed_at:?}), the \
             finishing run read {read} events ({:.1} s)",
            began.elapsed().as_secs_f64()
        );
        assert!(
            read > 0 && read < EVENTS,
            "seed {seed}: {workers:?} read {read} events after resuming at epoch {killed_at:?}; \
             a resumed run reads only what the store had not committed"
        );
        let (got, _) = lines_on_disk(&out);
        assert_same(
            &got,
            &crash.expected,
            &format!("seed {seed}: resumed on {workers:?} from epoch {killed_at:?}"),
        );
    }
    for (i, k) in crash.kills.iter().enumerate() {
        println!(
            "kill {:>2}: {:<12} {:<17} after {:>4} ms, committed {:?} -> {:?}, {} lines on disk",
            i + 1,
            k.workers,
            match k.moment {
                Moment::Early => "early".to_string(),
                Moment::Written(share) => format!("at {:.1}% written", share * 100.0),
            },
            k.ran.as_millis(),
            k.before,
            k.after,
            k.lines.len()
        );
    }
    let resumed = crash.kills.iter().filter(|k| k.before.is_some()).count();
    let moved = crash.kills.iter().filter(|k| k.after > k.before).count();
    println!(
        "{} kills in all: {resumed} of the killed runs had resumed from a committed \
         epoch, {moved} were killed after committing an epoch of their own; {:.1} s",
        crash.kills.len(),
        began.elapsed().as_secs_f64()
    );
}
