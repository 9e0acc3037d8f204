//! WebSocket endpoints: a long-lived connection that takes typed JSON messages
//! and sends typed JSON messages, in any order (answers, pushes, streams).
//!
//! [`Service::websocket`](crate::Service::websocket) routes `GET route` to an
//! upgrade; the function gets a [`Socket`] for each connection and runs until
//! it returns or the client leaves. [`Socket::recv`] gives the next message
//! decoded as `In`; a text message that does not decode is answered on the
//! socket with `{"error": ..., "field": ...}` (the same shape as an HTTP 422)
//! and skipped, so one bad message does not drop the connection. Binary
//! messages are decoded as JSON too; pings are answered by the server.
//!
//! Each connection is one request for [dependencies](crate::dependency): a
//! request-scoped value lives as long as the connection. The metrics count a
//! received message as an item in, a sent one as an item out, and an open
//! connection as in flight.
//!
//! ```
//! use riffle_flow::schemars::{self, JsonSchema};
//! use riffle_flow::{Flow, Socket};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Add { n: i64 }
//! #[derive(Serialize, JsonSchema)]
//! struct Total { total: i64 }
//!
//! let mut flow = Flow::new("calc");
//! // A running total per connection.
//! flow.service("calc")?.websocket("/total", |mut socket: Socket<Add, Total>| async move {
//!     let mut total = 0;
//!     while let Some(add) = socket.recv().await {
//!         total += add.n;
//!         socket.send(&Total { total }).await?;
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), riffle_flow::FlowError>(())
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dependency::ReplicaScope;
use crate::error::{FlowError, Result};
use crate::http::{Closer, HttpError, RouteEntry, decode_body};
use crate::metrics::ProcessorMetrics;

/// One WebSocket connection: typed JSON messages in (`In`) and out (`Out`).
pub struct Socket<In, Out> {
    socket: WebSocket,
    route: Arc<str>,
    metrics: Arc<ProcessorMetrics>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In: DeserializeOwned, Out: Serialize> Socket<In, Out> {
    /// The next message, decoded; `None` once the client closed the connection
    /// (or it broke). A message that does not decode is answered with its
    /// error and skipped.
    pub async fn recv(&mut self) -> Option<In> {
        loop {
            let bytes = match self.socket.recv().await? {
                Ok(Message::Text(text)) => text.as_bytes().to_vec(),
                Ok(Message::Binary(bytes)) => bytes.to_vec(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            };
            self.metrics.add_in(1);
            match decode_body::<In>(&bytes) {
                Ok(message) => return Some(message),
                Err(e) => {
                    self.metrics.add_error();
                    let mut answer = serde_json::Map::new();
                    answer.insert("error".into(), e.message.into());
                    if let Some(field) = e.field {
                        answer.insert("field".into(), field.into());
                    }
                    let text = serde_json::Value::Object(answer).to_string();
                    if self.socket.send(Message::Text(text.into())).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends `message` as JSON text. An error once the connection is gone.
    pub async fn send(&mut self, message: &Out) -> std::result::Result<(), HttpError> {
        let text = serde_json::to_string(message).map_err(|e| {
            HttpError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode a message of {}: {e}", self.route),
            )
        })?;
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| {
                HttpError::new(axum::http::StatusCode::GONE, format!("{}: {e}", self.route))
            })?;
        self.metrics.add_out(1);
        Ok(())
    }
}

/// The WebSocket endpoint at `GET path` of `service`: `f` runs each connection.
pub(crate) fn websocket<In, Out, F, Fut>(service: &str, id: String, path: &str, f: F) -> RouteEntry
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
    F: Fn(Socket<In, Out>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), HttpError>> + Send + 'static,
{
    let route: Arc<str> = format!("websocket {path}").into();
    let processor = id.clone();
    RouteEntry {
        method: axum::http::Method::GET,
        path: path.to_string(),
        unit: service.to_string(),
        id,
        kind: "websocket",
        doc: None,
        build: Box::new(
            move |metrics: Arc<ProcessorMetrics>, scope: ReplicaScope| -> Result<_> {
                let f = Arc::new(f);
                let handler = move |headers: HeaderMap, upgrade: WebSocketUpgrade| {
                    let (f, metrics, scope, route, processor) = (
                        f.clone(),
                        metrics.clone(),
                        scope.clone(),
                        route.clone(),
                        processor.clone(),
                    );
                    async move {
                        upgrade.on_upgrade(move |socket| async move {
                            metrics.add_in_flight(1);
                            let socket = Socket {
                                socket,
                                route,
                                metrics: metrics.clone(),
                                _types: PhantomData,
                            };
                            let ended = scope
                                .call_async(Some(headers), async { f(socket).await })
                                .await;
                            metrics.add_in_flight(-1);
                            let failure = match ended {
                                Ok(Ok(())) => None,
                                Ok(Err(e)) => Some(e.message),
                                Err(e) => Some(e.chain()),
                            };
                            if let Some(what) = failure {
                                metrics.add_error();
                                crate::run::say(
                                    &FlowError::Failed {
                                        processor,
                                        what: format!("a connection ended with: {what}"),
                                    }
                                    .to_string(),
                                );
                            }
                        })
                    }
                };
                Ok((get(handler), None::<Closer>))
            },
        ),
    }
}
