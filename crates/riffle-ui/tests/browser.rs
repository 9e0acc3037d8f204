//! End-to-end tests in real headless Chromium, driven through chromedriver.
//!
//! `scripts/test.d/30-chromium.sh` installs Debian's chromium and chromium-driver and
//! exports `RIFFLE_TEST_CHROMEDRIVER` (and `RIFFLE_TEST_CHROMIUM`). Without it these
//! tests print why and pass, except under CI (`CI=true`), where they fail. Each page
//! visited is saved as a PNG under `target/ui-screenshots/` for review.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Option<Driver> {
    let path = match std::env::var("RIFFLE_TEST_CHROMEDRIVER") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but RIFFLE_TEST_CHROMEDRIVER is not set: scripts/test.d/30-chromium.sh \
                     should have installed chromium-driver, and the browser tests would not run"
                );
            }
            eprintln!(
                "skipping the browser test: RIFFLE_TEST_CHROMEDRIVER is not set \
                 (scripts/test.d/30-chromium.sh installs Chromium and sets it)"
            );
            return None;
        }
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver at {path}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut chrome = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1500,1000", "--hide-scrollbars", "--force-device-scale-factor=1"]
    });
    if let Ok(binary) = std::env::var("RIFFLE_TEST_CHROMIUM")
        && !binary.is_empty()
    {
        chrome["binary"] = Value::String(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("chromedriver starts a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits until the JavaScript expression `condition` is true in the page.
async fn until(client: &Client, condition: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = client
            .execute(&format!("return !!({condition});"), vec![])
            .await
            .unwrap();
        if ok == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let error = client
                .execute(
                    "const e = document.querySelector('.error'); return e ? e.textContent : document.body.innerText.slice(0, 500);",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what} ({condition}); the page shows: {error}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn js(client: &Client, expr: &str) -> Value {
    client
        .execute(&format!("return {expr};"), vec![])
        .await
        .unwrap()
}

async fn click(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_run_its_dag_a_step_and_an_artifacts_lineage() {
    let Some(driver) = driver() else { return };
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let client = browser(&driver).await;
    let base = &server.base;

    // The runs page: every run, newest first.
    client.goto(&format!("{base}/#/runs")).await.unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'runs'",
        "the runs page",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#runs-table tbody tr').length"
        )
        .await,
        4
    );
    assert_eq!(
        js(&client, "document.querySelector('#runs-count').textContent").await,
        "1–4 of 4 runs"
    );
    screenshot(&client, "01-runs").await;

    // Filtering by status through the form.
    client
        .execute(
            "document.querySelector('#filter-status').value = 'failed';",
            vec![],
        )
        .await
        .unwrap();
    click(&client, "#run-filters button[type=submit]").await;
    until(
        &client,
        "document.querySelectorAll('#runs-table tbody tr').length === 1",
        "the failed runs",
    )
    .await;
    assert!(
        js(&client, "location.hash")
            .await
            .as_str()
            .unwrap()
            .contains("status=failed")
    );

    // Open the first shop run from the table.
    client
        .goto(&format!("{base}/#/runs?pipeline=shop"))
        .await
        .unwrap();
    until(
        &client,
        "document.querySelectorAll('#runs-table tbody tr').length === 3",
        "shop's runs",
    )
    .await;
    let ok_id = &project.ok.run_id;
    click(&client, &format!("tr[data-run-id='{ok_id}'] a")).await;
    until(
        &client,
        "document.body.dataset.ready === 'run:succeeded'",
        "the run page",
    )
    .await;
    // The DAG has every step, each coloured by its status, and the edges between them.
    let nodes = js(
        &client,
        "[...document.querySelectorAll('#dag-svg g.node')].map(g => g.dataset.id).sort()",
    )
    .await;
    assert_eq!(
        nodes,
        json!(["audit", "by_day", "by_region", "clean", "load", "report"])
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg g.node.status-succeeded').length"
        )
        .await,
        6
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg path.edge').length"
        )
        .await,
        6
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg path.edge.edge-order').length"
        )
        .await,
        1
    );
    // The timeline has a bar per step.
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#gantt-chart g.bar').length"
        )
        .await,
        6
    );

    // Click a step: its details.
    click(&client, "#dag-svg g.node[data-id='load']").await;
    until(
        &client,
        "document.querySelector('#step-title')?.textContent === 'load'",
        "the step's details",
    )
    .await;
    let log = js(&client, "document.querySelector('#step-log').textContent").await;
    assert!(
        log.as_str()
            .unwrap()
            .contains("loading 30 rows from <b>table</b> & friends"),
        "{log}"
    );
    assert_eq!(
        js(&client, "document.querySelectorAll('#step-log b').length").await,
        0,
        "log text became markup"
    );
    let side = js(
        &client,
        "document.querySelector('#step-details').textContent",
    )
    .await;
    for expected in ["Attempts", "Cache key", "rows", "30", "Output"] {
        assert!(
            side.as_str().unwrap().contains(expected),
            "{expected} not in {side}"
        );
    }
    assert!(
        js(&client, "location.hash")
            .await
            .as_str()
            .unwrap()
            .ends_with("step=load")
    );
    screenshot(&client, "02-run-step").await;

    // Follow the output artifact to its page and lineage.
    click(&client, "#dag-svg g.node[data-id='clean']").await;
    until(
        &client,
        "document.querySelector('#step-title')?.textContent === 'clean'",
        "clean's details",
    )
    .await;
    click(&client, "#step-output a").await;
    until(
        &client,
        "document.body.dataset.ready === 'artifact'",
        "the artifact page",
    )
    .await;
    let clean_hash = project
        .ok
        .step("clean")
        .unwrap()
        .output
        .unwrap()
        .to_string();
    assert_eq!(
        js(
            &client,
            "document.querySelector('#artifact-hash').textContent"
        )
        .await,
        &clean_hash[..16]
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#preview tbody tr').length"
        )
        .await,
        29
    );
    let steps = js(&client, "[...document.querySelectorAll('#lineage-svg g.node.kind-step title')].map(t => t.textContent.split(' ')[0]).sort()").await;
    assert_eq!(
        steps,
        json!([
            "shop.by_day",
            "shop.by_region",
            "shop.clean",
            "shop.load",
            "shop.report"
        ])
    );
    screenshot(&client, "03-artifact-lineage").await;

    // From the lineage, open the step that read it.
    click(
        &client,
        "#lineage-svg g.node.kind-step[aria-label^='shop.by_region']",
    )
    .await;
    until(
        &client,
        "document.querySelector('#step-title')?.textContent === 'by_region'",
        "by_region from the lineage",
    )
    .await;

    // The failed run shows its error as text.
    client
        .goto(&format!("{base}/#/runs/{}", project.failed.run_id))
        .await
        .unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'run:failed'",
        "the failed run",
    )
    .await;
    let error = js(&client, "document.querySelector('#run-error').textContent").await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script>"),
        "{error}"
    );
    assert_eq!(
        js(&client, "document.querySelectorAll('main script').length").await,
        0
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg g.node.status-failed').length"
        )
        .await,
        1
    );
    click(&client, "#dag-svg g.node[data-id='clean']").await;
    until(
        &client,
        "document.querySelector('#step-title')?.textContent === 'clean'",
        "the failed step",
    )
    .await;
    screenshot(&client, "04-run-failed").await;

    // A run of 106 steps: every step drawn, edges only rightwards.
    client
        .goto(&format!("{base}/#/runs/{}", project.tree.run_id))
        .await
        .unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'run:succeeded'",
        "the 106-step run",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg g.node').length"
        )
        .await,
        106
    );
    let backwards = js(
        &client,
        "[...document.querySelectorAll('#dag-svg path.edge')].filter(p => { \
           const t = id => document.querySelector(`#dag-svg g.node[data-id='${id}']`).transform.baseVal[0].matrix.e; \
           return t(p.dataset.from) >= t(p.dataset.to); }).length",
    )
    .await;
    assert_eq!(backwards, 0);
    let overlapping = js(
        &client,
        "(() => { const r = [...document.querySelectorAll('#dag-svg g.node')].map(g => { const m = g.transform.baseVal[0].matrix; return [m.e, m.f]; }); \
           let n = 0; for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) \
             if (Math.abs(r[i][0] - r[j][0]) < 176 && Math.abs(r[i][1] - r[j][1]) < 40) n++; return n; })()",
    )
    .await;
    assert_eq!(overlapping, 0, "nodes overlap");
    screenshot(&client, "05-run-106-steps").await;
    client
        .execute("document.querySelector('#gantt').scrollIntoView();", vec![])
        .await
        .unwrap();
    screenshot(&client, "06-run-106-steps-timeline").await;

    client.goto(&format!("{base}/#/pipelines")).await.unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'pipelines'",
        "the pipelines page",
    )
    .await;
    assert!(
        js(
            &client,
            "document.querySelector('#pipelines-table').textContent"
        )
        .await
        .as_str()
        .unwrap()
        .contains("@daily")
    );
    screenshot(&client, "07-pipelines").await;

    client
        .goto(&format!("{base}/#/dataflows/wordcount"))
        .await
        .unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'dataflow'",
        "the dataflow page",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dataflow-svg g.node').length"
        )
        .await,
        4
    );
    click(&client, "#dataflow-svg g.node[data-id='count']").await;
    until(
        &client,
        "document.querySelector('#dataflow-step').textContent.includes('count_final')",
        "the dataflow step",
    )
    .await;
    screenshot(&client, "08-dataflow").await;

    client.goto(&format!("{base}/#/artifacts")).await.unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'artifacts'",
        "the artifacts page",
    )
    .await;
    screenshot(&client, "09-artifacts").await;

    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_progress_updates_without_a_reload() {
    let Some(driver) = driver() else { return };
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let server = common::serve(&project, None).await;
    let client = browser(&driver).await;
    let (slow, gate) = common::slow();
    let dir = project.dir.path().to_path_buf();
    let running = std::thread::spawn(move || {
        let executor = riffle_pipeline::ProjectStores::local(&dir)
            .executor()
            .unwrap();
        executor.run(&slow, Default::default()).unwrap()
    });
    // Wait for the run to appear, then open it.
    client
        .goto(&format!("{}/#/runs?pipeline=slow", server.base))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = js(
            &client,
            "document.querySelectorAll('#runs-table tbody tr').length",
        )
        .await;
        if rows == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the running run never showed");
        client.refresh().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    click(&client, "#runs-table tbody tr a").await;
    until(
        &client,
        "document.querySelector('#dag-svg g.node[data-id=\"wait\"].status-running')",
        "the running step",
    )
    .await;
    assert_eq!(
        js(&client, "document.body.dataset.ready").await,
        "run:running"
    );
    assert_eq!(
        js(&client, "document.querySelector('#live').hidden").await,
        false
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg g.node.status-pending').length"
        )
        .await,
        1
    );
    screenshot(&client, "10-run-live").await;
    let marker = js(&client, "(window.notReloaded = true)").await;
    assert_eq!(marker, true);

    gate.open();
    until(
        &client,
        "document.body.dataset.ready === 'run:succeeded'",
        "the run to finish on the page",
    )
    .await;
    assert_eq!(
        js(&client, "window.notReloaded === true").await,
        true,
        "the page reloaded"
    );
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#dag-svg g.node.status-succeeded').length"
        )
        .await,
        3
    );
    assert_eq!(
        js(&client, "document.querySelector('#live').hidden").await,
        true
    );
    tokio::task::spawn_blocking(move || running.join().unwrap())
        .await
        .unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_browser_signs_in_through_the_address_once() {
    let Some(driver) = driver() else { return };
    let project = tokio::task::spawn_blocking(common::project).await.unwrap();
    let token = "browser-token-0123456789";
    let server = common::serve(&project, Some(token)).await;
    let client = browser(&driver).await;
    client
        .goto(&format!("{}/#/runs", server.base))
        .await
        .unwrap();
    let refused = js(&client, "document.body.textContent").await;
    assert!(
        refused.as_str().unwrap().contains("requires a token"),
        "{refused}"
    );
    client
        .goto(&format!("{}/?token={token}", server.base))
        .await
        .unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'runs'",
        "the runs page after signing in",
    )
    .await;
    assert_eq!(
        js(&client, "location.search").await,
        "",
        "the token stays in the address bar"
    );
    assert_eq!(
        js(&client, "document.cookie").await,
        "",
        "the cookie is readable by scripts"
    );
    client.close().await.unwrap();
}

