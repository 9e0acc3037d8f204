//! Previews of small artifacts: text, JSON, numbers and tables, decoded from postcard
//! using nothing but the Rust type name recorded with the artifact.
//!
//! Artifacts are postcard bytes (see `riffle_pipeline::codec`), and postcard does not
//! describe itself: the bytes of a `Vec<(String, f64)>` carry no field names or
//! tags. The metadata store does record `std::any::type_name` of the value, though, and
//! for the standard types that name is enough to walk the bytes: strings, integers,
//! floats, booleans, `Option`, tuples, arrays, sequences (`Vec`, sets, `VecDeque`) and
//! maps (`HashMap`, `BTreeMap`), nested in any way. A user's struct or enum names its
//! fields nowhere in the bytes, so its artifacts get no preview, and say why.
//!
//! The decoder never trusts the bytes: lengths are checked against what is left, the
//! type name's nesting is bounded, and decoding stops after a fixed budget of values.
//!
//! ```
//! use riffle_ui::preview::{preview, Preview};
//!
//! let bytes = riffle_pipeline::codec::encode(&vec![("north".to_string(), 12.5_f64)], "x")?.bytes;
//! let shown = preview(&bytes, "alloc::vec::Vec<(alloc::string::String, f64)>");
//! match shown {
//!     Preview::Table { rows, .. } => assert_eq!(rows[0][0], "north"),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Artifacts larger than this are not read for a preview.
pub const MAX_PREVIEW_BYTES: u64 = 1024 * 1024;
/// Rows shown of a table.
pub const MAX_ROWS: usize = 200;
/// Characters shown of a text.
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Values decoded at most (guards against a tiny artifact claiming a huge sequence).
const BUDGET: usize = 200_000;
/// How deeply type names may nest.
const MAX_DEPTH: usize = 32;

/// What the page shows for an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Preview {
    /// A string (`truncated` when longer than [`MAX_TEXT_CHARS`]).
    Text { text: String, truncated: bool },
    /// A string that is a JSON document, or a decoded value that is not a table.
    Json { value: Value },
    /// A sequence of rows (tuples, scalars, or a map's entries).
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
        /// How many rows the artifact has (only the first [`MAX_ROWS`] are sent).
        total_rows: u64,
    },
    /// No preview, and why.
    Unavailable { reason: String },
}

/// The preview of an artifact's bytes, given its recorded type name.
pub fn preview(bytes: &[u8], type_name: &str) -> Preview {
    let ty = match parse_type(type_name) {
        Ok(ty) => ty,
        Err(reason) => return Preview::Unavailable { reason },
    };
    // A top-level sequence is decoded row by row, so only the rows shown are kept.
    let mut reader = Reader {
        bytes,
        at: 0,
        budget: BUDGET,
    };
    let result = match &ty {
        Type::Seq(item) => table_of_seq(&mut reader, item),
        Type::Map(k, v) => table_of_map(&mut reader, k, v),
        Type::Str => reader.string().map(text_preview),
        other => reader.value(other).map(|value| Preview::Json { value }),
    };
    result.unwrap_or_else(|reason| Preview::Unavailable {
        reason: format!("the bytes do not decode as {type_name}: {reason}"),
    })
}

fn text_preview(text: String) -> Preview {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(value) = serde_json::from_str::<Value>(&text)
    {
        return Preview::Json { value };
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => Preview::Text {
            text: text[..cut].to_string(),
            truncated: true,
        },
        None => Preview::Text {
            text,
            truncated: false,
        },
    }
}

fn table_of_seq(reader: &mut Reader<'_>, item: &Type) -> Result<Preview, String> {
    let len = reader.length()?;
    let columns = match item {
        Type::Tuple(parts) => (0..parts.len()).map(|i| i.to_string()).collect(),
        _ => vec!["value".to_string()],
    };
    let mut rows = Vec::new();
    for _ in 0..len.min(MAX_ROWS as u64) {
        let row = match (item, reader.value(item)?) {
            (Type::Tuple(_), Value::Array(cells)) => cells,
            (_, cell) => vec![cell],
        };
        rows.push(row);
    }
    Ok(Preview::Table {
        columns,
        rows,
        total_rows: len,
    })
}

fn table_of_map(reader: &mut Reader<'_>, key: &Type, value: &Type) -> Result<Preview, String> {
    let len = reader.length()?;
    let mut rows = Vec::new();
    for _ in 0..len.min(MAX_ROWS as u64) {
        rows.push(vec![reader.value(key)?, reader.value(value)?]);
    }
    Ok(Preview::Table {
        columns: vec!["key".into(), "value".into()],
        rows,
        total_rows: len,
    })
}

