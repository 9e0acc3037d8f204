//! Sink UDFs as the outputs of a flow.
//!
//! Every worker writes its own datums: each batch that reaches the sink step is one
//! call of the [`Sinker`] (in-process) or one batch on the worker's sink stream (over
//! the socket). Datums without an id get one, and every datum must be answered; a
//! datum the sink did not write stops the run with an error naming the step.

use std::sync::Arc;

use riffle::sinks::{DynamicSink, SinkPartition};
use riffle::{Stream, WorkerInfo};

use super::step_error;
use crate::client::{ClientOptions, SinkClient};
use crate::datum::{Datum, SinkResponse, SinkStatus};
use crate::runtime::block_on;
use crate::udf::Sinker;

pub(super) fn udf_sink<S: Sinker>(
    stream: &Stream<Datum>,
    step_id: &str,
    sinker: S,
) -> riffle::Result<()> {
    stream.output_dynamic(
        step_id,
        InProcessSink {
            sinker: Arc::new(sinker),
        },
    )
}

pub(super) fn udf_call_sink(
    stream: &Stream<Datum>,
    step_id: &str,
    options: ClientOptions,
) -> riffle::Result<()> {
    stream.output_dynamic(step_id, RemoteSink { options })
}

fn check_sink_responses(step_id: &str, responses: &[SinkResponse]) -> riffle::Result<()> {
    let bad: Vec<&SinkResponse> = responses
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                SinkStatus::Success | SinkStatus::OnSuccess(_) | SinkStatus::Serve(_)
            )
        })
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(first) => Err(step_error(
            step_id,
            format!(
                "the sink did not write {} of {} datums; first: id {:?}: {:?}",
                bad.len(),
                responses.len(),
                first.id,
                first.status
            ),
        )),
    }
}

fn with_ids(mut items: Vec<Datum>, next: &mut u64) -> Vec<Datum> {
    for d in &mut items {
        if d.id.is_empty() {
            d.id = next.to_string();
            *next += 1;
        }
    }
    items
}

struct InProcessSink<S> {
    sinker: Arc<S>,
}

struct InProcessSinkPart<S> {
    step_id: String,
    sinker: Arc<S>,
    next_id: u64,
}

impl<S: Sinker> DynamicSink for InProcessSink<S> {
    type Item = Datum;
    type Partition = InProcessSinkPart<S>;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        Ok(InProcessSinkPart {
            step_id: step_id.to_string(),
            sinker: self.sinker.clone(),
            next_id: 0,
        })
    }
}

impl<S: Sinker> SinkPartition for InProcessSinkPart<S> {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let items = with_ids(items, &mut self.next_id);
        let responses = block_on(self.sinker.sink(items))
            .map_err(|e| step_error(&self.step_id, format!("sink UDF failed: {e}")))?;
        check_sink_responses(&self.step_id, &responses)
    }
}

struct RemoteSink {
    options: ClientOptions,
}

struct RemoteSinkPart {
    step_id: String,
    client: Option<SinkClient>,
}

impl DynamicSink for RemoteSink {
    type Item = Datum;
    type Partition = RemoteSinkPart;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let client = block_on(SinkClient::connect(self.options.clone()))
            .map_err(|e| step_error(step_id, e))?;
        Ok(RemoteSinkPart {
            step_id: step_id.to_string(),
            client: Some(client),
        })
    }
}

impl SinkPartition for RemoteSinkPart {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let Some(client) = self.client.as_mut() else {
            return Err(step_error(&self.step_id, "the sink was already closed"));
        };
        let responses =
            block_on(client.sink_batch(items)).map_err(|e| step_error(&self.step_id, e))?;
        check_sink_responses(&self.step_id, &responses)
    }

    fn close(&mut self) -> riffle::Result<()> {
        match self.client.take() {
            Some(client) => block_on(client.close()).map_err(|e| step_error(&self.step_id, e)),
            None => Ok(()),
        }
    }
}
