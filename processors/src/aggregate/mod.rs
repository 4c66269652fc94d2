//! Windowed statistics, trend and remaining useful life.
//!
//! Each kind is one [`Accumulator`] behind the shared [`Windows`] machinery, so they all
//! take the same window parameters ([`WindowConfig`], see [`crate::window`]): tumbling,
//! hopping, sliding, session and count windows, allowed lateness, late side output. A kind
//! is a marker type of [`kind`] naming its accumulator and its configuration; the running
//! processor is [`Aggregate`] of it.
//!
//! | kind | value | extra parameters (configuration) |
//! |---|---|---|
//! | `average`, `sum`, `min`, `max`, `count` | the statistic | — |
//! | `stddev`, `variance` | sample (n − 1) or population (n) | `estimator`: `sample` ([`SpreadConfig`]) |
//! | `first`, `last` | the value with the earliest / latest timestamp (any type) | — |
//! | `median`, `percentile` | exact, linear interpolation between closest ranks (numpy's default, Hyndman–Fan type 7) | `percentiles`, required for `percentile` ([`PercentileConfig`]) |
//! | `rate` | (last − first) / elapsed time, per `unit` | `unit`: `PT1S` ([`RateConfig`]) |
//! | `integral` | time-weighted integral (trapezoids between samples), in value × `unit`: energy from power | `unit`: `PT1S`, `method`: `trapezoid` ([`IntegralConfig`]) |
//! | `histogram` | `{"edges":[..], "counts":[..], "below":n, "above":n}` | `edges`, or `min`: 0 / `max`: 100 / `buckets`: 10 ([`HistogramConfig`]) |
//! | `trend` | least-squares slope per `unit`; `intercept` (at the window end), `r2` in attributes | `unit`: `PT1S` ([`TrendConfig`]) |
//! | `rul` | time until the fitted trend reaches `failureThreshold`, in `unit`s; null when the trend does not approach it | `failureThreshold` (required), `unit`: `PT1H` ([`RulConfig`]) |
//! | `moving-average` | `average` over a count window sliding by one (the last 10 by default, [`LastTen`]) | — |
//!
//! Sums use Neumaier's compensated summation and the spread Welford's algorithm (merged
//! with Chan's formula), so that long windows of large readings stay accurate. `count`,
//! `first` and `last` take any value; the others need numbers and send anything else to
//! the dead letters. The sample-based kinds (median, percentile, rate, integral, trend, rul)
//! keep the window's (time, value) pairs: memory grows with the observations per window.

use std::borrow::Cow;
use std::marker::PhantomData;

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::time::micros;
use engine::{Observation, Timestamp};
use manifests::config::{Config, ConfigError, Duration};
use manifests::model::Category;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value as Json, json};

use crate::window::{
    Accumulator, WindowConfig, WindowDefaults, WindowSettings, WindowType, Windowed, Windows,
};

mod basic;
mod samples;

pub use basic::{CompensatedSum, Count, Estimator, First, Last, Max, Mean, Min, Spread, Sum};
pub use samples::{Histogram, Integral, Percentile, Rate, Rul, Samples, Trend};

/// What makes one aggregate kind: its `processorType`, its accumulator and its
/// configuration. The kinds are the marker types of [`kind`].
pub trait AggregateKind: Send + 'static {
    /// The `processorType`.
    const KIND: &'static str;
    /// What it does.
    const DESCRIPTION: &'static str;
    /// The statistic.
    type Accumulator: Accumulator;
    /// The parameters: the window's, and the statistic's if it has any.
    type Config: Config + Windowed;

    /// The accumulator's options.
    ///
    /// # Errors
    ///
    /// Options the configuration's check did not already refuse: none, for every kind.
    fn options(
        config: &Self::Config,
    ) -> Result<<Self::Accumulator as Accumulator>::Options, ConfigError>;
}

/// A windowed statistic processor of kind `K`.
#[derive(Debug)]
pub struct Aggregate<K: AggregateKind> {
    windows: Windows,
    kind: PhantomData<fn() -> K>,
}

impl<K: AggregateKind> ProcessorKind for Aggregate<K> {
    const KIND: &'static str = K::KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = K::DESCRIPTION;
    type Config = K::Config;

