//! Reducers over windows: `udf_reduce` (in-process) and `udf_call_reduce` (a reduce
//! server over its socket); the same for reduce-stream UDFs (`udf_reduce_stream`,
//! `udf_call_reduce_stream`) and accumulators (`udf_accumulate`,
//! `udf_call_accumulate`).
//!
//! A reduce step is a Riffle window step followed by a call. Datums are keyed by
//! their `keys`, placed in windows by a [`Clock`] and a [`Windower`] (tumbling,
//! sliding, sessions, or your own), and collected per key and window. When the
//! watermark passes a window's end (or the input ends), the step calls the reducer
//! once for that key and window, as Numaflow does: with the keys, the window's
//! interval `[start, end)` as a [`Window`], and the window's datums in event-time
//! order. The reducer's messages go down the step's [`Reduced::down`] stream
//! (messages tagged [`DROP`] are dropped).
//!
//! Under an event-time clock, a datum may arrive after every window it falls in has
//! closed. It is not dropped silently: it goes to [`Reduced::late`] with its time,
//! the watermark and the reason, for the flow to write somewhere or count.
//!
//! The window step keeps its state under recovery (each open window's datums), so a
//! resumed run reduces every window once. A reducer that fails stops the run with an
//! error naming the step; a remote reducer's error also names the socket.
//!
//! [`event_time`] is the usual clock: each datum's own event time, with an allowed
//! lateness.
//!
//! # Reduce-stream
//!
//! A reduce-stream UDF ([`ReduceStreamer`], or a reduce-stream server) gets the same
//! calls as a reducer: once per key and window, when the window closes, with the
//! window's datums in event-time order. Every message it sends goes down, in the
//! order sent. Riffle's window step hands a window's datums over when the window
//! closes, so the messages of one window come out together at that point rather
//! than while the window is open; what comes out is the same.
//!
//! # Accumulators
//!
//! In Numaflow an accumulator is a window of its own kind: each key has one open
//! stream, fed the key's datums ordered by event time, and the UDF sends output
//! datums whenever it likes (typically holding datums back to re-order them). The
//! stream is closed once no datum came for the key for the window's `timeout`;
//! pynumaflow (0.14) then ends the handler's input, sends what it still outputs and
//! answers EOF, and the next datum of that key opens a new stream, on a new
//! instance of a class-based accumulator. Riffle maps this onto the same window
//! machinery:
//!
//! - a key's stream is a session window of the key with a gap of `timeout` under the
//!   step's clock (so, with [`event_time`], a stream closes when the watermark has
//!   passed its last datum by `timeout`; the end of the input closes every stream);
//! - when the stream closes, the accumulator is called once with its datums in
//!   event-time order: in-process on a fresh [`DatumStream`], remotely as one
//!   `AccumulateFn` stream (OPEN, APPENDs, CLOSE for the key) whose outputs are read
//!   up to the key's EOF;
//! - each output datum, with its tags, goes down [`Accumulation::down`] (outputs
//!   tagged [`DROP`] are dropped); a datum that comes after its key's
//!   stream has closed, beyond the clock's lateness, goes to `late` instead.
//!
//! So an accumulator sees exactly the streams Numaflow would give it, and its
//! outputs come out when each stream closes. Like the reduce step, the open
//! streams' datums are kept under recovery.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riffle::window::{Clock, Late, LiveWindows, Millis, SessionWindower, WindowMeta, Windower};
use riffle::{Data, Stream};

use super::pool::{ClientPool, Pooled};
use crate::DROP;
use crate::client::{AccumulatorClient, ClientOptions, ReduceClient};
use crate::datum::{Accumulated, Datum, Message, Window};
use crate::error::HandlerResult;
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::{Accumulator, DatumStream, MessageSender, ReduceStreamer, Reducer};

/// The streams of a reduce, reduce-stream or accumulator step.
pub struct Reduced<T = Message> {
    /// The UDF's outputs, once per key and window as windows close.
    pub down: Stream<T>,
    /// Datums whose windows had all closed when they arrived, by their keys.
    pub late: Stream<(Vec<String>, Late<Datum>)>,
    /// How many keys hold open windows while the flow runs (in this process).
    pub live: Arc<LiveWindows>,
}

/// The streams of an accumulator step: its output datums with their tags.
pub type Accumulation = Reduced<Accumulated>;

/// An event-time clock over datums: a datum's time is its `event_time`, and datums
/// may arrive up to `allowed_lateness` behind the latest one seen.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use riffle_numaflow::Datum;
/// use riffle_numaflow::dataflow::event_time;
///
/// let clock = event_time(Duration::from_secs(5));
/// let datum = Datum::new("x").with_event_time(UNIX_EPOCH + Duration::from_millis(1_500));
/// assert_eq!(clock.time_of(&datum), Some(1_500));
/// ```
pub fn event_time(allowed_lateness: Duration) -> Clock<Datum> {
    Clock::event(|d: &Datum| millis(d.event_time), allowed_lateness)
}

