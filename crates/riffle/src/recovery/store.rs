//! The recovery store: snapshots in SQLite files, one file per partition.
//!
//! Why SQLite (through rusqlite, compiled in): every snapshot write is a transaction
//! that is either wholly on disk or not at all, even when the process is killed
//! mid-write; the files are readable by any SQLite tool when something needs
//! looking into; and the same engine already holds Riffle's pipeline metadata.
//! redb would do the transactions as well, but offers nothing SQLite lacks here.
//!
//! A store is a directory of `part-N.sqlite3` files. Each holds:
//!
//! - `meta`: the partition count, and (from the first run on) the flow's name and
//!   the fingerprint of its steps, so a store made for another flow is refused;
//! - `snaps(step_id, state_key, epoch, state)`: the state of one key of one step (a
//!   source or sink partition, or a key of a stateful step) as of the end of
//!   `epoch`; `state` is NULL when the key was deleted. A row is written only when
//!   the key changed since the step's previous snapshot;
//! - `commits(epoch)` (in `part-0` only): epochs every step has snapshotted.
//!
//! A row goes to partition `hash(step_id, state_key) % N`, so writes from many
//! workers spread over the files. Resuming at epoch `e` reads, per key, its newest
//! row at or before `e`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Result, RiffleError};
use crate::exchange::stable_hash;

/// One state change: `(state key, new state or None when deleted)`.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// What `riffle recovery show` prints about a store.
#[derive(Debug, Clone)]
pub struct StoreSummary {
    /// Partition files.
    pub partitions: usize,
    /// The flow it is bound to, once a run has used it.
    pub flow: Option<String>,
    /// The newest committed epoch.
    pub committed: Option<u64>,
    /// What is wrong with any of its files, one line each (empty when all is well).
    pub problems: Vec<String>,
}

/// An open recovery store.
pub struct RecoveryStore {
    dir: PathBuf,
    parts: Vec<Mutex<Connection>>,
    /// Rows older than a key's newest row at or before this epoch are no longer
    /// needed by any resume (see [`RecoveryStore::prune_before`]); 0 until set.
    prune_before: std::sync::atomic::AtomicU64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snaps (
    step_id TEXT NOT NULL,
    state_key BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    state BLOB,
    PRIMARY KEY (step_id, state_key, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (epoch INTEGER PRIMARY KEY, committed_at TEXT NOT NULL);
";

/// The running program's name, for the commands that messages suggest: `riffle`, or
/// a project's own binary built on the app entry.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "riffle".to_string())
}

fn part_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("part-{i}.sqlite3"))
}

fn sql_error(path: &Path, action: &str, e: rusqlite::Error) -> RiffleError {
    RiffleError::Recovery(format!("recovery file {}: {action}: {e}", path.display()))
}

impl RecoveryStore {
    /// Creates a store of `partitions` files in `dir` (created if missing); fails if
    /// `dir` already holds a store.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// riffle::recovery::RecoveryStore::init(dir.path(), 4)?;
    /// assert!(dir.path().join("part-3.sqlite3").exists());
    /// assert!(riffle::recovery::RecoveryStore::init(dir.path(), 4).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn init(dir: &Path, partitions: usize) -> Result<()> {
        if partitions == 0 {
            return Err(RiffleError::Recovery(
                "a recovery store needs at least one partition".to_string(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "create", e))?;
        if part_path(dir, 0).exists() {
            return Err(RiffleError::Recovery(format!(
                "{} already holds a recovery store",
                dir.display()
            )));
        }
        for i in 0..partitions {
            let path = part_path(dir, i);
            let conn = Connection::open(&path).map_err(|e| sql_error(&path, "create", e))?;
            conn.execute_batch("PRAGMA journal_mode=WAL;")
                .map_err(|e| sql_error(&path, "create", e))?;
            conn.execute_batch(SCHEMA)
                .map_err(|e| sql_error(&path, "create the schema", e))?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('partitions', ?1), ('partition', ?2)",
                params![partitions.to_string(), i.to_string()],
            )
            .map_err(|e| sql_error(&path, "write its metadata", e))?;
        }
        Ok(())
    }

