//! Metrics of a running Flow, per processor, in the Prometheus text format
//! (served at `/metrics`).
//!
//! Every processor (a consumer, a collector route, a service endpoint) has one
//! [`ProcessorMetrics`]: items in (messages read, requests received), items out
//! (items written, responses sent), errors, dead letters, replicas, in-flight
//! work, the source's backlog where it is known, and a latency histogram (a
//! consumer's batch from poll to acknowledgement, a request from arrival to
//! answer). They are plain atomics, updated where the work happens; [`Metrics::render`]
//! writes the exposition format, which is simple enough to write here rather than
//! pull a metrics registry in for it.
//!
//! [`Metrics::readings`] reads the same numbers as plain values, one
//! [`ProcessorReading`] per processor, with latency percentiles estimated from
//! the histogram: what `riffle flow run` records in the metadata store every
//! second for the dashboard's Flows page.
//!
//! ```
//! use std::time::Duration;
//! use riffle_flow::metrics::Metrics;
//!
//! let metrics = Metrics::new("shop");
//! let orders = metrics.processor("orders", "consumer");
//! orders.add_in(3);
//! orders.observe(Duration::from_millis(2));
//! let text = metrics.render();
//! assert!(text.contains(r#"riffle_flow_items_in_total{flow="shop",processor="orders",kind="consumer"} 3"#));
//! assert!(text.contains(r#"riffle_flow_latency_seconds_count{flow="shop",processor="orders",kind="consumer"} 1"#));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A series: its name, type, help text, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProcessorMetrics) -> i64,
);

/// The metrics of one flow's processors.
#[derive(Debug)]
pub struct Metrics {
    flow: String,
    processors: Mutex<BTreeMap<String, Arc<ProcessorMetrics>>>,
}

