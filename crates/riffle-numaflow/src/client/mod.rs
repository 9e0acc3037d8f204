//! UDF clients: call a UDF server of any language over Numaflow's protocol.
//!
//! Connecting follows what a Numaflow data plane does with a user container:
//!
//! 1. wait for the server-info file (beside the socket unless given) to be complete
//!    and check the server is compatible ([`ServerInfo::check_compatible`]);
//! 2. connect the Unix socket, retrying until [`ClientOptions::connect_timeout`]; when
//!    the server info announces a multi-process server (`MULTIPROC` = N), connect one
//!    of its `multiproc{i}.sock` sockets instead, in turn
//!    ([`ClientOptions::socket_to_dial`]);
//! 3. ask `IsReady`;
//! 4. open one bidirectional stream and exchange the handshake.
//!
//! Requests then go in batches: each datum gets an id, the whole batch is written to
//! the stream while responses are read back and matched by id, and the call returns
//! when every id is answered (or, for batch map and sink, at the server's
//! end-of-transmission). A batch that takes longer than
//! [`ClientOptions::request_timeout`] fails with [`Error::Timeout`]. If the server
//! goes away mid-batch (it crashed or restarted), the client reconnects and sends the
//! batch again, up to [`ClientOptions::retries`] times, and otherwise fails naming the
//! socket and kind: a batch is never silently dropped. A handler's own error is not
//! retried, whatever gRPC code the server's SDK gives it (Riffle and pynumaflow use
//! `INTERNAL`, others `UNKNOWN`): it is returned as [`Error::Rpc`] with the handler's
//! message. Only failures of the connection itself are resent.
//!
//! [`ServerInfo::check_compatible`]: crate::info::ServerInfo::check_compatible

mod accumulator;
mod connection;
mod map;
mod reduce;
mod sideinput;
mod sink;
mod source;
mod transform;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use accumulator::AccumulatorClient;
pub use connection::{Connection, WaitNotice};
pub use map::{MapClient, MapMode};
pub use reduce::ReduceClient;
pub use sideinput::SideInputClient;
pub use sink::SinkClient;
pub use source::SourceClient;
pub use transform::SourceTransformClient;

use crate::info;
use crate::kind::UdfKind;
use crate::server::{MAX_MESSAGE_SIZE, is_multiproc_socket, multiproc_socket};

/// How many keys of one window share a reduce stream by default.
pub const KEYS_PER_STREAM: usize = 1_000;

/// Where a client connects and how patient it is.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's Unix socket.
    pub socket: PathBuf,
    /// The server-info file; `None` means the kind's file beside the socket.
    pub server_info: Option<PathBuf>,
    /// Whether to wait for and check the server-info file at all.
    pub check_server_info: bool,
    /// How long to wait for the server-info file.
    pub info_timeout: Duration,
    /// How long to keep trying to connect (and to reconnect after a restart).
    pub connect_timeout: Duration,
    /// How long one batch may take.
    pub request_timeout: Duration,
    /// How many times a batch is resent after the server went away.
    pub retries: usize,
    /// The largest message sent or accepted.
    pub max_message_size: usize,
    /// How many keys of one window a reduce step sends in one `ReduceFn` stream.
    pub keys_per_stream: usize,
    /// How many connections these options (and their clones) have opened: spreads
    /// connections over the processes of a multi-process server.
    opened: Arc<AtomicUsize>,
    /// A malformed `RIFFLE_UDF_*` variable, reported when connecting.
    env_error: Option<String>,
}

/// The variables that set the waits' defaults, and which wait each sets.
const WAIT_VARIABLES: [&str; 3] = [
    "RIFFLE_UDF_INFO_TIMEOUT",
    "RIFFLE_UDF_CONNECT_TIMEOUT",
    "RIFFLE_UDF_REQUEST_TIMEOUT",
];

