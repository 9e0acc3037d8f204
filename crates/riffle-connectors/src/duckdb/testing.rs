//! DuckDB as a [`Target`] of the conformance kit, and helpers tests use to add
//! and read rows.

use serde_json::Value;

use super::admin::{self, Column};
use super::{DuckdbDatabase, DuckdbRow, DuckdbSettings, DuckdbSink, DuckdbSource, quote_table};
use crate::conformance::Target;
pub use crate::conformance::unique;

/// A DuckDB database file in a temporary folder. A "stream" of the kit is a table
/// `(id BIGINT, value VARCHAR)`: the source reads it by `id`, the sink appends
/// rows `{value}` (`id` stays NULL); the kit's partition counts do not apply (a
/// query is one partition of the source, the sink has one partition).
#[derive(Debug)]
pub struct DuckdbTarget {
    /// Its settings.
    pub settings: DuckdbSettings,
    /// Holds the file open for the target's life.
    pub database: DuckdbDatabase,
    _folder: tempfile::TempDir,
}

impl DuckdbTarget {
    /// A new, empty database file.
    pub fn new() -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let settings = DuckdbSettings::new(folder.path().join("kit.duckdb"));
        let database = DuckdbDatabase::open(&settings).expect("a database");
        Self {
            settings,
            database,
            _folder: folder,
        }
    }

    /// Runs `sql` (statements separated by `;`).
    pub fn execute(&self, sql: &str) {
        let conn = self.database.connect().expect("a connection");
        conn.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of every row of `sql`, as text.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        let conn = self.database.connect().expect("a connection");
        let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = statement
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.map(|r| {
            r.unwrap_or_else(|e| panic!("{sql}: {e}"))
                .unwrap_or_default()
        })
        .collect()
    }
}

impl Default for DuckdbTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for DuckdbTarget {
    type Source = DuckdbSource;
    type Sink = DuckdbSink<Value>;

    fn server(&self) -> String {
        self.settings.server()
    }

    fn create(&self, hint: &str, _partitions: usize) -> String {
        let name = unique(hint);
        admin::create_table(
            &self.settings,
            &name,
            &[Column::new("id", "BIGINT"), Column::new("value", "VARCHAR")],
        )
        .expect("a new table");
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        let conn = self.database.connect().expect("a connection");
        let first: i64 = conn
            .query_row(
                &format!("SELECT coalesce(max(id), 0) FROM {}", quote_table(stream)),
                [],
                |r| r.get(0),
            )
            .expect("the greatest id");
        let mut appender = conn.appender(stream).expect("an appender");
        for (i, value) in values.iter().enumerate() {
            appender
                .append_row(duckdb::params![first + 1 + i as i64, value])
                .expect("a row appended");
        }
        appender.flush().expect("rows appended");
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.strings(&format!("SELECT value FROM {}", quote_table(stream)))
    }

    fn source(&self, stream: &str) -> DuckdbSource {
        DuckdbSource::query(
            self.settings.clone(),
            format!("SELECT id, value FROM {}", quote_table(stream)),
        )
        .ordered_by("id")
        .batch_size(500)
    }

    fn unreachable_source(&self) -> DuckdbSource {
        DuckdbSource::query(
            DuckdbSettings::new(self._folder.path().join("no-such-folder/kit.duckdb")),
            "SELECT 1 AS id",
        )
    }

    fn sink(&self, stream: &str, id: &str) -> DuckdbSink<Value> {
        DuckdbSink::append(self.settings.clone(), stream).id(id)
    }

    fn value(item: DuckdbRow<Value>) -> Option<String> {
        item.value["value"].as_str().map(str::to_string)
    }

    fn record(value: String) -> Value {
        serde_json::json!({ "value": value })
    }

    fn exactly_once(&self) -> bool {
        true
    }
}