/// One processor's counters, gauges and latency histogram.
#[derive(Debug)]
pub struct ProcessorMetrics {
    kind: &'static str,
    items_in: AtomicU64,
    items_out: AtomicU64,
    errors: AtomicU64,
    dead_letters: AtomicU64,
    replicas: AtomicU64,
    in_flight: AtomicI64,
    /// -1 while unknown.
    backlog: AtomicI64,
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Metrics {
    /// No processors yet, for flow `flow`.
    pub fn new(flow: &str) -> Self {
        Self {
            flow: flow.to_string(),
            processors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The metrics of processor `id` (made on first use); `kind` is `consumer`,
    /// `collector` or `endpoint`.
    pub fn processor(&self, id: &str, kind: &'static str) -> Arc<ProcessorMetrics> {
        let mut processors = self.processors.lock().unwrap_or_else(|e| e.into_inner());
        processors
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(ProcessorMetrics::new(kind)))
            .clone()
    }

    /// Every processor's metrics, by id.
    pub fn snapshot(&self) -> Vec<(String, Arc<ProcessorMetrics>)> {
        let processors = self.processors.lock().unwrap_or_else(|e| e.into_inner());
        processors
            .iter()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect()
    }

    /// The flow's name.
    pub fn flow(&self) -> &str {
        &self.flow
    }

    /// Every processor's numbers now, by id: a [`ProcessorReading`] each.
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle_flow::metrics::Metrics;
    ///
    /// let metrics = Metrics::new("shop");
    /// let orders = metrics.processor("orders", "consumer");
    /// orders.set_replicas(2);
    /// orders.set_backlog(40);
    /// orders.add_in(10);
    /// orders.add_out(9);
    /// orders.observe(Duration::from_millis(3));
    /// let readings = metrics.readings();
    /// let r = &readings[0];
    /// assert_eq!((r.id.as_str(), r.kind, r.replicas, r.backlog), ("orders", "consumer", 2, Some(40)));
    /// assert_eq!((r.items_in, r.items_out, r.latency_count), (10, 9, 1));
    /// // 3 ms falls in the 2.5 ms..5 ms bucket.
    /// let p50 = r.latency_p50.unwrap();
    /// assert!(p50 > Duration::from_micros(2500) && p50 <= Duration::from_millis(5));
    /// ```
    pub fn readings(&self) -> Vec<ProcessorReading> {
        self.snapshot()
            .into_iter()
            .map(|(id, m)| m.reading(id))
            .collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let processors = self.snapshot();
        let mut out = String::new();
        let labels: Vec<String> = processors
            .iter()
            .map(|(id, m)| {
                format!(
                    "flow=\"{}\",processor=\"{}\",kind=\"{}\"",
                    escape(&self.flow),
                    escape(id),
                    m.kind
                )
            })
            .collect();
        let series: [Series; 7] = [
            (
                "riffle_flow_items_in_total",
                "counter",
                "Messages read (consumers) or requests received (HTTP).",
                |m| m.items_in() as i64,
            ),
            (
                "riffle_flow_items_out_total",
                "counter",
                "Items written to the sink, or responses sent.",
                |m| m.items_out() as i64,
            ),
            (
                "riffle_flow_errors_total",
                "counter",
                "Failed attempts: a function's error, a sink's refusal, a bad request.",
                |m| m.errors() as i64,
            ),
            (
                "riffle_flow_dead_letters_total",
                "counter",
                "Items set aside with their reason.",
                |m| m.dead_letters() as i64,
            ),
            ("riffle_flow_replicas", "gauge", "Replicas running.", |m| {
                m.replicas() as i64
            }),
            (
                "riffle_flow_in_flight",
                "gauge",
                "Batches or requests being worked on.",
                |m| m.in_flight(),
            ),
            (
                "riffle_flow_backlog",
                "gauge",
                "Messages waiting in the source (where it can say).",
                |m| m.backlog().map_or(-1, |b| b as i64),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((_, m), labels) in processors.iter().zip(&labels) {
                let v = value(m);
                if name == "riffle_flow_backlog" && v < 0 {
                    continue;
                }
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
        let name = "riffle_flow_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from poll to acknowledgement (consumers) or from request to answer (HTTP).\n# TYPE {name} histogram"
        );
        for ((_, m), labels) in processors.iter().zip(&labels) {
            let mut cumulative = 0;
            for (bound, bucket) in BOUNDS.iter().zip(&m.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let count = m.count.load(Ordering::Relaxed);
            let sum = m.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
        out
    }
}

/// One processor's numbers at one moment, as plain values (see
/// [`Metrics::readings`]). Counters are totals since the flow started.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorReading {
    /// The processor's id (a consumer's id, a collector's or endpoint's route).
    pub id: String,
    /// `consumer`, `collector` or `endpoint`.
    pub kind: &'static str,
    /// Replicas running.
    pub replicas: u64,
    /// Messages waiting in the source, where the source can say.
    pub backlog: Option<u64>,
    /// Messages read or requests received.
    pub items_in: u64,
    /// Items written or responses sent.
    pub items_out: u64,
    /// Failed attempts.
    pub errors: u64,
    /// Items set aside with their reason.
    pub dead_letters: u64,
    /// Batches or requests being worked on.
    pub in_flight: i64,
    /// Latencies observed.
    pub latency_count: u64,
    /// The median latency, estimated from the histogram; `None` before the first.
    pub latency_p50: Option<Duration>,
    /// The 99th percentile latency, estimated the same way.
    pub latency_p99: Option<Duration>,
}

impl ProcessorMetrics {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            replicas: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            backlog: AtomicI64::new(-1),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts `n` items in.
    pub fn add_in(&self, n: u64) {
        self.items_in.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts `n` items out.
    pub fn add_out(&self, n: u64) {
        self.items_out.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts one failed attempt.
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts `n` dead letters.
    pub fn add_dead_letters(&self, n: u64) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
    }
    /// Sets the number of replicas running.
    pub fn set_replicas(&self, n: usize) {
        self.replicas.store(n as u64, Ordering::Relaxed);
    }
    /// Sets the source's backlog.
    pub fn set_backlog(&self, n: u64) {
        self.backlog
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
    /// Adds `delta` to the work in flight.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }
    /// Records one latency.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Items in so far.
    pub fn items_in(&self) -> u64 {
        self.items_in.load(Ordering::Relaxed)
    }
    /// Items out so far.
    pub fn items_out(&self) -> u64 {
        self.items_out.load(Ordering::Relaxed)
    }
    /// Failed attempts so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Dead letters so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
    /// Replicas running.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Relaxed)
    }
    /// Work in flight.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Time spent on the work measured so far (the sum of the latencies).
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed))
    }
    /// The source's backlog, when known.
    pub fn backlog(&self) -> Option<u64> {
        u64::try_from(self.backlog.load(Ordering::Relaxed)).ok()
    }
    /// The processor's kind: `consumer`, `collector` or `endpoint`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The latency below which a share `q` (0 to 1) of the observations fall,
    /// estimated from the histogram as Prometheus' `histogram_quantile` does:
    /// linear within the bucket the rank falls in, and the highest bound (5 s)
    /// for ranks beyond it. `None` before the first observation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use riffle_flow::metrics::Metrics;
    ///
    /// let m = Metrics::new("f").processor("p", "endpoint");
    /// assert_eq!(m.latency_quantile(0.5), None);
    /// for _ in 0..99 { m.observe(Duration::from_micros(50)); }
    /// m.observe(Duration::from_millis(40));
    /// assert!(m.latency_quantile(0.5).unwrap() <= Duration::from_micros(100));
    /// assert!(m.latency_quantile(1.0).unwrap() > Duration::from_millis(25));
    /// ```
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed).max(counts.iter().sum());
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, n) in BOUNDS.iter().zip(&counts) {
            if *n > 0 && (below + n) as f64 >= rank {
                let within = ((rank - below as f64) / *n as f64).clamp(0.0, 1.0);
                return Some(Duration::from_secs_f64(lower + (bound - lower) * within));
            }
            below += n;
            lower = *bound;
        }
        Some(Duration::from_secs_f64(BOUNDS[BOUNDS.len() - 1]))
    }

