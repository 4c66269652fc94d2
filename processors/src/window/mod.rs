//! Windows shared by every windowed processor: what a window is, when it closes, what is
//! late, and how its state is saved.
//!
//! Every windowed processor (`average`, `median`, `trend`...) is one [`Accumulator`]
//! behind [`Windows`], so they all take the same parameters:
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `windowType` | `tumbling`, `hopping`, `sliding`, `session` or `count` | `tumbling` |
//! | `window` | length of a time window (`PT1H`, `1h`, `15m`, `500ms`) | `PT1H` |
//! | `slide` | how far a `hopping` window advances; a `sliding` window with a `slide` is the same (Flink's name) | — |
//! | `gap` | inactivity that ends a `session` | `PT5M` |
//! | `count` / `countSlide` | observations per `count` window / observations between two of them | 100 / `count` |
//! | `allowedLateness` | how long after its end a window still takes observations | `PT0S` |
//! | `lateOutput` | DSM that receives late observations (else the dead letters) | — |
//! | `time` | `event` (the observations' timestamps) or `processing` (the wall clock at arrival) | `event` |
//! | `groupBy`, `keyField` | what results are keyed by: name and/or source, and an attribute | `name+source` |
//! | `closed` | `left`, `[start, end)`, or `right`, `(start, end]` (metering's "interval ending") | `left` |
//!
//! The window types:
//! - **tumbling**: back-to-back windows of length `window`, aligned to the epoch;
//! - **hopping** (`sliding` with a `slide`): windows of length `window` starting every
//!   `slide`, so an observation is in `window / slide` of them. They are computed from panes
//!   of `gcd(window, slide)`: an observation updates one pane, a window merges its panes.
//! - **sliding** without a `slide** (eKuiper's sliding window): one window per observation,
//!   the `window` ending at it, `(t − window, t]`: a moving statistic over time.
//! - **session**: observations of a key less than `gap` apart form one session, which ends
//!   `gap` after its last observation (Flink's session window);
//! - **count**: `count` observations of a key in event-time order, a new window every
//!   `countSlide` observations (`countSlide: 1` is a moving statistic over the last `count`).
//!
//! Time: the watermark is the event time all inputs have reached (sources set it from
//! their `outOfOrderness`). A window closes, and its result is emitted once, when the
//! watermark minus `allowedLateness` has passed its end; results are therefore final (as
//! Kafka Streams' grace period, not Flink's early firings followed by updates). An
//! observation whose windows have all closed is late: it goes to `lateOutput`, with a
//! `late` attribute giving the reason, or to the dead letters. Results are stamped with the
//! end of their window (the last observation for `sliding` without a slide and `count`),
//! and the watermark passed downstream is held back by `allowedLateness`, so no result is
//! late for the processor that reads it. With `time: processing` observations are stamped
//! with the wall clock when they arrive, and windows close on the wall clock. At the end of
//! input every open window is emitted (a partial count window with `complete: false`).
//!
//! Every accumulator is mergeable and independent of the order of its input, so results do
//! not depend on arrival order: out-of-order data within the watermark gives the same
//! results as the same data sorted. Open windows, panes, sessions and buffered
//! observations are part of the processor snapshot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

impl GroupBy {
    /// The `groupBy` parameter's value, as written: `name+source`, `name`, `source`, `all`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "name+source" => Self::NameAndSource,
            "name" => Self::Name,
            "source" => Self::Source,
            "all" => Self::All,
            _ => return None,
        })
    }

    /// The observation name and source that key `o`, as far as grouping uses them.
    #[must_use]
    pub fn parts(self, o: &Observation) -> (Option<Sym>, Option<Sym>) {
        match self {
            Self::NameAndSource => (Some(o.name), Some(o.source)),
            Self::Name => (Some(o.name), None),
            Self::Source => (None, Some(o.source)),
            Self::All => (None, None),
        }
    }
}

/// The value of attribute `field` of `o` as a key (text as it is, other JSON as written);
/// None without a field or when `o` lacks it.
#[must_use]
pub fn field_key(field: Option<&str>, o: &Observation) -> Option<Sym> {
    o.attribute(field?).map(|v| match v {
        Json::String(s) => Sym::new(s),
        other => Sym::new(&other.to_string()),
    })
}

/// The `keyField` parameter.
#[must_use]
pub fn key_field_parameter() -> ParameterDefinition {
    param(
        "keyField",
        DataType::String,
        "An attribute whose value further keys the results (e.g. productType); it is copied to the results.",
    )
}

/// The key of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Observation name, when grouping by it.
    pub name: Option<Sym>,
    /// Source, when grouping by it.
    pub source: Option<Sym>,
    /// The value of the `keyField` attribute, when keying by one.
    pub field: Option<Sym>,
}

/// The kinds of window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Windows of `size` starting every `slide` (tumbling when equal), made of panes of
    /// `pane` = gcd(size, slide).
    Time {
        /// Length (µs).
        size: i64,
        /// Advance (µs).
        slide: i64,
        /// Pane length (µs).
        pane: i64,
    },
    /// One window per observation: the `size` (µs) ending at it.
    PerObservation {
        /// Length (µs).
        size: i64,
    },
    /// Sessions ended by `gap` (µs) of inactivity.
    Session {
        /// Inactivity gap (µs).
        gap: i64,
    },
    /// `size` observations, a new window every `slide` observations.
    Count {
        /// Observations per window.
        size: usize,
        /// Observations between windows.
        slide: usize,
    },
}

