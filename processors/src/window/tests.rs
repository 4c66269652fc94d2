//! Every window type against a brute-force computation over the sorted data; out-of-order
//! input within the watermark gives the same results; late data goes to the side output;
//! snapshot → restore gives identical results.

use std::collections::BTreeMap;

use engine::processor::{Processor, ProcessorContext};
use engine::{Observation, Sym, Timestamp};
use serde_json::{Value as Json, json};

use crate::testing::{flush, run, run_with_side, watermark};

const S: i64 = 1_000_000;

fn processor(kind: &str, params: &Json) -> Box<dyn Processor> {
    let ctx = ProcessorContext::for_test(params, "sink");
    (engine::processor::registration(kind)
        .expect("registered")
        .factory)(&ctx)
    .expect("creates")
}

/// Readings of two sources at irregular times (µs), values from a fixed generator.
fn readings(n: usize) -> Vec<Observation> {
    let mut seed = 7_u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut t = 1_000 * S;
    let mut out = Vec::new();
    for _ in 0..n {
        // Mostly 0.1 s to 3 s apart, sometimes a pause of 20-60 s (sessions end there).
        let step = if next() % 17 == 0 {
            20 * S + (next() % 40) as i64 * S
        } else {
            (next() % 3_000) as i64 * 1_000 + 100_000
        };
        t += step;
        let source = if next() % 3 == 0 { "m2" } else { "m1" };
        out.push(Observation::number(
            Sym::new(source),
            Sym::new("x"),
            Timestamp(t),
            (next() % 10_000) as f64 / 100.0,
        ));
    }
    out
}

/// The same data, shuffled so that no observation comes more than `bound` µs of event
/// time after a later one, in batches, each followed by the watermark a source with that
/// out-of-orderness would send.
fn shuffled(input: &[Observation], bound: i64) -> Vec<(Vec<Observation>, Timestamp)> {
    let mut order: Vec<(i64, usize)> = input
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let jitter = (i as i64 * 7_919 % 1_000) * bound / 1_000;
            (o.timestamp.as_micros() + jitter, i)
        })
        .collect();
    order.sort();
    let mut newest = i64::MIN;
    order
        .chunks(7)
        .map(|chunk| {
            let batch: Vec<Observation> = chunk.iter().map(|(_, i)| input[*i].clone()).collect();
            newest = batch
                .iter()
                .map(|o| o.timestamp.as_micros())
                .fold(newest, i64::max);
            (batch, Timestamp(newest - 1 - bound))
        })
        .collect()
}

/// Results as comparable text: (timestamp, name, source) → (value, attributes).
fn keyed(results: &[Observation]) -> BTreeMap<(i64, String, String, String), String> {
    let mut out = BTreeMap::new();
    for o in results {
        let start = o
            .attribute("windowStart")
            .map(ToString::to_string)
            .unwrap_or_default();
        let previous = out.insert(
            (
                o.timestamp.as_micros(),
                o.name.to_string(),
                o.source.to_string(),
                start,
            ),
            format!("{:?} {:?}", o.value, o.attributes),
        );
        assert!(previous.is_none(), "one result per window: {o:?}");
    }
    out
}

fn in_order(kind: &str, params: &Json, input: &[Observation]) -> Vec<Observation> {
    let mut p = processor(kind, params);
    let (mut out, rejected) = run(p.as_mut(), input);
    assert!(rejected.is_empty(), "{rejected:?}");
    out.extend(watermark(p.as_mut(), Timestamp::MAX));
    out.extend(flush(p.as_mut()));
    out
}

fn out_of_order(kind: &str, params: &Json, input: &[Observation], bound: i64) -> Vec<Observation> {
    let mut p = processor(kind, params);
    let mut out = Vec::new();
    for (batch, w) in shuffled(input, bound) {
        let (emitted, rejected, side) = run_with_side(p.as_mut(), &batch);
        assert!(rejected.is_empty() && side.is_empty(), "nothing is late");
        out.extend(emitted);
        out.extend(watermark(p.as_mut(), w));
    }
    out.extend(watermark(p.as_mut(), Timestamp::MAX));
    out.extend(flush(p.as_mut()));
    out
}

