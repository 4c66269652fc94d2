//! `vibration`: condition-monitoring features over blocks of vibration samples.
//!
//! Samples are collected per key (observation name and source, see `groupBy`) in arrival
//! order — a sensor sends its samples in order — into blocks of `blockSize` samples. An
//! observation carries one sample (a number) or several (a JSON list of numbers, e.g. a
//! whole block read from an accelerometer's buffer, or part of one); a list may fill several
//! blocks, or finish one and start the next. A new block starts every `hop` samples: with
//! `hop` = `blockSize` (the default) blocks do not overlap, with a smaller `hop`
//! consecutive blocks share `blockSize − hop` samples.
//!
//! When a block is full, its features are emitted at once.
//!
//! # Features
//!
//! Over the block's samples `x_0 … x_{N−1}` (N = `blockSize`), as read (`removeMean`
//! changes only the spectrum):
//!
//! | feature | value |
//! |---|---|
//! | `mean` | `Σ x / N` |
//! | `rms` | `√(Σ x² / N)` (the mean is not removed: it includes any offset) |
//! | `peak` | `max(abs(x))`, the largest absolute value |
//! | `peakToPeak` | `max x − min x` |
//! | `crestFactor` | `peak / rms` (`null` when every sample is 0) |
//! | `stddev` | population standard deviation, `√(Σ (x − mean)² / N)` |
//! | `kurtosis` | Pearson's kurtosis `m4 / m2²` with central moments `m_k = Σ (x − mean)^k / N`: **3 for a normal distribution** (not the excess kurtosis, which subtracts 3); a pure sine gives 1.5, impacts from bearing damage push it well above 3. `null` when the block is constant |
//! | `bandEnergy` | one result per band of `bands`, defined below |
//!
//! ## Band energy
//!
//! The block is prepared as `y_n = w_n · (x_n − mean)` (without `− mean` when `removeMean`
//! is false), with `w` the periodic Hann window `w_n = ½ − ½ cos(2πn/N)` (`window` = `hann`)
//! or `w_n = 1` (`window` = `none`), and transformed with an FFT:
//! `Y_k = Σ_n y_n e^{−2πikn/N}`. Bin `k` (0 ≤ k ≤ N/2) has frequency `f_k = k · sampleRate
//! / N`. The one-sided power of bin `k` is
//!
//! ```text
//! P_k = c_k · |Y_k|² / (N² · U),   c_k = 1 for k = 0 and k = N/2 (N even), 2 otherwise,
//!                                  U = Σ w_n² / N  (1 for no window, 3/8 for Hann)
//! ```
//!
//! and the energy of band `[lo, hi)` is `Σ P_k` over the bins with `lo ≤ f_k < hi`. It is a
//! mean square, in the samples' unit squared: by Parseval's theorem the energies of bands
//! covering 0 … sampleRate/2 add up to `Σ y² / N` (for `window` = `none` and `removeMean` =
//! false, to `rms²`), a sine of amplitude `A` inside a band contributes `A² / 2`, and the
//! square root of a band energy is the RMS of the signal in that band. The `U` factor
//! corrects for the energy the Hann window takes away, so a broadband signal's energy does
//! not depend on the window. Bands may overlap or leave gaps; each is summed on its own.
//!
//! # Parameters
//!
//! | parameter | type | default | meaning |
//! |---|---|---|---|
//! | `blockSize` | int | 1024 | samples per block, at least 2 (any size: the FFT takes any length) |
//! | `hop` | int | `blockSize` | samples from one block's start to the next, 1 … `blockSize` |
//! | `features` | string | all | comma-separated among `rms`, `peak`, `peakToPeak`, `crestFactor`, `kurtosis`, `mean`, `stddev`, `bandEnergy` (or `all`). Without it every feature is computed, `bandEnergy` only when `bands` is given |
//! | `sampleRate` | number | — | samples per second (Hz); required for `bandEnergy` |
//! | `bands` | string | — | frequency bands in Hz, `"0-100,100-500"`. `0 ≤ lo < hi`, `lo` below the Nyquist frequency `sampleRate / 2` |
//! | `window` | string | `hann` | window applied before the FFT: `hann` or `none` |
//! | `removeMean` | boolean | true | subtract the block's mean before the FFT, so the offset does not land in the lowest band |
//! | `observationName` | string | — | only observations with this name are used; others are ignored |
//! | `groupBy` | string | `name+source` | what blocks are collected by: `name+source`, `name` (across sources) or `source` (across names) |
//! | `outputName` | string | — | base name of the results (default: the observations' name, or `vibration` when grouping by source) |
//!
//! `features` and `bands` are declared as text, which is what a manifest (JSON or XML)
//! gives. A processor built in code may also be given them as JSON lists
//! (`["rms", "kurtosis"]`, `[[0, 100], [100, 500]]`). ([`VibrationConfig`] is the table
//! as a type: its defaults are the ones above.)
//!
//! # Output
//!
//! Per full block, one observation per feature, so that a downstream threshold can pick a
//! feature by name:
//!
//! - name `<base>.<feature>` (`acc.rms`, `acc.kurtosis`...), and `<base>.band.<lo>-<hi>Hz`
//!   (`acc.band.0-100Hz`) for each band energy, where `<base>` is the observations' name
//!   or `outputName`;
//! - value the number (`null` where undefined, see above);
//! - source the input's source (the sink when grouping by name, across sources);
//! - timestamp the time of the block's last sample;
//! - attributes `blockStart` and `blockEnd` (times of the first and last sample; the
//!   samples of a list all carry their observation's time), `samples` (N) and `feature`;
//!   band energies also `bandLow` and `bandHigh` (Hz).
//!
//! Features are emitted in the order of the table above, then the bands in their order.
//!
//! # Bad input and the end of input
//!
//! A value that is not a finite number, or a list holding anything else, goes to the dead
//! letters whole, with the reason. At the end of input a block that is not full is too
//! short for the features (and for a spectrum of the intended resolution): its samples that
//! are in no emitted block go to the dead letters as one observation (a list of them) with
//! the reason "incomplete block of k of N samples at end of input", so nothing is dropped
//! unseen. The partial blocks are kept in checkpoints.

