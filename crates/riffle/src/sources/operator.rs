//! The timely operator that polls a worker's partitions of one source.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};

use super::{DynamicSource, FixedPartitionedSource, Poll, SourcePartition};
use crate::build::BuildCtx;
use crate::dataflow::{Dataflow, DataflowInner, Stream, stream_key};
use crate::dead_letters::{DeadLetter, take_set_aside};
use crate::error::{Result, RiffleError};
use crate::origin::{Origins, PartId, Span, part_id};
use crate::recovery::{Change, decode, encode};

/// How long a source keeps polling its partitions in one activation before it lets
/// the rest of the flow run.
const SLICE: Duration = Duration::from_millis(2);

/// How soon a source that has nothing polls again, unless a partition wakes it
/// first (see `super::ready`).
const IDLE_POLL: Duration = Duration::from_millis(10);

/// How soon a source looks again at a partition an event-time window holds back
/// (see `crate::window::pace`): the slower partitions usually catch up within
/// a batch or two.
const PACE_POLL: Duration = Duration::from_micros(200);

/// The longest a partition is held back at a time: then it reads one batch
/// anyway, so that pacing can never stop a flow, whatever holds the watermark.
const PACE_MAX_HOLD: Duration = Duration::from_millis(100);

/// How soon a source that ends at a snapshot looks again whether it is committed.
const END_POLL: Duration = Duration::from_millis(5);

/// The longest a source sleeps between activations.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Closes every partition and drops the capabilities: the source is done.
fn stop<P: SourcePartition>(parts: &mut Vec<LivePart<P>>, cap: &mut Option<Held>) {
    for live in parts.iter_mut() {
        let _ = live.part.close();
    }
    parts.clear();
    *cap = None;
}

pub(super) fn add_fixed<S: FixedPartitionedSource>(
    flow: &Dataflow,
    step_id: &str,
    src: S,
) -> Result<Stream<S::Item>> {
    let src = Arc::new(src);
    let id = step_id.to_string();
    let flow_ref = Arc::downgrade(&flow.inner);
    flow.add_step(
        step_id,
        "input",
        &[],
        &["down", DEAD_LETTERS],
        Arc::new(move |ctx: &mut BuildCtx<'_>| {
            let mut names = src.list_parts(&id)?;
            names.sort();
            names.dedup();
            // Under recovery, each partition reopens at its committed position.
            let mut resume: std::collections::HashMap<String, S::State> = Default::default();
            if let Some(recovery) = &ctx.shared.recovery
                && let Some(epoch) = recovery.resume
            {
                for (key, state) in recovery.store.load(&id, epoch)? {
                    let name: String = decode(&id, &key)?;
                    resume.insert(name, decode(&id, &state)?);
                }
            }
            let mut parts = Vec::new();
            let mut known: HashSet<String> = HashSet::new();
            for (i, name) in names.into_iter().enumerate() {
                if i % ctx.worker.count == ctx.worker.index {
                    let part = src.build_part(&id, &name, resume.remove(&name))?;
                    parts.push((name.clone(), part));
                }
                known.insert(name);
            }
            let discover = src.discover_every().map(|every| {
                let (src, worker) = (src.clone(), ctx.worker);
                Discover {
                    every,
                    next: Instant::now() + every,
                    find: Box::new(move |step_id: &str| {
                        let mut found = Vec::new();
                        for name in src.list_parts(step_id)? {
                            if known.insert(name.clone())
                                && crate::exchange::worker_for(&name, worker.count) == worker.index
                            {
                                eprintln!("step {step_id:?}: a new partition {name:?}");
                                found.push((name.clone(), src.build_part(step_id, &name, None)?));
                            }
                        }
                        Ok(found)
                    }),
                }
            });
            let letters_read = reads_letters(&flow_ref, &id);
            build(ctx, &id, parts, discover, letters_read);
            Ok(())
        }),
    )?;
    Ok(flow.stream_of(step_id, "down"))
}

