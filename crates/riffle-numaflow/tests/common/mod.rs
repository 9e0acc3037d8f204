//! Test harness: the venv's Python (RIFFLE_TEST_PYTHON) and real pynumaflow processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The Python of the test venv, or `None` (with the reason printed) when it is not set
/// up locally. In CI (`CI=true`) a missing Python fails the test instead.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("RIFFLE_TEST_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        other => {
            let reason = match other {
                Some(p) => format!(
                    "RIFFLE_TEST_PYTHON={} does not exist",
                    PathBuf::from(p).display()
                ),
                None => "RIFFLE_TEST_PYTHON is not set".to_string(),
            };
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!(
                    "{reason}: run scripts/test.sh (its test.d/10-python.sh makes the venv with pynumaflow 0.14.0)"
                );
            }
            eprintln!(
                "SKIPPED: {reason}; source scripts/test.d/10-python.sh to run the pynumaflow conformance tests"
            );
            None
        }
    }
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A pynumaflow server process, killed when dropped.
pub struct PyServer {
    pub child: Child,
    pub socket: PathBuf,
    pub info: PathBuf,
    python: PathBuf,
    kind: String,
}

impl PyServer {
    pub fn start(python: &Path, kind: &str, dir: &Path) -> Self {
        let socket = dir.join(format!("{kind}.sock"));
        let info = dir.join(format!("{kind}-server-info"));
        let child = spawn(python, kind, &socket, &info);
        Self {
            child,
            socket,
            info,
            python: python.to_path_buf(),
            kind: kind.to_string(),
        }
    }

    /// Kills the server and starts a fresh one on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.info);
        self.child = spawn(&self.python, &self.kind, &self.socket, &self.info);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to 20 s for a graceful exit (a multi-process
    /// server then stops its workers too), then kills. Returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status); // reaped: its pid may belong to someone else now
        }
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

fn spawn(python: &Path, kind: &str, socket: &Path, info: &Path) -> Child {
    Command::new(python)
        .arg(script("serve.py"))
        .arg(kind)
        .arg(socket)
        .arg(info)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pynumaflow server")
}

impl Drop for PyServer {
    fn drop(&mut self) {
        // Killing a multi-process server's parent would leave its workers running.
        if self.kind.ends_with("multiproc") {
            self.terminate();
        }
        self.kill();
    }
}
