//! The cache is never wrong: the failures seen in other pipeline tools, as tests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::each_backend;
use riffle_pipeline::{Pipeline, RunOptions, RunReport, RunStatus, StepStatus};

/// Counts how often each step body ran.
#[derive(Default, Clone)]
struct Calls(Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>);

impl Calls {
    fn hit(&self, step: &str) {
        *self.0.lock().unwrap().entry(step.to_string()).or_default() += 1;
    }
    fn take(&self) -> Vec<String> {
        let mut map = self.0.lock().unwrap();
        let ran = map.keys().cloned().collect();
        map.clear();
        ran
    }
}

fn cached(report: &RunReport) -> Vec<&str> {
    let mut v: Vec<&str> = report
        .steps
        .iter()
        .filter(|s| s.cache_hit)
        .map(|s| s.step_id.as_str())
        .collect();
    v.sort();
    v
}

/// load -> sum -> report_sum, load -> max -> report_max. Version 2 of `load` appends a
/// zero: the sum and the max stay the same numbers, but `sum`/`max` see new input.
/// `count` sees the length change.
fn upstream_pipeline(load_version: &str, calls: &Calls) -> Pipeline {
    let mut p = Pipeline::builder("upstream");
    let c = calls.clone();
    let v2 = load_version == "2";
    let load = p
        .step("load", (), move |_ctx, ()| {
            c.hit("load");
            let mut xs = vec![3_i64, 9, 4];
            if v2 {
                xs.push(0);
            }
            Ok(xs)
        })
        .version(load_version)
        .output();
    let c = calls.clone();
    let max = p
        .step("max", &load, move |_ctx, xs: Vec<i64>| {
            c.hit("max");
            Ok(xs.into_iter().max().unwrap_or(0))
        })
        .version("1")
        .output();
    let c = calls.clone();
    let count = p
        .step("count", &load, move |_ctx, xs: Vec<i64>| {
            c.hit("count");
            Ok(xs.len() as u64)
        })
        .version("1")
        .output();
    let c = calls.clone();
    p.step("report_max", &max, move |_ctx, m: i64| {
        c.hit("report_max");
        Ok(format!("max {m}"))
    })
    .version("1");
    let c = calls.clone();
    p.step("report_count", &count, move |_ctx, n: u64| {
        c.hit("report_count");
        Ok(format!("count {n}"))
    })
    .version("1");
    p.build().unwrap()
}

#[test]
fn a_upstream_code_change_reruns_only_steps_whose_input_changed() {
    each_backend(|project| {
        let ex = project.executor();
        let calls = Calls::default();
        let first = ex
            .run(&upstream_pipeline("1", &calls), RunOptions::default())
            .unwrap();
        assert_eq!(first.status, RunStatus::Succeeded);
        assert_eq!(calls.take().len(), 5);

        let again = ex
            .run(&upstream_pipeline("1", &calls), RunOptions::default())
            .unwrap();
        assert!(
            calls.take().is_empty(),
            "an unchanged pipeline runs nothing"
        );
        assert_eq!(cached(&again).len(), 5);

        let changed = ex
            .run(&upstream_pipeline("2", &calls), RunOptions::default())
            .unwrap();
        assert_eq!(changed.status, RunStatus::Succeeded);
        // load changed code; max and count read its new output; count's output
        // changed (3 -> 4) so report_count runs; max's did not (still 9).
        assert_eq!(calls.take(), ["count", "load", "max", "report_count"]);
        assert_eq!(cached(&changed), ["report_max"]);
        assert_eq!(
            ex.output::<String>(&changed, "report_count").unwrap(),
            "count 4"
        );
        assert_eq!(
            ex.output::<String>(&changed, "report_max").unwrap(),
            "max 9"
        );
    });
}

/// `load` makes a vector of `len` floats; `variant` 1 nudges the middle element by
/// 1e-9, `variant` 2 makes it -0.0 instead of 0.0. `mean` reads it.
fn vector_pipeline(len: usize, variant: u8, calls: &Calls) -> Pipeline {
    let mut p = Pipeline::builder("vectors");
    let load = p
        .step("load", (), move |ctx, ()| {
            let variant: u8 = ctx.param("variant")?;
            let mut xs: Vec<f64> = (0..len).map(|i| i as f64 * 0.5).collect();
            match variant {
                1 => xs[len / 2] += 1e-9,
                2 => xs[len / 2] = -0.0,
                _ => {}
            }
            if variant == 2 || variant == 3 {
                xs.iter_mut().for_each(|x| *x *= 0.0);
                if variant == 2 {
                    xs[len / 2] = -0.0;
                }
            }
            Ok(xs)
        })
        .param("variant", variant)
        .version("1")
        .output();
    let c = calls.clone();
    p.step("mean", &load, move |_ctx, xs: Vec<f64>| {
        c.hit("mean");
        Ok(xs.iter().sum::<f64>() / xs.len() as f64)
    })
    .version("1");
    p.build().unwrap()
}

