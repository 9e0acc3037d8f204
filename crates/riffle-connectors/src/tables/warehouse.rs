//! Loading into analytics tables: the one exactly-once mechanism every table
//! sink shares. A [`Warehouse`] knows its table: how to make or check it, where
//! the sink stages files, and how to load one staged file in a transaction of its
//! own. [`WarehouseSink`] does everything else, for any warehouse: buffering,
//! staging, snapshots, the commit hook, resumes and the clean end. The Delta sink
//! ([`DeltaSink`](super::DeltaSink)) is one warehouse; BigQuery, Snowflake and
//! ClickHouse are next, each one file beside [`delta`](super::delta).
//!
//! ## How a row gets into the table exactly once
//!
//! 1. At each snapshot a partition writes what it got since the last one into a
//!    new Parquet file (Snappy, the items' columns, as the Parquet dataset sink
//!    writes them) in the warehouse's staging folder ([`Warehouse::staging`]).
//!    No load has named the file yet, so no reader of the table sees its rows.
//!    The file and the partition's next version number `v` are in the snapshot
//!    state ([`WarehouseSinkState`]).
//! 2. Once the recovery store has committed the snapshot, the commit hook loads
//!    the file ([`WarehouseTable::load`]) in one transaction of the warehouse that
//!    also records `(app id, v)`, the app id being the sink's
//!    ([`WarehouseSink::app_id`], the step id by default) and the partition's
//!    name. A warehouse that already holds version `v` or a later one of that app
//!    id loads nothing.
//! 3. A run resumed from that snapshot loads its prepared files again: those the
//!    warehouse took before the crash are skipped by step 2's check, the others
//!    are loaded now. Rows after the snapshot are read again by the source and go
//!    to new files with new version numbers.
//!
//! A partition that starts without a state goes on after the last version its
//! app id loaded ([`WarehouseTable::last_loaded`]), so a new run of the same
//! flow is not taken for a replay. A run that ends cleanly loads what was
//! prepared and what came after the last snapshot. Without a recovery store each
//! partition stages and loads a file whenever the flow's epoch moves on:
//! at-least-once.
//!
//! Files of snapshots that the store never committed (a crash between the file
//! and the snapshot) stay in the staging folder, loaded by no one: clean them
//! with the warehouse's own tools (Delta's `VACUUM`, a lifecycle rule on the
//! bucket).
//!
//! ## A server that goes away mid-run
//!
//! A partition whose staging write or load finds no server (a refused or dropped
//! connection, a timeout: [`Warehouse::went_away`]) says so once on stderr and
//! tries again every half second for [`WarehouseSink::patience`] (60 s), then
//! fails naming the file. Both steps are safe to repeat: the file is put again
//! under the same name, and a load that reached the warehouse before the
//! connection dropped is found by its `(app id, version)` and not made twice. An
//! answer from the server (a missing bucket, a refused permission) stops the run
//! at once.
//!
//! ## Adding a warehouse
//!
//! One file beside `delta/`, with three parts:
//!
//! 1. A struct of the table's settings implementing [`Warehouse`]: its name in
//!    errors, where the table is, where files are staged (an
//!    [`ObjectStoreSettings`] folder the warehouse can read: the table's own
//!    folder for Delta, a bucket or stage for the others), and
//!    [`Warehouse::open`], which makes the table with the items' Arrow fields
//!    when there is none, checks an existing one (an error naming the table and
//!    the column), and hands back a connection for one partition.
//! 2. That connection implementing [`WarehouseTable`]: `load` takes in one staged
//!    file and records `(app id, version)` in the same transaction, unless the
//!    warehouse already records that version or a later one (`Ok(false)`); and
//!    `last_loaded` reads the recorded version. Both may block (the sink calls
//!    them from its partition's thread).
//! 3. `pub type XSink<T> = WarehouseSink<X, T>;` and a constructor,
//!    `impl<T: riffle::Data> WarehouseSink<X, T> { pub fn new(..) -> Self }`
//!    calling [`WarehouseSink::loading`]. `.parts(n)` and `.app_id(..)` come
//!    with the sink.
//!
//! The next ones, and how each fits the contract:
//!
//! | warehouse | staging | `load` | `(app id, version)` |
//! |---|---|---|---|
//! | BigQuery | a GCS folder (`gs://`, the same [`ObjectStoreSettings`]) | a load job of the file (`sourceFormat: PARQUET`, append) | the job's id made from the app id and version (BigQuery refuses a second job with an id it knows), and a row of a bookkeeping table for `last_loaded` |
//! | Snowflake | an external stage on S3, GCS or Azure | `COPY INTO table FROM @stage FILES = (..) FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = ..` | a bookkeeping table updated in the same transaction as the `COPY` |
//! | ClickHouse | an S3 folder | `INSERT INTO table SELECT * FROM s3(.., 'Parquet')` | the insert's `insert_deduplication_token` made from the app id and version, and a bookkeeping table for `last_loaded` |
//!
//! DuckDB keeps its own sink (`duckdb::DuckdbSink`, feature `duckdb`): it is
//! embedded, so its staging is a table in the same database and one local
//! transaction moves a partition's staged rows and records the epoch in
//! `riffle_sink_epochs`, with no file in between. Its columns also come from the
//! items' values, not from a traced type: it takes `serde_json::Value` items and
//! maps, which have no Arrow schema, and stores nested values as JSON text where
//! a Parquet file would hold structs. Moving it onto this mechanism would change
//! those rules for its users, so it stays as it is.
//!
//! ## Example: a warehouse in a few lines
//!
//! A toy warehouse that "loads" a staged file by recording its name, keeping
//! the last version of each app id beside it, shows the whole contract: a
//! snapshot stages a file, the commit hook loads it, and a partition resumed
//! from the same state finds the load done and skips it.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::{Arc, Mutex};
//!
//! use arrow_schema::FieldRef;
//! use riffle::sinks::{FixedPartitionedSink, SinkPartition};
//! use riffle_connectors::ConnectorError;
//! use riffle_connectors::objects::ObjectStoreSettings;
//! use riffle_connectors::tables::warehouse::{DataFile, Warehouse, WarehouseSink, WarehouseTable};
//!
//! /// What the toy warehouse holds: the files loaded, and each app id's version.
//! #[derive(Default)]
//! struct Loaded { files: Vec<String>, versions: BTreeMap<String, u64> }
//!
//! struct Toy { staging: ObjectStoreSettings, loaded: Arc<Mutex<Loaded>> }
//! struct ToyTable(Arc<Mutex<Loaded>>);
//!
//! impl Warehouse for Toy {
//!     type Table = ToyTable;
//!     fn kind(&self) -> &'static str { "toy" }
//!     fn location(&self) -> String { "toy://counts".into() }
//!     fn staging(&self) -> &ObjectStoreSettings { &self.staging }
//!     fn open(&self, _fields: &[FieldRef]) -> Result<ToyTable, ConnectorError> {
//!         Ok(ToyTable(self.loaded.clone()))
//!     }
//! }
//!
//! impl WarehouseTable for ToyTable {
//!     fn last_loaded(&mut self, app: &str) -> Result<Option<u64>, ConnectorError> {
//!         Ok(self.0.lock().unwrap().versions.get(app).copied())
//!     }
//!     fn load(&mut self, app: &str, version: u64, file: &DataFile) -> Result<bool, ConnectorError> {
//!         // One "transaction": the file and the version under one lock.
//!         let mut loaded = self.0.lock().unwrap();
//!         if loaded.versions.get(app).is_some_and(|v| *v >= version) {
//!             return Ok(false);
//!         }
//!         loaded.files.push(file.path.clone());
//!         loaded.versions.insert(app.to_string(), version);
//!         Ok(true)
//!     }
//! }
//!
//! #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
//! struct Count { word: String, n: i64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let loaded = Arc::new(Mutex::new(Loaded::default()));
//! let staging = ObjectStoreSettings::new(format!("file://{}/staged", dir.path().display()));
//! let sink = WarehouseSink::<Toy, Count>::loading(Toy { staging, loaded: loaded.clone() })
//!     .app_id("counts");
//!
//! let mut part = sink.build_part("out", "part-00000", None)?;
//! part.write_batch(vec![Count { word: "tea".into(), n: 1 }])?;
//! let state = part.snapshot()?.unwrap();
//! assert!(loaded.lock().unwrap().files.is_empty(), "staged, not loaded");
//! part.commit(&state)?; // the recovery store committed the snapshot
//! assert_eq!(loaded.lock().unwrap().versions["counts-part-00000"], 1);
//!
//! // A crash before the next snapshot: the resumed partition loads its prepared
//! // file again, and the warehouse finds version 1 done.
//! let _again = sink.build_part("out", "part-00000", Some(state))?;
//! assert_eq!(loaded.lock().unwrap().files.len(), 1);
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! [`ObjectStoreSettings`]: crate::objects::ObjectStoreSettings

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::FieldRef;
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::{Deserialize, Serialize};

