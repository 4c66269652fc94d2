use super::*;
use crate::testing::run;
use engine::Timestamp;

// The weights of testdata/mlp.onnx and testdata/linear2.onnx, as in
// scripts/make-onnx-model.py. The tests evaluate the models from these in plain f64.
const MLP_W1: [[f64; 3]; 4] = [
    [0.5, -0.25, 1.0],
    [-1.0, 0.75, 0.5],
    [0.25, 0.5, -0.5],
    [1.5, -1.0, 0.25],
];
const MLP_B1: [f64; 4] = [0.1, -0.2, 0.3, 0.0];
const MLP_W2: [f64; 4] = [0.8, -0.6, 1.2, 0.4];
const MLP_B2: f64 = -0.5;
const LIN_W: [[f64; 2]; 2] = [[2.0, -1.0], [0.5, 3.0]];
const LIN_B: [f64; 2] = [1.0, -2.0];

/// sigmoid(W2 · relu(W1 x + b1) + b2), computed naively.
fn mlp(x: [f64; 3]) -> f64 {
    let mut z = MLP_B2;
    for (row, (w1, b1)) in MLP_W1.iter().zip(MLP_B1).enumerate() {
        let h = (w1[0] * x[0] + w1[1] * x[1] + w1[2] * x[2] + b1).max(0.0);
        z += MLP_W2[row] * h;
    }
    1.0 / (1.0 + (-z).exp())
}

fn linear2(x: [f64; 2]) -> [f64; 2] {
    [
        LIN_W[0][0] * x[0] + LIN_W[0][1] * x[1] + LIN_B[0],
        LIN_W[1][0] * x[0] + LIN_W[1][1] * x[1] + LIN_B[1],
    ]
}

fn testdata(file: &str) -> String {
    format!("{}/src/onnx/testdata/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn onnx(params: &Json) -> Result<Onnx, ProcessorError> {
    Onnx::from_context(&ProcessorContext::for_test(params, "sink"))
}

fn mlp_processor(extra: &Json) -> Onnx {
    let mut params = json!({"model": testdata("mlp.onnx"), "features": ["t", "v", "c"]});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    onnx(&params).unwrap()
}

fn obs(source: &str, name: &str, second: i64, value: f64) -> Observation {
    Observation::number(
        Sym::new(source),
        Sym::new(name),
        Timestamp::from_millis(second * 1000),
        value,
    )
}

fn assert_close(got: f64, expected: f64) {
    assert!(
        (got - expected).abs() <= 1e-5,
        "got {got}, expected {expected}"
    );
}

/// (source, name, second, value) of each result.
fn results(emitted: &[Observation]) -> Vec<(String, String, i64, f64)> {
    emitted
        .iter()
        .map(|o| {
            (
                o.source.to_string(),
                o.name.to_string(),
                o.timestamp.as_millis() / 1000,
                o.value.as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn vectors_are_assembled_per_source_across_interleaved_observations() {
    let mut p = mlp_processor(&json!({}));
    let input = [
        obs("a", "t", 1, 1.0),
        obs("b", "t", 1, -2.0),
        obs("a", "v", 2, 2.0),
        obs("b", "v", 2, 0.5),
        obs("a", "other", 2, 99.0), // not a feature: ignored
        obs("b", "c", 3, 4.0),      // b complete: [-2, 0.5, 4]
        obs("a", "c", 3, 3.0),      // a complete: [1, 2, 3]
        obs("a", "t", 4, 0.0),      // a again: [0, 2, 3]
    ];
    let (emitted, rejected) = run(&mut p, &input);
    assert!(rejected.is_empty());
    let got = results(&emitted);
    let expected = [
        ("b", 3, mlp([-2.0, 0.5, 4.0])),
        ("a", 3, mlp([1.0, 2.0, 3.0])),
        ("a", 4, mlp([0.0, 2.0, 3.0])),
    ];
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (g, (source, second, value)) in got.iter().zip(expected) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2), (source, "score", second));
        assert_close(g.3, value);
    }
    // The scores differ enough that a mixed-up vector would show.
    assert!((mlp([-2.0, 0.5, 4.0]) - mlp([1.0, 2.0, 3.0])).abs() > 0.05);

    let a = &emitted[1];
    assert_eq!(a.attribute("model"), Some(&json!("mlp.onnx")));
    assert_eq!(
        a.attribute("features"),
        Some(&json!({"t": 1, "v": 2, "c": 3}))
    );
    assert_eq!(
        serde_json::to_string(a.attribute("features").unwrap()).unwrap(),
        r#"{"t":1,"v":2,"c":3}"#,
        "the vector is in input order"
    );
}

#[test]
fn a_named_trigger_runs_the_model_only_when_that_feature_arrives() {
    let mut p = mlp_processor(&json!({"trigger": "c"}));
    let input = [
        obs("a", "c", 1, 3.0), // incomplete
        obs("a", "t", 2, 1.0),
        obs("a", "v", 3, 2.0), // complete, but not the trigger
        obs("a", "c", 4, 5.0), // runs on [1, 2, 5]
        obs("a", "t", 5, 7.0), // not the trigger
        obs("a", "c", 6, 6.0), // runs on [7, 2, 6]
    ];
    let (emitted, _) = run(&mut p, &input);
    let got = results(&emitted);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].2, 4);
    assert_close(got[0].3, mlp([1.0, 2.0, 5.0]));
    assert_eq!(got[1].2, 6);
    assert_close(got[1].3, mlp([7.0, 2.0, 6.0]));
}

