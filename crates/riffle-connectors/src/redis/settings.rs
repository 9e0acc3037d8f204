//! How to reach a Redis server: [`RedisSettings`], shared by the source and the sink.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// The address of one Redis server (or anything speaking its protocol: Valkey,
/// KeyDB, Dragonfly).
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[redis] url = "redis://cache.internal:6379/0"`. Credentials are never read from
/// it: a password in the URL is refused, and the client takes the user and password
/// from `RIFFLE_REDIS_USERNAME` and `RIFFLE_REDIS_PASSWORD` (or
/// `RIFFLE_REDIS_PASSWORD_FILE`).
///
/// A `rediss://` URL connects over TLS: the server's certificate must chain to a
/// CA of the PEM file `tls_ca` (else to the system's trusted roots) and name the
/// host in the URL; `tls_cert` with `tls_key` is a client certificate for servers
/// that verify clients (`tls-auth-clients yes`).
///
/// ```
/// use riffle_connectors::redis::RedisSettings;
/// let s: RedisSettings = serde_json::from_str(r#"{"url": "redis://127.0.0.1:6379"}"#).unwrap();
/// assert_eq!(s.url, "redis://127.0.0.1:6379");
/// assert_eq!(s.timeout_ms, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisSettings {
    /// `redis://host:port/db` (or `rediss://` for TLS, `unix:///path` for a socket).
    pub url: String,
    /// How long connecting and one command may take, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM file of the CA certificates that sign the server's certificate
    /// (`rediss://` URLs only); the system's trusted roots otherwise.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that verify clients; goes with
    /// `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Variables credentials are read from.
const ENV_USERNAME: &str = "RIFFLE_REDIS_USERNAME";
const ENV_PASSWORD: &str = "RIFFLE_REDIS_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_REDIS_PASSWORD_FILE";

impl RedisSettings {
    /// Settings for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Settings from `RIFFLE_REDIS_URL`.
    pub fn from_env() -> Result<Self, ConnectorError> {
        let url = std::env::var("RIFFLE_REDIS_URL")
            .map_err(|_| ConnectorError::new("redis", "(no url)", "RIFFLE_REDIS_URL is not set"))?;
        Ok(Self::new(url))
    }

    /// The same settings with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// The same settings trusting the CA certificates of the PEM file `ca` (and
    /// only those) to sign the server's certificate (a `rediss://` URL).
    ///
    /// ```
    /// use riffle_connectors::redis::RedisSettings;
    /// let s = RedisSettings::new("rediss://cache.internal:6380").tls_ca("/etc/riffle/redis-ca.pem");
    /// assert!(s.tls_ca.is_some());
    /// ```
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// The same settings presenting a client certificate (PEM files of the
    /// certificate and its private key) to a server that verifies clients.
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    pub(crate) fn timeout_duration(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The URL as errors show it: a password in it is masked.
    pub fn server(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        match rest.split_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{name}:***@{host}")
            }
            _ => self.url.clone(),
        }
    }

    /// An error at this server.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("redis", self.server(), action)
    }

    /// A client: the URL, then credentials from the environment.
    pub(crate) fn client(&self) -> Result<redis::Client, ConnectorError> {
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| self.error("not a Redis URL").caused_by(e))?;
        if info.redis_settings().password().is_some() {
            return Err(self.error(format!(
                "the URL holds a password: set it through {ENV_PASSWORD} or \
                 {ENV_PASSWORD_FILE}, never in settings"
            )));
        }
        let mut redis_settings = info.redis_settings().clone();
        if let Ok(user) = std::env::var(ENV_USERNAME) {
            redis_settings = redis_settings.set_username(user);
        }
        let password =
            crate::credentials::secret(ENV_PASSWORD, ENV_PASSWORD_FILE, |a| self.error(a))?;
        if let Some(password) = password {
            redis_settings = redis_settings.set_password(password);
        }
        let info = info.set_redis_settings(redis_settings);
        let tls = self.tls_files()?;
        let tls_url = self.url.starts_with("rediss://");
        crate::tls::install_provider();
        match tls {
            None => redis::Client::open(info),
            Some(_) if !tls_url => {
                return Err(
                    self.error("tls_ca, tls_cert and tls_key are for TLS: use a rediss:// URL")
                );
            }
            Some(certs) => redis::Client::build_with_tls(info, certs),
        }
        .map_err(|e| self.error("not a Redis URL").caused_by(e))
    }

    /// The CA and client certificate files, read, when any is set.
    fn tls_files(&self) -> Result<Option<TlsCertificates>, ConnectorError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                self.error(format!("cannot read {}", path.display()))
                    .caused_by(e)
            })
        };
        let client_tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            (None, None) => None,
            _ => return Err(self.error("tls_cert and tls_key go together: give both or neither")),
        };
        let root_cert = self.tls_ca.as_ref().map(read).transpose()?;
        if client_tls.is_none() && root_cert.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// A connection that reconnects by itself after the server went away.
    pub(crate) async fn connect(&self) -> Result<redis::aio::ConnectionManager, ConnectorError> {
        let timeout = self.timeout_duration();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        self.client()?
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| {
                let why = match crate::tls::refusal_in_words(&e) {
                    Some(refused) => format!("cannot connect over TLS: {refused}"),
                    None if self.url.starts_with("rediss://") => {
                        "cannot connect over TLS (does the port speak TLS?)".to_string()
                    }
                    None => "cannot connect".to_string(),
                };
                self.error(why).caused_by(e)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_a_bad_url_named() {
        let err = RedisSettings::new("redis://:secret@127.0.0.1:6379")
            .client()
            .unwrap_err()
            .to_string();
        assert!(err.contains("RIFFLE_REDIS_PASSWORD"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = RedisSettings::new("http://x").client().unwrap_err();
        assert!(err.to_string().contains("http://x"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
