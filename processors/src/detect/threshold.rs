//! `threshold`: an alert that is raised when a value crosses a threshold and stays there,
//! and cleared when it comes back past a second threshold (hysteresis).
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `operator` | string | `GT` | the alert condition, `value OPERATOR threshold`: `GT`, `GE`, `LT` or `LE` (the [`Operator`]s that order values) |
//! | `threshold` | number | required | the threshold of the condition |
//! | `clearThreshold` | number | `threshold` | the alert clears when the value is back past this: for `GT` when `value <= clearThreshold`, `GE` `<`, `LT` `>=`, `LE` `>`. For `GT`/`GE` it must not be above `threshold`, for `LT`/`LE` not below, so the two conditions never hold together |
//! | `minDuration` | duration | `PT0S` | how long, in event time, the condition must hold before the alert is raised |
//! | `observationName`, `groupBy`, `keyField` | | | see [`super`] |
//! | `outputName` | string | `alert` | name of the alerts |
//!
//! ([`ThresholdConfig`] is the table as a type: its defaults are the ones above.)
//!
//! **When it fires.** The condition is taken to hold from the first observation that met
//! it (`since`), for as long as every following observation of the key meets it; one that
//! does not (a dip, including one inside the hysteresis band) resets it. The alert is
//! raised at `since + minDuration`, as soon as that is known, whichever comes first of:
//!
//! - **an observation** whose time t is at least `since + minDuration` and that still meets
//!   the condition: the alert is stamped t and carries that observation's value (with
//!   `minDuration` 0, this is the first observation that meets the condition);
//! - **the watermark** reaching `since + minDuration` (watermark W ≥ since + minDuration)
//!   while the key's last observation met the condition. The watermark says no
//!   observation at or before W will come, and the key's observations are taken in
//!   order, so none can contradict the condition before `since + minDuration`: the alert is
//!   stamped exactly `since + minDuration` and carries the value of the key's last
//!   observation (the one that kept the condition holding). Without watermarks (or with
//!   `minDuration` 0) only observations raise alerts.
//!
//! Either way the alert is raised once: a raised alert is only waiting to clear, so later
//! observations that meet the condition, and later watermarks, raise nothing more. Once
//! raised, the alert is cleared by the first observation meeting the clear condition, at
//! once. Each key needs its observations in event-time order; an older one goes to the
//! dead letters.
//!
//! **Output.** One observation when the alert is raised and one when it clears: name
//! `outputName`, source = the input's, time = the observation's (`since + minDuration`
//! when the watermark raised it), value = the value that raised or cleared it (the last
//! observation's when the watermark raised it), and attributes `rule` (e.g. `power GT 3000
//! for PT10S, clears LE 2800`; the duration in ISO 8601), `state` (`raised` or `cleared`),
//! `threshold`, `clearThreshold`, `since` (when the condition started to hold),
//! `observationName`; a cleared alert also has `raisedAt`.

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::{Observation, Sym, Timestamp};
use manifests::config::{Config, ConfigError, Duration};
use manifests::model::Category;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::{Common, KeyConfig, Keyed, num, result};
pub use crate::operator::Operator;

/// The processor type.
pub const KIND: &str = "threshold";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Threshold>());

const fn greater_than() -> Operator {
    Operator::Gt
}

const fn no_time() -> Duration {
    Duration::from_secs(0)
}

/// The operators of the alert condition: those that order values.
fn ordering_operators(_: &mut SchemaGenerator) -> Schema {
    let values: Vec<&str> = Operator::ALL
        .iter()
        .filter(|o| o.orders())
        .map(|o| o.text())
        .collect();
    json_schema!({"type": "string", "enum": values})
}

