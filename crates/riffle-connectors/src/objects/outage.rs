//! Riding out an object store that went away mid-run, for every connector on
//! `object_store` (the object source and sink, the Parquet source, the table
//! sinks). The client retries a failed request about ten times within a couple
//! of seconds, less than a server takes to restart; so a connector tries the
//! request again itself, through an [`Outage`], for as long as its patience
//! allows ([`PATIENCE`], 60 s, by default): it says so once on stderr, pauses
//! half a second, tries again, and says when it goes on. Only failures that mean
//! the server did not answer count ([`went_away`]): an answer, even a refusal (a
//! missing bucket, a permission), stops the run at once.
//!
//! Trying again is safe only for an idempotent request, and each caller says
//! why its own is: a put of the same bytes under the same name, a ranged read,
//! a listing, a copy whose source is still there, a delete (a missing object
//! counts as deleted), a table load recorded by `(app id, version)`.
//!
//! ```
//! use std::time::Duration;
//! use riffle_connectors::ConnectorError;
//! use riffle_connectors::objects::went_away;
//!
//! // A refusal by the server is no outage: the run stops at once.
//! let refused = ConnectorError::new("objects", "s3://b/out", "cannot write object").caused_by(
//!     object_store::Error::NotFound { path: "out/x".into(), source: "no such bucket".into() },
//! );
//! assert!(!went_away(&refused));
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use object_store::client::{HttpError, HttpErrorKind};

use crate::ConnectorError;

/// How long a connector waits before it tries again.
pub(crate) const PAUSE: Duration = Duration::from_millis(500);

/// How long a connector keeps trying by default while the store does not answer.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Whether `error` means the server did not answer (a refused or dropped
/// connection, a timeout, after the client's own retries): worth another try.
/// An answer from the server, even an error, is not, nor is one the client
/// could not decode.
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

/// Since when a connector's store has been away, if it is.
pub(crate) struct Outage {
    /// The connector and its place, as messages name them: `objects at s3://...`.
    at: String,
    patience: Duration,
    since: Option<Instant>,
}

impl Outage {
    /// An outage of the store `at` names, ridden out for at most `patience`.
    pub(crate) fn new(at: String, patience: Duration) -> Self {
        Self {
            at,
            patience,
            since: None,
        }
    }

    /// The server went away while `doing` (`error`): says so the first time;
    /// `error` back, saying how long it waited, once the server has been away
    /// longer than the patience. The caller pauses ([`PAUSE`]) and tries again.
    fn note(&mut self, doing: &str, mut error: ConnectorError) -> Result<(), ConnectorError> {
        let since = *self.since.get_or_insert_with(|| {
            eprintln!(
                "{}: the store went away while {doing}: trying again ({})",
                self.at,
                cause_of(&error)
            );
            Instant::now()
        });
        if since.elapsed() >= self.patience {
            error.action = format!(
                "{}: the store did not come back within {:?}",
                error.action, self.patience
            );
            return Err(error);
        }
        Ok(())
    }

    /// [`note`](Self::note), then a pause of the calling thread: for callers
    /// outside the runtime.
    pub(crate) fn gone(
        &mut self,
        doing: &str,
        error: ConnectorError,
    ) -> Result<(), ConnectorError> {
        self.note(doing, error)?;
        std::thread::sleep(PAUSE);
        Ok(())
    }

    /// [`note`](Self::note), then a pause of the calling task: for callers on
    /// the runtime.
    pub(crate) async fn gone_async(
        &mut self,
        doing: &str,
        error: ConnectorError,
    ) -> Result<(), ConnectorError> {
        self.note(doing, error)?;
        tokio::time::sleep(PAUSE).await;
        Ok(())
    }

    /// A try went through: says so when the server had been away.
    pub(crate) fn over(&mut self, doing: &str) {
        if self.since.take().is_some() {
            eprintln!("{}: {doing} goes on", self.at);
        }
    }

    /// `attempt` until it goes through, again while the server does not answer
    /// (see the module docs); `doing` names it in the messages. The attempt
    /// must be safe to repeat.
    pub(crate) async fn patiently<T, F>(
        &mut self,
        doing: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, ConnectorError>
    where
        F: Future<Output = Result<T, ConnectorError>>,
    {
        loop {
            match attempt().await {
                Ok(done) => {
                    self.over(doing);
                    return Ok(done);
                }
                Err(e) if went_away(&e) => self.gone_async(doing, e).await?,
                Err(e) => return Err(e),
            }
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

    /// An error of the object store client as a connector gets it.
    fn store_error(kind: HttpErrorKind) -> ConnectorError {
        let http = HttpError::new(kind, std::io::Error::other("connection closed"));
        ConnectorError::new("objects", "s3://b/t", "cannot write").caused_by(
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

    #[test]
    fn a_patient_attempt_is_tried_again_while_the_server_is_away_and_not_after_a_refusal() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Away twice, then through.
        let mut tries = 0;
        let mut outage = Outage::new("objects at s3://b/t".into(), PATIENCE);
        let got = runtime.block_on(outage.patiently("listing", || {
            tries += 1;
            let now = tries;
            async move {
                if now < 3 {
                    Err(store_error(HttpErrorKind::Connect))
                } else {
                    Ok(now)
                }
            }
        }));
        assert_eq!(got.unwrap(), 3);
        // A refusal: once, and back at once.
        let mut tries = 0;
        let got = runtime.block_on(outage.patiently("listing", || {
            tries += 1;
            async { Err::<(), _>(ConnectorError::new("objects", "s3://b/t", "refused")) }
        }));
        assert!(got.is_err());
        assert_eq!(tries, 1);
    }
}
