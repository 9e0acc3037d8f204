//! Keyed operators: state per key, each key on exactly one worker.
//!
//! All of them are built on one operator shape, [`epoch_operator`]: it stashes
//! incoming items by epoch, hands batches to the step's logic in epoch order (an
//! epoch's items are processed only once every earlier epoch is complete, so results
//! do not depend on how items interleave between workers), tells the logic when an
//! epoch closes, and when the stream ends. Output for an epoch is sent at that epoch;
//! output at the end is sent at the last epoch the stream reached, or, for steps whose
//! whole output comes at the end (final aggregations), at the last epoch that brought
//! items. Other steps keep no capability for a closed epoch: an idle stream's
//! progress (and so its recovery commits) moves on with the clock.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use super::Site;
use crate::build::WorkerInfo;
use crate::build::{BuildCtx, TStream};
use crate::data::{Data, Key};
use crate::dataflow::{Stream, stream_key};
use crate::error::Result;
use crate::exchange::{stable_hash, worker_for};
use crate::recovery::{Change, decode, encode};

/// The maps that hold keyed state on a worker: never iterated for results that
/// leave the operator in an order anyone relies on, so a fast fixed-seed hasher.
pub(crate) type StateMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// What a keyed step does with batches, closing epochs and the end of the stream.
pub(crate) trait EpochLogic<I, O>: 'static {
    fn on_batch(&mut self, site: &Site, epoch: u64, items: Vec<I>, out: &mut Vec<O>) -> Result<()>;
    /// Sees every batch as it arrives, before it waits for its epoch's turn: for
    /// signs of life that must not wait (a window's idle tracking). Nothing may be
    /// decided on the items' content here; that is [`EpochLogic::on_batch`]'s job.
    fn on_arrival(&mut self, _epoch: u64, _items: &[I]) {}
    fn on_close(&mut self, _site: &Site, _epoch: u64, _out: &mut Vec<O>) -> Result<()> {
        Ok(())
    }
    fn on_end(&mut self, _site: &Site, _out: &mut Vec<O>) -> Result<()> {
        Ok(())
    }
    /// Whether [`EpochLogic::on_end`]'s output is sent at the last epoch that
    /// brought the step items (the same epoch on every shape of cluster, for
    /// results that exist only at the end: final aggregations), rather than at the
    /// last epoch the stream reached. Holding that epoch holds the flow's progress
    /// (and its commits) there while the stream is idle, so only steps whose whole
    /// output comes at the end ask for it, and under a recovery store none is held
    /// (the end's output comes at the last epoch reached, after the committed end).
    fn ends_at_last_epoch(&self) -> bool {
        false
    }
    /// Called on every activation once the batches the frontier allows are handled,
    /// with the earliest epoch still open: for work driven by the clock (closing
    /// windows, idle inputs). Output is sent at that epoch.
    fn on_wake(&mut self, _site: &Site, _epoch: u64, _out: &mut Vec<O>) -> Result<()> {
        Ok(())
    }
    /// How soon the step wants [`EpochLogic::on_wake`] again without new input.
    fn wake_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// Whether the step can snapshot its state; steps that cannot are refused when
    /// the run has a recovery store.
    fn recoverable(&self) -> bool {
        false
    }
    /// Starts remembering which keys change, for [`EpochLogic::snapshot`].
    fn track_changes(&mut self) {}
    /// The keys changed since the last call and their new state (None: deleted).
    fn snapshot(&mut self, _site: &Site) -> Result<Vec<Change>> {
        Ok(Vec::new())
    }
    /// Step-wide state beside the keyed state (e.g. a window step's watermark),
    /// saved with every snapshot, one row per worker.
    fn snapshot_meta(&mut self, _site: &Site) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Reloads step-wide state from what every worker of the snapshotted run saved
    /// (whatever their number was).
    fn restore_meta(&mut self, _site: &Site, _saved: Vec<Vec<u8>>) -> Result<()> {
        Ok(())
    }
    /// Reloads the step's state from snapshot rows; keeps the keys `worker` owns.
    fn restore(
        &mut self,
        _site: &Site,
        _rows: Vec<(Vec<u8>, Vec<u8>)>,
        _worker: WorkerInfo,
    ) -> Result<()> {
        Ok(())
    }
}

/// The keys of a step's state that changed since its last snapshot (only tracked
/// when the run has a recovery store).
pub(crate) struct Dirty<K> {
    keys: Option<std::collections::HashSet<K, foldhash::fast::FixedState>>,
}

