//! What every source reading the objects of a folder shares, whatever the
//! objects hold ([`ObjectSource`](super::ObjectSource) for lines,
//! `tables::ParquetSource` for Parquet rows): each readable object is a
//! partition, found by listing the folder (again every `discover` while
//! following), read by a task of its own through [`reader`](crate::reader), its
//! undecodable items sent to the dead letters or stopping the run. Listing and
//! reading ride out a store that went away for the source's `patience` (see
//! [`outage`](super::outage)).
//!
//! A source holds an [`ObjectParts`] and answers `list_parts`, `discover_every`
//! and `build_part` through it; its partitions hold an [`ObjectPart`], which
//! names the object in errors and dead letters and syncs those letters at each
//! commit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use riffle::dead_letters::DeadLetters;

use super::outage::PATIENCE;
use super::settings::{Folder, ObjectStoreSettings};
use super::source::list;
use crate::ConnectorError;
use crate::reader::{Batches, Reader};
use crate::runtime;

/// The batches a reading task hands its partition at most before it waits.
const ROOM: usize = 4;

/// A source's folder and how it follows it.
#[derive(Clone)]
pub(crate) struct ObjectParts {
    pub(crate) settings: ObjectStoreSettings,
    /// Whether to look for new objects for ever.
    pub(crate) tail: bool,
    /// How often a following source lists the folder.
    pub(crate) discover: Duration,
    pub(crate) dead_letters: Option<DeadLetters>,
    /// How long listing and reading keep trying while the store does not answer.
    pub(crate) patience: Duration,
}

/// What a reading task reads from: the folder's settings (for errors), the
/// opened folder, and how long it keeps trying while the store does not answer.
pub(crate) struct StoreAt {
    pub(crate) settings: ObjectStoreSettings,
    pub(crate) folder: Folder,
    pub(crate) patience: Duration,
}

impl ObjectParts {
    /// The folder of `settings`, followed, listed every 10 s, no dead letters,
    /// an outage ridden out for [`PATIENCE`].
    pub(crate) fn new(settings: ObjectStoreSettings) -> Self {
        Self {
            settings,
            tail: true,
            discover: Duration::from_secs(10),
            dead_letters: None,
            patience: PATIENCE,
        }
    }

    /// The objects to read, sorted: those `keep` takes. None is an error saying
    /// `nothing` unless the source follows the folder.
    pub(crate) fn list_parts(
        &self,
        step_id: &str,
        keep: impl Fn(&str) -> bool,
        nothing: &str,
    ) -> riffle::Result<Vec<String>> {
        let folder = self.settings.open(false).map_err(|e| e.for_step(step_id))?;
        let mut names = runtime::handle()
            .block_on(list(&self.settings, &folder, self.patience))
            .map_err(|e| e.for_step(step_id))?;
        names.retain(|n| keep(n));
        if names.is_empty() && !self.tail {
            return Err(self.settings.error(nothing).for_step(step_id));
        }
        Ok(names)
    }

    /// How often to list the folder again: only while following.
    pub(crate) fn discover_every(&self) -> Option<Duration> {
        self.tail.then_some(self.discover)
    }

    /// Starts reading `object` with `read` (handed where to read, the object's
    /// name and where to put batches), and the partition's part of the work.
    pub(crate) fn read<B, F, R>(
        &self,
        step_id: &str,
        object: &str,
        read: R,
    ) -> riffle::Result<(ObjectPart, Reader<B>)>
    where
        B: Send + 'static,
        R: FnOnce(StoreAt, String, Batches<B>) -> F,
        F: Future<Output = Result<(), ConnectorError>> + Send + 'static,
    {
        let folder = self.settings.open(false).map_err(|e| e.for_step(step_id))?;
        let stopped = self
            .settings
            .error(format!("the reader of object {object:?} stopped"));
        let at = StoreAt {
            settings: self.settings.clone(),
            folder,
            patience: self.patience,
        };
        let name = object.to_string();
        let reader = Reader::start(ROOM, stopped, |batches| read(at, name, batches));
        let part = ObjectPart {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            object: Arc::from(object),
            dead_letters: self.dead_letters.clone(),
        };
        Ok((part, reader))
    }
}

/// A partition's object, as its errors and dead letters name it.
pub(crate) struct ObjectPart {
    pub(crate) step_id: String,
    pub(crate) settings: ObjectStoreSettings,
    pub(crate) object: Arc<str>,
    dead_letters: Option<DeadLetters>,
}

impl ObjectPart {
    /// The item of the object at `position` (`[("line", 12.into())]`, ...) did
    /// not decode, for the reason `why`: to the dead letters with `input()` (and
    /// the object), or, without them, the error naming the object and the
    /// position (`object "a.txt" line 12: ...`).
    pub(crate) fn undecodable(
        &self,
        position: &[(&str, serde_json::Value)],
        why: &str,
        input: impl FnOnce() -> Vec<u8>,
    ) -> riffle::Result<()> {
        match &self.dead_letters {
            Some(letters) => {
                let mut named = vec![("object", (*self.object).into())];
                named.extend_from_slice(position);
                letters.write(&self.step_id, &named, why, &input())
            }
            None => {
                let at: Vec<String> = position
                    .iter()
                    .map(|(name, value)| format!("{} {value}", name.replace('_', " ")))
                    .collect();
                Err(self
                    .settings
                    .error(format!("object {:?} {}: {why}", self.object, at.join(" ")))
                    .for_step(&self.step_id))
            }
        }
    }

    /// At a commit: the letters of the items the position passed are on disk
    /// before it counts.
    pub(crate) fn commit(&self) -> riffle::Result<()> {
        match &self.dead_letters {
            Some(letters) => letters.sync(&self.step_id),
            None => Ok(()),
        }
    }
}
