//! `zscore`: outliers by their z-score against the trailing window of their key.
//!
//! For each observation, the z-score is `(x − mean) / stddev` of the `count` observations
//! of its key that came **before** it (its own value is not part of the window), with the
//! sample standard deviation (divisor n − 1). The observation is an outlier when
//! `|z| > limit`. Then it joins the window (outliers too), and the oldest value leaves
//! when the window holds more than `count`. Until the window holds `minCount` values an
//! observation is not judged. When the window's values are all equal (stddev 0), an equal
//! value has z = 0 and any other an infinite z-score: an outlier.
//!
//! **Time window.** With `window`, the window of an observation at time t is the key's
//! observations at t' with `t − window <= t' < t` — at most `count` of them, the most
//! recent (so `count` bounds memory and the window holds at most `count` values). Earlier
//! observations at the same time t are not before it and are left out. The window then
//! holds as many values as came in that time, and with fewer than `minCount` the
//! observation is not judged (after a gap in the data, say). Without `window`, the window
//! is the last `count` observations however old they are.
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `count` | integer | 30 | how many preceding observations of the key form the window (with `window`: at most this many) |
//! | `minCount` | integer | 10 | how many the window needs before observations are judged (2 to `count`) |
//! | `window` | duration | none | when given, the window is the key's observations within this duration before the judged one, e.g. `PT10M` |
//! | `limit` | number | 3 | an outlier has `|z| > limit` |
//! | `emit` | string | `outliers` | `outliers`: an alert per outlier; `all`: every judged observation, its z-score as value |
//! | `observationName`, `groupBy`, `keyField` | | | see [`super`] |
//! | `outputName` | string | `alert` (`zscore` with `emit` = `all`) | name of the results |
//!
//! ([`ZScoreConfig`] is the table as a type: its defaults are the ones above.)
//!
//! **Output.** Source = the input's, time = the observation's. An alert's value is the
//! value that fired; with `emit` = `all` the value is the z-score (an infinite one is
//! written as `null` in JSON). Attributes: `rule` (e.g. `|z| > 3 over the last 30 power`,
//! or `… over the last PT10M (at most 30) power` with `window`), `zScore` (`null` when
//! infinite), `mean`, `stddev`, `value`, `outlier`, `windowCount` (how many values the
//! window held), `observationName`. Each key needs its observations in event-time order; an older one
//! goes to the dead letters.

use engine::Observation;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Emit, KeyConfig, Outliers, TrailingConfig, Verdict, num, outliers_only};

/// The processor type.
pub const KIND: &str = "zscore";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<ZScore>());

const fn three() -> f64 {
    3.0
}

