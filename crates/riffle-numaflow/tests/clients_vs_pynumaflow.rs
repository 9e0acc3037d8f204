//! Riffle's clients drive real pynumaflow 0.14.0 servers, one per UDF kind.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riffle_numaflow::client::{
    ClientOptions, MapClient, MapMode, ReduceClient, SideInputClient, SinkClient, SourceClient,
    SourceTransformClient,
};
use riffle_numaflow::{DROP, Datum, Error, SideInputValue, SinkStatus, Window};

use common::{PyServer, python};

fn options(server: &PyServer) -> ClientOptions {
    ClientOptions::new(&server.socket)
        .with_server_info_file(&server.info)
        .with_info_timeout(Duration::from_secs(60))
        .with_request_timeout(Duration::from_secs(30))
}

async fn check_unary_map(kind: &str) {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, kind, dir.path());
    let mut client = MapClient::connect(options(&server)).await.unwrap();
    assert_eq!(client.mode(), MapMode::Unary);
    let info = client.connection().info.clone().unwrap();
    assert_eq!(info.language, "python");
    assert_eq!(info.version, "0.14.0");

    let datums: Vec<Datum> = (0..200)
        .map(|i| Datum::new(format!("value-{i}")).with_keys([format!("k{i}")]))
        .chain([Datum::new("drop")])
        .collect();
    let out = client.map_batch(datums).await.unwrap();
    assert_eq!(out.len(), 201);
    for (i, messages) in out.iter().take(200).enumerate() {
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].value, format!("VALUE-{i}").into_bytes());
        assert_eq!(messages[0].keys, vec![format!("k{i}")]);
        assert_eq!(messages[0].tags, vec!["py".to_string()]);
    }
    assert_eq!(out[200][0].tags, vec![DROP.to_string()]);
    assert!(out[200][0].is_drop());

    // A second batch on the same stream.
    let again = client.map(Datum::new("again")).await.unwrap();
    assert_eq!(again[0].value, b"AGAIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_sync_server() {
    check_unary_map("map-sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_async_server() {
    check_unary_map("map-async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_reaches_the_client_with_its_message() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "map-async", dir.path());
    let mut client = MapClient::connect(options(&server).with_retries(0))
        .await
        .unwrap();
    let err = client.map(Datum::new("boom")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Rpc { .. }), "{text}");
    assert!(text.contains("boom requested by the test"), "{text}");
    assert!(
        text.contains(&server.socket.display().to_string()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_stream_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "map-stream", dir.path());
    let mut client = MapClient::connect(options(&server)).await.unwrap();
    assert_eq!(client.mode(), MapMode::Stream);
    let out = client
        .map_batch(vec![
            Datum::new("a,b,c").with_keys(["x"]),
            Datum::new("d"),
            Datum::new("e,f"),
        ])
        .await
        .unwrap();
    let values: Vec<Vec<Vec<u8>>> = out
        .iter()
        .map(|ms| ms.iter().map(|m| m.value.clone()).collect())
        .collect();
    assert_eq!(
        values,
        vec![
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            vec![b"d".to_vec()],
            vec![b"e".to_vec(), b"f".to_vec()]
        ]
    );
    assert_eq!(out[0][0].keys, vec!["x".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_map_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "batch-map", dir.path());
    let mut client = MapClient::connect(options(&server)).await.unwrap();
    assert_eq!(client.mode(), MapMode::Batch);
    for round in 0..3 {
        let datums: Vec<Datum> = (0..50)
            .map(|i| Datum::new(format!("{round}-{i}")))
            .collect();
        let out = client.map_batch(datums).await.unwrap();
        for (i, ms) in out.iter().enumerate() {
            assert_eq!(ms[0].value, format!("{round}-{i}!").into_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "reduce", dir.path());
    let mut client = ReduceClient::connect(options(&server)).await.unwrap();
    let start = UNIX_EPOCH + Duration::from_secs(60);
    let window = Window::new(start, start + Duration::from_secs(60));
    let datums: Vec<Datum> = (1..=10)
        .map(|i| Datum::new(i.to_string()).with_keys([if i % 2 == 0 { "even" } else { "odd" }]))
        .collect();
    let mut out = client.reduce_window(&window, &datums).await.unwrap();
    out.sort_by(|a, b| a.keys.cmp(&b.keys));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].keys, vec!["even".to_string()]);
    assert_eq!(out[0].value, b"5:30");
    assert_eq!(out[1].value, b"5:25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "sink", dir.path());
    let mut client = SinkClient::connect(options(&server)).await.unwrap();
    for _ in 0..2 {
        let out = client
            .sink_batch(vec![
                Datum::new("ok").with_id("a"),
                Datum::new("fail"),
                Datum::new("fb").with_id("c"),
            ])
            .await
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].id, "a");
        assert_eq!(out[0].status, SinkStatus::Success);
        assert_eq!(out[1].status, SinkStatus::Failure("refused".into()));
        assert_eq!(out[2].status, SinkStatus::Fallback);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "source", dir.path());
    let mut client = SourceClient::connect(options(&server)).await.unwrap();
    assert_eq!(client.pending().await.unwrap(), Some(10));
    let (partitions, _) = client.partitions().await.unwrap();
    assert_eq!(partitions, vec![0]);
    let first = client.read(4, Duration::from_millis(100)).await.unwrap();
    let payloads: Vec<_> = first
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "m3"]);
    assert_eq!(first[0].keys, vec!["k".to_string()]);
    assert_eq!(
        first[0].event_time,
        UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    );
    let rest = client.read(100, Duration::from_millis(100)).await.unwrap();
    assert_eq!(rest.len(), 6);
    let offsets: Vec<_> = first.iter().map(|m| m.offset.clone()).collect();
    client.ack(&offsets).await.unwrap();
    assert_eq!(client.pending().await.unwrap(), Some(6));
    client.nack(&offsets[..1]).await.unwrap();
    assert_eq!(client.pending().await.unwrap(), Some(7));
    assert!(
        client
            .read(5, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_transform_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "transform", dir.path());
    let mut client = SourceTransformClient::connect(options(&server))
        .await
        .unwrap();
    let now = SystemTime::now();
    let out = client
        .transform_batch(vec![
            Datum::new("abc").with_event_time(now),
            Datum::new("hello").with_keys(["k"]),
        ])
        .await
        .unwrap();
    let base = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    assert_eq!(out[0][0].message.value, b"ABC");
    assert_eq!(out[0][0].event_time, base + Duration::from_secs(3));
    assert_eq!(out[1][0].event_time, base + Duration::from_secs(5));
    assert_eq!(out[1][0].message.keys, vec!["k".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_input_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "sideinput", dir.path());
    let mut client = SideInputClient::connect(options(&server)).await.unwrap();
    assert_eq!(
        client.retrieve().await.unwrap(),
        SideInputValue::Broadcast(b"side-1".to_vec())
    );
    assert_eq!(
        client.retrieve().await.unwrap(),
        SideInputValue::NoBroadcast
    );
    assert_eq!(
        client.retrieve().await.unwrap(),
        SideInputValue::Broadcast(b"side-3".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_after_the_server_restarts() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PyServer::start(&py, "map-async", dir.path());
    let mut client = MapClient::connect(options(&server)).await.unwrap();
    assert_eq!(
        client.map(Datum::new("before")).await.unwrap()[0].value,
        b"BEFORE"
    );
    server.restart();
    let after = client
        .map_batch((0..20).map(|i| Datum::new(format!("after{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(after.len(), 20);
    assert_eq!(after[19][0].value, b"AFTER19");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_an_error_naming_the_socket_not_a_silent_drop() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PyServer::start(&py, "map-async", dir.path());
    let opts = options(&server)
        .with_connect_timeout(Duration::from_millis(500))
        .with_retries(1);
    let mut client = MapClient::connect(opts).await.unwrap();
    server.kill();
    let err = client
        .map_batch(vec![Datum::new("x"); 10])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&server.socket.display().to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_server_info_times_out_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClientOptions::new(dir.path().join("map.sock"))
        .with_info_timeout(Duration::from_millis(100));
    let err = MapClient::connect(opts).await.err().unwrap();
    assert!(matches!(err, Error::ServerInfo { .. }), "{err}");
    assert!(err.to_string().contains("mapper-server-info"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_close_their_streams_so_the_server_keeps_serving() {
    // pynumaflow's async servers stop when a client's stream is cancelled; a call
    // that closes cleanly leaves the server up for the next one.
    use riffle_numaflow::UdfKind;
    use riffle_numaflow::call::{CallParams, call};
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "map-async", dir.path());
    for round in 0..3 {
        let out = call(
            UdfKind::Map,
            options(&server),
            vec![Datum::new(format!("r{round}"))],
            &CallParams::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            out[0]["messages"][0]["value"],
            serde_json::json!(format!("R{round}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulator_server() {
    use riffle_numaflow::client::AccumulatorClient;
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = PyServer::start(&py, "accumulator", dir.path());
    let mut client = AccumulatorClient::connect(options(&server)).await.unwrap();
    let datums = vec![
        Datum::new("a").with_keys(["x"]).with_id("1"),
        Datum::new("b").with_keys(["y"]).with_id("2"),
        Datum::new("c").with_keys(["x"]).with_id("3"),
    ];
    let out = client.accumulate(&datums).await.unwrap();
    let mut values: Vec<(Vec<String>, String)> = out
        .iter()
        .map(|a| {
            (
                a.datum.keys.clone(),
                String::from_utf8_lossy(&a.datum.value).to_string(),
            )
        })
        .collect();
    values.sort();
    assert_eq!(
        values,
        vec![
            (vec!["x".to_string()], "a#1".to_string()),
            (vec!["x".to_string()], "c#2".to_string()),
            (vec!["y".to_string()], "b#1".to_string()),
        ]
    );
    assert!(out.iter().all(|a| a.tags == vec!["py".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_find_the_processes_of_a_pynumaflow_multiproc_server() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PyServer::start(&py, "map-multiproc", dir.path());
    let opts = options(&server);
    let mut answered_by = Vec::new();
    for i in 0..2 {
        let mut client = MapClient::connect(opts.clone()).await.unwrap();
        let info = client.connection().info.clone().unwrap();
        assert_eq!(info.multiproc(), Some(2));
        assert_eq!(
            client.connection().socket,
            dir.path().join(format!("multiproc{i}.sock"))
        );
        let out = client.map(Datum::new("x")).await.unwrap();
        assert_eq!(out[0].value, b"X");
        assert_eq!(out[0].tags[0], "py");
        answered_by.push(out[0].tags[1].clone());
        client.close().await.unwrap();
    }
    assert_ne!(answered_by[0], answered_by[1], "one process answered both");
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
