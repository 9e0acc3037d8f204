//! Flows with in-memory sources and sinks and real HTTP on loopback: consumers'
//! retries and dead letters, a sink that refuses and comes back, collectors,
//! typed endpoints, `/metrics`, bad definitions and bad requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use riffle::dead_letters::DeadLetter;
use riffle::sinks::{FixedPartitionedSink, SinkPartition, TestingSink};
use riffle::sources::TestingSource;
use riffle_flow::schemars::{self, JsonSchema};
use riffle_flow::{Flow, FlowError, HttpError, Method, RunOptions, RunningFlow};
use serde::{Deserialize, Serialize};

fn loopback() -> RunOptions {
    RunOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

fn url(running: &RunningFlow, path: &str) -> String {
    format!("http://{}{path}", running.addr())
}

#[test]
fn a_failing_item_is_tried_again_then_becomes_a_dead_letter_and_the_rest_goes_on() {
    let mut flow = Flow::new("parse");
    let out = TestingSink::new();
    let letters = TestingSink::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let input: Vec<String> = ["1", "2", "x", "4"].map(String::from).to_vec();
    flow.consumer(
        "numbers",
        TestingSource::new(input),
        out.clone(),
        move |s: String| {
            counted.fetch_add(1, Ordering::SeqCst);
            s.parse::<u32>().map(|n| [n * 10])
        },
    )
    .unwrap()
    .attempts(3)
    .backoff(Duration::from_millis(1))
    .dead_letters(letters.clone(), |l: DeadLetter| l);
    let running = flow.start(loopback()).unwrap();
    let metrics = running.metrics().clone();
    running.wait().unwrap();
    assert_eq!(out.take_sorted(), [10, 20, 40]);
    let letters = letters.take();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].step_id, "numbers");
    assert_eq!(letters[0].input, b"\"x\"");
    assert!(
        letters[0].reason.contains("failed 3 times") && letters[0].reason.contains("invalid digit"),
        "{}",
        letters[0].reason
    );
    // Three good items once, the bad one three times.
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let text = metrics.render();
    assert!(
        text.contains(
            r#"riffle_flow_dead_letters_total{flow="parse",processor="numbers",kind="consumer"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"riffle_flow_items_in_total{flow="parse",processor="numbers",kind="consumer"} 4"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"riffle_flow_errors_total{flow="parse",processor="numbers",kind="consumer"} 3"#
        ),
        "{text}"
    );
}

#[test]
fn without_a_dead_letter_sink_a_failing_item_stops_the_consumer_naming_it() {
    let mut flow = Flow::new("strict");
    flow.consumer(
        "numbers",
        TestingSource::new(vec!["7".to_string(), "seven".to_string()]),
        TestingSink::new(),
        |s: String| s.parse::<u32>().map(Some),
    )
    .unwrap()
    .attempts(2)
    .backoff(Duration::from_millis(1));
    let err = flow.run(loopback()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FlowError::Failed { .. }), "{err:?}");
    assert!(
        text.contains("\"numbers\"") && text.contains("seven") && text.contains("dead-letter"),
        "{text}"
    );
}

/// A sink that refuses its first `refusals` writes, as a broker that is down
/// for a while does.
#[derive(Clone)]
struct Flaky {
    refusals: Arc<AtomicUsize>,
    out: TestingSink<u32>,
}

struct FlakyPart {
    refusals: Arc<AtomicUsize>,
    inner: <TestingSink<u32> as FixedPartitionedSink>::Partition,
}

impl SinkPartition for FlakyPart {
    type Item = u32;
    type State = ();
    fn write_batch(&mut self, items: Vec<u32>) -> riffle::Result<()> {
        if self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(riffle::RiffleError::connector(
                "flaky",
                "the server is away",
            ));
        }
        self.inner.write_batch(items)
    }
}

impl FixedPartitionedSink for Flaky {
    type Item = u32;
    type State = ();
    type Partition = FlakyPart;
    fn list_parts(&self, _: &str) -> riffle::Result<Vec<String>> {
        Ok(vec!["only".into()])
    }
    fn build_part(&self, step_id: &str, _: &str, _: Option<()>) -> riffle::Result<FlakyPart> {
        let name = self.out.list_parts(step_id)?.remove(0);
        Ok(FlakyPart {
            refusals: self.refusals.clone(),
            inner: self.out.build_part(step_id, &name, None)?,
        })
    }
}

