//! The Parquet source: every `.parquet` object under a folder is a partition, read
//! row group by row group; its position (row group, row) is the snapshot state.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};

use super::rows;
use crate::ConnectorError;
use crate::objects::{ObjectPart, ObjectParts, ObjectStoreSettings, StoreAt};
use crate::reader::{Batches, Reader};

/// The most rows one Arrow batch holds.
const BATCH: usize = 4096;

/// One row of a Parquet object, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetRow<T> {
    /// The object's name under the source's folder.
    pub object: Arc<str>,
    /// The row group the row is in, from 0.
    pub row_group: u64,
    /// The row's number inside its row group, from 0.
    pub row: u64,
    /// The row, decoded.
    pub value: T,
}

/// Where a partition is in its object: the next row to read, as its row group and
/// its number inside that group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ParquetPosition {
    /// The row group of the next row.
    pub row_group: u64,
    /// The next row's number inside its row group.
    pub row: u64,
}

/// Reads the Parquet objects under a folder of an object store as items of type
/// `T` (serde); see the [module docs](super).
pub struct ParquetSource<T> {
    parts: ObjectParts,
    _items: PhantomData<fn() -> T>,
}

impl<T: riffle::Data> ParquetSource<T> {
    /// Reads every `.parquet` object under `settings`' folder, then looks for new
    /// ones every 10 s for ever.
    ///
    /// ```
    /// use riffle_connectors::objects::ObjectStoreSettings;
    /// use riffle_connectors::tables::ParquetSource;
    /// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
    /// struct Trip { id: i64, km: f64 }
    /// let source = ParquetSource::<Trip>::new(ObjectStoreSettings::new("file:///data/trips"))
    ///     .tail(false);
    /// # drop(source);
    /// ```
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self {
            parts: ObjectParts::new(settings),
            _items: PhantomData,
        }
    }

    /// Whether to look for new objects for ever (`true`, the default) or stop once
    /// the objects there at the start are read (then an empty folder is an error).
    pub fn tail(mut self, tail: bool) -> Self {
        self.parts.tail = tail;
        self
    }

    /// How often a following source lists the folder for new objects (default 10 s).
    pub fn discover_every(mut self, every: Duration) -> Self {
        self.parts.discover = every;
        self
    }

    /// How long listing the folder and reading an object keep trying while the
    /// store does not answer (default 60 s) before the run fails.
    pub fn patience(mut self, patience: Duration) -> Self {
        self.parts.patience = patience;
        self
    }

    /// Rows that do not decode as `T` go to `letters` (with `object`,
    /// `row_group`, `row` and `reason`), the step's dead-letter stream or a
    /// file, and are skipped instead of stopping the run; see
    /// [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.parts.dead_letters = Some(letters);
        self
    }
}

impl<T: riffle::Data> FixedPartitionedSource for ParquetSource<T> {
    type Item = ParquetRow<T>;
    type State = ParquetPosition;
    type Partition = ParquetSourcePartition<T>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let nothing = "no Parquet objects to read (no .parquet object in the folder)";
        self.parts
            .list_parts(step_id, |n| n.ends_with(".parquet"), nothing)
    }

    fn discover_every(&self) -> Option<Duration> {
        self.parts.discover_every()
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<ParquetPosition>,
    ) -> riffle::Result<ParquetSourcePartition<T>> {
        let position = resume_state.unwrap_or_default();
        let (part, batches) =
            self.parts
                .read(step_id, for_part, move |at, name, batches| async move {
                    read_rows(&at, &name, position, &batches).await
                })?;
        Ok(ParquetSourcePartition {
            part,
            position,
            batches,
            _items: PhantomData,
        })
    }
}

/// A Parquet object in a store, read by ranges.
struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// The source's folder and name of the object, for messages.
    settings: ObjectStoreSettings,
    name: String,
    /// How long a range is asked again while the store does not answer.
    patience: Duration,
}

