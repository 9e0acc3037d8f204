//! UDFs as steps of a Riffle [`Dataflow`]: in-process, or over the socket.
//!
//! [`UdfStreamExt`] adds methods to `Stream<Datum>`:
//!
//! - `udf_map(step_id, mapper)`, `udf_batch_map`, `udf_transform`: call a UDF trait
//!   object in-process, item by item (or batch by batch), on the worker that holds
//!   the item. Messages tagged [`DROP`](crate::DROP) are dropped, as Numaflow does.
//! - `udf_call_map(step_id, options, batch_size)`: call a map, map-stream or batch-map
//!   server of any language over its Unix socket (`udf_call_batch_map` insists on a
//!   batch-map server, `udf_call_transform` calls a source transformer). Items are
//!   grouped into batches of `batch_size` (a batch is also sent when its epoch
//!   closes), each calling worker gets its own connection, a server that restarted is
//!   reconnected and the batch resent, and a failed call stops the run with an error
//!   that names the step, the socket and the UDF kind.
//! - `udf_reduce(step_id, clock, windower, reducer)` and
//!   `udf_call_reduce(step_id, clock, windower, options)`: a reducer over windows.
//!   Datums are keyed by their keys and collected per window (any Riffle
//!   [`Windower`]); when a window closes the reducer is called once per key with the
//!   window's interval and datums, in-process or on a reduce server. Datums that
//!   arrive after their windows closed come out on [`Reduced::late`]. See [`reduce`].
//! - `udf_reduce_stream(step_id, clock, windower, streamer)` and
//!   `udf_call_reduce_stream(step_id, clock, windower, options)`: the same windows
//!   with a reduce-stream UDF; every message it sends for a key and window goes down.
//! - `udf_accumulate(step_id, clock, timeout, accumulator)` and
//!   `udf_call_accumulate(step_id, clock, timeout, options)`: an accumulator per key,
//!   fed the key's datums in event-time order until the key has been quiet for
//!   `timeout`, as Numaflow's accumulator window; its output datums (with their
//!   tags) come out on [`Accumulation::down`]. See [`reduce`].
//! - `udf_sink(step_id, sinker)` and `udf_call_sink(step_id, options)`: a sink UDF as
//!   the flow's sink; a datum the sink fails (or sends to fallback) stops the run.
//!   `udf_sink_with_fallback(step_id, primary, fallback)` writes the datums the
//!   primary sends to fallback to a second sink; each is a [`SinkUdf`], in-process or
//!   a server. See [`sink`].
//!
//! [`UdfFlowExt`] adds to a [`Dataflow`]:
//!
//! - `udf_source(step_id, sourcer, batch_size)` and `udf_call_source(step_id,
//!   options, batch_size)`: a user-defined source read on worker 0, each batch
//!   acknowledged once it entered the flow. Such a source ends when a read returns
//!   nothing and the source reports no pending messages.
//! - `udf_side_input(step_id, side_input, refresh)` and `udf_call_side_input(step_id,
//!   options, refresh)`: a side input retrieved when a run starts and every `refresh`
//!   after, by a background thread per process; the returned [`SideInputHandle`]
//!   holds the latest value for steps to read. See [`side_input`].
//!
//! ```
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//! use riffle_numaflow::dataflow::UdfStreamExt;
//! use riffle_numaflow::udf::map_fn;
//! use riffle_numaflow::{Datum, Message};
//!
//! let flow = Dataflow::new("udf");
//! let out = TestingSink::new();
//! flow.input("words", TestingSource::new(vec![Datum::new("a"), Datum::new("skip")]))?
//!     .udf_map("upper", map_fn(|d: Datum| {
//!         if d.value == b"skip" { return Ok(vec![Message::to_drop()]) }
//!         Ok(vec![Message::new(d.value.to_ascii_uppercase())])
//!     }))?
//!     .map("value", |m: Message| String::from_utf8_lossy(&m.value).to_string())?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), ["A"]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! A reducer sees each key's window once it closes, here windows of 10 s of event time:
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use riffle::{Dataflow, sources::TestingSource, sinks::TestingSink};
//! use riffle::window::TumblingWindower;
//! use riffle_numaflow::dataflow::{UdfStreamExt, event_time};
//! use riffle_numaflow::udf::reduce_fn;
//! use riffle_numaflow::{Datum, Message, Window};
//!
//! let click = |user: &str, s: u64| {
//!     Datum::new("1").with_keys([user]).with_event_time(UNIX_EPOCH + Duration::from_secs(s))
//! };
//! let flow = Dataflow::new("clicks");
//! let out = TestingSink::new();
//! let reduced = flow
//!     .input("clicks", TestingSource::new(vec![click("ann", 1), click("ann", 4), click("bo", 12)]))?
//!     .udf_reduce("count", event_time(Duration::from_secs(1)),
//!         TumblingWindower::new(Duration::from_secs(10), 0),
//!         reduce_fn(|keys: &[String], w: &Window, datums: Vec<Datum>| {
//!             let from = w.start.duration_since(UNIX_EPOCH).unwrap().as_secs();
//!             Ok(vec![Message::new(format!("{} {from}s: {}", keys[0], datums.len()))])
//!         }))?;
//! reduced.down
//!     .map("text", |m: Message| String::from_utf8_lossy(&m.value).to_string())?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take_sorted(), ["ann 0s: 2", "bo 10s: 1"]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

