//! Rows and items: a table's columns, items (serde) as rows in the table's column
//! order, a table made from the items' fields, and result rows as JSON objects.

use duckdb::Connection;
use duckdb::types::{Value as Duck, ValueRef};
use serde::Serialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::settings::{DuckdbSettings, quote, says};
use crate::ConnectorError;

/// A column of a table or of a query's result: its name and DuckDB type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its type as DuckDB writes it (`BIGINT`, `VARCHAR`, `DECIMAL(18,3)`, ...).
    pub sql_type: String,
}

impl Column {
    /// A column `name` of type `sql_type`.
    pub fn new(name: impl Into<String>, sql_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sql_type: sql_type.into(),
        }
    }
}

/// The columns of `table` (`name` or `schema.name`), `None` when it does not exist.
pub(crate) fn table_columns(
    settings: &DuckdbSettings,
    conn: &Connection,
    table: &str,
) -> Result<Option<Vec<Column>>, ConnectorError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let sql = "SELECT column_name, data_type FROM information_schema.columns \
               WHERE table_name = $1 AND (table_schema = $2 OR ($2 IS NULL AND table_schema = current_schema())) \
               AND table_catalog = current_database() ORDER BY ordinal_position";
    let read = || -> duckdb::Result<Vec<Column>> {
        let mut statement = conn.prepare(sql)?;
        let rows = statement.query_map(duckdb::params![name, schema], |r| {
            Ok(Column::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.collect()
    };
    let columns = read().map_err(|e| {
        settings
            .error(format!(
                "cannot read the columns of table {table:?}: {}",
                says(&e)
            ))
            .caused_by(e)
    })?;
    Ok((!columns.is_empty()).then_some(columns))
}

/// The columns of the result of `query`.
pub(crate) fn query_columns(
    settings: &DuckdbSettings,
    conn: &Connection,
    query: &str,
) -> Result<Vec<Column>, ConnectorError> {
    let sql = format!("DESCRIBE SELECT * FROM ({query}) AS r");
    let read = || -> duckdb::Result<Vec<Column>> {
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map([], |r| {
            Ok(Column::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.collect()
    };
    read().map_err(|e| {
        settings
            .error(format!("cannot run query {query:?}: {}", says(&e)))
            .caused_by(e)
    })
}

/// An item as the JSON object of its fields.
pub(crate) fn fields_of<T: Serialize>(item: &T) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(item) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "an item is not a struct or map of columns but {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                _ => "a list",
            }
        )),
        Err(e) => Err(format!("an item cannot be serialized: {e}")),
    }
}

/// The field names of `item` in the order it writes them (a struct's order).
fn field_order<T: Serialize>(item: &T) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::to_string(item)
        .ok()
        .and_then(|text| serde_json::from_str::<Keys>(&text).ok())
        .map(|k| k.0)
        .unwrap_or_default()
}

/// The columns of a table made for `items`: a column per field, in the first
/// item's field order, typed by the first non-null value of each field
/// (`BOOLEAN`, `BIGINT`, `UBIGINT`, `DOUBLE`, else `VARCHAR`).
pub(crate) fn columns_for<T: Serialize>(items: &[T]) -> Result<Vec<Column>, String> {
    let Some(first) = items.first() else {
        return Ok(Vec::new());
    };
    let rows: Vec<Map<String, Value>> = items.iter().map(fields_of).collect::<Result<_, _>>()?;
    let mut names = field_order(first);
    for row in &rows {
        for key in row.keys() {
            if !names.contains(key) {
                names.push(key.clone());
            }
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let sample = rows
                .iter()
                .filter_map(|r| r.get(&name))
                .find(|v| !v.is_null());
            let sql_type = match sample {
                Some(Value::Bool(_)) => "BOOLEAN",
                Some(Value::Number(n)) if n.is_i64() => "BIGINT",
                Some(Value::Number(n)) if n.is_u64() => "UBIGINT",
                Some(Value::Number(_)) => "DOUBLE",
                _ => "VARCHAR",
            };
            Column::new(name, sql_type)
        })
        .collect())
}

/// `CREATE TABLE IF NOT EXISTS table (columns)`.
pub(crate) fn create_sql(table: &str, columns: &[Column]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.sql_type))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        super::quote_table(table),
        columns.join(", ")
    )
}

/// The kinds of column type the conversion tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Number,
    Text,
    /// Anything else: given as text, which DuckDB casts (timestamps, dates, UUIDs,
    /// lists from `[1, 2]`, ...).
    Other,
}