/// The parameters of `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdConfig {
    /// The alert condition, value OPERATOR threshold: GT, GE, LT or LE.
    #[serde(default = "greater_than")]
    #[schemars(schema_with = "ordering_operators")]
    pub operator: Operator,
    /// The threshold of the alert condition.
    pub threshold: f64,
    /// The alert clears when the value is back past this (GT: value <= clearThreshold; GE:
    /// <; LT: >=; LE: >). Default: threshold (no hysteresis). Not above threshold for GT/GE,
    /// not below for LT/LE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_threshold: Option<f64>,
    /// How long (event time) the condition must hold before the alert is raised, e.g.
    /// PT10S.
    #[serde(default = "no_time")]
    pub min_duration: Duration,
    /// What is read and what state is kept per.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Name of the alerts (default: alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl ThresholdConfig {
    /// The clear threshold: `clearThreshold`, or the threshold.
    #[must_use]
    pub fn clear_threshold(&self) -> f64 {
        self.clear_threshold.unwrap_or(self.threshold)
    }
}

impl Config for ThresholdConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let (operator, threshold) = (self.operator, self.threshold);
        if !operator.orders() {
            return Err(ConfigError::at(
                "operator",
                format!(
                    "parameter `operator` is {:?}: use one of GT, GE, LT, LE",
                    operator.text()
                ),
            ));
        }
        let clear_threshold = self.clear_threshold();
        if operator.upward() && clear_threshold > threshold {
            return Err(ConfigError::at(
                "clearThreshold",
                format!(
                    "parameter `clearThreshold` is {clear_threshold}, above threshold {threshold}: with {} the alert clears when the value falls back, so give a clearThreshold at or below the threshold",
                    operator.text()
                ),
            ));
        }
        if !operator.upward() && clear_threshold < threshold {
            return Err(ConfigError::at(
                "clearThreshold",
                format!(
                    "parameter `clearThreshold` is {clear_threshold}, below threshold {threshold}: with {} the alert clears when the value rises back, so give a clearThreshold at or above the threshold",
                    operator.text()
                ),
            ));
        }
        Ok(())
    }

    fn example() -> Json {
        json!({"threshold": 3000})
    }

    fn reword(error: ConfigError) -> ConfigError {
        super::named(error)
    }
}

/// The alert of one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// When the condition started to hold (µs), while it holds.
    since: Option<i64>,
    /// When the alert was raised (µs), while it is raised.
    raised_at: Option<i64>,
    /// Event time of the key's newest observation (µs).
    last: Option<i64>,
    /// Value of the key's newest observation: what an alert raised by the watermark
    /// carries.
    #[serde(default)]
    value: Option<f64>,
    /// Name of the key's newest observation, for an alert raised by the watermark.
    #[serde(default, with = "sym_text")]
    name: Option<Sym>,
    /// When the key's newest observation entered the engine (not checkpointed: the
    /// clock is the process's).
    #[serde(skip)]
    ingested: u64,
}

impl super::LastSeen for AlertState {
    fn last_seen(&self) -> Option<i64> {
        self.last
    }
}

/// An optional [`Sym`] written as its text.
mod sym_text {
    use engine::Sym;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sym: &Option<Sym>, s: S) -> Result<S::Ok, S::Error> {
        match sym {
            Some(sym) => s.serialize_some(&*sym.text()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Sym>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(|t| Sym::new(&t)))
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Threshold {
    common: Common,
    operator: Operator,
    threshold: f64,
    clear_threshold: f64,
    /// `minDuration` in µs.
    min_duration: i64,
    /// `minDuration` in ISO 8601, for the rule.
    min_duration_text: String,
    output_name: Sym,
    alerts: Keyed<AlertState>,
}

impl ProcessorKind for Threshold {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Raises an alert when a value crosses a threshold for at least a minimum duration, and clears it when the value comes back past a clear threshold (hysteresis).";
    type Config = ThresholdConfig;

    fn new(config: ThresholdConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            common: Common::new(&config.key, config.output_name.as_deref(), KIND, ctx.sink),
            operator: config.operator,
            threshold: config.threshold,
            clear_threshold: config.clear_threshold(),
            min_duration: engine::time::micros(config.min_duration.get()),
            min_duration_text: config.min_duration.to_string(),
            output_name: Sym::new("alert"),
            alerts: Keyed::default(),
        })
    }
}

