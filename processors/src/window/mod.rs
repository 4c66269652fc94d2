//! Windows shared by every windowed processor: what a window is, when it closes, what is
//! late, and how its state is saved.
//!
//! Every windowed processor (`average`, `median`, `trend`...) is one [`Accumulator`]
//! behind [`Windows`], so they all take the same parameters, [`WindowConfig`]:
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
//! | `observationName` | only observations with this name are used | — |
//! | `groupBy`, `keyField` | what results are keyed by: name and/or source, and an attribute | `name+source` |
//! | `closed` | `left`, `[start, end)`, or `right`, `(start, end]` (metering's "interval ending") | `left` |
//! | `outputName` | name of the results | the observations' name, or the processor type |
//!
//! (`moving-average` differs in its defaults: `count` windows of 10 sliding by 1, see
//! [`WindowDefaults`].)
//!
//! The window types, one file each behind one trait (`OpenWindows`):
//! - **tumbling**: back-to-back windows of length `window`, aligned to the epoch;
//! - **hopping** (`sliding` with a `slide`): windows of length `window` starting every
//!   `slide`, so an observation is in `window / slide` of them. They are computed from panes
//!   of `gcd(window, slide)`: an observation updates one pane, a window merges its panes
//!   (`time.rs`, tumbling windows too).
//! - **sliding** without a `slide` (eKuiper's sliding window): one window per observation,
//!   the `window` ending at it, `(t − window, t]`: a moving statistic over time
//!   (`sliding.rs`).
//! - **session**: observations of a key less than `gap` apart form one session, which ends
//!   `gap` after its last observation (Flink's session window; `session.rs`);
//! - **count**: `count` observations of a key in event-time order, a new window every
//!   `countSlide` observations (`countSlide: 1` is a moving statistic over the last `count`;
//!   `count.rs`).
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
//! input every open window is emitted; those event time had not passed (and partial count
//! windows) are marked `complete: false`. Every result has an id derived from the instance,
//! processor, key and window, the same in every run (docs/runtime.md, "Result ids").
//!
//! Every accumulator is mergeable and independent of the order of its input, so results do
//! not depend on arrival order: out-of-order data within the watermark gives the same
//! results as the same data sorted. Open windows, panes, sessions and buffered
//! observations are part of the processor snapshot.

mod count;
mod packed;
mod session;
mod sliding;
mod time;

use std::marker::PhantomData;
use std::sync::Arc;

use engine::processor::{Output, ProcessorError};
use engine::time::micros;
use engine::{Observation, Sym, Timestamp, Value};
use manifests::config::{Config, ConfigError, Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value as Json, json};

/// What results (and the state of detection processors) are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GroupBy {
    /// One per observation name and source: each quantity of each source (default).
    #[serde(rename = "name+source")]
    NameAndSource,
    /// One per name: each quantity across sources.
    #[serde(rename = "name")]
    Name,
    /// One per source: each source across quantities.
    #[serde(rename = "source")]
    Source,
    /// One for everything.
    #[serde(rename = "all")]
    All,
}

impl GroupBy {
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

const fn by_name_and_source() -> GroupBy {
    GroupBy::NameAndSource
}

/// What a processor reads and what its results and state are keyed by: the parameters the
/// windowed and the detection kinds share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    /// Only observations with this name are used; others are left to other processors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_name: Option<String>,
    /// What results and state are kept per: name+source (each quantity of each source),
    /// name (each quantity across sources), source (each source across quantities), or all.
    #[serde(default = "by_name_and_source")]
    pub group_by: GroupBy,
    /// An attribute whose value further keys the results (e.g. productType); it is copied
    /// to the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            observation_name: None,
            group_by: by_name_and_source(),
            key_field: None,
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

/// `windowType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// Back-to-back windows of length `window`.
    Tumbling,
    /// Windows of length `window` starting every `slide`.
    Hopping,
    /// With a `slide`, as hopping; without, one window per observation, the `window`
    /// ending at it.
    Sliding,
    /// Observations less than `gap` apart.
    Session,
    /// `count` observations, a new window every `countSlide`.
    Count,
}

