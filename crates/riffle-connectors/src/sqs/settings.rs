//! How to reach SQS: [`SqsSettings`], shared by the source, the sink and the
//! managed resources, and the credentials, which come from the environment only.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sigv4::Keys;
use crate::ConnectorError;

/// Where SQS is: the region and, for anything that is not AWS itself (moto,
/// ElasticMQ, LocalStack, a VPC endpoint), the endpoint.
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[sqs] region = "eu-west-1"`. Left out, the region comes from `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`) and the endpoint from `AWS_ENDPOINT_URL_SQS` (or
/// `AWS_ENDPOINT_URL`), as the AWS tools read them; without one, the endpoint is
/// `https://sqs.{region}.amazonaws.com`. Credentials are never read from settings:
/// they come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (or
/// `AWS_SECRET_ACCESS_KEY_FILE`) and `AWS_SESSION_TOKEN`.
///
/// ```
/// use riffle_connectors::sqs::SqsSettings;
/// let s: SqsSettings =
///     serde_json::from_str(r#"{"region": "eu-west-1", "endpoint": "http://127.0.0.1:5000"}"#)
///         .unwrap();
/// assert_eq!(s.endpoint_url().unwrap(), "http://127.0.0.1:5000");
/// assert_eq!(s.timeout_ms, 10_000);
/// let aws = SqsSettings::new("eu-west-1");
/// # if std::env::var("AWS_ENDPOINT_URL").is_err() && std::env::var("AWS_ENDPOINT_URL_SQS").is_err() {
/// assert_eq!(aws.endpoint_url().unwrap(), "https://sqs.eu-west-1.amazonaws.com");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SqsSettings {
    /// The AWS region (`us-east-1`, ...); `None`: `AWS_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// The endpoint (`http://127.0.0.1:5000` for moto); `None`:
    /// `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, else AWS's own.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How long one request may take, in ms, and how long a request that cannot
    /// reach the endpoint is tried again before it fails (a source's reads wait
    /// for ever once it has started).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

const ENV_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const ENV_SECRET: &str = "AWS_SECRET_ACCESS_KEY";
const ENV_SECRET_FILE: &str = "AWS_SECRET_ACCESS_KEY_FILE";
const ENV_TOKEN: &str = "AWS_SESSION_TOKEN";

impl SqsSettings {
    /// Settings for SQS in `region`, at AWS's endpoint unless the environment
    /// names another.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: Some(region.into()),
            endpoint: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Region and endpoint from the environment only.
    pub fn from_env() -> Self {
        Self {
            timeout_ms: default_timeout_ms(),
            ..Self::default()
        }
    }

    /// The same settings at another endpoint (moto, ElasticMQ, a VPC endpoint).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The same settings with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    pub(crate) fn timeout_duration(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The region: the settings', else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub fn region_name(&self) -> Result<String, ConnectorError> {
        self.region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| env_nonempty("AWS_REGION"))
            .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                ConnectorError::new(
                    "sqs",
                    "(no region)",
                    "no AWS region: set the settings' region or AWS_REGION",
                )
            })
    }

    /// The endpoint requests go to.
    pub fn endpoint_url(&self) -> Result<String, ConnectorError> {
        if let Some(e) = self
            .endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_SQS"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
        {
            return Ok(e.trim_end_matches('/').to_string());
        }
        Ok(format!("https://sqs.{}.amazonaws.com", self.region_name()?))
    }

    /// The endpoint as errors name it.
    pub fn server(&self) -> String {
        self.endpoint_url()
            .unwrap_or_else(|_| "(no endpoint)".to_string())
    }

    /// An error at this endpoint.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("sqs", self.server(), action)
    }

    /// The keys requests are signed with, from the environment.
    pub(crate) fn keys(&self) -> Result<Keys, ConnectorError> {
        let access_key_id = env_nonempty(ENV_KEY_ID).ok_or_else(|| {
            self.error(format!(
                "no credentials: set {ENV_KEY_ID} and {ENV_SECRET} (or {ENV_SECRET_FILE})"
            ))
        })?;
        let secret_access_key =
            crate::credentials::secret(ENV_SECRET, ENV_SECRET_FILE, |a| self.error(a))?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    self.error(format!(
                        "{ENV_KEY_ID} is set but not {ENV_SECRET} (or {ENV_SECRET_FILE})"
                    ))
                })?;
        Ok(Keys {
            access_key_id,
            secret_access_key,
            session_token: env_nonempty(ENV_TOKEN),
        })
    }
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}
