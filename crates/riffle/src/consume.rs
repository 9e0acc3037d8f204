//! A consumer loop: the same sources and sinks as a Dataflow, outside one.
//!
//! [`consume`] reads every partition of a fixed-partitioned source in the calling
//! thread, transforms each item, writes what it makes to a fixed-partitioned sink,
//! flushes the sink and only then tells the source partition that what it read is
//! done ([`SourcePartition::commit`]), so a crash at any point replays what was
//! not yet written (at-least-once). It is the smallest host for a connector's
//! source and sink, and the loop application processors are built on.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use riffle::consume::consume;
//! use riffle::sinks::TestingSink;
//! use riffle::sources::TestingSource;
//!
//! let out = TestingSink::new();
//! let stop = AtomicBool::new(false);
//! let counts = consume("double", TestingSource::new(vec![1, 2, 3]), out.clone(), |x: i32| [x * 2], &stop)?;
//! assert_eq!(counts.read, 3);
//! assert_eq!(out.take_sorted(), [2, 4, 6]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::sinks::{FixedPartitionedSink, SinkPartition};
use crate::sources::{FixedPartitionedSource, Poll, SourcePartition};

/// How long the loop sleeps when no partition has anything.
const IDLE: Duration = Duration::from_millis(10);

/// What a [`consume`] loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumed {
    /// Items read from the source.
    pub read: u64,
    /// Items written to the sink.
    pub written: u64,
}

/// Reads `source` until every partition is exhausted or `stop` is set, writing
/// `f(item)` for each item to `sink`; see the [module docs](self). `step_id` names
/// the loop in errors. Returns what it read and wrote; on an error, nothing read
/// after the last commit was committed.
pub fn consume<S, K, F, I>(
    step_id: &str,
    source: S,
    sink: K,
    mut f: F,
    stop: &AtomicBool,
) -> Result<Consumed>
where
    S: FixedPartitionedSource,
    K: FixedPartitionedSink,
    F: FnMut(S::Item) -> I,
    I: IntoIterator<Item = K::Item>,
{
    let mut parts = Vec::new();
    for name in source.list_parts(step_id)? {
        parts.push(source.build_part(step_id, &name, None)?);
    }
    let names = sink.list_parts(step_id)?;
    let mut outs = Vec::with_capacity(names.len());
    for name in &names {
        outs.push(sink.build_part(step_id, name, None)?);
    }
    if outs.is_empty() {
        return Err(crate::RiffleError::connector(
            step_id,
            "the sink has no partitions",
        ));
    }
    let mut groups: Vec<Vec<K::Item>> = (0..outs.len()).map(|_| Vec::new()).collect();
    let mut done = Consumed::default();
    let mut live: Vec<bool> = vec![true; parts.len()];
    while live.iter().any(|l| *l) && !stop.load(Ordering::Relaxed) {
        let mut produced = false;
        let mut wake: Option<Instant> = None;
        for (i, part) in parts.iter_mut().enumerate() {
            if !live[i] {
                continue;
            }
            let items = match part.next_batch()? {
                Poll::Ready(items) | Poll::ReadyAt(_, items) => items,
                Poll::Pending => {
                    if let Some(at) = part.next_awake() {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    continue;
                }
                Poll::Exhausted => {
                    live[i] = false;
                    if let Some(state) = part.snapshot() {
                        part.commit(&state)?;
                    }
                    continue;
                }
            };
            produced = true;
            done.read += items.len() as u64;
            let position = part.snapshot();
            for item in items {
                for out in f(item) {
                    let p = sink.part_fn(&out, outs.len()) % outs.len();
                    groups[p].push(out);
                }
            }
            for (p, group) in groups.iter_mut().enumerate() {
                if !group.is_empty() {
                    done.written += group.len() as u64;
                    outs[p].write_batch(std::mem::take(group))?;
                    outs[p].flush()?;
                }
            }
            if let Some(state) = position {
                part.commit(&state)?;
            }
        }
        if !produced {
            let now = Instant::now();
            let until = wake.unwrap_or(now + IDLE).min(now + IDLE);
            std::thread::sleep(until.saturating_duration_since(now));
        }
    }
    for part in parts.iter_mut() {
        part.close()?;
    }
    for out in outs.iter_mut() {
        out.close()?;
    }
    Ok(done)
}
