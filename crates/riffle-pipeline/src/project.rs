//! A project's stores: where a checkout keeps its artifacts and metadata.
//!
//! By default both live under the project's `.riffle/` folder: artifacts in
//! `.riffle/artifacts/`, metadata in `.riffle/metadata.db`. The environment variables
//! `RIFFLE_ARTIFACTS_URL` (an object store URL: `s3://...`, `gs://...`, `az://...`,
//! `file:///...`, `memory:///`) and `RIFFLE_METADATA_URL` (a `postgres://` URL or an
//! SQLite path) move them elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::artifact_store::ArtifactStore;
use crate::error::Result;
use crate::executor::Executor;
use crate::metadata::{self, MetadataStore};

/// Where a project's artifacts and metadata are.
#[derive(Debug, Clone)]
pub struct ProjectStores {
    /// The artifact store URL, or `None` for `<root>/.riffle/artifacts`.
    pub artifacts_url: Option<String>,
    /// The metadata store location, or `None` for `<root>/.riffle/metadata.db`.
    pub metadata_url: Option<String>,
    /// The project's folder.
    pub root: PathBuf,
}

impl ProjectStores {
    /// The stores of the project in `root`, with the environment's overrides applied.
    pub fn from_env(root: &Path) -> Self {
        Self {
            artifacts_url: std::env::var("RIFFLE_ARTIFACTS_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            metadata_url: std::env::var("RIFFLE_METADATA_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            root: root.to_path_buf(),
        }
    }

    /// The stores of the project in `root`, both under `.riffle/`.
    pub fn local(root: &Path) -> Self {
        Self {
            artifacts_url: None,
            metadata_url: None,
            root: root.to_path_buf(),
        }
    }

    /// Opens the artifact store.
    pub fn artifacts(&self) -> Result<ArtifactStore> {
        match &self.artifacts_url {
            Some(url) => ArtifactStore::from_url(url),
            // Objects are named `artifacts/<2 hex>/<hash>` inside the store's root.
            None => ArtifactStore::local(&self.root.join(".riffle")),
        }
    }

    /// Opens the metadata store.
    pub fn metadata(&self) -> Result<Arc<dyn MetadataStore>> {
        match &self.metadata_url {
            Some(url) => metadata::open(url),
            None => metadata::open(
                &self
                    .root
                    .join(".riffle")
                    .join("metadata.db")
                    .to_string_lossy(),
            ),
        }
    }

    /// An executor over both stores.
    ///
    /// ```
    /// use riffle_pipeline::ProjectStores;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let executor = ProjectStores::local(dir.path()).executor()?;
    /// assert!(dir.path().join(".riffle/metadata.db").exists());
    /// # drop(executor);
    /// # Ok::<(), riffle_pipeline::Error>(())
    /// ```
    pub fn executor(&self) -> Result<Executor> {
        Ok(Executor::new(self.artifacts()?, self.metadata()?))
    }
}
