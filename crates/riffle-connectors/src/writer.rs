//! Sink partitions that write through a task of their own on the shared
//! [`runtime`](crate::runtime): the worker thread hands each batch over and goes
//! on; the task writes the batches one after the other (so they keep their
//! order) and answers each; the partition waits for the answers only when it
//! must: too many batches in flight, a flush, a snapshot, the close.
//!
//! A connector says how one batch is written ([`BatchWriter`]); [`InFlight`]
//! does the rest. A failed batch ends the task, and its error is what the
//! partition reports, at the latest at the next flush.
//!
//! Where order does not matter and each write waits on the network (SQS's
//! standard queues), [`InFlight::start_parallel`] writes up to `parallel`
//! batches at once, each through a clone of the writer; the partition still
//! hears back oldest first.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{ConnectorError, runtime};

/// How a sink writes one batch, on the shared runtime.
pub(crate) trait BatchWriter: Send + 'static {
    /// What the partition hands over.
    type Batch: Send + 'static;

    /// Writes `batch` (through reconnections, if the connector does that) or
    /// says why not.
    fn write(
        &mut self,
        batch: Self::Batch,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Called once after the last batch, or after a failed one.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What the task answers for one batch.
type Answer = oneshot::Receiver<Result<(), ConnectorError>>;

/// A batch handed to the task, and where its answer goes.
type Job<B> = (B, oneshot::Sender<Result<(), ConnectorError>>);

/// The batches a sink partition has handed to its writing task and not yet
/// heard back about, oldest first.
pub(crate) struct InFlight<B> {
    jobs: mpsc::Sender<Job<B>>,
    answers: VecDeque<Answer>,
    limit: usize,
    /// The error when the task is gone without an answer: connector, server and
    /// what was being written.
    stopped: (&'static str, String, String),
}

impl<B: Send + 'static> InFlight<B> {
    /// Starts `writer`'s task; at most `limit` batches are in flight before
    /// [`InFlight::send`] waits. `what` names what is written (e.g. `stream
    /// "orders"`) in the error for a task that stopped.
    pub(crate) fn start<W: BatchWriter<Batch = B>>(
        mut writer: W,
        limit: usize,
        connector: &'static str,
        server: String,
        what: String,
    ) -> Self {
        let limit = limit.max(1);
        let (jobs, mut queue) = mpsc::channel::<Job<B>>(limit);
        runtime::handle().spawn(async move {
            while let Some((batch, done)) = queue.recv().await {
                let written = writer.write(batch).await;
                let failed = written.is_err();
                let _ = done.send(written);
                if failed {
                    break;
                }
            }
            writer.close().await;
        });
        Self::new(jobs, limit, connector, server, what)
    }

    /// The same, writing up to `parallel` batches at once, each through a clone
    /// of `writer` (so in no given order); `close` is called on `writer` once
    /// every write has ended. After a failed batch, those already being written
    /// finish and no other starts.
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    pub(crate) fn start_parallel<W: BatchWriter<Batch = B> + Clone>(
        mut writer: W,
        limit: usize,
        parallel: usize,
        connector: &'static str,
        server: String,
        what: String,
    ) -> Self {
        let limit = limit.max(1);
        let parallel = parallel.clamp(1, Semaphore::MAX_PERMITS);
        let (jobs, mut queue) = mpsc::channel::<Job<B>>(limit);
        runtime::handle().spawn(async move {
            let slots = Arc::new(Semaphore::new(parallel));
            let failed = Arc::new(AtomicBool::new(false));
            while let Some((batch, done)) = queue.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let (mut writer, failed) = (writer.clone(), failed.clone());
                tokio::spawn(async move {
                    let written = writer.write(batch).await;
                    if written.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    let _ = done.send(written);
                    drop(slot);
                });
            }
            // Every write running ends before the close.
            let _ = slots.acquire_many(parallel as u32).await;
            writer.close().await;
        });
        Self::new(jobs, limit, connector, server, what)
    }

    fn new(
        jobs: mpsc::Sender<Job<B>>,
        limit: usize,
        connector: &'static str,
        server: String,
        what: String,
    ) -> Self {
        Self {
            jobs,
            answers: VecDeque::new(),
            limit,
            stopped: (connector, server, format!("the writer of {what} stopped")),
        }
    }

    fn stopped(&self) -> ConnectorError {
        let (connector, server, action) = &self.stopped;
        ConnectorError::new(connector, server.clone(), action.clone())
    }

    /// Hands `batch` to the task, first waiting for the oldest answers while
    /// `limit` are in flight. From a worker thread, never from async code.
    pub(crate) fn send(&mut self, batch: B) -> Result<(), ConnectorError> {
        while self.answers.len() >= self.limit {
            self.wait_one()?;
        }
        let (done, answer) = oneshot::channel();
        if self.jobs.blocking_send((batch, done)).is_err() {
            // The task stopped on an error: its answer says which.
            self.flush()?;
            return Err(self.stopped());
        }
        self.answers.push_back(answer);
        Ok(())
    }

    /// Waits for the oldest batch in flight.
    pub(crate) fn wait_one(&mut self) -> Result<(), ConnectorError> {
        let Some(answer) = self.answers.pop_front() else {
            return Ok(());
        };
        match answer.blocking_recv() {
            Ok(answered) => answered,
            Err(_) => Err(self.stopped()),
        }
    }

    /// Waits until every batch handed over is written.
    pub(crate) fn flush(&mut self) -> Result<(), ConnectorError> {
        while !self.answers.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts the writes running at once; a batch of 0 fails.
    #[derive(Clone, Default)]
    struct Counting {
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        written: Arc<AtomicUsize>,
    }

    impl BatchWriter for Counting {
        type Batch = u32;

        async fn write(&mut self, batch: u32) -> Result<(), ConnectorError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            if batch == 0 {
                return Err(ConnectorError::new("test", "nowhere", "batch 0 refused"));
            }
            self.written.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn start(writer: &Counting, parallel: usize) -> InFlight<u32> {
        let what = "numbers".to_string();
        InFlight::start_parallel(writer.clone(), 4, parallel, "test", "nowhere".into(), what)
    }

    #[test]
    fn parallel_writes_stay_within_their_number_and_are_all_answered() {
        let writer = Counting::default();
        let mut batches = start(&writer, 2);
        for n in 1..=8 {
            batches.send(n).unwrap();
        }
        batches.flush().unwrap();
        assert_eq!(writer.written.load(Ordering::SeqCst), 8);
        assert_eq!(writer.most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_parallel_write_is_the_error_the_partition_hears() {
        let writer = Counting::default();
        let mut batches = start(&writer, 2);
        batches.send(1).unwrap();
        batches.send(0).unwrap();
        let err = batches.flush().unwrap_err().to_string();
        assert!(err.contains("batch 0 refused"), "{err}");
        // No write starts after the failure was seen: the next is refused.
        std::thread::sleep(Duration::from_millis(100));
        let err = batches
            .send(2)
            .and_then(|()| batches.flush())
            .unwrap_err()
            .to_string();
        assert!(err.contains("the writer of numbers stopped"), "{err}");
    }
}
