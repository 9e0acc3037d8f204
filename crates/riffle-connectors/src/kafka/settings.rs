//! How to reach a Kafka cluster: [`KafkaSettings`], shared by the source and the sink.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// The brokers and client properties of one Kafka cluster.
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[kafka] brokers = "b1:9092,b2:9092"` with a `properties` table of librdkafka
/// settings. Credentials are never read from it; [`KafkaSettings::from_env`] and
/// the client add them from the environment.
///
/// ```
/// use riffle_connectors::kafka::KafkaSettings;
/// let s: KafkaSettings = serde_json::from_str(
///     r#"{"brokers": "127.0.0.1:9092", "properties": {"compression.type": "lz4"}}"#,
/// ).unwrap();
/// assert_eq!(s.brokers, "127.0.0.1:9092");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// Extra librdkafka properties (`compression.type`, `security.protocol`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How long set-up calls (metadata, offsets, transactions) may take, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Variables credentials are read from.
const ENV_USERNAME: &str = "RIFFLE_KAFKA_SASL_USERNAME";
const ENV_PASSWORD: &str = "RIFFLE_KAFKA_SASL_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_KAFKA_SASL_PASSWORD_FILE";

impl KafkaSettings {
    /// Settings for the cluster at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Settings from `RIFFLE_KAFKA_BROKERS`.
    pub fn from_env() -> Result<Self, ConnectorError> {
        let brokers = std::env::var("RIFFLE_KAFKA_BROKERS").map_err(|_| {
            ConnectorError::new("kafka", "(no brokers)", "RIFFLE_KAFKA_BROKERS is not set")
        })?;
        Ok(Self::new(brokers))
    }

    /// The same settings with one more librdkafka property.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The same settings with another timeout for set-up calls.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    pub(crate) fn timeout_duration(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// An error at these brokers.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("kafka", format!("brokers {}", self.brokers), action)
    }

    /// A client configuration: the brokers, the properties, then credentials from
    /// the environment.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, ConnectorError> {
        if self.brokers.trim().is_empty() {
            return Err(self.error("no brokers given"));
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // librdkafka's own log lines go through its logger; keep them short.
        config.set("log.connection.close", "false");
        for (name, value) in &self.properties {
            if name.starts_with("sasl.password") || name == "ssl.key.password" {
                return Err(self.error(format!(
                    "property {name:?} holds a secret: set it through {ENV_PASSWORD} or \
                     {ENV_PASSWORD_FILE}, never in settings"
                )));
            }
            config.set(name, value);
        }
        if let Ok(user) = std::env::var(ENV_USERNAME) {
            config.set("sasl.username", user);
        }
        let password =
            crate::credentials::secret(ENV_PASSWORD, ENV_PASSWORD_FILE, |a| self.error(a))?;
        if let Some(password) = password {
            config.set("sasl.password", password);
        }
        Ok(config)
    }
}