/// Default window parameters of a processor kind (`moving-average` differs from `average`).
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// `windowType`.
    pub window_type: &'static str,
    /// `count`.
    pub count: u64,
    /// `countSlide` (None: `count`).
    pub count_slide: Option<u64>,
}

/// Tumbling hour windows.
pub const TUMBLING: Defaults = Defaults {
    window_type: "tumbling",
    count: 100,
    count_slide: None,
};

const WINDOW_TYPES: &[&str] = &["tumbling", "hopping", "sliding", "session", "count"];

/// The window parameters every windowed processor takes (tumbling by default).
pub fn parameters() -> Vec<ParameterDefinition> {
    parameters_with(&TUMBLING)
}

/// The window parameters with the given defaults.
pub fn parameters_with(d: &Defaults) -> Vec<ParameterDefinition> {
    let mut count_slide = param(
        "countSlide",
        DataType::Integer,
        "Count windows: observations between the starts of two windows (1 gives a moving statistic over the last `count`; default: `count`, windows do not overlap).",
    );
    if let Some(s) = d.count_slide {
        count_slide = count_slide.default_value(json!(s));
    }
    vec![
        param("windowType", DataType::String, "tumbling, hopping, sliding (with a slide: as hopping; without: one window per observation, the `window` ending at it), session or count.")
            .default_value(json!(d.window_type))
            .one_of(WINDOW_TYPES),
        param("window", DataType::Duration, "Length of a tumbling, hopping or sliding window, e.g. PT1H, 1h, 15m, 500ms.").default_value(json!("PT1H")),
        param("slide", DataType::Duration, "How far a hopping (or sliding) window advances, e.g. PT1S; must divide evenly into whole microseconds."),
        param("gap", DataType::Duration, "Session windows: the inactivity (event time) that ends a session.").default_value(json!("PT5M")),
        param("count", DataType::Integer, "Count windows: observations per window.").default_value(json!(d.count)),
        count_slide,
        param("allowedLateness", DataType::Duration, "How long after its end (in event time) a window still accepts observations; it is emitted once, after that.").default_value(json!("PT0S")),
        param("lateOutput", DataType::String, "Id of a DSM that receives late observations (with a `late` attribute saying why); without it they go to the dead letters."),
        param("time", DataType::String, "event: windows follow the observations' timestamps and the watermark; processing: the wall clock when observations arrive.")
            .default_value(json!("event"))
            .one_of(&["event", "processing"]),
        param("observationName", DataType::String, "Only observations with this name are used; others are left to other processors."),
        param("groupBy", DataType::String, "What results are keyed by: name+source (one per quantity and source), name (one per quantity across sources), source, or all.")
            .default_value(json!("name+source"))
            .one_of(&["name+source", "name", "source", "all"]),
        key_field_parameter(),
        param("closed", DataType::String, "Which end of a time window is inclusive: left, [start, end); or right, (start, end].")
            .default_value(json!("left"))
            .one_of(&["left", "right"]),
        param("outputName", DataType::String, "Name of the results (default: the observations' name, or the processor type when not grouping by name)."),
    ]
}

fn duration_param(ctx: &ProcessorContext, name: &str) -> Result<Option<i64>, ProcessorError> {
    ctx.parameters
        .get_str(name)
        .map(|text| {
            manifests::parameters::parse_duration(&text)
                .map(micros)
                .map_err(|e| ProcessorError::Config(format!("{name}: {e}")))
        })
        .transpose()
}

/// The longest window, slide or gap: a century (keeps window arithmetic far from overflow).
const LONGEST: i64 = 100 * 366 * 86_400 * 1_000_000;

/// The most windows one reading may be in (window / slide).
const MOST_WINDOWS_PER_READING: i64 = 10_000;

fn positive(name: &str, v: Option<i64>, default: i64) -> Result<i64, ProcessorError> {
    match v {
        None => Ok(default),
        Some(v) if v > 0 && v <= LONGEST => Ok(v),
        Some(v) if v > 0 => Err(ProcessorError::Config(format!(
            "{name} is longer than a century; use a shorter one"
        ))),
        Some(_) => Err(ProcessorError::Config(format!(
            "{name} must be longer than zero"
        ))),
    }
}

const fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Window settings read from a processor's parameters.
#[derive(Clone, Debug)]
pub struct WindowSettings {
    shape: Shape,
    closed_right: bool,
    lateness: i64,
    late_output: Option<Sym>,
    processing_time: bool,
    group: GroupBy,
    key_field: Option<String>,
    only: Option<Sym>,
    output_name: Sym,
    name_output: bool,
}

