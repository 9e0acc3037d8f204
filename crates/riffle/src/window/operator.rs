//! The window operator: a pre-stage on every worker that reads event times and
//! announces watermarks, an exchange by key, and the per-key window state on the
//! key's owner.
//!
//! Items cross the exchange as [`Routed::Item`] with their time; each source
//! partition's watermark (each upstream worker's, where the input's partitions are
//! not traced: see [`crate::origin`]) crosses as [`Routed::Mark`], sent to every
//! worker after the items it covers. The window
//! stage is an epoch-ordered keyed step (see [`crate::operators::keyed`]): it folds
//! items into their windows, keeps a timer queue of the earliest close per key, and
//! when the combined watermark passes a close time it emits the window's result and
//! metadata and forgets the window. A key with no open window is forgotten too, so
//! live state follows open windows, not keys ever seen.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use super::clock::{Clock, ClockKind, DEFAULT_MAX_DRIFT, Millis, millis, now_millis};
use super::combine::Combine;
use super::pace::Pace;
use super::windower::{OpenWindows, Placement, WindowId, WindowMeta, Windower};
use crate::build::WorkerInfo;
use crate::build::{BuildCtx, TStream};
use crate::data::{Data, Key};
use crate::error::Result;
use crate::exchange::stable_hash;
use crate::operators::Site;
use crate::operators::batch_operator;
use crate::operators::keyed::{Dirty, EpochLogic, epoch_operator, owned_rows};
use crate::origin::{Origins, PartId, Piece, Span, SpanQueue, UNTRACED, later_than};
use crate::recovery::{Change, decode, encode};

/// An item or a watermark on its way to the window stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Routed<K, V, A> {
    /// A keyed value and its time (0 under the system clock: timed on arrival).
    Item(K, V, Millis),
    /// Values of `key` folded into `window` where they were read (see
    /// [`super::combine`]); `time` is the first one's.
    Partial {
        key: K,
        window: WindowId,
        acc: A,
        time: Millis,
    },
    /// Partition `part` read by upstream worker `from` (or, `UNTRACED`, that
    /// worker as a whole) has seen everything up to `watermark`: `Millis::MIN`
    /// when it opens, `Millis::MAX` when it has ended.
    Mark {
        to: u32,
        from: u32,
        part: PartId,
        watermark: Millis,
    },
    /// Upstream worker `from` has announced every partition it reads.
    Settled { to: u32, from: u32 },
}

/// Why an item did not enter any window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LateReason {
    /// Every window its time falls in had closed (the watermark had passed them).
    WindowClosed,
    /// Its time falls between windows (sliding windows with gaps).
    OutsideWindows,
}

/// An item that arrived too late for its windows, on a window step's `late` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Late<V> {
    /// The item's value.
    pub value: V,
    /// Its time.
    pub time: Millis,
    /// The window step's watermark when it arrived.
    pub watermark: Millis,
    /// Why it was turned away.
    pub reason: LateReason,
}

/// What the window stage emits, split into the step's three streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WindowEvent<K, V, A> {
    Down(K, WindowId, A),
    Late(K, Late<V>),
    Meta(K, WindowId, WindowMeta),
}

/// How many keys hold open windows in a window step, summed over the workers of
/// this process, and the most there have been at once: for watching that window
/// state stays bounded.
#[derive(Debug, Default)]
pub struct LiveWindows {
    now: std::sync::atomic::AtomicI64,
    peak: std::sync::atomic::AtomicI64,
    combined: std::sync::atomic::AtomicU64,
}

impl LiveWindows {
    /// Keys with open windows right now.
    pub fn keys(&self) -> u64 {
        self.now.load(std::sync::atomic::Ordering::Relaxed).max(0) as u64
    }

