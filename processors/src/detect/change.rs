//! `change`: detects a lasting shift of the level with a two-sided CUSUM (Page's test).
//!
//! Each key first learns its normal behaviour from its first `warmup` observations: their
//! sample standard deviation σ (divisor n − 1), and their mean as the target μ₀ unless
//! `target` is given. (With both `target` and `sigma` given there is no warmup.) Warmup
//! observations are not judged. Then, for each observation x, with K = `slack`·σ and
//! H = `limit`·σ:
//!
//! ```text
//! S⁺ = max(0, S⁺ + (x − μ₀) − K)      S⁻ = max(0, S⁻ + (μ₀ − x) − K)
//! ```
//!
//! When S⁺ > H (checked first) or S⁻ > H, an alert is emitted, direction `up` or `down`,
//! and both sums restart from 0. The change is estimated to have started at the first
//! observation of the run that took the sum from 0 to the alert (`since`). The target and
//! σ stay those of the warmup, so a lasting shift alerts again after about H/(shift − K)
//! more observations. When the warmup values are all equal (σ = 0), K = H = 0 and any
//! departure from the target is an alert.
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `warmup` | integer | 20 | observations per key to learn σ (and the target) from; at least 2 |
//! | `target` | number | warmup mean | the in-control level μ₀ |
//! | `sigma` | number | warmup stddev | the in-control standard deviation σ, > 0; with `target`, skips the warmup |
//! | `slack` | number | 0.5 | K, in units of σ: half the shift to detect, usually |
//! | `limit` | number | 5 | H, in units of σ: the decision threshold |
//! | `observationName`, `groupBy`, `keyField` | | | see [`super`] |
//! | `outputName` | string | `alert` | name of the alerts |
//!
//! ([`ChangeConfig`] is the table as a type: its defaults are the ones above.)
//!
//! **Output.** One alert per detection: source = the input's, time = the observation's
//! that pushed the sum over H, value = that observation's value. Attributes: `rule` (e.g.
//! `CUSUM of power around 50 exceeds 5 sigma (sigma 2, slack 0.5 sigma)`), `direction`,
//! `cusum` (the sum that fired, in the value's unit), `limit` (H in the value's unit),
//! `target`, `sigma`, `since`, `observationName`. Each key needs its observations in
//! event-time order; an older one goes to the dead letters.

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::{Observation, Sym, Timestamp};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{Common, KeyConfig, Keyed, at_least, num, result};

/// The processor type.
pub const KIND: &str = "change";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Change>());

const fn twenty() -> i64 {
    20
}

const fn half() -> f64 {
    0.5
}

const fn five() -> f64 {
    5.0
}

