//! Detection and smoothing: `threshold`, `zscore`, `iqr`, `change`, `ewma`.
//!
//! Each kind is its own submodule with its own `KIND` and registration; this module holds
//! what they share:
//!
//! - **Parameters.** Each kind's configuration flattens [`KeyConfig`] (`observationName`,
//!   `groupBy`, `keyField`, shared with the windowed kinds) and has an `outputName` of its
//!   own; `zscore` and `iqr` also flatten [`TrailingConfig`]. Their messages name the
//!   parameter at fault as `` parameter `x` `` ([`named`]).
//! - **Keys.** Every kind keeps its own state per key: observation name and source by
//!   default, or as parameter `groupBy` says (`name+source`, `name`, `source`, `all`).
//!   Their state is a small per-key record ([`Keyed`]); `zscore` and `iqr` keep the
//!   key's trailing values ([`Trailing`]), the last `count` or, with `window`, those of
//!   the last `window` of event time (at most `count`).
//! - **Order.** What they compute depends on the order of the observations, so each key
//!   takes its observations in event-time order: one older than the last one of its key
//!   goes to the dead letters (equal timestamps are accepted, in arrival order).
//! - **Numbers.** They read numbers; any other value goes to the dead letters.
//! - **Output.** Results are observations for the sink: source = the key's source (the
//!   sink when the key spans sources), timestamp = the event time of the observation that
//!   produced them, and attributes saying which rule fired and on what.
//! - **Checkpoints.** The per-key state is written by `snapshot()` as
//!   `{"keys": [{"name", "source", "state"}]}` and read back by `restore()`.

pub mod change;
pub mod ewma;
pub mod iqr;
pub mod threshold;
pub mod zscore;

use std::collections::VecDeque;
use std::sync::Arc;

use engine::processor::{Output, ProcessorError};
use engine::{Observation, Sym, Timestamp};
use manifests::config::{ConfigError, Duration};
use rustc_hash::FxHashMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value as Json, json};

pub use crate::window::{GroupBy, Key, KeyConfig};

/// Rewords an error of a detection kind's parameters so that it names the parameter as
/// `` parameter `x` ``, as every message of these kinds does: `groupBy "box": use ...`
/// becomes `` parameter `groupBy` is "box": use ... ``, `window: "soon" is not a duration`
/// becomes `` parameter `window`: "soon" is not a duration ``.
#[must_use]
pub fn named(error: ConfigError) -> ConfigError {
    let Some(p) = error.parameter.clone() else {
        return error;
    };
    if error.message.contains(&format!("`{p}`")) {
        return error;
    }
    let message = if let Some(rest) = error.message.strip_prefix(&format!("{p}: ")) {
        format!("parameter `{p}`: {rest}")
    } else if let Some(rest) = error.message.strip_prefix(&format!("{p} ")) {
        format!("parameter `{p}` is {rest}")
    } else {
        format!("parameter `{p}`: {}", error.message)
    };
    ConfigError::at(&p, message)
}

const fn thirty() -> i64 {
    30
}

const fn ten() -> i64 {
    10
}

/// The trailing window of the outlier kinds (`zscore`, `iqr`): `count`, `minCount` and
/// `window`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrailingConfig {
    /// How many preceding observations of the key form the window (with `window`: at most
    /// this many, the most recent).
    #[serde(default = "thirty")]
    pub count: i64,
    /// How many values the window needs before observations are judged (at least 2, at
    /// most count).
    #[serde(default = "ten")]
    pub min_count: i64,
    /// When given, the window is the key's observations within this duration before the
    /// judged one (t - window <= t' < t), at most `count` of them (the most recent), e.g.
    /// PT10M. Default: the last `count` observations, however old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

