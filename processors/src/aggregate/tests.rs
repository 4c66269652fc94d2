//! Golden tests: every statistic against values computed independently (with statrs or by
//! plain arithmetic in a different order), over several keys and windows.

use std::collections::BTreeMap;

use engine::processor::ProcessorContext;
use engine::{Observation, Sym, Timestamp, Value};
use serde_json::json;
use statrs::statistics::Statistics;

use super::*;
use crate::testing::{flush, run, watermark};

const HOUR: i64 = 3_600_000;

/// Readings of two quantities from two sources over three hours, at irregular times.
fn readings() -> Vec<Observation> {
    let mut out = Vec::new();
    let mut seed = 17_u64;
    for minute in (0..180).step_by(7) {
        for (name, source, base) in [
            ("power", "box-1", 1500.0),
            ("power", "box-2", 900.0),
            ("energy", "box-1", 20.0),
        ] {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((seed >> 33) % 1000) as f64 / 10.0;
            out.push(Observation::number(
                Sym::new(source),
                Sym::new(name),
                Timestamp::from_millis(i64::from(minute) * 60_000 + 13),
                base + noise,
            ));
        }
    }
    out
}

/// Expected per (hour end, name, source): the values, grouped by plain iteration.
fn grouped(input: &[Observation]) -> BTreeMap<(i64, String, String), Vec<f64>> {
    let mut g: BTreeMap<(i64, String, String), Vec<f64>> = BTreeMap::new();
    for o in input {
        let end = (o.timestamp.as_millis() / HOUR + 1) * HOUR;
        g.entry((end, o.name.to_string(), o.source.to_string()))
            .or_default()
            .push(o.value.as_f64().unwrap());
    }
    g
}

fn results(
    kind: &'static str,
    params: serde_json::Value,
    input: &[Observation],
) -> BTreeMap<(i64, String, String), Observation> {
    let ctx = ProcessorContext::for_test(&params, "sink");
    let mut p: Box<dyn Processor> =
        (engine::processor::registration(kind).unwrap().factory)(&ctx).unwrap();
    let (mut out, rejected) = run(p.as_mut(), input);
    assert!(rejected.is_empty(), "{rejected:?}");
    out.extend(watermark(p.as_mut(), Timestamp::MAX));
    out.into_iter()
        .map(|o| {
            (
                (
                    o.timestamp.as_millis(),
                    o.name.to_string(),
                    o.source.to_string(),
                ),
                o,
            )
        })
        .collect()
}

fn number(o: &Observation) -> f64 {
    o.value.as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn every_statistic_matches_an_independent_computation() {
    let input = readings();
    let expected = grouped(&input);
    assert_eq!(expected.len(), 9, "three keys in three hours");
    type Independent = fn(&[f64]) -> f64;
    let cases: [(&'static str, Independent); 6] = [
        ("average", |v| v.iter().mean()),
        ("min", |v| Statistics::min(v.iter())),
        ("max", |v| Statistics::max(v.iter())),
        ("sum", |v| v.iter().rev().sum()),
        ("count", |v| v.len() as f64),
        ("stddev", |v| v.iter().std_dev()),
    ];
    for (kind, independent) in cases {
        let got = results(kind, json!({"window": "PT1H"}), &input);
        assert_eq!(got.len(), expected.len(), "{kind}");
        for (key, values) in &expected {
            let o = &got[key];
            assert!(
                close(number(o), independent(values)),
                "{kind} {key:?}: {} vs {}",
                number(o),
                independent(values)
            );
            assert_eq!(o.attribute("count"), Some(&json!(values.len())), "{kind}");
            assert_eq!(
                o.timestamp,
                Timestamp::from_millis(key.0),
                "stamped with the window's end"
            );
        }
    }
    let population = results("stddev", json!({"estimator": "population"}), &input);
    for (key, values) in &expected {
        assert!(
            close(number(&population[key]), values.iter().population_std_dev()),
            "{key:?}"
        );
    }
}

#[test]
fn grouping_by_name_and_selecting_a_name() {
    let input = readings();
    let got = results(
        "average",
        json!({"groupBy": "name", "observationName": "power"}),
        &input,
    );
    assert_eq!(got.len(), 3, "one result per hour: power across both boxes");
    for ((end, name, source), o) in &got {
        assert_eq!(name, "power");
        assert_eq!(
            source, "sink",
            "results across sources are attributed to the sink"
        );
        let values: Vec<f64> = input
            .iter()
            .filter(|i| {
                i.name == Sym::new("power") && (i.timestamp.as_millis() / HOUR + 1) * HOUR == *end
            })
            .map(|i| i.value.as_f64().unwrap())
            .collect();
        assert!(close(number(o), values.iter().mean()));
    }
    let got = results("count", json!({"groupBy": "all", "window": "3h"}), &input);
    assert_eq!(got.len(), 1);
    let only = got.values().next().unwrap();
    assert_eq!(number(only), input.len() as f64);
    assert_eq!(only.name, Sym::new("count"));
}

#[test]
fn windows_close_on_the_left_by_default_and_on_the_right_when_asked() {
    let at = |ms: i64, v: f64| {
        Observation::number(Sym::new("s"), Sym::new("x"), Timestamp::from_millis(ms), v)
    };
    // A value exactly on the hour belongs to the next window when closed on the left, and
    // to the window it ends when closed on the right.
    let input = [at(HOUR / 2, 1.0), at(HOUR, 3.0)];
    let left = results("sum", json!({}), &input);
    let ends: Vec<i64> = left.keys().map(|k| k.0).collect();
    assert_eq!(ends, [HOUR, 2 * HOUR]);
    let right = results("sum", json!({"closed": "right"}), &input);
    assert_eq!(right.len(), 1);
    assert_eq!(number(right.values().next().unwrap()), 4.0);
    assert_eq!(right.keys().next().unwrap().0, HOUR);
}

#[test]
fn results_wait_for_the_watermark_and_late_data_is_rejected() {
    let ctx = ProcessorContext::for_test(&json!({"window": "1h"}), "sink");
    let mut p = Aggregate::<Mean>::new(&ctx, "average", &TUMBLING).unwrap();
    let at = |ms: i64, v: f64| {
        Observation::number(Sym::new("s"), Sym::new("x"), Timestamp::from_millis(ms), v)
    };
    let (out, _) = run(&mut p, &[at(10, 1.0), at(20, 3.0), at(HOUR + 5, 10.0)]);
    assert!(out.is_empty(), "nothing before the watermark passes");
    // Event time is in microseconds: [0, 1h) is complete once nothing at or before its last
    // microsecond can come.
    assert!(
        watermark(&mut p, Timestamp::from_micros(HOUR * 1000 - 2)).is_empty(),
        "the first hour is not complete yet"
    );
    let first = watermark(&mut p, Timestamp::from_micros(HOUR * 1000 - 1));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].value, Value::Number(2.0));
    assert_eq!(
        first[0].attribute("windowStart"),
        Some(&json!("1970-01-01T00:00:00.000Z"))
    );
    let (out, rejected) = run(&mut p, &[at(30, 100.0)]);
    assert!(out.is_empty());
    assert_eq!(rejected.len(), 1, "late for an emitted window");
    assert!(
        rejected[0].reason.starts_with("late"),
        "{}",
        rejected[0].reason
    );
    let rest = flush(&mut p);
    assert_eq!(
        rest.len(),
        1,
        "the open window is emitted at the end of input"
    );
    assert_eq!(rest[0].value, Value::Number(10.0));
}

