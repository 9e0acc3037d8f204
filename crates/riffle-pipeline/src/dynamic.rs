//! Steps whose inputs are known only at run time: a list of step ids in, opaque bytes
//! out.
//!
//! The typed builder ([`PipelineBuilder::step`](crate::PipelineBuilder::step)) wires a
//! step to at most six [`Output`](crate::Output) handles whose types the compiler
//! checks. A host language that builds pipelines at run time (the Python package's
//! `riffle.pipeline`) has neither: it knows its steps' inputs as a list of step ids,
//! and encodes its values itself. [`StepInputs`] is that list, usable as the `inputs`
//! of the same builder, and [`Blob`] is the value such a step reads and returns: the
//! host's own encoding of a value, stored as one artifact.
//!
//! Nothing else changes: a dynamic step is cached, retried, timed out and recorded
//! like any other. Its inputs enter its cache key by the content hash of their bytes,
//! so two blobs that differ in one byte are two different inputs.
//!
//! ```
//! use riffle_pipeline::dynamic::{Blob, StepInputs};
//! use riffle_pipeline::{Pipeline, ProjectStores, RunOptions, RunStatus};
//!
//! let mut p = Pipeline::builder("bytes");
//! p.step("left", StepInputs::none(), |_ctx, _: Vec<Blob>| Ok(Blob::from(b"ab".to_vec())))
//!     .version("1");
//! p.step("right", StepInputs::none(), |_ctx, _: Vec<Blob>| Ok(Blob::from(b"cd".to_vec())))
//!     .version("1");
//! p.step("join", StepInputs::new("bytes", ["left", "right"]), |_ctx, inputs: Vec<Blob>| {
//!     Ok(Blob::from(inputs.concat()))
//! })
//! .version("1");
//! let pipeline = p.build()?;
//!
//! let project = tempfile::tempdir().unwrap();
//! let executor = ProjectStores::local(project.path()).executor()?;
//! let report = executor.run(&pipeline, RunOptions::default())?;
//! assert_eq!(report.status, RunStatus::Succeeded);
//! assert_eq!(executor.output::<Blob>(&report, "join")?.as_bytes(), b"abcd");
//! # Ok::<(), riffle_pipeline::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::codec;
use crate::error::Result;
use crate::pipeline::Inputs;

/// Bytes a step's host encoded: stored as they are (behind a length), hashed as they
/// are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(Vec<u8>);

impl Blob {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob(bytes)
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::borrow::Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

// Written as one byte string (postcard: a length, then the bytes as they are), not
// as a sequence of numbers, so a large blob costs one copy either way.
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BlobVisitor)
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Blob, E> {
        Ok(Blob(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<Blob, E> {
        Ok(Blob(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Blob, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(Blob(bytes))
    }
}

/// The inputs of a dynamic step: the outputs of the named steps of the same pipeline,
/// each read as a [`Blob`], in the order given. Every named step must produce a
/// `Blob` (a step of another output type fails to decode, at run time, naming both
/// steps).
#[derive(Debug, Clone)]
pub struct StepInputs {
    pipeline: Arc<str>,
    steps: Vec<Arc<str>>,
}

impl StepInputs {
    /// The outputs of `steps` of pipeline `pipeline` (the id given to
    /// [`Pipeline::builder`](crate::Pipeline::builder); another id is refused by
    /// [`PipelineBuilder::build`](crate::PipelineBuilder::build) as a missing input).
    pub fn new<S: AsRef<str>>(pipeline: &str, steps: impl IntoIterator<Item = S>) -> Self {
        Self {
            pipeline: Arc::from(pipeline),
            steps: steps.into_iter().map(|s| Arc::from(s.as_ref())).collect(),
        }
    }

    /// No inputs: the step's function receives an empty list.
    pub fn none() -> Self {
        Self::new::<&str>("", [])
    }
}

impl Inputs for StepInputs {
    type Values = Vec<Blob>;

    fn sources(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.steps
            .iter()
            .map(|s| (self.pipeline.clone(), s.clone()))
            .collect()
    }

    fn decode(bytes: &[Bytes], step: &str, names: &[String]) -> Result<Vec<Blob>> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let name = names.get(i).map(String::as_str).unwrap_or("?");
                codec::decode(data, &format!("input {name:?} of step {step:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pipeline, ProjectStores, RunOptions, RunStatus};

    #[test]
    fn a_blob_is_its_bytes_behind_a_length() {
        let blob = Blob::from(vec![7_u8; 300]);
        let encoded = codec::encode(&blob, "blob").unwrap();
        // 300 as a varint is 2 bytes.
        assert_eq!(encoded.bytes.len(), 302);
        assert_eq!(&encoded.bytes[2..], blob.as_bytes());
        let back: Blob = codec::decode(&encoded.bytes, "blob").unwrap();
        assert_eq!(back, blob);
    }

    #[test]
    fn one_changed_byte_misses_the_cache_downstream() {
        let project = tempfile::tempdir().unwrap();
        let executor = ProjectStores::local(project.path()).executor().unwrap();
        let build = |middle: u8| {
            let mut p = Pipeline::builder("blobs");
            p.step("load", StepInputs::none(), move |_ctx, _: Vec<Blob>| {
                let mut data = vec![0_u8; 10_000];
                data[5_000] = middle;
                Ok(Blob::from(data))
            })
            .always_run();
            p.step(
                "sum",
                StepInputs::new("blobs", ["load"]),
                |_ctx, inputs: Vec<Blob>| {
                    let total: u64 = inputs[0].as_bytes().iter().map(|&b| u64::from(b)).sum();
                    Ok(Blob::from(total.to_le_bytes().to_vec()))
                },
            )
            .version("1");
            p.build().unwrap()
        };
        let ran = |middle: u8| {
            let report = executor.run(&build(middle), RunOptions::default()).unwrap();
            assert_eq!(report.status, RunStatus::Succeeded);
            !report.step("sum").unwrap().cache_hit
        };
        assert!(ran(1));
        assert!(!ran(1), "same bytes: the cached sum is reused");
        assert!(ran(2), "one byte changed: the sum runs again");
    }

    #[test]
    fn an_input_of_another_pipeline_is_refused() {
        let mut p = Pipeline::builder("here");
        p.step("a", StepInputs::none(), |_ctx, _: Vec<Blob>| {
            Ok(Blob::default())
        });
        p.step(
            "b",
            StepInputs::new("elsewhere", ["a"]),
            |_ctx, _: Vec<Blob>| Ok(Blob::default()),
        );
        let err = p.build().unwrap_err().to_string();
        assert!(err.contains("elsewhere.a"), "{err}");
    }
}
