//! Where items came from: the source partition of every run of items, carried
//! beside a stream so that an event-time window keeps one watermark per partition.
//!
//! A worker that reads two partitions whose event times drift apart (one file
//! replayed from yesterday, one written live) must not let the fast one decide the
//! watermark: the slow one's items would all come out late. So a flow with an
//! event-time window **traces origins**: every source gets a second output, its
//! *spans*, and every stateless step between the source and the window carries the
//! spans along.
//!
//! - `Span::Items { part, count }`: the next `count` items of this worker's stream
//!   came from partition `part` (a [`part_id`] of the source step and partition).
//! - `Span::Opened(part)` / `Span::Closed(part)`: this worker starts / stops
//!   reading `part` (a finished partition stops holding the watermark back).
//! - `Span::Settled`: a source has announced every partition it reads on this
//!   worker (so the window knows it is not waiting for one it has not heard of).
//!
//! Items and spans travel on two channels between the same two operators of one
//! worker. A step sends the spans of what it produced in the same activation as the
//! items, and a receiving step reads all its waiting spans before its items, so
//! an item's span is there when the item is ([`SpanQueue`] pairs them by count and
//! splits a batch where its partition changes). Steps that move items between
//! workers (keyed steps, `redistribute`, joins, exchanges of the user's own) end
//! the trace: a window after them keeps one watermark per upstream worker.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::InputCapability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use crate::build::{BuildCtx, TStream};
use crate::data::Data;
use crate::error::Result;
use crate::exchange::stable_hash;
use crate::operators::{Site, batch_operator};

/// A source partition's identity in a trace: a hash of the source step and the
/// partition's name, the same on every worker and process.
pub(crate) type PartId = u64;

/// Items whose partition is not known: a window counts them under their upstream
/// worker as a whole.
pub(crate) const UNTRACED: PartId = u64::MAX;

/// The id of partition `name` of source step `step_id`.
pub(crate) fn part_id(step_id: &str, name: &str) -> PartId {
    match stable_hash(&(step_id, name)) {
        UNTRACED => UNTRACED - 1,
        id => id,
    }
}

/// One entry of a trace; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// The next `count` items came from `part`.
    Items { part: PartId, count: usize },
    /// This worker reads `part` from now on.
    Opened(PartId),
    /// This worker has read all of `part`.
    Closed(PartId),
    /// A source has announced all its partitions on this worker.
    Settled,
}

/// The spans beside a stream, and how many sources feed it (each sends one
/// `Settled` per worker).
#[derive(Clone)]
pub(crate) struct Origins<'s> {
    pub spans: TStream<'s, Span>,
    pub sources: usize,
}

/// A stream with its origins, if it carries them.
pub(crate) type Traced<'s, T> = (TStream<'s, T>, Option<Origins<'s>>);

/// A stateless step on `input`: traced ([`traced_operator`]) if the input carries
/// origins, a plain [`batch_operator`] otherwise. Every stateless step goes
/// through here, so none has to decide for itself.
pub(crate) fn stateless_operator<'s, T: Data, U: Data>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    (input, origins): Traced<'s, T>,
    logic: impl FnMut(&Site, u64, &mut Vec<T>, &mut Vec<U>) -> Result<()> + 'static,
) -> Traced<'s, U> {
    match origins {
        Some(origins) => {
            let (stream, origins) = traced_operator(ctx, step_id, vec![(input, origins)], logic);
            (stream, Some(origins))
        }
        None => (batch_operator(ctx, step_id, input, logic), None),
    }
}

/// One stream with the items of `inputs`; it carries origins only if every input
/// does.
pub(crate) fn merge_traced<'s, T: Data>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    inputs: Vec<Traced<'s, T>>,
) -> Traced<'s, T> {
    if inputs.iter().all(|(_, o)| o.is_some()) {
        let inputs = inputs
            .into_iter()
            .map(|(s, o)| (s, o.expect("checked")))
            .collect();
        let (merged, origins) = traced_operator(
            ctx,
            step_id,
            inputs,
            |_: &Site, _, batch: &mut Vec<T>, out: &mut Vec<T>| {
                out.append(batch);
                Ok(())
            },
        );
        (merged, Some(origins))
    } else {
        use timely::dataflow::operators::core::Concatenate;
        (
            ctx.scope.concatenate(inputs.into_iter().map(|(s, _)| s)),
            None,
        )
    }
}

/// A span waiting for its items, or a control span with the capability to pass
/// it on at its own epoch if no item follows it in this activation.
enum Pending {
    Items { part: PartId, count: usize },
    Control(Option<Capability<u64>>, Span),
}

