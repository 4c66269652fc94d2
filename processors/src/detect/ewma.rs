//! `ewma`: the exponentially weighted moving average of each key, for every observation.
//!
//! The first observation of a key starts the average at its value; each next one moves it
//! by a fraction α of the difference: `s = s + α·(x − s)`. α is either fixed (`alpha`), or
//! follows the time since the previous observation of the key (`halfLife`):
//! `α = 1 − exp(−ln 2 · Δt / halfLife)`, so a value's weight halves every `halfLife` of
//! event time however irregular the readings (an observation at the same time as the
//! previous one then has weight 0).
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `alpha` | number | 0.2 (without `halfLife`) | the smoothing factor, 0 < α ≤ 1 |
//! | `halfLife` | duration | — | time-aware smoothing instead of `alpha`, e.g. PT1M; not with `alpha` |
//! | `observationName`, `groupBy`, `keyField` | | | see [`super`] |
//! | `outputName` | string | the observation's name (`ewma` when keys span names) | name of the results |
//!
//! ([`EwmaConfig`] is the table as a type. `alpha` declares no default: 0.2 applies only
//! without `halfLife`.)
//!
//! **Output.** One observation per input observation: source = the input's (the sink when
//! keys span sources), time = the input's, value = the average including it, attribute
//! `alpha` (the α used; absent on a key's first observation). Each key needs its
//! observations in event-time order; an older one goes to the dead letters.

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::time::micros;
use engine::{Observation, Sym};
use manifests::config::{Config, ConfigError, Duration};
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{Common, KeyConfig, Keyed, num, result};

/// The processor type.
pub const KIND: &str = "ewma";

/// α without `alpha` and `halfLife`.
pub const DEFAULT_ALPHA: f64 = 0.2;

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Ewma>());

/// The parameters of `ewma`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EwmaConfig {
    /// The smoothing factor, 0 < alpha <= 1: the weight of the newest value (default 0.2,
    /// unless halfLife is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Time-aware smoothing instead of alpha: a value's weight halves every halfLife of
    /// event time, e.g. PT1M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life: Option<Duration>,
    /// What is read and what state is kept per.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Name of the results (default: the observation's name; ewma when groupBy is source or
    /// all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl EwmaConfig {
    /// How α is chosen.
    ///
    /// # Errors
    ///
    /// An alpha outside (0, 1], both alpha and halfLife, a zero halfLife.
    pub fn smoothing(&self) -> Result<Smoothing, ConfigError> {
        match (self.alpha, self.half_life) {
            (Some(_), Some(_)) => Err(ConfigError::whole(
                "parameters `alpha` and `halfLife` both given: give alpha for a fixed weight, or halfLife for a weight that follows time, not both",
            )),
            (None, Some(d)) => match micros(d.get()) {
                us if us > 0 => Ok(Smoothing::HalfLife(us as f64)),
                _ => Err(ConfigError::at(
                    "halfLife",
                    format!("parameter `halfLife` is {d}: give a positive duration, e.g. PT1M"),
                )),
            },
            (alpha, None) => {
                let a = alpha.unwrap_or(DEFAULT_ALPHA);
                if a > 0.0 && a <= 1.0 {
                    Ok(Smoothing::Alpha(a))
                } else {
                    Err(ConfigError::at(
                        "alpha",
                        format!(
                            "parameter `alpha` is {a}: give a number above 0 and at most 1 (1 means no smoothing)"
                        ),
                    ))
                }
            }
        }
    }
}

impl Config for EwmaConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.smoothing().map(drop)
    }

    fn reword(error: ConfigError) -> ConfigError {
        super::named(error)
    }
}

/// How α is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// The same α for every observation.
    Alpha(f64),
    /// α from the time since the previous observation, with this half-life (µs).
    HalfLife(f64),
}

/// The average of one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Average {
    /// The average so far, once there is one.
    value: Option<f64>,
    /// Event time of the key's newest observation (µs).
    last: Option<i64>,
}

impl super::LastSeen for Average {
    fn last_seen(&self) -> Option<i64> {
        self.last
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Ewma {
    common: Common,
    smoothing: Smoothing,
    fallback_name: Sym,
    averages: Keyed<Average>,
}

impl ProcessorKind for Ewma {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Smooths each key's values with an exponentially weighted moving average (fixed alpha, or a half-life in event time), one result per observation.";
    type Config = EwmaConfig;

    fn new(config: EwmaConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            common: Common::new(&config.key, config.output_name.as_deref(), KIND, ctx.sink),
            smoothing: config.smoothing()?,
            fallback_name: Sym::new(KIND),
            averages: Keyed::default(),
        })
    }
}

