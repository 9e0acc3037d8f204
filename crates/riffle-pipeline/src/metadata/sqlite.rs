//! The SQLite metadata store: one file, WAL journal, safe to share between the
//! processes and threads of concurrent runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::*;
use crate::error::Error;

/// The schema, one migration per entry; the store is at version `MIGRATIONS.len()`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE pipelines (
    id           TEXT PRIMARY KEY,
    about        TEXT NOT NULL,
    schedule     TEXT,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id),
    status      TEXT NOT NULL,
    runtime     TEXT NOT NULL,
    environment TEXT NOT NULL,
    config      TEXT NOT NULL,
    only_step   TEXT,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    error       TEXT
);
CREATE INDEX runs_by_pipeline ON runs(pipeline_id, started_ms DESC);
CREATE INDEX runs_by_start ON runs(started_ms DESC);
CREATE TABLE step_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(id),
    step_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    cache_key   TEXT,
    cache_hit   INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER,
    error       TEXT,
    output_hash TEXT,
    UNIQUE (run_id, step_id)
);
CREATE TABLE artifacts (
    hash       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    type_name  TEXT NOT NULL,
    uri        TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE lineage (
    step_run_id   INTEGER NOT NULL REFERENCES step_runs(id),
    artifact_hash TEXT NOT NULL,
    direction     TEXT NOT NULL,
    name          TEXT NOT NULL,
    PRIMARY KEY (step_run_id, direction, name)
) WITHOUT ROWID;
CREATE INDEX lineage_by_artifact ON lineage(artifact_hash);
CREATE TABLE cache_entries (
    cache_key     TEXT PRIMARY KEY,
    pipeline_id   TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    artifact_hash TEXT NOT NULL REFERENCES artifacts(hash),
    created_ms    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX cache_by_pipeline ON cache_entries(pipeline_id, created_ms DESC);
CREATE TABLE params (
    step_run_id INTEGER NOT NULL REFERENCES step_runs(id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (step_run_id, name)
) WITHOUT ROWID;
CREATE TABLE metrics (
    step_run_id INTEGER NOT NULL REFERENCES step_runs(id),
    name        TEXT NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (step_run_id, name)
) WITHOUT ROWID;
CREATE TABLE logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    step_run_id INTEGER NOT NULL REFERENCES step_runs(id),
    at_ms       INTEGER NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX logs_by_step_run ON logs(step_run_id, id);
"#,
    // 2: the dashboard lists artifacts newest first.
    "CREATE INDEX artifacts_by_created ON artifacts(created_ms DESC);",
    // 3: who runs a run, so a run whose process died can be found.
    "CREATE TABLE run_owners (run_id TEXT PRIMARY KEY REFERENCES runs(id), owner TEXT NOT NULL);",
    // 4: the owner's heartbeat, so a run of another host whose process died is found.
    "ALTER TABLE run_owners ADD COLUMN heartbeat_ms INTEGER;",
    // 5: runs of Flows and their processors sampled over time (the Flows page).
    r#"
CREATE TABLE flow_runs (
    id             TEXT PRIMARY KEY,
    flow           TEXT NOT NULL,
    started_ms     INTEGER NOT NULL,
    ended_ms       INTEGER,
    last_sample_ms INTEGER,
    owner          TEXT NOT NULL,
    addr           TEXT NOT NULL,
    error          TEXT
);
CREATE INDEX flow_runs_by_start ON flow_runs(started_ms DESC);
CREATE TABLE flow_samples (
    run_id         TEXT NOT NULL REFERENCES flow_runs(id),
    at_ms          INTEGER NOT NULL,
    processor      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    replicas       INTEGER NOT NULL,
    backlog        INTEGER,
    items_in       INTEGER NOT NULL,
    items_out      INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    dead_letters   INTEGER NOT NULL,
    in_flight      INTEGER NOT NULL,
    latency_p50_ms REAL,
    latency_p99_ms REAL,
    PRIMARY KEY (run_id, at_ms, processor)
);
"#,
];

/// How long opening waits for another process that is switching a new store to WAL.
const PRAGMA_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Sets the connection's pragmas. Switching a new file to WAL takes a lock that SQLite
/// does not wait for (the busy timeout does not apply), so when several runs open one
/// new store at once, all but one are told "database is locked": those retry until
/// the switch is done or [`PRAGMA_PATIENCE`] runs out.
fn set_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + PRAGMA_PATIENCE;
    loop {
        match conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        ) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The metadata store in an SQLite file; see the [module docs](super).
///
/// ```
/// use riffle_pipeline::metadata::{MetadataStore, SqliteStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(&dir.path().join("metadata.db"))?;
/// assert!(store.runs(None, 10)?.is_empty());
/// # Ok::<(), riffle_pipeline::Error>(())
/// ```
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Held>,
}

/// The connection and whether writes are being held in an open transaction.
struct Held {
    conn: Connection,
    holders: u32,
    in_tx: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(dir, "creating the metadata folder", e))?;
        }
        let fail = |what: &str| {
            let path = path.display().to_string();
            let what = what.to_string();
            move |source| Error::Sqlite { path, what, source }
        };
        let mut conn = Connection::open(path).map_err(fail("opening"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(fail("setting the busy timeout"))?;
        set_pragmas(&conn).map_err(fail("setting pragmas"))?;
        migrate(&mut conn, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(Held {
                conn,
                holders: 0,
                in_tx: false,
            }),
        })
    }

    fn err(&self, what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        let what = what.to_string();
        move |source| Error::Sqlite {
            path: self.path.display().to_string(),
            what,
            source,
        }
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut held.conn).map_err(self.err(what))
    }

    /// Runs the writes of `f` in one transaction: the held one when writes are held
    /// (see [`MetadataStore::hold_writes`]), else a transaction of their own.
    fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let held = &mut *held;
        let result = if held.holders > 0 {
            if !held.in_tx {
                held.conn
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(self.err("starting a transaction"))?;
                held.in_tx = true;
            }
            f(&held.conn)
        } else {
            held.conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .and_then(|tx| {
                    let value = f(&tx)?;
                    tx.commit()?;
                    Ok(value)
                })
        };
        result.map_err(self.err(what))
    }

    fn commit_held(&self, held: &mut Held) -> Result<()> {
        if held.in_tx {
            held.in_tx = false;
            held.conn
                .execute_batch("COMMIT")
                .map_err(self.err("committing"))?;
        }
        Ok(())
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let fail = |what: &'static str| {
        move |source| Error::Sqlite {
            path: path.display().to_string(),
            what: what.to_string(),
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail("starting the migration"))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);")
        .map_err(fail("creating schema_migrations"))?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(fail("reading the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(Error::SchemaTooNew {
            location: path.display().to_string(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .map_err(fail("applying a migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
            params![i as i64 + 1, crate::step::now_ms()],
        )
        .map_err(fail("recording a migration"))?;
    }
    tx.commit().map_err(fail("committing the migration"))
}

const RUN_COLUMNS: &str = "id, pipeline_id, status, runtime, environment, config, only_step, started_ms, finished_ms, error";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        pipeline_id: r.get(1)?,
        status: RunStatus::parse(&r.get::<_, String>(2)?).unwrap_or(RunStatus::Failed),
        runtime: r.get(3)?,
        environment: r.get(4)?,
        config: r.get(5)?,
        only_step: r.get(6)?,
        started_ms: r.get(7)?,
        finished_ms: r.get(8)?,
        error: r.get(9)?,
    })
}

