//! The Postgres metadata store (being written).

use super::*;
use crate::error::Error;

/// The metadata store in a Postgres database.
pub struct PostgresStore {
    _url: String,
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self> {
        Err(Error::InvalidStoreUrl { url: url.to_string(), why: "the Postgres store is not available yet".into() })
    }
}

impl PostgresStore {
    pub(crate) fn open_dyn(url: &str) -> Result<std::sync::Arc<dyn MetadataStore>> {
        Self::connect(url).map(|_| unreachable!())
    }
}

impl PostgresStore {
    /// Connects to `url` and uses (creating it) the schema `schema` instead of `public`.
    pub fn connect_in_schema(url: &str, _schema: &str) -> Result<Self> {
        Self::connect(url)
    }
}