impl TrailingConfig {
    /// Checks what the types do not.
    ///
    /// # Errors
    ///
    /// Counts below 2, `minCount` above `count`, a `window` of no time.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.spec().map(drop)
    }

    /// The shape of the window.
    ///
    /// # Errors
    ///
    /// As [`TrailingConfig::check`].
    pub fn spec(&self) -> Result<TrailingSpec, ConfigError> {
        let count = at_least("count", self.count, 2)?;
        let min_count = at_least("minCount", self.min_count, 2)?;
        if min_count > count {
            return Err(ConfigError::at(
                "minCount",
                format!(
                    "parameter `minCount` is {min_count}, more than `count` ({count}): the window never holds that many; lower minCount or raise count"
                ),
            ));
        }
        let window = match self.window {
            Some(d) if d.get().is_zero() => {
                return Err(ConfigError::at(
                    "window",
                    format!(
                        "parameter `window` is {:?}: a window of no time holds nothing; give a positive duration, e.g. PT10M, or leave it out to use the last `count` observations",
                        d.to_string()
                    ),
                ));
            }
            Some(d) => Some((engine::time::micros(d.get()), d.to_string())),
            None => None,
        };
        Ok(TrailingSpec {
            count,
            min_count,
            window,
        })
    }
}

/// `n` as a count, if it is at least `min`.
///
/// # Errors
///
/// `n` is below `min`.
pub(crate) fn at_least(name: &str, n: i64, min: usize) -> Result<usize, ConfigError> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            ConfigError::at(
                name,
                format!("parameter `{name}` is {n}: give a whole number of at least {min}"),
            )
        })
}

/// The shape of a trailing window: `count`, `minCount` and `window`, checked.
#[derive(Clone, Debug)]
pub struct TrailingSpec {
    /// Most values in the window.
    pub count: usize,
    /// Fewest values in the window for an observation to be judged.
    pub min_count: usize,
    /// `window` in µs, and as written (ISO 8601), when given.
    pub window: Option<(i64, String)>,
}

impl TrailingSpec {
    /// The window in words, for rules: `30` or `PT10M (at most 30)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.window {
            None => self.count.to_string(),
            Some((_, text)) => format!("{text} (at most {})", self.count),
        }
    }
}

/// The settings shared by every detection kind.
#[derive(Clone, Debug)]
pub struct Common {
    group: GroupBy,
    /// `keyField`: an attribute that further keys the state.
    key_field: Option<String>,
    only: Option<Sym>,
    /// `outputName`, when given.
    output_name: Option<Sym>,
    sink: Sym,
    kind: &'static str,
}

impl Common {
    /// The settings of processor `kind` writing to `sink`: `observationName`, `groupBy`,
    /// `keyField` and `outputName`.
    #[must_use]
    pub fn new(key: &KeyConfig, output_name: Option<&str>, kind: &'static str, sink: Sym) -> Self {
        Self {
            group: key.group_by,
            key_field: key.key_field.clone(),
            only: key.observation_name.as_deref().map(Sym::new),
            output_name: output_name.map(Sym::new),
            sink,
            kind,
        }
    }

    /// Whether this processor reads `o` (parameter `observationName`).
    #[must_use]
    fn reads(&self, o: &Observation) -> bool {
        self.only.is_none_or(|n| n == o.name)
    }

    /// The key of `o`'s state.
    #[must_use]
    pub fn key(&self, o: &Observation) -> Key {
        let (name, source) = self.group.parts(o);
        Key {
            name,
            source,
            field: crate::window::field_key(self.key_field.as_deref(), o),
        }
    }

    /// The source of results for `key`: its source, or the sink when it spans sources.
    #[must_use]
    pub fn source(&self, key: Key) -> Sym {
        key.source.unwrap_or(self.sink)
    }

    /// The name of results: `outputName` when given, else `default`.
    #[must_use]
    pub fn output_name(&self, default: Sym) -> Sym {
        self.output_name.unwrap_or(default)
    }

    /// The number in `o`, or `None` after sending `o` to the dead letters.
    fn number(&self, o: &Observation, out: &mut Output<'_>) -> Option<f64> {
        match o.value.as_f64() {
            Some(v) if v.is_finite() => Some(v),
            Some(_) => {
                out.reject(
                    o,
                    format!("{}: the value is not a finite number", self.kind),
                );
                None
            }
            None => {
                out.reject(
                    o,
                    format!(
                        "{} reads numbers, and this value is not a number",
                        self.kind
                    ),
                );
                None
            }
        }
    }

