//! Property tests: no input panics the readers or the validator, and conversion between
//! the syntaxes is lossless for any value the models can hold.

#![allow(
    clippy::unwrap_used,
    reason = "a test or benchmark fails loudly on the first surprise"
)]

use std::path::PathBuf;

use manifests::bundle::{Bundle, Syntax};
use manifests::node::Node;
use manifests::{EntityKind, Options};
use proptest::prelude::*;
use serde_json::Value;

fn example_texts() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/power-consumption");
    let mut files = Vec::new();
    manifests::bundle::document_files(&dir, &mut files).unwrap();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Loads `text` as a document and validates it, checking every diagnostic is placed.
fn load_and_check(path: &str, text: &str) {
    let mut bundle = Bundle::default();
    let syntax = Syntax::from_path(path.as_ref()).unwrap_or(Syntax::Json);
    bundle.add_document(PathBuf::from(path), text.to_owned(), syntax, None);
    let _ = manifests::validate::validate(&mut bundle, &Options::default());
    for d in &bundle.diagnostics {
        assert!(d.position.is_some(), "unplaced diagnostic {d:?}");
        let rendered = manifests::diagnostic::HumanRenderer::new(false).render(
            d,
            bundle.file_for(d).map(manifests::bundle::SourceFile::view),
        );
        assert!(rendered.contains(d.code));
    }
}

/// One random edit of a text: delete, duplicate or replace a range, or insert characters.
fn mutate(text: &str, op: u8, a: usize, b: usize, insert: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return insert.to_owned();
    }
    let (i, j) = {
        let i = a % chars.len();
        let j = (i + b % 16).min(chars.len());
        (i, j)
    };
    let mut out: Vec<char> = chars[..i].to_vec();
    match op % 4 {
        0 => out.extend(&chars[j..]),
        1 => {
            out.extend(&chars[i..j]);
            out.extend(&chars[i..]);
        }
        2 => {
            out.extend(insert.chars());
            out.extend(&chars[j..]);
        }
        _ => {
            out.extend(insert.chars());
            out.extend(&chars[i..]);
        }
    }
    out.into_iter().collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = "[a-zA-Z_][a-zA-Z0-9_.-]{0,8}".prop_filter("not reserved", |k| {
        !k.to_ascii_lowercase().starts_with("xml")
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[ \t\r\n]{0,3}[a-z ]{0,5}[ \t\r\n]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_readers(text in "\\PC{0,200}") {
        let _ = manifests::json::parse(&text);
        let _ = manifests::json::parse_stream(&text);
        let _ = manifests::xml::parse(&text);
        load_and_check("fuzz.json", &text);
        load_and_check("fuzz.xml", &text);
    }

    #[test]
    fn markup_like_text_never_panics_the_readers(text in "[<>/a-z =\"{}\\[\\]:,&;#!?-]{0,120}") {
        load_and_check("fuzz.json", &text);
        load_and_check("fuzz.xml", &text);
    }

    #[test]
    fn mutated_manifests_never_panic_the_validator(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), "\\PC{0,6}"), 1..4),
    ) {
        let examples = example_texts();
        let (path, text) = &examples[which.index(examples.len())];
        let mut mutated = text.clone();
        for (op, a, b, insert) in &edits {
            mutated = mutate(&mutated, *op, *a, *b, insert);
        }
        load_and_check(&path.to_string_lossy(), &mutated);
    }

    #[test]
    fn any_parameter_value_survives_json_to_xml_to_json(value in json_value()) {
        let doc = serde_json::json!({
            "id": "dsm-1",
            "dataSourceDefinitionReferenceID": "dsd-1",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "p", "value": value}]},
        });
        let node = Node::from_json(&doc);
        let shape = manifests::schema::schemas().kind_shape(EntityKind::DataSourceManifest);
        let Ok(xml) = manifests::mapping::node_to_xml(&node, "dataSourceManifest", shape) else {
            // Only text XML 1.0 cannot hold is refused.
            let has_control = doc.to_string().chars().any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'));
            prop_assert!(has_control || doc.to_string().contains("\\u"), "{doc}");
            return Ok(());
        };
        let root = manifests::xml::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        let back = manifests::mapping::xml_to_node(&root, shape).map_err(|(_, e)| TestCaseError::fail(format!("{e:?}\n{xml}")))?;
        prop_assert_eq!(back.to_json(), doc, "{}", xml);
        // And back again to the same XML text.
        let again = manifests::mapping::node_to_xml(&back, "dataSourceManifest", shape).unwrap();
        prop_assert_eq!(again, xml);
    }
}