fn kind(sql_type: &str) -> Kind {
    let t = sql_type.to_ascii_uppercase();
    match t.as_str() {
        "BOOLEAN" => Kind::Boolean,
        "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT" | "HUGEINT" | "UTINYINT" | "USMALLINT"
        | "UINTEGER" | "UBIGINT" | "UHUGEINT" | "FLOAT" | "DOUBLE" => Kind::Number,
        "VARCHAR" => Kind::Text,
        _ if t.starts_with("DECIMAL") => Kind::Number,
        _ => Kind::Other,
    }
}

/// Turns items into rows of a table's columns, naming the table in errors.
pub(crate) struct RowMaker {
    table: String,
    columns: Vec<Column>,
    kinds: Vec<Kind>,
}

impl RowMaker {
    pub(crate) fn new(table: &str, columns: Vec<Column>) -> Self {
        let kinds = columns.iter().map(|c| kind(&c.sql_type)).collect();
        Self {
            table: table.to_string(),
            columns,
            kinds,
        }
    }

    pub(crate) fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The row for `item`: its fields in column order, NULL for a column it does
    /// not have. A field with no column, or a value the column cannot hold, is an
    /// error naming the table and the column.
    pub(crate) fn row<T: Serialize>(&self, item: &T) -> Result<Vec<Duck>, String> {
        let mut fields = fields_of(item).map_err(|why| format!("table {:?}: {why}", self.table))?;
        let mut row = Vec::with_capacity(self.columns.len());
        for (column, kind) in self.columns.iter().zip(&self.kinds) {
            let value = fields.remove(&column.name).unwrap_or(Value::Null);
            row.push(self.value(column, *kind, value)?);
        }
        if let Some(field) = fields.keys().next() {
            return Err(format!(
                "table {:?} has no column {field:?} for the items' field {field:?} (its columns: {})",
                self.table,
                self.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(row)
    }

    fn value(&self, column: &Column, kind: Kind, value: Value) -> Result<Duck, String> {
        let wrong = |what: &str| {
            format!(
                "column {:?} of table {:?} is {} but an item's field holds {what}",
                column.name, self.table, column.sql_type
            )
        };
        Ok(match (kind, value) {
            (_, Value::Null) => Duck::Null,
            (Kind::Boolean, Value::Bool(b)) => Duck::Boolean(b),
            (Kind::Boolean, other) => return Err(wrong(&other.to_string())),
            (Kind::Number, Value::Number(n)) => number(&n),
            (Kind::Number, other) => return Err(wrong(&other.to_string())),
            (Kind::Text | Kind::Other, Value::String(s)) => Duck::Text(s),
            (Kind::Text, Value::Number(n)) => Duck::Text(n.to_string()),
            (Kind::Text, Value::Bool(b)) => Duck::Text(b.to_string()),
            (Kind::Other, Value::Number(n)) => number(&n),
            (Kind::Other, Value::Bool(b)) => Duck::Boolean(b),
            (_, other) => Duck::Text(other.to_string()),
        })
    }
}

fn number(n: &Number) -> Duck {
    if let Some(i) = n.as_i64() {
        Duck::BigInt(i)
    } else if let Some(u) = n.as_u64() {
        Duck::UBigInt(u)
    } else {
        Duck::Double(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// The SQL reading column `column` of a result so that [`to_json`] understands it:
/// booleans, integers, floats and text as they are, decimals as doubles,
/// everything else (timestamps, lists, structs, ...) as DuckDB's text of it.
pub(crate) fn readable(column: &Column) -> String {
    let name = quote(&column.name);
    let t = column.sql_type.to_ascii_uppercase();
    match kind(&t) {
        Kind::Boolean | Kind::Text => name,
        Kind::Number if t.starts_with("DECIMAL") => format!("CAST({name} AS DOUBLE) AS {name}"),
        Kind::Number => name,
        Kind::Other => format!("CAST({name} AS VARCHAR) AS {name}"),
    }
}

/// A result value as JSON.
pub(crate) fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Boolean(b) => Value::Bool(b),
        ValueRef::TinyInt(i) => i.into(),
        ValueRef::SmallInt(i) => i.into(),
        ValueRef::Int(i) => i.into(),
        ValueRef::BigInt(i) => i.into(),
        ValueRef::UTinyInt(i) => i.into(),
        ValueRef::USmallInt(i) => i.into(),
        ValueRef::UInt(i) => i.into(),
        ValueRef::UBigInt(i) => i.into(),
        ValueRef::HugeInt(i) => i64::try_from(i)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(i.to_string())),
        ValueRef::UHugeInt(i) => u64::try_from(i)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(i.to_string())),
        ValueRef::Float(f) => Number::from_f64(f64::from(f))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Double(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        other => Value::String(format!("{other:?}")),
    }
}
