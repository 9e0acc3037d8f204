//! Clocks: what time an item has, and how far time has certainly advanced.
//!
//! A window operator asks its [`Clock`] two things: the timestamp of each item (to
//! pick its windows) and the **watermark**, the time before which no more items are
//! expected (to close windows). Times are milliseconds since the Unix epoch.
//!
//! - [`Clock::system`] is processing time: an item's time is the moment the window
//!   operator sees it, and the watermark is now. Nothing is ever late.
//! - [`Clock::event`] is event time: a function of the item gives its time. Each
//!   source partition has its own watermark, the largest time seen from it minus
//!   the allowed lateness, announced to every worker; a window step combines them
//!   as the minimum across partitions and workers, so a window closes only when
//!   every partition has moved past it, however the partitions are spread over
//!   workers. A partition that sends nothing for the idle timeout stops holding the
//!   watermark back until it speaks again; a finished partition, or a worker that
//!   reads none, never holds it. The watermark never goes backwards.
//!
//!   The window learns each item's partition from the trace of origins that
//!   sources and stateless steps carry (`crate::origin`). After a step that moves
//!   items between workers (a keyed step, `redistribute`, a join) the partition is
//!   no longer known, and the window keeps one watermark per upstream worker.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the unit of every time in windows.
pub type Millis = i64;

/// The current system time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as Millis,
        Err(e) => -(e.duration().as_millis() as Millis),
    }
}

/// Converts a duration to milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// How a window step tells time; see the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use riffle::window::Clock;
///
/// // Items carry their own time (milliseconds); accept items up to 5 s out of order.
/// let clock = Clock::event(|reading: &(i64, f64)| reading.0, Duration::from_secs(5))
///     .idle_timeout(Duration::from_secs(30));
/// assert_eq!(clock.time_of(&(1_000, 0.5)), Some(1_000));
/// ```
pub struct Clock<V> {
    pub(crate) kind: ClockKind<V>,
}

pub(crate) enum ClockKind<V> {
    System,
    Event {
        time_of: Arc<dyn Fn(&V) -> Millis + Send + Sync>,
        lateness: Millis,
        idle_timeout: Duration,
        /// How far a partition may run ahead of the window's watermark before its
        /// source waits (`None`: from the window's length; see `pace`).
        max_drift: Option<Millis>,
    },
}

impl<V> Clone for Clock<V> {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            ClockKind::System => ClockKind::System,
            ClockKind::Event {
                time_of,
                lateness,
                idle_timeout,
                max_drift,
            } => ClockKind::Event {
                time_of: time_of.clone(),
                lateness: *lateness,
                idle_timeout: *idle_timeout,
                max_drift: *max_drift,
            },
        };
        Self { kind }
    }
}

/// How long a source partition (or an upstream worker, where partitions are not
/// traced) may stay silent before it stops holding the watermark back, unless
/// [`Clock::idle_timeout`] says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How far (in event time) a source partition may run ahead of the slowest one
/// feeding the same window before its source waits for it, where the windows have no
/// fixed length and [`Clock::max_drift`] says nothing. Windows of a fixed length
/// allow twice their length.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

impl<V: 'static> Clock<V> {
    /// Processing time: items are timed when the window step sees them.
    pub fn system() -> Self {
        Self {
            kind: ClockKind::System,
        }
    }

    /// Event time: `time_of(item)` in milliseconds since the Unix epoch; items may
    /// arrive up to `allowed_lateness` behind the latest time seen and still count.
    pub fn event(
        time_of: impl Fn(&V) -> Millis + Send + Sync + 'static,
        allowed_lateness: Duration,
    ) -> Self {
        Self {
            kind: ClockKind::Event {
                time_of: Arc::new(time_of),
                lateness: millis(allowed_lateness),
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                max_drift: None,
            },
        }
    }

    /// Sets how long a source partition may send nothing before the watermark stops
    /// waiting for it (event time only).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        if let ClockKind::Event { idle_timeout, .. } = &mut self.kind {
            *idle_timeout = timeout;
        }
        self
    }

    /// Sets how far (in event time) a source partition may run ahead of the
    /// slowest partition still moving before its source stops reading it and waits
    /// (event time only). Every window between the slowest and the fastest
    /// partition is held open, so this bounds the held windows when workers drift
    /// apart; it changes when items are read, never the results.
    /// By default twice the window's length (sliding and tumbling windows, the gap
    /// of sessions), else [`DEFAULT_MAX_DRIFT`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle::window::Clock;
    /// let clock = Clock::event(|t: &i64| *t, Duration::ZERO).max_drift(Duration::from_secs(120));
    /// # let _ = clock;
    /// ```
    pub fn max_drift(mut self, drift: Duration) -> Self {
        if let ClockKind::Event { max_drift, .. } = &mut self.kind {
            *max_drift = Some(millis(drift));
        }
        self
    }

    /// Whether this is an event clock (items carry their own time).
    pub(crate) fn is_event(&self) -> bool {
        matches!(self.kind, ClockKind::Event { .. })
    }

    /// The item's time under an event clock; `None` under the system clock, where
    /// the time is the moment the window step sees the item.
    pub fn time_of(&self, item: &V) -> Option<Millis> {
        match &self.kind {
            ClockKind::System => None,
            ClockKind::Event { time_of, .. } => Some(time_of(item)),
        }
    }
}
