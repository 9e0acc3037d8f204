//! The object sink: items encoded into new objects (lines by default), one per
//! sink partition and snapshot, made visible only once the recovery store
//! committed the snapshot.
//!
//! Every request rides out a store that went away, for the sink's
//! [`patience`](ObjectSink::patience) (see [`outage`](super::outage)), and each
//! is safe to repeat: a put writes the same bytes under the same name (a PUT
//! is atomic: a cut-off one leaves nothing or the whole object), the move into
//! place copies again while the staged object is still there (an atomic copy
//! onto the same name, with the same bytes) and takes a staged object already
//! gone for one moved before, and a delete takes a missing object for deleted.
//! Object names come from the partition's state (run and number), never from
//! the try, so no retry makes a second object.

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::{Deserialize, Serialize};

use std::sync::Arc;
use std::time::Duration;

use super::encoding::{FileEncoding, Lines};
use super::outage::PATIENCE;
use super::settings::{Folder, ObjectStoreSettings};
use crate::{ConnectorError, runtime};

/// The folder under the sink's prefix where prepared objects wait for their commit.
pub const STAGING: &str = "_staging";

/// Writes items to objects in a folder of an object store, encoded by a
/// [`FileEncoding`] (lines by default); see the [module docs](super).
#[derive(Debug)]
pub struct ObjectSink<E = Lines> {
    settings: ObjectStoreSettings,
    parts: usize,
    suffix: Option<String>,
    encoding: Arc<E>,
    patience: Duration,
}

impl<E> Clone for ObjectSink<E> {
    fn clone(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            parts: self.parts,
            suffix: self.suffix.clone(),
            encoding: self.encoding.clone(),
            patience: self.patience,
        }
    }
}

impl ObjectSink<Lines> {
    /// Writes lines (each item one line) into new objects under `settings`' folder,
    /// from one sink partition.
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self {
            settings,
            parts: 1,
            suffix: None,
            encoding: Arc::new(Lines),
            patience: PATIENCE,
        }
    }
}

impl<E: FileEncoding> ObjectSink<E> {
    /// Encodes each object's items with `encoding` instead (e.g.
    /// `tables::ParquetFiles` for Parquet files); the commit protocol stays.
    pub fn encoding<G: FileEncoding>(self, encoding: G) -> ObjectSink<G> {
        ObjectSink {
            settings: self.settings,
            parts: self.parts,
            suffix: self.suffix,
            encoding: Arc::new(encoding),
            patience: self.patience,
        }
    }

    /// How many sink partitions write at once (default 1); items are spread over
    /// them by a stable hash ([`FileEncoding::route`]).
    pub fn parts(mut self, parts: usize) -> Self {
        self.parts = parts.max(1);
        self
    }

    /// The end of every object's name (default: the encoding's, `.jsonl` for lines).
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = Some(suffix.into());
        self
    }

    /// How long a partition keeps trying a write, a move into place or a
    /// delete while the store does not answer (default 60 s,
    /// [`PATIENCE`](super::PATIENCE)) before the run fails naming the object.
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle_connectors::objects::{ObjectSink, ObjectStoreSettings};
    /// let sink = ObjectSink::new(ObjectStoreSettings::new("s3://events/out"))
    ///     .patience(Duration::from_secs(300));
    /// # drop(sink);
    /// ```
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }
}

/// A sink partition's position: the run that names its objects, the number of the
/// next object, and the objects prepared (staged) and not yet known committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSinkState {
    /// Names the objects of this flow's store, so another store's objects are
    /// never overwritten.
    pub run: String,
    /// The number of the next object.
    pub next: u64,
    /// Objects staged at a snapshot, to move into place once it is committed.
    pub prepared: Vec<u64>,
}

impl<E: FileEncoding> FixedPartitionedSink for ObjectSink<E> {
    type Item = E::Item;
    type State = ObjectSinkState;
    type Partition = ObjectSinkPartition<E>;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.parts).map(|p| format!("part-{p:05}")).collect())
    }

    fn part_fn(&self, item: &E::Item, parts: usize) -> usize {
        (self.encoding.route(item) % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<ObjectSinkState>,
    ) -> riffle::Result<ObjectSinkPartition<E>> {
        let folder = self.settings.open(true).map_err(|e| e.for_step(step_id))?;
        let mut part = ObjectSinkPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            folder,
            part: for_part.to_string(),
            suffix: self
                .suffix
                .clone()
                .unwrap_or_else(|| self.encoding.suffix().to_string()),
            encoding: self.encoding.clone(),
            patience: self.patience,
            buffer: Vec::new(),
            state: resume_state.clone().unwrap_or_else(|| ObjectSinkState {
                run: new_run(),
                next: 0,
                prepared: Vec::new(),
            }),
        };
        // A resumed partition finishes what its committed state had prepared (the
        // crash may have come before the commit moved it into place); what it
        // staged after that state is written again under the same names.
        if let Some(state) = resume_state {
            for n in &state.prepared {
                part.finish(*n).map_err(|e| e.for_step(step_id))?;
            }
            part.state.prepared.clear();
        }
        Ok(part)
    }
}