impl<K> Default for Dirty<K> {
    fn default() -> Self {
        Self { keys: None }
    }
}

impl<K: Key> Dirty<K> {
    pub fn enable(&mut self) {
        self.keys.get_or_insert_with(Default::default);
    }
    #[inline]
    pub fn mark(&mut self, key: &K) {
        if let Some(keys) = &mut self.keys
            && !keys.contains(key)
        {
            keys.insert(key.clone());
        }
    }
    /// The changed keys, forgetting them.
    pub fn take(&mut self) -> Vec<K> {
        self.keys
            .as_mut()
            .map(|k| k.drain().collect())
            .unwrap_or_default()
    }
    /// Encodes the changed keys with their state in `state`.
    pub fn snapshot<V: serde::Serialize>(
        &mut self,
        site: &Site,
        state: &StateMap<K, V>,
    ) -> Result<Vec<Change>> {
        let Some(keys) = &mut self.keys else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys.drain() {
            let value = match state.get(&key) {
                Some(v) => Some(encode(&site.step_id, v)?),
                None => None,
            };
            out.push((encode(&site.step_id, &key)?, value));
        }
        Ok(out)
    }
}

/// Decodes snapshot rows into `(key, state)` for the keys `worker` owns.
pub(crate) fn owned_rows<K: Key, V: serde::de::DeserializeOwned>(
    site: &Site,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    worker: WorkerInfo,
) -> Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for (k, v) in rows {
        let key: K = decode(&site.step_id, &k)?;
        if worker_for(&key, worker.count) == worker.index {
            out.push((key, decode(&site.step_id, &v)?));
        }
    }
    Ok(out)
}

/// Where a step's step-wide state is kept in the recovery store: a name no step
/// id can have (step ids may not contain ':').
fn meta_id(step_id: &str) -> String {
    format!("{step_id}:meta")
}

/// The recovery methods of an [`EpochLogic`] whose state is a `state: StateMap`
/// with a `dirty: Dirty` tracker: snapshot the changed keys, reload the owned ones.
macro_rules! keyed_state_recovery {
    () => {
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
    };
}