/// What [`SpanQueue::walk`] hands out: a run of items from one partition, or a
/// control span with the capability of the epoch it was sent at. A control span
/// must go on at that epoch if it is later than the batch's: a window handles
/// epochs in order, and a partition's `Closed` must not be handled before items
/// of it at a later epoch.
pub(crate) enum Piece<'a, T> {
    Run(PartId, &'a mut Vec<T>),
    Control(Option<&'a Capability<u64>>, Span),
}

/// The capability to pass a control span on with, if its own epoch is later than
/// the batch's (`epoch`); `None` means the batch's capability will do.
pub(crate) fn later_than(cap: Option<&Capability<u64>>, epoch: u64) -> Option<&Capability<u64>> {
    cap.filter(|c| *c.time() > epoch)
}

/// Pairs a stream's items with their spans, in order; see the [module docs](self).
#[derive(Default)]
pub(crate) struct SpanQueue {
    pending: VecDeque<Pending>,
    /// Items seen before their spans (never expected): the next spans' counts are
    /// paid down by this much, so pairing stays aligned.
    debt: usize,
}

impl SpanQueue {
    /// Queues spans that arrived at `cap`; control spans keep a capability for
    /// output `port`, where they are passed on.
    pub fn push(&mut self, cap: &InputCapability<u64>, port: usize, spans: &mut Vec<Span>) {
        for span in spans.drain(..) {
            self.queue(span, || cap.retain_least(port));
        }
    }

    fn queue(&mut self, span: Span, cap: impl FnOnce() -> Option<Capability<u64>>) {
        match span {
            Span::Items { part, mut count } => {
                let paid = self.debt.min(count);
                self.debt -= paid;
                count -= paid;
                if count > 0 {
                    self.pending.push_back(Pending::Items { part, count });
                }
            }
            control => self.pending.push_back(Pending::Control(cap(), control)),
        }
    }

    /// Splits `batch` into runs from one partition each and hands them to `each`
    /// in order, with the control spans met between them. `batch` is left empty.
    pub fn walk<T>(&mut self, batch: &mut Vec<T>, mut each: impl FnMut(Piece<'_, T>)) {
        let mut rest = std::mem::take(batch);
        while !rest.is_empty() {
            match self.pending.front_mut() {
                Some(Pending::Control(..)) => {
                    if let Some(Pending::Control(cap, span)) = self.pending.pop_front() {
                        each(Piece::Control(cap.as_ref(), span));
                    }
                }
                Some(Pending::Items { part, count }) => {
                    let part = *part;
                    if *count >= rest.len() {
                        *count -= rest.len();
                        if *count == 0 {
                            self.pending.pop_front();
                        }
                        each(Piece::Run(part, &mut rest));
                        rest.clear();
                    } else {
                        let tail = rest.split_off(*count);
                        self.pending.pop_front();
                        each(Piece::Run(part, &mut rest));
                        rest = tail;
                    }
                }
                None => {
                    self.debt += rest.len();
                    each(Piece::Run(UNTRACED, &mut rest));
                    rest.clear();
                }
            }
        }
        *batch = rest;
    }

    /// Hands out the control spans still queued once the items at hand are walked,
    /// each with the capability it arrived with, so that none holds its epoch open.
    /// (Items reach a step in the same activation as their spans, so no control
    /// span should be waiting behind items that have not arrived; if one were, it
    /// would go out ahead of them rather than stall the flow.)
    pub fn drain_controls(&mut self, mut control: impl FnMut(&Capability<u64>, Span)) {
        if !self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Control(..)))
        {
            return;
        }
        self.pending.retain(|p| match p {
            Pending::Control(cap, span) => {
                if let Some(cap) = cap {
                    control(cap, *span);
                }
                false
            }
            Pending::Items { .. } => true,
        });
    }

    /// Forgets everything queued (the run is being aborted).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.debt = 0;
    }
}

