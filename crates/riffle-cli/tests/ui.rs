//! `riffle ui`: the real binary serving a project's store, with the bundled pipelines
//! and dataflows in its catalog.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use riffle_pipeline::{Pipeline, ProjectStores, RunOptions, RunStatus};

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

fn start(project: &std::path::Path, extra: &[&str]) -> (Stop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["ui", "--addr", "127.0.0.1:0", "--project"])
        .arg(project)
        .args(extra)
        .env_remove("RIFFLE_METADATA_URL")
        .env_remove("RIFFLE_ARTIFACTS_URL")
        .env_remove("RIFFLE_UI_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (Stop(child), addr)
}

#[test]
fn riffle_ui_serves_the_projects_runs_and_the_registered_flows() {
    let project = tempfile::tempdir().unwrap();
    let mut p = Pipeline::builder("numbers");
    let xs = p
        .step("load", (), |_ctx, ()| Ok(vec![1_u32, 2, 3]))
        .version("1")
        .output();
    p.step("sum", &xs, |_ctx, xs: Vec<u32>| Ok(xs.iter().sum::<u32>()))
        .version("1");
    let report = ProjectStores::local(project.path())
        .executor()
        .unwrap()
        .run(&p.build().unwrap(), RunOptions::default())
        .unwrap();
    assert_eq!(report.status, RunStatus::Succeeded);

    let (_server, addr) = start(project.path(), &[]);
    let (status, runs) = get(&addr, "/api/runs", None);
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"][0]["id"], report.run_id.as_str());
    let (_, pipelines) = get(&addr, "/api/pipelines", None);
    let ids: Vec<&str> = pipelines["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"numbers") && ids.contains(&"sales"),
        "{ids:?}"
    );
    let (_, flow) = get(&addr, "/api/dataflows/wordcount", None);
    assert!(
        flow["description"]["steps"].as_array().unwrap().len() >= 3,
        "{flow}"
    );
    let sum = report.step("sum").unwrap().output.unwrap().to_string();
    let (_, artifact) = get(&addr, &format!("/api/artifacts/{sum}"), None);
    assert_eq!(artifact["preview"]["value"], 6, "{artifact}");
}

#[test]
fn riffle_ui_with_a_token_refuses_requests_without_it() {
    let project = tempfile::tempdir().unwrap();
    let mut p = Pipeline::builder("one");
    p.step("only", (), |_ctx, ()| Ok(1_u8)).version("1");
    ProjectStores::local(project.path())
        .executor()
        .unwrap()
        .run(&p.build().unwrap(), RunOptions::default())
        .unwrap();
    let token = "a-token-for-the-cli-test";
    let (_server, addr) = start(project.path(), &["--token", token]);
    assert_eq!(get(&addr, "/api/runs", None).0, 401);
    assert_eq!(get(&addr, "/api/runs", Some(token)).0, 200);
}

#[test]
fn riffle_ui_starts_on_a_new_project_and_refuses_a_missing_named_store() {
    // A new project (no runs yet): the dashboard starts, empty.
    let project = tempfile::tempdir().unwrap();
    let (_server, addr) = start(project.path(), &[]);
    let (status, body) = get(&addr, "/api/runs", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0, "{body}");
    // A store named explicitly that is not there is a typo: refused, not created.
    let missing = project.path().join("elsewhere/metadata.db");
    let out = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(["ui", "--addr", "127.0.0.1:0", "--store"])
        .arg(&missing)
        .env_remove("RIFFLE_METADATA_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no metadata store"), "{stderr}");
    assert!(!missing.exists());
}