#[test]
fn stale_features_complete_no_vector_until_refreshed() {
    let mut p = mlp_processor(&json!({"maxAge": "10s"}));
    let input = [
        obs("a", "t", 0, 1.0),
        obs("a", "v", 5, 2.0),
        obs("a", "c", 10, 3.0),  // t is 10 s old: still fresh
        obs("a", "c", 11, 4.0),  // t is 11 s old: stale, no run
        obs("a", "v", 12, 2.5),  // still stale
        obs("a", "t", 13, -1.0), // fresh again: [-1, 2.5, 4]
    ];
    let (emitted, rejected) = run(&mut p, &input);
    assert!(rejected.is_empty());
    let got = results(&emitted);
    assert_eq!(
        got.iter().map(|g| g.2).collect::<Vec<_>>(),
        [10, 13],
        "{got:?}"
    );
    assert_close(got[0].3, mlp([1.0, 2.0, 3.0]));
    assert_close(got[1].3, mlp([-1.0, 2.5, 4.0]));
}

#[test]
fn several_output_columns_are_named_by_outputs_or_numbered() {
    let params =
        json!({"model": testdata("linear2.onnx"), "features": "x, y", "outputs": "low,high"});
    let mut p = onnx(&params).unwrap();
    let (emitted, _) = run(&mut p, &[obs("s", "x", 1, 1.5), obs("s", "y", 2, -0.5)]);
    let expected = linear2([1.5, -0.5]);
    let got = results(&emitted);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].1.as_str(), got[1].1.as_str()), ("low", "high"));
    assert_close(got[0].3, expected[0]);
    assert_close(got[1].3, expected[1]);

    let mut p = onnx(&json!({"model": testdata("linear2.onnx"), "features": ["x", "y"]})).unwrap();
    let (emitted, _) = run(&mut p, &[obs("s", "x", 1, 1.5), obs("s", "y", 2, -0.5)]);
    let names: Vec<_> = results(&emitted).into_iter().map(|g| g.1).collect();
    assert_eq!(names, ["score_0", "score_1"]);

    let err = onnx(
        &json!({"model": testdata("linear2.onnx"), "features": ["x", "y"], "outputs": ["only"]}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Config(m) if m.message.contains("outputs") && m.message.contains("gives 2")),
        "{err}"
    );
}

#[test]
fn group_by_all_assembles_one_vector_across_sources() {
    let mut p = mlp_processor(&json!({"groupBy": "all"}));
    let input = [
        obs("oven", "t", 1, 1.0),
        obs("drive", "v", 2, 2.0),
        obs("meter", "c", 3, 3.0),
    ];
    let (emitted, _) = run(&mut p, &input);
    let got = results(&emitted);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "sink");
    assert_close(got[0].3, mlp([1.0, 2.0, 3.0]));
}

#[test]
fn a_model_of_another_input_width_is_a_configuration_error() {
    let err = onnx(&json!({"model": testdata("mlp.onnx"), "features": ["t", "v"]})).unwrap_err();
    let ProcessorError::Config(message) = err else {
        panic!("{err:?}")
    };
    let message = message.message;
    assert!(message.contains("takes 3 values"), "{message}");
    assert!(message.contains("`features` names 2"), "{message}");
}