#[test]
fn b_a_large_vector_differing_in_one_middle_element_misses() {
    each_backend(|project| {
        let ex = project.executor();
        let calls = Calls::default();
        let n = 1_000_000;
        ex.run(&vector_pipeline(n, 0, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["mean"]);
        ex.run(&vector_pipeline(n, 0, &calls), RunOptions::default())
            .unwrap();
        assert!(calls.take().is_empty(), "the same vector is a hit");
        let report = ex
            .run(&vector_pipeline(n, 1, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["mean"], "one changed element is a miss");
        assert!(!report.step("mean").unwrap().cache_hit);
        let xs: Vec<f64> = ex.output(&report, "load").unwrap();
        assert_eq!(xs[n / 2], (n / 2) as f64 * 0.5 + 1e-9);
        // -0.0 and 0.0 are equal as numbers but are different values.
        ex.run(&vector_pipeline(1000, 3, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["mean"]);
        ex.run(&vector_pipeline(1000, 2, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["mean"], "-0.0 differs from 0.0 in its bits");
    });
}

fn params_pipeline(a_scale: i64, b_offset: i64, calls: &Calls) -> Pipeline {
    let mut p = Pipeline::builder("params");
    let c = calls.clone();
    let base = p
        .step("base", (), move |_ctx, ()| {
            c.hit("base");
            Ok(vec![1_i64, 2, 3])
        })
        .version("1")
        .output();
    let c = calls.clone();
    let a = p
        .step("scaled", &base, move |ctx, xs: Vec<i64>| {
            c.hit("scaled");
            let k: i64 = ctx.param("scale")?;
            Ok(xs.iter().map(|x| x * k).collect::<Vec<_>>())
        })
        .param("scale", a_scale)
        .version("1")
        .output();
    let c = calls.clone();
    let b = p
        .step("shifted", &base, move |ctx, xs: Vec<i64>| {
            c.hit("shifted");
            let k: i64 = ctx.param("offset")?;
            Ok(xs.iter().map(|x| x + k).collect::<Vec<_>>())
        })
        .param("offset", b_offset)
        .version("1")
        .output();
    let c = calls.clone();
    p.step(
        "join",
        (&a, &b),
        move |_ctx, (a, b): (Vec<i64>, Vec<i64>)| {
            c.hit("join");
            Ok(a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>())
        },
    )
    .version("1");
    p.build().unwrap()
}

#[test]
fn c_a_parameter_of_one_step_invalidates_only_that_step_and_what_reads_it() {
    each_backend(|project| {
        let ex = project.executor();
        let calls = Calls::default();
        ex.run(&params_pipeline(2, 10, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take().len(), 4);
        let report = ex
            .run(&params_pipeline(3, 10, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["join", "scaled"]);
        assert_eq!(cached(&report), ["base", "shifted"]);
        assert_eq!(
            ex.output::<Vec<i64>>(&report, "join").unwrap(),
            [14, 18, 22]
        );
    });
}

#[test]
fn a_deleted_artifact_is_a_miss_and_the_step_runs_again() {
    each_backend(|project| {
        let ex = project.executor();
        let calls = Calls::default();
        let first = ex
            .run(&params_pipeline(2, 10, &calls), RunOptions::default())
            .unwrap();
        calls.take();
        let hash = first.step("scaled").unwrap().output.unwrap().to_hex();
        let file = project
            .dir
            .path()
            .join(".riffle/artifacts/artifacts")
            .join(&hash[..2])
            .join(&hash);
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let second = ex
            .run(&params_pipeline(2, 10, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(second.status, RunStatus::Succeeded);
        assert_eq!(calls.take(), ["scaled"]);
        assert!(file.exists(), "the artifact is written again");
        // A damaged artifact is a miss too.
        std::fs::write(&file, b"not what was stored").unwrap();
        ex.run(&params_pipeline(2, 10, &calls), RunOptions::default())
            .unwrap();
        assert_eq!(calls.take(), ["scaled"]);
        let third = ex
            .run(&params_pipeline(2, 10, &calls), RunOptions::default())
            .unwrap();
        assert!(calls.take().is_empty());
        assert_eq!(ex.output::<Vec<i64>>(&third, "join").unwrap(), [13, 16, 19]);
    });
}

#[test]
fn concurrent_runs_of_one_pipeline_do_not_corrupt_the_cache() {
    each_backend(|project| {
        let calls = Calls::default();
        let reports: Vec<RunReport> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let calls = calls.clone();
                    let metadata = project.reopen();
                    let artifacts = project.artifacts.clone();
                    scope.spawn(move || {
                        let ex = riffle_pipeline::Executor::new(artifacts, metadata);
                        ex.run(&params_pipeline(5, 1, &calls), RunOptions::default())
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &reports {
            assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
        }
        let hashes: Vec<_> = reports
            .iter()
            .map(|r| r.step("join").unwrap().output)
            .collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]));
        calls.take();
        let ex = project.executor();
        let after = ex
            .run(&params_pipeline(5, 1, &calls), RunOptions::default())
            .unwrap();
        assert!(
            calls.take().is_empty(),
            "everything is cached after the concurrent runs"
        );
        assert!(after.steps.iter().all(|s| s.status == StepStatus::Cached));
        assert_eq!(ex.output::<Vec<i64>>(&after, "join").unwrap(), [7, 13, 19]);
    });
}

#[test]
fn the_runtime_and_declared_config_are_part_of_the_key() {
    each_backend(|project| {
        let ex = project.executor();
        let ran = Arc::new(AtomicUsize::new(0));
        let build = |ran: Arc<AtomicUsize>| {
            let mut p = Pipeline::builder("daily");
            p.config(
                riffle_pipeline::Config::new()
                    .env("dev", [("table", "t_dev")])
                    .env("prod", [("table", "t")])
                    .default_env("dev"),
            );
            p.step("extract", (), move |ctx, ()| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(format!(
                    "{} {}",
                    ctx.config("table")?,
                    ctx.runtime()?.date()
                ))
            })
            .uses_runtime()
            .uses_config(&["table"])
            .version("1");
            p.build().unwrap()
        };
        let p = build(ran.clone());
        let opts = |rt: &str, env: &str| RunOptions {
            runtime: Some(rt.parse().unwrap()),
            environment: Some(env.to_string()),
            ..Default::default()
        };
        let r = ex.run(&p, opts("2024-01-01", "dev")).unwrap();
        assert_eq!(
            ex.output::<String>(&r, "extract").unwrap(),
            "t_dev 2024-01-01"
        );
        ex.run(&p, opts("2024-01-01", "dev")).unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        ex.run(&p, opts("2024-01-02", "dev")).unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        let r = ex.run(&p, opts("2024-01-02", "prod")).unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        assert_eq!(ex.output::<String>(&r, "extract").unwrap(), "t 2024-01-02");
    });
}

#[test]
fn an_always_run_step_runs_every_time_and_downstream_is_cached_by_content() {
    each_backend(|project| {
        let ex = project.executor();
        let file = project.dir.path().join("input.txt");
        std::fs::write(&file, "1 2 3").unwrap();
        let calls = Calls::default();
        let build = || {
            let mut p = Pipeline::builder("files");
            let path = file.clone();
            let c = calls.clone();
            let text = p
                .step("read", (), move |_ctx, ()| {
                    c.hit("read");
                    Ok(std::fs::read_to_string(&path)?)
                })
                .always_run()
                .output();
            let c = calls.clone();
            p.step("count", &text, move |_ctx, t: String| {
                c.hit("count");
                Ok(t.split_whitespace().count())
            })
            .version("1");
            p.build().unwrap()
        };
        ex.run(&build(), RunOptions::default()).unwrap();
        assert_eq!(calls.take(), ["count", "read"]);
        ex.run(&build(), RunOptions::default()).unwrap();
        assert_eq!(calls.take(), ["read"], "same file content: count is cached");
        std::fs::write(&file, "1 2 3 4").unwrap();
        let r = ex.run(&build(), RunOptions::default()).unwrap();
        assert_eq!(calls.take(), ["count", "read"]);
        assert_eq!(ex.output::<usize>(&r, "count").unwrap(), 4);
    });
}