    /// Whether `o` is in event-time order for its key (last seen at `last`); if not, sends
    /// it to the dead letters and returns false.
    fn in_order(&self, o: &Observation, last: Option<i64>, out: &mut Output<'_>) -> bool {
        match last {
            Some(last) if o.timestamp.as_micros() < last => {
                out.reject(
                    o,
                    format!(
                        "{}: out of order: its time {} is before {}, the last observation of its key; {} needs each key's observations in event-time order",
                        self.kind,
                        o.timestamp,
                        Timestamp(last),
                        self.kind
                    ),
                );
                false
            }
            _ => true,
        }
    }
}

/// Per-key state that remembers the event time of its key's newest observation.
pub trait LastSeen {
    /// The event time (µs) of the key's newest observation, if any.
    fn last_seen(&self) -> Option<i64>;
}

impl Common {
    /// Whether `o` is for this processor and may update its key's state: read by it, in
    /// event-time order for its key and a finite number. Gives its key and value; sends it
    /// to the dead letters when it is out of order or not a number.
    pub fn admit<S: LastSeen + Serialize + DeserializeOwned + Default>(
        &self,
        o: &Observation,
        states: &Keyed<S>,
        out: &mut Output<'_>,
    ) -> Option<(Key, f64)> {
        if !self.reads(o) {
            return None;
        }
        let key = self.key(o);
        let last = states.peek(key).and_then(LastSeen::last_seen);
        if !self.in_order(o, last, out) {
            return None;
        }
        self.number(o, out).map(|x| (key, x))
    }
}

/// Per-key state of a detection processor, with its checkpoint form.
#[derive(Debug)]
pub struct Keyed<S> {
    states: FxHashMap<Key, S>,
}

impl<S> Default for Keyed<S> {
    fn default() -> Self {
        Self {
            states: FxHashMap::default(),
        }
    }
}

impl<S: Serialize + DeserializeOwned + Default> Keyed<S> {
    /// The state of `key`, created empty on first use.
    pub fn get(&mut self, key: Key) -> &mut S {
        self.states.entry(key).or_default()
    }

    /// The state of `key`, if it has one.
    #[must_use]
    pub fn peek(&self, key: Key) -> Option<&S> {
        self.states.get(&key)
    }

    /// Every key with its state.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut S)> {
        self.states.iter_mut().map(|(k, s)| (*k, s))
    }

    /// Every state, for a checkpoint, in key order (so a snapshot is reproducible).
    ///
    /// # Errors
    ///
    /// A state that cannot be written.
    pub fn snapshot(&self) -> Result<Json, ProcessorError> {
        let mut keys: Vec<&Key> = self.states.keys().collect();
        keys.sort_by_key(|k| {
            (
                k.name.map(|n| n.text().to_string()),
                k.source.map(|s| s.text().to_string()),
                k.field.map(|f| f.text().to_string()),
            )
        });
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let state = serde_json::to_value(&self.states[key]).map_err(|e| {
                ProcessorError::internal(format!("cannot write state: {e}")).with_source(e)
            })?;
            out.push(json!({
                "name": key.name.map(|n| n.text().to_string()),
                "source": key.source.map(|s| s.text().to_string()),
                "field": key.field.map(|f| f.text().to_string()),
                "state": state,
            }));
        }
        Ok(json!({ "keys": out }))
    }

    /// Replaces every state with those of a snapshot.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    pub fn restore(&mut self, snapshot: &Json) -> Result<(), ProcessorError> {
        let bad = |what: String| ProcessorError::internal(format!("cannot restore state: {what}"));
        let keys = snapshot
            .get("keys")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("no `keys` list".into()))?;
        let mut states = FxHashMap::default();
        for k in keys {
            let key = Key {
                name: k.get("name").and_then(Json::as_str).map(Sym::new),
                source: k.get("source").and_then(Json::as_str).map(Sym::new),
                field: k.get("field").and_then(Json::as_str).map(Sym::new),
            };
            let state = S::deserialize(k.get("state").unwrap_or(&Json::Null))
                .map_err(|e| bad(e.to_string()).with_source(e))?;
            states.insert(key, state);
        }
        self.states = states;
        Ok(())
    }
}

