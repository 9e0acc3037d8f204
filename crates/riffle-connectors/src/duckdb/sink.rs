//! The DuckDB sink: items appended to a table, exactly-once under a recovery store
//! through a staging table and one transaction per committed snapshot epoch.

use std::marker::PhantomData;

use duckdb::Connection;
use duckdb::types::Value as Duck;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::{Deserialize, Serialize};

use super::database::DuckdbDatabase;
use super::rows::{Column, RowMaker, columns_for, create_sql, table_columns};
use super::settings::{DuckdbSettings, quote, quote_table, says};
use crate::ConnectorError;

/// The table holding, per sink and partition, the last snapshot epoch whose rows
/// were moved into the target table (in the same transaction as the rows).
pub const EPOCHS_TABLE: &str = "riffle_sink_epochs";

/// The columns a staging table adds to the target's.
const TAGS: [(&str, &str); 4] = [
    ("riffle_sink", "VARCHAR"),
    ("riffle_part", "VARCHAR"),
    ("riffle_run", "VARCHAR"),
    ("riffle_epoch", "UBIGINT"),
];

/// The staging table of `table`: the target's columns and the [`TAGS`].
pub fn staging_table(table: &str) -> String {
    format!("{table}__riffle_staged")
}

/// Appends items to a table; see the [module docs](super).
pub struct DuckdbSink<T> {
    settings: DuckdbSettings,
    table: String,
    id: Option<String>,
    parts: usize,
    _items: PhantomData<fn(T)>,
}

impl<T> DuckdbSink<T> {
    /// Appends items to `table` (`name` or `schema.name`), made from the items'
    /// fields when it does not exist.
    pub fn append(settings: DuckdbSettings, table: impl Into<String>) -> Self {
        Self {
            settings,
            table: table.into(),
            id: None,
            parts: 1,
            _items: PhantomData,
        }
    }

    /// The sink's name in the bookkeeping (default: the step id). Two sinks
    /// writing one table need different ids; a sink keeps its id across runs.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How many partitions write the table at once (default 1), each on its own
    /// connection; an item's partition is a stable hash of its fields.
    pub fn partitions(mut self, parts: usize) -> Self {
        self.parts = parts.max(1);
        self
    }
}

/// A sink partition's snapshot state: the run that staged rows, and the last
/// snapshot epoch it staged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuckdbSinkState {
    /// The run (a name made when a partition starts without a state).
    pub run: String,
    /// The last snapshot epoch staged.
    pub epoch: u64,
}

/// A new run's name.
fn new_run() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{nanos:x}", std::process::id())
}

impl<T: riffle::Data + Serialize> FixedPartitionedSink for DuckdbSink<T> {
    type Item = T;
    type State = DuckdbSinkState;
    type Partition = DuckdbSinkPartition<T>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let _ = step_id;
        Ok((0..self.parts)
            .map(|i| format!("{}#{i}", self.table))
            .collect())
    }

    fn part_fn(&self, item: &T, parts: usize) -> usize {
        if parts <= 1 {
            return 0;
        }
        let text = serde_json::to_string(item).unwrap_or_default();
        (riffle::exchange::stable_hash(&text) % parts as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<DuckdbSinkState>,
    ) -> riffle::Result<DuckdbSinkPartition<T>> {
        let open = || -> Result<Writer<T>, ConnectorError> {
            let db = DuckdbDatabase::open(&self.settings)?;
            let conn = db.connect()?;
            let mut part = Writer {
                step_id: step_id.to_string(),
                db,
                conn,
                table: self.table.clone(),
                sink: self.id.clone().unwrap_or_else(|| step_id.to_string()),
                part: for_part.to_string(),
                rows: None,
                buffer: Vec::new(),
                state: DuckdbSinkState {
                    run: new_run(),
                    epoch: 0,
                },
                staging: false,
                _items: PhantomData,
            };
            part.prepare()?;
            match resume_state {
                Some(state) => {
                    // Finish what the committed snapshot staged, forget what later
                    // ones staged (the resumed run writes it again).
                    part.finish(&state)?;
                    part.discard(Some(&state))?;
                    part.state = state;
                }
                None => part.discard(None)?,
            }
            Ok(part)
        };
        // A partition that cannot open the file (another process holds it: `riffle
        // run -p 2` with partitions on both processes) reports it on its first call,
        // so that the run fails on every process alike instead of one process failing
        // to build its part of the flow.
        Ok(DuckdbSinkPartition {
            step_id: step_id.to_string(),
            writer: open().map_err(Some),
        })
    }
}

