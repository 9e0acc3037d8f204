//! The Postgres metadata store: the same schema and queries as the SQLite store, for
//! teams that share run history between machines.

use std::sync::Mutex;

use ::postgres::{Client, Error as PgError, NoTls, Row};

use super::*;
use crate::error::Error;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE pipelines (
    id           TEXT PRIMARY KEY,
    about        TEXT NOT NULL,
    schedule     TEXT,
    last_seen_ms BIGINT NOT NULL
);
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id),
    status      TEXT NOT NULL,
    runtime     TEXT NOT NULL,
    environment TEXT NOT NULL,
    config      TEXT NOT NULL,
    only_step   TEXT,
    started_ms  BIGINT NOT NULL,
    finished_ms BIGINT,
    error       TEXT
);
CREATE INDEX runs_by_pipeline ON runs(pipeline_id, started_ms DESC);
CREATE INDEX runs_by_start ON runs(started_ms DESC);
CREATE TABLE step_runs (
    id          BIGSERIAL PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs(id),
    step_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    cache_key   TEXT,
    cache_hit   BOOLEAN NOT NULL,
    started_ms  BIGINT,
    finished_ms BIGINT,
    error       TEXT,
    output_hash TEXT,
    UNIQUE (run_id, step_id)
);
CREATE TABLE artifacts (
    hash       TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    type_name  TEXT NOT NULL,
    uri        TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE lineage (
    step_run_id   BIGINT NOT NULL REFERENCES step_runs(id),
    artifact_hash TEXT NOT NULL,
    direction     TEXT NOT NULL,
    name          TEXT NOT NULL,
    PRIMARY KEY (step_run_id, direction, name)
);
CREATE INDEX lineage_by_artifact ON lineage(artifact_hash);
CREATE TABLE cache_entries (
    cache_key     TEXT PRIMARY KEY,
    pipeline_id   TEXT NOT NULL,
    step_id       TEXT NOT NULL,
    artifact_hash TEXT NOT NULL REFERENCES artifacts(hash),
    created_ms    BIGINT NOT NULL
);
CREATE INDEX cache_by_pipeline ON cache_entries(pipeline_id, created_ms DESC);
CREATE TABLE params (
    step_run_id BIGINT NOT NULL REFERENCES step_runs(id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (step_run_id, name)
);
CREATE TABLE metrics (
    step_run_id BIGINT NOT NULL REFERENCES step_runs(id),
    name        TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (step_run_id, name)
);
CREATE TABLE logs (
    id          BIGSERIAL PRIMARY KEY,
    step_run_id BIGINT NOT NULL REFERENCES step_runs(id),
    at_ms       BIGINT NOT NULL,
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
    "ALTER TABLE run_owners ADD COLUMN heartbeat_ms BIGINT;",
    // 5: runs of Flows and their processors sampled over time (the Flows page).
    r#"
CREATE TABLE flow_runs (
    id             TEXT PRIMARY KEY,
    flow           TEXT NOT NULL,
    started_ms     BIGINT NOT NULL,
    ended_ms       BIGINT,
    last_sample_ms BIGINT,
    owner          TEXT NOT NULL,
    addr           TEXT NOT NULL,
    error          TEXT
);
CREATE INDEX flow_runs_by_start ON flow_runs(started_ms DESC);
CREATE TABLE flow_samples (
    run_id         TEXT NOT NULL REFERENCES flow_runs(id),
    at_ms          BIGINT NOT NULL,
    processor      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    replicas       BIGINT NOT NULL,
    backlog        BIGINT,
    items_in       BIGINT NOT NULL,
    items_out      BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    dead_letters   BIGINT NOT NULL,
    in_flight      BIGINT NOT NULL,
    latency_p50_ms DOUBLE PRECISION,
    latency_p99_ms DOUBLE PRECISION,
    PRIMARY KEY (run_id, at_ms, processor)
);
"#,
];

/// The metadata store in a Postgres database; see the [module docs](super).
pub struct PostgresStore {
    url: String,
    client: Mutex<Client>,
}

/// The URL with its password replaced, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "postgres://(unparsable URL)".to_string(),
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host/db`) and brings the schema up
    /// to date.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_inner(url, None)
    }

    /// Connects to `url` and uses (creating it) the schema `schema` instead of `public`.
    pub fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        crate::ids::check_id("schema", schema)?;
        Self::connect_inner(url, Some(schema))
    }

    fn connect_inner(url: &str, schema: Option<&str>) -> Result<Self> {
        let shown = redact(url);
        let fail = |what: &str| {
            let (url, what) = (shown.clone(), what.to_string());
            move |source| Error::Postgres {
                url,
                what,
                source: Box::new(source),
            }
        };
        let mut client = Client::connect(url, NoTls).map_err(fail("connecting"))?;
        if let Some(schema) = schema {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\";"
                ))
                .map_err(fail("choosing the schema"))?;
        }
        let mut tx = client
            .transaction()
            .map_err(fail("starting the migration"))?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7317001);
             CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL);",
        )
        .map_err(fail("creating schema_migrations"))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .map_err(fail("reading the schema version"))?
            .get(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(Error::SchemaTooNew {
                location: shown,
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(sql)
                .map_err(fail("applying a migration"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                &[&(i as i64 + 1), &crate::step::now_ms()],
            )
            .map_err(fail("recording a migration"))?;
        }
        tx.commit().map_err(fail("committing the migration"))?;
        Ok(Self {
            url: shown,
            client: Mutex::new(client),
        })
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, PgError>,
    ) -> Result<T> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut client).map_err(|source| Error::Postgres {
            url: self.url.clone(),
            what: what.to_string(),
            source: Box::new(source),
        })
    }

    pub(crate) fn open_dyn(url: &str) -> Result<std::sync::Arc<dyn MetadataStore>> {
        Ok(std::sync::Arc::new(Self::connect(url)?))
    }
}

const RUN_COLUMNS: &str = "id, pipeline_id, status, runtime, environment, config, only_step, started_ms, finished_ms, error";

fn run_row(r: &Row) -> RunRecord {
    RunRecord {
        id: r.get(0),
        pipeline_id: r.get(1),
        status: RunStatus::parse(r.get(2)).unwrap_or(RunStatus::Failed),
        runtime: r.get(3),
        environment: r.get(4),
        config: r.get(5),
        only_step: r.get(6),
        started_ms: r.get(7),
        finished_ms: r.get(8),
        error: r.get(9),
    }
}

const ARTIFACT_COLUMNS: &str = "a.hash, a.size, a.type_name, a.uri, a.created_ms";

fn artifact_row(r: &Row, at: usize) -> ArtifactRecord {
    ArtifactRecord {
        hash: r.get(at),
        size: r.get::<_, i64>(at + 1) as u64,
        type_name: r.get(at + 2),
        uri: r.get(at + 3),
        created_ms: r.get(at + 4),
    }
}

const EDGE_QUERY: &str =
    "SELECT l.step_run_id, s.run_id, r.pipeline_id, s.step_id, l.artifact_hash, l.direction, l.name
     FROM lineage l JOIN step_runs s ON s.id = l.step_run_id JOIN runs r ON r.id = s.run_id";

fn edge_row(r: &Row) -> LineageEdge {
    LineageEdge {
        step_run_id: r.get(0),
        run_id: r.get(1),
        pipeline_id: r.get(2),
        step_id: r.get(3),
        artifact_hash: r.get(4),
        direction: Direction::parse(r.get(5)).unwrap_or(Direction::Output),
        name: r.get(6),
    }
}

const FLOW_RUN_COLUMNS: &str = "id, flow, started_ms, ended_ms, last_sample_ms, owner, addr, error";

fn flow_run_row(r: &Row) -> FlowRunRecord {
    FlowRunRecord {
        id: r.get(0),
        flow: r.get(1),
        started_ms: r.get(2),
        ended_ms: r.get(3),
        last_sample_ms: r.get(4),
        owner: r.get(5),
        addr: r.get(6),
        error: r.get(7),
    }
}

const FLOW_SAMPLE_COLUMNS: &str = "run_id, at_ms, processor, kind, replicas, backlog, items_in, items_out, errors, dead_letters, in_flight, latency_p50_ms, latency_p99_ms";

fn flow_sample_row(r: &Row) -> FlowSampleRecord {
    let count = |i: usize| r.get::<_, i64>(i).max(0) as u64;
    FlowSampleRecord {
        run_id: r.get(0),
        at_ms: r.get(1),
        processor: r.get(2),
        kind: r.get(3),
        replicas: count(4),
        backlog: r.get::<_, Option<i64>>(5).map(|v| v.max(0) as u64),
        items_in: count(6),
        items_out: count(7),
        errors: count(8),
        dead_letters: count(9),
        in_flight: r.get(10),
        latency_p50_ms: r.get(11),
        latency_p99_ms: r.get(12),
    }
}

/// A count as stored (SQL integers are signed).
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

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

impl MetadataStore for PostgresStore {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn record_pipeline(&self, p: &PipelineRecord) -> Result<()> {
        self.with("recording a pipeline", |c| {
            c.execute(
                "INSERT INTO pipelines (id, about, schedule, last_seen_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT(id) DO UPDATE SET about = excluded.about, schedule = excluded.schedule,
                 last_seen_ms = excluded.last_seen_ms",
                &[&p.id, &p.about, &p.schedule, &p.last_seen_ms],
            )
            .map(drop)
        })
    }

    fn start_run(&self, r: &RunRecord) -> Result<()> {
        self.with("recording a run", |c| {
            c.execute(
                &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &r.id,
                    &r.pipeline_id,
                    &r.status.as_str(),
                    &r.runtime,
                    &r.environment,
                    &r.config,
                    &r.only_step,
                    &r.started_ms,
                    &r.finished_ms,
                    &r.error,
                ],
            )
            .map(drop)
        })
    }

    fn claim_run(&self, run_id: &str, owner: &str) -> Result<()> {
        self.with("recording a run's owner", |c| {
            c.execute(
                "INSERT INTO run_owners (run_id, owner, heartbeat_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id) DO UPDATE SET owner = EXCLUDED.owner,
                 heartbeat_ms = EXCLUDED.heartbeat_ms",
                &[&run_id, &owner, &crate::step::now_ms()],
            )
            .map(drop)
        })
    }

    fn beat(&self, run_id: &str, at_ms: i64) -> Result<()> {
        self.with("recording a run's heartbeat", |c| {
            c.execute(
                "UPDATE run_owners SET heartbeat_ms = $2 WHERE run_id = $1",
                &[&run_id, &at_ms],
            )
            .map(drop)
        })
    }

    fn running_owners(&self) -> Result<Vec<OwnedRun>> {
        self.with("reading the owners of running runs", |c| {
            Ok(c.query(
                "SELECT r.id, o.owner, o.heartbeat_ms FROM runs r
                     JOIN run_owners o ON o.run_id = r.id WHERE r.status = 'running'",
                &[],
            )?
            .iter()
            .map(|r| OwnedRun {
                run_id: r.get(0),
                owner: r.get(1),
                heartbeat_ms: r.get(2),
            })
            .collect())
        })
    }

    fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        finished_ms: i64,
        error: Option<&str>,
    ) -> Result<()> {
        self.with("finishing a run", |c| {
            c.execute(
                "UPDATE runs SET status = $2, finished_ms = $3, error = $4 WHERE id = $1",
                &[&run_id, &status.as_str(), &finished_ms, &error],
            )
            .map(drop)
        })
    }

    fn start_step(&self, run_id: &str, step_id: &str, started_ms: i64) -> Result<i64> {
        self.with("recording a step run", |c| {
            c.query_one(
                "INSERT INTO step_runs (run_id, step_id, status, attempts, cache_hit, started_ms)
                 VALUES ($1, $2, 'running', 0, FALSE, $3) RETURNING id",
                &[&run_id, &step_id, &started_ms],
            )
            .map(|r| r.get(0))
        })
    }

    fn finish_step(&self, run_id: &str, step_id: &str, end: &StepRunEnd) -> Result<i64> {
        self.with("finishing a step run", |c| {
            let mut tx = c.transaction()?;
            let status = end.status.unwrap_or(StepStatus::Failed);
            let output_hash = end.output.as_ref().map(|a| a.hash.as_str());
            let id: i64 = tx
                .query_one(
                    "INSERT INTO step_runs (run_id, step_id, status, attempts, cache_key, cache_hit,
                        started_ms, finished_ms, error, output_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT(run_id, step_id) DO UPDATE SET status = excluded.status,
                        attempts = excluded.attempts, cache_key = excluded.cache_key,
                        cache_hit = excluded.cache_hit,
                        started_ms = COALESCE(step_runs.started_ms, excluded.started_ms),
                        finished_ms = excluded.finished_ms, error = excluded.error,
                        output_hash = excluded.output_hash
                     RETURNING id",
                    &[
                        &run_id,
                        &step_id,
                        &status.as_str(),
                        &(end.attempts as i64),
                        &end.cache_key,
                        &end.cache_hit,
                        &end.started_ms,
                        &end.finished_ms,
                        &end.error,
                        &output_hash,
                    ],
                )?
                .get(0);
            if let Some(a) = &end.output {
                tx.execute(
                    "INSERT INTO artifacts (hash, size, type_name, uri, created_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT(hash) DO NOTHING",
                    &[&a.hash, &(a.size as i64), &a.type_name, &a.uri, &a.created_ms],
                )?;
                tx.execute(
                    "INSERT INTO lineage (step_run_id, artifact_hash, direction, name) VALUES ($1, $2, 'output', 'output')
                     ON CONFLICT (step_run_id, direction, name) DO UPDATE SET artifact_hash = excluded.artifact_hash",
                    &[&id, &a.hash],
                )?;
                if end.cacheable
                    && let Some(key) = &end.cache_key
                {
                    tx.execute(
                        "INSERT INTO cache_entries (cache_key, pipeline_id, step_id, artifact_hash, created_ms)
                         SELECT $1, r.pipeline_id, $3, $4, $5 FROM runs r WHERE r.id = $2
                         ON CONFLICT(cache_key) DO UPDATE SET artifact_hash = excluded.artifact_hash,
                            created_ms = excluded.created_ms",
                        &[key, &run_id, &step_id, &a.hash, &end.finished_ms],
                    )?;
                }
            }
            for (name, hash) in &end.inputs {
                tx.execute(
                    "INSERT INTO lineage (step_run_id, artifact_hash, direction, name) VALUES ($1, $2, 'input', $3)
                     ON CONFLICT (step_run_id, direction, name) DO UPDATE SET artifact_hash = excluded.artifact_hash",
                    &[&id, hash, name],
                )?;
            }
            for (name, value) in &end.params {
                tx.execute(
                    "INSERT INTO params (step_run_id, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (step_run_id, name) DO UPDATE SET value = excluded.value",
                    &[&id, name, value],
                )?;
            }
            for (name, value) in &end.metrics {
                tx.execute(
                    "INSERT INTO metrics (step_run_id, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (step_run_id, name) DO UPDATE SET value = excluded.value",
                    &[&id, name, value],
                )?;
            }
            for line in &end.logs {
                tx.execute(
                    "INSERT INTO logs (step_run_id, at_ms, level, message) VALUES ($1, $2, $3, $4)",
                    &[&id, &line.at_ms, &line.level, &line.message],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    fn cache_lookup(&self, key: &str) -> Result<Option<ArtifactRecord>> {
        self.with("looking up the cache", |c| {
            c.query_opt(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM cache_entries e JOIN artifacts a ON a.hash = e.artifact_hash
                     WHERE e.cache_key = $1"
                ),
                &[&key],
            )
            .map(|r| r.map(|r| artifact_row(&r, 0)))
        })
    }

    fn cache_forget(&self, key: &str) -> Result<()> {
        self.with("forgetting a cache entry", |c| {
            c.execute("DELETE FROM cache_entries WHERE cache_key = $1", &[&key])
                .map(drop)
        })
    }

    fn pipelines(&self) -> Result<Vec<PipelineRecord>> {
        self.with("listing pipelines", |c| {
            let rows = c.query(
                "SELECT id, about, schedule, last_seen_ms FROM pipelines ORDER BY id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| PipelineRecord {
                    id: r.get(0),
                    about: r.get(1),
                    schedule: r.get(2),
                    last_seen_ms: r.get(3),
                })
                .collect())
        })
    }

    fn runs(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<RunRecord>> {
        self.with("listing runs", |c| {
            let rows = c.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE $1::TEXT IS NULL OR pipeline_id = $1
                     ORDER BY started_ms DESC, id DESC LIMIT $2"
                ),
                &[&pipeline, &(limit as i64)],
            )?;
            Ok(rows.iter().map(run_row).collect())
        })
    }

    fn run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        check_prefix("run", id_or_prefix)?;
        let found = self.with("finding a run", |c| {
            let rows = c.query(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id LIKE $1 || '%' LIMIT 2"),
                &[&id_or_prefix],
            )?;
            Ok(rows.iter().map(run_row).collect::<Vec<_>>())
        })?;
        one_of("run", id_or_prefix, found)
    }

    fn step_runs(&self, run_id: &str) -> Result<Vec<StepRunRecord>> {
        self.with("listing step runs", |c| {
            let rows = c.query(
                "SELECT id, run_id, step_id, status, attempts, cache_key, cache_hit, started_ms, finished_ms,
                        error, output_hash
                 FROM step_runs WHERE run_id = $1 ORDER BY id",
                &[&run_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| StepRunRecord {
                    id: r.get(0),
                    run_id: r.get(1),
                    step_id: r.get(2),
                    status: StepStatus::parse(r.get(3)).unwrap_or(StepStatus::Failed),
                    attempts: r.get::<_, i64>(4) as u32,
                    cache_key: r.get(5),
                    cache_hit: r.get(6),
                    started_ms: r.get(7),
                    finished_ms: r.get(8),
                    error: r.get(9),
                    output_hash: r.get(10),
                })
                .collect())
        })
    }

    fn step_params(&self, step_run_id: i64) -> Result<Vec<(String, String)>> {
        self.with("reading parameters", |c| {
            let rows = c.query(
                "SELECT name, value FROM params WHERE step_run_id = $1 ORDER BY name",
                &[&step_run_id],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn step_metrics(&self, step_run_id: i64) -> Result<Vec<(String, f64)>> {
        self.with("reading metrics", |c| {
            let rows = c.query(
                "SELECT name, value FROM metrics WHERE step_run_id = $1 ORDER BY name",
                &[&step_run_id],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn step_logs(&self, step_run_id: i64) -> Result<Vec<LogLine>> {
        self.with("reading logs", |c| {
            let rows = c.query(
                "SELECT at_ms, level, message FROM logs WHERE step_run_id = $1 ORDER BY id",
                &[&step_run_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| LogLine {
                    at_ms: r.get(0),
                    level: r.get(1),
                    message: r.get(2),
                })
                .collect())
        })
    }

    fn artifact(&self, hash_or_prefix: &str) -> Result<ArtifactRecord> {
        check_prefix("artifact", hash_or_prefix)?;
        let found = self.with("finding an artifact", |c| {
            let rows = c.query(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE a.hash LIKE $1 || '%' LIMIT 2"
                ),
                &[&hash_or_prefix.to_ascii_lowercase()],
            )?;
            Ok(rows.iter().map(|r| artifact_row(r, 0)).collect::<Vec<_>>())
        })?;
        one_of("artifact", hash_or_prefix, found)
    }

    fn edges_of_artifact(&self, hash: &str) -> Result<Vec<LineageEdge>> {
        self.with("reading lineage", |c| {
            let rows = c.query(
                &format!("{EDGE_QUERY} WHERE l.artifact_hash = $1 ORDER BY l.step_run_id"),
                &[&hash],
            )?;
            Ok(rows.iter().map(edge_row).collect())
        })
    }

    fn edges_of_step_run(&self, step_run_id: i64) -> Result<Vec<LineageEdge>> {
        self.with("reading lineage", |c| {
            let rows = c.query(
                &format!("{EDGE_QUERY} WHERE l.step_run_id = $1 ORDER BY l.name"),
                &[&step_run_id],
            )?;
            Ok(rows.iter().map(edge_row).collect())
        })
    }

    fn cache_entries(&self, pipeline: Option<&str>) -> Result<Vec<CacheEntry>> {
        self.with("listing the cache", |c| {
            let rows = c.query(
                &format!(
                    "SELECT e.cache_key, e.pipeline_id, e.step_id, e.created_ms, {ARTIFACT_COLUMNS}
                     FROM cache_entries e JOIN artifacts a ON a.hash = e.artifact_hash
                     WHERE $1::TEXT IS NULL OR e.pipeline_id = $1
                     ORDER BY e.created_ms DESC, e.cache_key"
                ),
                &[&pipeline],
            )?;
            Ok(rows
                .iter()
                .map(|r| CacheEntry {
                    cache_key: r.get(0),
                    pipeline_id: r.get(1),
                    step_id: r.get(2),
                    created_ms: r.get(3),
                    artifact: artifact_row(r, 4),
                })
                .collect())
        })
    }

    fn clear_cache(&self, pipeline: Option<&str>) -> Result<u64> {
        self.with("clearing the cache", |c| {
            c.execute(
                "DELETE FROM cache_entries WHERE $1::TEXT IS NULL OR pipeline_id = $1",
                &[&pipeline],
            )
        })
    }

    fn unreferenced_artifacts(&self) -> Result<Vec<String>> {
        self.with("listing unreferenced artifacts", |c| {
            let rows = c.query(
                "SELECT a.hash FROM artifacts a
                 WHERE NOT EXISTS (SELECT 1 FROM cache_entries e WHERE e.artifact_hash = a.hash)",
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn start_flow_run(&self, r: &FlowRunRecord) -> Result<()> {
        self.with("recording a flow run", |c| {
            c.execute(
                &format!(
                    "INSERT INTO flow_runs ({FLOW_RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &r.id,
                    &r.flow,
                    &r.started_ms,
                    &r.ended_ms,
                    &r.last_sample_ms,
                    &r.owner,
                    &r.addr,
                    &r.error,
                ],
            )
            .map(drop)
        })
    }

    fn record_flow_samples(&self, samples: &[FlowSampleRecord]) -> Result<()> {
        self.with("recording flow samples", |c| {
            let mut tx = c.transaction()?;
            let insert = tx.prepare(&format!(
                "INSERT INTO flow_samples ({FLOW_SAMPLE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (run_id, at_ms, processor) DO UPDATE SET kind = excluded.kind,
                    replicas = excluded.replicas, backlog = excluded.backlog,
                    items_in = excluded.items_in, items_out = excluded.items_out,
                    errors = excluded.errors, dead_letters = excluded.dead_letters,
                    in_flight = excluded.in_flight, latency_p50_ms = excluded.latency_p50_ms,
                    latency_p99_ms = excluded.latency_p99_ms"
            ))?;
            let latest = tx.prepare(
                "UPDATE flow_runs SET last_sample_ms = GREATEST(COALESCE(last_sample_ms, $2), $2)
                 WHERE id = $1",
            )?;
            for s in samples {
                tx.execute(
                    &insert,
                    &[
                        &s.run_id,
                        &s.at_ms,
                        &s.processor,
                        &s.kind,
                        &stored(s.replicas),
                        &s.backlog.map(stored),
                        &stored(s.items_in),
                        &stored(s.items_out),
                        &stored(s.errors),
                        &stored(s.dead_letters),
                        &s.in_flight,
                        &s.latency_p50_ms,
                        &s.latency_p99_ms,
                    ],
                )?;
                tx.execute(&latest, &[&s.run_id, &s.at_ms])?;
            }
            tx.commit()
        })
    }

    fn end_flow_run(&self, run_id: &str, ended_ms: i64, error: Option<&str>) -> Result<()> {
        self.with("ending a flow run", |c| {
            c.execute(
                "UPDATE flow_runs SET ended_ms = $2, error = $3 WHERE id = $1",
                &[&run_id, &ended_ms, &error],
            )
            .map(drop)
        })
    }

    fn flow_runs(&self, flow: Option<&str>, limit: u32) -> Result<Vec<FlowRunRecord>> {
        self.with("listing flow runs", |c| {
            let rows = c.query(
                &format!(
                    "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE $1::TEXT IS NULL OR flow = $1
                     ORDER BY started_ms DESC, id DESC LIMIT $2"
                ),
                &[&flow, &(limit as i64)],
            )?;
            Ok(rows.iter().map(flow_run_row).collect())
        })
    }

    fn flow_run(&self, id_or_prefix: &str) -> Result<FlowRunRecord> {
        check_prefix("flow run", id_or_prefix)?;
        let prefix = id_or_prefix.to_ascii_lowercase();
        let found = self.with("finding a flow run", |c| {
            let rows = c.query(
                &format!(
                    "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE id LIKE $1 || '%' LIMIT 2"
                ),
                &[&prefix],
            )?;
            Ok(rows.iter().map(flow_run_row).collect::<Vec<_>>())
        })?;
        one_of("flow run", id_or_prefix, found)
    }

    fn flow_samples(&self, run_id: &str) -> Result<Vec<FlowSampleRecord>> {
        self.with("reading flow samples", |c| {
            let rows = c.query(
                &format!(
                    "SELECT {FLOW_SAMPLE_COLUMNS} FROM flow_samples WHERE run_id = $1
                     ORDER BY at_ms, processor"
                ),
                &[&run_id],
            )?;
            Ok(rows.iter().map(flow_sample_row).collect())
        })
    }
}
