//! The object source: every object under a prefix is a partition, read line by
//! line; its position (byte offset and line number, and the header of a format
//! that has one) is the snapshot state.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};

use super::csv_rows::Csv;
use super::line_format::LineFormat;
use super::outage::went_away;
use super::partitions::{ObjectPart, ObjectParts, StoreAt};
use super::settings::{Folder, ObjectStoreSettings};
use crate::ConnectorError;
use crate::format::Utf8;
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
/// number of lines before it, and the object's header line once read (formats
/// with a header, such as [`Csv`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectPosition {
    /// Bytes read up to the end of the last line emitted.
    pub offset: u64,
    /// Lines emitted.
    pub line: u64,
    /// The object's first line, for a format with a header: a resumed partition
    /// decodes with it (one without it reads it again from the object).
    #[serde(default)]
    pub header: Option<Arc<str>>,
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

impl<F: LineFormat> ObjectSource<F> {
    /// Decodes lines with `format` ([`crate::format::Json`] for JSON lines,
    /// [`Csv`] for CSV with a header row, ...).
    pub fn format<G: LineFormat>(self, format: G) -> ObjectSource<G> {
        ObjectSource {
            parts: self.parts,
            format: Arc::new(format),
        }
    }

    /// Reads CSV objects with a header row into rows of type `T`:
    /// `.format(Csv::<T>::new())`; see [`Csv`].
    pub fn csv<T: riffle::Data + serde::de::DeserializeOwned>(self) -> ObjectSource<Csv<T>> {
        self.format(Csv::new())
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

impl<F: LineFormat> FixedPartitionedSource for ObjectSource<F> {
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
        let offset = position.offset;
        // A resumed partition past the header of a format that needs one, whose
        // state does not hold it: read it again first.
        let reread = self.format.has_header() && position.line > 0 && position.header.is_none();
        let (part, lines) =
            self.parts
                .read(step_id, for_part, move |at, name, lines| async move {
                    read_lines(&at, &name, offset, reread, &lines).await
                })?;
        let mut partition = ObjectSourcePartition {
            part,
            format: self.format.clone(),
            position,
            lines,
            object: None,
        };
        if !self.format.has_header() {
            partition.object = Some(partition.start(None)?);
        } else if let Some(header) = partition.position.header.clone() {
            // Its failure was set aside (or stopped the run) when line 1 was read.
            partition.object = self.format.start(Some(&header)).ok();
        }
        Ok(partition)
    }
}

/// Lines of an object, each with the offset just past its end.
type Lines = Vec<(Vec<u8>, u64)>;

/// What the reading task hands its partition.
enum Chunk {
    /// The object's first line, read again for a resumed partition.
    Header(Vec<u8>),
    /// Lines from where the partition is.
    Lines(Lines),
}

/// Reads `name` from byte `offset` to its end in lines, on the shared runtime.
/// While the store does not answer, the read starts again at the first byte of
/// the line it was in (see [`super::outage`]): a ranged read is harmless to
/// repeat, and each line still carries the offset just past its end.
async fn read_lines(
    at: &StoreAt,
    name: &str,
    offset: u64,
    header: bool,
    lines: &Batches<Chunk>,
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
    if header {
        let first = first_line(at, name, &mut outage).await?;
        if !lines.send(Chunk::Header(first)).await {
            return Ok(());
        }
    }
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
                if batch.len() >= BATCH
                    && !lines.send(Chunk::Lines(std::mem::take(&mut batch))).await
                {
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
        lines.send(Chunk::Lines(batch)).await;
    }
    Ok(())
}

/// The first line of object `name` (without its end), read from its start until
/// the first line end, again from the start while the store does not answer.
async fn first_line(
    at: &StoreAt,
    name: &str,
    outage: &mut super::outage::Outage,
) -> Result<Vec<u8>, ConnectorError> {
    let (settings, store) = (&at.settings, &at.folder.store);
    let path = &at.folder.child(name);
    let doing = format!("reading the header of object {name:?}");
    'read: loop {
        let got = outage
            .patiently(&doing, || async move {
                store.get(path).await.map_err(|e| {
                    settings
                        .error(format!("cannot read object {name:?}"))
                        .caused_by(e)
                })
            })
            .await?;
        let mut stream = got.into_stream();
        let mut first = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let e = settings
                        .error(format!("cannot read object {name:?}"))
                        .caused_by(e);
                    if !went_away(&e) {
                        return Err(e);
                    }
                    outage.gone_async(&doing, e).await?;
                    continue 'read;
                }
            };
            if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                first.extend_from_slice(&chunk[..end]);
                break;
            }
            first.extend_from_slice(&chunk);
        }
        if first.last() == Some(&b'\r') {
            first.pop();
        }
        return Ok(first);
    }
}

