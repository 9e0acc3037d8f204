//! Durations as people write them in flags, settings and environment variables:
//! `10s`, `500ms`, `2m`, or a bare number of seconds.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(riffle::duration::parse("500ms"), Ok(Duration::from_millis(500)));
//! assert_eq!(riffle::duration::parse("2m"), Ok(Duration::from_secs(120)));
//! assert_eq!(riffle::duration::parse("1.5"), Ok(Duration::from_millis(1500)));
//! assert!(riffle::duration::parse("0s").is_err());
//! assert_eq!(riffle::duration::parse_or_zero("0"), Ok(Duration::ZERO));
//! assert!(riffle::duration::parse("ten").unwrap_err().contains("\"ten\""));
//! ```

use std::time::Duration;

/// Parses a positive duration: `10s`, `500ms`, `2m` or a number of seconds. The
/// error quotes the text and says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Like [`parse`], but zero (`0`, `0s`, `0ms`) is allowed.
pub fn parse_or_zero(text: &str) -> Result<Duration, String> {
    if text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        == "0"
    {
        return Ok(Duration::ZERO);
    }
    parse(text)
}
