//! Managed prefixes: make, inspect and remove the folder of objects a flow reads
//! or writes. These are the create/delete functions a Flow's
//! `plan`/`apply`/`destroy` calls for an object-store folder it declares.
//!
//! Object stores have no folders: on S3, GCS and Azure a prefix "exists" when an
//! object is under it. [`create_prefix`] therefore checks that the store answers
//! and that the prefix takes a write, by putting an empty marker object
//! [`MARKER`] under it (a `.` name, which sources never read); from then on
//! [`prefix_exists`] sees the prefix. On `file://` it also makes the folder, and
//! a folder that is there exists even when empty. [`delete_prefix`] removes every
//! object under the prefix: the data, the marker, and what sinks staged under
//! `_staging` and never moved into place.
//!
//! ```
//! use riffle_connectors::objects::{ObjectStoreSettings, admin};
//! let dir = tempfile::tempdir().unwrap();
//! let events = ObjectStoreSettings::new(format!("file://{}/events", dir.path().display()));
//! assert!(!admin::prefix_exists(&events)?);
//! assert!(admin::create_prefix(&events)?); // made
//! assert!(!admin::create_prefix(&events)?); // there already
//! assert!(admin::prefix_exists(&events)?);
//! std::fs::write(dir.path().join("events/a.jsonl"), "{}\n").unwrap();
//! assert_eq!(admin::list_objects(&events)?, [".riffle-prefix", "a.jsonl"]);
//! assert_eq!(admin::delete_prefix(&events)?, 2);
//! assert!(!admin::prefix_exists(&events)?);
//! # Ok::<(), riffle_connectors::ConnectorError>(())
//! ```

use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::settings::{Folder, ObjectStoreSettings};
use crate::{ConnectorError, runtime};

/// The empty object [`create_prefix`] puts under a prefix (hidden from sources).
pub const MARKER: &str = ".riffle-prefix";

/// The folder of a `file://` URL (`None` for other stores and bad URLs, which
/// opening the store names).
fn local_folder(settings: &ObjectStoreSettings) -> Option<std::path::PathBuf> {
    let url = url::Url::parse(&settings.url).ok()?;
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}

/// Every object under the opened `folder`, as paths.
async fn paths(
    settings: &ObjectStoreSettings,
    folder: &Folder,
) -> Result<Vec<object_store::path::Path>, ConnectorError> {
    let mut paths = Vec::new();
    let mut listing = folder.store.list(Some(&folder.prefix));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| settings.error("cannot list the prefix").caused_by(e))?;
        paths.push(meta.location);
    }
    Ok(paths)
}

/// The names (relative to the prefix, sorted) of every object under the prefix
/// of `settings`, hidden and staged ones included; none when a local folder is
/// not there.
pub fn list_objects(settings: &ObjectStoreSettings) -> Result<Vec<String>, ConnectorError> {
    if local_folder(settings).is_some_and(|dir| !dir.is_dir()) {
        return Ok(Vec::new());
    }
    let folder = settings.open(false)?;
    let mut names: Vec<String> = runtime::handle()
        .block_on(paths(settings, &folder))?
        .iter()
        .map(|p| folder.name(p))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether the prefix of `settings` exists: a local folder that is there, or a
/// prefix with at least one object under it. A store that does not answer, or
/// a bucket that is not there, is an error naming the URL.
pub fn prefix_exists(settings: &ObjectStoreSettings) -> Result<bool, ConnectorError> {
    if let Some(dir) = local_folder(settings) {
        return Ok(dir.is_dir());
    }
    let folder = settings.open(false)?;
    runtime::handle().block_on(async {
        let mut listing = folder.store.list(Some(&folder.prefix));
        match listing.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(settings.error("cannot list the prefix").caused_by(e)),
        }
    })
}

/// Makes the prefix of `settings` ready for a flow: a local folder is made, and
/// the empty [`MARKER`] object is put under the prefix, which proves the store
/// answers and takes writes there (a missing bucket or a refused write is an
/// error naming the URL). `true` when the prefix did not exist before.
pub fn create_prefix(settings: &ObjectStoreSettings) -> Result<bool, ConnectorError> {
    let existed = prefix_exists(settings)?;
    let folder = settings.open(true)?;
    runtime::handle().block_on(async {
        folder
            .store
            .put(&folder.child(MARKER), PutPayload::new())
            .await
            .map_err(|e| {
                settings
                    .error(format!("cannot write {MARKER:?} under the prefix"))
                    .caused_by(e)
            })
    })?;
    Ok(!existed)
}

/// Removes every object under the prefix of `settings` (data, the [`MARKER`],
/// objects sinks staged and never moved into place), and a local folder itself.
/// Returns how many objects it removed (`0` when there was nothing to remove).
pub fn delete_prefix(settings: &ObjectStoreSettings) -> Result<usize, ConnectorError> {
    let local = local_folder(settings);
    if local.as_ref().is_some_and(|dir| !dir.is_dir()) {
        return Ok(0);
    }
    let folder = settings.open(false)?;
    let removed = runtime::handle().block_on(async {
        let paths = paths(settings, &folder).await?;
        for path in &paths {
            match folder.store.delete(path).await {
                // Missing: removed meanwhile, which is what was asked.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let name = folder.name(path);
                    return Err(settings
                        .error(format!("cannot remove {name:?}"))
                        .caused_by(e));
                }
            }
        }
        Ok::<_, ConnectorError>(paths.len())
    })?;
    if let Some(dir) = local {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(settings.error("cannot remove the folder").caused_by(e)),
        }
    }
    Ok(removed)
}