const ARTIFACT_COLUMNS: &str = "a.hash, a.size, a.type_name, a.uri, a.created_ms";

fn artifact_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        hash: r.get(at)?,
        size: r.get::<_, i64>(at + 1)? as u64,
        type_name: r.get(at + 2)?,
        uri: r.get(at + 3)?,
        created_ms: r.get(at + 4)?,
    })
}

const EDGE_QUERY: &str =
    "SELECT l.step_run_id, s.run_id, r.pipeline_id, s.step_id, l.artifact_hash, l.direction, l.name
     FROM lineage l JOIN step_runs s ON s.id = l.step_run_id JOIN runs r ON r.id = s.run_id";

fn edge_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LineageEdge> {
    Ok(LineageEdge {
        step_run_id: r.get(0)?,
        run_id: r.get(1)?,
        pipeline_id: r.get(2)?,
        step_id: r.get(3)?,
        artifact_hash: r.get(4)?,
        direction: Direction::parse(&r.get::<_, String>(5)?).unwrap_or(Direction::Output),
        name: r.get(6)?,
    })
}

const FLOW_RUN_COLUMNS: &str = "id, flow, started_ms, ended_ms, last_sample_ms, owner, addr, error";

fn flow_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowRunRecord> {
    Ok(FlowRunRecord {
        id: r.get(0)?,
        flow: r.get(1)?,
        started_ms: r.get(2)?,
        ended_ms: r.get(3)?,
        last_sample_ms: r.get(4)?,
        owner: r.get(5)?,
        addr: r.get(6)?,
        error: r.get(7)?,
    })
}