impl WindowSettings {
    /// Reads the settings; `kind` names results when they are not named after their input.
    ///
    /// # Errors
    ///
    /// An unreadable duration, a missing slide, or an unknown `windowType`, `groupBy`,
    /// `closed` or `time`, each with what to write instead.
    pub fn new(
        ctx: &ProcessorContext,
        kind: &str,
        defaults: &Defaults,
    ) -> Result<Self, ProcessorError> {
        let p = &ctx.parameters;
        let size = positive("window", duration_param(ctx, "window")?, 3_600_000_000)?;
        let slide = duration_param(ctx, "slide")?;
        let window_type = p
            .get_str("windowType")
            .unwrap_or_else(|| defaults.window_type.to_owned());
        let time_shape = |slide: i64| -> Result<Shape, ProcessorError> {
            if slide <= 0 || slide > size {
                return Err(ProcessorError::Config(format!(
                    "slide {slide} µs: it must be longer than zero and no longer than the window ({size} µs)"
                )));
            }
            if size / slide > MOST_WINDOWS_PER_READING {
                return Err(ProcessorError::Config(format!(
                    "slide {slide} µs: each reading would be in {} windows of {size} µs (at most {MOST_WINDOWS_PER_READING}); use a longer slide",
                    size / slide
                )));
            }
            Ok(Shape::Time {
                size,
                slide,
                pane: gcd(size, slide),
            })
        };
        let count = |name: &str, default: u64| -> Result<usize, ProcessorError> {
            match p.get_i64(name) {
                None if p.get(name).is_some() => Err(ProcessorError::Config(format!(
                    "{name} must be a whole number"
                ))),
                None => Ok(usize::try_from(default).unwrap_or(usize::MAX)),
                Some(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
                Some(n) => Err(ProcessorError::Config(format!("{name} {n}: use 1 or more"))),
            }
        };
        let shape = match window_type.as_str() {
            "tumbling" => time_shape(size)?,
            "hopping" => time_shape(slide.ok_or_else(|| {
                ProcessorError::Config(
                    "a hopping window needs `slide`: how far it advances, e.g. PT1S".into(),
                )
            })?)?,
            "sliding" => match slide {
                Some(s) => time_shape(s)?,
                None => Shape::PerObservation { size },
            },
            "session" => Shape::Session {
                gap: positive("gap", duration_param(ctx, "gap")?, 300_000_000)?,
            },
            "count" => {
                let size = count("count", defaults.count)?;
                Shape::Count {
                    size,
                    slide: count("countSlide", defaults.count_slide.unwrap_or(size as u64))?,
                }
            }
            other => {
                return Err(ProcessorError::Config(format!(
                    "windowType {other:?}: use one of {}",
                    WINDOW_TYPES.join(", ")
                )));
            }
        };
        let group_text = p
            .get_str("groupBy")
            .unwrap_or_else(|| "name+source".to_owned());
        let group = GroupBy::parse(&group_text).ok_or_else(|| {
            ProcessorError::Config(format!(
                "groupBy {group_text:?}: use name+source, name, source or all"
            ))
        })?;
        let closed_right = match p.get_str("closed").as_deref().unwrap_or("left") {
            "left" => false,
            "right" => true,
            other => {
                return Err(ProcessorError::Config(format!(
                    "closed {other:?}: use left or right"
                )));
            }
        };
        let processing_time = match p.get_str("time").as_deref().unwrap_or("event") {
            "event" => false,
            "processing" => true,
            other => {
                return Err(ProcessorError::Config(format!(
                    "time {other:?}: use event or processing"
                )));
            }
        };
        let lateness = duration_param(ctx, "allowedLateness")?.unwrap_or(0);
        if lateness < 0 {
            return Err(ProcessorError::Config(
                "allowedLateness must not be negative".into(),
            ));
        }
        let explicit = p.get_str("outputName");
        Ok(Self {
            shape,
            closed_right,
            lateness,
            late_output: p.get_str("lateOutput").map(|d| Sym::new(&d)),
            processing_time,
            group,
            key_field: p.get_str("keyField"),
            only: p.get_str("observationName").map(|n| Sym::new(&n)),
            output_name: Sym::new(explicit.as_deref().unwrap_or(kind)),
            name_output: explicit.is_none()
                && matches!(group, GroupBy::NameAndSource | GroupBy::Name),
        })
    }

    /// The kind of window.
    #[must_use]
    pub const fn shape(&self) -> Shape {
        self.shape
    }

    fn key(&self, o: &Observation) -> Key {
        let (name, source) = self.group.parts(o);
        let field = field_key(self.key_field.as_deref(), o);
        Key {
            name,
            source,
            field,
        }
    }
}

/// A statistic computed incrementally over one window. Adding must not depend on order
/// and two accumulators must merge into the one of their union: hopping windows merge
/// panes, sessions merge when an observation bridges them.
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

    /// Adds everything `other` holds.
    fn merge(&mut self, other: &Self);

    /// How many observations were added.
    fn count(&self) -> u64;

    /// The statistic (`null` when undefined, e.g. a sample deviation of one value); details
    /// such as a regression's intercept go into `attributes`.
    fn result(&self, options: &Self::Options, attributes: &mut Map<String, Json>) -> Value;
}

/// An accumulator with what a result needs besides the statistic.
#[derive(Clone, Debug)]
struct Slot<A> {
    acc: A,
    data_kind: Option<Sym>,
    ingested: u64,
}