/// Builds the epoch-ordered operator with `pact` routing its input.
pub(crate) fn epoch_operator<'s, I, O, P, L>(
    ctx: &BuildCtx<'s>,
    name: &str,
    input: TStream<'s, I>,
    pact: P,
    mut logic: L,
) -> TStream<'s, O>
where
    I: Data,
    O: Data,
    P: ParallelizationContract<u64, Vec<I>>,
    L: EpochLogic<I, O>,
{
    let shared = ctx.shared.clone();
    let site = Site {
        step_id: name.into(),
        worker: ctx.worker.index,
    };
    let recovery = shared.recovery.clone();
    let mut snapshotted = recovery.as_ref().and_then(|r| r.resume);
    if let Some(recovery) = &recovery {
        let ready = if !logic.recoverable() {
            Err(crate::error::RiffleError::Recovery(format!(
                "step {name:?} cannot snapshot its state yet, so it cannot run with a recovery store"
            )))
        } else {
            logic.track_changes();
            match recovery.resume {
                Some(epoch) => recovery
                    .store
                    .load(name, epoch)
                    .and_then(|rows| logic.restore(&site, rows, ctx.worker))
                    .and_then(|()| recovery.store.load(&meta_id(name), epoch))
                    .and_then(|rows| {
                        let saved = rows.into_iter().map(|(_, v)| v).collect();
                        logic.restore_meta(&site, saved)
                    }),
                None => Ok(()),
            }
        };
        if let Err(e) = ready {
            shared.fail(e);
        }
    }
    let scope = ctx.scope;
    input.unary_frontier(pact, name, move |cap, info| {
        let activator = scope.activator_for(info.address.clone());
        // Held at the earliest open epoch, for output driven by the clock (and, under
        // recovery, until the snapshot of the epochs before it is written).
        let mut held: Option<Capability<u64>> = Some(cap);
        // Batches wait by epoch as they came: kept, never copied into one.
        let mut pending: BTreeMap<u64, Vec<Vec<I>>> = BTreeMap::new();
        let mut caps: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
        // The last closed epoch's capability, for steps that end at it.
        let mut last: Option<Capability<u64>> = None;
        let mut out: Vec<O> = Vec::new();
        let mut ended = false;
        move |(input, frontier), output| {
            input.for_each(|time, data| {
                let Some(epoch) = time.least().copied() else {
                    return;
                };
                if shared.aborted() {
                    data.clear();
                    return;
                }
                if !caps.contains_key(&epoch)
                    && let Some(cap) = time.retain_least(0)
                {
                    caps.insert(epoch, cap);
                }
                logic.on_arrival(epoch, data);
                pending.entry(epoch).or_default().push(std::mem::take(data));
            });
            if shared.aborted() {
                pending.clear();
                caps.clear();
                last = None;
                held = None;
                return;
            }
            let low = frontier.frontier().first().copied();
            let mut run = |logic_call: &mut dyn FnMut(&mut L, &mut Vec<O>) -> Result<()>,
                           cap: &Capability<u64>,
                           logic: &mut L,
                           out: &mut Vec<O>|
             -> bool {
                let result = catch_unwind(AssertUnwindSafe(|| logic_call(logic, out)));
                match result {
                    Ok(Ok(())) => {
                        if !out.is_empty() {
                            // In bounded containers; `out` keeps its capacity.
                            output.session(cap).give_iterator(out.drain(..));
                        }
                        true
                    }
                    Ok(Err(e)) => {
                        shared.fail(e);
                        false
                    }
                    Err(payload) => {
                        shared.fail(site.panic_on::<()>(*cap.time(), None, payload));
                        false
                    }
                }
            };
            // Under recovery: the state as of the end of the last snapshot epoch
            // before `bound`, taken before anything of a later epoch is handled.
            let mut snapshot = |logic: &mut L, bound: u64| -> bool {
                let Some(recovery) = &recovery else {
                    return true;
                };
                let Some(epoch) = recovery.snapshot_before(bound) else {
                    return true;
                };
                if snapshotted.is_some_and(|s| epoch <= s) {
                    return true;
                }
                let written = logic
                    .snapshot(&site)
                    .and_then(|changes| recovery.store.write(&site.step_id, epoch, changes))
                    .and_then(|()| logic.snapshot_meta(&site))
                    .and_then(|meta| match meta {
                        Some(meta) => {
                            let worker = encode(&site.step_id, &(site.worker as u64))?;
                            recovery.store.write(
                                &meta_id(&site.step_id),
                                epoch,
                                vec![(worker, Some(meta))],
                            )
                        }
                        None => Ok(()),
                    });
                match written {
                    Ok(()) => {
                        snapshotted = Some(epoch);
                        true
                    }
                    Err(e) => {
                        shared.fail(e);
                        false
                    }
                }
            };
            // Epochs in order: an epoch's batches once the frontier allows them, its
            // close once the frontier has passed it.
            loop {
                let next_batch = pending
                    .first_key_value()
                    .map(|(e, _)| *e)
                    .filter(|e| low.is_none_or(|l| *e <= l));
                let next_close = caps
                    .first_key_value()
                    .map(|(e, _)| *e)
                    .filter(|e| low.is_none_or(|l| *e < l));
                let epoch = match (next_batch, next_close) {
                    (Some(b), Some(c)) => b.min(c),
                    (Some(b), None) => b,
                    (None, Some(c)) => c,
                    (None, None) => break,
                };
                if !snapshot(&mut logic, epoch) {
                    return;
                }
                if next_batch == Some(epoch) {
                    let batches = pending.remove(&epoch).unwrap_or_default();
                    let Some(cap) = caps.get(&epoch) else {
                        continue;
                    };
                    for items in batches {
                        let mut items = Some(items);
                        if !run(
                            &mut |l, o| {
                                l.on_batch(&site, epoch, items.take().unwrap_or_default(), o)
                            },
                            cap,
                            &mut logic,
                            &mut out,
                        ) {
                            return;
                        }
                    }
                }
                if next_close == Some(epoch)
                    && let Some(cap) = caps.remove(&epoch)
                {
                    if !run(
                        &mut |l, o| l.on_close(&site, epoch, o),
                        &cap,
                        &mut logic,
                        &mut out,
                    ) {
                        return;
                    }
                    // Under a store the flow's progress must pass every epoch,
                    // for the run to commit its end (a completed run holds
                    // its last snapshot until then): the end's output then comes
                    // at the last epoch the stream reached, after that snapshot.
                    if logic.ends_at_last_epoch() && recovery.is_none() {
                        last = Some(cap);
                    }
                }
            }
            match low {
                Some(low) => {
                    if !snapshot(&mut logic, low) {
                        return;
                    }
                    if let Some(cap) = held.as_mut() {
                        if *cap.time() < low {
                            cap.downgrade(&low);
                        }
                        if !run(
                            &mut |l, o| l.on_wake(&site, low, o),
                            cap,
                            &mut logic,
                            &mut out,
                        ) {
                            return;
                        }
                    }
                    if let Some(delay) = logic.wake_after() {
                        activator.activate_after(delay);
                    }
                }
                None => {
                    if !ended {
                        ended = true;
                        if let Some(cap) = last.take().or_else(|| held.take()) {
                            run(&mut |l, o| l.on_end(&site, o), &cap, &mut logic, &mut out);
                        }
                    }
                    held = None;
                }
            }
        }
    })
}