    fn new(config: K::Config, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let settings = config.window_settings(K::KIND)?;
        let options = K::options(&config)?;
        Ok(Self {
            windows: Windows::new::<K::Accumulator>(
                settings,
                options,
                K::KIND,
                ctx.sink,
                &format!("{}/{}", ctx.instance, ctx.id),
            ),
            kind: PhantomData,
        })
    }
}

impl<K: AggregateKind> Processor for Aggregate<K> {
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

    fn output_watermark(&self, input: Timestamp) -> Timestamp {
        self.windows.output_watermark(input)
    }

    fn timer(&self) -> Option<std::time::Duration> {
        self.windows.timer()
    }

    fn on_timer(&mut self, now: Timestamp, out: &mut Output<'_>) -> Result<(), ProcessorError> {
        self.windows.tick(now, out);
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.windows.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.windows.restore(&state)
    }
}

/// `moving-average`'s window defaults: a count window of the last 10 observations of a
/// key, a result for each new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastTen;

impl WindowDefaults for LastTen {
    fn window_type() -> WindowType {
        WindowType::Count
    }

    fn count() -> i64 {
        10
    }

    fn count_slide() -> Option<i64> {
        Some(1)
    }
}

/// A list of numbers, written as comma-separated text (`50,90,99`, which is what a
/// manifest gives) or, by a processor built in code, as a JSON list or a single number.
/// It is written back as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Numbers(pub Vec<f64>);

impl Serialize for Numbers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        s.serialize_str(&text.join(","))
    }
}

impl<'de> Deserialize<'de> for Numbers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Json::deserialize(d)? {
            Json::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| D::Error::custom(format!("{v} is not a number")))
                })
                .collect::<Result<_, _>>()
                .map(Self),
            Json::Number(n) => Ok(Self(n.as_f64().into_iter().collect())),
            Json::String(text) => text
                .split(',')
                .map(|part| {
                    part.trim().parse::<f64>().map_err(|_| {
                        D::Error::custom(format!("{part:?} is not a number; write e.g. 50,90,99"))
                    })
                })
                .collect::<Result<_, _>>()
                .map(Self),
            other => Err(D::Error::custom(format!(
                "{other} is not a list of numbers"
            ))),
        }
    }
}

impl JsonSchema for Numbers {
    fn schema_name() -> Cow<'static, str> {
        "Numbers".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string"})
    }

    fn inline_schema() -> bool {
        true
    }
}

const fn sample() -> Estimator {
    Estimator::Sample
}

const fn a_second() -> Duration {
    Duration::from_secs(1)
}

const fn an_hour() -> Duration {
    Duration::from_secs(3600)
}

/// `unit` in µs, if it is longer than zero.
fn unit(unit: Duration) -> Result<f64, ConfigError> {
    match micros(unit.get()) {
        u if u > 0 => Ok(u as f64),
        _ => Err(ConfigError::at(
            "unit",
            "unit must be longer than zero, e.g. PT1S or PT1H",
        )),
    }
}

/// Implements [`Windowed`] for a configuration whose window parameters are its `window`,
/// and [`Config`] with the window's checks followed by `$check`.
macro_rules! windowed {
    ($config:ty, |$c:ident| $check:expr, $example:expr) => {
        impl Windowed for $config {
            fn window_settings(&self, kind: &'static str) -> Result<WindowSettings, ConfigError> {
                self.window.window_settings(kind)
            }
        }

        impl Config for $config {
            fn check(&self) -> Result<(), ConfigError> {
                self.window.check()?;
                let $c = self;
                $check
            }

            fn example() -> Json {
                $example
            }
        }
    };
}

/// `stddev` and `variance`: the window parameters and the estimator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpreadConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// sample (divide by n − 1) or population (divide by n).
    #[serde(default = "sample")]
    pub estimator: Estimator,
}

windowed!(SpreadConfig, |_c| Ok(()), json!({}));

/// `percentile`: the window parameters and the percentiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PercentileConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// Percentiles to compute, 0 to 100, comma-separated or an array, e.g. 50,90,99. One
    /// gives a number; several an object {"p50": .., "p90": ..}.
    pub percentiles: Numbers,
}

