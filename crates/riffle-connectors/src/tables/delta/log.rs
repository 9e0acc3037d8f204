//! The Delta transaction log, read and written over object_store: a table is a
//! folder of Parquet files and `_delta_log/NNNNNNNNNNNNNNNNNNNN.json` commits, each
//! a file of actions (one JSON object a line). A commit is made by creating the
//! next version's file if it does not exist (`PutMode::Create`: a rename without
//! replace on a local folder, `If-None-Match: *` on S3), so two writers never
//! both make the same version; the loser reads the winner's commit and tries the
//! next version.
//!
//! Only what an appending writer needs is read: the protocol, the latest
//! `metaData` (the schema) and the `txn` actions (the last version each
//! application committed), from version 0 on. Checkpoints are not read: a table
//! whose early commits were removed after a checkpoint is refused.

use std::collections::HashMap;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::{Value, json};

use super::schema::{self, Column};
use crate::ConnectorError;
use crate::objects::{Folder, ObjectStoreSettings};

/// The folder of the log inside the table.
pub const LOG: &str = "_delta_log";

/// A data file to add to the table: its path inside the table's folder, size
/// and rows (the file every warehouse stages).
pub use crate::tables::warehouse::DataFile;

/// What this process knows of a table's log, up to `version`.
pub(crate) struct Log {
    settings: ObjectStoreSettings,
    folder: Folder,
    /// The last version read, `None` before the table exists.
    version: Option<u64>,
    /// The last version each application committed (`txn` actions).
    txns: HashMap<String, u64>,
    /// The table's columns (the latest `metaData`).
    columns: Option<Vec<Column>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Log {
    /// Reads the log of the table at `folder` (no table yet is no error).
    pub(crate) async fn open(
        settings: ObjectStoreSettings,
        folder: Folder,
    ) -> Result<Self, ConnectorError> {
        let mut log = Self {
            settings,
            folder,
            version: None,
            txns: HashMap::new(),
            columns: None,
        };
        log.refresh().await?;
        Ok(log)
    }

    fn error(&self, what: impl Into<String>) -> ConnectorError {
        ConnectorError::new("delta", self.settings.url.clone(), what)
    }

    fn path(&self, version: u64) -> Path {
        self.folder.child(&format!("{LOG}/{version:020}.json"))
    }

    /// The last version read (`None`: no table).
    pub(crate) fn version(&self) -> Option<u64> {
        self.version
    }

    /// The last version application `app` committed.
    pub(crate) fn txn(&self, app: &str) -> Option<u64> {
        self.txns.get(app).copied()
    }

    /// Reads the commits made since the last one read.
    pub(crate) async fn refresh(&mut self) -> Result<(), ConnectorError> {
        loop {
            let next = self.version.map_or(0, |v| v + 1);
            let got = self.folder.store.get(&self.path(next)).await;
            let bytes = match got {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            match bytes {
                Ok(bytes) => self.apply(next, &bytes)?,
                Err(object_store::Error::NotFound { .. }) => {
                    if next == 0 && self.has_checkpoint().await? {
                        return Err(self.error(
                            "the table's log starts at a checkpoint (version 0 was removed): \
                             this writer reads the log from version 0 only",
                        ));
                    }
                    return Ok(());
                }
                Err(e) => {
                    return Err(self
                        .error(format!("cannot read log version {next}"))
                        .caused_by(e));
                }
            }
        }
    }

    async fn has_checkpoint(&self) -> Result<bool, ConnectorError> {
        match self
            .folder
            .store
            .head(&self.folder.child(&format!("{LOG}/_last_checkpoint")))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("cannot read the log's folder").caused_by(e)),
        }
    }

