//! [`RunLock`]: a recovery store belongs to the one run that uses it.
//!
//! Two runs on one store would both snapshot into it, and the second would truncate
//! the sinks to the committed positions while the first still writes: output lost
//! and overwritten. So each process of a run takes an exclusive lock on
//! `run-<process id>.lock` in the store's folder for as long as it runs, and writes
//! who holds it into the file. The processes of one cluster have distinct ids and
//! never meet; a second run of the same command (or of any other) meets the first
//! one's process 0 at least, and is refused with the holder named.
//!
//! The lock is an OS file lock (`flock` on Unix): a killed process releases it, so a
//! crash never leaves a store locked.
//!
//! ```
//! use riffle::recovery::{RecoveryStore, RunLock};
//!
//! let dir = tempfile::tempdir()?;
//! RecoveryStore::init(dir.path(), 1)?;
//! let held = RunLock::take(dir.path(), 0)?;
//! let err = RunLock::take(dir.path(), 0).err().unwrap().to_string();
//! assert!(err.contains("is in use by"), "{err}");
//! drop(held);
//! RunLock::take(dir.path(), 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, RiffleError};

/// An exclusive hold on one process slot of a recovery store; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes process `process`'s slot of the store in `dir`, or says who holds it.
    pub fn take(dir: &Path, process: usize) -> Result<Self> {
        let path = dir.join(format!("run-{process}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                RiffleError::Recovery(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(RiffleError::Recovery(format!(
                    "the recovery store {} is in use by {} (its lock {} is held); wait for that \
                     run to end or stop it, then run again",
                    dir.display(),
                    if holder.is_empty() {
                        "another run".to_string()
                    } else {
                        holder.to_string()
                    },
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(RiffleError::Recovery(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        let holder = format!(
            "process {} ({})",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        // Who holds it is for messages only: a failure to write it is not fatal.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()));
        Ok(Self { _file: file })
    }
}