/// One partition of a [`DuckdbSink`], on a connection of its own.
pub struct DuckdbSinkPartition<T> {
    step_id: String,
    /// The open partition, or why it could not open (reported once).
    writer: Result<Writer<T>, Option<ConnectorError>>,
}

impl<T> DuckdbSinkPartition<T> {
    fn writer(&mut self) -> riffle::Result<&mut Writer<T>> {
        match &mut self.writer {
            Ok(writer) => Ok(writer),
            Err(why) => Err(match why.take() {
                Some(e) => e.for_step(&self.step_id),
                None => riffle::RiffleError::connector(
                    &self.step_id,
                    "duckdb: the partition did not open",
                ),
            }),
        }
    }
}

/// An open sink partition.
struct Writer<T> {
    step_id: String,
    db: DuckdbDatabase,
    conn: Connection,
    table: String,
    sink: String,
    part: String,
    /// The table's columns, once it exists.
    rows: Option<RowMaker>,
    /// Rows written since the last flush or snapshot.
    buffer: Vec<Vec<Duck>>,
    state: DuckdbSinkState,
    /// Whether snapshots are taken (a recovery store): rows go through staging.
    staging: bool,
    _items: PhantomData<fn(T)>,
}

impl<T: riffle::Data + Serialize> Writer<T> {
    fn settings(&self) -> &DuckdbSettings {
        self.db.settings()
    }

    fn failed(&self, doing: &str, e: duckdb::Error) -> ConnectorError {
        self.settings()
            .error(format!("{doing}: {}", says(&e)))
            .caused_by(e)
    }

