//! The bundled Flows: the applications `riffle flow run NAME` knows.
//!
//! `notes` runs on nothing but a file: a collector at `POST /notes` that appends
//! each note to a JSON-lines file (`-P out=PATH`, default `notes.jsonl`) and
//! answers once it is written, and a `notes` service with `GET /health` and
//! `GET /notes/{id}/echo` (a typed request from the path and the query). With
//! `-P max_replicas=N` its service scales across 1 to N pods on its requests in
//! flight (`-P in_flight=N` per pod, default 16) in `riffle flow manifests`.
//!
//! `kafka-to-postgres` is a consumer of JSON records `{"id": N, "value": "..."}`
//! from a Kafka topic (`-P brokers=... -P topic=...`) upserted by `id` into a
//! PostgreSQL table (`-P postgres=URL -P table=...`), on `-P replicas=N` replicas
//! (default 2); with `-P append_table=...` a second consumer (a group of its own)
//! appends every record it reads to that table too, which shows what was read
//! more than once. Records that are not such JSON go to `-P dead_letters=PATH`
//! (default `dead-letters.jsonl`). It declares its topic (`-P partitions=N`,
//! default 4) and tables, so `riffle flow apply kafka-to-postgres -P ...` makes
//! them and `riffle flow destroy` removes what it made.

use riffle::dead_letters::DeadLetter;
use riffle::sinks::JsonLinesSink;
use riffle_connectors::kafka::{KafkaMessage, KafkaSettings, KafkaSource, StartOffset, Utf8};
use riffle_connectors::postgres::{PostgresSettings, PostgresSink};
use riffle_flow::primitives::{KafkaTopic, PostgresTable};
use riffle_flow::{Autoscale, Flow, FlowContext, HttpError, HttpScaling, Method};
use serde::{Deserialize, Serialize};

/// A registered flow: its name, one line about it, and its builder.
pub struct FlowExample {
    /// The name `riffle flow run` takes.
    pub name: &'static str,
    /// One line for `riffle flow list`.
    pub about: &'static str,
    /// Builds it.
    pub build: fn(&FlowContext) -> anyhow::Result<Flow>,
}

/// Every bundled flow.
pub fn flows() -> Vec<FlowExample> {
    vec![
        FlowExample {
            name: "notes",
            about: "POST /notes appends each note to a JSON-lines file (-P out=PATH); GET /health",
            build: notes,
        },
        FlowExample {
            name: "kafka-to-postgres",
            about: "upsert JSON records of a Kafka topic into a PostgreSQL table (-P brokers, topic, postgres, table)",
            build: kafka_to_postgres,
        },
    ]
}

/// A note, as posted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Note {
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
}

#[derive(Debug, Deserialize, riffle_flow::schemars::JsonSchema)]
#[schemars(crate = "riffle_flow::schemars")]
struct Echo {
    id: u64,
    #[serde(default)]
    times: Option<u32>,
}

/// The `notes` flow; see the [module docs](self).
pub fn notes(ctx: &FlowContext) -> anyhow::Result<Flow> {
    let mut flow = Flow::new(ctx.flow());
    let out = ctx.setting_or("out", "notes.jsonl");
    flow.collector(
        "/notes",
        Method::POST,
        JsonLinesSink::<Note>::new(out).appending(),
        |note: Note| {
            if note.text.trim().is_empty() {
                return Err(format!("the note of {} has no text", note.author));
            }
            Ok([note])
        },
    )?;
    flow.service("notes")?
        .endpoint("/health", Method::GET, |_: serde_json::Value| async {
            Ok(serde_json::json!({ "ok": true }))
        })?
        .endpoint("/notes/{id}/echo", Method::GET, |e: Echo| async move {
            match e.times {
                Some(0) => Err(HttpError::bad_request("times must be at least 1")),
                times => Ok(vec![e.id; times.unwrap_or(1) as usize]),
            }
        })?;
    if let Some(max) = ctx.setting("max_replicas") {
        let in_flight = ctx.setting_or("in_flight", "16").parse()?;
        flow.scale_http(
            "notes",
            HttpScaling::new(1, max.parse()?).in_flight_per_replica(in_flight),
        )?;
    }
    Ok(flow)
}

/// A record of the `kafka-to-postgres` flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Its key: one row per id in the upserted table.
    pub id: i64,
    /// Its value.
    pub value: String,
}

/// The `kafka-to-postgres` flow; see the [module docs](self).
pub fn kafka_to_postgres(ctx: &FlowContext) -> anyhow::Result<Flow> {
    let kafka = KafkaSettings::new(ctx.require("brokers")?);
    let topic = ctx.require("topic")?;
    let postgres = PostgresSettings::new(ctx.require("postgres")?);
    let replicas: usize = ctx.setting_or("replicas", "2").parse()?;
    let letters = ctx.setting_or("dead_letters", "dead-letters.jsonl");
    // With -P max_replicas=N, each consumer scales between -P min_replicas (default
    // 1) and N replicas on its group's lag.
    let scaling = match ctx.setting("max_replicas") {
        Some(max) => Some(Autoscale::new(
            ctx.setting_or("min_replicas", "1").parse()?,
            max.parse()?,
        )),
        None => None,
    };
    let mut flow = Flow::new(ctx.flow());
    let mut consumer = |id: &str, sink: PostgresSink<Record>| -> anyhow::Result<()> {
        let source = KafkaSource::new(kafka.clone(), [topic.as_str()])
            .format(Utf8)
            .group_id(format!("riffle-flow-{topic}-{id}"))
            .start(StartOffset::Committed);
        let options = flow.consumer(id, source, sink, |m: KafkaMessage<String>| {
            serde_json::from_str::<Record>(m.value.as_deref().unwrap_or("")).map(Some)
        })?;
        options.replicas(replicas).attempts(1).dead_letters(
            JsonLinesSink::<DeadLetter>::new(format!("{letters}.{id}")).appending(),
            |l| l,
        );
        if let Some(scaling) = &scaling {
            options.autoscale(scaling.clone());
        }
        Ok(())
    };
    let table = ctx.require("table")?;
    consumer(
        "upsert",
        PostgresSink::upsert(postgres.clone(), table.as_str(), ["id"]),
    )?;
    let appended = ctx.setting("append_table");
    if let Some(table) = &appended {
        consumer(
            "append",
            PostgresSink::append(postgres.clone(), table.as_str()),
        )?;
    }
    // What `riffle flow apply` makes (and `destroy` removes) for it.
    let partitions: i32 = ctx.setting_or("partitions", "4").parse()?;
    flow.manage(KafkaTopic::new(kafka, topic.as_str(), partitions))?;
    let columns = [("id", "bigint"), ("value", "text")];
    flow.manage(PostgresTable::new(
        postgres.clone(),
        table.as_str(),
        &columns,
        &["id"],
    ))?;
    if let Some(table) = appended {
        flow.manage(PostgresTable::new(postgres, table, &columns, &[]))?;
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_builds_with_its_routes() {
        let flow = notes(&FlowContext::new("notes", None, Default::default())).unwrap();
        let routes: Vec<String> = flow
            .processors()
            .into_iter()
            .filter_map(|p| p.route)
            .collect();
        assert_eq!(
            routes,
            ["POST /notes", "GET /health", "GET /notes/{id}/echo"]
        );
    }
}
