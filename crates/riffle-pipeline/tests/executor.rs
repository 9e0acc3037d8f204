//! The executor: parallelism, retries, timeouts, failure policies, cancellation, and
//! what it records.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::each_backend;
use riffle_pipeline::{CancelToken, Error, Pipeline, RunOptions, RunStatus, StepStatus};

fn sleepy(id: &str, p: &mut riffle_pipeline::PipelineBuilder, ms: u64) {
    p.step(id, (), move |_ctx, ()| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    });
}

#[test]
fn two_independent_half_second_steps_take_half_a_second() {
    each_backend(|project| {
        let mut p = Pipeline::builder("parallel");
        sleepy("a", &mut p, 500);
        sleepy("b", &mut p, 500);
        let pipeline = p.build().unwrap();
        let start = Instant::now();
        let report = project
            .executor()
            .run(&pipeline, RunOptions::default())
            .unwrap();
        let took = start.elapsed();
        assert_eq!(report.status, RunStatus::Succeeded);
        assert!(took < Duration::from_millis(850), "took {took:?}");
        assert!(took >= Duration::from_millis(500));
    });
}

#[test]
fn the_pool_is_bounded_by_cpu_slots() {
    each_backend(|project| {
        let mut p = Pipeline::builder("bounded");
        for id in ["a", "b", "c"] {
            sleepy(id, &mut p, 200);
        }
        p.step("big", (), |_ctx, ()| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        })
        .cpus(2);
        let pipeline = p.build().unwrap();
        let start = Instant::now();
        project
            .executor()
            .parallelism(2)
            .run(&pipeline, RunOptions::default())
            .unwrap();
        let took = start.elapsed();
        // a+b together, then c, then big alone (it needs both slots): 3 rounds.
        assert!(took >= Duration::from_millis(590), "took {took:?}");
        assert!(took < Duration::from_millis(1000), "took {took:?}");
    });
}

#[test]
fn a_failing_attempt_is_retried() {
    each_backend(|project| {
        let tries = Arc::new(AtomicU32::new(0));
        let t = tries.clone();
        let mut p = Pipeline::builder("flaky");
        p.step("flaky", (), move |ctx, ()| {
            t.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 3 {
                return Err(format!("attempt {} fails", ctx.attempt()).into());
            }
            ctx.log("third time lucky");
            ctx.metric("attempt", ctx.attempt() as f64);
            Ok(ctx.attempt())
        })
        .retries(2, Duration::from_millis(10));
        let pipeline = p.build().unwrap();
        let ex = project.executor();
        let report = ex.run(&pipeline, RunOptions::default()).unwrap();
        assert_eq!(report.status, RunStatus::Succeeded);
        assert_eq!(report.step("flaky").unwrap().attempts, 3);
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        let steps = project.metadata.step_runs(&report.run_id).unwrap();
        assert_eq!(steps[0].attempts, 3);
        let logs = project.metadata.step_logs(steps[0].id).unwrap();
        assert!(
            logs.iter()
                .any(|l| l.message.contains("attempt 1 failed: attempt 1 fails")),
            "{logs:?}"
        );
        assert!(logs.iter().any(|l| l.message == "third time lucky"));
        assert_eq!(
            project.metadata.step_metrics(steps[0].id).unwrap(),
            [("attempt".to_string(), 3.0)]
        );
    });
}

#[test]
fn retries_run_out_and_the_error_names_the_step() {
    each_backend(|project| {
        let mut p = Pipeline::builder("broken");
        p.step("never", (), |_ctx, ()| -> riffle_pipeline::StepResult<()> {
            Err("disk on fire".into())
        })
        .retries(1, Duration::ZERO);
        let report = project
            .executor()
            .run(&p.build().unwrap(), RunOptions::default())
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        let err = report.error.unwrap();
        assert!(
            err.contains("\"never\"") && err.contains("disk on fire") && err.contains("2 attempts"),
            "{err}"
        );
        let run = project.metadata.run(&report.run_id).unwrap();
        assert_eq!(run.status, RunStatus::Failed);
    });
}

#[test]
fn no_retries_makes_one_attempt_whatever_the_step_says() {
    each_backend(|project| {
        let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = tries.clone();
        let mut p = Pipeline::builder("once");
        p.step(
            "flaky",
            (),
            move |_ctx, ()| -> riffle_pipeline::StepResult<()> {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err("not today".into())
            },
        )
        .retries(3, Duration::ZERO);
        let options = RunOptions {
            no_retries: true,
            ..RunOptions::default()
        };
        let report = project
            .executor()
            .run(&p.build().unwrap(), options)
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(!report.error.unwrap().contains("attempts"));
    });
}

