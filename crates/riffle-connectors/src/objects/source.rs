//! The object source: every object under a prefix is a partition, read line by
//! line; its position (byte offset and line number) is the snapshot state.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::settings::{Folder, ObjectStoreSettings};
use crate::format::{Format, Utf8};
use crate::{ConnectorError, runtime};

/// The most lines one poll returns.
const BATCH: usize = 4096;

/// One line of an object, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLine<V> {
    /// The object's name under the source's folder.
    pub object: Arc<str>,
    /// The line's number in the object, from 1.
    pub line: u64,
    /// The line (without its end), decoded.
    pub value: V,
}

/// Where a partition is in its object: the byte offset of the next line and the
/// number of lines before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectPosition {
    /// Bytes read up to the end of the last line emitted.
    pub offset: u64,
    /// Lines emitted.
    pub line: u64,
}

/// Reads the objects under a folder of an object store, line by line; see the
/// [module docs](super).
pub struct ObjectSource<F = Utf8> {
    settings: ObjectStoreSettings,
    format: Arc<F>,
    tail: bool,
    discover: Duration,
    dead_letters: Option<DeadLetters>,
}

impl ObjectSource<Utf8> {
    /// Reads every object under `settings`' folder as UTF-8 lines, then looks for
    /// new objects every 10 s for ever.
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self {
            settings,
            format: Arc::new(Utf8),
            tail: true,
            discover: Duration::from_secs(10),
            dead_letters: None,
        }
    }
}

impl<F: Format> ObjectSource<F> {
    /// Decodes lines with `format` ([`crate::format::Json`] for JSON lines, ...).
    pub fn format<G: Format>(self, format: G) -> ObjectSource<G> {
        ObjectSource {
            settings: self.settings,
            format: Arc::new(format),
            tail: self.tail,
            discover: self.discover,
            dead_letters: self.dead_letters,
        }
    }

    /// Whether to look for new objects for ever (`true`, the default) or stop once
    /// the objects there at the start are read (then an empty folder is an error).
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// How often a following source lists the folder for new objects (default 10 s).
    pub fn discover_every(mut self, every: Duration) -> Self {
        self.discover = every;
        self
    }

    /// Lines the format cannot decode go to `letters` (with `object`, `line`,
    /// `reason` and the line), the step's dead-letter stream or a file, and are
    /// skipped instead of stopping the run; see [`riffle::dead_letters`]. No
    /// letter is lost to a crash.
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.dead_letters = Some(letters);
        self
    }
}

/// Whether an object's name (relative to the folder) is one a source reads: not
/// under a `_` or `.` folder or named so (a sink's staging area, hidden files).
pub(crate) fn readable(name: &str) -> bool {
    !name
        .split('/')
        .any(|p| p.starts_with('_') || p.starts_with('.'))
}

/// The names of the objects under `folder` a source reads, sorted.
pub(crate) async fn list(
    settings: &ObjectStoreSettings,
    folder: &Folder,
) -> Result<Vec<String>, ConnectorError> {
    let mut names = Vec::new();
    let mut listing = folder.store.list(Some(&folder.prefix));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| settings.error("cannot list the folder").caused_by(e))?;
        let name = folder.name(&meta.location);
        if readable(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl<F: Format> FixedPartitionedSource for ObjectSource<F> {
    type Item = ObjectLine<F::Value>;
    type State = ObjectPosition;
    type Partition = ObjectSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let folder = self.settings.open(false).map_err(|e| e.for_step(step_id))?;
        let names = runtime::handle()
            .block_on(list(&self.settings, &folder))
            .map_err(|e| e.for_step(step_id))?;
        if names.is_empty() && !self.tail {
            return Err(self
                .settings
                .error("no objects to read (the folder is empty or does not exist)")
                .for_step(step_id));
        }
        Ok(names)
    }

    fn discover_every(&self) -> Option<Duration> {
        self.tail.then_some(self.discover)
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<ObjectPosition>,
    ) -> riffle::Result<ObjectSourcePartition<F>> {
        let folder = self.settings.open(false).map_err(|e| e.for_step(step_id))?;
        let position = resume_state.unwrap_or_default();
        let (tx, lines) = mpsc::channel(4);
        let task = runtime::handle().spawn(read(
            self.settings.clone(),
            folder,
            for_part.to_string(),
            position.offset,
            tx,
        ));
        Ok(ObjectSourcePartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            object: Arc::from(for_part),
            format: self.format.clone(),
            dead_letters: self.dead_letters.clone(),
            position,
            lines,
            reader: task,
            done: false,
        })
    }
}

/// What the reading task hands the partition.
enum Read {
    /// Lines, each with the offset just past its end.
    Lines(Vec<(Vec<u8>, u64)>),
    /// The object is read to its end.
    Done,
    /// Reading failed.
    Failed(ConnectorError),
}

