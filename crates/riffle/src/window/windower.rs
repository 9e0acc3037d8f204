//! Windowers: which windows an item's time falls in, and when they close.
//!
//! A windower keeps a small state per key (the windows open for that key) and
//! answers three questions for the window operator: which open windows a time falls
//! in ([`Windower::open_for`]), which windows have merged (sessions), and which
//! windows the watermark has closed ([`Windower::close_for`]). Closed windows are
//! removed from the state, so a key with no open window costs nothing.
//!
//! - [`TumblingWindower`]: back-to-back windows of one length, aligned to a time.
//! - [`SlidingWindower`]: windows of one length starting every `offset`; a time
//!   falls in `length / offset` of them.
//! - [`SessionWindower`]: a window per burst of activity, closed after a gap with no
//!   items; bursts that grow into each other merge.
//!
//! Implement [`Windower`] for anything else.

use std::fmt::Debug;
use std::ops::Range;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::clock::{Millis, millis};

/// Identifies a window of one key: the index of a tumbling or sliding window, or
/// the number of a session.
pub type WindowId = i64;

/// When a window opened and when it closes (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowMeta {
    /// The window's first instant.
    pub open_time: Millis,
    /// The instant the window closes: its end (exclusive); for a session, the
    /// last item's time plus the gap.
    pub close_time: Millis,
}

/// Where an item's time landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In at least one open window (their ids were pushed).
    Placed,
    /// Every window it falls in has already closed.
    Late,
    /// It falls between windows (sliding windows with gaps between them).
    Outside,
}

/// Assigns times to windows for one key; see the [module docs](self).
pub trait Windower: Send + Sync + 'static {
    /// What the windower remembers for one key.
    type State: Default + Clone + Debug + Serialize + DeserializeOwned + Send + 'static;

    /// Pushes the ids of the open windows `time` falls in onto `out`, opening them
    /// if needed; windows whose close time is at or before `watermark` are closed
    /// and cannot take items.
    fn open_for(
        &self,
        state: &mut Self::State,
        time: Millis,
        watermark: Millis,
        out: &mut Vec<WindowId>,
    ) -> Placement;

    /// Pushes `(from, into)` for every window merged into another since the last
    /// call. Only windowers whose windows grow (sessions) merge.
    fn drain_merged(&self, _state: &mut Self::State, _out: &mut Vec<(WindowId, WindowId)>) {}

    /// Removes every window whose close time is at or before `watermark` and pushes
    /// it with its metadata onto `out`, earliest first.
    fn close_for(
        &self,
        state: &mut Self::State,
        watermark: Millis,
        out: &mut Vec<(WindowId, WindowMeta)>,
    );

    /// The earliest close time of the key's open windows.
    fn next_close(&self, state: &Self::State) -> Option<Millis>;

    /// How long one window lasts, where that is fixed (a session's gap): how far
    /// partitions may drift apart by default (see [`super::Clock::max_drift`]).
    fn length(&self) -> Option<Millis> {
        None
    }

    /// Where the windows a time falls in depend on the time alone (tumbling and
    /// sliding windows, not sessions): pushes each one's id and close time onto
    /// `out` and returns the span of times that fall in exactly those windows
    /// (`time` among them). Returns `None`, pushing nothing, where placing a time
    /// needs the key's state.
    ///
    /// A window step whose windower answers here combines values into their
    /// windows on the worker that read them, and sends the key's owner one
    /// partial accumulator per window instead of every value (see the
    /// [window module](super) on many workers). The default answers `None`.
    fn fixed_windows(
        &self,
        _time: Millis,
        _out: &mut Vec<(WindowId, Millis)>,
    ) -> Option<Range<Millis>> {
        None
    }
}

/// Windows of `length` starting every `offset`, aligned so that one starts at
/// `align_to`. Tumbling windows are the case `offset == length`.
///
/// ```
/// use std::time::Duration;
/// use riffle::window::{Placement, SlidingWindower, Windower};
///
/// let w = SlidingWindower::new(Duration::from_secs(10), Duration::from_secs(5), 0);
/// let (mut state, mut ids) = (Default::default(), Vec::new());
/// assert_eq!(w.open_for(&mut state, 12_000, i64::MIN, &mut ids), Placement::Placed);
/// assert_eq!(ids, [1, 2]); // [5 s, 15 s) and [10 s, 20 s)
/// ```
#[derive(Debug, Clone)]
pub struct SlidingWindower {
    length: Millis,
    offset: Millis,
    align_to: Millis,
}