/// `time`: which clock windows follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeDomain {
    /// The observations' timestamps and the watermark.
    Event,
    /// The wall clock when observations arrive.
    Processing,
}

/// `closed`: which end of a time window is inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Closed {
    /// `[start, end)`.
    Left,
    /// `(start, end]` (metering's "interval ending").
    Right,
}

/// The window defaults of a windowed kind: `moving-average`'s differ from the others'.
pub trait WindowDefaults: 'static {
    /// `windowType`.
    fn window_type() -> WindowType;
    /// `count`.
    fn count() -> i64;
    /// `countSlide` (None: as `count`, windows do not overlap).
    fn count_slide() -> Option<i64>;
}

/// Tumbling hour windows (count windows of 100 that do not overlap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tumbling;

impl WindowDefaults for Tumbling {
    fn window_type() -> WindowType {
        WindowType::Tumbling
    }

    fn count() -> i64 {
        100
    }

    fn count_slide() -> Option<i64> {
        None
    }
}

const fn an_hour() -> Duration {
    Duration::from_secs(3600)
}

const fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

const fn no_time() -> Duration {
    Duration::from_secs(0)
}

const fn event_time() -> TimeDomain {
    TimeDomain::Event
}

const fn closed_left() -> Closed {
    Closed::Left
}

/// The window parameters every windowed kind takes, with its kind's defaults `D`.
///
/// It flattens [`KeyConfig`], so it does not deny unknown fields itself:
/// [`manifests::config::parse`] refuses unknown parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", bound = "")]
#[schemars(bound = "D: WindowDefaults")]
pub struct WindowConfig<D: WindowDefaults = Tumbling> {
    /// tumbling, hopping, sliding (with a slide: as hopping; without: one window per
    /// observation, the `window` ending at it), session or count.
    #[serde(default = "D::window_type")]
    pub window_type: WindowType,
    /// Length of a tumbling, hopping or sliding window, e.g. PT1H, 1h, 15m, 500ms.
    #[serde(default = "an_hour")]
    pub window: Duration,
    /// How far a hopping (or sliding) window advances, e.g. PT1S; must divide evenly into
    /// whole microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<Duration>,
    /// Session windows: the inactivity (event time) that ends a session.
    #[serde(default = "five_minutes")]
    pub gap: Duration,
    /// Count windows: observations per window.
    #[serde(default = "D::count")]
    pub count: i64,
    /// Count windows: observations between the starts of two windows (1 gives a moving
    /// statistic over the last `count`; default: `count`, windows do not overlap).
    #[serde(default = "D::count_slide", skip_serializing_if = "Option::is_none")]
    pub count_slide: Option<i64>,
    /// How long after its end (in event time) a window still accepts observations; it is
    /// emitted once, after that.
    #[serde(default = "no_time")]
    pub allowed_lateness: Duration,
    /// Id of a DSM that receives late observations (with a `late` attribute saying why);
    /// without it they go to the dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_output: Option<String>,
    /// event: windows follow the observations' timestamps and the watermark; processing:
    /// the wall clock when observations arrive.
    #[serde(default = "event_time")]
    pub time: TimeDomain,
    /// What is read and how results are keyed.
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Which end of a time window is inclusive: left, [start, end); or right, (start, end].
    #[serde(default = "closed_left")]
    pub closed: Closed,
    /// Name of the results (default: the observations' name, or the processor type when
    /// not grouping by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    defaults: PhantomData<fn() -> D>,
}

impl<D: WindowDefaults> Default for WindowConfig<D> {
    fn default() -> Self {
        Self {
            window_type: D::window_type(),
            window: an_hour(),
            slide: None,
            gap: five_minutes(),
            count: D::count(),
            count_slide: D::count_slide(),
            allowed_lateness: no_time(),
            late_output: None,
            time: event_time(),
            key: KeyConfig::default(),
            closed: closed_left(),
            output_name: None,
            defaults: PhantomData,
        }
    }
}

