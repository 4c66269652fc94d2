//! The DDA processor catalogue: one folder per `processorType`.
//!
//! | type | category | what it does |
//! |---|---|---|
//! | `echo` | preprocessor | passes observations through |
//! | `filter` | preprocessor | keeps observations whose value compares to a threshold (`operator`, `threshold`, as in the original FAR-EDGE filter) |
//! | `enrich` | preprocessor | adds fields of the records the CIR links to each observation's source as attributes, cached and reloaded every `ttl` |
//! | `map` | preprocessor | computes a new value with an expression over the observation |
//! | `average`, `min`, `max`, `sum`, `count`, `stddev`, `variance`, `first`, `last`, `median`, `percentile`, `rate`, `integral`, `histogram`, `moving-average` | analytics | a statistic per key over tumbling, hopping, sliding, session or count windows (folder `aggregate`; windows in [`window`]) |
//! | `trend`, `rul` | analytics | least-squares trend over a window, and the remaining useful life until it reaches a failure threshold (folder `aggregate`) |
//! | `threshold`, `zscore`, `iqr`, `change`, `ewma` | analytics | per key: a threshold alert with hysteresis and minimum duration; z-score and IQR outliers over the trailing observations; CUSUM change detection; exponentially weighted moving average (folder `detect`) |
//! | `vibration` | analytics | RMS, peak, peak-to-peak, crest factor, kurtosis, mean, standard deviation and FFT band energies per block of vibration samples |
//! | `onnx` | analytics | runs an ONNX model (tract, pure Rust) on feature vectors assembled from the latest observations per source (cargo feature `onnx`, on by default) |
//! | `store` | storage | writes what it reads to its sink's database or file |
//! | `external` | analytics | hands batches to a long-lived program allowed by the engine configuration, over JSON lines on stdin/stdout |
//!
//! Each kind is a [`ProcessorKind`](engine::ProcessorKind) with a typed configuration (a
//! `FooConfig`, whose fields are its parameters: their documentation, types and defaults
//! come from it) and registers itself with one `inventory::submit!` of
//! [`ProcessorRegistration::of`]; [`catalogue`] lists them. Adding
//! a processor is a folder and a `mod` line here.

pub mod aggregate;
pub mod detect;
pub mod echo;
pub mod enrich;
pub mod external;
pub mod filter;
pub mod map;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod operator;
pub mod store;
pub mod vibration;
pub mod window;

#[cfg(test)]
mod testing;

use engine::processor::{ProcessorRegistration, registrations};
use manifests::model::{AnalyticsProcessorDefinition, ParameterDefinitions};

/// Every processor kind of this catalogue, sorted by name.
#[must_use]
pub fn catalogue() -> Vec<&'static ProcessorRegistration> {
    registrations()
}

