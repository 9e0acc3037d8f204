//! The conformance kit: the checks every connector passes against its real server.
//!
//! A connector's tests describe how to reach a running server through a
//! [`Target`] (make a fresh stream, write values to it, read what readers see,
//! build the connector's source and sink), and call each check. Values are text,
//! so every check can compare what came out with what went in.
//!
//! | check | what it proves |
//! |---|---|
//! | [`read_after_write`] | a flow on 2 workers reads every partition and the sink writes every record |
//! | [`resume_without_loss`] | a run that fails midway and resumes from its recovery store loses nothing, and duplicates nothing where the target claims exactly-once |
//! | [`rescale`] | a store written on 2 workers resumes on 3 with the same guarantee |
//! | [`missing_stream`] | reading a stream that does not exist is an error naming the step, the server and the stream |
//! | [`unreachable_server`] | a server that does not answer is an error naming it, with the client's cause |
//!
//! Killing a real process with SIGKILL, restarting the server mid-run and wrong
//! credentials need a process or a server of their own; each connector's tests do
//! those (for Kafka: `crates/riffle-cli/tests/kafka_crash.rs` through the `riffle`
//! binary, and a private broker killed and restarted, or wanting SASL, in
//! `crates/riffle-connectors/tests/kafka_restart.rs` and `kafka_sasl.rs`).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::{FixedPartitionedSink, TestingSink};
use riffle::sources::FixedPartitionedSource;
use riffle::{Dataflow, Execution, RiffleError};

/// How a check reaches one connector's running server.
pub trait Target: 'static {
    /// The connector's bounded source (reading what is there, then ending).
    type Source: FixedPartitionedSource;
    /// The connector's sink.
    type Sink: FixedPartitionedSink;

    /// Where the server is, as errors name it (e.g. the brokers).
    fn server(&self) -> String;
    /// Makes a new, empty stream (topic, queue, ...) with `partitions` partitions,
    /// named after `hint`, and returns its name.
    fn create(&self, hint: &str, partitions: usize) -> String;
    /// Writes `values` to `stream`, spread over its partitions.
    fn write(&self, stream: &str, values: &[String]);
    /// Every value of `stream`, as its readers see it (committed only).
    fn read(&self, stream: &str) -> Vec<String>;
    /// A source reading `stream` to its end.
    fn source(&self, stream: &str) -> Self::Source;
    /// The same source against a server that does not answer.
    fn unreachable_source(&self) -> Self::Source;
    /// A sink writing to `stream` (exactly-once where the target claims it, with
    /// `id` naming the writer across restarts).
    fn sink(&self, stream: &str, id: &str) -> Self::Sink;
    /// The text of a source item (`None` to skip it).
    fn value(item: <Self::Source as FixedPartitionedSource>::Item) -> Option<String>;
    /// A sink item holding `value`.
    fn record(value: String) -> <Self::Sink as FixedPartitionedSink>::Item;
    /// Whether the sink claims exactly-once under a recovery store.
    fn exactly_once(&self) -> bool;
    /// The checks' value counts are divided by this: 1 (the default) but for
    /// servers that slow down with large queues (moto's SQS).
    fn shrink(&self) -> usize {
        1
    }
    /// Whether the server itself may hand a message out more than once in a run
    /// without failures (SQS standard queues: "at-least-once delivery", and moto
    /// under concurrent receives): read-after-write then checks that nothing is
    /// lost and nothing foreign appears, not the exact counts.
    fn may_repeat(&self) -> bool {
        false
    }
}

/// A name no other test or run uses (for streams, topics, groups a check makes).
pub fn unique(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{hint}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:06}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Reads `source` once, without a recovery store, on one worker with 20 ms
/// epochs: the text of each item by `value` (`None` skips it) into a testing
/// sink. With `fail_at`, the run stops at that item (counted from 1), after
/// 300 ms that let the commits before it land. Returns what the sink got and
/// whether the run ended well.
///
/// For what at-least-once sources check on their own: a run that fails
/// acknowledged only what its sink had written, and the next run reads the rest
/// again.
pub fn read_once<S: FixedPartitionedSource>(
    source: S,
    fail_at: Option<usize>,
    value: impl Fn(S::Item) -> Option<String> + Send + Sync + 'static,
) -> (Vec<String>, bool) {
    let seen = AtomicUsize::new(0);
    let sink = TestingSink::new();
    let flow = Dataflow::new("read-once");
    let built = flow
        .input("in", source)
        .and_then(|s| {
            s.filter_map("value", move |item| {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if fail_at == Some(n) {
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the test stops the run at item {n}");
                }
                value(item)
            })
        })
        .and_then(|s| s.output("out", sink.clone()));
    if let Err(e) = built {
        panic!("building the read-once flow: {e}");
    }
    let ok = Execution::new()
        .epoch_interval(Duration::from_millis(20))
        .run(&flow)
        .is_ok();
    (sink.take(), ok)
}

/// Builds `source -> upper-case (failing at `fail_at`) -> sink`.
fn copy_flow<T: Target>(
    target: &T,
    name: &str,
    input: &str,
    output: &str,
    fail_at: Option<String>,
) -> Dataflow {
    let flow = Dataflow::new(name);
    let built = flow
        .input("in", target.source(input))
        .and_then(|s| {
            s.filter_map("upper", move |item| {
                let v = T::value(item)?;
                if fail_at.as_deref() == Some(v.as_str()) {
                    // Let earlier snapshots commit first.
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the check stops the run at {v}");
                }
                Some(T::record(v.to_uppercase()))
            })
        })
        .and_then(|s| s.output("out", target.sink(output, name)));
    if let Err(e) = built {
        panic!("building the check's flow: {e}");
    }
    flow
}