use std::collections::VecDeque;
use std::sync::Arc;

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::{Observation, Sym, Timestamp, Value};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use rustc_hash::FxHashMap;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json, json};

use crate::window::{GroupBy, Key};

/// The processor type.
pub const KIND: &str = "vibration";

/// The default block size.
pub const DEFAULT_BLOCK_SIZE: usize = 1024;

/// The largest block size accepted: beyond it a block's samples (and a checkpoint of them)
/// would grow past what a processor should hold per key.
pub const MAX_BLOCK_SIZE: usize = 1 << 22;

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Vibration>());

/// One feature of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// Root mean square.
    Rms,
    /// Largest absolute value.
    Peak,
    /// Largest minus least value.
    PeakToPeak,
    /// Peak over RMS.
    CrestFactor,
    /// Pearson's kurtosis (3 for a normal distribution).
    Kurtosis,
    /// Arithmetic mean.
    Mean,
    /// Population standard deviation.
    StdDev,
    /// FFT band energies.
    BandEnergy,
}

impl Feature {
    /// Every feature, in output order.
    pub const ALL: [Self; 8] = [
        Self::Rms,
        Self::Peak,
        Self::PeakToPeak,
        Self::CrestFactor,
        Self::Kurtosis,
        Self::Mean,
        Self::StdDev,
        Self::BandEnergy,
    ];

    /// The feature's name, as in `features` and in output names.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rms => "rms",
            Self::Peak => "peak",
            Self::PeakToPeak => "peakToPeak",
            Self::CrestFactor => "crestFactor",
            Self::Kurtosis => "kurtosis",
            Self::Mean => "mean",
            Self::StdDev => "stddev",
            Self::BandEnergy => "bandEnergy",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == text)
    }
}

