//! The `duckdb-wordcount` example: lines from a DuckDB table in, each word's
//! running count appended as a row to another table of the same database file,
//! exactly-once under `--recovery`. Built with the `duckdb` feature only.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::duckdb::{DuckdbSettings, DuckdbSink, DuckdbSource, quote_table};

use crate::dataflows::words;

/// A word's running count: one row of the output table `(word VARCHAR, count
/// BIGINT)`; a word read n times has the rows 1, 2, ..., n.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WordCount {
    /// The word.
    pub word: String,
    /// How many times it was read so far.
    pub count: i64,
}

/// The `duckdb-wordcount` flow: reads the column `-P line=` (default `line`) of
/// the table `-P table=` in the database file `-P db=` in the order of the
/// increasing column `-P column=` (default `id`), counts words, and appends each
/// word's running count to the table `-P out=` (default `{table}_counts`, made
/// when missing). `-P tail=true` follows new rows (every `-P poll=500ms`); by
/// default the run reads what the table holds and ends; `-P partitions=N` writes
/// on N connections (1). Under `--recovery` a crash
/// loses nothing and writes nothing twice: every count is in the table once.
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("db".into(), "shop.duckdb".into()), ("table".into(), "lines".into())].into());
/// let flow = riffle_examples::duckdb::duckdb_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "duckdb-wordcount");
/// ```
pub fn duckdb_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let db = ctx
        .param("db")
        .ok_or_else(|| anyhow::anyhow!("duckdb-wordcount needs -P db=FILE (the database file)"))?;
    let table = ctx
        .param("table")
        .ok_or_else(|| {
            anyhow::anyhow!("duckdb-wordcount needs -P table=NAME (the table of lines)")
        })?
        .to_string();
    let column = ctx.param_or("column", "id");
    let line = ctx.param_or("line", "line");
    let out = ctx.param_or("out", &format!("{table}_counts"));
    let tail: bool = ctx.parsed_param_or("tail", false)?;
    let partitions: usize = ctx.parsed_param_or("partitions", 1)?;
    let poll = riffle::duration::parse(&ctx.param_or("poll", "500ms"))
        .map_err(|e| anyhow::anyhow!("-P poll: {e}"))?;
    let settings = DuckdbSettings::new(db);
    let counter = ctx.counter("words");
    let flow = Dataflow::new("duckdb-wordcount");
    let query = format!("SELECT * FROM {}", quote_table(&table));
    flow.input(
        "lines",
        DuckdbSource::query(settings.clone(), query)
            .ordered_by(column)
            .tail(tail)
            .poll_every(poll),
    )?
    .flat_map("split", move |row| {
        let words: Vec<(String, ())> = row
            .value
            .get(&line)
            .and_then(|v| v.as_str())
            .map(words)
            .into_iter()
            .flatten()
            .map(|w| (w, ()))
            .collect();
        counter.fetch_add(words.len() as u64, Ordering::Relaxed);
        words
    })?
    .stateful_map("count", |_| 0i64, |n, ()| (Some(n + 1), n + 1))?
    .map("row", |(word, count): (String, i64)| WordCount {
        word,
        count,
    })?
    .output(
        "counts",
        DuckdbSink::append(settings, out).partitions(partitions),
    )?;
    Ok(flow)
}