/// The catalogue as analytics processor definitions, ready to put in a bundle (id
/// `apd-<type>`).
#[must_use]
pub fn definitions() -> Vec<AnalyticsProcessorDefinition> {
    catalogue()
        .into_iter()
        .map(|r| AnalyticsProcessorDefinition {
            id: format!("apd-{}", r.kind),
            name: Some(r.kind.to_owned()),
            description: Some(r.description.to_owned()),
            processor_type: r.kind.to_owned(),
            category: Some(r.category),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            parameters: ParameterDefinitions {
                parameter: (r.parameters)(),
            },
            ..AnalyticsProcessorDefinition::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_validate_as_a_bundle() {
        let apds: Vec<serde_json::Value> = definitions()
            .iter()
            .map(|d| serde_json::to_value(d).unwrap())
            .collect();
        let doc = serde_json::json!({"analyticsProcessorDefinitions": {"analyticsProcessorDefinition": apds}});
        let mut bundle = manifests::Bundle::default();
        bundle.add_document(
            "apds.json".into(),
            doc.to_string(),
            manifests::Syntax::Json,
            None,
        );
        let registry = engine::Catalogue::get();
        manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                catalogue: Some(registry),
                ..manifests::Options::default()
            },
        );
        assert!(bundle.diagnostics.is_empty(), "{:#?}", bundle.diagnostics);
        assert_eq!(bundle.entities.len(), catalogue().len());
    }

    #[test]
    fn every_kind_is_unique_documented_and_creatable_with_its_defaults() {
        let all = catalogue();
        let names: Vec<&str> = all.iter().map(|r| r.kind).collect();
        for kind in [
            "echo",
            "enrich",
            "filter",
            "map",
            "average",
            "min",
            "max",
            "sum",
            "count",
            "stddev",
            "store",
            "threshold",
            "zscore",
            "iqr",
            "change",
            "ewma",
            "vibration",
            "variance",
            "first",
            "last",
            "median",
            "percentile",
            "rate",
            "integral",
            "histogram",
            "moving-average",
            "trend",
            "rul",
            "external",
            #[cfg(feature = "onnx")]
            "onnx",
        ] {
            assert!(names.contains(&kind), "{kind} is registered");
        }
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names, "kinds are unique");
        for r in all {
            assert!(!r.description.is_empty(), "{} has a description", r.kind);
            for p in (r.parameters)() {
                assert!(
                    p.description.as_deref().is_some_and(|d| !d.is_empty()),
                    "{}.{} is documented",
                    r.kind,
                    p.name
                );
                assert!(p.data_type.is_some(), "{}.{} has a type", r.kind, p.name);
            }
            // Its example is a working configuration.
            let example = (r.example)();
            assert_eq!((r.check)(&example), Ok(()), "{}: {example}", r.kind);
            if let Err(e) = (r.factory)(&context(&example)) {
                panic!("{} is created from {example}: {e}", r.kind);
            }
            // Its configuration, written out, goes through a manifest in JSON and in XML
            // and reads back the same.
            let values = (r.canonical)(&example).unwrap_or_else(|e| panic!("{}: {e}", r.kind));
            for syntax in [manifests::Syntax::Json, manifests::Syntax::Xml] {
                let resolved = through_a_manifest(r.kind, &values, syntax);
                let again = (r.canonical)(&resolved)
                    .unwrap_or_else(|e| panic!("{} in {syntax:?}: {e}", r.kind));
                assert_eq!(again, values, "{} in {syntax:?}", r.kind);
            }
        }
    }

    /// A context every kind can be created in: a sink with a storage interface (`store`
    /// wants one) and the program `external`'s example names.
    fn context(values: &serde_json::Value) -> engine::ProcessorContext {
        let mut ctx = engine::ProcessorContext::for_test(values, "sink");
        ctx.sink_protocol = Some(engine::Protocol::parse("SQLite"));
        ctx.linked = Some(std::sync::Arc::new(engine::linked::Fixed::default()));
        ctx.external
            .programs
            .push(engine::external::ExternalProgram {
                name: "scorer".into(),
                argv: vec!["cat".into()],
                env: std::collections::BTreeMap::new(),
                working_dir: None,
                timeout: None,
            });
        ctx
    }

    /// Puts `values` into an analytics processor manifest of kind `kind`, written in
    /// `syntax`, validates it with the catalogue in a bundle that has what it refers to, and
    /// returns its resolved parameters.
    fn through_a_manifest(
        kind: &str,
        values: &serde_json::Value,
        syntax: manifests::Syntax,
    ) -> serde_json::Value {
        use serde_json::json;
        let apd = definitions()
            .into_iter()
            .find(|d| d.processor_type == kind)
            .map(|d| serde_json::to_value(d).unwrap());
        let context = json!({
            "kind": "Bundle",
            "dataInterfaces": {"dataInterface": [
                {"id": "di-plant", "communicationProtocol": "Plant"},
                {"id": "di-bus", "communicationProtocol": "Bus"}
            ]},
            "dataKinds": {"dataKind": [{"id": "dk", "quantityKind": "Power"}]},
            "dataSourceDefinitions": {"dataSourceDefinition": [
                {"id": "dsd-plant", "dataInterfaceReferenceID": "di-plant", "dataKindReferenceID": "dk"},
                {"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"}
            ]},
            "dataSourceManifests": {"dataSourceManifest": [
                {"id": "readings", "dataSourceDefinitionReferenceID": "dsd-plant"},
                {"id": "results", "dataSourceDefinitionReferenceID": "dsd-bus"}
            ]},
            "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [apd]},
        });
        let parameters: Vec<serde_json::Value> = values
            .as_object()
            .expect("values are an object")
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let manifest = json!({
            "id": "am-round-trip",
            "analyticsProcessors": {"apm": [{
                "id": "apm-round-trip",
                "analyticsProcessorDefinitionReferenceID": format!("apd-{kind}"),
                "parameters": {"parameter": parameters},
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "readings"}]},
                "dataSink": {"dataSourceManifestReferenceID": "results"}
            }]}
        });
        let json_path = std::path::Path::new("analytics-manifests/round-trip.json");
        let json_text = serde_json::to_string_pretty(&manifest).unwrap();
        let (path, text) = match syntax {
            manifests::Syntax::Json => (json_path.to_owned(), json_text),
            manifests::Syntax::Xml => (
                json_path.with_extension("xml"),
                manifests::convert::convert(json_path, &json_text, manifests::Syntax::Xml)
                    .unwrap_or_else(|e| panic!("{kind}: {e:?}")),
            ),
        };
        let mut bundle = manifests::Bundle::default();
        bundle.add_document(
            "bundle.json".into(),
            context.to_string(),
            manifests::Syntax::Json,
            None,
        );
        bundle.add_document(
            path,
            text.clone(),
            syntax,
            Some(manifests::EntityKind::AnalyticsManifest),
        );
        let model = manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                catalogue: Some(engine::Catalogue::get()),
                ..manifests::Options::default()
            },
        );
        // The plant's protocol is no connector's: the only diagnostic expected says so.
        let unexpected: Vec<_> = bundle
            .diagnostics
            .iter()
            .filter(|d| d.code != "unknown-protocol")
            .collect();
        assert!(unexpected.is_empty(), "{kind}: {unexpected:#?}\n{text}");
        let am = model
            .analytics_manifests
            .values()
            .next()
            .expect("the manifest");
        model
            .parameters_of(Some(&am.id), "apm-round-trip")
            .expect("its processor's parameters")
            .to_json()
    }
}

/// docs/adding-a-processor.md, whose code is compiled and run as a documentation test.
#[cfg(doctest)]
#[doc = include_str!("../../docs/adding-a-processor.md")]
pub struct AddingAProcessor;
