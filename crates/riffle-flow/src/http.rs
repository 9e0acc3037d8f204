//! The HTTP side of a Flow: collectors, service endpoints, `/metrics`, on one
//! listener.
//!
//! - A **collector** decodes a request's JSON body into its typed request, calls
//!   its function, writes what that returned to its sink through a
//!   [`SinkWriter`] and answers `200 {"written": n}` only once the sink has it:
//!   a client that got its answer knows the items are durable; one that did not
//!   sends again (at-least-once).
//! - An **endpoint** of a service decodes one typed request from the path's
//!   captures (`/users/{id}`), the query string and the JSON body together (one
//!   struct, each field from wherever the client put it; text from the path or
//!   query becomes a number or a boolean where the field wants one), calls its
//!   async function and answers its typed response as JSON.
//!
//! A request of the wrong shape is answered `422` with the field named
//! (`{"error": "...", "field": "age"}`), a body that is not JSON `400`; the
//! function is not called. A function's [`HttpError`] is answered with its status.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::dependency::{Made, ReplicaScope};
use crate::error::{FlowError, Result};
use crate::metrics::{Metrics, ProcessorMetrics};
use crate::writer::SinkWriter;

/// An answer other than success: a status and a message, sent as
/// `{"error": message}` (and `"field"` when one field is to blame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status to answer.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// The request's field to blame, if one is.
    pub field: Option<String>,
}

impl HttpError {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `503 Service Unavailable`: what a backend the answer needs is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// `400 Bad Request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// A flow error in a request (a dependency that could not be made) is the
/// service's fault, not the client's: `503 Service Unavailable`, unless the
/// dependency's maker chose the answer (a `401` from a token check).
impl From<FlowError> for HttpError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Dependency {
                answer: Some(answer),
                ..
            } => answer,
            e => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.chain()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), self.message.into());
        if let Some(field) = self.field {
            body.insert("field".into(), field.into());
        }
        (self.status, axum::Json(Value::Object(body))).into_response()
    }
}

/// A route as the flow keeps it until it runs.
pub(crate) struct RouteEntry {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// The processor id in metrics: the collector's or endpoint's name.
    pub(crate) id: String,
    /// What it is deployed with: the collector itself, or the endpoint's service.
    pub(crate) unit: String,
    pub(crate) kind: &'static str,
    pub(crate) build: RouteBuilder,
    /// An endpoint's description, for its service's OpenAPI document.
    pub(crate) doc: Option<crate::openapi::EndpointDoc>,
}

pub(crate) type Closer = Box<dyn FnOnce() + Send>;
/// Makes a route's handler from its metrics and the process's dependencies.
pub(crate) type RouteBuilder = Box<
    dyn FnOnce(Arc<ProcessorMetrics>, ReplicaScope) -> Result<(MethodRouter, Option<Closer>)>
        + Send,
>;

/// The collector at `method path`: `f` on each request, into `sink`.
pub(crate) fn collector<Req, K, F, I, E>(
    id: String,
    method: Method,
    path: &str,
    sink: K,
    f: F,
) -> RouteEntry
where
    Req: DeserializeOwned + Send + 'static,
    K: riffle::sinks::FixedPartitionedSink,
    F: Fn(Req) -> std::result::Result<I, E> + Send + Sync + 'static,
    I: IntoIterator<Item = K::Item>,
    E: std::fmt::Display,
{
    let filter = method_filter(&method);
    let writer_id = id.clone();
    RouteEntry {
        method,
        path: path.to_string(),
        unit: id.clone(),
        id,
        kind: "collector",
        doc: None,
        build: Box::new(move |metrics: Arc<ProcessorMetrics>, scope: ReplicaScope| {
            let writer = Arc::new(SinkWriter::start(&writer_id, sink)?);
            let closing = writer.clone();
            let f = Arc::new(f);
            let handler = move |headers: HeaderMap, body: Bytes| {
                let writer = writer.clone();
                let f = f.clone();
                let metrics = metrics.clone();
                let scope = scope.clone();
                async move {
                    let started = Instant::now();
                    metrics.add_in(1);
                    metrics.add_in_flight(1);
                    let answer = async {
                        let request: Req = decode_body(&body)?;
                        let items: Vec<K::Item> = scope
                            .call(Some(headers), || f(request))?
                            .map_err(|e| {
                                HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                            })?
                            .into_iter()
                            .collect();
                        let n = items.len();
                        writer.write_async(items).await.map_err(|e| {
                            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, e.chain())
                        })?;
                        Ok::<_, HttpError>(n)
                    }
                    .await;
                    metrics.add_in_flight(-1);
                    metrics.observe(started.elapsed());
                    match answer {
                        Ok(n) => {
                            metrics.add_out(n as u64);
                            axum::Json(serde_json::json!({ "written": n })).into_response()
                        }
                        Err(e) => {
                            metrics.add_error();
                            e.into_response()
                        }
                    }
                }
            };
            Ok((
                on(filter, handler),
                Some(Box::new(move || closing.close()) as Closer),
            ))
        }),
    }
}

