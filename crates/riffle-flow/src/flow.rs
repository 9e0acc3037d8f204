//! [`Flow`]: an application of processors (consumers, collectors, service
//! endpoints), each scaled on its own, run by [`Flow::run`].

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;

use axum::http::Method;
use riffle::sinks::FixedPartitionedSink;
use riffle::sources::FixedPartitionedSource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::consumer::{self, ConsumerEntry, ConsumerOptions};
use crate::dependency::{BoxError, Dependencies, Dependency, Scope};
use crate::error::{FlowError, Result};
use crate::http::{self, HttpError, RouteEntry};
use crate::primitives::{Primitive, key};

/// What a processor is, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessorInfo {
    /// Its id (a consumer's or collector's name, `service METHOD /route` for an
    /// endpoint).
    pub id: String,
    /// `consumer`, `collector` or `endpoint`.
    pub kind: String,
    /// `METHOD /route` for the HTTP kinds.
    pub route: Option<String>,
}

/// What is deployed as one: a consumer, a collector, or a service with its
/// endpoints (`riffle flow run --only ID`, one Kubernetes Deployment each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The consumer's, collector's or service's id.
    pub id: String,
    /// `consumer`, `collector` or `service`.
    pub kind: &'static str,
    /// The fewest replicas (a consumer's autoscale minimum, else its replicas; 1
    /// for HTTP).
    pub min_replicas: usize,
    /// The most replicas.
    pub max_replicas: usize,
    /// What a consumer's source reads, when it is a broker's.
    pub source: Option<riffle::sources::SourceInfo>,
    /// The routes it serves, `METHOD /path`.
    pub routes: Vec<String>,
    /// Requests in flight per pod an HTTP unit's scaling aims at, when it
    /// scales ([`Flow::scale_http`]).
    pub in_flight_per_replica: Option<u64>,
}

/// An application of processors; see the [crate docs](crate).
pub struct Flow {
    pub(crate) id: String,
    pub(crate) consumers: Vec<ConsumerEntry>,
    pub(crate) routes: Vec<RouteEntry>,
    pub(crate) dependencies: Dependencies,
    http_scaling: Vec<(String, crate::autoscale::HttpScaling)>,
    primitives: Vec<Box<dyn Primitive>>,
    ids: HashSet<String>,
}

