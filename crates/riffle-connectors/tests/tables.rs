//! Parquet and Delta Lake tables: the conformance kit (a Parquet source copying
//! into a Parquet dataset and into a Delta table) on a local folder and on the moto
//! S3 server of `scripts/test.d/40-s3.sh` (skipped with a note without
//! `RIFFLE_TEST_S3_ENDPOINT`, failing under `CI=true`), then the output read back by
//! independent readers (pyarrow, delta-rs, duckdb in the venv of
//! `scripts/test.d/10-python.sh`: `RIFFLE_TEST_PYTHON`), replayed epochs, schema
//! mismatches and undecodable rows; the shared warehouse sink with a warehouse
//! other than Delta.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use riffle::recovery::{Recovery, RecoveryStore};
use riffle::sinks::{FixedPartitionedSink, SinkPartition, TestingSink};
use riffle::{Dataflow, Execution};
use riffle_connectors::ConnectorError;
use riffle_connectors::conformance::{self, Target};
use riffle_connectors::objects::{ObjectSink, ObjectStoreSettings};
use riffle_connectors::tables::testing::{DeltaTarget, ParquetTarget, Tables, TextRow};
use riffle_connectors::tables::warehouse::DataFile;
use riffle_connectors::tables::{
    DeltaSink, ParquetFiles, ParquetSource, Warehouse, WarehouseSink, WarehouseTable, delta,
};

#[test]
fn conformance_parquet_dataset_on_a_local_folder() {
    let local = ParquetTarget(Tables::local());
    conformance::read_after_write(&local);
    conformance::resume_without_loss(&local);
    conformance::rescale(&local);
    conformance::missing_stream(&local);
}

#[test]
fn conformance_delta_on_a_local_folder() {
    let local = DeltaTarget(Tables::local());
    conformance::read_after_write(&local);
    conformance::resume_without_loss(&local);
    conformance::rescale(&local);
}

#[test]
fn conformance_on_s3() {
    let Some(s3) = Tables::s3_from_env() else {
        return;
    };
    let parquet = ParquetTarget(s3.clone());
    conformance::read_after_write(&parquet);
    conformance::resume_without_loss(&parquet);
    conformance::missing_stream(&parquet);
    conformance::unreachable_server(&parquet);
    let delta = DeltaTarget(s3);
    conformance::read_after_write(&delta);
    conformance::resume_without_loss(&delta);
}

/// The commit of a Delta version is a put-if-absent; moto's S3 honours
/// `If-None-Match: *`, so a second writer of the same version is refused there.
#[test]
fn s3_refuses_a_second_put_of_the_same_log_version() {
    use object_store::{ObjectStoreExt, PutMode, PutOptions};
    let Some(s3) = Tables::s3_from_env() else {
        return;
    };
    let settings = s3.settings("put-if-absent");
    let url = url::Url::parse(&settings.url).unwrap();
    let mut options: Vec<(String, String)> = settings.options.clone().into_iter().collect();
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        options.push((key.to_lowercase(), std::env::var(key).unwrap()));
    }
    let (store, prefix) = object_store::parse_url_opts(&url, options).unwrap();
    let path = prefix.join("00000000000000000000.json");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    riffle_connectors::runtime::handle().block_on(async {
        store
            .put_opts(&path, "first".into(), create())
            .await
            .unwrap();
        let second = store.put_opts(&path, "second".into(), create()).await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "{second:?}"
        );
        let kept = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&kept[..], b"first");
    });
}

fn python() -> Option<PathBuf> {
    match std::env::var_os("RIFFLE_TEST_PYTHON") {
        Some(p) if Path::new(&p).exists() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but RIFFLE_TEST_PYTHON is not set (scripts/test.d/10-python.sh)")
        }
        _ => {
            eprintln!(
                "SKIPPED: RIFFLE_TEST_PYTHON is not set; source scripts/test.d/10-python.sh \
                 to read the tables with pyarrow, delta-rs and duckdb"
            );
            None
        }
    }
}