impl Processor for Ewma {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            let Some((key, x)) = self.common.admit(o, &self.averages, out) else {
                continue;
            };
            let t = o.timestamp.as_micros();
            let smoothing = self.smoothing;
            let avg = self.averages.get(key);
            let mut attributes = Map::new();
            let s = match (avg.value, avg.last) {
                (Some(s), Some(prev)) => {
                    let alpha = match smoothing {
                        Smoothing::Alpha(a) => a,
                        Smoothing::HalfLife(h) => {
                            -(-std::f64::consts::LN_2 * (t - prev) as f64 / h).exp_m1()
                        }
                    };
                    attributes.insert("alpha".into(), num(alpha));
                    s + alpha * (x - s)
                }
                _ => x,
            };
            avg.value = Some(s);
            avg.last = Some(t);
            let name = self
                .common
                .output_name(key.name.unwrap_or(self.fallback_name));
            out.emit(result(&self.common, key, name, o, s, attributes));
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.averages.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.averages.restore(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::{noisy, restored_gives_the_same, series};
    use crate::testing::run;
    use serde_json::json;

    fn ewma(params: Json) -> Ewma {
        Ewma::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
    }

    fn values(out: &[Observation]) -> Vec<f64> {
        out.iter().map(|o| o.value.as_f64().unwrap()).collect()
    }

    #[test]
    #[allow(
        clippy::needless_range_loop,
        reason = "the closed form is written with indices"
    )]
    fn a_fixed_alpha_matches_the_closed_form() {
        let data = noisy(60, 10.0, 5.0);
        let x: Vec<f64> = data.iter().map(|d| d.1).collect();
        let (out, rejected) = run(&mut ewma(json!({"alpha": 0.3})), &series("temp", &data));
        assert!(rejected.is_empty());
        let got = values(&out);
        // s_n = (1 − α)^n x_0 + Σ_{i=1..n} α (1 − α)^(n−i) x_i
        for n in 0..x.len() {
            let mut expected = 0.7_f64.powi(n as i32) * x[0];
            for i in 1..=n {
                expected += 0.3 * 0.7_f64.powi((n - i) as i32) * x[i];
            }
            assert!((got[n] - expected).abs() < 1e-9, "n={n}");
        }
        assert_eq!(out[5].name.to_string(), "temp");
        assert_eq!(out[5].source.to_string(), "s");
        assert_eq!(out[5].timestamp, crate::detect::tests::at(5));
    }

    #[test]
    fn a_half_life_weighs_by_elapsed_time() {
        // Irregular times: the weight of x_i in s_n is (1 − 2^(−Δt_i/h)) · 2^(−(t_n − t_i)/h),
        // and that of x_0 is 2^(−(t_n − t_0)/h).
        let times = [0_i64, 1, 2, 5, 6, 20, 21, 21, 30, 45, 46, 47, 60];
        let data: Vec<(i64, f64)> = times
            .iter()
            .zip(noisy(times.len(), 100.0, 20.0))
            .map(|(&t, (_, x))| (t, x))
            .collect();
        let (out, _) = run(
            &mut ewma(json!({"halfLife": "PT10S"})),
            &series("flow", &data),
        );
        let got = values(&out);
        let h = 10.0;
        for n in 0..data.len() {
            let tn = data[n].0 as f64;
            let mut expected = (2.0_f64).powf(-(tn - data[0].0 as f64) / h) * data[0].1;
            for i in 1..=n {
                let dt = (data[i].0 - data[i - 1].0) as f64;
                let w = (1.0 - 2.0_f64.powf(-dt / h)) * 2.0_f64.powf(-(tn - data[i].0 as f64) / h);
                expected += w * data[i].1;
            }
            assert!(
                (got[n] - expected).abs() < 1e-9,
                "n={n}: {} vs {expected}",
                got[n]
            );
        }
        // Same time as the previous one: weight 0, the average does not move.
        assert_eq!(got[7], got[6]);
    }

    #[test]
    fn keys_are_smoothed_apart_and_named() {
        let mut input = series("x", &[(0, 0.0), (1, 10.0)]);
        let mut other = series("x", &[(0, 100.0), (1, 100.0)]);
        for o in &mut other {
            o.source = Sym::new("b");
        }
        input.extend(other);
        let (out, _) = run(&mut ewma(json!({"alpha": 0.5})), &input);
        assert_eq!(values(&out), [0.0, 5.0, 100.0, 100.0]);
        let (out, _) = run(
            &mut ewma(json!({"alpha": 0.5, "groupBy": "all", "outputName": "smooth"})),
            &input[..2],
        );
        assert_eq!(out[1].name.to_string(), "smooth");
        assert_eq!(out[1].source.to_string(), "sink");
        let (out, _) = run(&mut ewma(json!({"groupBy": "source"})), &input[..1]);
        assert_eq!(out[0].name.to_string(), "ewma");
    }

    #[test]
    fn a_restored_processor_continues_identically() {
        let input = series("temp", &noisy(40, 10.0, 5.0));
        restored_gives_the_same(KIND, &json!({}), &input, 17);
        restored_gives_the_same(KIND, &json!({"halfLife": "5s"}), &input, 23);
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for (params, needle) in [
            (json!({"alpha": 0}), "`alpha`"),
            (json!({"alpha": 1.5}), "`alpha`"),
            (json!({"alpha": "smooth"}), "`alpha`"),
            (json!({"alpha": 0.5, "halfLife": "PT1M"}), "both"),
            (json!({"halfLife": "PT0S"}), "`halfLife`"),
            (json!({"halfLife": "a while"}), "`halfLife`"),
        ] {
            match Ewma::from_context(&ProcessorContext::for_test(&params, "sink")) {
                Err(ProcessorError::Config(m)) => {
                    assert!(m.message.contains(needle), "{params}: {m}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
    }
}
