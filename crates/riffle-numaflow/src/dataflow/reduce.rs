//! Reducers over windows: `udf_reduce` (in-process) and `udf_call_reduce` (a reduce
//! server over its socket).
//!
//! A reduce step is a Riffle window step followed by a call. Datums are keyed by
//! their `keys`, placed in windows by a [`Clock`] and a [`Windower`] (tumbling,
//! sliding, sessions, or your own), and collected per key and window. When the
//! watermark passes a window's end (or the input ends), the step calls the reducer
//! once for that key and window, as Numaflow does: with the keys, the window's
//! interval `[start, end)` as a [`Window`], and the window's datums in event-time
//! order. The reducer's messages go down the step's [`Reduced::down`] stream
//! (messages tagged [`DROP`](crate::DROP) are dropped).
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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riffle::Stream;
use riffle::window::{Clock, Late, LiveWindows, Millis, WindowMeta, Windower};

use super::keep;
use super::pool::ClientPool;
use crate::client::{ClientOptions, ReduceClient};
use crate::datum::{Datum, Message, Window};
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::{DatumStream, Reducer};

/// The streams of a reduce step.
pub struct Reduced {
    /// The reducer's messages, once per key and window as windows close.
    pub down: Stream<Message>,
    /// Datums whose windows had all closed when they arrived, by their keys.
    pub late: Stream<(Vec<String>, Late<Datum>)>,
    /// How many keys hold open windows while the flow runs (in this process).
    pub live: Arc<LiveWindows>,
}

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

fn reduced(
    step_id: &str,
    results: Stream<Vec<Message>>,
    (late, live): LateAndLive,
) -> riffle::Result<Reduced> {
    Ok(Reduced {
        down: results.flat_map(&format!("{step_id}.messages"), keep)?,
        late,
        live,
    })
}

pub(super) fn udf_reduce<R: Reducer, W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    reducer: R,
) -> riffle::Result<Reduced> {
    let (closed, rest) = closed_windows(stream, step_id, clock, windower)?;
    let reducer = Arc::new(reducer);
    let kind = UdfKind::Reduce;
    let results = closed.try_map(step_id, move |(keys, window, datums): ClosedWindow| {
        block_on(reducer.reduce(keys, window, DatumStream::from_vec(datums)))
            .map_err(|e| format!("{kind} UDF failed: {e}"))
    })?;
    reduced(step_id, results, rest)
}

pub(super) fn udf_call_reduce<W: Windower>(
    stream: &Stream<Datum>,
    step_id: &str,
    clock: Clock<Datum>,
    windower: W,
    options: ClientOptions,
) -> riffle::Result<Reduced> {
    let (closed, rest) = closed_windows(stream, step_id, clock, windower)?;
    let pool = ClientPool::new(options);
    let results = closed.try_map(step_id, move |(_, window, datums): ClosedWindow| {
        pool.call(ReduceClient::connect, async |client: &mut ReduceClient| {
            client.reduce_window(&window, &datums).await
        })
    })?;
    reduced(step_id, results, rest)
}
