//! The UDF traits: one per kind of user-defined function.
//!
//! A trait says what a function does, not how it is called: the same `Mapper` runs
//! behind a [`MapServer`](crate::server::MapServer) on a Unix socket (inside a
//! Numaflow pod, or called by Riffle's [`MapClient`](crate::client::MapClient)), or
//! in-process inside a Riffle Dataflow. Handlers are `async` and must be `Send`; a
//! failing handler returns an error, which a server turns into a gRPC error on that
//! stream only.
//!
//! For the simple cases, plain closures do: [`map_fn`], [`batch_map_fn`],
//! [`transform_fn`], [`sink_fn`], [`side_input_fn`] and [`reduce_fn`] wrap a
//! synchronous closure into the trait.
//!
//! ```
//! use riffle_numaflow::udf::{map_fn, Mapper};
//! use riffle_numaflow::{Datum, Message};
//!
//! let upper = map_fn(|d: Datum| Ok(vec![Message::new(d.value.to_ascii_uppercase())]));
//! let out = futures_lite_block_on(upper.map(Datum::new("hi")));
//! assert_eq!(out.unwrap()[0].value, b"HI");
//! # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::future::Future;

use tokio::sync::mpsc;

use crate::datum::{
    Accumulated, Datum, Message, Offset, ReadRequest, SideInputValue, SinkResponse, SourceMessage,
    TransformMessage, Window,
};
use crate::error::HandlerResult;

/// A map UDF: one datum in, any number of messages out.
pub trait Mapper: Send + Sync + 'static {
    /// Maps one datum.
    fn map(&self, datum: Datum) -> impl Future<Output = HandlerResult<Vec<Message>>> + Send;
}

/// A map-stream UDF: one datum in, messages out one by one as they are made.
pub trait MapStreamer: Send + Sync + 'static {
    /// Maps one datum, sending each output to `out` as soon as it exists.
    fn map_stream(
        &self,
        datum: Datum,
        out: MessageSender<Message>,
    ) -> impl Future<Output = HandlerResult<()>> + Send;
}

/// A batch-map UDF: a batch of datums in, the outputs of each datum out.
pub trait BatchMapper: Send + Sync + 'static {
    /// Maps a batch; the result has one entry per input, in input order.
    fn batch_map(
        &self,
        batch: Vec<Datum>,
    ) -> impl Future<Output = HandlerResult<Vec<Vec<Message>>>> + Send;
}

/// A reduce UDF: all datums of one key in one window in, messages out.
pub trait Reducer: Send + Sync + 'static {
    /// Reduces the datums of `keys` in `window`; `datums` ends when the window closes.
    fn reduce(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
    ) -> impl Future<Output = HandlerResult<Vec<Message>>> + Send;
}

/// A reduce-stream UDF: like [`Reducer`], but sends results while the window is open.
pub trait ReduceStreamer: Send + Sync + 'static {
    /// Reduces the datums of `keys` in `window`, sending results to `out` as they exist.
    fn reduce_stream(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
        out: MessageSender<Message>,
    ) -> impl Future<Output = HandlerResult<()>> + Send;
}

/// An accumulator: an unbounded, ordered stream of one key's datums in, outputs out
/// whenever the function decides (e.g. re-ordered by event time).
pub trait Accumulator: Send + Sync + 'static {
    /// Accumulates the datums of one key until the platform closes it.
    fn accumulate(
        &self,
        datums: DatumStream,
        out: MessageSender<Accumulated>,
    ) -> impl Future<Output = HandlerResult<()>> + Send;
}

/// A source transformer: a map that may also assign a new event time.
pub trait SourceTransformer: Send + Sync + 'static {
    /// Transforms one datum.
    fn transform(
        &self,
        datum: Datum,
    ) -> impl Future<Output = HandlerResult<Vec<TransformMessage>>> + Send;
}

/// A user-defined source: reads, acknowledges and reports its backlog.
pub trait Sourcer: Send + Sync + 'static {
    /// Reads up to `request.count` messages within `request.timeout`, sending each to `out`.
    fn read(
        &self,
        request: ReadRequest,
        out: MessageSender<SourceMessage>,
    ) -> impl Future<Output = HandlerResult<()>> + Send;
    /// Acknowledges messages: they will not be read again.
    fn ack(&self, offsets: Vec<Offset>) -> impl Future<Output = HandlerResult<()>> + Send;
    /// Rejects messages: they should be read again.
    fn nack(&self, offsets: Vec<Offset>) -> impl Future<Output = HandlerResult<()>> + Send {
        let _ = offsets;
        async { Ok(()) }
    }
    /// How many messages wait to be read; `None` when unknown.
    fn pending(&self) -> impl Future<Output = HandlerResult<Option<u64>>> + Send;
    /// The partitions this source instance reads.
    fn partitions(&self) -> impl Future<Output = HandlerResult<Vec<i32>>> + Send {
        async { Ok(vec![0]) }
    }
    /// The total number of partitions, if the source knows it.
    fn total_partitions(&self) -> Option<i32> {
        None
    }
}

/// A sink: a batch of datums in, one response per datum out.
pub trait Sinker: Send + Sync + 'static {
    /// Writes a batch; answer each datum by its `id`.
    fn sink(
        &self,
        batch: Vec<Datum>,
    ) -> impl Future<Output = HandlerResult<Vec<SinkResponse>>> + Send;
}

