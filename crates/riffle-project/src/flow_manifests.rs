//! Kubernetes manifests that run a Flow: one Deployment per unit (a consumer, a
//! collector, a service with its endpoints), each running `flow run NAME --only
//! UNIT`; a Service in front of every HTTP unit; and a KEDA `ScaledObject` per
//! consumer whose source is a broker's, with the trigger of that broker, so
//! replicas in several pods share the work (Kafka consumers of one group split
//! the partitions as Kafka rebalances them; queue readers share the queue).
//!
//! | source | KEDA trigger | what scales it |
//! |---|---|---|
//! | Kafka | `kafka` | the group's lag per partition over `lagThreshold` |
//! | SQS | `aws-sqs-queue` | visible messages over `queueLength` |
//! | Redis Streams | `redis-streams` | the group's pending entries over `pendingEntriesCount` |
//! | NATS JetStream | `nats-jetstream` | the consumer's lag over `lagThreshold` (the server's monitoring port, 8222) |
//! | RabbitMQ | `rabbitmq` | ready messages over `value` (the AMQP URL from `RABBITMQ_URL`) |
//!
//! Credentials are not written: the pods read them from the environment, as the
//! connectors do; a broker that needs them for KEDA too gets a
//! `TriggerAuthentication` of the operator's own.
//!
//! ```
//! use riffle_project::flow_manifests::{FlowSpec, UnitSpec, render_flow_manifests};
//!
//! let mut spec = FlowSpec::new("shop", "registry.example/shop:1.2");
//! spec.units.push(UnitSpec {
//!     id: "orders".into(),
//!     kind: "consumer".into(),
//!     min_replicas: 0,
//!     max_replicas: 8,
//!     source: Some(("kafka".into(), vec![
//!         ("brokers".into(), "kafka:9092".into()),
//!         ("topic".into(), "orders".into()),
//!         ("group".into(), "riffle.orders".into()),
//!     ])),
//!     routes: vec![],
//!     in_flight_per_replica: None,
//! });
//! let yaml = render_flow_manifests(&spec).unwrap();
//! assert!(yaml.contains(r#""kind": "ScaledObject""#));
//! assert!(yaml.contains(r#""consumerGroup": "riffle.orders""#));
//! ```

use serde_json::{Value, json};

use crate::dags::k8s_name;
use crate::manifests::{ManifestError, documents, pod_security};

/// A Flow to deploy.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// The registered flow's name (`flow run NAME`).
    pub flow: String,
    /// The image whose entrypoint is the project's binary.
    pub image: String,
    /// The environment the pods run with (`--env`).
    pub env: Option<String>,
    /// The namespace, if not the current one.
    pub namespace: Option<String>,
    /// What is deployed.
    pub units: Vec<UnitSpec>,
    /// The pods' HTTP port (routes and `/metrics`).
    pub port: u16,
    /// The backlog per replica the triggers aim at.
    pub lag_threshold: u64,
    /// The Prometheus server KEDA reads HTTP units' requests in flight from
    /// (`http://prometheus.monitoring:9090`); needed when an HTTP unit scales.
    pub prometheus: Option<String>,
}

impl FlowSpec {
    /// Flow `flow` from `image`, port 8000, 100 messages of backlog per replica.
    pub fn new(flow: &str, image: &str) -> Self {
        Self {
            flow: flow.to_string(),
            image: image.to_string(),
            env: None,
            namespace: None,
            units: Vec::new(),
            port: 8000,
            lag_threshold: 100,
            prometheus: None,
        }
    }
}

/// One unit: a consumer, a collector or a service.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    /// Its id in the flow.
    pub id: String,
    /// `consumer`, `collector` or `service`.
    pub kind: String,
    /// The fewest replicas (0: scaled to zero by KEDA when idle).
    pub min_replicas: usize,
    /// The most replicas.
    pub max_replicas: usize,
    /// A consumer's source: the system and its fields (`brokers`, `topic`, ...).
    pub source: Option<(String, Vec<(String, String)>)>,
    /// The routes an HTTP unit serves.
    pub routes: Vec<String>,
    /// Requests in flight per pod an HTTP unit scales on (between its min and
    /// max replicas), if it scales.
    pub in_flight_per_replica: Option<u64>,
}

