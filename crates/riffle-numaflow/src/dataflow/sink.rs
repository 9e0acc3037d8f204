//! Sink UDFs as the outputs of a flow, with an optional fallback sink.
//!
//! A [`SinkUdf`] is where a sink step writes: a [`Sinker`] called in-process, or a
//! sink server of any language over its socket. Every worker writes its own datums:
//! each batch that reaches the step is one call of the sink. Datums without an id
//! get one (ids must be unique within a batch, since a sink answers each datum by
//! its id), and every datum must be answered.
//!
//! A sink answers each datum with a [`SinkStatus`]:
//!
//! - written (`Success`, or `OnSuccess` / `Serve`): done;
//! - `Fallback`: the sink hands the datum on. With a fallback sink
//!   ([`udf_sink_with_fallback`](super::UdfStreamExt::udf_sink_with_fallback)),
//!   those datums are written there, in one batch per primary batch, and must be
//!   written by it; without one, the run stops;
//! - `Failure`: the run stops with an error naming the step, the number of datums
//!   not written and the first one's reason.
//!
//! A fallback sink server is expected to run as Numaflow runs one (as
//! `fb-udsink`, writing `fb-sinker-server-info`); errors name it `fallback-sink`.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use riffle::{Dataflow, sources::TestingSource};
//! use riffle_numaflow::dataflow::{SinkUdf, UdfStreamExt};
//! use riffle_numaflow::udf::sink_fn;
//! use riffle_numaflow::{Datum, SinkResponse};
//!
//! // The primary sink takes short values only; long ones go to the fallback.
//! let primary = sink_fn(|batch: Vec<Datum>| Ok(batch.into_iter().map(|d| {
//!     if d.value.len() <= 3 { SinkResponse::success(d.id) } else { SinkResponse::fallback(d.id) }
//! }).collect()));
//! let parked = Arc::new(Mutex::new(Vec::new()));
//! let park = parked.clone();
//! let fallback = sink_fn(move |batch: Vec<Datum>| Ok(batch.into_iter().map(|d| {
//!     park.lock().unwrap().push(String::from_utf8_lossy(&d.value).to_string());
//!     SinkResponse::success(d.id)
//! }).collect()));
//!
//! let flow = Dataflow::new("sink");
//! flow.input("in", TestingSource::new(vec![Datum::new("ok"), Datum::new("too long")]))?
//!     .udf_sink_with_fallback("write", SinkUdf::new(primary), SinkUdf::new(fallback))?;
//! riffle::run_main(&flow)?;
//! assert_eq!(*parked.lock().unwrap(), ["too long"]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use riffle::sinks::{DynamicSink, SinkPartition};
use riffle::{RiffleError, Stream, WorkerInfo};

use super::step_error;
use crate::client::{ClientOptions, SinkClient};
use crate::datum::{Datum, SinkResponse, SinkStatus};
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::Sinker;

/// Where a sink step writes: a [`Sinker`] in-process, or a sink server over its
/// socket; see the [module docs](self).
#[derive(Clone)]
pub struct SinkUdf {
    open: Arc<OpenWriter>,
}

/// Opens one worker's writer, in a role (`Sink` or `FallbackSink`).
type OpenWriter = dyn Fn(UdfKind) -> crate::Result<Box<dyn SinkWriter>> + Send + Sync;

impl SinkUdf {
    /// A sink called in-process, on the worker that holds the datums.
    pub fn new<S: Sinker>(sinker: S) -> Self {
        let sinker = Arc::new(sinker);
        Self {
            open: Arc::new(move |role| {
                Ok(Box::new(InProcess {
                    sinker: sinker.clone(),
                    role,
                }) as Box<dyn SinkWriter>)
            }),
        }
    }

    /// A sink server over its socket; each worker opens its own stream.
    pub fn call(options: ClientOptions) -> Self {
        Self {
            open: Arc::new(move |role| {
                let client = block_on(SinkClient::connect_kind(role, options.clone()))?;
                Ok(Box::new(Remote {
                    client: Some(client),
                }) as Box<dyn SinkWriter>)
            }),
        }
    }
}

impl std::fmt::Debug for SinkUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkUdf")
    }
}

/// One worker's connection to a sink.
trait SinkWriter {
    /// Writes a batch; one response per datum, in the batch's order.
    fn write(&mut self, batch: Vec<Datum>) -> Result<Vec<SinkResponse>, String>;
    /// Ends the stream, if there is one.
    fn close(&mut self) -> Result<(), String> {
        Ok(())
    }
}

struct InProcess<S> {
    sinker: Arc<S>,
    role: UdfKind,
}

impl<S: Sinker> SinkWriter for InProcess<S> {
    fn write(&mut self, batch: Vec<Datum>) -> Result<Vec<SinkResponse>, String> {
        let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
        let responses = block_on(self.sinker.sink(batch))
            .map_err(|e| format!("{} UDF failed: {e}", self.role))?;
        let mut by_id: HashMap<String, SinkResponse> =
            responses.into_iter().map(|r| (r.id.clone(), r)).collect();
        ids.iter()
            .map(|id| {
                by_id.remove(id).ok_or_else(|| {
                    format!("{} UDF answered nothing for datum id {id:?}", self.role)
                })
            })
            .collect()
    }
}