/// One object being read; made by [`ObjectSource`].
pub struct ObjectSourcePartition<F: LineFormat> {
    part: ObjectPart,
    format: Arc<F>,
    position: ObjectPosition,
    lines: Reader<Chunk>,
    /// What the format keeps for this object; `None` before its header is read,
    /// or when the header could not be used.
    object: Option<F::Object>,
}

impl<F: LineFormat> ObjectSourcePartition<F> {
    /// Starts the object with `header`: an unusable one stops the run, naming
    /// the object.
    fn start(&self, header: Option<&str>) -> riffle::Result<F::Object> {
        self.format.start(header).map_err(|why| {
            self.part
                .settings
                .error(format!("object {:?}: {why}", self.part.object))
                .for_step(&self.part.step_id)
        })
    }

    /// Line 1 of an object whose format has a header: kept in the position, and
    /// the object started with it; one that cannot be used is set aside (or
    /// stops the run), and so are the rows after it.
    fn header(&mut self, bytes: &[u8], letter: bool) -> riffle::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        let started = match std::str::from_utf8(bytes) {
            Ok(text) => self.format.start(Some(text)),
            Err(e) => Err(format!("the header is not UTF-8: {e}")),
        };
        self.position.header = Some(Arc::from(text.as_ref()));
        match started {
            Ok(object) => self.object = Some(object),
            Err(why) if letter => {
                let at = [("line", 1.into())];
                self.part.undecodable(&at, &why, || bytes.to_vec())?;
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// Decodes line number `line` into `out`, or sets it aside.
    fn line(
        &mut self,
        line: u64,
        bytes: Vec<u8>,
        out: &mut Vec<ObjectLine<F::Value>>,
    ) -> riffle::Result<()> {
        let decoded = match &mut self.object {
            Some(object) => self.format.decode(object, &bytes),
            None => Err("the object's header (line 1) could not be used".to_string()),
        };
        match decoded {
            Ok(Some(value)) => out.push(ObjectLine {
                object: self.part.object.clone(),
                line,
                value,
            }),
            Ok(None) => {}
            Err(why) => {
                let at = [("line", line.into())];
                self.part.undecodable(&at, &why, || bytes)?;
            }
        }
        Ok(())
    }
}

impl<F: LineFormat> SourcePartition for ObjectSourcePartition<F> {
    type Item = ObjectLine<F::Value>;
    type State = ObjectPosition;

    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.lines.wake_on_ready(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        let mut out = Vec::new();
        while out.len() < BATCH {
            let lines = match self.lines.try_next(&self.part.step_id)? {
                None => break,
                Some(Chunk::Header(bytes)) => {
                    self.header(&bytes, false)?;
                    continue;
                }
                Some(Chunk::Lines(lines)) => lines,
            };
            for (bytes, end) in lines {
                let line = self.position.line + 1;
                if line == 1 && self.format.has_header() {
                    self.header(&bytes, true)?;
                } else {
                    self.line(line, bytes, &mut out)?;
                }
                self.position.offset = end;
                self.position.line = line;
            }
        }
        Ok(self.lines.poll(out))
    }

    fn snapshot(&self) -> Option<ObjectPosition> {
        Some(self.position.clone())
    }

    fn commit(&mut self, _position: &ObjectPosition) -> riffle::Result<()> {
        self.part.commit()
    }
}
