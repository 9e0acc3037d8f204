//! Dead letters: what a source could not decode, set aside with the reason and
//! where it was, instead of stopping the run.
//!
//! A source that decodes what it reads (a Kafka record's value, an object's
//! lines, a Parquet row, a table row) stops the run at the first thing it cannot
//! decode, naming the step and the position, unless the user gave it a
//! [`DeadLetters`]: then each bad input becomes a [`DeadLetter`] (the step id,
//! the position's fields such as `topic`, `partition` and `offset` or `object`
//! and `line`, the `reason`, and the input itself) and the run goes on. Letters
//! go to one of two places:
//!
//! - **the step's dead-letter stream** ([`DeadLetters::stream`]): the letters are
//!   items of a second stream of the input step, [`Stream::dead_letters`], which
//!   the flow routes like any other: to a file, a Kafka topic, a table. A letter
//!   travels at an epoch no later than the position that passed it, so it is in
//!   every snapshot that position is in: under a recovery store a resumed run
//!   neither loses nor repeats letters an exactly-once sink wrote. A source whose
//!   letters stream no step reads stops at its first letter, saying so, rather
//!   than drop it.
//! - **a JSON-lines file** ([`DeadLetters::file`]): each letter is appended as
//!   one JSON object ([`DeadLetter::to_json`]). Nothing set aside is lost: a
//!   source calls [`DeadLetters::sync`] from its commit hook, so every letter is
//!   on disk before the position that passed it is acknowledged upstream.
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
//!
//! [`Stream::dead_letters`]: crate::Stream::dead_letters

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RiffleError};

/// One input a source could not decode: where, why, and the input itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The source step that read it.
    pub step_id: String,
    /// Where it was: the position's fields, in order, each value as JSON text
    /// (`("partition", "3")`, `("object", "\"in/a.csv\"")`).
    pub position: Vec<(String, String)>,
    /// Why it could not be decoded.
    pub reason: String,
    /// The input as read.
    pub input: Vec<u8>,
}

impl DeadLetter {
    /// A letter of step `step_id`: `input` at `position` failed for `reason`.
    pub fn new(
        step_id: &str,
        position: &[(&str, serde_json::Value)],
        reason: &str,
        input: &[u8],
    ) -> Self {
        Self {
            step_id: step_id.to_string(),
            position: position
                .iter()
                .map(|(name, value)| ((*name).to_string(), value.to_string()))
                .collect(),
            reason: reason.to_string(),
            input: input.to_vec(),
        }
    }

    /// The letter as one JSON object: `step_id`, the position's fields, `reason`,
    /// and the input as `text` when it is UTF-8, else as `hex`.
    ///
    /// ```
    /// use riffle::dead_letters::DeadLetter;
    /// let letter = DeadLetter::new("orders", &[("offset", 41.into())], "not JSON", b"{");
    /// assert_eq!(
    ///     letter.to_json(),
    ///     serde_json::json!({"step_id": "orders", "offset": 41, "reason": "not JSON", "text": "{"})
    /// );
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        let mut letter = serde_json::Map::new();
        letter.insert("step_id".into(), self.step_id.clone().into());
        for (name, value) in &self.position {
            let value = serde_json::from_str(value).unwrap_or_else(|_| value.clone().into());
            letter.insert(name.clone(), value);
        }
        letter.insert("reason".into(), self.reason.clone().into());
        match std::str::from_utf8(&self.input) {
            Ok(text) => letter.insert("text".into(), text.into()),
            Err(_) => {
                let mut hex = String::with_capacity(self.input.len() * 2);
                for b in &self.input {
                    let _ = write!(hex, "{b:02x}");
                }
                letter.insert("hex".into(), hex.into())
            }
        };
        serde_json::Value::Object(letter)
    }
}

thread_local! {
    /// Letters set aside for a dead-letter stream on this worker thread, and not
    /// yet sent by the source operator that runs the partition.
    static SET_ASIDE: RefCell<Vec<DeadLetter>> = const { RefCell::new(Vec::new()) };
}

/// The letters partitions set aside for a stream ([`DeadLetters::stream`]) on
/// this thread since the last call. The source operator sends them right after
/// each poll; a host that polls partitions outside a Dataflow (a Flow's consumer)
/// takes them the same way, after each `next_batch`, and must put them somewhere
/// before it commits the position that passed them.
pub fn take_set_aside() -> Vec<DeadLetter> {
    SET_ASIDE.with(|letters| std::mem::take(&mut *letters.borrow_mut()))
}

/// Where a source puts what it cannot decode; cheap to clone (clones share the
/// file), shared by every partition of a source. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct DeadLetters {
    to: Destination,
}

#[derive(Debug, Clone)]
enum Destination {
    Stream,
    File {
        path: PathBuf,
        file: Arc<Mutex<Option<File>>>,
    },
}

impl DeadLetters {
    /// Letters become items of the input step's dead-letter stream
    /// ([`Stream::dead_letters`](crate::Stream::dead_letters)).
    ///
    /// ```
    /// use riffle::dead_letters::{DeadLetter, DeadLetters};
    /// use riffle::sinks::TestingSink;
    /// use riffle::{Dataflow, sources::TestingSource};
    ///
    /// let flow = Dataflow::new("f");
    /// let lines = flow.input("lines", TestingSource::new(vec!["1".to_string()]))?;
    /// let bad = lines.dead_letters()?;
    /// bad.map("as_json", |l: DeadLetter| l.to_json().to_string())?
    ///     .output("bad_out", TestingSink::new())?;
    /// # Ok::<(), riffle::RiffleError>(())
    /// ```
    pub fn stream() -> Self {
        Self {
            to: Destination::Stream,
        }
    }

    /// Letters appended to the file at `path` (made on the first letter).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            to: Destination::File {
                path: path.into(),
                file: Arc::new(Mutex::new(None)),
            },
        }
    }

    /// The file's path, for letters that go to a file.
    pub fn path(&self) -> Option<&Path> {
        match &self.to {
            Destination::File { path, .. } => Some(path),
            Destination::Stream => None,
        }
    }

    /// Sets aside one letter: step `step_id` could not decode `input` at
    /// `position` (its fields, in order) because of `reason`. Called from a
    /// partition's `next_batch`, on the worker thread that polls it.
    pub fn write(
        &self,
        step_id: &str,
        position: &[(&str, serde_json::Value)],
        reason: &str,
        input: &[u8],
    ) -> Result<()> {
        let letter = DeadLetter::new(step_id, position, reason, input);
        let (path, file) = match &self.to {
            Destination::Stream => {
                SET_ASIDE.with(|letters| letters.borrow_mut().push(letter));
                return Ok(());
            }
            Destination::File { path, file } => (path, file),
        };
        let io = |action, error| RiffleError::Io {
            step_id: step_id.to_string(),
            action,
            path: path.clone(),
            error,
        };
        let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io("open the dead-letter file", e))?;
            *guard = Some(opened);
        }
        let out = guard.as_mut().expect("opened above");
        writeln!(out, "{}", letter.to_json()).map_err(|e| io("write the dead-letter file", e))
    }

    /// Makes every letter written to a file so far durable (fsync); nothing when
    /// none was, or when letters go to the stream (they travel with the epochs).
    pub fn sync(&self, step_id: &str) -> Result<()> {
        let Destination::File { path, file } = &self.to else {
            return Ok(());
        };
        let guard = file.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(f) => f.sync_data().map_err(|error| RiffleError::Io {
                step_id: step_id.to_string(),
                action: "sync the dead-letter file",
                path: path.clone(),
                error,
            }),
            None => Ok(()),
        }
    }
}
