//! Golden tests: every statistic against values computed independently (with statrs or by
//! plain arithmetic in a different order), over several keys and windows.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    let mut p = Aggregate::<kind::Average>::from_context(&ctx).unwrap();
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

    let mut straight = Aggregate::<kind::Stddev>::from_context(&ctx).unwrap();
    run(&mut straight, head);
    run(&mut straight, tail);
    let expected = flush(&mut straight);

    let mut before = Aggregate::<kind::Stddev>::from_context(&ctx).unwrap();
    run(&mut before, head);
    let snapshot = before.snapshot().unwrap();
    let mut after = Aggregate::<kind::Stddev>::from_context(&ctx).unwrap();
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
    o.value = Value::Text(Arc::new("on".into()));
    let ctx = ProcessorContext::for_test(&json!({}), "sink");
    let mut avg = Aggregate::<kind::Average>::from_context(&ctx).unwrap();
    let (_, rejected) = run(&mut avg, std::slice::from_ref(&o));
    assert_eq!(rejected.len(), 1);
    assert!(
        flush(&mut avg).is_empty(),
        "no window holds only rejected values"
    );
    let mut count = Aggregate::<kind::Count>::from_context(&ctx).unwrap();
    let (_, rejected) = run(&mut count, std::slice::from_ref(&o));
    assert!(rejected.is_empty());
    assert_eq!(flush(&mut count)[0].value, Value::Number(1.0));
}

