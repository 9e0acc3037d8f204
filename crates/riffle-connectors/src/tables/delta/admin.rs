//! Managed Delta tables: make a table with the columns of an item type, ask
//! whether one is there, and remove one with everything in its folder. These are
//! the create/delete functions a Flow's `plan`/`apply`/`destroy` calls for a table
//! it declares; [`DeltaSink`](super::DeltaSink) also makes its table when absent,
//! so making it first is only needed to see it (or fix its schema) before any
//! row arrives.
//!
//! ```
//! use riffle_connectors::objects::ObjectStoreSettings;
//! use riffle_connectors::tables::delta::admin;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Count { word: String, count: i64 }
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("file://{}/counts", dir.path().display());
//! let table = ObjectStoreSettings::new(url);
//! assert!(!admin::table_exists(&table)?);
//! assert!(admin::create_table::<Count>(&table)?); // made
//! assert!(!admin::create_table::<Count>(&table)?); // there already, same columns
//! assert!(admin::table_exists(&table)?);
//! assert!(admin::delete_table(&table)?);
//! assert!(!admin::table_exists(&table)?);
//! # Ok::<(), riffle_connectors::ConnectorError>(())
//! ```

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use serde::de::DeserializeOwned;

use super::log::Log;
use super::schema;
use crate::objects::ObjectStoreSettings;
use crate::tables::rows;
use crate::{ConnectorError, runtime};

fn error(settings: &ObjectStoreSettings, what: impl Into<String>) -> ConnectorError {
    ConnectorError::new("delta", settings.url.clone(), what)
}

/// The folder of a `file://` URL (`None` for other stores and bad URLs, which
/// opening the store names).
fn local_folder(settings: &ObjectStoreSettings) -> Option<std::path::PathBuf> {
    let url = url::Url::parse(&settings.url).ok()?;
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}

/// Makes the Delta table at `settings` (protocol 1/2, the columns of `T`, no
/// partition columns) when there is none, and returns `true`; an existing table
/// is checked instead (`false`): one without every column of `T`, or with
/// another type for one, is an error naming the table and the column.
pub fn create_table<T: DeserializeOwned>(
    settings: &ObjectStoreSettings,
) -> Result<bool, ConnectorError> {
    let fields = rows::fields_of::<T>().map_err(|why| {
        error(
            settings,
            format!("the item type has no Arrow schema: {why}"),
        )
    })?;
    let columns = schema::columns(&fields).map_err(|why| {
        error(
            settings,
            format!("the item type has no Delta schema: {why}"),
        )
    })?;
    let folder = settings.open(true)?;
    runtime::handle().block_on(async {
        let mut log = Log::open(settings.clone(), folder).await?;
        let absent = log.version().is_none();
        log.create_or_check(&columns).await?;
        Ok(absent)
    })
}

/// Whether there is a Delta table at `settings` (its log's version 0).
pub fn table_exists(settings: &ObjectStoreSettings) -> Result<bool, ConnectorError> {
    if local_folder(settings).is_some_and(|dir| !dir.exists()) {
        return Ok(false);
    }
    let folder = settings.open(false)?;
    runtime::handle().block_on(async {
        let log = Log::open(settings.clone(), folder).await?;
        Ok(log.version().is_some())
    })
}

/// Removes the table at `settings`: every object in its folder (the log, the
/// data files, files staged by sinks that never committed them), and a local
/// folder itself. `false` when the folder held nothing (or is not there).
pub fn delete_table(settings: &ObjectStoreSettings) -> Result<bool, ConnectorError> {
    let local = local_folder(settings);
    if local.as_ref().is_some_and(|dir| !dir.exists()) {
        return Ok(false);
    }
    let folder = settings.open(false)?;
    let deleted = runtime::handle().block_on(async {
        let mut objects = Vec::new();
        let mut listing = folder.store.list(Some(&folder.prefix));
        while let Some(meta) = listing.next().await {
            let meta =
                meta.map_err(|e| error(settings, "cannot list the table's folder").caused_by(e))?;
            objects.push(meta.location);
        }
        for path in &objects {
            match folder.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let name = folder.name(path);
                    return Err(error(settings, format!("cannot remove {name:?}")).caused_by(e));
                }
            }
        }
        Ok::<_, ConnectorError>(!objects.is_empty())
    })?;
    if let Some(dir) = local {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(settings, "cannot remove the table's folder").caused_by(e)),
        }
    }
    Ok(deleted)
}
