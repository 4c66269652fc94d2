//! Tests with real programs: small Python scripts written to temporary files, run by
//! `python3` as an allowed program.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine::external::{ExternalConfig, ExternalProgram};
use engine::processor::{ProcessorContext, Rejected};
use engine::{Observation, Sym, Timestamp, Value};
use serde_json::{Map, json};

use super::*;
use crate::testing::{flush, numbers, run, watermark};

/// The protocol loop shared by the scripts: `answer(request)` returns the answer object.
const LOOP: &str = r#"
import json, sys
def main(answer):
    for line in sys.stdin:
        reply = answer(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
"#;

/// Writes `body` (Python, after [`LOOP`]) to a file in `dir`; the program running it.
fn script(dir: &Path, name: &str, body: &str) -> ExternalProgram {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, format!("{LOOP}\n{body}\n")).unwrap();
    ExternalProgram {
        name: name.to_owned(),
        argv: vec!["python3".into(), path.to_string_lossy().into_owned()],
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
    }
}

fn context(programs: Vec<ExternalProgram>, params: serde_json::Value) -> ProcessorContext {
    let mut ctx = ProcessorContext::for_test(&params, "sink");
    ctx.external = ExternalConfig { programs };
    ctx
}

fn external(program: ExternalProgram, mut params: serde_json::Value) -> External {
    params["program"] = json!(program.name);
    External::from_context(&context(vec![program], params)).unwrap()
}

fn values(emitted: &[Observation]) -> Vec<f64> {
    emitted.iter().map(|o| o.value.as_f64().unwrap()).collect()
}

fn reasons(rejected: &[Rejected]) -> Vec<&str> {
    rejected.iter().map(|r| r.reason.as_str()).collect()
}

const SCALER: &str = r#"
seen = 0
def answer(req):
    global seen
    if "observations" in req:
        emit, reject = [], []
        for i, o in enumerate(req["observations"]):
            if not isinstance(o["value"], (int, float)):
                reject.append({"index": i, "reason": "not a number: %r" % (o["value"],)})
                continue
            seen += 1
            emit.append({
                "dataSourceManifestReferenceID": o["dataSourceManifestReferenceID"],
                "name": o["name"] + "_scaled",
                "timestamp": o["timestamp"],
                "value": o["value"] * 2.5 + 1,
                "unit": o.get("unit", "none"),
            })
        return {"emit": emit, "reject": reject}
    if "watermark" in req:
        return {"emit": [{"name": "seen", "timestamp": req["watermark"], "value": seen}]}
    if req.get("flush"):
        return {"emit": [{"name": "flushed", "timestamp": "2018-05-24T16:00:00Z", "value": seen}]}
    return {}
main(answer)
"#;

#[test]
fn observations_make_the_round_trip_through_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = external(script(dir.path(), "scaler", SCALER), json!({}));
    let mut input = numbers(&[1.5, 2.0, -3.25, 1883.0]);
    let mut attrs = Map::new();
    attrs.insert("unit".into(), json!("W"));
    input[1].attributes = Some(Arc::new(attrs));
    input[2].source = Sym::new("box-2");
    input[3].value = Value::Text(Arc::new("on".into()));
    let (emitted, rejected) = run(&mut p, &input);

    // Expected: computed here, from the inputs.
    let expected: Vec<f64> = input[..3]
        .iter()
        .map(|o| o.value.as_f64().unwrap() * 2.5 + 1.0)
        .collect();
    assert_eq!(values(&emitted), expected);
    for (o, i) in emitted.iter().zip(&input) {
        assert_eq!(o.name, Sym::new(&format!("{}_scaled", i.name)));
        assert_eq!(o.source, i.source, "the program kept the source");
        assert_eq!(o.timestamp, i.timestamp, "and the event time");
    }
    assert_eq!(
        emitted[1].attribute("unit"),
        Some(&json!("W")),
        "attributes travel"
    );
    assert_eq!(emitted[0].attribute("unit"), Some(&json!("none")));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].observation, input[3]);
    assert!(
        rejected[0].reason.contains("scaler") && rejected[0].reason.contains("not a number: 'on'"),
        "{}",
        rejected[0].reason
    );

    let w = Timestamp::from_millis(1_527_174_000_000);
    let after = watermark(&mut p, w);
    assert_eq!(values(&after), [3.0]);
    assert_eq!(
        after[0].timestamp, w,
        "the watermark reached the program as RFC 3339"
    );
    assert_eq!(
        after[0].source,
        Sym::new("sink"),
        "no source given: the sink's"
    );
    assert!(
        watermark(&mut p, Timestamp::MAX).is_empty(),
        "+infinity is not sent"
    );

    let last = flush(&mut p);
    assert_eq!(values(&last), [3.0]);
    assert_eq!(last[0].name, Sym::new("flushed"));
    assert!(p.running.is_none(), "the program ended with the input");
    assert_eq!(
        p.snapshot().unwrap(),
        Json::Null,
        "the program owns the state"
    );
}

