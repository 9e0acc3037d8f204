//! Avro values: [`Avro`] decodes a message value written with a schema into `T`.

use std::marker::PhantomData;
use std::path::Path;

use apache_avro::Schema;
use serde::de::DeserializeOwned;

use crate::ConnectorError;
use crate::format::Format;

/// Values encoded as Avro datums of one schema (given in code or a file), decoded
/// into `T` through serde. [`Avro::confluent_framed`] reads values written with a
/// schema registry's framing (a zero byte and a 4-byte schema id before the datum).
///
/// ```
/// use riffle_connectors::kafka::{Avro, Format};
/// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug, PartialEq)]
/// struct Order { id: i64, item: String }
/// let schema = r#"{"type": "record", "name": "Order", "fields": [
///     {"name": "id", "type": "long"}, {"name": "item", "type": "string"}]}"#;
/// let format = Avro::<Order>::new(schema)?;
/// // An Avro datum: id 7 (zig-zag varint 14), item "pen" (length 3, zig-zag 6).
/// let datum = [14u8, 6, b'p', b'e', b'n'];
/// assert_eq!(format.decode(&datum).unwrap(), Order { id: 7, item: "pen".into() });
/// assert!(format.decode(&[14u8]).unwrap_err().contains("Avro"));
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub struct Avro<T> {
    schema: Schema,
    framed: bool,
    out: PhantomData<fn() -> T>,
}

impl<T> Avro<T> {
    /// Values of the schema in `json` (Avro's JSON schema text).
    pub fn new(json: &str) -> Result<Self, ConnectorError> {
        let schema = Schema::parse_str(json).map_err(|e| {
            ConnectorError::new("kafka", "(schema)", "the Avro schema does not parse").caused_by(e)
        })?;
        Ok(Self {
            schema,
            framed: false,
            out: PhantomData,
        })
    }

    /// Values of the schema in the file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConnectorError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConnectorError::new(
                "kafka",
                "(schema)",
                format!("cannot read the Avro schema {}", path.display()),
            )
            .caused_by(e)
        })?;
        Self::new(&text).map_err(|e| ConnectorError {
            action: format!("{}: {}", path.display(), e.action),
            ..e
        })
    }

    /// The same, for values that start with a schema registry's framing.
    pub fn confluent_framed(mut self) -> Self {
        self.framed = true;
        self
    }
}

impl<T: riffle::Data + DeserializeOwned> Format for Avro<T> {
    type Value = T;

    fn decode(&self, bytes: &[u8]) -> Result<T, String> {
        let mut datum = bytes;
        if self.framed {
            match bytes {
                [0, _, _, _, _, rest @ ..] => datum = rest,
                _ => return Err(
                    "the value lacks the schema registry's framing (a zero byte and a schema id)"
                        .into(),
                ),
            }
        }
        let value = apache_avro::from_avro_datum(&self.schema, &mut datum, None)
            .map_err(|e| format!("the value is not an Avro datum of the schema: {e}"))?;
        apache_avro::from_value(&value)
            .map_err(|e| format!("the Avro value does not fit the type: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user", "type": "string"}, {"name": "n", "type": "int"}]}"#;

    #[derive(serde::Deserialize, serde::Serialize, Clone, Debug, PartialEq)]
    struct Click {
        user: String,
        n: i32,
    }

    fn datum(click: &Click) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let value = apache_avro::to_value(click)
            .unwrap()
            .resolve(&schema)
            .unwrap();
        apache_avro::to_avro_datum(&schema, value).unwrap()
    }

    #[test]
    fn framed_values_skip_the_registry_header_and_unframed_ones_are_refused() {
        let click = Click {
            user: "ada".into(),
            n: 3,
        };
        let mut framed = vec![0, 0, 0, 0, 42];
        framed.extend(datum(&click));
        let format = Avro::<Click>::new(SCHEMA).unwrap().confluent_framed();
        assert_eq!(format.decode(&framed).unwrap(), click);
        assert!(format.decode(&[1, 2]).unwrap_err().contains("framing"));
        let plain = Avro::<Click>::new(SCHEMA).unwrap();
        assert_eq!(plain.decode(&datum(&click)).unwrap(), click);
    }

    #[test]
    fn a_bad_schema_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("click.avsc");
        std::fs::write(&path, "{ not json").unwrap();
        let err = Avro::<Click>::from_file(&path).err().unwrap().to_string();
        assert!(
            err.contains("click.avsc") && err.contains("does not parse"),
            "{err}"
        );
        let missing = Avro::<Click>::from_file(dir.path().join("none.avsc"))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("none.avsc"), "{missing}");
    }
}
