//! Managing tables, publications and replication slots: what tests, set-up
//! scripts and Flows (`riffle flow plan/apply/destroy`) call to make, inspect and
//! remove the tables a flow reads and writes, and what change data capture
//! ([`PostgresCdc`](super::PostgresCdc)) reads. Each call connects, does its one
//! job and disconnects; call them from outside the async runtime.

use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use super::cdc::Lsn;
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

/// The error of `e` while `doing`, naming the server.
fn failed(settings: &PostgresSettings, doing: &str, e: tokio_postgres::Error) -> ConnectorError {
    settings
        .error(format!("{doing}: {}", says(&e)))
        .caused_by(e)
}

/// Whether `e` says the object exists already (a concurrent maker won).
fn exists_already(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "42710")
}

/// Makes publication `name` for `tables` (`name` or `schema.name` each), or
/// for all tables when `tables` is empty, unless a publication of that name
/// exists (which is then left as it is). A missing table is an error naming it.
/// Make the publication before the slot that reads it: the server looks the
/// publication up as of the point of the log it decodes.
///
/// ```no_run
/// use riffle_connectors::postgres::{PostgresSettings, admin};
/// let pg = PostgresSettings::new("postgres://riffle@127.0.0.1:5432/shop");
/// admin::create_publication(&pg, "orders_pub", &["orders", "shop.refunds"])?;
/// admin::create_slot(&pg, "orders_slot")?;
/// // ... and when the flow is retired:
/// admin::drop_slot(&pg, "orders_slot")?;
/// admin::drop_publication(&pg, "orders_pub")?;
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn create_publication(
    settings: &PostgresSettings,
    name: &str,
    tables: &[&str],
) -> Result<(), ConnectorError> {
    let what = if tables.is_empty() {
        "ALL TABLES".to_string()
    } else {
        let list: Vec<String> = tables.iter().map(|t| quote_table(t)).collect();
        format!("TABLE {}", list.join(", "))
    };
    let sql = format!("CREATE PUBLICATION {} FOR {what}", quote(name));
    let doing = format!("cannot make publication {name:?} for {tables:?}");
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        if publication_found(settings, &client, name).await? {
            return Ok(());
        }
        match client.batch_execute(&sql).await {
            Err(e) if !exists_already(&e) => Err(failed(settings, &doing, e)),
            _ => Ok(()),
        }
    })
}

async fn publication_found(
    settings: &PostgresSettings,
    client: &Client,
    name: &str,
) -> Result<bool, ConnectorError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await
        .map_err(|e| {
            failed(
                settings,
                &format!("cannot look for publication {name:?}"),
                e,
            )
        })?;
    Ok(row.get(0))
}

/// Whether publication `name` exists in the settings' database.
pub fn publication_exists(settings: &PostgresSettings, name: &str) -> Result<bool, ConnectorError> {
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        publication_found(settings, &client, name).await
    })
}

/// Drops publication `name` if it exists.
pub fn drop_publication(settings: &PostgresSettings, name: &str) -> Result<(), ConnectorError> {
    let sql = format!("DROP PUBLICATION IF EXISTS {}", quote(name));
    runtime::handle().block_on(run(
        settings,
        &sql,
        &format!("cannot drop publication {name:?}"),
    ))
}

/// Makes the logical replication slot `name` for the `pgoutput` plugin in the
/// settings' database, unless a slot of that name exists. The slot keeps every
/// change committed from now on until a reader advances past it, and keeps the
/// server's log meanwhile: drop it when nothing reads it any more. Slot names
/// are lower-case letters, digits and `_`. A server whose `wal_level` is not
/// `logical` is an error saying how to set it.
pub fn create_slot(settings: &PostgresSettings, name: &str) -> Result<(), ConnectorError> {
    let doing = format!("cannot make replication slot {name:?}");
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        let row = client
            .query_one("SELECT current_setting('wal_level')", &[])
            .await
            .map_err(|e| failed(settings, &doing, e))?;
        let level: String = row.get(0);
        if level != "logical" {
            return Err(settings.error(format!(
                "{doing}: the server's wal_level is {level:?}, and logical replication \
                 needs \"logical\": set wal_level = logical in postgresql.conf (or ALTER \
                 SYSTEM SET wal_level = logical) and restart the server"
            )));
        }
        let made = client
            .query(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput') \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&name],
            )
            .await;
        match made {
            Err(e) if !exists_already(&e) => Err(failed(settings, &doing, e)),
            _ => Ok(()),
        }
    })
}

/// Drops the replication slot `name` if it exists, letting the server drop the
/// log it kept. A slot being read (by a running flow) cannot be dropped: that
/// is an error naming it.
pub fn drop_slot(settings: &PostgresSettings, name: &str) -> Result<(), ConnectorError> {
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&name],
            )
            .await
            .map_err(|e| {
                failed(
                    settings,
                    &format!("cannot drop replication slot {name:?}"),
                    e,
                )
            })?;
        Ok(())
    })
}

/// How far the replication slot `name` has been advanced (its
/// `confirmed_flush_lsn`: a reader peeking at it starts after the transactions
/// committed before it), or `None` when there is no such slot.
pub fn slot_position(
    settings: &PostgresSettings,
    name: &str,
) -> Result<Option<Lsn>, ConnectorError> {
    runtime::handle().block_on(async {
        let client = settings.connect().await?;
        let row = client
            .query_opt(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await
            .map_err(|e| {
                failed(
                    settings,
                    &format!("cannot look for replication slot {name:?}"),
                    e,
                )
            })?;
        Ok(row
            .and_then(|r| r.get::<_, Option<PgLsn>>(0))
            .map(|l| Lsn(l.into())))
    })
}