#[test]
fn a_crash_sends_its_batch_to_the_dead_letters_and_the_program_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let crasher = script(
        dir.path(),
        "crasher",
        r#"
def answer(req):
    values = [o["value"] for o in req.get("observations", [])]
    if 13 in values:
        sys.exit(3)
    return {"emit": [{"name": "x", "timestamp": "2018-05-24T15:00:00Z", "value": v * v} for v in values]}
main(answer)
"#,
    );
    let mut p = external(crasher, json!({}));
    assert_eq!(values(&run(&mut p, &numbers(&[2.0, 3.0])).0), [4.0, 9.0]);
    let first = p.running.as_ref().unwrap().child.id();

    let crashing = numbers(&[12.0, 13.0]);
    let (emitted, rejected) = run(&mut p, &crashing);
    assert!(emitted.is_empty());
    assert_eq!(
        rejected
            .iter()
            .map(|r| r.observation.clone())
            .collect::<Vec<_>>(),
        crashing,
        "the whole batch"
    );
    assert!(
        rejected[0].reason.contains("closed its output")
            && rejected[0].reason.contains("exit status: 3"),
        "{}",
        rejected[0].reason
    );

    assert_eq!(values(&run(&mut p, &numbers(&[4.0])).0), [16.0]);
    assert_ne!(
        p.running.as_ref().unwrap().child.id(),
        first,
        "a new process"
    );
}

#[test]
fn a_program_that_hangs_times_out_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = script(
        dir.path(),
        "sleeper",
        r#"
import time
def answer(req):
    values = [o["value"] for o in req.get("observations", [])]
    if 7 in values:
        time.sleep(60)
    return {"emit": [{"name": "x", "timestamp": "2018-05-24T15:00:00Z", "value": -v} for v in values]}
main(answer)
"#,
    );
    let mut p = external(sleeper, json!({"timeout": "400ms"}));
    let started = Instant::now();
    let (emitted, rejected) = run(&mut p, &numbers(&[7.0]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it did not wait a minute"
    );
    assert!(emitted.is_empty());
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("did not answer within 400ms")
            && rejected[0].reason.contains("killed"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(values(&run(&mut p, &numbers(&[5.0, 6.0])).0), [-5.0, -6.0]);
}

#[test]
fn garbage_answers_send_the_batch_to_the_dead_letters_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let liar = script(
        dir.path(),
        "liar",
        r#"
def answer(req):
    values = [o["value"] for o in req.get("observations", [])]
    if 5 in values:
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        return {"emit": []}
    if 6 in values:
        return {"emit": [], "junk": "x" * 1000}
    if 8 in values:
        return {"reject": [{"index": 3, "reason": "no such"}]}
    return {"emit": [{"name": "x", "timestamp": "2018-05-24T15:00:00Z", "value": v + 1} for v in values]}
main(answer)
"#,
    );
    let mut p = external(liar, json!({}));
    let (emitted, rejected) = run(&mut p, &numbers(&[5.0, 1.0]));
    assert!(emitted.is_empty());
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected[0].reason.contains("not JSON") && rejected[0].reason.contains("this is not json"),
        "{}",
        rejected[0].reason
    );
    // The program was out of step (a second line is queued): restarted, it answers right.
    assert_eq!(values(&run(&mut p, &numbers(&[1.0, 2.0])).0), [2.0, 3.0]);

    let (_, rejected) = run(&mut p, &numbers(&[6.0]));
    let reason = &rejected[0].reason;
    assert!(reason.contains("unknown key \"junk\""), "{reason}");
    assert!(
        reason.contains("bytes)") && reason.len() < 600,
        "the line is truncated: {reason}"
    );

    let (_, rejected) = run(&mut p, &numbers(&[8.0]));
    assert!(
        reasons(&rejected)[0].contains("index 3 is outside the batch of 1"),
        "{rejected:?}"
    );
    assert_eq!(values(&run(&mut p, &numbers(&[9.0])).0), [10.0]);
}

