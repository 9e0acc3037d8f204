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
//! | [`WarehouseSink`] | the mechanism under [`DeltaSink`] and every warehouse to come: a Parquet file staged per partition and snapshot epoch, loaded by the [`Warehouse`] in its own transaction keyed by (app id, version) | exactly-once under a store, at-least-once otherwise |
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
//! A warehouse sink (BigQuery, Snowflake and ClickHouse are next) is one more
//! file beside [`delta`]: a [`Warehouse`] implementation that makes or checks
//! its table, says where files are staged and loads one staged file in its own
//! transaction recording (app id, version); [`WarehouseSink`] does the rest
//! (staging, snapshots, the commit hook, resumes). The [`warehouse`] module docs
//! teach how, and say why DuckDB keeps its own sink.
//!
//! [`ObjectStoreSettings`]: crate::objects::ObjectStoreSettings
//! [`ObjectSink::encoding`]: crate::objects::ObjectSink::encoding

pub mod delta;
mod parquet_files;
mod parquet_source;
mod rows;
pub mod testing;
pub mod warehouse;

pub use delta::DeltaSink;
pub use parquet_files::ParquetFiles;
pub use parquet_source::{ParquetPosition, ParquetRow, ParquetSource, ParquetSourcePartition};
pub use warehouse::{Warehouse, WarehouseSink, WarehouseSinkPartition, WarehouseTable};
