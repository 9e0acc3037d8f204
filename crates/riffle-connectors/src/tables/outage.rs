//! Riding out a store that went away mid-run. The object store client retries a
//! failed request about ten times within a couple of seconds, less than a server
//! takes to restart; a table sink partition therefore tries a staging write or a
//! load again itself, through an [`Outage`], for as long as its patience allows
//! (the [`WarehouseSink::patience`](super::WarehouseSink::patience), 60 s by
//! default): it says so once on stderr, pauses, tries again, and says when it goes
//! on. Only failures that mean the server did not answer count ([`went_away`]):
//! a refused request (a missing bucket, a permission) stops the run at once.
//!
//! Trying again is safe because both steps are idempotent: a staged file is put
//! again under the same name with the same bytes, and a load whose commit reached
//! the server before the connection dropped is found in the table's log (its
//! `(app id, version)`) and not made twice.

use std::time::{Duration, Instant};

use object_store::client::{HttpError, HttpErrorKind};

use crate::ConnectorError;

/// How long a partition waits before it tries again.
pub(crate) const PAUSE: Duration = Duration::from_millis(500);

/// Whether `error` means the server did not answer (a refused or dropped
/// connection, a timeout, after the client's own retries): worth another try.
/// An answer from the server, even an error, is not, nor is one it could not
/// decode.
pub fn went_away(error: &ConnectorError) -> bool {
    error
        .cause
        .as_deref()
        .is_some_and(|c| store_went_away(c as &(dyn std::error::Error + 'static)))
}

/// Whether an object store client's `error` (or one it caused) means the server
/// did not answer; see [`went_away`].
pub(crate) fn store_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return !matches!(http.kind(), HttpErrorKind::Decode);
        }
        cause = e.source();
    }
    false
}

/// Since when one partition's store has been away, if it is.
pub(crate) struct Outage {
    /// The connector and the table, as messages name them: `delta at s3://...`.
    at: String,
    patience: Duration,
    since: Option<Instant>,
}

impl Outage {
    /// An outage of the table `at` names, ridden out for at most `patience`.
    pub(crate) fn new(at: String, patience: Duration) -> Self {
        Self {
            at,
            patience,
            since: None,
        }
    }

    /// The server went away while `doing` (`error`): says so the first time, then
    /// pauses before the caller tries again; `error` back, saying how long it
    /// waited, once it has been away longer than the patience.
    pub(crate) fn gone(
        &mut self,
        doing: &str,
        mut error: ConnectorError,
    ) -> Result<(), ConnectorError> {
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "{}: the store went away while {doing}: trying again ({})",
                self.at,
                cause_of(&error)
            );
            Instant::now()
        });
        if since.elapsed() > self.patience {
            error.action = format!(
                "{}: the store did not come back within {:?}",
                error.action, self.patience
            );
            return Err(error);
        }
        std::thread::sleep(PAUSE);
        Ok(())
    }

    /// A try went through: says so when the server had been away.
    pub(crate) fn over(&mut self, doing: &str) {
        if self.since.take().is_some() {
            eprintln!("{}: {doing} goes on", self.at);
        }
    }
}

/// The client's error, or the action when there is none.
fn cause_of(error: &ConnectorError) -> String {
    match &error.cause {
        Some(cause) => cause.to_string(),
        None => error.action.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of the object store client as the warehouse sink gets it.
    fn store_error(kind: HttpErrorKind) -> ConnectorError {
        let http = HttpError::new(kind, std::io::Error::other("connection closed"));
        ConnectorError::new("delta", "s3://b/t", "cannot write").caused_by(
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(http),
            },
        )
    }

    #[test]
    fn only_a_server_that_did_not_answer_counts_as_gone() {
        assert!(went_away(&store_error(HttpErrorKind::Connect)));
        assert!(went_away(&store_error(HttpErrorKind::Request)));
        assert!(went_away(&store_error(HttpErrorKind::Timeout)));
        assert!(!went_away(&store_error(HttpErrorKind::Decode)));
        let refused = ConnectorError::new("delta", "s3://b/t", "cannot write").caused_by(
            object_store::Error::NotFound {
                path: "t/x".into(),
                source: "no such bucket".into(),
            },
        );
        assert!(!went_away(&refused));
        assert!(!went_away(&ConnectorError::new(
            "delta", "s3://b/t", "no cause"
        )));
    }

    #[test]
    fn an_outage_longer_than_the_patience_gives_the_error_back_saying_so() {
        let mut outage = Outage::new("delta at s3://b/t".into(), Duration::from_millis(1));
        let error = ConnectorError::new("delta", "s3://b/t", "cannot write data file \"f\"");
        outage.gone("writing", error).unwrap();
        let error = ConnectorError::new("delta", "s3://b/t", "cannot write data file \"f\"");
        let back = outage.gone("writing", error).unwrap_err();
        assert!(
            back.action.contains("\"f\"") && back.action.contains("did not come back"),
            "{back}"
        );
    }
}
