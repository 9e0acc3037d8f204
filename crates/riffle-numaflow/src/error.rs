//! The crate's one error type.
//!
//! Every variant names what failed (a socket path, a server-info file, the UDF kind)
//! and why, so a message like `map UDF at /var/run/numaflow/map.sock: server closed
//! the stream with 3 of 8 responses missing` is enough to start debugging.

use std::path::PathBuf;
use std::time::Duration;

use crate::kind::UdfKind;

/// A failure of a UDF server, client or in-process call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server-info file could not be read, parsed or written.
    #[error("server-info file {path}: {reason}")]
    ServerInfo { path: PathBuf, reason: String },
    /// The server announced a protocol or version this client cannot speak.
    #[error("{kind} UDF at {socket}: incompatible server: {reason}")]
    Incompatible {
        kind: UdfKind,
        socket: PathBuf,
        reason: String,
    },
    /// The Unix socket could not be connected.
    #[error("{kind} UDF at {socket}: cannot connect: {reason}")]
    Connect {
        kind: UdfKind,
        socket: PathBuf,
        reason: String,
    },
    /// The server answered a call with a gRPC error (a handler's error included).
    #[error("{kind} UDF at {socket}: {}: {}", status.code(), status.message())]
    Rpc {
        kind: UdfKind,
        socket: PathBuf,
        status: Box<tonic::Status>,
    },
    /// The peer broke the protocol (a missing handshake, an unknown id, a lost response).
    #[error("{kind} UDF at {socket}: protocol error: {reason}")]
    Protocol {
        kind: UdfKind,
        socket: PathBuf,
        reason: String,
    },
    /// A call took longer than the configured timeout.
    #[error("{kind} UDF at {socket}: no answer within {after:?} ({what})")]
    Timeout {
        kind: UdfKind,
        socket: PathBuf,
        after: Duration,
        what: String,
    },
    /// The server could not bind, serve or shut down.
    #[error("{kind} server at {socket}: {reason}")]
    Serve {
        kind: UdfKind,
        socket: PathBuf,
        reason: String,
    },
    /// A handler called in-process (inside a Dataflow) failed.
    #[error("{kind} UDF in step {step_id:?}: {message}")]
    Handler {
        kind: UdfKind,
        step_id: String,
        message: String,
    },
    /// Input that cannot be turned into a datum (e.g. a bad JSON line for `riffle udf call`).
    #[error("bad input {what}: {reason}")]
    Input { what: String, reason: String },
}

/// The crate's `Result`, with [`Error`] as its error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a UDF handler returns when it fails: any error, boxed.
///
/// A handler's error travels to the caller as a gRPC `INTERNAL` status carrying the
/// error's message; the server keeps serving other streams.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of a UDF handler.
pub type HandlerResult<T> = std::result::Result<T, HandlerError>;