use crate::objects::outage::Outage;
pub use crate::objects::went_away;
use crate::objects::{Folder, ObjectStoreSettings, PATIENCE, new_run};
use crate::tables::rows;
use crate::{ConnectorError, runtime};

/// A table the [`WarehouseSink`] loads staged Parquet files into; see the
/// [module docs](self) for the contract.
pub trait Warehouse: Send + Sync + 'static {
    /// The table opened for one partition (its connection, its view of the log).
    type Table: WarehouseTable;

    /// The connector's name in errors (`delta`, `bigquery`).
    fn kind(&self) -> &'static str;

    /// Where errors say the table is: its URL or name.
    fn location(&self) -> String;

    /// The folder staged files are written to (made when absent); the warehouse
    /// reads them from there when it loads them.
    fn staging(&self) -> &ObjectStoreSettings;

    /// The name, inside [`staging`](Self::staging), of partition `part`'s file
    /// of version `version` in run `run` of step `step_id`: unique per run, so a
    /// resumed run never overwrites a file its crashed run staged.
    fn staged_name(&self, step_id: &str, part: &str, run: &str, version: u64) -> String {
        format!("{step_id}-{part}-{run}-{version:010}.parquet")
    }

    /// Opens the table for one partition: makes it with the items' columns
    /// `fields` when there is none, checks an existing one (an error naming the
    /// table and the column that does not fit). Called once per partition, from
    /// its thread; it may block.
    fn open(&self, fields: &[FieldRef]) -> Result<Self::Table, ConnectorError>;

    /// Whether `error`, from a staging write or a load, means the server did not
    /// answer, so that the partition tries again (see the module docs). By default
    /// a failure of the object store client to reach its server ([`went_away`]);
    /// a warehouse with a client of its own says which of its errors are such.
    fn went_away(&self, error: &ConnectorError) -> bool {
        went_away(error)
    }
}

