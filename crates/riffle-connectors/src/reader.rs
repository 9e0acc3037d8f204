//! Source partitions that read through a task of their own on the shared
//! [`runtime`](crate::runtime): the task talks to the server and hands what it
//! read over a bounded channel; the worker thread, in
//! [`SourcePartition::next_batch`](riffle::sources::SourcePartition::next_batch),
//! takes what is waiting without ever blocking, and says `Pending` when nothing
//! is.
//!
//! The two ends are [`Reader`] (the partition's) and [`Batches`] (the task's).
//! The task is an async function handed a [`Batches`]: it sends each batch with
//! [`Batches::send`] (which waits while the partition has `room` batches not yet
//! taken, so a slow flow slows the reading down) and returns `Ok` when there is
//! nothing more to read, or the error that stopped it. [`Reader`] tells the
//! partition which of these happened:
//!
//! | the task | [`Reader::try_next`] | [`Reader::poll`] of no items |
//! |---|---|---|
//! | sent a batch | `Ok(Some(batch))` | |
//! | has sent nothing more yet | `Ok(None)` | `Pending` |
//! | returned `Ok` (and every batch was taken) | `Ok(None)` | `Exhausted` |
//! | returned an error | that error, for the step | |
//! | went away without a word (a panic) | "the reader of ... stopped", for the step | |
//!
//! A partition's `next_batch` is then a loop that turns batches into items until
//! it has enough or nothing waits, and hands its items to [`Reader::poll`]:
//!
//! ```text
//! let mut out = Vec::new();
//! while out.len() < BATCH {
//!     let Some(lines) = self.reader.try_next(&self.step_id)? else { break };
//!     // decode `lines` into `out`, moving the partition's position on
//! }
//! Ok(self.reader.poll(out))
//! ```
//!
//! Dropping the [`Reader`] (or [`Reader::stop`]) ends the task. Sinks have the
//! same shape the other way round in [`writer`](crate::writer).

use std::future::Future;
use std::task::Waker;

use riffle::sources::Poll;
use tokio::sync::mpsc;

use crate::ready::Ready;
use crate::{ConnectorError, runtime};

/// What the task hands the partition.
enum Read<B> {
    /// One batch, as the connector's task made it.
    Batch(B),
    /// Nothing more to read: the task returned `Ok`.
    Done,
    /// The task stopped on this error.
    Failed(ConnectorError),
}

/// The task's end: where it sends what it read.
pub(crate) struct Batches<B> {
    tx: mpsc::Sender<Read<B>>,
    ready: Ready,
}

/// Room the partition keeps for one batch; see [`Batches::room`].
#[cfg_attr(not(feature = "sqs"), allow(dead_code))]
pub(crate) struct Room<'a, B> {
    permit: mpsc::Permit<'a, Read<B>>,
    ready: &'a Ready,
}

impl<B> Room<'_, B> {
    /// Hands `batch` over into the room kept for it.
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    pub(crate) fn send(self, batch: B) {
        self.permit.send(Read::Batch(batch));
        self.ready.wake();
    }
}

impl<B: Send> Batches<B> {
    /// Hands `batch` to the partition, waiting while it has `room` batches not
    /// yet taken; `false` when the partition is gone (the task should return).
    #[cfg_attr(not(any(feature = "objects", feature = "redis")), allow(dead_code))]
    pub(crate) async fn send(&self, batch: B) -> bool {
        let sent = self.tx.send(Read::Batch(batch)).await.is_ok();
        self.ready.wake();
        sent
    }

    /// Waits until the partition has room for one more batch, and keeps it: for
    /// a task that should ask the server for more only once what comes can be
    /// taken at once (a message's visibility timeout runs from its receipt).
    /// `None` when the partition is gone.
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    pub(crate) async fn room(&self) -> Option<Room<'_, B>> {
        let ready = &self.ready;
        self.tx
            .reserve()
            .await
            .ok()
            .map(|permit| Room { permit, ready })
    }

    /// Whether the partition is gone.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The partition's end: the batches its task read, taken without blocking.