/// The endpoint at `method path`: `f` answers each request.
pub(crate) fn endpoint<Req, Resp, F, Fut>(
    service: &str,
    id: String,
    method: Method,
    path: &str,
    f: F,
) -> RouteEntry
where
    Req: DeserializeOwned + schemars::JsonSchema + Send + 'static,
    Resp: Serialize + schemars::JsonSchema + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Resp, HttpError>> + Send + 'static,
{
    let filter = method_filter(&method);
    let method_copy = method.clone();
    let pattern = Pattern::new(path);
    RouteEntry {
        method,
        path: path.to_string(),
        unit: service.to_string(),
        id,
        kind: "endpoint",
        doc: Some(crate::openapi::EndpointDoc {
            method: method_copy,
            path: path.to_string(),
            schemas: crate::openapi::schemas_of::<Req, Resp>,
        }),
        build: Box::new(move |metrics: Arc<ProcessorMetrics>, scope: ReplicaScope| {
            let f = Arc::new(f);
            let pattern = Arc::new(pattern);
            let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
                let f = f.clone();
                let metrics = metrics.clone();
                let pattern = pattern.clone();
                let scope = scope.clone();
                async move {
                    let started = Instant::now();
                    metrics.add_in(1);
                    metrics.add_in_flight(1);
                    let answer = match pattern.decode::<Req>(&uri, &body) {
                        Ok(request) => scope
                            .call_async(Some(headers), async { f(request).await })
                            .await
                            .unwrap_or_else(|e| Err(e.into())),
                        Err(e) => Err(e),
                    };
                    metrics.add_in_flight(-1);
                    metrics.observe(started.elapsed());
                    match answer {
                        Ok(response) => {
                            metrics.add_out(1);
                            axum::Json(response).into_response()
                        }
                        Err(e) => {
                            metrics.add_error();
                            e.into_response()
                        }
                    }
                }
            };
            Ok((on(filter, handler), None))
        }),
    }
}

/// Every route on one router, with `GET /metrics`; the closers of the routes'
/// sinks, for after the server stopped.
pub(crate) fn router(
    flow: &str,
    routes: Vec<RouteEntry>,
    metrics: &Arc<Metrics>,
    dependencies: &Arc<Made>,
) -> Result<(Router, Vec<Closer>)> {
    // Every route of the process is one replica of the flow's HTTP side.
    let scope = dependencies.replica();
    let mut by_path: Vec<(String, MethodRouter)> = Vec::new();
    let mut closers = Vec::new();
    let documents = documents(&routes);
    for route in routes {
        let (method_router, closer) = {
            let processor = metrics.processor(&route.id, route.kind);
            // Every route is served by this one process.
            processor.set_replicas(1);
            (route.build)(processor, scope.clone())?
        };
        closers.extend(closer);
        match by_path.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, existing)) => {
                let merged = std::mem::take(existing).merge(method_router);
                *existing = merged;
            }
            None => by_path.push((route.path, method_router)),
        }
    }
    let mut router = Router::new();
    for (path, method_router) in by_path {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            router.route(&path, method_router)
        }));
        router = attempt.map_err(|panic| FlowError::Definition {
            flow: flow.to_string(),
            what: format!(
                "a route cannot be served: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        })?;
    }
    let documents = Arc::new(documents);
    let router = router.route(
        "/openapi/{file}",
        axum::routing::get(
            move |axum::extract::Path(file): axum::extract::Path<String>| {
                let documents = documents.clone();
                async move {
                    let service = file.strip_suffix(".json").unwrap_or(&file);
                    match documents.iter().find(|(name, _)| name == service) {
                        Some((_, doc)) => axum::Json(doc.clone()).into_response(),
                        None => HttpError::not_found(format!(
                            "no service {service:?}; documents: {}",
                            documents
                                .iter()
                                .map(|(n, _)| format!("/openapi/{n}.json"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .into_response(),
                    }
                }
            },
        ),
    );
    let rendering = metrics.clone();
    let router = router.route(
        "/metrics",
        axum::routing::get(move || {
            let text = rendering.render();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    text,
                )
            }
        }),
    );
    Ok((router, closers))
}

/// The OpenAPI document of every service with endpoints, by service.
fn documents(routes: &[RouteEntry]) -> Vec<(String, Value)> {
    let mut services: Vec<&str> = routes
        .iter()
        .filter(|r| r.doc.is_some())
        .map(|r| r.unit.as_str())
        .collect();
    services.dedup();
    services
        .into_iter()
        .map(|service| {
            let endpoints: Vec<&crate::openapi::EndpointDoc> = routes
                .iter()
                .filter(|r| r.unit == service)
                .filter_map(|r| r.doc.as_ref())
                .collect();
            (
                service.to_string(),
                crate::openapi::document(service, &endpoints),
            )
        })
        .collect()
}

/// Checks a route before it is added: a method axum serves, a path it accepts.
pub(crate) fn check_route(method: &Method, path: &str) -> std::result::Result<(), String> {
    if MethodFilter::try_from(method.clone()).is_err() {
        return Err(format!("method {method} cannot be routed"));
    }
    if !path.starts_with('/') {
        return Err(format!("route {path:?} must start with '/'"));
    }
    if path == "/metrics" || path.starts_with("/openapi/") {
        return Err(format!(
            "route {path} is the flow's own (/metrics, /openapi/)"
        ));
    }
    Pattern::new(path).check()
}

fn method_filter(method: &Method) -> MethodFilter {
    MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET)
}

/// A collector's body: JSON of the request's shape.
pub(crate) fn decode_body<Req: DeserializeOwned>(
    body: &[u8],
) -> std::result::Result<Req, HttpError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("the body is not JSON: {e}")))?;
    decode(value, &HashSet::new())
}