/// Feeds half, snapshots, restores into a new processor (through JSON text), feeds the
/// rest.
fn interrupted(kind: &str, params: &Json, input: &[Observation], bound: i64) -> Vec<Observation> {
    let batches = shuffled(input, bound);
    let (first, second) = batches.split_at(batches.len() / 2);
    let mut p = processor(kind, params);
    let mut out = Vec::new();
    for (batch, w) in first {
        out.extend(run(p.as_mut(), batch).0);
        out.extend(watermark(p.as_mut(), *w));
    }
    let saved = p.snapshot().expect("snapshots").to_string();
    drop(p);
    let mut p = processor(kind, params);
    p.restore(serde_json::from_str(&saved).expect("JSON"))
        .expect("restores");
    for (batch, w) in second {
        out.extend(run(p.as_mut(), batch).0);
        out.extend(watermark(p.as_mut(), *w));
    }
    out.extend(watermark(p.as_mut(), Timestamp::MAX));
    out.extend(flush(p.as_mut()));
    out
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Per source, the sorted (time, value) pairs.
fn series(input: &[Observation]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut by: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for o in input {
        by.entry(o.source.to_string())
            .or_default()
            .push((o.timestamp.as_micros(), o.value.as_f64().expect("numbers")));
    }
    for s in by.values_mut() {
        s.sort_by_key(|p| p.0);
    }
    by
}

/// Expected: (timestamp, source) → mean.
type Expected = BTreeMap<(i64, String), (f64, usize)>;

fn check(kind_label: &str, got: &[Observation], expected: &Expected) {
    let got_map: BTreeMap<(i64, String), (f64, u64)> = got
        .iter()
        .map(|o| {
            (
                (o.timestamp.as_micros(), o.source.to_string()),
                (
                    o.value.as_f64().expect("a number"),
                    o.attribute("count").and_then(Json::as_u64).expect("count"),
                ),
            )
        })
        .collect();
    assert_eq!(
        got_map.len(),
        expected.len(),
        "{kind_label}: as many results as windows"
    );
    for (key, (value, n)) in expected {
        let (v, c) = got_map
            .get(key)
            .unwrap_or_else(|| panic!("{kind_label}: no result for {key:?}"));
        assert_eq!(*c as usize, *n, "{kind_label} {key:?}");
        assert!(
            (v - value).abs() < 1e-9 * value.abs().max(1.0),
            "{kind_label} {key:?}: {v} vs {value}"
        );
    }
}

/// Runs in order, out of order and interrupted; all three equal each other and the
/// brute-force expectation.
fn all_ways(label: &str, kind: &str, params: &Json, input: &[Observation], expected: &Expected) {
    let sorted = in_order(kind, params, input);
    check(label, &sorted, expected);
    let bound = 5 * S;
    let shuffled = out_of_order(kind, params, input, bound);
    assert_eq!(
        keyed(&shuffled),
        keyed(&sorted),
        "{label}: out-of-order input gives the sorted results"
    );
    let resumed = interrupted(kind, params, input, bound);
    assert_eq!(
        keyed(&resumed),
        keyed(&sorted),
        "{label}: snapshot → restore gives the same results"
    );
}

/// Tumbling minutes, closed on the left `[start, end)` or on the right `(start, end]`,
/// against their means by brute force; both are stamped with their end.
fn tumbling(closed_right: bool) {
    let input = readings(400);
    let size = 60 * S;
    let shift = i64::from(closed_right);
    let mut expected = Expected::new();
    for (source, points) in series(&input) {
        let mut by_end: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (t, v) in points {
            by_end
                .entry(((t - shift).div_euclid(size) + 1) * size)
                .or_default()
                .push(v);
        }
        for (end, values) in by_end {
            expected.insert((end, source.clone()), (mean(&values), values.len()));
        }
    }
    let closed = if closed_right { "right" } else { "left" };
    all_ways(
        &format!("tumbling, closed {closed}"),
        "average",
        &json!({"window": "PT1M", "closed": closed}),
        &input,
        &expected,
    );
}

#[test]
fn tumbling_windows() {
    tumbling(false);
}

#[test]
fn tumbling_windows_closed_on_the_right_include_their_end_and_are_stamped_with_it() {
    // Readings on the minute belong to the minute they end ("interval ending").
    tumbling(true);
}

/// Windows of `size` ending at every multiple of `slide`, by brute force.
fn hopping_expected(input: &[Observation], size: i64, slide: i64) -> Expected {
    let mut expected = Expected::new();
    for (source, points) in series(input) {
        let first = points[0].0 / slide * slide;
        let last = points[points.len() - 1].0 + size;
        let mut end = first;
        while end <= last {
            let values: Vec<f64> = points
                .iter()
                .filter(|(t, _)| *t >= end - size && *t < end)
                .map(|p| p.1)
                .collect();
            if !values.is_empty() {
                expected.insert((end, source.clone()), (mean(&values), values.len()));
            }
            end += slide;
        }
    }
    expected
}

#[test]
fn hopping_windows_and_sliding_windows_with_a_slide() {
    let input = readings(300);
    let expected = hopping_expected(&input, 60 * S, 10 * S);
    all_ways(
        "hopping",
        "average",
        &json!({"windowType": "hopping", "window": "PT1M", "slide": "PT10S"}),
        &input,
        &expected,
    );
    // A slide that does not divide the window: panes of gcd(45 s, 20 s) = 5 s.
    let expected = hopping_expected(&input, 45 * S, 20 * S);
    all_ways(
        "sliding 45s/20s",
        "average",
        &json!({"windowType": "sliding", "window": "45s", "slide": "20s"}),
        &input,
        &expected,
    );
}

#[test]
fn sliding_windows_without_a_slide_end_at_every_observation() {
    let input = readings(250);
    let size = 30 * S;
    let mut expected = Expected::new();
    for (source, points) in series(&input) {
        for (t, _) in &points {
            let values: Vec<f64> = points
                .iter()
                .filter(|(u, _)| *u > t - size && u <= t)
                .map(|p| p.1)
                .collect();
            expected.insert((*t, source.clone()), (mean(&values), values.len()));
        }
    }
    all_ways(
        "sliding",
        "average",
        &json!({"windowType": "sliding", "window": "PT30S"}),
        &input,
        &expected,
    );
}

#[test]
fn session_windows_end_after_a_gap() {
    let input = readings(300);
    let gap = 15 * S;
    let mut expected = Expected::new();
    for (source, points) in series(&input) {
        let mut session: Vec<(i64, f64)> = Vec::new();
        let mut close = |session: &mut Vec<(i64, f64)>| {
            if let Some(last) = session.last() {
                let values: Vec<f64> = session.iter().map(|p| p.1).collect();
                expected.insert(
                    (last.0 + gap, source.clone()),
                    (mean(&values), values.len()),
                );
            }
            session.clear();
        };
        for p in points {
            if session.last().is_some_and(|last| p.0 - last.0 >= gap) {
                close(&mut session);
            }
            session.push(p);
        }
        close(&mut session);
    }
    assert!(expected.len() > 10, "the data has sessions");
    all_ways(
        "session",
        "average",
        &json!({"windowType": "session", "gap": "PT15S"}),
        &input,
        &expected,
    );
}

#[test]
fn count_windows_take_observations_in_event_time_order() {
    let input = readings(301);
    for (count, slide) in [(10_usize, 10_usize), (10, 3)] {
        let mut expected = Expected::new();
        for (source, points) in series(&input) {
            let mut start = 0;
            while start + count <= points.len() {
                let w = &points[start..start + count];
                let values: Vec<f64> = w.iter().map(|p| p.1).collect();
                expected.insert((w[count - 1].0, source.clone()), (mean(&values), count));
                start += slide;
            }
            // What remains at the end comes out as a partial window.
            let emitted_through = if points.len() >= count {
                count + (points.len() - count) / slide * slide
            } else {
                0
            };
            if emitted_through < points.len() {
                let w = &points[points.len().saturating_sub(count)..];
                let values: Vec<f64> = w.iter().map(|p| p.1).collect();
                expected.insert(
                    (w[w.len() - 1].0, source.clone()),
                    (mean(&values), values.len()),
                );
            }
        }
        all_ways(
            &format!("count {count}/{slide}"),
            "average",
            &json!({"windowType": "count", "count": count, "countSlide": slide}),
            &input,
            &expected,
        );
    }
}

#[test]
fn moving_average_is_a_count_window_sliding_by_one() {
    let input: Vec<Observation> = crate::testing::numbers(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let mut p = processor("moving-average", &json!({"count": 3, "countSlide": 1}));
    let (out, _) = run(p.as_mut(), &input);
    assert!(out.is_empty(), "nothing before the watermark");
    let out = watermark(p.as_mut(), Timestamp::MAX);
    let values: Vec<f64> = out.iter().filter_map(|o| o.value.as_f64()).collect();
    assert_eq!(values, vec![2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn late_observations_go_to_the_side_output_with_the_reason() {
    for params in [
        json!({"window": "PT1M", "lateOutput": "late-dsm"}),
        json!({"windowType": "hopping", "window": "PT1M", "slide": "PT20S", "lateOutput": "late-dsm"}),
        json!({"windowType": "sliding", "window": "PT1M", "lateOutput": "late-dsm"}),
        json!({"windowType": "session", "gap": "PT30S", "lateOutput": "late-dsm"}),
        json!({"windowType": "count", "count": 1, "lateOutput": "late-dsm"}),
    ] {
        let mut p = processor("sum", &params);
        let on_time = Observation::number(Sym::new("m1"), Sym::new("x"), Timestamp(1_000 * S), 1.0);
        run(p.as_mut(), std::slice::from_ref(&on_time));
        let emitted = watermark(p.as_mut(), Timestamp(2_000 * S));
        assert!(!emitted.is_empty(), "{params}: the windows closed");
        let late = Observation {
            timestamp: Timestamp(1_000 * S + 1),
            ..on_time.clone()
        };
        let (out, rejected, side) = run_with_side(p.as_mut(), &[late]);
        assert!(out.is_empty() && rejected.is_empty(), "{params}");
        assert_eq!(
            side.len(),
            1,
            "{params}: the late one is on the side output"
        );
        assert_eq!(side[0].0, Sym::new("late-dsm"));
        let why = side[0]
            .1
            .attribute("late")
            .and_then(Json::as_str)
            .unwrap_or_default();
        assert!(why.starts_with("late:"), "{params}: {why}");
        // Without a side output, the dead letters.
        let mut params = params.clone();
        params.as_object_mut().expect("object").remove("lateOutput");
        let mut p = processor("sum", &params);
        run(p.as_mut(), std::slice::from_ref(&on_time));
        watermark(p.as_mut(), Timestamp(2_000 * S));
        let (_, rejected, side) = run_with_side(
            p.as_mut(),
            &[Observation {
                timestamp: Timestamp(1_000 * S + 1),
                ..on_time
            }],
        );
        assert!(side.is_empty());
        assert_eq!(rejected.len(), 1, "{params}: to the dead letters");
    }
}

#[test]
fn allowed_lateness_keeps_windows_open_and_holds_the_watermark_back() {
    let params = json!({"window": "PT1M", "allowedLateness": "PT30S"});
    let mut p = processor("sum", &params);
    let at = |t: i64, v: f64| Observation::number(Sym::new("m1"), Sym::new("x"), Timestamp(t), v);
    run(p.as_mut(), &[at(10 * S, 1.0)]);
    assert!(
        watermark(p.as_mut(), Timestamp(70 * S)).is_empty(),
        "within the lateness"
    );
    assert_eq!(
        p.output_watermark(Timestamp(70 * S)),
        Timestamp(40 * S),
        "downstream sees the watermark less the lateness"
    );
    let (_, rejected) = run(p.as_mut(), &[at(20 * S, 2.0)]);
    assert!(
        rejected.is_empty(),
        "late by 50 s but within the allowed 30 s after the end"
    );
    let out = watermark(p.as_mut(), Timestamp(90 * S));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value.as_f64(), Some(3.0), "the late one counted");
    assert_eq!(out[0].timestamp, Timestamp(60 * S));
    let (_, rejected) = run(p.as_mut(), &[at(30 * S, 4.0)]);
    assert_eq!(rejected.len(), 1, "past the lateness it is late");
}

#[test]
fn keys_by_an_attribute() {
    let mut input = Vec::new();
    for (i, product) in ["A", "B", "A", "A", "B"].iter().enumerate() {
        let mut o = Observation::number(
            Sym::new("station-1"),
            Sym::new("assemblyTime"),
            Timestamp(i as i64 * S),
            10.0 * (i + 1) as f64,
        );
        let mut attributes = serde_json::Map::new();
        attributes.insert("product".into(), json!(product));
        o.attributes = Some(std::sync::Arc::new(attributes));
        input.push(o);
    }
    let out = in_order(
        "average",
        &json!({"window": "PT1H", "keyField": "product"}),
        &input,
    );
    let by: BTreeMap<String, f64> = out
        .iter()
        .map(|o| {
            (
                o.attribute("product")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                o.value.as_f64().expect("number"),
            )
        })
        .collect();
    assert_eq!(by.get("A"), Some(&((10.0 + 30.0 + 40.0) / 3.0)));
    assert_eq!(by.get("B"), Some(&((20.0 + 50.0) / 2.0)));
}

#[test]
fn processing_time_stamps_on_arrival_and_closes_on_the_wall_clock() {
    let mut p = processor("count", &json!({"window": "PT1S", "time": "processing"}));
    assert!(p.timer().is_some(), "asks for a timer");
    let old = Observation::number(Sym::new("m1"), Sym::new("x"), Timestamp(0), 1.0);
    let (_, rejected) = run(p.as_mut(), &[old.clone(), old]);
    assert!(
        rejected.is_empty(),
        "an old timestamp is not late in processing time"
    );
    assert!(
        watermark(p.as_mut(), Timestamp::MAX).is_empty(),
        "event-time watermarks are ignored"
    );
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = engine::Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.on_timer(
        Timestamp::now().plus(std::time::Duration::from_secs(2)),
        &mut out,
    )
    .expect("ticks");
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].value.as_f64(), Some(2.0));
    assert!(
        emitted[0].timestamp.as_micros() > 1_600_000_000 * S,
        "wall-clock time"
    );
}

#[test]
fn bad_window_parameters_are_explained() {
    for (params, says) in [
        (json!({"windowType": "hopping"}), "needs `slide`"),
        (
            json!({"windowType": "hopping", "window": "PT1M", "slide": "PT2M"}),
            "no longer than the window",
        ),
        (json!({"windowType": "rolling"}), "use one of tumbling"),
        (
            json!({"windowType": "hopping", "window": "PT1H", "slide": "PT0.001S"}),
            "use a longer slide",
        ),
        (json!({"window": "P40000D"}), "longer than a century"),
        (
            json!({"windowType": "session", "gap": "PT0S"}),
            "longer than zero",
        ),
        (json!({"windowType": "count", "count": 0}), "use 1 or more"),
        (json!({"window": "soon"}), "window:"),
        (json!({"time": "wall"}), "use event or processing"),
        (json!({"allowedLateness": "-PT1S"}), "allowedLateness"),
    ] {
        let ctx = ProcessorContext::for_test(&params, "sink");
        let e = (engine::processor::registration("average")
            .expect("registered")
            .factory)(&ctx)
        .err()
        .unwrap_or_else(|| panic!("{params} is refused"));
        assert!(e.to_string().contains(says), "{params}: {e}");
    }
}

/// Random readings (distinct timestamps per source, whole values) arriving in a random
/// order no more than `bound` out of order: every window type gives the results of the
/// sorted data.
mod any_order {
    use proptest::prelude::*;

    use super::*;

    fn scatter(
        readings: &[(i64, u8, i32)],
        seed: u64,
        bound: i64,
    ) -> Vec<(Vec<Observation>, Timestamp)> {
        let mut seen = std::collections::BTreeSet::new();
        let input: Vec<Observation> = readings
            .iter()
            .filter(|(t, s, _)| seen.insert((*t, *s)))
            .map(|(t, s, v)| {
                Observation::number(
                    Sym::new(&format!("m{s}")),
                    Sym::new("x"),
                    Timestamp(t * S / 10),
                    f64::from(*v),
                )
            })
            .collect();
        let mut state = seed | 1;
        let mut order: Vec<(i64, usize)> = input
            .iter()
            .enumerate()
            .map(|(i, o)| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (o.timestamp.as_micros() + (state % bound as u64) as i64, i)
            })
            .collect();
        order.sort();
        let mut newest = i64::MIN;
        order
            .chunks(1 + (seed % 5) as usize)
            .map(|chunk| {
                let batch: Vec<Observation> =
                    chunk.iter().map(|(_, i)| input[*i].clone()).collect();
                newest = batch
                    .iter()
                    .map(|o| o.timestamp.as_micros())
                    .fold(newest, i64::max);
                (batch, Timestamp(newest - 1 - bound))
            })
            .collect()
    }

    fn params(shape: usize) -> Json {
        match shape {
            0 => json!({"window": "PT5S"}),
            1 => json!({"windowType": "hopping", "window": "PT6S", "slide": "PT4S"}),
            2 => json!({"windowType": "sliding", "window": "PT3S"}),
            3 => json!({"windowType": "session", "gap": "PT2S"}),
            _ => json!({"windowType": "count", "count": 4, "countSlide": 3}),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_order_within_the_bound_gives_the_sorted_results(
            readings in proptest::collection::vec((0_i64..600, 0_u8..3, -1000_i32..1000), 1..150),
            seed in any::<u64>(),
            shape in 0_usize..5,
            kind in prop_oneof![Just("sum"), Just("percentile"), Just("max")],
        ) {
            let bound = 3 * S;
            let mut params = params(shape);
            if kind == "percentile" {
                params["percentiles"] = json!("25,50,90");
            }
            let batches = scatter(&readings, seed, bound);
            let mut sorted_input: Vec<Observation> = batches.iter().flat_map(|(b, _)| b.clone()).collect();
            sorted_input.sort_by_key(|o| o.timestamp);
            let sorted = in_order(kind, &params, &sorted_input);
            let mut p = processor(kind, &params);
            let mut got = Vec::new();
            for (batch, w) in &batches {
                let (emitted, rejected, side) = run_with_side(p.as_mut(), batch);
                prop_assert!(rejected.is_empty() && side.is_empty(), "nothing is late");
                got.extend(emitted);
                got.extend(watermark(p.as_mut(), *w));
            }
            got.extend(watermark(p.as_mut(), Timestamp::MAX));
            got.extend(flush(p.as_mut()));
            prop_assert_eq!(keyed(&got), keyed(&sorted));
        }
    }
}

/// A snapshot of the earlier form — one JSON object per window, as checkpoints were
/// written before time windows were packed — restores to the same results.
#[test]
fn a_snapshot_of_one_json_object_per_window_still_restores() {
    let params = json!({"window": "PT1M"});
    let input = readings(400);
    let sorted = in_order("average", &params, &input);
    let (first, second) = input.split_at(input.len() / 2);
    let mut p = processor("average", &params);
    let mut out = run(p.as_mut(), first).0;
    let mut state = p.snapshot().expect("snapshots");
    let packed = state
        .as_object_mut()
        .and_then(|m| m.remove("packed"))
        .expect("time windows are packed");
    let mut windows = Vec::new();
    for w in super::packed::unpack::<crate::aggregate::Mean, 1>(packed.as_str().expect("a string"))
        .expect("unpacks")
    {
        let (key, [start], slot) = w.expect("a window");
        let mut w = super::Saved::slot(&key, &slot).expect("a window");
        w["start"] = json!(start);
        windows.push(w);
    }
    assert!(!windows.is_empty());
    state["windows"] = Json::Array(windows);
    let mut p = processor("average", &params);
    p.restore(state).expect("restores");
    out.extend(run(p.as_mut(), second).0);
    out.extend(watermark(p.as_mut(), Timestamp::MAX));
    out.extend(flush(p.as_mut()));
    assert_eq!(keyed(&out), keyed(&sorted));
}

/// Packed windows of a form this version does not read are refused with the reason, not
/// read as something else.
#[test]
fn packed_windows_of_another_form_are_refused() {
    let params = json!({"window": "PT1M"});
    let mut p = processor("average", &params);
    run(p.as_mut(), &readings(10));
    let mut state = p.snapshot().expect("snapshots");
    assert_eq!(state["packedFormat"], json!(2));
    state.as_object_mut().map(|m| m.remove("packedFormat"));
    let err = processor("average", &params)
        .restore(state)
        .expect_err("an earlier form");
    assert!(
        err.to_string().contains("packed windows of form 1"),
        "{err}"
    );
}