mod map;
mod pool;
pub mod reduce;
pub mod side_input;
pub mod sink;
mod source;

use std::time::Duration;

use riffle::window::{Clock, Windower};
use riffle::{Dataflow, RiffleError, Stream};

pub use reduce::{Accumulation, Reduced, event_time};
pub use side_input::SideInputHandle;
pub use sink::{OnFailure, SinkRetry, SinkUdf};

use crate::client::ClientOptions;
use crate::datum::{Datum, Message, SourceMessage};
use crate::udf::{
    Accumulator, BatchMapper, MapStreamer, Mapper, ReduceStreamer, Reducer, SideInput, Sinker,
    SourceTransformer, Sourcer,
};

/// UDF steps on a stream of [`Datum`]s.
pub trait UdfStreamExt {
    /// Maps every datum in-process with `mapper`; dropped messages do not pass.
    fn udf_map<M: Mapper>(&self, step_id: &str, mapper: M) -> riffle::Result<Stream<Message>>;

    /// Maps every datum in-process with a map-stream UDF: the messages it sends for
    /// a datum, in order, drops left out.
    ///
    /// ```
    /// use riffle::{Dataflow, sources::TestingSource};
    /// use riffle_numaflow::dataflow::UdfStreamExt;
    /// use riffle_numaflow::udf::{MapStreamer, MessageSender};
    /// use riffle_numaflow::{Datum, HandlerResult, Message};
    ///
    /// struct Words;
    /// impl MapStreamer for Words {
    ///     async fn map_stream(&self, d: Datum, out: MessageSender<Message>) -> HandlerResult<()> {
    ///         for w in String::from_utf8_lossy(&d.value).split(' ') {
    ///             out.send(Message::new(w.to_string())).await?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let flow = Dataflow::new("words");
    /// let out = flow
    ///     .input("in", TestingSource::new(vec![Datum::new("a b c")]))?
    ///     .udf_map_stream("split", Words)?
    ///     .capture("out")?;
    /// riffle::run_main(&flow)?;
    /// let words: Vec<Vec<u8>> = out.take().into_iter().map(|(_, m)| m.value).collect();
    /// assert_eq!(words, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    fn udf_map_stream<M: MapStreamer>(
        &self,
        step_id: &str,
        mapper: M,
    ) -> riffle::Result<Stream<Message>>;

    /// Maps batches of up to `batch_size` datums in-process with `mapper`.
    fn udf_batch_map<B: BatchMapper>(
        &self,
        step_id: &str,
        mapper: B,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>>;

    /// Transforms every datum in-process. An output datum carries the new keys, value
    /// and event time, the input's watermark and headers, and its id (numbered `-0`,
    /// `-1`, ... when one input made several outputs).
    fn udf_transform<T: SourceTransformer>(
        &self,
        step_id: &str,
        transformer: T,
    ) -> riffle::Result<Stream<Datum>>;

    /// Calls a map-family UDF server over its socket, in batches of `batch_size`.
    fn udf_call_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>>;

    /// Reduces each key's datums per window in-process: `reducer` is called once per
    /// key and window when the window closes, with the window's interval; see
    /// [`Reduced`].
    fn udf_reduce<R: Reducer, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        reducer: R,
    ) -> riffle::Result<Reduced>;

    /// Reduces each key's datums per window on a reduce UDF server: one call per key
    /// and window when the window closes, on a connection of the step's pool.
    fn udf_call_reduce<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        options: ClientOptions,
    ) -> riffle::Result<Reduced>;

    /// Like [`udf_reduce`](Self::udf_reduce) with a reduce-stream UDF: `streamer` is
    /// called once per key and window when the window closes, and every message it
    /// sends goes down, in the order sent.
    fn udf_reduce_stream<R: ReduceStreamer, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        streamer: R,
    ) -> riffle::Result<Reduced>;

    /// Like [`udf_call_reduce`](Self::udf_call_reduce) on a reduce-stream UDF server
    /// (its server info is `reducestreamer-server-info`).
    fn udf_call_reduce_stream<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        options: ClientOptions,
    ) -> riffle::Result<Reduced>;

    /// Accumulates each key's datums in-process: one accumulator stream per key,
    /// datums in event-time order, closed once the key has seen no datum for
    /// `timeout` of `clock`'s time (or the input ended); see [`reduce`] for the
    /// mapping of Numaflow's accumulator.
    fn udf_accumulate<A: Accumulator>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        timeout: Duration,
        accumulator: A,
    ) -> riffle::Result<Accumulation>;

    /// Like [`udf_accumulate`](Self::udf_accumulate) on an accumulator UDF server:
    /// one call per key's stream, on a connection of the step's pool.
    fn udf_call_accumulate(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        timeout: Duration,
        options: ClientOptions,
    ) -> riffle::Result<Accumulation>;

    /// Calls a batch-map UDF server over its socket, in batches of `batch_size`: like
    /// [`udf_call_map`](Self::udf_call_map), but the server must announce batch-map
    /// mode in its server info (or the options skip the server info).
    fn udf_call_batch_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>>;

    /// Calls a source-transform UDF server over its socket, in batches of
    /// `batch_size`; the output datums are made as by
    /// [`udf_transform`](Self::udf_transform).
    fn udf_call_transform(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Datum>>;

    /// Writes every datum with `sinker`, in-process.
    fn udf_sink<S: Sinker>(&self, step_id: &str, sinker: S) -> riffle::Result<()>;

    /// Writes every datum to a sink UDF server over its socket.
    fn udf_call_sink(&self, step_id: &str, options: ClientOptions) -> riffle::Result<()>;

    /// Writes every datum to `sink`, with its retry strategy and on-success sink
    /// (see [`SinkUdf::with_retry`], [`SinkUdf::with_on_success`]) and no fallback.
    fn udf_sink_with(&self, step_id: &str, sink: SinkUdf) -> riffle::Result<()>;

    /// Writes every datum to `primary`; the datums it answers with fallback are
    /// written to `fallback` instead of failing the run. Each may be in-process
    /// ([`SinkUdf::new`]) or a server ([`SinkUdf::call`]); see [`SinkUdf`].
    fn udf_sink_with_fallback(
        &self,
        step_id: &str,
        primary: SinkUdf,
        fallback: SinkUdf,
    ) -> riffle::Result<()>;
}