/// Back-to-back windows of one length: a [`SlidingWindower`] whose offset is its
/// length.
///
/// ```
/// use std::time::Duration;
/// use riffle::window::{Placement, TumblingWindower, Windower};
///
/// let w = TumblingWindower::new(Duration::from_secs(10), 0);
/// let (mut state, mut ids) = (Default::default(), Vec::new());
/// w.open_for(&mut state, 25_000, i64::MIN, &mut ids);
/// assert_eq!(ids, [2]);
/// let mut closed = Vec::new();
/// w.close_for(&mut state, 30_000, &mut closed);
/// assert_eq!(closed[0].1.open_time, 20_000);
/// ```
#[derive(Debug, Clone)]
pub struct TumblingWindower(SlidingWindower);

impl SlidingWindower {
    /// Windows of `length` every `offset`, one of them starting at `align_to`
    /// (milliseconds since the Unix epoch). A zero length or offset counts as 1 ms.
    pub fn new(length: Duration, offset: Duration, align_to: Millis) -> Self {
        Self {
            length: millis(length).max(1),
            offset: millis(offset).max(1),
            align_to,
        }
    }

    fn meta(&self, id: WindowId) -> WindowMeta {
        let open_time = self.align_to.saturating_add(id.saturating_mul(self.offset));
        WindowMeta {
            open_time,
            close_time: open_time.saturating_add(self.length),
        }
    }
}

impl TumblingWindower {
    /// Windows of `length`, one of them starting at `align_to`.
    pub fn new(length: Duration, align_to: Millis) -> Self {
        Self(SlidingWindower::new(length, length, align_to))
    }
}

/// The open windows of one key, earliest first.
pub type OpenWindows = Vec<(WindowId, WindowMeta)>;

impl Windower for SlidingWindower {
    type State = OpenWindows;

    fn open_for(
        &self,
        state: &mut OpenWindows,
        time: Millis,
        watermark: Millis,
        out: &mut Vec<WindowId>,
    ) -> Placement {
        let since = time.saturating_sub(self.align_to);
        let last = since.div_euclid(self.offset);
        // The first window whose end is after `time`.
        let first = (since - self.length).div_euclid(self.offset) + 1;
        let before = out.len();
        let mut any = false;
        for id in first..=last {
            let meta = self.meta(id);
            if time < meta.open_time || time >= meta.close_time {
                continue;
            }
            any = true;
            if meta.close_time <= watermark {
                continue;
            }
            if let Err(at) = state.binary_search_by_key(&id, |(id, _)| *id) {
                state.insert(at, (id, meta));
            }
            out.push(id);
        }
        match (out.len() > before, any) {
            (true, _) => Placement::Placed,
            (false, true) => Placement::Late,
            (false, false) => Placement::Outside,
        }
    }

    fn close_for(&self, state: &mut OpenWindows, watermark: Millis, out: &mut OpenWindows) {
        let closed = state
            .iter()
            .take_while(|(_, m)| m.close_time <= watermark)
            .count();
        out.extend(state.drain(..closed));
    }

    fn next_close(&self, state: &OpenWindows) -> Option<Millis> {
        state.first().map(|(_, m)| m.close_time)
    }

    fn length(&self) -> Option<Millis> {
        Some(self.length)
    }

    fn fixed_windows(
        &self,
        time: Millis,
        out: &mut Vec<(WindowId, Millis)>,
    ) -> Option<Range<Millis>> {
        let since = time.saturating_sub(self.align_to);
        let last = since.div_euclid(self.offset);
        let first = (since - self.length).div_euclid(self.offset) + 1;
        // The same windows hold from the latest open at or before `time` (or the
        // latest close, if later) until the next open or the earliest close.
        let mut from = self
            .meta(last)
            .open_time
            .max(self.meta(first - 1).close_time);
        let mut until = self.meta(last + 1).open_time;
        for id in first..=last {
            let meta = self.meta(id);
            if time >= meta.open_time && time < meta.close_time {
                out.push((id, meta.close_time));
                until = until.min(meta.close_time);
            } else if meta.close_time <= time {
                from = from.max(meta.close_time);
            }
        }
        Some(from..until)
    }
}

impl Windower for TumblingWindower {
    type State = OpenWindows;

