//! Shared test setup: every test runs against each metadata backend available — SQLite
//! always, Postgres when `RIFFLE_TEST_POSTGRES_URL` is set (scripts/test.d/20-postgres.sh
//! starts one) — with a real artifact folder in a temporary directory.
#![allow(dead_code)]

use std::sync::Arc;

use riffle_pipeline::metadata::{MetadataStore, PostgresStore, SqliteStore};
use riffle_pipeline::{ArtifactStore, Executor};

/// One backend's stores, in a fresh temporary project folder.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub backend: &'static str,
    pub metadata: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
}

impl Project {
    pub fn executor(&self) -> Executor {
        Executor::new(self.artifacts.clone(), self.metadata.clone())
    }

    /// A second handle on the same stores (a second process would open them anew).
    pub fn reopen(&self) -> Arc<dyn MetadataStore> {
        match self.backend {
            "sqlite" => {
                Arc::new(SqliteStore::open(&self.dir.path().join(".riffle/metadata.db")).unwrap())
            }
            _ => self.metadata.clone(),
        }
    }
}

fn unique_schema() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// Runs `test` once per available backend.
pub fn each_backend(test: impl Fn(&Project)) {
    let mut projects = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> =
        Arc::new(SqliteStore::open(&dir.path().join(".riffle/metadata.db")).unwrap());
    let artifacts = ArtifactStore::local(&dir.path().join(".riffle/artifacts")).unwrap();
    projects.push(Project {
        dir,
        backend: "sqlite",
        metadata,
        artifacts,
    });
    if let Ok(url) = std::env::var("RIFFLE_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = PostgresStore::connect_in_schema(&url, &unique_schema())
            .unwrap_or_else(|e| panic!("RIFFLE_TEST_POSTGRES_URL is set but unusable: {e}"));
        let artifacts = ArtifactStore::local(&dir.path().join(".riffle/artifacts")).unwrap();
        projects.push(Project {
            dir,
            backend: "postgres",
            metadata: Arc::new(store),
            artifacts,
        });
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but RIFFLE_TEST_POSTGRES_URL is not set: scripts/test.d/20-postgres.sh \
             should have started PostgreSQL, and the Postgres half of this test would not run"
        );
    }
    for project in &projects {
        eprintln!("-- backend: {}", project.backend);
        test(project);
    }
}