/// The pact that sends `(key, value)` to the worker owning `key`.
fn by_key<K: Key, V: Data>() -> Exchange<(K, V), impl FnMut(&(K, V)) -> u64 + 'static> {
    Exchange::new(|(k, _): &(K, V)| stable_hash(k))
}

impl<T: Data> Stream<T> {
    /// Adds a step made of a pre-aggregation on each worker (`local`), an exchange by
    /// key, and a merge on the key's owner (`global`).
    fn two_stage<K, A, O, L1, L2, M1, M2>(
        &self,
        step_id: &str,
        kind: &str,
        local: M1,
        global: M2,
    ) -> Result<Stream<O>>
    where
        K: Key,
        A: Data,
        O: Data,
        L1: EpochLogic<T, (K, A)>,
        L2: EpochLogic<(K, A), O>,
        M1: Fn(usize) -> L1 + Send + Sync + 'static,
        M2: Fn() -> L2 + Send + Sync + 'static,
    {
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            kind,
            &[self],
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.stream::<T>(&up_key)?;
                let limit = ctx.shared.preaggregate_limit;
                let partial = epoch_operator(ctx, &id, input, Pipeline, local(limit));
                let merged = epoch_operator(ctx, &id, partial, by_key::<K, A>(), global());
                ctx.insert(stream_key(&id, "down"), merged);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }

    /// Adds a one-operator step whose input is routed by `pact`.
    pub(crate) fn epoch_step<O, L, M>(
        &self,
        step_id: &str,
        kind: &str,
        keyed: bool,
        make: M,
    ) -> Result<Stream<O>>
    where
        O: Data,
        L: EpochLogic<T, O>,
        M: Fn() -> L + Send + Sync + 'static,
        T: KeyedItem,
    {
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            kind,
            &[self],
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.stream::<T>(&up_key)?;
                let out = if keyed {
                    epoch_operator(
                        ctx,
                        &id,
                        input,
                        Exchange::new(|item: &T| item.route()),
                        make(),
                    )
                } else {
                    epoch_operator(ctx, &id, input, Pipeline, make())
                };
                ctx.insert(stream_key(&id, "down"), out);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }

    /// Counts items by the key `key` computes from each (taking the item), and emits
    /// `(key, count)` for every key when the stream ends.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a", "b", "a"].into_iter().map(String::from).collect()))?
    ///     .count_final("count", |w: String| w)?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [("a".to_string(), 2), ("b".to_string(), 1)]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn count_final<K: Key>(
        &self,
        step_id: &str,
        key: impl Fn(T) -> K + Send + Sync + 'static,
    ) -> Result<Stream<(K, u64)>> {
        self.count_final_each(step_id, move |item, tally| tally.add_owned(key(item)))
    }

    /// Counts the keys `keys` finds in each item, as a `flat_map` into keys and a
    /// [`Stream::count_final`] would, but looked up by reference: `keys` hands each
    /// key to [`Tally::add`] as a borrowed `&Q` (a `&str` of the line), and the
    /// worker's partial count allocates a `K` (a `String`) only for a key it does
    /// not hold yet. Where most keys repeat, as words do, this saves an allocation
    /// and a copy per key. Emits `(key, count)` for every key when the stream ends.
    ///
    /// ```
    /// use riffle::{Dataflow, operators::keyed::Tally, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a b a".to_string(), "b".to_string()]))?
    ///     .count_final_each("count", |line: String, words: &mut Tally<String>| {
    ///         line.split(' ').for_each(|w| words.add(w))
    ///     })?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [("a".to_string(), 2), ("b".to_string(), 2)]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn count_final_each<K: Key>(
        &self,
        step_id: &str,
        keys: impl Fn(T, &mut Tally<'_, K>) + Send + Sync + 'static,
    ) -> Result<Stream<(K, u64)>> {
        let keys = Arc::new(keys);
        self.two_stage(
            step_id,
            "count_final",
            move |limit| CountLocal {
                keys: keys.clone(),
                counts: StateMap::default(),
                limit,
                _t: std::marker::PhantomData,
            },
            || FoldGlobal {
                merge: AddCounts,
                state: StateMap::default(),
                dirty: Dirty::default(),
            },
        )
    }
}