/// Reads `name` from byte `offset` to its end in lines, on the shared runtime.
async fn read(
    settings: ObjectStoreSettings,
    folder: Folder,
    name: String,
    offset: u64,
    tx: mpsc::Sender<Read>,
) {
    if let Err(e) = read_lines(&settings, &folder, &name, offset, &tx).await {
        let _ = tx.send(Read::Failed(e)).await;
    }
}

async fn read_lines(
    settings: &ObjectStoreSettings,
    folder: &Folder,
    name: &str,
    offset: u64,
    tx: &mpsc::Sender<Read>,
) -> Result<(), ConnectorError> {
    let path = folder.child(name);
    let fail = |what: &str, e: object_store::Error| {
        settings
            .error(format!("{what} object {name:?}"))
            .caused_by(e)
    };
    let meta = folder
        .store
        .head(&path)
        .await
        .map_err(|e| fail("cannot find", e))?;
    if offset >= meta.size {
        let _ = tx.send(Read::Done).await;
        return Ok(());
    }
    let options = GetOptions {
        range: (offset > 0).then_some(GetRange::Offset(offset)),
        ..Default::default()
    };
    let got = folder
        .store
        .get_opts(&path, options)
        .await
        .map_err(|e| fail("cannot read", e))?;
    let mut stream = got.into_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut at = offset;
    let mut batch = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail("cannot read", e))?;
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            // The line may have begun in an earlier chunk: count all of it.
            at += (pending.len() + end + 1) as u64;
            pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut pending);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            batch.push((line, at));
            if batch.len() >= BATCH
                && tx
                    .send(Read::Lines(std::mem::take(&mut batch)))
                    .await
                    .is_err()
            {
                return Ok(());
            }
        }
        pending.extend_from_slice(rest);
    }
    // The last line may have no end.
    if !pending.is_empty() {
        let len = pending.len() as u64;
        batch.push((std::mem::take(&mut pending), at + len));
    }
    if !batch.is_empty() && tx.send(Read::Lines(batch)).await.is_err() {
        return Ok(());
    }
    let _ = tx.send(Read::Done).await;
    Ok(())
}

/// One object being read; made by [`ObjectSource`].
pub struct ObjectSourcePartition<F> {
    step_id: String,
    settings: ObjectStoreSettings,
    object: Arc<str>,
    format: Arc<F>,
    dead_letters: Option<DeadLetters>,
    position: ObjectPosition,
    lines: mpsc::Receiver<Read>,
    reader: tokio::task::JoinHandle<()>,
    done: bool,
}

impl<F: Format> SourcePartition for ObjectSourcePartition<F> {
    type Item = ObjectLine<F::Value>;
    type State = ObjectPosition;

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        if self.done {
            return Ok(Poll::Exhausted);
        }
        let mut out = Vec::new();
        while out.len() < BATCH {
            match self.lines.try_recv() {
                Ok(Read::Lines(lines)) => {
                    for (bytes, end) in lines {
                        let line = self.position.line + 1;
                        let value = match self.format.decode(&bytes) {
                            Ok(value) => Some(value),
                            Err(why) => match &self.dead_letters {
                                Some(letters) => {
                                    let position =
                                        [("object", (*self.object).into()), ("line", line.into())];
                                    letters.write(&self.step_id, &position, &why, &bytes)?;
                                    None
                                }
                                None => {
                                    return Err(self
                                        .settings
                                        .error(format!(
                                            "object {:?} line {line}: {why}",
                                            self.object
                                        ))
                                        .for_step(&self.step_id));
                                }
                            },
                        };
                        self.position = ObjectPosition { offset: end, line };
                        if let Some(value) = value {
                            out.push(ObjectLine {
                                object: self.object.clone(),
                                line,
                                value,
                            });
                        }
                    }
                }
                Ok(Read::Done) => {
                    self.done = true;
                    break;
                }
                Ok(Read::Failed(e)) => return Err(e.for_step(&self.step_id)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(self
                        .settings
                        .error(format!("the reader of object {:?} stopped", self.object))
                        .for_step(&self.step_id));
                }
            }
        }
        if out.is_empty() {
            return Ok(if self.done {
                Poll::Exhausted
            } else {
                Poll::Pending
            });
        }
        Ok(Poll::Ready(out))
    }

    fn snapshot(&self) -> Option<ObjectPosition> {
        Some(self.position)
    }

    fn commit(&mut self, _position: &ObjectPosition) -> riffle::Result<()> {
        // The letters of the lines this position passed are on disk before it counts.
        match &self.dead_letters {
            Some(letters) => letters.sync(&self.step_id),
            None => Ok(()),
        }
    }
}

impl<F> Drop for ObjectSourcePartition<F> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
