//! The PostgreSQL sink: items written to a table, one transaction per batch,
//! either upserted by key columns (`INSERT ... ON CONFLICT ... DO UPDATE`) or
//! appended with `COPY ... FROM STDIN`.

use std::collections::HashMap;
use std::marker::PhantomData;

use futures_util::SinkExt;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::Client;

use super::outage::{Failure, Outage};
use super::settings::{PostgresSettings, quote, quote_table, says, transient};
use crate::writer::{BatchWriter, InFlight};
use crate::{ConnectorError, runtime};

/// The most batches a partition keeps in flight before it waits.
const IN_FLIGHT: usize = 4;

/// How the sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// `INSERT ... ON CONFLICT (keys) DO UPDATE`: a row per key, the last item
    /// written for a key wins; writing the same items again changes nothing.
    Upsert(Vec<String>),
    /// `COPY ... FROM STDIN`: every item a new row.
    Append,
}

/// Writes items to a table; see the [module docs](super).
pub struct PostgresSink<T> {
    settings: PostgresSettings,
    table: String,
    mode: WriteMode,
    lanes: usize,
    _items: PhantomData<fn(T)>,
}

impl<T> PostgresSink<T> {
    /// Upserts items into `table` by the columns `keys` (the table's primary key
    /// or another unique constraint on exactly these columns).
    pub fn upsert<K: Into<String>>(
        settings: PostgresSettings,
        table: impl Into<String>,
        keys: impl IntoIterator<Item = K>,
    ) -> Self {
        Self::new(
            settings,
            table.into(),
            WriteMode::Upsert(keys.into_iter().map(Into::into).collect()),
        )
    }

    /// Appends items to `table` with `COPY`.
    pub fn append(settings: PostgresSettings, table: impl Into<String>) -> Self {
        Self::new(settings, table.into(), WriteMode::Append)
    }

    fn new(settings: PostgresSettings, table: String, mode: WriteMode) -> Self {
        Self {
            settings,
            table,
            mode,
            lanes: 2,
            _items: PhantomData,
        }
    }

    /// How many connections write the table at once (default 2), each a
    /// partition of the sink: items with the same key always take the same one.
    pub fn lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes.max(1);
        self
    }
}

/// An item as the JSON object of its columns.
fn columns_of<T: Serialize>(item: &T) -> Result<Map<String, Value>, String> {
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

/// The key of `row` as text (its key columns' JSON values).
fn key_of(row: &Map<String, Value>, keys: &[String]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| row.get(k).map(Value::to_string).unwrap_or_default())
        .collect();
    parts.join("\u{1f}")
}

impl<T: riffle::Data + Serialize> FixedPartitionedSink for PostgresSink<T> {
    type Item = T;
    type State = ();
    type Partition = PostgresSinkPartition<T>;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok((0..self.lanes)
            .map(|i| format!("{}#{i}", self.table))
            .collect())
    }

    fn part_fn(&self, item: &T, parts: usize) -> usize {
        let hash = match (&self.mode, columns_of(item)) {
            (WriteMode::Upsert(keys), Ok(row)) => {
                riffle::exchange::stable_hash(&key_of(&row, keys))
            }
            (_, Ok(row)) => riffle::exchange::stable_hash(&Value::Object(row).to_string()),
            (_, Err(_)) => 0,
        };
        (hash % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        _for_part: &str,
        _resume_state: Option<()>,
    ) -> riffle::Result<PostgresSinkPartition<T>> {
        let (client, columns) = runtime::handle()
            .block_on(async {
                let client = self.settings.connect().await?;
                let columns = table_columns(&self.settings, &client, &self.table).await?;
                Ok::<_, ConnectorError>((client, columns))
            })
            .map_err(|e| e.for_step(step_id))?;
        if let WriteMode::Upsert(keys) = &self.mode {
            if keys.is_empty() {
                return Err(self
                    .settings
                    .error(format!(
                        "the upsert into table {:?} names no key column",
                        self.table
                    ))
                    .for_step(step_id));
            }
            if let Some(k) = keys.iter().find(|k| !columns.contains(k)) {
                return Err(self
                    .settings
                    .error(format!("table {:?} has no key column {k:?}", self.table))
                    .for_step(step_id));
            }
        }
        let writer = Writer {
            settings: self.settings.clone(),
            client: Some(client),
            table: self.table.clone(),
            mode: self.mode.clone(),
        };
        let batches = InFlight::start(
            writer,
            IN_FLIGHT,
            "postgres",
            self.settings.server(),
            format!("table {:?}", self.table),
        );
        Ok(PostgresSinkPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            table: self.table.clone(),
            mode: self.mode.clone(),
            columns,
            batches,
            _items: PhantomData,
        })
    }
}

