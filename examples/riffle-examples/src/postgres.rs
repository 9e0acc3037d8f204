//! The `postgres-wordcount` example: lines from a PostgreSQL table in, each word's
//! count upserted into another table, exactly-once under `--recovery`.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::postgres::admin::{self, Column};
use riffle_connectors::postgres::{PostgresSettings, PostgresSink, PostgresSource};

use crate::dataflows::words;

/// A word's count, one row of the output table `(word text PRIMARY KEY, count bigint)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WordCount {
    /// The word.
    pub word: String,
    /// How many times it was read so far.
    pub count: i64,
}

/// The `postgres-wordcount` flow: reads the column `line` (`-P line=`) of the rows
/// of `-P table=` on `-P url=` (or `RIFFLE_POSTGRES_URL`; the password from
/// `RIFFLE_POSTGRES_PASSWORD`) in the order of the increasing column `-P column=`
/// (default `id`), counts words, and upserts each word's running count into the
/// table `-P out=` (default `{table}_counts`, made when missing as `(word text
/// PRIMARY KEY, count bigint)`). `-P tail=false` reads to the end the table has at
/// the start; `-P poll=500ms` is how often a following run looks for new rows.
/// Under `--recovery` a crash loses nothing and a replayed epoch rewrites the same
/// counts: the table ends exactly-once.
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("url".into(), "postgres://riffle@127.0.0.1:1/x".into()), ("table".into(), "lines".into()), ("create".into(), "false".into())].into());
/// let flow = riffle_examples::postgres::postgres_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "postgres-wordcount");
/// ```
pub fn postgres_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let url = match ctx.param("url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_POSTGRES_URL").map_err(|_| {
            anyhow::anyhow!(
                "postgres-wordcount needs -P url=postgres://USER@HOST:PORT/DB (or RIFFLE_POSTGRES_URL)"
            )
        })?,
    };
    let table = ctx
        .param("table")
        .ok_or_else(|| {
            anyhow::anyhow!("postgres-wordcount needs -P table=NAME (the table of lines)")
        })?
        .to_string();
    let column = ctx.param_or("column", "id");
    let line = ctx.param_or("line", "line");
    let out = ctx.param_or("out", &format!("{table}_counts"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let create: bool = ctx.parsed_param_or("create", true)?;
    let poll = riffle::duration::parse(&ctx.param_or("poll", "500ms"))
        .map_err(|e| anyhow::anyhow!("-P poll: {e}"))?;
    let settings = PostgresSettings::new(url);
    if create {
        admin::create_table(
            &settings,
            &out,
            &[
                Column::new("word", "text"),
                Column::new("count", "bigint NOT NULL"),
            ],
            &["word"],
        )?;
    }
    let counter = ctx.counter("words");
    let flow = Dataflow::new("postgres-wordcount");
    flow.input(
        "lines",
        PostgresSource::table(settings.clone(), table, column)
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
    .output("counts", PostgresSink::upsert(settings, out, ["word"]))?;
    Ok(flow)
}
