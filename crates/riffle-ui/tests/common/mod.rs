//! Shared test setup: a project whose SQLite store is filled by real pipeline runs,
//! and a dashboard server over it on a free loopback port.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use riffle_pipeline::metadata::{FlowRunRecord, FlowSampleRecord, MetadataStore};
use riffle_pipeline::{
    ArtifactStore, Config, Executor, Pipeline, ProjectStores, RunOptions, RunReport, RunStatus,
    Runtime,
};
use riffle_ui::{Catalog, Dashboard, DataflowEntry, PipelineDefinition, Server};

/// `shop`: load -> clean -> (by_region, by_day) -> report, and `audit` after report.
pub fn shop(fail_clean: bool) -> Pipeline {
    let mut p = Pipeline::builder("shop");
    p.about("daily sales, by region and by day")
        .schedule("@daily");
    p.config(
        Config::new()
            .env("dev", [("table", "sales_dev")])
            .default_env("dev"),
    );
    let raw = p
        .step("load", (), |ctx, ()| {
            let n: u32 = ctx.param("rows")?;
            ctx.log(format!("loading {n} rows from <b>table</b> & friends"));
            ctx.metric("rows", f64::from(n));
            Ok((0..n)
                .map(|i| {
                    (
                        ["north", "south", "east"][i as usize % 3].to_string(),
                        i % 7,
                        f64::from(i) * 1.5,
                    )
                })
                .collect::<Vec<(String, u32, f64)>>())
        })
        .param("rows", 30)
        .uses_config(&["table"])
        .version("1")
        .output();
    let clean = p
        .step("clean", &raw, move |_ctx, rows: Vec<(String, u32, f64)>| {
            if fail_clean {
                return Err("the input has a row with no region <script>alert(1)</script>".into());
            }
            Ok(rows.into_iter().filter(|r| r.2 > 0.0).collect::<Vec<_>>())
        })
        .version(if fail_clean { "broken" } else { "1" })
        .output();
    let regions = p
        .step(
            "by_region",
            &clean,
            |_ctx, rows: Vec<(String, u32, f64)>| {
                let mut totals = std::collections::BTreeMap::<String, f64>::new();
                for (region, _, amount) in rows {
                    *totals.entry(region).or_default() += amount;
                }
                Ok(totals)
            },
        )
        .version("1")
        .output();
    let days = p
        .step("by_day", &clean, |_ctx, rows: Vec<(String, u32, f64)>| {
            let mut totals = vec![0.0_f64; 7];
            for (_, day, amount) in rows {
                totals[day as usize] += amount;
            }
            Ok(totals)
        })
        .version("1")
        .output();
    let report = p
        .step(
            "report",
            (&regions, &days),
            |_ctx, (regions, days): (std::collections::BTreeMap<String, f64>, Vec<f64>)| {
                Ok(format!(
                    "{{\"regions\": {}, \"busiest_day\": {}}}",
                    regions.len(),
                    days.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i)
                        .unwrap_or(0)
                ))
            },
        )
        .version("1")
        .output();
    p.step("audit", (), |ctx, ()| {
        ctx.log("audited");
        Ok(())
    })
    .after(&report)
    .version("1");
    p.build().expect("shop builds")
}

/// `tree`: one source, 32 parts, 32 squares, then a pairwise sum down to one total,
/// and a chain of 10 checks after it: 106 steps.
pub fn tree() -> Pipeline {
    let mut p = Pipeline::builder("tree");
    let src = p
        .step("src", (), |_ctx, ()| Ok(32_u64))
        .version("1")
        .output();
    let mut level: Vec<_> = (0..32)
        .map(|i| {
            let part = p
                .step(&format!("part_{i:02}"), &src, move |_ctx, n: u64| Ok(n + i))
                .version("1")
                .output();
            p.step(&format!("square_{i:02}"), &part, |_ctx, x: u64| Ok(x * x))
                .version("1")
                .output()
        })
        .collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        level = level
            .chunks(2)
            .enumerate()
            .map(|(j, pair)| {
                p.step(
                    &format!("sum_{depth}_{j:02}"),
                    (&pair[0], &pair[1]),
                    |_ctx, (a, b): (u64, u64)| Ok(a + b),
                )
                .version("1")
                .output()
            })
            .collect();
    }
    let mut prev = level.remove(0);
    for k in 0..10 {
        prev = p
            .step(&format!("check_{k}"), &prev, |_ctx, x: u64| Ok(x))
            .version("1")
            .output();
    }
    p.build().expect("tree builds")
}