/// The Deployments, Services and ScaledObjects, as YAML documents (each written
/// as JSON, which YAML reads as is).
pub fn render_flow_manifests(spec: &FlowSpec) -> Result<String, ManifestError> {
    let base = k8s_name(&spec.flow);
    if base.is_empty() {
        return Err(ManifestError::Invalid {
            what: "flow",
            value: spec.flow.clone(),
            why: "a flow's name needs letters or digits",
        });
    }
    let mut docs = Vec::new();
    for unit in &spec.units {
        let name: String = k8s_name(&format!("{base}-{}", unit.id))
            .chars()
            .take(52)
            .collect();
        let name = name.trim_end_matches('-').to_string();
        let labels = json!({
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": base,
            "app.kubernetes.io/component": unit.kind,
            "app.kubernetes.io/managed-by": "riffle",
        });
        let selector = json!({ "app.kubernetes.io/name": name });
        let mut meta = json!({ "name": name, "labels": labels });
        if let Some(ns) = &spec.namespace {
            meta["namespace"] = json!(ns);
        }
        let mut args = vec![
            json!("flow"),
            json!("run"),
            json!(spec.flow),
            json!("--only"),
            json!(unit.id),
            json!("--addr"),
            json!(format!("0.0.0.0:{}", spec.port)),
        ];
        if let Some(env) = &spec.env {
            args.extend([json!("--env"), json!(env)]);
        }
        // KEDA takes over a scaled consumer's count; it starts at one pod.
        let replicas = unit.min_replicas.max(1);
        docs.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "securityContext": pod_security(),
                        // A drain finishes the batch or requests in hand.
                        "terminationGracePeriodSeconds": 60,
                        "containers": [{
                            "name": "riffle",
                            "image": spec.image,
                            "args": args,
                            "ports": [{ "name": "http", "containerPort": spec.port }],
                            "readinessProbe": {
                                "httpGet": { "path": "/metrics", "port": "http" },
                            },
                        }],
                    },
                },
            },
        }));
        if unit.kind != "consumer" {
            docs.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "selector": selector,
                    "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
                },
            }));
        }
        if let Some(target) = unit
            .in_flight_per_replica
            .filter(|_| unit.kind != "consumer" && unit.max_replicas > unit.min_replicas)
        {
            let Some(server) = spec.prometheus.as_deref() else {
                return Err(ManifestError::Invalid {
                    what: "HTTP unit",
                    value: unit.id.clone(),
                    why: "it scales on requests in flight, which KEDA reads from Prometheus: \
                          give the Prometheus server (riffle flow manifests --prometheus URL)",
                });
            };
            docs.push(json!({
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": meta,
                "spec": {
                    "scaleTargetRef": { "name": name },
                    "minReplicaCount": unit.min_replicas.max(1),
                    "maxReplicaCount": unit.max_replicas,
                    "triggers": [{
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": server,
                            "query": in_flight_query(&spec.flow, unit),
                            "threshold": target.to_string(),
                        },
                    }],
                },
            }));
        }
        if let Some((system, fields)) = unit.source.as_ref().filter(|_| unit.kind == "consumer") {
            let Some(trigger) = trigger(system, fields, spec.lag_threshold) else {
                continue;
            };
            docs.push(json!({
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": meta,
                "spec": {
                    "scaleTargetRef": { "name": name },
                    "minReplicaCount": unit.min_replicas,
                    "maxReplicaCount": unit.max_replicas.max(1),
                    "triggers": [trigger],
                },
            }));
        }
    }
    Ok(documents(docs))
}

/// The PromQL sum of `unit`'s requests in flight over its pods: a service's
/// endpoints are the processors named `SERVICE ...`, a collector is the one
/// named by its route.
fn in_flight_query(flow: &str, unit: &UnitSpec) -> String {
    let quoted = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let processor = if unit.kind == "collector" {
        format!("processor=\"{}\"", quoted(&unit.id))
    } else {
        let escaped: String = unit
            .id
            .chars()
            .flat_map(|c| {
                let special = "\\.+*?()|[]{}^$".contains(c);
                special.then_some('\\').into_iter().chain([c])
            })
            .collect();
        format!("processor=~\"{} .*\"", quoted(&escaped))
    };
    format!(
        "sum(riffle_flow_in_flight{{flow=\"{}\",{processor}}})",
        quoted(flow)
    )
}