/// Checks that a flow on 2 workers copies every value of a 4-partition stream.
pub fn read_after_write<T: Target>(target: &T) {
    let input = target.create("raw-in", 4);
    let output = target.create("raw-out", 3);
    let values = numbered("v", 4000 / target.shrink().max(1));
    target.write(&input, &values);
    let flow = copy_flow(target, "read-after-write", &input, &output, None);
    Execution::new()
        .workers(2)
        .epoch_interval(Duration::from_millis(50))
        .run(&flow)
        .unwrap_or_else(|e| panic!("read-after-write failed: {e}"));
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    let mut got = sorted(target.read(&output));
    if target.may_repeat() {
        got.dedup();
    }
    assert_eq!(got, sorted(want), "read-after-write: output differs");
}

/// Runs a copy that fails at one value on `first` workers, then resumes it on
/// `second` workers from the same store, and checks the output.
fn fail_and_resume<T: Target>(target: &T, name: &str, first: usize, second: usize) {
    let input = target.create(&format!("{name}-in"), 4);
    let output = target.create(&format!("{name}-out"), 2);
    let values = numbered("r", 6000 / target.shrink().max(1));
    target.write(&input, &values);
    let store = tempfile::tempdir().expect("a temporary folder");
    RecoveryStore::init(store.path(), 2).unwrap_or_else(|e| panic!("{e}"));
    let run = |workers: usize, fail_at: Option<String>| {
        let flow = copy_flow(target, name, &input, &output, fail_at);
        Execution::new()
            .workers(workers)
            .epoch_interval(Duration::from_millis(20))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(20)))
            .run(&flow)
    };
    let failed = run(first, Some(values[values.len() * 2 / 3].clone()));
    assert!(failed.is_err(), "{name}: the first run should have stopped");
    run(second, None).unwrap_or_else(|e| panic!("{name}: the resumed run failed: {e}"));
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    let got = sorted(target.read(&output));
    if target.exactly_once() {
        assert_eq!(got.len(), want.len(), "{name}: duplicates or losses");
        assert_eq!(got, sorted(want), "{name}: output differs");
    } else {
        let mut unique = got.clone();
        unique.dedup();
        assert_eq!(unique, sorted(want), "{name}: values lost");
    }
}

/// Checks that a run failing midway resumes from its store without loss.
pub fn resume_without_loss<T: Target>(target: &T) {
    fail_and_resume(target, "resume", 2, 2);
}

/// Checks that a store written on 2 workers resumes on 3.
pub fn rescale<T: Target>(target: &T) {
    fail_and_resume(target, "rescale", 2, 3);
}

fn read_error<T: Target>(source: T::Source) -> RiffleError {
    let flow = Dataflow::new("errors");
    flow.input("in", source)
        .and_then(|s| s.filter_map("value", T::value))
        .and_then(|s| s.output("out", TestingSink::new()))
        .unwrap_or_else(|e| panic!("building the check's flow: {e}"));
    match riffle::run_main(&flow) {
        Ok(()) => panic!("the flow should have failed"),
        Err(e) => e,
    }
}

/// Checks what the source says of its backlog ([`FixedPartitionedSource::backlog`]),
/// for a connector that can say: all of 300 new values wait before anything is
/// read, none once a consumer loop has read, written and committed them. A
/// source that cannot say (`None`) passes.
pub fn backlog<T: Target>(target: &T) {
    let stream = target.create("backlog", 2);
    let values = numbered("b", 300 / target.shrink().max(1));
    target.write(&stream, &values);
    let step = unique("backlog");
    let source = target.source(&stream);
    let Some(before) = source
        .backlog(&step)
        .unwrap_or_else(|e| panic!("the backlog of a new stream: {e}"))
    else {
        return;
    };
    assert_eq!(before, values.len() as u64, "the backlog before reading");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let read = riffle::consume::consume(&step, source, TestingSink::new(), |_| None::<()>, &stop)
        .unwrap_or_else(|e| panic!("reading the stream: {e}"));
    assert_eq!(read.read, values.len() as u64);
    let after = target.source(&stream).backlog(&step).unwrap();
    assert_eq!(
        after,
        Some(0),
        "the backlog once everything was read and committed"
    );
}

/// Checks that reading a missing stream is an error naming step, server and stream.
pub fn missing_stream<T: Target>(target: &T) {
    let name = format!("missing-{}", std::process::id());
    let err = read_error::<T>(target.source(&name)).to_string();
    assert!(err.contains("\"in\""), "no step in: {err}");
    assert!(err.contains(&name), "no stream in: {err}");
    assert!(err.contains(&target.server()), "no server in: {err}");
}

/// Checks that an unreachable server is an error naming it, with a cause.
pub fn unreachable_server<T: Target>(target: &T) {
    let err = read_error::<T>(target.unreachable_source());
    let text = err.to_string();
    assert!(text.contains("\"in\""), "no step in: {text}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause kept: {text}"
    );
}
