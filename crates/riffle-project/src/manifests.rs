//! Kubernetes manifests that run a registered dataflow as a cluster of processes.
//!
//! A timely cluster needs every process to know its id and every peer's address.
//! On Kubernetes that is a StatefulSet behind a headless Service:
//!
//! - pod `NAME-i` gets `RIFFLE_PROCESS_ID=i` from its ordinal (the
//!   `apps.kubernetes.io/pod-index` label, Kubernetes 1.28 and later, read through the
//!   downward API), and `RIFFLE_ADDRESSES` lists `NAME-0.NAME:PORT,NAME-1.NAME:PORT,...`,
//!   the stable DNS names the headless Service gives the pods (published before they
//!   are ready, since the processes find each other while starting);
//! - `riffle run FLOW` joins the cluster from those variables, as the processes that
//!   `riffle run -p N` spawns do;
//! - with a recovery store, every pod mounts one `ReadWriteMany` volume at
//!   `/var/lib/riffle/recovery` and runs with `--recovery`, and a Job initialises the
//!   store once (`riffle recovery init`). If a process dies, the others fail with it and
//!   the StatefulSet restarts them; the run resumes from the last committed epoch.
//!
//! The output is YAML documents (each written as JSON, which YAML reads as is).
//!
//! ```
//! use riffle_project::manifests::{ClusterSpec, render_manifests};
//!
//! let spec = ClusterSpec::new("wordcount", "registry.example/app:1.4", 3);
//! let yaml = render_manifests(&spec).unwrap();
//! assert!(yaml.contains(r#""kind": "StatefulSet""#));
//! assert!(yaml.contains("wordcount-0.wordcount:2101,wordcount-1.wordcount:2101,wordcount-2.wordcount:2101"));
//! ```

use serde_json::{Value, json};

use crate::dags::k8s_name;

/// The recovery store of a cluster.
#[derive(Debug, Clone)]
pub struct RecoverySpec {
    /// The volume's size, e.g. `10Gi`.
    pub size: String,
    /// The storage class (must offer `ReadWriteMany`); the cluster's default if `None`.
    pub storage_class: Option<String>,
    /// The store's partitions (`riffle recovery init --partitions`).
    pub partitions: u32,
    /// `--snapshot-interval`, e.g. `10s`.
    pub snapshot_interval: String,
}

/// A dataflow cluster to describe.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The registered dataflow to run.
    pub flow: String,
    /// The objects' name (the flow's name made a Kubernetes name unless set).
    pub name: String,
    /// The image whose entrypoint is the project's binary.
    pub image: String,
    /// Processes (pods).
    pub processes: u32,
    /// Worker threads per process.
    pub workers: u32,
    /// The namespace, if the manifests should name one.
    pub namespace: Option<String>,
    /// The port timely's processes talk on.
    pub port: u16,
    /// `-P key=value` parameters for the flow.
    pub params: Vec<(String, String)>,
    /// The recovery store, if any.
    pub recovery: Option<RecoverySpec>,
}

impl ClusterSpec {
    /// A cluster of `processes` pods of one worker each, on port 2101, no recovery.
    pub fn new(flow: &str, image: &str, processes: u32) -> Self {
        Self {
            flow: flow.to_string(),
            name: k8s_name(flow),
            image: image.to_string(),
            processes,
            workers: 1,
            namespace: None,
            port: 2101,
            params: Vec::new(),
            recovery: None,
        }
    }
}

/// Why manifests could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A setting is out of range.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        why: &'static str,
    },
}

const RECOVERY_DIR: &str = "/var/lib/riffle/recovery";