/// A list parameter's items: comma-separated text (empty items left out) or a JSON list.
fn items<E: serde::de::Error>(value: Json) -> Result<Vec<Json>, E> {
    match value {
        Json::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Json::String(t.to_owned()))
            .collect()),
        Json::Array(a) => Ok(a),
        other => Err(E::custom(format!(
            "expected comma-separated text or a list, found {other}"
        ))),
    }
}

/// `features`: the features to compute, in output order (`all` stands for every one).
/// Written back as comma-separated text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features(pub Vec<Feature>);

impl Serialize for Features {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self.0.iter().map(|f| f.name()).collect();
        s.serialize_str(&names.join(","))
    }
}

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut features = Vec::new();
        for item in items::<D::Error>(Json::deserialize(d)?)? {
            let text = item.as_str().unwrap_or_default();
            if text == "all" {
                features.extend(Feature::ALL);
                continue;
            }
            let feature = Feature::parse(text).ok_or_else(|| {
                let known: Vec<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown feature {item}; use a comma-separated list of {} (or all)",
                    known.join(", ")
                ))
            })?;
            features.push(feature);
        }
        features.sort_unstable();
        features.dedup();
        Ok(Self(features))
    }
}

/// `bands`: frequency bands `(lo, hi)` in Hz, as written (checked against the sample rate
/// by [`VibrationConfig::settings`]). Written back as text, `0-100,100-500`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bands(pub Vec<(f64, f64)>);

impl Serialize for Bands {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bands: Vec<String> = self.0.iter().map(|(lo, hi)| format!("{lo}-{hi}")).collect();
        s.serialize_str(&bands.join(","))
    }
}

impl<'de> Deserialize<'de> for Bands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        items::<D::Error>(Json::deserialize(d)?)?
            .iter()
            .map(|item| parse_band(item).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Text, as the schema of `features` and `bands` says.
macro_rules! text_schema {
    ($t:ty) => {
        impl JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($t).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string"})
            }

            fn inline_schema() -> bool {
                true
            }
        }
    };
}

text_schema!(Features);
text_schema!(Bands);

/// `window`: the window applied to a block before the FFT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpectralWindow {
    /// The periodic Hann window.
    Hann,
    /// No window (rectangular).
    #[serde(rename = "none")]
    Rectangular,
}

const fn default_block_size() -> i64 {
    // DEFAULT_BLOCK_SIZE (1024) fits.
    DEFAULT_BLOCK_SIZE as i64
}

const fn hann() -> SpectralWindow {
    SpectralWindow::Hann
}

const fn yes() -> bool {
    true
}

const fn by_name_and_source() -> GroupBy {
    GroupBy::NameAndSource
}

/// What blocks are collected by: the groupings of [`GroupBy`] but `all`.
fn block_groups(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["name+source", "name", "source"]})
}

/// The parameters of `vibration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VibrationConfig {
    /// Samples per block (at least 2).
    #[serde(default = "default_block_size")]
    pub block_size: i64,
    /// Samples from one block's start to the next, 1 to blockSize (default blockSize:
    /// blocks do not overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<i64>,
    /// Comma-separated features: rms, peak, peakToPeak, crestFactor, kurtosis (Pearson's, 3
    /// for a normal distribution), mean, stddev, bandEnergy, or all (default: all;
    /// bandEnergy when bands are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// Samples per second in Hz; required for band energies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Frequency bands in Hz for band energies, e.g. 0-100,100-500 (lo inclusive, hi
    /// exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
    /// Window applied to a block before the FFT: hann or none.
    #[serde(default = "hann")]
    pub window: SpectralWindow,
    /// Subtract the block's mean before the FFT.
    #[serde(default = "yes")]
    pub remove_mean: bool,
    /// Only observations with this name are used; others are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_name: Option<String>,
    /// What blocks are collected by: name+source (one per quantity and source), name
    /// (across sources) or source (across names).
    #[serde(default = "by_name_and_source")]
    #[schemars(schema_with = "block_groups")]
    pub group_by: GroupBy,
    /// Base name of the results, <base>.<feature> (default: the observations' name, or
    /// vibration when grouping by source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
}

