//! File sinks: [`FileSink`] (lines), [`CsvSink`] and [`JsonLinesSink`] (serde rows),
//! and [`DirSink`] (a directory of files, items routed by key).
//!
//! Each file is one partition, written by one worker through a buffer. Its snapshot
//! is the number of bytes written (after a flush); a partition rebuilt from a
//! snapshot truncates the file to that length and appends, so output written after
//! the last committed snapshot is written exactly once when a run resumes. A
//! partition built fresh starts the file empty.

use std::fs::{File, OpenOptions};
use std::hash::Hash;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::{FixedPartitionedSink, SinkPartition};
use crate::data::Data;
use crate::error::{Result, RiffleError};
use crate::exchange::stable_hash;

/// How items become lines of text.
pub trait LineWriter: Send + Sync + 'static {
    /// What is written.
    type Item: Data;
    /// A first line for new files (e.g. CSV column names).
    fn header(&self) -> Option<String> {
        None
    }
    /// Appends the line for `item` (without the line ending) to `out`.
    fn format(&self, item: &Self::Item, out: &mut String) -> std::result::Result<(), String>;
}

/// Items written as lines of one file. Delivery under recovery: exactly-once (on
/// resume the file is truncated to its committed length).
pub struct LineSink<W> {
    path: PathBuf,
    writer: Arc<W>,
    append: bool,
}

impl<W> LineSink<W> {
    /// Keeps what the file holds when the sink starts without a position and
    /// writes on at its end (the header, if any, only into a new or empty file).
    /// For hosts whose every run starts without one, such as a Flow's
    /// processors; under a recovery store a resumed run still truncates to its
    /// committed length.
    ///
    /// ```
    /// use riffle::sinks::{FileSink, FixedPartitionedSink, SinkPartition};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("out.txt");
    /// std::fs::write(&path, "kept\n").unwrap();
    /// let sink = FileSink::new(&path).appending();
    /// let mut part = sink.build_part("out", &sink.list_parts("out")?[0], None)?;
    /// part.write_batch(vec!["new".to_string()])?;
    /// part.close()?;
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\nnew\n");
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn appending(mut self) -> Self {
        self.append = true;
        self
    }
}

/// Strings written as lines of one file.
///
/// ```
/// use riffle::{Dataflow, sources::TestingSource, sinks::FileSink};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.txt");
/// let flow = Dataflow::new("f");
/// flow.input("inp", TestingSource::new(vec!["x".to_string(), "y".to_string()]))?
///     .output("out", FileSink::new(&path))?;
/// riffle::run_main(&flow)?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\ny\n");
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub type FileSink = LineSink<PlainLines>;

impl FileSink {
    /// Lines of the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: Arc::new(PlainLines),
            append: false,
        }
    }
}

/// Each `String` item as one line.
pub struct PlainLines;

impl LineWriter for PlainLines {
    type Item = String;
    fn format(&self, item: &String, out: &mut String) -> std::result::Result<(), String> {
        out.push_str(item);
        Ok(())
    }
}

/// Rows written as CSV with a header line, through serde.
pub type CsvSink<T> = LineSink<CsvRows<T>>;

impl<T: Data + Serialize> CsvSink<T> {
    /// CSV rows to the file at `path`; `columns` is the header line's column names.
    pub fn new(path: impl Into<PathBuf>, columns: &[&str]) -> Self {
        Self {
            path: path.into(),
            append: false,
            writer: Arc::new(CsvRows {
                columns: columns.iter().map(|c| c.to_string()).collect(),
                _row: PhantomData,
            }),
        }
    }
}

/// Serde rows as CSV.
pub struct CsvRows<T> {
    columns: Vec<String>,
    _row: PhantomData<fn(T)>,
}

impl<T: Data + Serialize> LineWriter for CsvRows<T> {
    type Item = T;
    fn header(&self) -> Option<String> {
        let mut out = String::new();
        let _ = csv_line(&self.columns, &mut out);
        Some(out)
    }
    fn format(&self, item: &T, out: &mut String) -> std::result::Result<(), String> {
        csv_line(item, out)
    }
}

fn csv_line<T: Serialize + ?Sized>(item: &T, out: &mut String) -> std::result::Result<(), String> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer
        .serialize(item)
        .map_err(|e| format!("cannot write as CSV: {e}"))?;
    let bytes = writer
        .into_inner()
        .map_err(|e| format!("cannot write as CSV: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| format!("cannot write as CSV: {e}"))?;
    out.push_str(text.trim_end_matches('\n'));
    Ok(())
}

/// Items written as JSON lines, through serde.
pub type JsonLinesSink<T> = LineSink<JsonLines<T>>;

impl<T: Data + Serialize> JsonLinesSink<T> {
    /// JSON lines to the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            writer: Arc::new(JsonLines(PhantomData)),
            append: false,
        }
    }
}

/// Serde items as JSON, one per line.
pub struct JsonLines<T>(PhantomData<fn(T)>);

impl<T: Data + Serialize> LineWriter for JsonLines<T> {
    type Item = T;
    fn format(&self, item: &T, out: &mut String) -> std::result::Result<(), String> {
        let text = serde_json::to_string(item).map_err(|e| format!("cannot write as JSON: {e}"))?;
        out.push_str(&text);
        Ok(())
    }
}

impl<W: LineWriter> FixedPartitionedSink for LineSink<W> {
    type Item = W::Item;
    type State = u64;
    type Partition = FilePartition<W>;

    fn fresh_start_discards(&self) -> bool {
        !self.append
    }

