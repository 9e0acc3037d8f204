//! Delta as a [`Warehouse`]: files are staged in the table's own folder
//! (invisible: no commit names them yet), and a load is one Delta commit that
//! adds the file and records the partition's version as a `txn` action; a
//! replayed load is found in the log and skipped. The state machine around it is
//! the [`WarehouseSink`]'s.

use arrow_schema::FieldRef;

use super::log::{DataFile, Log};
use super::schema;
use crate::objects::ObjectStoreSettings;
use crate::tables::warehouse::{
    Warehouse, WarehouseSink, WarehouseSinkPartition, WarehouseSinkState, WarehouseTable,
};
use crate::{ConnectorError, runtime};

/// Appends items of type `T` (serde) to a Delta table; see the
/// [module docs](super).
pub type DeltaSink<T> = WarehouseSink<Delta, T>;

/// One partition of a [`DeltaSink`].
pub type DeltaSinkPartition<T> = WarehouseSinkPartition<Delta, T>;

/// A Delta sink partition's position (the state of every warehouse sink).
pub type DeltaSinkState = WarehouseSinkState;

impl<T: riffle::Data> WarehouseSink<Delta, T> {
    /// Appends to the Delta table at `settings`' folder (made, with `T`'s
    /// columns, when there is none), from one partition.
    ///
    /// ```
    /// use riffle_connectors::objects::ObjectStoreSettings;
    /// use riffle_connectors::tables::DeltaSink;
    /// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
    /// struct Count { word: String, n: i64 }
    /// let sink = DeltaSink::<Count>::new(ObjectStoreSettings::new("s3://lake/counts"))
    ///     .parts(2)
    ///     .app_id("word-counts");
    /// # drop(sink);
    /// ```
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self::loading(Delta::new(settings))
    }
}

/// A Delta table in a local folder or an object store, as a [`Warehouse`].
#[derive(Debug, Clone)]
pub struct Delta {
    settings: ObjectStoreSettings,
}

impl Delta {
    /// The Delta table at `settings`' folder.
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self { settings }
    }
}

impl Warehouse for Delta {
    type Table = DeltaTable;

    fn kind(&self) -> &'static str {
        "delta"
    }

    fn location(&self) -> String {
        self.settings.url.clone()
    }

    /// The table's own folder: a file no commit names is in no version.
    fn staging(&self) -> &ObjectStoreSettings {
        &self.settings
    }

    fn open(&self, fields: &[FieldRef]) -> Result<DeltaTable, ConnectorError> {
        let columns = schema::columns(fields)
            .map_err(|why| ConnectorError::new("delta", self.settings.url.clone(), why))?;
        let folder = self.settings.open(true)?;
        let settings = self.settings.clone();
        runtime::handle().block_on(async move {
            let mut log = Log::open(settings, folder).await?;
            log.create_or_check(&columns).await?;
            Ok(DeltaTable { log })
        })
    }
}

/// A Delta table opened for one partition: what it read of the log.
pub struct DeltaTable {
    log: Log,
}

impl WarehouseTable for DeltaTable {
    fn last_loaded(&mut self, app: &str) -> Result<Option<u64>, ConnectorError> {
        runtime::handle().block_on(self.log.refresh())?;
        Ok(self.log.txn(app))
    }

    /// One Delta commit adding `file` with a `txn` action `{appId: app,
    /// version}`, made unless the log already has that version or a later one.
    fn load(&mut self, app: &str, version: u64, file: &DataFile) -> Result<bool, ConnectorError> {
        runtime::handle().block_on(self.log.append(app, version, file))
    }
}