/// A name for a new run's objects: the time in ms and the process id, in hex.
pub(crate) fn new_run() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{ms:x}{:x}", std::process::id())
}

/// One partition of an [`ObjectSink`].
pub struct ObjectSinkPartition<E: FileEncoding = Lines> {
    step_id: String,
    settings: ObjectStoreSettings,
    folder: Folder,
    part: String,
    suffix: String,
    encoding: Arc<E>,
    patience: Duration,
    buffer: Vec<E::Item>,
    state: ObjectSinkState,
}

impl<E: FileEncoding> ObjectSinkPartition<E> {
    fn name(&self, n: u64) -> String {
        format!(
            "{}-{}-{}-{n:010}{}",
            self.step_id, self.part, self.state.run, self.suffix
        )
    }

    /// Puts the buffer into a new object: at `name` directly, or staged.
    fn put(&mut self, staged: bool) -> Result<Option<u64>, ConnectorError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let n = self.state.next;
        let name = self.name(n);
        let path = if staged {
            self.folder.child(&format!("{STAGING}/{name}"))
        } else {
            self.folder.child(&name)
        };
        let items = std::mem::take(&mut self.buffer);
        let bytes = self.encoding.encode(&items).map_err(|why| {
            self.settings
                .error(format!("cannot encode object {name:?}: {why}"))
        })?;
        let payload = PutPayload::from(Bytes::from(bytes));
        let (store, path, settings) = (&self.folder.store, &path, &self.settings);
        let mut outage = settings.outage(self.patience);
        let doing = format!("writing object {name:?}");
        runtime::handle().block_on(outage.patiently(&doing, || {
            let payload = payload.clone();
            let name = &name;
            async move {
                store.put(path, payload).await.map(drop).map_err(|e| {
                    settings
                        .error(format!("cannot write object {name:?}"))
                        .caused_by(e)
                })
            }
        }))?;
        self.state.next += 1;
        Ok(Some(n))
    }

    /// Moves staged object `n` into place (nothing when it already is): copies
    /// it, then deletes the staged one.
    fn finish(&self, n: u64) -> Result<(), ConnectorError> {
        let name = &self.name(n);
        let staged = &self.folder.child(&format!("{STAGING}/{name}"));
        let target = &self.folder.child(name);
        let (store, settings) = (&self.folder.store, &self.settings);
        let error = |what: String, e: object_store::Error| settings.error(what).caused_by(e);
        let error = &error;
        let mut outage = settings.outage(self.patience);
        let doing = format!("moving object {name:?} into place");
        runtime::handle().block_on(async {
            let copied = outage
                .patiently(&doing, || async move {
                    match store.copy(staged, target).await {
                        Ok(()) => Ok(true),
                        // Moved before (this try's copy or an earlier run's).
                        Err(object_store::Error::NotFound { .. }) => Ok(false),
                        Err(e) => Err(error(
                            format!("cannot move staged object {name:?} into place"),
                            e,
                        )),
                    }
                })
                .await?;
            if copied {
                outage
                    .patiently(&doing, || async move {
                        match store.delete(staged).await {
                            // Missing: an earlier try's delete went through.
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(error(
                                format!("cannot remove staged object {name:?}"),
                                e,
                            )),
                        }
                    })
                    .await
            } else {
                // Moved before: the object must be in place.
                outage
                    .patiently(&doing, || async move {
                        store.head(target).await.map(drop).map_err(|e| {
                            error(
                                format!(
                                    "object {name:?} was prepared but is neither staged nor in place"
                                ),
                                e,
                            )
                        })
                    })
                    .await
            }
        })
    }
}

impl<E: FileEncoding> SinkPartition for ObjectSinkPartition<E> {
    type Item = E::Item;
    type State = ObjectSinkState;

    fn write_batch(&mut self, mut items: Vec<E::Item>) -> riffle::Result<()> {
        self.buffer.append(&mut items);
        Ok(())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        // Without a recovery store: an object per epoch, visible at once.
        self.put(false)
            .map(drop)
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<ObjectSinkState>> {
        if let Some(n) = self.put(true).map_err(|e| e.for_step(&self.step_id))? {
            self.state.prepared.push(n);
        }
        Ok(Some(self.state.clone()))
    }

    fn commit(&mut self, state: &ObjectSinkState) -> riffle::Result<()> {
        for n in &state.prepared {
            if self.state.prepared.contains(n) {
                self.finish(*n).map_err(|e| e.for_step(&self.step_id))?;
            }
        }
        self.state.prepared.retain(|n| !state.prepared.contains(n));
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        // The run ended cleanly: what is staged, and what came after the last
        // snapshot, is final.
        let prepared = std::mem::take(&mut self.state.prepared);
        for n in prepared {
            self.finish(n).map_err(|e| e.for_step(&self.step_id))?;
        }
        self.put(false)
            .map(drop)
            .map_err(|e| e.for_step(&self.step_id))
    }
}
