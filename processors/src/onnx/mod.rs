//! `onnx`: runs an ONNX model on feature vectors assembled from observations.
//!
//! The model is read, checked and optimised once, when the processor is created, with
//! [tract](https://github.com/sonos/tract) (pure Rust, no ONNX Runtime library needed). It
//! must have one input, a vector of `features.len()` numbers: shape `[N]`, `[1, N]` or
//! `[batch, N]` (the processor feeds one vector at a time), any numeric element type
//! (values are cast from `f64`).
//!
//! # Assembling vectors
//!
//! Per group (per source by default), the processor keeps the latest value of each feature
//! name, by event time. When an observation of one of the features arrives and, with it,
//! every feature has a value and none is stale (older than `maxAge` relative to the newest
//! feature of the vector), the model runs on the vector and its results are emitted at
//! that observation's timestamp. `trigger` narrows which arrivals run the model: `any`
//! feature (the default), or only the named one — e.g. run once per `current` reading
//! while `temperature`, which comes more rarely, is reused.
//!
//! Observations of other names are ignored (left to other processors). A feature whose
//! value is not a number, or older than the value already held for it, goes to the dead
//! letters.
//!
//! # Parameters
//!
//! | name | type | default | meaning |
//! |---|---|---|---|
//! | `model` | string | required | path of the `.onnx` file; a relative path is resolved against the working directory of the `dda` process |
//! | `features` | array | required | the observation names making the vector, in the model's input order, e.g. `["temperature", "vibration", "current"]` |
//! | `outputName` | string | `score` | name of the result when the model gives one number; with several, `<outputName>_<i>` |
//! | `outputs` | array | — | names of the result columns, one per number the model gives |
//! | `groupBy` | string | `source` | `source`: one vector per source; `all`: one vector across sources (features may come from different sources) |
//! | `maxAge` | duration | none | a feature older than this relative to the newest one in the vector is stale, and the vector is not complete |
//! | `trigger` | string | `any` | `any`: run when any feature arrives once all are present; a feature name: run only when that feature arrives |
//!
//! A manifest gives `features` and `outputs` as lists (the type check wants a list); a
//! processor created without that check (tests, embedding code) also reads a
//! comma-separated string, `"temperature, vibration, current"`. ([`OnnxConfig`] is the
//! table as a type: its defaults are the ones above.)
//!
//! # Output
//!
//! The model's outputs, every output tensor flattened and concatenated in the model's output
//! order, are its result columns (a scikit-learn classifier converted with `skl2onnx`, for
//! instance, gives its label then one probability per class). Per run, one observation per
//! column: `source` = the group's source (the sink's id with `groupBy: all`), `name` = the
//! column's name, `timestamp` = the event time of the triggering observation, `value` = the
//! number, attributes `model` (the model file's name) and `features` (the vector, an object
//! `{feature: value}` in input order).
//!
//! # Build
//!
//! tract is behind the `processors` crate's cargo feature `onnx`, on by default. It adds
//! about 60 crates to a cold build (several minutes on two cores); building the crate with
//! `default-features = false` leaves this processor out.
//!
//! # Making a model
//!
//! scikit-learn: train the estimator, then convert it with `skl2onnx`:
//! `to_onnx(estimator, X_train[:1].astype(numpy.float32), target_opset=13)` gives a model
//! whose input is `[batch, n_features]` float32, as this processor expects. For a classifier,
//! pass `options={id(estimator): {"zipmap": False}}` so that the probabilities are a plain
//! tensor rather than a list of maps, which this processor cannot read.
//!
//! PyTorch: put the module in `eval()` mode and export it with
//! `torch.onnx.export(module, torch.zeros(1, n_features), "model.onnx",
//! input_names=["features"], output_names=["score"], dynamic_axes={"features": {0: "batch"}},
//! opset_version=13)`. Feature scaling belongs in the model (a first layer or the scikit-learn
//! pipeline), so that the processor feeds raw readings. `scripts/make-onnx-model.py` builds
//! the small test models by hand with `onnx.helper`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::time::micros;
use engine::{Observation, Sym, Value};
use manifests::config::{Config, ConfigError, Duration};
use manifests::model::Category;
use rustc_hash::FxHashMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json, json};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

/// The processor type.
pub const KIND: &str = "onnx";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Onnx>());

/// A list of names: a JSON list of strings, or (from code) comma-separated text. Written
/// back as a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || {
            serde::de::Error::custom(
                "write a list of names, e.g. [\"temperature\", \"current\"], or \"temperature,current\"",
            )
        };
        Ok(Self(match Json::deserialize(d)? {
            Json::String(s) => s.split(',').map(|n| n.trim().to_owned()).collect(),
            Json::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(|s| s.trim().to_owned()).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        }))
    }
}