impl Threshold {
    /// The rule, in words: `power GT 3000 for PT10S, clears LE 2800`.
    fn rule(&self, name: Sym) -> String {
        let held = if self.min_duration > 0 {
            format!(" for {}", self.min_duration_text)
        } else {
            String::new()
        };
        format!(
            "{name} {} {}{held}, clears {} {}",
            self.operator.text(),
            self.threshold,
            self.operator.negation().text(),
            self.clear_threshold
        )
    }

    fn alert(
        &self,
        o: &Observation,
        key: super::Key,
        x: f64,
        state: &str,
        since: i64,
        raised_at: Option<i64>,
    ) -> Observation {
        let mut a = Map::new();
        a.insert("rule".into(), Json::String(self.rule(o.name)));
        a.insert("state".into(), Json::String(state.into()));
        a.insert("threshold".into(), num(self.threshold));
        a.insert("clearThreshold".into(), num(self.clear_threshold));
        a.insert("since".into(), Json::String(Timestamp(since).to_string()));
        if let Some(r) = raised_at {
            a.insert("raisedAt".into(), Json::String(Timestamp(r).to_string()));
        }
        a.insert("observationName".into(), Json::String(o.name.to_string()));
        result(
            &self.common,
            key,
            self.common.output_name(self.output_name),
            o,
            x,
            a,
        )
    }
}