/// Milliseconds since the Unix epoch (negative before it).
fn millis(t: SystemTime) -> Millis {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX),
        Err(e) => Millis::try_from(e.duration().as_millis()).map_or(Millis::MIN, |m| -m),
    }
}

/// The instant `ms` milliseconds after (or before) the Unix epoch.
fn instant(ms: Millis) -> SystemTime {
    let offset = Duration::from_millis(ms.unsigned_abs());
    let at = if ms >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    at.unwrap_or(UNIX_EPOCH)
}

/// Numaflow's window for a Riffle window's interval.
fn window_of(meta: &WindowMeta) -> Window {
    Window::new(instant(meta.open_time), instant(meta.close_time))
}

/// One closed window of one key: its keys, interval and datums in time order.
type ClosedWindow = (Vec<String>, Window, Vec<Datum>);

/// The window part of a reduce step: datums keyed by their keys, collected per
/// window, each closed window paired with its interval. `down` is left to the caller.
fn closed_windows<W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
) -> riffle::Result<(Stream<ClosedWindow>, LateAndLive)> {
    let windows = stream
        .map(&format!("{step_id}.keys"), |d: Datum| (d.keys.clone(), d))?
        .collect_window(&format!("{step_id}.window"), clock, windower)?;
    // A window's datums and its interval leave the window step side by side, on the
    // same worker; a join by (keys, window id) puts them back together and forgets
    // the pair at once, so it holds nothing once the window's two halves are in.
    let datums = windows.down.map(
        &format!("{step_id}.datums"),
        |(keys, (id, datums)): (Vec<String>, (i64, Vec<Datum>))| ((keys, id), datums),
    )?;
    let intervals = windows.meta.map(
        &format!("{step_id}.interval"),
        |(keys, (id, meta)): (Vec<String>, (i64, WindowMeta))| ((keys, id), meta),
    )?;
    let closed = datums.join(&format!("{step_id}.closed"), &intervals)?.map(
        &format!("{step_id}.windows"),
        |((keys, _), (datums, meta)): ((Vec<String>, i64), (Vec<Datum>, WindowMeta))| {
            (keys, window_of(&meta), datums)
        },
    )?;
    Ok((closed, (windows.late, windows.live)))
}

type LateAndLive = (Stream<(Vec<String>, Late<Datum>)>, Arc<LiveWindows>);

/// Whether an output passes: outputs tagged [`DROP`] do not.
trait Output: Data {
    fn passes(&self) -> bool;
}

impl Output for Message {
    fn passes(&self) -> bool {
        !self.is_drop()
    }
}

impl Output for Accumulated {
    fn passes(&self) -> bool {
        !self.tags.iter().any(|t| t == DROP)
    }
}

/// Every windowed step: the window part of [`closed_windows`], then `call` once per
/// key and closed window (on the worker that holds the key), its outputs down.
fn windowed<T: Output, W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    call: impl Fn(ClosedWindow) -> Result<Vec<T>, String> + Send + Sync + 'static,
) -> riffle::Result<Reduced<T>> {
    let (closed, (late, live)) = closed_windows(stream, step_id, clock, windower)?;
    let down = closed
        .try_map(step_id, call)?
        .flat_map(&format!("{step_id}.messages"), |out: Vec<T>| {
            out.into_iter().filter(Output::passes)
        })?;
    Ok(Reduced { down, late, live })
}

/// Runs a streaming handler to its end and gathers what it sent, in order.
async fn gathered<T: Send, F>(run: impl FnOnce(MessageSender<T>) -> F) -> HandlerResult<Vec<T>>
where
    F: Future<Output = HandlerResult<()>>,
{
    let (out, mut rx) = MessageSender::channel(256);
    let handler = run(out);
    let gather = async {
        let mut all = Vec::new();
        while let Some(m) = rx.recv().await {
            all.push(m);
        }
        all
    };
    let (done, all) = tokio::join!(handler, gather);
    done.map(|()| all)
}

/// A window step that calls a UDF in-process: `handle` runs on the step's worker.
fn in_process<T: Output, W: Windower, F>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    kind: UdfKind,
    handle: impl Fn(ClosedWindow) -> F + Send + Sync + 'static,
) -> riffle::Result<Reduced<T>>
where
    F: Future<Output = HandlerResult<Vec<T>>>,
{
    windowed(stream, step_id, clock, windower, move |closed| {
        block_on(handle(closed)).map_err(|e| format!("{kind} UDF failed: {e}"))
    })
}

pub(super) fn udf_reduce<R: Reducer, W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    reducer: R,
) -> riffle::Result<Reduced> {
    let reducer = Arc::new(reducer);
    in_process(
        stream,
        step_id,
        clock,
        windower,
        UdfKind::Reduce,
        move |(keys, window, datums): ClosedWindow| {
            let reducer = reducer.clone();
            async move {
                reducer
                    .reduce(keys, window, DatumStream::from_vec(datums))
                    .await
            }
        },
    )
}

