//! The `nats-wordcount` example: lines of a NATS JetStream stream in, running word
//! counts out to a subject another stream captures, exactly-once in that stream
//! (within its duplicate window) under a recovery store.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle_connectors::nats::{NatsRecord, NatsSettings, NatsSink, NatsSource, StartAt};

use crate::dataflows::words;
use crate::tls::TlsOptions;

/// The `nats-wordcount` flow: reads lines from the stream `-P stream=` on
/// `-P servers=` (or `RIFFLE_NATS_URL`), as one partition, or one per subject of
/// `-P subjects=a,b,...`; counts words; and publishes each word's running count as
/// `word,count` to the subject `-P out=` (default `{stream}.counts`; a stream must
/// capture it). Each count carries the message id `word:count`, so JetStream keeps
/// it once even when a resumed run publishes it again (`-P delivery=at-least-once`
/// sends no ids). `-P tail=false` stops at the end of the stream. The durable
/// consumers are named `-P durable=` (default `riffle-nats-wordcount`); without a
/// recovery store a run goes on from what they acknowledged. `-P tls_ca=PEM`
/// makes TLS required and checks the server against those CAs, `-P tls_cert=`
/// with `-P tls_key=` gives a client certificate, and `-P creds_file=` a NATS
/// credentials file (or `RIFFLE_NATS_CREDS`); a user and password or a token come
/// only from the environment (see [`NatsSettings`]).
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("servers".into(), "nats://127.0.0.1:4222".into()), ("stream".into(), "LINES".into())].into());
/// let flow = riffle_examples::nats::nats_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "nats-wordcount");
/// ```
pub fn nats_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let servers = match ctx.param("servers") {
        Some(s) => s.to_string(),
        None => std::env::var("RIFFLE_NATS_URL").map_err(|_| {
            anyhow::anyhow!("nats-wordcount needs -P servers=nats://HOST:PORT (or RIFFLE_NATS_URL)")
        })?,
    };
    let stream = ctx
        .param("stream")
        .ok_or_else(|| {
            anyhow::anyhow!("nats-wordcount needs -P stream=NAME (the stream of lines to count)")
        })?
        .to_string();
    let out = ctx.param_or("out", &format!("{stream}.counts"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let with_ids = match ctx.param_or("delivery", "exactly-once").as_str() {
        "exactly-once" => true,
        "at-least-once" => false,
        other => anyhow::bail!("-P delivery={other:?}: use exactly-once or at-least-once"),
    };
    let filters: Vec<String> = ctx
        .param("subjects")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let durable = ctx.param_or("durable", "riffle-nats-wordcount");
    let mut settings = NatsSettings::new(servers);
    let tls = TlsOptions::from_params(ctx, "nats-wordcount")?;
    if let Some(ca) = tls.ca {
        settings = settings.tls_ca(ca);
    }
    if let Some((cert, key)) = tls.identity {
        settings = settings.tls_identity(cert, key);
    }
    if let Some(creds) = ctx.param("creds_file").filter(|c| !c.is_empty()) {
        settings = settings.creds_file(creds);
    }
    let counter = ctx.counter("words");
    let flow = Dataflow::new("nats-wordcount");
    flow.input(
        "lines",
        NatsSource::new(settings.clone(), &stream)
            .filters(filters)
            .durable(durable)
            .start(StartAt::First)
            .tail(tail),
    )?
    .flat_map("split", move |m| {
        let words: Vec<(String, ())> = m
            .text()
            .map(words)
            .into_iter()
            .flatten()
            .map(|w| (w, ()))
            .collect();
        counter.fetch_add(words.len() as u64, Ordering::Relaxed);
        words
    })?
    .stateful_map("count", |_| 0u64, |n, ()| (Some(n + 1), n + 1))?
    .map("record", move |(word, n): (String, u64)| {
        let record = NatsRecord::new(format!("{word},{n}"));
        if with_ids {
            record.id(format!("{word}:{n}"))
        } else {
            record
        }
    })?
    .output("counts", NatsSink::new(settings, out))?;
    Ok(flow)
}
