//! Where a server listens, how its handlers run, and the serving loop they share.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::UnixListenerStream;

use crate::error::{Error, HandlerError, Result};
use crate::info::{self, ServerInfo};
use crate::kind::UdfKind;

use super::multiproc::{self, multiproc_socket};

/// The largest gRPC message a server sends or accepts: 64 MiB, as Numaflow uses.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// How a server runs its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// Handlers run as tokio tasks, concurrently.
    Async,
    /// Each handler call runs on a pool of at most `threads` blocking threads.
    Sync { threads: usize },
    /// `processes` copies of the program, each an async server on its own socket.
    MultiProcess { processes: usize },
}

/// Where and how a server serves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The UDF kind (decides the defaults and the server-info metadata).
    pub kind: UdfKind,
    /// The Unix socket to listen on.
    pub socket: PathBuf,
    /// The server-info file to write.
    pub server_info: PathBuf,
    /// The largest message accepted or sent.
    pub max_message_size: usize,
    /// How handlers run.
    pub mode: ServerMode,
    /// How long open streams may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Extra server-info metadata.
    pub metadata: BTreeMap<String, String>,
}

impl ServerOptions {
    /// Numaflow's defaults for a kind: its socket and server-info paths, 64 MiB, async.
    ///
    /// A sink becomes the fallback or on-success sink when Numaflow says so through
    /// `NUMAFLOW_UD_CONTAINER_TYPE` (`fb-udsink`, `ons-udsink`), as the platform
    /// starts the same image in those roles.
    pub fn for_kind(kind: UdfKind) -> Self {
        let kind = match kind {
            UdfKind::Sink => sink_role(std::env::var(CONTAINER_TYPE_ENV).ok().as_deref()),
            other => other,
        };
        let grace = std::env::var("NUMAFLOW_GRPC_SHUTDOWN_GRACE_PERIOD_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        Self {
            kind,
            socket: kind.default_socket(),
            server_info: kind.default_server_info(),
            max_message_size: MAX_MESSAGE_SIZE,
            mode: ServerMode::Async,
            shutdown_grace: Duration::from_secs(grace),
            metadata: BTreeMap::new(),
        }
    }

    /// Listen on `socket`; the server-info file moves beside it unless set explicitly.
    pub fn set_socket(&mut self, socket: impl Into<PathBuf>) {
        let socket = socket.into();
        if self.server_info == self.kind.default_server_info() {
            self.server_info = info::server_info_beside(&socket, self.kind.container_type());
        }
        self.socket = socket;
    }

    pub(crate) fn server_info_value(&self) -> ServerInfo {
        let mut info = ServerInfo::riffle(self.kind.minimum_numaflow_version());
        if let Ok(cpu) = std::env::var("NUMAFLOW_CPU_LIMIT") {
            info.metadata.insert("CPU_LIMIT".into(), cpu);
        }
        if let Some(mode) = self.kind.map_mode() {
            info.metadata.insert(info::MAP_MODE_KEY.into(), mode.into());
        }
        if let ServerMode::MultiProcess { processes } = self.mode {
            info.metadata
                .insert(info::MULTIPROC_KEY.into(), processes.to_string());
        }
        info.metadata.extend(self.metadata.clone());
        info
    }

    pub(crate) fn serve_error(&self, reason: impl Into<String>) -> Error {
        Error::Serve {
            kind: self.kind,
            socket: self.socket.clone(),
            reason: reason.into(),
        }
    }

    /// Runs a server to completion: a tokio runtime for the mode, serving until SIGTERM.
    ///
    /// In `MultiProcess` mode this process becomes the parent of `processes` children
    /// (the same program, re-executed) unless it is one of those children.
    pub(crate) fn start<F, Fut>(self, serve: F) -> Result<()>
    where
        F: FnOnce(ServerOptions) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let mut options = self;
        if let ServerMode::MultiProcess { processes } = options.mode {
            match multiproc::child_index() {
                None => return multiproc::run_parent(&options, processes),
                Some(index) => {
                    options.socket = multiproc_socket(&options.socket, index);
                    options.mode = ServerMode::Async;
                    options.server_info = PathBuf::new();
                }
            }
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let ServerMode::Sync { threads } = options.mode {
            builder.max_blocking_threads(threads.max(1));
        }
        let runtime = builder
            .build()
            .map_err(|e| options.serve_error(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(serve(options))
    }
}

/// The environment variable through which Numaflow tells a container its role.
pub const CONTAINER_TYPE_ENV: &str = "NUMAFLOW_UD_CONTAINER_TYPE";

/// The sink kind for a container role: `fb-udsink` → fallback, `ons-udsink` →
/// on-success, anything else → the main sink.
pub fn sink_role(container_type: Option<&str>) -> UdfKind {
    match container_type {
        Some("fb-udsink") => UdfKind::FallbackSink,
        Some("ons-udsink") => UdfKind::OnSuccessSink,
        _ => UdfKind::Sink,
    }
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds the socket, writes the server info, serves the router until `shutdown`
/// resolves, then gives open streams `options.shutdown_grace` to finish.
pub(crate) async fn run_router(
    options: &ServerOptions,
    router: tonic::transport::server::Router,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<()> {
    if let Some(dir) = options
        .socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| options.serve_error(format!("cannot create the socket's folder: {e}")))?;
    }
    match std::fs::remove_file(&options.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(options.serve_error(format!("cannot remove the stale socket: {e}"))),
    }
    let listener = UnixListener::bind(&options.socket)
        .map_err(|e| options.serve_error(format!("cannot bind: {e}")))?;
    if !options.server_info.as_os_str().is_empty() {
        options.server_info_value().write(&options.server_info)?;
    }
    tracing::info!(socket = %options.socket.display(), kind = %options.kind, "UDF server listening");

    let stopping = Arc::new(Notify::new());
    let stop_signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.notify_waiters();
        }
    };
    let grace = options.shutdown_grace;
    let stopped_waiting = {
        let notified = stopping.clone();
        async move {
            notified.notified().await;
            tokio::time::sleep(grace).await;
        }
    };
    let serve = router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop_signal);
    let result = tokio::select! {
        r = serve => r.map_err(|e| options.serve_error(format!("serving failed: {e}"))),
        () = stopped_waiting => {
            tracing::warn!(socket = %options.socket.display(), "open streams did not finish within the grace period");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&options.socket);
    result
}

