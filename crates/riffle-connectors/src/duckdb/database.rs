//! The process-wide registry of open databases.
//!
//! DuckDB lets one process at a time open a database file for writing, and inside
//! that process the file must be opened once: two instances of the same file in
//! one process would each think they own it. Every source partition, sink
//! partition and admin call of the process therefore asks [`DuckdbDatabase::open`]
//! for the file, which hands out the one instance (keyed by the file's canonical
//! path) and makes it on first use; each user then takes a connection of its own
//! from it. The instance closes, and the file's lock goes, when the last handle is
//! dropped.
//!
//! A second process opening the same file gets an error naming the file and
//! saying why; the sources and sinks report it from their partitions' first
//! call, so a `riffle run -p 2` with partitions on both processes fails on both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use duckdb::Connection;

use super::settings::{DuckdbSettings, says};
use crate::ConnectorError;

/// The databases open in this process, by canonical path.
static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Instance>>>> = OnceLock::new();

struct Instance {
    settings: DuckdbSettings,
    /// The first connection, from which the others are cloned.
    root: Mutex<Connection>,
    /// Held by statements that change the catalog or move committed rows, so two
    /// partitions of the process never conflict on them.
    writes: Mutex<()>,
}

/// An open database file, shared by everything in the process that uses it.
///
/// ```
/// use riffle_connectors::duckdb::{DuckdbDatabase, DuckdbSettings};
/// let dir = tempfile::tempdir().unwrap();
/// let settings = DuckdbSettings::new(dir.path().join("shop.duckdb"));
/// let db = DuckdbDatabase::open(&settings)?;
/// let again = DuckdbDatabase::open(&settings)?; // the same instance
/// let conn = again.connect()?;
/// conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)").unwrap();
/// let n: i64 = db.connect()?.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
/// assert_eq!(n, 1);
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
#[derive(Clone)]
pub struct DuckdbDatabase {
    instance: Arc<Instance>,
}

impl std::fmt::Debug for DuckdbDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckdbDatabase")
            .field("path", &self.instance.settings.path)
            .finish()
    }
}

/// The canonical form of `path`, for a file that may not exist yet.
fn canonical(settings: &DuckdbSettings) -> Result<PathBuf, ConnectorError> {
    let path = settings.path();
    if let Ok(found) = path.canonicalize() {
        return Ok(found);
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(settings.error("the database path names no file"));
    };
    let folder = folder.canonicalize().map_err(|e| {
        settings
            .error(format!(
                "cannot open the database: its folder {} is not there",
                folder.display()
            ))
            .caused_by(e)
    })?;
    Ok(folder.join(name))
}

impl DuckdbDatabase {
    /// The database of `settings`, opened (and the file made) on first use in
    /// this process.
    pub fn open(settings: &DuckdbSettings) -> Result<Self, ConnectorError> {
        let key = canonical(settings)?;
        let registry = OPEN.get_or_init(Default::default);
        let mut open = registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(instance) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(Self { instance });
        }
        let conn = Connection::open(&key).map_err(|e| {
            let said = says(&e);
            let action = if said.contains("lock") {
                format!(
                    "cannot open the database file: another process has it open, and DuckDB \
                     lets only one process at a time write a database file (run the flow in \
                     one process); DuckDB said: {said}"
                )
            } else {
                format!("cannot open the database file: {said}")
            };
            settings.error(action).caused_by(e)
        })?;
        let instance = Arc::new(Instance {
            settings: settings.clone(),
            root: Mutex::new(conn),
            writes: Mutex::new(()),
        });
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(key, Arc::downgrade(&instance));
        Ok(Self { instance })
    }

    /// Its settings.
    pub fn settings(&self) -> &DuckdbSettings {
        &self.instance.settings
    }

    /// A new connection of its own to the database.
    pub fn connect(&self) -> Result<Connection, ConnectorError> {
        let root = self.instance.root.lock().unwrap_or_else(|p| p.into_inner());
        root.try_clone().map_err(|e| {
            self.settings()
                .error(format!("cannot connect to the database: {}", says(&e)))
                .caused_by(e)
        })
    }

    /// The lock for catalog changes and moves of committed rows.
    pub(crate) fn writes(&self) -> MutexGuard<'_, ()> {
        self.instance
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
