//! The `redis-wordcount` example: lines from Redis streams in, running word counts
//! out to another stream (or to files), at-least-once across crashes.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle::sinks::DirSink;
use riffle_connectors::redis::{RedisRecord, RedisSettings, RedisSink, RedisSource};

use crate::dataflows::words;
use crate::tls::TlsOptions;

/// The `redis-wordcount` flow: reads the field `value` of the entries of
/// `-P streams=A,B` (stream keys) on `-P url=` (or `RIFFLE_REDIS_URL`) through the
/// consumer group `riffle.redis-wordcount`, counts words, and adds each word's
/// running count to the stream `-P out=` (default `{first stream}-counts`) as an
/// entry with fields `word` and `value` (the count), routed by the word.
/// `-P tail=false` stops at the streams' last entries; `-P out-dir=PATH` writes
/// `word,count` lines into files under `PATH` instead. Entries are acknowledged
/// only once their counts are written (or, under `--recovery`, committed), so a
/// crash loses nothing; a count may be written twice (at-least-once). With a
/// `rediss://` URL, `-P tls_ca=PEM` checks the server against those CAs (else the
/// system's roots) and `-P tls_cert=` with `-P tls_key=` gives a client
/// certificate; a password comes only from the environment (see [`RedisSettings`]).
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("url".into(), "redis://127.0.0.1:6379".into()), ("streams".into(), "lines".into())].into());
/// let flow = riffle_examples::redis::redis_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "redis-wordcount");
/// ```
pub fn redis_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let url = match ctx.param("url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_REDIS_URL").map_err(|_| {
            anyhow::anyhow!("redis-wordcount needs -P url=redis://HOST:PORT (or RIFFLE_REDIS_URL)")
        })?,
    };
    let streams: Vec<String> = ctx
        .param("streams")
        .ok_or_else(|| {
            anyhow::anyhow!("redis-wordcount needs -P streams=KEY[,KEY...] (the streams of lines)")
        })?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let Some(first) = streams.first() else {
        anyhow::bail!("-P streams= names no stream");
    };
    let out = ctx.param_or("out", &format!("{first}-counts"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let out_dir = ctx.param("out-dir");
    let mut settings = RedisSettings::new(url);
    let tls = TlsOptions::from_params(ctx, "redis-wordcount")?;
    if let Some(ca) = tls.ca {
        settings = settings.tls_ca(ca);
    }
    if let Some((cert, key)) = tls.identity {
        settings = settings.tls_identity(cert, key);
    }
    let counter = ctx.counter("words");
    let flow = Dataflow::new("redis-wordcount");
    let counts = flow
        .input(
            "lines",
            RedisSource::new(settings.clone(), streams)
                .group("riffle.redis-wordcount")
                .tail(tail),
        )?
        .flat_map("split", move |entry| {
            let words: Vec<(String, ())> = entry
                .value()
                .map(words)
                .into_iter()
                .flatten()
                .map(|w| (w, ()))
                .collect();
            counter.fetch_add(words.len() as u64, Ordering::Relaxed);
            words
        })?
        .stateful_map("count", |_| 0u64, |n, ()| (Some(n + 1), n + 1))?;
    match out_dir {
        Some(dir) => counts
            .map("line", |(word, n): (String, u64)| {
                let line = format!("{word},{n}");
                (word, line)
            })?
            .output("counts", DirSink::new(dir, 4))?,
        None => counts
            .map("record", |(word, n): (String, u64)| {
                RedisRecord::with_fields([("word", word.clone()), ("value", n.to_string())])
                    .key(word)
            })?
            .output("counts", RedisSink::new(settings, [out]))?,
    }
    Ok(flow)
}
