//! `plan`, `apply` and `destroy`: making a Flow's [primitives](crate::primitives)
//! exist, or go, and remembering which ones the flow made.
//!
//! The **state file** (JSON; `.riffle/flows/NAME[-ENV].json` from the command
//! line) lists every primitive an apply found or made: its kind, name, server,
//! spec, and whether the flow **created** it. [`plan`] compares the declared
//! primitives with the state and with what exists now, and says for each:
//!
//! - `create`: declared, does not exist;
//! - `keep`: declared, exists, made by this flow (or known from an earlier apply);
//! - `adopt`: declared, exists, not made by this flow: used, never deleted by it;
//! - `orphan`: in the state, no longer declared: left in place and said, since
//!   the flow no longer knows how to reach it (destroy it before dropping it).
//!
//! [`apply`] does the plan (creating what is missing) and writes the state after
//! every change, so an apply that fails halfway leaves a state that knows what it
//! made; applying twice changes nothing the second time. [`destroy`] deletes the
//! declared primitives the flow created (never adopted ones), then the state
//! file; destroying twice is harmless. Plans and changes are checked against the
//! real servers in the tests.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FlowError, Result};
use crate::primitives::{Primitive, key};

/// What a plan does with one primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Declared, missing: make it.
    Create,
    /// Declared and there.
    Keep,
    /// Declared, there, not made by this flow: use it, never delete it.
    Adopt,
    /// In the state, no longer declared: left in place.
    Orphan,
    /// Deleted by a destroy.
    Delete,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What happens.
    pub change: Change,
    /// The primitive's kind, name and server.
    pub primitive: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.change {
            Change::Create => "+ create",
            Change::Keep => "= keep  ",
            Change::Adopt => "~ adopt ",
            Change::Orphan => "? orphan",
            Change::Delete => "- delete",
        };
        write!(f, "{sign} {}", self.primitive)
    }
}

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// What the flow found or made, by key.
    pub primitives: Vec<Known>,
}

/// One primitive the state knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// Kind, name and server.
    pub key: String,
    /// Its spec when it was applied.
    pub spec: serde_json::Value,
    /// Whether this flow made it (and so may delete it).
    pub created: bool,
}

impl State {
    /// Reads the state at `path`; an empty one when there is no file.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| state_error(path, format!("cannot parse it: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(state_error(path, format!("cannot read it: {e}"))),
        }
    }

    /// Writes the state to `path` whole (a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| state_error(path, format!("cannot make its folder: {e}")))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a state is JSON");
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| state_error(path, format!("cannot write it: {e}")))
    }

    fn get(&self, key: &str) -> Option<&Known> {
        self.primitives.iter().find(|k| k.key == key)
    }

    fn put(&mut self, known: Known) {
        match self.primitives.iter_mut().find(|k| k.key == known.key) {
            Some(slot) => *slot = known,
            None => self.primitives.push(known),
        }
    }
}

fn state_error(path: &Path, what: String) -> FlowError {
    FlowError::Definition {
        flow: path.display().to_string(),
        what: format!("state file: {what}"),
    }
}

fn server_error(p: &dyn Primitive, doing: &str, e: String) -> FlowError {
    FlowError::Failed {
        processor: key(p),
        what: format!("cannot {doing} it: {e}"),
    }
}

/// What [`apply`] would do, asking each server what exists.
pub fn plan(primitives: &[Box<dyn Primitive>], state: &State) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for p in primitives {
        let key = key(p.as_ref());
        let exists = p
            .exists()
            .map_err(|e| server_error(p.as_ref(), "look for", e))?;
        let change = match (exists, state.get(&key)) {
            (false, _) => Change::Create,
            (true, Some(_)) => Change::Keep,
            (true, None) => Change::Adopt,
        };
        steps.push(Step {
            change,
            primitive: key,
        });
    }
    steps.extend(orphans(primitives, state));
    Ok(steps)
}

/// Makes every declared primitive that is missing, recording each in the state
/// at `path` as it goes; returns what it did.
pub fn apply(primitives: &[Box<dyn Primitive>], path: &Path) -> Result<Vec<Step>> {
    let mut state = State::load(path)?;
    let steps = plan(primitives, &state)?;
    for (p, step) in primitives.iter().zip(&steps) {
        let created = match step.change {
            Change::Create => {
                p.create()
                    .map_err(|e| server_error(p.as_ref(), "create", e))?;
                true
            }
            // Known from an earlier apply: keep what it said of who made it.
            Change::Keep => state.get(&step.primitive).is_some_and(|k| k.created),
            Change::Adopt => false,
            Change::Orphan | Change::Delete => continue,
        };
        state.put(Known {
            key: step.primitive.clone(),
            spec: p.spec(),
            created,
        });
        state.save(path)?;
    }
    if !path.exists() {
        state.save(path)?;
    }
    Ok(steps)
}

/// Deletes the declared primitives this flow created, then the state at `path`;
/// returns what it deleted (and the orphans it could not).
pub fn destroy(primitives: &[Box<dyn Primitive>], path: &Path) -> Result<Vec<Step>> {
    let mut state = State::load(path)?;
    let mut steps = Vec::new();
    for p in primitives {
        let key = key(p.as_ref());
        let Some(known) = state.get(&key).cloned() else {
            continue;
        };
        if known.created {
            p.delete()
                .map_err(|e| server_error(p.as_ref(), "delete", e))?;
            steps.push(Step {
                change: Change::Delete,
                primitive: key.clone(),
            });
        }
        state.primitives.retain(|k| k.key != key);
        state.save(path)?;
    }
    let left = orphans(primitives, &state);
    if left.is_empty() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(state_error(path, format!("cannot remove it: {e}"))),
        }
    }
    steps.extend(left);
    Ok(steps)
}

fn orphans(primitives: &[Box<dyn Primitive>], state: &State) -> Vec<Step> {
    state
        .primitives
        .iter()
        .filter(|k| !primitives.iter().any(|p| key(p.as_ref()) == k.key))
        .map(|k| Step {
            change: Change::Orphan,
            primitive: k.key.clone(),
        })
        .collect()
}
