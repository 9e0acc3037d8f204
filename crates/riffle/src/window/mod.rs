//! Windows: group a keyed stream's values by time, per key, and emit one result
//! per key and window when the window closes.
//!
//! A window step needs a [`Clock`] (processing time, or event time read from each
//! item with an allowed lateness) and a [`Windower`] (tumbling, sliding, session, or
//! your own). Every window step returns a [`WindowOut`] of three streams:
//!
//! - `down`: `(key, (window_id, result))` once per key and window, when the
//!   watermark passes the window's close time (or the input ends);
//! - `late`: `(key, Late { value, time, watermark, reason })` for items whose
//!   windows had already closed: nothing is dropped silently;
//! - `meta`: `(key, (window_id, WindowMeta { open_time, close_time }))` for every
//!   window that closed.
//!
//! ```
//! use std::time::Duration;
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//! use riffle::window::{Clock, TumblingWindower};
//!
//! // (sensor, (time in ms, reading))
//! let readings = vec![('a', (0, 1)), ('a', (4_000, 3)), ('a', (12_000, 5)), ('b', (1_000, 2))];
//! let flow = Dataflow::new("sensors");
//! let clock = Clock::event(|r: &(i64, u32)| r.0, Duration::ZERO);
//! let windows = flow
//!     .input("readings", TestingSource::new(readings))?
//!     .fold_window("sum", clock, TumblingWindower::new(Duration::from_secs(10), 0),
//!         |_key| 0, |sum, (_, x)| sum + x, |a, b| a + b)?;
//! let out = TestingSink::new();
//! windows.down.output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), [('a', (0, 4)), ('a', (1, 5)), ('b', (0, 2))]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! ## State stays bounded
//!
//! A window's accumulator is dropped the moment the window closes, and a key with
//! no open window is dropped with it. A stream of a million short sessions keeps
//! only the sessions still open. The timer queue that finds due windows costs one
//! entry per key with open windows.
//!
//! ## On many workers
//!
//! A key's windows live on one worker, its owner. With event-time tumbling or
//! sliding windows (whose windows a time falls in do not depend on the key's
//! other values) on more than one worker, each worker folds the values it reads
//! into per-key, per-window partial results and sends the owner those instead of
//! every value; the owner merges them with the step's merge function. The results
//! are the ones folding every value on the owner gives, and a value that might
//! be late still crosses as itself, so the `late` stream is unchanged. This holds
//! for the steps whose merge the engine defines (`count_window`,
//! `collect_window`, `reduce_window`, `max_window`, `min_window`,
//! `join_window`). Session windows, the system clock, and `window` and
//! `fold_window` (whose merger is promised for merging sessions only) send every
//! value. [`LiveWindows::combined`] counts the values folded where they were
//! read.

mod clock;
mod combine;
mod operator;
pub(crate) mod pace;
mod windower;

use std::sync::Arc;

pub use clock::{Clock, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_DRIFT, Millis, now_millis};
pub use operator::{Late, LateReason, LiveWindows};
pub use windower::{
    OpenWindows, Placement, SessionWindower, Sessions, SlidingWindower, TumblingWindower, WindowId,
    WindowMeta, Windower,
};

use operator::{Agg, build_window};
use serde::{Deserialize, Serialize};

use crate::build::BuildCtx;
use crate::data::{Data, Key};
use crate::dataflow::{AnyStream, Stream, stream_key};
use crate::error::{Result, RiffleError};
use crate::operators::Site;
use crate::origin::{merge_traced, stateless_operator};

/// The three streams of a window step; see the [module docs](self).
pub struct WindowOut<K, A, V> {
    /// `(key, (window_id, result))`, one per key and closed window.
    pub down: Stream<(K, (WindowId, A))>,
    /// Items whose windows had closed, with the reason.
    pub late: Stream<(K, Late<V>)>,
    /// `(key, (window_id, metadata))` for every closed window.
    pub meta: Stream<(K, (WindowId, WindowMeta))>,
    /// How many keys hold open windows while the flow runs (in this process).
    pub live: Arc<LiveWindows>,
}

/// What [`Stream::join_window`] returns: per key and window, both sides' values.
pub type JoinedWindows<K, V, R> = WindowOut<K, (Vec<V>, Vec<R>), Side<V, R>>;

/// Both sides of a window join with their times, while the window is open.
type TimedSides<V, R> = (Vec<(Millis, V)>, Vec<(Millis, R)>);