#[test]
fn a_missing_or_corrupt_model_file_is_a_configuration_error_naming_the_path() {
    let missing = testdata("no-such-model.onnx");
    let err = onnx(&json!({"model": missing, "features": ["t"]})).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Config(m) if m.message.contains(&missing) && m.message.contains("cannot read")),
        "{err}"
    );

    // This source file is not an ONNX model.
    let corrupt = format!("{}/src/onnx/tests.rs", env!("CARGO_MANIFEST_DIR"));
    let err = onnx(&json!({"model": corrupt, "features": ["t"]})).unwrap_err();
    assert!(
        matches!(&err, ProcessorError::Config(m) if m.message.contains(&corrupt) && m.message.contains("not a readable ONNX model")),
        "{err}"
    );
}

#[test]
fn bad_parameters_are_configuration_errors() {
    let model = testdata("mlp.onnx");
    for params in [
        json!({"model": model}),
        json!({"features": ["t", "v", "c"]}),
        json!({"model": model, "features": []}),
        json!({"model": model, "features": ["t", "t", "c"]}),
        json!({"model": model, "features": [1, 2, 3]}),
        json!({"model": model, "features": ["t", "v", "c"], "trigger": "x"}),
        json!({"model": model, "features": ["t", "v", "c"], "groupBy": "name"}),
        json!({"model": model, "features": ["t", "v", "c"], "maxAge": "soon"}),
    ] {
        assert!(
            matches!(onnx(&params), Err(ProcessorError::Config(_))),
            "{params}"
        );
    }
}

#[test]
fn non_number_features_go_to_the_dead_letters() {
    let mut p = mlp_processor(&json!({}));
    let mut text = obs("a", "v", 2, 0.0);
    text.value = Value::Text(Arc::new("high".into()));
    let input = [
        obs("a", "t", 1, 1.0),
        text,
        obs("a", "c", 3, 3.0), // v is still missing: no run
        obs("a", "v", 4, 2.0), // [1, 2, 3]
    ];
    let (emitted, rejected) = run(&mut p, &input);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].observation.name, Sym::new("v"));
    assert!(
        rejected[0].reason.contains("must be a number"),
        "{}",
        rejected[0].reason
    );
    let got = results(&emitted);
    assert_eq!(got.len(), 1);
    assert_close(got[0].3, mlp([1.0, 2.0, 3.0]));
}

#[test]
fn an_older_value_does_not_replace_the_latest() {
    let mut p = mlp_processor(&json!({}));
    let input = [
        obs("a", "t", 5, 1.0),
        obs("a", "t", 4, 9.0), // out of order: rejected, 1.0 kept
        obs("a", "v", 6, 2.0),
        obs("a", "c", 7, 3.0),
    ];
    let (emitted, rejected) = run(&mut p, &input);
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].reason.contains("older"));
    assert_close(results(&emitted)[0].3, mlp([1.0, 2.0, 3.0]));
}

#[test]
fn snapshot_and_restore_keep_the_latest_features_per_source() {
    let params = json!({"maxAge": "1m"});
    let first = [
        obs("a", "t", 1, 1.0),
        obs("a", "v", 2, 2.0),
        obs("b", "t", 2, -1.0),
        obs("b", "v", 3, 0.5),
        obs("b", "c", 4, 2.0),
    ];
    let rest = [obs("a", "c", 5, 3.0), obs("b", "t", 6, 0.25)];

    let mut whole = mlp_processor(&params);
    run(&mut whole, &first);
    let expected = results(&run(&mut whole, &rest).0);

    let mut before = mlp_processor(&params);
    run(&mut before, &first);
    let state = before.snapshot().unwrap();
    // Through text, as a checkpoint stores it.
    let state: Json = serde_json::from_str(&state.to_string()).unwrap();
    let mut after = mlp_processor(&params);
    after.restore(state).unwrap();
    let got = results(&run(&mut after, &rest).0);

    assert_eq!(got, expected);
    assert_eq!(got.len(), 2);
    assert_close(got[0].3, mlp([1.0, 2.0, 3.0]));
    assert_close(got[1].3, mlp([0.25, 0.5, 2.0]));

    // A state of other features is refused.
    let mut other =
        onnx(&json!({"model": testdata("mlp.onnx"), "features": ["x", "y", "z"]})).unwrap();
    assert!(other.restore(before.snapshot().unwrap()).is_err());
}

#[test]
fn the_registry_lists_its_parameters_and_creates_it() {
    let registration = engine::processor::registration(KIND).unwrap();
    let params: Vec<String> = (registration.parameters)()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        params,
        [
            "model",
            "features",
            "outputName",
            "outputs",
            "groupBy",
            "maxAge",
            "trigger"
        ]
    );
    let ctx = ProcessorContext::for_test(
        &json!({"model": testdata("mlp.onnx"), "features": ["t", "v", "c"]}),
        "sink",
    );
    assert!((registration.factory)(&ctx).is_ok());
}
