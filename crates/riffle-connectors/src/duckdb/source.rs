//! The DuckDB source: the rows of a query, either counted (a bounded query read
//! once, resumed by skipping the rows already emitted) or in the order of an
//! increasing column (resumed after the last value, optionally following new
//! rows).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use duckdb::Connection;
use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::database::DuckdbDatabase;
use super::rows::{query_columns, readable, to_json};
use super::settings::{DuckdbSettings, quote, says};
use crate::ConnectorError;
use crate::format::{Format, Json};

/// One row read, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuckdbRow<V> {
    /// Where it is: the increasing column's value as text, or (for a counted
    /// query) the row's number from 1.
    pub position: String,
    /// The row: its columns by name (a JSON object) decoded by the source's format.
    pub value: V,
}

/// A partition's snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DuckdbPosition {
    /// How many rows were emitted.
    pub rows: u64,
    /// The increasing column's value of the last row emitted (as text).
    pub last: Option<String>,
}

/// Reads the rows of a query; see the [module docs](super).
pub struct DuckdbSource<F = Json<Value>> {
    settings: DuckdbSettings,
    query: String,
    column: Option<String>,
    format: Arc<F>,
    poll_every: Duration,
    batch: usize,
    tail: bool,
    dead_letters: Option<DeadLetters>,
}

impl DuckdbSource<Json<Value>> {
    /// Reads the rows of `query` (a `SELECT`, or a table's name in `FROM t`
    /// form), every row as a JSON object, once. Without
    /// [`DuckdbSource::ordered_by`] the position is the number of rows emitted: a
    /// resumed run skips that many, which is exact when the query's order is
    /// total (an `ORDER BY` a unique key) and the rows it had read are unchanged.
    pub fn query(settings: DuckdbSettings, query: impl Into<String>) -> Self {
        Self {
            settings,
            query: query.into(),
            column: None,
            format: Arc::new(Json::new()),
            poll_every: Duration::from_millis(500),
            batch: 2048,
            tail: false,
            dead_letters: None,
        }
    }
}

impl<F: Format> DuckdbSource<F> {
    /// Decodes each row's JSON object with `format` ([`Json`]`::<Order>::new()`
    /// for a struct whose fields are the columns).
    pub fn format<G: Format>(self, format: G) -> DuckdbSource<G> {
        DuckdbSource {
            settings: self.settings,
            query: self.query,
            column: self.column,
            format: Arc::new(format),
            poll_every: self.poll_every,
            batch: self.batch,
            tail: self.tail,
            dead_letters: self.dead_letters,
        }
    }

    /// Reads the rows in the order of the increasing column `column` of the
    /// query's result (an id, a timestamp): the position is the last value read,
    /// and a resumed run reads the rows after it.
    pub fn ordered_by(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }

    /// With [`DuckdbSource::ordered_by`]: whether to look for new rows every
    /// [`DuckdbSource::poll_every`] for ever (`true`) or finish at the end
    /// (`false`, the default).
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// How often a following source looks for new rows (default 500 ms).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// About how many rows are handed on at once (default 2048; with an
    /// increasing column, rows sharing the last value come with it).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Rows the format cannot decode go to `letters` (with `position`, `reason`
    /// and the row as JSON), the step's dead-letter stream or a file, and are
    /// skipped instead of stopping the run; see [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.dead_letters = Some(letters);
        self
    }

    fn what(&self) -> String {
        format!("query {:?}", self.query)
    }
}

