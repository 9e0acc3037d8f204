//! The `rabbitmq-wordcount` example: lines from RabbitMQ queues in, running word
//! counts out to another queue (or to files), at-least-once across crashes.

use std::sync::atomic::Ordering;

use riffle::Dataflow;
use riffle::context::DataflowContext;
use riffle::sinks::DirSink;
use riffle_connectors::rabbitmq::{RabbitRecord, RabbitSettings, RabbitSink, RabbitSource};

use crate::dataflows::words;
use crate::tls::TlsOptions;

/// The `rabbitmq-wordcount` flow: consumes the messages of `-P queues=A,B` on
/// `-P url=` (or `RIFFLE_RABBITMQ_URL`), counts the words of each body, and
/// publishes each word's running count to the queue `-P out=` (default
/// `{first queue}-counts`, which must exist) as a `word,count` body, keyed by the
/// word. `-P tail=false` stops after the messages the queues held when the run
/// started; `-P prefetch=N` bounds what the broker delivers ahead of a commit
/// (default 10000); `-P out-dir=PATH` writes `word,count` lines into files under
/// `PATH` instead. Over TLS (`-P url=amqps://...`), `-P tls_ca=FILE` is a PEM
/// file of the CAs that sign the broker's certificate (the system's roots
/// otherwise) and `-P tls_cert=FILE -P tls_key=FILE` a client certificate for
/// brokers that verify clients. Messages are acknowledged only once their counts are
/// published and confirmed (or, under `--recovery`, committed), so a crash loses
/// nothing; a count may be published twice (at-least-once).
///
/// ```
/// use riffle::context::DataflowContext;
/// let ctx = DataflowContext::new([("url".into(), "amqp://127.0.0.1:5672/%2f".into()), ("queues".into(), "lines".into())].into());
/// let flow = riffle_examples::rabbitmq::rabbitmq_wordcount(&ctx).unwrap();
/// assert_eq!(flow.name(), "rabbitmq-wordcount");
/// ```
pub fn rabbitmq_wordcount(ctx: &DataflowContext) -> anyhow::Result<Dataflow> {
    let url = match ctx.param("url") {
        Some(u) => u.to_string(),
        None => std::env::var("RIFFLE_RABBITMQ_URL").map_err(|_| {
            anyhow::anyhow!(
                "rabbitmq-wordcount needs -P url=amqp://HOST:PORT/VHOST (or RIFFLE_RABBITMQ_URL)"
            )
        })?,
    };
    let queues: Vec<String> = ctx
        .param("queues")
        .ok_or_else(|| {
            anyhow::anyhow!(
                "rabbitmq-wordcount needs -P queues=NAME[,NAME...] (the queues of lines)"
            )
        })?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let Some(first) = queues.first() else {
        anyhow::bail!("-P queues= names no queue");
    };
    let out = ctx.param_or("out", &format!("{first}-counts"));
    let tail: bool = ctx.parsed_param_or("tail", true)?;
    let prefetch: u16 = ctx.parsed_param_or("prefetch", 10_000)?;
    let out_dir = ctx.param("out-dir");
    let mut settings = RabbitSettings::new(url);
    let tls = TlsOptions::from_params(ctx, "rabbitmq-wordcount")?;
    if let Some(ca) = tls.ca {
        settings = settings.tls_ca(ca);
    }
    if let Some((cert, key)) = tls.identity {
        settings = settings.tls_identity(cert, key);
    }
    let counter = ctx.counter("words");
    let flow = Dataflow::new("rabbitmq-wordcount");
    let counts = flow
        .input(
            "lines",
            RabbitSource::new(settings.clone(), queues)
                .prefetch(prefetch)
                .tail(tail),
        )?
        .flat_map("split", move |message| {
            let words: Vec<(String, ())> = message
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
                RabbitRecord::new(format!("{word},{n}")).key(word)
            })?
            .output("counts", RabbitSink::queues(settings, [out]))?,
    }
    Ok(flow)
}
