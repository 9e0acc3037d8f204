//! `stateful`: the most general keyed step. Each key has a logic object of its
//! own ([`KeyedLogic`]) that sees the key's values one by one, may ask to be woken
//! at a time of the clock, sees the end of the stream, and says after every call
//! what to emit and whether it is done (so the key's state is dropped).
//!
//! The step is one operator on the key's owner, in epoch order like every keyed
//! step: a key's values reach its logic in the order its epochs came. Timers are
//! wall-clock instants ([`SystemTime`]): after each call the step asks
//! [`KeyedLogic::notify_at`], and once that instant has passed it calls
//! [`KeyedLogic::on_notify`] (at the next activation of the step, which it
//! schedules itself, so an idle stream's timers fire too). When the stream ends,
//! [`KeyedLogic::on_eof`] is called for every key still held.
//!
//! Under a recovery store each changed key's [`KeyedLogic::snapshot`] is kept,
//! and a resumed run rebuilds the key's logic from it with the step's builder.
//!
//! ```
//! use std::time::SystemTime;
//! use riffle::operators::stateful::KeyedLogic;
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//!
//! /// Sums a key's values and emits the sum when it passes 10, or at the end.
//! struct Sum(u32);
//! impl KeyedLogic<u32> for Sum {
//!     type Out = u32;
//!     type State = u32;
//!     fn on_item(&mut self, value: u32) -> riffle::Result<(Vec<u32>, bool)> {
//!         self.0 += value;
//!         Ok(if self.0 > 10 { (vec![self.0], true) } else { (vec![], false) })
//!     }
//!     fn on_eof(&mut self) -> riffle::Result<(Vec<u32>, bool)> {
//!         Ok((vec![self.0], true))
//!     }
//!     fn snapshot(&self) -> riffle::Result<u32> {
//!         Ok(self.0)
//!     }
//! }
//!
//! let flow = Dataflow::new("sums");
//! let out = TestingSink::new();
//! flow.input("inp", TestingSource::new(vec![('a', 6), ('b', 1), ('a', 7)]))?
//!     .stateful("sum", |_key: &char, resume: Option<u32>| Ok(Sum(resume.unwrap_or(0))))?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), [('a', 13), ('b', 1)]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Site;
use super::keyed::{Dirty, EpochLogic, StateMap, owned_rows};
use crate::build::WorkerInfo;
use crate::data::{Data, Key};
use crate::dataflow::Stream;
use crate::error::Result;
use crate::recovery::{Change, encode};

/// What a call of a [`KeyedLogic`] returns: the values to emit for the key, and
/// whether the key is done (its logic is dropped; its next value builds a new one).
pub type Emit<W> = (Vec<W>, bool);

/// The logic of one key of a [`Stream::stateful`] step.
pub trait KeyedLogic<V>: 'static {
    /// What it emits (as `(key, value)`).
    type Out: Data;
    /// What [`KeyedLogic::snapshot`] returns, kept by the recovery store.
    type State: serde::Serialize + serde::de::DeserializeOwned;

    /// A value of the key arrived.
    fn on_item(&mut self, value: V) -> Result<Emit<Self::Out>>;

    /// The instant of [`KeyedLogic::notify_at`] has passed.
    fn on_notify(&mut self) -> Result<Emit<Self::Out>> {
        Ok((Vec::new(), false))
    }

    /// The stream ended.
    fn on_eof(&mut self) -> Result<Emit<Self::Out>> {
        Ok((Vec::new(), false))
    }

    /// When to call [`KeyedLogic::on_notify`]: asked after every call; `None` for
    /// never.
    fn notify_at(&self) -> Result<Option<SystemTime>> {
        Ok(None)
    }

    /// The key's state, for the recovery store.
    fn snapshot(&self) -> Result<Self::State>;
}

/// The shortest wait between two wake-ups for timers: a timer already due asks
/// for the next activation, not a busy loop.
const MIN_WAKE: Duration = Duration::from_millis(1);

struct Stateful<K, V, L: KeyedLogic<V>, B> {
    builder: Arc<B>,
    logics: StateMap<K, L>,
    timers: StateMap<K, SystemTime>,
    dirty: Dirty<K>,
    _v: std::marker::PhantomData<fn(V)>,
}