/// A [`Warehouse`]'s table opened for one partition.
pub trait WarehouseTable: 'static {
    /// The last version the warehouse records for `app` (`None`: none yet).
    fn last_loaded(&mut self, app: &str) -> Result<Option<u64>, ConnectorError>;

    /// Loads the staged `file` into the table in one transaction of the
    /// warehouse that also records `version` as the last one of `app`; loads
    /// nothing when the warehouse records `version` or a later one for `app` (a
    /// replayed load): `Ok(false)`.
    fn load(&mut self, app: &str, version: u64, file: &DataFile) -> Result<bool, ConnectorError>;
}

/// A staged data file: its path inside the staging folder, size and rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its path inside the staging folder (for Delta, the table's folder).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The rows in it.
    pub rows: u64,
}

/// A file staged at a snapshot and not yet known loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedFile {
    /// The partition's version number its load records (for Delta, `txn.version`).
    pub version: u64,
    /// The file.
    pub file: DataFile,
}

/// A warehouse sink partition's position: its snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseSinkState {
    /// Names this run's staged files.
    pub run: String,
    /// The partition's next version number.
    pub next: u64,
    /// Files staged at snapshots, to load once the snapshot is committed.
    pub prepared: Vec<PreparedFile>,
}

/// Appends items of type `T` (serde) to the table of warehouse `W`, exactly-once
/// under a recovery store; see the [module docs](self).
pub struct WarehouseSink<W, T> {
    warehouse: Arc<W>,
    parts: usize,
    app: Option<String>,
    patience: Duration,
    fields: Result<Vec<FieldRef>, String>,
    _items: PhantomData<fn() -> T>,
}