/// A traced stateless step: `inputs` (items with their origins) merged, each batch
/// split into runs by partition and handed to `logic` run by run; returns the
/// output and its origins. With one input this is a traced `map`, `filter`, ...;
/// with several and a logic that moves items over, a traced `merge`.
pub(crate) fn traced_operator<'s, T: Data, U: Data>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    inputs: Vec<(TStream<'s, T>, Origins<'s>)>,
    mut logic: impl FnMut(&Site, u64, &mut Vec<T>, &mut Vec<U>) -> Result<()> + 'static,
) -> (TStream<'s, U>, Origins<'s>) {
    let shared = ctx.shared.clone();
    let site = Site {
        step_id: step_id.into(),
        worker: ctx.worker.index,
    };
    let sources = inputs.iter().map(|(_, o)| o.sources).sum();
    let mut builder = OperatorBuilder::new(step_id.to_string(), ctx.scope);
    let mut ports = Vec::new();
    for (data, origins) in inputs {
        let data_in = builder.new_input(data, Pipeline);
        let spans_in = builder.new_input(origins.spans, Pipeline);
        ports.push((data_in, spans_in, SpanQueue::default()));
    }
    for input in 0..ports.len() * 2 {
        builder.set_notify_for(input, FrontierInterest::Never);
    }
    let (data_out, data_stream) = builder.new_output();
    let (spans_out, spans_stream) = builder.new_output();
    let mut data_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<U>>>::from(data_out);
    let mut spans_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Span>>>::from(spans_out);
    builder.build(move |_caps| {
        let mut out: Vec<U> = Vec::new();
        let mut out_spans: Vec<Span> = Vec::new();
        move |_frontiers| {
            let mut data_h = data_out.activate();
            let mut spans_h = spans_out.activate();
            for (data_in, spans_in, queue) in ports.iter_mut() {
                spans_in.for_each(|cap, spans| queue.push(&cap, 1, spans));
                data_in.for_each(|cap, data| {
                    if shared.aborted() {
                        data.clear();
                        queue.clear();
                        return;
                    }
                    let epoch = cap.least().copied().unwrap_or_default();
                    queue.walk(data, |piece| match piece {
                        Piece::Run(part, items) => {
                            let before = out.len();
                            let done = catch_unwind(AssertUnwindSafe(|| {
                                logic(&site, epoch, items, &mut out)
                            }));
                            match done {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => shared.fail(e),
                                Err(payload) => {
                                    shared.fail(site.panic_on::<()>(epoch, None, payload))
                                }
                            }
                            let count = out.len().saturating_sub(before);
                            if count > 0 {
                                out_spans.push(Span::Items { part, count });
                            }
                        }
                        Piece::Control(own, span) => match later_than(own, epoch) {
                            Some(own) => {
                                // Keep the order: the spans so far, then this one.
                                if !out_spans.is_empty() {
                                    spans_h.session(&cap).give_container(&mut out_spans);
                                    out_spans.clear();
                                }
                                spans_h.session(own).give(span);
                            }
                            None => out_spans.push(span),
                        },
                    });
                    if !out.is_empty() {
                        data_h.session(&cap).give_container(&mut out);
                        out.clear();
                    }
                    if !out_spans.is_empty() {
                        spans_h.session(&cap).give_container(&mut out_spans);
                        out_spans.clear();
                    }
                });
                queue.drain_controls(|cap, span| spans_h.session(cap).give(span));
            }
        }
    });
    let origins = Origins {
        spans: spans_stream,
        sources,
    };
    (data_stream, origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `batch` and lists what came out: `Ok((part, items))` or `Err(span)`.
    fn walk(
        queue: &mut SpanQueue,
        mut batch: Vec<u32>,
    ) -> Vec<std::result::Result<(PartId, Vec<u32>), Span>> {
        let mut seen = Vec::new();
        queue.walk(&mut batch, |piece| match piece {
            Piece::Run(part, items) => seen.push(Ok((part, std::mem::take(items)))),
            Piece::Control(_, span) => seen.push(Err(span)),
        });
        assert!(batch.is_empty());
        seen
    }

    #[test]
    fn a_batch_is_split_where_its_partition_changes_and_controls_keep_their_place() {
        let mut q = SpanQueue::default();
        for span in [
            Span::Opened(1),
            Span::Items { part: 1, count: 2 },
            Span::Items { part: 2, count: 3 },
            Span::Closed(1),
            Span::Items { part: 2, count: 1 },
        ] {
            q.queue(span, || None);
        }
        // One batch of 4 covers part 1's two items and two of part 2's three.
        assert_eq!(
            walk(&mut q, vec![10, 11, 20, 21]),
            [
                Err(Span::Opened(1)),
                Ok((1, vec![10, 11])),
                Ok((2, vec![20, 21]))
            ]
        );
        // The next batch finishes part 2's run, passes `Closed`, then the last item.
        assert_eq!(
            walk(&mut q, vec![22, 23]),
            [Ok((2, vec![22])), Err(Span::Closed(1)), Ok((2, vec![23]))]
        );
        assert!(q.pending.is_empty());
    }

    #[test]
    fn items_ahead_of_their_spans_are_untraced_and_the_late_spans_are_paid_down() {
        let mut q = SpanQueue::default();
        assert_eq!(walk(&mut q, vec![1, 2, 3]), [Ok((UNTRACED, vec![1, 2, 3]))]);
        q.queue(Span::Items { part: 7, count: 2 }, || None);
        q.queue(Span::Items { part: 8, count: 2 }, || None);
        // The first three items' spans are paid down: one of part 8's remains.
        assert_eq!(walk(&mut q, vec![4]), [Ok((8, vec![4]))]);
    }

    #[test]
    fn part_ids_are_stable_and_never_the_untraced_marker() {
        assert_eq!(part_id("events", "a.csv"), part_id("events", "a.csv"));
        assert_ne!(part_id("events", "a.csv"), part_id("events", "b.csv"));
        assert_ne!(part_id("events", "a.csv"), part_id("other", "a.csv"));
        assert_ne!(part_id("events", "a.csv"), UNTRACED);
    }
}
