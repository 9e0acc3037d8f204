//! The `postgres-cdc` example: every change committed to a PostgreSQL table,
//! read through logical replication, appended as a row to another table;
//! at-least-once under `--recovery`.

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::postgres::admin::{self, Column};
use riffle_connectors::postgres::{
    Change, ChangeOp, Lsn, PostgresCdc, PostgresSettings, PostgresSink, Row,
};

/// One change as a row of the output table (see [`postgres_cdc`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChangeRow {
    /// Just past the commit of the change's transaction.
    pub commit_lsn: Lsn,
    /// Where the change is in the log.
    pub lsn: Lsn,
    /// The transaction's id.
    pub xid: i64,
    /// `insert`, `update`, `delete` or `truncate`.
    pub op: ChangeOp,
    /// The table changed, `schema.name`.
    pub relation: String,
    /// The row before, where the server sends it.
    pub old: Option<Row>,
    /// The row after.
    pub new: Option<Row>,
}

impl From<Change> for ChangeRow {
    fn from(change: Change) -> Self {
        Self {
            commit_lsn: change.commit_lsn,
            lsn: change.lsn,
            xid: i64::from(change.xid),
            op: change.op,
            relation: change.table,
            old: change.old,
            new: change.new,
        }
    }
}

/// `name` made fit for a replication slot: lower-case letters, digits and `_`.
fn slot_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The `postgres-cdc` flow: reads every insert, update, delete and truncate
/// committed to `-P table=` on `-P url=` (or `RIFFLE_POSTGRES_URL`; the
/// password from `RIFFLE_POSTGRES_PASSWORD`) through the replication slot `-P
/// slot=` (default `{table}_slot`, letters made lower-case and others `_`) and
/// publication `-P publication=` (default `{table}_pub`), and appends each
/// change (`COPY`) to the table `-P out=` (default `{table}_changes`) as
/// `(commit_lsn pg_lsn, lsn pg_lsn, xid bigint, op text, relation text, old
/// jsonb, new jsonb)`. With `-P create=true` (the default) the publication, the
/// slot and the output table are made when missing; the slot sees what is
/// committed after it was made. `-P tail=false` reads what was committed when
/// the run started, then ends; `-P poll=200ms` is how often a following run
/// looks for new changes. Under `--recovery` a killed run loses nothing: the
/// slot is advanced only once the store committed; the changes after its last
/// commit are appended again (the same `commit_lsn`, `lsn` and rows), so
/// consumers drop a repeated `(commit_lsn, lsn, op, old, new)`.
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("url".into(), "postgres://riffle@127.0.0.1:1/x".into()), ("table".into(), "Orders".into()), ("create".into(), "false".into())].into());
/// let flow = riffle_examples::postgres_cdc::postgres_cdc(&ctx).unwrap();
/// assert_eq!(flow.name(), "postgres-cdc");
/// ```
pub fn postgres_cdc(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let url = match ctx.param("url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_POSTGRES_URL").map_err(|_| {
            anyhow::anyhow!(
                "postgres-cdc needs -P url=postgres://USER@HOST:PORT/DB (or RIFFLE_POSTGRES_URL)"
            )
        })?,
    };
    let table = ctx
        .param("table")
        .ok_or_else(|| {
            anyhow::anyhow!("postgres-cdc needs -P table=NAME (the table whose changes it reads)")
        })?
        .to_string();
    let slot = ctx.param_or("slot", &slot_name(&format!("{table}_slot")));
    let publication = ctx.param_or("publication", &format!("{table}_pub"));
    let out = ctx.param_or("out", &format!("{table}_changes"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let create: bool = ctx.parsed_param_or("create", true)?;
    let poll = riffle::duration::parse(&ctx.param_or("poll", "200ms"))
        .map_err(|e| anyhow::anyhow!("-P poll: {e}"))?;
    let settings = PostgresSettings::new(url);
    if create {
        admin::create_publication(&settings, &publication, &[&table])?;
        admin::create_slot(&settings, &slot)?;
        admin::create_table(
            &settings,
            &out,
            &[
                Column::new("commit_lsn", "pg_lsn NOT NULL"),
                Column::new("lsn", "pg_lsn NOT NULL"),
                Column::new("xid", "bigint NOT NULL"),
                Column::new("op", "text NOT NULL"),
                Column::new("relation", "text NOT NULL"),
                Column::new("old", "jsonb"),
                Column::new("new", "jsonb"),
            ],
            &[],
        )?;
    }
    let changes = ctx.counter("changes");
    let flow = Dataflow::new("postgres-cdc");
    flow.input(
        "changes",
        PostgresCdc::new(settings.clone(), slot, publication)
            .tail(tail)
            .poll_every(poll),
    )?
    .map("row", move |change: Change| {
        changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ChangeRow::from(change)
    })?
    .output("out", PostgresSink::append(settings, out))?;
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_keep_to_what_postgres_allows() {
        assert_eq!(slot_name("Shop.Orders-2_slot"), "shop_orders_2_slot");
    }

    #[test]
    fn a_change_row_serializes_as_the_output_columns() {
        let change = Change {
            table: "public.orders".into(),
            op: ChangeOp::Delete,
            old: Some([("id".to_string(), Some("7".to_string()))].into()),
            new: None,
            xid: 750,
            lsn: Lsn(0x1_0000),
            commit_lsn: Lsn(0x1_0100),
            commit_time_us: 0,
        };
        let json = serde_json::to_value(ChangeRow::from(change)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "commit_lsn": "0/10100", "lsn": "0/10000", "xid": 750, "op": "delete",
                "relation": "public.orders", "old": {"id": "7"}, "new": null,
            })
        );
    }

    #[test]
    fn a_missing_table_is_named() {
        let ctx =
            DataflowContext::new([("url".into(), "postgres://riffle@127.0.0.1:1/x".into())].into());
        let err = postgres_cdc(&ctx).unwrap_err().to_string();
        assert!(err.contains("-P table="), "{err}");
    }
}