/// The shapes the decoder knows.
#[derive(Debug, Clone, PartialEq)]
enum Type {
    Unit,
    Bool,
    /// A one-byte integer (`u8`, `i8`), stored as is.
    Byte {
        signed: bool,
    },
    /// A varint integer; signed ones are zigzag-encoded.
    Varint {
        signed: bool,
    },
    F32,
    F64,
    Str,
    Option(Box<Type>),
    Seq(Box<Type>),
    Array(Box<Type>, usize),
    Tuple(Vec<Type>),
    Map(Box<Type>, Box<Type>),
}

/// Parses a `std::any::type_name` into a [`Type`].
fn parse_type(name: &str) -> Result<Type, String> {
    let mut parser = TypeParser {
        text: name,
        at: 0,
        depth: 0,
    };
    let ty = parser.ty()?;
    parser.skip_spaces();
    if parser.at != name.len() {
        return Err(format!("cannot read the type name {name:?}"));
    }
    Ok(ty)
}

struct TypeParser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl TypeParser<'_> {
    fn skip_spaces(&mut self) {
        while self.text[self.at..].starts_with(' ') {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.text[self.at..].starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!(
                "cannot read the type name {:?}: expected {token:?} at {}",
                self.text, self.at
            ))
        }
    }

    fn ty(&mut self) -> Result<Type, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the type name nests too deeply".into());
        }
        let ty = self.ty_inner();
        self.depth -= 1;
        ty
    }

    fn ty_inner(&mut self) -> Result<Type, String> {
        if self.eat("&") {
            self.eat("mut ");
            if self.eat("[") {
                let item = self.ty()?;
                self.expect("]")?;
                return Ok(Type::Seq(Box::new(item)));
            }
            return self.ty();
        }
        if self.eat("(") {
            let mut parts = Vec::new();
            if self.eat(")") {
                return Ok(Type::Unit);
            }
            loop {
                parts.push(self.ty()?);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
                if self.eat(")") {
                    break;
                }
            }
            return Ok(Type::Tuple(parts));
        }
        if self.eat("[") {
            let item = self.ty()?;
            if self.eat(";") {
                self.skip_spaces();
                let start = self.at;
                while self.text[self.at..].starts_with(|c: char| c.is_ascii_digit()) {
                    self.at += 1;
                }
                let n: usize = self.text[start..self.at]
                    .parse()
                    .map_err(|_| "cannot read an array length".to_string())?;
                self.expect("]")?;
                return Ok(Type::Array(Box::new(item), n));
            }
            self.expect("]")?;
            return Ok(Type::Seq(Box::new(item)));
        }
        // A path: segments of identifiers separated by `::`, maybe with generics.
        self.skip_spaces();
        let start = self.at;
        while let Some(c) = self.text[self.at..].chars().next() {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                self.at += c.len_utf8();
            } else {
                break;
            }
        }
        let path = &self.text[start..self.at];
        if path.is_empty() {
            return Err(format!("cannot read the type name {:?}", self.text));
        }
        let mut args = Vec::new();
        if self.eat("<") {
            loop {
                args.push(self.ty()?);
                if self.eat(">") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let last = path.rsplit("::").next().unwrap_or(path);
        let arg = |i: usize| args.get(i).cloned();
        let one = |ty: Option<Type>| {
            ty.ok_or_else(|| format!("{path} needs a type argument"))
                .map(Box::new)
        };
        Ok(match last {
            "bool" => Type::Bool,
            "u8" => Type::Byte { signed: false },
            "i8" => Type::Byte { signed: true },
            "u16" | "u32" | "u64" | "u128" | "usize" => Type::Varint { signed: false },
            "i16" | "i32" | "i64" | "i128" | "isize" => Type::Varint { signed: true },
            "f32" => Type::F32,
            "f64" => Type::F64,
            "str" | "String" | "char" | "PathBuf" => Type::Str,
            "Option" => Type::Option(one(arg(0))?),
            "Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "BinaryHeap" | "LinkedList" => {
                Type::Seq(one(arg(0))?)
            }
            "HashMap" | "BTreeMap" | "IndexMap" => Type::Map(one(arg(0))?, one(arg(1))?),
            "Box" | "Arc" | "Rc" | "Cow" => *one(arg(0))?,
            _ => {
                return Err(format!(
                    "{path} is a type of the project's own, and its bytes do not name its \
                     fields: previews cover text, numbers, tuples, sequences and maps"
                ));
            }
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    budget: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("the bytes end early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u128, String> {
        let mut value: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is too long".into())
    }

    fn length(&mut self) -> Result<u64, String> {
        let len = self.varint()?;
        u64::try_from(len).map_err(|_| "a length is too large".to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        let len = usize::try_from(self.length()?).map_err(|_| "a string is too long")?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn value(&mut self, ty: &Type) -> Result<Value, String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("the artifact holds too many values to preview")?;
        Ok(match ty {
            Type::Unit => Value::Null,
            Type::Bool => match self.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err("a boolean is neither 0 nor 1".into()),
            },
            Type::Byte { signed: false } => Value::from(self.take(1)?[0]),
            Type::Byte { signed: true } => Value::from(self.take(1)?[0] as i8),
            Type::Varint { signed: false } => {
                let raw = self.varint()?;
                match u64::try_from(raw) {
                    Ok(v) => Value::from(v),
                    Err(_) => Value::String(raw.to_string()),
                }
            }
            Type::Varint { signed: true } => {
                let raw = self.varint()?;
                let value = (raw >> 1) as i128 ^ -((raw & 1) as i128);
                match i64::try_from(value) {
                    Ok(v) => Value::from(v),
                    Err(_) => Value::String(value.to_string()),
                }
            }
            Type::F32 => {
                let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| "short float")?;
                float(f64::from(f32::from_le_bytes(b)))
            }
            Type::F64 => {
                let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "short float")?;
                float(f64::from_le_bytes(b))
            }
            Type::Str => Value::String(self.string()?),
            Type::Option(inner) => match self.take(1)?[0] {
                0 => Value::Null,
                1 => self.value(inner)?,
                _ => return Err("an option tag is neither 0 nor 1".into()),
            },
            Type::Seq(item) => {
                let len = self.length()?;
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(self.value(item)?);
                }
                Value::Array(items)
            }
            Type::Array(item, n) => {
                let mut items = Vec::new();
                for _ in 0..*n {
                    items.push(self.value(item)?);
                }
                Value::Array(items)
            }
            Type::Tuple(parts) => {
                let mut items = Vec::new();
                for part in parts {
                    items.push(self.value(part)?);
                }
                Value::Array(items)
            }
            Type::Map(k, v) => {
                let len = self.length()?;
                let mut entries = Vec::new();
                for _ in 0..len {
                    entries.push(Value::Array(vec![self.value(k)?, self.value(v)?]));
                }
                Value::Array(entries)
            }
        })
    }
}

