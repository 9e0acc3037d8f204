//! `riffle recovery`: create and look into recovery stores.
//!
//! ```text
//! riffle recovery init state --partitions 4   # a store of 4 SQLite files in ./state
//! riffle recovery show state                  # partitions, flow and committed epoch
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use riffle::recovery::RecoveryStore;

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
        }
    }
    Ok(ExitCode::SUCCESS)
}
