//! The autoscaler: how many replicas a consumer should run, from its source's
//! backlog and the work its replicas did.
//!
//! Every [`Autoscale::every`] the consumer's supervisor gives a [`Scaler`] an
//! [`Observation`]: the source's backlog (a Kafka group's lag, an SQS queue's
//! count; `None` where the source cannot say), the items read so far, the time
//! replicas spent on them so far (busy time), and the replicas running. From
//! them it learns a replica's **capacity** (items per busy second, smoothed), and
//! wants enough replicas to keep up with what arrives and burn the backlog
//! within [`Autoscale::burn_within`]:
//!
//! ```text
//! wanted = ceil((arrival rate + backlog / burn_within) / capacity), within [min, max]
//! ```
//!
//! A source that cannot tell its backlog is scaled on utilisation instead (one
//! more replica while they are busy more than 85% of the time). Going **up**
//! happens at once; going **down** only as far as the highest figure wanted over
//! the last [`Autoscale::scale_down_after`] (a stabilization window), so a
//! consumer that just burned its backlog does not drop its replicas the moment
//! the lag reads zero and need them back a second later, and one noisy reading
//! cannot shrink the pool. With `min` 0, a consumer with no backlog and nothing
//! arriving scales to zero, and back to what the backlog asks for when messages
//! come (the backlog is read from the source without any replica running).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use riffle_flow::autoscale::{Autoscale, Observation, Scaler};
//!
//! let mut scaler = Scaler::new(Autoscale::new(1, 8).burn_within(Duration::from_secs(10)));
//! let t0 = Instant::now();
//! let seen = |s: u64, backlog: u64, items: u64, busy: u64, replicas: usize| Observation {
//!     at: t0 + Duration::from_secs(s),
//!     backlog: Some(backlog),
//!     items,
//!     busy: Duration::from_secs(busy),
//!     replicas,
//! };
//! assert_eq!(scaler.decide(&seen(0, 50_000, 0, 0, 1)), 1); // nothing learned yet
//! // One replica did 1,000 items in a busy second: 40,000 waiting need 4 more.
//! assert_eq!(scaler.decide(&seen(1, 40_000, 1_000, 1, 1)), 5);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How an HTTP unit (a service or a collector) scales across pods: one process
/// serves every route on one listener, so its replicas are pods, sized by the
/// platform (KEDA, from the `riffle_flow_in_flight` gauge read through
/// Prometheus; see `riffle flow manifests`) to keep about
/// [`HttpScaling::in_flight_per_replica`] requests in flight in each.
///
/// ```
/// use riffle_flow::autoscale::HttpScaling;
/// let scaling = HttpScaling::new(2, 10).in_flight_per_replica(32);
/// assert_eq!((scaling.min, scaling.max, scaling.in_flight), (2, 10, 32));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpScaling {
    /// The fewest pods (at least 1: a unit with none would answer nothing).
    pub min: usize,
    /// The most pods.
    pub max: usize,
    /// Requests in flight per pod the platform aims at (default 16).
    pub in_flight: u64,
}

impl HttpScaling {
    /// Between `min` (at least 1) and `max` pods, 16 requests in flight each.
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        Self {
            min,
            max: max.max(min),
            in_flight: 16,
        }
    }

    /// Aims at `n` requests in flight per pod (at least 1).
    pub fn in_flight_per_replica(mut self, n: u64) -> Self {
        self.in_flight = n.max(1);
        self
    }
}

/// A consumer's autoscaling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscale {
    /// The fewest replicas (0 scales to zero when there is nothing to do).
    pub min: usize,
    /// The most replicas (no more than the source has partitions).
    pub max: usize,
    /// How soon the backlog should be gone (default 30 s).
    pub burn_within: Duration,
    /// How long lower figures must hold before the pool shrinks (default 30 s).
    pub scale_down_after: Duration,
    /// How often the backlog is read and the pool sized (default 1 s).
    pub every: Duration,
}

impl Autoscale {
    /// Between `min` and `max` replicas, with the default targets.
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min,
            max: max.max(min).max(1),
            burn_within: Duration::from_secs(30),
            scale_down_after: Duration::from_secs(30),
            every: Duration::from_secs(1),
        }
    }

    /// Sizes the pool to burn the backlog within `d`.
    pub fn burn_within(mut self, d: Duration) -> Self {
        self.burn_within = d.max(Duration::from_millis(1));
        self
    }

    /// Shrinks the pool only after lower figures held for `d`.
    pub fn scale_down_after(mut self, d: Duration) -> Self {
        self.scale_down_after = d;
        self
    }

    /// Reads the backlog and sizes the pool every `d`.
    pub fn every(mut self, d: Duration) -> Self {
        self.every = d.max(Duration::from_millis(10));
        self
    }
}