#[test]
fn a_sample_deviation_of_one_value_is_null() {
    let ctx = ProcessorContext::for_test(&json!({}), "sink");
    let mut p = Aggregate::<kind::Stddev>::from_context(&ctx).unwrap();
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

/// Values per key and hour, with their timestamps, by plain iteration.
fn timed(input: &[Observation]) -> BTreeMap<(i64, String, String), Vec<(i64, f64)>> {
    let mut g: BTreeMap<(i64, String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for o in input {
        let end = (o.timestamp.as_millis() / HOUR + 1) * HOUR;
        g.entry((end, o.name.to_string(), o.source.to_string()))
            .or_default()
            .push((o.timestamp.as_micros(), o.value.as_f64().unwrap()));
    }
    g
}

#[test]
fn order_statistics_and_spread_match_statrs() {
    use statrs::statistics::{Data, Median, OrderStatistics};
    let input = readings();
    let expected = grouped(&input);
    let median = results("median", json!({}), &input);
    let variance = results("variance", json!({}), &input);
    let quartiles = results("percentile", json!({"percentiles": [25, 75]}), &input);
    let p90 = results("percentile", json!({"percentiles": "90"}), &input);
    for (key, values) in &expected {
        let data = Data::new(values.clone());
        assert!(close(number(&median[key]), data.median()), "{key:?}");
        assert!(
            close(number(&variance[key]), values.iter().variance()),
            "{key:?}"
        );
        // statrs's lower/upper quartile and percentile use other definitions; the type-7
        // quantile is checked against the definition by ranks, computed here from
        // statrs's order statistics (the k-th smallest value).
        let mut data = Data::new(values.clone());
        let type7 = |data: &mut Data<Vec<f64>>, q: f64| {
            let h = (values.len() - 1) as f64 * q;
            let below = data.order_statistic(h.floor() as usize + 1);
            let above = data.order_statistic((h.floor() as usize + 2).min(values.len()));
            below + (h - h.floor()) * (above - below)
        };
        let Value::Json(q) = &quartiles[key].value else {
            panic!("several percentiles give an object")
        };
        assert!(
            close(q["p25"].as_f64().unwrap(), type7(&mut data, 0.25)),
            "{key:?}"
        );
        assert!(
            close(q["p75"].as_f64().unwrap(), type7(&mut data, 0.75)),
            "{key:?}"
        );
        assert!(close(number(&p90[key]), type7(&mut data, 0.9)), "{key:?}");
    }
}

#[test]
fn first_last_rate_and_histogram_match_plain_iteration() {
    let input = readings();
    let expected = timed(&input);
    let first = results("first", json!({}), &input);
    let last = results("last", json!({}), &input);
    let rate = results("rate", json!({"unit": "PT1M"}), &input);
    let histogram = results(
        "histogram",
        json!({"edges": "0,950,1000,1550,1600"}),
        &input,
    );
    for (key, points) in &expected {
        let earliest = points.iter().min_by_key(|p| p.0).unwrap();
        let latest = points.iter().max_by_key(|p| p.0).unwrap();
        assert_eq!(number(&first[key]), earliest.1, "{key:?}");
        assert_eq!(number(&last[key]), latest.1, "{key:?}");
        let per_minute = (latest.1 - earliest.1) / ((latest.0 - earliest.0) as f64 / 60e6);
        assert!(close(number(&rate[key]), per_minute), "{key:?}");
        let Value::Json(h) = &histogram[key].value else {
            panic!("a histogram is an object")
        };
        let edges = [0.0, 950.0, 1000.0, 1550.0, 1600.0];
        let counts: Vec<u64> = edges
            .windows(2)
            .map(|e| points.iter().filter(|p| p.1 >= e[0] && p.1 < e[1]).count() as u64)
            .collect();
        assert_eq!(h["counts"], json!(counts), "{key:?}");
        assert_eq!(h["below"], json!(0));
        let above = points.iter().filter(|p| p.1 >= 1600.0).count();
        assert_eq!(h["above"], json!(above), "{key:?}");
    }
}

/// A power reading ramping linearly: p(t) = a + b·t (t in s from the hour), every 10 s,
/// in shuffled order.
fn ramp(a: f64, b: f64) -> Vec<Observation> {
    let mut out: Vec<Observation> = (0..360)
        .map(|i| {
            Observation::number(
                Sym::new("press"),
                Sym::new("power"),
                Timestamp::from_millis(i * 10_000),
                a + b * (i * 10) as f64,
            )
        })
        .collect();
    out.reverse();
    out.swap(3, 200);
    out
}

#[test]
fn the_integral_of_a_ramp_is_its_area() {
    let (a, b) = (1_000.0, 0.5);
    let input = ramp(a, b);
    // Samples from 0 to 3590 s: the exact integral of a line, in W·h.
    let span = 3_590.0;
    let exact_wh = (a * span + b * span * span / 2.0) / 3_600.0;
    let got = results("integral", json!({"unit": "PT1H"}), &input);
    assert_eq!(got.len(), 1);
    let o = got.values().next().unwrap();
    assert!(close(number(o), exact_wh), "{} vs {exact_wh}", number(o));
    // Step: each value held 10 s: a left Riemann sum, Σ p(tᵢ)·10 s over the first 359.
    let step: f64 = (0..359).map(|i| (a + b * (i * 10) as f64) * 10.0).sum();
    let got = results("integral", json!({"method": "step"}), &input);
    assert!(close(number(got.values().next().unwrap()), step));
}

#[test]
fn trend_and_rul_recover_a_known_degradation() {
    // Vibration RMS rising 0.002 mm/s per second from 2.0: a failure threshold of 11.0
    // is reached at t = 4500 s; the window's last sample is at t = 3590 s.
    let (a, b) = (2.0, 0.002);
    let input = ramp(a, b);
    let trend = results("trend", json!({"unit": "PT1H"}), &input);
    let o = trend.values().next().unwrap();
    assert!(
        close(number(o), b * 3_600.0),
        "slope per hour: {}",
        number(o)
    );
    assert!(close(
        o.attribute("intercept").unwrap().as_f64().unwrap(),
        a + b * 3_590.0
    ));
    assert!(close(o.attribute("r2").unwrap().as_f64().unwrap(), 1.0));

    let rul = results(
        "rul",
        json!({"failureThreshold": 11.0, "unit": "PT1M"}),
        &input,
    );
    let o = rul.values().next().unwrap();
    let minutes = (4_500.0 - 3_590.0) / 60.0;
    assert!(close(number(o), minutes), "{} vs {minutes}", number(o));
    assert_eq!(
        o.attribute("failureTime"),
        Some(&json!(Timestamp::from_millis(4_500_000).to_string()))
    );
    // Noisy data: the slope equals the normal-equations formula, computed on other terms.
    let noisy: Vec<Observation> = readings()
        .into_iter()
        .filter(|o| o.name == Sym::new("power") && o.source == Sym::new("box-1"))
        .collect();
    let got = results("trend", json!({"window": "PT4H"}), &noisy);
    let o = got.values().next().unwrap();
    let xs: Vec<f64> = noisy
        .iter()
        .map(|o| o.timestamp.as_millis() as f64 / 1e3)
        .collect();
    let ys: Vec<f64> = noisy.iter().map(number).collect();
    let n = xs.len() as f64;
    let (sx, sy) = (xs.iter().sum::<f64>(), ys.iter().sum::<f64>());
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| x * y).sum();
    let sxx: f64 = xs.iter().map(|x| x * x).sum();
    let slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    assert!((number(o) - slope).abs() < 1e-9, "{} vs {slope}", number(o));
    // Heading away from the threshold: no life to report.
    let away = results("rul", json!({"failureThreshold": 0.0}), &ramp(a, b));
    let o = away.values().next().unwrap();
    assert_eq!(o.value, Value::Json(Arc::new(serde_json::Value::Null)));
    assert!(o.attribute("status").is_some());
}

#[test]
fn sample_statistics_survive_snapshot_and_restore() {
    let input = readings();
    for (kind, params) in [
        (
            "percentile",
            json!({"percentiles": [10, 50], "windowType": "hopping", "slide": "PT20M"}),
        ),
        ("integral", json!({"windowType": "session", "gap": "PT10M"})),
        ("histogram", json!({"min": 900, "max": 1700, "buckets": 8})),
        ("last", json!({"windowType": "count", "count": 5})),
        ("rul", json!({"failureThreshold": 5000})),
        ("first", json!({"window": "PT1H"})),
    ] {
        survives_snapshot(kind, &params, &input);
    }
}

/// First and last keep any value: text and JSON objects are packed as their text.
#[test]
fn first_and_last_of_text_and_objects_survive_snapshot_and_restore() {
    let input: Vec<Observation> = readings()
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let value = if i % 2 == 0 {
                Value::Text(Arc::new(format!("state {i}")))
            } else {
                Value::Json(Arc::new(json!({"code": i, "tags": ["a", null, 1.5]})))
            };
            Observation { value, ..o }
        })
        .collect();
    for (kind, params) in [
        ("first", json!({"window": "PT1H"})),
        ("last", json!({"windowType": "session", "gap": "PT10M"})),
    ] {
        survives_snapshot(kind, &params, &input);
    }
}