/// A float as JSON; NaN and infinities (which JSON lacks) as strings.
fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn shown<T: serde::Serialize>(value: &T) -> Preview {
        let encoded = riffle_pipeline::codec::encode(value, "test").unwrap();
        preview(&encoded.bytes, encoded.type_name)
    }

    #[test]
    fn strings_are_text_and_json_strings_are_json() {
        assert_eq!(
            shown(&"hello".to_string()),
            Preview::Text {
                text: "hello".into(),
                truncated: false
            }
        );
        assert_eq!(
            shown(&r#"{"a": [1, 2]}"#.to_string()),
            Preview::Json {
                value: serde_json::json!({"a": [1, 2]})
            }
        );
    }

    #[test]
    fn numbers_options_and_tuples_decode() {
        assert_eq!(
            shown(&(-5_i64, 300_u32, 2.5_f32, Some(true), None::<u8>)),
            Preview::Json {
                value: serde_json::json!([-5, 300, 2.5, true, null])
            }
        );
        assert_eq!(
            shown(&f64::NAN),
            Preview::Json {
                value: serde_json::json!("NaN")
            }
        );
        assert_eq!(
            shown(&u64::MAX),
            Preview::Json {
                value: serde_json::json!(u64::MAX)
            }
        );
    }

    #[test]
    fn sequences_and_maps_are_tables() {
        let Preview::Table {
            columns,
            rows,
            total_rows,
        } = shown(
            &(0..1000_u32)
                .map(|i| (i, format!("n{i}")))
                .collect::<Vec<_>>(),
        )
        else {
            panic!("not a table")
        };
        assert_eq!(columns, vec!["0", "1"]);
        assert_eq!(total_rows, 1000);
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows[7], vec![serde_json::json!(7), serde_json::json!("n7")]);

        let map = BTreeMap::from([("a".to_string(), vec![1.5_f64]), ("b".to_string(), vec![])]);
        let Preview::Table { columns, rows, .. } = shown(&map) else {
            panic!("not a table")
        };
        assert_eq!(columns, vec!["key", "value"]);
        assert_eq!(
            rows[0],
            vec![serde_json::json!("a"), serde_json::json!([1.5])]
        );
    }

    #[test]
    fn own_types_and_bad_bytes_say_why() {
        #[derive(serde::Serialize)]
        struct Sale {
            region: String,
        }
        let Preview::Unavailable { reason } = shown(&Sale { region: "x".into() }) else {
            panic!("previewed a struct")
        };
        assert!(reason.contains("Sale"), "{reason}");

        // A sequence claiming a billion units in two bytes stops at the budget.
        let Preview::Unavailable { reason } =
            preview(&[0xff, 0xff, 0xff, 0x03], "(alloc::vec::Vec<()>,)")
        else {
            panic!("decoded nonsense")
        };
        assert!(reason.contains("too many values"), "{reason}");

        let Preview::Unavailable { reason } = preview(&[5, b'a'], "alloc::string::String") else {
            panic!("decoded a short string")
        };
        assert!(reason.contains("end early"), "{reason}");
    }
}
