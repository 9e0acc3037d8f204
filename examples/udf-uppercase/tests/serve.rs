//! The example binary as Numaflow runs it: a real process on a real socket, its
//! server info, a multi-process server, and a graceful exit on SIGTERM.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use riffle_numaflow::Datum;
use riffle_numaflow::client::{ClientOptions, MapClient};
use riffle_numaflow::info::ServerInfo;
use riffle_numaflow::runtime::block_on;

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_udf-uppercase"))
        .args(args)
        .spawn()
        .expect("start udf-uppercase")
}

fn sigterm_and_wait(mut child: Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..500 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("udf-uppercase did not exit within 5 s of SIGTERM");
}

fn upper_via(socket: &Path, info: &Path, value: &str) -> Vec<u8> {
    block_on(async {
        let options = ClientOptions::new(socket)
            .with_server_info_file(info)
            .with_info_timeout(Duration::from_secs(20));
        let mut client = MapClient::connect(options).await.unwrap();
        let out = client.map(Datum::new(value)).await.unwrap();
        client.close().await.unwrap();
        out[0].value.clone()
    })
}

#[test]
fn serves_a_socket_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let child = start(&["--socket", socket.to_str().unwrap()]);
    let info = dir.path().join("mapper-server-info");
    assert_eq!(upper_via(&socket, &info, "hello"), b"HELLO");
    let announced = block_on(ServerInfo::wait_for(&info, Duration::from_secs(5))).unwrap();
    assert_eq!(announced.language, "rust");
    assert_eq!(announced.metadata["MAP_MODE"], "unary-map");
    sigterm_and_wait(child);
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

#[test]
fn multi_process_server_announces_and_serves_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("map.sock");
    let child = start(&["--socket", socket.to_str().unwrap(), "--processes", "2"]);
    let info = dir.path().join("mapper-server-info");
    let announced = block_on(ServerInfo::wait_for(&info, Duration::from_secs(20))).unwrap();
    assert_eq!(announced.multiproc(), Some(2));
    for (i, word) in ["zero", "one"].iter().enumerate() {
        let socket = dir.path().join(format!("multiproc{i}.sock"));
        assert_eq!(
            upper_via(&socket, &info, word),
            word.to_uppercase().into_bytes()
        );
    }
    sigterm_and_wait(child);
    for i in 0..2 {
        assert!(!dir.path().join(format!("multiproc{i}.sock")).exists());
    }
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_udf-uppercase"))
        .arg("--processes")
        .arg("zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--processes needs a positive number"));
}
