//! DuckDB: rows in from a query, rows out appended to a table, exactly-once by a
//! transaction per committed snapshot epoch.
//!
//! DuckDB is embedded: the database is one file, and the process that opens it
//! holds it; there is no server. Riffle links a prebuilt `libduckdb` (the cargo
//! feature `duckdb`, with `DUCKDB_LIB_DIR` naming its folder) or compiles DuckDB
//! from source (`duckdb-bundled`, about an hour on 2 cores); neither is in the
//! default build. See README "Building with DuckDB".
//!
//! ## One process per file
//!
//! DuckDB lets one process at a time open a database file for writing, and one
//! process must open it once. Every source, sink and admin call of the process
//! shares the file's one instance through [`DuckdbDatabase::open`], each on a
//! connection of its own. A partition in a second process (another program
//! holding the file, or `riffle run -p 2` with partitions on both processes)
//! fails the run with an error naming the file on its first call, so every
//! process of the run stops alike; partitions all on worker 0 (one per source and
//! sink, the default) keep the DuckDB work in the first process.
//!
//! ## Source
//!
//! [`DuckdbSource::query`] reads the rows of a `SELECT`. Each row becomes a JSON
//! object of its columns (booleans, integers and floats as numbers, decimals as
//! floats, text as strings, anything else as DuckDB's text of it), decoded by the
//! source's format: a `serde_json::Value` by default, a struct whose fields are
//! the columns with [`DuckdbSource::format`]`(`[`Json`](crate::format::Json)`::<Order>::new())`.
//! A row that cannot be decoded stops the run naming its position, or goes to a
//! dead-letter file ([`DuckdbSource::dead_letters`]). The position
//! ([`DuckdbPosition`]) is the partition's snapshot state, in one of two ways:
//!
//! - **counted** (the default): the query is read once, streamed, and the
//!   position is the number of rows emitted; a resumed run skips that many rows.
//!   This is exact when the query's order is total (`ORDER BY` a unique key) and
//!   the rows it had read do not change; otherwise a resume may skip or repeat
//!   rows.
//! - **by an increasing column** ([`DuckdbSource::ordered_by`]): rows are read in
//!   the column's order, a batch at a time, and the position is the last value
//!   read; a resumed run reads the rows after it. Rows sharing a value are read
//!   together. With [`DuckdbSource::tail`]`(true)` the source looks for new rows
//!   every [`DuckdbSource::poll_every`] for ever. Rows whose column is NULL are
//!   never read, and a row that commits later with a smaller value than one
//!   already read is missed: give the column values that grow as rows commit (one
//!   writer appending ids or timestamps in order).
//!
//! A source is one partition, read by one thread of its own on its own
//! connection (DuckDB runs the query on its own threads).
//!
//! ## Sink
//!
//! [`DuckdbSink::append`] appends serde items (structs or maps whose fields are
//! columns) to a table through DuckDB's appender. A table that does not exist is
//! made from the first items (a column per field, in the struct's order:
//! `BOOLEAN`, `BIGINT`, `UBIGINT`, `DOUBLE`, else `VARCHAR`); an existing one is
//! used as it is. A column the items do not have is NULL; a field with no column,
//! or a value its column cannot hold, stops the run with an error naming the
//! database file, the table and the column.
//!
//! **Delivery: exactly-once under a recovery store**, by one transaction per
//! snapshot epoch, two-phase:
//!
//! 1. At each snapshot the rows written since the last one are appended, in one
//!    transaction, to the staging table `TABLE__riffle_staged`, tagged with the
//!    sink's id, the partition, the run and the epoch; the state handed to the
//!    recovery store is `(run, epoch)` ([`DuckdbSinkState`]).
//! 2. When the store has committed that snapshot (the commit hook), one
//!    transaction moves the partition's staged rows up to that epoch into the
//!    table, deletes them from staging and records `(sink, partition, run,
//!    epoch)` in the bookkeeping table [`sink::EPOCHS_TABLE`].
//! 3. A partition resumed from a committed state `(run, e)` finishes that
//!    commit first (a commit the crash interrupted; one the bookkeeping already
//!    records is detected and skipped) and deletes what later snapshots staged:
//!    the resumed run writes those rows again.
//!
//! So the table holds the rows of committed snapshots, each once, whatever
//! moment a crash hits. A run that ends cleanly moves everything. Without a
//! store, rows are appended in one transaction each time the flow's epochs move
//! on: **at-least-once**. [`DuckdbSink::partitions`] writes on several
//! connections of the one instance (default 1); [`DuckdbSink::id`] names the sink
//! in the bookkeeping (default: the step id).
//!
//! ```
//! use riffle::Dataflow;
//! use riffle::sources::TestingSource;
//! use riffle_connectors::duckdb::{DuckdbSettings, DuckdbSink, DuckdbSource, admin};
//! use riffle_connectors::format::Json;
//!
//! #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Sale { item: String, amount: i64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = DuckdbSettings::new(dir.path().join("shop.duckdb"));
//! let sales = vec![
//!     Sale { item: "tea".into(), amount: 3 },
//!     Sale { item: "cake".into(), amount: 5 },
//! ];
//! let flow = Dataflow::new("load");
//! flow.input("in", TestingSource::new(sales))?
//!     .output("sales", DuckdbSink::append(db.clone(), "sales"))?;
//! riffle::run_main(&flow)?;
//! assert_eq!(admin::count_rows(&db, "sales").unwrap(), 2);
//!
//! let out = riffle::sinks::TestingSink::new();
//! let flow = Dataflow::new("read");
//! let query = DuckdbSource::query(db, "SELECT * FROM sales ORDER BY item")
//!     .format(Json::<Sale>::new());
//! flow.input("sales", query)?
//!     .map("value", |row| row.value)?
//!     .output("out", out.clone())?;
//! riffle::run_main(&flow)?;
//! assert_eq!(out.take()[0], Sale { item: "cake".into(), amount: 5 });
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! ## Next
//!
//! The sink's two-phase shape (stage at the snapshot, move on the commit, record
//! the epoch in the same transaction) is the one the warehouses that cannot run
//! here would take: ClickHouse, BigQuery and Snowflake each have a staging table
//! and a transaction or an atomic `INSERT ... SELECT`.

pub mod admin;
mod database;
mod rows;
mod settings;
pub mod sink;
mod source;
pub mod testing;

pub use database::DuckdbDatabase;
pub use settings::{DuckdbSettings, quote, quote_table};
pub use sink::{DuckdbSink, DuckdbSinkPartition, DuckdbSinkState};
pub use source::{DuckdbPosition, DuckdbRow, DuckdbSource, DuckdbSourcePartition};
