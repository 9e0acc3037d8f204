//! The operators, as methods on [`crate::Stream`].
//!
//! Every operator takes a step id first (unique in the flow) and returns the stream
//! it produces. They keep bytewax's names, so a bytewax user finds them where they
//! expect.
//!
//! **Stateless** ([`stateless`]): `map`, `try_map`, `filter`, `filter_map`,
//! `flat_map`, `flat_map_into`, `flat_map_batch`, `inspect`, `inspect_epoch`,
//! `inspect_debug`, `key_on`, `branch`, `merge`, `redistribute`, `capture` (see
//! [`crate::testing`]). Items travel in batches: each operator transforms a whole
//! batch in one call, so a chain of them costs a few passes over memory and no
//! allocation per item beyond what the user's function does.
//!
//! **Keyed** ([`keyed`]), on streams of `(key, value)`: `map_value`, `reduce`,
//! `reduce_epoch`, `reduce_epoch_local`, `stateful_map`, `fold_final`,
//! `count_final`, `collect`; and `count_final_each`, on any stream, which counts
//! the keys a function finds in each item. Items are exchanged so that every key
//! lives on exactly one worker ([`crate::exchange`]). `count_final`,
//! `count_final_each`, `fold_final` and `reduce_epoch` first aggregate on the worker
//! that holds the item and exchange only the partial results, one per key and
//! worker.
//!
//! **Per-key logic** ([`stateful`]): `stateful` runs an object of the user's
//! per key, with a timer of its own and a call at the end of the stream.
//!
//! **Joins** ([`join`]): `join`, `join_running` and `join_all` bring the values of
//! two or more keyed streams together per key, emitting when every side is there,
//! on every value, or at the end.

pub mod join;
pub mod keyed;
pub mod stateful;
pub mod stateless;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

use crate::build::{BuildCtx, TStream};
use crate::data::Data;
use crate::dataflow::{Stream, stream_key};
use crate::error::{Result, RiffleError};
use crate::origin::stateless_operator;
use crate::run::panic_message;

/// Where a batch is being processed: for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub step_id: Arc<str>,
    pub worker: usize,
}

impl Site {
    /// An error for a panic on `item` at `epoch`.
    pub fn panic_on<T: std::fmt::Debug>(
        &self,
        epoch: u64,
        item: Option<&T>,
        payload: Box<dyn std::any::Any + Send>,
    ) -> RiffleError {
        RiffleError::UserPanic {
            step_id: self.step_id.to_string(),
            worker: self.worker,
            context: context(epoch, item),
            message: panic_message(&payload),
        }
    }

    /// An error for a user error on `item` at `epoch`.
    pub fn error_on<T: std::fmt::Debug>(
        &self,
        epoch: u64,
        item: Option<&T>,
        message: String,
    ) -> RiffleError {
        RiffleError::UserError {
            step_id: self.step_id.to_string(),
            worker: self.worker,
            context: context(epoch, item),
            message,
        }
    }
}

fn context<T: std::fmt::Debug>(epoch: u64, item: Option<&T>) -> String {
    match item {
        Some(item) => {
            let mut text = format!("{item:?}");
            if text.len() > 300 {
                let mut cut = 300;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            format!(" at epoch {epoch} on item {text}")
        }
        None => format!(" at epoch {epoch}"),
    }
}

/// Runs `f` over each item of `batch` by reference; on a panic, the error names the
/// item it panicked on (the batch is still intact).
pub(crate) fn each_ref<T: std::fmt::Debug, R>(
    site: &Site,
    epoch: u64,
    batch: &[T],
    out: &mut Vec<R>,
    mut f: impl FnMut(&T) -> R,
) -> Result<()> {
    let mut pos = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        for item in batch {
            out.push(f(item));
            pos += 1;
        }
    }));
    result.map_err(|payload| site.panic_on(epoch, batch.get(pos), payload))
}

impl<T: Data> Stream<T> {
    /// Adds a one-input, one-output step whose operator applies `make()`'s logic to
    /// each batch: `logic(site, epoch, input_batch, output_batch)`. When the input
    /// carries origins ([`crate::origin`]), the logic sees each batch in runs from
    /// one source partition and the output carries origins too.
    pub(crate) fn batch_step<U, M, L>(
        &self,
        step_id: &str,
        kind: &str,
        make: M,
    ) -> Result<Stream<U>>
    where
        U: Data,
        M: Fn() -> L + Send + Sync + 'static,
        L: FnMut(&Site, u64, &mut Vec<T>, &mut Vec<U>) -> Result<()> + 'static,
    {
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            kind,
            &[self],
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.traced::<T>(&up_key)?;
                let output = stateless_operator(ctx, &id, input, make());
                ctx.insert_traced(stream_key(&id, "down"), output);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }
}

/// The timely operator behind [`Stream::batch_step`].
pub(crate) fn batch_operator<'s, T: Data, U: Data>(
    ctx: &BuildCtx<'s>,
    step_id: &str,
    input: TStream<'s, T>,
    mut logic: impl FnMut(&Site, u64, &mut Vec<T>, &mut Vec<U>) -> Result<()> + 'static,
) -> TStream<'s, U> {
    let shared = ctx.shared.clone();
    let site = Site {
        step_id: step_id.into(),
        worker: ctx.worker.index,
    };
    input.unary(Pipeline, step_id, move |_cap, _info| {
        let mut out: Vec<U> = Vec::new();
        move |input, output| {
            input.for_each(|time, data| {
                if shared.aborted() {
                    data.clear();
                    return;
                }
                let epoch = time.least().copied().unwrap_or_default();
                let result = catch_unwind(AssertUnwindSafe(|| logic(&site, epoch, data, &mut out)));
                match result {
                    Ok(Ok(())) => {
                        if !out.is_empty() {
                            // Sent on in containers of timely's bounded size, and `out`
                            // keeps its capacity: one buffer as large as the batch's
                            // output, grown and freed per batch, is what a general
                            // allocator handles worst.
                            output.session(&time).give_iterator(out.drain(..));
                        }
                    }
                    Ok(Err(e)) => shared.fail(e),
                    Err(payload) => shared.fail(site.panic_on::<()>(epoch, None, payload)),
                }
                data.clear();
            });
        }
    })
}