/// Where a [`Stream::count_final_each`] function counts the keys of an item.
pub struct Tally<'a, K> {
    counts: &'a mut StateMap<K, u64>,
    limit: usize,
    out: &'a mut Vec<(K, u64)>,
}

impl<K: Key> Tally<'_, K> {
    /// Counts `key` once, making an owned key from it only if this worker's
    /// partial count does not hold it yet.
    #[inline]
    pub fn add<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.counts.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(key.to_owned(), 1);
                flush_past(self.counts, self.limit, self.out);
            }
        }
    }

    /// Counts `key` once, taking it: for a key the function owns already.
    #[inline]
    pub fn add_owned(&mut self, key: K) {
        *self.counts.entry(key).or_insert(0) += 1;
        flush_past(self.counts, self.limit, self.out);
    }
}

/// The first stage of `count_final` and `count_final_each`: this worker's partial
/// counts.
struct CountLocal<T, K, F> {
    keys: Arc<F>,
    counts: StateMap<K, u64>,
    /// How many keys it holds before it sends the partial counts on.
    limit: usize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data, K: Key, F: Fn(T, &mut Tally<'_, K>) + Send + Sync + 'static> EpochLogic<T, (K, u64)>
    for CountLocal<T, K, F>
{
    fn on_batch(&mut self, _: &Site, _: u64, items: Vec<T>, out: &mut Vec<(K, u64)>) -> Result<()> {
        let mut tally = Tally {
            counts: &mut self.counts,
            limit: self.limit,
            out,
        };
        for item in items {
            (self.keys)(item, &mut tally);
        }
        Ok(())
    }
    // Partial counts go to the key's owner as each epoch closes, so this stage
    // holds nothing across epochs and has nothing to snapshot.
    fn on_close(&mut self, _: &Site, _: u64, out: &mut Vec<(K, u64)>) -> Result<()> {
        out.extend(self.counts.drain());
        Ok(())
    }
    fn ends_at_last_epoch(&self) -> bool {
        true
    }
    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, u64)>) -> Result<()> {
        out.extend(self.counts.drain());
        Ok(())
    }
    fn recoverable(&self) -> bool {
        true
    }
}

/// Items that can be routed by key.
pub(crate) trait KeyedItem {
    fn route(&self) -> u64;
}

impl<K: Hash, V> KeyedItem for (K, V) {
    fn route(&self) -> u64 {
        stable_hash(&self.0)
    }
}

/// Sends a pre-aggregation's partial results on once it holds more than `limit`
/// keys, so that its memory stays bounded (the key's owner merges them).
#[inline]
fn flush_past<K: Key, A>(state: &mut StateMap<K, A>, limit: usize, out: &mut Vec<(K, A)>) {
    if state.len() > limit {
        out.extend(state.drain());
    }
}

/// How the key's owner combines a partial result with what it holds.
trait MergeInto<K, A> {
    fn merge_into(&self, state: &mut StateMap<K, A>, key: K, partial: A);
}

/// Partial counts, added in place: one lookup, and a key already held is dropped.
struct AddCounts;

impl<K: Key> MergeInto<K, u64> for AddCounts {
    #[inline]
    fn merge_into(&self, state: &mut StateMap<K, u64>, key: K, partial: u64) {
        *state.entry(key).or_insert(0) += partial;
    }
}

/// A user's `merger(held, partial) -> combined`.
struct MergeWith<M>(M);

impl<K: Key, A, M: Fn(A, A) -> A> MergeInto<K, A> for MergeWith<M> {
    fn merge_into(&self, state: &mut StateMap<K, A>, key: K, partial: A) {
        let merged = match state.remove(&key) {
            Some(held) => (self.0)(held, partial),
            None => partial,
        };
        state.insert(key, merged);
    }
}

