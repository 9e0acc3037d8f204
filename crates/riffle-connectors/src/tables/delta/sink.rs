//! The Delta sink: each partition writes a Parquet file per snapshot epoch into
//! the table's folder (invisible: no commit names it yet), and the commit hook
//! adds it to the table in one Delta commit that records the partition's epoch
//! as a `txn` version; a replayed epoch is found in the log and skipped.

use std::marker::PhantomData;

use arrow_schema::FieldRef;
use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::{Deserialize, Serialize};

use super::log::{DataFile, Log};
use super::schema;
use crate::objects::{Folder, ObjectStoreSettings, new_run};
use crate::tables::rows;
use crate::{ConnectorError, runtime};

/// Appends items of type `T` (serde) to a Delta table; see the
/// [module docs](super).
pub struct DeltaSink<T> {
    settings: ObjectStoreSettings,
    parts: usize,
    app: Option<String>,
    fields: Result<Vec<FieldRef>, String>,
    _items: PhantomData<fn() -> T>,
}

impl<T: riffle::Data> DeltaSink<T> {
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
        Self {
            settings,
            parts: 1,
            app: None,
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

    /// The name this sink's commits carry in the log (`txn.appId`, with the
    /// partition's name after it); the step id by default. Two flows writing the
    /// same table need two names.
    pub fn app_id(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }
}

/// A file written at a snapshot and not yet known committed to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedFile {
    /// The partition's epoch number the commit carries (`txn.version`).
    pub version: u64,
    /// The file.
    pub file: DataFile,
}

/// A Delta sink partition's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaSinkState {
    /// Names this store's data files.
    pub run: String,
    /// The next epoch number (`txn.version`) of the partition.
    pub next: u64,
    /// Files written at snapshots, to commit once the snapshot is committed.
    pub prepared: Vec<PreparedFile>,
}

impl<T: riffle::Data> FixedPartitionedSink for DeltaSink<T> {
    type Item = T;
    type State = DeltaSinkState;
    type Partition = DeltaSinkPartition<T>;

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
        resume_state: Option<DeltaSinkState>,
    ) -> riffle::Result<DeltaSinkPartition<T>> {
        let error = |what: String| ConnectorError::new("delta", self.settings.url.clone(), what);
        let fields = self
            .fields
            .clone()
            .map_err(|why| error(why).for_step(step_id))?;
        let columns = schema::columns(&fields).map_err(|why| error(why).for_step(step_id))?;
        let folder = self.settings.open(true).map_err(|e| e.for_step(step_id))?;
        let app = format!("{}-{for_part}", self.app.as_deref().unwrap_or(step_id));
        let settings = self.settings.clone();
        let opened = folder.clone();
        let mut log = runtime::handle()
            .block_on(async move {
                let mut log = Log::open(settings, opened).await?;
                log.create_or_check(&columns).await?;
                Ok::<_, ConnectorError>(log)
            })
            .map_err(|e| e.for_step(step_id))?;
        let state = match resume_state {
            // A resumed partition commits what its committed state had prepared,
            // unless the log shows it did before the crash.
            Some(mut state) => {
                for prepared in std::mem::take(&mut state.prepared) {
                    runtime::handle()
                        .block_on(log.append(&app, prepared.version, &prepared.file))
                        .map_err(|e| e.for_step(step_id))?;
                }
                state
            }
            // A new partition goes on after whatever its name committed before.
            None => DeltaSinkState {
                run: new_run(),
                next: log.txn(&app).map_or(1, |v| v + 1),
                prepared: Vec::new(),
            },
        };
        Ok(DeltaSinkPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            folder,
            fields,
            app,
            part: for_part.to_string(),
            log,
            buffer: Vec::new(),
            state,
        })
    }
}

/// One partition of a [`DeltaSink`].
pub struct DeltaSinkPartition<T> {
    step_id: String,
    settings: ObjectStoreSettings,
    folder: Folder,
    fields: Vec<FieldRef>,
    app: String,
    part: String,
    log: Log,
    buffer: Vec<T>,
    state: DeltaSinkState,
}

impl<T: riffle::Data> DeltaSinkPartition<T> {
    fn error(&self, what: String) -> riffle::RiffleError {
        ConnectorError::new("delta", self.settings.url.clone(), what).for_step(&self.step_id)
    }

    /// Writes the buffer into a new data file of the table's folder, not yet in
    /// the table: the epoch number it gets and the file.
    fn write_file(&mut self) -> riffle::Result<Option<PreparedFile>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let version = self.state.next;
        let path = format!(
            "{}-{}-{}-{version:010}.parquet",
            self.step_id, self.part, self.state.run
        );
        let items = std::mem::take(&mut self.buffer);
        let bytes = rows::to_parquet(&self.fields, &items)
            .map_err(|why| self.error(format!("cannot encode data file {path:?}: {why}")))?;
        let file = DataFile {
            path: path.clone(),
            size: bytes.len() as u64,
            rows: items.len() as u64,
        };
        let store = self.folder.store.clone();
        let location = self.folder.child(&path);
        runtime::handle()
            .block_on(async move {
                store
                    .put(&location, PutPayload::from(Bytes::from(bytes)))
                    .await
            })
            .map_err(|e| {
                ConnectorError::new(
                    "delta",
                    self.settings.url.clone(),
                    format!("cannot write data file {path:?}"),
                )
                .caused_by(e)
                .for_step(&self.step_id)
            })?;
        self.state.next += 1;
        Ok(Some(PreparedFile { version, file }))
    }

    fn commit_file(&mut self, prepared: &PreparedFile) -> riffle::Result<()> {
        runtime::handle()
            .block_on(self.log.append(&self.app, prepared.version, &prepared.file))
            .map(drop)
            .map_err(|e| e.for_step(&self.step_id))
    }
}

impl<T: riffle::Data> SinkPartition for DeltaSinkPartition<T> {
    type Item = T;
    type State = DeltaSinkState;

    fn write_batch(&mut self, mut items: Vec<T>) -> riffle::Result<()> {
        self.buffer.append(&mut items);
        Ok(())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        // Without a recovery store: a commit per epoch at once.
        match self.write_file()? {
            Some(prepared) => self.commit_file(&prepared),
            None => Ok(()),
        }
    }

    fn snapshot(&mut self) -> riffle::Result<Option<DeltaSinkState>> {
        if let Some(prepared) = self.write_file()? {
            self.state.prepared.push(prepared);
        }
        Ok(Some(self.state.clone()))
    }

    fn commit(&mut self, state: &DeltaSinkState) -> riffle::Result<()> {
        let mine = std::mem::take(&mut self.state.prepared);
        let (done, waiting): (Vec<_>, Vec<_>) =
            mine.into_iter().partition(|p| state.prepared.contains(p));
        self.state.prepared = waiting;
        for prepared in &done {
            self.commit_file(prepared)?;
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        // The run ended cleanly: what was prepared, and what came after the last
        // snapshot, is final.
        for prepared in std::mem::take(&mut self.state.prepared) {
            self.commit_file(&prepared)?;
        }
        self.flush()
    }
}
