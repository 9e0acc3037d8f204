//! What can go wrong while answering a request, and how it reaches the client.
//!
//! Every failure is an [`ApiError`]: an HTTP status and one sentence saying what failed
//! and why. It is sent as `{"error": "..."}` with that status, so the page (and any
//! script) always gets JSON back, never an HTML error page and never a dropped
//! connection. Failures of the stores keep their own message, which names the store and
//! the operation.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed request: the status to answer with and a message for a person.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request asked for something the stores do not have.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (a bad filter, a malformed hash, ...).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or the wrong one, while the dashboard requires a token.
    #[error("{0}")]
    Unauthorized(String),
    /// The request came through a host name the dashboard does not answer to.
    #[error("{0}")]
    Forbidden(String),
    /// The metadata or artifact store failed.
    #[error("{0}")]
    Store(#[from] riffle_pipeline::Error),
    /// Something inside the dashboard failed (a background task was lost, ...).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    ///
    /// ```
    /// use riffle_ui::ApiError;
    /// use axum::http::StatusCode;
    ///
    /// assert_eq!(ApiError::NotFound("no run abc".into()).status(), StatusCode::NOT_FOUND);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Store(riffle_pipeline::Error::NotFound { .. }) => StatusCode::NOT_FOUND,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// What failed, and why.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "dashboard request failed");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"riffle\""),
            );
        }
        response
    }
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metadata store could not be opened.
    #[error("cannot open the metadata store: {0}")]
    Store(#[from] riffle_pipeline::Error),
    /// There is no metadata store at the given path yet.
    #[error("there is no metadata store at {0}: run a pipeline first, or point --store at one")]
    NoStore(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The token given cannot be used.
    #[error("cannot use that token: {0}")]
    BadToken(String),
    /// The server stopped with an error.
    #[error("the dashboard server failed: {0}")]
    Serve(std::io::Error),
}

/// The result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
