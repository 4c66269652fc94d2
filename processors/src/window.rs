//! Event-time windows shared by every windowed processor.
//!
//! Tumbling windows of length `window` (`PT1H`, `1h`, `15m`...), aligned to the epoch,
//! keyed by observation name and source (`groupBy`). A window is either closed on the left,
//! `[start, end)` (the default, as in Flink and Kafka Streams), or on the right,
//! `(start, end]` — the "interval ending" convention of metering, which also lets a window
//! re-aggregate results of windows of the same length, stamped with their end. A window's
//! result is emitted once event time (the watermark of all inputs) has passed its end, with
//! the window's end as timestamp; at the end of input every open window is emitted. An
//! observation for a window already emitted is late: it goes to the dead letters.

use std::collections::BTreeSet;
use std::sync::Arc;

use engine::processor::{Output, ParameterDefinitionExt, ProcessorContext, ProcessorError, param};
use engine::time::micros;
use engine::{Observation, Sym, Timestamp, Value};
use manifests::model::{DataType, ParameterDefinition};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value as Json, json};

/// What results are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One result per observation name and source (default).
    NameAndSource,
    /// One result per name, across sources.
    Name,
    /// One result per source, across names.
    Source,
    /// One result per window.
    All,
}

/// The key of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Observation name, when grouping by it.
    pub name: Option<Sym>,
    /// Source, when grouping by it.
    pub source: Option<Sym>,
}

/// The window parameters every windowed processor takes.
pub fn parameters() -> Vec<ParameterDefinition> {
    vec![
        param("window", DataType::Duration, "Length of the tumbling event-time window, e.g. PT1H, 1h, 15m.").default_value(json!("PT1H")),
        param("observationName", DataType::String, "Only observations with this name are used; others are left to other processors."),
        param("groupBy", DataType::String, "What results are keyed by: name+source (one per quantity and source), name (one per quantity across sources), source, or all.")
            .default_value(json!("name+source"))
            .one_of(&["name+source", "name", "source", "all"]),
        param("closed", DataType::String, "Which end of a window is inclusive: left, [start, end); or right, (start, end].")
            .default_value(json!("left"))
            .one_of(&["left", "right"]),
        param("outputName", DataType::String, "Name of the results (default: the observations' name, or the processor type when not grouping by name)."),
    ]
}

/// Window settings read from a processor's parameters.
#[derive(Clone, Debug)]
pub struct WindowSettings {
    size: i64,
    closed_right: bool,
    group: GroupBy,
    only: Option<Sym>,
    output_name: Sym,
    name_output: bool,
}

impl WindowSettings {
    /// Reads the settings; `kind` names results when they are not named after their input.
    ///
    /// # Errors
    ///
    /// An unreadable window length or an unknown `groupBy` / `closed`.
    pub fn new(ctx: &ProcessorContext, kind: &str) -> Result<Self, ProcessorError> {
        let p = &ctx.parameters;
        let window = p.get_str("window").unwrap_or_else(|| "PT1H".to_owned());
        let size = manifests::parameters::parse_duration(&window)
            .map_err(|e| ProcessorError::Config(format!("window: {e}")))?;
        let group = match p.get_str("groupBy").as_deref().unwrap_or("name+source") {
            "name+source" => GroupBy::NameAndSource,
            "name" => GroupBy::Name,
            "source" => GroupBy::Source,
            "all" => GroupBy::All,
            other => {
                return Err(ProcessorError::Config(format!(
                    "groupBy {other:?}: use name+source, name, source or all"
                )));
            }
        };
        let closed_right = match p.get_str("closed").as_deref().unwrap_or("left") {
            "left" => false,
            "right" => true,
            other => {
                return Err(ProcessorError::Config(format!(
                    "closed {other:?}: use left or right"
                )));
            }
        };
        let explicit = p.get_str("outputName");
        Ok(Self {
            size: micros(size).max(1),
            closed_right,
            group,
            only: p.get_str("observationName").map(|n| Sym::new(&n)),
            output_name: Sym::new(explicit.as_deref().unwrap_or(kind)),
            name_output: explicit.is_none()
                && matches!(group, GroupBy::NameAndSource | GroupBy::Name),
        })
    }