impl<W: Warehouse, T: riffle::Data> WarehouseSink<W, T> {
    /// Loads into `warehouse`'s table from one partition. Each warehouse has its
    /// own constructor calling this (`DeltaSink::new`).
    pub fn loading(warehouse: W) -> Self {
        Self {
            warehouse: Arc::new(warehouse),
            parts: 1,
            app: None,
            patience: PATIENCE,
            fields: rows::fields_of::<T>(),
            _items: PhantomData,
        }
    }

    /// How many partitions write at once (default 1); items are spread over them
    /// by a stable hash of their JSON text.
    pub fn parts(mut self, parts: usize) -> Self {
        self.parts = parts.max(1);
        self
    }

    /// The name this sink's loads carry in the warehouse (for Delta `txn.appId`),
    /// with the partition's name after it; the step id by default. Two flows
    /// writing the same table need two names.
    pub fn app_id(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    /// How long a partition keeps trying a staging write or a load while the
    /// server does not answer (default 60 s) before the run fails.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &W {
        &self.warehouse
    }
}

impl<W: Warehouse, T: riffle::Data> FixedPartitionedSink for WarehouseSink<W, T> {
    type Item = T;
    type State = WarehouseSinkState;
    type Partition = WarehouseSinkPartition<W, T>;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.parts).map(|p| format!("part-{p:05}")).collect())
    }

    fn part_fn(&self, item: &T, parts: usize) -> usize {
        let hash = riffle::exchange::stable_hash(&serde_json::to_vec(item).unwrap_or_default());
        (hash % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<WarehouseSinkState>,
    ) -> riffle::Result<WarehouseSinkPartition<W, T>> {
        let warehouse = &self.warehouse;
        let fields = self.fields.clone().map_err(|why| {
            ConnectorError::new(warehouse.kind(), warehouse.location(), why).for_step(step_id)
        })?;
        let mut table = warehouse.open(&fields).map_err(|e| e.for_step(step_id))?;
        let staging = warehouse
            .staging()
            .open(true)
            .map_err(|e| e.for_step(step_id))?;
        let app = format!("{}-{for_part}", self.app.as_deref().unwrap_or(step_id));
        let state = match resume_state {
            // A resumed partition loads what its committed state had prepared;
            // the warehouse skips what it took before the crash.
            Some(mut state) => {
                for prepared in std::mem::take(&mut state.prepared) {
                    table
                        .load(&app, prepared.version, &prepared.file)
                        .map_err(|e| e.for_step(step_id))?;
                }
                state
            }
            // A new partition goes on after whatever its app id loaded before.
            None => WarehouseSinkState {
                run: new_run(),
                next: table
                    .last_loaded(&app)
                    .map_err(|e| e.for_step(step_id))?
                    .map_or(1, |v| v + 1),
                prepared: Vec::new(),
            },
        };
        Ok(WarehouseSinkPartition {
            step_id: step_id.to_string(),
            warehouse: Arc::clone(warehouse),
            staging,
            fields,
            app,
            part: for_part.to_string(),
            patience: self.patience,
            table,
            buffer: Vec::new(),
            state,
        })
    }
}

/// One partition of a [`WarehouseSink`].
pub struct WarehouseSinkPartition<W: Warehouse, T> {
    step_id: String,
    warehouse: Arc<W>,
    staging: Folder,
    fields: Vec<FieldRef>,
    app: String,
    part: String,
    patience: Duration,
    table: W::Table,
    buffer: Vec<T>,
    state: WarehouseSinkState,
}

