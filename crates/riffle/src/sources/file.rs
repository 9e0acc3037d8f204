//! File sources: [`FileSource`] (lines), [`CsvSource`] and [`JsonLinesSource`] (typed
//! rows through serde).
//!
//! A path to a file is one partition; a path to a directory is one partition per
//! regular file in it (sorted by name, not recursive). Each partition remembers its
//! byte offset and line number, so a resumed run continues after the last line it
//! snapshotted.
//!
//! A file that is missing or unreadable stops the run with an error naming the file.
//! A line that is not valid UTF-8 (or, for CSV and JSON lines, that does not parse
//! into the row type) stops the run with an error naming the file and line, unless a
//! dead-letter file was given: then the bad line is appended there as one JSON object
//! (`file`, `line`, `reason`, `text`) and the run goes on.
//!
//! A flow that parses lines itself can keep their place: [`LineSource::numbered`]
//! makes every item a [`Numbered`] (file, line number, value), and
//! [`Stream::parse`](crate::Stream::parse) parses it in a step whose errors name the
//! file and the line, as the source's own parsing does.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{FixedPartitionedSource, Poll, SourcePartition};
use crate::data::Data;
use crate::dead_letters::DeadLetters;
use crate::error::{Result, RiffleError};

/// A partition's position in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FilePosition {
    /// Bytes read so far.
    pub offset: u64,
    /// Lines read so far.
    pub line: u64,
}

/// How each line of a file becomes an item.
pub trait LineFormat: Send + Sync + 'static {
    /// The item a line becomes.
    type Item: Data;
    /// What a partition keeps from line to line: what its file's first line told
    /// about the rest (e.g. CSV column names), and a parser it reuses for every
    /// line instead of building one per line.
    type Header: Default + 'static;
    /// Called with a file's first line; returns `Some(header)` when the line is a
    /// header (and so not an item).
    fn header(&self, _line: &str) -> std::result::Result<Option<Self::Header>, String> {
        Ok(None)
    }
    /// Parses one line (without its line ending). `Ok(None)` skips the line.
    fn parse(
        &self,
        header: &mut Self::Header,
        line: &str,
    ) -> std::result::Result<Option<Self::Item>, String>;
    /// Parses one line knowing where it is; what the source calls. The default is
    /// [`LineFormat::parse`]; formats whose items carry their place override it.
    fn parse_at(
        &self,
        header: &mut Self::Header,
        line: &str,
        _at: &LineAt<'_>,
    ) -> std::result::Result<Option<Self::Item>, String> {
        self.parse(header, line)
    }
}

/// Where a line is: its file (as the source names its partition) and its number,
/// counted from 1.
#[derive(Debug, Clone, Copy)]
pub struct LineAt<'a> {
    /// The file.
    pub file: &'a str,
    /// The line's number in it.
    pub line: u64,
}

/// An item with the file and line it was read from: what a
/// [`numbered`](LineSource::numbered) source emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbered<T> {
    /// The file the line was read from.
    pub file: String,
    /// The line's number in the file, counted from 1.
    pub line: u64,
    /// What the line became.
    pub value: T,
}

/// A format whose items carry their file and line; see [`LineSource::numbered`].
pub struct NumberedFormat<F>(Arc<F>);

impl<F: LineFormat> LineFormat for NumberedFormat<F>
where
    F::Item: Serialize + serde::de::DeserializeOwned,
{
    type Item = Numbered<F::Item>;
    type Header = F::Header;
    fn header(&self, line: &str) -> std::result::Result<Option<F::Header>, String> {
        self.0.header(line)
    }
    fn parse(
        &self,
        header: &mut F::Header,
        line: &str,
    ) -> std::result::Result<Option<Self::Item>, String> {
        let at = LineAt { file: "", line: 0 };
        self.parse_at(header, line, &at)
    }
    fn parse_at(
        &self,
        header: &mut F::Header,
        line: &str,
        at: &LineAt<'_>,
    ) -> std::result::Result<Option<Self::Item>, String> {
        Ok(self.0.parse_at(header, line, at)?.map(|value| Numbered {
            file: at.file.to_string(),
            line: at.line,
            value,
        }))
    }
}

/// Lines of text files, read through a [`LineFormat`].
pub struct LineSource<F> {
    path: PathBuf,
    format: Arc<F>,
    batch_size: usize,
    dead_letters: Option<DeadLetters>,
}

