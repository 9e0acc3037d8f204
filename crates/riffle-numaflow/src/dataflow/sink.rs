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
//! - `Failure`: the datums refused are written again under the step's
//!   [`SinkRetry`] strategy (as Numaflow's sink `retryStrategy`): after a pause that
//!   grows from `interval` by `factor` up to `cap`, up to `steps` times. What is still
//!   refused then goes where [`OnFailure`] says: to the fallback sink, dropped (said
//!   on stderr), retried on forever, or, by default, to the fallback sink when the
//!   step has one and otherwise nowhere: the run stops with an error naming the step,
//!   the number of datums not written and the first one's reason. So by default no
//!   datum is lost without the run failing.
//!
//! A sink that answers `OnSuccess` hands a message on to the step's on-success sink
//! ([`SinkUdf::with_on_success`]), as Numaflow does; without one that answer is a
//! success.
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
use std::time::Duration;

use riffle::sinks::{DynamicSink, SinkPartition};
use riffle::{RiffleError, Stream, WorkerInfo};

use super::step_error;
use crate::client::{ClientOptions, SinkClient};
use crate::datum::{Datum, Message, SinkResponse, SinkStatus};
use crate::kind::UdfKind;
use crate::runtime::block_on;
use crate::udf::Sinker;

/// Where a sink step writes: a [`Sinker`] in-process, or a sink server over its
/// socket, and what to do with the datums it refuses; see the [module docs](self).
#[derive(Clone)]
pub struct SinkUdf {
    open: Arc<OpenWriter>,
    retry: SinkRetry,
    on_success: Option<Arc<SinkUdf>>,
}

/// What a sink step does with datums its sink still refuses after the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Send them to the fallback sink when the step has one; otherwise stop the run
    /// with an error. Nothing is dropped.
    #[default]
    FallbackOrStop,
    /// Send them to the fallback sink; a step without one stops the run.
    Fallback,
    /// Keep retrying, with the pause capped at `cap`, for as long as it takes.
    Retry,
    /// Drop them, saying how many and why on stderr.
    Drop,
    /// Stop the run with an error naming them.
    Stop,
}

/// How a sink step retries the datums its sink refused (Numaflow's sink retry
/// strategy): `steps` more tries, pausing `interval` before the first and `factor`
/// times longer before each next one (at most `cap`), then [`OnFailure`].
///
/// ```
/// use std::time::Duration;
/// use riffle_numaflow::dataflow::{OnFailure, SinkRetry};
///
/// let retry = SinkRetry::default()
///     .backoff(Duration::from_millis(5), 4)
///     .on_failure(OnFailure::Drop);
/// assert_eq!(retry.pause(0), Duration::from_millis(5));
/// assert_eq!(retry.pause(2), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkRetry {
    /// The pause before the first retry.
    pub interval: Duration,
    /// How many retries.
    pub steps: u32,
    /// How much longer each pause is than the one before.
    pub factor: f64,
    /// The longest pause.
    pub cap: Duration,
    /// Where what is still refused goes.
    pub on_failure: OnFailure,
}

impl Default for SinkRetry {
    /// 3 retries after 10, 20 and 40 ms, then [`OnFailure::FallbackOrStop`].
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(10),
            steps: 3,
            factor: 2.0,
            cap: Duration::from_secs(1),
            on_failure: OnFailure::default(),
        }
    }
}

impl SinkRetry {
    /// Retries `steps` times, the first after `interval`.
    pub fn backoff(mut self, interval: Duration, steps: u32) -> Self {
        self.interval = interval;
        self.steps = steps;
        self
    }

    /// Each pause `factor` times the one before, at most `cap`.
    pub fn growth(mut self, factor: f64, cap: Duration) -> Self {
        self.factor = factor.max(1.0);
        self.cap = cap;
        self
    }