/// A pipeline whose `wait` step blocks until the returned gate is opened.
pub fn slow() -> (Pipeline, Gate) {
    let gate = Gate::default();
    let inner = gate.clone();
    let mut p = Pipeline::builder("slow");
    let first = p
        .step("first", (), |_ctx, ()| Ok(1_u32))
        .version("1")
        .output();
    let waited = p
        .step("wait", &first, move |_ctx, x: u32| {
            inner.wait();
            Ok(x + 1)
        })
        .always_run()
        .output();
    p.step("last", &waited, |_ctx, x: u32| Ok(x * 10))
        .always_run();
    (p.build().expect("slow builds"), gate)
}

/// A one-shot gate between threads.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self
                .0
                .1
                .wait_timeout(open, Duration::from_secs(60))
                .unwrap()
                .0;
        }
    }
}

/// A project folder with its stores, filled by real runs.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub executor: Executor,
    pub ok: RunReport,
    pub cached: RunReport,
    pub failed: RunReport,
    pub tree: RunReport,
}

impl Project {
    pub fn metadata_path(&self) -> std::path::PathBuf {
        self.dir.path().join(".riffle/metadata.db")
    }

    pub fn artifacts(&self) -> ArtifactStore {
        ProjectStores::local(self.dir.path()).artifacts().unwrap()
    }

    pub fn metadata(&self) -> Arc<dyn MetadataStore> {
        ProjectStores::local(self.dir.path()).metadata().unwrap()
    }
}

fn options(day: &str) -> RunOptions {
    RunOptions {
        runtime: Some(day.parse::<Runtime>().unwrap()),
        ..RunOptions::default()
    }
}

/// Runs `shop` (then again from the cache), a failing `shop`, and `tree`.
pub fn project() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let executor = ProjectStores::local(dir.path()).executor().unwrap();
    let ok = executor.run(&shop(false), options("2024-03-01")).unwrap();
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);
    let cached = executor.run(&shop(false), options("2024-03-01")).unwrap();
    assert_eq!(cached.status, RunStatus::Succeeded);
    let failed = executor.run(&shop(true), options("2024-03-02")).unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let tree = executor.run(&tree(), options("2024-03-03")).unwrap();
    assert_eq!(tree.status, RunStatus::Succeeded, "{:?}", tree.error);
    Project {
        dir,
        executor,
        ok,
        cached,
        failed,
        tree,
    }
}

/// The catalog a binary registering `shop`, `tree` and one dataflow would hand over.
pub fn catalog() -> Catalog {
    let (slow, _) = slow();
    Catalog::new()
        .pipeline(PipelineDefinition::from_pipeline(&shop(false)))
        .pipeline(PipelineDefinition::from_pipeline(&tree()))
        .pipeline(PipelineDefinition::from_pipeline(&slow))
        .dataflow(DataflowEntry {
            name: "wordcount".into(),
            about: "counts words".into(),
            description: Some(serde_json::json!({
                "name": "wordcount",
                "steps": [
                    {"step_id": "lines", "kind": "input", "upstreams": [], "outputs": ["down"]},
                    {"step_id": "split", "kind": "flat_map", "upstreams": [{"step_id": "lines", "port": "down"}], "outputs": ["down"]},
                    {"step_id": "count", "kind": "count_final", "upstreams": [{"step_id": "split", "port": "down"}], "outputs": ["down"]},
                    {"step_id": "print", "kind": "output", "upstreams": [{"step_id": "count", "port": "down"}], "outputs": []}
                ]
            })),
            error: None,
        })
        .dataflow(DataflowEntry {
            name: "needs-params".into(),
            about: "cannot be built without -P".into(),
            description: None,
            error: Some("parameter \"input\" is required".into()),
        })
}

/// A running dashboard server and its base URL.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the project's stores (with the catalog) on a free loopback port.
pub async fn serve(project: &Project, token: Option<&str>) -> Running {
    let dashboard = Dashboard::open(&project.metadata_path().to_string_lossy())
        .unwrap()
        .with_artifacts(project.artifacts())
        .with_catalog(catalog())
        .with_name("test-project");
    serve_dashboard(dashboard, token).await
}

