//! The runtime of a run: the logical date and time it processes.
//!
//! A daily job run on Tuesday usually processes Monday's data; its runtime says which
//! day. It is given on the command line as `--runtime "YYYY-MM-DD[ HH:MM:SS]"`,
//! defaults to the start of the run, and reaches the steps that declare they use it
//! (which also makes it part of their cache keys).

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, Timelike};

use crate::error::{Error, Result};

/// The logical date and time a run processes, to the second, without a time zone.
///
/// ```
/// use riffle_pipeline::Runtime;
///
/// let day: Runtime = "2024-03-01".parse()?;
/// assert_eq!(day.to_string(), "2024-03-01 00:00:00");
/// let hour: Runtime = "2024-03-01 13:00:00".parse()?;
/// assert!(hour > day);
/// assert!("2024-13-01".parse::<Runtime>().is_err());
/// # Ok::<(), riffle_pipeline::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Runtime(NaiveDateTime);

impl Runtime {
    /// The runtime as a chrono date-time.
    pub fn datetime(&self) -> NaiveDateTime {
        self.0
    }

    /// The date part.
    pub fn date(&self) -> NaiveDate {
        self.0.date()
    }

    /// The current UTC time, truncated to the second.
    pub fn now() -> Self {
        let now = chrono::Utc::now().naive_utc();
        Runtime(now.with_nanosecond(0).unwrap_or(now))
    }

    /// A runtime from a chrono date-time (sub-second parts are dropped).
    pub fn from_datetime(datetime: NaiveDateTime) -> Self {
        Runtime(datetime.with_nanosecond(0).unwrap_or(datetime))
    }
}

impl FromStr for Runtime {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if let Ok(dt) = NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S") {
            return Ok(Runtime(dt));
        }
        if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
            && let Some(dt) = date.and_hms_opt(0, 0, 0)
        {
            return Ok(Runtime(dt));
        }
        Err(Error::InvalidRuntime {
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S"))
    }
}
