//! Helpers for the detection tests, and what every detection kind must do alike.

use engine::processor::{ProcessorContext, registration};
use engine::{Observation, Processor, Sym, Timestamp, Value};
use serde_json::{Value as Json, json};

use crate::testing::run;

/// Time `seconds` after the epoch.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(seconds * 1000)
}

/// Observations named `name` from source `s` at the given (seconds, value).
pub fn series(name: &str, points: &[(i64, f64)]) -> Vec<Observation> {
    points
        .iter()
        .map(|&(t, x)| Observation::number(Sym::new("s"), Sym::new(name), at(t), x))
        .collect()
}

/// `n` readings one a second: `level` plus reproducible noise uniform in ±`amplitude`.
pub fn noisy(n: usize, level: f64, amplitude: f64) -> Vec<(i64, f64)> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|t| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let u = (seed >> 11) as f64 / (1_u64 << 53) as f64;
            (t as i64, level + amplitude * (2.0 * u - 1.0))
        })
        .collect()
}

/// Readings at irregular times (seconds): mostly 1–4 s apart, some at the same time as
/// the one before, and a 100 s gap at the middle; values are `noisy(n, level, amplitude)`'s.
pub fn irregular(n: usize, level: f64, amplitude: f64) -> Vec<(i64, f64)> {
    let steps = [1, 3, 0, 2, 1, 4, 1, 0, 2, 3, 1, 1];
    let mut t = 0;
    noisy(n, level, amplitude)
        .into_iter()
        .enumerate()
        .map(|(i, (_, x))| {
            if i > 0 {
                t += if i == n / 2 {
                    100
                } else {
                    steps[i % steps.len()]
                };
            }
            (t, x)
        })
        .collect()
}

/// The window of `data[i]` by time, computed naively: the values at t' with
/// `t − window <= t' < t` among those before it, the last `count` of them.
pub fn by_time(data: &[(i64, f64)], i: usize, window: i64, count: usize) -> Vec<f64> {
    let t = data[i].0;
    let inside: Vec<f64> = data[..i]
        .iter()
        .filter(|(u, _)| t - window <= *u && *u < t)
        .map(|d| d.1)
        .collect();
    inside[inside.len().saturating_sub(count)..].to_vec()
}

fn create(kind: &str, params: &Json) -> Box<dyn Processor> {
    let ctx = ProcessorContext::for_test(params, "sink");
    (registration(kind).expect("registered").factory)(&ctx).expect("created")
}

/// Feeds `input[..cut]` to a processor, snapshots it (through JSON text), restores the
/// snapshot into a fresh one, and checks both give the same results for `input[cut..]`
/// — results that a processor that saw nothing would not give.
pub fn restored_gives_the_same(kind: &str, params: &Json, input: &[Observation], cut: usize) {
    let mut original = create(kind, params);
    let _ = run(original.as_mut(), &input[..cut]);
    let text = original.snapshot().expect("snapshot").to_string();
    let mut restored = create(kind, params);
    restored
        .restore(serde_json::from_str(&text).expect("JSON"))
        .expect("restores");
    assert_eq!(
        restored.snapshot().expect("snapshot").to_string(),
        text,
        "{kind}: the restored state is the saved one"
    );
    let (expected, _) = run(original.as_mut(), &input[cut..]);
    let (got, _) = run(restored.as_mut(), &input[cut..]);
    assert!(!expected.is_empty(), "{kind}: the test emits after the cut");
    assert_eq!(got, expected, "{kind}");
    let (fresh, _) = run(create(kind, params).as_mut(), &input[cut..]);
    assert_ne!(fresh, expected, "{kind}: the state makes a difference");
}

/// Each kind with parameters it can be created with.
fn kinds() -> Vec<(&'static str, Json)> {
    vec![
        ("threshold", json!({"threshold": 1})),
        ("zscore", json!({})),
        ("iqr", json!({})),
        ("change", json!({})),
        ("ewma", json!({})),
    ]
}

