//! Consumers: read an unbounded source, call a function on each item, write what
//! it returns to a sink, acknowledge.
//!
//! A consumer is a pool of **replicas**, each a thread that owns some of the
//! source's partitions (partition `i` of the sorted list goes to replica
//! `i % replicas`: Kafka partitions, SQS or Redis readers, ...), so replicas never
//! share a partition and a broker's consumer group sees one reader per partition.
//! A supervisor thread runs the pool; with [`ConsumerOptions::autoscale`] it
//! resizes it (see [`crate::autoscale`]): the replicas of the old size finish,
//! write and acknowledge the batch in hand and close their partitions, then the
//! new ones open them again from what was acknowledged.
//! A replica polls a partition, calls the function on every item of the batch,
//! hands what it returned to the processor's [`SinkWriter`], and only once the
//! writer says it is durable commits the partition's position: acknowledges the
//! messages, commits the group's offsets. A crash anywhere replays what was not
//! acknowledged: **at-least-once**, and exactly-once into a sink that writes
//! idempotently (an upsert by key).
//!
//! Failures:
//! - the function returns an error: it is called again for that item after a
//!   backoff, up to [`ConsumerOptions::attempts`] times; then the item goes to the
//!   dead-letter sink ([`ConsumerOptions::dead_letters`]) with the reason. Without a
//!   dead-letter sink the processor stops with the error, the item not
//!   acknowledged, rather than drop it.
//! - the source cannot decode a message (a source given
//!   `DeadLetters::stream()`): the letter goes to the dead-letter sink too.
//! - the sink refuses a write: the batch is written again after a backoff that
//!   doubles up to five seconds, for as long as it takes (the sink is down, not
//!   the message wrong); nothing is acknowledged meanwhile.
//! - the source fails: the processor stops with the connector's error.
//!
//! On a stop (SIGTERM, Ctrl-C) a replica finishes the batch in hand, writes it,
//! acknowledges it and closes its partitions; a write still failing when the
//! stop comes is left unacknowledged, to be read again.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use riffle::dead_letters::{DeadLetter, take_set_aside};
use riffle::sinks::FixedPartitionedSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};

use crate::autoscale::{Autoscale, Observation, Scaler};
use crate::dependency::{Made, ReplicaScope};
use crate::error::{FlowError, Result};
use crate::handler::{Awaiting, Blocking, Handler, Tries};
use crate::metrics::ProcessorMetrics;
use crate::retry::Backoff;
use crate::writer::SinkWriter;

/// How long a replica waits when none of its partitions has anything, unless one
/// of them wakes it first ([`SourcePartition::wake_on_ready`]).
const IDLE: Duration = Duration::from_millis(10);
/// The longest wait between two writes of a batch the sink refused.
const WRITE_BACKOFF_CEILING: Duration = Duration::from_secs(5);

/// Writes dead letters somewhere durable; built from a sink by
/// [`ConsumerOptions::dead_letters`].
pub(crate) type LetterWriter = Arc<dyn Fn(Vec<DeadLetter>) -> Result<()> + Send + Sync>;
type LetterStarter =
    Box<dyn FnOnce(&str) -> Result<(LetterWriter, Box<dyn FnOnce() + Send>)> + Send>;

/// A consumer's options, set on what [`crate::Flow::consumer`] returns.
pub struct ConsumerOptions {
    pub(crate) replicas: usize,
    pub(crate) autoscale: Option<Autoscale>,
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) dead_letters: Option<LetterStarter>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            autoscale: None,
            attempts: 3,
            backoff: Duration::from_millis(100),
            dead_letters: None,
        }
    }
}

impl ConsumerOptions {
    /// Runs `n` replicas (at least one; no more than the source has partitions).
    pub fn replicas(&mut self, n: usize) -> &mut Self {
        self.replicas = n.max(1);
        self
    }