/// A value from one side of a two-sided window join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Side<V, W> {
    /// From the stream the join was called on.
    Left(V),
    /// From the other stream.
    Right(W),
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Adds a window step with the given accumulator functions and returns its
    /// three streams.
    fn window_step<A: Data, O: Data, W: Windower>(
        &self,
        step_id: &str,
        kind: &str,
        clock: Clock<V>,
        windower: W,
        agg: Agg<K, V, A>,
        finish: fn(A) -> Option<O>,
    ) -> Result<WindowOut<K, O, V>> {
        let up_key = self.key();
        let id = step_id.to_string();
        let windower = Arc::new(windower);
        let live = Arc::new(LiveWindows::default());
        let counter = live.clone();
        if clock.is_event() {
            self.flow.trace_origins();
        }
        self.flow.add_step(
            step_id,
            kind,
            &[self],
            &["down", "late", "meta"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.traced::<(K, V)>(&up_key)?;
                let (down, late, meta) = build_window(
                    ctx,
                    &id,
                    input,
                    &clock,
                    windower.clone(),
                    agg.clone(),
                    counter.clone(),
                );
                let down = {
                    use timely::dataflow::operators::vec::Map;
                    down.flat_map(move |(k, (w, a))| finish(a).map(|o| (k, (w, o))))
                };
                ctx.insert(stream_key(&id, "down"), down);
                ctx.insert(stream_key(&id, "late"), late);
                ctx.insert(stream_key(&id, "meta"), meta);
                Ok(())
            }),
        )?;
        Ok(WindowOut {
            down: self.flow.stream_of(step_id, "down"),
            late: self.flow.stream_of(step_id, "late"),
            meta: self.flow.stream_of(step_id, "meta"),
            live,
        })
    }

    /// The general window: each window of each key starts as `builder(key)`; every
    /// value is folded in with `folder(&mut acc, time, value)`; when two windows
    /// merge (sessions) `merger(&mut into, from)` combines their accumulators.
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// use riffle::window::{Clock, SessionWindower};
    ///
    /// // First and last time seen per session of clicks.
    /// let clicks = vec![('u', 0i64), ('u', 2_000), ('u', 60_000)];
    /// let flow = Dataflow::new("sessions");
    /// let out = TestingSink::new();
    /// flow.input("clicks", TestingSource::new(clicks))?
    ///     .window("span", Clock::event(|t: &i64| *t, Duration::ZERO),
    ///         SessionWindower::new(Duration::from_secs(10)),
    ///         |_key| (i64::MAX, i64::MIN),
    ///         |span, time, _click| *span = (span.0.min(time), span.1.max(time)),
    ///         |span, other| *span = (span.0.min(other.0), span.1.max(other.1)))?
    ///     .down.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [('u', (0, (0, 2_000))), ('u', (1, (60_000, 60_000)))]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn window<A: Data, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
        builder: impl Fn(&K) -> A + Send + Sync + 'static,
        folder: impl Fn(&mut A, Millis, V) + Send + Sync + 'static,
        merger: impl Fn(&mut A, A) + Send + Sync + 'static,
    ) -> Result<WindowOut<K, A, V>> {
        let agg = Agg {
            build: Arc::new(builder),
            fold: Arc::new(move |acc: &mut A, v: V, t: Millis| folder(acc, t, v)),
            merge: Arc::new(merger),
            combinable: false,
        };
        self.window_step(step_id, "window", clock, windower, agg, Some)
    }

    /// Folds each window's values into `builder(key)` with `folder(acc, value)`;
    /// `merger` combines the accumulators of merging sessions.
    pub fn fold_window<A: Data, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
        builder: impl Fn(&K) -> A + Send + Sync + 'static,
        folder: impl Fn(A, V) -> A + Send + Sync + 'static,
        merger: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> Result<WindowOut<K, A, V>> {
        // The accumulator is an Option so the by-value folder can take it out.
        let agg = Agg {
            build: Arc::new(move |k: &K| Some(builder(k))),
            fold: Arc::new(move |acc: &mut Option<A>, v: V, _| {
                *acc = acc.take().map(|a| folder(a, v));
            }),
            merge: Arc::new(move |acc: &mut Option<A>, other: Option<A>| {
                *acc = match (acc.take(), other) {
                    (Some(a), Some(b)) => Some(merger(a, b)),
                    (a, b) => a.or(b),
                };
            }),
            combinable: false,
        };
        self.window_step(step_id, "fold_window", clock, windower, agg, |a| a)
    }

    /// Combines each window's values with `reducer(acc, value)`; the first value
    /// starts the accumulator.
    pub fn reduce_window<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<WindowOut<K, V, V>> {
        let reducer = Arc::new(reducer);
        let merge = reducer.clone();
        let agg = Agg {
            build: Arc::new(|_: &K| None::<V>),
            fold: Arc::new(move |acc: &mut Option<V>, v: V, _| {
                *acc = Some(match acc.take() {
                    Some(a) => reducer(a, v),
                    None => v,
                });
            }),
            merge: Arc::new(move |acc: &mut Option<V>, other: Option<V>| {
                *acc = match (acc.take(), other) {
                    (Some(a), Some(b)) => Some(merge(a, b)),
                    (a, b) => a.or(b),
                };
            }),
            combinable: true,
        };
        self.window_step(step_id, "reduce_window", clock, windower, agg, |a| a)
    }

    /// Collects each window's values, in time order (arrival order among equal
    /// times).
    pub fn collect_window<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
    ) -> Result<WindowOut<K, Vec<V>, V>> {
        let agg = Agg {
            build: Arc::new(|_: &K| Vec::<(Millis, V)>::new()),
            fold: Arc::new(|acc: &mut Vec<(Millis, V)>, v: V, t| acc.push((t, v))),
            merge: Arc::new(|acc: &mut Vec<(Millis, V)>, mut other| acc.append(&mut other)),
            combinable: true,
        };
        self.window_step(step_id, "collect_window", clock, windower, agg, |mut vs| {
            vs.sort_by_key(|(t, _)| *t);
            Some(vs.into_iter().map(|(_, v)| v).collect())
        })
    }

    /// The value with the greatest `by(value)` in each window (the first one among
    /// equals).
    pub fn max_window<B: Ord + 'static, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> Result<WindowOut<K, V, V>> {
        self.reduce_window(step_id, clock, windower, move |a, b| {
            if by(&b) > by(&a) { b } else { a }
        })
    }

    /// The value with the least `by(value)` in each window (the first one among
    /// equals).
    pub fn min_window<B: Ord + 'static, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<V>,
        windower: W,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> Result<WindowOut<K, V, V>> {
        self.reduce_window(step_id, clock, windower, move |a, b| {
            if by(&b) < by(&a) { b } else { a }
        })
    }

    /// Joins this stream with `right` per key and window: each closed window emits
    /// `(key, (window_id, (left values, right values)))`, each side in time order.
    /// Both clocks must be of the same kind (both system or both event time).
    pub fn join_window<R: Data, W: Windower>(
        &self,
        step_id: &str,
        left_clock: Clock<V>,
        right_clock: Clock<R>,
        windower: W,
        right: &Stream<(K, R)>,
    ) -> Result<JoinedWindows<K, V, R>> {
        let clock = side_clock(step_id, &left_clock, &right_clock)?;
        let agg = Agg {
            build: Arc::new(|_: &K| (Vec::<(Millis, V)>::new(), Vec::<(Millis, R)>::new())),
            fold: Arc::new(|acc: &mut TimedSides<V, R>, v: Side<V, R>, t| match v {
                Side::Left(v) => acc.0.push((t, v)),
                Side::Right(r) => acc.1.push((t, r)),
            }),
            merge: Arc::new(|acc: &mut TimedSides<V, R>, (mut l, mut r)| {
                acc.0.append(&mut l);
                acc.1.append(&mut r);
            }),
            combinable: true,
        };
        let (left_key, right_key) = (self.key(), right.key());
        let id = step_id.to_string();
        let windower = Arc::new(windower);
        let live = Arc::new(LiveWindows::default());
        let counter = live.clone();
        if clock.is_event() {
            self.flow.trace_origins();
        }
        self.flow.add_step(
            step_id,
            "join_window",
            &[self as &dyn AnyStream, right],
            &["down", "late", "meta"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let left = stateless_operator(
                    ctx,
                    &format!("{id}.left"),
                    ctx.traced::<(K, V)>(&left_key)?,
                    |_: &Site, _, b: &mut Vec<(K, V)>, out: &mut Vec<(K, Side<V, R>)>| {
                        out.extend(b.drain(..).map(|(k, v)| (k, Side::Left(v))));
                        Ok(())
                    },
                );
                let right = stateless_operator(
                    ctx,
                    &format!("{id}.right"),
                    ctx.traced::<(K, R)>(&right_key)?,
                    |_: &Site, _, b: &mut Vec<(K, R)>, out: &mut Vec<(K, Side<V, R>)>| {
                        out.extend(b.drain(..).map(|(k, r)| (k, Side::Right(r))));
                        Ok(())
                    },
                );
                let both = merge_traced(ctx, &id, vec![left, right]);
                let (down, late, meta) = build_window(
                    ctx,
                    &id,
                    both,
                    &clock,
                    windower.clone(),
                    agg.clone(),
                    counter.clone(),
                );
                let down = {
                    use timely::dataflow::operators::vec::Map;
                    down.map(|(k, (id, (mut l, mut r)))| {
                        l.sort_by_key(|(t, _)| *t);
                        r.sort_by_key(|(t, _)| *t);
                        let l = l.into_iter().map(|(_, v)| v).collect::<Vec<_>>();
                        let r = r.into_iter().map(|(_, v)| v).collect::<Vec<_>>();
                        (k, (id, (l, r)))
                    })
                };
                ctx.insert(stream_key(&id, "down"), down);
                ctx.insert(stream_key(&id, "late"), late);
                ctx.insert(stream_key(&id, "meta"), meta);
                Ok(())
            }),
        )?;
        Ok(WindowOut {
            down: self.flow.stream_of(step_id, "down"),
            late: self.flow.stream_of(step_id, "late"),
            meta: self.flow.stream_of(step_id, "meta"),
            live,
        })
    }
}