#[test]
fn every_kind_is_an_analytics_processor_creatable_from_its_definitions_defaults() {
    for (kind, required) in kinds() {
        let r = registration(kind).expect("registered");
        assert_eq!(r.category, manifests::model::Category::Analytics, "{kind}");
        // The declared defaults, plus the required parameters, make a working processor.
        let mut params = required.as_object().cloned().unwrap_or_default();
        for p in (r.parameters)() {
            if let Some(d) = p.default_value {
                params.entry(p.name).or_insert(d);
            } else {
                assert!(
                    !p.required || params.contains_key(&p.name),
                    "{kind}.{}",
                    p.name
                );
            }
        }
        let ctx = ProcessorContext::for_test(&Json::Object(params), "sink");
        assert!((r.factory)(&ctx).is_ok(), "{kind}");
    }
}

#[test]
fn every_kind_sends_text_and_late_observations_to_the_dead_letters() {
    for (kind, params) in kinds() {
        let mut p = create(kind, &params);
        let mut input = series("x", &[(10, 1.0), (11, 1.0), (5, 1.0), (12, 1.0)]);
        input[1].value = Value::Text(std::sync::Arc::new("on".into()));
        let (_, rejected) = run(p.as_mut(), &input);
        assert_eq!(rejected.len(), 2, "{kind}");
        assert!(
            rejected[0].reason.contains("not a number"),
            "{kind}: {}",
            rejected[0].reason
        );
        assert!(
            rejected[1].reason.contains("out of order"),
            "{kind}: {}",
            rejected[1].reason
        );
        assert!(
            rejected[1].reason.starts_with(kind),
            "{kind}: {}",
            rejected[1].reason
        );
    }
}

#[test]
fn every_kind_reads_only_its_observation_name() {
    for (kind, params) in kinds() {
        let mut params = params.as_object().cloned().unwrap_or_default();
        params.insert("observationName".into(), json!("power"));
        let mut p = create(kind, &Json::Object(params));
        let mut input = series("temp", &[(0, 2.0)]);
        input[0].value = Value::Text(std::sync::Arc::new("on".into()));
        let (out, rejected) = run(p.as_mut(), &input);
        assert!(out.is_empty() && rejected.is_empty(), "{kind}");
    }
}

#[test]
fn a_snapshot_of_another_shape_is_refused() {
    for (kind, params) in kinds() {
        let mut p = create(kind, &params);
        assert!(p.restore(json!({"windows": []})).is_err(), "{kind}");
        assert!(
            p.restore(json!({"keys": [{"name": "x", "source": "s", "state": 3}]}))
                .is_err(),
            "{kind}"
        );
    }
}

/// Two product variants on one station, interleaved, with different normal assembly
/// times: mixed, their spread hides an outlier; keyed by the `productType` attribute, each
/// variant is judged against its own history and the outlier is flagged, alone; the key
/// survives a snapshot.
#[test]
fn key_field_keeps_one_state_per_attribute_value() {
    let noise = noisy(120, 0.0, 5.0);
    let input: Vec<Observation> = noise
        .iter()
        .map(|&(t, e)| {
            let variant = if t % 2 == 0 { "A" } else { "B" };
            let base = if variant == "A" { 100.0 } else { 300.0 };
            let value = if t == 101 { 400.0 } else { base + e };
            let mut o =
                Observation::number(Sym::new("st-1"), Sym::new("assemblyTime"), at(t), value);
            let mut attributes = serde_json::Map::new();
            attributes.insert("productType".into(), json!(variant));
            o.attributes = Some(std::sync::Arc::new(attributes));
            o
        })
        .collect();
    let flagged = |params: &Json| -> Vec<(i64, Option<String>)> {
        let (out, rejected) = run(create("zscore", params).as_mut(), &input);
        assert!(rejected.is_empty(), "{rejected:?}");
        out.iter()
            .map(|o| {
                (
                    o.timestamp.as_millis() / 1000,
                    o.attribute("productType")
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                )
            })
            .collect()
    };
    let mixed = flagged(&json!({"count": 20}));
    assert!(
        mixed.is_empty(),
        "mixed, the variants' spread hides the outlier: {mixed:?}"
    );
    let keyed = flagged(&json!({"count": 20, "keyField": "productType"}));
    assert_eq!(
        keyed,
        vec![(101, Some("B".to_owned()))],
        "only the real outlier"
    );
    restored_gives_the_same(
        "zscore",
        &json!({"count": 20, "keyField": "productType"}),
        &input,
        95,
    );
}