/// UDF sources of a [`Dataflow`].
pub trait UdfFlowExt {
    /// Reads a [`Sourcer`] in-process, `batch_size` messages per poll.
    fn udf_source<S: Sourcer>(
        &self,
        step_id: &str,
        sourcer: S,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>>;

    /// Reads a source UDF server over its socket, `batch_size` messages per poll.
    fn udf_call_source(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>>;

    /// Adds a side-input step that calls `side_input` in-process when a run starts
    /// and every `refresh` after; the returned handle holds the latest value
    /// broadcast, for steps to read (see [`SideInputHandle`]).
    fn udf_side_input<S: SideInput>(
        &self,
        step_id: &str,
        side_input: S,
        refresh: Duration,
    ) -> riffle::Result<SideInputHandle>;

    /// Like [`udf_side_input`](Self::udf_side_input), retrieving from a side-input
    /// UDF server over its socket.
    fn udf_call_side_input(
        &self,
        step_id: &str,
        options: ClientOptions,
        refresh: Duration,
    ) -> riffle::Result<SideInputHandle>;
}

fn step_error(step_id: &str, e: impl std::fmt::Display) -> RiffleError {
    RiffleError::connector(step_id, e)
}

fn keep(messages: Vec<Message>) -> impl Iterator<Item = Message> {
    messages.into_iter().filter(|m| !m.is_drop())
}

impl UdfStreamExt for Stream<Datum> {
    fn udf_map<M: Mapper>(&self, step_id: &str, mapper: M) -> riffle::Result<Stream<Message>> {
        map::udf_map(self, step_id, mapper)
    }

    fn udf_map_stream<M: MapStreamer>(
        &self,
        step_id: &str,
        mapper: M,
    ) -> riffle::Result<Stream<Message>> {
        map::udf_map_stream(self, step_id, mapper)
    }

    fn udf_batch_map<B: BatchMapper>(
        &self,
        step_id: &str,
        mapper: B,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>> {
        map::udf_batch_map(self, step_id, mapper, batch_size)
    }

    fn udf_transform<T: SourceTransformer>(
        &self,
        step_id: &str,
        transformer: T,
    ) -> riffle::Result<Stream<Datum>> {
        map::udf_transform(self, step_id, transformer)
    }

    fn udf_call_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>> {
        map::udf_call_map(self, step_id, options, batch_size)
    }

    fn udf_call_batch_map(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Message>> {
        map::udf_call_batch_map(self, step_id, options, batch_size)
    }

    fn udf_call_transform(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: usize,
    ) -> riffle::Result<Stream<Datum>> {
        map::udf_call_transform(self, step_id, options, batch_size)
    }

    fn udf_reduce<R: Reducer, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        reducer: R,
    ) -> riffle::Result<Reduced> {
        reduce::udf_reduce(self, step_id, clock, windower, reducer)
    }

    fn udf_call_reduce<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        options: ClientOptions,
    ) -> riffle::Result<Reduced> {
        reduce::udf_call_reduce(self, step_id, clock, windower, options)
    }

    fn udf_reduce_stream<R: ReduceStreamer, W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        streamer: R,
    ) -> riffle::Result<Reduced> {
        reduce::udf_reduce_stream(self, step_id, clock, windower, streamer)
    }

    fn udf_call_reduce_stream<W: Windower>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        windower: W,
        options: ClientOptions,
    ) -> riffle::Result<Reduced> {
        reduce::udf_call_reduce_stream(self, step_id, clock, windower, options)
    }