impl<A: Accumulator> Slot<A> {
    fn new(options: &A::Options) -> Self {
        Self {
            acc: A::new(options),
            data_kind: None,
            ingested: 0,
        }
    }

    fn add(&mut self, o: &Observation) -> Result<(), &'static str> {
        self.acc.add(o)?;
        self.data_kind = self.data_kind.or(o.data_kind);
        self.ingested = self.ingested.max(o.ingested);
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.acc.merge(&other.acc);
        self.data_kind = self.data_kind.or(other.data_kind);
        self.ingested = self.ingested.max(other.ingested);
    }
}

/// Time windows: panes per key, and the window ends still to emit.
#[derive(Debug)]
struct Panes<A> {
    panes: FxHashMap<Key, BTreeMap<i64, Slot<A>>>,
    due: BTreeSet<(i64, Key)>,
}

/// One window per observation: the observations still needed, and the ones to emit.
#[derive(Debug, Default)]
struct Points {
    points: FxHashMap<Key, BTreeMap<(i64, u64), Observation>>,
    due: BTreeSet<(i64, u64, Key)>,
}

#[derive(Clone, Debug)]
struct Session<A> {
    last: i64,
    slot: Slot<A>,
}

/// Session windows: open sessions per key by start, their closing times, and the last
/// observation of the sessions already emitted.
#[derive(Debug)]
struct Sessions<A> {
    open: FxHashMap<Key, BTreeMap<i64, Session<A>>>,
    due: BTreeSet<(i64, i64, Key)>,
    emitted: FxHashMap<Key, i64>,
}

#[derive(Debug, Default)]
struct Counted {
    window: VecDeque<Observation>,
    seen: u64,
}

/// Count windows: observations waiting for the watermark (to be taken in event-time
/// order), and the last `count` of each key.
#[derive(Debug, Default)]
struct Counts {
    pending: BTreeMap<(i64, u64), (Key, Observation)>,
    keys: FxHashMap<Key, Counted>,
}

#[derive(Debug)]
enum State<A> {
    Time(Panes<A>),
    PerObservation(Points),
    Session(Sessions<A>),
    Count(Counts),
}

/// Open windows of one processor and the machinery to close them.
#[derive(Debug)]
pub struct Windows<A: Accumulator> {
    settings: WindowSettings,
    options: A::Options,
    state: State<A>,
    /// The input watermark (event time), or the wall clock in processing time.
    watermark: Timestamp,
    /// Arrival order, to keep ties of equal timestamps stable.
    seq: u64,
    sink: Sym,
    kind: &'static str,
}

/// A result about to be emitted.
struct Result_<A> {
    key: Key,
    slot: Slot<A>,
    timestamp: i64,
    start: i64,
    end: i64,
    complete: bool,
}

impl<A: Accumulator> Windows<A> {
    /// Windows for processor `kind` with the given parameters.
    ///
    /// # Errors
    ///
    /// Unusable window or accumulator parameters.
    pub fn new(
        ctx: &ProcessorContext,
        kind: &'static str,
        defaults: &Defaults,
    ) -> Result<Self, ProcessorError> {
        let settings = WindowSettings::new(ctx, kind, defaults)?;
        let state = match settings.shape {
            Shape::Time { .. } => State::Time(Panes {
                panes: FxHashMap::default(),
                due: BTreeSet::new(),
            }),
            Shape::PerObservation { .. } => State::PerObservation(Points::default()),
            Shape::Session { .. } => State::Session(Sessions {
                open: FxHashMap::default(),
                due: BTreeSet::new(),
                emitted: FxHashMap::default(),
            }),
            Shape::Count { .. } => State::Count(Counts::default()),
        };
        Ok(Self {
            settings,
            options: A::options(ctx)?,
            state,
            watermark: Timestamp::MIN,
            seq: 0,
            sink: ctx.sink,
            kind,
        })
    }

    /// Event time up to which windows are closed: the watermark less the allowed lateness.
    fn horizon(&self) -> i64 {
        self.watermark
            .as_micros()
            .saturating_sub(self.settings.lateness)
    }

    /// The watermark to pass downstream: the input's (the wall clock's in processing time)
    /// held back by the allowed lateness, so that no result is late downstream.
    #[must_use]
    pub fn output_watermark(&self, input: Timestamp) -> Timestamp {
        let w = if self.settings.processing_time {
            self.watermark
        } else {
            input
        };
        Timestamp(w.as_micros().saturating_sub(self.settings.lateness))
    }

    /// How often the wall clock must be looked at: only in processing time.
    #[must_use]
    pub fn timer(&self) -> Option<std::time::Duration> {
        self.settings
            .processing_time
            .then_some(std::time::Duration::from_millis(100))
    }

    fn late(&self, o: &Observation, why: String, out: &mut Output<'_>) {
        match self.settings.late_output {
            Some(dsm) => {
                let mut late = o.clone();
                let mut attributes = o.attributes.as_deref().cloned().unwrap_or_default();
                attributes.insert("late".into(), Json::String(why));
                late.attributes = Some(Arc::new(attributes));
                out.emit_to(dsm, late);
            }
            None => out.reject(o, why),
        }
    }

