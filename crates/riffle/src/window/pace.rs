//! Pacing source partitions by event time, so that workers do not drift apart.
//!
//! An event-time window closes a window only when every partition has passed it
//! (see [`super::Clock`]). Partitions are read by different workers, and nothing
//! else ties their speeds together: a worker that is descheduled for a few
//! milliseconds, or simply does a little more work per batch, falls behind, and
//! the others read on. Every window between the slowest and the fastest partition
//! is held open meanwhile, on every worker: the held windows cost memory, every
//! item looks through more open windows of its key, and the queues between the
//! workers grow. With nothing pulling the workers back together the drift is a
//! random walk: measured on 2 workers reading 2 partitions at the same event-time
//! pace, an item found 20 windows of its key open on average (up to 147), against
//! 1.1 on one worker, and the flow ran slower on two workers than on one.
//!
//! So a window step paces the partitions it reads, as a stream processor's
//! "watermark alignment" does: its pre-stage tells the [`Pace`] each partition's
//! watermark as it announces it, and a source does not poll a partition whose
//! watermark is more than the step's *drift* ahead of the slowest partition that
//! is still moving ([`Clock::max_drift`](super::Clock::max_drift); by default twice
//! the window's length, or [`DEFAULT_MAX_DRIFT`](super::DEFAULT_MAX_DRIFT)). It
//! polls its other partitions meanwhile, and that one again as soon as the slower
//! ones have caught up. A partition holds the others back while it moves in
//! event time, whichever worker reads it; so a worker that falls behind slows the
//! others down to its pace, and the queues between them stay short.
//!
//! Pacing changes when items are read, never what a window computes, and it cannot
//! stall a flow: the slowest moving partition is never held; a partition that has
//! announced nothing for [`QUIET`] (it has no data, or its worker is stopped) holds
//! nobody back; and a held partition still reads a batch now and then (the source
//! decides how often). Pacing is per process: in a cluster a process paces its own
//! partitions against each other.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::clock::Millis;
use crate::origin::PartId;

/// How long a partition that announces nothing keeps holding the others back.
pub(crate) const QUIET: Duration = Duration::from_millis(50);

/// How often the slowest moving partition is looked for again (so that a source
/// polling thousands of partitions does not look through them all every time).
const REFRESH: Duration = Duration::from_millis(1);

/// What one window step knows about the pace of its partitions in this process.
struct StepPace {
    drift: Millis,
    /// The latest watermark announced for each partition read in this process,
    /// and when it was announced.
    parts: HashMap<PartId, (Millis, Instant)>,
    /// The least watermark of the partitions that are not quiet, and when it was
    /// computed.
    slowest: Option<(Millis, Instant)>,
}

impl StepPace {
    fn slowest(&mut self, now: Instant) -> Millis {
        if let Some((least, at)) = self.slowest
            && now.saturating_duration_since(at) < REFRESH
        {
            return least;
        }
        let least = self
            .parts
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) < QUIET)
            .map(|(watermark, _)| *watermark)
            .min()
            .unwrap_or(Millis::MAX);
        self.slowest = Some((least, now));
        least
    }
}

/// The pace of every event-time window step of one process; see the
/// [module docs](self).
#[derive(Default)]
pub(crate) struct Pace {
    /// Whether any step paces its partitions (sources skip the lock when none does).
    any: AtomicBool,
    steps: Mutex<HashMap<String, StepPace>>,
}

impl Pace {
    fn steps(&self) -> std::sync::MutexGuard<'_, HashMap<String, StepPace>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Window step `step` paces its partitions, allowing them `drift` ahead of the
    /// slowest one.
    pub fn join(&self, step: &str, drift: Millis) {
        self.steps()
            .entry(step.to_string())
            .or_insert_with(|| StepPace {
                drift,
                parts: HashMap::new(),
                slowest: None,
            });
        self.any.store(true, Ordering::Release);
    }

