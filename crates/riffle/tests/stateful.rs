//! `Stream::stateful`: a key's logic is woken by its timer before the stream
//! ends, and a key that is done starts over with its next value.

use std::time::{Duration, Instant, SystemTime};

use riffle::operators::stateful::{Emit, KeyedLogic};
use riffle::sinks::TestingSink;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use riffle::{Dataflow, Result};

/// Gathers a key's values; a while after the first it emits them and is done.
struct Gather {
    values: Vec<u32>,
    due: Option<SystemTime>,
}

impl KeyedLogic<u32> for Gather {
    type Out = (String, Vec<u32>);
    type State = Vec<u32>;

    fn on_item(&mut self, value: u32) -> Result<Emit<Self::Out>> {
        self.values.push(value);
        // A logic first given 3 waits a minute: the end of the stream comes first.
        let wait = if value == 3 { 60_000 } else { 50 };
        self.due
            .get_or_insert_with(|| SystemTime::now() + Duration::from_millis(wait));
        Ok((Vec::new(), false))
    }

    fn notify_at(&self) -> Result<Option<SystemTime>> {
        Ok(self.due)
    }

    fn on_notify(&mut self) -> Result<Emit<Self::Out>> {
        Ok((
            vec![("timer".into(), std::mem::take(&mut self.values))],
            true,
        ))
    }

    fn on_eof(&mut self) -> Result<Emit<Self::Out>> {
        Ok((vec![("eof".into(), std::mem::take(&mut self.values))], true))
    }

    fn snapshot(&self) -> Result<Vec<u32>> {
        Ok(self.values.clone())
    }
}

/// `("a", 1)` and `("a", 2)` at once, then nothing for 300 ms, then `("a", 3)`.
struct Pause;

struct PausePart {
    step: u8,
    until: Option<Instant>,
}

impl FixedPartitionedSource for Pause {
    type Item = (String, u32);
    type State = ();
    type Partition = PausePart;

    fn list_parts(&self, _: &str) -> Result<Vec<String>> {
        Ok(vec!["one".into()])
    }

    fn build_part(&self, _: &str, _: &str, _: Option<()>) -> Result<PausePart> {
        Ok(PausePart {
            step: 0,
            until: None,
        })
    }
}

impl SourcePartition for PausePart {
    type Item = (String, u32);
    type State = ();

    fn next_batch(&mut self) -> Result<Poll<(String, u32)>> {
        self.step += 1;
        Ok(match self.step {
            1 => {
                self.until = Some(Instant::now() + Duration::from_millis(300));
                Poll::Ready(vec![("a".into(), 1), ("a".into(), 2)])
            }
            _ if self.until.is_some_and(|u| Instant::now() < u) => {
                self.step -= 1;
                Poll::Pending
            }
            2 => Poll::Ready(vec![("a".into(), 3)]),
            _ => Poll::Exhausted,
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        self.until.filter(|u| Instant::now() < *u)
    }
}

#[test]
fn a_timer_fires_while_the_input_is_idle_and_a_done_key_starts_over() -> Result<()> {
    let flow = Dataflow::new("gather");
    let out = TestingSink::new();
    flow.input("inp", Pause)?
        .stateful("gather", |_key: &String, resume: Option<Vec<u32>>| {
            Ok(Gather {
                values: resume.unwrap_or_default(),
                due: None,
            })
        })?
        .output("out", out.clone())?;
    riffle::run_main(&flow)?;
    // The first logic of "a" was woken by its timer during the pause; the
    // second, made for 3, was still waiting for its own when the input ended.
    assert_eq!(
        out.take(),
        [
            ("a".to_string(), ("timer".to_string(), vec![1, 2])),
            ("a".to_string(), ("eof".to_string(), vec![3])),
        ]
    );
    Ok(())
}