impl ClientOptions {
    /// Options for a server on `socket`, with its server info beside it.
    ///
    /// ```
    /// use riffle_numaflow::client::ClientOptions;
    /// let options = ClientOptions::new("/tmp/udf/map.sock").with_retries(5);
    /// assert_eq!(options.retries, 5);
    /// ```
    ///
    /// The waits default to 60 s for the server-info file, 30 s to connect and 120 s
    /// per batch; `RIFFLE_UDF_INFO_TIMEOUT`, `RIFFLE_UDF_CONNECT_TIMEOUT` and
    /// `RIFFLE_UDF_REQUEST_TIMEOUT` (`90s`, `500ms`, `2m`) change those defaults for
    /// every client of the process, registered dataflows included; the `with_*`
    /// methods still set them in code. A malformed variable fails the connection,
    /// naming it.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        let mut options = Self {
            socket: socket.as_ref().to_path_buf(),
            server_info: None,
            check_server_info: true,
            info_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            retries: 3,
            max_message_size: MAX_MESSAGE_SIZE,
            keys_per_stream: KEYS_PER_STREAM,
            opened: Arc::default(),
            env_error: None,
        };
        for name in WAIT_VARIABLES {
            let Ok(text) = std::env::var(name) else {
                continue;
            };
            match riffle::duration::parse(&text) {
                Ok(wait) => match name {
                    "RIFFLE_UDF_INFO_TIMEOUT" => options.info_timeout = wait,
                    "RIFFLE_UDF_CONNECT_TIMEOUT" => options.connect_timeout = wait,
                    _ => options.request_timeout = wait,
                },
                Err(why) => options.env_error = Some(format!("{name}: {why}")),
            }
        }
        options
    }

    /// A malformed `RIFFLE_UDF_*` wait variable, if there was one.
    pub fn env_error(&self) -> Option<&str> {
        self.env_error.as_deref()
    }

    /// Options for a server of `kind` at Numaflow's default socket and server-info paths.
    pub fn for_kind(kind: UdfKind) -> Self {
        let mut options = Self::new(kind.default_socket());
        options.server_info = Some(kind.default_server_info());
        options
    }

    /// Read the server info from this file.
    pub fn with_server_info_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_info = Some(path.into());
        self
    }

    /// Skip the server-info file (for servers that do not write one).
    pub fn without_server_info(mut self) -> Self {
        self.check_server_info = false;
        self
    }

    /// Fail a batch that takes longer than this.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Keep trying to connect for this long.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Wait this long for the server-info file.
    pub fn with_info_timeout(mut self, timeout: Duration) -> Self {
        self.info_timeout = timeout;
        self
    }

    /// Resend a batch up to this many times after the server went away.
    pub fn with_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Send and accept messages up to this size (64 MiB by default, as Numaflow).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many keys of one window a reduce or reduce-stream step sends to the
    /// server in one `ReduceFn` stream (default 1,000): the keys whose windows close
    /// together share a stream, as in Numaflow's data plane, instead of a stream
    /// being opened for every key and window (what 1 does).
    pub fn with_keys_per_stream(mut self, keys: usize) -> Self {
        self.keys_per_stream = keys.max(1);
        self
    }

    /// The server-info file this client reads for `kind`.
    pub fn server_info_path(&self, kind: UdfKind) -> PathBuf {
        self.server_info
            .clone()
            .unwrap_or_else(|| info::server_info_beside(&self.socket, kind.container_type()))
    }

    /// The socket a new connection dials, given the server's info.
    ///
    /// A multi-process server (Riffle's `MultiProcess` mode, pynumaflow's
    /// `MapMultiprocServer`) announces `MULTIPROC` = N and serves
    /// `multiproc0.sock` ... `multiproc{N-1}.sock` in the folder of the configured
    /// socket instead of the socket itself; successive connections made through these
    /// options (or a clone) take them in turn. A socket that already names one of them
    /// is kept.
    ///
    /// ```
    /// use riffle_numaflow::client::ClientOptions;
    /// use riffle_numaflow::info::{MULTIPROC_KEY, ServerInfo};
    /// let options = ClientOptions::new("/tmp/udf/map.sock");
    /// let mut info = ServerInfo::riffle("1.4.0-z");
    /// assert_eq!(options.socket_to_dial(Some(&info)).to_str(), Some("/tmp/udf/map.sock"));
    /// info.metadata.insert(MULTIPROC_KEY.into(), "2".into());
    /// let dialed: Vec<_> = (0..3).map(|_| options.clone().socket_to_dial(Some(&info))).collect();
    /// assert_eq!(dialed[0].to_str(), Some("/tmp/udf/multiproc0.sock"));
    /// assert_eq!(dialed[1].to_str(), Some("/tmp/udf/multiproc1.sock"));
    /// assert_eq!(dialed[2].to_str(), Some("/tmp/udf/multiproc0.sock"));
    /// ```
    pub fn socket_to_dial(&self, info: Option<&info::ServerInfo>) -> PathBuf {
        match info.and_then(info::ServerInfo::multiproc) {
            Some(processes) if processes > 0 && !is_multiproc_socket(&self.socket) => {
                let index = self.opened.fetch_add(1, Ordering::Relaxed) % processes;
                multiproc_socket(&self.socket, index)
            }
            _ => self.socket.clone(),
        }
    }
}

/// Whether a failed call is worth resending on a new connection: the connection broke,
/// as opposed to the server answering with an error.
///
/// The code alone cannot tell: a connection that breaks mid-call (the server process
/// died) surfaces as `UNKNOWN` or `CANCELLED`, and so does a handler error in some SDKs
/// (grpc-python answers `UNKNOWN` for an uncaught exception; a Go handler returning a
/// plain error does too). What tells them apart is where the status was made. A status
/// the server sent arrives in the response's trailers and has no source error; a status
/// tonic makes on this side from a failed connection (a closed socket, an HTTP/2
/// reset, a refused connect) keeps that I/O or HTTP/2 error as its source. So a
/// transport failure is a status with a source, or `UNAVAILABLE` (gRPC's code for "not
/// now, try again", which a server that is shutting down answers). Everything else the
/// server sent, `INTERNAL` from Riffle and pynumaflow handlers and `UNKNOWN` from
/// others included, is the handler's answer: resending the batch would only repeat it.
pub(crate) fn is_transport_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_are_transport_failures() {
        // What a server sends: the handler's answer, whatever the code.
        assert!(!is_transport_failure(&tonic::Status::unknown(
            "Exception calling application: boom"
        )));
        assert!(!is_transport_failure(&tonic::Status::internal(
            "map handler failed: boom"
        )));
        assert!(!is_transport_failure(&tonic::Status::cancelled(
            "cancelled by the handler"
        )));
        assert!(is_transport_failure(&tonic::Status::unavailable(
            "shutting down"
        )));
        // What tonic makes from a broken connection: an UNKNOWN with the I/O error.
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert!(is_transport_failure(&broken));
    }
}
