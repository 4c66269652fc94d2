//! The processor trait, and the catalogue processors register themselves in.
//!
//! A processor turns batches of observations into observations for its sink. It is written
//! as plain synchronous code: the engine runs it in its own task, feeds it batches and
//! watermarks in order, and publishes what it emits. Hooks it does not need have default
//! no-op bodies, so a filter writes only [`Processor::process`].
//!
//! Processor kinds register with [`inventory::submit!`] in their own folder of the
//! `processors` crate; the engine finds them by `processorType`.

use manifests::model::{Category, DataType, ParameterDefinition};
use manifests::{Protocol, ResolvedParameters};
use serde_json::Value as Json;

use crate::external::ExternalConfig;
use crate::observation::Observation;
use crate::symbol::Sym;
use crate::time::Timestamp;

/// Why a processor could not be created or had to stop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// Its parameters are unusable (caught when the instance starts).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// It failed while running: the instance fails with this reason.
    #[error("{0}")]
    Failed(String),
}

/// An observation that could not be processed, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The observation.
    pub observation: Observation,
    /// Why.
    pub reason: String,
}

/// Where a processor puts what it produces.
#[derive(Debug)]
pub struct Output<'a> {
    emitted: &'a mut Vec<Observation>,
    rejected: &'a mut Vec<Rejected>,
    sink: Sym,
    /// Observations for side outputs (e.g. late data), by DSM; the task publishes them.
    side: Vec<(Sym, Observation)>,
}

impl<'a> Output<'a> {
    /// An output writing into the given buffers (the engine's; tests use their own).
    pub fn new(
        emitted: &'a mut Vec<Observation>,
        rejected: &'a mut Vec<Rejected>,
        sink: Sym,
    ) -> Self {
        Self {
            emitted,
            rejected,
            sink,
            side: Vec::new(),
        }
    }

    /// Emits an observation to the sink.
    pub fn emit(&mut self, observation: Observation) {
        self.emitted.push(observation);
    }

    /// Sends an observation to the dead letters, with the reason; the run goes on.
    pub fn reject(&mut self, observation: &Observation, reason: impl Into<String>) {
        self.rejected.push(Rejected {
            observation: observation.clone(),
            reason: reason.into(),
        });
    }

    /// The sink (DSM id) written.
    #[must_use]
    pub const fn sink(&self) -> Sym {
        self.sink
    }

    /// Emits an observation to a side output: a DSM named by one of the processor's
    /// [`SIDE_OUTPUT_PARAMETERS`], such as `lateOutput`. The engine publishes it there (to
    /// the dead letters, with the reason, when the DSM is not one the processor declared).
    pub fn emit_to(&mut self, dsm: Sym, observation: Observation) {
        self.side.push((dsm, observation));
    }

    /// Takes what was emitted to side outputs.
    pub fn take_side(&mut self) -> Vec<(Sym, Observation)> {
        std::mem::take(&mut self.side)
    }
}

pub use manifests::parameters::SIDE_OUTPUT_PARAMETERS;

