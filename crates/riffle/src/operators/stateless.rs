//! Stateless operators: each item on its own.

use std::fmt::Display;
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::{Site, each_ref};
use crate::build::BuildCtx;
use crate::data::Data;
use crate::dataflow::{AnyStream, Stream, stream_key};
use crate::error::{Result, RiffleError};
use crate::origin::{merge_traced, stateless_operator};
use crate::sources::Numbered;

impl<T: Data> Stream<T> {
    /// Transforms every item with `f`.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a".to_string(), "b".to_string()]))?
    ///     .map("upper", |s: String| s.to_uppercase())?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), ["A", "B"]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn map<U: Data>(
        &self,
        step_id: &str,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Result<Stream<U>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "map", move || {
            let f = f.clone();
            move |_: &Site, _, batch: &mut Vec<T>, out: &mut Vec<U>| {
                out.extend(batch.drain(..).map(&*f));
                Ok(())
            }
        })
    }

    /// Transforms every item with a function that may fail; an error stops the run
    /// with a message naming the step, the epoch and the error.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::<u32>::new();
    /// flow.input("inp", TestingSource::new(vec!["1".to_string(), "x".to_string()]))?
    ///     .try_map("parse", |s: String| s.parse::<u32>())?
    ///     .output("out", out.clone())?;
    /// let err = riffle::run_main(&flow).unwrap_err();
    /// assert!(err.to_string().contains("\"parse\""), "{err}");
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn try_map<U: Data, E: Display>(
        &self,
        step_id: &str,
        f: impl Fn(T) -> std::result::Result<U, E> + Send + Sync + 'static,
    ) -> Result<Stream<U>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "try_map", move || {
            let f = f.clone();
            move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<U>| {
                for item in batch.drain(..) {
                    match f(item) {
                        Ok(u) => out.push(u),
                        Err(e) => return Err(site.error_on::<()>(epoch, None, e.to_string())),
                    }
                }
                Ok(())
            }
        })
    }

    /// Parses the value of each [`Numbered`] item (a line with its file and line
    /// number, from a [`numbered`](crate::sources::LineSource::numbered) file
    /// source) with `f`; an error stops the run naming the step, the file and the
    /// line, as a bad line in the source itself would. See
    /// [`LineSource::numbered`](crate::sources::LineSource::numbered) for an
    /// example.
    pub fn parse<V, U: Data, E: Display>(
        &self,
        step_id: &str,
        f: impl Fn(V) -> std::result::Result<U, E> + Send + Sync + 'static,
    ) -> Result<Stream<U>>
    where
        T: Into<Numbered<V>>,
    {
        let f = Arc::new(f);
        self.batch_step(step_id, "parse", move || {
            let f = f.clone();
            move |site: &Site, _epoch, batch: &mut Vec<T>, out: &mut Vec<U>| {
                for item in batch.drain(..) {
                    let Numbered { file, line, value } = item.into();
                    match f(value) {
                        Ok(u) => out.push(u),
                        Err(e) => {
                            return Err(RiffleError::BadInput {
                                step_id: site.step_id.to_string(),
                                path: file.into(),
                                line,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Ok(())
            }
        })
    }

    /// Keeps the items for which `predicate` is true.
    pub fn filter(
        &self,
        step_id: &str,
        predicate: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Result<Stream<T>> {
        let predicate = Arc::new(predicate);
        self.batch_step(step_id, "filter", move || {
            let predicate = predicate.clone();
            let mut keep: Vec<bool> = Vec::new();
            move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<T>| {
                keep.clear();
                each_ref(site, epoch, batch, &mut keep, |x| predicate(x))?;
                let mut flags = keep.iter();
                out.extend(batch.drain(..).filter(|_| *flags.next().unwrap_or(&false)));
                Ok(())
            }
        })
    }

    /// Transforms every item into zero or one item.
    pub fn filter_map<U: Data>(
        &self,
        step_id: &str,
        f: impl Fn(T) -> Option<U> + Send + Sync + 'static,
    ) -> Result<Stream<U>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "filter_map", move || {
            let f = f.clone();
            move |_: &Site, _, batch: &mut Vec<T>, out: &mut Vec<U>| {
                out.extend(batch.drain(..).filter_map(&*f));
                Ok(())
            }
        })
    }

    /// Transforms every item into any number of items.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a b".to_string(), "c".to_string()]))?
    ///     .flat_map("split", |line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), ["a", "b", "c"]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn flat_map<U: Data, I>(
        &self,
        step_id: &str,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Result<Stream<U>>
    where
        I: IntoIterator<Item = U>,
    {
        let f = Arc::new(f);
        self.batch_step(step_id, "flat_map", move || {
            let f = f.clone();
            move |_: &Site, _, batch: &mut Vec<T>, out: &mut Vec<U>| {
                for item in batch.drain(..) {
                    out.extend(f(item));
                }
                Ok(())
            }
        })
    }

    /// Transforms every item into any number of items, which `f` pushes into the
    /// step's output through [`Emit`] (as Flink's `Collector`): no collection per
    /// item, where [`Stream::flat_map`]'s `f` returns one (splitting a line into
    /// words with `collect::<Vec<_>>()` allocates a `Vec` for every line, and grows
    /// it twice for ten words). Use it where a step splits many items.
    ///
    /// ```
    /// use riffle::{Dataflow, operators::stateless::Emit, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["a b".to_string(), "c".to_string()]))?
    ///     .flat_map_into("split", |line: String, words: &mut Emit<String>| {
    ///         words.extend(line.split_whitespace().map(str::to_string))
    ///     })?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take_sorted(), ["a", "b", "c"]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn flat_map_into<U: Data>(
        &self,
        step_id: &str,
        f: impl Fn(T, &mut Emit<'_, U>) + Send + Sync + 'static,
    ) -> Result<Stream<U>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "flat_map", move || {
            let f = f.clone();
            move |_: &Site, _, batch: &mut Vec<T>, out: &mut Vec<U>| {
                let mut emit = Emit(out);
                for item in batch.drain(..) {
                    f(item, &mut emit);
                }
                Ok(())
            }
        })
    }

    /// Transforms a whole batch of items at once into any number of items (bytewax's
    /// `flat_map_batch`): for work that costs per call rather than per item, such as
    /// a request to a service. An epoch's items come in one or more batches, in
    /// order; a batch never mixes epochs.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let out = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![1u32, 2, 3]))?
    ///     .flat_map_batch("sum", |batch: Vec<u32>| [batch.iter().sum::<u32>()])?
    ///     .output("out", out.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(out.take().iter().sum::<u32>(), 6);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn flat_map_batch<U: Data, I>(
        &self,
        step_id: &str,
        f: impl Fn(Vec<T>) -> I + Send + Sync + 'static,
    ) -> Result<Stream<U>>
    where
        I: IntoIterator<Item = U>,
    {
        self.try_flat_map_batch(step_id, move |batch| {
            Ok::<_, std::convert::Infallible>(f(batch))
        })
    }

    /// [`Stream::flat_map_batch`] with a function that may fail: an error stops the
    /// run naming the step and the epoch.
    pub fn try_flat_map_batch<U: Data, I, E: Display>(
        &self,
        step_id: &str,
        f: impl Fn(Vec<T>) -> std::result::Result<I, E> + Send + Sync + 'static,
    ) -> Result<Stream<U>>
    where
        I: IntoIterator<Item = U>,
    {
        let f = Arc::new(f);
        self.batch_step(step_id, "flat_map_batch", move || {
            let f = f.clone();
            move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<U>| match f(std::mem::take(
                batch,
            )) {
                Ok(items) => {
                    out.extend(items);
                    Ok(())
                }
                Err(e) => Err(site.error_on::<()>(epoch, None, e.to_string())),
            }
        })
    }

    /// Calls `f` with every item, which passes on unchanged.
    pub fn inspect(
        &self,
        step_id: &str,
        f: impl Fn(&T) + Send + Sync + 'static,
    ) -> Result<Stream<T>> {
        self.inspect_debug(step_id, move |_, item, _, _| f(item))
    }

    /// Calls `f` with every item's epoch and the item, which passes on unchanged.
    pub fn inspect_epoch(
        &self,
        step_id: &str,
        f: impl Fn(&u64, &T) + Send + Sync + 'static,
    ) -> Result<Stream<T>> {
        self.inspect_debug(step_id, move |_, item, epoch, _| f(&epoch, item))
    }

    /// Calls `f(step_id, item, epoch, worker_index)` with every item, which passes on
    /// unchanged.
    pub fn inspect_debug(
        &self,
        step_id: &str,
        f: impl Fn(&str, &T, u64, usize) + Send + Sync + 'static,
    ) -> Result<Stream<T>> {
        let f = Arc::new(f);
        self.batch_step(step_id, "inspect", move || {
            let f = f.clone();
            let mut units: Vec<()> = Vec::new();
            move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<T>| {
                units.clear();
                each_ref(site, epoch, batch, &mut units, |x| {
                    f(&site.step_id, x, epoch, site.worker)
                })?;
                if out.is_empty() {
                    std::mem::swap(batch, out);
                } else {
                    out.append(batch);
                }
                Ok(())
            }
        })
    }

    /// Pairs every item with a key computed from it: `(key, item)`.
    pub fn key_on<K: crate::Key>(
        &self,
        step_id: &str,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<Stream<(K, T)>> {
        let key = Arc::new(key);
        self.batch_step(step_id, "key_on", move || {
            let key = key.clone();
            let mut keys: Vec<K> = Vec::new();
            move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<(K, T)>| {
                keys.clear();
                each_ref(site, epoch, batch, &mut keys, |x| key(x))?;
                out.extend(keys.drain(..).zip(batch.drain(..)));
                Ok(())
            }
        })
    }

    /// Splits the stream in two by `predicate`: `(trues, falses)`. The predicate is
    /// called once per item.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
    /// let flow = Dataflow::new("f");
    /// let (evens, odds) = (TestingSink::new(), TestingSink::new());
    /// let (e, o) = flow.input("inp", TestingSource::new(vec![1, 2, 3, 4]))?
    ///     .branch("even", |x: &i32| x % 2 == 0)?;
    /// e.output("evens", evens.clone())?;
    /// o.output("odds", odds.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!((evens.take_sorted(), odds.take_sorted()), (vec![2, 4], vec![1, 3]));
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn branch(
        &self,
        step_id: &str,
        predicate: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Result<(Stream<T>, Stream<T>)> {
        let predicate = Arc::new(predicate);
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            "branch",
            &[self],
            &["trues", "falses"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.traced::<T>(&up_key)?;
                let predicate = predicate.clone();
                let mut flags: Vec<bool> = Vec::new();
                let tag =
                    move |site: &Site, epoch, batch: &mut Vec<T>, out: &mut Vec<(bool, T)>| {
                        flags.clear();
                        each_ref(site, epoch, batch, &mut flags, |x| predicate(x))?;
                        out.extend(flags.drain(..).zip(batch.drain(..)));
                        Ok(())
                    };
                let tagged = stateless_operator(ctx, &id, input, tag);
                for (port, wanted) in [("trues", true), ("falses", false)] {
                    let pick = move |_: &Site, _, batch: &mut Vec<(bool, T)>, out: &mut Vec<T>| {
                        out.extend(
                            batch
                                .drain(..)
                                .filter(|(b, _)| *b == wanted)
                                .map(|(_, x)| x),
                        );
                        Ok(())
                    };
                    let side =
                        stateless_operator(ctx, &format!("{id}.{port}"), tagged.clone(), pick);
                    ctx.insert_traced(stream_key(&id, port), side);
                }
                Ok(())
            }),
        )?;
        Ok((
            self.flow.stream_of(step_id, "trues"),
            self.flow.stream_of(step_id, "falses"),
        ))
    }

    /// One stream with the items of this stream and of `others`.
    pub fn merge(&self, step_id: &str, others: &[&Stream<T>]) -> Result<Stream<T>> {
        let mut ups: Vec<&dyn AnyStream> = vec![self];
        ups.extend(others.iter().map(|s| *s as &dyn AnyStream));
        let keys: Vec<String> = std::iter::once(self.key())
            .chain(others.iter().map(|s| s.key()))
            .collect();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            "merge",
            &ups,
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let inputs = keys
                    .iter()
                    .map(|k| ctx.traced::<T>(k))
                    .collect::<Result<Vec<_>>>()?;
                let merged = merge_traced(ctx, &id, inputs);
                ctx.insert_traced(stream_key(&id, "down"), merged);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }

    /// Spreads items evenly over all workers (round robin per worker), e.g. after a
    /// source with fewer partitions than workers.
    pub fn redistribute(&self, step_id: &str) -> Result<Stream<T>> {
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            "redistribute",
            &[self],
            &["down"],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.stream::<T>(&up_key)?;
                let mut next = ctx.worker.index as u64;
                let pact = Exchange::new(move |_: &T| {
                    next = next.wrapping_add(1);
                    next
                });
                let out = input.unary(pact, &id, |_, _| {
                    |input, output| {
                        input.for_each(|time, data| {
                            output.session(&time).give_container(data);
                        });
                    }
                });
                ctx.insert(stream_key(&id, "down"), out);
                Ok(())
            }),
        )?;
        Ok(self.flow.stream_of(step_id, "down"))
    }
}

/// Where a [`Stream::flat_map_into`] function puts the items it makes: they go on
/// in the order pushed, after those of the items before.
pub struct Emit<'a, U>(&'a mut Vec<U>);

impl<U> Emit<'_, U> {
    /// Passes `item` on.
    #[inline]
    pub fn push(&mut self, item: U) {
        self.0.push(item);
    }
}

impl<U> Extend<U> for Emit<'_, U> {
    #[inline]
    fn extend<I: IntoIterator<Item = U>>(&mut self, items: I) {
        self.0.extend(items);
    }
}
