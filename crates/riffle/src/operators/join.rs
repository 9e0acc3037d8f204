//! Joins: the values of two or more keyed streams meet per key.
//!
//! Every side is routed by the stable key hash, so all values of one key, from
//! every side, reach the same worker. There the join keeps, per key, one slot per
//! side holding that side's latest value, and a [`JoinMode`] says when the slots
//! are emitted:
//!
//! - [`JoinMode::Complete`]: once every side has a value; the key is then
//!   forgotten, so the next value of any side starts a new round. The state holds
//!   only keys that are still waiting for a side.
//! - [`JoinMode::Running`]: every time a value arrives, with the slots filled so
//!   far (`None` for a side not seen yet). The state holds one value per side for
//!   every key seen: bounded by the number of keys, never by the number of items.
//! - [`JoinMode::Final`]: once, when the stream ends, for every key, with what
//!   each side last sent.
//!
//! A key that no value has touched for a while can be forgotten:
//! `JoinSpec::new(mode).forget_after(duration)` (processing time) bounds the state of
//! every mode by the keys active within that duration. A forgotten key starts again
//! from empty slots; in [`JoinMode::Final`] it is not emitted at the end.
//!
//! A join snapshots its slots under recovery and resumes with them, on any number
//! of workers.
//!
//! For joins by time, where each window pairs the values that fell in it, see
//! [`crate::window`]'s `join_window`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::Concatenate;

use super::Site;
use super::keyed::{Dirty, EpochLogic, StateMap, epoch_operator, owned_rows};
use crate::build::{BuildCtx, TStream, WorkerInfo};
use crate::data::{Data, Key};
use crate::dataflow::{AnyStream, Stream, stream_key};
use crate::error::Result;
use crate::exchange::stable_hash;
use crate::recovery::Change;

/// When a join emits; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinMode {
    /// Emit once every side has a value, then forget the key.
    Complete,
    /// Emit on every value, with the latest value of each side seen so far.
    Running,
    /// Emit every key once, when the stream ends.
    Final,
}

/// A join's mode and how long an untouched key is kept; a [`JoinMode`] alone is a
/// spec that keeps keys as long as its mode needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSpec {
    mode: JoinMode,
    forget_after: Option<Duration>,
}

impl JoinSpec {
    /// A join in `mode`, keeping keys as long as the mode needs them.
    pub fn new(mode: JoinMode) -> Self {
        Self {
            mode,
            forget_after: None,
        }
    }

    /// Forgets a key no value has touched for `idle` (processing time).
    pub fn forget_after(mut self, idle: Duration) -> Self {
        self.forget_after = Some(idle);
        self
    }
}

impl From<JoinMode> for JoinSpec {
    fn from(mode: JoinMode) -> Self {
        Self::new(mode)
    }
}

/// The per-key slots of a join: one per side.
trait Slots: Data {
    /// A value tagged with the side it came from.
    type In: Data;
    fn put(&mut self, input: Self::In);
    fn is_full(&self) -> bool;
}

/// The two slots of [`Stream::join_running`]: the latest value of each side, if
/// any.
pub type Pair<V, R> = (Option<V>, Option<R>);

/// How the two-sided join step shapes what it emits.
type Finish<K, V, R, O> = fn((K, Pair<V, R>)) -> Option<O>;

impl<V: Data, R: Data> Slots for Pair<V, R> {
    type In = crate::window::Side<V, R>;
    fn put(&mut self, input: Self::In) {
        match input {
            crate::window::Side::Left(v) => self.0 = Some(v),
            crate::window::Side::Right(r) => self.1 = Some(r),
        }
    }
    fn is_full(&self) -> bool {
        self.0.is_some() && self.1.is_some()
    }
}

impl<V: Data> Slots for Vec<Option<V>> {
    type In = (usize, V);
    fn put(&mut self, (side, v): Self::In) {
        if let Some(slot) = self.get_mut(side) {
            *slot = Some(v);
        }
    }
    fn is_full(&self) -> bool {
        self.iter().all(Option::is_some)
    }
}