    /// Adds observations to their windows; late and unusable ones are rejected.
    pub fn add(&mut self, input: &[Observation], out: &mut Output<'_>) {
        let now = self.settings.processing_time.then(Timestamp::now);
        for o in input {
            if self.settings.only.is_some_and(|n| n != o.name) {
                continue;
            }
            match now {
                Some(now) => {
                    let mut o = o.clone();
                    o.timestamp = now;
                    self.add_one(&o, out);
                }
                None => self.add_one(o, out),
            }
        }
    }

    fn add_one(&mut self, o: &Observation, out: &mut Output<'_>) {
        let key = self.settings.key(o);
        let t = o.timestamp.as_micros();
        let horizon = self.horizon();
        self.seq += 1;
        let seq = self.seq;
        let late = match (&mut self.state, self.settings.shape) {
            (State::Time(p), Shape::Time { size, slide, pane }) => {
                let slot_t = t - i64::from(self.settings.closed_right);
                let horizon = horizon.saturating_sub(i64::from(self.settings.closed_right));
                let start = slot_t.div_euclid(pane) * pane;
                let last_end = (start + size).div_euclid(slide) * slide;
                if last_end - 1 <= horizon {
                    Some(format!(
                        "late: its last {} window, ending {}, was already emitted",
                        self.kind,
                        Timestamp(last_end + i64::from(self.settings.closed_right))
                    ))
                } else {
                    let panes = p.panes.entry(key).or_default();
                    let slot = panes.entry(start).or_insert_with(|| {
                        due_windows(&mut p.due, key, start, self.settings.shape, horizon);
                        Slot::new(&self.options)
                    });
                    if let Err(reason) = slot.add(o) {
                        out.reject(o, format!("{}: {reason}", self.kind));
                    }
                    None
                }
            }
            (State::PerObservation(p), _) => {
                if t <= horizon {
                    Some(format!(
                        "late: event time has passed {}, where its {} window ends",
                        o.timestamp, self.kind
                    ))
                } else if let Err(reason) = A::new(&self.options).add(o) {
                    out.reject(o, format!("{}: {reason}", self.kind));
                    None
                } else {
                    p.points.entry(key).or_default().insert((t, seq), o.clone());
                    p.due.insert((t, seq, key));
                    None
                }
            }
            (State::Session(s), Shape::Session { gap }) => {
                if t.saturating_add(gap - 1) <= horizon
                    || s.emitted
                        .get(&key)
                        .is_some_and(|&e| t < e.saturating_add(gap))
                {
                    Some(format!(
                        "late: the {} session it belongs to was already emitted",
                        self.kind
                    ))
                } else {
                    let mut merged = Session {
                        last: t,
                        slot: Slot::new(&self.options),
                    };
                    if let Err(reason) = merged.slot.add(o) {
                        out.reject(o, format!("{}: {reason}", self.kind));
                        return;
                    }
                    let mut start = t;
                    let open = s.open.entry(key).or_default();
                    let joined: Vec<i64> = open
                        .range(..=t.saturating_add(gap - 1))
                        .rev()
                        .take_while(|(_, session)| session.last.saturating_add(gap) > t)
                        .map(|(start, _)| *start)
                        .collect();
                    for old_start in joined {
                        if let Some(old) = open.remove(&old_start) {
                            s.due
                                .remove(&(old.last.saturating_add(gap), old_start, key));
                            merged.slot.merge(&old.slot);
                            merged.last = merged.last.max(old.last);
                            start = start.min(old_start);
                        }
                    }
                    s.due.insert((merged.last.saturating_add(gap), start, key));
                    open.insert(start, merged);
                    None
                }
            }
            (State::Count(c), _) => {
                if t <= horizon {
                    Some(format!(
                        "late: event time has passed {}; its {} window was already counted",
                        o.timestamp, self.kind
                    ))
                } else if let Err(reason) = A::new(&self.options).add(o) {
                    out.reject(o, format!("{}: {reason}", self.kind));
                    None
                } else {
                    c.pending.insert((t, seq), (key, o.clone()));
                    None
                }
            }
            _ => unreachable!("the state is made from the shape"),
        };
        if let Some(why) = late {
            self.late(o, why, out);
        }
    }

    /// Emits every window complete at `watermark` (ignored in processing time, which
    /// follows the wall clock instead).
    pub fn advance(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        if !self.settings.processing_time {
            self.close_until(watermark, out);
        }
    }

    /// The wall clock reached `now`: in processing time, closes what it completes.
    pub fn tick(&mut self, now: Timestamp, out: &mut Output<'_>) {
        if self.settings.processing_time {
            self.close_until(now, out);
        }
    }

    fn close_until(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        self.watermark = self.watermark.max(watermark);
        let horizon = self.horizon();
        self.close(horizon, out);
    }

    /// Emits every open window (end of input).
    pub fn flush(&mut self, out: &mut Output<'_>) {
        self.close(i64::MAX, out);
        if let State::Count(c) = &mut self.state {
            let mut partial: Vec<(Key, Counted)> = c
                .keys
                .drain()
                .filter(|(_, k)| {
                    let Shape::Count { size, slide } = self.settings.shape else {
                        return false;
                    };
                    let seen = usize::try_from(k.seen).unwrap_or(usize::MAX);
                    seen < size || (seen - size) % slide != 0
                })
                .collect();
            partial.sort_by_key(|(key, _)| *key);
            for (key, k) in partial {
                if let Some(r) = Self::count_result(&self.options, key, &k.window, false) {
                    self.emit(r, out);
                }
            }
        }
    }

