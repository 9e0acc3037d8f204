//! Which process runs a run, and finding the runs whose process is gone.
//!
//! A run is recorded `running` when it starts and gets its end recorded when it
//! ends; a process killed in between (SIGKILL, a crash, a machine that lost power)
//! never records the end. So each run also records its owner: the host, the process
//! id and the process's start time (so a recycled pid is not mistaken for the run's
//! process). [`reap_abandoned`] marks a `running` run whose owner ran on this host
//! and is no longer alive as failed, saying so.
//!
//! Whether a process of another host lives cannot be told from here, so a running
//! run also beats: its executor records a heartbeat every [`HEARTBEAT`] (30 s). A
//! run of another host whose heartbeat is older than [`STALE_AFTER`] (5 minutes,
//! ten missed beats) is marked failed too. A live process on this host is never
//! reaped, however late its beat.

use std::time::Duration;

use super::{MetadataStore, RunStatus};
use crate::error::Result;

/// How often a running run records its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// How old the heartbeat of another host's run may be before the run is taken for
/// abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(300);

/// A `running` run with an owner, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRun {
    /// The run.
    pub run_id: String,
    /// Its owner, as text (see [`RunOwner::to_text`]).
    pub owner: String,
    /// When the owner last said it was alive (ms since the epoch); `None` for runs
    /// recorded before heartbeats existed.
    pub heartbeat_ms: Option<i64>,
}

/// The process that runs a run: `host`, `pid` and the process's start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When the process started, in the operating system's own units (on Linux,
    /// clock ticks since boot); 0 when unknown.
    pub started: u64,
}

impl RunOwner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: host_name(),
            pid,
            started: process_start(pid).unwrap_or(0),
        }
    }

    /// The owner as stored: `host pid started`.
    pub fn to_text(&self) -> String {
        format!("{} {} {}", self.host, self.pid, self.started)
    }

    /// An owner from its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.rsplitn(3, ' ');
        let started = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        Some(Self { host, pid, started })
    }

    /// Whether the owner is known to be gone: it ran on this host and no process
    /// with its pid and start time is alive. `false` when it lives or when that
    /// cannot be told (another host, a system without `/proc`).
    ///
    /// ```
    /// use riffle_pipeline::metadata::RunOwner;
    /// assert!(!RunOwner::current().is_gone());
    /// ```
    pub fn is_gone(&self) -> bool {
        if self.host != host_name() || !cfg!(target_os = "linux") {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(started) => self.started != 0 && started != self.started,
        }
    }
}

impl std::fmt::Display for RunOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The start time of process `pid` (Linux: field 22 of `/proc/PID/stat`), or `None`
/// when there is no such live process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ...: comm may hold spaces, so count fields after the ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After the state come ppid, pgrp, ... ; starttime is the 20th field after it.
    fields.nth(18)?.parse().ok()
}

/// Marks every `running` run whose owner is gone as failed, with an error that says
/// what happened; returns their ids. An owner is gone when it ran on this host and no
/// such process lives (see [`RunOwner::is_gone`]), or when it ran on another host
/// and its heartbeat is older than [`STALE_AFTER`]. The run listings call it before
/// they read, so a killed run does not stay `running`.
pub fn reap_abandoned(store: &dyn MetadataStore) -> Result<Vec<String>> {
    reap_stale(store, STALE_AFTER)
}

/// [`reap_abandoned`] with another limit for the heartbeats of other hosts.
pub fn reap_stale(store: &dyn MetadataStore, stale_after: Duration) -> Result<Vec<String>> {
    let now = crate::step::now_ms();
    let limit = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
    let mut reaped = Vec::new();
    for run in store.running_owners()? {
        let Some(owner) = RunOwner::parse(&run.owner) else {
            continue;
        };
        let why = if owner.is_gone() {
            format!("abandoned: {owner} ended without recording the run's end (killed or crashed)")
        } else if owner.host != host_name()
            && let Some(beat) = run.heartbeat_ms
            && now.saturating_sub(beat) > limit
        {
            format!(
                "abandoned: no heartbeat from {owner} for {} s (the process or its host \
                 stopped without recording the run's end)",
                now.saturating_sub(beat) / 1000
            )
        } else {
            continue;
        };
        store.finish_run(&run.run_id, RunStatus::Failed, now, Some(&why))?;
        reaped.push(run.run_id);
    }
    Ok(reaped)
}