/// The join's logic on the worker that owns a key.
struct JoinLogic<K, S> {
    spec: JoinSpec,
    empty: Arc<dyn Fn() -> S + Send + Sync>,
    state: StateMap<K, S>,
    dirty: Dirty<K>,
    /// With `forget_after`: when each key was last touched, and the touches in
    /// order (older entries for a key touched again since are skipped).
    touched: StateMap<K, Instant>,
    touches: VecDeque<(Instant, K)>,
}

impl<K: Key, S: Slots> JoinLogic<K, S> {
    fn touch(&mut self, key: &K, now: Instant) {
        if self.spec.forget_after.is_some() {
            self.touched.insert(key.clone(), now);
            self.touches.push_back((now, key.clone()));
        }
    }

    /// Forgets the keys untouched for `forget_after`.
    fn forget_idle(&mut self, now: Instant) {
        let Some(idle) = self.spec.forget_after else {
            return;
        };
        while let Some((at, _)) = self.touches.front() {
            if now.duration_since(*at) < idle {
                break;
            }
            let Some((at, key)) = self.touches.pop_front() else {
                break;
            };
            if self.touched.get(&key) == Some(&at) {
                self.touched.remove(&key);
                if self.state.remove(&key).is_some() {
                    self.dirty.mark(&key);
                }
            }
        }
    }
}

impl<K: Key, S: Slots> EpochLogic<(K, S::In), (K, S)> for JoinLogic<K, S> {
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, S::In)>,
        out: &mut Vec<(K, S)>,
    ) -> Result<()> {
        let now = Instant::now();
        self.forget_idle(now);
        for (k, v) in items {
            self.dirty.mark(&k);
            let slots = match self.state.get_mut(&k) {
                Some(slots) => slots,
                None => self
                    .state
                    .entry(k.clone())
                    .or_insert_with(|| (self.empty)()),
            };
            slots.put(v);
            let emit = match self.spec.mode {
                JoinMode::Complete if slots.is_full() => {
                    if let Some(full) = self.state.remove(&k) {
                        self.touched.remove(&k);
                        out.push((k, full));
                    }
                    continue;
                }
                JoinMode::Running => Some(slots.clone()),
                JoinMode::Complete | JoinMode::Final => None,
            };
            self.touch(&k, now);
            if let Some(slots) = emit {
                out.push((k, slots));
            }
        }
        Ok(())
    }
    fn on_wake(&mut self, _: &Site, _: u64, _: &mut Vec<(K, S)>) -> Result<()> {
        self.forget_idle(Instant::now());
        Ok(())
    }
    fn wake_after(&self) -> Option<Duration> {
        match self.spec.forget_after {
            Some(idle) if !self.touches.is_empty() => Some(idle.min(Duration::from_secs(1))),
            _ => None,
        }
    }
    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, S)>) -> Result<()> {
        if self.spec.mode == JoinMode::Final {
            out.extend(self.state.drain());
        }
        Ok(())
    }
    fn recoverable(&self) -> bool {
        true
    }
    fn track_changes(&mut self) {
        self.dirty.enable();
    }
    fn snapshot(&mut self, site: &Site) -> Result<Vec<Change>> {
        self.dirty.snapshot(site, &self.state)
    }
    fn restore(
        &mut self,
        site: &Site,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        worker: WorkerInfo,
    ) -> Result<()> {
        let now = Instant::now();
        for (key, slots) in owned_rows(site, rows, worker)? {
            self.touch(&key, now);
            self.state.insert(key, slots);
        }
        Ok(())
    }
}

