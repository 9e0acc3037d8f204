//! The timely operator that writes a worker's partitions of one sink.

use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::{DynamicSink, FixedPartitionedSink, SinkPartition};
use crate::build::BuildCtx;
use crate::data::Data;
use crate::error::{Result, RiffleError};
use crate::flow::Stream;

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
            // Partition index -> this worker's open partition (None if another
            // worker owns it).
            let mut parts: Vec<Option<S::Partition>> = Vec::with_capacity(count);
            for (i, name) in names.iter().enumerate() {
                parts.push(if i % ctx.worker.count == ctx.worker.index {
                    Some(sink.build_part(&id, name, None)?)
                } else {
                    None
                });
            }
            let route = sink.clone();
            let pact =
                Exchange::new(move |item: &T| route.part_fn(item, count) as u64 % count as u64);
            let shared = ctx.shared.clone();
            let step_id = id.clone();
            let sink = sink.clone();
            let mut closed = false;
            let mut groups: Vec<Vec<T>> = (0..count).map(|_| Vec::new()).collect();
            input.sink(pact, &id, move |(input, frontier)| {
                input.for_each(|_time, data| {
                    if shared.aborted() || closed {
                        data.clear();
                        return;
                    }
                    let batch = std::mem::take(data);
                    let result = if count == 1 {
                        write(&mut parts[0], &step_id, batch)
                    } else {
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
                    };
                    if let Err(e) = result {
                        shared.fail(e);
                    }
                });
                if !closed && (frontier.is_empty() || shared.aborted()) {
                    closed = true;
                    for part in parts.iter_mut().flatten() {
                        if let Err(e) = part.close() {
                            shared.fail(e);
                        }
                    }
                }
            });
            Ok(())
        }),
    )
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
            let mut part = sink.build(&id, ctx.worker)?;
            let shared = ctx.shared.clone();
            let mut closed = false;
            input.sink(Pipeline, &id, move |(input, frontier)| {
                input.for_each(|_time, data| {
                    if shared.aborted() || closed {
                        data.clear();
                        return;
                    }
                    if let Err(e) = part.write_batch(std::mem::take(data)) {
                        shared.fail(e);
                    }
                });
                if !closed && (frontier.is_empty() || shared.aborted()) {
                    closed = true;
                    if let Err(e) = part.close() {
                        shared.fail(e);
                    }
                }
            });
            Ok(())
        }),
    )
}
