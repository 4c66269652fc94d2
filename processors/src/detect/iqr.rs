//! `iqr`: outliers outside Tukey's fences of the trailing window of their key.
//!
//! For each observation, the quartiles Q1 and Q3 of the `count` observations of its key
//! that came **before** it give the fences `[Q1 − k·IQR, Q3 + k·IQR]`, IQR = Q3 − Q1; a
//! value outside them is an outlier. Then it joins the window (outliers too), and the
//! oldest value leaves when the window holds more than `count`. Until the window holds
//! `minCount` values an observation is not judged.
//!
//! **Time window.** With `window`, the window of an observation at time t is the key's
//! observations at t' with `t − window <= t' < t` — at most `count` of them, the most
//! recent (so `count` bounds memory and the window holds at most `count` values). Earlier
//! observations at the same time t are not before it and are left out. The window then
//! holds as many values as came in that time, and with fewer than `minCount` the
//! observation is not judged (after a gap in the data, say). Without `window`, the window
//! is the last `count` observations however old they are.
//!
//! **Quantiles** are by linear interpolation between order statistics — numpy's default
//! (`method="linear"`), R's type 7, Excel's `QUARTILE.INC`: with the n values sorted as
//! x₀ ≤ … ≤ xₙ₋₁, the p-quantile is at rank h = (n − 1)·p, Q(p) = x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋).
//! For 1, 2, …, 10 this gives Q1 = 3.25 and Q3 = 7.75.
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `count` | integer | 30 | how many preceding observations of the key form the window (with `window`: at most this many) |
//! | `minCount` | integer | 10 | how many the window needs before observations are judged (2 to `count`) |
//! | `window` | duration | none | when given, the window is the key's observations within this duration before the judged one, e.g. `PT10M` |
//! | `k` | number | 1.5 | the fences' distance from the quartiles, in IQRs (3 for "far out") |
//! | `emit` | string | `outliers` | `outliers`: an alert per outlier; `all`: every judged observation, with its own value |
//! | `observationName`, `groupBy`, `keyField` | | | see [`super`] |
//! | `outputName` | string | `alert` (`iqr` with `emit` = `all`) | name of the results |
//!
//! ([`IqrConfig`] is the table as a type: its defaults are the ones above.)
//!
//! **Output.** Source = the input's, time = the observation's, value = the observation's
//! value. Attributes: `rule` (e.g. `outside [Q1 − 1.5·IQR, Q3 + 1.5·IQR] of the last 30
//! power`; with `window`, `… of the last PT10M (at most 30) power`), `q1`, `q3`, `iqr`,
//! `lower`, `upper` (the fences), `value`, `outlier`, `direction` (`low`, `high`, or
//! `none` inside the fences), `windowCount` (how many values the window held),
//! `observationName`. Each key
//! needs its observations in event-time order; an older one goes to the dead letters.

use engine::Observation;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Emit, KeyConfig, Outliers, TrailingConfig, Verdict, num, outliers_only};

/// The processor type.
pub const KIND: &str = "iqr";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Iqr>());

const fn one_and_a_half() -> f64 {
    1.5
}

/// The parameters of `iqr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IqrConfig {
    /// The trailing window.
    #[serde(flatten)]
    pub trailing: TrailingConfig,
    /// Distance of the fences from the quartiles, in interquartile ranges (1.5 for
    /// outliers, 3 for far-out values).
    #[serde(default = "one_and_a_half")]
    pub k: f64,
    /// outliers: emit an alert for each outlier only; all: emit every judged observation
    /// with its fences.
    #[serde(default = "outliers_only")]
    pub emit: Emit,
    /// What is read and what state is kept per.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Name of the results (default: alert; iqr when emit is all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl Config for IqrConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.trailing.check()?;
        if self.k < 0.0 {
            return Err(ConfigError::at(
                "k",
                format!(
                    "parameter `k` is {}: give a number of interquartile ranges of at least 0, e.g. 1.5",
                    self.k
                ),
            ));
        }
        Ok(())
    }

    fn reword(error: ConfigError) -> ConfigError {
        super::named(error)
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Iqr {
    k: f64,
    outliers: Outliers,
}

impl ProcessorKind for Iqr {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Flags outliers: observations outside Tukey's fences [Q1 - k*IQR, Q3 + k*IQR] of the preceding `count` observations of their key.";
    type Config = IqrConfig;

    fn new(config: IqrConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            k: config.k,
            outliers: Outliers::new(
                &config.trailing,
                config.emit,
                &config.key,
                config.output_name.as_deref(),
                KIND,
                ctx.sink,
            )?,
        })
    }
}