    /// The most keys with open windows at any moment so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed).max(0) as u64
    }

    /// How many values were folded into their windows on the worker that read
    /// them, so that only a partial result crossed to their key's owner (see the
    /// [window module](super) on many workers).
    pub fn combined(&self) -> u64 {
        self.combined.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn add_combined(&self, values: u64) {
        if values > 0 {
            self.combined
                .fetch_add(values, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn change(&self, by: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        if by != 0 {
            let now = self.now.fetch_add(by, Relaxed) + by;
            self.peak.fetch_max(now, Relaxed);
        }
    }
}

/// How a window step accumulates: `build` a new window's accumulator, `fold` a
/// value and its time into it, `merge` two (when sessions merge).
pub(crate) struct Agg<K, V, A> {
    pub build: Arc<dyn Fn(&K) -> A + Send + Sync>,
    pub fold: Arc<FoldFn<A, V>>,
    pub merge: Arc<MergeFn<A>>,
    /// Whether `merge` of two partial results is the result of folding both
    /// parts' values (the engine's own merges); a user's merger is promised for
    /// merging sessions only, so values it folds are not combined.
    pub combinable: bool,
}

type FoldFn<A, V> = dyn Fn(&mut A, V, Millis) + Send + Sync;
type MergeFn<A> = dyn Fn(&mut A, A) + Send + Sync;

impl<K, V, A> Clone for Agg<K, V, A> {
    fn clone(&self) -> Self {
        Self {
            build: self.build.clone(),
            fold: self.fold.clone(),
            merge: self.merge.clone(),
            combinable: self.combinable,
        }
    }
}

/// Builds the window step's operators on `input` (with its origins, if the flow
/// traces them) and returns its three streams.
#[allow(clippy::type_complexity)]
pub(crate) fn build_window<'s, K, V, A, W>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    (input, origins): (TStream<'s, (K, V)>, Option<Origins<'s>>),
    clock: &Clock<V>,
    windower: Arc<W>,
    agg: Agg<K, V, A>,
    live: Arc<LiveWindows>,
) -> (
    TStream<'s, (K, (WindowId, A))>,
    TStream<'s, (K, Late<V>)>,
    TStream<'s, (K, (WindowId, WindowMeta))>,
)
where
    K: Key,
    V: Data,
    A: Data,
    W: Windower,
{
    let peers = ctx.worker.count;
    let me = ctx.worker.index as u32;
    let traced = origins.is_some();
    let (routed, system, idle_timeout) = match &clock.kind {
        ClockKind::System => {
            let routed = batch_operator(
                ctx,
                step_id,
                input,
                |_: &Site, _, batch: &mut Vec<(K, V)>, out: &mut Vec<Routed<K, V, A>>| {
                    out.extend(batch.drain(..).map(|(k, v)| Routed::Item(k, v, 0)));
                    Ok(())
                },
            );
            (routed, true, Duration::MAX)
        }
        ClockKind::Event {
            time_of,
            lateness,
            idle_timeout,
            max_drift,
        } => {
            // Partitions are paced where the window knows them (see `pace`).
            let paced = traced.then(|| {
                let drift = max_drift.unwrap_or_else(|| {
                    windower
                        .length()
                        .map_or(millis(DEFAULT_MAX_DRIFT), |l| l.saturating_mul(2))
                });
                ctx.shared.pace.join(step_id, drift);
                (ctx.shared.pace.clone(), step_id.to_string())
            });
            let mut marks = Marks {
                pace: paced,
                time_of: time_of.clone(),
                lateness: *lateness,
                refresh: *idle_timeout / 4,
                me,
                peers: peers as u32,
                sources: origins.as_ref().map_or(0, |o| o.sources),
                settled: 0,
                parts: HashMap::new(),
                // One worker has no exchange to save.
                combine: (traced && peers > 1 && agg.combinable)
                    .then(|| Combine::new(windower.clone(), agg.clone(), live.clone()))
                    .flatten(),
                now: None,
            };
            let routed = match origins {
                Some(origins) => marked_by_partition(ctx, step_id, input, origins, marks),
                None => batch_operator(
                    ctx,
                    step_id,
                    input,
                    move |_: &Site, _, batch: &mut Vec<(K, V)>, out: &mut Vec<Routed<K, V, A>>| {
                        marks.run(UNTRACED, batch, out);
                        Ok(())
                    },
                ),
            };
            (routed, false, *idle_timeout)
        }
    };
    let pact = Exchange::new(|r: &Routed<K, V, A>| match r {
        Routed::Item(k, _, _) | Routed::Partial { key: k, .. } => stable_hash(k),
        Routed::Mark { to, .. } | Routed::Settled { to, .. } => u64::from(*to),
    });
    let logic = WindowLogic {
        windower,
        agg,
        system,
        idle_timeout,
        keys: Default::default(),
        timers: BTreeMap::new(),
        traced,
        upstream: (0..peers).map(|_| Upstream::default()).collect(),
        handled: 0,
        started: Instant::now(),
        watermark: Millis::MIN,
        ids: Vec::new(),
        merged: Vec::new(),
        closed: Vec::new(),
        live,
        reported: 0,
        dirty: Dirty::default(),
    };
    let events = epoch_operator(ctx, step_id, routed, pact, logic);
    split(ctx, step_id, events)
}

/// The window stage's events sorted onto the step's three streams by one
/// operator (each event moved, not copied: a stream read by three operators
/// would hand each of them its own copy of every batch).
#[allow(clippy::type_complexity)]
fn split<'s, K: Key, V: Data, A: Data>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    events: TStream<'s, WindowEvent<K, V, A>>,
) -> (
    TStream<'s, (K, (WindowId, A))>,
    TStream<'s, (K, Late<V>)>,
    TStream<'s, (K, (WindowId, WindowMeta))>,
) {
    let mut builder = OperatorBuilder::new(step_id.to_string(), ctx.scope);
    let mut input = builder.new_input(events, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (down_out, down) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let (meta_out, meta) = builder.new_output();
    let mut down_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<(K, (WindowId, A))>>>::from(down_out);
    let mut late_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<(K, Late<V>)>>>::from(late_out);
    let mut meta_out = OutputBuilder::<
        u64,
        CapacityContainerBuilder<Vec<(K, (WindowId, WindowMeta))>>,
    >::from(meta_out);
    builder.build(move |_caps| {
        let (mut downs, mut lates, mut metas) = (Vec::new(), Vec::new(), Vec::new());
        move |_frontiers| {
            let (mut down_h, mut late_h, mut meta_h) = (
                down_out.activate(),
                late_out.activate(),
                meta_out.activate(),
            );
            input.for_each(|cap, data| {
                for event in data.drain(..) {
                    match event {
                        WindowEvent::Down(k, id, a) => downs.push((k, (id, a))),
                        WindowEvent::Late(k, late) => lates.push((k, late)),
                        WindowEvent::Meta(k, id, m) => metas.push((k, (id, m))),
                    }
                }
                if !downs.is_empty() {
                    down_h.session(&cap).give_container(&mut downs);
                    downs.clear();
                }
                if !lates.is_empty() {
                    late_h.session(&cap).give_container(&mut lates);
                    lates.clear();
                }
                if !metas.is_empty() {
                    meta_h.session(&cap).give_container(&mut metas);
                    metas.clear();
                }
            });
        }
    });
    (down, late, meta)
}

/// One key's windows: the windower's state, an accumulator per open window, and
/// the time of the key's entry in the timer queue.
struct KeyWindows<S, A> {
    windows: S,
    accs: Vec<(WindowId, A)>,
    timer: Option<Millis>,
}

impl<S: Default, A> KeyWindows<S, A> {
    fn empty() -> Self {
        Self {
            windows: S::default(),
            accs: Vec::new(),
            timer: None,
        }
    }

    /// Enters `key` in the timer queue at its earliest close, where that is
    /// earlier than its entry there.
    fn schedule<K, W: Windower<State = S>>(
        &mut self,
        windower: &W,
        timers: &mut BTreeMap<Millis, Vec<K>>,
        key: K,
    ) {
        if let Some(next) = windower.next_close(&self.windows)
            && self.timer.is_none_or(|t| next < t)
        {
            self.timer = Some(next);
            timers.entry(next).or_default().push(key);
        }
    }
}

/// The watermark an upstream partition last announced, and when; and the latest
/// epoch of its announcements that have arrived but wait for their epoch's turn
/// (while one waits, the partition is busy, never idle).
#[derive(Clone, Copy)]
struct Heard {
    watermark: Millis,
    at: Instant,
    waiting_until: u64,
}

impl Heard {
    fn new(watermark: Millis, at: Instant) -> Self {
        Self {
            watermark,
            at,
            waiting_until: 0,
        }
    }
}

/// What a window stage has heard from one upstream worker: whether it has
/// announced all its partitions (or that announcement waits for its epoch), and
/// each partition's watermark.
#[derive(Default)]
struct Upstream {
    settled: bool,
    settling_until: u64,
    parts: HashMap<PartId, Heard>,
}

/// The pre-stage's watermarks: the largest time seen per partition (or per worker,
/// untraced), announced to every window worker as it advances; and, where the
/// step combines (see [`super::combine`]), the partials of the activation, sent
/// before the announcements that cover them.
struct Marks<K, V, A, W> {
    time_of: Arc<dyn Fn(&V) -> Millis + Send + Sync>,
    lateness: Millis,
    /// How often a partition that keeps sending items re-announces its watermark
    /// even if it did not advance, so that it is not taken for idle.
    refresh: Duration,
    me: u32,
    peers: u32,
    /// How many sources feed the window, and how many have settled here.
    sources: usize,
    settled: usize,
    parts: HashMap<PartId, PartClock>,
    /// Where the partitions' watermarks are told, to pace their sources.
    pace: Option<(Arc<Pace>, String)>,
    /// Values folded into their windows here, waiting for [`Marks::flush`].
    combine: Option<Combine<K, V, A, W>>,
    /// The time of the pre-stage's activation, read once for all its batches.
    now: Option<Instant>,
}

/// The largest time seen in one partition, and its announcements: the last
/// watermark sent and when, and whether a newer one waits for the next flush.
struct PartClock {
    seen: Millis,
    announced: Instant,
    sent: Millis,
    due: bool,
}

impl PartClock {
    fn new(now: Instant) -> Self {
        Self {
            seen: Millis::MIN,
            announced: now,
            sent: Millis::MIN,
            due: false,
        }
    }
}

impl<K: Key, V: Data, A: Data, W: Windower> Marks<K, V, A, W> {
    /// Times a run of items from `part`, and announces the partition's watermark if
    /// it moved (or is due for a refresh). Where the step combines, items go into
    /// their windows' partials and the announcement waits for [`Marks::flush`].
    fn run(&mut self, part: PartId, batch: &mut Vec<(K, V)>, out: &mut Vec<Routed<K, V, A>>) {
        let mut max = Millis::MIN;
        let now = self.now.unwrap_or_else(Instant::now);
        let clock = self
            .parts
            .entry(part)
            .or_insert_with(|| PartClock::new(now));
        // Combine only while the owners cannot have taken the partition for idle.
        let combine = self
            .combine
            .as_mut()
            .filter(|_| now.duration_since(clock.announced) < self.refresh);
        match combine {
            Some(combine) => {
                out.reserve(self.peers as usize);
                let heard = clock.sent;
                for (k, v) in batch.drain(..) {
                    let t = (self.time_of)(&v);
                    max = max.max(t);
                    if let Some((k, v)) = combine.offer(heard, k, v, t) {
                        out.push(Routed::Item(k, v, t));
                    }
                }
                clock.due = true;
            }
            None => {
                out.reserve(batch.len() + self.peers as usize);
                for (k, v) in batch.drain(..) {
                    let t = (self.time_of)(&v);
                    max = max.max(t);
                    out.push(Routed::Item(k, v, t));
                }
            }
        }
        if max > clock.seen || now.duration_since(clock.announced) >= self.refresh {
            clock.seen = clock.seen.max(max);
            clock.announced = now;
            let watermark = clock.seen.saturating_sub(self.lateness);
            if self.combine.is_some() {
                clock.due = true;
                self.tell_pace(part, watermark);
            } else {
                self.announce(part, watermark, out);
            }
        }
    }

    /// Sends the combined partials, then every announcement that waited for them
    /// (a partition whose values were combined announces again after them, so
    /// that its owners hear from it no earlier than from its partials).
    fn flush(&mut self, out: &mut Vec<Routed<K, V, A>>) {
        let Some(combine) = self.combine.as_mut() else {
            return;
        };
        combine.flush(out);
        let (me, peers, lateness) = (self.me, self.peers, self.lateness);
        for (&part, clock) in self.parts.iter_mut().filter(|(_, c)| c.due) {
            clock.due = false;
            let watermark = clock.seen.saturating_sub(lateness);
            clock.sent = clock.sent.max(watermark);
            out.extend((0..peers).map(|to| Routed::Mark {
                to,
                from: me,
                part,
                watermark,
            }));
        }
    }

    /// Whether partials or announcements wait for [`Marks::flush`].
    fn holds_back(&self) -> bool {
        self.combine.as_ref().is_some_and(|c| !c.is_empty()) || self.parts.values().any(|c| c.due)
    }

    /// Handles a partition opening or closing, or a source settling (after
    /// flushing what waits: the announcement cannot overtake it).
    fn control(&mut self, span: Span, out: &mut Vec<Routed<K, V, A>>) {
        self.flush(out);
        match span {
            Span::Opened(part) => {
                self.parts
                    .entry(part)
                    .or_insert_with(|| PartClock::new(Instant::now()));
                self.announce(part, Millis::MIN, out);
            }
            Span::Closed(part) => {
                self.parts.remove(&part);
                self.announce(part, Millis::MAX, out);
            }
            Span::Settled => {
                self.settled += 1;
                if self.settled == self.sources {
                    out.extend((0..self.peers).map(|to| Routed::Settled { to, from: self.me }));
                }
            }
            Span::Items { .. } => {}
        }
    }

    fn tell_pace(&self, part: PartId, watermark: Millis) {
        if let Some((pace, step)) = &self.pace {
            match watermark {
                Millis::MIN => {}
                Millis::MAX => pace.ended(step, part),
                _ => pace.announced(step, part, watermark),
            }
        }
    }

    fn announce(&mut self, part: PartId, watermark: Millis, out: &mut Vec<Routed<K, V, A>>) {
        self.tell_pace(part, watermark);
        if let Some(clock) = self.parts.get_mut(&part) {
            clock.sent = clock.sent.max(watermark);
        }
        out.extend((0..self.peers).map(|to| Routed::Mark {
            to,
            from: self.me,
            part,
            watermark,
        }));
    }
}

/// The traced pre-stage: items arrive with the spans of their source partitions
/// ([`crate::origin`]); each partition's watermark is announced on its own.
/// Where the step combines, partials gather over the activation (per epoch) and
/// are sent at its end, before the announcements that cover them.
fn marked_by_partition<'s, K: Key, V: Data, A: Data, W: Windower>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    input: TStream<'s, (K, V)>,
    origins: Origins<'s>,
    mut marks: Marks<K, V, A, W>,
) -> TStream<'s, Routed<K, V, A>> {
    let shared = ctx.shared.clone();
    let site = Site {
        step_id: step_id.into(),
        worker: ctx.worker.index,
    };
    let mut builder = OperatorBuilder::new(step_id.to_string(), ctx.scope);
    let mut items_in = builder.new_input(input, Pipeline);
    let mut spans_in = builder.new_input(origins.spans, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    builder.set_notify_for(1, FrontierInterest::Never);
    let (out, stream) = builder.new_output();
    let mut out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Routed<K, V, A>>>>::from(out);
    builder.build(move |_caps| {
        let mut queue = SpanQueue::default();
        let mut routed: Vec<Routed<K, V, A>> = Vec::new();
        move |_frontiers| {
            let mut out = out.activate();
            marks.now = Some(Instant::now());
            // The epoch of what `marks` holds back for the end of the activation.
            let mut gathering: Option<Capability<u64>> = None;
            spans_in.for_each(|cap, spans| queue.push(&cap, 0, spans));
            items_in.for_each(|cap, data| {
                if shared.aborted() {
                    data.clear();
                    queue.clear();
                    return;
                }
                let epoch = cap.least().copied().unwrap_or_default();
                if let Some(held) = gathering.take_if(|held| *held.time() != epoch) {
                    marks.flush(&mut routed);
                    if !routed.is_empty() {
                        out.session(&held).give_container(&mut routed);
                        routed.clear();
                    }
                }
                queue.walk(data, |piece| match piece {
                    Piece::Run(part, items) => {
                        // The event-time function is the user's: a panic stops the
                        // run with the step named, like any other step's.
                        let timed =
                            catch_unwind(AssertUnwindSafe(|| marks.run(part, items, &mut routed)));
                        if let Err(payload) = timed {
                            shared.fail(site.panic_on::<()>(epoch, None, payload));
                            items.clear();
                        }
                    }
                    Piece::Control(own, span) => match later_than(own, epoch) {
                        Some(own) => {
                            marks.flush(&mut routed);
                            if !routed.is_empty() {
                                out.session(&cap).give_container(&mut routed);
                                routed.clear();
                            }
                            marks.control(span, &mut routed);
                            if !routed.is_empty() {
                                out.session(own).give_container(&mut routed);
                                routed.clear();
                            }
                        }
                        None => marks.control(span, &mut routed),
                    },
                });
                if !routed.is_empty() {
                    out.session(&cap).give_container(&mut routed);
                    routed.clear();
                }
                if gathering.is_none() && marks.holds_back() {
                    gathering = cap.retain_least(0);
                }
            });
            if let Some(held) = gathering.take() {
                marks.flush(&mut routed);
                if !routed.is_empty() {
                    out.session(&held).give_container(&mut routed);
                    routed.clear();
                }
            }
            queue.drain_controls(|cap, span| {
                marks.control(span, &mut routed);
                if !routed.is_empty() {
                    out.session(cap).give_container(&mut routed);
                    routed.clear();
                }
            });
            marks.now = None;
        }
    });
    stream
}

struct WindowLogic<K, V, A, W: Windower> {
    windower: Arc<W>,
    agg: Agg<K, V, A>,
    system: bool,
    idle_timeout: Duration,
    keys: std::collections::HashMap<K, KeyWindows<W::State, A>, foldhash::fast::FixedState>,
    /// Keys by the earliest close time of their windows (may hold stale entries,
    /// which are skipped when they come due).
    timers: BTreeMap<Millis, Vec<K>>,
    /// Whether the input carries origins: then an upstream worker holds the
    /// watermark back until it has announced its partitions.
    traced: bool,
    upstream: Vec<Upstream>,
    /// The epoch being handled (epochs are handled in order).
    handled: u64,
    started: Instant,
    watermark: Millis,
    ids: Vec<WindowId>,
    merged: Vec<(WindowId, WindowId)>,
    closed: OpenWindows,
    live: Arc<LiveWindows>,
    reported: usize,
    dirty: Dirty<K>,
}

impl<K: Key, V: Data, A: Data, W: Windower> WindowLogic<K, V, A, W> {
    /// Recomputes the combined watermark: the system time, or the least watermark
    /// of the upstream partitions that are neither idle nor ended (the greatest if
    /// all are idle, the end of time if all have ended). An upstream worker not yet
    /// heard from holds it at the beginning of time, until it has announced its
    /// partitions or the idle timeout passes. It never goes backwards.
    fn advance(&mut self) {
        let next = if self.system {
            now_millis()
        } else {
            let now = Instant::now();
            let mut least: Option<Millis> = None;
            let mut greatest: Option<Millis> = None;
            let mut consider = |watermark: Millis, at: Instant, busy: bool| {
                greatest = Some(greatest.map_or(watermark, |g| g.max(watermark)));
                if busy || now.duration_since(at) < self.idle_timeout {
                    least = Some(least.map_or(watermark, |l| l.min(watermark)));
                }
            };
            for up in &self.upstream {
                let unheard = if self.traced {
                    !up.settled
                } else {
                    up.parts.is_empty()
                };
                if unheard {
                    consider(Millis::MIN, self.started, up.settling_until > self.handled);
                }
                for heard in up.parts.values().filter(|h| h.watermark != Millis::MAX) {
                    consider(
                        heard.watermark,
                        heard.at,
                        heard.waiting_until > self.handled,
                    );
                }
            }
            least.or(greatest).unwrap_or(Millis::MAX)
        };
        self.watermark = self.watermark.max(next);
    }

    /// Publishes the number of keys with open windows.
    fn report(&mut self) {
        let now = self.keys.len();
        self.live.change(now as i64 - self.reported as i64);
        self.reported = now;
    }

    /// Closes every window the watermark has passed, emitting results and metadata.
    fn close_due(&mut self, out: &mut Vec<WindowEvent<K, V, A>>) {
        while let Some(entry) = self.timers.first_entry() {
            let due = *entry.key();
            if due > self.watermark {
                break;
            }
            for key in entry.remove() {
                let Some(state) = self.keys.get_mut(&key) else {
                    continue;
                };
                self.dirty.mark(&key);
                match state.timer {
                    Some(t) if t <= due => state.timer = None,
                    _ => continue, // a stale entry: a later one is registered
                }
                self.windower
                    .close_for(&mut state.windows, self.watermark, &mut self.closed);
                for (id, meta) in self.closed.drain(..) {
                    if let Some(at) = state.accs.iter().position(|(w, _)| *w == id) {
                        let (_, acc) = state.accs.swap_remove(at);
                        out.push(WindowEvent::Down(key.clone(), id, acc));
                    }
                    out.push(WindowEvent::Meta(key.clone(), id, meta));
                }
                match self.windower.next_close(&state.windows) {
                    Some(next) => {
                        state.timer = Some(next);
                        self.timers.entry(next).or_default().push(key);
                    }
                    None => {
                        self.keys.remove(&key);
                    }
                }
            }
        }
    }

    /// Adds a partial accumulator of `window`, folded where its values were read
    /// (first at `time`), to the key's window here.
    fn merge_partial(
        &mut self,
        key: K,
        window: WindowId,
        acc: A,
        time: Millis,
        out: &mut Vec<WindowEvent<K, V, A>>,
    ) {
        let windower = &*self.windower;
        self.dirty.mark(&key);
        let state = match self.keys.get_mut(&key) {
            Some(state) => state,
            None => self
                .keys
                .entry(key.clone())
                .or_insert_with(KeyWindows::empty),
        };
        self.ids.clear();
        windower.open_for(&mut state.windows, time, self.watermark, &mut self.ids);
        if !self.ids.contains(&window) {
            // Only after a message waited most of the idle timeout (see
            // `combine`): the window closed without these values. They are not
            // dropped: a second result for the window carries them.
            tracing::warn!(
                window,
                watermark = self.watermark,
                "a window step's partial result arrived after its window closed: emitted as a second result for the window"
            );
            if windower.next_close(&state.windows).is_none() {
                self.keys.remove(&key);
            }
            out.push(WindowEvent::Down(key, window, acc));
            return;
        }
        match state.accs.iter_mut().find(|(w, _)| *w == window) {
            Some((_, into)) => (self.agg.merge)(into, acc),
            None => state.accs.push((window, acc)),
        }
        state.schedule(windower, &mut self.timers, key);
    }

    fn place(&mut self, key: K, value: V, time: Millis, out: &mut Vec<WindowEvent<K, V, A>>) {
        let windower = &*self.windower;
        self.dirty.mark(&key);
        let state = match self.keys.get_mut(&key) {
            Some(state) => state,
            None => self
                .keys
                .entry(key.clone())
                .or_insert_with(KeyWindows::empty),
        };
        self.ids.clear();
        let placement = windower.open_for(&mut state.windows, time, self.watermark, &mut self.ids);
        if placement != Placement::Placed {
            let reason = match placement {
                Placement::Late => LateReason::WindowClosed,
                _ => LateReason::OutsideWindows,
            };
            let late = Late {
                value,
                time,
                watermark: self.watermark,
                reason,
            };
            if windower.next_close(&state.windows).is_none() {
                self.keys.remove(&key);
            }
            out.push(WindowEvent::Late(key, late));
            return;
        }
        windower.drain_merged(&mut state.windows, &mut self.merged);
        for (from, into) in self.merged.drain(..) {
            if let Some(at) = state.accs.iter().position(|(w, _)| *w == from) {
                let (_, acc) = state.accs.swap_remove(at);
                match state.accs.iter_mut().find(|(w, _)| *w == into) {
                    Some((_, target)) => (self.agg.merge)(target, acc),
                    None => state.accs.push((into, acc)),
                }
            }
        }
        let mut value = Some(value);
        let last = self.ids.len() - 1;
        for (i, &id) in self.ids.iter().enumerate() {
            let v = if i == last {
                value.take().expect("the last window takes the value")
            } else {
                value.clone().expect("earlier windows take copies")
            };
            match state.accs.iter_mut().find(|(w, _)| *w == id) {
                Some((_, acc)) => (self.agg.fold)(acc, v, time),
                None => {
                    let mut acc = (self.agg.build)(&key);
                    (self.agg.fold)(&mut acc, v, time);
                    state.accs.push((id, acc));
                }
            }
        }
        state.schedule(windower, &mut self.timers, key);
    }
}

impl<K: Key, V: Data, A: Data, W: Windower> EpochLogic<Routed<K, V, A>, WindowEvent<K, V, A>>
    for WindowLogic<K, V, A, W>
{
    fn on_batch(
        &mut self,
        _: &Site,
        epoch: u64,
        items: Vec<Routed<K, V, A>>,
        out: &mut Vec<WindowEvent<K, V, A>>,
    ) -> Result<()> {
        self.handled = self.handled.max(epoch);
        let now = if self.system { now_millis() } else { 0 };
        for item in items {
            match item {
                Routed::Item(key, value, time) => {
                    let time = if self.system { now } else { time };
                    self.place(key, value, time, out);
                }
                Routed::Partial {
                    key,
                    window,
                    acc,
                    time,
                } => self.merge_partial(key, window, acc, time, out),
                Routed::Mark {
                    from,
                    part,
                    watermark,
                    ..
                } => {
                    if let Some(up) = self.upstream.get_mut(from as usize) {
                        let at = Instant::now();
                        let heard = up.parts.entry(part).or_insert(Heard::new(watermark, at));
                        heard.watermark = heard.watermark.max(watermark);
                        heard.at = at;
                    }
                }
                Routed::Settled { from, .. } => {
                    if let Some(up) = self.upstream.get_mut(from as usize) {
                        up.settled = true;
                    }
                }
            }
        }
        self.advance();
        self.close_due(out);
        self.report();
        Ok(())
    }

    /// A partition whose announcements arrived for a later epoch is busy, not
    /// idle: it must hold the watermark until they are handled in their turn (or
    /// the window would close before its items, which wait for the same epoch).
    fn on_arrival(&mut self, epoch: u64, items: &[Routed<K, V, A>]) {
        // A batch at the epoch being handled is handled now: nothing waits.
        if self.system || epoch <= self.handled {
            return;
        }
        let mut now = None;
        for item in items {
            match item {
                Routed::Item(..) | Routed::Partial { .. } => {}
                Routed::Mark { from, part, .. } => {
                    if let Some(up) = self.upstream.get_mut(*from as usize) {
                        let at = *now.get_or_insert_with(Instant::now);
                        let heard = up.parts.entry(*part).or_insert(Heard::new(Millis::MIN, at));
                        heard.waiting_until = heard.waiting_until.max(epoch);
                    }
                }
                Routed::Settled { from, .. } => {
                    if let Some(up) = self.upstream.get_mut(*from as usize) {
                        up.settling_until = up.settling_until.max(epoch);
                    }
                }
            }
        }
    }

    fn on_wake(&mut self, _: &Site, epoch: u64, out: &mut Vec<WindowEvent<K, V, A>>) -> Result<()> {
        self.handled = self.handled.max(epoch);
        if !self.timers.is_empty() {
            self.advance();
            self.close_due(out);
            self.report();
        }
        Ok(())
    }

    fn wake_after(&self) -> Option<Duration> {
        if self.timers.is_empty() {
            None
        } else if self.system {
            Some(Duration::from_millis(50))
        } else {
            Some(self.idle_timeout.min(Duration::from_secs(1)))
        }
    }

    fn recoverable(&self) -> bool {
        true
    }

    fn track_changes(&mut self) {
        self.dirty.enable();
    }

    /// The watermark is saved beside the keys: after a resume, a window that had
    /// closed stays closed (an item for it is late), whichever worker now owns its
    /// key. Each worker restarts from the highest watermark any worker saved.
    fn snapshot_meta(&mut self, site: &Site) -> Result<Option<Vec<u8>>> {
        if self.system || self.watermark == Millis::MIN {
            return Ok(None);
        }
        encode(&site.step_id, &self.watermark).map(Some)
    }

    fn restore_meta(&mut self, site: &Site, saved: Vec<Vec<u8>>) -> Result<()> {
        for bytes in saved {
            let watermark: Millis = decode(&site.step_id, &bytes)?;
            self.watermark = self.watermark.max(watermark);
        }

        Ok(())
    }

    /// A key's snapshot is its windower state and accumulators.
    fn snapshot(&mut self, site: &Site) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        for key in self.dirty.take() {
            let state = match self.keys.get(&key) {
                Some(w) => Some(encode(&site.step_id, &(&w.windows, &w.accs))?),
                None => None,
            };
            out.push((encode(&site.step_id, &key)?, state));
        }
        Ok(out)
    }

    fn restore(
        &mut self,
        site: &Site,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        worker: WorkerInfo,
    ) -> Result<()> {
        type Saved<S, A> = (S, Vec<(WindowId, A)>);
        let rows: Vec<(K, Saved<W::State, A>)> = owned_rows(site, rows, worker)?;
        for (key, (windows, accs)) in rows {
            let timer = self.windower.next_close(&windows);
            if let Some(t) = timer {
                self.timers.entry(t).or_default().push(key.clone());
            }
            self.keys.insert(
                key,
                KeyWindows {
                    windows,
                    accs,
                    timer,
                },
            );
        }
        self.report();
        Ok(())
    }

    fn on_end(&mut self, _: &Site, out: &mut Vec<WindowEvent<K, V, A>>) -> Result<()> {
        self.watermark = Millis::MAX;
        self.close_due(out);
        self.report();
        Ok(())
    }
}
