//! The NATS connector through a server restart: a private `nats-server -js`
//! (`NatsServer`, the binary `scripts/test.d/51-nats.sh` installed) is killed with
//! SIGKILL while a copy runs on a recovery store, and started again on the same
//! store folder. The run must ride it out (the client reconnects, the pull
//! consumer goes on, unacknowledged publishes are sent again under their ids), and
//! the output stream must then hold every record exactly once.
#![cfg(feature = "nats")]

use std::time::{Duration, Instant};

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::{Dataflow, Execution};
use riffle_connectors::conformance::Target;
use riffle_connectors::nats::testing::{NatsServer, NatsTarget};
use riffle_connectors::nats::{NatsRecord, NatsSettings, NatsSink};

#[test]
fn a_copy_rides_out_a_server_killed_and_restarted_mid_run() {
    let Some(mut server) = NatsServer::start(&[]) else {
        return;
    };
    let settings = NatsSettings::new(server.url()).timeout(Duration::from_secs(10));
    let nats = NatsTarget::new(settings.clone());
    let input = nats.create("restart-in", 2);
    let output = nats.create("restart-out", 1);
    let values: Vec<String> = (0..40_000).map(|i| format!("v{i:06}")).collect();
    nats.write(&input, &values);
    let store = tempfile::tempdir().unwrap();
    RecoveryStore::init(store.path(), 2).unwrap();
    let run = || {
        let flow = Dataflow::new("restart");
        flow.input("in", nats.source(&input))
            .unwrap()
            .filter_map("upper", |m| {
                // Slow enough that the kill lands mid-run.
                std::thread::sleep(Duration::from_micros(100));
                let v = m.text()?.to_uppercase();
                Some(NatsRecord::new(v.clone()).id(v))
            })
            .unwrap()
            .output(
                "out",
                NatsSink::new(settings.clone(), format!("{output}.out")),
            )
            .unwrap();
        Execution::new()
            .workers(2)
            .epoch_interval(Duration::from_millis(100))
            .recovery(Recovery::new(store.path()).snapshot_interval(Duration::from_millis(200)))
            .run(&flow)
    };
    let started = Instant::now();
    let mut killed_at = None;
    let outcome = std::thread::scope(|scope| {
        let handle = scope.spawn(run);
        let probe = NatsTarget::new(settings.clone());
        while !handle.is_finished() && started.elapsed() < Duration::from_secs(60) {
            let written = probe.read(&output).len();
            if written > 2000 {
                server.kill();
                killed_at = Some(written);
                std::thread::sleep(Duration::from_secs(2));
                server.run();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join().unwrap()
    });
    let Some(written) = killed_at else {
        panic!("the copy finished before the kill: make it longer");
    };
    eprintln!(
        "killed the server with {written} of {} records written",
        values.len()
    );
    assert!(
        written < values.len() / 2,
        "the kill came too late: {written} written"
    );
    outcome.unwrap_or_else(|e| panic!("the run did not ride out the restart: {e}"));
    let mut got = nats.read(&output);
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
