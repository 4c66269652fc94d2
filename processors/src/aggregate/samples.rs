//! Accumulators that keep the window's samples (median, percentiles, rate, integral,
//! trend, remaining useful life) and the histogram.

use std::marker::PhantomData;
use std::sync::Arc;

use engine::{Observation, Timestamp, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::basic::number;
use crate::window::Accumulator;

/// A statistic computed from a window's (time µs, value) samples, sorted by time.
pub trait SampleStatistic: Send + Sync + std::fmt::Debug + 'static {
    /// Options read once from the processor's configuration.
    type Options: Clone + Send + std::fmt::Debug + 'static;

    /// The statistic of `samples` (at least one, sorted by time then value).
    fn compute(
        samples: &[(i64, f64)],
        options: &Self::Options,
        attributes: &mut Map<String, Json>,
    ) -> Value;
}

/// The samples of a window.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Samples<S> {
    samples: Vec<(i64, f64)>,
    #[serde(skip)]
    statistic: PhantomData<S>,
}

impl<S> Clone for Samples<S> {
    fn clone(&self) -> Self {
        Self {
            samples: self.samples.clone(),
            statistic: PhantomData,
        }
    }
}

impl<S: SampleStatistic> Accumulator for Samples<S> {
    type Options = S::Options;

    fn new(_options: &S::Options) -> Self {
        Self {
            samples: Vec::new(),
            statistic: PhantomData,
        }
    }

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let v = number(o)?;
        if !v.is_finite() {
            return Err("the value is not a finite number");
        }
        self.samples.push((o.timestamp.as_micros(), v));
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.samples.extend_from_slice(&other.samples);
    }

    fn count(&self) -> u64 {
        self.samples.len() as u64
    }

    fn result(&self, options: &S::Options, attributes: &mut Map<String, Json>) -> Value {
        let mut sorted = self.samples.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        if sorted.is_empty() {
            return null();
        }
        S::compute(&sorted, options, attributes)
    }
}

fn null() -> Value {
    Value::Json(Arc::new(Json::Null))
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values by linear interpolation between closest
/// ranks (Hyndman–Fan type 7, numpy's default).
#[must_use]
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Percentiles (`median` is the 50th).
#[derive(Debug)]
pub struct Percentile;

impl SampleStatistic for Percentile {
    /// The percentiles, 0 to 100.
    type Options = Vec<f64>;

    fn compute(samples: &[(i64, f64)], ps: &Vec<f64>, _: &mut Map<String, Json>) -> Value {
        let mut values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        values.sort_by(f64::total_cmp);
        if let [p] = ps.as_slice() {
            return Value::Number(quantile(&values, p / 100.0));
        }
        let object: Map<String, Json> = ps
            .iter()
            .map(|p| (format!("p{p}"), Json::from(quantile(&values, p / 100.0))))
            .collect();
        Value::Json(Arc::new(Json::Object(object)))
    }
}

/// Rate of change per unit of time.
#[derive(Debug)]
pub struct Rate;

impl SampleStatistic for Rate {
    /// The unit of time (µs).
    type Options = f64;

    fn compute(samples: &[(i64, f64)], unit: &f64, _: &mut Map<String, Json>) -> Value {
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        if last.0 == first.0 {
            return null();
        }
        Value::Number((last.1 - first.1) / (last.0 - first.0) as f64 * unit)
    }
}

/// Time-weighted integral.
#[derive(Debug)]
pub struct Integral;

impl SampleStatistic for Integral {
    /// (unit µs, step method).
    type Options = (f64, bool);

    fn compute(
        samples: &[(i64, f64)],
        &(unit, step): &(f64, bool),
        _: &mut Map<String, Json>,
    ) -> Value {
        let area: f64 = samples
            .windows(2)
            .map(|w| {
                let dt = (w[1].0 - w[0].0) as f64;
                if step {
                    w[0].1 * dt
                } else {
                    (w[0].1 + w[1].1) / 2.0 * dt
                }
            })
            .sum();
        Value::Number(area / unit)
    }
}

/// A least-squares line through samples: value = intercept + slope × (t − t_end), with t
/// in µs.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    /// Change per µs.
    pub slope: f64,
    /// Value at the reference time.
    pub intercept: f64,
    /// Coefficient of determination (1 for a perfect fit; NaN when the values are constant).
    pub r2: f64,
}

