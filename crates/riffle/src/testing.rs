//! Helpers for testing flows: [`Capture`] collects `(epoch, item)` pairs, and
//! [`run_cluster`] runs a flow as a real cluster of processes over loopback TCP inside
//! one test process.
//!
//! The seed example: `map(str::to_uppercase)` over `[(0, "a"), (1, "b"), (2, "c")]`
//! captures `[(0, "A"), (1, "B"), (2, "C")]`.
//!
//! ```
//! use riffle::{Dataflow, sources::TestingSource};
//! let flow = Dataflow::new("upper");
//! let input: Vec<(u64, String)> = vec![(0, "a".into()), (1, "b".into()), (2, "c".into())];
//! let out = flow
//!     .input("inp", TestingSource::with_epochs(input))?
//!     .map("upper", |s: String| s.to_uppercase())?
//!     .capture("out")?;
//! riffle::testing::run(&flow)?;
//! assert_eq!(out.take_sorted(), [(0, "A".to_string()), (1, "B".to_string()), (2, "C".to_string())]);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::operator::Operator;

use crate::build::BuildCtx;
use crate::data::Data;
use crate::dataflow::{Dataflow, Stream};
use crate::error::{Result, RiffleError};
use crate::run::{Execution, free_loopback_addresses};

/// The `(epoch, item)` pairs a `capture` step saw, from every worker of this process.
#[derive(Debug)]
pub struct Capture<T> {
    items: Arc<Mutex<Vec<(u64, T)>>>,
}

impl<T> Clone for Capture<T> {
    fn clone(&self) -> Self {
        Self {
            items: self.items.clone(),
        }
    }
}

impl<T: Data> Capture<T> {
    /// Takes what was captured so far, in arrival order.
    pub fn take(&self) -> Vec<(u64, T)> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes what was captured so far, sorted by epoch, then item.
    pub fn take_sorted(&self) -> Vec<(u64, T)>
    where
        T: Ord,
    {
        let mut items = self.take();
        items.sort();
        items
    }
}

impl<T: Data> Stream<T> {
    /// Collects every item with its epoch into the returned [`Capture`].
    pub fn capture(&self, step_id: &str) -> Result<Capture<T>> {
        let capture = Capture {
            items: Arc::new(Mutex::new(Vec::new())),
        };
        let target = capture.items.clone();
        let up_key = self.key();
        let id = step_id.to_string();
        self.flow.add_step(
            step_id,
            "capture",
            &[self],
            &[],
            Arc::new(move |ctx: &mut BuildCtx<'_>| {
                let input = ctx.stream::<T>(&up_key)?;
                // A capture has no progress stream of its own: the flow's progress
                // watches what it reads.
                let _ = input.clone().probe_with(&ctx.progress);
                let target = target.clone();
                input.sink(Pipeline, &id, move |(input, _frontier)| {
                    input.for_each(|time, data| {
                        let epoch = time.least().copied().unwrap_or_default();
                        let mut items = target.lock().unwrap_or_else(|p| p.into_inner());
                        items.extend(data.drain(..).map(|item| (epoch, item)));
                    });
                });
                Ok(())
            }),
        )?;
        Ok(capture)
    }
}

/// Every line of every file in `dir` (what a `DirSink` or a `FileSink` wrote
/// there), sorted: for comparing outputs whatever the partitioning. Panics when
/// the folder cannot be read, as a test should.
pub fn sorted_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read folder {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// Runs `flow` on one worker in this thread, with a long epoch interval so that only
/// explicit epochs (from [`crate::sources::TestingSource::with_epochs`]) matter.
pub fn run(flow: &Dataflow) -> Result<()> {
    Execution::new()
        .epoch_interval(Duration::from_secs(3600))
        .run(flow)
}

/// Runs `flow` on `workers` threads of this process.
pub fn run_workers(flow: &Dataflow, workers: usize) -> Result<()> {
    Execution::new()
        .workers(workers)
        .epoch_interval(Duration::from_secs(3600))
        .run(flow)
}

/// Runs `flow` as `proc_count` processes of `worker_count_per_proc` workers each,
/// connected by timely's TCP communication over loopback. The "processes" are threads
/// of this test process, so captures and testing sinks see every worker's items, while
/// every exchange between them really is serialized and sent over a socket.
pub fn run_cluster(flow: &Dataflow, proc_count: usize, worker_count_per_proc: usize) -> Result<()> {
    let addresses = free_loopback_addresses(proc_count)?;
    let handles: Vec<_> = (0..proc_count)
        .map(|id| {
            let flow = flow.clone();
            let addresses = addresses.clone();
            std::thread::Builder::new()
                .name(format!("riffle-process-{id}"))
                .spawn(move || {
                    Execution::new()
                        .workers(worker_count_per_proc)
                        .epoch_interval(Duration::from_secs(3600))
                        .cluster(id, addresses)
                        .run(&flow)
                })
                .map_err(|e| {
                    RiffleError::Execution(format!("cannot start process thread {id}: {e}"))
                })
        })
        .collect::<Result<_>>()?;
    let mut first = None;
    for handle in handles {
        let outcome = handle.join().unwrap_or_else(|_| {
            Err(RiffleError::Execution(
                "a process thread panicked".to_string(),
            ))
        });
        if let Err(e) = outcome {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