impl<D: WindowDefaults> Config for WindowConfig<D> {
    fn check(&self) -> Result<(), ConfigError> {
        self.shape().map(drop)
    }
}

/// A kind's configuration that holds window parameters.
pub trait Windowed {
    /// The window settings, for processor `kind`.
    ///
    /// # Errors
    ///
    /// As [`WindowConfig::shape`].
    fn window_settings(&self, kind: &'static str) -> Result<WindowSettings, ConfigError>;
}

impl<D: WindowDefaults> Windowed for WindowConfig<D> {
    fn window_settings(&self, kind: &'static str) -> Result<WindowSettings, ConfigError> {
        WindowSettings::new(self, kind)
    }
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

/// The longest window, slide or gap: a century (keeps window arithmetic far from overflow).
const LONGEST: i64 = 100 * 366 * 86_400 * 1_000_000;

/// The most windows one reading may be in (window / slide).
const MOST_WINDOWS_PER_READING: i64 = 10_000;

/// `d` in µs, if it is positive and at most a century.
fn positive(name: &str, d: Duration) -> Result<i64, ConfigError> {
    match micros(d.get()) {
        v if v > 0 && v <= LONGEST => Ok(v),
        v if v > 0 => Err(ConfigError::at(
            name,
            format!("{name} is longer than a century; use a shorter one"),
        )),
        _ => Err(ConfigError::at(
            name,
            format!("{name} must be longer than zero"),
        )),
    }
}

/// `n` as a count of observations, if it is 1 or more.
fn at_least_one(name: &str, n: i64) -> Result<usize, ConfigError> {
    if n >= 1 {
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    } else {
        Err(ConfigError::at(name, format!("{name} {n}: use 1 or more")))
    }
}

const fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<D: WindowDefaults> WindowConfig<D> {
    /// The kind of window these parameters describe.
    ///
    /// # Errors
    ///
    /// A window, slide or gap that is not positive or longer than a century, a hopping
    /// window without a slide, a slide longer than the window or so short that a reading
    /// would be in too many windows, a count below 1; each with what to write instead.
    pub fn shape(&self) -> Result<Shape, ConfigError> {
        let size = positive("window", self.window)?;
        let time_shape = |slide: i64| -> Result<Shape, ConfigError> {
            if slide <= 0 || slide > size {
                return Err(ConfigError::at(
                    "slide",
                    format!(
                        "slide {slide} µs: it must be longer than zero and no longer than the window ({size} µs)"
                    ),
                ));
            }
            if size / slide > MOST_WINDOWS_PER_READING {
                return Err(ConfigError::at(
                    "slide",
                    format!(
                        "slide {slide} µs: each reading would be in {} windows of {size} µs (at most {MOST_WINDOWS_PER_READING}); use a longer slide",
                        size / slide
                    ),
                ));
            }
            Ok(Shape::Time {
                size,
                slide,
                pane: gcd(size, slide),
            })
        };
        let slide = self.slide.map(|s| micros(s.get()));
        Ok(match self.window_type {
            WindowType::Tumbling => time_shape(size)?,
            WindowType::Hopping => time_shape(slide.ok_or_else(|| {
                ConfigError::at(
                    "slide",
                    "a hopping window needs `slide`: how far it advances, e.g. PT1S",
                )
            })?)?,
            WindowType::Sliding => match slide {
                Some(s) => time_shape(s)?,
                None => Shape::PerObservation { size },
            },
            WindowType::Session => Shape::Session {
                gap: positive("gap", self.gap)?,
            },
            WindowType::Count => {
                let size = at_least_one("count", self.count)?;
                let slide = match self.count_slide {
                    Some(n) => at_least_one("countSlide", n)?,
                    None => size,
                };
                Shape::Count { size, slide }
            }
        })
    }
}

/// Window settings read from a processor's configuration.
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
    /// The settings of `config`; `kind` names results when they are not named after their
    /// input.
    ///
    /// # Errors
    ///
    /// As [`WindowConfig::shape`].
    pub fn new<D: WindowDefaults>(
        config: &WindowConfig<D>,
        kind: &'static str,
    ) -> Result<Self, ConfigError> {
        let group = config.key.group_by;
        Ok(Self {
            shape: config.shape()?,
            closed_right: config.closed == Closed::Right,
            lateness: micros(config.allowed_lateness.get()),
            late_output: config.late_output.as_deref().map(Sym::new),
            processing_time: config.time == TimeDomain::Processing,
            group,
            key_field: config.key.key_field.clone(),
            only: config.key.observation_name.as_deref().map(Sym::new),
            output_name: Sym::new(config.output_name.as_deref().unwrap_or(kind)),
            name_output: config.output_name.is_none()
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
    /// Options read once from the processor's configuration (e.g. a sample or population
    /// estimator).
    type Options: Clone + Send + std::fmt::Debug + 'static;

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

/// A closed window about to be emitted.
struct Closing<A> {
    key: Key,
    slot: Slot<A>,
    timestamp: i64,
    start: i64,
    end: i64,
    complete: bool,
}

/// What every window type reads: the settings, the accumulator's options and the
/// processor's kind (for messages).
#[derive(Debug)]
struct Shared<A: Accumulator> {
    settings: WindowSettings,
    options: A::Options,
    kind: &'static str,
}

/// One window type: its open windows, and how observations enter and windows close. Each
/// type is a file of this module; [`Driver`] handles what they share (the watermark,
/// lateness, keys, emission, the snapshot's frame).
trait OpenWindows<A: Accumulator>: Send + std::fmt::Debug + 'static {
    /// Adds `o` (of `key`, at event time `t` µs, the `seq`-th to arrive) to its windows,
    /// with windows closed up to event time `horizon`; says why it is late, if it is. A
    /// value the accumulator cannot use is rejected here.
    #[allow(
        clippy::too_many_arguments,
        reason = "the hot path: plain values, no struct to build per observation"
    )]
    fn add(
        &mut self,
        cx: &Shared<A>,
        key: Key,
        o: &Observation,
        t: i64,
        seq: u64,
        horizon: i64,
        out: &mut Output<'_>,
    ) -> Option<String>;

    /// Moves every window complete at `horizon` (event time less the allowed lateness;
    /// `i64::MAX`: every window) to `closing`.
    fn close(&mut self, cx: &Shared<A>, horizon: i64, closing: &mut Vec<Closing<A>>);

    /// At the end of input, after every window was closed: what is left that is not a
    /// complete window (partial count windows).
    fn flush(&mut self, _cx: &Shared<A>, _closing: &mut Vec<Closing<A>>) {}

    /// Writes the open windows into a snapshot.
    ///
    /// # Errors
    ///
    /// An accumulator that cannot be written.
    fn snapshot(&self, saved: &mut Saved) -> Result<(), ProcessorError>;

    /// Replaces the open windows with those of a snapshot taken at `watermark`; `seq`
    /// numbers restored observations.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    fn restore(
        &mut self,
        cx: &Shared<A>,
        state: &Json,
        watermark: Timestamp,
        seq: &mut u64,
    ) -> Result<(), ProcessorError>;
}

/// A snapshot being written: what the window types fill in.
#[derive(Default)]
struct Saved {
    /// Open windows (panes, sessions) with their accumulators.
    windows: Vec<Json>,
    /// Buffered observations.
    observations: Vec<SavedObservation>,
    /// Per-key records.
    keys: Vec<Json>,
    /// One window per observation: those at or after this time are not emitted yet.
    first_due: Option<i64>,
    /// Open windows in the compact form ([`packed`]), instead of `windows`.
    packed: Option<String>,
}

#[cfg(test)]
impl Saved {
    /// A key and its slot, as `windows` held them before windows were packed.
    fn slot<A: Accumulator>(key: &Key, slot: &Slot<A>) -> Result<Json, ProcessorError> {
        Ok(json!({
            "key": SavedKey::from(key),
            "dataKind": slot.data_kind.map(|k| k.text().to_string()),
            "accumulator": serde_json::to_value(&slot.acc)
                .map_err(|e| ProcessorError::internal(e.to_string()).with_source(e))?,
        }))
    }
}

/// Reading a snapshot back.
fn bad(what: &str) -> ProcessorError {
    ProcessorError::internal(format!("cannot restore window state: {what}"))
}

fn list<'a>(state: &'a Json, name: &str) -> Result<&'a Vec<Json>, ProcessorError> {
    state
        .get(name)
        .and_then(Json::as_array)
        .ok_or_else(|| bad(&format!("no {name}")))
}

