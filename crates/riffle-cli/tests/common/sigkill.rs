//! What the SIGKILL tests share: a seeded generator, a recovery store made by the
//! binary, and the loop that starts a run and kills it once its output has grown.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift), so a seed replays a run.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The seed of this run (`RIFFLE_CRASH_SEED`, or the clock), printed so it replays.
pub fn seed() -> u64 {
    let seed = std::env::var("RIFFLE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (RIFFLE_CRASH_SEED={seed} replays it)");
    seed
}

/// Makes a recovery store of 2 partitions at `store` with `riffle recovery init`.
pub fn init_store(store: &Path) {
    let init = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["recovery", "init"])
        .arg(store)
        .args(["--partitions", "2"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}

/// How each kill is chosen: how much the output must grow (a random amount in
/// `grow`), or how long to wait when it does not (a random time in `wait`).
pub struct Kills {
    /// How many runs to kill.
    pub count: usize,
    /// The least and most growth of the output before a kill.
    pub grow: (u64, u64),
    /// The least and most time before a kill when the output does not grow.
    pub wait: (Duration, Duration),
}

impl Kills {
    /// Starts `spawn(workers)` `count` times, on 2 workers, then 1 and 3 for the last
    /// two, and kills each with SIGKILL once `size()` has grown by a random amount
    /// (or after a random time). Returns how many kills landed while the output grew;
    /// panics if a run ends by itself, or if fewer than half the kills hit live data.
    pub fn run(
        &self,
        rng: &mut Rng,
        spawn: impl Fn(&str) -> Child,
        size: impl Fn() -> u64,
    ) -> usize {
        let mut live = 0;
        for kill in 0..self.count {
            let workers = match self.count - kill {
                2 => "1",
                1 => "3",
                _ => "2",
            };
            let before = size();
            let grow = self.grow.0 + rng.next() % (self.grow.1 - self.grow.0 + 1);
            let spread = (self.wait.1 - self.wait.0).as_millis() as u64 + 1;
            let limit = self.wait.0 + Duration::from_millis(rng.next() % spread);
            let mut child = spawn(workers);
            let started = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(stderr) = child.stderr.as_mut() {
                        let _ = std::io::Read::read_to_string(stderr, &mut err);
                    }
                    panic!("kill {kill}: the run ended by itself ({status}): {err}");
                }
                if size().saturating_sub(before) >= grow {
                    live += 1;
                    break;
                }
                if started.elapsed() > limit {
                    break;
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        eprintln!(
            "{live} of {} kills landed while the output grew",
            self.count
        );
        assert!(
            live >= self.count / 2,
            "too few kills hit live data: {live} of {}",
            self.count
        );
        live
    }
}
