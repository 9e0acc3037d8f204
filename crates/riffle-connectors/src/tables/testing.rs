//! Parquet folders and Delta tables as [`Target`]s of the conformance kit: a
//! Parquet source copying into a Parquet dataset ([`ParquetTarget`]) or into a
//! Delta table ([`DeltaTarget`]), in a local folder or on the moto S3 server
//! `scripts/test.d/40-s3.sh` starts. What is written is read back by this crate's
//! own readers here; the tests also read it with pyarrow and delta-rs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{DeltaSink, ParquetFiles, ParquetRow, ParquetSource, rows};
use crate::conformance::{Target, unique};
use crate::objects::testing::ObjectsTarget;
use crate::objects::{ObjectSink, ObjectStoreSettings, STAGING};

/// The rows the checks write and read: one text column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextRow {
    /// The value.
    pub text: String,
}

/// Rows per row group in the files the checks write (small, so that resumed runs
/// start inside and between row groups).
pub const ROW_GROUP: usize = 300;

/// Where the checks' folders are, shared by both targets.
#[derive(Debug, Clone)]
pub struct Tables {
    objects: ObjectsTarget,
    partitions: Arc<Mutex<HashMap<String, usize>>>,
}

impl Tables {
    /// Folders under a new temporary local folder.
    pub fn local() -> Self {
        Self::on(ObjectsTarget::local())
    }

    /// Folders in a new bucket of the test S3 server; `None` (with a note) without
    /// one, a panic under `CI=true` (see [`ObjectsTarget::s3_from_env`]).
    pub fn s3_from_env() -> Option<Self> {
        ObjectsTarget::s3_from_env().map(Self::on)
    }

    fn on(objects: ObjectsTarget) -> Self {
        Self {
            objects,
            partitions: Arc::default(),
        }
    }

    /// The settings of folder `name`.
    pub fn settings(&self, name: &str) -> ObjectStoreSettings {
        self.objects.settings(name)
    }

    /// The base URL the folders are under.
    pub fn base(&self) -> String {
        self.objects.server()
    }

    fn create(&self, hint: &str, partitions: usize) -> String {
        let name = unique(hint);
        self.partitions
            .lock()
            .expect("the partitions")
            .insert(name.clone(), partitions.max(1));
        name
    }

    /// Writes `values` as Parquet files `in-NNN.parquet` of folder `name`, spread
    /// over its partitions, in row groups of [`ROW_GROUP`] rows.
    pub fn write_parquet(&self, name: &str, values: &[String]) {
        let parts = *self
            .partitions
            .lock()
            .expect("the partitions")
            .get(name)
            .unwrap_or(&1);
        let folder = self.settings(name).open(true).expect("the folder");
        let fields = rows::fields_of::<TextRow>().expect("a schema");
        for p in 0..parts {
            let items: Vec<TextRow> = values
                .iter()
                .skip(p)
                .step_by(parts)
                .map(|v| TextRow { text: v.clone() })
                .collect();
            let batch = rows::to_batch(&fields, &items).expect("a batch");
            let properties = WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROW_GROUP))
                .build();
            let mut bytes = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
                .expect("a writer");
            writer.write(&batch).expect("rows written");
            writer.close().expect("a file");
            let path = folder.child(&format!("in-{p:03}.parquet"));
            crate::runtime::handle()
                .block_on(
                    folder
                        .store
                        .put(&path, PutPayload::from(Bytes::from(bytes))),
                )
                .expect("a file put");
        }
    }

    /// The texts of the Parquet file at `path` of folder `name`.
    pub fn read_file(&self, name: &str, path: &str) -> Vec<String> {
        let folder = self.settings(name).open(false).expect("the folder");
        let bytes = crate::runtime::handle().block_on(async {
            folder
                .store
                .get(&folder.child(path))
                .await
                .expect("a file")
                .bytes()
                .await
                .expect("its bytes")
        });
        let reader = ParquetRecordBatchReader::try_new(bytes, 1024).expect("a Parquet file");
        reader
            .flat_map(|b| rows::from_batch::<TextRow>(&b.expect("a batch")))
            .map(|r| r.expect("a text row").text)
            .collect()
    }

    /// The objects of folder `name` (staged ones included when asked).
    pub fn names(&self, name: &str, staged: bool) -> Vec<String> {
        let Ok(folder) = self.settings(name).open(false) else {
            return Vec::new();
        };
        crate::runtime::handle().block_on(async {
            let mut out = Vec::new();
            let mut listing = folder.store.list(Some(&folder.prefix));
            while let Some(meta) = listing.next().await {
                let object = folder.name(&meta.expect("a listing").location);
                if staged || !object.starts_with(STAGING) {
                    out.push(object);
                }
            }
            out.sort();
            out
        })
    }

    fn source(&self, name: &str) -> ParquetSource<TextRow> {
        ParquetSource::new(self.settings(name)).tail(false)
    }

    fn unreachable_source(&self) -> ParquetSource<TextRow> {
        let nowhere = ObjectStoreSettings::new("s3://nowhere/in")
            .option("aws_endpoint", "http://127.0.0.1:1")
            .option("aws_allow_http", "true")
            .option("aws_region", "us-east-1")
            .option("aws_skip_signature", "true")
            .option("timeout", "2s");
        // No patience: the server never answers, so no outage to ride out.
        ParquetSource::new(nowhere)
            .tail(false)
            .patience(std::time::Duration::ZERO)
    }
}

