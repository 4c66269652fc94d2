//! The connectors: one folder per protocol, each bridging data sources whose data interface
//! names that protocol to the engine's bus.
//!
//! | folder | protocol | reads | writes |
//! |---|---|---|---|
//! | [`file`] | `File` | JSON lines or CSV, once | LiveDataSets, one per line |
//! | [`http`] | `HTTP` | an ingest endpoint on the engine | a webhook |
//! | [`kafka`] | `Kafka` | a consumer group | an idempotent keyed producer |
//! | [`mongodb`] | `MongoDB` | stored observations, polled | batched inserts |
//! | [`mqtt`] | `MQTT` | a subscription (QoS 0/1) | publishing |
//! | [`postgres`] | `PostgreSQL` | — | multi-row inserts |
//! | [`simulator`] | `Simulator` | simulated readings, or a replayed file | — |
//! | [`sqlite`] | `SQLite` | stored observations, polled | one row per observation |
//!
//! Each folder holds its typed configuration (`FooConfig`: the parameters, their types,
//! defaults and documentation), its source and sink, and its tests, and registers itself
//! with one `inventory::submit!` (see [`engine::connector`]). Adding a protocol is a folder
//! and a `mod` line here. The engine's in-process bus (`Bus`) is part of the engine itself.
//!
//! Beside them, [`records`] fetches the records of the Common Interoperability Registry's
//! repositories (PostgreSQL, MongoDB, SQLite, HTTP) by local id.
//!
//! A binary must call [`catalogue`] (or use something else of this crate) so that the
//! linker keeps the registrations.

pub mod file;
pub mod http;
pub mod kafka;
pub mod linked;
pub mod mongodb;
pub mod mqtt;
pub mod postgres;
pub mod records;
pub mod simulator;
pub mod sqlite;

use engine::connector::ConnectorRegistration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every registered connector, sorted by protocol; calling it also makes sure this crate's
/// registrations are linked into the binary.
#[must_use]
pub fn catalogue() -> Vec<&'static ConnectorRegistration> {
    engine::connector::registrations()
}

/// The default `idleTimeout` of a source keeping event time per sender: a minute.
#[must_use]
pub fn default_idle_timeout() -> manifests::config::Duration {
    manifests::config::Duration::from_secs(60)
}

/// The default `duplicatesWithin` of a source keeping event time per sender: a day.
#[must_use]
pub fn default_duplicates_within() -> manifests::config::Duration {
    manifests::config::Duration::from_secs(24 * 3600)
}

/// The default host of servers and listeners: this machine, by its loopback address.
#[must_use]
pub fn loopback() -> String {
    "127.0.0.1".into()
}

/// Where a polling source starts reading a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Everything stored (the default).
    #[default]
    Beginning,
    /// Only what is stored after the source started.
    End,
}

pub use manifests::id::{sql_identifier, sql_table};