    /// The end of the window holding `t`.
    #[must_use]
    pub fn end_of(&self, t: Timestamp) -> i64 {
        let t = t.as_micros();
        if self.closed_right {
            (t - 1).div_euclid(self.size) * self.size + self.size
        } else {
            t.div_euclid(self.size) * self.size + self.size
        }
    }

    /// Whether the window ending at `end` is complete once event time reached `watermark`.
    #[must_use]
    pub fn complete(&self, end: i64, watermark: Timestamp) -> bool {
        if self.closed_right {
            watermark.as_micros() >= end
        } else {
            watermark.as_micros() >= end - 1
        }
    }

    fn key(&self, o: &Observation) -> Key {
        let (name, source) = match self.group {
            GroupBy::NameAndSource => (Some(o.name), Some(o.source)),
            GroupBy::Name => (Some(o.name), None),
            GroupBy::Source => (None, Some(o.source)),
            GroupBy::All => (None, None),
        };
        Key { name, source }
    }
}

/// A statistic computed incrementally over one window.
pub trait Accumulator:
    Clone + Send + std::fmt::Debug + Serialize + DeserializeOwned + 'static
{
    /// Options read once from the processor's parameters (e.g. a sample or population
    /// estimator).
    type Options: Clone + Send + std::fmt::Debug + 'static;

    /// The options, from the parameters.
    ///
    /// # Errors
    ///
    /// Unusable parameters.
    fn options(ctx: &ProcessorContext) -> Result<Self::Options, ProcessorError>;

    /// An empty accumulator.
    fn new(options: &Self::Options) -> Self;

    /// Adds one observation; an error is the reason it cannot be used.
    ///
    /// # Errors
    ///
    /// The observation's value is not usable (not a number, for most statistics).
    fn add(&mut self, o: &Observation) -> Result<(), &'static str>;

    /// How many observations were added.
    fn count(&self) -> u64;

    /// The statistic (`null` when undefined, e.g. a sample deviation of one value).
    fn result(&self, options: &Self::Options) -> Value;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Open<A> {
    acc: A,
    data_kind: Option<String>,
    #[serde(skip)]
    ingested: u64,
}

/// Open windows of one processor and the machinery to close them.
#[derive(Debug)]
pub struct Windows<A: Accumulator> {
    settings: WindowSettings,
    options: A::Options,
    open: FxHashMap<(Key, i64), Open<A>>,
    by_end: BTreeSet<(i64, Key)>,
    watermark: Timestamp,
    sink: Sym,
    kind: &'static str,
}

impl<A: Accumulator> Windows<A> {
    /// Windows for processor `kind` with the given parameters.
    ///
    /// # Errors
    ///
    /// Unusable window or accumulator parameters.
    pub fn new(ctx: &ProcessorContext, kind: &'static str) -> Result<Self, ProcessorError> {
        Ok(Self {
            settings: WindowSettings::new(ctx, kind)?,
            options: A::options(ctx)?,
            open: FxHashMap::default(),
            by_end: BTreeSet::new(),
            watermark: Timestamp::MIN,
            sink: ctx.sink,
            kind,
        })
    }

    /// Adds observations to their windows; late and unusable ones are rejected.
    pub fn add(&mut self, input: &[Observation], out: &mut Output<'_>) {
        for o in input {
            if self.settings.only.is_some_and(|n| n != o.name) {
                continue;
            }
            let end = self.settings.end_of(o.timestamp);
            if self.settings.complete(end, self.watermark) {
                out.reject(
                    o,
                    format!(
                        "late: its {} window ending {} was already emitted",
                        self.kind,
                        Timestamp(end)
                    ),
                );
                continue;
            }
            let key = self.settings.key(o);
            let slot = match self.open.get_mut(&(key, end)) {
                Some(slot) => slot,
                None => {
                    self.by_end.insert((end, key));
                    self.open.entry((key, end)).or_insert_with(|| Open {
                        acc: A::new(&self.options),
                        data_kind: o.data_kind.map(|k| k.text().to_string()),
                        ingested: 0,
                    })
                }
            };
            match slot.acc.add(o) {
                Ok(()) => slot.ingested = slot.ingested.max(o.ingested),
                Err(reason) => out.reject(o, format!("{}: {reason}", self.kind)),
            }
        }
    }

    /// Emits every window complete at `watermark`.
    pub fn advance(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        self.watermark = self.watermark.max(watermark);
        while let Some(&(end, key)) = self.by_end.first() {
            if !self.settings.complete(end, self.watermark) {
                break;
            }
            self.by_end.pop_first();
            self.emit(key, end, out);
        }
    }

    /// Emits every open window (end of input).
    pub fn flush(&mut self, out: &mut Output<'_>) {
        while let Some((end, key)) = self.by_end.pop_first() {
            self.emit(key, end, out);
        }
    }

    fn emit(&mut self, key: Key, end: i64, out: &mut Output<'_>) {
        let Some(open) = self.open.remove(&(key, end)) else {
            return;
        };
        if open.acc.count() == 0 {
            return;
        }
        let mut attributes = Map::new();
        attributes.insert(
            "windowStart".into(),
            Json::String(Timestamp(end - self.settings.size).to_string()),
        );
        attributes.insert("windowEnd".into(), Json::String(Timestamp(end).to_string()));
        attributes.insert("count".into(), Json::from(open.acc.count()));
        out.emit(Observation {
            source: key.source.unwrap_or(self.sink),
            name: match key.name {
                Some(n) if self.settings.name_output => n,
                _ => self.settings.output_name,
            },
            timestamp: Timestamp(end),
            value: open.acc.result(&self.options),
            data_kind: open.data_kind.as_deref().map(Sym::new),
            ingested: open.ingested,
            attributes: Some(Arc::new(attributes)),
        });
    }

    /// The open windows and the watermark, for a checkpoint.
    ///
    /// # Errors
    ///
    /// An accumulator that cannot be written.
    pub fn snapshot(&self) -> Result<Json, ProcessorError> {
        let windows: Vec<Json> = self
            .by_end
            .iter()
            .filter_map(|(end, key)| self.open.get(&(*key, *end)).map(|o| (end, key, o)))
            .map(|(end, key, open)| {
                Ok(json!({
                    "name": key.name.map(|n| n.text().to_string()),
                    "source": key.source.map(|s| s.text().to_string()),
                    "end": end,
                    "dataKind": open.data_kind,
                    "accumulator": serde_json::to_value(&open.acc).map_err(|e| ProcessorError::Failed(e.to_string()))?,
                }))
            })
            .collect::<Result<_, ProcessorError>>()?;
        Ok(json!({"watermark": self.watermark.as_micros(), "windows": windows}))
    }

    /// Restores a snapshot.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    pub fn restore(&mut self, state: &Json) -> Result<(), ProcessorError> {
        let bad =
            |what: &str| ProcessorError::Failed(format!("cannot restore window state: {what}"));
        self.open.clear();
        self.by_end.clear();
        self.watermark = Timestamp(
            state
                .get("watermark")
                .and_then(Json::as_i64)
                .ok_or_else(|| bad("no watermark"))?,
        );
        for w in state
            .get("windows")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("no windows"))?
        {
            let key = Key {
                name: w.get("name").and_then(Json::as_str).map(Sym::new),
                source: w.get("source").and_then(Json::as_str).map(Sym::new),
            };
            let end = w
                .get("end")
                .and_then(Json::as_i64)
                .ok_or_else(|| bad("a window has no end"))?;
            let acc: A =
                serde_json::from_value(w.get("accumulator").cloned().unwrap_or(Json::Null))
                    .map_err(|e| bad(&e.to_string()))?;
            let data_kind = w.get("dataKind").and_then(Json::as_str).map(str::to_owned);
            self.by_end.insert((end, key));
            self.open.insert(
                (key, end),
                Open {
                    acc,
                    data_kind,
                    ingested: 0,
                },
            );
        }
        Ok(())
    }
}