impl<W: Warehouse, T: riffle::Data> WarehouseSinkPartition<W, T> {
    fn error(&self, what: String) -> ConnectorError {
        ConnectorError::new(self.warehouse.kind(), self.warehouse.location(), what)
    }

    /// `attempt` until it goes through, again while the server does not answer,
    /// for at most the patience (see the module docs); `doing` names it in the
    /// messages.
    fn persist<R>(
        &mut self,
        doing: &str,
        mut attempt: impl FnMut(&mut Self) -> Result<R, ConnectorError>,
    ) -> riffle::Result<R> {
        let at = format!("{} at {}", self.warehouse.kind(), self.warehouse.location());
        let mut outage = Outage::new(at, self.patience);
        loop {
            match attempt(self) {
                Ok(done) => {
                    outage.over(doing);
                    return Ok(done);
                }
                Err(e) if self.warehouse.went_away(&e) => outage
                    .gone(doing, e)
                    .map_err(|e| e.for_step(&self.step_id))?,
                Err(e) => return Err(e.for_step(&self.step_id)),
            }
        }
    }

    /// Writes the buffer into a new file of the staging folder, not yet loaded:
    /// the version number it gets and the file.
    fn stage(&mut self) -> riffle::Result<Option<PreparedFile>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let version = self.state.next;
        let path = self
            .warehouse
            .staged_name(&self.step_id, &self.part, &self.state.run, version);
        let items = std::mem::take(&mut self.buffer);
        let bytes = rows::to_parquet(&self.fields, &items).map_err(|why| {
            self.error(format!("cannot encode data file {path:?}: {why}"))
                .for_step(&self.step_id)
        })?;
        let file = DataFile {
            path: path.clone(),
            size: bytes.len() as u64,
            rows: items.len() as u64,
        };
        let bytes = Bytes::from(bytes);
        self.persist(&format!("writing data file {path:?}"), |me| {
            let store = me.staging.store.clone();
            let location = me.staging.child(&path);
            let payload = PutPayload::from(bytes.clone());
            runtime::handle()
                .block_on(async move { store.put(&location, payload).await })
                .map(drop)
                .map_err(|e| {
                    me.error(format!("cannot write data file {path:?}"))
                        .caused_by(e)
                })
        })?;
        self.state.next += 1;
        Ok(Some(PreparedFile { version, file }))
    }

    fn load(&mut self, prepared: &PreparedFile) -> riffle::Result<()> {
        let doing = format!(
            "loading data file {:?} (version {})",
            prepared.file.path, prepared.version
        );
        self.persist(&doing, |me| {
            me.table
                .load(&me.app, prepared.version, &prepared.file)
                .map(drop)
        })
    }
}

impl<W: Warehouse, T: riffle::Data> SinkPartition for WarehouseSinkPartition<W, T> {
    type Item = T;
    type State = WarehouseSinkState;

    fn write_batch(&mut self, mut items: Vec<T>) -> riffle::Result<()> {
        self.buffer.append(&mut items);
        Ok(())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        // Without a recovery store: a load per epoch at once.
        match self.stage()? {
            Some(prepared) => self.load(&prepared),
            None => Ok(()),
        }
    }

    fn snapshot(&mut self) -> riffle::Result<Option<WarehouseSinkState>> {
        if let Some(prepared) = self.stage()? {
            self.state.prepared.push(prepared);
        }
        Ok(Some(self.state.clone()))
    }

    fn commit(&mut self, state: &WarehouseSinkState) -> riffle::Result<()> {
        let mine = std::mem::take(&mut self.state.prepared);
        let (done, waiting): (Vec<_>, Vec<_>) =
            mine.into_iter().partition(|p| state.prepared.contains(p));
        self.state.prepared = waiting;
        for prepared in &done {
            self.load(prepared)?;
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        // The run ended cleanly: what was prepared, and what came after the last
        // snapshot, is final.
        for prepared in std::mem::take(&mut self.state.prepared) {
            self.load(&prepared)?;
        }
        self.flush()
    }
}