impl AsyncFileReader for ObjectFile {
    /// A range of the object; while the server does not answer (see
    /// [`crate::objects::outage`]), asked again for the source's patience:
    /// reading a range again is harmless.
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let (store, path, name) = (&self.store, &self.path, &self.name);
            let settings = &self.settings;
            let range = &range;
            settings
                .outage(self.patience)
                .patiently(&format!("reading object {name:?}"), || async move {
                    store.get_range(path, range.clone()).await.map_err(|e| {
                        settings
                            .error(format!("cannot read object {name:?}"))
                            .caused_by(e)
                    })
                })
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Rows of one row group, from row `first` of it, as the reading task hands them.
struct Rows {
    row_group: u64,
    first: u64,
    /// Rows in that group, to know when the next one begins.
    group_rows: u64,
    batch: RecordBatch,
}

/// Reads `name` from `from` to its end, row group by row group.
async fn read_rows(
    at: &StoreAt,
    name: &str,
    from: ParquetPosition,
    batches: &Batches<Rows>,
) -> Result<(), ConnectorError> {
    let (settings, folder) = (&at.settings, &at.folder);
    let path = &folder.child(name);
    let meta = settings
        .outage(at.patience)
        .patiently(&format!("reading object {name:?}"), || async move {
            folder.store.head(path).await.map_err(|e| {
                settings
                    .error(format!("cannot find object {name:?}"))
                    .caused_by(e)
            })
        })
        .await?;
    let mut file = ObjectFile {
        store: folder.store.clone(),
        path: path.clone(),
        size: meta.size,
        settings: settings.clone(),
        name: name.to_string(),
        patience: at.patience,
    };
    let not_parquet = |e: ParquetError| {
        settings
            .error(format!("object {name:?} is not a readable Parquet file"))
            .caused_by(e)
    };
    let metadata = ArrowReaderMetadata::load_async(&mut file, ArrowReaderOptions::new())
        .await
        .map_err(not_parquet)?;
    let groups: Vec<u64> = metadata
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows().max(0) as u64)
        .collect();
    for (g, &group_rows) in groups.iter().enumerate() {
        let g = g as u64;
        let first = if g == from.row_group { from.row } else { 0 };
        if g < from.row_group || first >= group_rows {
            continue;
        }
        let reader = ObjectFile {
            store: file.store.clone(),
            path: file.path.clone(),
            size: file.size,
            settings: file.settings.clone(),
            name: file.name.clone(),
            patience: file.patience,
        };
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
                .with_row_groups(vec![g as usize])
                .with_offset(first as usize)
                .with_batch_size(BATCH)
                .build()
                .map_err(not_parquet)?;
        let mut at = first;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| {
                settings
                    .error(format!("cannot read object {name:?} row group {g}"))
                    .caused_by(e)
            })?;
            let rows = batch.num_rows() as u64;
            let rows_read = Rows {
                row_group: g,
                first: at,
                group_rows,
                batch,
            };
            if !batches.send(rows_read).await {
                return Ok(());
            }
            at += rows;
        }
    }
    Ok(())
}

/// One Parquet object being read; made by [`ParquetSource`].
pub struct ParquetSourcePartition<T> {
    part: ObjectPart,
    position: ParquetPosition,
    batches: Reader<Rows>,
    _items: PhantomData<fn() -> T>,
}

impl<T: riffle::Data> ParquetSourcePartition<T> {
    /// The items of one batch, bad rows to the dead letters (or an error).
    fn decode(&mut self, rows: &Rows, out: &mut Vec<ParquetRow<T>>) -> riffle::Result<()> {
        let Rows {
            row_group,
            first,
            group_rows,
            ref batch,
        } = *rows;
        for (i, decoded) in rows::from_batch::<T>(batch).into_iter().enumerate() {
            let row = first + i as u64;
            match decoded {
                Ok(value) => out.push(ParquetRow {
                    object: self.part.object.clone(),
                    row_group,
                    row,
                    value,
                }),
                Err(why) => {
                    let at = [("row_group", row_group.into()), ("row", row.into())];
                    // The letter holds the batch's columns: a row has no bytes of its own.
                    let columns = || {
                        rows::schema_fields(batch)
                            .iter()
                            .map(|f| format!("{}: {}", f.name(), f.data_type()))
                            .collect::<Vec<_>>()
                            .join(", ")
                            .into_bytes()
                    };
                    self.part.undecodable(&at, &why, columns)?;
                }
            }
        }
        let next = first + batch.num_rows() as u64;
        self.position = if next >= group_rows {
            ParquetPosition {
                row_group: row_group + 1,
                row: 0,
            }
        } else {
            ParquetPosition {
                row_group,
                row: next,
            }
        };
        Ok(())
    }
}

impl<T: riffle::Data> SourcePartition for ParquetSourcePartition<T> {
    type Item = ParquetRow<T>;
    type State = ParquetPosition;

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        let mut out = Vec::new();
        while out.len() < BATCH {
            let Some(rows) = self.batches.try_next(&self.part.step_id)? else {
                break;
            };
            self.decode(&rows, &mut out)?;
        }
        Ok(self.batches.poll(out))
    }

    fn snapshot(&self) -> Option<ParquetPosition> {
        Some(self.position)
    }

    fn commit(&mut self, _position: &ParquetPosition) -> riffle::Result<()> {
        self.part.commit()
    }
}
