//! Wall-clock epochs and a partition's `next_awake`.

use std::time::{Duration, Instant};

use riffle::sources::{DynamicSource, Poll, SourcePartition, WorkerInfo};
use riffle::{Dataflow, Execution, Result};

/// One item every `every`, `count` items, on each worker.
struct Ticker {
    count: u32,
    every: Duration,
}

struct TickerPart {
    left: u32,
    every: Duration,
    next: Instant,
}

impl DynamicSource for Ticker {
    type Item = u32;
    type Partition = TickerPart;
    fn build(&self, _step_id: &str, _worker: WorkerInfo) -> Result<TickerPart> {
        Ok(TickerPart {
            left: self.count,
            every: self.every,
            next: Instant::now(),
        })
    }
}

impl SourcePartition for TickerPart {
    type Item = u32;
    type State = ();
    fn next_batch(&mut self) -> Result<Poll<u32>> {
        if self.left == 0 {
            return Ok(Poll::Exhausted);
        }
        if Instant::now() < self.next {
            return Ok(Poll::Pending);
        }
        self.left -= 1;
        self.next = Instant::now() + self.every;
        Ok(Poll::Ready(vec![self.left]))
    }
    fn next_awake(&self) -> Option<Instant> {
        Some(self.next)
    }
}

#[test]
fn epochs_advance_with_the_wall_clock_and_close_per_epoch_results() {
    let flow = Dataflow::new("clock");
    let ticks = flow
        .input_dynamic(
            "ticks",
            Ticker {
                count: 20,
                every: Duration::from_millis(10),
            },
        )
        .unwrap();
    let seen = ticks.capture("seen").unwrap();
    let per_epoch = ticks
        .key_on("one", |_| ())
        .unwrap()
        .map_value("ones", |_| 1u32)
        .unwrap()
        .reduce_epoch("per_epoch", |a, b| a + b)
        .unwrap()
        .capture("per_epoch_out")
        .unwrap();
    let started = Instant::now();
    Execution::new()
        .epoch_interval(Duration::from_millis(25))
        .run(&flow)
        .unwrap();
    let took = started.elapsed();
    // The source slept between items instead of spinning: 20 items 10 ms apart.
    assert!(took >= Duration::from_millis(180), "{took:?}");
    let seen = seen.take();
    let epochs: Vec<u64> = seen.iter().map(|(e, _)| *e).collect();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    assert!(
        *epochs.last().unwrap() >= 4,
        "about 200 ms of 25 ms epochs: {epochs:?}"
    );
    let per_epoch = per_epoch.take_sorted();
    assert!(per_epoch.len() >= 4, "{per_epoch:?}");
    assert_eq!(per_epoch.iter().map(|(_, (_, n))| n).sum::<u32>(), 20);
}
