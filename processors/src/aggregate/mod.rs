//! Windowed statistics, trend and remaining useful life.
//!
//! Each kind is one [`Accumulator`] behind the shared [`Windows`] machinery, so they all
//! take the same window parameters (see [`crate::window`]): tumbling, hopping, sliding,
//! session and count windows, allowed lateness, late side output.
//!
//! | kind | value | extra parameters |
//! |---|---|---|
//! | `average`, `sum`, `min`, `max`, `count` | the statistic | — |
//! | `stddev`, `variance` | sample (n − 1) or population (n) | `estimator` |
//! | `first`, `last` | the value with the earliest / latest timestamp (any type) | — |
//! | `median`, `percentile` | exact, linear interpolation between closest ranks (numpy's default, Hyndman–Fan type 7) | `percentiles` |
//! | `rate` | (last − first) / elapsed time, per `unit` | `unit` |
//! | `integral` | time-weighted integral (trapezoids between samples), in value × `unit`: energy from power | `unit`, `method` |
//! | `histogram` | `{"edges":[..], "counts":[..], "below":n, "above":n}` | `edges` or `min`/`max`/`buckets` |
//! | `trend` | least-squares slope per `unit`; `intercept` (at the window end), `r2` in attributes | `unit` |
//! | `rul` | time until the fitted trend reaches `failureThreshold`, in `unit`s; null when the trend does not approach it | `failureThreshold`, `unit` |
//! | `moving-average` | `average` over a count window sliding by one (the last 10 by default) | — |
//!
//! Sums use Neumaier's compensated summation and the spread Welford's algorithm (merged
//! with Chan's formula), so that long windows of large readings stay accurate. `count`,
//! `first` and `last` take any value; the others need numbers and send anything else to
//! the dead letters. The sample-based kinds (median, percentile, rate, integral, trend, rul)
//! keep the window's (time, value) pairs: memory grows with the observations per window.

use engine::processor::{
    Output, ParameterDefinitionExt, Processor, ProcessorContext, ProcessorError,
    ProcessorRegistration, param,
};
use engine::{Observation, Timestamp};
use manifests::model::{Category, DataType, ParameterDefinition};
use serde_json::{Value as Json, json};

use crate::window::{Accumulator, Defaults, TUMBLING, Windows, parameters as window_parameters};

mod basic;
mod samples;