/// Routes the tagged values of every side by key and joins them.
fn join_operator<'s, K: Key, S: Slots>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    sides: TStream<'s, (K, S::In)>,
    spec: JoinSpec,
    empty: Arc<dyn Fn() -> S + Send + Sync>,
) -> TStream<'s, (K, S)> {
    let logic = JoinLogic {
        spec,
        empty,
        state: StateMap::default(),
        dirty: Dirty::default(),
        touched: StateMap::default(),
        touches: VecDeque::new(),
    };
    let pact = Exchange::new(|(k, _): &(K, S::In)| stable_hash(k));
    epoch_operator(ctx, step_id, sides, pact, logic)
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Joins this stream with `right` per key ([`JoinMode::Complete`]): once both
    /// sides have sent a value for a key, emits `(key, (left, right))` with the
    /// latest value of each and forgets the key.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("users");
    /// let names = flow.input("names", TestingSource::new(vec![(1, "ada".to_string()), (2, "bo".to_string())]))?;
    /// let emails = flow.input("emails", TestingSource::new(vec![(1, "ada@example.com".to_string())]))?;
    /// let out = TestingSink::new();
    /// names.join("join", &emails)?.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take(), [(1, ("ada".to_string(), "ada@example.com".to_string()))]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn join<R: Data>(
        &self,
        step_id: &str,
        right: &Stream<(K, R)>,
    ) -> Result<Stream<(K, (V, R))>> {
        self.join_pair(
            step_id,
            "join",
            right,
            JoinMode::Complete.into(),
            |(k, (l, r))| match (l, r) {
                (Some(l), Some(r)) => Some((k, (l, r))),
                _ => None,
            },
        )
    }

    /// Joins this stream with `right` per key in [`JoinMode::Running`] or
    /// [`JoinMode::Final`] mode (or a [`JoinSpec`] that forgets idle keys): emits `(key, (left, right))` with the latest value
    /// of each side so far, `None` for a side that has sent nothing for the key.
    /// ([`JoinMode::Complete`] emits only full pairs, all `Some`.)
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// use riffle::operators::join::JoinMode;
    /// let flow = Dataflow::new("prices");
    /// let bids = flow.input("bids", TestingSource::with_epochs(vec![(0, ('x', 10)), (2, ('x', 11))]))?;
    /// let asks = flow.input("asks", TestingSource::with_epochs(vec![(1, ('x', 12))]))?;
    /// let out = TestingSink::new();
    /// bids.join_running("quote", &asks, JoinMode::Running)?.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take(), [('x', (Some(10), None)), ('x', (Some(10), Some(12))), ('x', (Some(11), Some(12)))]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn join_running<R: Data>(
        &self,
        step_id: &str,
        right: &Stream<(K, R)>,
        spec: impl Into<JoinSpec>,
    ) -> Result<Stream<(K, Pair<V, R>)>> {
        self.join_pair(step_id, "join", right, spec.into(), Some)
    }

    /// Joins this stream with `others` (all of the same value type) per key in
    /// `mode`: emits `(key, slots)` where `slots[0]` is this stream's latest value
    /// and `slots[i]` that of `others[i - 1]`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// use riffle::operators::join::JoinMode;
    /// let flow = Dataflow::new("sensors");
    /// // (room, temperature) from three sensors; only the kitchen has all three.
    /// let a = flow.input("a", TestingSource::new(vec![('k', 20)]))?;
    /// let b = flow.input("b", TestingSource::new(vec![('k', 21)]))?;
    /// let c = flow.input("c", TestingSource::new(vec![('k', 19), ('h', 18)]))?;
    /// let out = TestingSink::new();
    /// a.join_all("all", &[&b, &c], JoinMode::Complete)?.output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take(), [('k', vec![Some(20), Some(21), Some(19)])]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn join_all(
        &self,
        step_id: &str,
        others: &[&Stream<(K, V)>],
        spec: impl Into<JoinSpec>,
    ) -> Result<Stream<(K, Vec<Option<V>>)>> {
        let spec = spec.into();
        let mut ups: Vec<&dyn AnyStream> = vec![self];
        ups.extend(others.iter().map(|s| *s as &dyn AnyStream));
        let keys: Vec<String> = std::iter::once(self.key())
            .chain(others.iter().map(|s| s.key()))
            .collect();
        let sides = keys.len();
        let empty: Arc<dyn Fn() -> Vec<Option<V>> + Send + Sync> =
            Arc::new(move || vec![None; sides]);
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            "join",
            &ups,
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                use timely::dataflow::operators::vec::Map;
                let mut tagged = Vec::with_capacity(keys.len());
                for (side, key) in keys.iter().enumerate() {
                    tagged.push(ctx.stream::<(K, V)>(key)?.map(move |(k, v)| (k, (side, v))));
                }
                let all = ctx.scope.concatenate(tagged);
                let joined = join_operator(ctx, &id, all, spec, empty.clone());
                ctx.insert(stream_key(&id, "down"), joined);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }

    /// The two-sided join step, with `finish` shaping what it emits.
    fn join_pair<R: Data, O: Data>(
        &self,
        step_id: &str,
        kind: &str,
        right: &Stream<(K, R)>,
        spec: JoinSpec,
        finish: Finish<K, V, R, O>,
    ) -> Result<Stream<O>> {
        use crate::window::Side;
        let (left_key, right_key) = (self.key(), right.key());
        let empty: Arc<dyn Fn() -> Pair<V, R> + Send + Sync> = Arc::new(|| (None, None));
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            kind,
            &[self as &dyn AnyStream, right],
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                use timely::dataflow::operators::Concat;
                use timely::dataflow::operators::vec::Map;
                let left = ctx
                    .stream::<(K, V)>(&left_key)?
                    .map(|(k, v)| (k, Side::<V, R>::Left(v)));
                let right = ctx
                    .stream::<(K, R)>(&right_key)?
                    .map(|(k, r)| (k, Side::<V, R>::Right(r)));
                let joined = join_operator(ctx, &id, left.concat(right), spec, empty.clone())
                    .flat_map(finish);
                ctx.insert(stream_key(&id, "down"), joined);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Side;

    type Slots2 = Pair<u32, u32>;

    fn logic(spec: JoinSpec) -> JoinLogic<char, Slots2> {
        JoinLogic {
            spec,
            empty: Arc::new(|| (None, None)),
            state: StateMap::default(),
            dirty: Dirty::default(),
            touched: StateMap::default(),
            touches: VecDeque::new(),
        }
    }

    fn site() -> Site {
        Site {
            step_id: "join".into(),
            worker: 0,
        }
    }

    /// Left values, a pause of `pause`, then right values: what comes out.
    fn left_then_right(spec: JoinSpec, pause: Duration) -> (Vec<(char, Slots2)>, usize) {
        let mut join = logic(spec);
        let mut out = Vec::new();
        let left = vec![('a', Side::Left(1)), ('b', Side::Left(2))];
        join.on_batch(&site(), 0, left, &mut out).unwrap();
        std::thread::sleep(pause);
        join.on_wake(&site(), 1, &mut out).unwrap();
        let held = join.state.len();
        let right = vec![('a', Side::Right(10))];
        join.on_batch(&site(), 1, right, &mut out).unwrap();
        join.on_end(&site(), &mut out).unwrap();
        out.sort_by_key(|(k, _)| *k);
        (out, held)
    }

    #[test]
    fn keys_idle_longer_than_forget_after_are_forgotten() {
        let complete = JoinSpec::new(JoinMode::Complete);
        let (out, held) = left_then_right(complete, Duration::from_millis(150));
        assert_eq!(out, [('a', (Some(1), Some(10)))]);
        assert_eq!(held, 2, "without forget_after, waiting keys stay");

        let forgetting = complete.forget_after(Duration::from_millis(50));
        let (out, held) = left_then_right(forgetting, Duration::from_millis(150));
        assert_eq!(
            out,
            [],
            "the left values were gone before their partner came"
        );
        assert_eq!(held, 0, "a wake-up alone forgets idle keys");

        let (out, _) = left_then_right(
            JoinSpec::new(JoinMode::Final).forget_after(Duration::from_millis(50)),
            Duration::from_millis(150),
        );
        assert_eq!(out, [('a', (None, Some(10)))]);

        let (out, _) = left_then_right(
            JoinSpec::new(JoinMode::Final).forget_after(Duration::from_secs(60)),
            Duration::from_millis(10),
        );
        assert_eq!(out, [('a', (Some(1), Some(10))), ('b', (Some(2), None))]);
    }

    #[test]
    fn forgetting_is_part_of_the_next_snapshot() {
        let mut join =
            logic(JoinSpec::new(JoinMode::Running).forget_after(Duration::from_millis(20)));
        join.track_changes();
        let mut out = Vec::new();
        join.on_batch(&site(), 0, vec![('a', Side::Left(1))], &mut out)
            .unwrap();
        assert_eq!(join.snapshot(&site()).unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(40));
        join.on_wake(&site(), 1, &mut out).unwrap();
        let changes = join.snapshot(&site()).unwrap();
        assert_eq!(changes.len(), 1);
        assert!(
            changes[0].1.is_none(),
            "the forgotten key is deleted from the store"
        );
        assert_eq!(join.wake_after(), None, "nothing left to forget");
    }
}
