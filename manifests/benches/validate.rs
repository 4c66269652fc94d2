//! Validation speed: 1,000 processor manifests across 100 analytics manifests, with the
//! 1,100 data source manifests they read and write, as 1,105 JSON documents in memory.
//!
//! `cargo bench -p manifests --bench validate`

#![allow(
    clippy::unwrap_used,
    reason = "a test or benchmark fails loudly on the first surprise"
)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use manifests::bundle::{Bundle, Syntax};
use manifests::{EntityKind, Options};
use serde_json::json;

const AMS: usize = 100;
const APMS_PER_AM: usize = 10;

/// (folder kind, document) pairs of the synthetic plant.
fn plant() -> Vec<(EntityKind, String)> {
    let mut docs = vec![
        (
            EntityKind::DataInterface,
            json!({"id": "di-sim", "communicationProtocol": "Simulator",
            "parameters": {"parameter": [{"name": "seed", "dataType": "int", "defaultValue": 1}]}}),
        ),
        (
            EntityKind::DataInterface,
            json!({"id": "di-bus", "communicationProtocol": "Bus"}),
        ),
        (
            EntityKind::DataKind,
            json!({"id": "dk", "name": "Power", "quantityKind": "Power", "unit": "W"}),
        ),
        (
            EntityKind::DataSourceDefinition,
            json!({"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"}),
        ),
        (
            EntityKind::DataSourceDefinition,
            json!({"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"}),
        ),
        (
            EntityKind::AnalyticsProcessorDefinition,
            json!({"id": "apd-filter", "processorType": "filter",
            "parameters": {"parameter": [
                {"name": "operator", "dataType": "string", "required": true, "allowedValues": {"value": ["EQ", "NE", "GT", "GE", "LT", "LE"]}},
                {"name": "threshold", "dataType": "float", "required": true}]}}),
        ),
    ];
    for am in 0..AMS {
        docs.push((EntityKind::DataSourceManifest, json!({"id": format!("src-{am}"), "dataSourceDefinitionReferenceID": "dsd-sim",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "seed", "value": am}]}})));
        let mut apms = Vec::new();
        for i in 0..APMS_PER_AM {
            let input = if i == 0 {
                format!("src-{am}")
            } else {
                format!("out-{am}-{}", i - 1)
            };
            let output = format!("out-{am}-{i}");
            docs.push((
                EntityKind::DataSourceManifest,
                json!({"id": output, "dataSourceDefinitionReferenceID": "dsd-bus"}),
            ));
            apms.push(json!({"id": format!("apm-{am}-{i}"), "analyticsProcessorDefinitionReferenceID": "apd-filter",
                "parameters": {"parameter": [{"key": "operator", "value": "GE"}, {"key": "threshold", "value": i}]},
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": input}]},
                "dataSink": {"dataSourceManifestReferenceID": output}}));
        }
        docs.push((
            EntityKind::AnalyticsManifest,
            json!({"id": format!("am-{am}"), "analyticsProcessors": {"apm": apms}}),
        ));
    }
    docs.into_iter()
        .map(|(k, d)| (k, serde_json::to_string_pretty(&d).unwrap()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let docs = plant();
    let run = || {
        let mut bundle = Bundle::default();
        for (i, (kind, text)) in docs.iter().enumerate() {
            bundle.add_document(
                PathBuf::from(format!("{}/{i}.json", kind.info().folder)),
                text.clone(),
                Syntax::Json,
                Some(*kind),
            );
        }
        let model = manifests::validate::validate(&mut bundle, &Options::default());
        assert!(!bundle.has_errors(), "{:?}", bundle.diagnostics.first());
        assert_eq!(model.apm_parameters.len(), AMS * APMS_PER_AM);
        model
    };
    c.bench_function("validate 1000 APMs in 100 AMs (1105 documents)", |b| {
        b.iter(run)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
