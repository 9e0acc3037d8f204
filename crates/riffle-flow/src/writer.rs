//! [`SinkWriter`]: a sink shared by many writers, each told when what it wrote is
//! durable.
//!
//! A [`FixedPartitionedSink`]'s partitions each want exactly one writer, in order
//! (a file is appended by one hand, a two-phase sink prepares and commits its own
//! writes). A Flow has many writers of one sink: the replicas of a consumer, the
//! requests a collector answers. So each sink partition gets a thread of its own
//! (the **lane**) that owns it; writers route their items to lanes with the sink's
//! [`FixedPartitionedSink::part_fn`] and wait for the answer. A lane takes every
//! batch waiting for it, writes them as one, flushes, and (for a sink whose
//! partitions hand out positions) takes a snapshot and commits it at once, then
//! answers every writer of the group: group commit, so many small writes cost one
//! flush. Only after that answer does a consumer acknowledge its source or a
//! collector answer its request, which is what makes both at-least-once.
//!
//! A failed write answers the error to every writer of the group and drops the
//! partition; the next batch opens it again from the last committed position, so
//! a writer that retries finds a fresh partition (a broker that came back).
//!
//! ```
//! use riffle::sinks::TestingSink;
//! use riffle_flow::SinkWriter;
//!
//! let out = TestingSink::new();
//! let writer = SinkWriter::start("out", out.clone())?;
//! writer.write(vec![1, 2, 3])?;
//! // Written and flushed by the time `write` returns.
//! assert_eq!(out.take_sorted(), [1, 2, 3]);
//! writer.close();
//! # Ok::<(), riffle_flow::FlowError>(())
//! ```

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use riffle::RiffleError;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use tokio::sync::oneshot;

use crate::error::{FlowError, Result};

/// The most batches a lane writes as one.
const GROUP: usize = 256;

type Answer = std::result::Result<(), Arc<RiffleError>>;

struct Batch<T> {
    items: Vec<T>,
    done: oneshot::Sender<Answer>,
}

type Route<T> = Arc<dyn Fn(&T, usize) -> usize + Send + Sync>;

/// A sink shared by many writers; see the [module docs](self).
pub struct SinkWriter<T> {
    id: String,
    lanes: RwLock<Option<Vec<Sender<Batch<T>>>>>,
    route: Route<T>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<T: riffle::Data> SinkWriter<T> {
    /// Opens every partition of `sink`, each on a lane of its own; `id` names the
    /// writer in errors (the processor or route it serves). Fails if a partition
    /// cannot be opened.
    pub fn start<K>(id: &str, sink: K) -> Result<Self>
    where
        K: FixedPartitionedSink<Item = T>,
    {
        if sink.fresh_start_discards() {
            return Err(FlowError::Failed {
                processor: id.to_string(),
                what: "the sink starts its files empty, so every start of the flow would throw away what the last one wrote: give it `.appending()` (FileSink, CsvSink, JsonLinesSink, DirSink)".into(),
            });
        }
        let sink = Arc::new(sink);
        let names = sink
            .list_parts(id)
            .map_err(|e| FlowError::processor(id, "cannot list the sink's partitions", e))?;
        if names.is_empty() {
            return Err(FlowError::Failed {
                processor: id.to_string(),
                what: "the sink has no partitions".into(),
            });
        }
        let mut lanes = Vec::with_capacity(names.len());
        let mut threads = Vec::with_capacity(names.len());
        for name in names {
            let (tx, rx) = std::sync::mpsc::channel();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let lane_sink = sink.clone();
            let lane_id = id.to_string();
            let thread = std::thread::Builder::new()
                .name(format!("{id}-sink-{name}"))
                .spawn(move || lane(&lane_id, &*lane_sink, &name, &rx, &ready_tx))
                .map_err(FlowError::Runtime)?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    drop(tx);
                    let _ = thread.join();
                    close_lanes(lanes, threads);
                    return Err(FlowError::processor(id, "cannot open the sink", e));
                }
                Err(_) => {
                    return Err(FlowError::Failed {
                        processor: id.to_string(),
                        what: "the sink's lane stopped while opening".into(),
                    });
                }
            }
            lanes.push(tx);
            threads.push(thread);
        }
        let route_sink = sink.clone();
        Ok(Self {
            id: id.to_string(),
            lanes: RwLock::new(Some(lanes)),
            route: Arc::new(move |item, parts| route_sink.part_fn(item, parts) % parts),
            threads: Mutex::new(threads),
        })
    }

    /// Writes `items` and returns once they are durable (blocking: for threads,
    /// not for async code, which calls [`SinkWriter::write_async`]).
    pub fn write(&self, items: Vec<T>) -> Result<()> {
        for done in self.send(items)? {
            self.answer(done.blocking_recv())?;
        }
        Ok(())
    }

    /// Writes `items` and returns once they are durable.
    pub async fn write_async(&self, items: Vec<T>) -> Result<()> {
        for done in self.send(items)? {
            self.answer(done.await)?;
        }
        Ok(())
    }

    /// Stops taking writes, lets every lane finish what it holds, and closes the
    /// sink's partitions. Writes after this fail.
    pub fn close(&self) {
        let lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        close_lanes(lanes.unwrap_or_default(), threads);
    }

    fn send(&self, items: Vec<T>) -> Result<Vec<oneshot::Receiver<Answer>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        let Some(lanes) = lanes.as_ref() else {
            return Err(self.closed());
        };
        let mut groups: Vec<Vec<T>> = (0..lanes.len()).map(|_| Vec::new()).collect();
        if lanes.len() == 1 {
            groups[0] = items;
        } else {
            for item in items {
                let lane = (self.route)(&item, lanes.len());
                groups[lane].push(item);
            }
        }
        let mut waits = Vec::new();
        for (lane, items) in lanes.iter().zip(groups) {
            if items.is_empty() {
                continue;
            }
            let (done, wait) = oneshot::channel();
            lane.send(Batch { items, done })
                .map_err(|_| self.closed())?;
            waits.push(wait);
        }
        Ok(waits)
    }

    fn answer(&self, answer: std::result::Result<Answer, oneshot::error::RecvError>) -> Result<()> {
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FlowError::processor(
                &self.id,
                "cannot write to the sink",
                e,
            )),
            Err(_) => Err(self.closed()),
        }
    }

    fn closed(&self) -> FlowError {
        FlowError::Failed {
            processor: self.id.clone(),
            what: "the sink is closed".into(),
        }
    }
}