impl Flow {
    /// An empty flow named `id`.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            dependencies: Dependencies::new(&id),
            http_scaling: Vec::new(),
            id,
            consumers: Vec::new(),
            routes: Vec::new(),
            primitives: Vec::new(),
            ids: HashSet::new(),
        }
    }

    /// The flow's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds consumer `id`: reads `source`, calls `f` on each item and writes what
    /// it returns (`None` or an empty list drops the item, a list fans out) to
    /// `sink`; see [`crate::consumer`] for when messages are acknowledged and what
    /// happens to failures. Set its replicas, retries and dead-letter sink on the
    /// options it returns.
    pub fn consumer<S, K, F, I, E>(
        &mut self,
        id: &str,
        source: S,
        sink: K,
        f: F,
    ) -> Result<&mut ConsumerOptions>
    where
        S: FixedPartitionedSource,
        K: FixedPartitionedSink,
        F: Fn(S::Item) -> std::result::Result<I, E> + Send + Sync + 'static,
        I: IntoIterator<Item = K::Item> + 'static,
        E: Display + 'static,
    {
        self.claim(id)?;
        Ok(self.add_consumer(consumer::entry(id, source, sink, f)))
    }

    /// Adds consumer `id` with an async `f`: the same as [`Flow::consumer`], but
    /// `f` is called on every item of a batch at once, on the flow's runtime (a
    /// batch of lookups waits for the slowest, not for their sum), its outputs
    /// kept in the batch's order.
    pub fn consumer_async<S, K, F, Fut, I, E>(
        &mut self,
        id: &str,
        source: S,
        sink: K,
        f: F,
    ) -> Result<&mut ConsumerOptions>
    where
        S: FixedPartitionedSource,
        K: FixedPartitionedSink,
        F: Fn(S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<I, E>> + 'static,
        I: IntoIterator<Item = K::Item> + 'static,
        E: Display + 'static,
    {
        self.claim(id)?;
        Ok(self.add_consumer(consumer::entry_async(id, source, sink, f)))
    }

    /// Adds a collector at `method route`: each request's JSON body, decoded as
    /// `Req`, goes through `f`, and what it returns is written to `sink` before
    /// the request is answered; see [`crate::http`].
    pub fn collector<Req, K, F, I, E>(
        &mut self,
        route: &str,
        method: Method,
        sink: K,
        f: F,
    ) -> Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        K: FixedPartitionedSink,
        F: Fn(Req) -> std::result::Result<I, E> + Send + Sync + 'static,
        I: IntoIterator<Item = K::Item>,
        E: Display,
    {
        let id = format!("{method} {route}");
        self.check_route(&method, route)?;
        self.claim(&id)?;
        self.routes
            .push(http::collector(id, method, route, sink, f));
        Ok(())
    }

    /// Declares dependency `name`: `make` makes its value, once per `scope`
    /// ([`crate::dependency`]). The processors' functions (and later
    /// dependencies' makers) call [`Dependency::get`] on the handle returned.
    /// A name declared twice is an error.
    ///
    /// ```
    /// use riffle_flow::{Flow, Scope};
    ///
    /// let mut flow = Flow::new("shop");
    /// let base = flow.dependency("base_url", Scope::Flow, || Ok(String::from("http://prices")))?;
    /// let url = base.clone();
    /// let client = flow.dependency("client", Scope::Replica, move || {
    ///     Ok(format!("client of {}", url.get()?))
    /// })?;
    /// assert_eq!(client.scope(), Scope::Replica);
    /// assert!(flow.dependency("client", Scope::Request, || Ok(0)).is_err());
    /// # Ok::<(), riffle_flow::FlowError>(())
    /// ```
    pub fn dependency<T, F>(&mut self, name: &str, scope: Scope, make: F) -> Result<Dependency<T>>
    where
        T: Send + Sync + 'static,
        F: Fn() -> std::result::Result<T, BoxError> + Send + Sync + 'static,
    {
        self.dependencies.declare(name, scope, make)
    }

    /// Starts service `id`: a group of endpoints, listed and deployed together.
    pub fn service(&mut self, id: &str) -> Result<Service<'_>> {
        self.claim(id)?;
        Ok(Service {
            flow: self,
            id: id.to_string(),
        })
    }

    /// Declares `primitive` as the flow's: `riffle flow plan/apply/destroy`
    /// make and remove it ([`crate::plan`]). The same primitive twice is refused.
    pub fn manage(&mut self, primitive: impl Primitive + 'static) -> Result<()> {
        let new = key(&primitive);
        if self.primitives.iter().any(|p| key(p.as_ref()) == new) {
            return Err(self.wrong(format!("{new} is declared twice")));
        }
        self.primitives.push(Box::new(primitive));
        Ok(())
    }

    /// The declared primitives, in the order they were declared.
    pub fn primitives(&self) -> &[Box<dyn Primitive>] {
        &self.primitives
    }

    /// What is deployed as one, in the order added: consumers, then collectors
    /// and services.
    pub fn units(&self) -> Vec<Unit> {
        let mut units: Vec<Unit> = self
            .consumers
            .iter()
            .map(|c| {
                let (min, max) = match &c.options.autoscale {
                    Some(a) => (a.min, a.max),
                    None => (c.options.replicas, c.options.replicas),
                };
                Unit {
                    id: c.id.clone(),
                    kind: "consumer",
                    min_replicas: min,
                    max_replicas: max,
                    source: c.source.clone(),
                    routes: Vec::new(),
                    in_flight_per_replica: None,
                }
            })
            .collect();
        for route in &self.routes {
            let path = format!("{} {}", route.method, route.path);
            match units
                .iter_mut()
                .find(|u| u.id == route.unit && u.kind != "consumer")
            {
                Some(unit) => unit.routes.push(path),
                None => {
                    let scaling = self
                        .http_scaling
                        .iter()
                        .find(|(unit, _)| *unit == route.unit)
                        .map(|(_, s)| s);
                    units.push(Unit {
                        id: route.unit.clone(),
                        kind: if route.kind == "collector" {
                            "collector"
                        } else {
                            "service"
                        },
                        min_replicas: scaling.map_or(1, |s| s.min),
                        max_replicas: scaling.map_or(1, |s| s.max),
                        source: None,
                        routes: vec![path],
                        in_flight_per_replica: scaling.map(|s| s.in_flight),
                    })
                }
            }
        }
        units
    }

    /// Scales HTTP unit `unit` (a service's id, or a collector's `METHOD
    /// /route`) across pods on its requests in flight: what `riffle flow
    /// manifests` gives the platform (one process serves a unit's routes on one
    /// listener, so more replicas are more pods). An unknown unit, or a
    /// consumer (scaled with [`ConsumerOptions::autoscale`]), is an error.
    ///
    /// ```
    /// use riffle_flow::{Flow, HttpError, Method};
    /// use riffle_flow::autoscale::HttpScaling;
    ///
    /// let mut flow = Flow::new("shop");
    /// flow.service("api")?.endpoint("/ping", Method::GET, |_: serde_json::Value| async {
    ///     Ok::<_, HttpError>("pong")
    /// })?;
    /// flow.scale_http("api", HttpScaling::new(2, 8))?;
    /// assert_eq!(flow.units()[0].max_replicas, 8);
    /// assert!(flow.scale_http("nope", HttpScaling::new(1, 2)).is_err());
    /// # Ok::<(), riffle_flow::FlowError>(())
    /// ```
    pub fn scale_http(&mut self, unit: &str, scaling: crate::autoscale::HttpScaling) -> Result<()> {
        if !self.routes.iter().any(|r| r.unit == unit) {
            let names: Vec<String> = self
                .units()
                .into_iter()
                .filter(|u| u.kind != "consumer")
                .map(|u| u.id)
                .collect();
            return Err(self.wrong(format!(
                "no service or collector {unit:?} to scale; its HTTP units: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        self.http_scaling.retain(|(u, _)| u != unit);
        self.http_scaling.push((unit.to_string(), scaling));
        Ok(())
    }

    /// Keeps only the units named (consumers, collectors, services): what one
    /// Deployment of the flow runs. An unknown name is an error listing the
    /// units.
    pub fn only(&mut self, units: &[String]) -> Result<()> {
        let known = self.units();
        if let Some(unknown) = units.iter().find(|u| !known.iter().any(|k| &k.id == *u)) {
            let names: Vec<&str> = known.iter().map(|k| k.id.as_str()).collect();
            return Err(self.wrong(format!(
                "no consumer, collector or service {unknown:?}; the flow has: {}",
                names.join(", ")
            )));
        }
        self.consumers.retain(|c| units.contains(&c.id));
        self.routes.retain(|r| units.contains(&r.unit));
        Ok(())
    }

    /// The processors, in the order they were added.
    pub fn processors(&self) -> Vec<ProcessorInfo> {
        let consumers = self.consumers.iter().map(|c| ProcessorInfo {
            id: c.id.clone(),
            kind: "consumer".into(),
            route: None,
        });
        let routes = self.routes.iter().map(|r| ProcessorInfo {
            id: r.id.clone(),
            kind: r.kind.into(),
            route: Some(format!("{} {}", r.method, r.path)),
        });
        consumers.chain(routes).collect()
    }

    fn add_consumer(&mut self, entry: ConsumerEntry) -> &mut ConsumerOptions {
        self.consumers.push(entry);
        &mut self.consumers.last_mut().expect("just pushed").options
    }

    fn claim(&mut self, id: &str) -> Result<()> {
        if id.trim().is_empty() {
            return Err(self.wrong("a processor id is empty".into()));
        }
        if !self.ids.insert(id.to_string()) {
            return Err(self.wrong(format!("processor id {id:?} is taken")));
        }
        Ok(())
    }

    fn check_route(&self, method: &Method, route: &str) -> Result<()> {
        http::check_route(method, route).map_err(|what| self.wrong(what))?;
        if self
            .routes
            .iter()
            .any(|r| r.method == *method && r.path == route)
        {
            return Err(self.wrong(format!("{method} {route} is routed twice")));
        }
        Ok(())
    }

    fn wrong(&self, what: String) -> FlowError {
        FlowError::Definition {
            flow: self.id.clone(),
            what,
        }
    }
}

/// A service being defined: add its endpoints.
pub struct Service<'a> {
    flow: &'a mut Flow,
    id: String,
}

impl Service<'_> {
    /// Adds the endpoint `method route`: `f` answers each request, decoded as
    /// `Req` from the path's captures, the query and the JSON body, with a `Resp`
    /// sent as JSON; see [`crate::http`]. Both types describe themselves
    /// (`#[derive(JsonSchema)]`) for the service's OpenAPI document
    /// ([`crate::openapi`]).
    pub fn endpoint<Req, Resp, F, Fut>(
        &mut self,
        route: &str,
        method: Method,
        f: F,
    ) -> Result<&mut Self>
    where
        Req: DeserializeOwned + schemars::JsonSchema + Send + 'static,
        Resp: Serialize + schemars::JsonSchema + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, HttpError>> + Send + 'static,
    {
        let id = format!("{} {method} {route}", self.id);
        self.flow.check_route(&method, route)?;
        self.flow.claim(&id)?;
        self.flow
            .routes
            .push(http::endpoint(&self.id, id, method, route, f));
        Ok(self)
    }

    /// Adds the WebSocket endpoint `GET route`: `f` runs each connection with a
    /// [`Socket`](crate::Socket) of typed JSON messages in and out; see
    /// [`crate::socket`].
    pub fn websocket<In, Out, F, Fut>(&mut self, route: &str, f: F) -> Result<&mut Self>
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
        F: Fn(crate::Socket<In, Out>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HttpError>> + Send + 'static,
    {
        let id = format!("{} WEBSOCKET {route}", self.id);
        self.flow.check_route(&Method::GET, route)?;
        self.flow.claim(&id)?;
        self.flow
            .routes
            .push(crate::socket::websocket(&self.id, id, route, f));
        Ok(self)
    }
}
