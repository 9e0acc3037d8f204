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
//! A join snapshots its slots under recovery and resumes with them, on any number
//! of workers.
//!
//! For joins by time, where each window pairs the values that fell in it, see
//! [`crate::window`]'s `join_window`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::Concatenate;

use super::Site;
use super::keyed::{Dirty, EpochLogic, StateMap, epoch_operator, owned_rows};
use crate::build::{BuildCtx, TStream, WorkerInfo};
use crate::data::{Data, Key};
use crate::error::Result;
use crate::exchange::stable_hash;
use crate::flow::{AnyStream, Stream, stream_key};
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
struct Join<K, S> {
    mode: JoinMode,
    empty: Arc<dyn Fn() -> S + Send + Sync>,
    state: StateMap<K, S>,
    dirty: Dirty<K>,
}

impl<K: Key, S: Slots> EpochLogic<(K, S::In), (K, S)> for Join<K, S> {
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, S::In)>,
        out: &mut Vec<(K, S)>,
    ) -> Result<()> {
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
            match self.mode {
                JoinMode::Complete if slots.is_full() => {
                    if let Some(full) = self.state.remove(&k) {
                        out.push((k, full));
                    }
                }
                JoinMode::Running => out.push((k, slots.clone())),
                JoinMode::Complete | JoinMode::Final => {}
            }
        }
        Ok(())
    }
    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, S)>) -> Result<()> {
        if self.mode == JoinMode::Final {
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
        self.state.extend(owned_rows(site, rows, worker)?);
        Ok(())
    }
}

/// Routes the tagged values of every side by key and joins them.
fn join_operator<'s, K: Key, S: Slots>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    sides: TStream<'s, (K, S::In)>,
    mode: JoinMode,
    empty: Arc<dyn Fn() -> S + Send + Sync>,
) -> TStream<'s, (K, S)> {
    let logic = Join {
        mode,
        empty,
        state: StateMap::default(),
        dirty: Dirty::default(),
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
            JoinMode::Complete,
            |(k, (l, r))| match (l, r) {
                (Some(l), Some(r)) => Some((k, (l, r))),
                _ => None,
            },
        )
    }

    /// Joins this stream with `right` per key in [`JoinMode::Running`] or
    /// [`JoinMode::Final`] mode: emits `(key, (left, right))` with the latest value
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
        mode: JoinMode,
    ) -> Result<Stream<(K, Pair<V, R>)>> {
        self.join_pair(step_id, "join", right, mode, Some)
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
        mode: JoinMode,
    ) -> Result<Stream<(K, Vec<Option<V>>)>> {
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
                let joined = join_operator(ctx, &id, all, mode, empty.clone());
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
        mode: JoinMode,
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
                let joined = join_operator(ctx, &id, left.concat(right), mode, empty.clone())
                    .flat_map(finish);
                ctx.insert(stream_key(&id, "down"), joined);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }
}
