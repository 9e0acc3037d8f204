//! User-defined sources as the inputs of a flow.
//!
//! A source UDF is read on worker 0 only (a Numaflow source is one reader that
//! hands out partitions itself); the other workers' partitions are empty. Each poll
//! reads up to `batch_size` messages, and the batch is acknowledged once it entered
//! the flow. The source ends when a read returns nothing and the source reports no
//! pending messages (`pending` answers 0); a source that does not know its backlog
//! keeps being polled.

use std::sync::Arc;
use std::time::Duration;

use riffle::sources::{DynamicSource, Poll, SourcePartition};
use riffle::{Dataflow, Stream, WorkerInfo};

use super::step_error;
use crate::client::{ClientOptions, SourceClient};
use crate::datum::{ReadRequest, SourceMessage};
use crate::runtime::block_on;
use crate::udf::{MessageSender, Sourcer};

pub(super) fn udf_source<S: Sourcer>(
    flow: &Dataflow,
    step_id: &str,
    sourcer: S,
    batch_size: u64,
) -> riffle::Result<Stream<SourceMessage>> {
    flow.input_dynamic(
        step_id,
        InProcessSource {
            sourcer: Arc::new(sourcer),
            batch_size,
        },
    )
}

pub(super) fn udf_call_source(
    flow: &Dataflow,
    step_id: &str,
    options: ClientOptions,
    batch_size: u64,
) -> riffle::Result<Stream<SourceMessage>> {
    flow.input_dynamic(
        step_id,
        RemoteSource {
            options,
            batch_size,
        },
    )
}

struct InProcessSource<S> {
    sourcer: Arc<S>,
    batch_size: u64,
}

struct InProcessSourcePart<S> {
    step_id: String,
    sourcer: Option<Arc<S>>,
    batch_size: u64,
}

impl<S: Sourcer> DynamicSource for InProcessSource<S> {
    type Item = SourceMessage;
    type Partition = InProcessSourcePart<S>;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let sourcer = (worker.index == 0).then(|| self.sourcer.clone());
        Ok(InProcessSourcePart {
            step_id: step_id.to_string(),
            sourcer,
            batch_size: self.batch_size.max(1),
        })
    }
}

impl<S: Sourcer> SourcePartition for InProcessSourcePart<S> {
    type Item = SourceMessage;
    type State = ();

    fn next_batch(&mut self) -> riffle::Result<Poll<SourceMessage>> {
        let Some(sourcer) = &self.sourcer else {
            return Ok(Poll::Exhausted);
        };
        let request = ReadRequest {
            count: self.batch_size,
            timeout: Duration::from_millis(10),
        };
        let step_id = &self.step_id;
        let read = block_on(async {
            let (out, mut rx) = MessageSender::channel(self.batch_size as usize);
            let reading = sourcer.read(request, out);
            let collecting = async {
                let mut all = Vec::new();
                while let Some(m) = rx.recv().await {
                    all.push(m);
                }
                all
            };
            let (done, all) = tokio::join!(reading, collecting);
            done.map(|()| all)
        })
        .map_err(|e| step_error(step_id, format!("source UDF read failed: {e}")))?;
        if read.is_empty() {
            let pending = block_on(sourcer.pending())
                .map_err(|e| step_error(step_id, format!("source UDF pending failed: {e}")))?;
            return Ok(if pending == Some(0) {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        let offsets = read.iter().map(|m| m.offset.clone()).collect();
        block_on(sourcer.ack(offsets))
            .map_err(|e| step_error(step_id, format!("source UDF ack failed: {e}")))?;
        Ok(Poll::Ready(read))
    }
}

struct RemoteSource {
    options: ClientOptions,
    batch_size: u64,
}

struct RemoteSourcePart {
    step_id: String,
    client: Option<SourceClient>,
    batch_size: u64,
}

impl DynamicSource for RemoteSource {
    type Item = SourceMessage;
    type Partition = RemoteSourcePart;

    fn build(&self, step_id: &str, worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let client = if worker.index == 0 {
            Some(
                block_on(SourceClient::connect(self.options.clone()))
                    .map_err(|e| step_error(step_id, e))?,
            )
        } else {
            None
        };
        Ok(RemoteSourcePart {
            step_id: step_id.to_string(),
            client,
            batch_size: self.batch_size.max(1),
        })
    }
}

impl SourcePartition for RemoteSourcePart {
    type Item = SourceMessage;
    type State = ();

    fn next_batch(&mut self) -> riffle::Result<Poll<SourceMessage>> {
        let Some(client) = self.client.as_mut() else {
            return Ok(Poll::Exhausted);
        };
        let step_id = &self.step_id;
        let read = block_on(client.read(self.batch_size, Duration::from_millis(10)))
            .map_err(|e| step_error(step_id, e))?;
        if read.is_empty() {
            let pending = block_on(client.pending()).map_err(|e| step_error(step_id, e))?;
            return Ok(if pending == Some(0) {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        let offsets: Vec<_> = read.iter().map(|m| m.offset.clone()).collect();
        block_on(client.ack(&offsets)).map_err(|e| step_error(step_id, e))?;
        Ok(Poll::Ready(read))
    }

    fn close(&mut self) -> riffle::Result<()> {
        match self.client.take() {
            Some(client) => block_on(client.close()).map_err(|e| step_error(&self.step_id, e)),
            None => Ok(()),
        }
    }
}
