//! Dead letters: what a source could not decode, set aside with the reason and
//! where it was, instead of stopping the run.
//!
//! A source that decodes what it reads (a file's lines, a Kafka record's value, an
//! object's lines) stops the run at the first thing it cannot decode, naming the
//! step and the position, unless the user gave it a [`DeadLetters`] file: then
//! each bad input is appended there as one JSON object and the run goes on. The
//! object holds the step id, the position's fields (`file` and `line`; `topic`,
//! `partition` and `offset`; `object` and `line`), the `reason`, and the input
//! itself: `text` when it is UTF-8, else `hex`.
//!
//! Nothing set aside is lost: a source calls [`DeadLetters::sync`] from its commit
//! hook, so every letter is on disk before the position that passed it is
//! acknowledged upstream.
//!
//! ```
//! use riffle::dead_letters::DeadLetters;
//! let dir = tempfile::tempdir().unwrap();
//! let letters = DeadLetters::file(dir.path().join("bad.jsonl"));
//! letters.write("orders", &[("line", 7.into())], "not a number", b"seven").unwrap();
//! letters.sync("orders").unwrap();
//! let text = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap();
//! let letter: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
//! assert_eq!(letter["line"], 7);
//! assert_eq!(letter["reason"], "not a number");
//! assert_eq!(letter["text"], "seven");
//! ```

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Result, RiffleError};

/// A JSON-lines file that bad inputs are appended to; cheap to clone (clones
/// share the file), shared by every partition of a source.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl DeadLetters {
    /// Letters appended to the file at `path` (made on the first letter).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, step_id: &str, action: &'static str, error: std::io::Error) -> RiffleError {
        RiffleError::Io {
            step_id: step_id.to_string(),
            action,
            path: self.path.clone(),
            error,
        }
    }

    /// Appends one letter: step `step_id` could not decode `input` at `position`
    /// (its fields, in order) because of `reason`.
    pub fn write(
        &self,
        step_id: &str,
        position: &[(&str, serde_json::Value)],
        reason: &str,
        input: &[u8],
    ) -> Result<()> {
        let mut letter = serde_json::Map::new();
        letter.insert("step_id".into(), step_id.into());
        for (name, value) in position {
            letter.insert((*name).to_string(), value.clone());
        }
        letter.insert("reason".into(), reason.into());
        match std::str::from_utf8(input) {
            Ok(text) => letter.insert("text".into(), text.into()),
            Err(_) => {
                let mut hex = String::with_capacity(input.len() * 2);
                for b in input {
                    let _ = write!(hex, "{b:02x}");
                }
                letter.insert("hex".into(), hex.into())
            }
        };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.io(step_id, "open the dead-letter file", e))?;
            *guard = Some(opened);
        }
        let out = guard.as_mut().expect("opened above");
        writeln!(out, "{}", serde_json::Value::Object(letter))
            .map_err(|e| self.io(step_id, "write the dead-letter file", e))
    }

    /// Makes every letter written so far durable (fsync); nothing when none was.
    pub fn sync(&self, step_id: &str) -> Result<()> {
        let guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(file) => file
                .sync_data()
                .map_err(|e| self.io(step_id, "sync the dead-letter file", e)),
            None => Ok(()),
        }
    }
}
