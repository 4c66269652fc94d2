//! The manifest DSL end to end: the paper's documents, the pilot-line example in both
//! syntaxes, lossless conversion, and a corpus of broken documents.

#![allow(
    clippy::unwrap_used,
    reason = "a test or benchmark fails loudly on the first surprise"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use manifests::bundle::Bundle;
use manifests::{Entity, EntityKind, Options, Severity, Syntax};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validate(paths: &[PathBuf]) -> (Bundle, manifests::Model) {
    manifests::load_and_validate(paths, &Options::default()).expect("paths are readable")
}

fn codes(bundle: &Bundle) -> Vec<(Severity, &'static str)> {
    bundle
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.code))
        .collect()
}

#[test]
fn every_table_of_the_paper_parses_as_is() {
    let dir = root().join("tests/fixtures/paper");
    let expected = [
        ("table-1-data-interface.json", EntityKind::DataInterface),
        (
            "table-2-data-source-definition.json",
            EntityKind::DataSourceDefinition,
        ),
        ("table-3-data-kind.json", EntityKind::DataKind),
        (
            "table-4-data-source-manifest.json",
            EntityKind::DataSourceManifest,
        ),
        (
            "table-5-analytics-processor-definition.json",
            EntityKind::AnalyticsProcessorDefinition,
        ),
        (
            "table-6-analytics-manifest.json",
            EntityKind::AnalyticsManifest,
        ),
        ("table-7-live-data-sets.json", EntityKind::LiveDataSet),
    ];
    for (file, kind) in expected {
        let bundle = Bundle::load(&[dir.join(file)]).unwrap();
        assert!(
            bundle.diagnostics.is_empty(),
            "{file}: {:?}",
            bundle.diagnostics
        );
        assert!(!bundle.entities.is_empty(), "{file}");
        for e in &bundle.entities {
            assert_eq!(e.entity.kind(), kind, "{file}");
        }
    }
    // Validated together, only what the tables leave out is reported: the gateway and the
    // two DSMs Table 6 names are not in the paper, and Table 4's password is plain text.
    let (bundle, model) = validate(&[dir]);
    let mut found = codes(&bundle);
    found.sort();
    assert_eq!(
        found,
        [
            (Severity::Error, "dangling-reference"),
            (Severity::Error, "dangling-reference"),
            (Severity::Error, "dangling-reference"),
            (Severity::Warning, "plain-text-secret"),
        ]
    );
    // Table 6 has no id: it is given one, the same every time.
    let am_ids: Vec<&String> = model.analytics_manifests.keys().collect();
    assert_eq!(am_ids.len(), 1);
    let (_, again) = validate(&[root().join("tests/fixtures/paper")]);
    assert_eq!(again.analytics_manifests.keys().collect::<Vec<_>>(), am_ids);
    // Table 7 is three data sets written one after another, indented with em spaces.
    let values: Vec<&Value> = model
        .live_data_sets
        .iter()
        .flat_map(|s| s.observation.iter().map(|o| &o.value))
        .collect();
    assert_eq!(
        values,
        [&Value::from(210), &Value::from(215), &Value::from(205)]
    );
    // Table 1's defaults are applied to Table 4's values, typed as the interface says.
    let params = &model.dsm_parameters["7efa7286-f689-4f51-980c-8e270a1c6d7d"];
    assert_eq!(params.get("port"), Some(&Value::from(1883)));
    assert_eq!(
        params.get_str("topic").as_deref(),
        Some("PhoenixIB/TotalRealEnergy")
    );
    assert!(params.is_secret("password"));
}

