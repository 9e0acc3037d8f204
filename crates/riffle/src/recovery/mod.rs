//! Recovery: snapshots of every stateful step, source and sink partition, so a run
//! killed at any moment resumes where the last committed snapshot left it.
//!
//! ## How it works
//!
//! Every `snapshot_interval` (a whole number of epochs, so the epoch interval and
//! the snapshot interval are set separately) each part of the flow writes, as of the
//! end of that epoch:
//!
//! - a **source** partition: its position (e.g. a file offset);
//! - a **sink** partition: its position after flushing (e.g. bytes written);
//! - a **stateful step**: the keys whose state changed since its previous snapshot.
//!
//! Steps snapshot as the epoch closes: an epoch's items are handled in epoch order
//! (see [`crate::operators::keyed`]), so a step's state is exactly "everything up to
//! the end of epoch `e`". Sinks write items in epoch order under recovery for the
//! same reason. Each step holds back the flow's progress until its snapshot is
//! written; once the whole flow has moved past epoch `e`, every part has written
//! it, and worker 0 records `e` as **committed**.
//!
//! A run on a store with a committed epoch **resumes** from the newest one:
//! sources reopen at their saved positions, sinks truncate to their saved positions
//! (so the built-in file sinks are exactly-once), and stateful steps reload their
//! keys. Keyed state is reloaded by the worker that owns each key under the stable
//! hash of [`crate::exchange`], so a run may resume with a different number of
//! workers or processes.
//!
//! A run that **completes** (every source exhausted) ends at a committed
//! snapshot: each source writes its final positions at the first snapshot epoch
//! after everything it sent and holds the flow just past it until the run has
//! committed it. The same run started again on the store resumes at its end: it
//! reads only what is new, and what the end of the input let out (the last
//! windows, final aggregations) comes again in the same place, where the
//! exactly-once sinks write it over.
//!
//! Delivery: exactly-once for fixed-partitioned sinks that can truncate or write
//! idempotently (the built-in file sinks); at-least-once for the others (standard
//! output, the testing sink, dynamic sinks); the table in [`crate::sinks`] lists
//! them. Dynamic sources cannot resume and are refused.
//!
//! **Backups**: after every commit a consistent copy of each partition file can go
//! to a [`BackupTarget`]: a folder ([`LocalBackup`]), or, from the `riffle` command
//! line, an object store by URL. The copies form a store again.
//!
//! ```
//! use std::time::Duration;
//! use riffle::recovery::{Recovery, RecoveryStore};
//!
//! let dir = tempfile::tempdir()?;
//! RecoveryStore::init(dir.path(), 2)?;
//! let recovery = Recovery::new(dir.path())
//!     .snapshot_interval(Duration::from_secs(10))
//!     .backup_interval(Duration::from_secs(600));
//! let execution = riffle::Execution::new().workers(2).recovery(recovery);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backup;
mod lock;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use backup::{BackupTarget, LocalBackup};
pub use lock::RunLock;
pub use store::{Change, RecoveryStore, StoreSummary};

use crate::error::{Result, RiffleError};

/// Where and how often a run snapshots; see the [module docs](self).
#[derive(Clone)]
pub struct Recovery {
    dir: PathBuf,
    snapshot_interval: Duration,
    backup_interval: Duration,
    backup: Option<Arc<dyn BackupTarget>>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("dir", &self.dir)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("backup_interval", &self.backup_interval)
            .field("backup", &self.backup.as_ref().map(|b| b.describe()))
            .finish()
    }
}