/// A Parquet source copying into a Parquet dataset (the object sink with
/// [`ParquetFiles`]).
#[derive(Debug, Clone)]
pub struct ParquetTarget(pub Tables);

/// A Parquet source copying into a Delta table ([`DeltaSink`]).
#[derive(Debug, Clone)]
pub struct DeltaTarget(pub Tables);

impl Target for ParquetTarget {
    type Source = ParquetSource<TextRow>;
    type Sink = ObjectSink<ParquetFiles<TextRow>>;

    fn server(&self) -> String {
        self.0.base()
    }
    fn create(&self, hint: &str, partitions: usize) -> String {
        self.0.create(hint, partitions)
    }
    fn write(&self, stream: &str, values: &[String]) {
        self.0.write_parquet(stream, values);
    }
    fn read(&self, stream: &str) -> Vec<String> {
        self.0
            .names(stream, false)
            .iter()
            .filter(|n| n.ends_with(".parquet"))
            .flat_map(|n| self.0.read_file(stream, n))
            .collect()
    }
    fn source(&self, stream: &str) -> Self::Source {
        self.0.source(stream)
    }
    fn unreachable_source(&self) -> Self::Source {
        self.0.unreachable_source()
    }
    fn sink(&self, stream: &str, _id: &str) -> Self::Sink {
        ObjectSink::new(self.0.settings(stream))
            .encoding(ParquetFiles::new())
            .parts(2)
    }
    fn value(item: ParquetRow<TextRow>) -> Option<String> {
        Some(item.value.text)
    }
    fn record(value: String) -> TextRow {
        TextRow { text: value }
    }
    fn exactly_once(&self) -> bool {
        true
    }
}

impl Target for DeltaTarget {
    type Source = ParquetSource<TextRow>;
    type Sink = DeltaSink<TextRow>;

    fn server(&self) -> String {
        self.0.base()
    }
    fn create(&self, hint: &str, partitions: usize) -> String {
        self.0.create(hint, partitions)
    }
    fn write(&self, stream: &str, values: &[String]) {
        self.0.write_parquet(stream, values);
    }
    fn read(&self, stream: &str) -> Vec<String> {
        let Ok(files) = super::delta::table_files(&self.0.settings(stream)) else {
            return Vec::new();
        };
        files
            .iter()
            .flat_map(|f| self.0.read_file(stream, f))
            .collect()
    }
    fn source(&self, stream: &str) -> Self::Source {
        self.0.source(stream)
    }
    fn unreachable_source(&self) -> Self::Source {
        self.0.unreachable_source()
    }
    fn sink(&self, stream: &str, id: &str) -> Self::Sink {
        DeltaSink::new(self.0.settings(stream)).parts(2).app_id(id)
    }
    fn value(item: ParquetRow<TextRow>) -> Option<String> {
        Some(item.value.text)
    }
    fn record(value: String) -> TextRow {
        TextRow { text: value }
    }
    fn exactly_once(&self) -> bool {
        true
    }
}