windowed!(
    PercentileConfig,
    |c| {
        let ps = &c.percentiles.0;
        if ps.is_empty() || ps.iter().any(|p| !(0.0..=100.0).contains(p)) {
            return Err(ConfigError::at(
                "percentiles",
                "percentiles must be between 0 and 100, e.g. 50,90,99",
            ));
        }
        Ok(())
    },
    json!({"percentiles": "50,90,99"})
);

/// `rate`: the window parameters and the unit of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// The time unit of the rate: change per second (PT1S), per hour (PT1H)...
    #[serde(default = "a_second")]
    pub unit: Duration,
}

windowed!(RateConfig, |c| unit(c.unit).map(drop), json!({}));

/// `trend`: the window parameters and the unit of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// The time unit of the slope: change per second (PT1S), per hour (PT1H)...
    #[serde(default = "a_second")]
    pub unit: Duration,
}

windowed!(TrendConfig, |c| unit(c.unit).map(drop), json!({}));

/// How `integral` joins samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Linear between samples.
    Trapezoid,
    /// Each value holds until the next sample.
    Step,
}

const fn trapezoid() -> Method {
    Method::Trapezoid
}

/// `integral`: the window parameters, the unit of time and the method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegralConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// The time unit of the integral: PT1S gives value × seconds (W → J), PT1H value ×
    /// hours (W → Wh).
    #[serde(default = "a_second")]
    pub unit: Duration,
    /// trapezoid (linear between samples) or step (each value holds until the next
    /// sample).
    #[serde(default = "trapezoid")]
    pub method: Method,
}

windowed!(IntegralConfig, |c| unit(c.unit).map(drop), json!({}));

const fn zero() -> f64 {
    0.0
}

const fn a_hundred() -> f64 {
    100.0
}

const fn ten() -> i64 {
    10
}

/// `histogram`: the window parameters and the buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistogramConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// Bucket edges in increasing order, comma-separated or an array, e.g. 0,10,20,50; a
    /// value v is in [edges[i], edges[i+1]). Overrides min/max/buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Numbers>,
    /// Lower edge of equal-width buckets.
    #[serde(default = "zero")]
    pub min: f64,
    /// Upper edge of equal-width buckets.
    #[serde(default = "a_hundred")]
    pub max: f64,
    /// Number of equal-width buckets between min and max.
    #[serde(default = "ten")]
    pub buckets: i64,
}

impl HistogramConfig {
    /// The bucket edges, increasing: `edges`, or those of `buckets` equal buckets from
    /// `min` to `max`.
    ///
    /// # Errors
    ///
    /// Fewer than two edges or edges not increasing; `min` not below `max`, or a number of
    /// buckets outside 1 to 100000.
    pub fn bucket_edges(&self) -> Result<Vec<f64>, ConfigError> {
        use std::cmp::Ordering::Less;
        let edges = match &self.edges {
            Some(edges) => edges.0.clone(),
            None => {
                let (min, max, buckets) = (self.min, self.max, self.buckets);
                let bad_buckets = !(1..=100_000).contains(&buckets);
                if bad_buckets || min.partial_cmp(&max) != Some(Less) {
                    return Err(ConfigError::at(
                        if bad_buckets { "buckets" } else { "max" },
                        format!(
                            "histogram: need min < max and 1 to 100000 buckets (min {min}, max {max}, buckets {buckets})"
                        ),
                    ));
                }
                let width = (max - min) / buckets as f64;
                (0..=buckets).map(|i| min + width * i as f64).collect()
            }
        };
        if edges.len() < 2
            || edges
                .windows(2)
                .any(|w| w[0].partial_cmp(&w[1]) != Some(Less))
        {
            return Err(ConfigError::at(
                "edges",
                "edges: give at least two numbers in increasing order, e.g. 0,10,20,50",
            ));
        }
        Ok(edges)
    }
}

windowed!(HistogramConfig, |c| c.bucket_edges().map(drop), json!({}));

/// `rul`: the window parameters, the failure threshold and the unit of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulConfig {
    /// The window parameters.
    #[serde(flatten)]
    pub window: WindowConfig,
    /// The value at which the equipment is considered failed (e.g. a vibration RMS
    /// limit).
    pub failure_threshold: f64,
    /// The time unit of the remaining useful life: PT1H gives hours.
    #[serde(default = "an_hour")]
    pub unit: Duration,
}

