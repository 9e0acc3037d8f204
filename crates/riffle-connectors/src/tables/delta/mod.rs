//! Delta Lake tables: [`DeltaSink`] appends typed items to a table in a local
//! folder or an object store, one Delta commit per partition and snapshot epoch,
//! exactly-once under a recovery store. The transaction log is written here, over
//! `object_store` and `parquet` ([`log`](self) module docs): protocol 1/2 tables,
//! no partition columns, no checkpoints written.
//!
//! ## How a row gets into the table exactly once
//!
//! [`DeltaSink`] is the [`WarehouseSink`](super::WarehouseSink) of the [`Delta`]
//! warehouse: the exactly-once protocol is the one of the
//! [`warehouse`](super::warehouse) module, with these Delta parts:
//!
//! 1. A partition stages each snapshot's Parquet file in the table's own folder.
//!    No commit names the file yet, so no reader sees it.
//! 2. Once the recovery store has committed the snapshot, the commit hook adds
//!    the file in a new Delta commit that also holds a `txn` action
//!    `{appId: "<sink id>-<partition>", version: v}`. The commit is the creation
//!    of the next `_delta_log/NNN.json` if absent: of two writers, one wins and
//!    the other tries the next version.
//! 3. A run resumed from that snapshot commits the file again unless the log
//!    already has `txn.version >= v` for its appId: the replayed epoch is found
//!    and skipped.
//!
//! Without a recovery store, each partition commits a file whenever the flow's
//! epoch moves on: at-least-once. Files of snapshots that the store never
//! committed stay in the folder, named by no commit: Delta's `VACUUM` removes
//! them.
//!
//! ## Schema
//!
//! The table's columns are those of the item type (through `serde_arrow`:
//! `String` is `string`, `i64` `long`, `f64` `double`, `bool` `boolean`, `Option`
//! a nullable column, a struct a `struct`, a `Vec` an `array`). A new table gets
//! them; an existing table must have every column of the items with the same
//! type, or the sink stops with an error naming the table and the column.
//! Unsigned integers have no Delta type: use signed ones.

pub mod admin;
pub(crate) mod log;
mod schema;
mod sink;

pub use crate::tables::warehouse::PreparedFile;
pub use log::{DataFile, LOG};
pub use sink::{Delta, DeltaSink, DeltaSinkPartition, DeltaSinkState, DeltaTable};

use object_store::ObjectStoreExt;

use crate::ConnectorError;
use crate::objects::ObjectStoreSettings;

/// The data files a Delta table holds now (paths inside its folder), read from its
/// log by this crate's own reader: for tests and tools.
///
/// ```no_run
/// use riffle_connectors::objects::ObjectStoreSettings;
/// let files = riffle_connectors::tables::delta::table_files(&ObjectStoreSettings::new("file:///lake/t"))?;
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn table_files(settings: &ObjectStoreSettings) -> Result<Vec<String>, ConnectorError> {
    let folder = settings.open(false)?;
    crate::runtime::handle().block_on(async {
        let log = log::Log::open(settings.clone(), folder).await?;
        if log.version().is_none() {
            return Err(ConnectorError::new(
                "delta",
                settings.url.clone(),
                "no Delta table here (no _delta_log/00000000000000000000.json)",
            ));
        }
        log.files().await
    })
}

/// Every row of the Delta table at `settings` as items of type `T`, read from its
/// log and data files by this crate's own reader (no deletion vectors, no column
/// mapping: the tables this sink writes): for tests and tools.
pub fn read_table<T: riffle::Data>(
    settings: &ObjectStoreSettings,
) -> Result<Vec<T>, ConnectorError> {
    let folder = settings.open(false)?;
    let files = table_files(settings)?;
    let error = |what: String| ConnectorError::new("delta", settings.url.clone(), what);
    let mut out = Vec::new();
    for file in files {
        let bytes = crate::runtime::handle()
            .block_on(async {
                let got = folder.store.get(&folder.child(&file)).await?;
                got.bytes().await
            })
            .map_err(|e| error(format!("cannot read data file {file:?}")).caused_by(e))?;
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192)
                .map_err(|e| error(format!("data file {file:?} is not Parquet")).caused_by(e))?;
        for batch in reader {
            let batch =
                batch.map_err(|e| error(format!("cannot read data file {file:?}")).caused_by(e))?;
            for row in super::rows::from_batch::<T>(&batch) {
                out.push(row.map_err(|why| error(format!("data file {file:?}: {why}")))?);
            }
        }
    }
    Ok(out)
}