/// A result observation.
pub(crate) fn result(
    common: &Common,
    key: Key,
    name: Sym,
    input: &Observation,
    value: f64,
    mut attributes: Map<String, Json>,
) -> Observation {
    if let (Some(field), Some(value)) = (&common.key_field, key.field) {
        attributes.insert(field.clone(), Json::String(value.text().to_string()));
    }
    Observation {
        source: common.source(key),
        name,
        timestamp: input.timestamp,
        value: engine::Value::Number(value),
        data_kind: None,
        ingested: input.ingested,
        attributes: Some(Arc::new(attributes)),
        id: None,
    }
}

/// A number as JSON (`null` when not finite).
pub(crate) fn num(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

/// `emit`: alerts only, or every judged observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// An alert for each outlier only (the default).
    Outliers,
    /// A result for every observation that could be judged.
    All,
}

/// The default `emit`.
pub(crate) const fn outliers_only() -> Emit {
    Emit::Outliers
}

/// What `zscore` and `iqr` share: each observation of a key is judged against the key's
/// trailing window by a rule, and an alert (or, with `emit` = `all`, a result for every
/// judged observation) goes out with the rule's statistics.
#[derive(Debug)]
pub struct Outliers {
    common: Common,
    trailing: TrailingSpec,
    emit: Emit,
    /// The results' name unless `outputName` says otherwise: `alert`, or with `emit` =
    /// `all` the processor type.
    output_name: Sym,
    windows: Keyed<Trailing>,
}

/// A rule's verdict on one value.
pub struct Verdict<S> {
    /// Whether the value is an outlier.
    pub outlier: bool,
    /// The result's value with `emit` = `all` (an alert's value is the observation's).
    pub score: f64,
    /// What the rule computed, for the result's attributes.
    pub stats: S,
}

impl Outliers {
    /// The outlier loop of processor `kind` writing to `sink`: its trailing window, `emit`
    /// and the common parameters.
    ///
    /// # Errors
    ///
    /// As [`TrailingConfig::check`].
    pub fn new(
        trailing: &TrailingConfig,
        emit: Emit,
        key: &KeyConfig,
        output_name: Option<&str>,
        kind: &'static str,
        sink: Sym,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            common: Common::new(key, output_name, kind, sink),
            trailing: trailing.spec()?,
            emit,
            output_name: Sym::new(match emit {
                Emit::Outliers => "alert",
                Emit::All => kind,
            }),
            windows: Keyed::default(),
        })
    }

    /// Judges each observation it reads with `judge` (given the window's values before it
    /// and its value) and emits what the verdict calls for. `describe` writes the rule's
    /// attributes — `rule` first, whose text ends with `of`, the window and the
    /// observation's name (`30 power`) — and the shared ones follow: `value`, `outlier`,
    /// `windowCount`, `observationName`.
    pub fn process<S>(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
        mut judge: impl FnMut(Vec<f64>, f64) -> Verdict<S>,
        describe: impl Fn(&S, &str, &mut Map<String, Json>),
    ) {
        for o in input {
            let Some((key, x)) = self.common.admit(o, &self.windows, out) else {
                continue;
            };
            let window = self.windows.get(key);
            let before = window.window(o.timestamp, &self.trailing);
            let count = before.len();
            if count >= self.trailing.min_count {
                let verdict = judge(before, x);
                if verdict.outlier || self.emit == Emit::All {
                    let mut a = Map::new();
                    let of = format!("{} {}", self.trailing.describe(), o.name);
                    describe(&verdict.stats, &of, &mut a);
                    a.insert("value".into(), num(x));
                    a.insert("outlier".into(), Json::Bool(verdict.outlier));
                    a.insert("windowCount".into(), Json::from(count));
                    a.insert("observationName".into(), Json::String(o.name.to_string()));
                    let value = if self.emit == Emit::All {
                        verdict.score
                    } else {
                        x
                    };
                    out.emit(result(
                        &self.common,
                        key,
                        self.common.output_name(self.output_name),
                        o,
                        value,
                        a,
                    ));
                }
            }
            window.push(x, o.timestamp, &self.trailing);
        }
    }

    /// The trailing windows of every key, for a checkpoint.
    ///
    /// # Errors
    ///
    /// A state that cannot be written.
    pub fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.windows.snapshot()
    }

    /// Replaces the trailing windows with those of a checkpoint.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    pub fn restore(&mut self, state: &Json) -> Result<(), ProcessorError> {
        self.windows.restore(state)
    }
}