/// Fits a line by least squares, relative to time `reference` (two-pass, centred, so that
/// epoch-sized times lose no precision). None with fewer than two distinct times.
#[must_use]
pub fn fit(samples: &[(i64, f64)], reference: i64) -> Option<Line> {
    let n = samples.len() as f64;
    let xs = samples.iter().map(|s| (s.0 - reference) as f64);
    let mean_x = xs.clone().sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, &(_, y)) in xs.zip(samples) {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        slope,
        intercept: mean_y - slope * mean_x,
        r2: if syy == 0.0 {
            f64::NAN
        } else {
            sxy * sxy / (sxx * syy)
        },
    })
}

fn describe(line: &Line, reference: i64, attributes: &mut Map<String, Json>) {
    attributes.insert("intercept".into(), Json::from(line.intercept));
    attributes.insert(
        "interceptAt".into(),
        Json::String(Timestamp(reference).to_string()),
    );
    if line.r2.is_finite() {
        attributes.insert("r2".into(), Json::from(line.r2));
    }
}

/// Linear trend: the slope per unit.
#[derive(Debug)]
pub struct Trend;

impl SampleStatistic for Trend {
    /// The unit of time (µs).
    type Options = f64;

    fn compute(samples: &[(i64, f64)], unit: &f64, attributes: &mut Map<String, Json>) -> Value {
        let reference = samples[samples.len() - 1].0;
        match fit(samples, reference) {
            Some(line) => {
                describe(&line, reference, attributes);
                Value::Number(line.slope * unit)
            }
            None => null(),
        }
    }
}

/// Remaining useful life: when the trend reaches the failure threshold.
#[derive(Debug)]
pub struct Rul;

impl SampleStatistic for Rul {
    /// (failure threshold, unit µs).
    type Options = (f64, f64);

    fn compute(
        samples: &[(i64, f64)],
        &(threshold, unit): &(f64, f64),
        attributes: &mut Map<String, Json>,
    ) -> Value {
        let now = samples[samples.len() - 1].0;
        let Some(line) = fit(samples, now) else {
            return null();
        };
        describe(&line, now, attributes);
        attributes.insert("slopePerUnit".into(), Json::from(line.slope * unit));
        attributes.insert("failureThreshold".into(), Json::from(threshold));
        let gap = threshold - line.intercept;
        if gap == 0.0 {
            attributes.insert(
                "failureTime".into(),
                Json::String(Timestamp(now).to_string()),
            );
            return Value::Number(0.0);
        }
        // Failed already, or not heading for the threshold: no finite life to report.
        if line.slope == 0.0 || gap.signum() != line.slope.signum() {
            attributes.insert(
                "status".into(),
                Json::String("the trend does not approach the failure threshold".into()),
            );
            return null();
        }
        let until = gap / line.slope;
        if let Some(at) = now.checked_add(until.round() as i64) {
            attributes.insert(
                "failureTime".into(),
                Json::String(Timestamp(at).to_string()),
            );
        }
        Value::Number(until / unit)
    }
}

/// Bucket counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// The bucket edges, increasing (kept here so that a restored window needs nothing else).
    edges: Vec<f64>,
    counts: Vec<u64>,
    below: u64,
    above: u64,
    n: u64,
}

impl Accumulator for Histogram {
    /// The bucket edges, increasing.
    type Options = Vec<f64>;

    fn new(edges: &Vec<f64>) -> Self {
        Self {
            edges: edges.clone(),
            counts: vec![0; edges.len() - 1],
            ..Self::default()
        }
    }

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        let v = number(o)?;
        if v.is_nan() {
            return Err("the value is NaN");
        }
        self.n += 1;
        if v < self.edges[0] {
            self.below += 1;
        } else if v >= self.edges[self.edges.len() - 1] {
            self.above += 1;
        } else {
            // The last edge not above v.
            let bucket = self.edges.partition_point(|e| *e <= v) - 1;
            self.counts[bucket] += 1;
        }
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.below += other.below;
        self.above += other.above;
        self.n += other.n;
    }

    fn count(&self) -> u64 {
        self.n
    }

    fn result(&self, _: &Vec<f64>, _: &mut Map<String, Json>) -> Value {
        Value::Json(Arc::new(serde_json::json!({
            "edges": self.edges,
            "counts": self.counts,
            "below": self.below,
            "above": self.above,
        })))
    }
}
