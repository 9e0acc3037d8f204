//! Cache keys: when may a step's stored output be reused?
//!
//! A step's key is a BLAKE3 hash over, in order and each length-prefixed so that no two
//! different lists of fields can give the same bytes:
//!
//! - a format tag (`riffle-cache-v1`), the pipeline id and the step id;
//! - the code version (explicit, or the identity of the running binary);
//! - the Rust type of the output;
//! - every parameter, by name, as canonical JSON (object keys sorted, numbers exact);
//! - the runtime, when the step declared it reads it, and the values of the config
//!   keys it declared (secrets never enter a key);
//! - for each input, its name and the full content hash of its bytes.
//!
//! Two runs compute the same key exactly when all of these agree. A key found in the
//! metadata store is a hit only if the artifact it points to can still be read and its
//! bytes still hash to the recorded hash; anything else is a miss and the step runs.

use std::fmt;
use std::sync::OnceLock;

use crate::codec::ContentHash;

/// A step's cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(ContentHash);

impl CacheKey {
    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.0.to_hex()[..12])
    }
}

/// Builds a [`CacheKey`] field by field.
///
/// ```
/// use riffle_pipeline::{CacheKeyBuilder, ContentHash};
///
/// let key = |version: &str, input: &[u8]| {
///     let mut k = CacheKeyBuilder::new("pipe", "step", version, "u64");
///     k.input("load", &ContentHash::of(input));
///     k.finish()
/// };
/// assert_eq!(key("1", b"abc"), key("1", b"abc"));
/// assert_ne!(key("1", b"abc"), key("2", b"abc"));
/// assert_ne!(key("1", b"abc"), key("1", b"abd"));
/// ```
pub struct CacheKeyBuilder(blake3::Hasher);

impl CacheKeyBuilder {
    /// Starts a key for `step` of `pipeline` at `code_version`, whose output is `output_type`.
    pub fn new(pipeline: &str, step: &str, code_version: &str, output_type: &str) -> Self {
        let mut b = CacheKeyBuilder(blake3::Hasher::new());
        b.field(b"riffle-cache-v1");
        b.field(pipeline.as_bytes());
        b.field(step.as_bytes());
        b.field(code_version.as_bytes());
        b.field(output_type.as_bytes());
        b
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds a parameter.
    pub fn param(&mut self, name: &str, value: &serde_json::Value) {
        self.field(b"param");
        self.field(name.as_bytes());
        let mut canonical = Vec::new();
        canonical_json(value, &mut canonical);
        self.field(&canonical);
    }

    /// Adds the runtime.
    pub fn runtime(&mut self, runtime: &crate::Runtime) {
        self.field(b"runtime");
        self.field(runtime.to_string().as_bytes());
    }

    /// Adds a config value.
    pub fn config(&mut self, key: &str, value: Option<&str>) {
        self.field(b"config");
        self.field(key.as_bytes());
        match value {
            Some(v) => {
                self.field(b"some");
                self.field(v.as_bytes());
            }
            None => self.field(b"none"),
        }
    }

    /// Adds an input by name and content hash.
    pub fn input(&mut self, name: &str, hash: &ContentHash) {
        self.field(b"input");
        self.field(name.as_bytes());
        self.field(hash.as_bytes());
    }

    /// The key.
    pub fn finish(&self) -> CacheKey {
        CacheKey(ContentHash::from_blake3(self.0.finalize()))
    }
}

/// JSON with object keys sorted, whatever the map type behind `serde_json::Value`.
fn canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// The code version of steps that declare none: the identity of the running binary
/// (its path, size and modification time), so a rebuilt binary never reuses outputs of
/// an older build's unversioned steps.
pub fn binary_identity() -> &'static str {
    static IDENTITY: OnceLock<String> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let meta = exe.as_ref().and_then(|p| std::fs::metadata(p).ok());
        let mut h = blake3::Hasher::new();
        if let Some(p) = &exe {
            h.update(p.to_string_lossy().as_bytes());
        }
        if let Some(m) = &meta {
            h.update(&m.len().to_le_bytes());
            if let Ok(t) = m.modified()
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                h.update(&d.as_nanos().to_le_bytes());
            }
        }
        format!("binary:{}", &h.finalize().to_hex()[..16])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_change_the_key_and_key_order_does_not() {
        let key = |v: serde_json::Value| {
            let mut k = CacheKeyBuilder::new("p", "s", "1", "T");
            k.param("x", &v);
            k.finish()
        };
        assert_eq!(key(json!({"a": 1, "b": 2})), key(json!({"b": 2, "a": 1})));
        assert_ne!(key(json!(1)), key(json!(2)));
        assert_ne!(key(json!(0.1)), key(json!(0.1000000000000001)));
        assert_ne!(key(json!("1")), key(json!(1)));
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let a = CacheKeyBuilder::new("ab", "c", "1", "T").finish();
        let b = CacheKeyBuilder::new("a", "bc", "1", "T").finish();
        assert_ne!(a, b);
    }
}