pub(crate) struct Reader<B> {
    batches: mpsc::Receiver<Read<B>>,
    ready: Ready,
    task: tokio::task::JoinHandle<()>,
    done: bool,
    /// The error for a task gone without a word: connector, server, action.
    stopped: (&'static str, String, String),
}

impl<B: Send + 'static> Reader<B> {
    /// Starts `read` on the shared runtime with a channel holding `room`
    /// batches (at least 1). `stopped` is the error said if the task ends
    /// without returning (e.g. `the reader of stream "orders" stopped`).
    pub(crate) fn start<F, R>(room: usize, stopped: ConnectorError, read: R) -> Self
    where
        R: FnOnce(Batches<B>) -> F,
        F: Future<Output = Result<(), ConnectorError>> + Send + 'static,
    {
        let (tx, batches) = mpsc::channel(room.max(1));
        let ready = Ready::default();
        let (end, woken) = (tx.clone(), ready.clone());
        let reading = read(Batches {
            tx,
            ready: ready.clone(),
        });
        let task = runtime::handle().spawn(async move {
            let last = match reading.await {
                Ok(()) => Read::Done,
                Err(e) => Read::Failed(e),
            };
            // A partition already gone needs no word.
            let _ = end.send(last).await;
            woken.wake();
        });
        let ConnectorError {
            connector,
            server,
            action,
            ..
        } = stopped;
        Self {
            batches,
            ready,
            task,
            done: false,
            stopped: (connector, server, action),
        }
    }

    /// Has the task wake `waker` after each batch it sends, and when it ends:
    /// what a partition's
    /// [`wake_on_ready`](riffle::sources::SourcePartition::wake_on_ready) does.
    pub(crate) fn wake_on_ready(&self, waker: &Waker) {
        self.ready.set(waker);
    }