/// Runs `tests/python/tables.py` with `args` and returns its JSON answer.
fn py(python: &Path, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tables.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "tables.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}

fn texts(answer: &serde_json::Value) -> Vec<String> {
    answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_str().expect("a text").to_string())
        .collect()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Written {
    text: String,
    n: i64,
}

/// pyarrow writes a file of 7 row groups; a flow reads it with the Parquet source,
/// failing midway, and resumes from its store into a Delta table and a Parquet
/// dataset; delta-rs, pyarrow and duckdb each read every row exactly once.
#[test]
fn independent_readers_see_every_row_once() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let file = input.join("written-by-pyarrow.parquet");
    py(&python, &["write", file.to_str().unwrap(), "2000", "300"]);
    let table = dir.path().join("table");
    let dataset = dir.path().join("dataset");
    let url = |p: &Path| ObjectStoreSettings::new(format!("file://{}", p.display()));
    let store = dir.path().join("store");
    RecoveryStore::init(&store, 1).unwrap();
    let run = |fail_at: Option<i64>| {
        let flow = Dataflow::new("readers");
        let rows = flow
            .input("in", ParquetSource::<Written>::new(url(&input)).tail(false))
            .unwrap()
            .map("row", move |r| {
                if Some(r.value.n) == fail_at {
                    std::thread::sleep(Duration::from_millis(300));
                    panic!("the test stops the run at {}", r.value.n);
                }
                TextRow { text: r.value.text }
            })
            .unwrap();
        rows.output("delta", DeltaSink::<TextRow>::new(url(&table)).parts(2))
            .unwrap();
        rows.output(
            "dataset",
            ObjectSink::new(url(&dataset))
                .encoding(ParquetFiles::<TextRow>::new())
                .parts(2),
        )
        .unwrap();
        Execution::new()
            .epoch_interval(Duration::from_millis(10))
            .recovery(Recovery::new(&store).snapshot_interval(Duration::from_millis(10)))
            .run(&flow)
    };
    assert!(run(Some(1400)).is_err(), "the first run should stop");
    run(None).expect("the resumed run");
    let want: Vec<String> = (0..2000).map(|i| format!("p{i:06}")).collect();
    let delta = py(&python, &["delta", table.to_str().unwrap()]);
    assert_eq!(texts(&delta), want, "delta-rs reads the Delta table");
    let version = delta["version"].as_u64().unwrap();
    assert!(version >= 2, "a commit per epoch: {delta}");
    assert_eq!(delta["commits"].as_u64().unwrap(), version + 1);
    let parquet = py(&python, &["parquet", dataset.to_str().unwrap()]);
    assert_eq!(texts(&parquet), want, "pyarrow reads the dataset");
    let duck = py(&python, &["duckdb", dataset.to_str().unwrap()]);
    assert_eq!(texts(&duck), want, "duckdb reads the dataset");
}

/// The same Delta table on moto's S3, read back by delta-rs through S3.
#[test]
fn delta_rs_reads_a_table_written_to_s3() {
    let Some(python) = python() else {
        return;
    };
    let Some(s3) = Tables::s3_from_env() else {
        return;
    };
    let target = DeltaTarget(s3.clone());
    conformance::read_after_write(&target);
    // A table of its own, with the rows known.
    let input = target.create("s3-in", 2);
    let values: Vec<String> = (0..500).map(|i| format!("s{i:04}")).collect();
    target.write(&input, &values);
    let output = target.create("s3-table", 1);
    let flow = Dataflow::new("s3-delta");
    flow.input(
        "in",
        ParquetSource::<TextRow>::new(s3.settings(&input)).tail(false),
    )
    .unwrap()
    .map("row", |r| r.value)
    .unwrap()
    .output(
        "out",
        DeltaSink::<TextRow>::new(s3.settings(&output)).parts(2),
    )
    .unwrap();
    riffle::run_main(&flow).unwrap();
    let settings = s3.settings(&output);
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": settings.options["aws_endpoint"],
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": settings.options["aws_region"],
        "AWS_ACCESS_KEY_ID": std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        "AWS_SECRET_ACCESS_KEY": std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
    });
    let read = py(&python, &["delta", &settings.url, &options.to_string()]);
    assert_eq!(texts(&read), values);
}

/// A resumed partition whose prepared file the log already holds (the commit
/// hook ran before the crash) does not add it again.
#[test]
fn a_replayed_epoch_is_found_in_the_log_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ObjectStoreSettings::new(format!("file://{}/t", dir.path().display()));
    let sink = DeltaSink::<TextRow>::new(settings.clone()).app_id("replay");
    let mut part = sink.build_part("out", "part-00000", None).unwrap();
    part.write_batch(vec![TextRow { text: "a".into() }])
        .unwrap();
    let state = part.snapshot().unwrap().unwrap();
    assert_eq!(
        delta::table_files(&settings).unwrap().len(),
        0,
        "not visible before the commit"
    );
    part.commit(&state).unwrap();
    drop(part);
    assert_eq!(delta::table_files(&settings).unwrap().len(), 1);
    // The crash came after the commit hook and before the next snapshot: the
    // store's state still lists the file as prepared.
    let mut again = sink
        .build_part("out", "part-00000", Some(state.clone()))
        .unwrap();
    assert_eq!(
        delta::table_files(&settings).unwrap().len(),
        1,
        "the epoch was replayed"
    );
    again
        .write_batch(vec![TextRow { text: "b".into() }])
        .unwrap();
    let next = again.snapshot().unwrap().unwrap();
    again.commit(&next).unwrap();
    assert_eq!(delta::table_files(&settings).unwrap().len(), 2);
    let log =
        std::fs::read_to_string(dir.path().join("t/_delta_log/00000000000000000002.json")).unwrap();
    assert!(
        log.contains(r#""appId":"replay-part-00000""#) && log.contains(r#""version":2"#),
        "{log}"
    );
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Numbered {
    text: i64,
}

#[test]
fn a_schema_mismatch_names_the_table_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ObjectStoreSettings::new(format!("file://{}/t", dir.path().display()));
    let mut part = DeltaSink::<TextRow>::new(settings.clone())
        .build_part("out", "part-00000", None)
        .unwrap();
    part.close().unwrap();
    let err =
        match DeltaSink::<Numbered>::new(settings.clone()).build_part("out", "part-00000", None) {
            Ok(_) => panic!("a table of strings took numbers"),
            Err(e) => e.to_string(),
        };
    assert!(err.contains(&settings.url), "{err}");
    assert!(
        err.contains("\"text\"") && err.contains("long") && err.contains("string"),
        "{err}"
    );
    assert!(err.contains("\"out\""), "{err}");
}