#[test]
fn beyond_the_restart_budget_the_instance_fails() {
    let dir = tempfile::tempdir().unwrap();
    let quitter = script(dir.path(), "quitter", "sys.exit(1)");
    let mut p = external(quitter, json!({"maxRestarts": 2, "restartWindow": "PT1M"}));
    for _ in 0..2 {
        let (_, rejected) = run(&mut p, &numbers(&[1.0]));
        assert!(
            reasons(&rejected)[0].contains("exit status: 1"),
            "{rejected:?}"
        );
    }
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    let failed = p.process(&numbers(&[1.0]), &mut out);
    match failed {
        Err(ProcessorError::Failed {
            message: reason, ..
        }) => {
            assert!(
                reason.contains("giving up") && reason.contains("quitter"),
                "{reason}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        rejected.len(),
        1,
        "the last batch went to the dead letters too"
    );
}

#[test]
fn only_configured_programs_run_and_the_error_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut secret = script(dir.path(), "scorer", SCALER);
    secret.env.insert("API_KEY".into(), "s3cret-value".into());
    let other = script(dir.path(), "other", SCALER);
    let err = External::from_context(&context(
        vec![secret, other],
        json!({"program": "python3 -c 'import os'"}),
    ))
    .unwrap_err();
    let ProcessorError::Config(message) = err else {
        panic!("{err:?}")
    };
    let message = message.message;
    assert!(message.contains("allowed: scorer, other"), "{message}");
    assert!(
        !message.contains("s3cret") && !message.contains(".py"),
        "neither env nor argv are shown: {message}"
    );

    let none = External::from_context(&context(vec![], json!({"program": "scorer"}))).unwrap_err();
    assert!(none.to_string().contains("[[external.programs]]"), "{none}");
    assert!(matches!(
        External::from_context(&context(vec![], json!({}))),
        Err(ProcessorError::Config(_))
    ));
}

#[test]
fn bad_parameters_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "p", SCALER);
    for params in [
        json!({"program": "p", "timeout": "soon"}),
        json!({"program": "p", "timeout": "PT0S"}),
        json!({"program": "p", "maxRestarts": -1}),
        json!({"program": "p", "maxRestarts": "many"}),
        json!({"program": "p", "restartWindow": "1 month"}),
    ] {
        assert!(
            matches!(
                External::from_context(&context(vec![program.clone()], params.clone())),
                Err(ProcessorError::Config(_))
            ),
            "{params}"
        );
    }
    let mut configured = program;
    configured.timeout = Some(Duration::from_secs(3));
    let p = External::from_context(&context(vec![configured.clone()], json!({"program": "p"})))
        .unwrap();
    assert_eq!(p.timeout, Duration::from_secs(3), "the configured timeout");
    let p = External::from_context(&context(
        vec![configured],
        json!({"program": "p", "timeout": "PT1S"}),
    ))
    .unwrap();
    assert_eq!(p.timeout, Duration::from_secs(1), "the manifest's wins");
}

#[test]
fn arguments_are_passed_literally_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let mut echo = script(
        dir.path(),
        "echo-args",
        r#"
import os
def answer(req):
    return {"emit": [{"name": "arg", "timestamp": "2018-05-24T15:00:00Z", "value": a} for a in sys.argv[1:]]
                    + [{"name": "env", "timestamp": "2018-05-24T15:00:00Z", "value": sorted(os.environ)}]}
main(answer)
"#,
    );
    let nasty = [
        format!("; touch {}", marker.display()),
        format!("$(touch {})", marker.display()),
        format!(
            "`touch {}` && echo | cat > {}",
            marker.display(),
            marker.display()
        ),
        "*".to_owned(),
        "$HOME".to_owned(),
    ];
    echo.argv.extend(nasty.iter().cloned());
    echo.env.insert("SCORER_X".into(), "1".into());
    let mut p = external(echo, json!({}));
    let (emitted, _) = run(&mut p, &numbers(&[1.0]));
    let args: Vec<Value> = emitted
        .iter()
        .filter(|o| o.name == Sym::new("arg"))
        .map(|o| o.value.clone())
        .collect();
    let expected: Vec<Value> = nasty
        .iter()
        .map(|a| Value::Text(Arc::new(a.clone())))
        .collect();
    assert_eq!(args, expected, "every argument arrived as written");
    assert!(!marker.exists(), "no shell ran the commands");

    let env = emitted.iter().find(|o| o.name == Sym::new("env")).unwrap();
    let Value::Json(keys) = &env.value else {
        panic!("{env:?}")
    };
    let keys: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"SCORER_X") && keys.contains(&"PATH"),
        "{keys:?}"
    );
    // The engine's own environment stays out (the python3 on PATH may be a launcher
    // that sets variables of its own, so only the engine's are checked).
    let leaked: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k != "PATH" && (k.starts_with("CARGO") || k == "HOME" || k == "USER"))
        .filter(|k| keys.contains(&k.as_str()))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?} leaked into {keys:?}");
}

