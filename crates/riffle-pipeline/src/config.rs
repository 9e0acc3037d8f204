//! Configuration per environment: values that differ between `dev` and `prod`, values
//! overridden by environment variables, and secrets that are only ever read from
//! environment variables.
//!
//! A [`Config`] is declared with the pipeline. A run picks an environment
//! (`--config prod`, or the default one) and resolves it into a [`ResolvedConfig`]:
//!
//! 1. values shared by every environment,
//! 2. overridden by the chosen environment's values,
//! 3. overridden by the environment variable `RIFFLE_CONFIG_<KEY>` (the key in upper
//!    case, `-` turned into `_`), when it is set.
//!
//! Secrets name an environment variable; their values are read when the run starts,
//! handed to steps through [`crate::StepContext::secret`], and never written to the
//! metadata store, the cache key or a log.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::ids::check_id;

/// The configuration of a pipeline: environments of key/value pairs and secrets.
///
/// ```
/// use riffle_pipeline::Config;
///
/// let config = Config::new()
///     .value("region", "eu")
///     .env("dev", [("table", "sales_dev")])
///     .env("prod", [("table", "sales")])
///     .secret("db_password", "SALES_DB_PASSWORD")
///     .default_env("dev");
/// let dev = config.resolve("demo", None, |_| None)?;
/// assert_eq!(dev.environment(), "dev");
/// assert_eq!(dev.value("table"), Some("sales_dev"));
/// let prod = config.resolve("demo", Some("prod"), |var| {
///     (var == "RIFFLE_CONFIG_REGION").then(|| "us".to_string())
/// })?;
/// assert_eq!(prod.value("table"), Some("sales"));
/// assert_eq!(prod.value("region"), Some("us"));
/// assert!(config.resolve("demo", Some("staging"), |_| None).is_err());
/// # Ok::<(), riffle_pipeline::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    shared: BTreeMap<String, String>,
    envs: BTreeMap<String, BTreeMap<String, String>>,
    secrets: BTreeMap<String, String>,
    default_env: Option<String>,
    errors: Vec<String>,
}

impl Config {
    /// An empty configuration with no environments.
    pub fn new() -> Self {
        Self::default()
    }

    /// A value shared by every environment.
    pub fn value(mut self, key: &str, value: &str) -> Self {
        self.check(key);
        self.shared.insert(key.to_string(), value.to_string());
        self
    }

    /// An environment and its values (calling it again for the same name adds values).
    pub fn env<'a>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.check(name);
        let values: Vec<_> = values.into_iter().collect();
        for (key, _) in &values {
            self.check(key);
        }
        let env = self.envs.entry(name.to_string()).or_default();
        for (key, value) in values {
            env.insert(key.to_string(), value.to_string());
        }
        self
    }

    /// A secret: its value is read from the environment variable `var` at run time.
    pub fn secret(mut self, key: &str, var: &str) -> Self {
        self.check(key);
        self.secrets.insert(key.to_string(), var.to_string());
        self
    }

    /// The environment used when a run names none.
    pub fn default_env(mut self, name: &str) -> Self {
        self.default_env = Some(name.to_string());
        self
    }

    /// The names of the environments.
    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.envs.keys().map(String::as_str)
    }

    /// The secrets: each key and the environment variable its value is read from.
    pub fn secrets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The environment a run without `--config` uses.
    pub fn default_environment(&self) -> Option<&str> {
        self.default_env.as_deref()
    }

    fn check(&mut self, id: &str) {
        if let Err(e) = check_id("config key", id) {
            self.errors.push(e.to_string());
        }
    }

    /// Resolves environment `env` (or the default one) for pipeline `pipeline`, reading
    /// overrides and secrets through `lookup` (use `|k| std::env::var(k).ok()` for the
    /// process's environment).
    pub fn resolve(
        &self,
        pipeline: &str,
        env: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedConfig> {
        let config_error = |why: String| Error::Config {
            pipeline: pipeline.to_string(),
            why,
        };
        if let Some(first) = self.errors.first() {
            return Err(config_error(first.clone()));
        }
        let chosen = env.map(str::to_string).or_else(|| self.default_env.clone());
        let mut values = self.shared.clone();
        let environment = match chosen {
            Some(name) => {
                let Some(env_values) = self.envs.get(&name) else {
                    let known: Vec<_> = self.envs.keys().cloned().collect();
                    return Err(config_error(format!(
                        "no environment {name:?} (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                };
                values.extend(env_values.iter().map(|(k, v)| (k.clone(), v.clone())));
                name
            }
            None if self.envs.is_empty() => "default".to_string(),
            None => {
                return Err(config_error(
                    "no environment chosen and no default environment declared".to_string(),
                ));
            }
        };
        for (key, value) in values.iter_mut() {
            if let Some(over) = lookup(&override_var(key)) {
                *value = over;
            }
        }
        let secrets = self
            .secrets
            .iter()
            .map(|(key, var)| {
                let secret = Secret {
                    var: var.clone(),
                    value: lookup(var),
                };
                (key.clone(), secret)
            })
            .collect();
        Ok(ResolvedConfig {
            environment,
            values,
            secrets,
        })
    }
}

/// The environment variable that overrides config key `key`.
pub fn override_var(key: &str) -> String {
    format!(
        "RIFFLE_CONFIG_{}",
        key.to_ascii_uppercase().replace('-', "_")
    )
}

/// A secret's value as read from its environment variable; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret {
    var: String,
    value: Option<String>,
}

impl Secret {
    /// The environment variable the value comes from.
    pub fn var(&self) -> &str {
        &self.var
    }

    /// The value, if the variable was set.
    pub fn expose(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secret(${}, {})",
            self.var,
            if self.value.is_some() { "set" } else { "unset" }
        )
    }
}

/// One environment's configuration, ready for a run.
#[derive(Debug, Clone, Default)]
pub struct ResolvedConfig {
    environment: String,
    values: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl ResolvedConfig {
    /// The environment's name (`default` when the pipeline declares none).
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// A value by key.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every value (never secrets), sorted by key: safe to store and show.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// A secret by key.
    pub fn secret(&self, key: &str) -> Option<&Secret> {
        self.secrets.get(key)
    }
}