    /// Closes everything complete at `horizon` (event time less the allowed lateness).
    fn close(&mut self, horizon: i64, out: &mut Output<'_>) {
        let mut results = Vec::new();
        match (&mut self.state, self.settings.shape) {
            (State::Time(p), Shape::Time { size, slide, .. }) => {
                let horizon = if horizon == i64::MAX {
                    i64::MAX
                } else {
                    horizon.saturating_sub(i64::from(self.settings.closed_right))
                };
                while let Some(&(end, key)) = p.due.first() {
                    if end - 1 > horizon {
                        break;
                    }
                    p.due.pop_first();
                    let Some(panes) = p.panes.get_mut(&key) else {
                        continue;
                    };
                    let mut merged: Option<Slot<A>> = None;
                    for (_, slot) in panes.range(end - size..end) {
                        match &mut merged {
                            Some(m) => m.merge(slot),
                            None => merged = Some(slot.clone()),
                        }
                    }
                    // Panes no later window of this key needs.
                    let kept = panes.split_off(&(end + slide - size));
                    *panes = kept;
                    if panes.is_empty() {
                        p.panes.remove(&key);
                    }
                    let shift = i64::from(self.settings.closed_right);
                    if let Some(slot) = merged {
                        results.push(Result_ {
                            key,
                            slot,
                            timestamp: end + shift,
                            start: end - size + shift,
                            end: end + shift,
                            complete: true,
                        });
                    }
                }
            }
            (State::PerObservation(p), Shape::PerObservation { size }) => {
                while let Some(&(t, _, key)) = p.due.first() {
                    if t > horizon {
                        break;
                    }
                    p.due.pop_first();
                    let Some(points) = p.points.get_mut(&key) else {
                        continue;
                    };
                    let mut slot = Slot::new(&self.options);
                    for o in points
                        .range((t - size + 1, 0)..=(t, u64::MAX))
                        .map(|(_, o)| o)
                    {
                        // Checked when it arrived.
                        let _ = slot.add(o);
                    }
                    let kept = points.split_off(&(t - size + 1, 0));
                    *points = kept;
                    if points.is_empty() {
                        p.points.remove(&key);
                    }
                    results.push(Result_ {
                        key,
                        slot,
                        timestamp: t,
                        start: t - size,
                        end: t,
                        complete: true,
                    });
                }
            }
            (State::Session(s), Shape::Session { .. }) => {
                while let Some(&(close, start, key)) = s.due.first() {
                    if close - 1 > horizon {
                        break;
                    }
                    s.due.pop_first();
                    let Some(open) = s.open.get_mut(&key) else {
                        continue;
                    };
                    let Some(session) = open.remove(&start) else {
                        continue;
                    };
                    if open.is_empty() {
                        s.open.remove(&key);
                    }
                    let emitted = s.emitted.entry(key).or_insert(session.last);
                    *emitted = (*emitted).max(session.last);
                    results.push(Result_ {
                        key,
                        slot: session.slot,
                        timestamp: close,
                        start,
                        end: close,
                        complete: true,
                    });
                }
            }
            (State::Count(c), Shape::Count { size, slide }) => {
                while let Some(entry) = c.pending.first_entry() {
                    if entry.key().0 > horizon {
                        break;
                    }
                    let (key, o) = entry.remove();
                    let k = c.keys.entry(key).or_default();
                    k.window.push_back(o);
                    if k.window.len() > size {
                        k.window.pop_front();
                    }
                    k.seen += 1;
                    let seen = usize::try_from(k.seen).unwrap_or(usize::MAX);
                    if seen >= size && (seen - size) % slide == 0 {
                        let window = k.window.clone();
                        results.extend(Self::count_result(&self.options, key, &window, true));
                    }
                }
            }
            _ => unreachable!("the state is made from the shape"),
        }
        for r in results {
            self.emit(r, out);
        }
    }

    fn count_result(
        options: &A::Options,
        key: Key,
        window: &VecDeque<Observation>,
        complete: bool,
    ) -> Option<Result_<A>> {
        let mut slot = Slot::new(options);
        for o in window {
            // Checked when it arrived.
            let _ = slot.add(o);
        }
        Some(Result_ {
            key,
            slot,
            timestamp: window.back()?.timestamp.as_micros(),
            start: window.front()?.timestamp.as_micros(),
            end: window.back()?.timestamp.as_micros(),
            complete,
        })
    }