pub(super) fn add_dynamic<S: DynamicSource>(
    flow: &Dataflow,
    step_id: &str,
    src: S,
) -> Result<Stream<S::Item>> {
    let src = Arc::new(src);
    let id = step_id.to_string();
    let flow_ref = Arc::downgrade(&flow.inner);
    flow.add_step(
        step_id,
        "input",
        &[],
        &["down", DEAD_LETTERS],
        Arc::new(move |ctx: &mut BuildCtx<'_>| {
            if ctx.shared.recovery.is_some() {
                return Err(RiffleError::Recovery(format!(
                    "step {id:?}: a dynamic source cannot resume from a snapshot; \
                     use a fixed-partitioned source (e.g. FileSource) with recovery"
                )));
            }
            let part = src.build(&id, ctx.worker)?;
            build(
                ctx,
                &id,
                vec![(format!("worker-{}", ctx.worker.index), part)],
                None,
                reads_letters(&flow_ref, &id),
            );
            Ok(())
        }),
    )?;
    Ok(flow.stream_of(step_id, "down"))
}

struct LivePart<P: SourcePartition> {
    name: String,
    /// Its identity in the flow's trace of origins.
    id: PartId,
    part: P,
    /// The epoch the partition asked for with `ReadyAt`, if it assigns epochs.
    floor: Option<u64>,
    /// Whether it has sent items at the wall clock's epochs (`Ready`).
    clocked: bool,
    /// The latest epoch it has sent items at: its end is announced there, so that
    /// a window does not handle the end before those items.
    last: u64,
    /// Positions handed out and not yet committed, oldest first, each with the
    /// epoch it closes: a snapshot epoch under a store, else an epoch's end.
    uncommitted: VecDeque<(u64, P::State)>,
    /// Without a store: the epoch whose start the partition's position was last
    /// recorded at.
    recorded: Option<u64>,
    /// Since when an event-time window has held this partition back, if it does.
    held_since: Option<Instant>,
}

impl<P: SourcePartition> LivePart<P> {
    /// Tells the partition of the newest of its positions whose epoch is at or
    /// before `safe`: everything before it has left the flow for good.
    fn commit_through(&mut self, safe: u64) -> Result<()> {
        let mut newest = None;
        while self.uncommitted.front().is_some_and(|(e, _)| *e <= safe) {
            newest = self.uncommitted.pop_front();
        }
        match newest {
            Some((_, state)) => self.part.commit(&state),
            None => Ok(()),
        }
    }
}

/// The source's capabilities: for its items and, when the flow traces origins,
/// for its spans. Both are held at the same epoch.
struct Held {
    items: Capability<u64>,
    /// For the step's dead letters.
    letters: Capability<u64>,
    spans: Option<Capability<u64>>,
}

impl Held {
    fn time(&self) -> &u64 {
        self.items.time()
    }

    fn downgrade(&mut self, epoch: &u64) {
        self.items.downgrade(epoch);
        self.letters.downgrade(epoch);
        if let Some(spans) = &mut self.spans {
            spans.downgrade(epoch);
        }
    }
}

type ItemsOut<'a, T> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<T>>>;
type SpansOut<'a> = OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<Span>>>;

/// Adds the source operator and stores its stream (and its origins, when the flow
/// traces them) under the step's `down` key.
/// Partitions found while running: how often to look, and how to find and open
/// the new ones this worker reads.
struct Discover<P> {
    every: Duration,
    next: Instant,
    find: Box<Find<P>>,
}

/// Lists the source's partitions and opens those new to this worker.
type Find<P> = dyn FnMut(&str) -> Result<Vec<(String, P)>>;