fn metadata(spec: &ClusterSpec, name: &str) -> Value {
    let mut meta = json!({
        "name": name,
        "labels": { "app.kubernetes.io/name": spec.name, "app.kubernetes.io/managed-by": "riffle" },
    });
    if let Some(ns) = &spec.namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

/// The Service, StatefulSet (and, with recovery, the volume claim and the Job that
/// initialises the store) as YAML documents.
pub fn render_manifests(spec: &ClusterSpec) -> Result<String, ManifestError> {
    if spec.processes == 0 {
        return Err(ManifestError::Invalid {
            what: "processes",
            value: "0".into(),
            why: "a cluster needs at least one process",
        });
    }
    if spec.workers == 0 {
        return Err(ManifestError::Invalid {
            what: "workers",
            value: "0".into(),
            why: "a process needs at least one worker",
        });
    }
    if spec.name.is_empty() || spec.name != k8s_name(&spec.name) || spec.name.len() > 52 {
        return Err(ManifestError::Invalid {
            what: "name",
            value: spec.name.clone(),
            why: "use lower-case letters, digits and -, at most 52 characters",
        });
    }
    let name = spec.name.as_str();
    let selector = json!({ "app.kubernetes.io/name": name });
    let addresses: Vec<String> = (0..spec.processes)
        .map(|i| format!("{name}-{i}.{name}:{}", spec.port))
        .collect();
    let mut docs = Vec::new();
    docs.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, name),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": selector,
            "ports": [{ "name": "timely", "port": spec.port, "targetPort": spec.port }],
        },
    }));
    let mut args = vec![
        json!("run"),
        json!(spec.flow),
        json!("--workers"),
        json!(spec.workers.to_string()),
    ];
    for (k, v) in &spec.params {
        args.push(json!("-P"));
        args.push(json!(format!("{k}={v}")));
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let claim = format!("{name}-recovery");
    if let Some(recovery) = &spec.recovery {
        args.extend([
            json!("--recovery"),
            json!(RECOVERY_DIR),
            json!("--snapshot-interval"),
            json!(recovery.snapshot_interval),
        ]);
        let mut pvc = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(spec, &claim),
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": { "requests": { "storage": recovery.size } },
            },
        });
        if let Some(class) = &recovery.storage_class {
            pvc["spec"]["storageClassName"] = json!(class);
        }
        docs.push(pvc);
        volumes
            .push(json!({ "name": "recovery", "persistentVolumeClaim": { "claimName": claim } }));
        mounts.push(json!({ "name": "recovery", "mountPath": RECOVERY_DIR }));
        docs.push(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata(spec, &format!("{name}-recovery-init")),
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": { "labels": { "app.kubernetes.io/name": format!("{name}-recovery-init") } },
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": pod_security(),
                        "containers": [{
                            "name": "init",
                            "image": spec.image,
                            "args": ["recovery", "init", RECOVERY_DIR, "--partitions", recovery.partitions.to_string()],
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
        }));
    }
    docs.push(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(spec, name),
        "spec": {
            "serviceName": name,
            "replicas": spec.processes,
            "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": selector },
                "spec": {
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": "riffle",
                        "image": spec.image,
                        "args": args,
                        "env": [
                            {
                                "name": "RIFFLE_PROCESS_ID",
                                "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']" } },
                            },
                            { "name": "RIFFLE_ADDRESSES", "value": addresses.join(",") },
                            { "name": "RIFFLE_WORKERS_PER_PROCESS", "value": spec.workers.to_string() },
                        ],
                        "ports": [{ "name": "timely", "containerPort": spec.port }],
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }));
    Ok(documents(docs))
}

/// YAML documents, each written as JSON (which YAML reads as is).
pub(crate) fn documents(docs: Vec<Value>) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&doc).expect("JSON values serialize"));
        out.push('\n');
    }
    out
}

pub(crate) fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": crate::image::USER_ID,
        "runAsGroup": crate::image::USER_ID,
        "fsGroup": crate::image::USER_ID,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_adds_a_shared_volume_and_an_init_job() {
        let mut spec = ClusterSpec::new("windowed-counts", "img:1", 2);
        spec.workers = 4;
        spec.params.push(("events".into(), "/data/e.csv".into()));
        spec.recovery = Some(RecoverySpec {
            size: "5Gi".into(),
            storage_class: None,
            partitions: 4,
            snapshot_interval: "10s".into(),
        });
        let yaml = render_manifests(&spec).unwrap();
        assert_eq!(yaml.matches("---\n").count(), 4);
        for needle in [
            r#""kind": "PersistentVolumeClaim""#,
            r#""ReadWriteMany""#,
            r#""--recovery","#,
            r#""events=/data/e.csv""#,
            r#""value": "windowed-counts-0.windowed-counts:2101,windowed-counts-1.windowed-counts:2101""#,
            r#""value": "4""#,
        ] {
            assert!(yaml.contains(needle), "{needle} in {yaml}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let spec = ClusterSpec::new("x", "img", 0);
        assert!(
            render_manifests(&spec)
                .unwrap_err()
                .to_string()
                .contains("processes")
        );
        let mut spec = ClusterSpec::new("x", "img", 1);
        spec.name = "Bad_Name".into();
        assert!(
            render_manifests(&spec)
                .unwrap_err()
                .to_string()
                .contains("Bad_Name")
        );
    }
}
