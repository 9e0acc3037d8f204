//! The API over a Postgres metadata store, where lists come from the store trait's
//! reads (`Listing::Generic`). Runs when `RIFFLE_TEST_POSTGRES_URL` is set
//! (scripts/test.d/20-postgres.sh starts a server); skipped with a printed reason
//! otherwise, and failing under CI (`CI=true`).

mod common;

use std::sync::Arc;

use riffle_pipeline::metadata::{FlowRunRecord, FlowSampleRecord, MetadataStore, PostgresStore};
use riffle_pipeline::{ArtifactStore, Executor, RunOptions, RunStatus};
use riffle_ui::Dashboard;
use riffle_ui::listing::Listing;
use serde_json::Value;

fn postgres_url() -> Option<String> {
    match std::env::var("RIFFLE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but RIFFLE_TEST_POSTGRES_URL is not set: scripts/test.d/20-postgres.sh \
             should have started PostgreSQL"
        ),
        _ => {
            eprintln!("skipping the Postgres dashboard test: RIFFLE_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

async fn ok(base: &str, path: &str) -> Value {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reads_a_postgres_store_through_the_trait() {
    let Some(url) = postgres_url() else { return };
    let schema = format!(
        "ui_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let dir = tempfile::tempdir().unwrap();
    let (metadata, artifacts, ok_run, failed_run, flow_run) =
        tokio::task::spawn_blocking(move || {
            let metadata: Arc<dyn MetadataStore> =
                Arc::new(PostgresStore::connect_in_schema(&url, &schema).unwrap());
            let artifacts = ArtifactStore::local(&dir.path().join(".riffle")).unwrap();
            let executor = Executor::new(artifacts.clone(), metadata.clone());
            let ok = executor
                .run(&common::shop(false), RunOptions::default())
                .unwrap();
            let cached = executor
                .run(&common::shop(false), RunOptions::default())
                .unwrap();
            assert_eq!(cached.status, RunStatus::Succeeded);
            let failed = executor
                .run(&common::shop(true), RunOptions::default())
                .unwrap();
            assert_eq!(failed.status, RunStatus::Failed);
            // A flow run with two samples of one consumer.
            let flow = FlowRunRecord::starting("shop", "127.0.0.1:8000");
            metadata.start_flow_run(&flow).unwrap();
            let samples: Vec<_> = [(1_u64, 90_u64), (2, 40)]
                .iter()
                .enumerate()
                .map(|(i, (replicas, backlog))| {
                    let at = flow.started_ms + 1_000 * (i as i64 + 1);
                    let mut s = FlowSampleRecord::new(&flow.id, at, "orders", "consumer");
                    s.replicas = *replicas;
                    s.backlog = Some(*backlog);
                    s
                })
                .collect();
            metadata.record_flow_samples(&samples).unwrap();
            metadata
                .end_flow_run(&flow.id, flow.started_ms + 3_000, None)
                .unwrap();
            (metadata, (artifacts, dir), ok, failed, flow)
        })
        .await
        .unwrap();
    let dashboard = Dashboard::from_parts(metadata, Listing::Generic)
        .with_artifacts(artifacts.0.clone())
        .with_catalog(common::catalog());
    let server = common::serve_dashboard(dashboard, None).await;
    let base = &server.base;

    let runs = ok(base, "/api/runs").await;
    assert_eq!(runs["total"], 3);
    assert_eq!(runs["runs"][1]["cache_hits"], 6);
    let failed = ok(base, "/api/runs?status=failed&limit=1").await;
    assert_eq!(failed["total"], 1);
    assert_eq!(failed["runs"][0]["id"], failed_run.run_id.as_str());
    let detail = ok(base, &format!("/api/runs/{}", ok_run.run_id)).await;
    assert_eq!(detail["steps"].as_array().unwrap().len(), 6);
    let pipelines = ok(base, "/api/pipelines").await;
    let shop = pipelines["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop["runs_total"], 3);
    let clean = ok_run.step("clean").unwrap().output.unwrap().to_string();
    let artifact = ok(base, &format!("/api/artifacts/{clean}")).await;
    assert_eq!(artifact["preview"]["kind"], "table");
    let lineage = ok(base, &format!("/api/artifacts/{clean}/lineage")).await;
    assert_eq!(lineage["upstream_steps"], 2);
    let listed = ok(base, "/api/artifacts").await;
    assert!(listed["total"].as_u64().unwrap() >= 5, "{listed}");

    let flows = ok(base, "/api/flows").await;
    assert_eq!(flows["runs"][0]["id"], flow_run.id.as_str());
    assert_eq!(flows["runs"][0]["status"], "stopped");
    let flow = ok(base, &format!("/api/flows/{}", flow_run.id)).await;
    let orders = &flow["processors"][0];
    assert_eq!(orders["id"], "orders");
    assert_eq!(orders["series"]["replicas"], serde_json::json!([1, 2]));
    assert_eq!(orders["series"]["backlog"], serde_json::json!([90, 40]));
}
