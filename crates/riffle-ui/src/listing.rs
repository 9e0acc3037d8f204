//! Lists that page through the whole history: runs (filtered, with step counts and
//! cache hits) and artifacts.
//!
//! The [`MetadataStore`] trait answers "the latest N runs of a pipeline"; a dashboard
//! also filters by status and date, counts the matches and shows cache hits per run.
//! On SQLite (the default store) these lists are one SQL query each, on a read-only
//! connection of their own, using the store's indexes (`runs_by_start`,
//! `runs_by_pipeline`, and `step_runs`' unique `(run_id, step_id)`). On any other
//! store they are computed from the trait's reads: correct, but they read every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use riffle_pipeline::metadata::{ArtifactRecord, MetadataStore, RunRecord, RunStatus};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter};

use crate::error::ApiResult;

/// Which runs to list, and which page of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub pipeline: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs started at or after this time (ms since the Unix epoch).
    pub from_ms: Option<i64>,
    /// Runs started before this time.
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

/// A run with what its step runs add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run: RunRecord,
    pub steps: u32,
    pub cache_hits: u32,
    pub failed_steps: u32,
}

/// One page of runs and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub total: u64,
    pub rows: Vec<RunRow>,
}

/// One page of artifacts, newest first, and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactPage {
    pub total: u64,
    pub rows: Vec<ArtifactRecord>,
}

/// How lists are computed for one store; see the [module docs](self).
#[derive(Clone)]
pub enum Listing {
    /// SQL on a read-only connection to the SQLite file.
    Sqlite(Arc<SqliteListing>),
    /// The trait's reads, for any store.
    Generic,
}

impl Listing {
    /// The listing for the store at `location` (as given to `riffle_pipeline::metadata::open`).
    pub fn for_location(location: &str) -> ApiResult<Self> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Ok(Listing::Generic);
        }
        let path = location.strip_prefix("sqlite://").unwrap_or(location);
        Ok(Listing::Sqlite(Arc::new(SqliteListing::open(Path::new(
            path,
        ))?)))
    }

    /// A page of the runs that match `filter`.
    pub fn runs(&self, store: &dyn MetadataStore, filter: &RunFilter) -> ApiResult<RunPage> {
        match self {
            Listing::Sqlite(s) => s.runs(filter),
            Listing::Generic => generic_runs(store, filter),
        }
    }

    /// A page of artifacts, newest first.
    pub fn artifacts(
        &self,
        store: &dyn MetadataStore,
        limit: u32,
        offset: u32,
    ) -> ApiResult<ArtifactPage> {
        match self {
            Listing::Sqlite(s) => s.artifacts(limit, offset),
            Listing::Generic => {
                // Without SQL the store only lists artifacts through its cache entries.
                let mut seen = std::collections::HashSet::new();
                let all: Vec<ArtifactRecord> = store
                    .cache_entries(None)?
                    .into_iter()
                    .map(|e| e.artifact)
                    .filter(|a| seen.insert(a.hash.clone()))
                    .collect();
                Ok(ArtifactPage {
                    total: all.len() as u64,
                    rows: all
                        .into_iter()
                        .skip(offset as usize)
                        .take(limit as usize)
                        .collect(),
                })
            }
        }
    }

    /// An artifact by hash or unique prefix; a full hash is one primary-key lookup on
    /// SQLite (a prefix is matched by the store, which reads every artifact).
    pub fn artifact(&self, store: &dyn MetadataStore, hash: &str) -> ApiResult<ArtifactRecord> {
        if let Listing::Sqlite(s) = self
            && hash.len() == 64
            && let Some(found) = s.artifact_exact(&hash.to_ascii_lowercase())?
        {
            return Ok(found);
        }
        Ok(store.artifact(hash)?)
    }

    /// How many runs each pipeline has.
    pub fn run_counts(&self, store: &dyn MetadataStore) -> ApiResult<BTreeMap<String, u64>> {
        match self {
            Listing::Sqlite(s) => s.run_counts(),
            Listing::Generic => {
                let mut counts = BTreeMap::new();
                for run in store.runs(None, u32::MAX)? {
                    *counts.entry(run.pipeline_id).or_insert(0) += 1;
                }
                Ok(counts)
            }
        }
    }
}

fn generic_runs(store: &dyn MetadataStore, filter: &RunFilter) -> ApiResult<RunPage> {
    let matching: Vec<RunRecord> = store
        .runs(filter.pipeline.as_deref(), u32::MAX)?
        .into_iter()
        .filter(|r| filter.status.is_none_or(|s| r.status == s))
        .filter(|r| filter.from_ms.is_none_or(|t| r.started_ms >= t))
        .filter(|r| filter.until_ms.is_none_or(|t| r.started_ms < t))
        .collect();
    let total = matching.len() as u64;
    let mut rows = Vec::new();
    for run in matching
        .into_iter()
        .skip(filter.offset as usize)
        .take(filter.limit as usize)
    {
        let steps = store.step_runs(&run.id)?;
        rows.push(RunRow {
            steps: steps.len() as u32,
            cache_hits: steps.iter().filter(|s| s.cache_hit).count() as u32,
            failed_steps: steps
                .iter()
                .filter(|s| s.status == riffle_pipeline::StepStatus::Failed)
                .count() as u32,
            run,
        });
    }
    Ok(RunPage { total, rows })
}

