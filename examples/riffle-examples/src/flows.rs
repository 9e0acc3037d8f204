//! The bundled Flows: the applications `riffle flow run NAME` knows.
//!
//! `notes` runs on nothing but a file: a collector at `POST /notes` that appends
//! each note to a JSON-lines file (`-P out=PATH`, default `notes.jsonl`) and
//! answers once it is written, and a `notes` service with `GET /health` and
//! `GET /notes/{id}/echo` (a typed request from the path and the query).

use riffle::sinks::JsonLinesSink;
use riffle_flow::{Flow, FlowContext, HttpError, Method};
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
    vec![FlowExample {
        name: "notes",
        about: "POST /notes appends each note to a JSON-lines file (-P out=PATH); GET /health",
        build: notes,
    }]
}

/// A note, as posted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Note {
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
}

#[derive(Debug, Deserialize)]
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
        JsonLinesSink::<Note>::new(out),
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