impl<F: LineFormat> LineSource<F> {
    fn with_format(path: impl Into<PathBuf>, format: F) -> Self {
        Self {
            path: path.into(),
            format: Arc::new(format),
            batch_size: 1024,
            dead_letters: None,
        }
    }

    /// How many lines one poll reads at most (default 1024).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Send lines that cannot be read or parsed to `path` (JSON lines, appended)
    /// instead of stopping the run.
    pub fn dead_letter_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letters = Some(DeadLetters::file(path));
        self
    }

    /// Send lines that cannot be read or parsed to `letters` instead of stopping
    /// the run: the step's dead-letter stream ([`DeadLetters::stream`], read with
    /// [`Stream::dead_letters`](crate::Stream::dead_letters)) or a file.
    ///
    /// ```
    /// use riffle::dead_letters::{DeadLetter, DeadLetters};
    /// use riffle::{Dataflow, sinks::TestingSink, sources::JsonLinesSource};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("in.jsonl");
    /// std::fs::write(&path, "1\nseven\n3\n").unwrap();
    /// let (good, bad) = (TestingSink::new(), TestingSink::new());
    /// let flow = Dataflow::new("f");
    /// let numbers = flow.input(
    ///     "numbers",
    ///     JsonLinesSource::<u32>::new(&path).dead_letters(DeadLetters::stream()),
    /// )?;
    /// numbers.output("good", good.clone())?;
    /// numbers
    ///     .dead_letters()?
    ///     .map("where", |l: DeadLetter| l.to_json()["line"].to_string())?
    ///     .output("bad", bad.clone())?;
    /// riffle::run_main(&flow)?;
    /// assert_eq!(good.take(), [1, 3]);
    /// assert_eq!(bad.take(), ["2"]);
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.dead_letters = Some(letters);
        self
    }

    /// Items that carry the file and line they were read from ([`Numbered`]), for
    /// steps that parse or check them later and must say where a bad one is
    /// ([`Stream::parse`](crate::Stream::parse) does).
    ///
    /// ```
    /// use riffle::{Dataflow, sources::FileSource, sinks::TestingSink};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("qty.txt");
    /// std::fs::write(&path, "3\n5\nseven\n").unwrap();
    /// let flow = Dataflow::new("f");
    /// flow.input("lines", FileSource::new(&path).numbered())?
    ///     .parse("qty", |text: String| text.parse::<u32>())?
    ///     .output("out", TestingSink::new())?;
    /// let err = riffle::run_main(&flow).unwrap_err().to_string();
    /// assert!(err.contains("\"qty\"") && err.contains("qty.txt:3:"), "{err}");
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn numbered(self) -> LineSource<NumberedFormat<F>>
    where
        F::Item: Serialize + serde::de::DeserializeOwned,
    {
        LineSource {
            path: self.path,
            format: Arc::new(NumberedFormat(self.format)),
            batch_size: self.batch_size,
            dead_letters: self.dead_letters,
        }
    }
}

/// Lines of a file, or of every file in a directory, as `String`s.
///
/// ```
/// use riffle::{Dataflow, sources::FileSource, sinks::TestingSink};
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").unwrap();
/// let flow = Dataflow::new("f");
/// let out = TestingSink::new();
/// flow.input("lines", FileSource::new(dir.path().join("a.txt")))?.output("out", out.clone())?;
/// riffle::run_main(&flow)?;
/// assert_eq!(out.take_sorted(), ["one", "two"]);
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub type FileSource = LineSource<PlainLines>;

impl FileSource {
    /// Lines of the file at `path`, or of every file in the directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_format(path, PlainLines)
    }
}

/// Each line as it is.
pub struct PlainLines;

impl LineFormat for PlainLines {
    type Item = String;
    type Header = ();
    fn parse(&self, _: &mut (), line: &str) -> std::result::Result<Option<String>, String> {
        Ok(Some(line.to_string()))
    }
}

/// Rows of CSV files with a header line, deserialized into `T` with serde.
///
/// ```
/// use riffle::{Dataflow, sources::CsvSource, sinks::TestingSink};
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
/// struct Row { name: String, qty: u32 }
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("rows.csv");
/// std::fs::write(&path, "name,qty\napple,3\npear,5\n").unwrap();
/// let flow = Dataflow::new("f");
/// let out = TestingSink::new();
/// flow.input("rows", CsvSource::<Row>::new(&path))?
///     .map("qty", |r: Row| r.qty)?
///     .output("out", out.clone())?;
/// riffle::run_main(&flow)?;
/// assert_eq!(out.take_sorted(), [3, 5]);
/// # Ok::<(), riffle::RiffleError>(())
/// ```
pub type CsvSource<T> = LineSource<CsvRows<T>>;

