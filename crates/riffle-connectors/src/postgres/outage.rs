//! Riding out a server that went away. A reader (the row source, the change
//! source) runs rounds and a writer (the sink's lanes) writes batches; a round or
//! batch that lost its connection is a [`Failure::Gone`], and its [`Outage`] says
//! so once on stderr, waits a little, and lets it reconnect and try again, until
//! the server has been away longer than the settings' patience: then the reading
//! or writing fails, naming the server and what it read or wrote. The one mechanism
//! serves both: [`Outage::reading`] (also its default) and [`Outage::writing`].

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

/// Since when the server of one reader or writer has been away, if it is.
pub(crate) struct Outage {
    /// What the caller does, as the messages say it: "reading" or "writing".
    doing: &'static str,
    since: Option<Instant>,
}

impl Default for Outage {
    fn default() -> Self {
        Self::reading()
    }
}

impl Outage {
    /// The outage of a reader: "the server went away while reading ...".
    pub(crate) fn reading() -> Self {
        Self {
            doing: "reading",
            since: None,
        }
    }

    /// The outage of a writer: "the server went away while writing ...".
    pub(crate) fn writing() -> Self {
        Self {
            doing: "writing",
            since: None,
        }
    }

    /// The server went away while reading or writing `what` (`why`): says so the
    /// first time, then pauses before the caller connects again; an error once it
    /// has been away longer than the settings' patience.
    pub(crate) async fn gone(
        &mut self,
        settings: &PostgresSettings,
        what: &str,
        why: &str,
    ) -> Result<(), ConnectorError> {
        let doing = self.doing;
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "postgres at {}: the server went away while {doing} {what}: reconnecting ({why})",
                settings.server(),
            );
            Instant::now()
        });
        if since.elapsed() > settings.patience() {
            return Err(settings.error(format!(
                "the server went away while {doing} {what} and did not come back within {:?}: {why}",
                settings.patience()
            )));
        }
        tokio::time::sleep(PAUSE).await;
        Ok(())
    }

    /// A round went through: says so when the server had been away.
    pub(crate) fn over(&mut self, settings: &PostgresSettings, what: &str) {
        if self.since.take().is_some() {
            eprintln!(
                "postgres at {}: {} {what} goes on",
                settings.server(),
                self.doing
            );
        }
    }
}