fn int(j: &Json, name: &str) -> Result<i64, ProcessorError> {
    j.get(name)
        .and_then(Json::as_i64)
        .ok_or_else(|| bad(&format!("no {name}")))
}

fn key_of(j: &Json) -> Result<Key, ProcessorError> {
    SavedKey::deserialize(j.get("key").unwrap_or(&Json::Null))
        .map(Key::from)
        .map_err(|e| bad(&e.to_string()).with_source(e))
}

fn slot_of<A: Accumulator>(j: &Json) -> Result<Slot<A>, ProcessorError> {
    Ok(Slot {
        acc: A::deserialize(j.get("accumulator").unwrap_or(&Json::Null))
            .map_err(|e| bad(&e.to_string()).with_source(e))?,
        data_kind: j.get("dataKind").and_then(Json::as_str).map(Sym::new),
        ingested: 0,
    })
}

fn observation_of(j: &Json) -> Result<Observation, ProcessorError> {
    SavedObservation::deserialize(j)
        .map(Observation::from)
        .map_err(|e| bad(&e.to_string()).with_source(e))
}

/// The windows of one processor of window type `W`: what the types share, with the type's
/// code statically dispatched, so that nothing is looked up per observation.
#[derive(Debug)]
struct Driver<A: Accumulator, W> {
    shared: Shared<A>,
    open: W,
    /// The input watermark (event time), or the wall clock in processing time.
    watermark: Timestamp,
    /// Arrival order, to keep ties of equal timestamps stable.
    seq: u64,
    sink: Sym,
    /// `<instance>/<processor>`: with the key and the window, what names a result.
    origin: Arc<str>,
}

