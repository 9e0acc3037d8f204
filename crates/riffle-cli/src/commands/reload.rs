//! `riffle flow run --reload`: the development loop. A thread watches the
//! running program's file; when a build replaces it (its modification time
//! changes and then holds still for a moment, so a half-written file is not
//! started), the flow is stopped the way a signal stops it (drained: what is in
//! hand is written and acknowledged), and the new program takes this process's
//! place with the same arguments.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Starts watching this program's file; sets `stop` (and the flag returned) once
/// it has changed. Watching ends when `stop` is set for another reason.
pub fn watch(stop: Arc<AtomicBool>) -> anyhow::Result<Arc<AtomicBool>> {
    let exe = std::env::current_exe().context("cannot find this program's file to watch")?;
    let first = stamp(&exe);
    let changed = Arc::new(AtomicBool::new(false));
    let flag = changed.clone();
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            let mut seen = first;
            let mut moved = false;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
                let now = stamp(&exe);
                if now == seen {
                    if moved && now.is_some() {
                        eprintln!("{} changed: draining, then restarting", exe.display());
                        flag.store(true, Ordering::SeqCst);
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    continue;
                }
                // Changed since the last look: wait until it holds still.
                moved = now != first;
                seen = now;
            }
        })
        .context("cannot start the reload watcher")?;
    Ok(changed)
}

/// The new program in this process's place, with the same arguments.
pub fn restart() -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find this program's file")?;
    let mut command = std::process::Command::new(&exe);
    command.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = command.exec();
        Err(err).with_context(|| format!("cannot start {}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
    }
}

/// The file's modification time and length, `None` while it cannot be read
/// (being replaced).
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
