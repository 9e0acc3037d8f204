//! `riffle ui`: the dashboard over the project's run history, in a browser.
//!
//! ```text
//! riffle ui                                   # http://127.0.0.1:8080, this project's .riffle/
//! riffle ui --addr 127.0.0.1:9000 --token T   # every request then needs the token
//! riffle ui --store postgres://user@db/riffle # another metadata store
//! ```
//!
//! It reads the same stores as `riffle runs` (`--project DIR`, `RIFFLE_METADATA_URL`,
//! `RIFFLE_ARTIFACTS_URL`), and shows the pipelines and dataflows registered with this
//! binary: their definitions and graphs are handed to the dashboard as data when it
//! starts, so no request ever runs the project's code.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use riffle_pipeline::ProjectStores;
use riffle_ui::{Catalog, Dashboard, DataflowEntry, PipelineDefinition};

use super::pipeline::ProjectArgs;
use crate::App;
use crate::app::DataflowContext;

/// `riffle ui [--addr ADDR] [--token T] [--store URL] [--artifacts URL]`
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// The address to listen on; the loopback default lets only this machine connect.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Require this bearer token on every request (at least 16 characters).
    #[arg(long, env = "RIFFLE_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The metadata store: an SQLite path or a postgres:// URL (default: the
    /// project's .riffle/metadata.db, or RIFFLE_METADATA_URL).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The artifact store, for previews (default: the project's .riffle/, or
    /// RIFFLE_ARTIFACTS_URL).
    #[arg(long, value_name = "URL")]
    pub artifacts: Option<String>,
    #[command(flatten)]
    pub project: ProjectArgs,
}

/// What `app` registered, as the dashboard's catalog. Each dataflow is built once
/// with no parameters to take its graph; one that needs parameters is listed with
/// the reason instead.
pub fn catalog(app: &App) -> Catalog {
    let mut catalog = Catalog::new();
    for pipeline in app.pipelines().iter() {
        catalog = catalog.pipeline(PipelineDefinition::from_pipeline(pipeline));
    }
    for entry in app.dataflows() {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (entry.builder)(&DataflowContext::new(BTreeMap::new()))
        }));
        let (description, error) = match built {
            Ok(Ok(flow)) => match serde_json::to_value(flow.describe()) {
                Ok(v) => (Some(v), None),
                Err(e) => (
                    None,
                    Some(format!("its graph cannot be written as JSON: {e}")),
                ),
            },
            Ok(Err(e)) => (None, Some(format!("{e:#}"))),
            Err(_) => (None, Some("its builder panicked".to_string())),
        };
        catalog = catalog.dataflow(DataflowEntry {
            name: entry.name.clone(),
            about: entry.about.clone(),
            description,
            error,
        });
    }
    catalog
}

/// Runs `riffle ui` until Ctrl-C.
pub fn ui(app: &App, args: &UiArgs) -> anyhow::Result<ExitCode> {
    let root = args
        .project
        .project
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let mut stores = ProjectStores::from_env(&root);
    if let Some(store) = &args.store {
        stores.metadata_url = Some(store.clone());
    }
    if let Some(artifacts) = &args.artifacts {
        stores.artifacts_url = Some(artifacts.clone());
    }
    let location = match stores.metadata_url.clone() {
        Some(location) => location,
        None => {
            // The project's own store: a new project has none yet, and the
            // dashboard starts on an empty one rather than refusing a first look.
            let path = root.join(".riffle").join("metadata.db");
            if !path.exists() {
                stores
                    .metadata()
                    .with_context(|| format!("cannot create {}", path.display()))?;
                eprintln!(
                    "no runs yet in {}: the dashboard starts empty; make a first run with \
                     `{} run --workflow ID`",
                    path.display(),
                    app.name()
                );
            }
            path.to_string_lossy().into_owned()
        }
    };
    let mut dashboard = Dashboard::open(&location)?;
    // Runs whose process died (on this machine, or silent on another) are shown as
    // failed, not running: now, and every heartbeat while the dashboard serves.
    let reaper = riffle_pipeline::metadata::open(&location)
        .with_context(|| format!("metadata store {location}"))?;
    riffle_pipeline::metadata::reap_abandoned(reaper.as_ref())
        .with_context(|| format!("metadata store {location}"))?;
    let reaping = location.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(riffle_pipeline::metadata::HEARTBEAT);
            if let Err(e) = riffle_pipeline::metadata::reap_abandoned(reaper.as_ref()) {
                eprintln!("metadata store {reaping}: cannot mark abandoned runs: {e}");
            }
        }
    });
    dashboard = dashboard.with_catalog(catalog(app)).with_name(app.name());
    match stores.artifacts() {
        Ok(artifacts) => dashboard = dashboard.with_artifacts(artifacts),
        Err(e) => eprintln!("warning: artifact previews are off: {e}"),
    }
    if !args.addr.ip().is_loopback() && args.token.is_none() {
        eprintln!(
            "warning: listening on {} without --token: anyone who can reach this address can \
             read the run history",
            args.addr
        );
    }
    riffle_ui::server::serve_until_ctrl_c(dashboard, args.addr, args.token.as_deref(), |addr| {
        let mut message =
            format!("riffle dashboard on http://{addr}/ (store: {location}); Ctrl-C stops it\n");
        if args.token.is_some() {
            message.push_str(&format!(
                "with a token: open http://{addr}/?token=TOKEN once in the browser to sign in\n"
            ));
        }
        // A closed stdout must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(message.as_bytes()).and_then(|()| out.flush());
    })
    .context("the dashboard stopped")?;
    Ok(ExitCode::SUCCESS)
}
