//! Riffle's multi-process server as a container runs it: a parent process, its
//! children on `multiproc{N}.sock`, signals, and clients that find the children.
//!
//! A multi-process server re-executes its own program, so these tests re-execute this
//! test binary: `server_role` is the server (it does nothing unless [`ROLE_DIR`] is
//! set), and each test starts it as a real process and watches the real children it
//! starts through `/proc`.

#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use riffle_numaflow::call::{CallParams, call};
use riffle_numaflow::client::{ClientOptions, MapClient};
use riffle_numaflow::info::ServerInfo;
use riffle_numaflow::runtime::block_on;
use riffle_numaflow::server::{MULTIPROC_INDEX_ENV, MapServer, ServerMode};
use riffle_numaflow::udf::map_fn;
use riffle_numaflow::{Datum, Message, UdfKind};

/// Where `server_role` serves; unset, `server_role` returns at once.
const ROLE_DIR: &str = "RIFFLE_TEST_MULTIPROC_DIR";
/// How long each child of `server_role` waits before it starts serving.
const CHILD_DELAY_MS: &str = "RIFFLE_TEST_MULTIPROC_CHILD_DELAY_MS";

/// The server the other tests start: a two-process map server whose answers say which
/// process made them (`"1:HELLO"`). Exits 0 when `start` returns `Ok`, 3 otherwise.
#[test]
fn server_role() {
    let Some(dir) = std::env::var_os(ROLE_DIR).map(PathBuf::from) else {
        return;
    };
    let index = std::env::var(MULTIPROC_INDEX_ENV).unwrap_or_else(|_| "parent".into());
    if index != "parent"
        && let Some(ms) = std::env::var(CHILD_DELAY_MS)
            .ok()
            .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let server = MapServer::new(map_fn(move |d: Datum| {
        let upper = String::from_utf8_lossy(&d.value).to_uppercase();
        Ok(vec![Message::new(format!("{index}:{upper}"))])
    }))
    .with_socket(dir.join("map.sock"))
    .with_mode(ServerMode::MultiProcess { processes: 2 })
    .with_shutdown_grace(Duration::from_secs(1));
    let code = match server.start() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("server_role: {e}");
            3
        }
    };
    std::process::exit(code);
}

/// A running `server_role` parent; on drop it and its children are killed.
struct Server {
    parent: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let parent = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "server_role", "--nocapture"])
            .env(ROLE_DIR, dir.path())
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { parent, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn info(&self) -> ServerInfo {
        block_on(ServerInfo::wait_for(
            &self.path("mapper-server-info"),
            Duration::from_secs(30),
        ))
        .unwrap()
    }

    fn pid(&self) -> u32 {
        self.parent.id()
    }

    /// The parent's children, once there are `count` of them.
    fn children(&self, count: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let children = children_of(self.pid());
            if children.len() >= count || Instant::now() > deadline {
                assert_eq!(children.len(), count, "the parent's children: {children:?}");
                return children;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the parent to exit; returns its status and what it wrote to stderr.
    fn wait(&mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.parent.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = Vec::new();
        if let Some(mut pipe) = self.parent.stderr.take() {
            // Read what is there without waiting for children that may still hold the pipe.
            let _ = set_nonblocking(&pipe);
            let _ = pipe.read_to_end(&mut stderr);
        }
        (status, String::from_utf8_lossy(&stderr).into_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in children_of(self.pid()) {
            signal(child, libc::SIGKILL);
        }
        let _ = self.parent.kill();
        let _ = self.parent.wait();
    }
}

fn set_nonblocking(pipe: &std::process::ChildStderr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a file descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// A process's state letter and parent pid, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect();
    children.sort_unstable();
    children
}

/// Whether a process still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X' | 'x'))
}

fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "server processes left running: {left:?}");
}

fn map_once(options: ClientOptions, value: &str) -> (PathBuf, String) {
    block_on(async {
        let mut client = MapClient::connect(options).await.unwrap();
        let out = client.map(Datum::new(value)).await.unwrap();
        let socket = client.connection().socket.clone();
        client.close().await.unwrap();
        (socket, String::from_utf8(out[0].value.clone()).unwrap())
    })
}