#[test]
fn an_attempt_over_its_timeout_fails() {
    each_backend(|project| {
        let mut p = Pipeline::builder("slow");
        p.step("slow", (), |_ctx, ()| {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        })
        .timeout(Duration::from_millis(200))
        .retries(1, Duration::ZERO);
        let start = Instant::now();
        let report = project
            .executor()
            .run(&p.build().unwrap(), RunOptions::default())
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(report.status, RunStatus::Failed);
        let step = report.step("slow").unwrap();
        assert_eq!(step.attempts, 2);
        assert!(
            step.error
                .as_deref()
                .unwrap()
                .contains("timed out after 0.200 s"),
            "{step:?}"
        );
    });
}

#[test]
fn a_panicking_step_fails_without_taking_the_run_down() {
    each_backend(|project| {
        let mut p = Pipeline::builder("panics");
        p.step("boom", (), |_ctx, ()| -> riffle_pipeline::StepResult<u8> {
            panic!("index out of range")
        });
        let report = project
            .executor()
            .run(&p.build().unwrap(), RunOptions::default())
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        assert!(
            report
                .error
                .unwrap()
                .contains("panicked: index out of range")
        );
    });
}

/// `bad` fails at once; `slow` runs 300 ms, then `after_slow`; `after_bad` reads `bad`.
fn failing_pipeline() -> Pipeline {
    let mut p = Pipeline::builder("failing");
    let bad = p
        .step("bad", (), |_ctx, ()| -> riffle_pipeline::StepResult<u8> {
            Err("bad input".into())
        })
        .output();
    let slow = p
        .step("slow", (), |_ctx, ()| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(1_u8)
        })
        .output();
    p.step("after_slow", &slow, |_ctx, x: u8| Ok(x + 1));
    p.step("after_bad", &bad, |_ctx, x: u8| Ok(x + 1));
    p.build().unwrap()
}

#[test]
fn by_default_a_failure_stops_the_run() {
    each_backend(|project| {
        let report = project
            .executor()
            .run(&failing_pipeline(), RunOptions::default())
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        let status = |id| report.step(id).unwrap().status;
        assert_eq!(status("bad"), StepStatus::Failed);
        assert_eq!(
            status("slow"),
            StepStatus::Succeeded,
            "running steps finish"
        );
        assert_eq!(status("after_slow"), StepStatus::Skipped);
        assert_eq!(status("after_bad"), StepStatus::Skipped);
    });
}

#[test]
fn keep_going_finishes_independent_branches() {
    each_backend(|project| {
        let opts = RunOptions {
            keep_going: true,
            ..Default::default()
        };
        let report = project.executor().run(&failing_pipeline(), opts).unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        let status = |id| report.step(id).unwrap().status;
        assert_eq!(status("after_slow"), StepStatus::Succeeded);
        assert_eq!(status("after_bad"), StepStatus::Skipped);
        let recorded = project.metadata.step_runs(&report.run_id).unwrap();
        let skipped = recorded.iter().find(|s| s.step_id == "after_bad").unwrap();
        assert_eq!(skipped.status, StepStatus::Skipped);
        assert!(skipped.error.as_deref().unwrap().contains("\"bad\""));
    });
}

#[test]
fn a_cancelled_run_stops_and_is_recorded_as_cancelled() {
    each_backend(|project| {
        let mut p = Pipeline::builder("cancel");
        let first = p
            .step("patient", (), |ctx, ()| {
                let start = Instant::now();
                while !ctx.is_cancelled() && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })
            .output();
        p.step("next", &first, |_ctx, ()| Ok(()));
        let cancel = CancelToken::new();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c.cancel();
        });
        let start = Instant::now();
        let report = project
            .executor()
            .run(
                &p.build().unwrap(),
                RunOptions {
                    cancel,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(report.status, RunStatus::Cancelled);
        assert_eq!(report.step("next").unwrap().status, StepStatus::Cancelled);
        assert_eq!(
            project.metadata.run(&report.run_id).unwrap().status,
            RunStatus::Cancelled
        );
        assert!(
            project
                .metadata
                .step_runs(&report.run_id)
                .unwrap()
                .iter()
                .all(|s| s.status != StepStatus::Running)
        );
    });
}

#[test]
fn a_job_runs_one_step_with_its_inputs_from_the_cache() {
    each_backend(|project| {
        let runs = Arc::new(AtomicU32::new(0));
        let build = || {
            let mut p = Pipeline::builder("jobs");
            let a = p.step("a", (), |_ctx, ()| Ok(2_u32)).version("1").output();
            let r = runs.clone();
            let b = p
                .step("b", &a, move |_ctx, x: u32| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(x * 10)
                })
                .version("1")
                .output();
            p.step("c", &b, |_ctx, x: u32| Ok(x + 1)).version("1");
            p.build().unwrap()
        };
        let ex = project.executor();
        let job = |step: &str| RunOptions {
            only_step: Some(step.to_string()),
            ..Default::default()
        };
        let report = ex.run(&build(), job("b")).unwrap();
        assert_eq!(report.steps.len(), 2, "b and what it needs, not c");
        ex.run(&build(), RunOptions::default()).unwrap();
        let again = ex.run(&build(), job("b")).unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the job always runs its step"
        );
        assert!(again.step("a").unwrap().cache_hit);
        assert!(!again.step("b").unwrap().cache_hit);
        assert_eq!(
            project
                .metadata
                .run(&again.run_id)
                .unwrap()
                .only_step
                .as_deref(),
            Some("b")
        );
        let err = ex.run(&build(), job("zzz")).unwrap_err();
        assert!(matches!(err, Error::UnknownStep { .. }), "{err}");
    });
}