impl<T: Data> Stream<T> {
    /// Counts items per key (`key(&item)`) and window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// use riffle::window::{Clock, TumblingWindower};
    ///
    /// // (user, time in ms)
    /// let events = vec![('a', 0i64), ('a', 500), ('b', 700), ('a', 1_200)];
    /// let flow = Dataflow::new("counts");
    /// let out = TestingSink::new();
    /// flow.input("events", TestingSource::new(events))?
    ///     .count_window("count", Clock::event(|e: &(char, i64)| e.1, Duration::ZERO),
    ///         TumblingWindower::new(Duration::from_secs(1), 0), |e| e.0)?
    ///     .down.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// let expected = [('a', (0, 2)), ('a', (1, 1)), ('b', (0, 1))];
    /// assert_eq!(out.take_sorted(), expected);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn count_window<K: Key, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<T>,
        windower: W,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<WindowOut<K, u64, T>> {
        let keyed = self.map(&format!("{step_id}.key"), move |item| (key(&item), item))?;
        let agg = Agg {
            build: Arc::new(|_: &K| 0u64),
            fold: Arc::new(|n: &mut u64, _: T, _| *n += 1),
            merge: Arc::new(|n: &mut u64, m: u64| *n += m),
            combinable: true,
        };
        keyed.window_step(step_id, "count_window", clock, windower, agg, Some)
    }
}

