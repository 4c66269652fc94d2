//! Windowed statistics: `average`, `min`, `max`, `sum`, `count`, `stddev`.
//!
//! Each kind is one [`Accumulator`] behind the shared [`Windows`] machinery, so they all
//! take the same window parameters (see [`crate::window`]). Sums use Neumaier's compensated
//! summation, and the standard deviation Welford's algorithm, so that long windows of large
//! readings stay accurate. `count` counts every observation; the others need numbers and
//! send anything else to the dead letters.

use engine::processor::{
    Output, ParameterDefinitionExt, Processor, ProcessorContext, ProcessorError,
    ProcessorRegistration, param,
};
use engine::{Observation, Timestamp, Value};
use manifests::model::{Category, DataType, ParameterDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::window::{Accumulator, Windows, parameters as window_parameters};

/// A windowed statistic processor.
#[derive(Debug)]
pub struct Aggregate<A: Accumulator> {
    windows: Windows<A>,
}

impl<A: Accumulator> Aggregate<A> {
    /// A processor of kind `kind` from its parameters.
    ///
    /// # Errors
    ///
    /// Unusable parameters.
    pub fn new(ctx: &ProcessorContext, kind: &'static str) -> Result<Self, ProcessorError> {
        Ok(Self {
            windows: Windows::new(ctx, kind)?,
        })
    }
}

impl<A: Accumulator> Processor for Aggregate<A> {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        self.windows.add(input, out);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        self.windows.advance(watermark, out);
        Ok(())
    }

    fn flush(&mut self, out: &mut Output<'_>) -> Result<(), ProcessorError> {
        self.windows.flush(out);
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.windows.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.windows.restore(&state)
    }
}

const NOT_A_NUMBER: &str = "the value is not a number";

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

    /// The sum.
    #[must_use]
    pub fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

fn number(o: &Observation) -> Result<f64, &'static str> {
    o.value.as_f64().ok_or(NOT_A_NUMBER)
}

/// Implements the option-less parts of [`Accumulator`].
macro_rules! no_options {
    () => {
        type Options = ();
        fn options(_ctx: &ProcessorContext) -> Result<(), ProcessorError> {
            Ok(())
        }
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

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &()) -> Value {
        Value::Number(self.sum.total() / self.n as f64)
    }
}

/// Sum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sum {
    sum: CompensatedSum,
    n: u64,
}

impl Accumulator for Sum {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        self.sum.add(number(o)?);
        self.n += 1;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &()) -> Value {
        Value::Number(self.sum.total())
    }
}

/// Minimum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Min {
    min: Option<f64>,
    n: u64,
}

impl Accumulator for Min {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let v = number(o)?;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.n += 1;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &()) -> Value {
        Value::Number(self.min.unwrap_or(f64::NAN))
    }
}

/// Maximum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Max {
    max: Option<f64>,
    n: u64,
}

impl Accumulator for Max {
    no_options!();

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let v = number(o)?;
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        self.n += 1;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &()) -> Value {
        Value::Number(self.max.unwrap_or(f64::NAN))
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

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, (): &()) -> Value {
        Value::Number(self.n as f64)
    }
}

/// Standard deviation (Welford).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StdDev {
    n: u64,
    mean: f64,
    m2: f64,
}

/// Which standard deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    /// Divides by n − 1 (the default; undefined for one value).
    Sample,
    /// Divides by n.
    Population,
}

impl Accumulator for StdDev {
    type Options = Estimator;

    fn options(ctx: &ProcessorContext) -> Result<Estimator, ProcessorError> {
        match ctx
            .parameters
            .get_str("estimator")
            .as_deref()
            .unwrap_or("sample")
        {
            "sample" => Ok(Estimator::Sample),
            "population" => Ok(Estimator::Population),
            other => Err(ProcessorError::Config(format!(
                "estimator {other:?}: use sample or population"
            ))),
        }
    }

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

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, estimator: &Estimator) -> Value {
        let divisor = match estimator {
            Estimator::Sample if self.n < 2 => return Value::Json(std::sync::Arc::new(Json::Null)),
            Estimator::Sample => self.n - 1,
            Estimator::Population => self.n,
        };
        Value::Number((self.m2 / divisor as f64).max(0.0).sqrt())
    }
}

fn stddev_parameters() -> Vec<ParameterDefinition> {
    let mut p = window_parameters();
    p.push(
        param(
            "estimator",
            DataType::String,
            "sample (divide by n − 1) or population (divide by n).",
        )
        .default_value(json!("sample"))
        .one_of(&["sample", "population"]),
    );
    p
}

macro_rules! register {
    ($kind:literal, $acc:ty, $description:literal, $parameters:expr) => {
        engine::inventory::submit! {
            ProcessorRegistration {
                kind: $kind,
                category: Category::Analytics,
                description: $description,
                parameters: $parameters,
                min_sources: 1,
                factory: |ctx: &ProcessorContext| Ok(Box::new(Aggregate::<$acc>::new(ctx, $kind)?)),
            }
        }
    };
}

register!(
    "average",
    Mean,
    "The mean of the values in each tumbling event-time window, per key.",
    window_parameters
);
register!(
    "min",
    Min,
    "The least value in each tumbling event-time window, per key.",
    window_parameters
);
register!(
    "max",
    Max,
    "The greatest value in each tumbling event-time window, per key.",
    window_parameters
);
register!(
    "sum",
    Sum,
    "The sum of the values in each tumbling event-time window, per key.",
    window_parameters
);
register!(
    "count",
    Count,
    "How many observations each tumbling event-time window holds, per key.",
    window_parameters
);
register!(
    "stddev",
    StdDev,
    "The standard deviation of the values in each tumbling event-time window, per key.",
    stddev_parameters
);

#[cfg(test)]
mod tests;
