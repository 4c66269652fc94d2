//! The DDA runtime: the Edge Analytics Engine (and, run over edge outputs, the Distributed
//! Analytics Engine).
//!
//! # Layout
//!
//! - [`time`], [`symbol`], [`observation`]: observations in flight (compact, batched), the
//!   one internal time type, interned names.
//! - [`codec`]: JSON and CSV at the edges (LiveDataSets in, LiveDataSets out).
//! - [`bus`]: topics keyed by DSM id, bounded fan-out with backpressure, watermarks.
//! - [`registry`]: the device registry of data sources.
//! - [`connector`]: the connector API (typed traits, contexts, registration); the protocols
//!   themselves are in the `connectors` crate, one folder each.
//! - [`processor`]: the processor traits and the registration processor kinds use.
//! - [`catalogue`]: every registered processor kind and connector, for validation and
//!   listings.
//! - [`error`]: what processor, connector and decode errors share (kind, retry hint).
//! - [`external`]: the programs the `external` processor may run, as configured.
//! - [`linked`]: records the CIR links to sources' objects, as the host loads them.
//! - [`plan`]: an analytics manifest as a graph of processors.
//! - [`instance`]: lifecycle states, status and counters; [`task`]: the task that runs a
//!   processor.
//! - [`engine`]: all of the above together: connector supervision, live views, and the
//!   lifecycle operations.
//! - [`dead_letter`]: where what cannot be processed goes, with the reason.
//! - [`checkpoint`]: barrier-aligned checkpoints of running instances.
//! - [`spool`]: store-and-forward, the bounded queue on disk in front of each network sink.

pub mod bus;
pub mod catalogue;
pub mod checkpoint;
pub mod codec;
pub mod connector;
pub mod dead_letter;
pub mod engine;
pub mod error;
pub mod external;
pub mod instance;
pub mod linked;
pub mod observation;
pub mod plan;
pub mod processor;
pub mod registry;
pub mod spool;
pub mod symbol;
pub mod task;
pub mod time;

pub use catalogue::Catalogue;
pub use connector::Protocol;
pub use engine::{Engine, EngineConfig, EngineError};
pub use error::ErrorKind;
pub use instance::{InstanceStatus, State};
pub use observation::{Batch, Observation, Value};
pub use plan::Plan;
pub use processor::{
    Output, Processor, ProcessorContext, ProcessorError, ProcessorKind, ProcessorRegistration,
};
pub use registry::DataSource;
pub use symbol::Sym;
pub use time::Timestamp;

pub use inventory;
