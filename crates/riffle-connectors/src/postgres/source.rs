//! The PostgreSQL source: the rows of a table (or of a query) in the order of an
//! increasing column, read only once no transaction still running could add a row
//! before them; the last value read is the snapshot state.

use std::sync::Arc;
use std::time::Duration;

use riffle::dead_letters::DeadLetters;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::outage::{Failure, Outage};
use super::settings::{PostgresSettings, quote, quote_table, says, transient};
use crate::format::{Format, Json};
use crate::{ConnectorError, runtime};

/// One row read, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresRow<V> {
    /// The table (or `query`) it was read from.
    pub source: Arc<str>,
    /// The value of the position column, as PostgreSQL writes it as text.
    pub position: String,
    /// The row: its columns by name (a JSON object) decoded by the source's format.
    pub value: V,
}

/// A partition's snapshot state: the position column's value of the last row
/// emitted (as text), `None` before the first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostgresPosition {
    /// The last value emitted.
    pub last: Option<String>,
}

/// What the source reads: a table, or the rows of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rows {
    Table(String),
    Query(String),
}

/// Reads rows in the order of an increasing column; see the [module docs](super).
pub struct PostgresSource<F = Json<serde_json::Value>> {
    settings: PostgresSettings,
    rows: Rows,
    column: String,
    format: Arc<F>,
    poll_every: Duration,
    batch: usize,
    tail: bool,
    dead_letters: Option<DeadLetters>,
}

impl PostgresSource<Json<serde_json::Value>> {
    /// Reads table `table` (`name` or `schema.name`) by the increasing column
    /// `column` (a `bigint` id, a `timestamptz`, ...), every row as a JSON object,
    /// following new rows for ever.
    pub fn table(
        settings: PostgresSettings,
        table: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        Self::new(settings, Rows::Table(table.into()), column.into())
    }

    /// Reads the rows of `query` (a `SELECT` whose result has the increasing
    /// column `column`) the same way; the query runs as a subquery, filtered and
    /// ordered by the column.
    pub fn query(
        settings: PostgresSettings,
        query: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        Self::new(settings, Rows::Query(query.into()), column.into())
    }

    fn new(settings: PostgresSettings, rows: Rows, column: String) -> Self {
        Self {
            settings,
            rows,
            column,
            format: Arc::new(Json::new()),
            poll_every: Duration::from_millis(500),
            batch: 4096,
            tail: true,
            dead_letters: None,
        }
    }
}

impl<F: Format> PostgresSource<F> {
    /// Decodes each row's JSON object with `format` ([`Json`]`::<Order>::new()`
    /// for a struct whose fields are the columns).
    pub fn format<G: Format>(self, format: G) -> PostgresSource<G> {
        PostgresSource {
            settings: self.settings,
            rows: self.rows,
            column: self.column,
            format: Arc::new(format),
            poll_every: self.poll_every,
            batch: self.batch,
            tail: self.tail,
            dead_letters: self.dead_letters,
        }
    }

    /// How often a following source looks for new rows (default 500 ms).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// About how many rows one query reads (default 4096; rows sharing the last
    /// value are read with it, so a batch can be larger).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Whether to follow new rows for ever (`true`, the default) or read to the
    /// end the table has when the run starts, then finish.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// Rows the format cannot decode go to `letters` (with `source`, `position`,
    /// `reason` and the row as JSON), the step's dead-letter stream or a file,
    /// and are skipped instead of stopping the run; see [`riffle::dead_letters`].
    /// No letter is lost to a crash.
    pub fn dead_letters(mut self, letters: DeadLetters) -> Self {
        self.dead_letters = Some(letters);
        self
    }

    fn name(&self) -> String {
        match &self.rows {
            Rows::Table(t) => t.clone(),
            Rows::Query(_) => "query".to_string(),
        }
    }

    /// The rows as a `FROM` item aliased `r`.
    fn rows_sql(&self) -> String {
        match &self.rows {
            Rows::Table(t) => format!("{} AS r", quote_table(t)),
            Rows::Query(q) => format!("({q}) AS r"),
        }
    }

    /// What the source reads, as errors name it.
    fn what(&self) -> String {
        match &self.rows {
            Rows::Table(t) => format!("table {t:?}"),
            Rows::Query(q) => format!("query {q:?}"),
        }
    }
}

impl<F: Format> FixedPartitionedSource for PostgresSource<F> {
    type Item = PostgresRow<F::Value>;
    type State = PostgresPosition;
    type Partition = PostgresSourcePartition<F>;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok(vec![self.name()])
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<PostgresPosition>,
    ) -> riffle::Result<PostgresSourcePartition<F>> {
        let position = resume_state.unwrap_or_default();
        let mut reader = Reader {
            settings: self.settings.clone(),
            client: None,
            what: self.what(),
            from: self.rows_sql(),
            column: self.column.clone(),
            sql: Sql::default(),
            last: position.last.clone(),
            batch: self.batch,
            poll_every: self.poll_every,
            tail: self.tail,
            tx: None,
        };
        let (tx, batches) = mpsc::channel(4);
        let reader = runtime::handle()
            .block_on(async {
                reader.open().await?;
                reader.tx = Some(tx);
                Ok::<_, ConnectorError>(reader)
            })
            .map_err(|e| e.for_step(step_id))?;
        let task = runtime::handle().spawn(reader.run());
        Ok(PostgresSourcePartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            source: Arc::from(for_part),
            what: self.what(),
            format: self.format.clone(),
            dead_letters: self.dead_letters.clone(),
            batches,
            reader: task,
            last: position.last,
            done: false,
        })
    }
}