    /// Sizes the pool from the source's backlog and the replicas' work, between
    /// `settings.min` and `settings.max` replicas; see [`crate::autoscale`]. The
    /// pool starts at `min` (at one replica when `min` is 0 and work waits).
    pub fn autoscale(&mut self, settings: Autoscale) -> &mut Self {
        self.replicas = settings.min;
        self.autoscale = Some(settings);
        self
    }

    /// Calls the function up to `n` times for an item before it is a dead letter
    /// (default 3).
    pub fn attempts(&mut self, n: u32) -> &mut Self {
        self.attempts = n.max(1);
        self
    }

    /// Waits `first` before the second attempt, doubling for each after it
    /// (default 100 ms).
    pub fn backoff(&mut self, first: Duration) -> &mut Self {
        self.backoff = first;
        self
    }

    /// Sends what the consumer gives up on (and what its source could not decode)
    /// to `sink`, each letter made an item of it by `to_item`; the letters are
    /// durable before the messages they came from are acknowledged.
    pub fn dead_letters<K, M>(&mut self, sink: K, to_item: M) -> &mut Self
    where
        K: FixedPartitionedSink,
        M: Fn(DeadLetter) -> K::Item + Send + Sync + 'static,
    {
        self.dead_letters = Some(Box::new(move |id: &str| {
            let writer = Arc::new(SinkWriter::start(&format!("{id}.dead_letters"), sink)?);
            let closing = writer.clone();
            let write: LetterWriter = Arc::new(move |letters: Vec<DeadLetter>| {
                writer.write(letters.into_iter().map(&to_item).collect())
            });
            Ok((
                write,
                Box::new(move || closing.close()) as Box<dyn FnOnce() + Send>,
            ))
        }));
        self
    }
}

/// A consumer as the flow keeps it until it runs.
pub(crate) struct ConsumerEntry {
    pub(crate) id: String,
    /// What the source reads, for manifests.
    pub(crate) source: Option<riffle::sources::SourceInfo>,
    pub(crate) options: ConsumerOptions,
    pub(crate) start: Box<dyn FnOnce(Start) -> Result<Running> + Send>,
}

/// What a consumer gets when the flow starts it.
pub(crate) struct Start {
    pub(crate) options: ConsumerOptions,
    /// The flow's runtime, where async functions run.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) metrics: Arc<ProcessorMetrics>,
    /// The flow's dependencies, each replica's made in it.
    pub(crate) dependencies: Arc<Made>,
}

/// A started consumer: its supervisor (which runs the pool of replicas and
/// resizes it) and what to close after it.
pub(crate) struct Running {
    pub(crate) id: String,
    supervisor: JoinHandle<Result<()>>,
    closers: Vec<Box<dyn FnOnce() + Send>>,
}

impl Running {
    /// Whether the consumer is done (its sources read to the end, or failed).
    pub(crate) fn is_finished(&self) -> bool {
        self.supervisor.is_finished()
    }

    /// Waits for the supervisor, then closes the sinks.
    pub(crate) fn join(self) -> Result<()> {
        let outcome = self.supervisor.join().unwrap_or_else(|_| {
            Err(FlowError::Failed {
                processor: self.id.clone(),
                what: "its supervisor panicked".into(),
            })
        });
        for close in self.closers {
            close();
        }
        outcome
    }
}

/// The entry for consumer `id`: `f` from `source` to `sink`.
pub(crate) fn entry<S, K, F, I, E>(id: &str, source: S, sink: K, f: F) -> ConsumerEntry
where
    S: FixedPartitionedSource,
    K: FixedPartitionedSink,
    F: Fn(S::Item) -> std::result::Result<I, E> + Send + Sync + 'static,
    I: IntoIterator<Item = K::Item> + 'static,
    E: Display + 'static,
{
    entry_with(id, source, sink, move |_| Blocking::new(f))
}

/// The entry for consumer `id` with an async `f`.
pub(crate) fn entry_async<S, K, F, Fut, I, E>(id: &str, source: S, sink: K, f: F) -> ConsumerEntry
where
    S: FixedPartitionedSource,
    K: FixedPartitionedSink,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<I, E>> + 'static,
    I: IntoIterator<Item = K::Item> + 'static,
    E: Display + 'static,
{
    entry_with(id, source, sink, move |runtime| Awaiting::new(f, runtime))
}