/// A typed request from a JSON value; fields given as text (path, query) that
/// the type wants as numbers or booleans are read as such.
fn decode<Req: DeserializeOwned>(
    mut value: Value,
    from_text: &HashSet<String>,
) -> std::result::Result<Req, HttpError> {
    for _ in 0..=from_text.len() {
        let err = match serde_path_to_error::deserialize::<_, Req>(&value) {
            Ok(request) => return Ok(request),
            Err(err) => err,
        };
        let field = err.path().to_string();
        let message = err.inner().to_string();
        if from_text.contains(&field)
            && message.starts_with("invalid type: string")
            && let Some(slot) = value.get_mut(&field)
            && let Some(text) = slot.as_str()
            && let Ok(parsed) = serde_json::from_str::<Value>(text)
            && !parsed.is_string()
        {
            *slot = parsed;
            continue;
        }
        let field = (field != ".").then_some(field);
        let message = match &field {
            Some(f) => format!("field {f}: {message}"),
            None => message,
        };
        return Err(HttpError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message,
            field,
        });
    }
    Err(HttpError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "the request does not fit its type",
    ))
}

/// A route's path with its captures: `/users/{id}/orders/{*rest}`.
#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Capture(String),
    Rest(String),
}

impl Pattern {
    fn new(path: &str) -> Self {
        let segments = path
            .trim_start_matches('/')
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => match name.strip_prefix('*') {
                        Some(rest) => Segment::Rest(rest.to_string()),
                        None => Segment::Capture(name.to_string()),
                    },
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        Self { segments }
    }

    fn check(&self) -> std::result::Result<(), String> {
        let mut seen = HashSet::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Capture(name) | Segment::Rest(name) => {
                    if name.is_empty() || !seen.insert(name.clone()) {
                        return Err(format!("capture {{{name}}} is empty or repeated"));
                    }
                    if matches!(segment, Segment::Rest(_)) && i + 1 != self.segments.len() {
                        return Err(format!("{{*{name}}} must be the last segment"));
                    }
                }
                Segment::Literal(text) if text.contains(['{', '}']) => {
                    return Err(format!("segment {text:?} mixes text and a capture"));
                }
                Segment::Literal(_) => {}
            }
        }
        Ok(())
    }

    /// The request: captures, then query pairs, then the body's fields.
    fn decode<Req: DeserializeOwned>(
        &self,
        uri: &Uri,
        body: &[u8],
    ) -> std::result::Result<Req, HttpError> {
        let mut fields = Map::new();
        let mut from_text = HashSet::new();
        let mut given = uri.path().trim_start_matches('/').split('/');
        for segment in &self.segments {
            match segment {
                Segment::Literal(_) => {
                    given.next();
                }
                Segment::Capture(name) => {
                    let text = given.next().unwrap_or_default();
                    fields.insert(name.clone(), percent_decoded(text).into());
                    from_text.insert(name.clone());
                }
                Segment::Rest(name) => {
                    let rest: Vec<&str> = given.by_ref().collect();
                    fields.insert(name.clone(), percent_decoded(&rest.join("/")).into());
                    from_text.insert(name.clone());
                }
            }
        }
        if let Some(query) = uri.query() {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
                HttpError::bad_request(format!("the query string cannot be read: {e}"))
            })?;
            for (name, value) in pairs {
                from_text.insert(name.clone());
                fields.insert(name, value.into());
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| HttpError::bad_request(format!("the body is not JSON: {e}")))?;
            match value {
                Value::Object(object) => {
                    for (name, value) in object {
                        from_text.remove(&name);
                        fields.insert(name, value);
                    }
                }
                other if fields.is_empty() => return decode(other, &from_text),
                _ => {
                    return Err(HttpError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the body must be a JSON object when the path or query has fields too",
                    ));
                }
            }
        }
        decode(Value::Object(fields), &from_text)
    }
}

fn percent_decoded(text: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={}", text.replace('+', "%2B")))
        .ok()
        .and_then(|mut pairs| pairs.pop())
        .map_or_else(|| text.to_string(), |(_, v)| v)
}