pub(super) fn udf_reduce_stream<R: ReduceStreamer, W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    streamer: R,
) -> riffle::Result<Reduced> {
    let streamer = Arc::new(streamer);
    in_process(
        stream,
        step_id,
        clock,
        windower,
        UdfKind::ReduceStream,
        move |(keys, window, datums): ClosedWindow| {
            let streamer = streamer.clone();
            async move {
                gathered(|out| {
                    streamer.reduce_stream(keys, window, DatumStream::from_vec(datums), out)
                })
                .await
            }
        },
    )
}

pub(super) fn udf_accumulate<A: Accumulator>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    timeout: Duration,
    accumulator: A,
) -> riffle::Result<Accumulation> {
    let accumulator = Arc::new(accumulator);
    in_process(
        stream,
        step_id,
        clock,
        SessionWindower::new(timeout),
        UdfKind::Accumulator,
        move |(_, _, datums): ClosedWindow| {
            let accumulator = accumulator.clone();
            async move {
                gathered(|out| accumulator.accumulate(DatumStream::from_vec(datums), out)).await
            }
        },
    )
}

/// A window step that calls a server: one call per key and window on a client of
/// the step's pool, made by `connect`.
fn on_server<T: Output, C: Pooled, W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    options: ClientOptions,
    connect: impl AsyncFn(ClientOptions) -> crate::Result<C> + Send + Sync + 'static,
    call: impl AsyncFn(&mut C, Window, Vec<Datum>) -> crate::Result<Vec<T>> + Send + Sync + 'static,
) -> riffle::Result<Reduced<T>> {
    let pool = ClientPool::new(options);
    windowed(
        stream,
        step_id,
        clock,
        windower,
        move |(_, window, datums)| {
            pool.call(&connect, async |client: &mut C| {
                call(client, window, datums).await
            })
            .map_err(|e| e.to_string())
        },
    )
}

/// A reduce or reduce-stream step on a server: the windows that close together
/// (in one batch of the window step's output) are grouped by interval, and each
/// interval's keys, up to `keys_per_stream` of them, go to the server in one
/// `ReduceFn` stream (the server tells keys apart by the datums' keys), as
/// Numaflow's data plane sends a window's keys.
fn on_reduce_server<W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    options: ClientOptions,
    kind: UdfKind,
) -> riffle::Result<Reduced> {
    let keys_per_stream = options.keys_per_stream.max(1);
    let pool = ClientPool::new(options);
    let connect = async move |options| ReduceClient::connect_kind(kind, options).await;
    let (closed, (late, live)) = closed_windows(stream, step_id, clock, windower)?;
    let down = closed.try_flat_map_batch(step_id, move |batch: Vec<ClosedWindow>| {
        let mut out = Vec::new();
        for (window, datums) in shared_streams(batch, keys_per_stream) {
            let messages = pool
                .call(connect, async |client: &mut ReduceClient| {
                    client.reduce_window(&window, &datums).await
                })
                .map_err(|e| e.to_string())?;
            out.extend(messages.into_iter().filter(Output::passes));
        }
        Ok::<_, String>(out)
    })?;
    Ok(Reduced { down, late, live })
}

/// The closed windows of a batch as the streams that carry them: windows with the
/// same interval together, at most `keys` keys a stream, each key's datums whole
/// and in order, in the order the windows came.
fn shared_streams(batch: Vec<ClosedWindow>, keys: usize) -> Vec<(Window, Vec<Datum>)> {
    let mut streams: Vec<(Window, usize, Vec<Datum>)> = Vec::new();
    let mut open: std::collections::HashMap<Window, usize> = std::collections::HashMap::new();
    for (_, window, datums) in batch {
        let at = match open.get(&window) {
            Some(&i) if streams[i].1 < keys => i,
            _ => {
                streams.push((window.clone(), 0, Vec::new()));
                open.insert(window, streams.len() - 1);
                streams.len() - 1
            }
        };
        streams[at].1 += 1;
        streams[at].2.extend(datums);
    }
    streams.into_iter().map(|(w, _, d)| (w, d)).collect()
}

pub(super) fn udf_call_reduce<W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    options: ClientOptions,
) -> riffle::Result<Reduced> {
    on_reduce_server(stream, step_id, clock, windower, options, UdfKind::Reduce)
}

pub(super) fn udf_call_reduce_stream<W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    options: ClientOptions,
) -> riffle::Result<Reduced> {
    on_reduce_server(
        stream,
        step_id,
        clock,
        windower,
        options,
        UdfKind::ReduceStream,
    )
}

pub(super) fn udf_call_accumulate(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    timeout: Duration,
    options: ClientOptions,
) -> riffle::Result<Accumulation> {
    on_server(
        stream,
        step_id,
        clock,
        SessionWindower::new(timeout),
        options,
        AccumulatorClient::connect,
        async |client: &mut AccumulatorClient, _, datums| client.accumulate(&datums).await,
    )
}
