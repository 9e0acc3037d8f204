//! Analytics tables: Parquet files and Delta Lake tables, with typed items
//! (serde) through Arrow (`serde_arrow`, `arrow` 58, `parquet` 58). Local folders,
//! S3, GCS and Azure through the same [`ObjectStoreSettings`] as the
//! [`objects`](crate::objects) connector.
//!
//! | part | what | delivery |
//! |---|---|---|
//! | [`ParquetSource`] | every `.parquet` object under a folder is a partition, read row group by row group; the position (row group, row) is the snapshot state; new objects found while following; rows that do not decode go to the dead letters or stop the run | resumes exactly from the committed row |
//! | [`ParquetFiles`] | the Parquet encoding of the object sink ([`ObjectSink::encoding`]): a Parquet dataset, a file per partition and snapshot, staged and moved into place on commit | exactly-once under a store, at-least-once otherwise |
//! | [`DeltaSink`] | appends to a Delta table, one Delta commit per partition and snapshot epoch with a `txn` action; replayed epochs detected in the log | exactly-once under a store, at-least-once otherwise |
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::objects::ObjectStoreSettings;
//! use riffle_connectors::tables::{DeltaSink, ParquetSource};
//!
//! #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
//! struct Trip { id: i64, km: f64 }
//!
//! let flow = Dataflow::new("long-trips");
//! flow.input("in", ParquetSource::<Trip>::new(ObjectStoreSettings::new("s3://raw/trips")))?
//!     .filter_map("long", |row| (row.value.km > 10.0).then_some(row.value))?
//!     .output("out", DeltaSink::<Trip>::new(ObjectStoreSettings::new("s3://lake/long_trips")).parts(2))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! A warehouse sink (BigQuery, Snowflake, ClickHouse: next) is one more file
//! beside [`delta`]: it gets the same Parquet file per partition and epoch
//! ([`rows`](self) makes it) and loads it in its own transaction, keyed by the
//! same (sink, partition, epoch) to find replayed epochs.
//!
//! [`ObjectStoreSettings`]: crate::objects::ObjectStoreSettings
//! [`ObjectSink::encoding`]: crate::objects::ObjectSink::encoding

pub mod delta;
mod parquet_files;
mod parquet_source;
mod rows;
pub mod testing;

pub use delta::DeltaSink;
pub use parquet_files::ParquetFiles;
pub use parquet_source::{ParquetPosition, ParquetRow, ParquetSource, ParquetSourcePartition};
