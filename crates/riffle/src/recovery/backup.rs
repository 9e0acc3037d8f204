//! Backups: copies of a recovery store kept somewhere that outlives the machine.
//!
//! After every commit, each partition file is copied consistently (SQLite's
//! `VACUUM INTO`, which reads a snapshot while the run goes on writing) and the
//! copy is handed to a [`BackupTarget`]. A target keeps the newest copy of each
//! partition under the partition's own file name (`part-0.sqlite3`, ...), so the
//! files it holds form a recovery store again: copy them into a folder and resume.
//!
//! [`LocalBackup`] keeps them in a folder (e.g. a mounted network volume); the
//! `riffle` command line adds object stores by URL (S3, GCS, Azure, `file://`).
//! A target of your own implements the trait.
//!
//! ```
//! use riffle::recovery::{LocalBackup, Recovery};
//!
//! let recovery = Recovery::new("state").backup(LocalBackup::new("/mnt/backups/state"));
//! # let _ = recovery;
//! ```

use std::path::{Path, PathBuf};

/// Somewhere to keep the newest copy of each partition file; see the
/// docs of [`crate::recovery`].
pub trait BackupTarget: Send + Sync + 'static {
    /// Where the copies go, for messages (a path or a URL).
    fn describe(&self) -> String;

    /// Keeps the file at `copy` as the newest backup of the partition file named
    /// `file_name` (`part-N.sqlite3`). `copy` is deleted after the call.
    fn keep(&self, file_name: &str, copy: &Path) -> Result<(), String>;
}

/// A [`BackupTarget`] folder on this machine.
#[derive(Debug, Clone)]
pub struct LocalBackup {
    dir: PathBuf,
}

impl LocalBackup {
    /// Backups into `dir` (created when the first copy is kept).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
        }
    }
}

impl BackupTarget for LocalBackup {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn keep(&self, file_name: &str, copy: &Path) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create the folder: {e}"))?;
        let target = self.dir.join(file_name);
        // Copied beside the target, then renamed over it: a reader never sees half a file.
        let tmp = self.dir.join(format!("{file_name}.tmp"));
        std::fs::copy(copy, &tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &target)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))
    }
}