    /// Takes in commit `version`'s actions.
    fn apply(&mut self, version: u64, bytes: &[u8]) -> Result<(), ConnectorError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| self.error(format!("log version {version} is not UTF-8")))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                self.error(format!("log version {version} line {}: not JSON", i + 1))
                    .caused_by(e)
            })?;
            if let Some(txn) = action.get("txn") {
                if let (Some(app), Some(v)) = (txn["appId"].as_str(), txn["version"].as_u64()) {
                    let known = self.txns.entry(app.to_string()).or_insert(v);
                    *known = (*known).max(v);
                }
            } else if let Some(meta) = action.get("metaData") {
                let text = meta["schemaString"].as_str().unwrap_or_default();
                let columns = schema::parse_schema_string(text).map_err(|why| {
                    self.error(format!("log version {version}: the table's schema: {why}"))
                })?;
                self.columns = Some(columns);
            } else if let Some(protocol) = action.get("protocol") {
                let reader = protocol["minReaderVersion"].as_u64().unwrap_or(1);
                let writer = protocol["minWriterVersion"].as_u64().unwrap_or(1);
                if reader > 1 || writer > 2 {
                    return Err(self.error(format!(
                        "the table needs readers of protocol {reader} and writers of {writer} \
                         (log version {version}): this writer appends to protocol 1/2 tables only"
                    )));
                }
            }
        }
        self.version = Some(version);
        Ok(())
    }

    /// Makes commit `version` of `actions` if no one made it first (`Ok(false)`).
    async fn put_commit(
        &mut self,
        version: u64,
        actions: &[Value],
    ) -> Result<bool, ConnectorError> {
        let mut text = String::new();
        for action in actions {
            text.push_str(&action.to_string());
            text.push('\n');
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(Bytes::from(text.clone().into_bytes()));
        match self
            .folder
            .store
            .put_opts(&self.path(version), payload, options)
            .await
        {
            Ok(_) => {
                self.apply(version, text.as_bytes())?;
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self
                .error(format!("cannot write log version {version}"))
                .caused_by(e)),
        }
    }

    /// Makes the table (version 0: protocol and schema) if there is none, or
    /// checks that items of `columns` can be appended to it.
    pub(crate) async fn create_or_check(
        &mut self,
        columns: &[Column],
    ) -> Result<(), ConnectorError> {
        if self.version.is_none() {
            let id = table_id();
            let actions = [
                commit_info("CREATE TABLE"),
                json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
                json!({"metaData": {
                    "id": id,
                    "format": {"provider": "parquet", "options": {}},
                    "schemaString": schema::schema_string(columns),
                    "partitionColumns": [],
                    "configuration": {},
                    "createdTime": now_ms(),
                }}),
            ];
            if !self.put_commit(0, &actions).await? {
                // Another writer made it first: read what it made.
                self.refresh().await?;
            }
        }
        let Some(table) = &self.columns else {
            return Err(self.error("the table's log has no metaData (schema)"));
        };
        match schema::mismatch(table, columns) {
            Some(why) => Err(self.error(format!("cannot append to the table: {why}"))),
            None => Ok(()),
        }
    }

    /// Adds `file` to the table in one commit that also records `version` as the
    /// last one of application `app`; nothing when `app` already committed
    /// `version` (a replayed epoch): `Ok(false)`.
    pub(crate) async fn append(
        &mut self,
        app: &str,
        version: u64,
        file: &DataFile,
    ) -> Result<bool, ConnectorError> {
        loop {
            self.refresh().await?;
            if self.txn(app).is_some_and(|v| v >= version) {
                return Ok(false);
            }
            let next = self.version.map_or(0, |v| v + 1);
            let now = now_ms();
            let actions = [
                commit_info("WRITE"),
                json!({"add": {
                    "path": file.path,
                    "partitionValues": {},
                    "size": file.size,
                    "modificationTime": now,
                    "dataChange": true,
                    "stats": json!({"numRecords": file.rows}).to_string(),
                }}),
                json!({"txn": {"appId": app, "version": version, "lastUpdated": now}}),
            ];
            if self.put_commit(next, &actions).await? {
                return Ok(true);
            }
        }
    }

    /// The data files the table holds now (`add`s not `remove`d), read from the
    /// log: for tests and tools that read a table back.
    pub(crate) async fn files(&self) -> Result<Vec<String>, ConnectorError> {
        let mut files: Vec<String> = Vec::new();
        let Some(last) = self.version else {
            return Ok(files);
        };
        for v in 0..=last {
            let bytes = self
                .folder
                .store
                .get(&self.path(v))
                .await
                .map_err(|e| {
                    self.error(format!("cannot read log version {v}"))
                        .caused_by(e)
                })?
                .bytes()
                .await
                .map_err(|e| {
                    self.error(format!("cannot read log version {v}"))
                        .caused_by(e)
                })?;
            for line in String::from_utf8_lossy(&bytes).lines() {
                let Ok(action) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if let Some(path) = action["add"]["path"].as_str() {
                    files.push(path.to_string());
                } else if let Some(path) = action["remove"]["path"].as_str() {
                    files.retain(|f| f != path);
                }
            }
        }
        Ok(files)
    }
}

fn commit_info(operation: &str) -> Value {
    json!({"commitInfo": {
        "timestamp": now_ms(),
        "operation": operation,
        "operationParameters": {"mode": "Append"},
        "engineInfo": concat!("riffle/", env!("CARGO_PKG_VERSION")),
    }})
}

/// A new table's id, in the UUID form the protocol asks for (random enough: time,
/// process and a counter through a stable hash).
fn table_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = riffle::exchange::stable_hash(&(nanos, std::process::id()));
    let b = riffle::exchange::stable_hash(&(a, nanos));
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