/// A side-input retriever: called on a schedule, answers the value to broadcast.
pub trait SideInput: Send + Sync + 'static {
    /// Retrieves the current value.
    fn retrieve(&self) -> impl Future<Output = HandlerResult<SideInputValue>> + Send;
}

/// The sending half a streaming handler writes its outputs to.
#[derive(Debug)]
pub struct MessageSender<T> {
    tx: mpsc::Sender<T>,
}

impl<T: Send> MessageSender<T> {
    /// A sender and the receiver its messages arrive on.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Sends one output; fails when the caller has gone away.
    pub async fn send(&self, message: T) -> HandlerResult<()> {
        self.tx
            .send(message)
            .await
            .map_err(|_| "the output stream was closed by the caller".into())
    }
}

/// The datums of one keyed window, as they arrive.
#[derive(Debug)]
pub struct DatumStream {
    rx: mpsc::Receiver<Datum>,
}

impl DatumStream {
    /// A stream and the sender that feeds it.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Datum>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, Self { rx })
    }

    /// A stream over datums already in memory.
    pub fn from_vec(datums: Vec<Datum>) -> Self {
        let (tx, rx) = mpsc::channel(datums.len().max(1));
        for d in datums {
            let _ = tx.try_send(d);
        }
        Self { rx }
    }

    /// The next datum, or `None` once the window has closed.
    pub async fn next(&mut self) -> Option<Datum> {
        self.rx.recv().await
    }

    /// All remaining datums.
    pub async fn collect(mut self) -> Vec<Datum> {
        let mut all = Vec::new();
        while let Some(d) = self.rx.recv().await {
            all.push(d);
        }
        all
    }
}

macro_rules! closure_udf {
    ($(#[$doc:meta])* $ctor:ident, $ty:ident, $trait_:ident, $method:ident, ($($arg:ident: $argty:ty),*) -> $out:ty) => {
        $(#[$doc])*
        pub fn $ctor<F>(f: F) -> $ty<F>
        where
            F: Fn($($argty),*) -> HandlerResult<$out> + Send + Sync + 'static,
        {
            $ty(f)
        }

        #[doc = concat!("A closure used as a [`", stringify!($trait_), "`]; made by [`", stringify!($ctor), "`].")]
        #[derive(Debug, Clone, Copy)]
        pub struct $ty<F>(pub F);

        impl<F> $trait_ for $ty<F>
        where
            F: Fn($($argty),*) -> HandlerResult<$out> + Send + Sync + 'static,
        {
            fn $method(&self, $($arg: $argty),*) -> impl Future<Output = HandlerResult<$out>> + Send {
                let result = (self.0)($($arg),*);
                async move { result }
            }
        }
    };
}

closure_udf!(
    /// A map UDF from a closure.
    map_fn, MapFn, Mapper, map, (datum: Datum) -> Vec<Message>
);
closure_udf!(
    /// A batch-map UDF from a closure over the whole batch.
    batch_map_fn, BatchMapFn, BatchMapper, batch_map, (batch: Vec<Datum>) -> Vec<Vec<Message>>
);
closure_udf!(
    /// A source transformer from a closure.
    transform_fn, TransformFn, SourceTransformer, transform, (datum: Datum) -> Vec<TransformMessage>
);
closure_udf!(
    /// A sink from a closure over the whole batch.
    sink_fn, SinkFn, Sinker, sink, (batch: Vec<Datum>) -> Vec<SinkResponse>
);

/// A side-input retriever from a closure.
pub fn side_input_fn<F>(f: F) -> SideInputFn<F>
where
    F: Fn() -> HandlerResult<SideInputValue> + Send + Sync + 'static,
{
    SideInputFn(f)
}

/// A closure used as a [`SideInput`]; made by [`side_input_fn`].
#[derive(Debug, Clone, Copy)]
pub struct SideInputFn<F>(pub F);

impl<F> SideInput for SideInputFn<F>
where
    F: Fn() -> HandlerResult<SideInputValue> + Send + Sync + 'static,
{
    fn retrieve(&self) -> impl Future<Output = HandlerResult<SideInputValue>> + Send {
        let result = (self.0)();
        async move { result }
    }
}

/// A reduce UDF from a closure over a window's keys, window and collected datums.
pub fn reduce_fn<F>(f: F) -> ReduceFn<F>
where
    F: Fn(&[String], &Window, Vec<Datum>) -> HandlerResult<Vec<Message>> + Send + Sync + 'static,
{
    ReduceFn(f)
}

/// A closure used as a [`Reducer`]; made by [`reduce_fn`].
#[derive(Debug, Clone, Copy)]
pub struct ReduceFn<F>(pub F);

impl<F> Reducer for ReduceFn<F>
where
    F: Fn(&[String], &Window, Vec<Datum>) -> HandlerResult<Vec<Message>> + Send + Sync + 'static,
{
    async fn reduce(
        &self,
        keys: Vec<String>,
        window: Window,
        datums: DatumStream,
    ) -> HandlerResult<Vec<Message>> {
        let all = datums.collect().await;
        (self.0)(&keys, &window, all)
    }
}

impl<T: Mapper> Mapper for std::sync::Arc<T> {
    fn map(&self, datum: Datum) -> impl Future<Output = HandlerResult<Vec<Message>>> + Send {
        (**self).map(datum)
    }
}
