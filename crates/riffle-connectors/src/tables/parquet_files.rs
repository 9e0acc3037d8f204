//! Parquet files as the encoding of the object sink: a Parquet dataset written
//! with the object sink's commit protocol.

use std::marker::PhantomData;

use arrow_schema::FieldRef;

use super::rows;
use crate::objects::FileEncoding;

/// Each object one Parquet file of items of type `T` (serde), its schema derived
/// from `T`; give it to [`ObjectSink::encoding`](crate::objects::ObjectSink::encoding).
///
/// ```
/// use riffle_connectors::objects::{ObjectSink, ObjectStoreSettings};
/// use riffle_connectors::tables::ParquetFiles;
/// #[derive(serde::Deserialize, serde::Serialize, Clone, Debug)]
/// struct Count { word: String, n: i64 }
/// let sink = ObjectSink::new(ObjectStoreSettings::new("file:///data/counts"))
///     .encoding(ParquetFiles::<Count>::new())
///     .parts(2);
/// # drop(sink);
/// ```
pub struct ParquetFiles<T> {
    fields: Result<Vec<FieldRef>, String>,
    _items: PhantomData<fn() -> T>,
}

impl<T: riffle::Data> ParquetFiles<T> {
    /// Parquet files with `T`'s columns (a type serde_arrow cannot trace is an
    /// error at the first write, naming why).
    pub fn new() -> Self {
        Self {
            fields: rows::fields_of::<T>(),
            _items: PhantomData,
        }
    }
}

impl<T: riffle::Data> Default for ParquetFiles<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: riffle::Data> FileEncoding for ParquetFiles<T> {
    type Item = T;

    fn suffix(&self) -> &str {
        ".parquet"
    }

    fn route(&self, item: &T) -> u64 {
        // The item's JSON text: the same on every worker and run.
        riffle::exchange::stable_hash(&serde_json::to_vec(item).unwrap_or_default())
    }

    fn encode(&self, items: &[T]) -> Result<Vec<u8>, String> {
        rows::to_parquet(self.fields.as_ref().map_err(Clone::clone)?, items)
    }
}