    /// Opens the store in `dir` for the flow `flow` whose steps have `fingerprint`:
    /// binds it to that flow on first use, and refuses it for any other.
    pub fn open(dir: &Path, flow: &str, fingerprint: &str) -> Result<Self> {
        let first = part_path(dir, 0);
        if !first.exists() {
            return Err(RiffleError::Recovery(format!(
                "{} is not a recovery store (no {}); create one with `{} recovery init {} --partitions N`",
                dir.display(),
                first.display(),
                program_name(),
                dir.display()
            )));
        }
        let head = Self::connect(&first)?;
        let partitions: usize = meta(&head, &first, "partitions")?
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                RiffleError::Recovery(format!(
                    "recovery file {}: its partition count is missing",
                    first.display()
                ))
            })?;
        let mut parts = vec![Mutex::new(head)];
        for i in 1..partitions {
            let path = part_path(dir, i);
            if !path.exists() {
                return Err(RiffleError::Recovery(format!(
                    "recovery file {} is missing (the store has {partitions} partitions)",
                    path.display()
                )));
            }
            let conn = Self::connect(&path)?;
            let n = meta(&conn, &path, "partitions")?;
            if n.as_deref() != Some(&partitions.to_string()) {
                return Err(RiffleError::Recovery(format!(
                    "recovery file {} belongs to another store ({} partitions, not {partitions})",
                    path.display(),
                    n.unwrap_or_default()
                )));
            }
            parts.push(Mutex::new(conn));
        }
        let store = Self {
            dir: dir.to_path_buf(),
            parts,
            prune_before: std::sync::atomic::AtomicU64::new(0),
        };
        store.bind(flow, fingerprint)?;
        Ok(store)
    }

    /// Reads what the store in `dir` holds without binding it to a flow and without
    /// writing to it: every partition file is opened read-only, and each one that
    /// cannot be read (missing, empty, not SQLite, from another store) is listed in
    /// [`StoreSummary::problems`] rather than hidden.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// riffle::recovery::RecoveryStore::init(dir.path(), 2)?;
    /// std::fs::write(dir.path().join("part-1.sqlite3"), b"garbage")?;
    /// let summary = riffle::recovery::RecoveryStore::summary(dir.path())?;
    /// assert_eq!(summary.partitions, 2);
    /// assert!(summary.problems[0].contains("part-1.sqlite3"));
    /// assert_eq!(std::fs::read(dir.path().join("part-1.sqlite3"))?, b"garbage");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn summary(dir: &Path) -> Result<StoreSummary> {
        let first = part_path(dir, 0);
        if !first.exists() {
            return Err(RiffleError::Recovery(format!(
                "{} is not a recovery store (no {})",
                dir.display(),
                first.display()
            )));
        }
        let mut summary = StoreSummary {
            partitions: 0,
            flow: None,
            committed: None,
            problems: Vec::new(),
        };
        match Self::read_head(&first) {
            Ok((partitions, flow, committed)) => {
                summary.partitions = partitions;
                summary.flow = flow;
                summary.committed = committed;
            }
            Err(e) => summary.problems.push(e.to_string()),
        }
        // Every file there is, and every one the count promises.
        let mut i = 1;
        loop {
            let path = part_path(dir, i);
            if !path.exists() {
                if i < summary.partitions {
                    summary.problems.push(format!(
                        "recovery file {} is missing (the store has {} partitions)",
                        path.display(),
                        summary.partitions
                    ));
                    i += 1;
                    continue;
                }
                break;
            }
            if let Err(e) = Self::check_partition(&path, summary.partitions) {
                summary.problems.push(e.to_string());
            }
            i += 1;
        }
        Ok(summary)
    }

    /// Opens a partition file for reading only: no schema is made, no journal mode
    /// switched, so looking into a store never changes it.
    fn connect_read_only(path: &Path) -> Result<Connection> {
        use rusqlite::OpenFlags;
        let len = std::fs::metadata(path)
            .map_err(|e| io(path, "read", e))?
            .len();
        if len == 0 {
            return Err(RiffleError::Recovery(format!(
                "recovery file {} is empty (0 bytes): not a recovery store file",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(path, "open", e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| sql_error(path, "open", e))?;
        Ok(conn)
    }

    /// Partition 0's count, flow and newest commit.
    fn read_head(path: &Path) -> Result<(usize, Option<String>, Option<u64>)> {
        let conn = Self::connect_read_only(path)?;
        let partitions = meta(&conn, path, "partitions")?
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                RiffleError::Recovery(format!(
                    "recovery file {}: its partition count is missing",
                    path.display()
                ))
            })?;
        let flow = meta(&conn, path, "flow")?;
        let committed: Option<i64> = conn
            .query_row("SELECT MAX(epoch) FROM commits", [], |r| r.get(0))
            .map_err(|e| sql_error(path, "read its commits", e))?;
        Ok((partitions, flow, committed.map(|e| e as u64)))
    }

    /// Checks that a partition file is readable and belongs to a store of `partitions`.
    fn check_partition(path: &Path, partitions: usize) -> Result<()> {
        let conn = Self::connect_read_only(path)?;
        let n = meta(&conn, path, "partitions")?;
        if partitions > 0 && n.as_deref() != Some(&partitions.to_string()) {
            return Err(RiffleError::Recovery(format!(
                "recovery file {} belongs to another store ({} partitions, not {partitions})",
                path.display(),
                n.unwrap_or_else(|| "no count of".to_string())
            )));
        }
        conn.query_row("SELECT COUNT(*) FROM snaps", [], |r| r.get::<_, i64>(0))
            .map_err(|e| sql_error(path, "read its snapshots", e))?;
        Ok(())
    }

    fn connect(path: &Path) -> Result<Connection> {
        let conn = Connection::open(path).map_err(|e| sql_error(path, "open", e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| sql_error(path, "open", e))?;
        // WAL is a property of the file, set when the store is made; switching to it
        // takes a lock SQLite does not wait for, so only an older file is switched
        // here, retrying while another process opens it too.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sql_error(path, "open (is it a recovery store file?)", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mut tries = 0;
            while let Err(e) = conn.execute_batch("PRAGMA journal_mode=WAL;") {
                tries += 1;
                if tries > 100 {
                    return Err(sql_error(path, "open (is it a recovery store file?)", e));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // A snapshot of many keys is one transaction: a page cache big enough to hold
        // the B-tree pages it touches keeps SQLite from spilling and re-reading them.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;")
            .map_err(|e| sql_error(path, "open (is it a recovery store file?)", e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| sql_error(path, "read its schema", e))?;
        Ok(conn)
    }

    fn bind(&self, flow: &str, fingerprint: &str) -> Result<()> {
        let path = part_path(&self.dir, 0);
        let conn = self.lock(0);
        // Several processes of a cluster may open a new store at once: the first
        // insert wins, and every process then checks against what was bound.
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('flow', ?1), ('fingerprint', ?2)",
            params![flow, fingerprint],
        )
        .map_err(|e| sql_error(&path, "bind it to the flow", e))?;
        let bound = meta(&conn, &path, "flow")?.unwrap_or_default();
        if bound != flow {
            return Err(RiffleError::Recovery(format!(
                "the recovery store {} was made for flow {bound:?}, not {flow:?}",
                self.dir.display()
            )));
        }
        let theirs = meta(&conn, &path, "fingerprint")?.unwrap_or_default();
        if theirs != fingerprint {
            return Err(RiffleError::Recovery(format!(
                "the recovery store {} was made for another version of flow {flow:?} \
                 (its steps differ: {theirs} != {fingerprint}); resume with the same \
                 steps or start a new store",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Connection> {
        self.parts[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of partition files.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Writes `changes` of step `step_id` as of the end of `epoch`.
    pub fn write(&self, step_id: &str, epoch: u64, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let n = self.parts.len();
        let mut by_part: Vec<Vec<Change>> = (0..n).map(|_| Vec::new()).collect();
        for change in changes {
            let p = (stable_hash(&(step_id, &change.0)) % n as u64) as usize;
            by_part[p].push(change);
        }
        for (i, mut changes) in by_part.into_iter().enumerate() {
            if changes.is_empty() {
                continue;
            }
            // In key order, rows go into the table's B-tree page after page.
            changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let path = part_path(&self.dir, i);
            let mut conn = self.lock(i);
            let tx = conn
                .transaction()
                .map_err(|e| sql_error(&path, "write a snapshot", e))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO snaps (step_id, state_key, epoch, state) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(|e| sql_error(&path, "write a snapshot", e))?;
                // Pruning a key as it is written touches the pages the insert reads
                // anyway, so a store whose keys all change stays at about two rows a
                // key without scanning the table.
                // Of the key's rows at or before the boundary, all but the newest go,
                // and the newest too when it is a deletion.
                let mut superseded = tx
                    .prepare_cached(
                        "DELETE FROM snaps WHERE step_id = ?1 AND state_key = ?2 AND epoch <= ?3 \
                         AND (state IS NULL OR epoch < (SELECT MAX(epoch) FROM snaps \
                         WHERE step_id = ?1 AND state_key = ?2 AND epoch <= ?3))",
                    )
                    .map_err(|e| sql_error(&path, "write a snapshot", e))?;
                let prune = self.prune_before.load(std::sync::atomic::Ordering::Relaxed) as i64;
                for (key, state) in &changes {
                    if prune > 0 {
                        superseded
                            .execute(params![step_id, key, prune])
                            .map_err(|e| sql_error(&path, "write a snapshot", e))?;
                    }
                    insert
                        .execute(params![step_id, key, epoch as i64, state])
                        .map_err(|e| sql_error(&path, "write a snapshot", e))?;
                }
            }
            tx.commit()
                .map_err(|e| sql_error(&path, "commit a snapshot", e))?;
        }
        Ok(())
    }

    /// The state of every key of `step_id` as of the end of `epoch`: per key, its
    /// newest row at or before `epoch`, deleted keys left out.
    pub fn load(&self, step_id: &str, epoch: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for i in 0..self.parts.len() {
            let path = part_path(&self.dir, i);
            let conn = self.lock(i);
            let mut query = conn
                .prepare_cached(
                    "SELECT state_key, state, MAX(epoch) FROM snaps \
                     WHERE step_id = ?1 AND epoch <= ?2 GROUP BY state_key",
                )
                .map_err(|e| sql_error(&path, "read snapshots", e))?;
            let rows = query
                .query_map(params![step_id, epoch as i64], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
                })
                .map_err(|e| sql_error(&path, "read snapshots", e))?;
            for row in rows {
                let (key, state) = row.map_err(|e| sql_error(&path, "read snapshots", e))?;
                if let Some(state) = state {
                    out.push((key, state));
                }
            }
        }
        Ok(out)
    }

    /// Deletes every snapshot row after `committed` (all of them when nothing was
    /// committed): what a killed run wrote without committing. A resumed run counts
    /// epochs again from `committed + 1`, so such rows would otherwise pass for its
    /// own.
    pub fn discard_uncommitted(&self, committed: Option<u64>) -> Result<()> {
        let after = committed.map_or(-1, |e| e as i64);
        for i in 0..self.parts.len() {
            let path = part_path(&self.dir, i);
            let conn = self.lock(i);
            conn.execute("DELETE FROM snaps WHERE epoch > ?1", params![after])
                .map_err(|e| sql_error(&path, "discard uncommitted snapshots", e))?;
        }
        Ok(())
    }

    /// Records that every step has snapshotted `epoch`.
    pub fn commit(&self, epoch: u64) -> Result<()> {
        let path = part_path(&self.dir, 0);
        let conn = self.lock(0);
        conn.execute(
            "INSERT OR IGNORE INTO commits (epoch, committed_at) VALUES (?1, datetime('now'))",
            params![epoch as i64],
        )
        .map_err(|e| sql_error(&path, "record a commit", e))?;
        Ok(())
    }

    /// The newest committed epoch: where a run resumes.
    pub fn resume_epoch(&self) -> Result<Option<u64>> {
        let path = part_path(&self.dir, 0);
        let conn = self.lock(0);
        let epoch: Option<i64> = conn
            .query_row("SELECT MAX(epoch) FROM commits", [], |r| r.get(0))
            .optional()
            .map_err(|e| sql_error(&path, "read its commits", e))?
            .flatten();
        Ok(epoch.map(|e| e as u64))
    }

    /// From now on, [`RecoveryStore::write`] deletes the rows of each key it writes
    /// that no resume at or after `epoch` can need (its older rows, and a deletion
    /// that has nothing left to hide). Set it to the oldest epoch that must stay
    /// resumable, once that epoch is committed.
    pub fn prune_before(&self, epoch: u64) {
        self.prune_before
            .fetch_max(epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// Deletes rows no resume can need: rows superseded by a newer row of the same
    /// key at or before `keep_from`, and deletions at or before it. Resuming at any
    /// committed epoch from `keep_from` on stays possible.
    pub fn collect_garbage(&self, keep_from: u64) -> Result<()> {
        for i in 0..self.parts.len() {
            let path = part_path(&self.dir, i);
            let conn = self.lock(i);
            conn.execute(
                "DELETE FROM snaps WHERE epoch < ?1 AND EXISTS (SELECT 1 FROM snaps AS newer \
                 WHERE newer.step_id = snaps.step_id AND newer.state_key = snaps.state_key \
                 AND newer.epoch > snaps.epoch AND newer.epoch <= ?1)",
                params![keep_from as i64],
            )
            .map_err(|e| sql_error(&path, "collect garbage", e))?;
            conn.execute(
                "DELETE FROM snaps WHERE state IS NULL AND epoch <= ?1",
                params![keep_from as i64],
            )
            .map_err(|e| sql_error(&path, "collect garbage", e))?;
            if i == 0 {
                conn.execute(
                    "DELETE FROM commits WHERE epoch < ?1",
                    params![keep_from as i64],
                )
                .map_err(|e| sql_error(&path, "collect garbage", e))?;
            }
        }
        Ok(())
    }

    /// Hands a copy of every partition file, as of now, to `target` (a consistent
    /// copy of each, made by SQLite's `VACUUM INTO` beside the store): a backup
    /// that can be opened as a store again.
    pub fn backup_to(&self, target: &dyn super::BackupTarget) -> Result<()> {
        for i in 0..self.parts.len() {
            let path = part_path(&self.dir, i);
            let name = format!("part-{i}.sqlite3");
            let copy = self.dir.join(format!("{name}.backup"));
            let _ = std::fs::remove_file(&copy);
            {
                let conn = self.lock(i);
                conn.execute("VACUUM INTO ?1", params![copy.to_string_lossy()])
                    .map_err(|e| sql_error(&path, "back up", e))?;
            }
            let kept = target.keep(&name, &copy);
            let _ = std::fs::remove_file(&copy);
            kept.map_err(|why| {
                RiffleError::Recovery(format!(
                    "cannot back up {} to {}: {why}",
                    path.display(),
                    target.describe()
                ))
            })?;
        }
        Ok(())
    }
}

fn io(path: &Path, action: &str, e: std::io::Error) -> RiffleError {
    RiffleError::Recovery(format!("cannot {action} {}: {e}", path.display()))
}

fn meta(conn: &Connection, path: &Path, key: &str) -> Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .map_err(|e| sql_error(path, "read its metadata (is it a recovery store file?)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_rows_at_or_before_the_epoch_win_and_deletions_hide_keys() {
        let dir = tempfile::tempdir().unwrap();
        RecoveryStore::init(dir.path(), 3).unwrap();
        let store = RecoveryStore::open(dir.path(), "f", "x").unwrap();
        let k = |s: &str| s.as_bytes().to_vec();
        store
            .write("s", 1, vec![(k("a"), Some(k("1"))), (k("b"), Some(k("1")))])
            .unwrap();
        store
            .write("s", 3, vec![(k("a"), Some(k("3"))), (k("b"), None)])
            .unwrap();
        let mut at2 = store.load("s", 2).unwrap();
        at2.sort();
        assert_eq!(at2, [(k("a"), k("1")), (k("b"), k("1"))]);
        assert_eq!(store.load("s", 3).unwrap(), [(k("a"), k("3"))]);
        store.write("s", 5, vec![(k("a"), Some(k("5")))]).unwrap();
        store.discard_uncommitted(Some(3)).unwrap();
        assert_eq!(
            store.load("s", 9).unwrap(),
            [(k("a"), k("3"))],
            "uncommitted rows go"
        );
        store.collect_garbage(3).unwrap();
        assert_eq!(store.load("s", 9).unwrap(), [(k("a"), k("3"))]);
        assert!(
            store.load("s", 2).unwrap().is_empty(),
            "superseded rows are gone"
        );
    }

    #[test]
    fn keys_written_again_are_pruned_to_what_resumes_need() {
        let dir = tempfile::tempdir().unwrap();
        RecoveryStore::init(dir.path(), 1).unwrap();
        let store = RecoveryStore::open(dir.path(), "f", "x").unwrap();
        let k = |s: &str| s.as_bytes().to_vec();
        let rows = |store: &RecoveryStore| -> i64 {
            let conn = store.lock(0);
            conn.query_row("SELECT COUNT(*) FROM snaps", [], |r| r.get(0))
                .unwrap()
        };
        store
            .write("s", 1, vec![(k("a"), Some(k("1"))), (k("b"), Some(k("1")))])
            .unwrap();
        store
            .write("s", 2, vec![(k("a"), Some(k("2"))), (k("b"), None)])
            .unwrap();
        store.commit(2).unwrap();
        store.prune_before(2);
        // Epoch 3 rewrites both keys: their epoch-1 rows go, b's deletion at 2 goes
        // too (nothing older is left for it to hide), a's row at 2 stays for a
        // resume at 2.
        store
            .write("s", 3, vec![(k("a"), Some(k("3"))), (k("b"), Some(k("3")))])
            .unwrap();
        assert_eq!(rows(&store), 3);
        assert_eq!(store.load("s", 2).unwrap(), [(k("a"), k("2"))]);
        let mut at3 = store.load("s", 3).unwrap();
        at3.sort();
        assert_eq!(at3, [(k("a"), k("3")), (k("b"), k("3"))]);
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_bind_it_to_one_flow() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            RecoveryStore::init(dir.path(), 2).unwrap();
            let opened: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| RecoveryStore::open(dir.path(), "f", "x").map(|_| ())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for result in opened {
                result.unwrap();
            }
            let summary = RecoveryStore::summary(dir.path()).unwrap();
            assert_eq!(summary.flow.as_deref(), Some("f"));
        }
    }

    #[test]
    fn a_backup_opens_as_a_store_with_the_same_commits() {
        let dir = tempfile::tempdir().unwrap();
        RecoveryStore::init(dir.path(), 2).unwrap();
        let store = RecoveryStore::open(dir.path(), "f", "x").unwrap();
        let rows: Vec<Change> = (0..100u32)
            .map(|i| (i.to_le_bytes().to_vec(), Some(vec![7; 10])))
            .collect();
        store.write("s", 4, rows).unwrap();
        store.commit(4).unwrap();
        let backup = dir.path().join("backup");
        store
            .backup_to(&super::super::LocalBackup::new(&backup))
            .unwrap();
        store.write("s", 5, vec![(vec![1], None)]).unwrap();
        store.commit(5).unwrap();

        let copy = RecoveryStore::open(&backup, "f", "x").unwrap();
        assert_eq!(
            copy.resume_epoch().unwrap(),
            Some(4),
            "the copy is as of its commit"
        );
        assert_eq!(copy.load("s", 4).unwrap().len(), 100);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".backup"))
            .collect();
        assert!(left.is_empty(), "temporary copies are removed: {left:?}");
    }

    #[test]
    fn another_flow_and_missing_or_corrupt_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        RecoveryStore::init(dir.path(), 2).unwrap();
        RecoveryStore::open(dir.path(), "f", "x").unwrap();
        let err = RecoveryStore::open(dir.path(), "g", "x")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("made for flow \"f\""), "{err}");
        let err = RecoveryStore::open(dir.path(), "f", "y")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another version"), "{err}");
        std::fs::write(dir.path().join("part-1.sqlite3"), b"not a database at all").unwrap();
        let _ = std::fs::remove_file(dir.path().join("part-1.sqlite3-wal"));
        let err = RecoveryStore::open(dir.path(), "f", "x")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("part-1.sqlite3"), "{err}");
        std::fs::remove_file(dir.path().join("part-1.sqlite3")).unwrap();
        let err = RecoveryStore::open(dir.path(), "f", "x")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("part-1.sqlite3 is missing"), "{err}");
    }
}
