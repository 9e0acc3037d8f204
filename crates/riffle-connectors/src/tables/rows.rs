//! Typed items and Arrow: the schema of a serde type, a batch of items as one
//! Parquet file, and Arrow record batches back into items (through `serde_arrow`).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::FieldRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};

/// The Arrow fields of `T`'s serde shape: plain (not large) strings, binaries and
/// lists, the types every Parquet and Delta reader knows.
pub(crate) fn fields_of<T: DeserializeOwned>() -> Result<Vec<FieldRef>, String> {
    let options = TracingOptions::default()
        .strings_as_large_utf8(false)
        .bytes_as_large_binary(false)
        .sequence_as_large_list(false);
    Vec::<FieldRef>::from_type::<T>(options)
        .map_err(|e| format!("cannot derive an Arrow schema from the item type: {e}"))
}

/// `items` as a record batch of `fields`.
pub(crate) fn to_batch<T: Serialize>(
    fields: &[FieldRef],
    items: &[T],
) -> Result<RecordBatch, String> {
    serde_arrow::to_record_batch(fields, &items)
        .map_err(|e| format!("cannot turn the items into Arrow columns: {e}"))
}

/// `items` as the bytes of one Parquet file (Snappy pages).
pub(crate) fn to_parquet<T: Serialize>(
    fields: &[FieldRef],
    items: &[T],
) -> Result<Vec<u8>, String> {
    let batch = to_batch(fields, items)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let failed = |e: parquet::errors::ParquetError| format!("cannot write Parquet: {e}");
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).map_err(failed)?;
    writer.write(&batch).map_err(failed)?;
    writer.close().map_err(failed)?;
    Ok(out)
}

/// The rows of `batch` as items. When the batch as a whole does not decode, each
/// row is tried alone: the answer is then, for each row, the item or the reason.
pub(crate) fn from_batch<T: DeserializeOwned>(batch: &RecordBatch) -> Vec<Result<T, String>> {
    match serde_arrow::from_record_batch::<Vec<T>>(batch) {
        Ok(items) => items.into_iter().map(Ok).collect(),
        Err(_) => (0..batch.num_rows())
            .map(|i| {
                serde_arrow::from_record_batch::<Vec<T>>(&batch.slice(i, 1))
                    .map_err(|e| format!("the row does not decode as the item type: {e}"))
                    .and_then(|mut one| one.pop().ok_or_else(|| "an empty row".to_string()))
            })
            .collect(),
    }
}

/// A batch's schema fields, shared.
pub(crate) fn schema_fields(batch: &RecordBatch) -> Vec<FieldRef> {
    batch.schema().fields().iter().map(Arc::clone).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: i64,
        item: String,
        note: Option<String>,
    }

    #[test]
    fn items_go_to_parquet_and_back() {
        let fields = fields_of::<Order>().unwrap();
        let items = vec![
            Order {
                id: 1,
                item: "tea".into(),
                note: None,
            },
            Order {
                id: 2,
                item: "jam".into(),
                note: Some("x".into()),
            },
        ];
        let bytes = to_parquet(&fields, &items).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(bytes),
            1024,
        )
        .unwrap();
        let back: Vec<Order> = reader
            .flat_map(|b| from_batch::<Order>(&b.unwrap()))
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, items);
    }
}