pub use basic::{CompensatedSum, Count, Estimator, First, Last, Max, Mean, Min, Spread, Sum};
pub use samples::{Histogram, Integral, Percentile, Rate, Rul, Samples, Trend};

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
    pub fn new(
        ctx: &ProcessorContext,
        kind: &'static str,
        defaults: &Defaults,
    ) -> Result<Self, ProcessorError> {
        Ok(Self {
            windows: Windows::new(ctx, kind, defaults)?,
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

fn with(extra: Vec<ParameterDefinition>) -> Vec<ParameterDefinition> {
    let mut p = window_parameters();
    p.extend(extra);
    p
}

fn unit(default: &str, doc: &str) -> ParameterDefinition {
    param("unit", DataType::Duration, doc).default_value(json!(default))
}

fn percentile_parameters() -> Vec<ParameterDefinition> {
    with(vec![
        param("percentiles", DataType::String, "Percentiles to compute, 0 to 100, comma-separated or an array, e.g. 50,90,99. One gives a number; several an object {\"p50\": .., \"p90\": ..}.")
            .required(),
    ])
}

fn rate_parameters() -> Vec<ParameterDefinition> {
    with(vec![unit(
        "PT1S",
        "The time unit of the rate: change per second (PT1S), per hour (PT1H)...",
    )])
}

fn integral_parameters() -> Vec<ParameterDefinition> {
    with(vec![
        unit(
            "PT1S",
            "The time unit of the integral: PT1S gives value × seconds (W → J), PT1H value × hours (W → Wh).",
        ),
        param(
            "method",
            DataType::String,
            "trapezoid (linear between samples) or step (each value holds until the next sample).",
        )
        .default_value(json!("trapezoid"))
        .one_of(&["trapezoid", "step"]),
    ])
}

fn histogram_parameters() -> Vec<ParameterDefinition> {
    with(vec![
        param(
            "edges",
            DataType::String,
            "Bucket edges in increasing order, comma-separated or an array, e.g. 0,10,20,50; a value v is in [edges[i], edges[i+1]). Overrides min/max/buckets.",
        ),
        param(
            "min",
            DataType::Number,
            "Lower edge of equal-width buckets.",
        )
        .default_value(json!(0.0)),
        param(
            "max",
            DataType::Number,
            "Upper edge of equal-width buckets.",
        )
        .default_value(json!(100.0)),
        param(
            "buckets",
            DataType::Integer,
            "Number of equal-width buckets between min and max.",
        )
        .default_value(json!(10)),
    ])
}

fn trend_parameters() -> Vec<ParameterDefinition> {
    with(vec![unit(
        "PT1S",
        "The time unit of the slope: change per second (PT1S), per hour (PT1H)...",
    )])
}

fn rul_parameters() -> Vec<ParameterDefinition> {
    with(vec![
        param(
            "failureThreshold",
            DataType::Number,
            "The value at which the equipment is considered failed (e.g. a vibration RMS limit).",
        )
        .required(),
        unit(
            "PT1H",
            "The time unit of the remaining useful life: PT1H gives hours.",
        ),
    ])
}

/// `moving-average`: the last 10 observations of a key, a result for each new one.
const MOVING: Defaults = Defaults {
    window_type: "count",
    count: 10,
    count_slide: Some(1),
};

fn moving_parameters() -> Vec<ParameterDefinition> {
    crate::window::parameters_with(&MOVING)
}

macro_rules! register {
    ($kind:literal, $acc:ty, $description:literal, $parameters:expr) => {
        register!($kind, $acc, $description, $parameters, TUMBLING);
    };
    ($kind:literal, $acc:ty, $description:literal, $parameters:expr, $defaults:expr) => {
        engine::inventory::submit! {
            ProcessorRegistration {
                kind: $kind,
                category: Category::Analytics,
                description: $description,
                parameters: $parameters,
                min_sources: 1,
                factory: |ctx: &ProcessorContext| Ok(Box::new(Aggregate::<$acc>::new(ctx, $kind, &$defaults)?)),
            }
        }
    };
}

register!(
    "average",
    Mean,
    "The mean of the values in each window, per key.",
    window_parameters
);
register!(
    "moving-average",
    Mean,
    "The mean of the last `count` values (10) of each key, at every new value: a count window sliding by one.",
    moving_parameters,
    MOVING
);
register!(
    "min",
    Min,
    "The least value in each window, per key.",
    window_parameters
);
register!(
    "max",
    Max,
    "The greatest value in each window, per key.",
    window_parameters
);
register!(
    "sum",
    Sum,
    "The sum of the values in each window, per key.",
    window_parameters
);
register!(
    "count",
    Count,
    "How many observations each window holds, per key.",
    window_parameters
);
register!(
    "stddev",
    Spread<true>,
    "The standard deviation of the values in each window, per key.",
    stddev_parameters
);
register!(
    "variance",
    Spread<false>,
    "The variance of the values in each window, per key.",
    stddev_parameters
);
register!(
    "first",
    First,
    "The value with the earliest timestamp in each window, per key (any type).",
    window_parameters
);
register!(
    "last",
    Last,
    "The value with the latest timestamp in each window, per key (any type).",
    window_parameters
);
register!(
    "median",
    Samples<Percentile>,
    "The exact median of the values in each window, per key.",
    window_parameters
);
register!(
    "percentile",
    Samples<Percentile>,
    "Exact percentiles (linear interpolation between closest ranks) of the values in each window, per key.",
    percentile_parameters
);
register!(
    "rate",
    Samples<Rate>,
    "Rate of change in each window, per key: (last − first value) / elapsed time, per `unit`.",
    rate_parameters
);
register!(
    "integral",
    Samples<Integral>,
    "Time-weighted integral of the values in each window, per key (energy from power), in value × `unit`.",
    integral_parameters
);
register!(
    "histogram",
    Histogram,
    "Counts of the values in each window per bucket, per key.",
    histogram_parameters
);
register!(
    "trend",
    Samples<Trend>,
    "Least-squares linear trend of the values in each window, per key: the slope per `unit`, with intercept and r².",
    trend_parameters
);
register!(
    "rul",
    Samples<Rul>,
    "Remaining useful life: when the linear trend of each window reaches `failureThreshold`, in `unit`s after the window's end.",
    rul_parameters
);

#[cfg(test)]
mod tests;
