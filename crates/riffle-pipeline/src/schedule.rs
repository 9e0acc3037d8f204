//! When a pipeline should run: a cron expression (or an alias such as `@daily`) and a
//! start time.
//!
//! Riffle does not run a scheduler of its own; the schedule is data that deployments
//! (an Airflow DAG, a cron table) read, and that `riffle` shows. Parsing it early means
//! a typo fails when the pipeline is defined, not when it is deployed.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use croner::Cron;
use croner::parser::CronParser;

use crate::error::{Error, Result};

/// A validated schedule: a five-field cron expression or one of `@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly`, and the first runtime it applies from.
///
/// ```
/// use riffle_pipeline::Schedule;
///
/// let daily = Schedule::parse("@daily")?.starting("2024-01-01".parse()?);
/// let next = daily.next_after("2024-01-05 10:00:00".parse()?).unwrap();
/// assert_eq!(next.to_string(), "2024-01-06 00:00:00");
/// assert!(Schedule::parse("61 * * * *").is_err());
/// # Ok::<(), riffle_pipeline::Error>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    start: Option<crate::Runtime>,
}

impl Schedule {
    /// Parses a cron expression (minute hour day-of-month month day-of-week) or an alias.
    pub fn parse(expr: &str) -> Result<Self> {
        let cron = CronParser::builder()
            .build()
            .parse(expr.trim())
            .map_err(|e| Error::InvalidSchedule {
                expr: expr.to_string(),
                why: e.to_string(),
                pipeline: String::new(),
            })?;
        Ok(Self {
            expr: expr.trim().to_string(),
            cron,
            start: None,
        })
    }

    /// The same schedule, applying from `start` on.
    pub fn starting(mut self, start: crate::Runtime) -> Self {
        self.start = Some(start);
        self
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The start time, if one was given.
    pub fn start(&self) -> Option<crate::Runtime> {
        self.start
    }

    /// The first scheduled runtime strictly after `after` (and not before the start).
    pub fn next_after(&self, after: crate::Runtime) -> Option<crate::Runtime> {
        let from = match self.start {
            Some(start) if start > after => {
                let at: DateTime<Utc> = start.datetime().and_utc();
                return self
                    .cron
                    .find_next_occurrence(&at, true)
                    .ok()
                    .map(|t| crate::Runtime::from_datetime(t.naive_utc()));
            }
            _ => after.datetime(),
        };
        let at: DateTime<Utc> = NaiveDateTime::and_utc(&from);
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| crate::Runtime::from_datetime(t.naive_utc()))
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("expr", &self.expr)
            .field("start", &self.start)
            .finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start {
            Some(start) => write!(f, "{} from {start}", self.expr),
            None => f.write_str(&self.expr),
        }
    }
}