impl<T: Data + DeserializeOwned> CsvSource<T> {
    /// Rows of the CSV file (or directory of files) at `path`; the first line of each
    /// file names the columns.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_format(path, CsvRows(PhantomData))
    }
}

/// CSV rows into `T`. Quoted fields may not span lines.
pub struct CsvRows<T>(PhantomData<fn() -> T>);

/// What a CSV partition keeps from line to line: the column names of its header
/// and one parser, reused for every line.
#[derive(Default)]
pub struct CsvColumns {
    names: Option<csv::StringRecord>,
    parser: CsvLineParser,
}

/// Splits one line into CSV fields with a `csv_core` reader that lives as long as
/// its partition: no reader, buffer or record is built per line.
struct CsvLineParser {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    record: csv::StringRecord,
}

impl Default for CsvLineParser {
    fn default() -> Self {
        Self {
            reader: csv_core::Reader::new(),
            out: vec![0; 1024],
            ends: vec![0; 32],
            record: csv::StringRecord::new(),
        }
    }
}

impl CsvLineParser {
    /// The fields of the first record in `line` (a line holds one record: quoted
    /// fields may not span lines).
    fn record(&mut self, line: &str) -> std::result::Result<&csv::StringRecord, String> {
        use csv_core::ReadRecordResult;
        self.reader.reset();
        let mut input = line.as_bytes();
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (result, nin, out, ends) =
                self.reader
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += out;
            nend += ends;
            match result {
                // The line is all there is: an empty input ends the record.
                ReadRecordResult::InputEmpty => input = &[],
                ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        self.record.clear();
        let mut start = 0;
        for &end in &self.ends[..nend] {
            let field = std::str::from_utf8(&self.out[start..end])
                .map_err(|e| format!("bad CSV: a field is not valid UTF-8: {e}"))?;
            self.record.push_field(field);
            start = end;
        }
        Ok(&self.record)
    }
}

impl<T: Data + DeserializeOwned> LineFormat for CsvRows<T> {
    type Item = T;
    type Header = CsvColumns;

    fn header(&self, line: &str) -> std::result::Result<Option<Self::Header>, String> {
        let mut parser = CsvLineParser::default();
        let names = parser.record(line)?.clone();
        Ok(Some(CsvColumns {
            names: Some(names),
            parser,
        }))
    }

    fn parse(
        &self,
        columns: &mut Self::Header,
        line: &str,
    ) -> std::result::Result<Option<T>, String> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        let record = columns.parser.record(line)?;
        if let Some(h) = columns.names.as_ref()
            && h.len() != record.len()
        {
            return Err(format!(
                "bad CSV row: {} field(s) where the header has {}",
                record.len(),
                h.len()
            ));
        }
        record
            .deserialize(columns.names.as_ref())
            .map(Some)
            .map_err(|e| format!("bad CSV row: {e}"))
    }
}

/// One JSON value per line, deserialized into `T` with serde. Blank lines are skipped.
pub type JsonLinesSource<T> = LineSource<JsonLines<T>>;

impl<T: Data + DeserializeOwned> JsonLinesSource<T> {
    /// JSON lines of the file (or directory of files) at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_format(path, JsonLines(PhantomData))
    }
}

/// JSON lines into `T`.
pub struct JsonLines<T>(PhantomData<fn() -> T>);

impl<T: Data + DeserializeOwned> LineFormat for JsonLines<T> {
    type Item = T;
    type Header = ();
    fn parse(&self, _: &mut (), line: &str) -> std::result::Result<Option<T>, String> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(line)
            .map(Some)
            .map_err(|e| format!("bad JSON: {e}"))
    }
}

/// Tells, once per path and process, that a directory source skips `path`.
fn warn_skipped(path: &Path, why: &str) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.iter().any(|p| p == path) {
        warned.push(path.to_path_buf());
        eprintln!("warning: skipping {}: {why}", path.display());
    }
}

impl<F: LineFormat> FixedPartitionedSource for LineSource<F> {
    type Item = F::Item;
    type State = FilePosition;
    type Partition = LinePartition<F>;