const FLOW_SAMPLE_COLUMNS: &str = "run_id, at_ms, processor, kind, replicas, backlog, items_in, items_out, errors, dead_letters, in_flight, latency_p50_ms, latency_p99_ms";

fn flow_sample_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowSampleRecord> {
    let count = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(FlowSampleRecord {
        run_id: r.get(0)?,
        at_ms: r.get(1)?,
        processor: r.get(2)?,
        kind: r.get(3)?,
        replicas: count(4)?,
        backlog: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        items_in: count(6)?,
        items_out: count(7)?,
        errors: count(8)?,
        dead_letters: count(9)?,
        in_flight: r.get(10)?,
        latency_p50_ms: r.get(11)?,
        latency_p99_ms: r.get(12)?,
    })
}

/// A count as stored (SQL integers are signed).
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A prefix is only hex digits and dashes, so it can go into a LIKE pattern as is.
fn check_prefix(kind: &'static str, prefix: &str) -> Result<()> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::NotFound {
            kind,
            id: prefix.to_string(),
            why: "is not a valid id (hex digits and '-')",
        });
    }
    Ok(())
}

fn one_of<T>(kind: &'static str, id: &str, mut found: Vec<T>) -> Result<T> {
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::NotFound {
            kind,
            id: id.to_string(),
            why: "was not found",
        }),
        _ => Err(Error::NotFound {
            kind,
            id: id.to_string(),
            why: "is ambiguous: give more characters",
        }),
    }
}

