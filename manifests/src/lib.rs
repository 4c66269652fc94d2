//! DDA's digital models: the manifest DSL in XML and JSON, its schemas, and validation.
//!
//! # Layout
//!
//! - [`model`]: the entities as Rust types (data interfaces, data kinds, source definitions
//!   and manifests, consumers, channels, edge gateways, processor definitions and manifests,
//!   analytics manifests, live data sets and observations), JSON names as in the paper.
//! - [`cir`]: the Common Interoperability Registry's objects, repositories and links.
//! - [`kind`]: which kinds exist and every name each goes by (JSON marker, XML element,
//!   folder, schema).
//! - [`node`], [`json`], [`xml`], [`mapping`]: documents as position-aware trees; the
//!   mechanical XML ↔ JSON mapping, steered by the schemas.
//! - [`schema`]: the embedded JSON Schemas (`schemas/`), compiled once; [`xsd`] derives XSDs.
//! - [`bundle`]: loading files and directories, recognizing documents, phase one
//!   (structure) of validation.
//! - [`validate`]: phase two (meaning across documents), producing a resolved [`Model`].
//! - [`parameters`], [`secret`]: rules shared with the engine.
//! - [`config`]: typed configurations of processors and connectors, from which their
//!   parameter definitions are generated.
//! - [`diagnostic`]: what is wrong, where, and how to fix it, rendered like rustc.
//!
//! This crate does no I/O beyond reading the files it is asked to, and has no async.

pub mod bundle;
pub mod cir;
pub mod config;
pub mod convert;
pub mod diagnostic;
pub mod id;
pub mod json;
pub mod kind;
pub mod mapping;
pub mod model;
pub mod node;
pub mod parameters;
pub mod reach;
pub mod schema;
pub mod secret;
pub mod suggest;
pub mod validate;
pub mod xml;
pub mod xsd;

pub use bundle::{Bundle, LoadError, Syntax};
pub use config::{Config, ConfigError};
pub use diagnostic::{Diagnostic, Severity};
pub use kind::{Entity, EntityKind};
pub use parameters::ResolvedParameters;
pub use validate::{Catalogue, ConnectorSpec, Model, Options, ProcessorSpec};

/// The engine's own data source of dead letters: every model knows it (analytics manifests
/// may read it), and no manifest may declare it.
pub const DEAD_LETTER_DSM: &str = "dda-dead-letters";

/// Loads `paths` and validates them (both phases).
///
/// # Errors
///
/// Only when a path cannot be read; invalid documents are reported in the bundle's
/// diagnostics.
pub fn load_and_validate<P: AsRef<std::path::Path>>(
    paths: &[P],
    options: &Options<'_>,
) -> Result<(Bundle, Model), LoadError> {
    let mut bundle = Bundle::load(paths)?;
    let model = validate::validate(&mut bundle, options);
    bundle.sort_diagnostics();
    Ok((bundle, model))
}
