//! Where the database is: the file's path, and how errors name it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// Where a DuckDB database lives: one file, opened by one process at a time.
///
/// ```
/// use riffle_connectors::duckdb::DuckdbSettings;
/// let db = DuckdbSettings::new("shop.duckdb");
/// assert_eq!(db.server(), "shop.duckdb");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DuckdbSettings {
    /// The database file (made when missing; its folder must exist).
    pub path: PathBuf,
}

impl DuckdbSettings {
    /// The database in file `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file, as errors name it.
    pub fn server(&self) -> String {
        self.path.display().to_string()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error of this database: `duckdb at FILE: action`.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("duckdb", self.server(), action)
    }
}

/// `name` as a quoted SQL identifier.
///
/// ```
/// assert_eq!(riffle_connectors::duckdb::quote("my \"t\""), "\"my \"\"t\"\"\"");
/// ```
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name (`name` or `schema.name`) as quoted SQL.
///
/// ```
/// use riffle_connectors::duckdb::quote_table;
/// assert_eq!(quote_table("main.orders"), "\"main\".\"orders\"");
/// assert_eq!(quote_table("day-1"), "\"day-1\"");
/// ```
pub fn quote_table(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(table),
    }
}

/// What DuckDB said, on one line.
pub(crate) fn says(e: &duckdb::Error) -> String {
    e.to_string().replace('\n', " ")
}