/// Serves `dashboard` on a free loopback port.
pub async fn serve_dashboard(dashboard: Dashboard, token: Option<&str>) -> Running {
    let server = Server::bind(dashboard, "127.0.0.1:0".parse().unwrap(), token)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        base,
        stop: Some(stop),
        task,
    }
}

/// A project whose store holds flow runs and their samples, as `riffle flow run`
/// records them: `stopped` (of flow `shop`, five samples of a consumer `orders`
/// and a collector `POST /orders`, ended), `going` (of `shop`, no end, sampled a
/// second ago: running), `lost` (of `audit`, no end, last sampled long ago) and
/// `long` (1,500 samples of one processor).
pub struct FlowProject {
    pub dir: tempfile::TempDir,
    pub stopped: FlowRunRecord,
    pub going: FlowRunRecord,
    pub lost: FlowRunRecord,
    pub long: FlowRunRecord,
}

impl FlowProject {
    pub fn metadata_path(&self) -> std::path::PathBuf {
        self.dir.path().join(".riffle/metadata.db")
    }

    pub fn metadata(&self) -> Arc<dyn MetadataStore> {
        ProjectStores::local(self.dir.path()).metadata().unwrap()
    }
}

/// `orders`' replicas and backlog in run `stopped`, one per second.
pub const STOPPED_REPLICAS: [u64; 5] = [1, 2, 3, 3, 2];
pub const STOPPED_BACKLOG: [u64; 5] = [400, 300, 150, 20, 0];

pub fn flow_project() -> FlowProject {
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectStores::local(dir.path()).metadata().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let start = |flow: &str, started_ms: i64| {
        let mut r = FlowRunRecord::starting(flow, "127.0.0.1:8000");
        r.started_ms = started_ms;
        store.start_flow_run(&r).unwrap();
        r
    };
    let long = start("long", now - 10_000_000);
    let lost = start("audit", now - 120_000);
    let stopped = start("shop", now - 60_000);
    let going = start("shop", now - 2_000);

    let mut samples = Vec::new();
    for i in 0..5 {
        let at = stopped.started_ms + 1_000 * (i as i64 + 1);
        let mut orders = FlowSampleRecord::new(&stopped.id, at, "orders", "consumer");
        orders.replicas = STOPPED_REPLICAS[i];
        orders.backlog = Some(STOPPED_BACKLOG[i]);
        orders.items_in = 100 * i as u64;
        orders.items_out = 100 * i as u64;
        orders.latency_p50_ms = Some(2.5);
        orders.latency_p99_ms = Some(40.0);
        samples.push(orders);
        let mut api = FlowSampleRecord::new(&stopped.id, at, "POST /orders", "collector");
        api.replicas = 1;
        api.items_in = i as u64;
        samples.push(api);
    }
    store.record_flow_samples(&samples).unwrap();
    store
        .end_flow_run(&stopped.id, stopped.started_ms + 6_000, None)
        .unwrap();

    let mut first = FlowSampleRecord::new(&going.id, now - 1_000, "orders", "consumer");
    first.replicas = 1;
    first.backlog = Some(10);
    store.record_flow_samples(&[first]).unwrap();

    let mut last = FlowSampleRecord::new(&lost.id, now - 100_000, "check", "consumer");
    last.replicas = 1;
    store.record_flow_samples(&[last]).unwrap();

    let many: Vec<FlowSampleRecord> = (0..1_500)
        .map(|i| {
            let mut s =
                FlowSampleRecord::new(&long.id, long.started_ms + i * 1_000, "p", "consumer");
            s.replicas = 1 + (i as u64 % 3);
            s
        })
        .collect();
    store.record_flow_samples(&many).unwrap();
    store
        .end_flow_run(
            &long.id,
            long.started_ms + 1_500_000,
            Some("the sink refused"),
        )
        .unwrap();
    FlowProject {
        dir,
        stopped,
        going,
        lost,
        long,
    }
}

/// Serves the flow project's store on a free loopback port.
pub async fn serve_flows(project: &FlowProject) -> Running {
    let dashboard = Dashboard::open(&project.metadata_path().to_string_lossy()).unwrap();
    serve_dashboard(dashboard, None).await
}
