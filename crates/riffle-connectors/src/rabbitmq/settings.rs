//! How to reach a RabbitMQ broker: [`RabbitSettings`], shared by the source, the
//! sink and the managed resources.
//!
//! An `amqps://` connection is made here rather than by lapin's default: the TCP
//! stream is opened plain and turned into TLS with the rustls configuration of
//! the crate's `tls` module, so the trusted CAs (`tls_ca`, else the system's
//! roots) and the client certificate are read the same way for every connector,
//! and a refused handshake is said in the same words.

use std::path::PathBuf;
use std::time::Duration;

use lapin::tcp::{AMQPUriTcpExt, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
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
/// An `amqps://` URL connects over TLS: the broker's certificate must chain to a
/// CA of the PEM file `tls_ca` (else to the system's trusted roots) and name the
/// host in the URL; `tls_cert` with `tls_key` is a client certificate for brokers
/// that verify clients (`ssl_options.verify = verify_peer` with
/// `fail_if_no_peer_cert = true`). The TLS options with an `amqp://` URL are an
/// error, never a plain connection.
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
    /// A PEM file of the CA certificates that sign the broker's certificate
    /// (`amqps://` URLs only); the system's trusted roots otherwise.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for brokers that verify clients; goes with
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
const ENV_USERNAME: &str = "RIFFLE_RABBITMQ_USERNAME";
const ENV_PASSWORD: &str = "RIFFLE_RABBITMQ_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_RABBITMQ_PASSWORD_FILE";

impl RabbitSettings {
    /// Settings for the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
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

    /// The same settings trusting the CA certificates of the PEM file `ca` (and
    /// only those) to sign the broker's certificate (an `amqps://` URL).
    ///
    /// ```
    /// use riffle_connectors::rabbitmq::RabbitSettings;
    /// let s = RabbitSettings::new("amqps://mq.internal:5671/%2f").tls_ca("/etc/riffle/mq-ca.pem");
    /// assert!(s.tls_ca.is_some());
    /// ```
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// The same settings presenting a client certificate (PEM files of the
    /// certificate and its private key) to a broker that verifies clients.
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
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
        let tls = self.tls_connector(&uri)?;
        let connecting = async {
            match tls {
                Some(tls) => Self::connect_tls(uri, properties, tls).await,
                None => Connection::connect_uri(uri, properties).await,
            }
            .map_err(|e| self.refused(e))
        };
        let connected = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| self.error(format!("cannot connect: no answer within {timeout:?}")))??;
        let channel = tokio::time::timeout(timeout, connected.create_channel())
            .await
            .map_err(|_| self.error(format!("cannot open a channel within {timeout:?}")))?
            .map_err(|e| self.error("cannot open a channel").caused_by(e))?;
        Ok((connected, channel))
    }

    /// The TLS connector for an `amqps://` URL (`None` for `amqp://`): the
    /// broker's certificate checked in full against `tls_ca`, else the system's
    /// roots, and the client certificate when one is given.
    fn tls_connector(&self, uri: &AMQPUri) -> Result<Option<RustlsConnector>, ConnectorError> {
        use crate::tls::{Identity, Roots, Verify};
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(self.error("tls_cert and tls_key go together: give both or neither")),
        };
        if uri.scheme == AMQPScheme::AMQP {
            if self.tls_ca.is_some() || identity.is_some() {
                return Err(self.error(
                    "tls_ca, tls_cert and tls_key are for TLS, but the URL is amqp://: \
                     use amqps:// (the broker's TLS port, 5671 by default)",
                ));
            }
            return Ok(None);
        }
        let roots = match &self.tls_ca {
            Some(ca) => Roots::File(ca.clone()),
            None => Roots::System,
        };
        crate::tls::client_config(Verify::Full, Some(&roots), identity.as_ref())
            .map(|config| Some(RustlsConnector::from(config)))
            .map_err(|why| self.error(why))
    }

    /// Connects to an `amqps://` URL: TCP to its host and port, then TLS with
    /// `tls` for the name of the host (also on lapin's reconnections).
    async fn connect_tls(
        uri: AMQPUri,
        properties: ConnectionProperties,
        tls: RustlsConnector,
    ) -> lapin::Result<Connection> {
        let runtime = lapin::runtime::default_runtime()?;
        let dial = async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let mut plain = uri;
            plain.scheme = AMQPScheme::AMQP;
            let stream = AMQPUriTcpExt::connect_async(&plain, &runtime).await?;
            Ok(stream.into_rustls(&tls, &host).await?)
        };
        Connection::connector(uri, runtime, dial, properties).await
    }

    /// The error for a failed connection: wrong credentials and refused TLS
    /// handshakes said as such.
    fn refused(&self, e: lapin::Error) -> ConnectorError {
        let text = e.to_string();
        let action = if let Some(refused) = crate::tls::refusal(&e) {
            format!("cannot connect over TLS: {refused}")
        } else if text.contains("ACCESS_REFUSED") || text.contains("403") {
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

    #[test]
    fn tls_options_need_amqps_and_a_certificate_needs_its_key() {
        let plain = RabbitSettings::new("amqp://127.0.0.1:5672/%2f").tls_ca("ca.pem");
        let err = plain.tls_connector(&plain.uri().unwrap()).unwrap_err();
        assert!(err.to_string().contains("use amqps://"), "{err}");
        let mut half = RabbitSettings::new("amqps://localhost:5671/%2f");
        half.tls_cert = Some("client.pem".into());
        let err = half.tls_connector(&half.uri().unwrap()).unwrap_err();
        assert!(err.to_string().contains("tls_key"), "{err}");
        // Without TLS options, amqp:// stays plain and amqps:// checks the system's roots.
        let none = RabbitSettings::new("amqp://127.0.0.1:5672/%2f");
        assert!(none.tls_connector(&none.uri().unwrap()).unwrap().is_none());
        let s: RabbitSettings = serde_json::from_str(
            r#"{"url": "amqps://mq:5671/%2f", "tls_ca": "/ca.pem", "tls_cert": "/c.pem", "tls_key": "/c.key"}"#,
        )
        .unwrap();
        assert_eq!(s.tls_key.as_deref(), Some(std::path::Path::new("/c.key")));
    }
}