    fn list_parts(&self, step_id: &str) -> Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path).map_err(|error| RiffleError::Io {
            step_id: step_id.to_string(),
            action: "read",
            path: self.path.clone(),
            error,
        })?;
        if !meta.is_dir() {
            return Ok(vec![self.path.display().to_string()]);
        }
        let entries = std::fs::read_dir(&self.path).map_err(|error| RiffleError::Io {
            step_id: step_id.to_string(),
            action: "list the directory",
            path: self.path.clone(),
            error,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| RiffleError::Io {
                step_id: step_id.to_string(),
                action: "list the directory",
                path: self.path.clone(),
                error,
            })?;
            // A link to a file is read like the file; anything else is skipped, and
            // said so.
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => names.push(path.display().to_string()),
                Ok(meta) if meta.is_dir() => warn_skipped(&path, "it is a directory"),
                Ok(_) => warn_skipped(&path, "it is not a regular file"),
                Err(e) => warn_skipped(&path, &format!("it cannot be read ({e})")),
            }
        }
        names.sort();
        Ok(names)
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<FilePosition>,
    ) -> Result<Self::Partition> {
        let path = PathBuf::from(for_part);
        let io_err = |action, error| RiffleError::Io {
            step_id: step_id.to_string(),
            action,
            path: path.clone(),
            error,
        };
        let file = File::open(&path).map_err(|e| io_err("open", e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let position = resume.unwrap_or_default();
        // A resumed partition is past its first line: read the header again (a bad
        // one was reported by the run that read it first).
        let mut header = F::Header::default();
        if position.line > 0 {
            let mut first = Vec::new();
            reader
                .read_until(b'\n', &mut first)
                .map_err(|e| io_err("read", e))?;
            let text = String::from_utf8_lossy(&first);
            if let Ok(Some(h)) = self.format.header(text.trim_end_matches(['\n', '\r'])) {
                header = h;
            }
        }
        reader
            .seek(SeekFrom::Start(position.offset))
            .map_err(|e| io_err("seek in", e))?;
        Ok(LinePartition {
            step_id: step_id.to_string(),
            file: for_part.to_string(),
            path,
            reader,
            position,
            format: self.format.clone(),
            batch_size: self.batch_size,
            dead_letters: self.dead_letters.clone(),
            buf: Vec::with_capacity(256),
            header,
            eof: false,
        })
    }
}

/// One file being read line by line.
pub struct LinePartition<F: LineFormat> {
    step_id: String,
    /// The partition's name: its file as the source lists it.
    file: String,
    path: PathBuf,
    reader: BufReader<File>,
    position: FilePosition,
    format: Arc<F>,
    batch_size: usize,
    dead_letters: Option<DeadLetters>,
    buf: Vec<u8>,
    header: F::Header,
    eof: bool,
}

impl<F: LineFormat> LinePartition<F> {
    fn bad_line(&self, line: u64, reason: String, text: &str) -> Result<()> {
        match &self.dead_letters {
            Some(dl) => dl.write(
                &self.step_id,
                &[
                    ("file", self.path.display().to_string().into()),
                    ("line", line.into()),
                ],
                &reason,
                text.as_bytes(),
            ),
            None => Err(RiffleError::BadInput {
                step_id: self.step_id.clone(),
                path: self.path.clone(),
                line,
                reason,
            }),
        }
    }
}

impl<F: LineFormat> SourcePartition for LinePartition<F> {
    type Item = F::Item;
    type State = FilePosition;

    fn next_batch(&mut self) -> Result<Poll<F::Item>> {
        let mut batch = Vec::with_capacity(self.batch_size);
        while batch.len() < self.batch_size {
            self.buf.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|error| RiffleError::Io {
                    step_id: self.step_id.clone(),
                    action: "read",
                    path: self.path.clone(),
                    error,
                })?;
            if read == 0 {
                self.eof = true;
                break;
            }
            self.position.offset += read as u64;
            self.position.line += 1;
            let line_no = self.position.line;
            let mut bytes = &self.buf[..];
            if let Some(rest) = bytes.strip_suffix(b"\n") {
                bytes = rest;
            }
            if let Some(rest) = bytes.strip_suffix(b"\r") {
                bytes = rest;
            }
            let text = match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let lossy = String::from_utf8_lossy(bytes).into_owned();
                    self.bad_line(line_no, format!("not valid UTF-8: {e}"), &lossy)?;
                    continue;
                }
            };
            if line_no == 1 {
                match self.format.header(text) {
                    Ok(Some(header)) => {
                        self.header = header;
                        continue;
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        let text = text.to_string();
                        self.bad_line(line_no, reason, &text)?;
                        continue;
                    }
                }
            }
            let at = LineAt {
                file: &self.file,
                line: line_no,
            };
            match self.format.parse_at(&mut self.header, text, &at) {
                Ok(Some(item)) => batch.push(item),
                Ok(None) => {}
                Err(reason) => {
                    let text = text.to_string();
                    self.bad_line(line_no, reason, &text)?;
                }
            }
        }
        if batch.is_empty() && self.eof {
            Ok(Poll::Exhausted)
        } else {
            Ok(Poll::Ready(batch))
        }
    }

    fn snapshot(&self) -> Option<FilePosition> {
        Some(self.position)
    }

    fn commit(&mut self, _position: &FilePosition) -> Result<()> {
        // The letters of the lines this position passed are on disk before it counts.
        match &self.dead_letters {
            Some(dl) => dl.sync(&self.step_id),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::sources::{FixedPartitionedSource, Poll, SourcePartition};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u32,
        item: String,
        qty: u32,
    }

    #[test]
    fn a_resumed_csv_partition_reads_its_header_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.csv");
        // Columns in another order than the struct's fields: only the header maps them.
        std::fs::write(&path, "qty,item,id\n3,apple,1\n5,pear,2\n7,plum,3\n").unwrap();
        let source = CsvSource::<Order>::new(&path).batch_size(1);
        let name = path.display().to_string();
        let mut first = source.build_part("orders", &name, None).unwrap();
        let Poll::Ready(batch) = first.next_batch().unwrap() else {
            panic!("a row")
        };
        assert_eq!(
            batch[0],
            Order {
                id: 1,
                item: "apple".into(),
                qty: 3
            }
        );
        let position = first.snapshot();
        assert_eq!(position.map(|p| p.line), Some(2));

        let mut resumed = source.build_part("orders", &name, position).unwrap();
        let Poll::Ready(batch) = resumed.next_batch().unwrap() else {
            panic!("a row")
        };
        assert_eq!(
            batch[0],
            Order {
                id: 2,
                item: "pear".into(),
                qty: 5
            }
        );
    }
}