    fn emit(&self, r: Result_<A>, out: &mut Output<'_>) {
        if r.slot.acc.count() == 0 {
            return;
        }
        let mut attributes = Map::new();
        attributes.insert(
            "windowStart".into(),
            Json::String(Timestamp(r.start).to_string()),
        );
        attributes.insert(
            "windowEnd".into(),
            Json::String(Timestamp(r.end).to_string()),
        );
        attributes.insert("count".into(), Json::from(r.slot.acc.count()));
        if !r.complete {
            attributes.insert("complete".into(), Json::Bool(false));
        }
        if let (Some(field), Some(value)) = (&self.settings.key_field, r.key.field) {
            attributes.insert(field.clone(), Json::String(value.text().to_string()));
        }
        let value = r.slot.acc.result(&self.options, &mut attributes);
        out.emit(Observation {
            source: r.key.source.unwrap_or(self.sink),
            name: match r.key.name {
                Some(n) if self.settings.name_output => n,
                _ => self.settings.output_name,
            },
            timestamp: Timestamp(r.timestamp),
            value,
            data_kind: r.slot.data_kind,
            ingested: r.slot.ingested,
            attributes: Some(Arc::new(attributes)),
        });
    }

    /// Everything open, for a checkpoint.
    ///
    /// # Errors
    ///
    /// An accumulator that cannot be written.
    pub fn snapshot(&self) -> Result<Json, ProcessorError> {
        let failed = |e: serde_json::Error| ProcessorError::Failed(e.to_string());
        let slot = |key: &Key, slot: &Slot<A>| -> Result<Json, ProcessorError> {
            Ok(json!({
                "key": SavedKey::from(key),
                "dataKind": slot.data_kind.map(|k| k.text().to_string()),
                "accumulator": serde_json::to_value(&slot.acc).map_err(failed)?,
            }))
        };
        let mut windows = Vec::new();
        let mut observations = Vec::new();
        let mut emitted = Vec::new();
        // One window per observation: those at or after this time are not emitted yet.
        let mut first_due = None;
        match &self.state {
            State::Time(p) => {
                for (key, panes) in &p.panes {
                    for (start, s) in panes {
                        let mut w = slot(key, s)?;
                        w["start"] = json!(start);
                        windows.push(w);
                    }
                }
            }
            State::PerObservation(p) => {
                for o in p.points.values().flat_map(BTreeMap::values) {
                    observations.push(SavedObservation::from(o));
                }
                first_due = p.due.first().map(|(t, _, _)| *t);
            }
            State::Session(s) => {
                for (key, open) in &s.open {
                    for (start, session) in open {
                        let mut w = slot(key, &session.slot)?;
                        w["start"] = json!(start);
                        w["last"] = json!(session.last);
                        windows.push(w);
                    }
                }
                for (key, last) in &s.emitted {
                    emitted.push(json!({"key": SavedKey::from(key), "last": last}));
                }
            }
            State::Count(c) => {
                for (_, o) in c.pending.values() {
                    observations.push(SavedObservation::from(o));
                }
                for (key, k) in &c.keys {
                    emitted.push(json!({
                        "key": SavedKey::from(key),
                        "seen": k.seen,
                        "window": k.window.iter().map(SavedObservation::from).collect::<Vec<_>>(),
                    }));
                }
            }
        }
        Ok(json!({
            "watermark": self.watermark.as_micros(),
            "windows": windows,
            "observations": observations,
            "keys": emitted,
            "firstDue": first_due,
        }))
    }

    /// Restores a snapshot taken by a processor with the same window parameters.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    pub fn restore(&mut self, state: &Json) -> Result<(), ProcessorError> {
        let bad =
            |what: &str| ProcessorError::Failed(format!("cannot restore window state: {what}"));
        let list = |name: &str| -> Result<&Vec<Json>, ProcessorError> {
            state
                .get(name)
                .and_then(Json::as_array)
                .ok_or_else(|| bad(&format!("no {name}")))
        };
        let int = |j: &Json, name: &str| -> Result<i64, ProcessorError> {
            j.get(name)
                .and_then(Json::as_i64)
                .ok_or_else(|| bad(&format!("no {name}")))
        };
        let key_of = |j: &Json| -> Result<Key, ProcessorError> {
            serde_json::from_value::<SavedKey>(j.get("key").cloned().unwrap_or(Json::Null))
                .map(Key::from)
                .map_err(|e| bad(&e.to_string()))
        };
        let slot_of = |j: &Json| -> Result<Slot<A>, ProcessorError> {
            Ok(Slot {
                acc: serde_json::from_value(j.get("accumulator").cloned().unwrap_or(Json::Null))
                    .map_err(|e| bad(&e.to_string()))?,
                data_kind: j.get("dataKind").and_then(Json::as_str).map(Sym::new),
                ingested: 0,
            })
        };
        let observation_of = |j: &Json| -> Result<Observation, ProcessorError> {
            serde_json::from_value::<SavedObservation>(j.clone())
                .map(Observation::from)
                .map_err(|e| bad(&e.to_string()))
        };
        self.watermark = Timestamp(int(state, "watermark")?);
        let settings = self.settings.clone();
        match (&mut self.state, settings.shape) {
            (State::Time(p), Shape::Time { .. }) => {
                p.panes.clear();
                p.due.clear();
                let horizon = self
                    .watermark
                    .as_micros()
                    .saturating_sub(settings.lateness)
                    .saturating_sub(i64::from(settings.closed_right));
                for w in list("windows")? {
                    let key = key_of(w)?;
                    let start = int(w, "start")?;
                    due_windows(&mut p.due, key, start, settings.shape, horizon);
                    p.panes.entry(key).or_default().insert(start, slot_of(w)?);
                }
            }
            (State::PerObservation(p), _) => {
                *p = Points::default();
                let first_due = state
                    .get("firstDue")
                    .and_then(Json::as_i64)
                    .unwrap_or(i64::MAX);
                for j in list("observations")? {
                    let o = observation_of(j)?;
                    let key = settings.key(&o);
                    self.seq += 1;
                    let t = o.timestamp.as_micros();
                    if t >= first_due {
                        p.due.insert((t, self.seq, key));
                    }
                    p.points.entry(key).or_default().insert((t, self.seq), o);
                }
            }
            (State::Session(s), Shape::Session { gap }) => {
                s.open.clear();
                s.due.clear();
                s.emitted.clear();
                for w in list("windows")? {
                    let key = key_of(w)?;
                    let start = int(w, "start")?;
                    let last = int(w, "last")?;
                    s.due.insert((last.saturating_add(gap), start, key));
                    s.open.entry(key).or_default().insert(
                        start,
                        Session {
                            last,
                            slot: slot_of(w)?,
                        },
                    );
                }
                for k in list("keys")? {
                    s.emitted.insert(key_of(k)?, int(k, "last")?);
                }
            }
            (State::Count(c), _) => {
                *c = Counts::default();
                for j in list("observations")? {
                    let o = observation_of(j)?;
                    self.seq += 1;
                    c.pending
                        .insert((o.timestamp.as_micros(), self.seq), (settings.key(&o), o));
                }
                for k in list("keys")? {
                    let window = k
                        .get("window")
                        .and_then(Json::as_array)
                        .ok_or_else(|| bad("no window"))?
                        .iter()
                        .map(observation_of)
                        .collect::<Result<_, _>>()?;
                    c.keys.insert(
                        key_of(k)?,
                        Counted {
                            window,
                            seen: k.get("seen").and_then(Json::as_u64).unwrap_or(0),
                        },
                    );
                }
            }
            _ => unreachable!("the state is made from the shape"),
        }
        Ok(())
    }
}