/// An optional duration as a [`std::time::Duration`], or `default`.
#[must_use]
pub fn or(
    d: Option<manifests::config::Duration>,
    default: std::time::Duration,
) -> std::time::Duration {
    d.map_or(default, manifests::config::Duration::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_registered_once_and_documented() {
        let all = catalogue();
        let names: Vec<&str> = all.iter().map(|r| r.protocol).collect();
        for p in [
            "Bus",
            "File",
            "HTTP",
            "Kafka",
            "MongoDB",
            "MQTT",
            "PostgreSQL",
            "Simulator",
            "SQLite",
        ] {
            assert!(names.contains(&p), "{p} is registered: {names:?}");
        }
        let mut lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        lower.extend(
            all.iter()
                .flat_map(|r| r.aliases.iter().map(|a| a.to_ascii_lowercase())),
        );
        let mut unique = lower.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            lower.len(),
            "names and aliases are unique: {lower:?}"
        );
        for r in all {
            assert!(
                !r.description.is_empty(),
                "{} has a description",
                r.protocol
            );
            for p in (r.parameters)() {
                assert!(
                    p.description.as_deref().is_some_and(|d| !d.is_empty()),
                    "{}.{} is documented",
                    r.protocol,
                    p.name
                );
                assert!(
                    p.data_type.is_some(),
                    "{}.{} has a type",
                    r.protocol,
                    p.name
                );
            }
        }
    }

    /// A bundle with one data source of `protocol` given `values`, in `syntax`.
    fn bundle_of(
        protocol: &str,
        values: &serde_json::Value,
        syntax: manifests::Syntax,
    ) -> manifests::Bundle {
        let parameters: Vec<_> = values
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        let docs = [
            (
                "di.json",
                serde_json::json!({"id": "di", "communicationProtocol": protocol}),
            ),
            (
                "dk.json",
                serde_json::json!({"id": "dk", "name": "x", "quantityKind": "x"}),
            ),
            (
                "dsd.json",
                serde_json::json!({"id": "dsd", "dataInterfaceReferenceID": "di", "dataKindReferenceID": "dk"}),
            ),
            (
                "dsm.json",
                serde_json::json!({"id": "dsm", "dataSourceDefinitionReferenceID": "dsd",
                    "dataSourceDefinitionInterfaceParameters": {"parameter": parameters}}),
            ),
        ];
        let mut bundle = manifests::Bundle::default();
        for (name, doc) in docs {
            let kind = match name {
                "di.json" => manifests::EntityKind::DataInterface,
                "dk.json" => manifests::EntityKind::DataKind,
                "dsd.json" => manifests::EntityKind::DataSourceDefinition,
                _ => manifests::EntityKind::DataSourceManifest,
            };
            let text = doc.to_string();
            let (name, text) = match syntax {
                manifests::Syntax::Json => (name.to_owned(), text),
                manifests::Syntax::Xml => (
                    name.replace(".json", ".xml"),
                    manifests::convert::convert(
                        &std::path::Path::new(kind.info().folder).join(name),
                        &text,
                        syntax,
                    )
                    .unwrap_or_else(|e| panic!("{protocol} {name} converts to XML: {e:?}")),
                ),
            };
            bundle.add_document(name.into(), text, syntax, Some(kind));
        }
        bundle
    }

    #[test]
    fn every_connector_builds_from_its_example_and_its_configuration_round_trips_through_json_and_xml()
     {
        let engine_catalogue = engine::Catalogue::get();
        for r in catalogue().into_iter().filter(|r| !r.internal) {
            let example = (r.example)();
            r.check(&example).unwrap_or_else(|e| {
                panic!(
                    "{}: the example is a working configuration: {e}",
                    r.protocol
                )
            });
            let values = (r.canonical)(&example).unwrap();
            for syntax in [manifests::Syntax::Json, manifests::Syntax::Xml] {
                let mut bundle = bundle_of(r.protocol, &values, syntax);
                let model = manifests::validate::validate(
                    &mut bundle,
                    &manifests::Options {
                        catalogue: Some(engine_catalogue),
                        ..manifests::Options::default()
                    },
                );
                assert!(
                    !bundle.has_errors(),
                    "{} in {syntax:?}: {:#?}",
                    r.protocol,
                    bundle.diagnostics
                );
                let read = model.dsm_parameters["dsm"].to_json();
                assert_eq!(
                    (r.canonical)(&read).unwrap(),
                    values,
                    "{} reads back the same configuration from {syntax:?}",
                    r.protocol
                );
                // The prepared connector, from the validated model, as the engine builds it.
                let source = engine::DataSource::from_model(&model, "dsm").unwrap();
                let prepared = r
                    .prepare(&source)
                    .unwrap_or_else(|e| panic!("{}: builds: {e}", r.protocol))
                    .unwrap();
                assert!(
                    !prepared.place().is_empty(),
                    "{} says where it is",
                    r.protocol
                );
            }
        }
    }
}

/// docs/adding-a-connector.md, whose code is compiled and run as a documentation test.
#[cfg(doctest)]
#[doc = include_str!("../../docs/adding-a-connector.md")]
pub struct AddingAConnector;
