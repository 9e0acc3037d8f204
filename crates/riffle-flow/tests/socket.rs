//! WebSocket endpoints over real loopback connections: typed messages both
//! ways, a bad message answered and skipped, a value per connection, metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use riffle_flow::schemars::{self, JsonSchema};
use riffle_flow::{Flow, RunOptions, Scope, Socket};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tungstenite::Message;

#[derive(Deserialize, JsonSchema)]
struct Add {
    n: i64,
}

#[derive(Serialize, JsonSchema)]
struct Total {
    total: i64,
    connection: usize,
}

fn text(socket: &mut tungstenite::WebSocket<impl std::io::Read + std::io::Write>) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("not a text message: {other:?}"),
        }
    }
}

#[test]
fn a_websocket_answers_typed_messages_skips_a_bad_one_and_keeps_a_value_per_connection() {
    let connections = Arc::new(AtomicUsize::new(0));
    let made = connections.clone();
    let mut flow = Flow::new("calc");
    let id = flow
        .dependency("connection", Scope::Request, move || {
            Ok(made.fetch_add(1, Ordering::SeqCst))
        })
        .unwrap();
    flow.service("calc")
        .unwrap()
        .websocket("/total", move |mut socket: Socket<Add, Total>| {
            let id = id.clone();
            async move {
                let mut total = 0;
                while let Some(add) = socket.recv().await {
                    total += add.n;
                    socket
                        .send(&Total {
                            total,
                            connection: *id.get()?,
                        })
                        .await?;
                }
                Ok(())
            }
        })
        .unwrap();
    let running = flow
        .start(RunOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    let url = format!("ws://{}/total", running.addr());

    let (mut first, _) = tungstenite::connect(&url).unwrap();
    first.send(Message::text(r#"{"n": 2}"#)).unwrap();
    assert_eq!(text(&mut first), json!({"total": 2, "connection": 0}));
    first.send(Message::text(r#"{"n": "three"}"#)).unwrap();
    let error = text(&mut first);
    assert_eq!(error["field"], "n", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("invalid type"),
        "{error}"
    );
    first.send(Message::text(r#"{"n": 5}"#)).unwrap();
    assert_eq!(text(&mut first), json!({"total": 7, "connection": 0}));

    // A second connection has a total and a request value of its own.
    let (mut second, _) = tungstenite::connect(&url).unwrap();
    second
        .send(Message::binary(br#"{"n": 10}"#.to_vec()))
        .unwrap();
    assert_eq!(text(&mut second), json!({"total": 10, "connection": 1}));
    first.send(Message::text(r#"{"n": 1}"#)).unwrap();
    assert_eq!(text(&mut first), json!({"total": 8, "connection": 0}));
    first.close(None).unwrap();
    second.close(None).unwrap();

    // A plain GET is not an upgrade: refused, the route stays up.
    let plain = reqwest::blocking::get(format!("http://{}/total", running.addr())).unwrap();
    assert!(plain.status().is_client_error(), "{}", plain.status());

    let metrics = running.metrics().clone();
    running.stop();
    running.wait().unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let text = metrics.render();
    for line in [
        r#"riffle_flow_items_in_total{flow="calc",processor="calc WEBSOCKET /total",kind="websocket"} 5"#,
        r#"riffle_flow_items_out_total{flow="calc",processor="calc WEBSOCKET /total",kind="websocket"} 4"#,
        r#"riffle_flow_errors_total{flow="calc",processor="calc WEBSOCKET /total",kind="websocket"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}