#[cfg(test)]
mod csv_tests {
    use super::*;
    use crate::sources::{FixedPartitionedSource, Poll, SourcePartition};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Note {
        id: u32,
        text: String,
    }

    fn read_all(part: &mut LinePartition<CsvRows<Note>>) -> Vec<Note> {
        let mut out = Vec::new();
        while let Poll::Ready(batch) = part.next_batch().unwrap() {
            out.extend(batch);
        }
        out
    }

    /// One parser per partition, reused line after line: quoted fields, escaped
    /// quotes, a field longer than its first buffer and CRLF endings all parse as a
    /// fresh reader would, and a resume from any snapshot reads each row once.
    #[test]
    fn a_reused_csv_parser_reads_every_row_and_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        let long = "x".repeat(5000);
        let rows: Vec<Note> = (0..40)
            .map(|i| Note {
                id: i,
                text: match i % 4 {
                    0 => format!("plain {i}"),
                    1 => format!("with, comma {i}"),
                    2 => format!("say \"hi\" {i}"),
                    _ => format!("{long}{i}"),
                },
            })
            .collect();
        let mut text = String::from("text,id\r\n");
        for r in &rows {
            let quoted = r.text.replace('"', "\"\"");
            text.push_str(&format!("\"{quoted}\",{}\r\n", r.id));
        }
        std::fs::write(&path, &text).unwrap();
        let name = path.display().to_string();
        let source = CsvSource::<Note>::new(&path).batch_size(3);
        assert_eq!(
            read_all(&mut source.build_part("n", &name, None).unwrap()),
            rows
        );

        // Stop after every batch in turn and resume from its snapshot.
        for stop_after in 1..=14 {
            let mut first = source.build_part("n", &name, None).unwrap();
            let mut seen = Vec::new();
            for _ in 0..stop_after {
                if let Poll::Ready(batch) = first.next_batch().unwrap() {
                    seen.extend(batch);
                }
            }
            let position = first.snapshot();
            let mut resumed = source.build_part("n", &name, position).unwrap();
            seen.extend(read_all(&mut resumed));
            assert_eq!(seen, rows, "resumed after {stop_after} batch(es)");
        }
    }

    #[test]
    fn a_short_csv_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        std::fs::write(&path, "id,text\n1,a\n2\n").unwrap();
        let source = CsvSource::<Note>::new(&path);
        let mut part = source
            .build_part("n", &path.display().to_string(), None)
            .unwrap();
        let err = part.next_batch().unwrap_err().to_string();
        assert!(err.contains("notes.csv:3:"), "{err}");
        assert!(err.contains("1 field(s) where the header has 2"), "{err}");
    }
}