    fn open_for(
        &self,
        state: &mut OpenWindows,
        time: Millis,
        watermark: Millis,
        out: &mut Vec<WindowId>,
    ) -> Placement {
        // One window per time: skip the sliding search.
        let w = &self.0;
        let id = time.saturating_sub(w.align_to).div_euclid(w.length);
        if let Some((last, _)) = state.last()
            && *last == id
        {
            out.push(id);
            return Placement::Placed;
        }
        let meta = w.meta(id);
        if meta.close_time <= watermark {
            return Placement::Late;
        }
        if let Err(at) = state.binary_search_by_key(&id, |(id, _)| *id) {
            state.insert(at, (id, meta));
        }
        out.push(id);
        Placement::Placed
    }

    fn close_for(&self, state: &mut OpenWindows, watermark: Millis, out: &mut OpenWindows) {
        self.0.close_for(state, watermark, out)
    }

    fn next_close(&self, state: &OpenWindows) -> Option<Millis> {
        self.0.next_close(state)
    }

    fn length(&self) -> Option<Millis> {
        self.0.length()
    }

    fn fixed_windows(
        &self,
        time: Millis,
        out: &mut Vec<(WindowId, Millis)>,
    ) -> Option<Range<Millis>> {
        let w = &self.0;
        let id = time.saturating_sub(w.align_to).div_euclid(w.length);
        let meta = w.meta(id);
        out.push((id, meta.close_time));
        Some(meta.open_time..meta.close_time)
    }
}

/// A window per burst of items no more than `gap` apart; a session closes once the
/// watermark is `gap` past its last item.
///
/// ```
/// use std::time::Duration;
/// use riffle::window::{SessionWindower, Windower};
///
/// let w = SessionWindower::new(Duration::from_secs(5));
/// let (mut state, mut ids) = (Default::default(), Vec::new());
/// w.open_for(&mut state, 0, i64::MIN, &mut ids);
/// w.open_for(&mut state, 20_000, i64::MIN, &mut ids);
/// w.open_for(&mut state, 3_000, i64::MIN, &mut ids); // joins the first session
/// assert_eq!(ids, [0, 1, 0]);
/// let mut closed = Vec::new();
/// w.close_for(&mut state, 10_000, &mut closed);
/// assert_eq!(closed.len(), 1);
/// assert_eq!((closed[0].1.open_time, closed[0].1.close_time), (0, 8_000));
/// ```
#[derive(Debug, Clone)]
pub struct SessionWindower {
    gap: Millis,
}

impl SessionWindower {
    /// Sessions that close after `gap` without items (at least 1 ms).
    pub fn new(gap: Duration) -> Self {
        Self {
            gap: millis(gap).max(1),
        }
    }
}

/// The open sessions of one key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sessions {
    /// Open sessions: `(id, first item time, last item time)`, by first time.
    open: Vec<(WindowId, Millis, Millis)>,
    /// Sessions merged into another since the last drain.
    merged: Vec<(WindowId, WindowId)>,
    next_id: WindowId,
}

impl Windower for SessionWindower {
    type State = Sessions;

    fn open_for(
        &self,
        state: &mut Sessions,
        time: Millis,
        watermark: Millis,
        out: &mut Vec<WindowId>,
    ) -> Placement {
        let gap = self.gap;
        // Open sessions this time touches: within `gap` of their span.
        let mut touching = state
            .open
            .iter()
            .enumerate()
            .filter(|(_, (_, first, last))| time > first - gap && time < last + gap)
            .map(|(i, _)| i);
        let Some(into) = touching.next() else {
            if time.saturating_add(gap) <= watermark {
                return Placement::Late;
            }
            let id = state.next_id;
            state.next_id += 1;
            let at = state.open.partition_point(|(_, first, _)| *first <= time);
            state.open.insert(at, (id, time, time));
            out.push(id);
            return Placement::Placed;
        };
        let others: Vec<usize> = touching.collect();
        let (into_id, mut first, mut last) = state.open[into];
        first = first.min(time);
        last = last.max(time);
        for &i in others.iter().rev() {
            let (id, f, l) = state.open.remove(i);
            first = first.min(f);
            last = last.max(l);
            state.merged.push((id, into_id));
        }
        state.open[into] = (into_id, first, last);
        out.push(into_id);
        Placement::Placed
    }

    fn drain_merged(&self, state: &mut Sessions, out: &mut Vec<(WindowId, WindowId)>) {
        out.append(&mut state.merged);
    }

    fn close_for(&self, state: &mut Sessions, watermark: Millis, out: &mut OpenWindows) {
        let gap = self.gap;
        let mut i = 0;
        while i < state.open.len() {
            let (id, first, last) = state.open[i];
            if last.saturating_add(gap) <= watermark {
                state.open.remove(i);
                out.push((
                    id,
                    WindowMeta {
                        open_time: first,
                        close_time: last.saturating_add(gap),
                    },
                ));
            } else {
                i += 1;
            }
        }
        out.sort_by_key(|(_, m)| m.close_time);
    }

