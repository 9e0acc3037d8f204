//! How to reach a RabbitMQ broker: [`RabbitSettings`], shared by the source, the
//! sink and the managed resources.

use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// The address of one RabbitMQ broker (or anything speaking AMQP 0.9.1).
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[rabbitmq] url = "amqp://mq.internal:5672/%2f"`. The URL names the host, the
/// port and the virtual host (`%2f` is `/`, the default one); `amqps://` is TLS.
/// Credentials are never read from it: a password in the URL is refused, and the
/// client takes the user and password from `RIFFLE_RABBITMQ_USERNAME` and
/// `RIFFLE_RABBITMQ_PASSWORD` (or `RIFFLE_RABBITMQ_PASSWORD_FILE`), `guest` /
/// `guest` when neither is set (the broker's default user, allowed from loopback).
///
/// ```
/// use riffle_connectors::rabbitmq::RabbitSettings;
/// let s: RabbitSettings = serde_json::from_str(r#"{"url": "amqp://127.0.0.1:5672/%2f"}"#).unwrap();
/// assert_eq!(s.url, "amqp://127.0.0.1:5672/%2f");
/// assert_eq!(s.timeout_ms, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RabbitSettings {
    /// `amqp://host:port/vhost` (or `amqps://` for TLS).
    pub url: String,
    /// How long connecting and one request may take, in ms; also how long a
    /// connection lost mid-run is retried before the run stops.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Variables credentials are read from.
const ENV_USERNAME: &str = "RIFFLE_RABBITMQ_USERNAME";
const ENV_PASSWORD: &str = "RIFFLE_RABBITMQ_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_RABBITMQ_PASSWORD_FILE";

impl RabbitSettings {
    /// Settings for the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Settings from `RIFFLE_RABBITMQ_URL`.
    pub fn from_env() -> Result<Self, ConnectorError> {
        let url = std::env::var("RIFFLE_RABBITMQ_URL").map_err(|_| {
            ConnectorError::new("rabbitmq", "(no url)", "RIFFLE_RABBITMQ_URL is not set")
        })?;
        Ok(Self::new(url))
    }

    /// The same settings with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    pub(crate) fn timeout_duration(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The URL as errors show it (it never holds a password: those are refused).
    pub fn server(&self) -> String {
        match self.url.split_once('@') {
            Some((user, host)) if user.contains("://") => {
                let (scheme, user) = user.split_once("://").unwrap_or(("amqp", user));
                let name = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{name}:***@{host}")
            }
            _ => self.url.clone(),
        }
    }

    /// An error at this broker.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("rabbitmq", self.server(), action)
    }

    /// The URL parsed, with the credentials from the environment.
    pub(crate) fn uri(&self) -> Result<AMQPUri, ConnectorError> {
        let mut uri: AMQPUri = self
            .url
            .parse()
            .map_err(|e: String| self.error(format!("not an AMQP URL: {e}")))?;
        let userinfo = self
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
            .and_then(|authority| authority.split_once('@'))
            .map(|(userinfo, _)| userinfo);
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(self.error(format!(
                "the URL holds a password: set it through {ENV_PASSWORD} or \
                 {ENV_PASSWORD_FILE}, never in settings"
            )));
        }
        if let Ok(user) = std::env::var(ENV_USERNAME) {
            uri.authority.userinfo.username = user;
        }
        let password =
            crate::credentials::secret(ENV_PASSWORD, ENV_PASSWORD_FILE, |a| self.error(a))?;
        if let Some(password) = password {
            uri.authority.userinfo.password = password;
        }
        Ok(uri)
    }

    /// A connection and a channel on it, within the timeout. The connection lives
    /// as long as any of its channels.
    pub(crate) async fn connect(
        &self,
        name: &str,
    ) -> Result<(Connection, Channel), ConnectorError> {
        let uri = self.uri()?;
        let properties =
            ConnectionProperties::default().with_connection_name(format!("riffle {name}").into());
        let timeout = self.timeout_duration();
        let connected = tokio::time::timeout(timeout, Connection::connect_uri(uri, properties))
            .await
            .map_err(|_| self.error(format!("cannot connect: no answer within {timeout:?}")))?
            .map_err(|e| self.refused(e))?;
        let channel = tokio::time::timeout(timeout, connected.create_channel())
            .await
            .map_err(|_| self.error(format!("cannot open a channel within {timeout:?}")))?
            .map_err(|e| self.error("cannot open a channel").caused_by(e))?;
        Ok((connected, channel))
    }

    /// The error for a failed connection: wrong credentials said as such.
    fn refused(&self, e: lapin::Error) -> ConnectorError {
        let text = e.to_string();
        let action = if text.contains("ACCESS_REFUSED") || text.contains("403") {
            format!(
                "cannot connect: the broker refused the credentials (user from \
                 {ENV_USERNAME}, password from {ENV_PASSWORD} or {ENV_PASSWORD_FILE})"
            )
        } else if text.contains("NOT_ALLOWED") || text.contains("vhost") {
            "cannot connect: the virtual host does not exist or the user may not use it".to_string()
        } else {
            "cannot connect".to_string()
        };
        self.error(action).caused_by(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_a_bad_url_named() {
        let err = RabbitSettings::new("amqp://me:secret@127.0.0.1:5672/%2f")
            .uri()
            .unwrap_err()
            .to_string();
        assert!(err.contains("RIFFLE_RABBITMQ_PASSWORD"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = RabbitSettings::new("http://x")
            .uri()
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://x"), "{err}");
        let uri = RabbitSettings::new("amqp://me@127.0.0.1:5673/v")
            .uri()
            .unwrap();
        assert_eq!(uri.authority.userinfo.username, "me");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.vhost, "v");
    }
}
