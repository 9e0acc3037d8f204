//! Combining values into their windows before the exchange.
//!
//! A window step keeps each key's windows on one worker, the key's owner, so every
//! value read elsewhere crosses to it: with `W` workers, `(W - 1) / W` of the
//! stream is hashed, buffered and handed to another thread or process, and the
//! owner folds every value. Where a value's windows depend on its time alone
//! (tumbling and sliding windows, see [`Windower::fixed_windows`]), the worker
//! that read it can fold it into a partial accumulator for `(key, window)`
//! itself, with the step's own `build` and `fold`, and send the owner one partial
//! per key and window, which the owner adds with the step's `merge` (see the
//! [window module](super)). The owner's
//! result is the same: a window's value is the merge of what each reader folded,
//! which is what folding every value on the owner gives for the merges a window
//! step asks for (sums, counts, extremes, concatenations in arrival order).
//!
//! A reader combines what it reads in one activation of the pre-stage, at one
//! epoch, and sends the partials before the watermark announcements that cover
//! them, so the owner cannot have closed a partial's window when it arrives: a
//! value is combined only if every one of its windows closes after the
//! watermark the owner may already have heard for its partition, and only while
//! that partition has announced within the last quarter of the idle timeout (an
//! owner that took the partition for idle might have closed windows past its
//! watermark). Any other value crosses as itself, and the owner decides as before
//! whether it is late. Should a partial still find its window closed (a message
//! held up for most of the idle timeout), the owner emits it as a second result
//! for that window and logs a warning: never dropped.
//!
//! Combining is on for event-time windows on more than one worker, where the
//! step's merge is the engine's own (not a user's session merger); on one worker
//! there is no exchange to save.

use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap, hash_map::RawEntryMut};

use super::clock::Millis;
use super::operator::{Agg, LiveWindows, Routed};
use super::windower::{WindowId, Windower};
use crate::data::{Data, Key};

/// Partial accumulators of one activation, per key and window; see the
/// [module docs](self).
pub(crate) struct Combine<K, V, A, W> {
    windower: std::sync::Arc<W>,
    agg: Agg<K, V, A>,
    /// The partial of each key and window: `(accumulator, first value's time)`.
    /// One flat map (no list per key): an activation's partials are allocated
    /// only as map slots, which [`Combine::flush`] drains and keeps for the next.
    open: HashMap<(K, WindowId), (A, Millis), foldhash::fast::FixedState>,
    /// The windows of the last time placed, the span of times that fall in the
    /// same ones, and the earliest of their closes.
    windows: Vec<(WindowId, Millis)>,
    span: std::ops::Range<Millis>,
    earliest_close: Millis,
    /// Values folded since the last flush, and where the count is published.
    folded: u64,
    live: std::sync::Arc<LiveWindows>,
}

impl<K: Key, V: Data, A: Data, W: Windower> Combine<K, V, A, W> {
    /// A combiner for `windower`'s windows, or `None` where its windows need the
    /// key's state to place a time (sessions).
    pub fn new(
        windower: std::sync::Arc<W>,
        agg: Agg<K, V, A>,
        live: std::sync::Arc<LiveWindows>,
    ) -> Option<Self> {
        let mut probe = Vec::new();
        windower.fixed_windows(0, &mut probe).map(|_| Self {
            windower,
            agg,
            open: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            windows: Vec::new(),
            span: 0..0,
            earliest_close: Millis::MIN,
            folded: 0,
            live,
        })
    }

    /// Folds `value` (at `time`, of `key`) into its windows' partials if each of
    /// them closes after `heard`, the watermark its partition's owners may know;
    /// hands the pair back otherwise, to cross as itself.
    pub fn offer(&mut self, heard: Millis, key: K, value: V, time: Millis) -> Option<(K, V)> {
        if !self.span.contains(&time) {
            self.windows.clear();
            self.span = self
                .windower
                .fixed_windows(time, &mut self.windows)
                .unwrap_or(time..time);
            self.earliest_close = self
                .windows
                .iter()
                .map(|(_, c)| *c)
                .min()
                .unwrap_or(Millis::MIN);
        }
        if self.windows.is_empty() || self.earliest_close <= heard {
            return Some((key, value));
        }
        self.folded += 1;
        let mut value = Some(value);
        let last = self.windows.len() - 1;
        for (i, &(id, _)) in self.windows.iter().enumerate() {
            let v = if i == last {
                value.take().expect("the last window takes the value")
            } else {
                value.clone().expect("earlier windows take copies")
            };
            match self.open.raw_entry_mut().from_key(&Slot(&key, id)) {
                RawEntryMut::Occupied(mut slot) => (self.agg.fold)(&mut slot.get_mut().0, v, time),
                RawEntryMut::Vacant(slot) => {
                    let mut acc = (self.agg.build)(&key);
                    (self.agg.fold)(&mut acc, v, time);
                    slot.insert((key.clone(), id), (acc, time));
                }
            }
        }
        None
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Moves every partial onto `out`, to cross to its key's owner.
    pub fn flush(&mut self, out: &mut Vec<Routed<K, V, A>>) {
        self.live.add_combined(std::mem::take(&mut self.folded));
        out.extend(
            self.open
                .drain()
                .map(|((key, window), (acc, time))| Routed::Partial {
                    key,
                    window,
                    acc,
                    time,
                }),
        );
    }
}

/// A key and window looked up without taking the key: hashes and compares as
/// the `(K, WindowId)` it stands for.
struct Slot<'k, K>(&'k K, WindowId);

impl<K: Hash> Hash for Slot<'_, K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As a tuple hashes: field by field.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl<K: Eq> Equivalent<(K, WindowId)> for Slot<'_, K> {
    fn equivalent(&self, (key, window): &(K, WindowId)) -> bool {
        self.1 == *window && self.0 == key
    }
}