windowed!(
    RulConfig,
    |c| unit(c.unit).map(drop),
    json!({"failureThreshold": 7.1})
);

/// The aggregate kinds: one marker type per `processorType`, named after it (the running
/// processor is `Aggregate<kind::Sum>`), each registered.
pub mod kind {
    use manifests::config::ConfigError;

    use super::{
        Aggregate, AggregateKind, HistogramConfig, IntegralConfig, LastTen, Method,
        PercentileConfig, RateConfig, RulConfig, SpreadConfig, TrendConfig, unit,
    };
    use crate::window::{Accumulator, WindowConfig};

    macro_rules! kinds {
        ($(
            $(#[$doc:meta])*
            $name:ident = $kind:literal, $acc:ty, $config:ty, $description:literal,
            |$c:pat_param| $options:expr;
        )*) => {$(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl AggregateKind for $name {
                const KIND: &'static str = $kind;
                const DESCRIPTION: &'static str = $description;
                type Accumulator = $acc;
                type Config = $config;

                fn options($c: &$config) -> Result<<$acc as Accumulator>::Options, ConfigError> {
                    Ok($options)
                }
            }

            engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Aggregate<$name>>());
        )*};
    }

    kinds! {
        /// `average`.
        Average = "average", super::Mean, WindowConfig,
            "The mean of the values in each window, per key.", |_| ();
        /// `moving-average`.
        MovingAverage = "moving-average", super::Mean, WindowConfig<LastTen>,
            "The mean of the last `count` values (10) of each key, at every new value: a count window sliding by one.",
            |_| ();
        /// `min`.
        Min = "min", super::Min, WindowConfig,
            "The least value in each window, per key.", |_| ();
        /// `max`.
        Max = "max", super::Max, WindowConfig,
            "The greatest value in each window, per key.", |_| ();
        /// `sum`.
        Sum = "sum", super::Sum, WindowConfig,
            "The sum of the values in each window, per key.", |_| ();
        /// `count`.
        Count = "count", super::Count, WindowConfig,
            "How many observations each window holds, per key.", |_| ();
        /// `stddev`.
        Stddev = "stddev", super::Spread<true>, SpreadConfig,
            "The standard deviation of the values in each window, per key.", |c| c.estimator;
        /// `variance`.
        Variance = "variance", super::Spread<false>, SpreadConfig,
            "The variance of the values in each window, per key.", |c| c.estimator;
        /// `first`.
        First = "first", super::First, WindowConfig,
            "The value with the earliest timestamp in each window, per key (any type).", |_| ();
        /// `last`.
        Last = "last", super::Last, WindowConfig,
            "The value with the latest timestamp in each window, per key (any type).", |_| ();
        /// `median`.
        Median = "median", super::Samples<super::Percentile>, WindowConfig,
            "The exact median of the values in each window, per key.", |_| vec![50.0];
        /// `percentile`.
        Percentile = "percentile", super::Samples<super::Percentile>, PercentileConfig,
            "Exact percentiles (linear interpolation between closest ranks) of the values in each window, per key.",
            |c| c.percentiles.0.clone();
        /// `rate`.
        Rate = "rate", super::Samples<super::Rate>, RateConfig,
            "Rate of change in each window, per key: (last − first value) / elapsed time, per `unit`.",
            |c| unit(c.unit)?;
        /// `integral`.
        Integral = "integral", super::Samples<super::Integral>, IntegralConfig,
            "Time-weighted integral of the values in each window, per key (energy from power), in value × `unit`.",
            |c| (unit(c.unit)?, c.method == Method::Step);
        /// `histogram`.
        Histogram = "histogram", super::Histogram, HistogramConfig,
            "Counts of the values in each window per bucket, per key.", |c| c.bucket_edges()?;
        /// `trend`.
        Trend = "trend", super::Samples<super::Trend>, TrendConfig,
            "Least-squares linear trend of the values in each window, per key: the slope per `unit`, with intercept and r².",
            |c| unit(c.unit)?;
        /// `rul`.
        Rul = "rul", super::Samples<super::Rul>, RulConfig,
            "Remaining useful life: when the linear trend of each window reaches `failureThreshold`, in `unit`s after the window's end.",
            |c| (c.failure_threshold, unit(c.unit)?);
    }
}

#[cfg(test)]
mod tests;
