//! What the metadata store records and how it is read back: runs, step runs,
//! artifacts, parameters, lineage, the cache listing.

mod common;

use common::each_backend;
use riffle_pipeline::lineage::lineage;
use riffle_pipeline::metadata::{Direction, SqliteStore};
use riffle_pipeline::{MetadataStore, Pipeline, RunOptions, RunStatus, StepStatus};

fn pipeline() -> Pipeline {
    let mut p = Pipeline::builder("shop");
    p.schedule("@daily").start("2024-01-01");
    let orders = p
        .step("orders", (), |_ctx, ()| Ok(vec![5_u32, 7, 9]))
        .version("1")
        .output();
    let prices = p
        .step("prices", (), |_ctx, ()| Ok(vec![2_u32, 3, 4]))
        .version("1")
        .output();
    let revenue = p
        .step(
            "revenue",
            (&orders, &prices),
            |ctx, (o, p): (Vec<u32>, Vec<u32>)| {
                ctx.metric("lines", o.len() as f64);
                Ok(o.iter().zip(&p).map(|(a, b)| a * b).sum::<u32>())
            },
        )
        .param("currency", "EUR")
        .version("1")
        .output();
    p.step("report", &revenue, |_ctx, r: u32| {
        Ok(format!("revenue {r}"))
    })
    .version("1");
    p.build().unwrap()
}

#[test]
fn runs_and_step_runs_are_recorded_and_read_back() {
    each_backend(|project| {
        let ex = project.executor();
        let first = ex.run(&pipeline(), RunOptions::default()).unwrap();
        let second = ex.run(&pipeline(), RunOptions::default()).unwrap();
        let md = &project.metadata;
        let runs = md.runs(Some("shop"), 10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, second.run_id, "newest first");
        assert!(
            runs.iter()
                .all(|r| r.status == RunStatus::Succeeded && r.finished_ms.is_some())
        );
        assert_eq!(md.run(&first.run_id[..13]).unwrap().id, first.run_id);
        assert!(md.run("zz").is_err());
        assert!(md.run("%").is_err());
        let pipelines = md.pipelines().unwrap();
        assert_eq!(
            pipelines[0].schedule.as_deref(),
            Some("@daily from 2024-01-01 00:00:00")
        );

        let steps = md.step_runs(&first.run_id).unwrap();
        assert_eq!(steps.len(), 4);
        assert!(
            steps
                .iter()
                .all(|s| s.status == StepStatus::Succeeded && !s.cache_hit)
        );
        let cached = md.step_runs(&second.run_id).unwrap();
        assert!(
            cached
                .iter()
                .all(|s| s.status == StepStatus::Cached && s.cache_hit)
        );
        let revenue = steps.iter().find(|s| s.step_id == "revenue").unwrap();
        assert_eq!(
            md.step_params(revenue.id).unwrap(),
            [("currency".to_string(), "\"EUR\"".to_string())]
        );
        assert_eq!(
            md.step_metrics(revenue.id).unwrap(),
            [("lines".to_string(), 3.0)]
        );
        let artifact = md
            .artifact(revenue.output_hash.as_deref().unwrap())
            .unwrap();
        assert_eq!(artifact.type_name, "u32");
        assert!(artifact.uri.ends_with(&artifact.hash));
        assert!(artifact.size > 0);
    });
}

#[test]
fn lineage_walks_up_to_the_inputs_and_down_to_the_users() {
    each_backend(|project| {
        let ex = project.executor();
        let report = ex.run(&pipeline(), RunOptions::default()).unwrap();
        let revenue = report.step("revenue").unwrap().output.unwrap().to_hex();
        let l = lineage(project.metadata.as_ref(), &revenue[..10]).unwrap();
        assert_eq!(l.artifact.hash, revenue);
        let up: Vec<_> = l
            .upstream
            .iter()
            .map(|s| (s.depth, s.step_id.as_str()))
            .collect();
        assert_eq!(up, [(1, "revenue"), (2, "orders"), (2, "prices")]);
        let producer = &l.upstream[0];
        let inputs: Vec<_> = producer.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(inputs, ["orders", "prices"]);
        let down: Vec<_> = l
            .downstream
            .iter()
            .map(|s| (s.depth, s.step_id.as_str()))
            .collect();
        assert_eq!(down, [(1, "report")]);

        let orders = report.step("orders").unwrap().output.unwrap().to_hex();
        let l = lineage(project.metadata.as_ref(), &orders).unwrap();
        let down: Vec<_> = l
            .downstream
            .iter()
            .map(|s| (s.depth, s.step_id.as_str()))
            .collect();
        assert_eq!(down, [(1, "revenue"), (2, "report")]);
        let edges = project.metadata.edges_of_artifact(&orders).unwrap();
        assert!(
            edges
                .iter()
                .any(|e| e.direction == Direction::Output && e.step_id == "orders")
        );
    });
}

