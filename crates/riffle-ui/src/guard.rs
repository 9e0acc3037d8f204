//! The safety layer around every route: read-only methods, loopback host names, the
//! optional bearer token, and headers that keep the page to its own scripts.
//!
//! - **Read-only.** Only `GET` and `HEAD` are answered; anything else is a 405.
//! - **Host names.** When the dashboard listens on a loopback address, a request must
//!   name a loopback host (`127.0.0.1`, `localhost`, `[::1]`). A web page elsewhere
//!   cannot then reach the dashboard through a DNS name it rebinds to 127.0.0.1.
//! - **Token.** With a token set, every request (the page, its assets and the API)
//!   must carry it: `Authorization: Bearer TOKEN` for scripts, or the
//!   `riffle_ui_token` cookie a browser receives by opening `/?token=TOKEN` once
//!   (`HttpOnly`, `SameSite=Strict`; the address bar is then cleaned by a redirect).
//!   Tokens are compared in constant time.
//! - **Headers.** A Content-Security-Policy allowing only the dashboard's own scripts
//!   and styles (no inline script, so text that slips into markup cannot run),
//!   `nosniff`, no framing, no referrer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The cookie a browser keeps the token in.
pub const TOKEN_COOKIE: &str = "riffle_ui_token";

/// What the guard enforces.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    token: Option<Arc<str>>,
    loopback_hosts_only: bool,
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the token must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -")]
pub struct BadToken;

impl Guard {
    /// A guard requiring `token` (if any), and loopback host names when
    /// `loopback_hosts_only`.
    ///
    /// ```
    /// use riffle_ui::Guard;
    ///
    /// assert!(Guard::new(Some("short"), true).is_err());
    /// assert!(Guard::new(Some("a-long-enough-secret-token"), true).is_ok());
    /// assert!(Guard::new(None, false).is_ok());
    /// ```
    pub fn new(token: Option<&str>, loopback_hosts_only: bool) -> Result<Self, BadToken> {
        if let Some(t) = token {
            let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b);
            if t.len() < 16 || t.len() > 256 || !t.bytes().all(ok_char) {
                return Err(BadToken);
            }
        }
        Ok(Self {
            token: token.map(Arc::from),
            loopback_hosts_only,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = auth.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.to_string())
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

/// The middleware; see the [module docs](self).
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let mut response = check(&guard, request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn check(guard: &Guard, request: Request, next: Next) -> Response {
    if guard.loopback_hosts_only && !host_is_loopback(request.headers()) {
        return ApiError::Forbidden(
            "the dashboard listens on a loopback address and answers only to 127.0.0.1, \
             localhost or [::1]"
                .into(),
        )
        .into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = (
            StatusCode::METHOD_NOT_ALLOWED,
            axum::Json(crate::error::ErrorBody {
                error: format!(
                    "the dashboard is read-only: {} is not allowed",
                    request.method()
                ),
            }),
        )
            .into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(token) = &guard.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/"
        && let Some(given) = request.uri().query().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| v.to_string())
        })
    {
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return ApiError::Unauthorized("the token in the address is wrong".into())
                .into_response();
        }
        let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    match presented_token(request.headers()) {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::Unauthorized("the token is wrong".into()).into_response(),
        None => ApiError::Unauthorized(
            "this dashboard requires a token: send `Authorization: Bearer TOKEN`, or open \
             /?token=TOKEN in the browser once"
                .into(),
        )
        .into_response(),
    }
}
