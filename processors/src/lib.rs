//! The DDA processor catalogue: one folder per `processorType`.
//!
//! | type | category | what it does |
//! |---|---|---|
//! | `echo` | preprocessor | passes observations through |
//! | `filter` | preprocessor | keeps observations whose value compares to a threshold (`operator`, `threshold`, as in the original FAR-EDGE filter) |
//! | `map` | preprocessor | computes a new value with an expression over the observation |
//! | `average`, `min`, `max`, `sum`, `count`, `stddev`, `variance`, `first`, `last`, `median`, `percentile`, `rate`, `integral`, `histogram`, `moving-average` | analytics | a statistic per key over tumbling, hopping, sliding, session or count windows (folder `aggregate`; windows in [`window`]) |
//! | `trend`, `rul` | analytics | least-squares trend over a window, and the remaining useful life until it reaches a failure threshold (folder `aggregate`) |
//! | `threshold`, `zscore`, `iqr`, `change`, `ewma` | analytics | per key: a threshold alert with hysteresis and minimum duration; z-score and IQR outliers over the trailing observations; CUSUM change detection; exponentially weighted moving average (folder `detect`) |
//! | `vibration` | analytics | RMS, peak, peak-to-peak, crest factor, kurtosis, mean, standard deviation and FFT band energies per block of vibration samples |
//! | `onnx` | analytics | runs an ONNX model (tract, pure Rust) on feature vectors assembled from the latest observations per source (cargo feature `onnx`, on by default) |
//! | `store` | storage | writes what it reads to its sink's database or file |
//! | `external` | analytics | hands batches to a long-lived program allowed by the engine configuration, over JSON lines on stdin/stdout |
//!
//! Each kind registers itself; [`catalogue`] lists them. Adding a processor is a folder and
//! a `mod` line here.

pub mod aggregate;
pub mod detect;
pub mod echo;
pub mod external;
pub mod filter;
pub mod map;
#[cfg(feature = "onnx")]
pub mod onnx;
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
        let registry = engine::processor::Catalogue;
        manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                catalogue: Some(&registry),
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
        }
    }
}
