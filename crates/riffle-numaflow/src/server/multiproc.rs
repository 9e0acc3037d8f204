//! Multi-process servers: one parent that supervises N copies of the program, each an
//! async server on its own socket.
//!
//! [`ServerMode::MultiProcess { processes }`](super::ServerMode::MultiProcess) makes
//! `start()` re-execute the program `processes` times, with
//! [`MULTIPROC_INDEX_ENV`] set to the child's index. A child sees the index, serves
//! `multiproc{index}.sock` in the folder of the configured socket
//! ([`multiproc_socket`]; pynumaflow's multi-process servers use the same names under
//! `/var/run/numaflow/`) and writes no server info. The parent serves nothing itself:
//!
//! 1. It listens for SIGTERM and SIGINT *before* it starts a child, so that a signal
//!    that arrives during start-up stops the children started so far instead of
//!    killing the parent alone and leaving them behind. On Linux each child also asks
//!    the kernel for SIGTERM should the parent die without stopping it (SIGKILL).
//! 2. It removes stale `multiproc{index}.sock` files, starts the children and waits
//!    until every one has bound its socket; only then does it write the server info,
//!    announcing `MULTIPROC` = N, which is what clients wait for.
//! 3. It supervises. On SIGTERM or SIGINT it sends SIGTERM to every child with
//!    `kill(2)` (a slim image need not ship a `kill` program) and waits for them,
//!    giving each the shutdown grace period and a few seconds more before SIGKILL;
//!    it then exits cleanly if they all did. If a child exits on its own (a crash, the
//!    OOM killer) the parent stops the others the same way and fails, naming the child,
//!    so the container exits non-zero and the platform restarts it, rather than keep
//!    announcing a socket nobody serves.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::ServerOptions;
use crate::error::{Error, Result};

/// The environment variable a multi-process server sets on its children: the index.
pub const MULTIPROC_INDEX_ENV: &str = "RIFFLE_NUMAFLOW_MULTIPROC_INDEX";

/// How long the children have, together, to bind their sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the parent looks at its children.
const POLL: Duration = Duration::from_millis(20);
/// How long past the shutdown grace a child may take to exit before SIGKILL.
const KILL_MARGIN: Duration = Duration::from_secs(5);

/// The socket of child `index` of a multi-process server: `map.sock` → `multiproc0.sock`
/// in the same folder (`/var/run/numaflow/multiproc0.sock` by default).
///
/// ```
/// use riffle_numaflow::server::multiproc_socket;
/// use riffle_numaflow::UdfKind;
/// let socket = multiproc_socket(&UdfKind::Map.default_socket(), 3);
/// assert_eq!(socket.to_str(), Some("/var/run/numaflow/multiproc3.sock"));
/// ```
pub fn multiproc_socket(socket: &Path, index: usize) -> PathBuf {
    socket
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("multiproc{index}.sock"))
}

/// Whether `socket` is already one process's socket of a multi-process server
/// (`multiproc0.sock`, `multiproc12.sock`, ...).
pub fn is_multiproc_socket(socket: &Path) -> bool {
    socket
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("multiproc"))
        .and_then(|rest| rest.strip_suffix(".sock"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// This process's index when it is a child of a multi-process server.
pub(crate) fn child_index() -> Option<usize> {
    std::env::var(MULTIPROC_INDEX_ENV).ok()?.parse().ok()
}

/// Runs the parent of a multi-process server until SIGTERM or SIGINT, or until a
/// child exits on its own.
pub(crate) fn run_parent(options: &ServerOptions, processes: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| options.serve_error(format!("cannot start a runtime: {e}")))?;
    let mut children = Children::new(options)?;
    let ending = runtime.block_on(supervise(options, processes.max(1), &mut children));
    let stopped = children.stop(options.shutdown_grace + KILL_MARGIN);
    match ending {
        Ending::Signalled => stopped,
        Ending::Failed(error) => {
            if let Err(also) = stopped {
                tracing::warn!(error = %also, "while stopping the other server processes");
            }
            Err(error)
        }
    }
}

/// Why the parent stopped supervising.
enum Ending {
    /// SIGTERM or SIGINT: a clean shutdown.
    Signalled,
    /// Start-up failed or a child exited on its own.
    Failed(Error),
}

async fn supervise(
    options: &ServerOptions,
    processes: usize,
    children: &mut Children<'_>,
) -> Ending {
    // Listen before the first child exists: from here on a SIGTERM is ours to handle.
    let mut signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(e) => {
            return Ending::Failed(options.serve_error(format!("cannot listen for SIGTERM: {e}")));
        }
    };
    for index in 0..processes {
        if let Err(e) = children.start(index) {
            return Ending::Failed(e);
        }
    }
    let started = Instant::now();
    let mut announced = false;
    loop {
        // A signal first: children that exit because the same Ctrl-C reached them are
        // part of a clean shutdown, not a failure.
        tokio::select! {
            biased;
            () = signals.recv() => return Ending::Signalled,
            () = tokio::time::sleep(POLL) => {}
        }
        if let Some(e) = children.reap() {
            return Ending::Failed(e);
        }
        if !announced {
            match children.first_unbound() {
                None => {
                    if let Err(e) = options.server_info_value().write(&options.server_info) {
                        return Ending::Failed(e);
                    }
                    tracing::info!(processes, "multi-process server announced");
                    announced = true;
                }
                Some((index, socket)) if started.elapsed() > START_TIMEOUT => {
                    return Ending::Failed(options.serve_error(format!(
                        "server process {index} did not bind {} within {START_TIMEOUT:?}",
                        socket.display()
                    )));
                }
                Some(_) => {}
            }
        }
    }
}