#[test]
fn the_pilot_line_example_is_valid_in_json_in_xml_and_both_together() {
    let example = root().join("examples/power-consumption");
    for path in [example.join("json"), example.join("xml"), example.clone()] {
        let (bundle, model) = validate(std::slice::from_ref(&path));
        assert!(
            bundle.diagnostics.is_empty(),
            "{}: {:#?}",
            path.display(),
            bundle.diagnostics
        );
        assert_eq!(model.edge_gateways.len(), 3);
        assert_eq!(
            model.analytics_manifests.len(),
            4,
            "three edge AMs and one global AM"
        );
        let edge = model
            .analytics_manifests
            .values()
            .filter(|am| am.is_edge())
            .count();
        assert_eq!(edge, 3);
        let apms: usize = model
            .analytics_manifests
            .values()
            .map(|am| am.apms().len())
            .sum();
        assert_eq!(apms, 3 * 4 + 3);
        // Defaults from the processor definition are applied.
        let avg = model
            .analytics_manifests
            .values()
            .find_map(|am| model.parameters_of(Some(&am.id), "apm-ib1-hourly-power"))
            .expect("the hourly average's parameters");
        assert_eq!(avg.get_str("groupBy").as_deref(), Some("name+source"));
        assert_eq!(
            avg.get_duration("window"),
            Some(std::time::Duration::from_secs(3600))
        );
    }
}

fn documents(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    manifests::bundle::document_files(dir, &mut files).unwrap();
    files
}

fn json_of(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let json = manifests::convert::convert(path, &text, Syntax::Json).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn conversion_is_lossless_both_ways_for_every_example_document() {
    let example = root().join("examples/power-consumption");
    let json_dir = example.join("json");
    let xml_dir = example.join("xml");
    let json_files = documents(&json_dir);
    assert_eq!(json_files.len(), documents(&xml_dir).len());
    for json_path in json_files {
        let relative = json_path.strip_prefix(&json_dir).unwrap();
        let xml_path = xml_dir.join(relative).with_extension("xml");
        let json_text = std::fs::read_to_string(&json_path).unwrap();
        let original: Value = serde_json::from_str(&json_text).unwrap();
        // JSON → XML gives the committed XML rendition...
        let xml = manifests::convert::convert(&json_path, &json_text, Syntax::Xml).unwrap();
        let committed = std::fs::read_to_string(&xml_path).unwrap();
        assert_eq!(
            xml,
            committed,
            "{} is not the XML of {}",
            xml_path.display(),
            json_path.display()
        );
        // ... XML → JSON gives the same JSON value, numbers and strings alike ...
        assert_eq!(json_of(&xml_path), original, "{}", xml_path.display());
        // ... and XML → JSON → XML gives the same document.
        let back_json = manifests::convert::convert(&xml_path, &committed, Syntax::Json).unwrap();
        let back_xml =
            manifests::convert::convert(Path::new("x.json"), &back_json, Syntax::Xml).unwrap();
        assert_eq!(back_xml, committed);
    }
}

#[test]
fn the_papers_documents_convert_losslessly() {
    for path in documents(&root().join("tests/fixtures/paper")) {
        if path.ends_with("table-7-live-data-sets.json") {
            continue; // three documents in one file: XML holds one document per file
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let xml = manifests::convert::convert(&path, &text, Syntax::Xml).unwrap();
        let back = manifests::convert::convert(Path::new("doc.xml"), &xml, Syntax::Json).unwrap();
        let original: Value =
            serde_json::from_str(&manifests::convert::convert(&path, &text, Syntax::Json).unwrap())
                .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&back).unwrap(),
            original,
            "{}",
            path.display()
        );
    }
}

#[test]
fn json_and_xml_renditions_read_into_identical_entities() {
    let example = root().join("examples/power-consumption");
    let json = Bundle::load(&[example.join("json")]).unwrap();
    let xml = Bundle::load(&[example.join("xml")]).unwrap();
    let by_id = |b: &Bundle| -> BTreeMap<(EntityKind, String), Entity> {
        b.entities
            .iter()
            .map(|e| {
                (
                    (e.entity.kind(), e.entity.id().unwrap().to_owned()),
                    (*e.entity).clone(),
                )
            })
            .collect()
    };
    assert_eq!(by_id(&json), by_id(&xml));
}