/// What the supervisor saw at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// When.
    pub at: Instant,
    /// Items waiting in the source, if it can say.
    pub backlog: Option<u64>,
    /// Items read so far (a running total).
    pub items: u64,
    /// Time replicas spent on batches so far (a running total).
    pub busy: Duration,
    /// Replicas running.
    pub replicas: usize,
}

/// Decides pool sizes from successive observations; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Scaler {
    settings: Autoscale,
    last: Option<Observation>,
    /// Items per busy second of one replica, smoothed.
    capacity: Option<f64>,
    wanted: VecDeque<(Instant, usize)>,
}

/// The share of its time a replica may be busy before another is added, when
/// the backlog is unknown.
const BUSY: f64 = 0.85;

impl Scaler {
    /// A scaler with `settings`, knowing nothing yet.
    pub fn new(settings: Autoscale) -> Self {
        Self {
            settings,
            last: None,
            capacity: None,
            wanted: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Autoscale {
        &self.settings
    }

    /// What a replica did per busy second, as learned so far.
    pub fn capacity(&self) -> Option<f64> {
        self.capacity
    }

    /// How many replicas to run after `now`.
    pub fn decide(&mut self, now: &Observation) -> usize {
        let Some(last) = self.last.replace(now.clone()) else {
            return now.replicas.clamp(self.settings.min, self.settings.max);
        };
        let seconds = now
            .at
            .saturating_duration_since(last.at)
            .as_secs_f64()
            .max(1e-3);
        let items = now.items.saturating_sub(last.items) as f64;
        let busy = now.busy.saturating_sub(last.busy).as_secs_f64();
        if items > 0.0 && busy > 0.0 {
            let measured = items / busy;
            self.capacity = Some(self.capacity.map_or(measured, |c| 0.5 * c + 0.5 * measured));
        }
        // What arrived: what was handled, less what came off the backlog. Only
        // once the backlog is gone does that correction matter: the first
        // reading after a burn handled the backlog's tail, which did not
        // arrive then (counting it would hold an extra replica for a window).
        let burned = match (last.backlog, now.backlog) {
            (Some(before), Some(0)) => before as f64,
            _ => 0.0,
        };
        let arrival = (items - burned).max(0.0) / seconds;
        let wanted = match (now.backlog, self.capacity) {
            (Some(backlog), Some(capacity)) if capacity > 0.0 => {
                let burn = backlog as f64 / self.settings.burn_within.as_secs_f64();
                ((arrival + burn) / capacity).ceil() as usize
            }
            // Work waits and nothing is learned yet: at least one replica.
            (Some(backlog), _) if backlog > 0 => now.replicas.max(1),
            (Some(_), _) => {
                if items > 0.0 {
                    now.replicas.max(1)
                } else {
                    0
                }
            }
            (None, _) => {
                let utilisation = busy / (seconds * now.replicas.max(1) as f64);
                if now.replicas == 0 || utilisation > BUSY {
                    now.replicas + 1
                } else {
                    ((now.replicas as f64 * utilisation / BUSY).ceil() as usize).max(1)
                }
            }
        }
        .clamp(self.settings.min, self.settings.max);
        self.wanted.push_back((now.at, wanted));
        while self.wanted.front().is_some_and(|(at, _)| {
            now.at.saturating_duration_since(*at) > self.settings.scale_down_after
        }) {
            self.wanted.pop_front();
        }
        if wanted >= now.replicas {
            wanted
        } else {
            let highest = self.wanted.iter().map(|(_, w)| *w).max().unwrap_or(wanted);
            highest.min(now.replicas)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlogs_tail_handled_as_it_empties_is_not_taken_for_arrivals() {
        let mut scaler = Scaler::new(
            Autoscale::new(1, 4)
                .burn_within(Duration::from_secs(2))
                .scale_down_after(Duration::from_secs(3)),
        );
        let t0 = Instant::now();
        let seen = |ms: u64, backlog: u64, items: u64, busy_ms: u64, replicas: usize| Observation {
            at: t0 + Duration::from_millis(ms),
            backlog: Some(backlog),
            items,
            busy: Duration::from_millis(busy_ms),
            replicas,
        };
        scaler.decide(&seen(0, 100_000, 0, 0, 4));
        // Burning at 20,000 a second on 4 replicas: all 4 wanted.
        assert_eq!(scaler.decide(&seen(500, 90_000, 10_000, 2_000, 4)), 4);
        // The last 7,000 handled in half a second, the backlog gone: nothing
        // arrives, so the pool wants its minimum (held for the window)...
        assert_eq!(scaler.decide(&seen(1_000, 0, 17_000, 3_400, 4)), 4);
        assert_eq!(scaler.decide(&seen(1_500, 0, 17_000, 3_400, 4)), 4);
        // ... and falls to it in one step once the burn's readings are older
        // than the window.
        assert_eq!(scaler.decide(&seen(3_600, 0, 17_000, 3_400, 4)), 1);
    }

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn it_holds_replicas_through_the_window_then_falls_to_the_minimum_once() {
        let settings = Autoscale::new(1, 4)
            .burn_within(Duration::from_secs(5))
            .scale_down_after(Duration::from_secs(3));
        let mut scaler = Scaler::new(settings);
        let t0 = Instant::now();
        let mut items = 0;
        let mut busy = Duration::ZERO;
        let mut replicas = 1;
        let mut backlog: u64 = 100_000;
        let mut sizes = Vec::new();
        let mut backlogs = Vec::new();
        for tick in 0..40 {
            // Each replica does 2,000 items a second, busy all the time while work waits.
            let done = (2_000 * replicas as u64).min(backlog);
            backlog -= done;
            items += done;
            busy += Duration::from_secs_f64(done as f64 / 2_000.0);
            replicas = scaler.decide(&Observation {
                at: at(t0, tick as f64),
                backlog: Some(backlog),
                items,
                busy,
                replicas,
            });
            sizes.push(replicas);
            backlogs.push(backlog);
        }
        assert_eq!(*sizes.iter().max().unwrap(), 4, "{sizes:?}");
        assert_eq!(*sizes.last().unwrap(), 1, "{sizes:?}");
        // Up, then down once: no flapping.
        let changes: Vec<_> = sizes.windows(2).filter(|w| w[0] != w[1]).collect();
        let downs = changes.iter().filter(|w| w[1] < w[0]).count();
        assert!(downs <= 1, "{sizes:?}");
        // The backlog is gone before the pool shrinks.
        let first_down = sizes.windows(2).position(|w| w[1] < w[0]).unwrap() + 1;
        assert_eq!(backlogs[first_down], 0, "{sizes:?} {backlogs:?}");
    }

    #[test]
    fn it_scales_to_zero_and_back_when_messages_come() {
        let mut scaler = Scaler::new(Autoscale::new(0, 3).scale_down_after(Duration::ZERO));
        let t0 = Instant::now();
        let seen = |s: f64, backlog, items, busy: f64, replicas| Observation {
            at: at(t0, s),
            backlog: Some(backlog),
            items,
            busy: Duration::from_secs_f64(busy),
            replicas,
        };
        assert_eq!(scaler.decide(&seen(0.0, 0, 0, 0.0, 1)), 1);
        assert_eq!(scaler.decide(&seen(1.0, 0, 100, 0.1, 1)), 1, "work arrived");
        assert_eq!(
            scaler.decide(&seen(2.0, 0, 100, 0.1, 1)),
            0,
            "nothing to do"
        );
        // 5,000 waiting, burned in 30 s at 1,000 a busy second: one replica.
        assert_eq!(scaler.decide(&seen(3.0, 5_000, 100, 0.1, 0)), 1);
    }

    #[test]
    fn without_a_backlog_it_adds_a_replica_while_they_are_busy() {
        let mut scaler = Scaler::new(Autoscale::new(1, 3).scale_down_after(Duration::ZERO));
        let t0 = Instant::now();
        let seen = |s: f64, items, busy: f64, replicas| Observation {
            at: at(t0, s),
            backlog: None,
            items,
            busy: Duration::from_secs_f64(busy),
            replicas,
        };
        assert_eq!(scaler.decide(&seen(0.0, 0, 0.0, 1)), 1);
        assert_eq!(scaler.decide(&seen(1.0, 1_000, 0.95, 1)), 2);
        assert_eq!(scaler.decide(&seen(2.0, 2_000, 1.2, 2)), 1);
    }
}
