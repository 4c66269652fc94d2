//! The connector API: how a protocol brings an external system's data onto the bus (a
//! source) and writes the bus's data to it (a sink).
//!
//! # Layout
//!
//! - this module: the typed traits a protocol implements ([`Connector`], [`Source`],
//!   [`Sink`]), the erased [`ConnectorRegistration`] the catalogue holds, the
//!   [`Protocol`] of a data interface, and [`ConnectorError`];
//! - [`context`]: what a running source or sink is given — the bus behind a
//!   [`SourceContext`] or [`SinkContext`], counters and link status, event time,
//!   backoff, and the engine-owned [`Shared`] resources (listeners shared by several data
//!   sources, tasks that must end with the engine).
//!
//! The protocols themselves live in the `connectors` crate, one folder each. A protocol is
//! a type implementing [`Connector`] with a typed [`Connector::Config`] (see
//! [`manifests::config`]) and [`Source`] and/or [`Sink`]; its folder registers it with one
//! [`inventory::submit!`] of [`ConnectorRegistration::source_and_sink`] (or
//! [`ConnectorRegistration::source`], [`ConnectorRegistration::sink`]). The registration
//! converts a data source's parameters into the typed configuration once, when the data
//! source registers ([`ConnectorRegistration::prepare`]); the engine keeps the prepared
//! connector and starts its source or sink from it as often as instances need it.

pub mod context;
pub mod senders;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use manifests::config::{Config, ConfigError};
use manifests::model::ParameterDefinition;
use serde_json::Value as Json;

pub use context::{
    Acknowledger, Backoff, ConnectorMetrics, EventClock, Identity, LinkStatus, Shared, SinkContext,
    SourceContext, Speed,
};
pub use senders::{Clock, SenderClocks, Senders, Timekeeper};

use crate::error::{BoxError, ErrorKind};
use crate::registry::DataSource;

/// A boxed future, for connector entry points.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a connector could not be configured, or failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ConnectorError {
    /// The data source (DSM id).
    pub dsm: String,
    /// Whose problem it is.
    pub kind: ErrorKind,
    /// Whether trying again (reconnecting) can help.
    pub retryable: bool,
    /// What happened, for people; never a secret.
    pub message: String,
    /// The parameter at fault, for configuration errors.
    pub parameter: Option<String>,
    source: Option<BoxError>,
}

impl PartialEq for ConnectorError {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.dsm,
            self.kind,
            self.retryable,
            &self.message,
            &self.parameter,
        ) == (
            &other.dsm,
            other.kind,
            other.retryable,
            &other.message,
            &other.parameter,
        )
    }
}

impl Eq for ConnectorError {}

impl ConnectorError {
    fn describe(&self) -> String {
        match self.kind {
            ErrorKind::User => format!(
                "invalid configuration of data source {}: {}",
                self.dsm, self.message
            ),
            _ => format!("data source {}: {}", self.dsm, self.message),
        }
    }

    fn new(dsm: &DataSource, kind: ErrorKind, retryable: bool, message: String) -> Self {
        Self {
            dsm: dsm.id.to_string(),
            kind,
            retryable,
            message,
            parameter: None,
            source: None,
        }
    }

    /// The data source's parameters are unusable: a user error.
    pub fn config(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::new(dsm, ErrorKind::User, false, message.to_string())
    }

    /// A configuration error found while reading the typed configuration.
    #[must_use]
    pub fn from_config(dsm: &DataSource, e: ConfigError) -> Self {
        let mut error = Self::config(dsm, &e.message);
        error.parameter.clone_from(&e.parameter);
        error.source = Some(Arc::new(e));
        error
    }

    /// The external system failed or cannot be reached: reconnecting may help.
    pub fn io(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::new(dsm, ErrorKind::External, true, message.to_string())
    }

    /// The external system refused for good (a permission, a schema): retrying will not
    /// help.
    pub fn refused(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::new(dsm, ErrorKind::External, false, message.to_string())
    }

    /// A defect of the engine.
    pub fn internal(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::new(dsm, ErrorKind::Internal, false, message.to_string())
    }

    /// Adds the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Whether the data source's configuration is at fault.
    #[must_use]
    pub fn is_config(&self) -> bool {
        self.kind == ErrorKind::User
    }
}

