//! Query strings and path segments, read strictly: an unknown parameter or a malformed
//! value is a 400 with a message naming it, never a silent default.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::NaiveDate;
use riffle_pipeline::RunStatus;

use crate::error::ApiError;

/// The query string as name -> value, read with JSON errors.
pub struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::BadRequest(format!("the query string is not valid: {e}")))
    }
}

impl Params {
    /// Refuses parameters other than `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::BadRequest(format!(
                "unknown query parameter {k:?}; this endpoint takes: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }

    /// A text parameter; empty counts as absent.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A count between 0 and `max`, or `default`.
    pub fn count(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name}={v:?} is not valid: expected a whole number from 0 to {max}"
                ))
            }),
        }
    }

    /// A run status.
    pub fn status(&self, name: &str) -> Result<Option<RunStatus>, ApiError> {
        self.text(name)
            .map(|v| {
                RunStatus::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name}={v:?} is not a run status: expected running, succeeded, failed or cancelled"
                    ))
                })
            })
            .transpose()
    }

    /// A day (`YYYY-MM-DD`, UTC) as the milliseconds of its start, plus `days_after`
    /// days (1 turns an inclusive end day into an exclusive bound).
    pub fn day_ms(&self, name: &str, days_after: i64) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| {
                NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.checked_add_days(chrono::Days::new(days_after as u64)))
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp_millis())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "{name}={v:?} is not a date: expected YYYY-MM-DD"
                        ))
                    })
            })
            .transpose()
    }
}

/// Checks a run id, artifact hash or prefix: hex digits and dashes only.
pub fn hex_id(kind: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ApiError::BadRequest(format!(
            "{kind} {id:?} is not valid: expected hex digits and '-'"
        )));
    }
    Ok(())
}