/// The statements one reader runs, made once the column's type is known.
#[derive(Debug, Default)]
struct Sql {
    /// `m`: the greatest value now; `v`: the virtual ids of the transactions in
    /// progress in this database; `p`: the prepared transactions of this database.
    fence: String,
    /// How many of the listed transactions still run.
    running: String,
    /// The rows after `$1` up to `$2`, about `$3` of them, from the start or not.
    rows_after: String,
    rows_from_start: String,
}

/// What the reading task hands the partition.
enum Read {
    /// Rows (position, JSON object), in the column's order.
    Rows(Vec<(String, String)>),
    /// A bounded read reached the end.
    Done,
    /// Reading failed for good.
    Failed(ConnectorError),
}

/// The task that reads one table on the shared runtime.
///
/// Each round it sets a **fence**: in one statement, the greatest value of the
/// column (`m`) and every transaction of this database still in progress (their
/// virtual transaction ids, which every transaction holds from its start, with an
/// xid or not, and the prepared transactions). It waits until all of those have
/// ended, then reads the rows after its position up to `m`. A row whose value is
/// at most `m` and that the fence's statement did not see was written by one of
/// those transactions (values are handed out increasing, so a transaction begun
/// later gets a greater one): once they ended, every such row is committed or
/// never will be, and reading past it cannot skip one.
struct Reader {
    settings: PostgresSettings,
    client: Option<Client>,
    what: String,
    from: String,
    column: String,
    sql: Sql,
    last: Option<String>,
    batch: usize,
    poll_every: Duration,
    tail: bool,
    tx: Option<mpsc::Sender<Read>>,
}