struct Remote {
    client: Option<SinkClient>,
}

impl SinkWriter for Remote {
    fn write(&mut self, batch: Vec<Datum>) -> Result<Vec<SinkResponse>, String> {
        let client = self.client.as_mut().ok_or("the sink was already closed")?;
        block_on(client.sink_batch(batch)).map_err(|e| e.to_string())
    }

    fn close(&mut self) -> Result<(), String> {
        match self.client.take() {
            Some(client) => block_on(client.close()).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

pub(super) fn udf_sink_to(
    stream: &Stream<Datum>,
    step_id: &str,
    primary: SinkUdf,
    fallback: Option<SinkUdf>,
) -> riffle::Result<()> {
    stream.output_dynamic(step_id, UdfSink { primary, fallback })
}

struct UdfSink {
    primary: SinkUdf,
    fallback: Option<SinkUdf>,
}

impl DynamicSink for UdfSink {
    type Item = Datum;
    type Partition = UdfSinkPart;

    fn build(&self, step_id: &str, _worker: WorkerInfo) -> riffle::Result<Self::Partition> {
        let open = |sink: &SinkUdf, role| (sink.open)(role).map_err(|e| step_error(step_id, e));
        let primary = open(&self.primary, UdfKind::Sink)?;
        let fallback = match &self.fallback {
            Some(sink) => Some(open(sink, UdfKind::FallbackSink)?),
            None => None,
        };
        Ok(UdfSinkPart {
            step_id: step_id.to_string(),
            primary,
            fallback,
            next_id: 0,
        })
    }
}

struct UdfSinkPart {
    step_id: String,
    primary: Box<dyn SinkWriter>,
    fallback: Option<Box<dyn SinkWriter>>,
    next_id: u64,
}

impl UdfSinkPart {
    fn error(&self, e: impl std::fmt::Display) -> RiffleError {
        step_error(&self.step_id, e)
    }

    /// Gives every datum without an id one, and refuses a batch with an id twice.
    fn with_ids(&mut self, mut items: Vec<Datum>) -> riffle::Result<Vec<Datum>> {
        let mut seen = HashSet::with_capacity(items.len());
        for d in &mut items {
            if d.id.is_empty() {
                d.id = format!("riffle-{}", self.next_id);
                self.next_id += 1;
            }
            if !seen.insert(d.id.clone()) {
                return Err(self.error(format!(
                    "two datums of one batch have the id {:?}; a sink answers each datum by \
                     its id, so ids must be unique",
                    d.id
                )));
            }
        }
        Ok(items)
    }
}

impl SinkPartition for UdfSinkPart {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let items = self.with_ids(items)?;
        let kept = self.fallback.is_some().then(|| items.clone());
        let responses = self.primary.write(items).map_err(|e| self.error(e))?;
        let mut handed_on = Vec::new();
        let mut failed = Vec::new();
        for (i, r) in responses.iter().enumerate() {
            match &r.status {
                SinkStatus::Success | SinkStatus::OnSuccess(_) | SinkStatus::Serve(_) => {}
                SinkStatus::Fallback => handed_on.push(i),
                SinkStatus::Failure(_) => failed.push(r),
            }
        }
        if let Some(first) = failed.first() {
            return Err(self.error(not_written("sink", &failed, responses.len(), first)));
        }
        if handed_on.is_empty() {
            return Ok(());
        }
        let (Some(fallback), Some(mut kept)) = (self.fallback.as_mut(), kept) else {
            return Err(self.error(format!(
                "the sink sent {} of {} datums to fallback (first: id {:?}) and the step has \
                 no fallback sink; use udf_sink_with_fallback",
                handed_on.len(),
                responses.len(),
                responses[handed_on[0]].id
            )));
        };
        let batch: Vec<Datum> = handed_on
            .iter()
            .map(|&i| std::mem::replace(&mut kept[i], Datum::new(Vec::new())))
            .collect();
        let count = batch.len();
        let responses = fallback
            .write(batch)
            .map_err(|e| step_error(&self.step_id, e))?;
        let refused: Vec<&SinkResponse> = responses
            .iter()
            .filter(|r| {
                !matches!(
                    r.status,
                    SinkStatus::Success | SinkStatus::OnSuccess(_) | SinkStatus::Serve(_)
                )
            })
            .collect();
        match refused.first() {
            None => Ok(()),
            Some(first) => Err(self.error(not_written("fallback sink", &refused, count, first))),
        }
    }

    fn close(&mut self) -> riffle::Result<()> {
        let primary = self.primary.close();
        let fallback = self.fallback.as_mut().map_or(Ok(()), |f| f.close());
        primary.and(fallback).map_err(|e| self.error(e))
    }
}

fn not_written(sink: &str, bad: &[&SinkResponse], of: usize, first: &SinkResponse) -> String {
    format!(
        "the {sink} did not write {} of {of} datums; first: id {:?}: {:?}",
        bad.len(),
        first.id,
        first.status
    )
}