    fn execute(&self, sql: &str, doing: &str) -> Result<(), ConnectorError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| self.failed(doing, e))
    }

    /// The bookkeeping table, and the target's columns and staging table when
    /// the target exists.
    fn prepare(&mut self) -> Result<(), ConnectorError> {
        let _writes = self.db.writes();
        self.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (sink VARCHAR, part VARCHAR, \
                 run VARCHAR, epoch UBIGINT, PRIMARY KEY (sink, part))"
            ),
            &format!("cannot make the bookkeeping table {EPOCHS_TABLE:?}"),
        )?;
        if let Some(columns) = table_columns(self.settings(), &self.conn, &self.table)? {
            self.stage_table(&columns)?;
            self.rows = Some(RowMaker::new(&self.table, columns));
        }
        Ok(())
    }

    /// Makes the staging table for `columns` (or checks the one there).
    fn stage_table(&self, columns: &[Column]) -> Result<(), ConnectorError> {
        let staged = staging_table(&self.table);
        let want: Vec<Column> = columns
            .iter()
            .cloned()
            .chain(TAGS.iter().map(|(n, t)| Column::new(*n, *t)))
            .collect();
        if let Some(found) = table_columns(self.settings(), &self.conn, &staged)? {
            let names = |cs: &[Column]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
            if names(&found) == names(&want) {
                return Ok(());
            }
            let rows: i64 = self
                .conn
                .query_row(
                    &format!("SELECT count(*) FROM {}", quote_table(&staged)),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.failed(&format!("cannot read table {staged:?}"), e))?;
            if rows > 0 {
                return Err(self.settings().error(format!(
                    "the staging table {staged:?} does not have the columns of table {:?} \
                     but holds {rows} rows of a run not finished; finish that run first \
                     (resume it with its recovery store)",
                    self.table
                )));
            }
            self.execute(
                &format!("DROP TABLE {}", quote_table(&staged)),
                &format!("cannot replace the staging table {staged:?}"),
            )?;
        }
        self.execute(
            &create_sql(&staged, &want),
            &format!("cannot make the staging table {staged:?}"),
        )
    }

    /// The row maker, making the table from `items` when it does not exist.
    fn rows_for(&mut self, items: &[T]) -> Result<&RowMaker, ConnectorError> {
        if self.rows.is_none() {
            let _writes = self.db.writes();
            // Another partition may have made it meanwhile.
            let columns = match table_columns(self.settings(), &self.conn, &self.table)? {
                Some(columns) => columns,
                None => {
                    let columns = columns_for(items).map_err(|why| {
                        self.settings()
                            .error(format!("cannot make table {:?}: {why}", self.table))
                    })?;
                    self.execute(
                        &create_sql(&self.table, &columns),
                        &format!("cannot make table {:?}", self.table),
                    )?;
                    columns
                }
            };
            self.stage_table(&columns)?;
            self.rows = Some(RowMaker::new(&self.table, columns));
        }
        self.rows
            .as_ref()
            .ok_or_else(|| self.settings().error("no columns"))
    }

    /// Appends the buffered rows to `table` (with `tags` after each row's
    /// values) in one transaction.
    fn append(&mut self, table: &str, tags: &[Duck]) -> Result<(), ConnectorError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.buffer);
        let doing = format!("cannot append {} rows to table {table:?}", rows.len());
        let write = || -> duckdb::Result<()> {
            self.conn.execute_batch("BEGIN TRANSACTION")?;
            let appended = (|| {
                let mut appender = match table.split_once('.') {
                    Some((schema, name)) => self.conn.appender_to_db(name, schema)?,
                    None => self.conn.appender(table)?,
                };
                for row in &rows {
                    appender.append_row(duckdb::appender_params_from_iter(
                        row.iter().chain(tags.iter()),
                    ))?;
                }
                appender.flush()
            })();
            match appended {
                Ok(()) => self.conn.execute_batch("COMMIT"),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        };
        write().map_err(|e| self.failed(&doing, e))
    }

    fn tags(&self, epoch: u64) -> [Duck; 4] {
        [
            Duck::Text(self.sink.clone()),
            Duck::Text(self.part.clone()),
            Duck::Text(self.state.run.clone()),
            Duck::UBigInt(epoch),
        ]
    }

    /// Moves the rows `state`'s run staged up to its epoch into the table and
    /// records the epoch, in one transaction; an epoch already recorded (a commit
    /// replayed after a crash) is skipped.
    fn finish(&mut self, state: &DuckdbSinkState) -> Result<(), ConnectorError> {
        let _writes = self.db.writes();
        let Some(rows) = &self.rows else {
            // No table yet: nothing was ever staged.
            return Ok(());
        };
        let columns: Vec<String> = rows.columns().iter().map(|c| quote(&c.name)).collect();
        let columns = columns.join(", ");
        let staged = quote_table(&staging_table(&self.table));
        let table = quote_table(&self.table);
        let (sink, part, run, epoch) = (&self.sink, &self.part, &state.run, state.epoch);
        let write = || -> duckdb::Result<bool> {
            let tx = self.conn.unchecked_transaction()?;
            let done: Option<u64> = tx
                .query_row(
                    &format!(
                        "SELECT epoch FROM {EPOCHS_TABLE} WHERE sink = $1 AND part = $2 AND run = $3"
                    ),
                    duckdb::params![sink, part, run],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    duckdb::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if done.is_some_and(|d| d >= epoch) {
                tx.rollback()?;
                return Ok(false);
            }
            let picked = "riffle_sink = $1 AND riffle_part = $2 AND riffle_run = $3 \
                          AND riffle_epoch <= $4";
            tx.execute(
                &format!(
                    "INSERT INTO {table} ({columns}) SELECT {columns} FROM {staged} WHERE {picked}"
                ),
                duckdb::params![sink, part, run, epoch],
            )?;
            tx.execute(
                &format!("DELETE FROM {staged} WHERE {picked}"),
                duckdb::params![sink, part, run, epoch],
            )?;
            tx.execute(
                &format!("INSERT OR REPLACE INTO {EPOCHS_TABLE} VALUES ($1, $2, $3, $4)"),
                duckdb::params![sink, part, run, epoch],
            )?;
            tx.commit()?;
            Ok(true)
        };
        write().map(drop).map_err(|e| {
            self.failed(
                &format!(
                    "cannot move the rows of snapshot epoch {epoch} from {staged} into table {:?}",
                    self.table
                ),
                e,
            )
        })
    }

    /// Deletes this partition's staged rows that `kept` does not cover: of other
    /// runs, or of epochs after its own.
    fn discard(&mut self, kept: Option<&DuckdbSinkState>) -> Result<(), ConnectorError> {
        if self.rows.is_none() {
            return Ok(());
        }
        let _writes = self.db.writes();
        let staged = quote_table(&staging_table(&self.table));
        let (run, epoch) = kept.map_or((String::new(), 0), |s| (s.run.clone(), s.epoch));
        self.conn
            .execute(
                &format!(
                    "DELETE FROM {staged} WHERE riffle_sink = $1 AND riffle_part = $2 \
                     AND (riffle_run <> $3 OR riffle_epoch > $4)"
                ),
                duckdb::params![self.sink, self.part, run, epoch],
            )
            .map(drop)
            .map_err(|e| self.failed(&format!("cannot clear {staged}"), e))
    }
}