/// The parameters of `change`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeConfig {
    /// How many first observations per key the standard deviation (and the target, unless
    /// given) is learnt from; at least 2.
    #[serde(default = "twenty")]
    pub warmup: i64,
    /// The in-control level (default: the mean of the warmup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The in-control standard deviation (default: that of the warmup); with target given
    /// there is no warmup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// The slack K in standard deviations: deviations smaller than this do not accumulate.
    #[serde(default = "half")]
    pub slack: f64,
    /// The decision threshold H in standard deviations: an alert when a cumulative sum
    /// exceeds it.
    #[serde(default = "five")]
    pub limit: f64,
    /// What is read and what state is kept per.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Name of the alerts (default: alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl Config for ChangeConfig {
    fn check(&self) -> Result<(), ConfigError> {
        at_least("warmup", self.warmup, 2)?;
        if let Some(s) = self.sigma
            && s <= 0.0
        {
            return Err(ConfigError::at(
                "sigma",
                format!(
                    "parameter `sigma` is {s}: give the in-control standard deviation, a positive number, or leave it out to learn it from the warmup"
                ),
            ));
        }
        if self.slack < 0.0 {
            return Err(ConfigError::at(
                "slack",
                format!(
                    "parameter `slack` is {}: give a number of standard deviations of at least 0, e.g. 0.5",
                    self.slack
                ),
            ));
        }
        if self.limit <= 0.0 {
            return Err(ConfigError::at(
                "limit",
                format!(
                    "parameter `limit` is {}: give a positive number of standard deviations, e.g. 5",
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

/// The CUSUM of one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cusum {
    /// Warmup values, until the level is learnt.
    warmup: Vec<f64>,
    /// (target, sigma), once known.
    level: Option<(f64, f64)>,
    /// S⁺ and the time (µs) its current run began.
    up: f64,
    up_since: Option<i64>,
    /// S⁻ and the time (µs) its current run began.
    down: f64,
    down_since: Option<i64>,
    /// Event time of the key's newest observation (µs).
    last: Option<i64>,
}

impl super::LastSeen for Cusum {
    fn last_seen(&self) -> Option<i64> {
        self.last
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Change {
    common: Common,
    warmup: usize,
    target: Option<f64>,
    sigma: Option<f64>,
    slack: f64,
    limit: f64,
    output_name: Sym,
    sums: Keyed<Cusum>,
}

impl ProcessorKind for Change {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Detects a lasting upward or downward shift of the level per key with a two-sided CUSUM (Page), after learning the normal level and spread from a warmup.";
    type Config = ChangeConfig;

    fn new(config: ChangeConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            common: Common::new(&config.key, config.output_name.as_deref(), KIND, ctx.sink),
            warmup: at_least("warmup", config.warmup, 2)?,
            target: config.target,
            sigma: config.sigma,
            slack: config.slack,
            limit: config.limit,
            output_name: Sym::new("alert"),
            sums: Keyed::default(),
        })
    }
}

impl Change {
    /// The learnt (target, sigma) once the warmup is complete.
    fn learn(&self, warmup: &[f64]) -> Option<(f64, f64)> {
        if let (Some(t), Some(s)) = (self.target, self.sigma) {
            return Some((t, s));
        }
        if warmup.len() < self.warmup {
            return None;
        }
        let n = warmup.len() as f64;
        let mean = warmup.iter().sum::<f64>() / n;
        let sd = (warmup.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt();
        Some((self.target.unwrap_or(mean), self.sigma.unwrap_or(sd)))
    }
}

impl Processor for Change {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            let Some((key, x)) = self.common.admit(o, &self.sums, out) else {
                continue;
            };
            let t = o.timestamp.as_micros();
            let mut s = std::mem::take(self.sums.get(key));
            s.last = Some(t);
            if s.level.is_none() {
                s.level = self.learn(&s.warmup);
                if s.level.is_none() {
                    s.warmup.push(x);
                    s.level = self.learn(&s.warmup);
                    if s.level.is_some() {
                        s.warmup = Vec::new();
                    }
                    *self.sums.get(key) = s;
                    continue;
                }
            }
            let Some((target, sigma)) = s.level else {
                continue;
            };
            let (k, h) = (self.slack * sigma, self.limit * sigma);
            s.up = (s.up + (x - target) - k).max(0.0);
            s.up_since = if s.up > 0.0 {
                s.up_since.or(Some(t))
            } else {
                None
            };
            s.down = (s.down + (target - x) - k).max(0.0);
            s.down_since = if s.down > 0.0 {
                s.down_since.or(Some(t))
            } else {
                None
            };
            let fired = if s.up > h {
                Some(("up", s.up, s.up_since))
            } else if s.down > h {
                Some(("down", s.down, s.down_since))
            } else {
                None
            };
            if let Some((direction, cusum, since)) = fired {
                let mut a = Map::new();
                a.insert(
                    "rule".into(),
                    Json::String(format!(
                        "CUSUM of {} around {target} exceeds {} sigma (sigma {sigma}, slack {} sigma)",
                        o.name, self.limit, self.slack
                    )),
                );
                a.insert("direction".into(), Json::String(direction.into()));
                a.insert("cusum".into(), num(cusum));
                a.insert("limit".into(), num(h));
                a.insert("target".into(), num(target));
                a.insert("sigma".into(), num(sigma));
                a.insert(
                    "since".into(),
                    Json::String(Timestamp(since.unwrap_or(t)).to_string()),
                );
                a.insert("observationName".into(), Json::String(o.name.to_string()));
                out.emit(result(
                    &self.common,
                    key,
                    self.common.output_name(self.output_name),
                    o,
                    x,
                    a,
                ));
                (s.up, s.up_since, s.down, s.down_since) = (0.0, None, 0.0, None);
            }
            *self.sums.get(key) = s;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.sums.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.sums.restore(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::{at, noisy, restored_gives_the_same, series};
    use crate::testing::run;
    use serde_json::json;
    use statrs::statistics::Statistics;

    fn change(params: Json) -> Change {
        Change::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
    }

    /// The same CUSUM as a plain loop over indices, in the textbook's tabular form
    /// (C⁺ᵢ = max(0, xᵢ − (μ₀ + K) + C⁺ᵢ₋₁), C⁻ᵢ = max(0, (μ₀ − K) − xᵢ + C⁻ᵢ₋₁)), with
    /// N⁺/N⁻ counting how long each has been positive: (index, up?, sum, start index).
    fn reference(
        x: &[f64],
        target: f64,
        sigma: f64,
        slack: f64,
        limit: f64,
    ) -> Vec<(usize, bool, f64, usize)> {
        let (k, h) = (slack * sigma, limit * sigma);
        let (mut cp, mut cm, mut np, mut nm) = (0.0_f64, 0.0_f64, 0_usize, 0_usize);
        let mut alerts = Vec::new();
        for (i, &xi) in x.iter().enumerate() {
            cp = f64::max(0.0, xi - (target + k) + cp);
            cm = f64::max(0.0, (target - k) - xi + cm);
            np = if cp > 0.0 { np + 1 } else { 0 };
            nm = if cm > 0.0 { nm + 1 } else { 0 };
            if cp > h {
                alerts.push((i, true, cp, i + 1 - np));
            } else if cm > h {
                alerts.push((i, false, cm, i + 1 - nm));
            } else {
                continue;
            }
            (cp, cm, np, nm) = (0.0, 0.0, 0, 0);
        }
        alerts
    }

    /// 20 warmup readings near 50, 30 more, a +3 shift from t = 50 for 30 s, then a −4
    /// shift from t = 80.
    fn readings() -> Vec<(i64, f64)> {
        noisy(120, 50.0, 2.0)
            .into_iter()
            .map(|(t, x)| match t {
                50..80 => (t, x + 3.0),
                80.. => (t, x - 4.0),
                _ => (t, x),
            })
            .collect()
    }

    #[test]
    fn alerts_match_a_plain_loop_with_the_warmup_level() {
        let data = readings();
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        let (out, rejected) = run(&mut change(json!({})), &series("level", &data));
        assert!(rejected.is_empty());
        let warm = &values[..20];
        let (mu, sd) = (warm.mean(), warm.std_dev());
        let expected = reference(&values[20..], mu, sd, 0.5, 5.0);
        assert!(!expected.is_empty());
        assert_eq!(out.len(), expected.len());
        for (o, (i, up, sum, start)) in out.iter().zip(expected) {
            assert_eq!(o.timestamp, at(i as i64 + 20));
            assert_eq!(o.value.as_f64(), Some(values[i + 20]));
            assert_eq!(
                o.attribute("direction").unwrap(),
                if up { "up" } else { "down" }
            );
            let cusum = o.attribute("cusum").unwrap().as_f64().unwrap();
            assert!((cusum - sum).abs() < 1e-9, "{cusum} vs {sum}");
            assert_eq!(
                o.attribute("since").unwrap(),
                &json!(at(start as i64 + 20).to_string())
            );
            let target = o.attribute("target").unwrap().as_f64().unwrap();
            assert!((target - mu).abs() < 1e-9);
        }
        // The first alert is upward, after the shift at 50; the first downward one after 80.
        let first_up = out
            .iter()
            .find(|o| o.attribute("direction").unwrap() == "up");
        let first_down = out
            .iter()
            .find(|o| o.attribute("direction").unwrap() == "down");
        assert!(first_up.unwrap().timestamp >= at(50));
        assert!(first_down.unwrap().timestamp >= at(80));
        assert!(
            out.iter().filter(|o| o.timestamp < at(50)).count() == 0,
            "no false alarm before the shift"
        );
    }

    #[test]
    fn a_given_target_and_sigma_need_no_warmup() {
        let data = readings();
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        let params = json!({"target": 50, "sigma": 1.2, "slack": 1, "limit": 4});
        let (out, _) = run(&mut change(params), &series("level", &data));
        let expected = reference(&values, 50.0, 1.2, 1.0, 4.0);
        let times: Vec<Timestamp> = out.iter().map(|o| o.timestamp).collect();
        let want: Vec<Timestamp> = expected.iter().map(|e| at(e.0 as i64)).collect();
        assert_eq!(times, want);
        assert_eq!(
            out[0].attribute("rule").unwrap(),
            "CUSUM of level around 50 exceeds 4 sigma (sigma 1.2, slack 1 sigma)"
        );
    }

    #[test]
    fn a_given_target_still_learns_sigma() {
        let data = readings();
        let values: Vec<f64> = data.iter().map(|d| d.1).collect();
        let (out, _) = run(
            &mut change(json!({"target": 49, "warmup": 10})),
            &series("level", &data),
        );
        let sd = values[..10].std_dev();
        let expected = reference(&values[10..], 49.0, sd, 0.5, 5.0);
        assert_eq!(out.len(), expected.len());
        let sigma = out[0].attribute("sigma").unwrap().as_f64().unwrap();
        assert!((sigma - sd).abs() < 1e-9);
    }

    #[test]
    fn a_restored_processor_continues_identically() {
        // Cut inside the warmup, and again after the shift began.
        let input = series("level", &readings());
        restored_gives_the_same(KIND, &json!({}), &input, 12);
        restored_gives_the_same(KIND, &json!({}), &input, 55);
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for (params, needle) in [
            (json!({"warmup": 1}), "`warmup`"),
            (json!({"sigma": 0}), "`sigma`"),
            (json!({"slack": -0.1}), "`slack`"),
            (json!({"limit": 0}), "`limit`"),
            (json!({"target": "normal"}), "`target`"),
        ] {
            match Change::from_context(&ProcessorContext::for_test(&params, "sink")) {
                Err(ProcessorError::Config(m)) => {
                    assert!(m.message.contains(needle), "{params}: {m}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
    }
}