impl JsonSchema for Names {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Names".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "array", "items": {"type": "string"}})
    }

    fn inline_schema() -> bool {
        true
    }
}

impl Names {
    /// Checks that the names are there, not empty and each given once.
    fn check(&self, name: &str) -> Result<(), ConfigError> {
        let list = &self.0;
        if list.is_empty() || list.iter().any(String::is_empty) {
            return Err(ConfigError::at(
                name,
                format!("param {name}: names must not be empty ({list:?})"),
            ));
        }
        if let Some(twice) = list
            .iter()
            .enumerate()
            .find_map(|(i, n)| list[..i].contains(n).then_some(n))
        {
            return Err(ConfigError::at(
                name,
                format!("param {name}: {twice:?} is listed twice; give each name once"),
            ));
        }
        Ok(())
    }
}

/// `groupBy`: what a feature vector is assembled from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vectors {
    /// One vector per source.
    Source,
    /// One vector across sources.
    All,
}

const fn per_source() -> Vectors {
    Vectors::Source
}

fn score() -> String {
    "score".to_owned()
}

fn any() -> String {
    ANY.to_owned()
}

/// `trigger`: run when any feature arrives.
const ANY: &str = "any";

/// The parameters of `onnx`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnnxConfig {
    /// Path of the .onnx model file; a relative path is resolved against the working
    /// directory (under `dda serve`, inside its data directory).
    #[schemars(extend("format" = "input-file"))]
    pub model: String,
    /// Observation names making the model's input vector, in input order, e.g.
    /// ["temperature", "current"].
    pub features: Names,
    /// Name of the result when the model gives one number; with several,
    /// <outputName>_<i>.
    #[serde(default = "score")]
    pub output_name: String,
    /// Names of the result columns, one per number the model gives (default: outputName,
    /// or outputName_0, outputName_1... when the model gives several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Names>,
    /// source: one feature vector per source; all: one vector across sources.
    #[serde(default = "per_source")]
    pub group_by: Vectors,
    /// A feature older than this relative to the newest feature of the vector is stale
    /// (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// any: run when any feature arrives once all are present; a feature name: run only
    /// when that feature arrives.
    #[serde(default = "any")]
    pub trigger: String,
}

impl OnnxConfig {
    /// What starts a run.
    ///
    /// # Errors
    ///
    /// A trigger that is neither `any` nor a feature.
    fn trigger(&self) -> Result<Trigger, ConfigError> {
        let features = &self.features.0;
        match self.trigger.as_str() {
            ANY => Ok(Trigger::Any),
            name => features
                .iter()
                .position(|f| f == name)
                .map(Trigger::Feature)
                .ok_or_else(|| {
                    ConfigError::at(
                        "trigger",
                        format!(
                            "param trigger: {name:?} is not one of the features ({}); use any or one of them",
                            features.join(", ")
                        ),
                    )
                }),
        }
    }
}

impl Config for OnnxConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.features.check("features")?;
        if let Some(outputs) = &self.outputs {
            outputs.check("outputs")?;
        }
        self.trigger().map(drop)
    }

    /// The small test model of this crate, by its absolute path (the example must load).
    fn example() -> Json {
        json!({
            "model": concat!(env!("CARGO_MANIFEST_DIR"), "/src/onnx/testdata/mlp.onnx"),
            "features": ["temperature", "vibration", "current"],
        })
    }
}