impl<F: Format> FixedPartitionedSource for DuckdbSource<F> {
    type Item = DuckdbRow<F::Value>;
    type State = DuckdbPosition;
    type Partition = DuckdbSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        let _ = step_id;
        Ok(vec!["query".to_string()])
    }

    fn build_part(
        &self,
        step_id: &str,
        _for_part: &str,
        resume_state: Option<DuckdbPosition>,
    ) -> riffle::Result<DuckdbSourcePartition<F>> {
        let position = resume_state.unwrap_or_default();
        let open = || -> Result<Reader, ConnectorError> {
            let db = DuckdbDatabase::open(&self.settings)?;
            let conn = db.connect()?;
            let columns = query_columns(&self.settings, &conn, &self.query)?;
            let select: Vec<String> = columns.iter().map(readable).collect();
            let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            let q = &self.query;
            let plan = match &self.column {
                None => Plan::Counted(format!(
                    "SELECT {} FROM ({q}) AS r OFFSET $1",
                    select.join(", ")
                )),
                Some(column) => {
                    let Some(found) = columns.iter().find(|c| &c.name == column) else {
                        return Err(self.settings.error(format!(
                            "query {q:?} has no column {column:?} to read by (its columns: {})",
                            names.join(", ")
                        )));
                    };
                    let c = format!("r.{}", quote(column));
                    let ty = &found.sql_type;
                    let after = format!("($1::VARCHAR IS NULL OR {c} > CAST($1::VARCHAR AS {ty}))");
                    Plan::Ordered(format!(
                        "WITH cut AS (SELECT {c} AS c FROM ({q}) AS r WHERE {after} AND {c} IS NOT NULL \
                         ORDER BY {c} OFFSET $2 LIMIT 1) \
                         SELECT {}, CAST({c} AS VARCHAR) FROM ({q}) AS r \
                         WHERE {after} AND {c} IS NOT NULL \
                         AND ((SELECT count(*) FROM cut) = 0 OR {c} <= (SELECT c FROM cut)) \
                         ORDER BY {c}",
                        select.join(", ")
                    ))
                }
            };
            Ok(Reader {
                settings: self.settings.clone(),
                _db: db,
                conn,
                what: self.what(),
                names,
                plan,
                rows: position.rows,
                last: position.last.clone(),
                batch: self.batch,
                tail: self.tail && self.column.is_some(),
                poll_every: self.poll_every,
            })
        };
        let (tx, batches) = sync_channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        match open() {
            Ok(reader) => {
                std::thread::Builder::new()
                    .name("riffle-duckdb-read".to_string())
                    .spawn(move || reader.run(tx, stopped))
                    .map_err(|e| {
                        self.settings
                            .error(format!("cannot start a reader of {}", self.what()))
                            .caused_by(e)
                            .for_step(step_id)
                    })?;
            }
            // Reported by the first poll, so that a run fails on every process alike
            // (another process holding the file fails only this one).
            Err(e) => {
                let _ = tx.send(Read::Failed(e));
            }
        }
        Ok(DuckdbSourcePartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            what: self.what(),
            format: self.format.clone(),
            dead_letters: self.dead_letters.clone(),
            batches,
            stop,
            position,
            done: false,
        })
    }
}

/// How a reader reads.
enum Plan {
    /// The whole query once, from the row after `$1` rows.
    Counted(String),
    /// Rows after `$1` (a column value as text, or NULL for the start), about
    /// `$2 + 1` of them.
    Ordered(String),
}

/// What the reading thread hands the partition.
enum Read {
    /// Rows: (position, JSON object), in order.
    Rows(Vec<(String, Map<String, Value>)>),
    /// The reading is over.
    Done,
    /// Reading failed.
    Failed(ConnectorError),
}

/// The thread that runs the query on a connection of its own.
struct Reader {
    settings: DuckdbSettings,
    /// Keeps the database open while reading.
    _db: DuckdbDatabase,
    conn: Connection,
    what: String,
    names: Vec<String>,
    plan: Plan,
    rows: u64,
    last: Option<String>,
    batch: usize,
    tail: bool,
    poll_every: Duration,
}

impl Reader {
    fn run(mut self, tx: SyncSender<Read>, stop: Arc<AtomicBool>) {
        let read = match &self.plan {
            Plan::Counted(_) => self.counted(&tx, &stop),
            Plan::Ordered(_) => self.ordered(&tx, &stop),
        };
        let _ = tx.send(match read {
            Ok(()) => Read::Done,
            Err(e) => Read::Failed(e),
        });
    }

    fn failed(&self, e: duckdb::Error) -> ConnectorError {
        self.settings
            .error(format!("cannot read {}: {}", self.what, says(&e)))
            .caused_by(e)
    }

