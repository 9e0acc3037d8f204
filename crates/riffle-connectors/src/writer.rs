//! Sink partitions that write through a task of their own on the shared
//! [`runtime`](crate::runtime): the worker thread hands each batch over and goes
//! on; the task writes the batches one after the other (so they keep their
//! order) and answers each; the partition waits for the answers only when it
//! must: too many batches in flight, a flush, a snapshot, the close.
//!
//! A connector says how one batch is written ([`BatchWriter`]); [`InFlight`]
//! does the rest. A failed batch ends the task, and its error is what the
//! partition reports, at the latest at the next flush.

use std::collections::VecDeque;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

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

/// The batches a sink partition has handed to its writing task and not yet
/// heard back about, oldest first.
pub(crate) struct InFlight<B> {
    jobs: mpsc::Sender<(B, oneshot::Sender<Result<(), ConnectorError>>)>,
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
        let (jobs, mut queue) =
            mpsc::channel::<(B, oneshot::Sender<Result<(), ConnectorError>>)>(limit);
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