#[test]
fn the_cache_is_listed_and_cleared() {
    each_backend(|project| {
        let ex = project.executor();
        ex.run(&pipeline(), RunOptions::default()).unwrap();
        let entries = project.metadata.cache_entries(Some("shop")).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(
            project
                .metadata
                .cache_entries(Some("nope"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(project.metadata.clear_cache(Some("shop")).unwrap(), 4);
        assert_eq!(project.metadata.unreferenced_artifacts().unwrap().len(), 4);
        let report = ex.run(&pipeline(), RunOptions::default()).unwrap();
        assert!(report.steps.iter().all(|s| !s.cache_hit));
    });
}

#[test]
fn reopening_the_sqlite_store_keeps_its_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/metadata.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let ex = riffle_pipeline::Executor::new(
            riffle_pipeline::ArtifactStore::memory(),
            std::sync::Arc::new(store),
        );
        ex.run(&pipeline(), RunOptions::default()).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.runs(None, 10).unwrap().len(), 1);
    // A database from a newer version is refused, not misread.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (999, 0)",
        [],
    )
    .unwrap();
    drop(raw);
    let err = SqliteStore::open(&path)
        .err()
        .expect("a newer schema is refused")
        .to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn many_threads_opening_one_new_store_all_succeed() {
    // Switching a new file to WAL takes a lock SQLite does not wait for: without a
    // retry, some of these opens fail with "database is locked" (seen within the
    // first 50 rounds here).
    for round in 0..100 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
        let opens: Vec<_> = (0..12)
            .map(|_| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteStore::open(&path).map(|_| ())
                })
            })
            .collect();
        for open in opens {
            if let Err(e) = open.join().unwrap() {
                panic!("round {round}: {e}");
            }
        }
    }
}

#[test]
fn an_unknown_metadata_url_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "mysql://u@db/riffle",
        "postgress://u@db/riffle",
        "sqlit://x.db",
    ] {
        let err = riffle_pipeline::metadata::open(url)
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"))
            .to_string();
        assert!(err.contains(url), "{err}");
        assert!(err.contains("postgres://"), "{err}");
    }
    // A path, and an explicit sqlite:// URL, are still SQLite files.
    let path = dir.path().join("m.db");
    riffle_pipeline::metadata::open(&path.to_string_lossy()).unwrap();
    riffle_pipeline::metadata::open(&format!("sqlite://{}", dir.path().join("n.db").display()))
        .unwrap();
    assert!(dir.path().join("n.db").exists());
}

#[test]
fn a_run_whose_process_is_gone_or_silent_is_marked_failed_and_a_live_one_is_not() {
    use riffle_pipeline::metadata::{RunOwner, RunRecord, reap_abandoned};
    // A process that has ended: its pid names nothing alive any more.
    let mut done = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = done.id();
    done.wait().unwrap();
    each_backend(|project| {
        let md = project.metadata.as_ref();
        md.record_pipeline(&riffle_pipeline::metadata::PipelineRecord {
            id: "shop".into(),
            about: String::new(),
            schedule: None,
            last_seen_ms: 0,
        })
        .unwrap();
        let here = RunOwner::current();
        let owners = [
            (
                "dead",
                RunOwner {
                    pid: dead_pid,
                    ..here.clone()
                },
            ),
            ("alive", here.clone()),
            (
                "elsewhere",
                RunOwner {
                    host: "another-host".into(),
                    pid: dead_pid,
                    started: 1,
                },
            ),
            (
                "beef",
                RunOwner {
                    host: "another-host".into(),
                    pid: dead_pid + 1,
                    started: 1,
                },
            ),
        ];
        for (id, owner) in &owners {
            md.start_run(&RunRecord {
                id: id.to_string(),
                pipeline_id: "shop".into(),
                status: RunStatus::Running,
                runtime: "2024-01-01 00:00:00".into(),
                environment: "dev".into(),
                config: "{}".into(),
                only_step: None,
                started_ms: 1,
                finished_ms: None,
                error: None,
            })
            .unwrap();
            md.claim_run(id, &owner.to_text()).unwrap();
        }
        // Another host's run is told abandoned by its heartbeat alone: "beef" last
        // beat 10 minutes ago, "elsewhere" (claimed just now) is within the limit.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        md.beat("beef", now - 600_000).unwrap();
        let mut reaped = reap_abandoned(md).unwrap();
        reaped.sort();
        assert_eq!(reaped, ["beef", "dead"], "{}", project.backend);
        let silent = md.run("beef").unwrap().error.unwrap();
        assert!(
            silent.contains("no heartbeat") && silent.contains("another-host"),
            "{silent}"
        );
        let dead = md.run("dead").unwrap();
        assert_eq!(dead.status, RunStatus::Failed);
        let error = dead.error.unwrap();
        assert!(
            error.contains("abandoned") && error.contains(&dead_pid.to_string()),
            "{error}"
        );
        for r in md.runs(None, 10).unwrap() {
            if r.id != "dead" && r.id != "beef" {
                assert_eq!(r.status, RunStatus::Running, "{}", r.id);
            }
        }
        // Reaping again finds nothing more; a shorter limit finds "elsewhere" (its
        // heartbeat, recorded when it was claimed, is older than 0 ms) but never
        // "alive", a live process of this host.
        assert!(reap_abandoned(md).unwrap().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let short = riffle_pipeline::metadata::reap_stale(md, std::time::Duration::ZERO);
        assert_eq!(short.unwrap(), ["elsewhere"], "{}", project.backend);
    });
}