    /// Where what is still refused after the retries goes.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The pause before retry number `attempt` (from 0).
    pub fn pause(&self, attempt: u32) -> Duration {
        let grown = self.interval.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(grown.min(self.cap.as_secs_f64()))
    }
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
            retry: SinkRetry::default(),
            on_success: None,
        }
    }

    /// The same sink, forwarding what it answers `OnSuccess` to `sink` (in the
    /// on-success role, as Numaflow does): the message the answer carries, with the
    /// datum's id, event time and headers, or the datum itself when it carries none.
    /// Every forwarded datum must be written there, or the run stops.
    pub fn with_on_success(mut self, sink: SinkUdf) -> Self {
        self.on_success = Some(Arc::new(sink));
        self
    }

    /// The same sink, retrying refused datums with `retry` (see [`SinkRetry`]).
    pub fn with_retry(mut self, retry: SinkRetry) -> Self {
        self.retry = retry;
        self
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
            retry: SinkRetry::default(),
            on_success: None,
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

impl Drop for Remote {
    /// A run that stops on an error drops its sinks unclosed. Cancelling the stream
    /// would make some servers (pynumaflow's) shut down, so end it cleanly here too,
    /// waiting at most two seconds; not inside async code, and not while panicking.
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() && !std::thread::panicking() {
            let close =
                async { tokio::time::timeout(Duration::from_secs(2), client.close()).await };
            let _ = block_on(close);
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
        let on_success = match &self.primary.on_success {
            Some(sink) => Some(open(sink, UdfKind::OnSuccessSink)?),
            None => None,
        };
        Ok(UdfSinkPart {
            step_id: step_id.to_string(),
            primary,
            fallback,
            on_success,
            retry: self.primary.retry,
            next_id: 0,
        })
    }
}

struct UdfSinkPart {
    step_id: String,
    primary: Box<dyn SinkWriter>,
    fallback: Option<Box<dyn SinkWriter>>,
    on_success: Option<Box<dyn SinkWriter>>,
    retry: SinkRetry,
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

impl UdfSinkPart {
    /// Writes what the sink answered `OnSuccess` to the on-success sink, if the step
    /// has one (without one, such an answer is just a success).
    fn forward_on_success(
        &mut self,
        kept: &[Datum],
        mut forwarded: Vec<(usize, Option<Message>)>,
    ) -> riffle::Result<()> {
        let Some(on_success) = self.on_success.as_mut() else {
            return Ok(());
        };
        if forwarded.is_empty() {
            return Ok(());
        }
        forwarded.sort_by_key(|(i, _)| *i);
        let batch: Vec<Datum> = forwarded
            .into_iter()
            .map(|(i, message)| {
                let mut datum = kept[i].clone();
                if let Some(m) = message {
                    datum.value = m.value;
                    datum.keys = m.keys;
                }
                datum
            })
            .collect();
        let count = batch.len();
        let responses = on_success
            .write(batch)
            .map_err(|e| step_error(&self.step_id, e))?;
        let refused: Vec<&SinkResponse> = responses
            .iter()
            .filter(|r| !matches!(r.status, SinkStatus::Success | SinkStatus::Serve(_)))
            .collect();
        match refused.first() {
            None => Ok(()),
            Some(first) => Err(self.error(not_written("on-success sink", &refused, count, first))),
        }
    }
}

impl SinkPartition for UdfSinkPart {
    type Item = Datum;
    type State = ();

    fn write_batch(&mut self, items: Vec<Datum>) -> riffle::Result<()> {
        let items = self.with_ids(items)?;
        // Kept for retries and the fallback sink, by position.
        let mut kept = items.clone();
        let responses = self.primary.write(items).map_err(|e| self.error(e))?;
        let total = responses.len();
        let mut handed_on = Vec::new();
        let mut forwarded: Vec<(usize, Option<Message>)> = Vec::new();
        let mut failed: Vec<(usize, SinkResponse)> = Vec::new();
        for (i, r) in responses.into_iter().enumerate() {
            match r.status {
                SinkStatus::Success | SinkStatus::Serve(_) => {}
                SinkStatus::OnSuccess(m) => forwarded.push((i, m)),
                SinkStatus::Fallback => handed_on.push(i),
                SinkStatus::Failure(_) => failed.push((i, r)),
            }
        }
        let mut attempt = 0u32;
        while !failed.is_empty()
            && (attempt < self.retry.steps || self.retry.on_failure == OnFailure::Retry)
        {
            std::thread::sleep(self.retry.pause(attempt));
            attempt += 1;
            if attempt.is_multiple_of(100) {
                eprintln!(
                    "step {:?}: the sink still refuses {} datum(s) after {attempt} retries \
                     (first: id {:?}: {:?})",
                    self.step_id,
                    failed.len(),
                    failed[0].1.id,
                    failed[0].1.status
                );
            }
            let batch: Vec<Datum> = failed.iter().map(|(i, _)| kept[*i].clone()).collect();
            let again = self.primary.write(batch).map_err(|e| self.error(e))?;
            let mut still = Vec::new();
            for ((i, _), r) in failed.iter().zip(again) {
                match r.status {
                    SinkStatus::Success | SinkStatus::Serve(_) => {}
                    SinkStatus::OnSuccess(m) => forwarded.push((*i, m)),
                    SinkStatus::Fallback => handed_on.push(*i),
                    SinkStatus::Failure(_) => still.push((*i, r)),
                }
            }
            failed = still;
        }
        if let Some((_, first)) = failed.first() {
            let to_fallback = match self.retry.on_failure {
                OnFailure::FallbackOrStop => self.fallback.is_some(),
                OnFailure::Fallback => true,
                OnFailure::Drop => {
                    eprintln!(
                        "step {:?}: dropped {} of {total} datums the sink refused after {} \
                         retries (first: id {:?}: {:?})",
                        self.step_id,
                        failed.len(),
                        self.retry.steps,
                        first.id,
                        first.status
                    );
                    false
                }
                OnFailure::Stop | OnFailure::Retry => false,
            };
            if to_fallback {
                handed_on.extend(failed.iter().map(|(i, _)| *i));
            } else if self.retry.on_failure != OnFailure::Drop {
                let bad: Vec<&SinkResponse> = failed.iter().map(|(_, r)| r).collect();
                return Err(self.error(format!(
                    "{} (after {} retries)",
                    not_written("sink", &bad, total, first),
                    self.retry.steps
                )));
            }
        }
        self.forward_on_success(&kept, forwarded)?;
        if handed_on.is_empty() {
            return Ok(());
        }
        handed_on.sort_unstable();
        let Some(fallback) = self.fallback.as_mut() else {
            return Err(self.error(format!(
                "the sink sent {} of {total} datums to fallback (first: id {:?}) and the step \
                 has no fallback sink; use udf_sink_with_fallback",
                handed_on.len(),
                kept[handed_on[0]].id
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
        let on_success = self.on_success.as_mut().map_or(Ok(()), |f| f.close());
        primary
            .and(fallback)
            .and(on_success)
            .map_err(|e| self.error(e))
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
