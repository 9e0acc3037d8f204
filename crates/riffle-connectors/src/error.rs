//! The error every connector reports: which connector, what it was doing, against
//! which server, and the client's own error as the cause.

/// A connector failed. It names the connector, the server (brokers, URL) and what
/// failed; the client's error is kept as the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("{connector} at {server}: {action}")]
#[non_exhaustive]
pub struct ConnectorError {
    /// The connector, e.g. `kafka`.
    pub connector: &'static str,
    /// The server it talks to (brokers, URL).
    pub server: String,
    /// What failed, e.g. `topic "orders" does not exist`.
    pub action: String,
    /// The client's error, when there is one.
    #[source]
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    /// A failure of `connector` at `server` while doing `action`.
    pub fn new(
        connector: &'static str,
        server: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            connector,
            server: server.into(),
            action: action.into(),
            cause: None,
        }
    }

    /// The same, caused by `cause`.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// As the engine's error for step `step_id`, keeping the client's error as its cause.
    pub fn for_step(self, step_id: &str) -> riffle::RiffleError {
        let message = format!("{} at {}: {}", self.connector, self.server, self.action);
        riffle::RiffleError::connector_caused(step_id, message, self.cause)
    }
}
