//! The processor trait, and the catalogue processors register themselves in.
//!
//! A processor turns batches of observations into observations for its sink. It is written
//! as plain synchronous code: the engine runs it in its own task, feeds it batches and
//! watermarks in order, and publishes what it emits. Hooks it does not need have default
//! no-op bodies, so a filter writes only [`Processor::process`].
//!
//! A processor kind is typed ([`ProcessorKind`]: its `processorType`, category, typed
//! [`ProcessorKind::Config`] and constructor) and registered erased
//! ([`ProcessorRegistration::of`], with [`inventory::submit!`]) in its own folder of the
//! `processors` crate; the engine finds it by `processorType`, reads its parameters into
//! the typed configuration once, and builds it.

use manifests::ResolvedParameters;
use manifests::config::{Config, ConfigError};
use manifests::model::{Category, ParameterDefinition};
use serde_json::Value as Json;

use crate::connector::Protocol;
use crate::error::{BoxError, ErrorKind};
use crate::external::ExternalConfig;
use crate::observation::Observation;
use crate::symbol::Sym;
use crate::time::Timestamp;

/// Why a processor could not be created or had to stop.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Its parameters are unusable (caught when the instance starts): a user error.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// It failed while running: the instance fails with this reason.
    #[error("{message}")]
    Failed {
        /// Whose problem it is.
        kind: ErrorKind,
        /// Whether starting the instance again can help.
        retryable: bool,
        /// What happened.
        message: String,
        /// The underlying error.
        source: Option<BoxError>,
    },
}

impl PartialEq for ProcessorError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Config(a), Self::Config(b)) => a == b,
            (
                Self::Failed {
                    kind: k1,
                    retryable: r1,
                    message: m1,
                    ..
                },
                Self::Failed {
                    kind: k2,
                    retryable: r2,
                    message: m2,
                    ..
                },
            ) => (k1, r1, m1) == (k2, r2, m2),
            _ => false,
        }
    }
}

impl ProcessorError {
    /// A configuration error of the whole configuration.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config(ConfigError::whole(message))
    }

    /// A configuration error of parameter `name`.
    pub fn config_at(name: &str, message: impl Into<String>) -> Self {
        Self::Config(ConfigError::at(name, message))
    }

    /// A failure that is the engine's or the processor's own defect (unreadable state, a
    /// panic).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Failed {
            kind: ErrorKind::Internal,
            retryable: false,
            message: message.into(),
            source: None,
        }
    }

    /// A failure of something outside the engine (an external program, a model file),
    /// which starting again may cure.
    pub fn external(message: impl Into<String>) -> Self {
        Self::Failed {
            kind: ErrorKind::External,
            retryable: true,
            message: message.into(),
            source: None,
        }
    }

    /// Adds the underlying error.
    #[must_use]
    pub fn with_source(self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        match self {
            Self::Failed {
                kind,
                retryable,
                message,
                ..
            } => Self::Failed {
                kind,
                retryable,
                message,
                source: Some(crate::error::boxed(e)),
            },
            other => other,
        }
    }

    /// Whose problem it is.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) => ErrorKind::User,
            Self::Failed { kind, .. } => *kind,
        }
    }

    /// Whether trying again can help.
    #[must_use]
    pub const fn retryable(&self) -> bool {
        match self {
            Self::Config(_) => false,
            Self::Failed { retryable, .. } => *retryable,
        }
    }
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
    /// Named events counted (see [`Output::count`]).
    counts: Vec<(&'static str, u64)>,
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
            counts: Vec::new(),
        }
    }

    /// Counts `n` occurrences of `event` (`unenriched`, say): the instance's status and
    /// the server's metrics report each processor's events beside its received and emitted
    /// counts.
    pub fn count(&mut self, event: &'static str, n: u64) {
        match self.counts.iter_mut().find(|(e, _)| *e == event) {
            Some((_, c)) => *c += n,
            None => self.counts.push((event, n)),
        }
    }

    /// Takes the events counted.
    pub fn take_counts(&mut self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut self.counts)
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

    /// What the processor waits for before its instance's sources are started (the first
    /// load of its [linked records](crate::linked)); `None`, the default: nothing. The
    /// engine awaits it once the processor is created, for at most
    /// [`READY_TIMEOUT`].
    fn ready(&self) -> Option<Ready> {
        None
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

/// What [`Processor::ready`] returns.
pub type Ready = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How long the engine waits for a processor to be [ready](Processor::ready) before it
/// starts the instance anyway (and says so in its log).
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// The DSMs it reads and every DSM upstream of them in its analytics manifest (see
    /// [`crate::Plan::upstream`]).
    pub upstream: Vec<Sym>,
    /// The DSM it writes.
    pub sink: Sym,
    /// The protocol of the sink's data interface, when the sink is registered.
    pub sink_protocol: Option<Protocol>,
    /// The external programs the engine allows (from its configuration, never from a
    /// manifest): what the `external` processor may run.
    pub external: ExternalConfig,
    /// The host's access to the records the CIR links to the sources' objects (none when
    /// the engine runs without a host that provides them).
    pub linked: Option<std::sync::Arc<dyn crate::linked::LinkedRecords>>,
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
            upstream: vec![Sym::new("test-source")],
            sink: Sym::new(sink),
            sink_protocol: Some(Protocol::parse(crate::connector::BUS)),
            external: ExternalConfig::default(),
            linked: None,
        }
    }
}

