//! PostgreSQL: rows in by an increasing column, every change in by logical
//! replication (change data capture), rows out by upsert (exactly-once by
//! idempotence) or by `COPY` (at-least-once).
//!
//! ## Source
//!
//! [`PostgresSource`] reads the rows of a table ([`PostgresSource::table`]) or of
//! a query ([`PostgresSource::query`]) in the order of an **increasing column**: a
//! `bigserial` / identity id or a `timestamptz` set by `now()`. The value of the
//! last row read is the partition's snapshot state ([`PostgresPosition`]); a run
//! resumed from a recovery store reads on from it. Each row becomes a JSON object
//! of its columns (`row_to_json`), decoded by the source's format: a
//! `serde_json::Value` by default, a struct whose fields are the columns with
//! [`PostgresSource::format`]`(`[`Json`](crate::format::Json)`::<Order>::new())`.
//! A row that cannot be decoded stops the run with an error naming its position,
//! or goes to a dead-letter file ([`PostgresSource::dead_letters`]).
//!
//! Reading `WHERE id > last` naively loses rows: a transaction that took id 5 may
//! commit after one that took id 6, and once 6 is read, 5 is never read. The
//! source reads only behind a **fence**: each round it notes the column's greatest
//! value and every transaction of the database then in progress (by virtual
//! transaction id, so transactions that hold a sequence value but no xid yet count
//! too, and prepared transactions), waits until all of those have ended, and only
//! then reads the rows after its position up to that value. This holds when values
//! are handed out increasing as transactions run (sequences, identities, `now()`);
//! values a client computes itself can still arrive behind the position. A long
//! transaction in the database (even an idle one) holds the source back until it
//! ends; rows whose column is NULL are never read; updates to rows already read
//! are not seen: for those, read the changes (below).
//!
//! [`PostgresSource::poll_every`] sets how often a following source looks for new
//! rows (500 ms), [`PostgresSource::batch_size`] how many rows one query reads
//! (4096), and [`PostgresSource::tail`]`(false)` makes it read to the end the table
//! has when the run starts, then finish. A source is one partition (one reader).
//!
//! ## Changes (CDC)
//!
//! [`PostgresCdc`] reads every insert, update, delete and truncate committed to
//! the tables of a publication, through a logical replication slot decoded by
//! the built-in `pgoutput` plugin (the server needs `wal_level = logical`). Each
//! becomes a [`Change`] (table, [`ChangeOp`], old and new [`Row`]s of column
//! values as text), whole transactions in commit order, at-least-once: the
//! position ([`CdcPosition`], an [`Lsn`]) is snapshot state, and the slot is
//! advanced only by the commit hook, so a run killed at any point reads again
//! what was not committed. One partition (a slot is one stream).
//! [`admin::create_publication`] and [`admin::create_slot`] make what it reads;
//! see [`cdc`] for the whole story and an example.
//!
//! ## Sink
//!
//! [`PostgresSink`] writes serde items (structs or maps whose fields are columns)
//! to a table, one transaction per batch, on [`PostgresSink::lanes`] connections
//! (2). [`PostgresSink::upsert`] writes `INSERT ... ON CONFLICT (keys) DO UPDATE`:
//! a run replayed from a recovery store writes the same rows again and changes
//! nothing, so the table ends **exactly-once**. [`PostgresSink::append`] writes
//! with `COPY ... FROM STDIN`: **at-least-once** (a replayed epoch, or a batch
//! sent again because the connection dropped during its commit, appends again).
//! Batches are answered before the flow's epoch moves on and before each
//! snapshot. Columns an item does not have keep their default (a field missing
//! only in some items of an appended batch is NULL there); a field with no column
//! is an error naming the table and the field.
//!
//! ## Settings
//!
//! [`PostgresSettings`]: the database's URL; the password comes from
//! `RIFFLE_POSTGRES_PASSWORD` (or `RIFFLE_POSTGRES_PASSWORD_FILE`), never from
//! settings. A running source or sink that loses its server reconnects for
//! [`PostgresSettings::retry_ms`] (60 s), saying so once on stderr.
//!
//! TLS (rustls, no OpenSSL) is set in the URL as with libpq: `sslmode=disable`,
//! `prefer` (the default: TLS when the server offers it), `require`,
//! `verify-ca` (the certificate chains to a trusted CA) or `verify-full` (and
//! names the host dialled); `sslrootcert=` a PEM file of CA certificates, or
//! `system`; `sslcert=` and `sslkey=` a client certificate. `require` without
//! `sslrootcert` encrypts but checks no certificate: use `verify-full` against a
//! managed server. A certificate that is not trusted, or a server without TLS
//! under `require`, is an error naming the server and the reason.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::postgres::{PostgresSettings, PostgresSink, PostgresSource};
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Total { item: String, amount: i64 }
//!
//! let pg = PostgresSettings::new("postgres://riffle@127.0.0.1:5432/shop");
//! let flow = Dataflow::new("totals");
//! flow.input("orders", PostgresSource::table(pg.clone(), "orders", "id"))?
//!     .filter_map("total", |row| {
//!         let item = row.value["item"].as_str()?.to_string();
//!         Some(Total { item, amount: row.value["amount"].as_i64()? })
//!     })?
//!     .output("totals", PostgresSink::upsert(pg, "totals", ["item"]))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! The client is `tokio-postgres`, pure Rust, on the connectors' shared
//! [`runtime`](crate::runtime).

pub mod admin;
pub mod cdc;
mod outage;
mod settings;
mod sink;
mod source;
pub mod testing;
mod tls;

pub use cdc::{
    CdcPosition, Change, ChangeOp, Lsn, LsnError, PostgresCdc, PostgresCdcPartition, Row,
};
pub use settings::{PostgresSettings, quote_table};
pub use sink::{PostgresSink, PostgresSinkPartition, WriteMode};
pub use source::{PostgresPosition, PostgresRow, PostgresSource, PostgresSourcePartition};
/// The client [`PostgresSettings::client`] gives, and the types its queries use.
pub use tokio_postgres;