/// The p-quantile of sorted values by linear interpolation (numpy's default).
#[must_use]
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    let Some(&first) = sorted.first() else {
        return f64::NAN;
    };
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor();
    let i = lo as usize;
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + (h - lo) * (next - sorted[i]),
        None => sorted.get(i).copied().unwrap_or(first),
    }
}

/// Tukey's fences of a window, and where a value lies.
struct Fences {
    q1: f64,
    q3: f64,
    lower: f64,
    upper: f64,
    direction: &'static str,
}

impl Processor for Iqr {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        let k = self.k;
        self.outliers.process(
            input,
            out,
            |mut sorted, x| {
                sorted.sort_by(f64::total_cmp);
                let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
                let (lower, upper) = (q1 - k * (q3 - q1), q3 + k * (q3 - q1));
                let direction = if x < lower {
                    "low"
                } else if x > upper {
                    "high"
                } else {
                    "none"
                };
                Verdict {
                    outlier: direction != "none",
                    score: x,
                    stats: Fences {
                        q1,
                        q3,
                        lower,
                        upper,
                        direction,
                    },
                }
            },
            |f, of, a| {
                a.insert(
                    "rule".into(),
                    Json::String(format!(
                        "outside [Q1 - {k}*IQR, Q3 + {k}*IQR] of the last {of}"
                    )),
                );
                a.insert("q1".into(), num(f.q1));
                a.insert("q3".into(), num(f.q3));
                a.insert("iqr".into(), num(f.q3 - f.q1));
                a.insert("lower".into(), num(f.lower));
                a.insert("upper".into(), num(f.upper));
                a.insert("direction".into(), Json::String(f.direction.into()));
            },
        );
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.outliers.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.outliers.restore(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::{at, by_time, irregular, noisy, restored_gives_the_same, series};
    use crate::testing::run;
    use serde_json::json;

    fn iqr(params: Json) -> Iqr {
        Iqr::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
    }

    /// Hyndman & Fan's definition 7 in its own form: with 1-based order statistics
    /// x(1) ≤ … ≤ x(n), m = 1 − p, j = ⌊np + m⌋, g = np + m − j, Q = (1 − g)·x(j) + g·x(j+1).
    fn hyndman_fan_7(values: &[f64], p: f64) -> f64 {
        let mut x = values.to_vec();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = x.len() as f64;
        let m = 1.0 - p;
        let j = (n * p + m).floor();
        let g = n * p + m - j;
        let at = |r: f64| x[(r as usize).clamp(1, x.len()) - 1];
        (1.0 - g) * at(j) + g * at(j + 1.0)
    }

    #[test]
    fn quartiles_are_numpys_linear_ones() {
        let one_to_ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&one_to_ten, 0.25), 3.25);
        assert_eq!(quantile(&one_to_ten, 0.75), 7.75);
        assert_eq!(quantile(&[4.0], 0.75), 4.0);
        for n in 2..40 {
            let mut v: Vec<f64> = noisy(n, 0.0, 10.0).iter().map(|d| d.1).collect();
            v.sort_by(f64::total_cmp);
            for p in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0] {
                let (a, b) = (quantile(&v, p), hyndman_fan_7(&v, p));
                assert!((a - b).abs() < 1e-12, "n={n} p={p}: {a} vs {b}");
            }
        }
    }

    /// Noise around 20 with a high spike at 50 and a low one at 80.
    fn readings() -> Vec<(i64, f64)> {
        noisy(120, 20.0, 3.0)
            .into_iter()
            .map(|(t, x)| match t {
                50 => (t, 40.0),
                80 => (t, 2.0),
                _ => (t, x),
            })
            .collect()
    }

    #[test]
    fn every_fence_matches_an_independent_computation() {
        let data = readings();
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        let mut p = iqr(json!({"count": 25, "minCount": 8, "emit": "all"}));
        let (out, rejected) = run(&mut p, &series("flow", &data));
        assert!(rejected.is_empty());
        assert_eq!(out.len(), values.len() - 8);
        for (o, i) in out.iter().zip(8_usize..) {
            let before = &values[i.saturating_sub(25)..i];
            let (q1, q3) = (hyndman_fan_7(before, 0.25), hyndman_fan_7(before, 0.75));
            let (lower, upper) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
            let attr = |k: &str| o.attribute(k).unwrap().as_f64().unwrap();
            assert!((attr("lower") - lower).abs() < 1e-9, "i={i}");
            assert!((attr("upper") - upper).abs() < 1e-9, "i={i}");
            assert_eq!(
                o.attribute("outlier").unwrap(),
                &json!(values[i] < lower || values[i] > upper)
            );
            assert_eq!(o.value.as_f64(), Some(values[i]));
            assert_eq!(o.name.to_string(), "iqr");
        }
    }

    #[test]
    fn the_spikes_are_outliers_with_their_direction() {
        let mut p = iqr(json!({"k": 3}));
        let (out, _) = run(&mut p, &series("flow", &readings()));
        let found: Vec<(i64, String)> = out
            .iter()
            .map(|o| {
                (
                    o.timestamp.as_millis() / 1000,
                    o.attribute("direction")
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(found, [(50, "high".to_owned()), (80, "low".to_owned())]);
        assert_eq!(out[0].timestamp, at(50));
        assert_eq!(out[0].name.to_string(), "alert");
        assert_eq!(out[0].value.as_f64(), Some(40.0));
        assert_eq!(
            out[0].attribute("rule").unwrap(),
            "outside [Q1 - 3*IQR, Q3 + 3*IQR] of the last 30 flow"
        );
    }

    #[test]
    fn a_restored_processor_continues_identically() {
        restored_gives_the_same(
            KIND,
            &json!({"count": 15, "emit": "all"}),
            &series("flow", &readings()),
            60,
        );
    }

    #[test]
    fn with_a_time_window_every_fence_matches_type_7_on_the_slice_selected_by_time() {
        let data = irregular(120, 20.0, 3.0);
        let mut p = iqr(json!({"count": 15, "minCount": 5, "window": "PT25S", "emit": "all"}));
        let (out, rejected) = run(&mut p, &series("flow", &data));
        assert!(rejected.is_empty());
        let judged: Vec<(usize, Vec<f64>)> = (0..data.len())
            .map(|i| (i, by_time(&data, i, 25, 15)))
            .filter(|(_, before)| before.len() >= 5)
            .collect();
        let sizes: std::collections::BTreeSet<usize> =
            judged.iter().map(|(_, b)| b.len()).collect();
        assert!(sizes.len() > 3 && sizes.contains(&15), "{sizes:?}");
        assert!(
            judged.len() < data.len() - 5,
            "the gap leaves some unjudged"
        );
        assert_eq!(out.len(), judged.len());
        for (o, (i, before)) in out.iter().zip(&judged) {
            let (q1, q3) = (hyndman_fan_7(before, 0.25), hyndman_fan_7(before, 0.75));
            let (lower, upper) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
            let attr = |k: &str| o.attribute(k).unwrap().as_f64().unwrap();
            assert!((attr("q1") - q1).abs() < 1e-9, "i={i}");
            assert!((attr("q3") - q3).abs() < 1e-9, "i={i}");
            assert!((attr("lower") - lower).abs() < 1e-9, "i={i}");
            assert!((attr("upper") - upper).abs() < 1e-9, "i={i}");
            assert_eq!(o.timestamp, at(data[*i].0), "i={i}");
            assert_eq!(o.attribute("windowCount").unwrap(), &json!(before.len()));
        }
        assert_eq!(
            out[0].attribute("rule").unwrap(),
            "outside [Q1 - 1.5*IQR, Q3 + 1.5*IQR] of the last PT25S (at most 15) flow"
        );
    }

    #[test]
    fn a_restored_processor_with_a_time_window_continues_identically() {
        restored_gives_the_same(
            KIND,
            &json!({"count": 12, "minCount": 4, "window": "PT20S", "emit": "all"}),
            &series("flow", &irregular(80, 20.0, 3.0)),
            25,
        );
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for (params, needle) in [
            (json!({"count": 0}), "`count`"),
            (json!({"count": 5, "minCount": 6}), "`minCount`"),
            (json!({"k": -1}), "`k`"),
            (json!({"k": "wide"}), "`k`"),
            (json!({"emit": "some"}), "`emit`"),
            (json!({"window": "a while"}), "`window`"),
            (json!({"window": "0s"}), "`window`"),
        ] {
            match Iqr::from_context(&ProcessorContext::for_test(&params, "sink")) {
                Err(ProcessorError::Config(m)) => {
                    assert!(m.message.contains(needle), "{params}: {m}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
    }
}
