//! [`Dashboard`]: the stores and catalog the server reads, shared by every request.

use std::path::Path;
use std::sync::Arc;

use riffle_pipeline::ArtifactStore;
use riffle_pipeline::metadata::MetadataStore;

use crate::catalog::Catalog;
use crate::error::{ApiError, ApiResult, StartError};
use crate::listing::Listing;

/// What the dashboard shows: a metadata store, optionally the artifact store (for
/// previews), and the project's [`Catalog`]. Cheap to clone.
///
/// ```
/// use riffle_ui::Dashboard;
///
/// let project = tempfile::tempdir().unwrap();
/// let missing = project.path().join(".riffle/metadata.db");
/// // A dashboard never creates a store: there must be history to show.
/// assert!(Dashboard::open(&missing.to_string_lossy()).is_err());
/// ```
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub metadata: Arc<dyn MetadataStore>,
    pub listing: Listing,
    pub artifacts: Option<ArtifactStore>,
    pub catalog: Catalog,
    pub name: String,
}

impl Dashboard {
    /// The dashboard of the metadata store at `location`: an SQLite path (which must
    /// exist) or a `postgres://` URL.
    pub fn open(location: &str) -> Result<Self, StartError> {
        let is_postgres =
            location.starts_with("postgres://") || location.starts_with("postgresql://");
        if !is_postgres {
            let path = location.strip_prefix("sqlite://").unwrap_or(location);
            if !Path::new(path).is_file() {
                return Err(StartError::NoStore(path.to_string()));
            }
        }
        let metadata = riffle_pipeline::metadata::open(location)?;
        let listing = Listing::for_location(location).map_err(|e| match e {
            ApiError::Store(e) => StartError::Store(e),
            other => StartError::Serve(std::io::Error::other(other.to_string())),
        })?;
        Ok(Self::from_parts(metadata, listing))
    }

    /// A dashboard over an open store, listing with `listing`.
    pub fn from_parts(metadata: Arc<dyn MetadataStore>, listing: Listing) -> Self {
        Self {
            inner: Arc::new(Inner {
                metadata,
                listing,
                artifacts: None,
                catalog: Catalog::default(),
                name: "riffle".into(),
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                metadata: shared.metadata.clone(),
                listing: shared.listing.clone(),
                artifacts: shared.artifacts.clone(),
                catalog: shared.catalog.clone(),
                name: shared.name.clone(),
            },
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Reads artifact previews from `store`.
    pub fn with_artifacts(self, store: ArtifactStore) -> Self {
        self.edit(|i| i.artifacts = Some(store))
    }

    /// Shows the registered pipelines and dataflows of `catalog`.
    pub fn with_catalog(self, catalog: Catalog) -> Self {
        self.edit(|i| i.catalog = catalog)
    }

    /// Names the project in the page's title.
    pub fn with_name(self, name: &str) -> Self {
        let name = name.to_string();
        self.edit(|i| i.name = name)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Runs `f` (which reads the stores and may block) on tokio's blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> ApiResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| ApiError::Internal(format!("a store read was lost: {e}")))?
    }
}