    /// The pre-stage of `step` announced `watermark` for partition `part`.
    pub fn announced(&self, step: &str, part: PartId, watermark: Millis) {
        self.announced_at(step, part, watermark, Instant::now());
    }

    fn announced_at(&self, step: &str, part: PartId, watermark: Millis, now: Instant) {
        if let Some(pace) = self.steps().get_mut(step) {
            let heard = pace.parts.entry(part).or_insert((watermark, now));
            let before = heard.0;
            *heard = (heard.0.max(watermark), now);
            // The slowest partition moved: the least watermark kept may now be its
            // old one, which would hold the others (and itself) back against a
            // pace nobody keeps any more.
            if pace.slowest.is_some_and(|(least, _)| least >= before) {
                pace.slowest = None;
            }
        }
    }

    /// Partition `part` has ended: it holds nobody back any more.
    pub fn ended(&self, step: &str, part: PartId) {
        if let Some(pace) = self.steps().get_mut(step) {
            pace.parts.remove(&part);
            pace.slowest = None;
        }
    }

    /// Whether partition `part` is too far ahead of the slowest moving partition of
    /// a window it feeds to be polled now.
    pub fn holds_back(&self, part: PartId) -> bool {
        self.holds_back_at(part, Instant::now())
    }

    fn holds_back_at(&self, part: PartId, now: Instant) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.steps()
            .values_mut()
            .any(|pace| match pace.parts.get(&part) {
                Some(&(heard, _)) => heard > pace.slowest(now).saturating_add(pace.drift),
                None => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_waits_for_the_slowest_moving_one() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!pace.holds_back_at(7, t0), "nothing paces without a window");
        pace.join("w", 1_000);
        assert!(!pace.holds_back_at(7, t0), "never held before it announces");
        pace.announced_at("w", 7, 5_000, t0);
        pace.announced_at("w", 8, 3_500, t0);
        assert!(
            pace.holds_back_at(7, at(2)),
            "5,000 is more than 1,000 ahead"
        );
        assert!(!pace.holds_back_at(8, at(2)), "the slowest is never held");
        pace.announced_at("w", 8, 4_000, at(3));
        assert!(
            !pace.holds_back_at(7, at(5)),
            "within the drift of the slowest"
        );
        pace.announced_at("w", 7, 9_000, at(6));
        assert!(pace.holds_back_at(7, at(8)));
        // Partition 8 goes quiet: it stops holding 7 back.
        assert!(!pace.holds_back_at(7, at(3) + QUIET));
        pace.announced_at("w", 8, 4_100, at(100));
        assert!(
            pace.holds_back_at(7, at(102)),
            "and holds it again once it speaks"
        );
        pace.ended("w", 8);
        assert!(
            !pace.holds_back_at(7, at(102)),
            "an ended partition is forgotten"
        );
        assert!(
            !pace.holds_back_at(9, at(102)),
            "a partition the window does not read"
        );
    }

    #[test]
    fn the_slowest_partition_is_never_held_back_by_its_own_old_watermark() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        pace.join("w", 1_000);
        pace.announced_at("w", 7, 0, at(0));
        pace.announced_at("w", 8, 500, at(0));
        assert!(!pace.holds_back_at(7, at(10)));
        // Within the cache's refresh, 7 runs more than the drift ahead of where
        // it was, but it is still the slowest partition: nothing holds it.
        pace.announced_at("w", 7, 5_000, at(100));
        assert!(!pace.holds_back_at(8, at(110)), "8 is now the slowest");
        assert!(pace.holds_back_at(7, at(120)), "7 is 4,500 ahead of 8");
        // A lone partition never waits for itself.
        pace.join("alone", 1_000);
        pace.announced_at("alone", 1, 0, at(0));
        assert!(!pace.holds_back_at(1, at(1)));
        pace.announced_at("alone", 1, 50_000, at(2));
        assert!(!pace.holds_back_at(1, at(3)));
    }
}