/// The entry for consumer `id`, its handler made by `handler` (given the flow's
/// runtime) when the flow starts.
fn entry_with<S, K, H, M>(id: &str, source: S, sink: K, handler: M) -> ConsumerEntry
where
    S: FixedPartitionedSource,
    K: FixedPartitionedSink,
    H: Handler<S::Item, K::Item>,
    M: FnOnce(tokio::runtime::Handle) -> H + Send + 'static,
{
    let name = id.to_string();
    ConsumerEntry {
        id: id.to_string(),
        source: source.describe(id),
        options: ConsumerOptions::default(),
        start: Box::new(move |start: Start| {
            let handler = handler(start.runtime.clone());
            start_consumer(&name, source, sink, handler, start)
        }),
    }
}

fn start_consumer<S, K, H>(id: &str, source: S, sink: K, f: H, start: Start) -> Result<Running>
where
    S: FixedPartitionedSource,
    K: FixedPartitionedSink,
    H: Handler<S::Item, K::Item>,
{
    let Start {
        mut options,
        stop,
        metrics,
        dependencies,
        ..
    } = start;
    let parts = source
        .list_parts(id)
        .map_err(|e| FlowError::processor(id, "cannot list the source's partitions", e))?;
    if parts.is_empty() {
        return Err(FlowError::Failed {
            processor: id.to_string(),
            what: "the source has no partitions".into(),
        });
    }
    let most = options
        .autoscale
        .as_ref()
        .map_or(options.replicas, |a| a.max);
    if most > parts.len() {
        crate::run::say(&format!(
            "consumer {id:?}: up to {most} replicas asked for, the source has {} partitions: no more than {} will run",
            parts.len(),
            parts.len()
        ));
    }
    let writer = Arc::new(SinkWriter::start(id, sink)?);
    let mut closers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    let letters = match options.dead_letters.take() {
        Some(starter) => {
            let (write, close) = starter(id)?;
            closers.push(close);
            Some(write)
        }
        None => None,
    };
    let closing = writer.clone();
    closers.insert(0, Box::new(move || closing.close()));
    let pool = Pool {
        id: id.to_string(),
        source: Arc::new(source),
        positions: Arc::default(),
        parts,
        f: Arc::new(f),
        out: writer,
        letters,
        attempts: options.attempts,
        backoff: options.backoff,
        metrics,
        dependencies,
    };
    let replicas = options.replicas;
    let autoscale = options.autoscale.take();
    let supervisor = std::thread::Builder::new()
        .name(format!("{id}-supervisor"))
        .spawn(move || pool.supervise(replicas, autoscale, &stop))
        .map_err(FlowError::Runtime)?;
    Ok(Running {
        id: id.to_string(),
        supervisor,
        closers,
    })
}

/// Everything a consumer's replicas share; starts generations of them.
struct Pool<S: FixedPartitionedSource, F, T> {
    id: String,
    source: Arc<S>,
    /// Each partition's last acknowledged position: where a resized pool's
    /// replicas open it again (a run's first replicas open it where the source
    /// starts without one).
    positions: Arc<Positions<S::State>>,
    parts: Vec<String>,
    f: Arc<F>,
    out: Arc<SinkWriter<T>>,
    letters: Option<LetterWriter>,
    attempts: u32,
    backoff: Duration,
    metrics: Arc<ProcessorMetrics>,
    dependencies: Arc<Made>,
}

/// The replicas started together, stopped together.
struct Generation {
    stop: Arc<AtomicBool>,
    replicas: Vec<JoinHandle<Result<()>>>,
}

impl Generation {
    fn size(&self) -> usize {
        self.replicas.len()
    }

    /// Whether it had replicas and every one has ended by itself.
    fn ended(&self) -> bool {
        !self.replicas.is_empty() && self.replicas.iter().all(JoinHandle::is_finished)
    }

