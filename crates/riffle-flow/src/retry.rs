//! [`Backoff`]: how long to wait before trying again, doubling up to a ceiling.
//!
//! ```
//! use std::time::Duration;
//! use riffle_flow::retry::Backoff;
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
//! assert_eq!(backoff.next_wait(), Duration::from_millis(100));
//! assert_eq!(backoff.next_wait(), Duration::from_millis(200));
//! assert_eq!(backoff.next_wait(), Duration::from_millis(300));
//! assert_eq!(backoff.next_wait(), Duration::from_millis(300));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Doubling waits from `first` up to `ceiling`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Waits of `first`, twice that, ... never more than `ceiling`.
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self {
            next: first,
            ceiling,
        }
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next.min(self.ceiling);
        self.next = (self.next * 2).min(self.ceiling);
        wait
    }

    /// Sleeps the next wait, waking early when `stop` is set; says whether to go
    /// on (false once `stop` is set).
    pub fn sleep(&mut self, stop: &AtomicBool) -> bool {
        let until = Instant::now() + self.next_wait();
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        !stop.load(Ordering::Relaxed)
    }
}
