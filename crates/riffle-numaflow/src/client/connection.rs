//! One connection to a UDF server: server info checked, socket connected, ready.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::ClientOptions;
use crate::error::{Error, Result};
use crate::info::ServerInfo;
use crate::kind::UdfKind;

/// A connected, ready channel to a server of one kind.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The kind of UDF the server serves.
    pub kind: UdfKind,
    /// The options the connection was made with.
    pub options: ClientOptions,
    /// The socket dialed: the options' socket, or one process's socket of a
    /// multi-process server.
    pub socket: PathBuf,
    /// The server's info, when it was read.
    pub info: Option<ServerInfo>,
    /// The gRPC channel over the socket.
    pub channel: Channel,
}

impl Connection {
    /// Waits for the server info, checks it, and connects the socket (one process's
    /// socket when the info announces a multi-process server).
    ///
    /// `ready` is the kind's `IsReady` call; connecting retries until it answers `true`.
    pub async fn open<F, Fut>(kind: UdfKind, options: &ClientOptions, ready: F) -> Result<Self>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<bool, tonic::Status>>,
    {
        if let Some(why) = options.env_error() {
            return Err(Error::Connect {
                kind,
                socket: options.socket.clone(),
                reason: format!("bad environment variable {why}"),
            });
        }
        let info = if options.check_server_info {
            let path = options.server_info_path(kind);
            // The final error names the socket too: that is where the server
            // should be listening.
            let info = ServerInfo::wait_for(&path, options.info_timeout)
                .await
                .map_err(|e| match e {
                    Error::ServerInfo { path, reason } => Error::ServerInfo {
                        path,
                        reason: format!(
                            "{reason}; the {kind} server should listen on {}",
                            options.socket.display()
                        ),
                    },
                    other => other,
                })?;
            info.check_compatible()
                .map_err(|reason| Error::Incompatible {
                    kind,
                    socket: options.socket.clone(),
                    reason,
                })?;
            Some(info)
        } else {
            None
        };
        let socket = options.socket_to_dial(info.as_ref());
        if socket != options.socket {
            tracing::debug!(socket = %socket.display(), %kind, "connecting one process of a multi-process server");
        }
        let channel = connect_ready(kind, &socket, options.connect_timeout, ready).await?;
        Ok(Self {
            kind,
            options: options.clone(),
            socket,
            info,
            channel,
        })
    }

    /// Connects again (after the server restarted), with the same patience.
    pub async fn reopen<F, Fut>(&mut self, ready: F) -> Result<()>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<bool, tonic::Status>>,
    {
        self.channel =
            connect_ready(self.kind, &self.socket, self.options.connect_timeout, ready).await?;
        Ok(())
    }

    pub(crate) fn rpc_error(&self, status: tonic::Status) -> Error {
        Error::Rpc {
            kind: self.kind,
            socket: self.socket.clone(),
            status: Box::new(status),
        }
    }

    pub(crate) fn protocol_error(&self, reason: impl Into<String>) -> Error {
        Error::Protocol {
            kind: self.kind,
            socket: self.socket.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn timeout_error(&self, what: impl Into<String>) -> Error {
        Error::Timeout {
            kind: self.kind,
            socket: self.socket.clone(),
            after: self.options.request_timeout,
            what: what.into(),
        }
    }
}

/// A channel over a Unix socket (connects lazily on first use).
pub(crate) fn unix_channel(socket: PathBuf) -> Channel {
    // The URI is required by the HTTP/2 layer but never resolved: the connector below
    // always dials the socket.
    Endpoint::from_static("http://localhost")
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
}

async fn connect_ready<F, Fut>(
    kind: UdfKind,
    socket: &std::path::Path,
    timeout: Duration,
    ready: F,
) -> Result<Channel>
where
    F: Fn(Channel) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<bool, tonic::Status>>,
{
    let start = Instant::now();
    let mut notice = super::WaitNotice::new(timeout);
    let mut last;
    loop {
        if socket.exists() {
            let channel = unix_channel(socket.to_path_buf());
            match tokio::time::timeout(Duration::from_secs(5), ready(channel.clone())).await {
                Ok(Ok(true)) => return Ok(channel),
                Ok(Ok(false)) => last = "IsReady answered false".into(),
                Ok(Err(status)) => last = format!("IsReady failed: {}", status.message()),
                Err(_) => last = "IsReady did not answer within 5s".into(),
            }
        } else {
            last = "the socket does not exist".into();
        }
        if start.elapsed() >= timeout {
            return Err(Error::Connect {
                kind,
                socket: socket.to_path_buf(),
                reason: format!("not ready after {timeout:?}: {last}"),
            });
        }
        notice.tell(|| format!("the {kind} UDF at {} ({last})", socket.display()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Says on stderr what a client is waiting for, so a run waiting for a UDF server
/// does not look hung: first after [`WaitNotice::FIRST`], then every
/// [`WaitNotice::EVERY`].
pub struct WaitNotice {
    start: Instant,
    next: Duration,
    timeout: Duration,
}

impl WaitNotice {
    /// When the first notice comes.
    pub const FIRST: Duration = Duration::from_secs(2);
    /// How often the next ones come.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// Starts the clock of a wait of at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            start: Instant::now(),
            next: Self::FIRST,
            timeout,
        }
    }

    /// Prints `waiting for WHAT (N s of at most M s)` when a notice is due.
    pub fn tell(&mut self, what: impl FnOnce() -> String) {
        let waited = self.start.elapsed();
        if waited < self.next {
            return;
        }
        self.next = waited + Self::EVERY;
        let line = format!(
            "waiting for {} ({:.0} s of at most {:.0} s)\n",
            what(),
            waited.as_secs_f64(),
            self.timeout.as_secs_f64()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }
}

/// Lets the connection's background tasks run a few times, so that a dropped channel
/// actually closes its socket even when the caller stops driving the runtime next.
pub(crate) async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}
