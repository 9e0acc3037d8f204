//! `riffle deploy`: the project's settings per environment (`riffle.toml`) and the
//! copy of its DAG files to an environment's DAG folder.
//!
//! ```toml
//! [env.dev]
//! config = "dev"                                  # the pipelines' config environment
//! dags_folder = "build/deployed/dev/dags"         # a folder (relative to the project) ...
//! image_repository = "localhost:5000/my-project"  # where the image is pushed
//!
//! [env.prod]
//! config = "prod"
//! dags_folder = "gs://bucket/dags"                # ... or an object-store URL
//! image_repository = "registry.example/my-project"
//!
//! [env.prod.settings]                             # what `riffle flow ... --env prod` builds with
//! brokers = "kafka-0.prod:9092"
//! replicas = 4
//! ```
//!
//! A Flow's builder reads `[env.E.settings]` through its `FlowContext`: a setting
//! given with `-P` wins, then one in the environment (`RIFFLE_NAME`), then this
//! table. Keep secrets out of it: they belong in the environment.
//!
//! Unknown keys are refused (a typo is an error, not a silent default). DAG files are
//! put one by one, each whole or not at all (a folder gets a temporary file renamed
//! into place; object stores write whole objects); the folder's other files (other
//! projects' DAGs) are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use riffle_pipeline::artifact_store::ArtifactStore;

/// The settings of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSettings {
    /// The pipelines' config environment (the DAGs' `riffle_env` Variable).
    pub config: Option<String>,
    /// Where DAG files go: a folder (relative paths from the project) or a URL.
    pub dags_folder: Option<String>,
    /// Where the image is pushed: `REGISTRY/REPO`.
    pub image_repository: Option<String>,
    /// The settings a Flow is built with in this environment (values as text).
    #[serde(default, deserialize_with = "settings_as_text")]
    pub settings: BTreeMap<String, String>,
}

/// A table of plain values (strings, numbers, booleans) as text.
fn settings_as_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let table = <BTreeMap<String, toml::Value> as serde::Deserialize>::deserialize(deserializer)?;
    table
        .into_iter()
        .map(|(name, value)| match value {
            toml::Value::String(text) => Ok((name, text)),
            toml::Value::Integer(n) => Ok((name, n.to_string())),
            toml::Value::Float(x) => Ok((name, x.to_string())),
            toml::Value::Boolean(b) => Ok((name, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "setting {name:?} is a {}, not a string, number or boolean",
                other.type_str()
            ))),
        })
        .collect()
}

/// `riffle.toml`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The environments by name.
    #[serde(default)]
    pub env: BTreeMap<String, EnvSettings>,
    #[serde(skip)]
    file: PathBuf,
}

/// Why a deployment could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// `riffle.toml` could not be read or parsed.
    #[error("{file}: {why}")]
    Settings {
        /// The file.
        file: PathBuf,
        /// Why.
        why: String,
    },
    /// The environment is not in `riffle.toml`.
    #[error("{file}: no environment {env:?} (known: {known})")]
    UnknownEnv {
        /// The file.
        file: PathBuf,
        /// The environment asked for.
        env: String,
        /// The environments it has.
        known: String,
    },
    /// A key the deployment needs is missing.
    #[error("{file}: [env.{env}] has no {key}")]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The environment.
        env: String,
        /// The key.
        key: &'static str,
    },
    /// Copying a DAG file failed.
    #[error("cannot copy {file} to the DAG folder {folder}: {why}")]
    Copy {
        /// The file.
        file: PathBuf,
        /// The DAG folder.
        folder: String,
        /// Why.
        why: String,
    },
}