fn options_for(socket: &Path, server: &Server) -> ClientOptions {
    ClientOptions::new(socket)
        .with_server_info_file(server.path("mapper-server-info"))
        .with_info_timeout(Duration::from_secs(30))
}

#[test]
fn sigterm_stops_every_process_without_a_kill_program() {
    // No `kill` program on the PATH, as in a slim image.
    let mut server = Server::start(&[("PATH", "/nonexistent")]);
    assert_eq!(server.info().multiproc(), Some(2));
    for i in 0..2 {
        let socket = server.path(&format!("multiproc{i}.sock"));
        let (dialed, answer) = map_once(options_for(&socket, &server), "hi");
        assert_eq!(answer, format!("{i}:HI"));
        assert_eq!(dialed, socket, "a process's own socket is dialed as given");
    }
    let children = server.children(2);
    signal(server.pid(), libc::SIGTERM);
    let (status, stderr) = server.wait(Duration::from_secs(15));
    assert!(status.success(), "exit after SIGTERM: {status}; {stderr}");
    assert_all_gone(&children);
    for i in 0..2 {
        assert!(!server.path(&format!("multiproc{i}.sock")).exists());
    }
}

#[test]
fn a_child_that_dies_stops_the_others_and_fails_the_server() {
    let mut server = Server::start(&[]);
    server.info();
    let children = server.children(2);
    signal(children[0], libc::SIGKILL);
    let (status, stderr) = server.wait(Duration::from_secs(15));
    assert!(!status.success(), "the parent exited cleanly: {stderr}");
    assert_eq!(status.code(), Some(3), "{status}: {stderr}");
    assert!(stderr.contains("server process"), "{stderr}");
    assert!(stderr.contains("signal: 9"), "{stderr}");
    assert_all_gone(&children);
}

#[test]
fn sigterm_during_start_up_leaves_no_process_behind() {
    // The children take 3 s to start serving; SIGTERM comes before any socket exists.
    let mut server = Server::start(&[(CHILD_DELAY_MS, "3000")]);
    let children = server.children(2);
    signal(server.pid(), libc::SIGTERM);
    let (status, stderr) = server.wait(Duration::from_secs(15));
    assert_all_gone(&children);
    assert!(status.success(), "exit after SIGTERM: {status}; {stderr}");
    assert!(!server.path("mapper-server-info").exists());
}

#[test]
fn clients_spread_over_the_processes_of_a_multiprocess_server() {
    let mut server = Server::start(&[]);
    let socket = server.path("map.sock");
    let options = options_for(&socket, &server);
    let answers = block_on(async {
        // Three connections through clones of one set of options, open at once.
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(MapClient::connect(options.clone()).await.unwrap());
        }
        let mut answers = Vec::new();
        for client in &mut clients {
            let out = client.map(Datum::new("x")).await.unwrap();
            answers.push((
                client.connection().socket.clone(),
                String::from_utf8(out[0].value.clone()).unwrap(),
            ));
        }
        for client in clients {
            client.close().await.unwrap();
        }
        answers
    });
    let expected: Vec<(PathBuf, String)> = [0, 1, 0]
        .iter()
        .map(|i| (server.path(&format!("multiproc{i}.sock")), format!("{i}:X")))
        .collect();
    assert_eq!(answers, expected);

    // `riffle udf call` finds the processes the same way.
    let lines = block_on(call(
        UdfKind::Map,
        options_for(&socket, &server),
        vec![Datum::new("y")],
        &CallParams::default(),
    ))
    .unwrap();
    assert_eq!(lines[0]["messages"][0]["value"], "0:Y");

    signal(server.pid(), libc::SIGTERM);
    let (status, stderr) = server.wait(Duration::from_secs(15));
    assert!(status.success(), "exit after SIGTERM: {status}; {stderr}");
}