/// A loaded, optimised model ready to run one vector at a time.
struct Model {
    plan: TypedRunnableModel<TypedModel>,
    /// The shape fed: `[N]` or `[1, N]`.
    input_shape: Vec<usize>,
    input_type: DatumType,
    /// How many numbers one run gives (all outputs, flattened).
    width: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("input_shape", &self.input_shape)
            .field("input_type", &self.input_type)
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Reads `path`, checks its input against `features` values, optimises it, and runs it
    /// once on zeros to learn how many numbers it gives.
    fn load(path: &Path, features: usize) -> Result<Self, ProcessorError> {
        let shown = path.display();
        let bad = |what: String| {
            ProcessorError::config_at("model", format!("param model: {shown}: {what}"))
        };
        let bytes = std::fs::read(path).map_err(|e| {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".into());
            bad(format!(
                "cannot read it ({e}); give the path of an .onnx file (a relative path is resolved against the working directory, {cwd})"
            ))
        })?;
        let mut model = onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(|e| bad(format!("not a readable ONNX model: {e:#}")))?;
        let inputs = model.input_outlets().map_or(0, <[_]>::len);
        if inputs != 1 {
            return Err(bad(format!(
                "the model has {inputs} inputs; this processor feeds one vector of features"
            )));
        }
        let fact = model
            .input_fact(0)
            .map_err(|e| bad(format!("{e:#}")))?
            .clone();
        let dims: Vec<Option<usize>> = fact
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
            .collect();
        let input_shape = match dims.as_slice() {
            [width] | [_, width] if width.is_some_and(|w| w != features) => {
                return Err(bad(format!(
                    "the model's input takes {} values, but `features` names {features}; list one feature per model input",
                    width.unwrap_or_default()
                )));
            }
            [Some(1) | None, _] => vec![1, features],
            [_] => vec![features],
            [Some(b), _] => {
                return Err(bad(format!(
                    "the model's input has a fixed batch of {b}; this processor feeds one vector, [1, N] or [batch, N]"
                )));
            }
            [] if fact.shape.is_open() => vec![1, features],
            other => {
                return Err(bad(format!(
                    "the model's input has {} dimensions; this processor feeds a vector, [N], [1, N] or [batch, N]",
                    other.len()
                )));
            }
        };
        let input_type = fact.datum_type.concretize().unwrap_or(DatumType::F32);
        if !(input_type.is_float() || input_type.is_integer()) {
            return Err(bad(format!(
                "the model's input is of type {input_type:?}; this processor feeds numbers"
            )));
        }
        model
            .set_input_fact(0, InferenceFact::dt_shape(input_type, input_shape.clone()))
            .map_err(|e| bad(format!("{e:#}")))?;
        let plan = model
            .into_optimized()
            .and_then(TypedModel::into_runnable)
            .map_err(|e| bad(format!("cannot be prepared to run: {e:#}")))?;
        let mut model = Self {
            plan,
            input_shape,
            input_type,
            width: 0,
        };
        let probe = model
            .run(&vec![0.0; features])
            .map_err(|e| bad(format!("does not run on {features} zeros: {e}")))?;
        if probe.is_empty() {
            return Err(bad("the model gives no output".into()));
        }
        model.width = probe.len();
        Ok(model)
    }

    /// Runs the model on one vector; every output flattened, in order.
    fn run(&self, vector: &[f64]) -> Result<Vec<f64>, String> {
        let input = Tensor::from_shape(&self.input_shape, vector)
            .and_then(|t| {
                t.cast_to_dt(self.input_type)
                    .map(std::borrow::Cow::into_owned)
            })
            .map_err(|e| format!("{e:#}"))?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("{e:#}"))?;
        let mut values = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            let numbers = output
                .cast_to::<f64>()
                .map_err(|e| format!("output {i} is not numeric: {e:#}"))?;
            values.extend_from_slice(numbers.as_slice::<f64>().map_err(|e| format!("{e:#}"))?);
        }
        Ok(values)
    }
}

/// The latest value of one feature.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Latest {
    value: f64,
    /// Event time, µs since the epoch.
    at: i64,
}

/// What starts a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// Any feature's arrival.
    Any,
    /// The arrival of the feature at this index.
    Feature(usize),
}

/// The running processor.
#[derive(Debug)]
pub struct Onnx {
    model: Model,
    model_name: String,
    features: Vec<Sym>,
    columns: Vec<Sym>,
    per_source: bool,
    max_age: Option<i64>,
    trigger: Trigger,
    /// The latest value of each feature (in `features` order), per group: the source, or
    /// `None` across sources.
    latest: FxHashMap<Option<Sym>, Vec<Option<Latest>>>,
}

impl ProcessorKind for Onnx {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Analytics;
    const DESCRIPTION: &'static str = "Runs an ONNX model on feature vectors assembled from the latest value of each feature per source; emits the model's outputs.";
    type Config = OnnxConfig;

    /// The processor from its configuration: reads, checks and optimises the model.
    ///
    /// # Errors
    ///
    /// [`ProcessorError::Config`]: a missing, unreadable or unusable model file, a model
    /// whose input width differs from the number of features or whose output count differs
    /// from `outputs`.
    fn new(config: OnnxConfig, _ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let features = &config.features.0;
        let path = PathBuf::from(&config.model);
        let model = Model::load(&path, features.len())?;
        let output_name = &config.output_name;
        let columns: Vec<Sym> = match &config.outputs {
            Some(Names(list)) if list.len() != model.width => {
                return Err(ProcessorError::config_at(
                    "outputs",
                    format!(
                        "param outputs: names {} columns, but the model gives {} numbers per run; name each one",
                        list.len(),
                        model.width
                    ),
                ));
            }
            Some(Names(list)) => list.iter().map(|n| Sym::new(n)).collect(),
            None if model.width == 1 => vec![Sym::new(output_name)],
            None => (0..model.width)
                .map(|i| Sym::new(&format!("{output_name}_{i}")))
                .collect(),
        };
        Ok(Self {
            model,
            model_name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            features: features.iter().map(|n| Sym::new(n)).collect(),
            columns,
            per_source: config.group_by == Vectors::Source,
            max_age: config.max_age.map(|d| micros(d.get())),
            trigger: config.trigger()?,
            latest: FxHashMap::default(),
        })
    }
}

