//! The artifact store: step outputs as immutable, content-addressed objects.
//!
//! Every output is stored once under a name made only of its BLAKE3 hash
//! (`artifacts/ab/abcdef...`), so no path is ever built from user text, two runs that
//! write the same bytes write the same object, and a write is atomic (the object store
//! writes a whole object or nothing). Reading an artifact back checks its hash; bytes
//! that do not match (or a missing object) are reported as absent, never trusted.
//!
//! The store is any [`object_store`] backend: a local folder (the default, under the
//! project's `.riffle/`), memory, or S3, GCS and Azure by URL (`s3://bucket/prefix`,
//! `gs://...`, `az://...`), with credentials taken from the usual environment
//! variables (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`...;
//! only variables starting with `AWS_`, `GOOGLE_` or `AZURE_` are read). An
//! S3-compatible server (MinIO, Ceph, ...) is reached with `AWS_ENDPOINT=http://host:port`
//! (and `AWS_ALLOW_HTTP=true` for plain HTTP); its bucket must exist.

use std::future::Future;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::codec::{ContentHash, Encoded};
use crate::error::{Error, Result};

/// Where artifacts live; see the [module docs](self).
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    driver: Arc<Driver>,
}

/// How the store's futures are driven: inline for local folders and memory (their
/// operations do not need a reactor), on a tokio runtime for network stores.
enum Driver {
    Inline,
    Tokio(tokio::runtime::Runtime),
}

impl Driver {
    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match self {
            Driver::Inline => block_on_inline(fut),
            Driver::Tokio(rt) => rt.block_on(fut),
        }
    }
}

fn block_on_inline<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}

