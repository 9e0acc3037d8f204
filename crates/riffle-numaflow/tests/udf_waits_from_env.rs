//! The UDF client's waits come from `RIFFLE_UDF_*` variables when set, so a
//! registered dataflow run by `riffle run` can be made more or less patient
//! without code; a malformed value fails the connection naming the variable.

use std::time::{Duration, Instant};

use riffle_numaflow::client::{ClientOptions, MapClient};

#[tokio::test]
async fn waits_come_from_the_environment_and_a_bad_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    // SAFETY: set before anything else of this test's process reads the environment.
    unsafe {
        std::env::set_var("RIFFLE_UDF_CONNECT_TIMEOUT", "300ms");
        std::env::set_var("RIFFLE_UDF_REQUEST_TIMEOUT", "2m");
    }
    let options = ClientOptions::new(&socket).without_server_info();
    assert_eq!(options.connect_timeout, Duration::from_millis(300));
    assert_eq!(options.request_timeout, Duration::from_secs(120));
    assert_eq!(options.info_timeout, Duration::from_secs(60));
    // Nobody listens: it gives up after the variable's wait, not the default 30 s.
    let started = Instant::now();
    let err = MapClient::connect(options).await.err().expect("no server");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("map.sock"), "{err}");
    unsafe { std::env::set_var("RIFFLE_UDF_INFO_TIMEOUT", "soon") };
    let err = MapClient::connect(ClientOptions::new(&socket))
        .await
        .err()
        .expect("a bad variable")
        .to_string();
    assert!(
        err.contains("RIFFLE_UDF_INFO_TIMEOUT") && err.contains("\"soon\""),
        "{err}"
    );
}