#[test]
fn broken_documents_yield_exactly_the_expected_diagnostics() {
    let dir = root().join("tests/fixtures/broken");
    let spec = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in spec
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (file, rest) = line.split_once(' ').unwrap();
        expected
            .entry(file.to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    assert_eq!(
        expected.len(),
        documents(&dir).len(),
        "every broken document has expectations"
    );
    for (file, mut want) in expected {
        let (bundle, _) = validate(&[dir.join(&file)]);
        let mut got: Vec<String> = bundle
            .diagnostics
            .iter()
            .map(|d| {
                assert_eq!(d.file.as_deref(), Some(dir.join(&file).as_path()));
                let p = d.position.expect("placed");
                let severity = if d.is_error() { "error" } else { "warning" };
                format!("{severity} {} {}:{}", d.code, p.line, p.column)
            })
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{file}: {:#?}", bundle.diagnostics);
    }
}

#[test]
fn hints_name_the_near_miss() {
    let dir = root().join("tests/fixtures/broken");
    let hint_of = |file: &str, code: &str| -> Vec<String> {
        let (bundle, _) = validate(&[dir.join(file)]);
        bundle
            .diagnostics
            .iter()
            .filter(|d| d.code == code)
            .filter_map(|d| d.hint.clone())
            .collect()
    };
    assert!(
        hint_of("dangling-reference.json", "dangling-reference")
            .contains(&"did you mean `dk-power`?".to_owned())
    );
    assert_eq!(
        hint_of("parameters.json", "unknown-parameter"),
        ["did you mean `threshold`?"]
    );
    assert_eq!(
        hint_of("parameters.json", "parameter-value"),
        ["did you mean `GE`?"]
    );
    assert_eq!(
        hint_of("structure.json", "unknown-field"),
        ["did you mean `macAddress`?"]
    );
    assert_eq!(
        hint_of("wrong-root.xml", "unknown-root-element"),
        ["did you mean `dataInterface`?"]
    );
    assert_eq!(
        hint_of("unknown-kind.json", "unknown-kind"),
        ["did you mean `DataInterface`?"]
    );
    let cycle: Vec<String> = {
        let (bundle, _) = validate(&[dir.join("cycle.json")]);
        bundle
            .diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect()
    };
    assert_eq!(
        cycle,
        ["processors form a cycle: `second` → `third` → `second`"]
    );
}

#[test]
fn a_plain_text_secret_is_flagged_but_never_shown() {
    let path = root().join("tests/fixtures/broken/plain-text-password.json");
    let (bundle, model) = validate(std::slice::from_ref(&path));
    let renderer = manifests::diagnostic::HumanRenderer::new(false);
    for d in &bundle.diagnostics {
        let shown = renderer.render(
            d,
            bundle.file_for(d).map(manifests::bundle::SourceFile::view),
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!d.to_string().contains("hunter2"));
        assert!(!serde_json::to_string(d).unwrap().contains("hunter2"));
    }
    assert_eq!(
        model.dsm_parameters["dsm"].to_redacted_json()["password"],
        "********"
    );
    assert_eq!(
        model.dsm_parameters["dsm-ok"].to_redacted_json()["password"],
        "${env:MQTT_PASSWORD}"
    );
}

/// Processors of two analytics manifests may share an id (a manifest copied for another
/// gateway, say): each keeps its own parameters.
#[test]
fn processors_of_two_manifests_sharing_an_id_keep_their_own_parameters() {
    let example = root().join("examples/power-consumption/json");
    let (mut bundle, _) = validate(std::slice::from_ref(&example));
    let mut copy: Value = serde_json::from_str(
        &std::fs::read_to_string(example.join("analytics-manifests/ib3-edge.json")).unwrap(),
    )
    .unwrap();
    copy["id"] = "am-ib3-edge-by-minute".into();
    copy["analyticsProcessors"]["apm"][0]["parameters"]["parameter"][0]["value"] = "PT1M".into();
    bundle.add_document(
        "copy.json".into(),
        copy.to_string(),
        Syntax::Json,
        Some(EntityKind::AnalyticsManifest),
    );
    let model = manifests::validate::validate(&mut bundle, &Options::default());
    assert!(!bundle.has_errors(), "{:#?}", bundle.diagnostics);
    let window = |am: &str| {
        model
            .parameters_of(Some(am), "apm-ib3-hourly-power")
            .and_then(|p| p.get_duration("window"))
    };
    assert_eq!(
        window("am-ib3-edge"),
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(
        window("am-ib3-edge-by-minute"),
        Some(std::time::Duration::from_secs(60))
    );
}