/// The namespace of result ids (a UUID v5 of the origin, key and window).
const RESULTS: uuid::Uuid = uuid::Uuid::from_u128(0x6464_612d_7265_7375_6c74_7300_0000_0001);

impl<A: Accumulator, W: OpenWindows<A>> Driver<A, W> {
    /// The id of a window's result: the same for the same instance, processor, key and
    /// window, every run — so that a sink given it twice (a replay after a crash, a partial
    /// window followed by the final one) keeps one. A time or per-observation window is
    /// named by its start and end; a session or count window, whose end moves while it is
    /// open, by its start.
    fn result_id(&self, r: &Closing<A>) -> engine::observation::ObservationId {
        let end = match self.shared.settings.shape {
            Shape::Time { .. } | Shape::PerObservation { .. } => r.end,
            Shape::Session { .. } | Shape::Count { .. } => i64::MIN,
        };
        let part = |s: Option<Sym>| s.map(|s| s.text().to_string()).unwrap_or_default();
        let name = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{end}",
            self.origin,
            part(r.key.source),
            part(r.key.name),
            part(r.key.field),
            r.start
        );
        Arc::new(uuid::Uuid::new_v5(&RESULTS, name.as_bytes()).to_string())
    }

    /// Event time up to which windows are closed: the watermark less the allowed lateness.
    fn horizon(&self) -> i64 {
        self.watermark
            .as_micros()
            .saturating_sub(self.shared.settings.lateness)
    }

    fn late(&self, o: &Observation, why: String, out: &mut Output<'_>) {
        match self.shared.settings.late_output {
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

    fn add_one(&mut self, o: &Observation, out: &mut Output<'_>) {
        let key = self.shared.settings.key(o);
        let t = o.timestamp.as_micros();
        let horizon = self.horizon();
        self.seq += 1;
        if let Some(why) = self
            .open
            .add(&self.shared, key, o, t, self.seq, horizon, out)
        {
            self.late(o, why, out);
        }
    }

    fn close_until(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        self.watermark = self.watermark.max(watermark);
        let horizon = self.horizon();
        self.close(horizon, out);
    }

    /// Closes everything complete at `horizon` (event time less the allowed lateness).
    fn close(&mut self, horizon: i64, out: &mut Output<'_>) {
        let mut closing = Vec::new();
        self.open.close(&self.shared, horizon, &mut closing);
        for c in closing {
            self.emit(c, out);
        }
    }

    fn emit(&self, r: Closing<A>, out: &mut Output<'_>) {
        if r.slot.acc.count() == 0 {
            return;
        }
        let settings = &self.shared.settings;
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
        if let (Some(field), Some(value)) = (&settings.key_field, r.key.field) {
            attributes.insert(field.clone(), Json::String(value.text().to_string()));
        }
        let value = r.slot.acc.result(&self.shared.options, &mut attributes);
        out.emit(Observation {
            source: r.key.source.unwrap_or(self.sink),
            name: match r.key.name {
                Some(n) if settings.name_output => n,
                _ => settings.output_name,
            },
            timestamp: Timestamp(r.timestamp),
            value,
            data_kind: r.slot.data_kind,
            ingested: r.slot.ingested,
            attributes: Some(Arc::new(attributes)),
            id: Some(self.result_id(&r)),
        });
    }
}

/// What [`Windows`] asks of the driver of its window type.
trait Drive: Send + std::fmt::Debug {
    fn add(&mut self, input: &[Observation], out: &mut Output<'_>);
    fn advance(&mut self, watermark: Timestamp, out: &mut Output<'_>);
    fn tick(&mut self, now: Timestamp, out: &mut Output<'_>);
    fn flush(&mut self, out: &mut Output<'_>);
    fn output_watermark(&self, input: Timestamp) -> Timestamp;
    fn timer(&self) -> Option<std::time::Duration>;
    fn snapshot(&self) -> Result<Json, ProcessorError>;
    fn restore(&mut self, state: &Json) -> Result<(), ProcessorError>;
}

impl<A: Accumulator, W: OpenWindows<A>> Drive for Driver<A, W> {
    fn add(&mut self, input: &[Observation], out: &mut Output<'_>) {
        let now = self.shared.settings.processing_time.then(Timestamp::now);
        for o in input {
            if self.shared.settings.only.is_some_and(|n| n != o.name) {
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

    fn advance(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        if !self.shared.settings.processing_time {
            self.close_until(watermark, out);
        }
    }

    fn tick(&mut self, now: Timestamp, out: &mut Output<'_>) {
        if self.shared.settings.processing_time {
            self.close_until(now, out);
        }
    }

    /// The end of input: windows the watermark completes are final; whatever else is open
    /// is emitted too, marked `complete: false`, never as if final. (A bounded source that
    /// is exhausted declares the end of event time, so its last windows are complete.)
    fn flush(&mut self, out: &mut Output<'_>) {
        let horizon = self.horizon();
        self.close(horizon, out);
        let mut closing = Vec::new();
        self.open.close(&self.shared, i64::MAX, &mut closing);
        self.open.flush(&self.shared, &mut closing);
        for mut c in closing {
            c.complete = false;
            self.emit(c, out);
        }
    }

    fn output_watermark(&self, input: Timestamp) -> Timestamp {
        let w = if self.shared.settings.processing_time {
            self.watermark
        } else {
            input
        };
        Timestamp(w.as_micros().saturating_sub(self.shared.settings.lateness))
    }

    fn timer(&self) -> Option<std::time::Duration> {
        self.shared
            .settings
            .processing_time
            .then_some(std::time::Duration::from_millis(100))
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        let mut saved = Saved::default();
        self.open.snapshot(&mut saved)?;
        let mut state = json!({
            "watermark": self.watermark.as_micros(),
            "windows": saved.windows,
            "observations": saved.observations,
            "keys": saved.keys,
            "firstDue": saved.first_due,
        });
        if let Some(p) = saved.packed {
            state["packed"] = Json::String(p);
            state["packedFormat"] = json!(packed::format());
        }
        Ok(state)
    }

    fn restore(&mut self, state: &Json) -> Result<(), ProcessorError> {
        self.watermark = Timestamp(int(state, "watermark")?);
        self.open
            .restore(&self.shared, state, self.watermark, &mut self.seq)
    }
}

/// Open windows of one processor and the machinery to close them.
///
/// The driver of the configured window type, erased once: one dynamic call per batch, none
/// per observation.
#[derive(Debug)]
pub struct Windows(Box<dyn Drive>);

impl Windows {
    /// Windows with `settings` for processor `kind`, whose accumulators take `options`;
    /// results of keys that span sources are the `sink`'s.
    #[must_use]
    pub fn new<A: Accumulator>(
        settings: WindowSettings,
        options: A::Options,
        kind: &'static str,
        sink: Sym,
        origin: &str,
    ) -> Self {
        fn driver<A: Accumulator, W: OpenWindows<A>>(
            shared: Shared<A>,
            open: W,
            sink: Sym,
            origin: &str,
        ) -> Box<dyn Drive> {
            Box::new(Driver {
                shared,
                open,
                watermark: Timestamp::MIN,
                seq: 0,
                sink,
                origin: Arc::from(origin),
            })
        }
        let shape = settings.shape;
        let shared = Shared {
            settings,
            options,
            kind,
        };
        Self(match shape {
            Shape::Time { size, slide, pane } => driver(
                shared,
                time::Panes::<A>::new(size, slide, pane),
                sink,
                origin,
            ),
            Shape::PerObservation { size } => {
                driver(shared, sliding::Points::new(size), sink, origin)
            }
            Shape::Session { gap } => {
                driver(shared, session::Sessions::<A>::new(gap), sink, origin)
            }
            Shape::Count { size, slide } => {
                driver(shared, count::Counts::new(size, slide), sink, origin)
            }
        })
    }

    /// Adds observations to their windows; late and unusable ones are rejected.
    pub fn add(&mut self, input: &[Observation], out: &mut Output<'_>) {
        self.0.add(input, out);
    }

    /// Emits every window complete at `watermark` (ignored in processing time, which
    /// follows the wall clock instead).
    pub fn advance(&mut self, watermark: Timestamp, out: &mut Output<'_>) {
        self.0.advance(watermark, out);
    }

    /// The wall clock reached `now`: in processing time, closes what it completes.
    pub fn tick(&mut self, now: Timestamp, out: &mut Output<'_>) {
        self.0.tick(now, out);
    }

    /// Emits every open window (end of input).
    pub fn flush(&mut self, out: &mut Output<'_>) {
        self.0.flush(out);
    }

    /// The watermark to pass downstream: the input's (the wall clock's in processing time)
    /// held back by the allowed lateness, so that no result is late downstream.
    #[must_use]
    pub fn output_watermark(&self, input: Timestamp) -> Timestamp {
        self.0.output_watermark(input)
    }

    /// How often the wall clock must be looked at: only in processing time.
    #[must_use]
    pub fn timer(&self) -> Option<std::time::Duration> {
        self.0.timer()
    }

    /// Everything open, for a checkpoint.
    ///
    /// # Errors
    ///
    /// An accumulator that cannot be written.
    pub fn snapshot(&self) -> Result<Json, ProcessorError> {
        self.0.snapshot()
    }

    /// Restores a snapshot taken by a processor with the same window parameters.
    ///
    /// # Errors
    ///
    /// A snapshot of another shape.
    pub fn restore(&mut self, state: &Json) -> Result<(), ProcessorError> {
        self.0.restore(state)
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
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
            id: o.id.as_deref().cloned(),
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
            id: s.id.map(Arc::new),
        }
    }
}

#[cfg(test)]
mod tests;