/// Rows that do not decode stop the run with the object, row group and row; with
/// dead letters they are written there and the run goes on.
#[test]
fn an_undecodable_row_is_named_or_goes_to_the_dead_letters() {
    let tables = Tables::local();
    let target = ParquetTarget(tables.clone());
    let folder = target.create("bad", 1);
    let values: Vec<String> = (0..700).map(|i| format!("{i}")).collect();
    target.write(&folder, &values);
    let flow = Dataflow::new("bad");
    flow.input(
        "in",
        ParquetSource::<Numbered>::new(tables.settings(&folder)).tail(false),
    )
    .unwrap()
    .map("n", |r| r.value.text)
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("\"in\"") && err.contains("in-000.parquet"),
        "{err}"
    );
    assert!(err.contains("row group 0 row 0"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let letters = dir.path().join("dead.jsonl");
    let flow = Dataflow::new("letters");
    let seen = TestingSink::new();
    flow.input(
        "in",
        ParquetSource::<Numbered>::new(tables.settings(&folder))
            .dead_letters(riffle::dead_letters::DeadLetters::file(&letters))
            .tail(false),
    )
    .unwrap()
    .map("n", |r| r.value.text)
    .unwrap()
    .output("out", seen.clone())
    .unwrap();
    riffle::run_main(&flow).unwrap();
    assert!(seen.take().is_empty());
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 700);
    assert_eq!(written[650]["row_group"], 2);
    assert_eq!(written[650]["row"], 50);
}

/// What the warehouse of [`a_warehouse_loads_each_staged_file_once`] holds: the
/// files it loaded and the last version of each app id.
#[derive(Default)]
struct Loaded {
    files: Vec<String>,
    versions: std::collections::BTreeMap<String, u64>,
    /// The next load fails (the warehouse is down).
    down: bool,
}

/// A warehouse keeping its loads in memory, staging into a local folder.
struct Shelf {
    staging: ObjectStoreSettings,
    loaded: std::sync::Arc<std::sync::Mutex<Loaded>>,
}

struct ShelfTable(std::sync::Arc<std::sync::Mutex<Loaded>>);

impl Warehouse for Shelf {
    type Table = ShelfTable;
    fn kind(&self) -> &'static str {
        "shelf"
    }
    fn location(&self) -> String {
        "shelf://counts".into()
    }
    fn staging(&self) -> &ObjectStoreSettings {
        &self.staging
    }
    fn open(&self, fields: &[arrow_schema::FieldRef]) -> Result<ShelfTable, ConnectorError> {
        assert_eq!(fields.len(), 1, "the item's one column");
        assert_eq!(fields[0].name(), "text");
        Ok(ShelfTable(self.loaded.clone()))
    }
}

impl WarehouseTable for ShelfTable {
    fn last_loaded(&mut self, app: &str) -> Result<Option<u64>, ConnectorError> {
        Ok(self.0.lock().unwrap().versions.get(app).copied())
    }
    fn load(&mut self, app: &str, version: u64, file: &DataFile) -> Result<bool, ConnectorError> {
        let mut loaded = self.0.lock().unwrap();
        if std::mem::take(&mut loaded.down) {
            return Err(ConnectorError::new(
                "shelf",
                "shelf://counts",
                "the warehouse is down",
            ));
        }
        if loaded.versions.get(app).is_some_and(|v| *v >= version) {
            return Ok(false);
        }
        loaded.files.push(file.path.clone());
        loaded.versions.insert(app.to_string(), version);
        Ok(true)
    }
}