    /// This processor's numbers now, under id `id`.
    pub fn reading(&self, id: String) -> ProcessorReading {
        ProcessorReading {
            id,
            kind: self.kind,
            replicas: self.replicas(),
            backlog: self.backlog(),
            items_in: self.items_in(),
            items_out: self.items_out(),
            errors: self.errors(),
            dead_letters: self.dead_letters(),
            in_flight: self.in_flight(),
            latency_count: self.count.load(Ordering::Relaxed),
            latency_p50: self.latency_quantile(0.5),
            latency_p99: self.latency_quantile(0.99),
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_carry_every_processor_in_id_order() {
        let metrics = Metrics::new("shop");
        let orders = metrics.processor("orders", "consumer");
        let api = metrics.processor("POST /orders", "collector");
        orders.set_replicas(3);
        orders.set_backlog(1200);
        orders.add_in(50);
        orders.add_out(48);
        orders.add_error();
        orders.add_dead_letters(2);
        orders.add_in_flight(2);
        api.set_replicas(1);
        api.add_in(7);
        let readings = metrics.readings();
        assert_eq!(metrics.flow(), "shop");
        assert_eq!(
            readings.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["POST /orders", "orders"]
        );
        let o = &readings[1];
        assert_eq!(o.kind, "consumer");
        assert_eq!(
            (o.replicas, o.backlog, o.items_in, o.items_out),
            (3, Some(1200), 50, 48)
        );
        assert_eq!((o.errors, o.dead_letters, o.in_flight), (1, 2, 2));
        assert_eq!(
            (o.latency_count, o.latency_p50, o.latency_p99),
            (0, None, None)
        );
        let a = &readings[0];
        assert_eq!((a.kind, a.backlog, a.items_in), ("collector", None, 7));
    }

    #[test]
    fn percentiles_fall_in_the_buckets_of_the_observations() {
        let m = Metrics::new("f").processor("p", "consumer");
        for _ in 0..90 {
            m.observe(Duration::from_micros(700)); // 0.5..1 ms
        }
        for _ in 0..10 {
            m.observe(Duration::from_millis(200)); // 100..250 ms
        }
        let r = m.reading("p".into());
        let p50 = r.latency_p50.unwrap();
        assert!(
            p50 > Duration::from_micros(500) && p50 <= Duration::from_millis(1),
            "{p50:?}"
        );
        let p99 = r.latency_p99.unwrap();
        assert!(
            p99 > Duration::from_millis(100) && p99 <= Duration::from_millis(250),
            "{p99:?}"
        );
        // Beyond the last bound: the last bound, not a guess past it.
        let slow = Metrics::new("f").processor("s", "endpoint");
        slow.observe(Duration::from_secs(30));
        assert_eq!(slow.latency_quantile(0.99), Some(Duration::from_secs(5)));
    }
}
