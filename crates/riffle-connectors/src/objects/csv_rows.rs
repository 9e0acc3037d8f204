//! CSV objects: [`Csv`], the [`LineFormat`] that reads each object's first line
//! as its header and every other line as a row of type `T` (serde, columns
//! matched by name, so objects may order their columns differently).
//!
//! Rows are parsed line by line, the way the object source reads: each partition
//! keeps one parser and one record buffer for its object, reused for every line.
//! That has one limit: a quoted field holding a line break spans lines, and is
//! not read. Every line of such a row (where the field begins, any line inside
//! it, the line that closes it) is refused (a dead letter, or a strict error
//! naming the object and the line) with a reason that says so. A run resumed
//! between the lines of such a row reads its remaining lines as rows of their
//! own: the snapshot state keeps the header, not an open field. Blank lines
//! hold no row and are skipped.

use std::marker::PhantomData;

use ::csv::ByteRecord;
use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use serde::de::DeserializeOwned;

use super::line_format::LineFormat;

/// CSV objects with a header row, each row decoded into `T`.
///
/// ```
/// use riffle_connectors::objects::{Csv, LineFormat};
/// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug, PartialEq)]
/// struct Order { id: u32, item: String }
/// let csv = Csv::<Order>::new();
/// let mut object = csv.start(Some("item,id")).unwrap();
/// let row = csv.decode(&mut object, b"\"tea, green\",7").unwrap();
/// assert_eq!(row, Some(Order { id: 7, item: "tea, green".into() }));
/// assert!(csv.decode(&mut object, b"tea,seven").unwrap_err().contains("field 1"));
/// assert!(csv.decode(&mut object, b"tea").unwrap_err().contains("1 fields"));
/// assert_eq!(csv.decode(&mut object, b"").unwrap(), None); // a blank line
/// assert!(csv.decode(&mut object, b"\"tea").unwrap_err().contains("line break"));
/// ```
pub struct Csv<T> {
    delimiter: u8,
    _rows: PhantomData<fn() -> T>,
}

impl<T> Csv<T> {
    /// Comma-separated rows of type `T`, fields quoted with `"`.
    pub fn new() -> Self {
        Self {
            delimiter: b',',
            _rows: PhantomData,
        }
    }

    /// Fields separated by `delimiter` (`b';'`, `b'\t'`, ...) instead of `,`.
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }
}

impl<T> Default for Csv<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a partition keeps while it reads one CSV object: the header, the parser
/// and the buffers every row is parsed into.
pub struct CsvObject {
    header: ByteRecord,
    rows: Rows,
}

impl std::fmt::Debug for CsvObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvObject")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// A line-at-a-time CSV parser with buffers reused from line to line.
struct Rows {
    parser: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    record: ByteRecord,
    /// Whether the last line left a quoted field open: the lines up to the
    /// one that closes it belong to that field.
    open: bool,
}

impl Rows {
    fn new(delimiter: u8) -> Self {
        Self {
            parser: ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 1024],
            ends: vec![0; 32],
            record: ByteRecord::new(),
            open: false,
        }
    }

    /// Parses `line` into `self.record`: `false` for a blank line, an error for
    /// a line that leaves a quoted field open or is part of one (the parser
    /// goes on through those lines, keeping none of them, until the field ends).
    fn parse(&mut self, line: &[u8]) -> Result<bool, String> {
        const UNSUPPORTED: &str = "fields holding line breaks are not supported";
        let inside = self.open;
        self.record.clear();
        if line.is_empty() && !inside {
            return Ok(false);
        }
        // The line, then its end: the parser takes an empty input for the end of
        // all data, so it is never handed one.
        let mut input = line;
        let mut ended = false;
        let (mut nout, mut nend) = (0, 0);
        loop {
            if input.is_empty() {
                if ended {
                    self.open = true;
                    return Err(if inside {
                        format!(
                            "the line is inside a quoted field begun on an earlier line: {UNSUPPORTED}"
                        )
                    } else {
                        format!("a quoted field goes on past the end of the line: {UNSUPPORTED}")
                    });
                }
                input = b"\n";
                ended = true;
            }
            let (result, nin, o, e) =
                self.parser
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += o;
            nend += e;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len();
                    self.out.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record if inside => {
                    self.open = false;
                    return Err(format!(
                        "the line ends a quoted field begun on an earlier line: {UNSUPPORTED}"
                    ));
                }
                ReadRecordResult::Record => break,
                // Never handed an empty input, so never at the end of all data.
                ReadRecordResult::End => return Ok(false),
            }
        }
        let mut start = 0;
        for &end in &self.ends[..nend] {
            self.record.push_field(&self.out[start..end]);
            start = end;
        }
        Ok(true)
    }
}