impl Onnx {
    /// The complete, fresh vector of `held`, if there is one.
    fn vector(&self, held: &[Option<Latest>]) -> Option<Vec<f64>> {
        let held: Vec<Latest> = held.iter().copied().collect::<Option<_>>()?;
        if let Some(max_age) = self.max_age {
            let newest = held.iter().map(|l| l.at).max()?;
            if held.iter().any(|l| newest - l.at > max_age) {
                return None;
            }
        }
        Some(held.iter().map(|l| l.value).collect())
    }

    fn handle(&mut self, o: &Observation, out: &mut Output<'_>) {
        let Some(index) = self.features.iter().position(|f| *f == o.name) else {
            return;
        };
        let Some(value) = o.value.as_f64() else {
            out.reject(
                o,
                format!(
                    "onnx: feature {} must be a number to go into the model's input",
                    o.name
                ),
            );
            return;
        };
        let at = o.timestamp.as_micros();
        let width = self.features.len();
        let held = self
            .latest
            .entry(self.per_source.then_some(o.source))
            .or_insert_with(|| vec![None; width]);
        if held[index].is_some_and(|l| l.at > at) {
            out.reject(
                o,
                format!(
                    "onnx: feature {} is older than the value already held for it; the latest value is kept",
                    o.name
                ),
            );
            return;
        }
        held[index] = Some(Latest { value, at });
        if matches!(self.trigger, Trigger::Feature(t) if t != index) {
            return;
        }
        let Some(vector) = self
            .latest
            .get(&self.per_source.then_some(o.source))
            .and_then(|held| self.vector(held))
        else {
            return;
        };
        match self.model.run(&vector) {
            Ok(results) => self.emit(o, &vector, &results, out),
            Err(e) => out.reject(o, format!("onnx: the model failed on this vector: {e}")),
        }
    }

    fn emit(&self, o: &Observation, vector: &[f64], results: &[f64], out: &mut Output<'_>) {
        let features: Map<String, Json> = self
            .features
            .iter()
            .zip(vector)
            .map(|(name, v)| (name.to_string(), Value::Number(*v).to_json()))
            .collect();
        let mut attributes = Map::new();
        attributes.insert("model".into(), Json::String(self.model_name.clone()));
        attributes.insert("features".into(), Json::Object(features));
        let attributes = Arc::new(attributes);
        let source = if self.per_source {
            o.source
        } else {
            out.sink()
        };
        for (name, value) in self.columns.iter().zip(results) {
            out.emit(Observation {
                source,
                name: *name,
                timestamp: o.timestamp,
                value: Value::Number(*value),
                data_kind: None,
                ingested: o.ingested,
                attributes: Some(Arc::clone(&attributes)),
                id: None,
            });
        }
    }
}

/// The state kept across a restart: the latest features of each group.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    features: Vec<String>,
    groups: Vec<GroupState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupState {
    /// The source, or `None` for the group across sources.
    source: Option<String>,
    latest: Vec<Option<Latest>>,
}

impl Processor for Onnx {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            self.handle(o, out);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Json, ProcessorError> {
        let mut groups: Vec<GroupState> = self
            .latest
            .iter()
            .map(|(source, latest)| GroupState {
                source: source.map(|s| s.to_string()),
                latest: latest.clone(),
            })
            .collect();
        groups.sort_by(|a, b| a.source.cmp(&b.source));
        serde_json::to_value(State {
            features: self.features.iter().map(ToString::to_string).collect(),
            groups,
        })
        .map_err(|e| {
            ProcessorError::internal(format!("onnx: cannot write the state: {e}")).with_source(e)
        })
    }

    fn restore(&mut self, state: Json) -> Result<(), ProcessorError> {
        if state.is_null() {
            return Ok(());
        }
        let state: State = serde_json::from_value(state).map_err(|e| {
            ProcessorError::internal(format!("onnx: unreadable state: {e}")).with_source(e)
        })?;
        let features: Vec<String> = self.features.iter().map(ToString::to_string).collect();
        if state.features != features {
            return Err(ProcessorError::internal(format!(
                "onnx: the state holds features {:?}, this processor takes {features:?}",
                state.features
            )));
        }
        self.latest.clear();
        for g in state.groups {
            if g.latest.len() != features.len() {
                return Err(ProcessorError::internal(
                    "onnx: the state's vectors do not match the features",
                ));
            }
            // A state written with groupBy: source restored with groupBy: all (or the
            // reverse) keeps its groups as written; they are simply never looked up.
            self.latest
                .insert(g.source.as_deref().map(Sym::new), g.latest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