#[test]
fn definition_errors_name_the_steps() {
    let mut p = Pipeline::builder("dag");
    p.step("a", (), |_ctx, ()| Ok(())).after_id("c");
    p.step("b", (), |_ctx, ()| Ok(())).after_id("a");
    p.step("c", (), |_ctx, ()| Ok(())).after_id("b");
    let err = p.build().unwrap_err().to_string();
    assert!(
        err.contains("cycle") && err.contains("a -> b -> c -> a"),
        "{err}"
    );

    let mut p = Pipeline::builder("dag");
    p.step("a", (), |_ctx, ()| Ok(())).after_id("ghost");
    let err = p.build().unwrap_err().to_string();
    assert_eq!(
        err,
        "step \"a\" of pipeline \"dag\" depends on \"ghost\", which is not a step of this pipeline"
    );

    let mut other = Pipeline::builder("other");
    let foreign = other.step("x", (), |_ctx, ()| Ok(1_u8)).output();
    let mut p = Pipeline::builder("dag");
    p.step("a", &foreign, |_ctx, x: u8| Ok(x));
    let err = p.build().unwrap_err().to_string();
    assert!(err.contains("\"a\"") && err.contains("other.x"), "{err}");

    let mut p = Pipeline::builder("dag");
    p.step("../etc/passwd", (), |_ctx, ()| Ok(()));
    assert!(matches!(p.build().unwrap_err(), Error::InvalidId { .. }));

    let mut p = Pipeline::builder("dag");
    p.schedule("every tuesday");
    assert!(matches!(
        p.build().unwrap_err(),
        Error::InvalidSchedule { .. }
    ));
}

#[test]
fn secrets_reach_steps_but_are_never_stored() {
    each_backend(|project| {
        let mut p = Pipeline::builder("secretive");
        p.config(
            riffle_pipeline::Config::new()
                .env("prod", [("host", "db.internal")])
                .secret("password", "SECRETIVE_DB_PASSWORD")
                .default_env("prod"),
        );
        p.step("connect", (), |ctx, ()| {
            let pw = ctx.secret("password")?;
            Ok(pw.len())
        })
        .version("1");
        let secret = "hunter2-s3cr3t-value";
        let opts = RunOptions {
            env_lookup: Some(Arc::new(move |var: &str| match var {
                "SECRETIVE_DB_PASSWORD" => Some(secret.to_string()),
                "RIFFLE_CONFIG_HOST" => Some("db.override".to_string()),
                _ => None,
            })),
            ..Default::default()
        };
        let ex = project.executor();
        let report = ex.run(&p.build().unwrap(), opts).unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
        assert_eq!(
            ex.output::<usize>(&report, "connect").unwrap(),
            secret.len()
        );
        let run = project.metadata.run(&report.run_id).unwrap();
        assert_eq!(run.environment, "prod");
        assert!(run.config.contains("db.override"), "{}", run.config);
        if project.backend == "sqlite" {
            for name in ["metadata.db", "metadata.db-wal"] {
                let path = project.dir.path().join(".riffle").join(name);
                if let Ok(bytes) = std::fs::read(&path) {
                    let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                    assert!(!found, "the secret is in {}", path.display());
                }
            }
        }
    });
}

#[test]
fn readers_see_a_running_step_while_it_runs() {
    each_backend(|project| {
        let mut p = Pipeline::builder("visible");
        let a = p.step("quick", (), |_ctx, ()| Ok(1_u8)).output();
        p.step("slow", &a, |_ctx, x: u8| {
            std::thread::sleep(Duration::from_millis(400));
            Ok(x)
        });
        let pipeline = p.build().unwrap();
        let reader = project.reopen();
        let seen = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(3) {
                    if let Some(run) = reader.runs(Some("visible"), 1).unwrap().first() {
                        let steps = reader.step_runs(&run.id).unwrap();
                        let quick_done = steps
                            .iter()
                            .any(|s| s.step_id == "quick" && s.status == StepStatus::Succeeded);
                        let slow_running = steps
                            .iter()
                            .any(|s| s.step_id == "slow" && s.status == StepStatus::Running);
                        if quick_done && slow_running && run.status == RunStatus::Running {
                            return true;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            });
            project
                .executor()
                .run(&pipeline, RunOptions::default())
                .unwrap();
            watcher.join().unwrap()
        });
        assert!(
            seen,
            "a reader saw the finished step and the running one during the run"
        );
    });
}
