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
//! - [`connector`] and [`connectors`]: bridges to external systems, one folder per protocol.
//! - [`processor`]: the processor trait and the catalogue processors register in.
//! - [`external`]: the programs the `external` processor may run, as configured.
//! - [`plan`]: an analytics manifest as a graph of processors.
//! - [`instance`]: lifecycle states, status, the task that runs a processor.
//! - [`engine`]: all of the above together, with the lifecycle operations.
//! - [`dead_letter`]: where what cannot be processed goes, with the reason.

pub mod bus;
pub mod codec;
pub mod connector;
pub mod connectors;
pub mod dead_letter;
pub mod engine;
pub mod external;
pub mod instance;
pub mod observation;
pub mod plan;
pub mod processor;
pub mod registry;
pub mod symbol;
pub mod time;

pub use engine::{Engine, EngineConfig, EngineError};
pub use instance::{InstanceStatus, State};
pub use observation::{Batch, Observation, Value};
pub use plan::Plan;
pub use processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorRegistration};
pub use registry::DataSource;
pub use symbol::Sym;
pub use time::Timestamp;

pub use inventory;
