//! The JSON API against a real SQLite store filled by real pipeline runs.

mod common;

use reqwest::StatusCode;
use serde_json::Value;

async fn get(base: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON ({e}): {body}"));
    (status, json)
}

async fn ok(base: &str, path: &str) -> Value {
    let (status, json) = get(base, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {json}");
    json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_filters_pages_and_counts_cache_hits() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = &server.base;

    let all = ok(base, "/api/runs").await;
    assert_eq!(all["total"], 4);
    let runs = all["runs"].as_array().unwrap();
    // Newest first: tree, failed shop, cached shop, first shop.
    assert_eq!(runs[0]["id"], project.tree.run_id.as_str());
    assert_eq!(runs[0]["steps"], 106);
    assert_eq!(runs[2]["id"], project.cached.run_id.as_str());
    assert_eq!(runs[2]["cache_hits"], 6, "{}", runs[2]);
    assert_eq!(runs[3]["cache_hits"], 0);
    assert!(runs[3]["duration_ms"].as_i64().unwrap() >= 0);

    let failed = ok(base, "/api/runs?status=failed").await;
    assert_eq!(failed["total"], 1);
    assert_eq!(failed["runs"][0]["id"], project.failed.run_id.as_str());
    assert_eq!(failed["runs"][0]["failed_steps"], 1);

    let shop = ok(base, "/api/runs?pipeline=shop&limit=2&offset=1").await;
    assert_eq!(shop["total"], 3);
    assert_eq!(shop["runs"].as_array().unwrap().len(), 2);
    assert_eq!(shop["runs"][0]["id"], project.cached.run_id.as_str());

    // Runs are dated by when they started: all of them today.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated = ok(base, &format!("/api/runs?from={today}&to={today}")).await;
    assert_eq!(dated["total"], 4);
    let old = ok(base, "/api/runs?to=2001-01-01").await;
    assert_eq!(old["total"], 0);

    for (query, mentions) in [
        ("status=done", "not a run status"),
        ("from=yesterday", "not a date"),
        ("limit=100000", "limit"),
        ("colour=red", "unknown query parameter"),
    ] {
        let (status, json) = get(base, &format!("/api/runs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(json["error"].as_str().unwrap().contains(mentions), "{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_has_its_steps_edges_params_and_a_step_its_log_and_artifacts() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = &server.base;

    // A prefix of the run id is enough.
    let detail = ok(base, &format!("/api/runs/{}", &project.ok.run_id[..13])).await;
    assert_eq!(detail["run"]["id"], project.ok.run_id.as_str());
    assert_eq!(detail["run"]["status"], "succeeded");
    assert_eq!(detail["config"]["table"], "sales_dev");
    assert_eq!(detail["registered"], true);
    let steps = detail["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps
        .iter()
        .map(|s| s["step_id"].as_str().unwrap())
        .collect();
    for id in ["load", "clean", "by_region", "by_day", "report", "audit"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let load = steps.iter().find(|s| s["step_id"] == "load").unwrap();
    assert_eq!(load["params"]["rows"], 30);
    assert_eq!(load["attempts"], 1);
    assert!(load["cache_key"].as_str().is_some());
    let edges = detail["edges"].as_array().unwrap();
    let has = |from: &str, to: &str, kind: &str| {
        edges
            .iter()
            .any(|e| e["from"] == from && e["to"] == to && e["kind"] == kind)
    };
    assert!(has("load", "clean", "data"));
    assert!(has("by_region", "report", "data"));
    assert!(has("by_day", "report", "data"));
    assert!(has("report", "audit", "order"), "{edges:?}");

    let step = ok(base, &format!("/api/runs/{}/steps/load", project.ok.run_id)).await;
    assert_eq!(
        step["logs"][0]["message"],
        "loading 30 rows from <b>table</b> & friends"
    );
    assert_eq!(step["metrics"]["rows"], 30.0);
    let output = &step["output"];
    assert_eq!(
        output["type_name"],
        "alloc::vec::Vec<(alloc::string::String, u32, f64)>"
    );
    assert!(output["size"].as_u64().unwrap() > 0);
    assert!(
        output["uri"]
            .as_str()
            .unwrap()
            .contains(output["hash"].as_str().unwrap())
    );
    let report = ok(
        base,
        &format!("/api/runs/{}/steps/report", project.ok.run_id),
    )
    .await;
    let names: Vec<&str> = report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["by_day", "by_region"]);

    // The cached run's steps are hits with the same outputs.
    let cached = ok(base, &format!("/api/runs/{}", project.cached.run_id)).await;
    let report_hit = cached["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == "report")
        .unwrap();
    assert_eq!(report_hit["cache_hit"], true);
    assert_eq!(report_hit["status"], "cached");

    // The failed run: the error and the steps it never ran.
    let failed = ok(base, &format!("/api/runs/{}", project.failed.run_id)).await;
    let clean = failed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == "clean")
        .unwrap();
    assert_eq!(clean["status"], "failed");
    assert!(clean["error"].as_str().unwrap().contains("<script>"));
    let report = failed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == "report")
        .unwrap();
    assert!(
        ["skipped", "not_run"].contains(&report["status"].as_str().unwrap()),
        "{report}"
    );

    let tree = ok(base, &format!("/api/runs/{}", project.tree.run_id)).await;
    assert_eq!(tree["steps"].as_array().unwrap().len(), 106);
    assert_eq!(
        tree["edges"].as_array().unwrap().len(),
        32 + 32 + 31 * 2 + 10
    );

    for (path, status) in [
        ("/api/runs/ffffffff", StatusCode::NOT_FOUND),
        ("/api/runs/not-hex!", StatusCode::BAD_REQUEST),
        (
            &format!("/api/runs/{}/steps/nope", project.ok.run_id),
            StatusCode::NOT_FOUND,
        ),
        ("/api/nothing/here", StatusCode::NOT_FOUND),
    ] {
        let (got, json) = get(base, path).await;
        assert_eq!(got, status, "{path}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_have_previews_and_lineage_up_and_down() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = &server.base;

    let list = ok(base, "/api/artifacts?limit=500").await;
    assert!(list["total"].as_u64().unwrap() >= 6);

    let clean = project
        .ok
        .step("clean")
        .unwrap()
        .output
        .unwrap()
        .to_string();
    let detail = ok(base, &format!("/api/artifacts/{clean}")).await;
    assert_eq!(detail["artifact"]["hash"], clean.as_str());
    assert_eq!(detail["preview"]["kind"], "table");
    assert_eq!(
        detail["preview"]["columns"],
        serde_json::json!(["0", "1", "2"])
    );
    assert_eq!(detail["preview"]["total_rows"], 29);
    assert_eq!(detail["preview"]["rows"][0][0], "south");
    // Made by the first run and reused by the cached one; read by two steps of each.
    assert_eq!(detail["produced_count"], 2);
    assert_eq!(detail["read_count"], 4);

    let report = project
        .ok
        .step("report")
        .unwrap()
        .output
        .unwrap()
        .to_string();
    let shown = ok(base, &format!("/api/artifacts/{}", &report[..16])).await;
    assert_eq!(shown["preview"]["kind"], "json");
    assert_eq!(shown["preview"]["value"]["regions"], 3);

    let lineage = ok(base, &format!("/api/artifacts/{clean}/lineage")).await;
    assert_eq!(lineage["upstream_steps"], 2); // clean, load
    assert_eq!(lineage["downstream_steps"], 3); // by_region, by_day, report
    let labels: Vec<&str> = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "step")
        .map(|n| n["label"].as_str().unwrap())
        .collect();
    for label in [
        "shop.load",
        "shop.clean",
        "shop.by_region",
        "shop.by_day",
        "shop.report",
    ] {
        assert!(labels.contains(&label), "{label} not in {labels:?}");
    }
    let edges = lineage["edges"].as_array().unwrap();
    assert!(edges.iter().any(|e| e["to"] == format!("artifact:{clean}")));
    assert!(
        edges
            .iter()
            .any(|e| e["from"] == format!("artifact:{clean}"))
    );

    let (status, json) = get(base, "/api/artifacts/00000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_dataflows_info_and_openapi() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = &server.base;

    let pipelines = ok(base, "/api/pipelines").await;
    let list = pipelines["pipelines"].as_array().unwrap();
    let shop = list.iter().find(|p| p["id"] == "shop").unwrap();
    assert_eq!(shop["schedule"], "@daily");
    assert_eq!(shop["runs_total"], 3);
    assert_eq!(shop["registered"], true);
    assert_eq!(shop["steps"], 6);
    assert_eq!(shop["last_runs"][0]["id"], project.failed.run_id.as_str());
    let slow = list.iter().find(|p| p["id"] == "slow").unwrap();
    assert_eq!(slow["runs_total"], 0, "registered but never run");

    let flows = ok(base, "/api/dataflows").await;
    assert_eq!(flows["dataflows"][1]["name"], "wordcount");
    assert_eq!(flows["dataflows"][1]["steps"], 4);
    assert!(flows["dataflows"][0]["error"].as_str().is_some());
    let flow = ok(base, "/api/dataflows/wordcount").await;
    assert_eq!(flow["description"]["steps"][1]["kind"], "flat_map");
    let (status, _) = get(base, "/api/dataflows/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let info = ok(base, "/api/info").await;
    assert_eq!(info["name"], "test-project");
    assert_eq!(info["read_only"], true);

    // Every route the server answers is in the OpenAPI document, and vice versa.
    let doc = ok(base, "/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let expected = [
        "/api/info",
        "/api/openapi.json",
        "/api/pipelines",
        "/api/runs",
        "/api/runs/{run}",
        "/api/runs/{run}/steps/{step}",
        "/api/artifacts",
        "/api/artifacts/{hash}",
        "/api/artifacts/{hash}/lineage",
        "/api/dataflows",
        "/api/dataflows/{name}",
        "/api/flows",
        "/api/flows/{run}",
    ];
    assert_eq!(paths.len(), expected.len(), "{paths:?}");
    for p in expected {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_progress_is_seen_as_it_goes() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = server.base.clone();
    let (slow, gate) = common::slow();
    let executor = riffle_pipeline::ProjectStores::local(project.dir.path())
        .executor()
        .unwrap();
    let running = std::thread::spawn(move || executor.run(&slow, Default::default()).unwrap());

    let mut seen_running = None;
    for _ in 0..200 {
        let runs = ok(&base, "/api/runs?pipeline=slow").await;
        if runs["total"] == 1 {
            let id = runs["runs"][0]["id"].as_str().unwrap().to_string();
            let detail = ok(&base, &format!("/api/runs/{id}")).await;
            let wait = detail["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["step_id"] == "wait")
                .cloned();
            if let Some(wait) = wait
                && wait["status"] == "running"
            {
                assert_eq!(detail["run"]["status"], "running");
                let last = detail["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["step_id"] == "last")
                    .unwrap();
                assert_eq!(last["status"], "pending");
                seen_running = Some(id);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = seen_running.expect("the dashboard never saw the run going");
    gate.open();
    let report = tokio::task::spawn_blocking(move || running.join().unwrap())
        .await
        .unwrap();
    assert_eq!(report.run_id, id);
    let detail = ok(&base, &format!("/api/runs/{id}")).await;
    assert_eq!(detail["run"]["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_and_nothing_writes() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let token = "correct-horse-battery-staple";
    let server = common::serve(&project, Some(token)).await;
    let base = &server.base;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    for path in ["/", "/assets/app.js", "/api/runs", "/api/openapi.json"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"));
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }

    // A browser opens /?token=... once and keeps a cookie.
    let r = client
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    let r = client
        .get(format!("{base}/api/runs"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .get(format!("{base}/?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Read-only: other methods are refused even with the token.
    let r = client
        .post(format!("{base}/api/runs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = client
        .delete(format!("{base}/api/artifacts/00"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A foreign host name (DNS rebinding) is refused on a loopback listener.
    let r = client
        .get(format!("{base}/api/runs"))
        .bearer_auth(token)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let base = &server.base;
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js"));
    for asset in [
        "/assets/app.js",
        "/assets/layout.js",
        "/assets/graph.js",
        "/assets/chart.js",
        "/assets/dom.js",
        "/assets/app.css",
    ] {
        let r = reqwest::get(format!("{base}{asset}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        let text = r.text().await.unwrap();
        assert!(!text.is_empty(), "{asset} is empty");
        // No stored text is ever parsed as markup.
        assert!(
            !text.contains("innerHTML") && !text.contains("insertAdjacentHTML"),
            "{asset}"
        );
    }
    let (status, json) = get(base, "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json["error"].as_str().is_some());
}

#[test]
fn a_missing_store_is_a_clear_error_not_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".riffle/metadata.db");
    let err = riffle_ui::Dashboard::open(&path.to_string_lossy())
        .err()
        .unwrap();
    assert!(err.to_string().contains("run a pipeline first"), "{err}");
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_runs_and_their_processors_over_time() {
    let project = tokio::task::spawn_blocking(common::flow_project)
        .await
        .unwrap();
    let server = common::serve_flows(&project).await;
    let base = &server.base;

    // Newest first, each with the status its end and samples say.
    let list = ok(base, "/api/flows").await;
    let runs = list["runs"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (project.going.id.as_str(), "running"),
            (project.stopped.id.as_str(), "stopped"),
            (project.lost.id.as_str(), "lost"),
            (project.long.id.as_str(), "failed"),
        ]
    );
    assert_eq!(runs[1]["duration_ms"], 6_000);
    assert_eq!(runs[1]["addr"], "127.0.0.1:8000");
    assert!(!runs[1]["host"].as_str().unwrap().is_empty());
    assert_eq!(runs[3]["error"], "the sink refused");
    let shop = ok(base, "/api/flows?flow=shop").await;
    assert_eq!(shop["runs"].as_array().unwrap().len(), 2);
    let one = ok(base, "/api/flows?limit=1").await;
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);
    for (query, mentions) in [("limit=lots", "limit"), ("status=running", "status")] {
        let (status, json) = get(base, &format!("/api/flows?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains(mentions),
            "{query}: {json}"
        );
    }

    // One run: each processor's latest numbers and its series, by id.
    let id = &project.stopped.id;
    let detail = ok(base, &format!("/api/flows/{id}")).await;
    assert_eq!(detail["run"]["status"], "stopped");
    assert_eq!(detail["thinned"], false);
    let processors = detail["processors"].as_array().unwrap();
    assert_eq!(processors.len(), 2);
    let (api, orders) = (&processors[0], &processors[1]);
    assert_eq!(
        (api["id"].as_str(), api["kind"].as_str()),
        (Some("POST /orders"), Some("collector"))
    );
    assert_eq!(api["backlog"], Value::Null);
    assert_eq!(
        api["series"]["backlog"],
        serde_json::json!([null, null, null, null, null])
    );
    assert_eq!(orders["kind"], "consumer");
    assert_eq!(
        (orders["replicas"].as_u64(), orders["backlog"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        (orders["items_in"].as_u64(), orders["samples"].as_u64()),
        (Some(400), Some(5))
    );
    assert_eq!(orders["latency_p99_ms"], 40.0);
    assert_eq!(
        orders["series"]["replicas"],
        serde_json::json!(common::STOPPED_REPLICAS)
    );
    assert_eq!(
        orders["series"]["backlog"],
        serde_json::json!(common::STOPPED_BACKLOG)
    );
    let times: Vec<i64> = orders["series"]["at_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap() - project.stopped.started_ms)
        .collect();
    assert_eq!(times, [1_000, 2_000, 3_000, 4_000, 5_000]);
    // By a unique prefix too.
    let by_prefix = ok(base, &format!("/api/flows/{}", &id[..id.len() - 3])).await;
    assert_eq!(by_prefix["run"]["id"], id.as_str());

    // A long run is thinned, keeping its first and latest samples.
    let long = ok(base, &format!("/api/flows/{}", project.long.id)).await;
    assert_eq!(long["thinned"], true);
    let series = &long["processors"][0]["series"]["at_ms"];
    let at = series.as_array().unwrap();
    assert_eq!(at.len(), riffle_ui::api::MAX_POINTS);
    assert_eq!(at[0].as_i64(), Some(project.long.started_ms));
    assert_eq!(
        at[at.len() - 1].as_i64(),
        Some(project.long.started_ms + 1_499_000)
    );
    assert_eq!(long["processors"][0]["samples"], 1_500);

    let (status, json) = get(base, "/api/flows/not-hex").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    let (status, json) = get(base, "/api/flows/0000aaaa").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("0000aaaa"),
        "{json}"
    );
}