/// A protocol's connector, typed: what its folder implements.
pub trait Connector: Send + Sync + Sized + 'static {
    /// The protocol's name as data interfaces spell it (`MQTT`, `SQLite`); also its folder
    /// (in lower case) and its `communicationProtocol`.
    const PROTOCOL: &'static str;
    /// Other names data interfaces may give the protocol (any case).
    const ALIASES: &'static [&'static str] = &[];
    /// What it connects to, for `dda connectors` and the API.
    const DESCRIPTION: &'static str;
    /// The data source parameters it reads.
    type Config: Config + Send + Sync;

    /// The connector of data source `dsm`, from its configuration: checks what the
    /// configuration alone cannot say (the data source's id in defaults, a URL's shape).
    /// No I/O.
    ///
    /// # Errors
    ///
    /// The configuration does not make a working connector.
    fn new(config: Self::Config, dsm: &DataSource) -> Result<Self, ConnectorError>;

    /// Where the data source's data is, for people (never with credentials).
    fn place(&self) -> String;
}

/// A connector that can read its data sources.
pub trait Source: Connector {
    /// Whether the source takes part in checkpoints: it calls
    /// [`SourceContext::offer_checkpoint`] between batches and goes on from
    /// [`SourceContext::resume`].
    const RESUMABLE: bool = false;