impl<T: riffle::Data + Serialize> SinkPartition for DuckdbSinkPartition<T> {
    type Item = T;
    type State = DuckdbSinkState;

    fn write_batch(&mut self, items: Vec<T>) -> riffle::Result<()> {
        self.writer()?.write_batch(items)
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.writer()?.flush()
    }

    fn snapshot(&mut self) -> riffle::Result<Option<DuckdbSinkState>> {
        self.writer()?.snapshot()
    }

    fn commit(&mut self, state: &DuckdbSinkState) -> riffle::Result<()> {
        self.writer()?.commit(state)
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.writer()?.close()
    }
}

impl<T: riffle::Data + Serialize> Writer<T> {
    fn write_batch(&mut self, items: Vec<T>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let step_id = self.step_id.clone();
        let rows = self.rows_for(&items).map_err(|e| e.for_step(&step_id))?;
        let mut made = Vec::with_capacity(items.len());
        for item in &items {
            match rows.row(item) {
                Ok(row) => made.push(row),
                Err(why) => return Err(self.settings().error(why).for_step(&step_id)),
            }
        }
        self.buffer.append(&mut made);
        Ok(())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        let table = self.table.clone();
        self.append(&table, &[])
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<DuckdbSinkState>> {
        self.staging = true;
        let epoch = self.state.epoch + 1;
        let tags = self.tags(epoch);
        let staged = staging_table(&self.table);
        self.append(&staged, &tags)
            .map_err(|e| e.for_step(&self.step_id))?;
        self.state.epoch = epoch;
        Ok(Some(self.state.clone()))
    }

    fn commit(&mut self, state: &DuckdbSinkState) -> riffle::Result<()> {
        self.finish(state).map_err(|e| e.for_step(&self.step_id))
    }

    fn close(&mut self) -> riffle::Result<()> {
        if !self.staging {
            return self.flush();
        }
        // The run ended cleanly: what is staged, and what came after the last
        // snapshot, is final.
        let state = self.snapshot()?.unwrap_or_else(|| self.state.clone());
        self.finish(&state).map_err(|e| e.for_step(&self.step_id))
    }
}