impl Recovery {
    /// Snapshots into the store at `dir` (made with [`RecoveryStore::init`] or
    /// `riffle recovery init`), every 10 s, keeping nothing older than needed.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            snapshot_interval: Duration::from_secs(10),
            backup_interval: Duration::ZERO,
            backup: None,
        }
    }

    /// How often to snapshot; rounded to a whole number of epochs (at least one).
    pub fn snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = interval;
        self
    }

    /// How far back committed snapshots stay resumable; older rows are deleted.
    pub fn backup_interval(mut self, interval: Duration) -> Self {
        self.backup_interval = interval;
        self
    }

    /// After every commit, copy the store into the folder `dir`, e.g. on durable
    /// storage: the same as `.backup(LocalBackup::new(dir))`.
    pub fn backup_dir(self, dir: impl AsRef<Path>) -> Self {
        self.backup(LocalBackup::new(dir))
    }

    /// After every commit, hand a consistent copy of each partition file to
    /// `target` (see [`BackupTarget`]).
    pub fn backup(mut self, target: impl BackupTarget) -> Self {
        self.backup = Some(Arc::new(target));
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A recovery store in use by one run.
pub(crate) struct RecoveryRun {
    pub store: RecoveryStore,
    /// Snapshot at the end of epochs `e` with `(e + 1) % every == 0`.
    pub every: u64,
    /// Epochs of history kept resumable.
    pub keep: u64,
    /// The committed epoch this run resumes from.
    pub resume: Option<u64>,
    pub backup: Option<Arc<dyn BackupTarget>>,
    /// Commits made by this run.
    commits: std::sync::atomic::AtomicU64,
    /// The newest committed epoch this process knows of, plus one (0: none).
    committed: std::sync::atomic::AtomicU64,
    /// Whether this process commits (it hosts worker 0); the others read commits
    /// from the store.
    leader: bool,
    /// When a process that does not commit last read the store's commit.
    refreshed: std::sync::Mutex<Option<std::time::Instant>>,
    /// This process's hold on the store, for as long as the run lasts.
    _lock: RunLock,
}

/// How often a process that does not commit itself reads the store's commit.
const COMMIT_REFRESH: Duration = Duration::from_millis(50);

/// Every how many commits the whole store is swept for rows no resume needs.
const SWEEP_EVERY: u64 = 32;

impl RecoveryRun {
    /// Opens the store for process `process` of a run (0 when alone), refusing it
    /// while another run holds it (see [`RunLock`]). The leader (process 0, before
    /// it connects to the others) first discards what a killed run wrote after its
    /// last commit.
    pub fn open(
        config: &Recovery,
        epoch_interval: Duration,
        flow: &str,
        fingerprint: &str,
        process: usize,
    ) -> Result<Self> {
        let leader = process == 0;
        let store = RecoveryStore::open(&config.dir, flow, fingerprint)?;
        let lock = RunLock::take(&config.dir, process)?;
        let resume = store.resume_epoch()?;
        if leader {
            store.discard_uncommitted(resume)?;
        }
        let epoch = epoch_interval.as_nanos().max(1);
        let every = (config.snapshot_interval.as_nanos() / epoch).max(1) as u64;
        let keep = (config.backup_interval.as_nanos() / epoch) as u64;
        Ok(Self {
            store,
            every,
            keep,
            resume,
            backup: config.backup.clone(),
            commits: std::sync::atomic::AtomicU64::new(0),
            committed: std::sync::atomic::AtomicU64::new(resume.map_or(0, |e| e + 1)),
            leader,
            refreshed: std::sync::Mutex::new(None),
            _lock: lock,
        })
    }

    /// The newest epoch committed to the store, as this process knows it: at once
    /// in the process that commits, within [`COMMIT_REFRESH`] in the others (they
    /// read the store). Commit hooks fire from it.
    pub fn committed_epoch(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if !self.leader {
            let mut refreshed = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if refreshed.is_none_or(|at| now.duration_since(at) >= COMMIT_REFRESH) {
                *refreshed = Some(now);
                if let Ok(Some(epoch)) = self.store.resume_epoch() {
                    self.committed.fetch_max(epoch + 1, Ordering::AcqRel);
                }
            }
        }
        self.committed.load(Ordering::Acquire).checked_sub(1)
    }

    /// The first epoch of this run.
    pub fn first_epoch(&self) -> u64 {
        self.resume.map_or(0, |e| e + 1)
    }

    /// The latest snapshot epoch before `bound`.
    pub fn snapshot_before(&self, bound: u64) -> Option<u64> {
        let s = (bound / self.every)
            .checked_mul(self.every)?
            .checked_sub(1)?;
        (s < bound).then_some(s)
    }

    /// The first snapshot epoch at or after `epoch`.
    pub fn snapshot_at_or_after(&self, epoch: u64) -> Option<u64> {
        epoch
            .checked_add(1)?
            .div_ceil(self.every)
            .checked_mul(self.every)?
            .checked_sub(1)
    }

    /// Records `epoch` as committed and drops history older than kept.
    pub fn commit(&self, epoch: u64) -> Result<()> {
        self.store.commit(epoch)?;
        self.committed
            .fetch_max(epoch + 1, std::sync::atomic::Ordering::AcqRel);
        let keep_from = epoch.saturating_sub(self.keep);
        // Keys written again are pruned as they are written; a full sweep (which
        // reads the whole store) now and then takes what is left: keys no longer
        // written and their deletions.
        self.store.prune_before(keep_from);
        let commits = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if commits % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.store.collect_garbage(keep_from)?;
        }
        if let Some(target) = &self.backup {
            self.store.backup_to(target.as_ref())?;
        }
        Ok(())
    }
}

/// Encodes a key or a state for the store.
pub(crate) fn encode<T: Serialize>(step_id: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value)
        .map_err(|e| RiffleError::Recovery(format!("step {step_id:?}: cannot encode state: {e}")))
}

/// Decodes a key or a state read from the store.
pub(crate) fn decode<T: DeserializeOwned>(step_id: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        RiffleError::Recovery(format!(
            "step {step_id:?}: a snapshot in the store does not decode ({e}); was it written by another version of the flow?"
        ))
    })
}