#[test]
fn the_program_may_keep_its_state_and_exits_at_the_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut keeper = script(
        dir.path(),
        "keeper",
        r#"
import os
total = json.load(open(os.environ["STATE"])) if os.path.exists(os.environ["STATE"]) else 0
def answer(req):
    global total
    total += sum(o["value"] for o in req.get("observations", []))
    return {"emit": [{"name": "total", "timestamp": "2018-05-24T15:00:00Z", "value": total}]}
main(answer)
json.dump(total, open(os.environ["STATE"], "w"))
"#,
    );
    keeper
        .env
        .insert("STATE".into(), state.to_string_lossy().into_owned());
    let mut p = external(keeper.clone(), json!({}));
    assert_eq!(values(&run(&mut p, &numbers(&[1.0, 2.0])).0), [3.0]);
    assert_eq!(values(&flush(&mut p)), [3.0]);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "3",
        "whole numbers travel as integers"
    );

    // A fresh processor: the program carries on from its own state.
    let mut again = external(keeper, json!({}));
    assert_eq!(values(&run(&mut again, &numbers(&[4.0])).0), [7.0]);
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_the_processor_kills_and_reaps_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = external(script(dir.path(), "scaler", SCALER), json!({}));
    run(&mut p, &numbers(&[1.0]));
    let pid = p.running.as_ref().unwrap().child.id();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(p);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "no process and no zombie left"
    );
}

#[test]
fn a_program_that_cannot_start_counts_as_a_crash() {
    let mut missing = ExternalProgram {
        name: "missing".into(),
        argv: vec!["/nonexistent/dda-external-program".into()],
        env: BTreeMap::new(),
        working_dir: None,
        timeout: None,
    };
    let mut p = external(missing.clone(), json!({"maxRestarts": 0}));
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    let err = p.process(&numbers(&[1.0]), &mut out).unwrap_err();
    assert!(err.to_string().contains("cannot be started"), "{err}");
    missing.argv.clear();
    assert!(matches!(
        External::from_context(&context(vec![missing], json!({"program": "missing"}))),
        Err(ProcessorError::Config(_))
    ));
}

#[test]
fn observations_go_out_in_the_engines_flat_shape_and_read_back() {
    let mut o = numbers(&[36.5]).remove(0);
    o.data_kind = Some(Sym::new("dk-power"));
    let j = observation_json(&o);
    assert_eq!(j["dataSourceManifestReferenceID"], "s");
    assert_eq!(j["name"], "x");
    assert_eq!(j["dataKindReferenceID"], "dk-power");
    assert_eq!(j["timestamp"], "1970-01-01T00:00:00.000Z");
    assert_eq!(j["value"], 36.5);
    let ctx = DecodeContext {
        dsm: Sym::new("elsewhere"),
        default_name: Sym::new("y"),
        default_kind: None,
    };
    let answer = read_answer(&json!({"emit": [j]}).to_string(), 1, &ctx).unwrap();
    assert_eq!(
        answer.emit[0],
        Observation {
            ingested: answer.emit[0].ingested,
            ..o
        }
    );
    assert!(read_answer("[]", 1, &ctx).is_err());
    assert!(read_answer(r#"{"emit": 3}"#, 1, &ctx).is_err());
    assert!(
        read_answer(r#"{"reject": [{"index": 0}]}"#, 0, &ctx).is_err(),
        "a watermark rejects nothing"
    );
    let quoted = quote(&"é".repeat(500));
    assert!(quoted.starts_with(&"é".repeat(QUOTED)) && quoted.ends_with("(1000 bytes)"));
}
