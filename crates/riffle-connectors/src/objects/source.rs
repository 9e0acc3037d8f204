//! The object source: every object under a prefix is a partition, read line by
//! line; its position (byte offset and line number) is the snapshot state.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};

use super::outage::went_away;
use super::partitions::{ObjectPart, ObjectParts, StoreAt};
use super::settings::{Folder, ObjectStoreSettings};
use crate::ConnectorError;
use crate::format::{Format, Utf8};
use crate::reader::{Batches, Reader};

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
    parts: ObjectParts,
    format: Arc<F>,
}

impl ObjectSource<Utf8> {
    /// Reads every object under `settings`' folder as UTF-8 lines, then looks for
    /// new objects every 10 s for ever.
    pub fn new(settings: ObjectStoreSettings) -> Self {
        Self {
            parts: ObjectParts::new(settings),
            format: Arc::new(Utf8),
        }
    }
}

impl<F: Format> ObjectSource<F> {
    /// Decodes lines with `format` ([`crate::format::Json`] for JSON lines, ...).
    pub fn format<G: Format>(self, format: G) -> ObjectSource<G> {
        ObjectSource {
            parts: self.parts,
            format: Arc::new(format),
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
    /// store does not answer (default 60 s, [`PATIENCE`](super::PATIENCE))
    /// before the run fails; see [`went_away`](super::went_away).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.parts.patience = patience;
        self
    }

    /// Lines the format cannot decode go to `letters` (with `object`, `line`,
    /// `reason` and the line), the step's dead-letter stream or a file, and are
    /// skipped instead of stopping the run; see [`riffle::dead_letters`]. No
    /// letter is lost to a crash.
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.parts.dead_letters = Some(letters);
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

/// The names of the objects under `folder` a source reads, sorted; listed again
/// from the start while the store does not answer, for at most `patience`.
pub(crate) async fn list(
    settings: &ObjectStoreSettings,
    folder: &Folder,
    patience: Duration,
) -> Result<Vec<String>, ConnectorError> {
    settings
        .outage(patience)
        .patiently("listing the folder", || async {
            let mut names = Vec::new();
            let mut listing = folder.store.list(Some(&folder.prefix));
            while let Some(meta) = listing.next().await {
                let meta =
                    meta.map_err(|e| settings.error("cannot list the folder").caused_by(e))?;
                let name = folder.name(&meta.location);
                if readable(&name) {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
        .await
}

impl<F: Format> FixedPartitionedSource for ObjectSource<F> {
    type Item = ObjectLine<F::Value>;
    type State = ObjectPosition;
    type Partition = ObjectSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let nothing = "no objects to read (the folder is empty or does not exist)";
        self.parts.list_parts(step_id, |_| true, nothing)
    }

    fn discover_every(&self) -> Option<Duration> {
        self.parts.discover_every()
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<ObjectPosition>,
    ) -> riffle::Result<ObjectSourcePartition<F>> {
        let position = resume_state.unwrap_or_default();
        let (part, lines) =
            self.parts
                .read(step_id, for_part, move |at, name, lines| async move {
                    read_lines(&at, &name, position.offset, &lines).await
                })?;
        Ok(ObjectSourcePartition {
            part,
            format: self.format.clone(),
            position,
            lines,
        })
    }
}

/// Lines of an object, each with the offset just past its end.
type Lines = Vec<(Vec<u8>, u64)>;

/// Reads `name` from byte `offset` to its end in lines, on the shared runtime.
/// While the store does not answer, the read starts again at the first byte of
/// the line it was in (see [`super::outage`]): a ranged read is harmless to
/// repeat, and each line still carries the offset just past its end.
async fn read_lines(
    at: &StoreAt,
    name: &str,
    offset: u64,
    lines: &Batches<Lines>,
) -> Result<(), ConnectorError> {
    let (settings, store) = (&at.settings, &at.folder.store);
    let path = &at.folder.child(name);
    let fail = &|what: &str, e: object_store::Error| {
        settings
            .error(format!("{what} object {name:?}"))
            .caused_by(e)
    };
    let doing = format!("reading object {name:?}");
    let mut outage = settings.outage(at.patience);
    let size = outage
        .patiently(&doing, || async move {
            store
                .head(path)
                .await
                .map(|meta| meta.size)
                .map_err(|e| fail("cannot find", e))
        })
        .await?;
    // Bytes up to the end of the last whole line read.
    let mut at = offset;
    let mut batch = Vec::new();
    'read: while at < size {
        let from = at;
        let got = outage
            .patiently(&doing, || async move {
                let options = GetOptions {
                    range: (from > 0).then_some(GetRange::Offset(from)),
                    ..Default::default()
                };
                store
                    .get_opts(path, options)
                    .await
                    .map_err(|e| fail("cannot read", e))
            })
            .await?;
        let mut stream = got.into_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let e = fail("cannot read", e);
                    if !went_away(&e) {
                        return Err(e);
                    }
                    outage.gone_async(&doing, e).await?;
                    continue 'read;
                }
            };
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
                if batch.len() >= BATCH && !lines.send(std::mem::take(&mut batch)).await {
                    return Ok(());
                }
            }
            pending.extend_from_slice(rest);
        }
        // The last line may have no end.
        if !pending.is_empty() {
            at += pending.len() as u64;
            batch.push((pending, at));
        }
        break;
    }
    if !batch.is_empty() {
        lines.send(batch).await;
    }
    Ok(())
}

/// One object being read; made by [`ObjectSource`].
pub struct ObjectSourcePartition<F> {
    part: ObjectPart,
    format: Arc<F>,
    position: ObjectPosition,
    lines: Reader<Lines>,
}

impl<F: Format> SourcePartition for ObjectSourcePartition<F> {
    type Item = ObjectLine<F::Value>;
    type State = ObjectPosition;

    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.lines.wake_on_ready(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        let mut out = Vec::new();
        while out.len() < BATCH {
            let Some(lines) = self.lines.try_next(&self.part.step_id)? else {
                break;
            };
            for (bytes, end) in lines {
                let line = self.position.line + 1;
                match self.format.decode(&bytes) {
                    Ok(value) => out.push(ObjectLine {
                        object: self.part.object.clone(),
                        line,
                        value,
                    }),
                    Err(why) => {
                        let at = [("line", line.into())];
                        self.part.undecodable(&at, &why, || bytes.clone())?;
                    }
                }
                self.position = ObjectPosition { offset: end, line };
            }
        }
        Ok(self.lines.poll(out))
    }

    fn snapshot(&self) -> Option<ObjectPosition> {
        Some(self.position)
    }

    fn commit(&mut self, _position: &ObjectPosition) -> riffle::Result<()> {
        self.part.commit()
    }
}