/// Merges `(key, partial)` with `merge` and emits `(key, total)` at the end.
struct FoldGlobal<K, A, M> {
    merge: M,
    state: StateMap<K, A>,
    dirty: Dirty<K>,
}

impl<K: Key, A: Data, M: MergeInto<K, A> + 'static> EpochLogic<(K, A), (K, A)>
    for FoldGlobal<K, A, M>
{
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, A)>,
        _: &mut Vec<(K, A)>,
    ) -> Result<()> {
        for (k, a) in items {
            self.dirty.mark(&k);
            self.merge.merge_into(&mut self.state, k, a);
        }
        Ok(())
    }
    fn ends_at_last_epoch(&self) -> bool {
        true
    }
    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, A)>) -> Result<()> {
        out.extend(self.state.drain());
        Ok(())
    }
    keyed_state_recovery!();
}

/// Per-epoch state of one key.
type PerEpoch<K, A> = BTreeMap<u64, StateMap<K, A>>;

/// Folds `(key, value)` per epoch with `fold` and emits `(key, acc)` when the epoch
/// closes; used on both sides of the exchange for `reduce_epoch`.
struct EpochFold<K, A, V, F> {
    fold: Arc<F>,
    state: PerEpoch<K, A>,
    /// Keys held per epoch before the partial results go on (`usize::MAX` where
    /// this is not a pre-aggregation: each key must come out once per epoch).
    limit: usize,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K: Key, V: Data, F: Fn(Option<V>, V) -> V + Send + Sync + 'static> EpochLogic<(K, V), (K, V)>
    for EpochFold<K, V, V, F>
{
    fn on_batch(
        &mut self,
        _: &Site,
        epoch: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, V)>,
    ) -> Result<()> {
        let state = self.state.entry(epoch).or_default();
        for (k, v) in items {
            let acc = state.remove(&k);
            let next = (self.fold)(acc, v);
            state.insert(k, next);
            flush_past(state, self.limit, out);
        }
        Ok(())
    }
    fn on_close(&mut self, _: &Site, epoch: u64, out: &mut Vec<(K, V)>) -> Result<()> {
        if let Some(state) = self.state.remove(&epoch) {
            out.extend(state);
        }
        Ok(())
    }
    // State lives only while its epoch is open; snapshots fall between epochs.
    fn recoverable(&self) -> bool {
        true
    }
}

struct FoldLocal<K, V, A, B, F> {
    builder: Arc<B>,
    folder: Arc<F>,
    state: StateMap<K, A>,
    /// How many keys it holds before it sends the partial accumulators on.
    limit: usize,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V, A, B, F> EpochLogic<(K, V), (K, A)> for FoldLocal<K, V, A, B, F>
where
    K: Key,
    V: Data,
    A: Data,
    B: Fn(&K) -> A + Send + Sync + 'static,
    F: Fn(A, V) -> A + Send + Sync + 'static,
{
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, A)>,
    ) -> Result<()> {
        for (k, v) in items {
            let acc = match self.state.remove(&k) {
                Some(acc) => acc,
                None => (self.builder)(&k),
            };
            let next = (self.folder)(acc, v);
            self.state.insert(k, next);
            flush_past(&mut self.state, self.limit, out);
        }
        Ok(())
    }
    // Partial accumulators go to the key's owner as each epoch closes.
    fn on_close(&mut self, _: &Site, _: u64, out: &mut Vec<(K, A)>) -> Result<()> {
        out.extend(self.state.drain());
        Ok(())
    }
    fn ends_at_last_epoch(&self) -> bool {
        true
    }
    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, A)>) -> Result<()> {
        out.extend(self.state.drain());
        Ok(())
    }
    fn recoverable(&self) -> bool {
        true
    }
}

struct Reduce<K, V, R, C> {
    reducer: Arc<R>,
    is_complete: Arc<C>,
    state: StateMap<K, V>,
    dirty: Dirty<K>,
}

impl<K, V, R, C> EpochLogic<(K, V), (K, V)> for Reduce<K, V, R, C>
where
    K: Key,
    V: Data,
    R: Fn(V, V) -> V + Send + Sync + 'static,
    C: Fn(&V) -> bool + Send + Sync + 'static,
{
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, V)>,
    ) -> Result<()> {
        for (k, v) in items {
            self.dirty.mark(&k);
            let acc = match self.state.remove(&k) {
                Some(acc) => (self.reducer)(acc, v),
                None => v,
            };
            if (self.is_complete)(&acc) {
                out.push((k, acc));
            } else {
                self.state.insert(k, acc);
            }
        }
        Ok(())
    }
    keyed_state_recovery!();
}