impl Config for VibrationConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.settings().map(drop)
    }
}

/// A frequency band `[low, high)` in Hz, with the FFT bins it sums.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// Lower edge, inclusive.
    pub low: f64,
    /// Upper edge, exclusive.
    pub high: f64,
    /// The output name's suffix, `band.<lo>-<hi>Hz`.
    suffix: String,
    /// Bins `k` with `low ≤ f_k < high`, as a range of the one-sided spectrum.
    bins: std::ops::Range<usize>,
}

/// The FFT machinery, planned once for the block size and reused for every block.
struct Spectrum {
    fft: Arc<dyn Fft<f64>>,
    window: Vec<f64>,
    /// `N² · U`: what `|Y_k|²` is divided by.
    scale: f64,
    remove_mean: bool,
    buffer: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

impl Spectrum {
    fn new(n: usize, hann: bool, remove_mean: bool) -> Self {
        let window: Vec<f64> = (0..n)
            .map(|i| {
                if hann {
                    0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos()
                } else {
                    1.0
                }
            })
            .collect();
        let u = window.iter().map(|w| w * w).sum::<f64>() / n as f64;
        let fft = FftPlanner::new().plan_fft_forward(n);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        Self {
            fft,
            window,
            scale: (n as f64) * (n as f64) * u,
            remove_mean,
            buffer: vec![Complex::default(); n],
            scratch,
        }
    }

