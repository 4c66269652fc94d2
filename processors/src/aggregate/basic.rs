//! Accumulators of constant size: mean, sum, min, max, count, spread, first, last.

use engine::{Observation, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::window::Accumulator;

pub(super) const NOT_A_NUMBER: &str = "the value is not a number";

pub(super) fn number(o: &Observation) -> Result<f64, &'static str> {
    o.value.as_f64().ok_or(NOT_A_NUMBER)
}

/// Neumaier's compensated sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// Adds `x`.
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// Adds another compensated sum.
    pub fn merge(&mut self, other: &Self) {
        self.add(other.sum);
        self.compensation += other.compensation;
    }

    /// The sum.
    #[must_use]
    pub fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Implements the option-less parts of [`Accumulator`].
macro_rules! no_options {
    () => {
        type Options = ();
        fn new(_options: &()) -> Self {
            Self::default()
        }
    };
}

/// Arithmetic mean.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Mean {
    sum: CompensatedSum,
    n: u64,
}

impl Accumulator for Mean {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        self.sum.add(number(o)?);
        self.n += 1;
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.sum.merge(&other.sum);
        self.n += other.n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &(), _: &mut Map<String, Json>) -> Value {
        Value::Number(self.sum.total() / self.n as f64)
    }
}

/// Sum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sum(Mean);

impl Accumulator for Sum {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        self.0.add(o)
    }

    fn merge(&mut self, other: &Self) {
        self.0.merge(&other.0);
    }

    fn count(&self) -> u64 {
        self.0.n
    }

    fn result(&self, (): &(), _: &mut Map<String, Json>) -> Value {
        Value::Number(self.0.sum.total())
    }
}

/// The least or greatest value (`GREATEST` picks which).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Extreme<const GREATEST: bool> {
    best: Option<f64>,
    n: u64,
}

/// Minimum.
pub type Min = Extreme<false>;
/// Maximum.
pub type Max = Extreme<true>;

impl<const GREATEST: bool> Accumulator for Extreme<GREATEST> {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let v = number(o)?;
        self.merge(&Self {
            best: Some(v),
            n: 1,
        });
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.best = match (self.best, other.best) {
            (Some(a), Some(b)) if GREATEST => Some(a.max(b)),
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.n += other.n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &(), _: &mut Map<String, Json>) -> Value {
        Value::Number(self.best.unwrap_or(f64::NAN))
    }
}

/// Count of observations, whatever their values.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Count {
    n: u64,
}

impl Accumulator for Count {
    no_options!();

    fn add(&mut self, _o: &Observation) -> Result<(), &'static str> {
        self.n += 1;
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.n += other.n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &(), _: &mut Map<String, Json>) -> Value {
        Value::Number(self.n as f64)
    }
}

/// Which spread estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// Divides by n − 1 (the default; undefined for one value).
    Sample,
    /// Divides by n.
    Population,
}

/// Standard deviation (`ROOT`) or variance: Welford's algorithm, merged with Chan's
/// formula.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spread<const ROOT: bool> {
    n: u64,
    mean: f64,
    m2: f64,
}

impl<const ROOT: bool> Accumulator for Spread<ROOT> {
    type Options = Estimator;

    fn new(_options: &Estimator) -> Self {
        Self::default()
    }

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let x = number(o)?;
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        self.m2 += other.m2 + delta * delta * (self.n as f64) * (other.n as f64) / n as f64;
        self.mean += delta * other.n as f64 / n as f64;
        self.n = n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, estimator: &Estimator, _: &mut Map<String, Json>) -> Value {
        let divisor = match estimator {
            Estimator::Sample if self.n < 2 => return Value::Json(std::sync::Arc::new(Json::Null)),
            Estimator::Sample => self.n - 1,
            Estimator::Population => self.n,
        };
        let variance = (self.m2 / divisor as f64).max(0.0);
        Value::Number(if ROOT { variance.sqrt() } else { variance })
    }
}

/// The value with the earliest (`LATEST` false) or latest timestamp; of equal timestamps,
/// the one that came first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Edge<const LATEST: bool> {
    #[serde(with = "value_as_text_in_binary")]
    at: Option<(i64, Json)>,
    n: u64,
}

/// An edge's value: itself in JSON; its text in a binary form (checkpoints' packed
/// windows), which cannot hold a value of any shape.
mod value_as_text_in_binary {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value as Json;

    pub(super) fn serialize<S: Serializer>(
        at: &Option<(i64, Json)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            at.serialize(s)
        } else {
            at.as_ref().map(|(t, v)| (*t, v.to_string())).serialize(s)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(i64, Json)>, D::Error> {
        if d.is_human_readable() {
            return Option::deserialize(d);
        }
        Option::<(i64, String)>::deserialize(d)?
            .map(|(t, text)| Ok((t, serde_json::from_str(&text).map_err(D::Error::custom)?)))
            .transpose()
    }
}

/// The first value of a window.
pub type First = Edge<false>;
/// The last value of a window.
pub type Last = Edge<true>;

impl<const LATEST: bool> Accumulator for Edge<LATEST> {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        self.merge(&Self {
            at: Some((o.timestamp.as_micros(), o.value.to_json())),
            n: 1,
        });
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        if let Some((t, v)) = &other.at {
            let replace = match &self.at {
                None => true,
                Some((mine, _)) if LATEST => t > mine,
                Some((mine, _)) => t < mine,
            };
            if replace {
                self.at = Some((*t, v.clone()));
            }
        }
        self.n += other.n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &(), attributes: &mut Map<String, Json>) -> Value {
        match &self.at {
            Some((t, v)) => {
                attributes.insert("at".into(), Json::String(engine::Timestamp(*t).to_string()));
                Value::from_json(v)
            }
            None => Value::Json(std::sync::Arc::new(Json::Null)),
        }
    }
}