struct StatefulMap<K, V, S, W, B, M> {
    builder: Arc<B>,
    mapper: Arc<M>,
    state: StateMap<K, S>,
    dirty: Dirty<K>,
    _vw: std::marker::PhantomData<fn(V) -> W>,
}

impl<K, V, S, W, B, M> EpochLogic<(K, V), (K, W)> for StatefulMap<K, V, S, W, B, M>
where
    K: Key,
    V: Data,
    S: serde::Serialize + serde::de::DeserializeOwned + 'static,
    W: Data,
    B: Fn(&K) -> S + Send + Sync + 'static,
    M: Fn(S, V) -> (Option<S>, W) + Send + Sync + 'static,
{
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, W)>,
    ) -> Result<()> {
        for (k, v) in items {
            self.dirty.mark(&k);
            let state = match self.state.remove(&k) {
                Some(s) => s,
                None => (self.builder)(&k),
            };
            let (next, w) = (self.mapper)(state, v);
            if let Some(next) = next {
                self.state.insert(k.clone(), next);
            }
            out.push((k, w));
        }
        Ok(())
    }
    keyed_state_recovery!();
}

struct Collect<K, V> {
    max_size: usize,
    state: PerEpoch<K, Vec<V>>,
}

impl<K: Key, V: Data> EpochLogic<(K, V), (K, Vec<V>)> for Collect<K, V> {
    fn on_batch(
        &mut self,
        _: &Site,
        epoch: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, Vec<V>)>,
    ) -> Result<()> {
        let state = self.state.entry(epoch).or_default();
        for (k, v) in items {
            let values = state.entry(k.clone()).or_default();
            values.push(v);
            if values.len() >= self.max_size {
                let full = state.remove(&k).unwrap_or_default();
                out.push((k, full));
            }
        }
        Ok(())
    }
    fn on_close(&mut self, _: &Site, epoch: u64, out: &mut Vec<(K, Vec<V>)>) -> Result<()> {
        if let Some(state) = self.state.remove(&epoch) {
            out.extend(state);
        }
        Ok(())
    }
    // State lives only while its epoch is open; snapshots fall between epochs.
    fn recoverable(&self) -> bool {
        true
    }
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Transforms every value, keeping its key.
    pub fn map_value<W: Data>(
        &self,
        step_id: &str,
        f: impl Fn(V) -> W + Send + Sync + 'static,
    ) -> Result<Stream<(K, W)>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "map_value", move || {
            let f = f.clone();
            move |_: &Site, _, batch: &mut Vec<(K, V)>, out: &mut Vec<(K, W)>| {
                out.extend(batch.drain(..).map(|(k, v)| (k, f(v))));
                Ok(())
            }
        })
    }

    /// Combines each key's values with `reducer(acc, value)` until `is_complete(acc)`,
    /// then emits `(key, acc)` and forgets the key.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// let items = vec![('a', 1), ('a', 2), ('b', 5), ('a', 3)];
    /// flow.input("inp", TestingSource::new(items))?
    ///     .reduce("sum_to_6", |acc, v| acc + v, |acc| *acc >= 6)?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [('a', 6)]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn reduce(
        &self,
        step_id: &str,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        is_complete: impl Fn(&V) -> bool + Send + Sync + 'static,
    ) -> Result<Stream<(K, V)>> {
        let reducer = Arc::new(reducer);
        let is_complete = Arc::new(is_complete);
        self.epoch_step(step_id, "reduce", true, move || Reduce {
            reducer: reducer.clone(),
            is_complete: is_complete.clone(),
            state: StateMap::default(),
            dirty: Dirty::default(),
        })
    }

    /// Combines each key's values within each epoch and emits `(key, acc)` when the
    /// epoch closes. Pre-aggregates on each worker before the exchange.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// let items = vec![(0, ('a', 1)), (0, ('a', 2)), (1, ('a', 10))];
    /// flow.input("inp", TestingSource::with_epochs(items))?
    ///     .reduce_epoch("sum", |acc, v| acc + v)?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [('a', 3), ('a', 10)]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn reduce_epoch(
        &self,
        step_id: &str,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<Stream<(K, V)>> {
        let fold = Arc::new(move |acc: Option<V>, v: V| match acc {
            Some(acc) => reducer(acc, v),
            None => v,
        });
        let global = fold.clone();
        self.two_stage(
            step_id,
            "reduce_epoch",
            move |limit| EpochFold {
                fold: fold.clone(),
                state: BTreeMap::new(),
                limit,
                _v: std::marker::PhantomData,
            },
            move || EpochFold {
                fold: global.clone(),
                state: BTreeMap::new(),
                limit: usize::MAX,
                _v: std::marker::PhantomData,
            },
        )
    }

    /// Like [`Stream::reduce_epoch`], but each worker reduces only the items it holds,
    /// with no exchange: a key may be emitted once per worker.
    pub fn reduce_epoch_local(
        &self,
        step_id: &str,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<Stream<(K, V)>> {
        let fold = Arc::new(move |acc: Option<V>, v: V| match acc {
            Some(acc) => reducer(acc, v),
            None => v,
        });
        self.epoch_step(step_id, "reduce_epoch_local", false, move || EpochFold {
            fold: fold.clone(),
            state: BTreeMap::new(),
            limit: usize::MAX,
            _v: std::marker::PhantomData,
        })
    }

    /// Maps each value with per-key state: a new key's state is `builder(key)`;
    /// `mapper(state, value)` returns the next state (`None` forgets the key) and the
    /// value to emit as `(key, out)`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// let items = vec![('a', 1), ('a', 2), ('a', 3)];
    /// flow.input("inp", TestingSource::new(items))?
    ///     .stateful_map("running_sum", |_key| 0, |sum, v| (Some(sum + v), sum + v))?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take(), [('a', 1), ('a', 3), ('a', 6)]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn stateful_map<S: serde::Serialize + serde::de::DeserializeOwned + 'static, W: Data>(
        &self,
        step_id: &str,
        builder: impl Fn(&K) -> S + Send + Sync + 'static,
        mapper: impl Fn(S, V) -> (Option<S>, W) + Send + Sync + 'static,
    ) -> Result<Stream<(K, W)>> {
        let builder = Arc::new(builder);
        let mapper = Arc::new(mapper);
        self.epoch_step(step_id, "stateful_map", true, move || StatefulMap {
            builder: builder.clone(),
            mapper: mapper.clone(),
            state: StateMap::default(),
            dirty: Dirty::default(),
            _vw: std::marker::PhantomData,
        })
    }

    /// Folds each key's values into an accumulator (`builder(key)`, then
    /// `folder(acc, value)`) and emits `(key, acc)` when the stream ends. Each worker
    /// folds what it holds; the partial accumulators of a key are combined with
    /// `merger` on the key's owner.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// let items = vec![('a', 1), ('b', 2), ('a', 3)];
    /// flow.input("inp", TestingSource::new(items))?
    ///     .fold_final("values", |_k| Vec::new(), |mut acc, v| { acc.push(v); acc }, |mut a, b| { a.extend(b); a })?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), [('a', vec![1, 3]), ('b', vec![2])]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn fold_final<A: Data>(
        &self,
        step_id: &str,
        builder: impl Fn(&K) -> A + Send + Sync + 'static,
        folder: impl Fn(A, V) -> A + Send + Sync + 'static,
        merger: impl Fn(A, A) -> A + Send + Sync + Clone + 'static,
    ) -> Result<Stream<(K, A)>> {
        let builder = Arc::new(builder);
        let folder = Arc::new(folder);
        self.two_stage(
            step_id,
            "fold_final",
            move |limit| FoldLocal {
                builder: builder.clone(),
                folder: folder.clone(),
                state: StateMap::default(),
                limit,
                _v: std::marker::PhantomData,
            },
            move || FoldGlobal {
                merge: MergeWith(merger.clone()),
                state: StateMap::default(),
                dirty: Dirty::default(),
            },
        )
    }

    /// Collects each key's values per epoch into a `Vec`, emitted as `(key, values)`
    /// when the epoch closes or when it holds `max_size` values.
    pub fn collect(&self, step_id: &str, max_size: usize) -> Result<Stream<(K, Vec<V>)>> {
        let max_size = max_size.max(1);
        self.epoch_step(step_id, "collect", true, move || Collect {
            max_size,
            state: BTreeMap::new(),
        })
    }
}