    /// The energy of each band, for the block `x` (of the planned length).
    fn band_energies(&mut self, x: &[f64], mean: f64, bands: &[Band], out: &mut Vec<f64>) {
        let offset = if self.remove_mean { mean } else { 0.0 };
        for ((slot, &v), &w) in self.buffer.iter_mut().zip(x).zip(&self.window) {
            *slot = Complex::new((v - offset) * w, 0.0);
        }
        self.fft
            .process_with_scratch(&mut self.buffer, &mut self.scratch);
        let n = self.buffer.len();
        out.clear();
        for band in bands {
            let energy: f64 = band
                .bins
                .clone()
                .map(|k| {
                    let c = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
                    c * self.buffer[k].norm_sqr()
                })
                .sum();
            out.push(energy / self.scale);
        }
    }
}

/// The samples collected for one key.
#[derive(Clone, Debug, Default, PartialEq)]
struct Block {
    values: VecDeque<f64>,
    times: VecDeque<Timestamp>,
    /// How many of the leading samples were already part of an emitted block (overlap).
    used: usize,
    /// Source and name of the newest observation, for the dead letters at the end.
    source: Option<Sym>,
    name: Option<Sym>,
}

/// The settings read from the parameters.
#[derive(Clone, Debug)]
struct Settings {
    size: usize,
    hop: usize,
    features: Vec<Feature>,
    bands: Vec<Band>,
    group: GroupBy,
    only: Option<Sym>,
    output_name: Sym,
    name_output: bool,
}

/// The running processor.
pub struct Vibration {
    settings: Settings,
    /// Present when band energies are computed.
    spectrum: Option<Spectrum>,
    blocks: FxHashMap<Key, Block>,
    /// Reused for the samples of the observation being read, of the block being computed
    /// and its band energies.
    incoming: Vec<f64>,
    work: Vec<f64>,
    energies: Vec<f64>,
    sink: Sym,
}

impl std::fmt::Debug for Vibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vibration")
            .field("settings", &self.settings)
            .field("keys", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// One `lo-hi` band from text or a `[lo, hi]` list.
fn parse_band(item: &Json) -> Result<(f64, f64), String> {
    let bad = || {
        format!(
            "{item} is not a band; write lo-hi in Hz (\"0-100,100-500\") or a list of [lo, hi] pairs"
        )
    };
    let number = |v: &Json| -> Option<f64> {
        match v {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let (lo, hi) = match item {
        Json::String(s) => {
            let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
            (
                lo.trim().parse::<f64>().map_err(|_| bad())?,
                hi.trim().parse::<f64>().map_err(|_| bad())?,
            )
        }
        Json::Array(pair) if pair.len() == 2 => (
            number(&pair[0]).ok_or_else(bad)?,
            number(&pair[1]).ok_or_else(bad)?,
        ),
        _ => return Err(bad()),
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The bands with the FFT bins they sum, for blocks of `size` samples at `rate` Hz.
fn bands_of(given: &[(f64, f64)], size: usize, rate: f64) -> Result<Vec<Band>, ConfigError> {
    let bad = |message: String| ConfigError::at("bands", message);
    let nyquist = rate / 2.0;
    let mut bands = Vec::new();
    for &(low, high) in given {
        if low < 0.0 {
            return Err(bad(format!(
                "bands: {low}-{high} Hz starts below 0 Hz; frequencies are not negative"
            )));
        }
        if low >= high {
            return Err(bad(format!(
                "bands: {low}-{high} Hz is empty; write the lower edge first (lo < hi)"
            )));
        }
        if low >= nyquist {
            return Err(bad(format!(
                "bands: {low}-{high} Hz starts at or above the Nyquist frequency {nyquist} Hz (sampleRate / 2), where the spectrum ends; lower it or raise sampleRate"
            )));
        }
        // The bins k with low ≤ f_k < high: f_k grows with k, so they are a range.
        let frequency = |k: usize| k as f64 * rate / size as f64;
        let last = size / 2;
        let start = (0..=last)
            .find(|&k| frequency(k) >= low)
            .unwrap_or(last + 1);
        let end = (start..=last)
            .find(|&k| frequency(k) >= high)
            .unwrap_or(last + 1);
        bands.push(Band {
            low,
            high,
            suffix: format!("band.{low}-{high}Hz"),
            bins: start..end,
        });
    }
    if bands.is_empty() {
        return Err(bad(
            "bands: no band given; write them as lo-hi in Hz, e.g. 0-100,100-500".into(),
        ));
    }
    Ok(bands)
}

impl VibrationConfig {
    /// The settings, checked.
    ///
    /// # Errors
    ///
    /// A block size below 2, a hop outside 1 … blockSize, bands without a sample rate, or a
    /// band that is empty or beyond the Nyquist frequency, `bandEnergy` without bands or
    /// bands without `bandEnergy`, an empty list of features, grouping by `all`.
    fn settings(&self) -> Result<Settings, ConfigError> {
        let size = usize::try_from(self.block_size)
            .ok()
            .filter(|n| (2..=MAX_BLOCK_SIZE).contains(n))
            .ok_or_else(|| {
                ConfigError::at(
                    "blockSize",
                    format!(
                        "blockSize {}: use a whole number of samples from 2 to {MAX_BLOCK_SIZE}",
                        self.block_size
                    ),
                )
            })?;
        let hop = match self.hop {
            None => size,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=size).contains(n))
                .ok_or_else(|| {
                    ConfigError::at(
                        "hop",
                        format!(
                            "hop {n}: use a whole number of samples from 1 to blockSize ({size})"
                        ),
                    )
                })?,
        };
        let features = match &self.features {
            None => Feature::ALL
                .into_iter()
                .filter(|f| *f != Feature::BandEnergy || self.bands.is_some())
                .collect(),
            Some(Features(list)) if list.is_empty() => {
                return Err(ConfigError::at(
                    "features",
                    "features: the list is empty; name at least one feature, or leave it out for all",
                ));
            }
            Some(Features(list)) => list.clone(),
        };
        let wants_bands = features.contains(&Feature::BandEnergy);
        let bands = match (&self.bands, wants_bands) {
            (Some(Bands(given)), true) => {
                let rate = match self.sample_rate {
                    None => {
                        return Err(ConfigError::at(
                            "sampleRate",
                            "sampleRate is required for band energies: give the samples per second in Hz",
                        ));
                    }
                    Some(r) if r.is_finite() && r > 0.0 => r,
                    Some(r) => {
                        return Err(ConfigError::at(
                            "sampleRate",
                            format!(
                                "sampleRate {r}: give the samples per second in Hz, a number above 0"
                            ),
                        ));
                    }
                };
                bands_of(given, size, rate)?
            }
            (None, true) => {
                return Err(ConfigError::at(
                    "features",
                    "features: bandEnergy needs bands, e.g. bands = 0-100,100-500 (Hz), and sampleRate",
                ));
            }
            (Some(_), false) => {
                return Err(ConfigError::at(
                    "bands",
                    "bands are given but features leaves out bandEnergy: add bandEnergy to features or remove bands",
                ));
            }
            (None, false) => Vec::new(),
        };
        if self.group_by == GroupBy::All {
            return Err(ConfigError::at(
                "groupBy",
                "groupBy \"all\": use name+source, name or source",
            ));
        }
        Ok(Settings {
            size,
            hop,
            features,
            bands,
            group: self.group_by,
            only: self.observation_name.as_deref().map(Sym::new),
            output_name: Sym::new(self.output_name.as_deref().unwrap_or(KIND)),
            name_output: self.output_name.is_none() && self.group_by != GroupBy::Source,
        })
    }
}

impl ProcessorKind for Vibration {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Vibration features per block of samples: RMS, peak, peak-to-peak, crest factor, kurtosis, mean, standard deviation and FFT band energies.";
    type Config = VibrationConfig;

    /// A processor from its configuration; the FFT is planned once, here.
    ///
    /// # Errors
    ///
    /// As [`VibrationConfig::settings`].
    fn new(config: VibrationConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let settings = config.settings()?;
        let size = settings.size;
        let spectrum = settings.features.contains(&Feature::BandEnergy).then(|| {
            Spectrum::new(
                size,
                config.window == SpectralWindow::Hann,
                config.remove_mean,
            )
        });
        Ok(Self {
            settings,
            spectrum,
            blocks: FxHashMap::default(),
            incoming: Vec::new(),
            work: Vec::with_capacity(size),
            energies: Vec::new(),
            sink: ctx.sink,
        })
    }
}

impl Vibration {
    fn key(&self, o: &Observation) -> Key {
        let (name, source) = match self.settings.group {
            GroupBy::Name => (Some(o.name), None),
            GroupBy::Source => (None, Some(o.source)),
            _ => (Some(o.name), Some(o.source)),
        };
        Key {
            name,
            source,
            field: None,
        }
    }

    /// Emits the features of every full block of `key`, moving on by `hop` each time.
    fn complete_blocks(&mut self, key: Key, trigger: &Observation, out: &mut Output<'_>) {
        let size = self.settings.size;
        let Some(block) = self.blocks.get_mut(&key) else {
            return;
        };
        while block.values.len() >= size {
            self.work.clear();
            self.work.extend(block.values.iter().take(size));
            let start = block.times[0];
            let end = block.times[size - 1];
            block.values.drain(..self.settings.hop);
            block.times.drain(..self.settings.hop);
            block.used = size - self.settings.hop;
            let base = match key.name {
                Some(n) if self.settings.name_output => n,
                _ => self.settings.output_name,
            };
            emit_features(
                &self.settings,
                self.spectrum.as_mut(),
                &self.work,
                &mut self.energies,
                Emitted {
                    source: key.source.unwrap_or(self.sink),
                    base,
                    start,
                    end,
                    ingested: trigger.ingested,
                },
                out,
            );
        }
    }

    /// Reads the samples of `o` into `into` (cleared first), or says why it has none usable.
    fn samples(o: &Observation, into: &mut Vec<f64>) -> Result<(), String> {
        into.clear();
        let kind = match &o.value {
            Value::Number(x) if x.is_finite() => {
                into.push(*x);
                return Ok(());
            }
            Value::Number(x) => {
                return Err(format!("{KIND}: the sample {x} is not a finite number"));
            }
            Value::Json(j) => match &**j {
                Json::Array(list) if list.is_empty() => {
                    return Err(format!("{KIND}: the list of samples is empty"));
                }
                Json::Array(list) => {
                    for (i, v) in list.iter().enumerate() {
                        let x = match v {
                            Json::Number(n) => n.as_f64(),
                            Json::String(s) => s.trim().parse::<f64>().ok(),
                            _ => None,
                        };
                        match x.filter(|x| x.is_finite()) {
                            Some(x) => into.push(x),
                            None => {
                                return Err(format!(
                                    "{KIND}: element {i} of the list of samples, {v}, is not a finite number"
                                ));
                            }
                        }
                    }
                    return Ok(());
                }
                Json::Object(_) => "an object",
                Json::String(_) => "text",
                Json::Bool(_) => "a boolean",
                Json::Number(_) => "a number beyond the range of a 64-bit float",
                Json::Null => "null",
            },
            Value::Bool(_) => "a boolean",
            Value::Text(_) => "text",
        };
        Err(format!(
            "{KIND}: a sample is a number or a list of numbers, and this value is {kind}"
        ))
    }
}

/// Where and when the features of one block go.
struct Emitted {
    source: Sym,
    base: Sym,
    start: Timestamp,
    end: Timestamp,
    ingested: u64,
}

fn number_or_null(x: f64) -> Value {
    if x.is_finite() {
        Value::Number(x)
    } else {
        Value::Json(Arc::new(Json::Null))
    }
}

/// Computes the features of block `x` and emits them.
fn emit_features(
    settings: &Settings,
    spectrum: Option<&mut Spectrum>,
    x: &[f64],
    energies: &mut Vec<f64>,
    to: Emitted,
    out: &mut Output<'_>,
) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let (mut min, mut max, mut squares, mut m2, mut m4) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0.0);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
        squares += v * v;
        let d = (v - mean) * (v - mean);
        m2 += d;
        m4 += d * d;
    }
    let (m2, m4) = (m2 / n, m4 / n);
    let rms = (squares / n).sqrt();
    let peak = max.abs().max(min.abs());
    let mut attributes = Map::new();
    attributes.insert("blockStart".into(), Json::String(to.start.to_string()));
    attributes.insert("blockEnd".into(), Json::String(to.end.to_string()));
    attributes.insert("samples".into(), Json::from(x.len()));
    let observation = |name: String, value: Value, attributes: Map<String, Json>| Observation {
        source: to.source,
        name: Sym::new(&name),
        timestamp: to.end,
        value,
        data_kind: None,
        ingested: to.ingested,
        attributes: Some(Arc::new(attributes)),
        id: None,
    };
    for &feature in &settings.features {
        let value = match feature {
            Feature::Rms => rms,
            Feature::Peak => peak,
            Feature::PeakToPeak => max - min,
            Feature::CrestFactor if rms > 0.0 => peak / rms,
            Feature::Kurtosis if m2 > 0.0 => m4 / (m2 * m2),
            Feature::CrestFactor | Feature::Kurtosis => f64::NAN,
            Feature::Mean => mean,
            Feature::StdDev => m2.sqrt(),
            Feature::BandEnergy => {
                let Some(spectrum) = spectrum else {
                    continue;
                };
                spectrum.band_energies(x, mean, &settings.bands, energies);
                for (band, &energy) in settings.bands.iter().zip(energies.iter()) {
                    let mut a = attributes.clone();
                    a.insert("feature".into(), json!(feature.name()));
                    a.insert("bandLow".into(), json!(band.low));
                    a.insert("bandHigh".into(), json!(band.high));
                    out.emit(observation(
                        format!("{}.{}", to.base, band.suffix),
                        Value::Number(energy),
                        a,
                    ));
                }
                // Band energies come last.
                break;
            }
        };
        let mut a = attributes.clone();
        a.insert("feature".into(), json!(feature.name()));
        out.emit(observation(
            format!("{}.{}", to.base, feature.name()),
            number_or_null(value),
            a,
        ));
    }
}

impl Processor for Vibration {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            if self.settings.only.is_some_and(|n| n != o.name) {
                continue;
            }
            if let Err(reason) = Self::samples(o, &mut self.incoming) {
                out.reject(o, reason);
                continue;
            }
            let key = self.key(o);
            let block = self.blocks.entry(key).or_default();
            block.source = Some(o.source);
            block.name = Some(o.name);
            block.values.extend(&self.incoming);
            block
                .times
                .extend(std::iter::repeat_n(o.timestamp, self.incoming.len()));
            self.complete_blocks(key, o, out);
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Output<'_>) -> Result<(), ProcessorError> {
        let size = self.settings.size;
        let mut keys: Vec<Key> = self.blocks.keys().copied().collect();
        keys.sort_by_key(|k| (k.name.map(Sym::text), k.source.map(Sym::text)));
        for key in keys {
            let Some(block) = self.blocks.remove(&key) else {
                continue;
            };
            let fresh = block.values.len() - block.used.min(block.values.len());
            if fresh == 0 {
                continue;
            }
            let held = block.values.len();
            let reason = if held == fresh {
                format!("incomplete block of {held} of {size} samples at end of input")
            } else {
                format!(
                    "incomplete block of {held} of {size} samples at end of input ({fresh} of them in no emitted block)"
                )
            };
            let unused: Vec<Json> = block
                .values
                .iter()
                .skip(block.used)
                .map(|&v| Value::Number(v).to_json())
                .collect();
            let first = block.times[block.used];
            let last = block.times[held - 1];
            let mut attributes = Map::new();
            attributes.insert("blockStart".into(), Json::String(first.to_string()));
            attributes.insert("blockEnd".into(), Json::String(last.to_string()));
            attributes.insert("samples".into(), Json::from(fresh));
            let o = Observation {
                source: block.source.or(key.source).unwrap_or(self.sink),
                name: block.name.or(key.name).unwrap_or(self.settings.output_name),
                timestamp: last,
                value: Value::Json(Arc::new(Json::Array(unused))),
                data_kind: None,
                ingested: 0,
                attributes: Some(Arc::new(attributes)),
                id: None,
            };
            out.reject(&o, reason);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        let text = |s: Option<Sym>| s.map(|s| s.text().to_string());
        let mut blocks: Vec<(Option<String>, Option<String>, Json)> = self
            .blocks
            .iter()
            .filter(|(_, b)| !b.values.is_empty())
            .map(|(key, b)| {
                (
                    text(key.name),
                    text(key.source),
                    json!({
                        "name": text(key.name),
                        "source": text(key.source),
                        "lastName": text(b.name),
                        "lastSource": text(b.source),
                        "used": b.used,
                        "values": b.values,
                        "times": b.times.iter().map(|t| t.as_micros()).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        blocks.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(json!({
            "blockSize": self.settings.size,
            "blocks": blocks.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(),
        }))
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        let bad =
            |what: &str| ProcessorError::internal(format!("cannot restore {KIND} state: {what}"));
        let sym = |v: Option<&Json>| v.and_then(Json::as_str).map(Sym::new);
        let mut blocks = FxHashMap::default();
        for b in state
            .get("blocks")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("no blocks"))?
        {
            let key = Key {
                name: sym(b.get("name")),
                source: sym(b.get("source")),
                field: None,
            };
            let values: VecDeque<f64> = b
                .get("values")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("a block has no values"))?
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| bad("a sample is not a number")))
                .collect::<Result<_, _>>()?;
            let times: VecDeque<Timestamp> = b
                .get("times")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("a block has no times"))?
                .iter()
                .map(|v| {
                    v.as_i64()
                        .map(Timestamp::from_micros)
                        .ok_or_else(|| bad("a time is not a whole number of microseconds"))
                })
                .collect::<Result<_, _>>()?;
            if values.len() != times.len() {
                return Err(bad("a block has not as many times as samples"));
            }
            let used = b
                .get("used")
                .and_then(Json::as_u64)
                .and_then(|u| usize::try_from(u).ok())
                .filter(|u| *u <= values.len())
                .ok_or_else(|| bad("a block's count of used samples is missing or too large"))?;
            blocks.insert(
                key,
                Block {
                    values,
                    times,
                    used,
                    source: sym(b.get("lastSource")),
                    name: sym(b.get("lastName")),
                },
            );
        }
        self.blocks = blocks;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
