//! Managing tables: what tests, set-up scripts and Flows (`riffle flow
//! plan/apply/destroy`) call to make, inspect and remove the tables a flow reads
//! and writes. Each call takes the process's one instance of the database file
//! (see [`DuckdbDatabase`]).

use super::database::DuckdbDatabase;
use super::rows::{create_sql, table_columns};
use super::settings::{DuckdbSettings, quote_table, says};
use super::sink::{EPOCHS_TABLE, staging_table};
use crate::ConnectorError;

pub use super::rows::Column;

fn run(settings: &DuckdbSettings, sql: &str, doing: &str) -> Result<(), ConnectorError> {
    let db = DuckdbDatabase::open(settings)?;
    let conn = db.connect()?;
    let _writes = db.writes();
    conn.execute_batch(sql).map_err(|e| {
        settings
            .error(format!("{doing}: {}", says(&e)))
            .caused_by(e)
    })
}

/// Makes `table` (`name` or `schema.name`) with `columns`, unless a table of
/// that name exists.
///
/// ```
/// use riffle_connectors::duckdb::{DuckdbSettings, admin::{self, Column}};
/// let dir = tempfile::tempdir().unwrap();
/// let db = DuckdbSettings::new(dir.path().join("shop.duckdb"));
/// admin::create_table(&db, "orders", &[Column::new("id", "BIGINT"), Column::new("item", "VARCHAR")])?;
/// assert_eq!(admin::columns(&db, "orders")?.unwrap().len(), 2);
/// assert_eq!(admin::count_rows(&db, "orders")?, 0);
/// admin::drop_table(&db, "orders")?;
/// assert!(admin::columns(&db, "orders")?.is_none());
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn create_table(
    settings: &DuckdbSettings,
    table: &str,
    columns: &[Column],
) -> Result<(), ConnectorError> {
    run(
        settings,
        &create_sql(table, columns),
        &format!("cannot make table {table:?}"),
    )
}

/// Removes `table`, the staging table a sink made for it and the sinks'
/// bookkeeping of it; nothing when there is no such table.
pub fn drop_table(settings: &DuckdbSettings, table: &str) -> Result<(), ConnectorError> {
    run(
        settings,
        &format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
            quote_table(table),
            quote_table(&staging_table(table))
        ),
        &format!("cannot remove table {table:?}"),
    )?;
    run(
        settings,
        &format!(
            "CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (sink VARCHAR, part VARCHAR, \
             run VARCHAR, epoch UBIGINT, PRIMARY KEY (sink, part)); \
             DELETE FROM {EPOCHS_TABLE} WHERE starts_with(part, '{}#')",
            table.replace('\'', "''")
        ),
        &format!("cannot remove the bookkeeping of table {table:?}"),
    )
}

/// The columns of `table`, `None` when it does not exist.
pub fn columns(
    settings: &DuckdbSettings,
    table: &str,
) -> Result<Option<Vec<Column>>, ConnectorError> {
    let db = DuckdbDatabase::open(settings)?;
    let conn = db.connect()?;
    table_columns(settings, &conn, table)
}

/// How many rows `table` has.
pub fn count_rows(settings: &DuckdbSettings, table: &str) -> Result<u64, ConnectorError> {
    let db = DuckdbDatabase::open(settings)?;
    let conn = db.connect()?;
    conn.query_row(
        &format!("SELECT count(*) FROM {}", quote_table(table)),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(|e| {
        settings
            .error(format!(
                "cannot count the rows of table {table:?}: {}",
                says(&e)
            ))
            .caused_by(e)
    })
}
