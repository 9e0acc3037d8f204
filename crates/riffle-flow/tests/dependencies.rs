//! Dependencies by scope: made once per flow, per replica, per request; a wider
//! scope cannot be made from a narrower one; a dependency that cannot be made
//! stops a consumer's replica (not a dead letter) and answers HTTP with 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use riffle::sinks::TestingSink;
use riffle::sources::{FileSource, TestingSource};
use riffle_flow::schemars::{self, JsonSchema};
use riffle_flow::{Flow, FlowError, HttpError, Method, RunOptions, Scope};
use serde::{Deserialize, Serialize};

fn loopback() -> RunOptions {
    RunOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// A counter of how many times a maker ran, and the maker giving each value
/// its number.
fn counted(
    makes: &Arc<AtomicUsize>,
) -> impl Fn() -> Result<usize, riffle_flow::dependency::BoxError> + use<> {
    let makes = makes.clone();
    move || Ok(makes.fetch_add(1, Ordering::SeqCst))
}

#[test]
fn each_scope_makes_its_value_once_per_flow_replica_and_item() {
    let dir = tempfile::tempdir().unwrap();
    for p in 0..4 {
        let lines: String = (0..25).map(|i| format!("{}\n", p * 100 + i)).collect();
        std::fs::write(dir.path().join(format!("part-{p}.txt")), lines).unwrap();
    }
    let (flows, replicas, requests) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut flow = Flow::new("scopes");
    let pool = flow
        .dependency("pool", Scope::Flow, counted(&flows))
        .unwrap();
    let conn = flow
        .dependency("conn", Scope::Replica, counted(&replicas))
        .unwrap();
    let call = flow
        .dependency("call", Scope::Request, counted(&requests))
        .unwrap();
    let out = TestingSink::new();
    flow.consumer(
        "tag",
        FileSource::new(dir.path()),
        out.clone(),
        move |line: String| {
            let first = call.get()?;
            // Asked twice in one request: the same value.
            let again = call.get()?;
            assert!(Arc::ptr_eq(&first, &again));
            Ok::<_, FlowError>([(line, *pool.get()?, *conn.get()?, *first)])
        },
    )
    .unwrap()
    .replicas(2);
    flow.run(loopback()).unwrap();
    let out = out.take();
    assert_eq!(out.len(), 100);
    assert_eq!(flows.load(Ordering::SeqCst), 1, "one pool for the flow");
    assert_eq!(replicas.load(Ordering::SeqCst), 2, "one conn per replica");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        100,
        "one call value per item"
    );
    // Every item saw the one pool; the replicas' conns are 0 and 1, each
    // used by the 50 lines of its two files.
    assert!(out.iter().all(|(_, pool, _, _)| *pool == 0));
    for conn in 0..2 {
        assert_eq!(out.iter().filter(|(_, _, c, _)| *c == conn).count(), 50);
    }
    let mut calls: Vec<usize> = out.iter().map(|(_, _, _, call)| *call).collect();
    calls.sort_unstable();
    assert_eq!(calls, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_wider_scope_made_from_a_narrower_one_stops_the_start_naming_both() {
    let mut flow = Flow::new("narrow");
    let call = flow
        .dependency("call", Scope::Request, || Ok(7u32))
        .unwrap();
    flow.dependency("pool", Scope::Flow, move || Ok(*call.get()? + 1))
        .unwrap();
    let out = TestingSink::new();
    flow.consumer("c", TestingSource::new(vec![1u32]), out, |x: u32| {
        Ok::<_, String>([x])
    })
    .unwrap();
    let e = flow.run(loopback()).unwrap_err().to_string();
    assert!(
        e.contains("\"call\" (request scope)")
            && e.contains("\"pool\" (flow scope)")
            && e.contains("a narrower scope cannot make a wider one"),
        "{e}"
    );
}

#[test]
fn a_replica_dependency_that_cannot_be_made_stops_the_consumer_without_dead_letters() {
    let mut flow = Flow::new("broken");
    let conn = flow
        .dependency("conn", Scope::Replica, || -> Result<u32, _> {
            Err("connection refused by db.example:5432".into())
        })
        .unwrap();
    let (out, letters) = (TestingSink::new(), TestingSink::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    flow.consumer(
        "load",
        TestingSource::new(vec![1u32, 2, 3]),
        out.clone(),
        move |x: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, FlowError>([x + *conn.get()?])
        },
    )
    .unwrap()
    .attempts(5)
    .dead_letters(letters.clone(), |l: riffle::dead_letters::DeadLetter| l);
    let e = flow.run(loopback()).unwrap_err().to_string();
    assert!(
        e.contains("\"load\"")
            && e.contains("dependency \"conn\" (replica scope) cannot be made")
            && e.contains("connection refused by db.example:5432"),
        "{e}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not tried again");
    assert!(out.take().is_empty());
    assert!(letters.take().is_empty(), "not the item's fault");
}

#[test]
fn asked_for_outside_a_processor_is_an_error_naming_it() {
    let mut flow = Flow::new("outside");
    let pool = flow.dependency("pool", Scope::Flow, || Ok(1u8)).unwrap();
    let e = pool.get().unwrap_err().to_string();
    assert!(e.contains("\"pool\"") && e.contains("outside"), "{e}");
}

#[derive(Deserialize, JsonSchema)]
struct Ask {
    q: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
struct Seen {
    replica: usize,
    request: usize,
}

#[test]
fn endpoints_share_the_process_replica_and_get_a_request_each_or_503() {
    let replicas = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let mut flow = Flow::new("api");
    let conn = flow
        .dependency("conn", Scope::Replica, counted(&replicas))
        .unwrap();
    let call = flow
        .dependency("call", Scope::Request, counted(&requests))
        .unwrap();
    let down = flow
        .dependency("down", Scope::Request, || -> Result<u8, _> {
            Err("cache.example:6379 unreachable".into())
        })
        .unwrap();
    flow.service("api")
        .unwrap()
        .endpoint("/seen", Method::GET, move |_: Ask| {
            let (conn, call) = (conn.clone(), call.clone());
            async move {
                Ok(Seen {
                    replica: *conn.get()?,
                    request: *call.get()?,
                })
            }
        })
        .unwrap()
        .endpoint("/down", Method::GET, move |_: Ask| {
            let down = down.clone();
            async move {
                down.get()?;
                Ok::<_, HttpError>(Seen {
                    replica: 0,
                    request: 0,
                })
            }
        })
        .unwrap();
    let running = flow.start(loopback()).unwrap();
    let client = reqwest::blocking::Client::new();
    for n in 0..3 {
        let seen: Seen = client
            .get(format!("http://{}/seen?q=x", running.addr()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            seen,
            Seen {
                replica: 0,
                request: n
            }
        );
    }
    let down = client
        .get(format!("http://{}/down?q=x", running.addr()))
        .send()
        .unwrap();
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("dependency \"down\" (request scope) cannot be made")
            && error.contains("cache.example:6379 unreachable"),
        "{error}"
    );
    running.stop();
    running.wait().unwrap();
    assert_eq!(replicas.load(Ordering::SeqCst), 1);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
struct Hello {
    text: String,
}

#[test]
fn a_bearer_token_check_answers_401_and_names_the_caller() {
    let mut flow = Flow::new("secured");
    let caller = flow
        .dependency("caller", Scope::Request, || {
            let token = riffle_flow::dependency::bearer_token()?;
            match token.as_str() {
                "t-ann" => Ok("ann".to_string()),
                _ => Err(HttpError::unauthorized(format!("unknown token {token:?}")).into()),
            }
        })
        .unwrap();
    flow.service("hello")
        .unwrap()
        .endpoint("/hello", Method::GET, move |_: Ask| {
            let caller = caller.clone();
            async move {
                Ok(Hello {
                    text: format!("hello {}", caller.get()?),
                })
            }
        })
        .unwrap();
    let running = flow.start(loopback()).unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/hello?q=x", running.addr());
    let ask = |auth: Option<&str>| {
        let mut request = client.get(&url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().unwrap())
    };
    let (status, body) = ask(Some("Bearer t-ann"));
    assert_eq!(
        (status, &body["text"]),
        (200, &serde_json::json!("hello ann"))
    );
    let (status, body) = ask(None);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "no Authorization header");
    let (status, body) = ask(Some("Basic abc"));
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("Bearer TOKEN"),
        "{body}"
    );
    let (status, body) = ask(Some("Bearer t-bob"));
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unknown token \"t-bob\"");
    running.stop();
    running.wait().unwrap();
}

#[test]
fn a_writer_to_any_sink_is_a_dependency_an_endpoint_writes_through() {
    use riffle_flow::SinkWriter;

    let events = TestingSink::new();
    let sink = events.clone();
    let mut flow = Flow::new("audited");
    let audit = flow
        .dependency("audit", Scope::Flow, move || {
            Ok(SinkWriter::start("audit", sink.clone())?)
        })
        .unwrap();
    flow.service("api")
        .unwrap()
        .endpoint("/hello", Method::GET, move |ask: Ask| {
            let audit = audit.clone();
            async move {
                // Answered once the audit sink has the event.
                audit
                    .get()?
                    .write_async(vec![format!("asked {}", ask.q)])
                    .await?;
                Ok(Hello {
                    text: format!("hello {}", ask.q),
                })
            }
        })
        .unwrap();
    let running = flow.start(loopback()).unwrap();
    let hello: Hello = reqwest::blocking::get(format!("http://{}/hello?q=ann", running.addr()))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(hello.text, "hello ann");
    assert_eq!(events.take(), ["asked ann"]);
    running.stop();
    running.wait().unwrap();
}