impl ArtifactStore {
    /// A store in the local folder `dir` (created if missing).
    ///
    /// ```
    /// use riffle_pipeline::{ArtifactStore, codec};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ArtifactStore::local(dir.path())?;
    /// let value = codec::encode(&vec![1.5_f64, 2.5], "example")?;
    /// store.put(&value)?;
    /// let back = store.get(&value.hash)?.expect("stored");
    /// assert_eq!(back, value.bytes);
    /// # Ok::<(), riffle_pipeline::Error>(())
    /// ```
    pub fn local(dir: &FsPath) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "creating the artifact folder", e))?;
        let dir = &std::fs::canonicalize(dir)
            .map_err(|e| Error::io(dir, "resolving the artifact folder", e))?;
        let url = format!("file://{}", dir.display());
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| Error::ArtifactStore {
            url: url.clone(),
            what: "opening the folder".into(),
            source: Box::new(e),
        })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            url,
            driver: Arc::new(Driver::Inline),
        })
    }

    /// A store in memory, gone with the process.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            prefix: Path::default(),
            url: "memory:///".into(),
            driver: Arc::new(Driver::Inline),
        }
    }

    /// A store by URL: `file:///abs/dir`, `memory:///`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`, ...
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |why: String| Error::InvalidStoreUrl {
            url: url.to_string(),
            why,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute local path".into()))?;
                return Self::local(&dir);
            }
            "memory" => return Ok(Self::memory()),
            _ => {}
        }
        // Only the cloud providers' own variables: object_store also reads unprefixed
        // names (`ENDPOINT`, `TOKEN`, `REGION`, ...) that mean other things elsewhere.
        let options = std::env::vars().filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.to_ascii_uppercase().starts_with(p))
        });
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|e| invalid(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", "starting the artifact store's runtime", e))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            url: url.to_string(),
            driver: Arc::new(Driver::Tokio(rt)),
        })
    }

    /// The store's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn location(&self, hash: &ContentHash) -> Path {
        let hex = hash.to_hex();
        self.prefix
            .clone()
            .join("artifacts")
            .join(&hex[..2])
            .join(hex.as_str())
    }

    /// The URI of the artifact with `hash`, as recorded in the metadata store.
    pub fn uri(&self, hash: &ContentHash) -> String {
        let hex = hash.to_hex();
        format!(
            "{}/artifacts/{}/{hex}",
            self.url.trim_end_matches('/'),
            &hex[..2]
        )
    }

    fn failed(&self, what: String, e: object_store::Error) -> Error {
        Error::ArtifactStore {
            url: self.url.clone(),
            what,
            source: Box::new(e),
        }
    }

    /// Stores an encoded value under its hash; returns its URI.
    pub fn put(&self, value: &Encoded) -> Result<String> {
        let location = self.location(&value.hash);
        let payload = PutPayload::from_bytes(value.bytes.clone());
        self.driver
            .block_on(self.store.put(&location, payload))
            .map_err(|e| self.failed(format!("writing artifact {}", value.hash), e))?;
        Ok(self.uri(&value.hash))
    }

    /// The bytes stored under `hash`, if present and intact; a missing object or bytes
    /// that no longer hash to `hash` give `None`.
    pub fn get(&self, hash: &ContentHash) -> Result<Option<Bytes>> {
        let location = self.location(hash);
        let read = self.driver.block_on(async {
            match self.store.get(&location).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match read {
            Ok(Some(bytes)) if ContentHash::of(&bytes) == *hash => Ok(Some(bytes)),
            Ok(Some(_)) => {
                tracing::warn!(artifact = %hash, "artifact bytes do not match their hash; ignoring them");
                Ok(None)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.failed(format!("reading artifact {hash}"), e)),
        }
    }

    /// Writes `bytes` as the file `name` directly under the store's prefix, beside
    /// the artifacts rather than among them: for files Riffle names itself, such as
    /// the partition files of a dataflow's recovery-store backup (`part-0.sqlite3`).
    /// A name that is not one plain file name (ASCII letters, digits, `-`, `_`, `.`,
    /// not starting with a dot) is refused, so user text never becomes a path.
    pub fn put_file(&self, name: &str, bytes: Bytes) -> Result<()> {
        let location = self.file_location(name)?;
        self.driver
            .block_on(self.store.put(&location, PutPayload::from_bytes(bytes)))
            .map_err(|e| self.failed(format!("writing {name}"), e))?;
        Ok(())
    }

    /// The file `name` written by [`ArtifactStore::put_file`], if present.
    pub fn get_file(&self, name: &str) -> Result<Option<Bytes>> {
        let location = self.file_location(name)?;
        self.driver
            .block_on(async {
                match self.store.get(&location).await {
                    Ok(result) => result.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .map_err(|e| self.failed(format!("reading {name}"), e))
    }

    fn file_location(&self, name: &str) -> Result<Path> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(Error::InvalidStoreUrl {
                url: self.url.clone(),
                why: format!("{name:?} is not a plain file name"),
            });
        }
        Ok(self.prefix.clone().join(name))
    }

    /// Deletes the artifact with `hash` (absent is fine).
    pub fn delete(&self, hash: &ContentHash) -> Result<()> {
        let location = self.location(hash);
        match self.driver.block_on(self.store.delete(&location)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(format!("deleting artifact {hash}"), e)),
        }
    }
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn file_and_memory_urls_store_and_check_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        for store in [
            ArtifactStore::from_url(&url).unwrap(),
            ArtifactStore::from_url("memory:///").unwrap(),
        ] {
            let value = codec::encode(&vec![1u32, 2, 3], "numbers").unwrap();
            let uri = store.put(&value).unwrap();
            assert!(uri.starts_with(store.url().trim_end_matches('/')), "{uri}");
            assert_eq!(store.get(&value.hash).unwrap().unwrap(), value.bytes);
            store.delete(&value.hash).unwrap();
            assert!(store.get(&value.hash).unwrap().is_none());
        }
        let hex = codec::encode(&7u8, "n").unwrap().hash.to_hex();
        assert!(
            !dir.path()
                .join("store/artifacts")
                .join(&hex[..2])
                .join(&hex)
                .exists()
        );
    }

    #[test]
    fn named_files_sit_beside_the_artifacts_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = ArtifactStore::from_url(&url).unwrap();
        store
            .put_file("part-0.sqlite3", Bytes::from_static(b"abc"))
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("part-0.sqlite3")).unwrap(),
            b"abc"
        );
        assert_eq!(
            store.get_file("part-0.sqlite3").unwrap().unwrap(),
            &b"abc"[..]
        );
        assert!(store.get_file("part-1.sqlite3").unwrap().is_none());
        for bad in ["../escape", "a/b", "", ".hidden", "sp ace"] {
            let err = store.put_file(bad, Bytes::new()).unwrap_err().to_string();
            assert!(err.contains("not a plain file name"), "{bad:?}: {err}");
        }
        let err = ArtifactStore::from_url("nope://x").unwrap_err().to_string();
        assert!(err.contains("nope://x"), "{err}");
    }
}
