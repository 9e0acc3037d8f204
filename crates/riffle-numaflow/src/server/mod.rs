//! UDF servers: the Rust SDK side of Numaflow's protocol.
//!
//! A server wraps one UDF (a [`Mapper`](crate::udf::Mapper), a
//! [`Sinker`](crate::udf::Sinker), ...) and serves it over gRPC on a Unix domain socket,
//! the way a Numaflow data plane expects a user container to:
//!
//! 1. it removes a stale socket file and binds the socket (by default the kind's path
//!    under `/var/run/numaflow/`, see [`UdfKind::default_socket`]);
//! 2. it writes the server-info file ([`crate::info`]) with its end marker;
//! 3. it answers `IsReady`, and on each bidirectional stream expects the handshake
//!    (`sot`) first, echoes every request's id on its responses, and for the batch
//!    kinds (batch map, sink) answers once it sees the end-of-transmission marker;
//! 4. it allows messages up to 64 MiB each way;
//! 5. on SIGTERM or SIGINT it stops accepting streams and lets the open ones finish
//!    for a grace period.
//!
//! A handler's error ends only the stream it happened on, as a gRPC `INTERNAL` status
//! carrying the error's message; the server keeps serving other streams.
//!
//! How handlers run is the [`ServerMode`]: `Async` runs them as tokio tasks,
//! `Sync { threads }` runs each call on a bounded pool of blocking threads (for
//! handlers that block), and `MultiProcess { processes }` starts that many copies of
//! the program, each serving its own socket (`multiproc0.sock`, ...), announces the
//! count in the server info as `MULTIPROC`, and supervises them: SIGTERM stops them
//! all, and a child that dies stops the others and fails the server.
//!
//! ```no_run
//! use riffle_numaflow::server::MapServer;
//! use riffle_numaflow::udf::map_fn;
//! use riffle_numaflow::Message;
//!
//! fn main() -> riffle_numaflow::Result<()> {
//!     MapServer::new(map_fn(|d| Ok(vec![Message::new(d.value.to_ascii_uppercase())])))
//!         .start()
//! }
//! ```

mod accumulator;
mod map;
mod multiproc;
pub(crate) mod options;
mod reduce;
mod sideinput;
mod sink;
mod source;
mod transform;

pub use accumulator::AccumulatorServer;
pub use map::{BatchMapServer, MapServer, MapStreamServer};
pub use options::{MAX_MESSAGE_SIZE, ServerMode, ServerOptions};
pub use reduce::{ReduceServer, ReduceStreamServer};
pub use sideinput::SideInputServer;
pub use sink::SinkServer;
pub use source::SourceServer;
pub use transform::SourceTransformServer;

pub use multiproc::{MULTIPROC_INDEX_ENV, is_multiproc_socket, multiproc_socket};
pub use options::{CONTAINER_TYPE_ENV, shutdown_signal, sink_role};
pub(crate) use options::{Exec, run_router, server_common};