    /// The next batch the task read, or `None` when none waits now (or the task
    /// is done); the task's error, or the error for a task gone, for `step_id`.
    pub(crate) fn try_next(&mut self, step_id: &str) -> riffle::Result<Option<B>> {
        if self.done {
            return Ok(None);
        }
        match self.batches.try_recv() {
            Ok(Read::Batch(batch)) => Ok(Some(batch)),
            Ok(Read::Done) => {
                self.done = true;
                Ok(None)
            }
            Ok(Read::Failed(e)) => Err(e.for_step(step_id)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => {
                let (connector, server, action) = &self.stopped;
                Err(
                    ConnectorError::new(connector, server.clone(), action.clone())
                        .for_step(step_id),
                )
            }
        }
    }

    /// What a poll returns with `items`: them, or, with none, `Exhausted` once
    /// the task is done and every batch taken, `Pending` before.
    pub(crate) fn poll<T>(&self, items: Vec<T>) -> Poll<T> {
        if !items.is_empty() {
            Poll::Ready(items)
        } else if self.done {
            Poll::Exhausted
        } else {
            Poll::Pending
        }
    }

    /// Ends the task (dropping the reader does too).
    #[cfg_attr(not(any(feature = "sqs", feature = "redis")), allow(dead_code))]
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl<B> Drop for Reader<B> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn stopped() -> ConnectorError {
        ConnectorError::new("test", "nowhere", "the reader of \"numbers\" stopped")
    }

    /// Polls like a worker until the partition is exhausted or fails, at most 5 s:
    /// every item taken, and how it ended.
    fn drain(reader: &mut Reader<Vec<u32>>) -> (Vec<u32>, riffle::Result<()>) {
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let mut out = Vec::new();
            loop {
                match reader.try_next("step") {
                    Ok(Some(batch)) => out.extend(batch),
                    Ok(None) => break,
                    Err(e) => {
                        seen.extend(out);
                        return (seen, Err(e));
                    }
                }
            }
            match reader.poll(out) {
                Poll::Ready(items) => seen.extend(items),
                Poll::Exhausted => return (seen, Ok(())),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        panic!("the reader never finished; seen {seen:?}");
    }

    #[test]
    fn every_batch_comes_in_order_then_the_partition_is_exhausted() {
        // Room for one batch only: the task waits for the partition to take each.
        let mut reader = Reader::start(1, stopped(), |batches| async move {
            for start in (0..100).step_by(10) {
                if !batches.send((start..start + 10).collect()).await {
                    return Ok(());
                }
            }
            Ok(())
        });
        let (seen, end) = drain(&mut reader);
        end.unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // Exhausted stays exhausted.
        assert!(matches!(reader.try_next("step"), Ok(None)));
        assert!(matches!(reader.poll(Vec::<u32>::new()), Poll::Exhausted));
    }

    #[test]
    fn what_was_read_before_a_failure_comes_first_then_the_error_for_the_step() {
        let mut reader = Reader::start(4, stopped(), |batches| async move {
            let Some(room) = batches.room().await else {
                return Ok(());
            };
            room.send(vec![1, 2]);
            Err(ConnectorError::new(
                "test",
                "nowhere",
                "the server went away",
            ))
        });
        let (seen, end) = drain(&mut reader);
        assert_eq!(seen, vec![1, 2]);
        let err = end.unwrap_err().to_string();
        assert!(
            err.contains("step") && err.contains("the server went away"),
            "{err}"
        );
    }

    #[test]
    fn a_task_gone_without_a_word_is_an_error_naming_the_reader() {
        let mut reader = Reader::<Vec<u32>>::start(4, stopped(), |_batches| async move {
            panic!("the test's reader breaks");
        });
        let (seen, end) = drain(&mut reader);
        assert!(seen.is_empty());
        let err = end.unwrap_err().to_string();
        assert!(err.contains("test at nowhere"), "{err}");
        assert!(err.contains("the reader of \"numbers\" stopped"), "{err}");
    }

    #[test]
    fn dropping_the_reader_ends_its_task_even_while_it_waits() {
        /// Says so when the task's future is dropped (the task ended).
        struct Ended(std::sync::mpsc::Sender<()>);
        impl Drop for Ended {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let (told, heard) = std::sync::mpsc::channel();
        let reader = Reader::<u32>::start(1, stopped(), move |batches| async move {
            let _ended = Ended(told);
            batches.send(1).await;
            // The partition never takes the first: this waits for ever.
            batches.send(2).await;
            std::future::pending::<()>().await;
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(heard.try_recv().is_err(), "the task ended on its own");
        drop(reader);
        heard
            .recv_timeout(Duration::from_secs(2))
            .expect("the task still runs after its reader was dropped");
    }

    #[test]
    fn a_thread_parked_for_a_batch_is_woken_when_it_comes_and_when_the_task_ends() {
        /// Unparks the test's thread and counts the wakes.
        struct Unpark(std::thread::Thread, std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.wake_by_ref();
            }
            fn wake_by_ref(self: &std::sync::Arc<Self>) {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.0.unpark();
            }
        }
        let wakes = std::sync::Arc::new(Unpark(std::thread::current(), 0.into()));
        let (go, gone) = tokio::sync::oneshot::channel::<()>();
        let mut reader = Reader::start(4, stopped(), |batches| async move {
            let _ = gone.await;
            batches.send(vec![7u32]).await;
            Ok(())
        });
        reader.wake_on_ready(&Waker::from(wakes.clone()));
        assert!(matches!(reader.try_next("step"), Ok(None)));
        let asked = Instant::now();
        go.send(()).unwrap();
        // Parked far longer than a batch takes: only a wake ends it early.
        let mut batch = None;
        while batch.is_none() && asked.elapsed() < Duration::from_secs(5) {
            std::thread::park_timeout(Duration::from_secs(5));
            batch = reader.try_next("step").unwrap();
        }
        assert_eq!(batch, Some(vec![7]));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "woken only after {:?}",
            asked.elapsed()
        );
        let until = Instant::now() + Duration::from_secs(5);
        while wakes.1.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < until {
            std::thread::park_timeout(Duration::from_millis(100));
        }
        assert_eq!(
            wakes.1.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the end wakes too"
        );
        assert!(matches!(reader.try_next("step"), Ok(None)));
        assert!(matches!(reader.poll(Vec::<u32>::new()), Poll::Exhausted));
    }
}
