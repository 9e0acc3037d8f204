//! The timely operator that writes a worker's partitions of one sink.

use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::{DynamicSink, FixedPartitionedSink, SinkPartition};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The states a snapshot epoch handed out: (partition index, state) pairs.
type Handed<S> = (u64, Vec<(usize, S)>);

/// How soon a sink waiting for a commit looks again.
const COMMIT_POLL: Duration = Duration::from_millis(20);

use timely::dataflow::channels::pact::ParallelizationContract;

use crate::build::{BuildCtx, TStream};
use crate::data::Data;
use crate::dataflow::Stream;
use crate::error::{Result, RiffleError};
use crate::recovery::{decode, encode};

pub(super) fn add_fixed<T: Data, S: FixedPartitionedSink<Item = T>>(
    up: &Stream<T>,
    step_id: &str,
    sink: S,
) -> Result<()> {
    let sink = Arc::new(sink);
    let id = step_id.to_string();
    let up_key = up.key();
    up.flow.add_step(
        step_id,
        "output",
        &[up],
        &[],
        Arc::new(move |ctx: &mut BuildCtx<'_>| {
            let input = ctx.stream::<T>(&up_key)?;
            let names = sink.list_parts(&id)?;
            if names.is_empty() {
                return Err(RiffleError::connector(&id, "the sink has no partitions"));
            }
            let count = names.len();
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
            // Every partition snapshots its position, so a store that holds
            // positions for this sink but none for one of its partitions was made
            // with other partitions (say, another output folder): writing that
            // partition from scratch would lose what the store says was written.
            if !resume.is_empty()
                && let Some(name) = names.iter().find(|n| !resume.contains_key(*n))
            {
                let mut known: Vec<&String> = resume.keys().collect();
                known.sort();
                known.truncate(3);
                return Err(RiffleError::Recovery(format!(
                    "step {id:?}: the recovery store has committed positions for partitions \
                     {known:?}, but none for {name:?}; resume with the same output location \
                     as the run that made the store, or start a new store"
                )));
            }
            // Partition index -> this worker's open partition (None if another
            // worker owns it).
            let mut parts: Vec<Option<S::Partition>> = Vec::with_capacity(count);
            for (i, name) in names.iter().enumerate() {
                parts.push(if i % ctx.worker.count == ctx.worker.index {
                    Some(sink.build_part(&id, name, resume.remove(name))?)
                } else {
                    None
                });
            }
            let route = sink.clone();
            let pact =
                Exchange::new(move |item: &T| route.part_fn(item, count) as u64 % count as u64);
            if ctx.shared.recovery.is_some() {
                let progress = recoverable_sink(ctx, &id, input, pact, sink.clone(), names, parts);
                ctx.watch_sink(progress);
                return Ok(());
            }
            let route = sink.clone();
            let progress = flushing_sink(
                ctx,
                &id,
                input,
                pact,
                move |item: &T| route.part_fn(item, count) % count,
                parts,
            );
            ctx.watch_sink(progress);
            Ok(())
        }),
    )
}