/// The KEDA trigger for a source of `system`, or `None` for one KEDA cannot
/// read.
fn trigger(system: &str, fields: &[(String, String)], threshold: u64) -> Option<Value> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let threshold = threshold.to_string();
    let host = |url: String| {
        let rest = url
            .split_once("://")
            .map_or(url.as_str(), |(_, r)| r)
            .to_string();
        let rest = rest
            .rsplit_once('@')
            .map_or(rest.as_str(), |(_, h)| h)
            .to_string();
        rest.split(['/', ','])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    Some(match system {
        "kafka" => json!({
            "type": "kafka",
            "metadata": {
                "bootstrapServers": get("brokers"),
                "consumerGroup": get("group"),
                "topic": get("topic"),
                "lagThreshold": threshold,
            },
        }),
        "sqs" => {
            let mut metadata = json!({
                "queueURL": get("queue"),
                "queueLength": threshold,
                "awsRegion": get("region"),
            });
            let endpoint = get("endpoint");
            if !endpoint.is_empty() {
                metadata["awsEndpoint"] = json!(endpoint);
            }
            json!({ "type": "aws-sqs-queue", "metadata": metadata })
        }
        "redis" => json!({
            "type": "redis-streams",
            "metadata": {
                "address": host(get("server")),
                "stream": get("stream"),
                "consumerGroup": get("group"),
                "pendingEntriesCount": threshold,
            },
        }),
        "nats" => {
            let server = host(get("servers"));
            let monitoring = match server.rsplit_once(':') {
                Some((h, _)) => format!("{h}:8222"),
                None => format!("{server}:8222"),
            };
            json!({
                "type": "nats-jetstream",
                "metadata": {
                    "natsServerMonitoringEndpoint": monitoring,
                    "account": "$G",
                    "stream": get("stream"),
                    "consumer": get("consumer"),
                    "lagThreshold": threshold,
                },
            })
        }
        "rabbitmq" => json!({
            "type": "rabbitmq",
            "metadata": {
                "queueName": get("queue"),
                "mode": "QueueLength",
                "value": threshold,
                "hostFromEnv": "RABBITMQ_URL",
            },
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_unit(id: &str, kind: &str, scales: bool) -> UnitSpec {
        UnitSpec {
            id: id.into(),
            kind: kind.into(),
            min_replicas: 1,
            max_replicas: if scales { 6 } else { 1 },
            source: None,
            routes: vec!["GET /x".into()],
            in_flight_per_replica: scales.then_some(24),
        }
    }

    #[test]
    fn a_scaled_http_unit_gets_a_prometheus_trigger_on_its_requests_in_flight() {
        let mut spec = FlowSpec::new("shop", "registry.example/shop:1");
        spec.units.push(http_unit("api.v1", "service", true));
        spec.units
            .push(http_unit("POST /orders", "collector", true));
        spec.units.push(http_unit("fixed", "service", false));
        let refused = render_flow_manifests(&spec).unwrap_err().to_string();
        assert!(
            refused.contains("\"api.v1\"") && refused.contains("--prometheus"),
            "{refused}"
        );

        spec.prometheus = Some("http://prometheus.monitoring:9090".into());
        let yaml = render_flow_manifests(&spec).unwrap();
        let scaled: Vec<Value> = yaml
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|d| d["kind"] == "ScaledObject")
            .collect();
        assert_eq!(scaled.len(), 2, "{yaml}");
        let trigger = &scaled[0]["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "prometheus");
        assert_eq!(trigger["metadata"]["threshold"], "24");
        assert_eq!(
            trigger["metadata"]["query"],
            r#"sum(riffle_flow_in_flight{flow="shop",processor=~"api\\.v1 .*"})"#
        );
        assert_eq!(scaled[0]["spec"]["maxReplicaCount"], 6);
        assert_eq!(
            scaled[1]["spec"]["triggers"][0]["metadata"]["query"],
            r#"sum(riffle_flow_in_flight{flow="shop",processor="POST /orders"})"#
        );
    }
}
