//! How to reach a NATS server: [`NatsSettings`], shared by the source, the sink and
//! the managed-resource functions.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};
use serde::{Deserialize, Serialize};

use crate::ConnectorError;

/// The servers and client options of one NATS system.
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[nats] servers = "nats://n1:4222,nats://n2:4222"`. Secrets are never read from
/// it: the user and password, or the token, come from the environment
/// (`RIFFLE_NATS_USER` with `RIFFLE_NATS_PASSWORD` or `RIFFLE_NATS_PASSWORD_FILE`;
/// `RIFFLE_NATS_TOKEN` or `RIFFLE_NATS_TOKEN_FILE`), and a credentials file (a
/// JWT and its nkey seed) is named by `creds_file` or `RIFFLE_NATS_CREDS`.
///
/// TLS is used when a server URL is `tls://` or `tls_ca` is set (a server that
/// demands TLS gets it too). The server's certificate must chain to a CA of the
/// PEM file `tls_ca` (else to the system's trusted roots) and name the host in
/// the URL; `tls_cert` with `tls_key` is a client certificate for servers that
/// verify clients (`verify: true` in the server's `tls` block).
///
/// ```
/// use riffle_connectors::nats::NatsSettings;
/// let s: NatsSettings = serde_json::from_str(r#"{"servers": "nats://127.0.0.1:4222"}"#).unwrap();
/// assert_eq!(s.servers, "nats://127.0.0.1:4222");
/// assert_eq!(s.timeout_ms, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatsSettings {
    /// Server URLs (`nats://host:port`, or `host:port`), separated by commas.
    pub servers: String,
    /// A credentials file (`.creds`: a user JWT and its nkey seed).
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// How long connecting, set-up calls and publish acknowledgements may take, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM file of the CA certificates that sign the servers' certificates;
    /// setting it makes TLS required.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), presented to servers that verify clients;
    /// goes with `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Credentials given in code (tests, embedding applications); never serialized.
    #[serde(skip)]
    secret: Option<Secret>,
}

/// A user and password, or a token, given in code.
#[derive(Clone, PartialEq)]
enum Secret {
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::UserPassword(user, _) => write!(f, "user {user:?} with a password"),
            Secret::Token(_) => f.write_str("a token"),
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

const ENV_SERVERS: &str = "RIFFLE_NATS_URL";
const ENV_USER: &str = "RIFFLE_NATS_USER";
const ENV_PASSWORD: &str = "RIFFLE_NATS_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_NATS_PASSWORD_FILE";
const ENV_TOKEN: &str = "RIFFLE_NATS_TOKEN";
const ENV_TOKEN_FILE: &str = "RIFFLE_NATS_TOKEN_FILE";
const ENV_CREDS: &str = "RIFFLE_NATS_CREDS";

impl NatsSettings {
    /// Settings for the servers at `servers` (comma-separated URLs).
    pub fn new(servers: impl Into<String>) -> Self {
        Self {
            servers: servers.into(),
            creds_file: None,
            timeout_ms: default_timeout_ms(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            secret: None,
        }
    }

    /// Settings from `RIFFLE_NATS_URL`.
    pub fn from_env() -> Result<Self, ConnectorError> {
        let servers = std::env::var(ENV_SERVERS).map_err(|_| {
            ConnectorError::new("nats", "(no servers)", format!("{ENV_SERVERS} is not set"))
        })?;
        Ok(Self::new(servers))
    }

    /// The same settings with another timeout for connecting, set-up calls and
    /// publish acknowledgements.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// The same settings with a credentials file.
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds_file = Some(path.into());
        self
    }

    /// The same settings over TLS, trusting the CA certificates of the PEM file
    /// `ca` (and only those) to sign the servers' certificates.
    ///
    /// ```
    /// use riffle_connectors::nats::NatsSettings;
    /// let s = NatsSettings::new("tls://nats.internal:4222").tls_ca("/etc/riffle/nats-ca.pem");
    /// assert!(s.tls_ca.is_some());
    /// ```
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// The same settings presenting a client certificate (PEM files of the
    /// certificate and its private key) to servers that verify clients.
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// The same settings authenticating with `user` and `password`, given in code
    /// (they take the place of the environment's).
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.secret = Some(Secret::UserPassword(user.into(), password.into()));
        self
    }