#[test]
fn state_survives_snapshot_and_restore_with_identical_results() {
    let input = readings();
    let (head, tail) = input.split_at(input.len() / 2);
    let ctx = ProcessorContext::for_test(&json!({"window": "PT1H"}), "sink");

    let mut straight = Aggregate::<Spread<true>>::new(&ctx, "stddev", &TUMBLING).unwrap();
    run(&mut straight, head);
    run(&mut straight, tail);
    let expected = flush(&mut straight);

    let mut before = Aggregate::<Spread<true>>::new(&ctx, "stddev", &TUMBLING).unwrap();
    run(&mut before, head);
    let snapshot = before.snapshot().unwrap();
    let mut after = Aggregate::<Spread<true>>::new(&ctx, "stddev", &TUMBLING).unwrap();
    after.restore(snapshot).unwrap();
    run(&mut after, tail);
    let got = flush(&mut after);
    assert_eq!(got.len(), expected.len());
    for (a, b) in got.iter().zip(&expected) {
        assert_eq!(
            (a.name, a.source, a.timestamp, &a.value),
            (b.name, b.source, b.timestamp, &b.value)
        );
    }
}

#[test]
fn non_numbers_are_rejected_except_by_count() {
    let mut o = Observation::number(Sym::new("s"), Sym::new("x"), Timestamp::from_millis(1), 0.0);
    o.value = Value::Text(std::sync::Arc::new("on".into()));
    let ctx = ProcessorContext::for_test(&json!({}), "sink");
    let mut avg = Aggregate::<Mean>::new(&ctx, "average", &TUMBLING).unwrap();
    let (_, rejected) = run(&mut avg, std::slice::from_ref(&o));
    assert_eq!(rejected.len(), 1);
    assert!(
        flush(&mut avg).is_empty(),
        "no window holds only rejected values"
    );
    let mut count = Aggregate::<Count>::new(&ctx, "count", &TUMBLING).unwrap();
    let (_, rejected) = run(&mut count, std::slice::from_ref(&o));
    assert!(rejected.is_empty());
    assert_eq!(flush(&mut count)[0].value, Value::Number(1.0));
}

#[test]
fn a_sample_deviation_of_one_value_is_null() {
    let ctx = ProcessorContext::for_test(&json!({}), "sink");
    let mut p = Aggregate::<Spread<true>>::new(&ctx, "stddev", &TUMBLING).unwrap();
    run(
        &mut p,
        &[Observation::number(
            Sym::new("s"),
            Sym::new("x"),
            Timestamp::from_millis(1),
            5.0,
        )],
    );
    assert_eq!(flush(&mut p)[0].value.to_json(), serde_json::Value::Null);
}

#[test]
fn compensated_sums_keep_small_values_next_to_large_ones() {
    let mut s = CompensatedSum::default();
    for x in [1e16, 1.0, -1e16, 1.0] {
        s.add(x);
    }
    assert_eq!(s.total(), 2.0);
}