/// Lists over a read-only connection to an SQLite metadata store.
pub struct SqliteListing {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteListing {
    /// Opens `path` read-only (the file must exist).
    pub fn open(path: &Path) -> ApiResult<Self> {
        let fail = |source| riffle_pipeline::Error::Sqlite {
            path: path.display().to_string(),
            what: "opening a read-only connection".into(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> ApiResult<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| {
            riffle_pipeline::Error::Sqlite {
                path: self.path.display().to_string(),
                what: what.to_string(),
                source,
            }
            .into()
        })
    }

    fn runs(&self, filter: &RunFilter) -> ApiResult<RunPage> {
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = &filter.pipeline {
            values.push(p.clone().into());
            clauses.push(format!("pipeline_id = ?{}", values.len()));
        }
        if let Some(s) = filter.status {
            values.push(s.as_str().to_string().into());
            clauses.push(format!("status = ?{}", values.len()));
        }
        if let Some(t) = filter.from_ms {
            values.push(t.into());
            clauses.push(format!("started_ms >= ?{}", values.len()));
        }
        if let Some(t) = filter.until_ms {
            values.push(t.into());
            clauses.push(format!("started_ms < ?{}", values.len()));
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let n = values.len();
        let page_sql = format!(
            "WITH page AS (
                SELECT id, pipeline_id, status, runtime, environment, config, only_step,
                       started_ms, finished_ms, error
                FROM runs {filter_sql}
                ORDER BY started_ms DESC, id DESC LIMIT ?{} OFFSET ?{})
             SELECT page.*, COUNT(s.id), COALESCE(SUM(s.cache_hit), 0),
                    COALESCE(SUM(s.status = 'failed'), 0)
             FROM page LEFT JOIN step_runs s ON s.run_id = page.id
             GROUP BY page.id
             ORDER BY page.started_ms DESC, page.id DESC",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM runs {filter_sql}");
        self.with("listing runs", |c| {
            let total: i64 = c
                .prepare_cached(&count_sql)?
                .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
            let mut page_values = values.clone();
            page_values.push(i64::from(filter.limit).into());
            page_values.push(i64::from(filter.offset).into());
            let mut stmt = c.prepare_cached(&page_sql)?;
            let rows = stmt
                .query_map(params_from_iter(page_values.iter()), |r| {
                    Ok(RunRow {
                        run: RunRecord {
                            id: r.get(0)?,
                            pipeline_id: r.get(1)?,
                            status: RunStatus::parse(&r.get::<_, String>(2)?)
                                .unwrap_or(RunStatus::Failed),
                            runtime: r.get(3)?,
                            environment: r.get(4)?,
                            config: r.get(5)?,
                            only_step: r.get(6)?,
                            started_ms: r.get(7)?,
                            finished_ms: r.get(8)?,
                            error: r.get(9)?,
                        },
                        steps: r.get(10)?,
                        cache_hits: r.get(11)?,
                        failed_steps: r.get(12)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(RunPage {
                total: total as u64,
                rows,
            })
        })
    }

    fn artifacts(&self, limit: u32, offset: u32) -> ApiResult<ArtifactPage> {
        self.with("listing artifacts", |c| {
            let total: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM artifacts")?
                .query_row([], |r| r.get(0))?;
            // The page's hashes come from the covering index `artifacts_by_created`;
            // only the rows shown are then read in full.
            let mut stmt = c.prepare_cached(
                "SELECT a.hash, a.size, a.type_name, a.uri, a.created_ms
                 FROM (SELECT hash, created_ms FROM artifacts
                       ORDER BY created_ms DESC, hash LIMIT ?1 OFFSET ?2) page
                 JOIN artifacts a ON a.hash = page.hash
                 ORDER BY page.created_ms DESC, page.hash",
            )?;
            let rows = stmt
                .query_map([i64::from(limit), i64::from(offset)], |r| {
                    Ok(ArtifactRecord {
                        hash: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        type_name: r.get(2)?,
                        uri: r.get(3)?,
                        created_ms: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ArtifactPage {
                total: total as u64,
                rows,
            })
        })
    }

    fn artifact_exact(&self, hash: &str) -> ApiResult<Option<ArtifactRecord>> {
        self.with("finding an artifact", |c| {
            c.prepare_cached(
                "SELECT hash, size, type_name, uri, created_ms FROM artifacts WHERE hash = ?1",
            )?
            .query_row([hash], |r| {
                Ok(ArtifactRecord {
                    hash: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    type_name: r.get(2)?,
                    uri: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })
            .optional()
        })
    }

    fn run_counts(&self) -> ApiResult<BTreeMap<String, u64>> {
        self.with("counting runs", |c| {
            let mut stmt =
                c.prepare_cached("SELECT pipeline_id, COUNT(*) FROM runs GROUP BY pipeline_id")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
        })
    }
}
