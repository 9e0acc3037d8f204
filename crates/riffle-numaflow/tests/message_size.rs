//! Messages beyond gRPC's 4 MiB default cross between Riffle's clients and servers:
//! both ends allow 64 MiB, as Numaflow does.

use std::time::Duration;

use riffle_numaflow::client::{ClientOptions, SideInputClient};
use riffle_numaflow::server::{MAX_MESSAGE_SIZE, SideInputServer};
use riffle_numaflow::udf::side_input_fn;
use riffle_numaflow::{Error, SideInputValue};

/// Larger than gRPC's default limit of 4 MiB.
const FIVE_MIB: usize = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_input_client_receives_a_value_larger_than_4_mib() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sideinput.sock");
    let value: Vec<u8> = (0..FIVE_MIB).map(|i| (i % 251) as u8).collect();
    let served = value.clone();
    let server = SideInputServer::new(side_input_fn(move || {
        Ok(SideInputValue::Broadcast(served.clone()))
    }))
    .with_socket(&socket);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.serve_with_shutdown(async {
        let _ = stopped.await;
    }));

    let options = ClientOptions::new(&socket).with_info_timeout(Duration::from_secs(10));
    assert_eq!(options.max_message_size, MAX_MESSAGE_SIZE);
    assert_eq!(MAX_MESSAGE_SIZE, 64 * 1024 * 1024);
    let mut client = SideInputClient::connect(options.clone()).await.unwrap();
    match client.retrieve().await.unwrap() {
        SideInputValue::Broadcast(got) => assert!(got == value, "the value changed on the way"),
        other => panic!("expected the broadcast value, got {other:?}"),
    }

    // The limit is the client's option: below the value's size, the call fails.
    let mut small = SideInputClient::connect(options.with_max_message_size(1024 * 1024))
        .await
        .unwrap();
    let err = small.retrieve().await.unwrap_err();
    assert!(matches!(err, Error::Rpc { .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