/// The trailing values of one key, oldest first, with their times, and when the last one
/// came.
///
/// Without a `window` it holds the last `count` values. With one it holds, besides the
/// values at the newest time, at most `count` older ones (the most recent), and drops
/// those that have left the window: the window of an observation at `t` takes the values
/// at `t'` with `t − window <= t' < t`, so values at the newest time may yet count for a
/// later observation and values older than `t − window` never will again (the key's
/// observations come in time order).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(from = "TrailingData")]
pub struct Trailing {
    /// The values, oldest first.
    values: VecDeque<f64>,
    /// Event time of each value (µs), parallel to `values`.
    times: VecDeque<i64>,
    /// Event time of the newest observation (µs).
    last: Option<i64>,
}

/// `Trailing` as written in a checkpoint. `times` may be missing (checkpoints written before
/// windows had times): a value without a time is then taken as infinitely old, so it still
/// counts in a window of `count` observations and never in one of a duration.
#[derive(serde::Deserialize)]
struct TrailingData {
    values: VecDeque<f64>,
    #[serde(default)]
    times: VecDeque<i64>,
    last: Option<i64>,
}

impl From<TrailingData> for Trailing {
    fn from(d: TrailingData) -> Self {
        let TrailingData {
            values,
            mut times,
            last,
        } = d;
        while times.len() > values.len() {
            times.pop_front();
        }
        while times.len() < values.len() {
            times.push_front(i64::MIN);
        }
        Self {
            values,
            times,
            last,
        }
    }
}

impl LastSeen for Trailing {
    fn last_seen(&self) -> Option<i64> {
        self.last
    }
}

impl Trailing {
    /// The values an observation at `t` is judged against: the last `count` ones, or with a
    /// `window` the last `count` of those at `t − window <= t' < t`. Also drops values
    /// that have left the window for good.
    fn window(&mut self, t: Timestamp, spec: &TrailingSpec) -> Vec<f64> {
        let Some((window, _)) = spec.window else {
            return self.values.iter().copied().collect();
        };
        let t = t.as_micros();
        let start = t.saturating_sub(window);
        while self.times.front().is_some_and(|&u| u < start) {
            self.times.pop_front();
            self.values.pop_front();
        }
        // Values at t itself (earlier arrivals at the same time) are not before it.
        let end = self.times.partition_point(|&u| u < t);
        let from = end.saturating_sub(spec.count);
        self.values.range(from..end).copied().collect()
    }

    fn push(&mut self, x: f64, t: Timestamp, spec: &TrailingSpec) {
        let t = t.as_micros();
        self.values.push_back(x);
        self.times.push_back(t);
        self.last = Some(t);
        let keep = if spec.window.is_some() {
            // At most `count` older values, and at most `count` at the newest time.
            let at_t = self.times.iter().rev().take_while(|&&u| u == t).count();
            let older = self.times.len() - at_t;
            older.min(spec.count) + at_t.min(spec.count)
        } else {
            spec.count
        };
        while self.values.len() > keep {
            self.values.pop_front();
            self.times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