impl Reader {
    /// Connects and checks the rows and the column, making the statements.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        let client = self.settings.connect().await?;
        let probe = format!("SELECT * FROM {} LIMIT 0", self.from);
        let statement = client.prepare(&probe).await.map_err(|e| {
            self.settings
                .error(format!("cannot read {}: {}", self.what, says(&e)))
                .caused_by(e)
        })?;
        let Some(column) = statement.columns().iter().find(|c| c.name() == self.column) else {
            return Err(self.settings.error(format!(
                "{} has no column {:?} to read by",
                self.what, self.column
            )));
        };
        let ty = column.type_();
        let ty = format!("{}.{}", quote(ty.schema()), quote(ty.name()));
        let c = format!("r.{}", quote(&self.column));
        let from = &self.from;
        self.sql = Sql {
            fence: format!(
                "SELECT (SELECT max({c})::text FROM {from}) AS m, \
                 ARRAY(SELECT l.virtualxid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                       WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid() \
                       AND a.datname = current_database() \
                       AND a.backend_type NOT IN ('autovacuum worker', 'walsender')) AS v, \
                 ARRAY(SELECT transaction::text FROM pg_prepared_xacts \
                       WHERE database = current_database()) AS p"
            ),
            running: "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' \
                      AND virtualxid = ANY($1::text[])) \
                      + (SELECT count(*) FROM pg_prepared_xacts WHERE transaction::text = ANY($2::text[]))"
                .to_string(),
            rows_after: format!(
                "WITH cut AS (SELECT {c} AS c FROM {from} WHERE {c} > $1::text::{ty} \
                 AND {c} <= $2::text::{ty} ORDER BY {c} OFFSET $3 LIMIT 1) \
                 SELECT {c}::text, row_to_json(r)::text FROM {from} \
                 WHERE {c} > $1::text::{ty} AND {c} <= coalesce((SELECT c FROM cut), $2::text::{ty}) \
                 ORDER BY {c}"
            ),
            rows_from_start: format!(
                "WITH cut AS (SELECT {c} AS c FROM {from} WHERE {c} <= $2::text::{ty} \
                 ORDER BY {c} OFFSET $3 LIMIT 1) \
                 SELECT {c}::text, row_to_json(r)::text FROM {from} \
                 WHERE ($1::text IS NULL) AND {c} <= coalesce((SELECT c FROM cut), $2::text::{ty}) \
                 ORDER BY {c}"
            ),
        };
        self.client = Some(client);
        Ok(())
    }

    async fn run(mut self) {
        if let Err(e) = self.read().await
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(Read::Failed(e)).await;
        }
    }

    /// Runs rounds until the reading is over, reconnecting through a server that
    /// went away for at most the settings' patience, saying so once on stderr.
    async fn read(&mut self) -> Result<(), ConnectorError> {
        let mut outage = Outage::default();
        loop {
            match self.round().await {
                Ok(true) => outage.over(&self.settings, &self.what),
                Ok(false) => return Ok(()),
                Err(Failure::Gone(why)) => {
                    self.client = None;
                    outage.gone(&self.settings, &self.what, &why).await?;
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    fn failure(&self, action: &str, e: tokio_postgres::Error) -> Failure {
        if transient(&e) {
            Failure::Gone(says(&e))
        } else {
            Failure::Fatal(
                self.settings
                    .error(format!("{action} {}: {}", self.what, says(&e)))
                    .caused_by(e),
            )
        }
    }

    /// One fence, the wait for it and the rows up to it. False when the reading
    /// is over (bounded, or the partition is gone).
    async fn round(&mut self) -> Result<bool, Failure> {
        if self.client.is_none() {
            self.open().await.map_err(Failure::of_connect)?;
        }
        let Some(client) = self.client.as_ref() else {
            return Err(Failure::Fatal(self.settings.error("no connection")));
        };
        let fence = client
            .query_one(&self.sql.fence, &[])
            .await
            .map_err(|e| self.failure("cannot read", e))?;
        let end: Option<String> = fence.get(0);
        let transactions: Vec<String> = fence.get(1);
        let prepared: Vec<String> = fence.get(2);
        let mut pause = Duration::from_millis(2);
        loop {
            let client = self
                .client
                .as_ref()
                .ok_or_else(|| Failure::Fatal(self.settings.error("no connection")))?;
            let row = client
                .query_one(&self.sql.running, &[&transactions, &prepared])
                .await
                .map_err(|e| self.failure("cannot read", e))?;
            let running: i64 = row.get(0);
            if running == 0 {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.poll_every.max(Duration::from_millis(2)));
        }
        let mut read_any = false;
        if let Some(end) = end
            && self.last.as_deref() != Some(end.as_str())
        {
            loop {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| Failure::Fatal(self.settings.error("no connection")))?;
                let statement = match self.last {
                    Some(_) => &self.sql.rows_after,
                    None => &self.sql.rows_from_start,
                };
                let offset = (self.batch - 1) as i64;
                let rows = client
                    .query(statement, &[&self.last, &end, &offset])
                    .await
                    .map_err(|e| self.failure("cannot read", e))?;
                let Some(last) = rows.last() else {
                    break;
                };
                let last: String = last.get(0);
                let reached = last == end;
                let rows: Vec<(String, String)> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                self.last = Some(last);
                read_any = true;
                let Some(tx) = &self.tx else {
                    return Ok(false);
                };
                if tx.send(Read::Rows(rows)).await.is_err() {
                    return Ok(false);
                }
                if reached {
                    break;
                }
            }
        }
        if !self.tail {
            if let Some(tx) = &self.tx {
                let _ = tx.send(Read::Done).await;
            }
            return Ok(false);
        }
        if self.tx.as_ref().is_none_or(|tx| tx.is_closed()) {
            return Ok(false);
        }
        if !read_any {
            tokio::time::sleep(self.poll_every).await;
        }
        Ok(true)
    }
}

/// The rows of one table being read; made by [`PostgresSource`].
pub struct PostgresSourcePartition<F> {
    step_id: String,
    settings: PostgresSettings,
    source: Arc<str>,
    what: String,
    format: Arc<F>,
    dead_letters: Option<DeadLetters>,
    batches: mpsc::Receiver<Read>,
    reader: tokio::task::JoinHandle<()>,
    last: Option<String>,
    done: bool,
}

impl<F: Format> SourcePartition for PostgresSourcePartition<F> {
    type Item = PostgresRow<F::Value>;
    type State = PostgresPosition;

    fn next_batch(&mut self) -> riffle::Result<Poll<Self::Item>> {
        if self.done {
            return Ok(Poll::Exhausted);
        }
        match self.batches.try_recv() {
            Ok(Read::Rows(rows)) => {
                let mut out = Vec::with_capacity(rows.len());
                for (position, json) in rows {
                    let value = match self.format.decode(json.as_bytes()) {
                        Ok(value) => value,
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
                            let at = [
                                ("source", (*self.source).into()),
                                ("position", position.as_str().into()),
                            ];
                            letters.write(&self.step_id, &at, &why, json.as_bytes())?;
                            self.last = Some(position);
                            continue;
                        }
                    };
                    self.last = Some(position.clone());
                    out.push(PostgresRow {
                        source: self.source.clone(),
                        position,
                        value,
                    });
                }
                Ok(Poll::Ready(out))
            }
            Ok(Read::Done) => {
                self.done = true;
                Ok(Poll::Exhausted)
            }
            Ok(Read::Failed(e)) => Err(e.for_step(&self.step_id)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(Poll::Pending),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self
                .settings
                .error(format!("the reader of {} stopped", self.what))
                .for_step(&self.step_id)),
        }
    }

    fn snapshot(&self) -> Option<PostgresPosition> {
        Some(PostgresPosition {
            last: self.last.clone(),
        })
    }

    fn commit(&mut self, _position: &PostgresPosition) -> riffle::Result<()> {
        // The letters of the rows this position passed are on disk before it counts.
        match &self.dead_letters {
            Some(letters) => letters.sync(&self.step_id),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.reader.abort();
        Ok(())
    }
}

impl<F> Drop for PostgresSourcePartition<F> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