    /// A result row's columns as a JSON object.
    fn object(&self, row: &duckdb::Row<'_>) -> duckdb::Result<Map<String, Value>> {
        let mut object = Map::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            object.insert(name.clone(), to_json(row.get_ref(i)?));
        }
        Ok(object)
    }

    fn counted(&mut self, tx: &SyncSender<Read>, stop: &AtomicBool) -> Result<(), ConnectorError> {
        let Plan::Counted(sql) = &self.plan else {
            return Ok(());
        };
        let mut statement = self.conn.prepare(sql).map_err(|e| self.failed(e))?;
        let mut rows = statement
            .query(duckdb::params![self.rows as i64])
            .map_err(|e| self.failed(e))?;
        let mut batch = Vec::with_capacity(self.batch);
        loop {
            let row = rows.next().map_err(|e| self.failed(e))?;
            let Some(row) = row else { break };
            let object = self.object(row).map_err(|e| self.failed(e))?;
            self.rows += 1;
            batch.push((self.rows.to_string(), object));
            if batch.len() >= self.batch {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if tx.send(Read::Rows(std::mem::take(&mut batch))).is_err() {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Read::Rows(batch));
        }
        Ok(())
    }

    fn ordered(&mut self, tx: &SyncSender<Read>, stop: &AtomicBool) -> Result<(), ConnectorError> {
        let Plan::Ordered(sql) = &self.plan else {
            return Ok(());
        };
        let mut statement = self.conn.prepare(sql).map_err(|e| self.failed(e))?;
        let offset = (self.batch - 1) as i64;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut read = Vec::new();
            {
                let mut rows = statement
                    .query(duckdb::params![self.last, offset])
                    .map_err(|e| self.failed(e))?;
                while let Some(row) = rows.next().map_err(|e| self.failed(e))? {
                    let object = self.object(row).map_err(|e| self.failed(e))?;
                    let position: String = row.get(self.names.len()).map_err(|e| self.failed(e))?;
                    read.push((position, object));
                }
            }
            if let Some((last, _)) = read.last() {
                self.last = Some(last.clone());
                self.rows += read.len() as u64;
                if tx.send(Read::Rows(read)).is_err() {
                    return Ok(());
                }
                continue;
            }
            if !self.tail {
                return Ok(());
            }
            std::thread::sleep(self.poll_every);
        }
    }
}

/// The rows of a query being read; made by [`DuckdbSource`].
pub struct DuckdbSourcePartition<F> {
    step_id: String,
    settings: DuckdbSettings,
    what: String,
    format: Arc<F>,
    dead_letters: Option<DeadLetters>,
    batches: Receiver<Read>,
    stop: Arc<AtomicBool>,
    position: DuckdbPosition,
    done: bool,
}

impl<F: Format> SourcePartition for DuckdbSourcePartition<F> {
    type Item = DuckdbRow<F::Value>;
    type State = DuckdbPosition;

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        if self.done {
            return Ok(Poll::Exhausted);
        }
        match self.batches.try_recv() {
            Ok(Read::Rows(rows)) => {
                let mut out = Vec::with_capacity(rows.len());
                for (position, object) in rows {
                    let json = serde_json::to_vec(&object).unwrap_or_default();
                    self.position.rows += 1;
                    self.position.last = Some(position.clone());
                    match self.format.decode(&json) {
                        Ok(value) => out.push(DuckdbRow { position, value }),
                        Err(why) => {
                            let Some(letters) = &self.dead_letters else {
                                return Err(self
                                    .settings
                                    .error(format!(
                                        "the row of {} at position {position} cannot be decoded: {why}",
                                        self.what
                                    ))
                                    .for_step(&self.step_id));
                            };
                            let at = [("position", position.as_str().into())];
                            letters.write(&self.step_id, &at, &why, &json)?;
                        }
                    }
                }
                Ok(Poll::Ready(out))
            }
            Ok(Read::Done) => {
                self.done = true;
                Ok(Poll::Exhausted)
            }
            Ok(Read::Failed(e)) => Err(e.for_step(&self.step_id)),
            Err(TryRecvError::Empty) => Ok(Poll::Pending),
            Err(TryRecvError::Disconnected) => Err(self
                .settings
                .error(format!("the reader of {} stopped", self.what))
                .for_step(&self.step_id)),
        }
    }

    fn snapshot(&self) -> Option<DuckdbPosition> {
        Some(self.position.clone())
    }

    fn commit(&mut self, _position: &DuckdbPosition) -> riffle::Result<()> {
        match &self.dead_letters {
            Some(letters) => letters.sync(&self.step_id),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl<F> Drop for DuckdbSourcePartition<F> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
