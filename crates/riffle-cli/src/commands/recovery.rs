//! `riffle recovery`: create and look into recovery stores.
//!
//! ```text
//! riffle recovery init state --partitions 4   # a store of 4 SQLite files in ./state
//! riffle recovery show state                  # partitions, flow and committed epoch
//! riffle recovery restore s3://bucket/backups/state state2   # a backup, back into a folder
//! ```
//!
//! `riffle run --recovery DIR --backup TARGET` copies the store to `TARGET` after
//! every commit: a folder, or an object store by URL (`s3://bucket/prefix`,
//! `gs://...`, `az://...`, `file:///abs/dir`, with credentials from the usual
//! environment variables). Each partition is kept as `part-N.sqlite3` directly
//! under the target, so a restored folder is a store to resume from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use riffle::recovery::{BackupTarget, RecoveryStore};
use riffle_pipeline::ArtifactStore;

/// `riffle recovery init|show`.
#[derive(Debug, clap::Args)]
pub struct RecoveryArgs {
    #[command(subcommand)]
    pub command: RecoveryCommand,
}

/// What to do with a recovery store.
#[derive(Debug, clap::Subcommand)]
pub enum RecoveryCommand {
    /// Create a recovery store in DIR.
    Init {
        /// The store's directory (created if missing; must not hold a store yet).
        dir: PathBuf,
        /// Partition files, written in parallel by the workers.
        #[arg(long, default_value_t = 1)]
        partitions: usize,
    },
    /// Print a store's partitions, flow and newest committed epoch.
    Show {
        /// The store's directory.
        dir: PathBuf,
    },
    /// Copy a backup (made with `riffle run --backup`) into a new store folder.
    Restore {
        /// The backup: a folder or an object-store URL.
        from: String,
        /// The folder to restore into (must not hold a store yet).
        dir: PathBuf,
    },
}

/// A backup target for `riffle run --backup`: a folder or an object store by URL.
pub struct ObjectBackup {
    store: ArtifactStore,
}

impl ObjectBackup {
    /// Opens `spec`: a URL with a scheme (`s3://...`, `file:///...`), or a folder.
    pub fn open(spec: &str) -> anyhow::Result<Self> {
        let store = if spec.contains("://") {
            ArtifactStore::from_url(spec)?
        } else {
            ArtifactStore::local(Path::new(spec))?
        };
        Ok(Self { store })
    }
}

impl BackupTarget for ObjectBackup {
    fn describe(&self) -> String {
        self.store.url().to_string()
    }

    fn keep(&self, file_name: &str, copy: &Path) -> Result<(), String> {
        let bytes =
            std::fs::read(copy).map_err(|e| format!("cannot read {}: {e}", copy.display()))?;
        self.store
            .put_file(file_name, bytes.into())
            .map_err(|e| e.to_string())
    }
}

/// Copies every `part-N.sqlite3` of the backup at `from` into `dir`.
fn restore(from: &str, dir: &Path) -> anyhow::Result<usize> {
    if dir.join("part-0.sqlite3").exists() {
        bail!("{} already holds a recovery store", dir.display());
    }
    let backup = ObjectBackup::open(from)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut parts = 0;
    while let Some(bytes) = backup.store.get_file(&format!("part-{parts}.sqlite3"))? {
        let path = dir.join(format!("part-{parts}.sqlite3"));
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        parts += 1;
    }
    if parts == 0 {
        bail!("{from}: no backup here (no part-0.sqlite3)");
    }
    RecoveryStore::summary(dir)
        .with_context(|| format!("the backup at {from} is not a whole store"))?;
    Ok(parts)
}

/// Runs `riffle recovery`.
pub fn recovery(args: &RecoveryArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        RecoveryCommand::Init { dir, partitions } => {
            RecoveryStore::init(dir, *partitions)?;
            println!(
                "created a recovery store of {partitions} partition(s) in {}",
                dir.display()
            );
        }
        RecoveryCommand::Show { dir } => {
            let summary = RecoveryStore::summary(dir)?;
            println!("store:      {}", dir.display());
            println!("partitions: {}", summary.partitions);
            println!(
                "flow:       {}",
                summary.flow.as_deref().unwrap_or("(not used yet)")
            );
            match summary.committed {
                Some(epoch) => println!("committed:  epoch {epoch}"),
                None => println!("committed:  nothing yet"),
            }
            if !summary.problems.is_empty() {
                for problem in &summary.problems {
                    eprintln!("problem:    {problem}");
                }
                bail!(
                    "the recovery store {} has {} damaged or missing partition file(s); \
                     it cannot be resumed from as it is",
                    dir.display(),
                    summary.problems.len()
                );
            }
        }
        RecoveryCommand::Restore { from, dir } => {
            let parts = restore(from, dir)?;
            println!(
                "restored {parts} partition(s) from {from} into {}",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