/// SIGTERM and SIGINT, listened to from the moment this is made.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// One child: its index, the process, and its exit status once reaped.
struct Process {
    index: usize,
    child: Child,
    exited: Option<ExitStatus>,
}

/// The parent's children and how to start, watch and stop them.
struct Children<'a> {
    options: &'a ServerOptions,
    program: PathBuf,
    args: Vec<OsString>,
    processes: Vec<Process>,
}

impl<'a> Children<'a> {
    fn new(options: &'a ServerOptions) -> Result<Self> {
        let program = std::env::current_exe().map_err(|e| {
            options.serve_error(format!("cannot find the program to re-execute: {e}"))
        })?;
        Ok(Self {
            options,
            program,
            args: std::env::args_os().skip(1).collect(),
            processes: Vec::new(),
        })
    }

    fn socket(&self, index: usize) -> PathBuf {
        multiproc_socket(&self.options.socket, index)
    }

    /// Starts child `index` (after removing a stale socket it would be mistaken for).
    fn start(&mut self, index: usize) -> Result<()> {
        let socket = self.socket(index);
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(self.options.serve_error(format!(
                    "cannot remove the stale socket {}: {e}",
                    socket.display()
                )));
            }
        }
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env(MULTIPROC_INDEX_ENV, index.to_string());
        stop_with_parent(&mut command);
        let child = command.spawn().map_err(|e| {
            self.options
                .serve_error(format!("cannot start server process {index}: {e}"))
        })?;
        tracing::debug!(index, pid = child.id(), "server process started");
        self.processes.push(Process {
            index,
            child,
            exited: None,
        });
        Ok(())
    }

    /// The first child whose socket does not exist yet.
    fn first_unbound(&self) -> Option<(usize, PathBuf)> {
        self.processes
            .iter()
            .map(|p| (p.index, self.socket(p.index)))
            .find(|(_, socket)| !socket.exists())
    }

    /// Notes children that exited; the first one is an error (nobody asked it to stop).
    fn reap(&mut self) -> Option<Error> {
        for p in self.processes.iter_mut().filter(|p| p.exited.is_none()) {
            let reason = match p.child.try_wait() {
                Ok(None) => continue,
                Ok(Some(status)) => {
                    p.exited = Some(status);
                    format!("exited with {status}")
                }
                Err(e) => format!("cannot be watched: {e}"),
            };
            return Some(self.options.serve_error(format!(
                "server process {} (pid {}) {reason}; stopping the others",
                p.index,
                p.child.id()
            )));
        }
        None
    }

    /// Sends SIGTERM to every child still running and waits up to `patience` for all
    /// of them; stragglers get SIGKILL. Fails naming the first child that did not exit
    /// cleanly.
    fn stop(&mut self, patience: Duration) -> Result<()> {
        for p in self.processes.iter_mut().filter(|p| p.exited.is_none()) {
            if let Err(e) = terminate(&p.child) {
                tracing::warn!(index = p.index, error = %e, "cannot send SIGTERM; killing");
                let _ = p.child.kill();
            }
        }
        let deadline = Instant::now() + patience;
        let mut failure = None;
        for p in &mut self.processes {
            while p.exited.is_none() {
                match p.child.try_wait() {
                    Ok(Some(status)) => p.exited = Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                    Ok(None) => {
                        let _ = p.child.kill();
                        p.exited = p.child.wait().ok();
                        failure.get_or_insert(format!(
                            "server process {} did not stop within {patience:?} of SIGTERM and was killed",
                            p.index
                        ));
                    }
                    Err(e) => {
                        failure.get_or_insert(format!("server process {}: {e}", p.index));
                        break;
                    }
                }
            }
            // Dying of the SIGTERM it was sent (before it could handle it) is a clean stop.
            if let Some(status) = p
                .exited
                .filter(|s| !s.success() && s.signal() != Some(libc::SIGTERM))
            {
                failure.get_or_insert(format!("server process {} exited with {status}", p.index));
            }
        }
        match failure {
            Some(reason) => Err(self.options.serve_error(reason)),
            None => Ok(()),
        }
    }
}

/// Sends SIGTERM to a child that has not been reaped (so its pid is still its own).
fn terminate(child: &Child) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| std::io::Error::other(format!("pid {} out of range", child.id())))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// On Linux, asks the kernel to send the child SIGTERM when the parent dies, so that a
/// parent killed with SIGKILL does not leave its children serving.
#[cfg(target_os = "linux")]
fn stop_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // prctl(2) and getppid(2), which are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the request took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_with_parent(_: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiproc_sockets_sit_beside_the_main_socket() {
        let socket = multiproc_socket(Path::new("/tmp/udf/map.sock"), 3);
        assert_eq!(socket.to_str(), Some("/tmp/udf/multiproc3.sock"));
        assert!(is_multiproc_socket(&socket));
        assert!(!is_multiproc_socket(Path::new("/tmp/udf/map.sock")));
        assert!(!is_multiproc_socket(Path::new("/tmp/udf/multiproc.sock")));
        assert!(!is_multiproc_socket(Path::new("/tmp/udf/multiprocx.sock")));
    }

    #[test]
    fn terminate_sends_sigterm_without_a_kill_program() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        terminate(&child).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
