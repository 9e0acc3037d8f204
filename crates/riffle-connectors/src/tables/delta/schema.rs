//! A Delta table's schema: the columns of the log's `metaData.schemaString`, made
//! from Arrow fields and compared with an existing table's.

use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use serde_json::{Value, json};

/// One top-level column as Delta writes it: name, type (a Delta type as JSON) and
/// whether it may be null.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub name: String,
    pub kind: Value,
    pub nullable: bool,
}

/// The Delta columns of Arrow `fields`; an Arrow type Delta has no type for is an
/// error naming the column.
pub(crate) fn columns(fields: &[FieldRef]) -> Result<Vec<Column>, String> {
    fields
        .iter()
        .map(|f| {
            Ok(Column {
                name: f.name().clone(),
                kind: delta_type(f)?,
                nullable: f.is_nullable(),
            })
        })
        .collect()
}

fn delta_type(field: &Field) -> Result<Value, String> {
    let name = field.name();
    Ok(match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => json!("string"),
        DataType::Int64 => json!("long"),
        DataType::Int32 => json!("integer"),
        DataType::Int16 => json!("short"),
        DataType::Int8 => json!("byte"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Boolean => json!("boolean"),
        DataType::Binary | DataType::LargeBinary => json!("binary"),
        DataType::Date32 => json!("date"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => json!("timestamp"),
        DataType::Decimal128(p, s) => json!(format!("decimal({p},{s})")),
        DataType::List(item) | DataType::LargeList(item) => json!({
            "type": "array",
            "elementType": delta_type(item)?,
            "containsNull": item.is_nullable(),
        }),
        DataType::Struct(fields) => json!({
            "type": "struct",
            "fields": fields
                .iter()
                .map(|f| Ok(json!({
                    "name": f.name(),
                    "type": delta_type(f)?,
                    "nullable": f.is_nullable(),
                    "metadata": {},
                })))
                .collect::<Result<Vec<_>, String>>()?,
        }),
        other => {
            return Err(format!(
                "column {name:?} has Arrow type {other}, which Delta has no type for \
                 (unsigned integers: use i64/i32; times: microsecond UTC timestamps)"
            ));
        }
    })
}

/// `columns` as the log's `schemaString`.
pub(crate) fn schema_string(columns: &[Column]) -> String {
    json!({
        "type": "struct",
        "fields": columns
            .iter()
            .map(|c| json!({
                "name": c.name,
                "type": c.kind,
                "nullable": c.nullable,
                "metadata": {},
            }))
            .collect::<Vec<_>>(),
    })
    .to_string()
}

/// The columns of a `schemaString`.
pub(crate) fn parse_schema_string(text: &str) -> Result<Vec<Column>, String> {
    let schema: Value =
        serde_json::from_str(text).map_err(|e| format!("the schemaString is not JSON: {e}"))?;
    let fields = schema["fields"]
        .as_array()
        .ok_or("the schemaString has no fields")?;
    fields
        .iter()
        .map(|f| {
            Ok(Column {
                name: f["name"]
                    .as_str()
                    .ok_or("a field of the schemaString has no name")?
                    .to_string(),
                kind: f["type"].clone(),
                nullable: f["nullable"].as_bool().unwrap_or(true),
            })
        })
        .collect()
}

/// Why items with `ours` columns cannot be appended to a table with `table`'s,
/// naming the column; `None` when they can (the table may have more columns, if
/// nullable: readers see them null in the new rows).
pub(crate) fn mismatch(table: &[Column], ours: &[Column]) -> Option<String> {
    for column in ours {
        match table.iter().find(|c| c.name == column.name) {
            None => {
                return Some(format!(
                    "column {:?} of the items is not in the table's schema",
                    column.name
                ));
            }
            Some(t) if t.kind != column.kind => {
                return Some(format!(
                    "column {:?} is {} in the table but {} in the items",
                    column.name, t.kind, column.kind
                ));
            }
            Some(t) if !t.nullable && column.nullable => {
                return Some(format!(
                    "column {:?} may not be null in the table but may be in the items \
                     (an Option field)",
                    column.name
                ));
            }
            Some(_) => {}
        }
    }
    table
        .iter()
        .find(|t| !t.nullable && !ours.iter().any(|c| c.name == t.name))
        .map(|t| {
            format!(
                "column {:?} of the table may not be null and is missing from the items",
                t.name
            )
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn columns_round_trip_and_mismatches_name_the_column() {
        let fields: Vec<FieldRef> = vec![
            Arc::new(Field::new("word", DataType::Utf8, false)),
            Arc::new(Field::new("n", DataType::Int64, false)),
        ];
        let ours = columns(&fields).unwrap();
        let text = schema_string(&ours);
        assert_eq!(parse_schema_string(&text).unwrap(), ours);
        assert_eq!(mismatch(&ours, &ours), None);
        let mut other = ours.clone();
        other[1].kind = json!("string");
        let why = mismatch(&other, &ours).unwrap();
        assert!(why.contains("\"n\"") && why.contains("string"), "{why}");
        let unsigned = [Arc::new(Field::new("u", DataType::UInt64, false))];
        assert!(columns(&unsigned).unwrap_err().contains("\"u\""));
    }
}