    /// The same settings authenticating with `token`, given in code.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.secret = Some(Secret::Token(token.into()));
        self
    }

    pub(crate) fn timeout_duration(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// An error at these servers.
    pub(crate) fn error(&self, action: impl Into<String>) -> ConnectorError {
        ConnectorError::new("nats", format!("server {}", self.servers), action)
    }

    fn addresses(&self) -> Result<Vec<ServerAddr>, ConnectorError> {
        let addresses: Vec<&str> = self
            .servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if addresses.is_empty() {
            return Err(self.error("no servers given"));
        }
        addresses
            .into_iter()
            .map(|a| {
                a.parse::<ServerAddr>().map_err(|e| {
                    self.error(format!("{a:?} is not a server URL"))
                        .caused_by(e)
                })
            })
            .collect()
    }

    /// Reads a secret from `var`, or from the file `file_var` names.
    fn secret_from_env(&self, var: &str, file_var: &str) -> Result<Option<String>, ConnectorError> {
        match std::env::var(file_var) {
            Ok(path) => std::fs::read_to_string(&path)
                .map(|s| Some(s.trim_end().to_string()))
                .map_err(|e| {
                    self.error(format!("cannot read {file_var}={path}"))
                        .caused_by(e)
                }),
            Err(_) => Ok(std::env::var(var).ok()),
        }
    }

    /// Connection options: the timeout, then credentials (in code, else from the
    /// environment, else the credentials file).
    async fn options(&self, addresses: &[ServerAddr]) -> Result<ConnectOptions, ConnectorError> {
        let mut options = ConnectOptions::new()
            .name("riffle")
            .connection_timeout(self.timeout_duration())
            .request_timeout(Some(self.timeout_duration()))
            // A run rides out a server restart: reconnect for as long as it lasts.
            .max_reconnects(None);
        if let Some(config) = self.tls_config(addresses)? {
            options = options.require_tls(true).tls_client_config(config);
        }
        match &self.secret {
            Some(Secret::UserPassword(user, password)) => {
                return Ok(options.user_and_password(user.clone(), password.clone()));
            }
            Some(Secret::Token(token)) => return Ok(options.token(token.clone())),
            None => {}
        }
        if let Ok(user) = std::env::var(ENV_USER) {
            let password = self
                .secret_from_env(ENV_PASSWORD, ENV_PASSWORD_FILE)?
                .ok_or_else(|| {
                    self.error(format!(
                        "{ENV_USER} is set but neither {ENV_PASSWORD} nor {ENV_PASSWORD_FILE}"
                    ))
                })?;
            options = options.user_and_password(user, password);
        } else if let Some(token) = self.secret_from_env(ENV_TOKEN, ENV_TOKEN_FILE)? {
            options = options.token(token);
        }
        let creds = self
            .creds_file
            .clone()
            .or_else(|| std::env::var_os(ENV_CREDS).map(PathBuf::from));
        if let Some(path) = creds {
            options = options.credentials_file(&path).await.map_err(|e| {
                self.error(format!(
                    "cannot read the credentials file {}",
                    path.display()
                ))
                .caused_by(e)
            })?;
        }
        Ok(options)
    }

    /// Connects to the servers (run it on the shared runtime).
    pub(crate) async fn connect(&self) -> Result<Client, ConnectorError> {
        let addresses = self.addresses()?;
        let options = self.options(&addresses).await?;
        options.connect(addresses).await.map_err(|e| {
            let why = match crate::tls::refusal(&e) {
                Some(refused) => format!("cannot connect over TLS: {refused}"),
                None => "cannot connect".to_string(),
            };
            self.error(why).caused_by(e)
        })
    }

    /// The TLS configuration when TLS is asked for (a `tls://` URL or any TLS
    /// option): the server's certificate checked in full against `tls_ca`, else
    /// the system's roots. `None` leaves TLS to the client's defaults.
    fn tls_config(
        &self,
        addresses: &[ServerAddr],
    ) -> Result<Option<async_nats::rustls::ClientConfig>, ConnectorError> {
        use crate::tls::{Identity, Roots, Verify};
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(self.error("tls_cert and tls_key go together: give both or neither")),
        };
        let wanted = self.tls_ca.is_some()
            || identity.is_some()
            || addresses.iter().any(ServerAddr::tls_required);
        if !wanted {
            return Ok(None);
        }
        let roots = match &self.tls_ca {
            Some(ca) => Roots::File(ca.clone()),
            None => Roots::System,
        };
        crate::tls::client_config(Verify::Full, Some(&roots), identity.as_ref())
            .map(Some)
            .map_err(|why| self.error(why))
    }

    /// A JetStream context on a new connection, whose calls time out after the
    /// settings' timeout.
    pub(crate) async fn jetstream(&self) -> Result<async_nats::jetstream::Context, ConnectorError> {
        let client = self.connect().await?;
        let mut context = async_nats::jetstream::new(client);
        context.set_timeout(self.timeout_duration());
        Ok(context)
    }
}
