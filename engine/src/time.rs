//! Event time: one internal type, read from every form the models use.
//!
//! A [`Timestamp`] is microseconds since the Unix epoch, UTC. It is read from the paper's
//! local form (`2018-05-24 14:59:14.924`, taken as UTC), RFC 3339
//! (`2018-06-19T14:40:34.688Z`, any offset), and epoch milliseconds (a JSON number), and
//! written as RFC 3339 in UTC.

use std::fmt;
use std::time::Duration;

/// A point in event time: microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The earliest representable time; a watermark that holds everything back.
    pub const MIN: Self = Self(i64::MIN);
    /// The latest representable time; the watermark of a finished stream.
    pub const MAX: Self = Self(i64::MAX);

    /// From epoch milliseconds.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms.saturating_mul(1000))
    }

    /// From epoch microseconds.
    #[must_use]
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    /// Epoch milliseconds (rounded down).
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Epoch microseconds.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    #[must_use]
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// This time plus `d` (saturating).
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(micros(d)))
    }

    /// This time minus `d` (saturating).
    #[must_use]
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(micros(d)))
    }

    /// This time in UTC formatted by `format` (strftime: `%-d-%b-%y %H:%M:%S`); the
    /// microseconds when it is out of range.
    #[must_use]
    pub fn format_utc(self, format: &str) -> String {
        jiff::Timestamp::from_microsecond(self.0).map_or_else(
            |_| format!("{}us", self.0),
            |ts| {
                ts.to_zoned(jiff::tz::TimeZone::UTC)
                    .strftime(format)
                    .to_string()
            },
        )
    }

    /// Parses any accepted textual form.
    ///
    /// # Errors
    ///
    /// Text in none of the accepted forms.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let t = text.trim();
        if let Ok(ts) = t.parse::<jiff::Timestamp>() {
            return Ok(Self(ts.as_microsecond()));
        }
        // No offset: the paper's "2018-05-24 14:59:14.924" and plain ISO date-times, as UTC.
        if let Ok(dt) = t.parse::<jiff::civil::DateTime>()
            && let Ok(ts) = dt.to_zoned(jiff::tz::TimeZone::UTC)
        {
            return Ok(Self(ts.timestamp().as_microsecond()));
        }
        // Epoch milliseconds written as text.
        if let Ok(ms) = t.parse::<i64>() {
            return Ok(Self::from_millis(ms));
        }
        Err(TimeError(text.chars().take(40).collect()))
    }

    /// Reads a JSON timestamp: text in any accepted form, or a number of epoch milliseconds.
    ///
    /// # Errors
    ///
    /// Any other JSON value, or text in no accepted form.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TimeError> {
        match value {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Self::from_millis)
                .or_else(|| n.as_f64().map(|f| Self((f * 1000.0) as i64)))
                .ok_or_else(|| TimeError(n.to_string())),
            other => Err(TimeError(other.to_string().chars().take(40).collect())),
        }
    }

    /// The start of the window of length `size` (aligned to the epoch) holding this time.
    #[must_use]
    pub fn floor(self, size: Duration) -> Self {
        let s = micros(size).max(1);
        Self(self.0.div_euclid(s) * s)
    }
}

/// A duration in whole microseconds (saturating).
#[must_use]
pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with milliseconds (microseconds when there are any).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MIN => return f.write_str("-infinity"),
            Self::MAX => return f.write_str("+infinity"),
            _ => {}
        }
        let Ok(ts) = jiff::Timestamp::from_microsecond(self.0) else {
            return write!(f, "{}us", self.0);
        };
        let precision = if self.0 % 1000 == 0 { 3 } else { 6 };
        write!(f, "{:.*}", precision, ts)
    }
}

/// Text that is not a timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a timestamp: use RFC 3339 (2018-06-19T14:40:34.688Z), 2018-05-24 14:59:14.924 (UTC), or epoch milliseconds"
)]
pub struct TimeError(String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_time_is_formatted_as_the_original_open_api_showed_data() {
        let t = Timestamp::parse("2018-06-09T04:05:06.789Z").unwrap();
        assert_eq!(t.format_utc("%-d-%b-%y %H:%M:%S"), "9-Jun-18 04:05:06");
    }

    #[test]
    fn every_accepted_form_reads_to_the_same_instant() {
        let expected = Timestamp::from_millis(1_527_173_954_924);
        for text in [
            "2018-05-24 14:59:14.924",
            "2018-05-24T14:59:14.924",
            "2018-05-24T14:59:14.924Z",
            "2018-05-24T16:59:14.924+02:00",
            "1527173954924",
        ] {
            assert_eq!(Timestamp::parse(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            Timestamp::from_json(&json!(1_527_173_954_924_i64)).unwrap(),
            expected
        );
        assert_eq!(
            Timestamp::from_json(&json!("2018-05-24 14:59:14.924")).unwrap(),
            expected
        );
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::from_json(&json!(true)).is_err());
    }

    #[test]
    fn display_is_rfc3339_utc_with_milliseconds() {
        let t = Timestamp::parse("2018-05-24 14:59:14.924").unwrap();
        assert_eq!(t.to_string(), "2018-05-24T14:59:14.924Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Timestamp(1).to_string(), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn floor_aligns_windows_to_the_epoch() {
        let t = Timestamp::parse("2018-05-24T14:59:14.924Z").unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(t.floor(hour).to_string(), "2018-05-24T14:00:00.000Z");
        assert_eq!(
            Timestamp::from_millis(-1).floor(Duration::from_secs(1)),
            Timestamp::from_millis(-1000)
        );
    }
}