/// A processor kind, typed: what its folder implements beside [`Processor`].
pub trait ProcessorKind: Processor + Sized {
    /// The `processorType` (also the folder name, for a folder of one kind).
    const KIND: &'static str;
    /// Its category.
    const CATEGORY: Category;
    /// What it does, for `dda processors` and the API.
    const DESCRIPTION: &'static str;
    /// How many sources it needs at least.
    const MIN_SOURCES: usize = 1;
    /// The parameters it takes.
    type Config: Config;

    /// The processor, from its configuration and its place in the graph.
    ///
    /// # Errors
    ///
    /// [`ProcessorError::Config`] when the configuration does not suit its place (its sink
    /// is not a database, a model file cannot be read).
    fn new(config: Self::Config, ctx: &ProcessorContext) -> Result<Self, ProcessorError>;

    /// The processor from a context's parameters: the typed configuration read once, then
    /// [`ProcessorKind::new`].
    ///
    /// # Errors
    ///
    /// As [`ProcessorKind::new`], and unusable parameters.
    fn from_context(ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let config = manifests::config::from_parameters::<Self::Config>(&ctx.parameters)?;
        Self::new(config, ctx)
    }
}

/// Creates a processor.
pub type Factory = fn(&ProcessorContext) -> Result<Box<dyn Processor>, ProcessorError>;

/// A processor kind, erased, as registered by its folder.
pub struct ProcessorRegistration {
    /// The `processorType` (also the folder name).
    pub kind: &'static str,
    /// Its category.
    pub category: Category,
    /// What it does, for `dda processors` and the API.
    pub description: &'static str,
    /// The parameters it takes (generated from its configuration).
    pub parameters: fn() -> Vec<ParameterDefinition>,
    /// Parameter values of a working configuration (see [`Config::example`]).
    pub example: fn() -> Json,
    /// How many sources it needs at least.
    pub min_sources: usize,
    /// Checks parameter values as the processor reads them.
    pub check: fn(&Json) -> Result<(), ConfigError>,
    /// Parameter values as the processor reads them, written back (see
    /// [`manifests::config::canonical`]).
    pub canonical: fn(&Json) -> Result<Json, ConfigError>,
    /// Creates an instance.
    pub factory: Factory,
}

fn factory<K: ProcessorKind>(ctx: &ProcessorContext) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(K::from_context(ctx)?))
}

fn check<K: ProcessorKind>(values: &Json) -> Result<(), ConfigError> {
    manifests::config::parse::<K::Config>(values).map(drop)
}

impl ProcessorRegistration {
    /// The registration of kind `K`.
    #[must_use]
    pub const fn of<K: ProcessorKind>() -> Self {
        Self {
            kind: K::KIND,
            category: K::CATEGORY,
            description: K::DESCRIPTION,
            parameters: manifests::config::definitions::<K::Config>,
            example: <K::Config as Config>::example,
            min_sources: K::MIN_SOURCES,
            check: check::<K>,
            canonical: manifests::config::canonical::<K::Config>,
            factory: factory::<K>,
        }
    }
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
