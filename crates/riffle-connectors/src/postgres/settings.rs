//! How to reach a PostgreSQL server: [`PostgresSettings`], shared by the source,
//! the sink and the managed resources, and the quoting of names in SQL.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Config};

use super::tls::{self, Plan};

use crate::{ConnectorError, runtime};

/// The address of one PostgreSQL database.
///
/// Plain data: it deserializes from a `riffle.toml` table such as
/// `[postgres] url = "postgres://riffle@db.internal:5432/shop"`. A password in the
/// URL is refused: the client takes it from `RIFFLE_POSTGRES_PASSWORD` (or the
/// file named by `RIFFLE_POSTGRES_PASSWORD_FILE`).
///
/// TLS follows libpq's options in the URL: `sslmode` (`disable`, `prefer` (the
/// default), `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of
/// CA certificates, or `system`), and `sslcert` with `sslkey` (a client
/// certificate). `verify-full` checks that the server's certificate chains to
/// those CAs and names the host; `verify-ca` checks the chain only; `require`
/// and `prefer` check the chain only when `sslrootcert` is given, else nothing.
/// For a managed database:
/// `postgres://app@db.example.com/shop?sslmode=verify-full&sslrootcert=/etc/riffle/db-ca.pem`.
///
/// ```
/// use riffle_connectors::postgres::PostgresSettings;
/// let s: PostgresSettings =
///     serde_json::from_str(r#"{"url": "postgres://riffle@127.0.0.1:5432/shop"}"#).unwrap();
/// assert_eq!(s.timeout_ms, 10_000);
/// assert_eq!(s.retry_ms, 60_000);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database` (or a `key=value` connection string).
    pub url: String,
    /// How long connecting may take, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long a running source or sink keeps reconnecting to a server that went
    /// away before it fails, in ms.
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_retry_ms() -> u64 {
    60_000
}

const ENV_PASSWORD: &str = "RIFFLE_POSTGRES_PASSWORD";
const ENV_PASSWORD_FILE: &str = "RIFFLE_POSTGRES_PASSWORD_FILE";

impl PostgresSettings {
    /// Settings for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            retry_ms: default_retry_ms(),
        }
    }

    /// Settings from `RIFFLE_POSTGRES_URL`.
    pub fn from_env() -> Result<Self, ConnectorError> {
        let url = std::env::var("RIFFLE_POSTGRES_URL").map_err(|_| {
            ConnectorError::new("postgres", "(no url)", "RIFFLE_POSTGRES_URL is not set")
        })?;
        Ok(Self::new(url))
    }

    /// The same settings with another connect timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// The same settings with another reconnect patience.
    pub fn retry_for(mut self, patience: Duration) -> Self {
        self.retry_ms = patience.as_millis() as u64;
        self
    }

    pub(crate) fn patience(&self) -> Duration {
        Duration::from_millis(self.retry_ms)
    }

    /// The server as errors show it: the URL, with any password masked.
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
        ConnectorError::new("postgres", self.server(), action)
    }

    /// The client's configuration: the URL, then the password from the
    /// environment; and the TLS the URL's `ssl*` options ask for.
    pub(crate) fn config(&self) -> Result<(Config, Plan), ConnectorError> {
        let (url, tls) = tls::split(&self.url).map_err(|why| self.error(why))?;
        let mut config =
            Config::from_str(&url).map_err(|e| self.error("not a PostgreSQL URL").caused_by(e))?;
        if config.get_password().is_some() {
            return Err(self.error(format!(
                "the URL holds a password: set it through {ENV_PASSWORD} or \
                 {ENV_PASSWORD_FILE}, never in settings"
            )));
        }
        let password =
            crate::credentials::secret(ENV_PASSWORD, ENV_PASSWORD_FILE, |a| self.error(a))?;
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(Duration::from_millis(self.timeout_ms.max(1)));
        if config.get_application_name().is_none() {
            config.application_name("riffle");
        }
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let plan = tls.plan(home.as_deref()).map_err(|why| self.error(why))?;
        config.ssl_mode(plan.wire());
        Ok((config, plan))
    }

    /// A connection; its I/O runs on the shared runtime. Must be awaited there.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectorError> {
        let (config, plan) = self.config()?;
        let user = config.get_user().unwrap_or("(default user)").to_string();
        let mode = plan.mode;
        let (client, connection) = config.connect(plan.tls).await.map_err(|e| {
            let why = match (e.as_db_error(), crate::tls::refusal(&e)) {
                (Some(db), _) => format!("cannot connect as user {user:?}: {}", db.message()),
                (None, Some(refused)) => {
                    format!("cannot connect as user {user:?} over TLS (sslmode={mode}): {refused}")
                }
                (None, None) if mode.requires_tls() && tls::offers_no_tls(&e) => format!(
                    "cannot connect as user {user:?}: sslmode={mode} asks for TLS, but the \
                     server does not offer it"
                ),
                (None, None) => format!("cannot connect as user {user:?}"),
            };
            self.error(why).caused_by(e)
        })?;
        runtime::handle().spawn(async move {
            // Ends when the client is dropped or the server goes away; the next
            // query then says why.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A connection of your own for queries a sink or source does not make (a
    /// Flow's lookups): the settings' password from the environment, timeout
    /// and errors naming the server. Its I/O runs on the connectors' shared
    /// runtime, so call this outside any async runtime (a Flow's flow- or
    /// replica-scoped dependency); the client's queries may be awaited from any
    /// runtime, and one client carries concurrent queries (pipelined).
    ///
    /// ```no_run
    /// use riffle_connectors::postgres::PostgresSettings;
    /// let client = PostgresSettings::new("postgres://app@127.0.0.1/app").client()?;
    /// let row = riffle_connectors::runtime::handle()
    ///     .block_on(client.query_one("SELECT 40 + 2", &[]))
    ///     .unwrap();
    /// assert_eq!(row.get::<_, i32>(0), 42);
    /// # Ok::<(), riffle_connectors::ConnectorError>(())
    /// ```
    pub fn client(&self) -> Result<Client, ConnectorError> {
        runtime::handle().block_on(self.connect())
    }
}

/// Whether `e` may pass when tried again on a new connection: the connection
/// dropped or could not be made, or the server is shutting down or starting.
pub(crate) fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "40001"
                || code == "40P01"
        }
    }
}

/// The server's own message for `e`, or the client's.
pub(crate) fn says(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.column() {
            Some(column) => format!("{} (column {column:?})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// A table name as SQL: `name` or `schema.name`, each part quoted.
///
/// ```
/// # use riffle_connectors::postgres::quote_table;
/// assert_eq!(quote_table("orders"), r#""orders""#);
/// assert_eq!(quote_table("shop.orders"), r#""shop"."orders""#);
/// assert_eq!(quote_table(r#"a"b"#), r#""a""b""#);
/// ```
pub fn quote_table(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(name),
    }
}

/// An identifier (a column) quoted for SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_a_bad_url_named() {
        let err = PostgresSettings::new("postgres://me:secret@127.0.0.1:5432/db")
            .config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("RIFFLE_POSTGRES_PASSWORD"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = PostgresSettings::new("postgres://127.0.0.1:not-a-port/db")
            .config()
            .unwrap_err();
        assert!(err.to_string().contains("not-a-port"), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "{err}");
    }
}
