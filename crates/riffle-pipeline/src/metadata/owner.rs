//! Which process runs a run, and finding the runs whose process is gone.
//!
//! A run is recorded `running` when it starts and gets its end recorded when it
//! ends; a process killed in between (SIGKILL, a crash, a machine that lost power)
//! never records the end. So each run also records its owner: the host, the process
//! id and the process's start time (so a recycled pid is not mistaken for the run's
//! process). [`reap_abandoned`] marks a `running` run whose owner ran on this host
//! and is no longer alive as failed, saying so. A run owned by another host is left
//! as it is: from here there is no telling whether that process lives.

use super::{MetadataStore, RunStatus};
use crate::error::Result;

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

/// Marks every `running` run whose owner is gone (see [`RunOwner::is_gone`]) as
/// failed, with an error that says what happened; returns their ids. The run
/// listings call it before they read, so a killed run does not stay `running`.
pub fn reap_abandoned(store: &dyn MetadataStore) -> Result<Vec<String>> {
    let mut reaped = Vec::new();
    for (run_id, owner) in store.running_owners()? {
        let Some(owner) = RunOwner::parse(&owner) else {
            continue;
        };
        if owner.is_gone() {
            store.finish_run(
                &run_id,
                RunStatus::Failed,
                crate::step::now_ms(),
                Some(&format!(
                    "abandoned: {owner} ended without recording the run's end (killed or crashed)"
                )),
            )?;
            reaped.push(run_id);
        }
    }
    Ok(reaped)
}