    /// Stops the replicas (each finishes, writes and acknowledges the batch in
    /// hand) and waits for them; the first error wins.
    fn stop(self, id: &str) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcome = Ok(());
        for replica in self.replicas {
            let done = replica.join().unwrap_or_else(|_| {
                Err(FlowError::Failed {
                    processor: id.to_string(),
                    what: "a replica panicked".into(),
                })
            });
            if outcome.is_ok() {
                outcome = done;
            }
        }
        outcome
    }
}

impl<S, F, T> Pool<S, F, T>
where
    S: FixedPartitionedSource,
    F: Handler<S::Item, T>,
    T: riffle::Data,
{
    /// `n` replicas (no more than there are partitions), partition `i` read by
    /// replica `i % n`.
    fn start(&self, n: usize) -> Result<Generation> {
        let n = n.min(self.parts.len());
        let stop = Arc::new(AtomicBool::new(false));
        let mut replicas = Vec::with_capacity(n);
        for r in 0..n {
            let mine: Vec<String> = self.parts.iter().skip(r).step_by(n).cloned().collect();
            let replica = Replica {
                id: self.id.clone(),
                attempts: self.attempts,
                backoff: self.backoff,
                out: self.out.clone(),
                letters: self.letters.clone(),
                stop: stop.clone(),
                metrics: self.metrics.clone(),
                scope: self.dependencies.replica(),
            };
            let source = self.source.clone();
            let f = self.f.clone();
            let positions = self.positions.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{}-{r}", self.id))
                .spawn(move || replica.run(&*source, &mine, &*f, &positions))
                .map_err(FlowError::Runtime)?;
            replicas.push(thread);
        }
        self.metrics.set_replicas(n);
        Ok(Generation { stop, replicas })
    }

    /// Runs the pool until the flow stops or the sources end, resizing it when
    /// autoscaled.
    fn supervise(
        &self,
        replicas: usize,
        autoscale: Option<Autoscale>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let mut scaler = autoscale.map(Scaler::new);
        let first = match &scaler {
            // Scaled to zero from the start: one replica while work waits.
            Some(_) if replicas == 0 => usize::from(self.backlog().is_none_or(|b| b > 0)),
            _ => replicas,
        };
        let mut generation = self.start(first)?;
        let mut next = Instant::now();
        let outcome = loop {
            if stop.load(Ordering::SeqCst) {
                break generation.stop(&self.id);
            }
            if generation.ended() {
                break generation.stop(&self.id);
            }
            if let Some(scaler) = scaler.as_mut()
                && Instant::now() >= next
            {
                next = Instant::now() + scaler.settings().every;
                let backlog = self.backlog();
                let size = generation.size();
                let wanted = scaler
                    .decide(&Observation {
                        at: Instant::now(),
                        backlog,
                        items: self.metrics.items_in(),
                        busy: self.metrics.busy(),
                        replicas: size,
                    })
                    .min(self.parts.len());
                if wanted != size {
                    crate::run::say(&format!(
                        "consumer {:?}: {size} -> {wanted} replicas (backlog {}, {} items per busy second per replica)",
                        self.id,
                        backlog.map_or_else(|| "unknown".to_string(), |b| b.to_string()),
                        scaler
                            .capacity()
                            .map_or_else(|| "unknown".to_string(), |c| format!("{c:.0}")),
                    ));
                    if let Err(e) = generation.stop(&self.id) {
                        break Err(e);
                    }
                    generation = self.start(wanted)?;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.metrics.set_replicas(0);
        outcome
    }

    /// The source's backlog, recorded in the metrics; `None` when it cannot say
    /// or the question failed (said on stderr).
    fn backlog(&self) -> Option<u64> {
        match self.source.backlog(&self.id) {
            Ok(Some(backlog)) => {
                self.metrics.set_backlog(backlog);
                Some(backlog)
            }
            Ok(None) => None,
            Err(e) => {
                crate::run::say(&format!(
                    "consumer {:?}: cannot read the backlog: {e}",
                    self.id
                ));
                None
            }
        }
    }
}

/// Wakes a replica's thread parked between polls.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Acknowledged positions by partition name.
type Positions<S> = Mutex<HashMap<String, S>>;

fn lock<S>(positions: &Positions<S>) -> std::sync::MutexGuard<'_, HashMap<String, S>> {
    positions.lock().unwrap_or_else(|e| e.into_inner())
}

/// One replica's share of the work.
struct Replica<T> {
    id: String,
    attempts: u32,
    backoff: Duration,
    out: Arc<SinkWriter<T>>,
    letters: Option<LetterWriter>,
    stop: Arc<AtomicBool>,
    metrics: Arc<ProcessorMetrics>,
    /// Its dependencies, dropped when it ends.
    scope: ReplicaScope,
}

impl<T: riffle::Data> Replica<T> {
    fn run<S, F>(
        &self,
        source: &S,
        names: &[String],
        f: &F,
        positions: &Positions<S::State>,
    ) -> Result<()>
    where
        S: FixedPartitionedSource,
        F: Handler<S::Item, T>,
    {
        let mut parts = Vec::with_capacity(names.len());
        // The replica parks when none of its partitions has anything; one that
        // can tell when items arrive unparks it (see `pump`).
        let ready = Waker::from(Arc::new(Unpark(std::thread::current())));
        for name in names {
            let resume = lock(positions).get(name).cloned();
            let mut part = source.build_part(&self.id, name, resume).map_err(|e| {
                FlowError::processor(
                    &self.id,
                    format!("cannot open source partition {name:?}"),
                    e,
                )
            })?;
            part.wake_on_ready(&ready);
            parts.push(Some(part));
        }
        let outcome = self.pump(names, &mut parts, f, positions);
        for (name, part) in names.iter().zip(parts.iter_mut()) {
            if let Some(mut part) = part.take()
                && let Err(e) = part.close()
            {
                crate::run::say(&format!(
                    "consumer {:?}: closing source partition {name:?}: {e}",
                    self.id
                ));
            }
        }
        outcome
    }

    fn pump<P, F>(
        &self,
        names: &[String],
        parts: &mut [Option<P>],
        f: &F,
        positions: &Positions<P::State>,
    ) -> Result<()>
    where
        P: SourcePartition,
        F: Handler<P::Item, T>,
    {
        while parts.iter().any(Option::is_some) && !self.stop.load(Ordering::Relaxed) {
            // One round: a batch from every partition that has one, handled,
            // then written together (one wait for the sink, not one per
            // partition), then each partition acknowledged.
            let mut wake: Option<Instant> = None;
            let started = Instant::now();
            let mut read = 0;
            let mut out = Vec::new();
            let mut dead = Vec::new();
            let mut acknowledge: Vec<(usize, P::State)> = Vec::new();
            let mut polled_any = false;
            for (index, (name, slot)) in names.iter().zip(parts.iter_mut()).enumerate() {
                let Some(part) = slot.as_mut() else { continue };
                let polled = part.next_batch().map_err(|e| {
                    FlowError::processor(
                        &self.id,
                        format!("cannot read source partition {name:?}"),
                        e,
                    )
                })?;
                let set_aside = take_set_aside();
                let items = match polled {
                    Poll::Ready(items) | Poll::ReadyAt(_, items) => items,
                    Poll::Pending if set_aside.is_empty() => {
                        if let Some(at) = part.next_awake() {
                            wake = Some(wake.map_or(at, |w| w.min(at)));
                        }
                        continue;
                    }
                    Poll::Pending => Vec::new(),
                    Poll::Exhausted => {
                        // Everything it gave was written in earlier rounds.
                        if let Some(state) = part.snapshot() {
                            self.commit(name, part, &state, positions)?;
                        }
                        if let Some(mut part) = slot.take() {
                            part.close().map_err(|e| {
                                FlowError::processor(
                                    &self.id,
                                    format!("cannot close source partition {name:?}"),
                                    e,
                                )
                            })?;
                        }
                        continue;
                    }
                };
                if !polled_any {
                    polled_any = true;
                    self.metrics.add_in_flight(1);
                }
                dead.extend(set_aside);
                read += items.len();
                self.metrics.add_in(items.len() as u64);
                if let Some(state) = part.snapshot() {
                    acknowledge.push((index, state));
                }
                let tries = Tries {
                    attempts: self.attempts,
                    backoff: self.backoff,
                    stop: &self.stop,
                    metrics: &self.metrics,
                    scope: &self.scope,
                };
                let outcomes = f.handle(&items, &tries).map_err(|e| FlowError::Failed {
                    processor: self.id.clone(),
                    what: e.to_string(),
                })?;
                for (item, outcome) in items.into_iter().zip(outcomes) {
                    match outcome {
                        Ok(made) => out.extend(made),
                        Err(reason) => {
                            let input = serde_json::to_vec(&item).unwrap_or_default();
                            dead.push(DeadLetter::new(
                                &self.id,
                                &[("partition", name.as_str().into())],
                                &reason,
                                &input,
                            ));
                        }
                    }
                }
            }
            if !polled_any {
                let now = Instant::now();
                let until = wake.unwrap_or(now + IDLE).min(now + IDLE);
                // Woken early by a partition with items (a wake that came
                // since the poll is kept by the park token), or by nothing.
                std::thread::park_timeout(until.saturating_duration_since(now));
                continue;
            }
            let written = out.len() as u64;
            let outcome = self.deliver(out, dead);
            self.metrics.add_in_flight(-1);
            if !outcome? {
                // Stopped while the sink refused: leave it unacknowledged.
                return Ok(());
            }
            self.metrics.add_out(written);
            for (index, state) in acknowledge {
                if let Some(part) = parts[index].as_mut() {
                    self.commit(&names[index], part, &state, positions)?;
                }
            }
            if read > 0 || written > 0 {
                self.metrics.observe(started.elapsed());
            }
        }
        Ok(())
    }

    /// Writes the batch's items and letters, again and again while the sink
    /// refuses; false when a stop came first.
    fn deliver(&self, out: Vec<T>, dead: Vec<DeadLetter>) -> Result<bool> {
        if !dead.is_empty() {
            let Some(letters) = &self.letters else {
                let first = &dead[0];
                return Err(FlowError::Failed {
                    processor: self.id.clone(),
                    what: format!(
                        "{} item(s) failed and the consumer has no dead-letter sink (give it one with .dead_letters(...)); the first: {} (input {})",
                        dead.len(),
                        first.reason,
                        String::from_utf8_lossy(&first.input)
                    ),
                });
            };
            let n = dead.len() as u64;
            if !self.again_while_refused(|| letters(dead.clone()))? {
                return Ok(false);
            }
            self.metrics.add_dead_letters(n);
        }
        self.again_while_refused(|| self.out.write(out.clone()))
    }

    fn again_while_refused(&self, mut write: impl FnMut() -> Result<()>) -> Result<bool> {
        let mut backoff = Backoff::new(self.backoff, WRITE_BACKOFF_CEILING);
        loop {
            match write() {
                Ok(()) => return Ok(true),
                Err(e) => {
                    self.metrics.add_error();
                    crate::run::say(&format!(
                        "consumer {:?}: {}; writing again",
                        self.id,
                        e.chain()
                    ));
                    if !backoff.sleep(&self.stop) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Acknowledges `state` and keeps it as where the partition resumes when
    /// the pool is resized.
    fn commit<P: SourcePartition>(
        &self,
        name: &str,
        part: &mut P,
        state: &P::State,
        positions: &Positions<P::State>,
    ) -> Result<()> {
        part.commit(state).map_err(|e| {
            FlowError::processor(
                &self.id,
                format!("cannot acknowledge source partition {name:?}"),
                e,
            )
        })?;
        lock(positions).insert(name.to_string(), state.clone());
        Ok(())
    }
}