/// A fixed-partitioned sink under recovery: writes epochs in order and snapshots
/// its partitions' positions between them, holding the flow's progress until the
/// snapshot is written. Returns an empty stream whose progress is the sink's.
fn recoverable_sink<'s, T: Data, S: FixedPartitionedSink<Item = T>>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    input: TStream<'s, T>,
    pact: impl ParallelizationContract<u64, Vec<T>>,
    sink: Arc<S>,
    names: Vec<String>,
    mut parts: Vec<Option<S::Partition>>,
) -> TStream<'s, ()> {
    let shared = ctx.shared.clone();
    let step_id = step_id.to_string();
    let count = parts.len();
    let scope = ctx.scope;
    input.unary_frontier(pact, &step_id.clone(), move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut held = Some(cap);
        let mut pending: BTreeMap<u64, Vec<T>> = BTreeMap::new();
        // States handed to snapshots and not yet committed, by snapshot epoch: the
        // commit hook tells each partition of the newest one committed.
        let mut uncommitted: VecDeque<Handed<S::State>> = VecDeque::new();
        let recovery = shared.recovery.clone();
        let mut snapshotted = recovery.as_ref().and_then(|r| r.resume);
        let mut closed = false;
        let mut groups: Vec<Vec<T>> = (0..count).map(|_| Vec::new()).collect();
        move |(input, frontier),
              _output: &mut timely::dataflow::operators::generic::OutputBuilderSession<
            '_,
            u64,
            timely::container::CapacityContainerBuilder<Vec<()>>,
        >| {
            input.for_each(|time, data| {
                let Some(epoch) = time.least().copied() else {
                    return;
                };
                pending.entry(epoch).or_default().append(data);
            });
            if closed {
                pending.clear();
                return;
            }
            if shared.aborted() {
                pending.clear();
                held = None;
                closed = true;
                return;
            }
            let low = frontier.frontier().first().copied();
            let mut snapshot = |before: u64, parts: &mut Vec<Option<S::Partition>>| -> Result<()> {
                let Some(recovery) = &recovery else {
                    return Ok(());
                };
                let Some(epoch) = recovery.snapshot_before(before) else {
                    return Ok(());
                };
                if snapshotted.is_some_and(|s| epoch <= s) {
                    return Ok(());
                }
                let mut changes = Vec::new();
                let mut handed = Vec::new();
                for (i, (name, part)) in names.iter().zip(parts.iter_mut()).enumerate() {
                    if let Some(part) = part
                        && let Some(state) = part.snapshot()?
                    {
                        changes.push((encode(&step_id, name)?, Some(encode(&step_id, &state)?)));
                        handed.push((i, state));
                    }
                }
                recovery.store.write(&step_id, epoch, changes)?;
                if !handed.is_empty() {
                    uncommitted.push_back((epoch, handed));
                }
                snapshotted = Some(epoch);
                Ok(())
            };
            let mut result = Ok(());
            while let Some(entry) = pending.first_entry() {
                let epoch = *entry.key();
                if low.is_some_and(|l| epoch > l) {
                    break;
                }
                let batch = entry.remove();
                result = snapshot(epoch, &mut parts).and_then(|()| {
                    for item in batch {
                        let i = sink.part_fn(&item, count) % count;
                        groups[i].push(item);
                    }
                    let mut result = Ok(());
                    for (i, group) in groups.iter_mut().enumerate() {
                        if !group.is_empty() && result.is_ok() {
                            result = write(&mut parts[i], &step_id, std::mem::take(group));
                        }
                    }
                    result
                });
                if result.is_err() {
                    break;
                }
            }
            if result.is_ok()
                && let Some(low) = low
            {
                result = snapshot(low, &mut parts);
            }
            // The commit hook, for the newest committed snapshot of each partition.
            if result.is_ok()
                && !uncommitted.is_empty()
                && let Some(committed) = recovery.as_ref().and_then(|r| r.committed_epoch())
            {
                let mut newest: Vec<Option<S::State>> = (0..count).map(|_| None).collect();
                while uncommitted.front().is_some_and(|(e, _)| *e <= committed) {
                    if let Some((_, states)) = uncommitted.pop_front() {
                        for (i, state) in states {
                            newest[i] = Some(state);
                        }
                    }
                }
                for (i, state) in newest.into_iter().enumerate() {
                    if let (Some(state), Some(part)) = (state, parts[i].as_mut())
                        && result.is_ok()
                    {
                        result = part.commit(&state);
                    }
                }
            }
            if !uncommitted.is_empty() {
                // Look again soon: the commit comes from worker 0 (or the store).
                activator.activate_after(COMMIT_POLL);
            }
            if let Err(e) = result {
                shared.fail(e);
                held = None;
                return;
            }
            closed = !follow(&mut held, low, &mut parts, &shared);
        }
    })
}