/// The `y` of each point of the first line of chart `css`, in order, after
/// checking that the points go left to right.
async fn chart_ys(client: &Client, css: &str) -> Vec<f64> {
    let points = js(
        client,
        &format!(
            "[...document.querySelectorAll('{css} polyline.line')].map(l => l.getAttribute('points'))"
        ),
    )
    .await;
    let lines = points.as_array().unwrap();
    if lines.len() != 1 {
        let html = js(
            client,
            &format!("(document.querySelector('{css}') || {{outerHTML: 'nothing'}}).outerHTML"),
        )
        .await;
        panic!("{css}: {points}; the chart is {html}");
    }
    let xy: Vec<(f64, f64)> = lines[0]
        .as_str()
        .unwrap()
        .split(' ')
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect();
    assert!(xy.windows(2).all(|w| w[0].0 < w[1].0), "{css}: {xy:?}");
    xy.into_iter().map(|(_, y)| y).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_list_runs_and_chart_a_runs_processors_live() {
    let Some(driver) = driver() else { return };
    let project = tokio::task::spawn_blocking(common::flow_project)
        .await
        .unwrap();
    let server = common::serve_flows(&project).await;
    let client = browser(&driver).await;
    let base = &server.base;

    // The running run keeps sampling, as `riffle flow run` does, until told to end.
    let store = project.metadata();
    let going = project.going.id.clone();
    let (end, ended) = std::sync::mpsc::channel::<()>();
    let sampler = std::thread::spawn(move || {
        let mut replicas = 1;
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let mut s =
                riffle_pipeline::metadata::FlowSampleRecord::new(&going, now, "orders", "consumer");
            s.replicas = replicas;
            s.backlog = Some(10 * replicas);
            store.record_flow_samples(&[s]).unwrap();
            replicas = (replicas % 4) + 1;
            if ended.recv_timeout(Duration::from_millis(400)).is_ok() {
                store
                    .end_flow_run(&going, chrono::Utc::now().timestamp_millis(), None)
                    .unwrap();
                return;
            }
        }
    });

    // The Flows page, from the navigation: every run, newest first, with its status.
    client.goto(&format!("{base}/#/runs")).await.unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'runs'",
        "the runs page",
    )
    .await;
    click(&client, "nav a[data-nav=flows]").await;
    until(
        &client,
        "document.body.dataset.ready === 'flows'",
        "the flows page",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "[...document.querySelectorAll('#flows-table tbody tr')].map(r => r.querySelector('.badge').textContent)"
        )
        .await,
        json!(["running", "stopped", "lost", "failed"])
    );
    assert_eq!(
        js(&client, "document.querySelector('#live').hidden").await,
        false
    );
    screenshot(&client, "20-flows").await;

    // A stopped run: its processors, and each one's replicas and backlog charted.
    let stopped = &project.stopped.id;
    click(&client, &format!("tr[data-flow-run-id='{stopped}'] a")).await;
    until(
        &client,
        "document.body.dataset.ready === 'flow:stopped'",
        "the stopped run's page",
    )
    .await;
    assert_eq!(
        js(
            &client,
            "[...document.querySelectorAll('#flow-processors tbody tr')].map(r => [...r.cells].slice(0, 4).map(c => c.textContent))"
        )
        .await,
        json!([["POST /orders", "collector", "1", "—"], ["orders", "consumer", "2", "0"]])
    );
    // Replicas 1, 2, 3, 3, 2: higher on the chart is a smaller y.
    let ys = chart_ys(&client, "#chart-replicas-orders").await;
    assert_eq!(ys.len(), common::STOPPED_REPLICAS.len(), "{ys:?}");
    assert!(
        ys[0] > ys[1] && ys[1] > ys[2] && ys[2] == ys[3] && ys[3] < ys[4] && ys[4] == ys[1],
        "{ys:?}"
    );
    // Backlog 400, 300, 150, 20, 0: falling.
    let ys = chart_ys(&client, "#chart-backlog-orders").await;
    assert_eq!(ys.len(), common::STOPPED_BACKLOG.len(), "{ys:?}");
    assert!(ys.windows(2).all(|w| w[0] < w[1]), "{ys:?}");
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#chart-backlog-orders circle.point').length"
        )
        .await,
        5
    );
    // The collector's source cannot say its backlog: no line, and the chart says so.
    assert_eq!(
        js(
            &client,
            "document.querySelectorAll('#chart-backlog-POST__orders polyline').length"
        )
        .await,
        0
    );
    assert!(
        js(
            &client,
            "document.querySelector('#chart-backlog-POST__orders').textContent"
        )
        .await
        .as_str()
        .unwrap()
        .contains("not known")
    );
    assert_eq!(
        js(&client, "document.querySelector('#live').hidden").await,
        true
    );
    screenshot(&client, "21-flow-run").await;

    // The running run: its chart grows without a reload, and the end shows.
    client
        .goto(&format!("{base}/#/flows/{}", project.going.id))
        .await
        .unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'flow:running'",
        "the running flow's page",
    )
    .await;
    let marker = js(&client, "(window.notReloaded = true)").await;
    assert_eq!(marker, true);
    let first = js(
        &client,
        "Number(document.querySelector('#chart-replicas-orders').dataset.points)",
    )
    .await
    .as_u64()
    .unwrap();
    until(
        &client,
        &format!(
            "Number(document.querySelector('#chart-replicas-orders').dataset.points) >= {}",
            first + 3
        ),
        "new samples on the chart",
    )
    .await;
    screenshot(&client, "22-flow-run-live").await;
    end.send(()).unwrap();
    until(
        &client,
        "document.body.dataset.ready === 'flow:stopped'",
        "the run's end on the page",
    )
    .await;
    assert_eq!(
        js(&client, "window.notReloaded === true").await,
        true,
        "the page reloaded"
    );
    tokio::task::spawn_blocking(move || sampler.join().unwrap())
        .await
        .unwrap();
    client.close().await.unwrap();
}
