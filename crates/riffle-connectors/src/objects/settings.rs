//! Where the objects are: [`ObjectStoreSettings`], a URL and the store's options.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::outage::Outage;
use crate::ConnectorError;

/// A folder of objects: `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`, `file:///absolute/folder`.
///
/// Plain data: `url` and `options`, the store's non-secret settings by
/// object_store's names (`aws_endpoint`, `aws_region`, `aws_allow_http`, ...).
/// Credentials never come from here: a secret option is refused, and the store
/// reads its provider's variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_ACCOUNT_KEY`, ...) from the
/// environment.
///
/// ```
/// use riffle_connectors::objects::ObjectStoreSettings;
/// let s = ObjectStoreSettings::new("s3://events/raw").option("aws_region", "eu-west-1");
/// assert_eq!(s.url, "s3://events/raw");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStoreSettings {
    /// The folder's URL.
    pub url: String,
    /// The store's options (object_store's keys), secrets excepted.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// An opened folder: the store and the prefix inside it.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
}

impl Folder {
    /// The path of `name` inside the folder.
    pub fn child(&self, name: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// The name of `path` relative to the folder.
    pub fn name(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }
}

impl ObjectStoreSettings {
    /// Settings for the folder at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: BTreeMap::new(),
        }
    }

    /// The same settings with one more store option.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// An error at this folder.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("objects", self.url.clone(), action)
    }

    /// An outage of this folder's store, ridden out for at most `patience`.
    pub(crate) fn outage(&self, patience: Duration) -> Outage {
        Outage::new(format!("objects at {}", self.url), patience)
    }

    /// Opens the store: the options, then the provider's variables from the
    /// environment (only `AWS_*`, `GOOGLE_*` and `AZURE_*`: object_store also reads
    /// unprefixed names that mean other things elsewhere).
    /// A local folder is made when `create` says so (for sinks), and is an error
    /// when missing otherwise.
    pub(crate) fn open(&self, create: bool) -> Result<Folder, ConnectorError> {
        let url = url::Url::parse(&self.url).map_err(|e| self.error("not a URL").caused_by(e))?;
        if url.scheme() == "file" {
            let dir = url
                .to_file_path()
                .map_err(|()| self.error("not an absolute local path"))?;
            if create {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| self.error("cannot make the folder").caused_by(e))?;
            } else if !dir.is_dir() {
                return Err(self.error("the folder does not exist"));
            }
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| self.error("cannot open the folder").caused_by(e))?;
            return Ok(Folder {
                store: Arc::new(store),
                prefix: Path::default(),
            });
        }
        for key in self.options.keys() {
            let k = key.to_ascii_lowercase();
            if [
                "secret",
                "password",
                "token",
                "access_key",
                "account_key",
                "credential",
            ]
            .iter()
            .any(|s| k.contains(s))
            {
                return Err(self.error(format!(
                    "option {key:?} holds a secret: set it through the provider's environment \
                     variable (e.g. AWS_SECRET_ACCESS_KEY), never in settings"
                )));
            }
        }
        let from_env = std::env::vars().filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.to_ascii_uppercase().starts_with(p))
        });
        let options: Vec<(String, String)> = from_env
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .chain(self.options.clone())
            .collect();
        let (store, prefix) = object_store::parse_url_opts(&url, options)
            .map_err(|e| self.error("cannot open the store").caused_by(e))?;
        Ok(Folder {
            store: Arc::from(store),
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_options_and_missing_folders_are_refused() {
        let err = ObjectStoreSettings::new("s3://b")
            .option("aws_secret_access_key", "x")
            .open(false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY") && err.contains("s3://b"),
            "{err}"
        );
        let err = ObjectStoreSettings::new("file:///no/such/riffle/folder")
            .open(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(ObjectStoreSettings::new("not a url").open(true).is_err());
    }
}