/// A sink without a recovery store: writes items as they arrive, and flushes every
/// partition before it lets the flow's progress move past an epoch, so that a
/// source commits upstream only what the sinks have made durable (at-least-once).
/// Returns an empty stream whose progress is the sink's.
fn flushing_sink<'s, T: Data, P: SinkPartition<Item = T>>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    input: TStream<'s, T>,
    pact: impl ParallelizationContract<u64, Vec<T>>,
    route: impl Fn(&T) -> usize + 'static,
    mut parts: Vec<Option<P>>,
) -> TStream<'s, ()> {
    let shared = ctx.shared.clone();
    let step_id = step_id.to_string();
    let count = parts.len();
    input.unary_frontier(pact, &step_id.clone(), move |cap, _| {
        let mut held = Some(cap);
        let mut groups: Vec<Vec<T>> = (0..count).map(|_| Vec::new()).collect();
        move |(input, frontier), _output: &mut ProgressOut<'_>| {
            if held.is_none() {
                input.for_each(|_, data| data.clear());
                return;
            }
            if shared.aborted() {
                input.for_each(|_, data| data.clear());
                held = None;
                return;
            }
            let mut result = Ok(());
            input.for_each(|_time, data| {
                if result.is_err() {
                    data.clear();
                    return;
                }
                let batch = std::mem::take(data);
                result = if count == 1 {
                    write(&mut parts[0], &step_id, batch)
                } else {
                    for item in batch {
                        groups[route(&item)].push(item);
                    }
                    write_groups(&mut groups, &mut parts, &step_id)
                };
            });
            let low = frontier.frontier().first().copied();
            let moved = match (&held, low) {
                (Some(cap), Some(low)) => low > *cap.time(),
                _ => true,
            };
            if result.is_ok() && moved {
                result = parts.iter_mut().flatten().try_for_each(|p| p.flush());
            }
            if let Err(e) = result {
                shared.fail(e);
                held = None;
                return;
            }
            follow(&mut held, low, &mut parts, &shared);
        }
    })
}

/// Moves the sink's progress to its input's frontier `low`, or, at the end of the
/// input, drops it and closes every partition. Returns whether the sink goes on.
fn follow<P: SinkPartition>(
    held: &mut Option<timely::dataflow::operators::Capability<u64>>,
    low: Option<u64>,
    parts: &mut [Option<P>],
    shared: &crate::run::RunShared,
) -> bool {
    match low {
        Some(low) => {
            if let Some(cap) = held.as_mut()
                && *cap.time() < low
            {
                cap.downgrade(&low);
            }
            true
        }
        None => {
            *held = None;
            for part in parts.iter_mut().flatten() {
                if let Err(e) = part.close() {
                    shared.fail(e);
                }
            }
            false
        }
    }
}

type ProgressOut<'a> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    u64,
    timely::container::CapacityContainerBuilder<Vec<()>>,
>;

/// Writes each partition's group of items, emptying the groups.
fn write_groups<P: SinkPartition>(
    groups: &mut [Vec<P::Item>],
    parts: &mut [Option<P>],
    step_id: &str,
) -> Result<()> {
    for (i, group) in groups.iter_mut().enumerate() {
        if !group.is_empty() {
            write(&mut parts[i], step_id, std::mem::take(group))?;
        }
    }
    Ok(())
}

fn write<P: SinkPartition>(part: &mut Option<P>, step_id: &str, batch: Vec<P::Item>) -> Result<()> {
    match part {
        Some(part) => part.write_batch(batch),
        None => Err(RiffleError::Execution(format!(
            "step {step_id:?}: items reached a worker that does not own their partition"
        ))),
    }
}

pub(super) fn add_dynamic<T: Data, S: DynamicSink<Item = T>>(
    up: &Stream<T>,
    step_id: &str,
    sink: S,
) -> Result<()> {
    let sink = Arc::new(sink);
    let id = step_id.to_string();
    let up_key = up.key();
    up.flow.add_step(
        step_id,
        "output",
        &[up],
        &[],
        Arc::new(move |ctx: &mut BuildCtx<'_>| {
            let input = ctx.stream::<T>(&up_key)?;
            let part = sink.build(&id, ctx.worker)?;
            let progress = flushing_sink(ctx, &id, input, Pipeline, |_: &T| 0, vec![Some(part)]);
            ctx.watch_sink(progress);
            Ok(())
        }),
    )
}