    fn udf_accumulate<A: Accumulator>(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        timeout: Duration,
        accumulator: A,
    ) -> riffle::Result<Accumulation> {
        reduce::udf_accumulate(self, step_id, clock, timeout, accumulator)
    }

    fn udf_call_accumulate(
        &self,
        step_id: &str,
        clock: Clock<Datum>,
        timeout: Duration,
        options: ClientOptions,
    ) -> riffle::Result<Accumulation> {
        reduce::udf_call_accumulate(self, step_id, clock, timeout, options)
    }

    fn udf_sink<S: Sinker>(&self, step_id: &str, sinker: S) -> riffle::Result<()> {
        sink::udf_sink_to(self, step_id, SinkUdf::new(sinker), None)
    }

    fn udf_call_sink(&self, step_id: &str, options: ClientOptions) -> riffle::Result<()> {
        sink::udf_sink_to(self, step_id, SinkUdf::call(options), None)
    }

    fn udf_sink_with(&self, step_id: &str, sink: SinkUdf) -> riffle::Result<()> {
        sink::udf_sink_to(self, step_id, sink, None)
    }

    fn udf_sink_with_fallback(
        &self,
        step_id: &str,
        primary: SinkUdf,
        fallback: SinkUdf,
    ) -> riffle::Result<()> {
        sink::udf_sink_to(self, step_id, primary, Some(fallback))
    }
}

impl UdfFlowExt for Dataflow {
    fn udf_source<S: Sourcer>(
        &self,
        step_id: &str,
        sourcer: S,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>> {
        source::udf_source(self, step_id, sourcer, batch_size)
    }

    fn udf_call_source(
        &self,
        step_id: &str,
        options: ClientOptions,
        batch_size: u64,
    ) -> riffle::Result<Stream<SourceMessage>> {
        source::udf_call_source(self, step_id, options, batch_size)
    }

    fn udf_side_input<S: SideInput>(
        &self,
        step_id: &str,
        side_input: S,
        refresh: Duration,
    ) -> riffle::Result<SideInputHandle> {
        side_input::udf_side_input(self, step_id, side_input, refresh)
    }

    fn udf_call_side_input(
        &self,
        step_id: &str,
        options: ClientOptions,
        refresh: Duration,
    ) -> riffle::Result<SideInputHandle> {
        side_input::udf_call_side_input(self, step_id, options, refresh)
    }
}