    /// Brings the data source's data onto the bus until it ends or is cancelled.
    fn read(
        self: Arc<Self>,
        ctx: SourceContext,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

/// A connector that can write its data sources.
pub trait Sink: Connector {
    /// Whether the sink writes to a remote system over the network: then, when the engine
    /// has a data directory, its input goes through a store-and-forward queue on disk
    /// ([`crate::spool`]) while the remote is unreachable or slower than the input.
    const STORE_AND_FORWARD: bool = false;

    /// Whether the sink passes event time on to the system it writes to (an uplink to a
    /// cloud engine): its input then carries the watermarks too, in order with the data
    /// (through the store-and-forward queue), and [`SinkContext::next`] gives an empty
    /// batch when only the watermark moved ([`SinkContext::watermark`]).
    const FORWARDS_WATERMARKS: bool = false;

    /// Whether this data source's sink passes event time on: by default
    /// [`Sink::FORWARDS_WATERMARKS`]; a connector for which it is a choice (an MQTT
    /// topic's `watermarks`) says so per data source.
    fn forwards_watermarks(&self) -> bool {
        Self::FORWARDS_WATERMARKS
    }

    /// Writes what the bus carries for the data source until its input ends.
    fn write(
        self: Arc<Self>,
        ctx: SinkContext,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

type Erased = Arc<dyn Any + Send + Sync>;
type SourceFn = fn(Erased, SourceContext) -> BoxFuture<Result<(), ConnectorError>>;
type SinkFn = fn(Erased, SinkContext) -> BoxFuture<Result<(), ConnectorError>>;
type BuildFn = fn(&DataSource) -> Result<Erased, ConnectorError>;

/// A protocol's connector, erased, as its folder registers it and the catalogue holds it.
pub struct ConnectorRegistration {
    /// The protocol's name (`MQTT`, `SQLite`, ...).
    pub protocol: &'static str,
    /// Other names of the protocol.
    pub aliases: &'static [&'static str],
    /// What it connects to.
    pub description: &'static str,
    /// Whether the protocol's data exists only inside the engine (the bus).
    pub internal: bool,
    /// The parameters its data sources take (generated from its configuration).
    pub parameters: fn() -> Vec<ParameterDefinition>,
    /// Parameter values of a working configuration (see [`Config::example`]).
    pub example: fn() -> Json,
    check: fn(&Json) -> Result<(), ConfigError>,
    /// Parameter values as the connector reads them, written back (see
    /// [`manifests::config::canonical`]).
    pub canonical: fn(&Json) -> Result<Json, ConfigError>,
    build: Option<BuildFn>,
    place: fn(&(dyn Any + Send + Sync)) -> String,
    source: Option<SourceFn>,
    sink: Option<SinkFn>,
    /// Whether its source takes part in checkpoints ([`Source::RESUMABLE`]).
    pub resumable: bool,
    /// Whether its sink writes through a store-and-forward queue
    /// ([`Sink::STORE_AND_FORWARD`]).
    pub store_and_forward: bool,
    /// Whether a data source's sink passes event time on ([`Sink::forwards_watermarks`]).
    forwards_watermarks: fn(&(dyn Any + Send + Sync)) -> bool,
}

inventory::collect!(ConnectorRegistration);

impl std::fmt::Debug for ConnectorRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorRegistration")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

fn build<C: Connector>(dsm: &DataSource) -> Result<Erased, ConnectorError> {
    let config = manifests::config::from_parameters::<C::Config>(&dsm.parameters)
        .map_err(|e| ConnectorError::from_config(dsm, e))?;
    Ok(Arc::new(C::new(config, dsm)?))
}

fn check<C: Connector>(values: &Json) -> Result<(), ConfigError> {
    manifests::config::parse::<C::Config>(values).map(drop)
}

fn typed<C: Connector>(erased: Erased) -> Arc<C> {
    erased
        .downcast::<C>()
        .unwrap_or_else(|_| unreachable!("a prepared connector runs with its own registration"))
}

fn place_of<C: Connector>(erased: &(dyn Any + Send + Sync)) -> String {
    erased
        .downcast_ref::<C>()
        .map_or_else(|| C::PROTOCOL.to_owned(), Connector::place)
}

fn read<C: Source>(erased: Erased, ctx: SourceContext) -> BoxFuture<Result<(), ConnectorError>> {
    Box::pin(typed::<C>(erased).read(ctx))
}

fn write<C: Sink>(erased: Erased, ctx: SinkContext) -> BoxFuture<Result<(), ConnectorError>> {
    Box::pin(typed::<C>(erased).write(ctx))
}

fn no_place(_: &(dyn Any + Send + Sync)) -> String {
    String::new()
}

fn forwards_of<C: Connector + Sink>(erased: &(dyn Any + Send + Sync)) -> bool {
    erased
        .downcast_ref::<C>()
        .is_some_and(Sink::forwards_watermarks)
}

const fn never(_: &(dyn Any + Send + Sync)) -> bool {
    false
}

fn no_config(values: &Json) -> Result<(), ConfigError> {
    manifests::config::parse::<manifests::config::NoConfig>(values).map(drop)
}

fn empty_example() -> Json {
    Json::Object(serde_json::Map::new())
}

impl ConnectorRegistration {
    const fn of<C: Connector>() -> Self {
        Self {
            protocol: C::PROTOCOL,
            aliases: C::ALIASES,
            description: C::DESCRIPTION,
            internal: false,
            parameters: manifests::config::definitions::<C::Config>,
            example: <C::Config as Config>::example,
            check: check::<C>,
            canonical: manifests::config::canonical::<C::Config>,
            build: Some(build::<C>),
            place: place_of::<C>,
            source: None,
            sink: None,
            resumable: false,
            store_and_forward: false,
            forwards_watermarks: never,
        }
    }

    /// A protocol that can be read and written.
    #[must_use]
    pub const fn source_and_sink<C: Source + Sink>() -> Self {
        let mut r = Self::of::<C>();
        r.source = Some(read::<C>);
        r.sink = Some(write::<C>);
        r.resumable = C::RESUMABLE;
        r.store_and_forward = <C as Sink>::STORE_AND_FORWARD;
        r.forwards_watermarks = forwards_of::<C>;
        r
    }

    /// A protocol that can only be read.
    #[must_use]
    pub const fn source<C: Source>() -> Self {
        let mut r = Self::of::<C>();
        r.source = Some(read::<C>);
        r.resumable = C::RESUMABLE;
        r
    }

    /// A protocol that can only be written.
    #[must_use]
    pub const fn sink<C: Sink>() -> Self {
        let mut r = Self::of::<C>();
        r.sink = Some(write::<C>);
        r.store_and_forward = C::STORE_AND_FORWARD;
        r.forwards_watermarks = forwards_of::<C>;
        r
    }

    /// A protocol whose data stays inside the engine: no connector, no parameters.
    #[must_use]
    pub const fn internal(
        protocol: &'static str,
        aliases: &'static [&'static str],
        description: &'static str,
    ) -> Self {
        Self {
            protocol,
            aliases,
            description,
            internal: true,
            parameters: Vec::new,
            example: empty_example,
            check: no_config,
            canonical: manifests::config::canonical::<manifests::config::NoConfig>,
            build: None,
            place: no_place,
            source: None,
            sink: None,
            resumable: false,
            store_and_forward: false,
            forwards_watermarks: never,
        }
    }

    /// Whether its data sources can be read.
    #[must_use]
    pub const fn reads(&self) -> bool {
        self.source.is_some()
    }

    /// Whether its data sources can be written.
    #[must_use]
    pub const fn writes(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether `name` names this protocol (its name or an alias, any case).
    #[must_use]
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        self.protocol.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Checks parameter values as the connector reads them (types, then its own checks).
    ///
    /// # Errors
    ///
    /// The first unusable value.
    pub fn check(&self, values: &Json) -> Result<(), ConfigError> {
        (self.check)(values)
    }

    /// The connector of data source `dsm`, its configuration read once; `None` for an
    /// internal protocol.
    ///
    /// # Errors
    ///
    /// The data source's parameters do not make a working connector.
    pub fn prepare(&'static self, dsm: &DataSource) -> Result<Option<Prepared>, ConnectorError> {
        let Some(build) = self.build else {
            return Ok(None);
        };
        let connector = build(dsm)?;
        Ok(Some(Prepared {
            registration: self,
            place: (self.place)(connector.as_ref()),
            connector,
        }))
    }
}

/// A data source's connector, ready to start: its configuration read and checked.
#[derive(Clone)]
pub struct Prepared {
    registration: &'static ConnectorRegistration,
    connector: Erased,
    place: String,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("protocol", &self.registration.protocol)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Its registration.
    #[must_use]
    pub const fn registration(&self) -> &'static ConnectorRegistration {
        self.registration
    }

    /// Where its data is, for people.
    #[must_use]
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Whether it can read.
    #[must_use]
    pub const fn reads(&self) -> bool {
        self.registration.reads()
    }

    /// Whether it can write.
    #[must_use]
    pub const fn writes(&self) -> bool {
        self.registration.writes()
    }

    /// Whether its source takes part in checkpoints.
    #[must_use]
    pub const fn resumable(&self) -> bool {
        self.registration.resumable
    }

    /// Whether its sink writes through a store-and-forward queue.
    #[must_use]
    pub const fn store_and_forward(&self) -> bool {
        self.registration.store_and_forward
    }

    /// Whether its sink passes event time on.
    #[must_use]
    pub fn forwards_watermarks(&self) -> bool {
        (self.registration.forwards_watermarks)(self.connector.as_ref())
    }

    /// Runs the source; `None` when the protocol cannot be read.
    #[must_use]
    pub fn read(&self, ctx: SourceContext) -> Option<BoxFuture<Result<(), ConnectorError>>> {
        self.registration
            .source
            .map(|run| run(self.connector.clone(), ctx))
    }

    /// Runs the sink; `None` when the protocol cannot be written.
    #[must_use]
    pub fn write(&self, ctx: SinkContext) -> Option<BoxFuture<Result<(), ConnectorError>>> {
        self.registration
            .sink
            .map(|run| run(self.connector.clone(), ctx))
    }
}

/// The registration of `protocol` (its name or an alias, any case), if there is one.
#[must_use]
pub fn find(protocol: &str) -> Option<&'static ConnectorRegistration> {
    inventory::iter::<ConnectorRegistration>
        .into_iter()
        .find(|r| r.is_named(protocol))
}

/// Every registered connector, sorted by protocol name.
#[must_use]
pub fn registrations() -> Vec<&'static ConnectorRegistration> {
    let mut all: Vec<_> = inventory::iter::<ConnectorRegistration>
        .into_iter()
        .collect();
    all.sort_by_key(|r| r.protocol.to_ascii_lowercase());
    all
}