impl<K, V, L, B> Stateful<K, V, L, B>
where
    K: Key,
    L: KeyedLogic<V>,
{
    /// Emits what a call of `key`'s logic returned, and keeps the logic (with its
    /// next timer) unless it is done.
    fn settle(
        &mut self,
        key: K,
        logic: L,
        (emits, done): Emit<L::Out>,
        out: &mut Vec<(K, L::Out)>,
    ) -> Result<()> {
        self.dirty.mark(&key);
        out.extend(emits.into_iter().map(|w| (key.clone(), w)));
        if done {
            self.timers.remove(&key);
            return Ok(());
        }
        match logic.notify_at()? {
            Some(at) => self.timers.insert(key.clone(), at),
            None => self.timers.remove(&key),
        };
        self.logics.insert(key, logic);
        Ok(())
    }
}

impl<K, V, L, B> EpochLogic<(K, V), (K, L::Out)> for Stateful<K, V, L, B>
where
    K: Key,
    V: Data,
    L: KeyedLogic<V>,
    B: Fn(&K, Option<L::State>) -> Result<L> + Send + Sync + 'static,
{
    fn on_batch(
        &mut self,
        _: &Site,
        _: u64,
        items: Vec<(K, V)>,
        out: &mut Vec<(K, L::Out)>,
    ) -> Result<()> {
        for (key, value) in items {
            let mut logic = match self.logics.remove(&key) {
                Some(logic) => logic,
                None => (self.builder)(&key, None)?,
            };
            let emit = logic.on_item(value)?;
            self.settle(key, logic, emit, out)?;
        }
        Ok(())
    }

    fn on_wake(&mut self, _: &Site, _: u64, out: &mut Vec<(K, L::Out)>) -> Result<()> {
        let now = SystemTime::now();
        let due: Vec<K> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.timers.remove(&key);
            if let Some(mut logic) = self.logics.remove(&key) {
                let emit = logic.on_notify()?;
                self.settle(key, logic, emit, out)?;
            }
        }
        Ok(())
    }

    fn wake_after(&self) -> Option<Duration> {
        let next = self.timers.values().min()?;
        let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
        Some(wait.max(MIN_WAKE))
    }

    fn on_end(&mut self, _: &Site, out: &mut Vec<(K, L::Out)>) -> Result<()> {
        let keys: Vec<K> = self.logics.keys().cloned().collect();
        for key in keys {
            if let Some(mut logic) = self.logics.remove(&key) {
                let emit = logic.on_eof()?;
                self.settle(key, logic, emit, out)?;
            }
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
        let mut changes = Vec::new();
        for key in self.dirty.take() {
            let state = match self.logics.get(&key) {
                Some(logic) => Some(encode(&site.step_id, &logic.snapshot()?)?),
                None => None,
            };
            changes.push((encode(&site.step_id, &key)?, state));
        }
        Ok(changes)
    }

    fn restore(
        &mut self,
        site: &Site,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        worker: WorkerInfo,
    ) -> Result<()> {
        for (key, state) in owned_rows::<K, L::State>(site, rows, worker)? {
            let logic = (self.builder)(&key, Some(state))?;
            if let Some(at) = logic.notify_at()? {
                self.timers.insert(key.clone(), at);
            }
            self.logics.insert(key, logic);
        }
        Ok(())
    }
}

impl<K: Key, V: Data> Stream<(K, V)> {
    /// Runs a [`KeyedLogic`] per key: `builder(key, resume_state)` makes a key's
    /// logic when its first value comes (`None`) or when a run resumes from a
    /// snapshot (`Some`); see the [module docs](self).
    pub fn stateful<L: KeyedLogic<V>>(
        &self,
        step_id: &str,
        builder: impl Fn(&K, Option<L::State>) -> Result<L> + Send + Sync + 'static,
    ) -> Result<Stream<(K, L::Out)>> {
        let builder = Arc::new(builder);
        self.epoch_step(step_id, "stateful", true, move || Stateful {
            builder: builder.clone(),
            logics: StateMap::default(),
            timers: StateMap::default(),
            dirty: Dirty::default(),
            _v: std::marker::PhantomData,
        })
    }
}