impl<T> Drop for SinkWriter<T> {
    fn drop(&mut self) {
        let lanes = self
            .lanes
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner()));
        close_lanes(lanes.unwrap_or_default(), threads);
    }
}

fn close_lanes<T>(lanes: Vec<Sender<Batch<T>>>, threads: Vec<JoinHandle<()>>) {
    drop(lanes);
    for thread in threads {
        let _ = thread.join();
    }
}

/// One lane: owns partition `name` of `sink` and writes what arrives, a group of
/// batches at a time.
fn lane<K: FixedPartitionedSink>(
    id: &str,
    sink: &K,
    name: &str,
    rx: &Receiver<Batch<K::Item>>,
    ready: &Sender<std::result::Result<(), RiffleError>>,
) {
    let mut part = match sink.build_part(id, name, None) {
        Ok(part) => {
            let _ = ready.send(Ok(()));
            Some(part)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut committed: Option<K::State> = None;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(group.iter().map(|b| b.items.len()).sum());
        let mut answers = Vec::with_capacity(group.len());
        for batch in group {
            items.extend(batch.items);
            answers.push(batch.done);
        }
        let outcome = match part.take() {
            Some(open) => Ok(open),
            None => sink.build_part(id, name, committed.clone()),
        }
        .and_then(|mut open| match write(&mut open, items) {
            Ok(state) => {
                if state.is_some() {
                    committed = state;
                }
                part = Some(open);
                Ok(())
            }
            Err(e) => {
                let _ = open.close();
                Err(e)
            }
        });
        let answer = outcome.map_err(Arc::new);
        for done in answers {
            let _ = done.send(answer.clone());
        }
    }
    if let Some(mut open) = part
        && let Err(e) = open.close()
    {
        crate::run::say(&format!("{id}: closing sink partition {name}: {e}"));
    }
}

/// Writes, flushes and, for a partition with positions, commits at once.
fn write<P: SinkPartition>(
    part: &mut P,
    items: Vec<P::Item>,
) -> std::result::Result<Option<P::State>, RiffleError> {
    part.write_batch(items)?;
    part.flush()?;
    let state = part.snapshot()?;
    if let Some(state) = &state {
        part.commit(state)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use riffle::sinks::{DirSink, FileSink};

    use super::*;

    #[test]
    fn a_file_sink_that_starts_empty_is_refused_and_an_appending_one_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "from the last start\n").unwrap();

        let refused = SinkWriter::start("notes", FileSink::new(&path))
            .err()
            .expect("a sink that empties its file is refused")
            .to_string();
        assert!(
            refused.contains("notes") && refused.contains(".appending()"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from the last start\n"
        );

        let writer = SinkWriter::start("notes", FileSink::new(&path).appending()).unwrap();
        writer.write(vec!["this start".to_string()]).unwrap();
        writer.close();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from the last start\nthis start\n"
        );

        // A folder of files the same way, once per start.
        let folder = dir.path().join("parts");
        for start in ["one", "two"] {
            assert!(SinkWriter::start("parts", DirSink::<String>::new(&folder, 2)).is_err());
            let writer =
                SinkWriter::start("parts", DirSink::<String>::new(&folder, 2).appending()).unwrap();
            writer
                .write(vec![("k".to_string(), start.to_string())])
                .unwrap();
            writer.close();
        }
        let mut lines: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .flat_map(|f| {
                std::fs::read_to_string(f.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        assert_eq!(lines, ["one", "two"]);
    }
}