    fn list_parts(&self, _step_id: &str) -> Result<Vec<String>> {
        Ok(vec![self.path.display().to_string()])
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<u64>,
    ) -> Result<Self::Partition> {
        let path = PathBuf::from(for_part);
        let resume = match resume {
            None if self.append => std::fs::metadata(&path)
                .ok()
                .map(|m| m.len())
                .filter(|len| *len > 0),
            given => given,
        };
        FilePartition::open(step_id, path, self.writer.clone(), resume, |_| true)
    }
}

/// `(key, line)` items written to `count` files `part-00000` ... in a directory; the
/// file of an item is chosen by the stable hash of its key, so a key's lines are all
/// in one file, in order. Delivery under recovery: exactly-once (each file is
/// truncated to its committed length on resume).
///
/// ```
/// use riffle::{Dataflow, sources::TestingSource, sinks::DirSink};
/// let dir = tempfile::tempdir().unwrap();
/// let flow = Dataflow::new("f");
/// let items = vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())];
/// flow.input("inp", TestingSource::new(items))?.output("out", DirSink::new(dir.path(), 3))?;
/// riffle::run_main(&flow)?;
/// let mut all = String::new();
/// for i in 0..3 {
///     all += &std::fs::read_to_string(dir.path().join(format!("part-{i:05}"))).unwrap();
/// }
/// assert_eq!(all.lines().count(), 2);
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub struct DirSink<K> {
    dir: PathBuf,
    count: usize,
    append: bool,
    _key: PhantomData<fn(K)>,
}

impl<K: Data + Hash> DirSink<K> {
    /// `count` files in directory `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>, count: usize) -> Self {
        Self {
            dir: dir.into(),
            count: count.max(1),
            append: false,
            _key: PhantomData,
        }
    }

    /// Keeps what the files hold when the sink starts without a position and
    /// writes on at their ends, as [`LineSink::appending`] does for one file.
    pub fn appending(mut self) -> Self {
        self.append = true;
        self
    }
}

/// `(key, line)` pairs, written as the line.
pub struct KeyedLines<K>(PhantomData<fn(K)>);

impl<K: Data> LineWriter for KeyedLines<K> {
    type Item = (K, String);
    fn format(&self, item: &(K, String), out: &mut String) -> std::result::Result<(), String> {
        out.push_str(&item.1);
        Ok(())
    }
}

impl<K: Data + Hash> FixedPartitionedSink for DirSink<K> {
    type Item = (K, String);
    type State = u64;
    type Partition = FilePartition<KeyedLines<K>>;

    fn fresh_start_discards(&self) -> bool {
        !self.append
    }

    fn list_parts(&self, step_id: &str) -> Result<Vec<String>> {
        std::fs::create_dir_all(&self.dir).map_err(|error| RiffleError::Io {
            step_id: step_id.to_string(),
            action: "create the directory",
            path: self.dir.clone(),
            error,
        })?;
        Ok((0..self.count)
            .map(|i| self.dir.join(format!("part-{i:05}")).display().to_string())
            .collect())
    }

    fn part_fn(&self, item: &(K, String), parts: usize) -> usize {
        (stable_hash(&item.0) % parts as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<u64>,
    ) -> Result<Self::Partition> {
        let path = PathBuf::from(for_part);
        let resume = match resume {
            None if self.append => std::fs::metadata(&path).ok().map(|m| m.len()),
            given => given,
        };
        FilePartition::open(
            step_id,
            path,
            Arc::new(KeyedLines(PhantomData)),
            resume,
            |_| true,
        )
    }
}

/// One file being written.
pub struct FilePartition<W> {
    step_id: String,
    path: PathBuf,
    out: BufWriter<File>,
    writer: Arc<W>,
    written: u64,
    line: String,
}

impl<W: LineWriter> FilePartition<W> {
    fn open(
        step_id: &str,
        path: PathBuf,
        writer: Arc<W>,
        resume: Option<u64>,
        _filter: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let io_err = |action, error| RiffleError::Io {
            step_id: step_id.to_string(),
            action,
            path: path.clone(),
            error,
        };
        let file = match resume {
            Some(len) => {
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("open", e))?;
                file.set_len(len).map_err(|e| io_err("truncate", e))?;
                let mut file = file;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len))
                    .map_err(|e| io_err("seek in", e))?;
                file
            }
            None => File::create(&path).map_err(|e| io_err("create", e))?,
        };
        let mut part = Self {
            step_id: step_id.to_string(),
            path: path.clone(),
            out: BufWriter::with_capacity(64 * 1024, file),
            writer,
            written: resume.unwrap_or(0),
            line: String::new(),
        };
        if resume.is_none()
            && let Some(header) = part.writer.header()
        {
            part.write_line_text(&header)?;
        }
        Ok(part)
    }

    fn io_error(&self, action: &'static str, error: std::io::Error) -> RiffleError {
        RiffleError::Io {
            step_id: self.step_id.clone(),
            action,
            path: self.path.clone(),
            error,
        }
    }

    fn write_line_text(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| self.io_error("write", e))?;
        self.written += text.len() as u64 + 1;
        Ok(())
    }
}

impl<W: LineWriter> SinkPartition for FilePartition<W> {
    type Item = W::Item;
    type State = u64;

    fn write_batch(&mut self, items: Vec<W::Item>) -> Result<()> {
        for item in &items {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            self.writer.format(item, &mut line).map_err(|reason| {
                RiffleError::connector(
                    &self.step_id,
                    format!("{}: {reason} (item {item:?})", self.path.display()),
                )
            })?;
            let result = self.write_line_text(&line);
            self.line = line;
            result?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<u64>> {
        self.out.flush().map_err(|e| self.io_error("flush", e))?;
        Ok(Some(self.written))
    }

    fn close(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.io_error("flush", e))
    }
}
