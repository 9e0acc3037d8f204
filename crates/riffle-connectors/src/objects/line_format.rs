//! How the lines of one object become items: the [`LineFormat`] trait, and every
//! [`Format`] as one.

use crate::format::Format;

/// Decodes the lines of one object after another.
///
/// Most formats decode each line on its own: every [`Format`] (UTF-8 text, JSON
/// lines, ...) is a line format that keeps nothing between lines. Some need what
/// an object said earlier: a CSV object's first line is its header, which names
/// the columns of every row after it ([`Csv`](super::Csv)). A line format
/// therefore starts each object ([`LineFormat::start`], handed the header line
/// when [`LineFormat::has_header`]) and decodes its lines with what it keeps for
/// that object ([`LineFormat::Object`]: the header, a parser and its buffers).
/// The object source keeps the header text in the partition's snapshot state,
/// so a run resumed in the middle of an object decodes with the same header.
///
/// ```
/// use riffle_connectors::format::Utf8;
/// use riffle_connectors::objects::LineFormat;
/// let mut object = Utf8.start(None).unwrap();
/// assert_eq!(LineFormat::decode(&Utf8, &mut object, b"hi").unwrap().as_deref(), Some("hi"));
/// assert!(!Utf8.has_header());
/// ```
pub trait LineFormat: Send + Sync + 'static {
    /// What a line decodes to.
    type Value: riffle::Data;

    /// What decoding one object keeps from line to line.
    type Object: Send + 'static;

    /// Whether each object's first line is a header (not an item) that decoding
    /// the other lines needs.
    fn has_header(&self) -> bool {
        false
    }

    /// Starts an object whose header line is `header` (`None` without one). An
    /// error is the reason the header cannot be used (the source adds where).
    fn start(&self, header: Option<&str>) -> Result<Self::Object, String>;

    /// Decodes `line` (without its end) of an object started by
    /// [`LineFormat::start`]: the value, `None` for a line that holds no item
    /// (a blank line of a CSV object), or the reason it cannot be decoded.
    fn decode(&self, object: &mut Self::Object, line: &[u8])
    -> Result<Option<Self::Value>, String>;
}

/// A value format decodes every line on its own.
impl<F: Format> LineFormat for F {
    type Value = F::Value;
    type Object = ();

    fn start(&self, _header: Option<&str>) -> Result<(), String> {
        Ok(())
    }

    fn decode(&self, _object: &mut (), line: &[u8]) -> Result<Option<F::Value>, String> {
        Format::decode(self, line).map(Some)
    }
}