impl Processor for Threshold {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            let Some((key, x)) = self.common.admit(o, &self.alerts, out) else {
                continue;
            };
            let t = o.timestamp.as_micros();
            let mut s = self.alerts.get(key).clone();
            s.last = Some(t);
            s.value = Some(x);
            s.name = Some(o.name);
            s.ingested = o.ingested;
            if let Some(raised_at) = s.raised_at {
                if self.operator.negation().holds(x, self.clear_threshold) {
                    let since = s.since.unwrap_or(raised_at);
                    s.raised_at = None;
                    s.since = None;
                    out.emit(self.alert(o, key, x, "cleared", since, Some(raised_at)));
                }
            } else if self.operator.holds(x, self.threshold) {
                let since = *s.since.get_or_insert(t);
                if t.saturating_sub(since) >= self.min_duration {
                    s.raised_at = Some(t);
                    out.emit(self.alert(o, key, x, "raised", since, None));
                }
            } else {
                s.since = None;
            }
            *self.alerts.get(key) = s;
        }
        Ok(())
    }

    /// Raises the alerts whose condition has held for `minDuration` by `watermark`: see
    /// the module's "When it fires".
    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        if self.min_duration == 0 {
            return Ok(());
        }
        let w = watermark.as_micros();
        let min_duration = self.min_duration;
        let mut due = Vec::new();
        for (key, s) in self.alerts.iter_mut() {
            let (None, Some(since), Some(x), Some(name)) = (s.raised_at, s.since, s.value, s.name)
            else {
                continue;
            };
            let at = since.saturating_add(min_duration);
            if at <= w {
                s.raised_at = Some(at);
                due.push((at, key, since, x, name, s.ingested));
            }
        }
        // In time order, then key order, so that the output does not depend on hashing.
        due.sort_by_key(|d| (d.0, d.1));
        for (at, key, since, x, name, ingested) in due {
            let last = Observation {
                source: self.common.source(key),
                name,
                timestamp: Timestamp(at),
                value: engine::Value::Number(x),
                data_kind: None,
                ingested,
                attributes: None,
                id: None,
            };
            out.emit(self.alert(&last, key, x, "raised", since, None));
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.alerts.snapshot()
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        self.alerts.restore(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::{at, restored_gives_the_same, series};
    use crate::testing::{run, watermark};

    fn threshold(params: Json) -> Threshold {
        Threshold::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
    }

    fn states(out: &[Observation]) -> Vec<(i64, String, f64)> {
        out.iter()
            .map(|o| {
                (
                    o.timestamp.as_millis() / 1000,
                    o.attribute("state").unwrap().as_str().unwrap().to_owned(),
                    o.value.as_f64().unwrap(),
                )
            })
            .collect()
    }

    /// Power readings one a second, built so that, for GT 3000 for 10 s clearing at 2800:
    /// - 3100 from t=10 to 14, then a dip to 2900 at 15 (inside the band: not above 3000,
    ///   so it resets the 10 s) — no alert;
    /// - above 3000 again from t=16; 10 s later, at t=26, the alert is raised (value 3260);
    /// - 2900 (the band) from 30 to 34 does not clear it; 2800 at t=35 clears it;
    /// - above again 40..=49 (only 9 s): no alert; 50 falls to 2000.
    fn power() -> Vec<(i64, f64)> {
        let mut v = Vec::new();
        for t in 0..60 {
            let x = match t {
                10..=14 => 3100.0,
                15 => 2900.0,
                16..=29 => 3000.0 + 10.0 * t as f64,
                30..=34 => 2900.0,
                35 => 2800.0,
                40..=49 => 3050.0,
                _ => 2000.0,
            };
            v.push((t, x));
        }
        v
    }

    #[test]
    fn hysteresis_and_minimum_duration_raise_and_clear_when_built_to() {
        let mut p = threshold(
            json!({"operator": "GT", "threshold": 3000, "clearThreshold": 2800, "minDuration": "PT10S"}),
        );
        let (out, rejected) = run(&mut p, &series("power", &power()));
        assert!(rejected.is_empty());
        assert_eq!(
            states(&out),
            [
                (26, "raised".into(), 3260.0),
                (35, "cleared".into(), 2800.0)
            ]
        );
        let raised = &out[0];
        assert_eq!(raised.name.to_string(), "alert");
        assert_eq!(raised.source.to_string(), "s");
        assert_eq!(
            raised.attribute("rule").unwrap(),
            "power GT 3000 for PT10S, clears LE 2800"
        );
        assert_eq!(
            raised.attribute("since").unwrap(),
            &json!(at(16).to_string())
        );
        assert_eq!(raised.attribute("observationName").unwrap(), "power");
        assert_eq!(raised.attribute("threshold").unwrap(), &json!(3000.0));
        assert_eq!(
            out[1].attribute("raisedAt").unwrap(),
            &json!(at(26).to_string())
        );
    }

    #[test]
    fn without_hysteresis_or_duration_every_crossing_counts() {
        let mut p = threshold(json!({"threshold": 3000}));
        let (out, _) = run(&mut p, &series("power", &power()));
        // Up at 10, down at the dip 15, up at 16, down at 30, up at 40, down at 50.
        let times: Vec<i64> = states(&out).iter().map(|s| s.0).collect();
        assert_eq!(times, [10, 15, 16, 30, 40, 50]);
        assert_eq!(
            out[0].attribute("rule").unwrap(),
            "power GT 3000, clears LE 3000"
        );
    }

    #[test]
    fn downward_alerts_mirror_upward_ones() {
        // Negated power: LT -3000 clearing at GE -2800 gives the same times.
        let negated: Vec<(i64, f64)> = power().iter().map(|(t, x)| (*t, -x)).collect();
        let mut p = threshold(
            json!({"operator": "LT", "threshold": -3000, "clearThreshold": -2800, "minDuration": "10s"}),
        );
        let (out, _) = run(&mut p, &series("power", &negated));
        assert_eq!(
            states(&out),
            [
                (26, "raised".into(), -3260.0),
                (35, "cleared".into(), -2800.0)
            ]
        );
    }

    #[test]
    fn observations_out_of_order_and_text_go_to_the_dead_letters() {
        let mut p = threshold(json!({"threshold": 1}));
        let mut input = series("x", &[(5, 0.0), (3, 2.0), (6, 2.0)]);
        input[2].value = engine::Value::Text(std::sync::Arc::new("high".into()));
        let (out, rejected) = run(&mut p, &input);
        assert!(out.is_empty());
        assert_eq!(rejected.len(), 2);
        assert!(
            rejected[0].reason.contains("out of order"),
            "{}",
            rejected[0].reason
        );
        assert!(rejected[1].reason.contains("not a number"));
    }

    #[test]
    fn a_restored_processor_continues_identically() {
        let params = json!({"threshold": 3000, "clearThreshold": 2800, "minDuration": "PT10S"});
        // Cut at t=20: the condition has held since 16 but the alert is not raised yet.
        restored_gives_the_same(KIND, &params, &series("power", &power()), 20);
    }

    fn held_for_ten_seconds() -> Threshold {
        threshold(json!({"threshold": 3000, "clearThreshold": 2800, "minDuration": "PT10S"}))
    }

    #[test]
    fn the_watermark_raises_the_alert_at_exactly_since_plus_min_duration_and_only_once() {
        let mut p = held_for_ten_seconds();
        // The condition starts at t=0 with the only observation.
        let (out, _) = run(&mut p, &series("power", &[(0, 3100.0)]));
        assert!(out.is_empty());
        // Event time short of 10 s: nothing, not even 1 µs short.
        assert!(watermark(&mut p, at(9)).is_empty());
        assert!(watermark(&mut p, Timestamp(at(10).as_micros() - 1)).is_empty());
        // At 10 s the condition has held for minDuration: raised, stamped 0 + 10 s.
        let raised = watermark(&mut p, at(10));
        assert_eq!(states(&raised), [(10, "raised".into(), 3100.0)]);
        assert_eq!(raised[0].timestamp, at(10));
        assert_eq!(raised[0].source.to_string(), "s");
        assert_eq!(raised[0].name.to_string(), "alert");
        assert_eq!(
            raised[0].attribute("since").unwrap(),
            &json!(at(0).to_string())
        );
        assert_eq!(raised[0].attribute("observationName").unwrap(), "power");
        assert_eq!(
            raised[0].attribute("rule").unwrap(),
            "power GT 3000 for PT10S, clears LE 2800"
        );
        // Never twice: not by a later watermark, nor by a later observation meeting it.
        assert!(watermark(&mut p, at(30)).is_empty());
        let (out, _) = run(&mut p, &series("power", &[(31, 3500.0)]));
        assert!(out.is_empty(), "{out:?}");
        // The band does not clear it; a clearing observation does.
        let (out, _) = run(&mut p, &series("power", &[(32, 2900.0), (33, 2700.0)]));
        assert_eq!(states(&out), [(33, "cleared".into(), 2700.0)]);
        assert_eq!(
            out[0].attribute("raisedAt").unwrap(),
            &json!(at(10).to_string())
        );
        assert_eq!(
            out[0].attribute("since").unwrap(),
            &json!(at(0).to_string())
        );
    }

    #[test]
    fn the_watermark_raises_nothing_once_an_observation_contradicted_the_condition() {
        let mut p = held_for_ten_seconds();
        // A dip at 5 (in the band) resets the condition; it starts again at 6.
        run(
            &mut p,
            &series("power", &[(0, 3100.0), (5, 2900.0), (6, 3100.0)]),
        );
        assert!(watermark(&mut p, at(15)).is_empty());
        assert_eq!(
            states(&watermark(&mut p, at(16))),
            [(16, "raised".into(), 3100.0)]
        );
        // Below the threshold at the end: nothing, however far the watermark goes.
        let mut p = held_for_ten_seconds();
        run(&mut p, &series("power", &[(0, 3100.0), (5, 2000.0)]));
        assert!(watermark(&mut p, at(100)).is_empty());
    }

    #[test]
    fn an_alert_raised_by_an_observation_is_not_raised_again_by_the_watermark() {
        let mut p = held_for_ten_seconds();
        let (out, _) = run(&mut p, &series("power", &[(0, 3100.0), (12, 3200.0)]));
        assert_eq!(states(&out), [(12, "raised".into(), 3200.0)]);
        assert!(watermark(&mut p, at(100)).is_empty());
    }

    #[test]
    fn without_min_duration_the_watermark_does_nothing() {
        let mut p = threshold(json!({"threshold": 3000}));
        let (out, _) = run(&mut p, &series("power", &[(0, 3100.0)]));
        assert_eq!(out.len(), 1);
        assert!(watermark(&mut p, at(100)).is_empty());
    }

    #[test]
    fn the_watermark_raises_each_due_key_in_time_order() {
        let mut p = held_for_ten_seconds();
        let mut input = series("power", &[(0, 3100.0), (3, 3300.0)]);
        input[0].source = Sym::new("b");
        let mut late = series("power", &[(1, 3050.0)]);
        late[0].source = Sym::new("a");
        input.insert(1, late.remove(0));
        run(&mut p, &input);
        let out = watermark(&mut p, at(11));
        let got: Vec<(String, i64, f64)> = out
            .iter()
            .map(|o| {
                (
                    o.source.to_string(),
                    o.timestamp.as_millis() / 1000,
                    o.value.as_f64().unwrap(),
                )
            })
            .collect();
        // b held from 0 (due at 10), a from 1 (due at 11); s, from 3, is not due yet.
        assert_eq!(got, [("b".into(), 10, 3100.0), ("a".into(), 11, 3050.0)]);
        // s held from 3: due at 13.
        assert_eq!(
            states(&watermark(&mut p, at(13))),
            [(13, "raised".into(), 3300.0)]
        );
    }

    #[test]
    fn a_restored_processor_raises_by_the_watermark_and_clears_identically() {
        let no_ingest = |v: Vec<Observation>| -> Vec<Observation> {
            v.into_iter()
                .map(|o| Observation { ingested: 0, ..o })
                .collect()
        };
        let mut original = held_for_ten_seconds();
        run(&mut original, &series("power", &[(0, 3100.0), (4, 3150.0)]));
        let text = original.snapshot().unwrap().to_string();
        let mut restored = held_for_ten_seconds();
        restored
            .restore(serde_json::from_str(&text).unwrap())
            .unwrap();
        assert_eq!(restored.snapshot().unwrap().to_string(), text);
        // Pending since 0, last value 3150: both raise at 10 with it; a fresh one does not.
        let expected = no_ingest(watermark(&mut original, at(10)));
        assert_eq!(states(&expected), [(10, "raised".into(), 3150.0)]);
        assert_eq!(no_ingest(watermark(&mut restored, at(10))), expected);
        assert!(watermark(&mut held_for_ten_seconds(), at(10)).is_empty());
        // Raised by the watermark, checkpointed again: the restored one knows it is raised
        // (no second alert) and when (the clear's raisedAt).
        let text = original.snapshot().unwrap().to_string();
        let mut restored = held_for_ten_seconds();
        restored
            .restore(serde_json::from_str(&text).unwrap())
            .unwrap();
        let rest = series("power", &[(20, 3400.0), (21, 2500.0)]);
        let (expected, _) = run(&mut original, &rest);
        let (got, _) = run(&mut restored, &rest);
        assert_eq!(states(&expected), [(21, "cleared".into(), 2500.0)]);
        assert_eq!(got, expected);
        assert_eq!(
            got[0].attribute("raisedAt").unwrap(),
            &json!(at(10).to_string())
        );
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for (params, needle) in [
            (json!({}), "`threshold`"),
            (json!({"threshold": "high"}), "`threshold`"),
            (json!({"threshold": 1, "operator": "EQ"}), "`operator`"),
            (json!({"threshold": 1, "clearThreshold": 2}), "at or below"),
            (
                json!({"threshold": 1, "operator": "LE", "clearThreshold": 0}),
                "at or above",
            ),
            (
                json!({"threshold": 1, "minDuration": "soon"}),
                "`minDuration`",
            ),
            (json!({"threshold": 1, "groupBy": "box"}), "`groupBy`"),
        ] {
            match Threshold::from_context(&ProcessorContext::for_test(&params, "sink")) {
                Err(ProcessorError::Config(m)) => {
                    assert!(m.message.contains(needle), "{params}: {m}")
                }
                other => panic!("{params}: {other:?}"),
            }
        }
    }
}
