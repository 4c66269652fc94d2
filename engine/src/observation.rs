//! Observations in flight: the compact internal form of the paper's LiveDataSet / Observation
//! (Table 7), and the batches they travel in.
//!
//! Inside the engine an observation is a small struct: interned source and name, an event
//! time, and a value that is usually a plain `f64`. JSON exists only at the edges
//! ([`crate::codec`]). Observations move in [`Batch`]es, shared between subscribers without
//! copying.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value as Json};

use crate::symbol::Sym;
use crate::time::Timestamp;

/// An observed value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number (strings holding numbers are read as numbers at the edge).
    Number(f64),
    /// `true` / `false`.
    Bool(bool),
    /// Text.
    Text(Arc<String>),
    /// Anything else: a list (a block of vibration samples), an object, `null`.
    Json(Arc<Json>),
}

impl Value {
    /// The value as a number, when it is one.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Reads a JSON value: numbers and numeric strings become numbers.
    #[must_use]
    pub fn from_json(v: &Json) -> Self {
        match v {
            Json::Number(n) => n
                .as_f64()
                .map_or_else(|| Self::Json(Arc::new(v.clone())), Self::Number),
            Json::Bool(b) => Self::Bool(*b),
            Json::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Self::Number(f),
                _ => Self::Text(Arc::new(s.clone())),
            },
            other => Self::Json(Arc::new(other.clone())),
        }
    }

    /// Writes the value as JSON (a non-finite number becomes `null`).
    #[must_use]
    pub fn to_json(&self) -> Json {
        match self {
            Self::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, |n| {
                // Whole numbers are written without a fraction: 1883, not 1883.0.
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                {
                    Json::from(n.as_f64().unwrap_or_default() as i64)
                } else {
                    Json::Number(n)
                }
            }),
            Self::Bool(b) => Json::Bool(*b),
            Self::Text(s) => Json::String(s.to_string()),
            Self::Json(j) => (**j).clone(),
        }
    }
}

/// Extra fields of an observation (window bounds and counts of a result, a location...).
pub type Attributes = Arc<Map<String, Json>>;

/// One observation in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The data source (DSM id) the stream comes from.
    pub source: Sym,
    /// The observed quantity.
    pub name: Sym,
    /// Event time.
    pub timestamp: Timestamp,
    /// The value.
    pub value: Value,
    /// The data kind of the value, when known.
    pub data_kind: Option<Sym>,
    /// When the observation (or, for a result, the newest input it was computed from)
    /// entered the engine: nanoseconds of [`ingest_clock`]. For latency measurements.
    pub ingested: u64,
    /// Extra fields, when there are any.
    pub attributes: Option<Attributes>,
    /// The id it arrived with (a LiveDataSet observation's `id`), kept while processors
    /// pass the observation on unchanged, so that it is written out under the same id; a
    /// result computed by a processor has none and is given a new one when written.
    pub id: Option<ObservationId>,
}

/// An observation's id, as it arrived (shared, not copied, as the observation travels).
pub type ObservationId = Arc<String>;

impl Observation {
    /// A numeric observation stamped as ingested now.
    #[must_use]
    pub fn number(source: Sym, name: Sym, timestamp: Timestamp, value: f64) -> Self {
        Self {
            source,
            name,
            timestamp,
            value: Value::Number(value),
            data_kind: None,
            ingested: ingest_clock(),
            attributes: None,
            id: None,
        }
    }

    /// The attribute `key`, if present.
    #[must_use]
    pub fn attribute(&self, key: &str) -> Option<&Json> {
        self.attributes.as_ref().and_then(|a| a.get(key))
    }
}

/// Nanoseconds on a monotonic clock shared by the whole process.
#[must_use]
pub fn ingest_clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Observations travelling together; cloning shares them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch(Arc<Vec<Observation>>);

impl Batch {
    /// Most observations a batch should hold: producers cut batches at this size.
    pub const MAX_LEN: usize = 1024;

    /// The observations.
    #[must_use]
    pub fn as_slice(&self) -> &[Observation] {
        &self.0
    }

    /// The observations, copied out only if another holder shares them.
    #[must_use]
    pub fn into_vec(self) -> Vec<Observation> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl From<Vec<Observation>> for Batch {
    fn from(v: Vec<Observation>) -> Self {
        Self(Arc::new(v))
    }
}

impl std::ops::Deref for Batch {
    type Target = [Observation];
    fn deref(&self) -> &[Observation] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observations_stay_small() {
        assert!(
            size_of::<Observation>() <= 64,
            "{}",
            size_of::<Observation>()
        );
        assert_eq!(size_of::<Value>(), 16);
    }

    #[test]
    fn values_read_numbers_from_numeric_strings_and_write_whole_numbers_plainly() {
        assert_eq!(Value::from_json(&json!("36")), Value::Number(36.0));
        assert_eq!(Value::from_json(&json!(" 2.5 ")), Value::Number(2.5));
        assert_eq!(
            Value::from_json(&json!("on")),
            Value::Text(Arc::new("on".into()))
        );
        assert_eq!(Value::from_json(&json!([1, 2])).to_json(), json!([1, 2]));
        assert_eq!(Value::Number(1883.0).to_json(), json!(1883));
        assert_eq!(Value::Number(0.5).to_json(), json!(0.5));
        assert_eq!(Value::Number(f64::NAN).to_json(), Json::Null);
    }
}
