//! The one async runtime of the process, shared by every connector whose client is
//! async.
//!
//! Worker threads never wait on the network: a connector whose client is async
//! starts its I/O here and polls the result without blocking from
//! `SourcePartition::next_batch`. The runtime is made on first use, with two
//! threads (connectors wait on the network, they do not compute), and lives as
//! long as the process. Connectors whose clients run threads of their own (Kafka,
//! through librdkafka) do not need it.
//!
//! ```
//! let answer = riffle_connectors::runtime::handle().block_on(async { 40 + 2 });
//! assert_eq!(answer, 42);
//! ```

use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The shared runtime's handle. Use `spawn` from worker threads (never
/// `block_on` there); `block_on` is for set-up and tests.
pub fn handle() -> tokio::runtime::Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("riffle-connectors")
                .enable_all()
                .build()
                .unwrap_or_else(|e| {
                    // Without threads the process cannot run anything; say why.
                    panic!("cannot start the connectors' async runtime: {e}")
                })
        })
        .handle()
        .clone()
}