/// The shared warehouse sink with a warehouse other than Delta: a snapshot
/// stages a Parquet file in the staging folder and loads nothing; a load that
/// fails in the commit hook fails the step and is done by the resumed
/// partition, once however often it resumes; a new run of the same app id goes
/// on after the versions loaded.
#[test]
fn a_warehouse_loads_each_staged_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("staged");
    let loaded = std::sync::Arc::new(std::sync::Mutex::new(Loaded::default()));
    let sink = WarehouseSink::<Shelf, TextRow>::loading(Shelf {
        staging: ObjectStoreSettings::new(format!("file://{}", staged.display())),
        loaded: loaded.clone(),
    })
    .app_id("counts");
    let mut part = sink.build_part("out", "part-00000", None).unwrap();
    part.write_batch(vec![
        TextRow { text: "a".into() },
        TextRow { text: "b".into() },
    ])
    .unwrap();
    let state = part.snapshot().unwrap().unwrap();
    assert_eq!(state.prepared.len(), 1);
    let file = &state.prepared[0].file;
    assert_eq!((state.prepared[0].version, file.rows), (1, 2));
    let bytes = std::fs::read(staged.join(&file.path)).unwrap();
    assert_eq!(bytes.len() as u64, file.size);
    assert!(bytes.starts_with(b"PAR1"), "a Parquet file");
    assert!(
        loaded.lock().unwrap().files.is_empty(),
        "staged, not loaded"
    );

    loaded.lock().unwrap().down = true;
    let err = part.commit(&state).unwrap_err().to_string();
    assert!(
        err.contains("shelf://counts") && err.contains("the warehouse is down"),
        "{err}"
    );
    assert!(err.contains("\"out\""), "{err}");
    drop(part);
    assert!(loaded.lock().unwrap().files.is_empty());

    for _ in 0..2 {
        let again = sink
            .build_part("out", "part-00000", Some(state.clone()))
            .unwrap();
        drop(again);
        let now = loaded.lock().unwrap();
        assert_eq!(now.files, vec![file.path.clone()]);
        assert_eq!(now.versions["counts-part-00000"], 1);
    }

    let mut next = sink.build_part("out", "part-00000", None).unwrap();
    next.write_batch(vec![TextRow { text: "c".into() }])
        .unwrap();
    next.close().unwrap();
    let now = loaded.lock().unwrap();
    assert_eq!(now.files.len(), 2);
    assert_eq!(now.versions["counts-part-00000"], 2);
}

/// The managed-table functions on a local folder and on moto's S3: a table made
/// before any row is a Delta table with the item type's columns that a sink
/// appends to; making it again is a check (an item type with another type for a
/// column is named); deleting it removes every object of its folder (the log and
/// the data files), after which no table is there and a sink makes a new one.
#[test]
fn managed_delta_tables_are_made_checked_and_deleted() {
    use riffle_connectors::tables::delta::admin;

    let mut places = vec![Tables::local()];
    places.extend(Tables::s3_from_env());
    for tables in places {
        let name = conformance::unique("managed");
        let settings = tables.settings(&name);
        assert!(!admin::table_exists(&settings).unwrap());
        assert!(admin::create_table::<TextRow>(&settings).unwrap(), "made");
        assert!(admin::table_exists(&settings).unwrap());
        assert!(delta::read_table::<TextRow>(&settings).unwrap().is_empty());
        assert!(
            !admin::create_table::<TextRow>(&settings).unwrap(),
            "checked"
        );
        let err = admin::create_table::<Numbered>(&settings)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&settings.url), "{err}");
        assert!(err.contains("\"text\"") && err.contains("long"), "{err}");

        let rows = |n: usize| -> Vec<TextRow> {
            (0..n)
                .map(|i| TextRow {
                    text: format!("r{i}"),
                })
                .collect()
        };
        let mut part = DeltaSink::<TextRow>::new(settings.clone())
            .build_part("out", "part-00000", None)
            .unwrap();
        part.write_batch(rows(3)).unwrap();
        part.close().unwrap();
        let mut got = delta::read_table::<TextRow>(&settings).unwrap();
        got.sort_by(|a, b| a.text.cmp(&b.text));
        assert_eq!(got, rows(3));

        assert!(admin::delete_table(&settings).unwrap());
        assert!(!admin::table_exists(&settings).unwrap());
        assert_eq!(tables.names(&name, true), Vec::<String>::new());
        assert!(!admin::delete_table(&settings).unwrap(), "nothing left");
        let mut part = DeltaSink::<TextRow>::new(settings.clone())
            .build_part("out", "part-00000", None)
            .unwrap();
        part.write_batch(rows(1)).unwrap();
        part.close().unwrap();
        assert_eq!(delta::read_table::<TextRow>(&settings).unwrap(), rows(1));
        admin::delete_table(&settings).unwrap();
    }
}