impl Settings {
    /// Reads `riffle.toml` in `project`.
    pub fn load(project: &Path) -> Result<Self, DeployError> {
        let file = project.join("riffle.toml");
        let text = std::fs::read_to_string(&file).map_err(|e| DeployError::Settings {
            file: file.clone(),
            why: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, file)
    }

    /// Parses the text of `riffle.toml` (`file` names it in errors).
    pub fn parse(text: &str, file: PathBuf) -> Result<Self, DeployError> {
        let mut settings: Settings = toml::from_str(text).map_err(|e| DeployError::Settings {
            file: file.clone(),
            why: e.to_string().trim().to_string(),
        })?;
        settings.file = file;
        Ok(settings)
    }

    /// One environment's settings.
    pub fn env(&self, name: &str) -> Result<&EnvSettings, DeployError> {
        self.env.get(name).ok_or_else(|| DeployError::UnknownEnv {
            file: self.file.clone(),
            env: name.to_string(),
            known: if self.env.is_empty() {
                "none".into()
            } else {
                self.env.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// A key of an environment that must be there.
    pub fn require<'a>(
        &self,
        env: &str,
        key: &'static str,
        value: &'a Option<String>,
    ) -> Result<&'a str, DeployError> {
        value.as_deref().ok_or_else(|| DeployError::MissingKey {
            file: self.file.clone(),
            env: env.to_string(),
            key,
        })
    }
}

/// Copies every `.py` file of `dags` into `folder` (a path, relative to `project`
/// unless absolute, or an object-store URL). Returns the names copied.
pub fn copy_dags(dags: &Path, folder: &str, project: &Path) -> Result<Vec<String>, DeployError> {
    let failed = |file: &Path, why: String| DeployError::Copy {
        file: file.to_path_buf(),
        folder: folder.to_string(),
        why,
    };
    let store = if folder.contains("://") {
        ArtifactStore::from_url(folder)
    } else {
        let dir = project.join(folder);
        std::fs::create_dir_all(&dir).map_err(|e| failed(&dir, e.to_string()))?;
        ArtifactStore::local(&dir)
    }
    .map_err(|e| failed(dags, e.to_string()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dags)
        .map_err(|e| failed(dags, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(failed(
            dags,
            "no DAG files there (run build-dags first)".into(),
        ));
    }
    let mut copied = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&file).map_err(|e| failed(&file, e.to_string()))?;
        store
            .put_file(&name, bytes.into())
            .map_err(|e| failed(&file, e.to_string()))?;
        copied.push(name);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_and_keys_are_named_in_errors() {
        let file = PathBuf::from("riffle.toml");
        let s = Settings::parse(
            "[env.dev]\ndags_folder = \"d\"\n[env.prod]\nconfig = \"prod\"\n",
            file.clone(),
        )
        .unwrap();
        assert_eq!(s.env("dev").unwrap().dags_folder.as_deref(), Some("d"));
        let err = s.env("staging").unwrap_err().to_string();
        assert!(
            err.contains("no environment \"staging\" (known: dev, prod)"),
            "{err}"
        );
        let prod = s.env("prod").unwrap();
        let err = s
            .require("prod", "dags_folder", &prod.dags_folder)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "riffle.toml: [env.prod] has no dags_folder");
        let err = Settings::parse("[env.dev]\ndag_folder = \"d\"\n", file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dag_folder"), "{err}");
    }

    #[test]
    fn flow_settings_are_text_and_a_table_is_refused() {
        let file = PathBuf::from("riffle.toml");
        let s = Settings::parse(
            "[env.prod.settings]\nbrokers = \"k:9092\"\nreplicas = 4\ntail = true\n",
            file.clone(),
        )
        .unwrap();
        let settings = &s.env("prod").unwrap().settings;
        assert_eq!(settings["brokers"], "k:9092");
        assert_eq!(settings["replicas"], "4");
        assert_eq!(settings["tail"], "true");
        let err = Settings::parse("[env.prod.settings.kafka]\nbrokers = \"k\"\n", file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("setting \"kafka\" is a table"), "{err}");
    }

    #[test]
    fn dag_files_are_copied_beside_the_others() {
        let project = tempfile::tempdir().unwrap();
        let dags = project.path().join("build/dags");
        std::fs::create_dir_all(&dags).unwrap();
        std::fs::write(dags.join("a__1_0.py"), "# a").unwrap();
        std::fs::write(dags.join("notes.txt"), "not a DAG").unwrap();
        let folder = project.path().join("deployed");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("other.py"), "# other").unwrap();
        let copied = copy_dags(&dags, "deployed", project.path()).unwrap();
        assert_eq!(copied, ["a__1_0.py"]);
        assert_eq!(
            std::fs::read_to_string(folder.join("a__1_0.py")).unwrap(),
            "# a"
        );
        assert!(folder.join("other.py").exists());
        assert!(!folder.join("notes.txt").exists());
    }
}