/// The columns of `table`, in order; an error naming it when it does not exist.
pub(crate) async fn table_columns(
    settings: &PostgresSettings,
    client: &Client,
    table: &str,
) -> Result<Vec<String>, ConnectorError> {
    let rows = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass \
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&quote_table(table)],
        )
        .await
        .map_err(|e| {
            settings
                .error(format!("cannot write table {table:?}: {}", says(&e)))
                .caused_by(e)
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One lane of a table being written; made by [`PostgresSink`].
pub struct PostgresSinkPartition<T> {
    step_id: String,
    settings: PostgresSettings,
    table: String,
    mode: WriteMode,
    columns: Vec<String>,
    /// Batches handed to the writer.
    batches: InFlight<Batch>,
    _items: PhantomData<fn(T)>,
}

impl<T: riffle::Data + Serialize> PostgresSinkPartition<T> {
    fn refuse(&self, why: String) -> riffle::RiffleError {
        self.settings
            .error(format!("table {:?}: {why}", self.table))
            .for_step(&self.step_id)
    }
}

impl<T: riffle::Data + Serialize> SinkPartition for PostgresSinkPartition<T> {
    type Item = T;
    type State = ();

    fn write_batch(&mut self, items: Vec<T>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(items.len());
        let mut seen = vec![false; self.columns.len()];
        for item in &items {
            let row = columns_of(item).map_err(|why| self.refuse(why))?;
            for name in row.keys() {
                match self.columns.iter().position(|c| c == name) {
                    Some(i) => seen[i] = true,
                    None => {
                        return Err(
                            self.refuse(format!("no column {name:?} for a field of an item"))
                        );
                    }
                }
            }
            rows.push(row);
        }
        if let WriteMode::Upsert(keys) = &self.mode {
            // One row per key and batch (the last item wins): a statement may not
            // update a row twice.
            let mut at: HashMap<String, usize> = HashMap::new();
            let mut kept: Vec<Map<String, Value>> = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(k) = keys.iter().find(|k| row.get(*k).is_none_or(Value::is_null)) {
                    return Err(self.refuse(format!("an item has no value for key column {k:?}")));
                }
                match at.entry(key_of(&row, keys)) {
                    std::collections::hash_map::Entry::Occupied(e) => kept[*e.get()] = row,
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(kept.len());
                        kept.push(row);
                    }
                }
            }
            rows = kept;
        }
        let columns: Vec<String> = self
            .columns
            .iter()
            .zip(&seen)
            .filter(|(_, s)| **s)
            .map(|(c, _)| c.clone())
            .collect();
        self.batches
            .send((columns, rows))
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.batches.flush().map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<()>> {
        self.flush()?;
        Ok(Some(()))
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.flush()
    }
}

/// One batch for the writer: the columns it sets, and its rows.
type Batch = (Vec<String>, Vec<Map<String, Value>>);

impl BatchWriter for Writer {
    type Batch = Batch;

    async fn write(&mut self, (columns, rows): Batch) -> Result<(), ConnectorError> {
        self.write_batch(&columns, &rows).await
    }
}

/// The task that writes one lane's batches, one transaction each, in order.
struct Writer {
    settings: PostgresSettings,
    client: Option<Client>,
    table: String,
    mode: WriteMode,
}

impl Writer {
    /// Writes one batch, again on a new connection when the server went away, for
    /// at most the settings' patience (the [`Outage`] the readers use too). An
    /// upsert written twice changes nothing; a `COPY` whose commit was lost with
    /// the connection may append twice.
    async fn write_batch(
        &mut self,
        columns: &[String],
        rows: &[Map<String, Value>],
    ) -> Result<(), ConnectorError> {
        let what = format!("{} rows to table {:?}", rows.len(), self.table);
        let mut outage = Outage::writing();
        loop {
            match self.try_batch(columns, rows).await {
                Ok(()) => {
                    outage.over(&self.settings, &what);
                    return Ok(());
                }
                Err(Failure::Gone(why)) => {
                    self.client = None;
                    outage.gone(&self.settings, &what, &why).await?;
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    /// One try at a batch, connecting first when the last connection was lost.
    async fn try_batch(
        &mut self,
        columns: &[String],
        rows: &[Map<String, Value>],
    ) -> Result<(), Failure> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let client = self.settings.connect().await.map_err(Failure::of_connect)?;
                self.client.insert(client)
            }
        };
        once(client, &self.table, &self.mode, columns, rows)
            .await
            .map_err(|e| {
                if transient(&e) {
                    Failure::Gone(says(&e))
                } else {
                    Failure::Fatal(
                        self.settings
                            .error(format!(
                                "cannot write {} rows to table {:?}: {}",
                                rows.len(),
                                self.table,
                                says(&e)
                            ))
                            .caused_by(e),
                    )
                }
            })
    }
}

/// One try at a batch: one transaction.
async fn once(
    client: &mut Client,
    table: &str,
    mode: &WriteMode,
    columns: &[String],
    rows: &[Map<String, Value>],
) -> Result<(), tokio_postgres::Error> {
    let t = quote_table(table);
    let list = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let transaction = client.transaction().await?;
    match mode {
        WriteMode::Upsert(keys) => {
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| !keys.contains(c))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
                .collect();
            let on_conflict = if updates.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            let keys = keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "INSERT INTO {t} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{t}, $1::text::json) \
                 ON CONFLICT ({keys}) {on_conflict}"
            );
            let json = Value::Array(rows.iter().cloned().map(Value::Object).collect()).to_string();
            transaction.execute(&sql, &[&json]).await?;
        }
        WriteMode::Append => {
            let sql = format!("COPY {t} ({list}) FROM STDIN");
            let mut text = String::new();
            for row in rows {
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        text.push('\t');
                    }
                    copy_field(&mut text, row.get(c));
                }
                text.push('\n');
            }
            let sink = transaction.copy_in::<_, bytes::Bytes>(&sql).await?;
            futures_util::pin_mut!(sink);
            sink.send(bytes::Bytes::from(text)).await?;
            sink.finish().await?;
        }
    }
    transaction.commit().await
}

/// A value as a field of `COPY`'s text format.
fn copy_field(out: &mut String, value: Option<&Value>) {
    let text = match value {
        None | Some(Value::Null) => {
            out.push_str("\\N");
            return;
        }
        Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        Some(other) => std::borrow::Cow::Owned(other.to_string()),
    };
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_the_text_format_would_split_on() {
        let mut out = String::new();
        copy_field(&mut out, Some(&Value::String("a\tb\\c\nd".into())));
        assert_eq!(out, "a\\tb\\\\c\\nd");
        out.clear();
        copy_field(&mut out, None);
        assert_eq!(out, "\\N");
        out.clear();
        copy_field(&mut out, Some(&serde_json::json!({"k": [1, 2]})));
        assert_eq!(out, r#"{"k":[1,2]}"#);
    }
}