/// A data interface's communication protocol: the catalogue's name for it when a connector
/// is registered (`mqtts` → `MQTT`), else the name as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Protocol(Arc<str>);

impl Protocol {
    /// The protocol named `written` (any case, or an alias).
    #[must_use]
    pub fn parse(written: &str) -> Self {
        Self(find(written).map_or_else(|| Arc::from(written.trim()), |r| Arc::from(r.protocol)))
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Its registration, when a connector is registered.
    #[must_use]
    pub fn registration(&self) -> Option<&'static ConnectorRegistration> {
        find(&self.0)
    }

    /// Whether its data exists only inside the engine (the in-process bus).
    #[must_use]
    pub fn is_internal(&self) -> bool {
        self.registration().is_some_and(|r| r.internal)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of the in-process bus protocol.
pub const BUS: &str = manifests::validate::BUS_PROTOCOLS[0];

inventory::submit! {
    ConnectorRegistration::internal(
        BUS,
        manifests::validate::BUS_PROTOCOLS.split_at(1).1,
        "The engine's in-process data bus: a topic with no external system behind it; a processor writes it",
    )
}

/// Where a place in the engine is, for dead letters and errors.
#[must_use]
pub fn place(instance: &str, processor: &str) -> Json {
    serde_json::json!({"instance": instance, "processor": processor})
}