/// Files the ends of the time windows a new pane starting at `start` (slot time) belongs to,
/// except those already complete at `horizon`.
fn due_windows(due: &mut BTreeSet<(i64, Key)>, key: Key, start: i64, shape: Shape, horizon: i64) {
    let Shape::Time { size, slide, pane } = shape else {
        return;
    };
    let last_end = (start + size).div_euclid(slide) * slide;
    let mut end = (start + pane + slide - 1).div_euclid(slide) * slide;
    while end <= last_end {
        if end - 1 > horizon {
            due.insert((end, key));
        }
        end += slide;
    }
}

/// A key as written in a snapshot.
#[derive(Serialize, Deserialize)]
struct SavedKey {
    name: Option<String>,
    source: Option<String>,
    field: Option<String>,
}

impl From<&Key> for SavedKey {
    fn from(k: &Key) -> Self {
        let text = |s: Option<Sym>| s.map(|s| s.text().to_string());
        Self {
            name: text(k.name),
            source: text(k.source),
            field: text(k.field),
        }
    }
}

impl From<SavedKey> for Key {
    fn from(k: SavedKey) -> Self {
        let sym = |s: Option<String>| s.as_deref().map(Sym::new);
        Self {
            name: sym(k.name),
            source: sym(k.source),
            field: sym(k.field),
        }
    }
}

/// A value as written in a snapshot (tagged, so that text stays text).
#[derive(Serialize, Deserialize)]
enum SavedValue {
    #[serde(rename = "n")]
    Number(f64),
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "j")]
    Json(Json),
}

/// An observation as written in a snapshot.
#[derive(Serialize, Deserialize)]
struct SavedObservation {
    source: String,
    name: String,
    t: i64,
    value: SavedValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attributes: Option<Map<String, Json>>,
}

impl From<&Observation> for SavedObservation {
    fn from(o: &Observation) -> Self {
        Self {
            source: o.source.text().to_string(),
            name: o.name.text().to_string(),
            t: o.timestamp.as_micros(),
            value: match &o.value {
                Value::Number(n) => SavedValue::Number(*n),
                Value::Bool(b) => SavedValue::Bool(*b),
                Value::Text(s) => SavedValue::Text(s.to_string()),
                Value::Json(j) => SavedValue::Json((**j).clone()),
            },
            kind: o.data_kind.map(|k| k.text().to_string()),
            attributes: o.attributes.as_deref().cloned(),
        }
    }
}

impl From<SavedObservation> for Observation {
    fn from(s: SavedObservation) -> Self {
        Self {
            source: Sym::new(&s.source),
            name: Sym::new(&s.name),
            timestamp: Timestamp(s.t),
            value: match s.value {
                SavedValue::Number(n) => Value::Number(n),
                SavedValue::Bool(b) => Value::Bool(b),
                SavedValue::Text(t) => Value::Text(Arc::new(t)),
                SavedValue::Json(j) => Value::Json(Arc::new(j)),
            },
            data_kind: s.kind.as_deref().map(Sym::new),
            ingested: 0,
            attributes: s.attributes.map(Arc::new),
        }
    }
}

#[cfg(test)]
mod tests;