/// A running processor.
pub trait Processor: Send + 'static {
    /// Handles a batch of observations from any of its sources.
    ///
    /// # Errors
    ///
    /// [`ProcessorError::Failed`] when the processor cannot go on; observations it merely
    /// cannot handle go to [`Output::reject`] instead.
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError>;

    /// Event time reached `watermark` on every input: nothing at or before it will come.
    ///
    /// # Errors
    ///
    /// As for [`Processor::process`].
    fn on_watermark(
        &mut self,
        _watermark: Timestamp,
        _out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The input has ended (the instance stops): emit whatever is still held.
    ///
    /// # Errors
    ///
    /// As for [`Processor::process`].
    fn flush(&mut self, _out: &mut Output<'_>) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The watermark to pass downstream once the input's reached `input`: a processor
    /// that emits results later than their event time (a window with allowed lateness)
    /// holds it back, so that its results are not late for whoever reads them.
    fn output_watermark(&self, input: Timestamp) -> Timestamp {
        input
    }

    /// How often the engine calls [`Processor::on_timer`] (None, the default: never).
    /// Processing-time windows use it to close on the wall clock when no data comes.
    fn timer(&self) -> Option<std::time::Duration> {
        None
    }

    /// The wall clock reached `now` (see [`Processor::timer`]).
    ///
    /// # Errors
    ///
    /// As for [`Processor::process`].
    fn on_timer(&mut self, _now: Timestamp, _out: &mut Output<'_>) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The processor's state, for a checkpoint.
    ///
    /// # Errors
    ///
    /// The state cannot be written.
    fn snapshot(&self) -> Result<Json, ProcessorError> {
        Ok(Json::Null)
    }

    /// Restores state written by [`Processor::snapshot`].
    ///
    /// # Errors
    ///
    /// The state is not this processor's.
    fn restore(&mut self, _state: Json) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// What a processor is created from.
#[derive(Clone, Debug)]
pub struct ProcessorContext {
    /// The APM id.
    pub id: String,
    /// The analytics instance.
    pub instance: String,
    /// Its parameters, checked against its definitions, defaults applied.
    pub parameters: ResolvedParameters,
    /// The DSMs it reads.
    pub sources: Vec<Sym>,
    /// The DSM it writes.
    pub sink: Sym,
    /// The protocol of the sink's data interface, when the sink is registered.
    pub sink_protocol: Option<Protocol>,
    /// The external programs the engine allows (from its configuration, never from a
    /// manifest): what the `external` processor may run.
    pub external: ExternalConfig,
}

impl ProcessorContext {
    /// A context with the given parameters (JSON object), for tests and benchmarks.
    ///
    /// # Panics
    ///
    /// If `parameters` is not an object.
    #[must_use]
    pub fn for_test(parameters: &Json, sink: &str) -> Self {
        let mut p = ResolvedParameters::default();
        for (k, v) in parameters.as_object().expect("parameters are an object") {
            p.insert(k.clone(), v.clone());
        }
        Self {
            id: "test".into(),
            instance: "test".into(),
            parameters: p,
            sources: vec![Sym::new("test-source")],
            sink: Sym::new(sink),
            sink_protocol: Some(Protocol::Bus),
            external: ExternalConfig::default(),
        }
    }

    /// The required parameter `name` as text.
    ///
    /// # Errors
    ///
    /// When absent.
    pub fn required_str(&self, name: &str) -> Result<String, ProcessorError> {
        self.parameters
            .get_str(name)
            .ok_or_else(|| ProcessorError::Config(format!("parameter `{name}` is required")))
    }
}

/// Creates a processor.
pub type Factory = fn(&ProcessorContext) -> Result<Box<dyn Processor>, ProcessorError>;

/// A processor kind, as registered by its folder.
pub struct ProcessorRegistration {
    /// The `processorType` (also the folder name).
    pub kind: &'static str,
    /// Its category.
    pub category: Category,
    /// What it does, for `dda processors` and the API.
    pub description: &'static str,
    /// The parameters it takes.
    pub parameters: fn() -> Vec<ParameterDefinition>,
    /// How many sources it needs at least.
    pub min_sources: usize,
    /// Creates an instance.
    pub factory: Factory,
}

inventory::collect!(ProcessorRegistration);

impl std::fmt::Debug for ProcessorRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorRegistration")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Every registered processor kind, sorted by name.
#[must_use]
pub fn registrations() -> Vec<&'static ProcessorRegistration> {
    let mut all: Vec<&ProcessorRegistration> = inventory::iter::<ProcessorRegistration>
        .into_iter()
        .collect();
    all.sort_by_key(|r| r.kind);
    all
}

/// The registered kind `processor_type`.
#[must_use]
pub fn registration(processor_type: &str) -> Option<&'static ProcessorRegistration> {
    inventory::iter::<ProcessorRegistration>
        .into_iter()
        .find(|r| r.kind == processor_type)
}

/// The processor catalogue, as the validator sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Catalogue;

impl manifests::Catalogue for Catalogue {
    fn processor(&self, processor_type: &str) -> Option<manifests::ProcessorSpec> {
        registration(processor_type).map(|r| manifests::ProcessorSpec {
            category: r.category,
            parameters: (r.parameters)(),
            min_sources: r.min_sources,
        })
    }

    fn processor_types(&self) -> Vec<String> {
        registrations()
            .into_iter()
            .map(|r| r.kind.to_owned())
            .collect()
    }
}

/// Builds a parameter definition: `param("window", DataType::Duration, "Window length.")`.
#[must_use]
pub fn param(name: &str, data_type: DataType, description: &str) -> ParameterDefinition {
    ParameterDefinition {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        data_type: Some(data_type.name().to_owned()),
        ..ParameterDefinition::default()
    }
}

/// Builder methods for [`param`].
pub trait ParameterDefinitionExt {
    /// Sets the default.
    #[must_use]
    fn default_value(self, v: Json) -> Self;
    /// Marks it required.
    #[must_use]
    fn required(self) -> Self;
    /// Restricts it to these values.
    #[must_use]
    fn one_of(self, values: &[&str]) -> Self;
}

impl ParameterDefinitionExt for ParameterDefinition {
    fn default_value(mut self, v: Json) -> Self {
        self.default_value = Some(v);
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn one_of(mut self, values: &[&str]) -> Self {
        self.allowed_values = Some(manifests::model::AllowedValues {
            value: values
                .iter()
                .map(|v| Json::String((*v).to_owned()))
                .collect(),
        });
        self
    }
}
