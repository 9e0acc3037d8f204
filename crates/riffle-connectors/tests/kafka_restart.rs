//! The Kafka connector through a broker restart: a private Apache Kafka broker
//! (`KafkaServer`, from the jars `scripts/test.d/50-kafka.sh` fetched) is killed
//! with SIGKILL while an exactly-once copy runs on a recovery store, and started
//! again on the same folder. The run either rides it out (the clients reconnect)
//! or stops with an error and is resumed, as a supervisor would; either way a
//! `read_committed` reader must then see every record exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::Target;
use riffle_connectors::kafka::testing::{KafkaServer, KafkaTarget};
use riffle_connectors::kafka::{KafkaRecord, KafkaSettings, KafkaSink, KafkaSource, Utf8};

#[test]
fn an_exactly_once_copy_survives_a_broker_killed_and_restarted_mid_run() {
    let Some(mut server) = KafkaServer::start() else {
        return;
    };
    let settings = KafkaSettings::new(server.brokers()).timeout(Duration::from_secs(30));
    let kafka = KafkaTarget {
        settings: settings.clone(),
    };
    let input = kafka.create("restart-in", 4);
    let output = kafka.create("restart-out", 2);
    let values: Vec<String> = (0..100_000).map(|i| format!("v{i:06}")).collect();
    kafka.write(&input, &values);
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 2).unwrap();
    let run = || {
        let flow = Dataflow::new("restart");
        flow.input(
            "in",
            KafkaSource::new(settings.clone(), [input.as_str()])
                .format(Utf8)
                .tail(false),
        )
        .unwrap()
        .filter_map("upper", |m| {
            // Slow enough that the kill lands mid-run.
            std::thread::sleep(Duration::from_micros(20));
            m.value.map(|v| KafkaRecord::new(v.to_uppercase()))
        })
        .unwrap()
        .output(
            "out",
            KafkaSink::new(settings.clone(), &output).exactly_once("restart"),
        )
        .unwrap();
        Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(100))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(200)))
            .run(&flow)
    };
    // Kill the broker once the copy has committed some output, start it again.
    let started = Instant::now();
    let killed = Arc::new(AtomicBool::new(false));
    let first = std::thread::scope(|scope| {
        let handle = scope.spawn(run);
        let probe = KafkaTarget {
            settings: settings.clone(),
        };
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            if !probe.read(&output).is_empty() {
                server.kill();
                killed.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(2));
                server.run();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join().unwrap()
    });
    assert!(
        killed.load(Ordering::SeqCst),
        "the copy finished before the kill: make it longer"
    );
    let mut attempts = 1;
    let mut outcome = first;
    while let Err(e) = outcome {
        eprintln!("run {attempts} stopped: {e}");
        assert!(
            attempts < 4,
            "the copy did not finish after {attempts} runs: {e}"
        );
        attempts += 1;
        outcome = run();
    }
    eprintln!("finished after {attempts} run(s)");
    assert_eq!(
        attempts, 1,
        "the run should ride out the restart (its clients reconnect)"
    );
    let mut got = kafka.read(&output);
    got.sort();
    let mut want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "duplicates or losses through the restart"
    );
    assert_eq!(got, want);
}