/// The parameters of `zscore`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZScoreConfig {
    /// The trailing window.
    #[serde(flatten)]
    pub trailing: TrailingConfig,
    /// An observation is an outlier when |z| exceeds this.
    #[serde(default = "three")]
    pub limit: f64,
    /// outliers: emit an alert for each outlier only; all: emit every judged observation
    /// with its z-score as value.
    #[serde(default = "outliers_only")]
    pub emit: Emit,
    /// What is read and what state is kept per.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Name of the results (default: alert; zscore when emit is all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl Config for ZScoreConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.trailing.check()?;
        if self.limit <= 0.0 {
            return Err(ConfigError::at(
                "limit",
                format!(
                    "parameter `limit` is {}: give a positive number of standard deviations, e.g. 3",
                    self.limit
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
pub struct ZScore {
    limit: f64,
    outliers: Outliers,
}

impl ProcessorKind for ZScore {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Flags outliers: observations more than `limit` standard deviations from the mean of the preceding `count` observations of their key.";
    type Config = ZScoreConfig;

    fn new(config: ZScoreConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            limit: config.limit,
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

/// Mean and sample standard deviation, in two passes.
fn mean_and_stddev(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// What a z-score is computed from.
struct Stats {
    z: f64,
    mean: f64,
    stddev: f64,
}

impl Processor for ZScore {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        let limit = self.limit;
        self.outliers.process(
            input,
            out,
            |before, x| {
                let (mean, stddev) = mean_and_stddev(&before);
                #[allow(clippy::float_cmp, reason = "a constant window: exact equality")]
                let z = if stddev > 0.0 {
                    (x - mean) / stddev
                } else if x == mean {
                    0.0
                } else {
                    f64::INFINITY.copysign(x - mean)
                };
                Verdict {
                    outlier: z.abs() > limit,
                    score: z,
                    stats: Stats { z, mean, stddev },
                }
            },
            |s, of, a| {
                a.insert(
                    "rule".into(),
                    Json::String(format!("|z| > {limit} over the last {of}")),
                );
                a.insert("zScore".into(), num(s.z));
                a.insert("mean".into(), num(s.mean));
                a.insert("stddev".into(), num(s.stddev));
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
    use crate::detect::tests::{by_time, irregular, noisy, restored_gives_the_same, series};
    use crate::testing::run;
    use serde_json::json;
    use statrs::statistics::Statistics;

    fn zscore(params: Json) -> ZScore {
        ZScore::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
    }

    /// Noise around 50 with spikes at 40 (+30) and 70 (−25).
    fn readings() -> Vec<(i64, f64)> {
        noisy(100, 50.0, 4.0)
            .into_iter()
            .map(|(t, x)| match t {
                40 => (t, x + 30.0),
                70 => (t, x - 25.0),
                _ => (t, x),
            })
            .collect()
    }

    #[test]
    fn every_z_score_matches_statrs_on_the_preceding_slice() {
        let data = readings();
        let mut p = zscore(json!({"count": 20, "minCount": 5, "emit": "all"}));
        let (out, rejected) = run(&mut p, &series("temp", &data));
        assert!(rejected.is_empty());
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        // Observation i is judged from i = 5 on, against values[i-20.max(0)..i].
        assert_eq!(out.len(), values.len() - 5);
        for (o, i) in out.iter().zip(5_usize..) {
            let before = &values[i.saturating_sub(20)..i];
            let z = (values[i] - before.mean()) / before.std_dev();
            let got = o.value.as_f64().unwrap();
            assert!((got - z).abs() < 1e-9, "i={i}: {got} vs {z}");
            assert_eq!(o.timestamp, crate::detect::tests::at(i as i64));
            assert_eq!(o.name.to_string(), "zscore");
            assert_eq!(o.attribute("outlier").unwrap(), &json!(z.abs() > 3.0));
        }
    }

    #[test]
    fn outliers_are_the_spikes_and_carry_their_statistics() {
        let data = readings();
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        let mut p = zscore(json!({}));
        let (out, _) = run(&mut p, &series("temp", &data));
        let times: Vec<i64> = out.iter().map(|o| o.timestamp.as_millis() / 1000).collect();
        // Independently: which observations are more than 3 sample sd from the 30 before.
        let expected: Vec<i64> = (10..values.len())
            .filter(|&i| {
                let before = &values[i.saturating_sub(30)..i];
                ((values[i] - before.mean()) / before.std_dev()).abs() > 3.0
            })
            .map(|i| i as i64)
            .collect();
        assert_eq!(times, expected);
        assert!(times.contains(&40) && times.contains(&70), "{times:?}");
        let spike = &out[times.iter().position(|&t| t == 40).unwrap()];
        assert_eq!(spike.name.to_string(), "alert");
        assert_eq!(spike.value.as_f64().unwrap(), values[40]);
        let before = &values[10..40];
        let mean = spike.attribute("mean").unwrap().as_f64().unwrap();
        let sd = spike.attribute("stddev").unwrap().as_f64().unwrap();
        assert!((mean - before.mean()).abs() < 1e-9);
        assert!((sd - before.std_dev()).abs() < 1e-9);
        assert!(spike.attribute("zScore").unwrap().as_f64().unwrap() > 3.0);
        assert_eq!(
            spike.attribute("rule").unwrap(),
            "|z| > 3 over the last 30 temp"
        );
    }

    #[test]
    fn a_constant_window_flags_any_different_value() {
        let mut data: Vec<(i64, f64)> = (0..12).map(|t| (t, 5.0)).collect();
        data.push((12, 5.0));
        data.push((13, 5.5));
        let mut p = zscore(json!({}));
        let (out, _) = run(&mut p, &series("x", &data));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value.as_f64(), Some(5.5));
        assert_eq!(out[0].attribute("zScore").unwrap(), &Json::Null);
    }

    #[test]
    fn keys_are_separate_unless_grouped_together() {
        // Source a near 10 for 30 s, then source b near 100 for 15 s.
        let a = series("x", &noisy(30, 10.0, 1.0));
        let later: Vec<(i64, f64)> = noisy(15, 100.0, 1.0)
            .into_iter()
            .map(|(t, x)| (t + 30, x))
            .collect();
        let mut b = series("x", &later);
        for o in &mut b {
            o.source = engine::Sym::new("b");
        }
        let input: Vec<Observation> = a.into_iter().chain(b).collect();
        // Per source, b's first values are not judged (too few) and the rest are ordinary.
        let (out, _) = run(&mut zscore(json!({})), &input);
        assert!(out.is_empty(), "{out:?}");
        // Pooled by name, b's first value is judged against a's: an outlier, on source s's
        // and b's key together, so the alert's source is the sink.
        let (out, _) = run(&mut zscore(json!({"groupBy": "name"})), &input);
        assert_eq!(out[0].timestamp, crate::detect::tests::at(30));
        assert_eq!(out[0].source.to_string(), "sink");
    }

    #[test]
    fn a_restored_processor_continues_identically() {
        restored_gives_the_same(
            KIND,
            &json!({"count": 20, "emit": "all"}),
            &series("temp", &readings()),
            35,
        );
    }

    #[test]
    fn with_a_time_window_every_z_score_matches_statrs_on_the_slice_selected_by_time() {
        // Spikes at 40 and 90 (after the 100 s gap, 60 readings in: few values before it).
        let data: Vec<(i64, f64)> = irregular(120, 50.0, 4.0)
            .into_iter()
            .enumerate()
            .map(|(i, (t, x))| {
                if i == 40 || i == 90 {
                    (t, x + 30.0)
                } else {
                    (t, x)
                }
            })
            .collect();
        let mut p = zscore(json!({"count": 12, "minCount": 4, "window": "PT20S", "emit": "all"}));
        let (out, rejected) = run(&mut p, &series("temp", &data));
        assert!(rejected.is_empty());
        let mut expected = Vec::new();
        let mut sizes = std::collections::BTreeSet::new();
        for i in 0..data.len() {
            let before = by_time(&data, i, 20, 12);
            sizes.insert(before.len());
            if before.len() >= 4 {
                let (m, sd) = (before.clone().mean(), before.clone().std_dev());
                expected.push((i, (data[i].1 - m) / sd, before.len()));
            }
        }
        // The selection by time matters: windows of many sizes, some too small to judge,
        // some cut by `count`.
        assert!(sizes.contains(&0) && sizes.contains(&12), "{sizes:?}");
        assert!(sizes.range(1..4).count() > 0 && sizes.range(5..12).count() > 2);
        assert_eq!(out.len(), expected.len());
        for (o, (i, z, n)) in out.iter().zip(&expected) {
            let got = o.value.as_f64().unwrap();
            assert!((got - z).abs() < 1e-9, "i={i}: {got} vs {z}");
            assert_eq!(o.timestamp, crate::detect::tests::at(data[*i].0), "i={i}");
            assert_eq!(o.attribute("windowCount").unwrap(), &json!(n), "i={i}");
        }
        assert_eq!(
            out[0].attribute("rule").unwrap(),
            "|z| > 3 over the last PT20S (at most 12) temp"
        );
        // The first reading after the 100 s gap has nothing in its window; the spikes are
        // outliers.
        let judged: Vec<usize> = expected.iter().map(|e| e.0).collect();
        assert!(!judged.contains(&60));
        for spike in [40, 90] {
            let k = judged.iter().position(|&i| i == spike).unwrap();
            assert_eq!(
                out[k].attribute("outlier").unwrap(),
                &json!(true),
                "{spike}"
            );
        }
    }

    #[test]
    fn a_restored_processor_with_a_time_window_continues_identically() {
        restored_gives_the_same(
            KIND,
            &json!({"count": 10, "minCount": 3, "window": "PT15S", "emit": "all"}),
            &series("temp", &irregular(80, 50.0, 4.0)),
            30,
        );
    }

    #[test]
    fn a_checkpoint_without_times_still_restores() {
        // Written before windows had times: its values count as the last `count`, and
        // never within a time window.
        let old = json!({"keys": [{"name": "x", "source": "s",
            "state": {"values": [1.0, 2.0, 3.0, 4.0], "last": 4_000_000}}]});
        let input = series("x", &[(5, 10.0)]);
        let mut p = zscore(json!({"minCount": 4, "emit": "all"}));
        p.restore(old.clone()).unwrap();
        let (out, _) = run(&mut p, &input);
        let z = (10.0 - 2.5) / [1.0, 2.0, 3.0, 4.0].std_dev();
        assert!((out[0].value.as_f64().unwrap() - z).abs() < 1e-9);
        let mut p = zscore(json!({"minCount": 4, "window": "PT1H", "emit": "all"}));
        p.restore(old).unwrap();
        assert!(run(&mut p, &input).0.is_empty());
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for (params, needle) in [
            (json!({"count": 1}), "`count`"),
            (json!({"count": "many"}), "`count`"),
            (json!({"count": 5, "minCount": 10}), "`minCount`"),
            (json!({"minCount": 1}), "`minCount`"),
            (json!({"limit": 0}), "`limit`"),
            (json!({"emit": "alerts"}), "`emit`"),
            (json!({"window": "soon"}), "`window`"),
            (json!({"window": "PT0S"}), "`window`"),
            (json!({"window": 10}), "`window`"),
        ] {
            match ZScore::from_context(&ProcessorContext::for_test(&params, "sink")) {
                Err(ProcessorError::Config(m)) => {
                    assert!(m.message.contains(needle), "{params}: {m}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
    }
}
