//! The ids of pipelines, steps and config keys: short names that are safe everywhere
//! they end up (a command line, a table, a log line).

use crate::error::{Error, Result};

/// The longest id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Checks that `id` is 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`.
///
/// ```
/// use riffle_pipeline::check_id;
/// assert!(check_id("step", "load_csv-2").is_ok());
/// assert!(check_id("step", "../etc").is_err());
/// assert!(check_id("step", "").is_err());
/// ```
pub fn check_id(kind: &'static str, id: &str) -> Result<()> {
    let why = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_ID_LEN {
        "it is longer than 128 characters"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "only letters, digits, '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        kind,
        id: id.to_string(),
        why,
    })
}