#[test]
fn a_refused_write_is_written_again_until_the_sink_takes_it() {
    let mut flow = Flow::new("patient");
    let out = TestingSink::new();
    let sink = Flaky {
        refusals: Arc::new(AtomicUsize::new(3)),
        out: out.clone(),
    };
    flow.consumer(
        "copy",
        TestingSource::new((1..=5).collect()),
        sink.clone(),
        |n: u32| Ok::<_, String>([n]),
    )
    .unwrap()
    .backoff(Duration::from_millis(1));
    flow.run(loopback()).unwrap();
    assert_eq!(out.take_sorted(), [1, 2, 3, 4, 5]);
    assert_eq!(sink.refusals.load(Ordering::SeqCst), 0);
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

#[test]
fn a_collector_answers_after_the_sink_has_the_items_and_names_a_wrong_field() {
    let mut flow = Flow::new("orders");
    let out = TestingSink::new();
    flow.collector("/orders", Method::POST, out.clone(), |o: Order| {
        // One line per unit ordered; an order of nothing is refused.
        if o.quantity == 0 {
            return Err(format!("order {} is for nothing", o.id));
        }
        Ok((0..o.quantity).map(move |_| o.item.clone()))
    })
    .unwrap();
    let running = flow.start(loopback()).unwrap();
    let client = reqwest::blocking::Client::new();
    let answer = client
        .post(url(&running, "/orders"))
        .json(&Order {
            id: 1,
            item: "tea".into(),
            quantity: 2,
        })
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap(),
        serde_json::json!({"written": 2})
    );
    // Answered means written.
    assert_eq!(out.take(), ["tea", "tea"]);

    let wrong = client
        .post(url(&running, "/orders"))
        .body(r#"{"id": 2, "item": "tea", "quantity": "many"}"#)
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 422);
    let body: serde_json::Value = wrong.json().unwrap();
    assert_eq!(body["field"], "quantity", "{body}");
    let missing = client
        .post(url(&running, "/orders"))
        .body(r#"{"id": 3, "quantity": 1}"#)
        .send()
        .unwrap();
    assert_eq!(missing.status(), 422);
    assert!(missing.text().unwrap().contains("missing field `item`"));
    let not_json = client
        .post(url(&running, "/orders"))
        .body("tea please")
        .send()
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let refused = client
        .post(url(&running, "/orders"))
        .json(&Order {
            id: 4,
            item: "tea".into(),
            quantity: 0,
        })
        .send()
        .unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("order 4 is for nothing"));
    let wrong_method = client.get(url(&running, "/orders")).send().unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(out.take().is_empty());

    let metrics = client
        .get(url(&running, "/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"riffle_flow_items_in_total{flow="orders",processor="POST /orders",kind="collector"} 5"#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"riffle_flow_items_out_total{flow="orders",processor="POST /orders",kind="collector"} 2"#
    ));
    assert!(metrics.contains(r#"riffle_flow_latency_seconds_count{flow="orders",processor="POST /orders",kind="collector"} 5"#));
    running.stop();
    running.wait().unwrap();
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Lookup {
    id: u64,
    #[serde(default)]
    verbose: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Rename {
    id: u64,
    name: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
struct User {
    id: u64,
    name: String,
    detail: Option<String>,
}

#[test]
fn endpoints_take_one_typed_request_from_path_query_and_body() {
    let mut flow = Flow::new("users");
    flow.service("users")
        .unwrap()
        .endpoint("/users/{id}", Method::GET, |q: Lookup| async move {
            if q.id == 404 {
                return Err(HttpError::not_found(format!("no user {}", q.id)));
            }
            Ok(User {
                id: q.id,
                name: format!("user-{}", q.id),
                detail: q.verbose.then(|| "verbose".to_string()),
            })
        })
        .unwrap()
        .endpoint("/users/{id}", Method::PUT, |r: Rename| async move {
            Ok(User {
                id: r.id,
                name: r.name,
                detail: None,
            })
        })
        .unwrap();
    let running = flow.start(loopback()).unwrap();
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| client.get(url(&running, path)).send().unwrap();

    let user: User = get("/users/7?verbose=true").json().unwrap();
    assert_eq!(
        user,
        User {
            id: 7,
            name: "user-7".into(),
            detail: Some("verbose".into())
        }
    );
    let user: User = get("/users/8").json().unwrap();
    assert_eq!(user.detail, None);
    let missing = get("/users/404");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<serde_json::Value>().unwrap()["error"],
        "no user 404"
    );
    let wrong = get("/users/abc");
    assert_eq!(wrong.status(), 422);
    assert_eq!(wrong.json::<serde_json::Value>().unwrap()["field"], "id");
    let wrong = get("/users/9?verbose=perhaps");
    assert_eq!(wrong.status(), 422);
    assert_eq!(
        wrong.json::<serde_json::Value>().unwrap()["field"],
        "verbose"
    );

    let renamed: User = client
        .put(url(&running, "/users/9"))
        .json(&serde_json::json!({"name": "nine"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        renamed,
        User {
            id: 9,
            name: "nine".into(),
            detail: None
        }
    );
    // The service's OpenAPI document: the capture a path parameter, the rest of
    // a GET's request query parameters, a PUT's request the body.
    let doc: serde_json::Value = get("/openapi/users.json").json().unwrap();
    let lookup = &doc["paths"]["/users/{id}"]["get"];
    let params = lookup["parameters"].as_array().unwrap();
    assert_eq!(params[0]["in"], "path");
    assert_eq!(params[0]["name"], "id");
    assert_eq!(params[0]["schema"]["type"], "integer");
    assert_eq!(params[1]["in"], "query");
    assert_eq!(params[1]["name"], "verbose");
    assert_eq!(params[1]["required"], false);
    assert_eq!(
        lookup["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/User"
    );
    assert_eq!(
        doc["paths"]["/users/{id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/Rename"
    );
    assert!(
        doc["components"]["schemas"]["User"]["properties"]["name"].is_object(),
        "{doc}"
    );
    assert_eq!(get("/openapi/nope.json").status(), 404);
    if let Ok(python) = std::env::var("RIFFLE_TEST_PYTHON") {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), doc.to_string()).unwrap();
        let checked = std::process::Command::new(python)
            .args(["-m", "openapi_spec_validator"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    let metrics = get("/metrics").text().unwrap();
    assert!(
        metrics.contains(r#"riffle_flow_errors_total{flow="users",processor="users GET /users/{id}",kind="endpoint"} 3"#),
        "{metrics}"
    );
    running.stop();
    running.wait().unwrap();
}

#[test]
fn a_flow_with_routes_runs_until_stopped_and_answers_what_it_holds() {
    let mut flow = Flow::new("slow");
    flow.service("slow")
        .unwrap()
        .endpoint("/wait", Method::GET, |_: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok("done")
        })
        .unwrap();
    let running = flow.start(loopback()).unwrap();
    let address = url(&running, "/wait");
    let stopper = running.stopper();
    let waiting =
        std::thread::spawn(move || reqwest::blocking::get(address).unwrap().text().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    stopper.store(true, Ordering::SeqCst);
    running.wait().unwrap();
    // The request in hand when the stop came was answered.
    assert_eq!(waiting.join().unwrap(), "\"done\"");
}

#[test]
fn bad_definitions_are_refused_naming_the_flow_and_what() {
    let mut flow = Flow::new("bad");
    flow.consumer(
        "c",
        TestingSource::new(vec![1]),
        TestingSink::new(),
        |x: i32| Ok::<_, String>([x]),
    )
    .unwrap();
    let again = flow
        .consumer(
            "c",
            TestingSource::new(vec![1]),
            TestingSink::new(),
            |x: i32| Ok::<_, String>([x]),
        )
        .err()
        .unwrap();
    assert_eq!(
        again.to_string(),
        "flow \"bad\": processor id \"c\" is taken"
    );
    flow.collector("/in", Method::POST, TestingSink::new(), |x: i32| {
        Ok::<_, String>([x])
    })
    .unwrap();
    let twice = flow
        .collector("/in", Method::POST, TestingSink::new(), |x: i32| {
            Ok::<_, String>([x])
        })
        .unwrap_err();
    assert!(
        twice.to_string().contains("POST /in is routed twice"),
        "{twice}"
    );
    let relative = flow
        .collector("in", Method::PUT, TestingSink::new(), |x: i32| {
            Ok::<_, String>([x])
        })
        .unwrap_err();
    assert!(
        relative.to_string().contains("must start with '/'"),
        "{relative}"
    );
    let mut service = flow.service("s").unwrap();
    let capture = service
        .endpoint("/a/{*rest}/b", Method::GET, |_: serde_json::Value| async {
            Ok(1)
        })
        .err()
        .unwrap();
    assert!(
        capture.to_string().contains("must be the last segment"),
        "{capture}"
    );
    let taken = flow.service("c").err().unwrap();
    assert!(taken.to_string().contains("is taken"));
    // The same route with another method is fine, and the port in use is named.
    flow.collector("/in", Method::PUT, TestingSink::new(), |x: i32| {
        Ok::<_, String>([x])
    })
    .unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let err = flow
        .start(RunOptions {
            addr,
            ..Default::default()
        })
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains(&format!("cannot listen on {addr}")),
        "{err}"
    );
}

#[test]
fn units_group_endpoints_by_service_and_only_keeps_the_ones_named() {
    let mut flow = Flow::new("units");
    flow.consumer(
        "c",
        TestingSource::new(vec![1]),
        TestingSink::new(),
        |x: i32| Ok::<_, String>([x]),
    )
    .unwrap()
    .autoscale(riffle_flow::Autoscale::new(0, 5));
    flow.collector("/in", Method::POST, TestingSink::new(), |x: i32| {
        Ok::<_, String>([x])
    })
    .unwrap();
    flow.service("api")
        .unwrap()
        .endpoint("/a", Method::GET, |_: serde_json::Value| async { Ok(1) })
        .unwrap()
        .endpoint("/b", Method::GET, |_: serde_json::Value| async { Ok(2) })
        .unwrap();
    let units = flow.units();
    let summary: Vec<(&str, &str, usize, usize, Vec<String>)> = units
        .iter()
        .map(|u| {
            (
                u.id.as_str(),
                u.kind,
                u.min_replicas,
                u.max_replicas,
                u.routes.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("c", "consumer", 0, 5, vec![]),
            ("POST /in", "collector", 1, 1, vec!["POST /in".to_string()]),
            (
                "api",
                "service",
                1,
                1,
                vec!["GET /a".to_string(), "GET /b".to_string()]
            ),
        ]
    );
    let err = flow.only(&["nope".to_string()]).unwrap_err().to_string();
    assert!(
        err.contains("no consumer, collector or service \"nope\"; the flow has: c, POST /in, api"),
        "{err}"
    );
    flow.only(&["api".to_string()]).unwrap();
    let left: Vec<String> = flow.processors().into_iter().map(|p| p.id).collect();
    assert_eq!(left, ["api GET /a", "api GET /b"]);
}

#[test]
fn an_async_consumer_calls_a_batch_at_once_keeps_its_order_and_retries() {
    let mut flow = Flow::new("lookups");
    let out = TestingSink::new();
    let letters = TestingSink::new();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (running.clone(), most.clone());
    let source = TestingSource::new((0..100u32).collect()).batch_size(50);
    flow.consumer_async("lookup", source, out.clone(), move |n: u32| {
        let (now, peak) = (now.clone(), peak.clone());
        async move {
            let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(at_once, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            if n == 13 {
                return Err(format!("no record for {n}"));
            }
            Ok(vec![n * 2])
        }
    })
    .unwrap()
    .attempts(2)
    .backoff(Duration::from_millis(1))
    .dead_letters(letters.clone(), |l: DeadLetter| l);
    flow.run(loopback()).unwrap();
    let got = out.take();
    let want: Vec<u32> = (0..100).filter(|n| *n != 13).map(|n| n * 2).collect();
    assert_eq!(got, want, "outputs in the batch's order");
    assert!(
        most.load(Ordering::SeqCst) >= 10,
        "calls ran one by one: {}",
        most.load(Ordering::SeqCst)
    );
    let letters = letters.take();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("failed 2 times")
            && letters[0].reason.contains("no record for 13")
    );
}
