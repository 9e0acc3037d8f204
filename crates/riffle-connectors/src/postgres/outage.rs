//! Riding out a server that went away. A reader (the row source, the change
//! source) runs rounds; a round that lost its connection is a [`Failure::Gone`],
//! and the reader's [`Outage`] says so once on stderr, waits a little, and lets it
//! reconnect and try again, until the server has been away longer than the
//! settings' patience: then the reading fails, naming the server and what it read.

use std::time::Duration;

use tokio::time::Instant;

use super::settings::PostgresSettings;
use crate::ConnectorError;

/// How long a reader waits before it connects again.
const PAUSE: Duration = Duration::from_millis(250);

/// Why a round failed.
pub(crate) enum Failure {
    /// The connection (why): reconnect and try again.
    Gone(String),
    /// For good.
    Fatal(ConnectorError),
}

impl Failure {
    /// A failed connect: refused while the server restarts is worth another try
    /// (an error with a cause came from the server or the network), anything
    /// else is for good.
    pub(crate) fn of_connect(e: ConnectorError) -> Self {
        match &e.cause {
            Some(cause) => Failure::Gone(cause.to_string()),
            None => Failure::Fatal(e),
        }
    }
}

/// Since when the server of one reader has been away, if it is.
#[derive(Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// The server went away while reading `what` (`why`): says so the first
    /// time, then pauses before the caller connects again; an error once it has
    /// been away longer than the settings' patience.
    pub(crate) async fn gone(
        &mut self,
        settings: &PostgresSettings,
        what: &str,
        why: &str,
    ) -> Result<(), ConnectorError> {
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "postgres at {}: the server went away while reading {what}: reconnecting ({why})",
                settings.server(),
            );
            Instant::now()
        });
        if since.elapsed() > settings.patience() {
            return Err(settings.error(format!(
                "the server went away while reading {what} and did not come back within {:?}: {why}",
                settings.patience()
            )));
        }
        tokio::time::sleep(PAUSE).await;
        Ok(())
    }

    /// A round went through: says so when the server had been away.
    pub(crate) fn over(&mut self, settings: &PostgresSettings, what: &str) {
        if self.since.take().is_some() {
            eprintln!("postgres at {}: reading {what} goes on", settings.server());
        }
    }
}
