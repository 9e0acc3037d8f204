//! Numaflow's UDF protocol for Riffle: write a UDF once, run it anywhere that speaks
//! the protocol, and call UDFs written in any language.
//!
//! Numaflow runs user-defined functions (UDFs) as gRPC servers on a Unix domain
//! socket beside the platform's own container. This crate is both ends of that wire:
//!
//! - **The vocabulary** ([`datum`], [`udf`]): a [`Datum`] in (keys, bytes, event time,
//!   watermark, headers), [`Message`]s out (keys, bytes, tags, with [`DROP`]), a
//!   [`SinkResponse`] per datum a sink writes; one trait per kind of UDF —
//!   [`Mapper`](udf::Mapper), [`MapStreamer`](udf::MapStreamer),
//!   [`BatchMapper`](udf::BatchMapper), [`Reducer`](udf::Reducer),
//!   [`SourceTransformer`](udf::SourceTransformer), [`Sourcer`](udf::Sourcer),
//!   [`Sinker`](udf::Sinker), [`SideInput`](udf::SideInput) — and closures for the
//!   simple cases.
//! - **Servers** ([`server`]): serve a UDF the way a Numaflow pod expects (socket and
//!   server-info file at Numaflow's paths, handshake, ids, end-of-transmission, 64 MiB
//!   messages, SIGTERM), async, on a thread pool, or as several processes.
//! - **Clients** ([`client`]): call a UDF server of any language — pynumaflow's, Go's,
//!   Java's or this crate's — from Riffle, with batching, id matching, timeouts and
//!   reconnection after a server restart.
//! - **The wire** ([`proto`], [`info`]): the protocol's messages, compiled from this
//!   crate's own `.proto` files, and the server-info handshake file.
//!
//! Data enters a server as protobuf requests on the socket, becomes a [`Datum`], goes
//! through the user's trait method, and leaves as responses; a client does the
//! reverse. Nothing is global: every path and limit is an option with Numaflow's
//! default.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> riffle_numaflow::Result<()> {
//! use riffle_numaflow::client::{ClientOptions, MapClient};
//! use riffle_numaflow::server::MapServer;
//! use riffle_numaflow::udf::map_fn;
//! use riffle_numaflow::{Datum, Message};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let socket = dir.path().join("map.sock");
//! let server = MapServer::new(map_fn(|d: Datum| Ok(vec![Message::new(d.value.to_ascii_uppercase())])))
//!     .with_socket(&socket);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(server.serve_with_shutdown(async { let _ = stopped.await; }));
//!
//! let mut client = MapClient::connect(ClientOptions::new(&socket)).await?;
//! let out = client.map(Datum::new("hello")).await?;
//! assert_eq!(out[0].value, b"HELLO");
//! client.close().await?; // ends the stream, so the server can stop at once
//!
//! let _ = stop.send(());
//! running.await.unwrap()?;
//! # Ok(())
//! # }
//! ```

pub mod call;
pub mod client;
pub mod dataflow;
pub mod datum;
pub mod error;
pub mod info;
pub mod jsonl;
pub mod kind;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod udf;
mod wire;

pub use datum::{
    Accumulated, DROP, Datum, Message, Offset, ReadRequest, SideInputValue, SinkResponse,
    SinkStatus, SourceMessage, TransformMessage, Window,
};
pub use error::{Error, HandlerError, HandlerResult, Result};
pub use kind::UdfKind;