fn build<P: SourcePartition>(
    ctx: &mut BuildCtx<'_>,
    step_id: &str,
    parts: Vec<(String, P)>,
    mut discover: Option<Discover<P>>,
    letters_read: bool,
) {
    let shared = ctx.shared.clone();
    let worker = ctx.worker.index;
    // Letters a failed run on this thread left behind are not this run's.
    drop(take_set_aside());
    let scope = ctx.scope;
    let recovery = shared.recovery.clone();
    let mut snapshotted = recovery.as_ref().and_then(|r| r.resume);
    // Final positions of exhausted partitions, written with the next snapshot.
    let mut finished: Vec<Change> = Vec::new();
    // The latest epoch any partition has sent items at.
    let mut sent_through = 0u64;
    // Under a store, once every partition is exhausted: the snapshot epoch the
    // source ends at, committed before it lets go (see `end_at_snapshot`).
    let mut ending: Option<u64> = None;
    let step_id = step_id.to_string();
    let mut parts: Vec<LivePart<P>> = parts
        .into_iter()
        .map(|(name, part)| LivePart {
            id: part_id(&step_id, &name),
            name,
            part,
            floor: None,
            clocked: false,
            last: 0,
            uncommitted: VecDeque::new(),
            recorded: None,
            held_since: None,
        })
        .collect();
    let progress = ctx.progress.clone();
    let finally = ctx.finally.clone();
    let mut builder = OperatorBuilder::new(step_id.clone(), scope);
    let info = builder.operator_info();
    let (items_out, stream) = builder.new_output();
    let mut items_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<P::Item>>>::from(items_out);
    let (letters_out, letters_stream) = builder.new_output();
    let mut letters_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<DeadLetter>>>::from(letters_out);
    let traced = ctx.trace_origins.then(|| builder.new_output());
    let (mut spans_out, spans_stream) = match traced {
        Some((out, stream)) => (
            Some(OutputBuilder::<u64, CapacityContainerBuilder<Vec<Span>>>::from(out)),
            Some(stream),
        ),
        None => (None, None),
    };
    let key = stream_key(&step_id, "down");
    ctx.insert(key.clone(), stream);
    ctx.insert(stream_key(&step_id, DEAD_LETTERS), letters_stream);
    if let Some(spans) = spans_stream {
        ctx.insert_origins(key, Origins { spans, sources: 1 });
    }
    builder.build(move |mut caps| {
        let ready = super::ready::activation_waker(
            scope.worker().sync_activator_for(info.address.to_vec()),
        );
        for live in parts.iter_mut() {
            live.part.wake_on_ready(&ready);
        }
        let activator = scope.activator_for(info.address);
        let spans_cap = if caps.len() > 2 { caps.pop() } else { None };
        let letters_cap = caps.pop().expect("a source has a dead-letter output");
        let items_cap = caps.pop().expect("a source has an output");
        let mut cap = Some(Held {
            items: items_cap,
            letters: letters_cap,
            spans: spans_cap,
        });
        let mut announced = false;
        if let Some(recovery) = &recovery {
            let first = recovery.first_epoch();
            if let Some(c) = cap.as_mut() {
                c.downgrade(&first);
            }
        }
        move |_frontiers| {
            let mut output = items_out.activate();
            let mut letters_h = letters_out.activate();
            let mut spans_h = spans_out.as_mut().map(|o| o.activate());
            let output = &mut output;
            let Some(held) = cap.as_mut() else { return };
            // The partitions this worker reads, announced once.
            if !announced {
                announced = true;
                if let (Some(spans), Some(at)) = (spans_h.as_mut(), held.spans.as_ref()) {
                    let mut session = spans.session(at);
                    for live in &parts {
                        session.give(Span::Opened(live.id));
                    }
                    session.give(Span::Settled);
                }
            }
            let now = Instant::now();
            if shared.aborted() {
                stop(&mut parts, &mut cap);
                return;
            }
            if let Some(d) = discover.as_mut()
                && now >= d.next
            {
                d.next = now + d.every;
                match (d.find)(&step_id) {
                    Ok(found) => {
                        for (name, mut part) in found {
                            part.wake_on_ready(&ready);
                            let id = part_id(&step_id, &name);
                            if let (Some(spans), Some(at)) = (spans_h.as_mut(), held.spans.as_ref())
                            {
                                spans.session(at).give(Span::Opened(id));
                            }
                            parts.push(LivePart {
                                id,
                                name,
                                part,
                                floor: None,
                                clocked: false,
                                last: 0,
                                uncommitted: VecDeque::new(),
                                recorded: None,
                                held_since: None,
                            });
                        }
                    }
                    // The partitions being read go on; look again next time.
                    Err(e) => eprintln!("step {step_id:?}: cannot look for new partitions: {e}"),
                }
            }
            let clock = shared.epoch_at(now);
            // Everything sent so far is at epochs before `clock`, none after the held
            // epoch: every snapshot epoch from the held one to the clock sees exactly
            // these positions. They are written at the first of them, so that a
            // resume at any of them finds them (the run may commit any: another
            // worker's source can be slower and hold the flow at an earlier one;
            // written only at the latest, a resume at an earlier one found older
            // positions and read again what the flow's state already held).
            if let Some(recovery) = &recovery
                && let Some(epoch) = recovery.snapshot_at_or_after(*held.time())
                && epoch < clock
                && snapshotted.is_none_or(|s| epoch > s)
            {
                let mut changes = std::mem::take(&mut finished);
                let mut failed = None;
                let mut handed = Vec::new();
                // Partitions that assign their own epochs write their positions
                // as they move from one epoch to the next (below); one that has
                // sent nothing yet is where loading the store puts it anyway.
                for (i, live) in parts.iter().enumerate() {
                    if live.floor.is_some() || !live.clocked {
                        continue;
                    }
                    if let Some(state) = live.part.snapshot() {
                        match (encode(&step_id, &live.name), encode(&step_id, &state)) {
                            (Ok(k), Ok(v)) => changes.push((k, Some(v))),
                            (Err(e), _) | (_, Err(e)) => failed = Some(e),
                        }
                        handed.push((i, state));
                    }
                }
                let written = match failed {
                    Some(e) => Err(e),
                    None => recovery.store.write(&step_id, epoch, changes),
                };
                if let Err(e) = written {
                    shared.fail(e);
                    stop(&mut parts, &mut cap);
                    return;
                }
                for (i, state) in handed {
                    parts[i].uncommitted.push_back((epoch, state));
                }
                snapshotted = Some(epoch);
            }
            // The commit hook: under a store, positions of committed snapshots;
            // without one, positions at the start of epochs the whole flow (every
            // sink included) has passed.
            let safe = match &recovery {
                Some(recovery) => recovery.committed_epoch(),
                None => progress
                    .with_frontier(|f| f.first().copied())
                    .and_then(|low| low.checked_sub(1)),
            };
            if let Some(safe) = safe {
                for live in parts.iter_mut() {
                    if let Err(e) = live.commit_through(safe) {
                        shared.fail(e);
                        stop(&mut parts, &mut cap);
                        return;
                    }
                }
            }
            let slice_end = now + SLICE;
            let mut wake: Option<Instant> = None;
            let mut produced = false;
            let mut i = 0;
            while i < parts.len() {
                let live = &mut parts[i];
                if let Some(at) = live.part.next_awake()
                    && at > now
                {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                    i += 1;
                    continue;
                }
                // Far ahead of a window's watermark: let the slower partitions
                // catch up. Only partitions read at the wall clock's epochs are
                // held (holding one that assigns its own epochs would hold the
                // frontier that the slower ones' announcements wait for).
                if live.floor.is_none() && shared.pace.holds_back(live.id) {
                    let since = *live.held_since.get_or_insert(now);
                    if now.duration_since(since) < PACE_MAX_HOLD {
                        let at = now + PACE_POLL;
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                        i += 1;
                        continue;
                    }
                }
                live.held_since = None;
                // Under recovery, the position before this poll: where the
                // partition stands at the end of every epoch before the one its
                // next batch is at.
                // (Without a store, partitions that assign their own epochs need it
                // too: their commits are positions where they moved to a later one.)
                let before = if recovery.is_some() || live.floor.is_some() {
                    live.part.snapshot()
                } else {
                    // Without a store, the position at the start of each wall-clock
                    // epoch the partition reads in: once the flow has passed the
                    // epoch before, everything before it has been written.
                    let at = clock.max(*held.time());
                    if live.recorded.is_none_or(|r| at > r) {
                        live.recorded = Some(at);
                        if at > 0
                            && let Some(state) = live.part.snapshot()
                        {
                            live.uncommitted.push_back((at - 1, state));
                        }
                    }
                    None
                };
                let polled = shared.guard(
                    &step_id,
                    worker,
                    || format!(" reading partition {:?}", live.name),
                    || live.part.next_batch(),
                );
                let polled = match polled {
                    None => {
                        stop(&mut parts, &mut cap);
                        return;
                    }
                    Some(Err(e)) => {
                        shared.fail(e);
                        stop(&mut parts, &mut cap);
                        return;
                    }
                    Some(Ok(p)) => p,
                };
                // Inputs it set aside for the dead-letter stream: sent at the held
                // epoch, no later than any position past them.
                let mut letters = take_set_aside();
                if !letters.is_empty() {
                    if !letters_read {
                        shared.fail(unread_letters(&step_id, &letters[0]));
                        stop(&mut parts, &mut cap);
                        return;
                    }
                    letters_h
                        .session(&held.letters)
                        .give_container(&mut letters);
                }
                match polled {
                    Poll::Ready(mut items) => {
                        live.clocked |= live.floor.is_none();
                        let epoch = live.floor.unwrap_or(clock).max(*held.time());
                        live.last = live.last.max(epoch);
                        send(output, spans_h.as_mut(), held, live.id, epoch, &mut items);
                        produced = true;
                    }
                    Poll::ReadyAt(epoch, mut items) => {
                        let epoch = epoch.max(*held.time());
                        let prev = live.floor.unwrap_or(*held.time());
                        if let Some(recovery) = &recovery
                            && epoch > prev
                        {
                            match write_position(
                                recovery,
                                &step_id,
                                &live.name,
                                before.as_ref(),
                                prev,
                                epoch,
                            ) {
                                Ok(Some(at)) => {
                                    if let Some(state) = before {
                                        live.uncommitted.push_back((at, state));
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    shared.fail(e);
                                    stop(&mut parts, &mut cap);
                                    return;
                                }
                            }
                        } else if epoch > prev
                            && let Some(state) = before
                        {
                            live.uncommitted.push_back((epoch - 1, state));
                        }
                        live.floor = Some(epoch);
                        live.last = live.last.max(epoch);
                        send(output, spans_h.as_mut(), held, live.id, epoch, &mut items);
                        produced = true;
                    }
                    Poll::Pending => {
                        let at = live.part.next_awake().unwrap_or(now + IDLE_POLL);
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    Poll::Exhausted => {
                        if let (Some(recovery), Some(floor)) = (&recovery, live.floor) {
                            // Everything it had is sent, at epochs up to its floor.
                            let state = live.part.snapshot();
                            if let Err(e) = write_position(
                                recovery,
                                &step_id,
                                &live.name,
                                state.as_ref(),
                                floor,
                                u64::MAX,
                            ) {
                                shared.fail(e);
                                stop(&mut parts, &mut cap);
                                return;
                            }
                        } else if recovery.is_some()
                            && let Some(state) = live.part.snapshot()
                        {
                            match (encode(&step_id, &live.name), encode(&step_id, &state)) {
                                (Ok(k), Ok(v)) => finished.push((k, Some(v))),
                                (Err(e), _) | (_, Err(e)) => {
                                    shared.fail(e);
                                    stop(&mut parts, &mut cap);
                                    return;
                                }
                            }
                        }
                        if let (Some(spans), Some(at)) = (spans_h.as_mut(), held.spans.as_ref()) {
                            if live.last > *at.time() {
                                spans
                                    .session(&at.delayed(&live.last))
                                    .give(Span::Closed(live.id));
                            } else {
                                spans.session(at).give(Span::Closed(live.id));
                            }
                        }
                        // Its last commit and its close wait for the end of the
                        // run, when every sink has written what it produced.
                        sent_through = sent_through.max(live.last);
                        let mut done = parts.swap_remove(i);
                        finally.push(move || {
                            if let Some(state) = done.part.snapshot() {
                                done.part.commit(&state)?;
                            }
                            done.part.close()
                        });
                        continue;
                    }
                }
                if Instant::now() >= slice_end {
                    break;
                }
                i += 1;
            }
            if parts.is_empty() {
                match &discover {
                    // Nothing to read yet: look for new partitions now and then.
                    Some(d) => {
                        let at = d.next.min(now + MAX_SLEEP);
                        if clock > *held.time() {
                            held.downgrade(&clock);
                        }
                        activator.activate_after(at.saturating_duration_since(Instant::now()));
                    }
                    None => match &recovery {
                        Some(recovery) => {
                            match end_at_snapshot(
                                recovery,
                                &step_id,
                                held,
                                sent_through,
                                &mut ending,
                                &mut finished,
                            ) {
                                Ok(true) => cap = None,
                                Ok(false) => activator.activate_after(END_POLL),
                                Err(e) => {
                                    shared.fail(e);
                                    stop(&mut parts, &mut cap);
                                }
                            }
                        }
                        None => cap = None,
                    },
                }
                return;
            }
            // Hold the least epoch any partition may still produce at.
            let low = parts
                .iter()
                .map(|p| p.floor.unwrap_or(clock))
                .min()
                .unwrap_or(clock);
            if low > *held.time() {
                held.downgrade(&low);
            }
            if produced {
                activator.activate();
            } else {
                // Never sleep long, so that an abort (and a commit) is noticed quickly.
                let mut at = wake.unwrap_or(now + IDLE_POLL).min(now + MAX_SLEEP);
                if parts.iter().any(|p| p.floor.is_none()) {
                    at = at.min(shared.epoch_start(clock + 1));
                }
                activator.activate_after(at.saturating_duration_since(Instant::now()));
            }
        }
    });
}

/// The port of a source step's dead letters (see [`crate::dead_letters`]).
pub(crate) const DEAD_LETTERS: &str = "dead_letters";

/// Whether a step of the flow reads the dead letters of source `step_id`.
fn reads_letters(flow: &Weak<Mutex<DataflowInner>>, step_id: &str) -> bool {
    flow.upgrade().is_some_and(|inner| {
        let inner = inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.steps.iter().any(|s| {
            s.upstreams
                .iter()
                .any(|u| u.step_id == step_id && u.port == DEAD_LETTERS)
        })
    })
}

/// The error for a letter set aside for a stream no step reads.
fn unread_letters(step_id: &str, letter: &DeadLetter) -> RiffleError {
    RiffleError::Execution(format!(
        "step {step_id:?} set an input aside for its dead-letter stream ({}), but no step \
         reads that stream: route it (`.dead_letters()` of the step's stream) or give the \
         source a dead-letter file",
        letter.to_json()
    ))
}

/// Ends a source whose partitions are all exhausted, under a store, at a committed
/// snapshot: the final positions are written at the first snapshot epoch `end` at
/// or after everything it sent, and the source holds the flow just past `end`
/// until the run commits it, so that every step and sink snapshots the whole input
/// there. A run that completes thus leaves its end in the store, and the same run
/// started again resumes there: it reads only what is new, and whatever the end
/// of the input let out (the last windows, final aggregations) comes again at the
/// same place, where exactly-once sinks write it over. The end does not wait for
/// the wall clock to reach `end`: epochs past it are empty for this source.
/// Returns whether the source may let go.
fn end_at_snapshot(
    recovery: &crate::recovery::RecoveryRun,
    step_id: &str,
    held: &mut Held,
    sent_through: u64,
    ending: &mut Option<u64>,
    finished: &mut Vec<Change>,
) -> Result<bool> {
    let end = match *ending {
        Some(end) => end,
        None => {
            let Some(end) = recovery.snapshot_at_or_after(sent_through.max(*held.time())) else {
                return Ok(true);
            };
            recovery
                .store
                .write(step_id, end, std::mem::take(finished))?;
            if let Some(next) = end.checked_add(1) {
                held.downgrade(&next);
            }
            *ending = Some(end);
            end
        }
    };
    Ok(recovery.committed_epoch().is_some_and(|c| c >= end))
}

/// Writes the position of a partition that assigns its own epochs, as it moves
/// from epoch `from` to epoch `to`: `state` is where it stands at the end of every
/// epoch in `from..to`, so it is written at the first snapshot epoch among them
/// (resuming at any later snapshot epoch before `to` finds the same row). Returns
/// the epoch it was written at, if it was.
fn write_position<S: serde::Serialize>(
    recovery: &crate::recovery::RecoveryRun,
    step_id: &str,
    name: &str,
    state: Option<&S>,
    from: u64,
    to: u64,
) -> crate::error::Result<Option<u64>> {
    let (Some(state), Some(at)) = (state, recovery.snapshot_at_or_after(from)) else {
        return Ok(None);
    };
    if at >= to {
        return Ok(None);
    }
    let change = (encode(step_id, &name)?, Some(encode(step_id, state)?));
    recovery.store.write(step_id, at, vec![change])?;
    Ok(Some(at))
}

/// Sends a partition's batch at `epoch`, and its span when the flow traces origins.
fn send<T: crate::Data>(
    output: &mut ItemsOut<'_, T>,
    spans: Option<&mut SpansOut<'_>>,
    held: &Held,
    part: PartId,
    epoch: u64,
    items: &mut Vec<T>,
) {
    if items.is_empty() {
        return;
    }
    let count = items.len();
    if epoch == *held.time() {
        output.session(&held.items).give_container(items);
    } else {
        let at = held.items.delayed(&epoch);
        output.session(&at).give_container(items);
    }
    if let (Some(spans), Some(cap)) = (spans, &held.spans) {
        let span = Span::Items { part, count };
        if epoch == *cap.time() {
            spans.session(cap).give(span);
        } else {
            spans.session(&cap.delayed(&epoch)).give(span);
        }
    }
}