/// `kind` fed half of `input`, snapshotted (through JSON text), restored into a new
/// processor and fed the rest gives what it gives fed everything at once.
fn survives_snapshot(kind: &str, params: &Json, input: &[Observation]) {
    let ctx = ProcessorContext::for_test(params, "sink");
    let make = || (engine::processor::registration(kind).unwrap().factory)(&ctx).unwrap();
    let mut straight = make();
    let (mut expected, _) = run(straight.as_mut(), input);
    expected.extend(watermark(straight.as_mut(), Timestamp::MAX));
    expected.extend(flush(straight.as_mut()));
    let (head, tail) = input.split_at(input.len() / 2);
    let mut before = make();
    let (mut got, _) = run(before.as_mut(), head);
    let saved = before.snapshot().unwrap().to_string();
    let mut after = make();
    after
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    got.extend(run(after.as_mut(), tail).0);
    got.extend(watermark(after.as_mut(), Timestamp::MAX));
    got.extend(flush(after.as_mut()));
    // The ingest clock (for latency metrics) is not part of a result's content.
    let content = |v: Vec<Observation>| -> Vec<Observation> {
        v.into_iter()
            .map(|o| Observation { ingested: 0, ..o })
            .collect()
    };
    assert_eq!(
        format!("{:?}", content(got)),
        format!("{:?}", content(expected)),
        "{kind}"
    );
}