impl<T: riffle::Data + DeserializeOwned> LineFormat for Csv<T> {
    type Value = T;
    type Object = CsvObject;

    fn has_header(&self) -> bool {
        true
    }

    fn start(&self, header: Option<&str>) -> Result<CsvObject, String> {
        let mut rows = Rows::new(self.delimiter);
        let header = header.ok_or("a CSV object starts with its header, and this one has none")?;
        if !rows
            .parse(header.as_bytes())
            .map_err(|why| format!("the header cannot be read: {why}"))?
        {
            return Err("the header (line 1) is blank".into());
        }
        let header = std::mem::take(&mut rows.record);
        Ok(CsvObject { header, rows })
    }

    fn decode(&self, object: &mut CsvObject, line: &[u8]) -> Result<Option<T>, String> {
        if !object.rows.parse(line)? {
            return Ok(None);
        }
        let (row, header) = (&object.rows.record, &object.header);
        if row.len() != header.len() {
            return Err(format!(
                "the row has {} fields and the header {}",
                row.len(),
                header.len()
            ));
        }
        row.deserialize(Some(header))
            .map(Some)
            .map_err(|e| match e.kind() {
                ::csv::ErrorKind::Deserialize { err, .. } => {
                    format!("the row does not fit the item type: {err}")
                }
                _ => format!("the row does not fit the item type: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Row = BTreeMap<String, String>;

    #[test]
    fn long_fields_many_columns_a_bom_and_another_delimiter() {
        let csv = Csv::<Row>::new().delimiter(b';');
        let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        let header = format!("\u{feff}{}", names.join(";"));
        let mut object = csv.start(Some(&header)).unwrap();
        let long = "y".repeat(5000);
        let mut fields: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        fields[49] = format!("\"{long};\"\"q\"\"\"");
        let row = csv
            .decode(&mut object, fields.join(";").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(row["c0"], "0");
        assert_eq!(row["c48"], "48");
        assert_eq!(row["c49"], format!("{long};\"q\""));
        // The buffers, grown once, serve the next row too.
        let row = csv
            .decode(&mut object, "a;".repeat(49).as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!((row["c0"].as_str(), row["c49"].as_str()), ("a", ""));
    }

    #[test]
    fn every_line_of_a_field_with_line_breaks_is_refused_then_rows_go_on() {
        let csv = Csv::<Row>::new();
        let mut object = csv.start(Some("a,b")).unwrap();
        let why = csv.decode(&mut object, b"1,\"open").unwrap_err();
        assert!(why.contains("past the end of the line"), "{why}");
        // Lines inside the field, a blank one included, and the one closing it.
        for line in [&b"x,y"[..], b""] {
            let why = csv.decode(&mut object, line).unwrap_err();
            assert!(why.contains("inside a quoted field"), "{why}");
        }
        let why = csv.decode(&mut object, b"end\",9").unwrap_err();
        assert!(why.contains("ends a quoted field"), "{why}");
        let row = csv.decode(&mut object, b"2,3").unwrap().unwrap();
        assert_eq!((row["a"].as_str(), row["b"].as_str()), ("2", "3"));
        assert!(csv.start(None).unwrap_err().contains("header"));
        assert!(csv.start(Some("")).unwrap_err().contains("blank"));
    }
}