impl MetadataStore for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn hold_writes(&self) {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        held.holders += 1;
    }

    fn flush(&self) -> Result<()> {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.commit_held(&mut held)
    }

    fn release_writes(&self) -> Result<()> {
        let mut held = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        held.holders = held.holders.saturating_sub(1);
        self.commit_held(&mut held)
    }

    fn record_pipeline(&self, p: &PipelineRecord) -> Result<()> {
        self.write("recording a pipeline", |c| {
            c.prepare_cached(
                "INSERT INTO pipelines (id, about, schedule, last_seen_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET about = excluded.about, schedule = excluded.schedule,
                 last_seen_ms = excluded.last_seen_ms",
            )?
            .execute(params![p.id, p.about, p.schedule, p.last_seen_ms])
            .map(drop)
        })
    }

    fn start_run(&self, r: &RunRecord) -> Result<()> {
        self.write("recording a run", |c| {
            c.prepare_cached(&format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                r.id,
                r.pipeline_id,
                r.status.as_str(),
                r.runtime,
                r.environment,
                r.config,
                r.only_step,
                r.started_ms,
                r.finished_ms,
                r.error
            ])
            .map(drop)
        })
    }

    fn claim_run(&self, run_id: &str, owner: &str) -> Result<()> {
        self.write("recording a run's owner", |c| {
            c.prepare_cached(
                "INSERT INTO run_owners (run_id, owner, heartbeat_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(run_id) DO UPDATE SET owner = excluded.owner,
                 heartbeat_ms = excluded.heartbeat_ms",
            )?
            .execute(params![run_id, owner, crate::step::now_ms()])
            .map(drop)
        })
    }

    fn beat(&self, run_id: &str, at_ms: i64) -> Result<()> {
        self.write("recording a run's heartbeat", |c| {
            c.prepare_cached("UPDATE run_owners SET heartbeat_ms = ?2 WHERE run_id = ?1")?
                .execute(params![run_id, at_ms])
                .map(drop)
        })
    }

    fn running_owners(&self) -> Result<Vec<OwnedRun>> {
        self.with("reading the owners of running runs", |c| {
            c.prepare_cached(
                "SELECT r.id, o.owner, o.heartbeat_ms FROM runs r
                 JOIN run_owners o ON o.run_id = r.id WHERE r.status = 'running'",
            )?
            .query_map([], |r| {
                Ok(OwnedRun {
                    run_id: r.get(0)?,
                    owner: r.get(1)?,
                    heartbeat_ms: r.get(2)?,
                })
            })?
            .collect()
        })
    }

    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        finished_ms: i64,
        error: Option<&str>,
    ) -> Result<()> {
        self.write("finishing a run", |c| {
            c.prepare_cached(
                "UPDATE runs SET status = ?2, finished_ms = ?3, error = ?4 WHERE id = ?1",
            )?
            .execute(params![run_id, status.as_str(), finished_ms, error])
            .map(drop)
        })
    }

    fn start_step(&self, run_id: &str, step_id: &str, started_ms: i64) -> Result<i64> {
        self.write("recording a step run", |c| {
            c.prepare_cached(
                "INSERT INTO step_runs (run_id, step_id, status, attempts, cache_hit, started_ms)
                 VALUES (?1, ?2, 'running', 0, 0, ?3) RETURNING id",
            )?
            .query_row(params![run_id, step_id, started_ms], |r| r.get(0))
        })
    }

    fn finish_step(&self, run_id: &str, step_id: &str, end: &StepRunEnd) -> Result<i64> {
        self.write("finishing a step run", |tx| {
            let status = end.status.unwrap_or(StepStatus::Failed);
            let output_hash = end.output.as_ref().map(|a| a.hash.as_str());
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO step_runs (run_id, step_id, status, attempts, cache_key, cache_hit,
                        started_ms, finished_ms, error, output_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT(run_id, step_id) DO UPDATE SET status = excluded.status,
                        attempts = excluded.attempts, cache_key = excluded.cache_key,
                        cache_hit = excluded.cache_hit,
                        started_ms = COALESCE(step_runs.started_ms, excluded.started_ms),
                        finished_ms = excluded.finished_ms, error = excluded.error,
                        output_hash = excluded.output_hash
                     RETURNING id",
                )?
                .query_row(
                    params![
                        run_id,
                        step_id,
                        status.as_str(),
                        end.attempts,
                        end.cache_key,
                        end.cache_hit,
                        end.started_ms,
                        end.finished_ms,
                        end.error,
                        output_hash
                    ],
                    |r| r.get(0),
                )?;
            if let Some(a) = &end.output {
                tx.prepare_cached(
                    "INSERT INTO artifacts (hash, size, type_name, uri, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(hash) DO NOTHING",
                )?
                .execute(params![a.hash, a.size as i64, a.type_name, a.uri, a.created_ms])?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO lineage (step_run_id, artifact_hash, direction, name)
                     VALUES (?1, ?2, 'output', 'output')",
                )?
                .execute(params![id, a.hash])?;
                if end.cacheable
                    && let Some(key) = &end.cache_key
                {
                    tx.prepare_cached(
                        "INSERT INTO cache_entries (cache_key, pipeline_id, step_id, artifact_hash, created_ms)
                         SELECT ?1, r.pipeline_id, ?3, ?4, ?5 FROM runs r WHERE r.id = ?2
                         ON CONFLICT(cache_key) DO UPDATE SET artifact_hash = excluded.artifact_hash,
                            created_ms = excluded.created_ms",
                    )?
                    .execute(params![key, run_id, step_id, a.hash, end.finished_ms])?;
                }
            }
            {
                let mut input = tx.prepare_cached(
                    "INSERT OR REPLACE INTO lineage (step_run_id, artifact_hash, direction, name)
                     VALUES (?1, ?2, 'input', ?3)",
                )?;
                for (name, hash) in &end.inputs {
                    input.execute(params![id, hash, name])?;
                }
                let mut param =
                    tx.prepare_cached("INSERT OR REPLACE INTO params (step_run_id, name, value) VALUES (?1, ?2, ?3)")?;
                for (name, value) in &end.params {
                    param.execute(params![id, name, value])?;
                }
                let mut metric =
                    tx.prepare_cached("INSERT OR REPLACE INTO metrics (step_run_id, name, value) VALUES (?1, ?2, ?3)")?;
                for (name, value) in &end.metrics {
                    metric.execute(params![id, name, value])?;
                }
                let mut log = tx.prepare_cached(
                    "INSERT INTO logs (step_run_id, at_ms, level, message) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for line in &end.logs {
                    log.execute(params![id, line.at_ms, line.level, line.message])?;
                }
            }
            Ok(id)
        })
    }

    fn cache_lookup(&self, key: &str) -> Result<Option<ArtifactRecord>> {
        self.with("looking up the cache", |c| {
            c.prepare_cached(&format!(
                "SELECT {ARTIFACT_COLUMNS} FROM cache_entries e JOIN artifacts a ON a.hash = e.artifact_hash
                 WHERE e.cache_key = ?1"
            ))?
            .query_row([key], |r| artifact_row(r, 0))
            .optional()
        })
    }

    fn cache_forget(&self, key: &str) -> Result<()> {
        self.write("forgetting a cache entry", |c| {
            c.prepare_cached("DELETE FROM cache_entries WHERE cache_key = ?1")?
                .execute([key])
                .map(drop)
        })
    }

    fn pipelines(&self) -> Result<Vec<PipelineRecord>> {
        self.with("listing pipelines", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, about, schedule, last_seen_ms FROM pipelines ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(PipelineRecord {
                    id: r.get(0)?,
                    about: r.get(1)?,
                    schedule: r.get(2)?,
                    last_seen_ms: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    fn runs(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<RunRecord>> {
        self.with("listing runs", |c| match pipeline {
            Some(p) => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![p, limit], run_row)?.collect()
            }
            None => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_ms DESC, id DESC LIMIT ?1"
                ))?;
                stmt.query_map(params![limit], run_row)?.collect()
            }
        })
    }

    fn run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        check_prefix("run", id_or_prefix)?;
        let found = self.with("finding a run", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id LIKE ?1 || '%' LIMIT 2"
            ))?;
            stmt.query_map([id_or_prefix], run_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        one_of("run", id_or_prefix, found)
    }

    fn step_runs(&self, run_id: &str) -> Result<Vec<StepRunRecord>> {
        self.with("listing step runs", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, run_id, step_id, status, attempts, cache_key, cache_hit, started_ms, finished_ms,
                        error, output_hash
                 FROM step_runs WHERE run_id = ?1 ORDER BY id",
            )?;
            stmt.query_map([run_id], |r| {
                Ok(StepRunRecord {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    step_id: r.get(2)?,
                    status: StepStatus::parse(&r.get::<_, String>(3)?).unwrap_or(StepStatus::Failed),
                    attempts: r.get(4)?,
                    cache_key: r.get(5)?,
                    cache_hit: r.get(6)?,
                    started_ms: r.get(7)?,
                    finished_ms: r.get(8)?,
                    error: r.get(9)?,
                    output_hash: r.get(10)?,
                })
            })?
            .collect()
        })
    }

    fn step_params(&self, step_run_id: i64) -> Result<Vec<(String, String)>> {
        self.with("reading parameters", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, value FROM params WHERE step_run_id = ?1 ORDER BY name",
            )?;
            stmt.query_map([step_run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    fn step_metrics(&self, step_run_id: i64) -> Result<Vec<(String, f64)>> {
        self.with("reading metrics", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, value FROM metrics WHERE step_run_id = ?1 ORDER BY name",
            )?;
            stmt.query_map([step_run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    fn step_logs(&self, step_run_id: i64) -> Result<Vec<LogLine>> {
        self.with("reading logs", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ms, level, message FROM logs WHERE step_run_id = ?1 ORDER BY id",
            )?;
            stmt.query_map([step_run_id], |r| {
                Ok(LogLine {
                    at_ms: r.get(0)?,
                    level: r.get(1)?,
                    message: r.get(2)?,
                })
            })?
            .collect()
        })
    }

    fn artifact(&self, hash_or_prefix: &str) -> Result<ArtifactRecord> {
        check_prefix("artifact", hash_or_prefix)?;
        let found = self.with("finding an artifact", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE a.hash LIKE ?1 || '%' LIMIT 2"
            ))?;
            stmt.query_map([hash_or_prefix.to_ascii_lowercase()], |r| {
                artifact_row(r, 0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        one_of("artifact", hash_or_prefix, found)
    }

    fn edges_of_artifact(&self, hash: &str) -> Result<Vec<LineageEdge>> {
        self.with("reading lineage", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{EDGE_QUERY} WHERE l.artifact_hash = ?1 ORDER BY l.step_run_id"
            ))?;
            stmt.query_map([hash], edge_row)?.collect()
        })
    }

    fn edges_of_step_run(&self, step_run_id: i64) -> Result<Vec<LineageEdge>> {
        self.with("reading lineage", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{EDGE_QUERY} WHERE l.step_run_id = ?1 ORDER BY l.name"
            ))?;
            stmt.query_map([step_run_id], edge_row)?.collect()
        })
    }

    fn cache_entries(&self, pipeline: Option<&str>) -> Result<Vec<CacheEntry>> {
        self.with("listing the cache", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT e.cache_key, e.pipeline_id, e.step_id, e.created_ms, {ARTIFACT_COLUMNS}
                 FROM cache_entries e JOIN artifacts a ON a.hash = e.artifact_hash
                 WHERE ?1 IS NULL OR e.pipeline_id = ?1
                 ORDER BY e.created_ms DESC, e.cache_key"
            ))?;
            stmt.query_map([pipeline], |r| {
                Ok(CacheEntry {
                    cache_key: r.get(0)?,
                    pipeline_id: r.get(1)?,
                    step_id: r.get(2)?,
                    created_ms: r.get(3)?,
                    artifact: artifact_row(r, 4)?,
                })
            })?
            .collect()
        })
    }

    fn clear_cache(&self, pipeline: Option<&str>) -> Result<u64> {
        self.write("clearing the cache", |c| {
            c.prepare_cached("DELETE FROM cache_entries WHERE ?1 IS NULL OR pipeline_id = ?1")?
                .execute([pipeline])
                .map(|n| n as u64)
        })
    }

    fn unreferenced_artifacts(&self) -> Result<Vec<String>> {
        self.with("listing unreferenced artifacts", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT a.hash FROM artifacts a
                 WHERE NOT EXISTS (SELECT 1 FROM cache_entries e WHERE e.artifact_hash = a.hash)",
            )?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
    }

    fn start_flow_run(&self, r: &FlowRunRecord) -> Result<()> {
        self.write("recording a flow run", |c| {
            c.prepare_cached(&format!(
                "INSERT INTO flow_runs ({FLOW_RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                r.id,
                r.flow,
                r.started_ms,
                r.ended_ms,
                r.last_sample_ms,
                r.owner,
                r.addr,
                r.error
            ])
            .map(drop)
        })
    }

    fn record_flow_samples(&self, samples: &[FlowSampleRecord]) -> Result<()> {
        self.write("recording flow samples", |c| {
            let mut insert = c.prepare_cached(&format!(
                "INSERT INTO flow_samples ({FLOW_SAMPLE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(run_id, at_ms, processor) DO UPDATE SET kind = excluded.kind,
                    replicas = excluded.replicas, backlog = excluded.backlog,
                    items_in = excluded.items_in, items_out = excluded.items_out,
                    errors = excluded.errors, dead_letters = excluded.dead_letters,
                    in_flight = excluded.in_flight, latency_p50_ms = excluded.latency_p50_ms,
                    latency_p99_ms = excluded.latency_p99_ms"
            ))?;
            let mut latest = c.prepare_cached(
                "UPDATE flow_runs SET last_sample_ms = MAX(COALESCE(last_sample_ms, ?2), ?2)
                 WHERE id = ?1",
            )?;
            for s in samples {
                insert.execute(params![
                    s.run_id,
                    s.at_ms,
                    s.processor,
                    s.kind,
                    stored(s.replicas),
                    s.backlog.map(stored),
                    stored(s.items_in),
                    stored(s.items_out),
                    stored(s.errors),
                    stored(s.dead_letters),
                    s.in_flight,
                    s.latency_p50_ms,
                    s.latency_p99_ms
                ])?;
                latest.execute(params![s.run_id, s.at_ms])?;
            }
            Ok(())
        })
    }

    fn end_flow_run(&self, run_id: &str, ended_ms: i64, error: Option<&str>) -> Result<()> {
        self.write("ending a flow run", |c| {
            c.prepare_cached("UPDATE flow_runs SET ended_ms = ?2, error = ?3 WHERE id = ?1")?
                .execute(params![run_id, ended_ms, error])
                .map(drop)
        })
    }

    fn flow_runs(&self, flow: Option<&str>, limit: u32) -> Result<Vec<FlowRunRecord>> {
        self.with("listing flow runs", |c| {
            c.prepare_cached(&format!(
                "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE ?1 IS NULL OR flow = ?1
                 ORDER BY started_ms DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![flow, limit], flow_run_row)?
            .collect()
        })
    }

    fn flow_run(&self, id_or_prefix: &str) -> Result<FlowRunRecord> {
        check_prefix("flow run", id_or_prefix)?;
        let found = self.with("finding a flow run", |c| {
            c.prepare_cached(&format!(
                "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE id LIKE ?1 || '%' LIMIT 2"
            ))?
            .query_map([id_or_prefix.to_ascii_lowercase()], flow_run_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        one_of("flow run", id_or_prefix, found)
    }

    fn flow_samples(&self, run_id: &str) -> Result<Vec<FlowSampleRecord>> {
        self.with("reading flow samples", |c| {
            c.prepare_cached(&format!(
                "SELECT {FLOW_SAMPLE_COLUMNS} FROM flow_samples WHERE run_id = ?1
                 ORDER BY at_ms, processor"
            ))?
            .query_map([run_id], flow_sample_row)?
            .collect()
        })
    }
}