    fn next_close(&self, state: &Sessions) -> Option<Millis> {
        state
            .open
            .iter()
            .map(|(_, _, last)| last.saturating_add(self.gap))
            .min()
    }

    fn length(&self) -> Option<Millis> {
        Some(self.gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_cover_a_time_length_over_offset_times() {
        let w = SlidingWindower::new(Duration::from_millis(10), Duration::from_millis(3), 1);
        let mut state = OpenWindows::new();
        let mut ids = Vec::new();
        assert_eq!(
            w.open_for(&mut state, 20, i64::MIN, &mut ids),
            Placement::Placed
        );
        for id in &ids {
            let m = w.meta(*id);
            assert!(m.open_time <= 20 && 20 < m.close_time, "{m:?}");
        }
        assert_eq!(ids.len(), 3); // windows starting at 13, 16 and 19
    }

    #[test]
    fn every_time_in_a_fixed_span_falls_in_the_same_windows() {
        let windowers = [
            SlidingWindower::new(Duration::from_millis(10), Duration::from_millis(4), 3),
            SlidingWindower::new(Duration::from_millis(4), Duration::from_millis(10), -7),
            SlidingWindower::new(Duration::from_millis(10), Duration::from_millis(10), 0),
        ];
        for w in &windowers {
            for t in -60..60 {
                let mut ids = Vec::new();
                let span = w
                    .fixed_windows(t, &mut ids)
                    .expect("sliding windows are fixed");
                assert!(span.contains(&t), "{w:?} at {t}: {span:?}");
                for other in span.clone() {
                    let mut others = Vec::new();
                    w.fixed_windows(other, &mut others);
                    assert_eq!(others, ids, "{w:?}: {other} in the span {span:?} of {t}");
                }
                // Just outside the span the windows differ.
                for edge in [span.start - 1, span.end] {
                    let mut others = Vec::new();
                    w.fixed_windows(edge, &mut others);
                    assert_ne!(
                        others, ids,
                        "{w:?}: {edge} next to the span {span:?} of {t}"
                    );
                }
                let mut state = Default::default();
                let mut placed = Vec::new();
                w.open_for(&mut state, t, Millis::MIN, &mut placed);
                let fixed: Vec<WindowId> = ids.iter().map(|(id, _)| *id).collect();
                assert_eq!(placed, fixed, "{w:?} at {t}: open_for agrees");
            }
        }
        let tumbling = TumblingWindower::new(Duration::from_millis(10), 5);
        let mut ids = Vec::new();
        assert_eq!(tumbling.fixed_windows(17, &mut ids), Some(15..25));
        assert_eq!(ids, [(1, 25)]);
        assert_eq!(
            SessionWindower::new(Duration::from_millis(5)).fixed_windows(1, &mut ids),
            None
        );
    }

    #[test]
    fn sliding_windows_with_gaps_leave_times_outside() {
        let w = SlidingWindower::new(Duration::from_millis(2), Duration::from_millis(10), 0);
        let mut state = OpenWindows::new();
        let mut ids = Vec::new();
        assert_eq!(
            w.open_for(&mut state, 5, i64::MIN, &mut ids),
            Placement::Outside
        );
        assert_eq!(
            w.open_for(&mut state, 11, i64::MIN, &mut ids),
            Placement::Placed
        );
    }

    #[test]
    fn a_closed_window_makes_its_items_late() {
        let w = TumblingWindower::new(Duration::from_millis(10), 0);
        let mut state = OpenWindows::new();
        let mut ids = Vec::new();
        assert_eq!(w.open_for(&mut state, 5, 10, &mut ids), Placement::Late);
        assert_eq!(
            w.open_for(&mut state, -5, i64::MIN, &mut ids),
            Placement::Placed
        );
        assert_eq!(ids, [-1]);
    }

    #[test]
    fn a_bridging_item_merges_two_sessions() {
        let w = SessionWindower::new(Duration::from_millis(10));
        let mut state = Sessions::default();
        let mut ids = Vec::new();
        w.open_for(&mut state, 0, i64::MIN, &mut ids);
        w.open_for(&mut state, 18, i64::MIN, &mut ids);
        w.open_for(&mut state, 9, i64::MIN, &mut ids);
        let mut merged = Vec::new();
        w.drain_merged(&mut state, &mut merged);
        assert_eq!(merged, [(1, 0)]);
        assert_eq!(w.next_close(&state), Some(28));
    }
}
