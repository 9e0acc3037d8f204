//! Managing tables: what tests, set-up scripts and Flows (`riffle flow
//! plan/apply/destroy`) call to make, inspect and remove the tables a flow reads
//! and writes. Each call connects, does its one job and disconnects; call them
//! from outside the async runtime.

use super::settings::{PostgresSettings, quote, quote_table, says};
use crate::{ConnectorError, runtime};

/// A column of a table to make: its name and its SQL type (`bigint`,
/// `text`, `timestamptz DEFAULT now()`, `bigserial`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its type, and any default or constraint, as SQL.
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

async fn run(settings: &PostgresSettings, sql: &str, doing: &str) -> Result<(), ConnectorError> {
    let client = settings.connect().await?;
    client.batch_execute(sql).await.map_err(|e| {
        settings
            .error(format!("{doing}: {}", says(&e)))
            .caused_by(e)
    })
}

/// Makes `table` (`name` or `schema.name`) with `columns` and the primary key
/// `key` (none when empty), unless a table of that name exists.
///
/// ```no_run
/// use riffle_connectors::postgres::{PostgresSettings, admin::{self, Column}};
/// let pg = PostgresSettings::new("postgres://riffle@127.0.0.1:5432/shop");
/// admin::create_table(&pg, "orders", &[
///     Column::new("id", "bigserial"),
///     Column::new("item", "text NOT NULL"),
/// ], &["id"])?;
/// admin::drop_table(&pg, "orders")?;
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn create_table(
    settings: &PostgresSettings,
    table: &str,
    columns: &[Column],
    key: &[&str],
) -> Result<(), ConnectorError> {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.sql_type))
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|k| quote(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_table(table),
        parts.join(", ")
    );
    runtime::handle().block_on(run(settings, &sql, &format!("cannot make table {table:?}")))
}

/// Drops `table` if it exists.
pub fn drop_table(settings: &PostgresSettings, table: &str) -> Result<(), ConnectorError> {
    let sql = format!("DROP TABLE IF EXISTS {}", quote_table(table));
    runtime::handle().block_on(run(settings, &sql, &format!("cannot drop table {table:?}")))
}

/// Whether `table` exists.
pub fn table_exists(settings: &PostgresSettings, table: &str) -> Result<bool, ConnectorError> {
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        let row = client
            .query_one(
                "SELECT to_regclass($1::text) IS NOT NULL",
                &[&quote_table(table)],
            )
            .await
            .map_err(|e| {
                settings
                    .error(format!("cannot look for table {table:?}: {}", says(&e)))
                    .caused_by(e)
            })?;
        Ok(row.get(0))
    })
}

/// How many rows `table` holds.
pub fn count_rows(settings: &PostgresSettings, table: &str) -> Result<u64, ConnectorError> {
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", quote_table(table)), &[])
            .await
            .map_err(|e| {
                settings
                    .error(format!(
                        "cannot count the rows of table {table:?}: {}",
                        says(&e)
                    ))
                    .caused_by(e)
            })?;
        Ok(row.get::<_, i64>(0) as u64)
    })
}