/// One clock over both sides of a join.
fn side_clock<V: Data, R: Data>(
    step_id: &str,
    left: &Clock<V>,
    right: &Clock<R>,
) -> Result<Clock<Side<V, R>>> {
    use clock::ClockKind;
    match (&left.kind, &right.kind) {
        (ClockKind::System, ClockKind::System) => Ok(Clock::system()),
        (
            ClockKind::Event {
                time_of: l,
                lateness: ll,
                idle_timeout: li,
                max_drift: ld,
            },
            ClockKind::Event {
                time_of: r,
                lateness: rl,
                idle_timeout: ri,
                max_drift: rd,
            },
        ) => {
            let (l, r) = (l.clone(), r.clone());
            Ok(Clock {
                kind: ClockKind::Event {
                    time_of: Arc::new(move |side: &Side<V, R>| match side {
                        Side::Left(v) => l(v),
                        Side::Right(w) => r(w),
                    }),
                    lateness: (*ll).max(*rl),
                    idle_timeout: (*li).max(*ri),
                    max_drift: match (ld, rd) {
                        (Some(l), Some(r)) => Some((*l).max(*r)),
                        (l, r) => l.or(*r),
                    },
                },
            })
        }
        _ => Err(RiffleError::InvalidStepId {
            step_id: step_id.to_string(),
            reason:
                "join_window needs two clocks of the same kind (both system or both event time)"
                    .to_string(),
        }),
    }
}