/// Turns a handler's error into the gRPC status the client sees.
pub(crate) fn handler_status(kind: UdfKind, error: HandlerError) -> tonic::Status {
    tonic::Status::internal(format!("{kind} handler failed: {error}"))
}

/// Runs handler futures the way the mode says: as a tokio task, or on a blocking
/// thread. A panicking handler becomes an error, not a dead server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exec {
    kind: UdfKind,
    blocking: bool,
}

impl Exec {
    pub(crate) fn new(kind: UdfKind, mode: ServerMode) -> Self {
        Self {
            kind,
            blocking: matches!(mode, ServerMode::Sync { .. }),
        }
    }

    pub(crate) async fn run<T, F>(self, fut: F) -> std::result::Result<T, tonic::Status>
    where
        F: Future<Output = std::result::Result<T, HandlerError>> + Send + 'static,
        T: Send + 'static,
    {
        let joined = if self.blocking {
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(fut)).await
        } else {
            tokio::spawn(fut).await
        };
        match joined {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(handler_status(self.kind, e)),
            Err(e) => Err(tonic::Status::internal(format!(
                "{} handler panicked: {e}",
                self.kind
            ))),
        }
    }
}

/// The builder methods and serving entry points every server shares.
macro_rules! server_common {
    ($server:ident, $bound:path, $kind:expr) => {
        impl<U: $bound> $server<U> {
            /// A server for `udf` with Numaflow's default socket and server-info paths.
            pub fn new(udf: U) -> Self {
                Self::with_options(udf, $crate::server::ServerOptions::for_kind($kind))
            }

            /// A server for `udf` with explicit options.
            pub fn with_options(udf: U, options: $crate::server::ServerOptions) -> Self {
                Self {
                    udf: std::sync::Arc::new(udf),
                    options,
                }
            }

            /// Listen on this socket (the server-info file moves beside it unless set).
            pub fn with_socket(mut self, socket: impl Into<std::path::PathBuf>) -> Self {
                self.options.set_socket(socket);
                self
            }

            /// Write the server info to this file.
            pub fn with_server_info_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
                self.options.server_info = path.into();
                self
            }

            /// Run handlers in this mode.
            pub fn with_mode(mut self, mode: $crate::server::ServerMode) -> Self {
                self.options.mode = mode;
                self
            }

            /// Accept and send messages up to this size (64 MiB by default).
            pub fn with_max_message_size(mut self, bytes: usize) -> Self {
                self.options.max_message_size = bytes;
                self
            }

            /// Give open streams this long to finish after shutdown is asked.
            pub fn with_shutdown_grace(mut self, grace: std::time::Duration) -> Self {
                self.options.shutdown_grace = grace;
                self
            }

            /// The options the server will use.
            pub fn options(&self) -> &$crate::server::ServerOptions {
                &self.options
            }

            /// Serves until `shutdown` resolves.
            pub async fn serve_with_shutdown(
                self,
                shutdown: impl std::future::Future<Output = ()> + Send + 'static,
            ) -> $crate::Result<()> {
                let options = self.options.clone();
                let router = self.router();
                $crate::server::run_router(&options, router, Box::pin(shutdown)).await
            }

            /// Serves until the process gets SIGTERM or SIGINT.
            pub async fn serve(self) -> $crate::Result<()> {
                self.serve_with_shutdown($crate::server::options::shutdown_signal())
                    .await
            }

            /// Starts a runtime for the server's mode and serves until SIGTERM or SIGINT.
            pub fn start(self) -> $crate::Result<()> {
                let udf = self.udf;
                self.options.clone().start(move |options| {
                    let server = Self { udf, options };
                    server.serve()
                })
            }
        }
    };
}
pub(crate) use server_common;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_roles_follow_the_container_type() {
        assert_eq!(sink_role(Some("fb-udsink")), UdfKind::FallbackSink);
        assert_eq!(sink_role(Some("ons-udsink")), UdfKind::OnSuccessSink);
        assert_eq!(sink_role(Some("udsink")), UdfKind::Sink);
        assert_eq!(sink_role(None), UdfKind::Sink);
        let fallback = ServerOptions::for_kind(UdfKind::FallbackSink);
        assert_eq!(
            fallback.socket.to_str(),
            Some("/var/run/numaflow/fb-sink.sock")
        );
        assert_eq!(
            fallback.server_info.to_str(),
            Some("/var/run/numaflow/fb-sinker-server-info")
        );
    }
}
