//! Golden tests: the statistics against statrs and naive formulas, the band energies against
//! a naive O(N²) DFT and against the energies a sine is known to have, and the block
//! machinery (hop, lists, checkpoints, end of input, bad input).

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use engine::processor::{Output, ProcessorContext, Rejected};
use engine::{Observation, Sym, Timestamp, Value};
use serde_json::{Value as Json, json};
use statrs::statistics::Statistics;

use super::*;
use crate::testing::run;

fn vibration(params: Json) -> Vibration {
    Vibration::from_context(&ProcessorContext::for_test(&params, "sink")).unwrap()
}

/// One observation per sample, named `acc` from `box-1`, 1 ms apart from `start_ms`.
fn samples(values: &[f64], start_ms: i64) -> Vec<Observation> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Observation::number(
                Sym::new("box-1"),
                Sym::new("acc"),
                Timestamp::from_millis(start_ms + i as i64),
                *v,
            )
        })
        .collect()
}

/// One observation holding `values` as a list.
fn list(values: &[f64], ms: i64) -> Observation {
    let mut o = Observation::number(
        Sym::new("box-1"),
        Sym::new("acc"),
        Timestamp::from_millis(ms),
        0.0,
    );
    o.value = Value::Json(Arc::new(json!(values)));
    o
}

/// Ends the input; returns what was emitted and rejected.
fn end(p: &mut dyn Processor) -> (Vec<Observation>, Vec<Rejected>) {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.flush(&mut out).unwrap();
    (emitted, rejected)
}

/// The values emitted under each name, in order.
fn by_name(emitted: &[Observation]) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for o in emitted {
        m.entry(o.name.to_string())
            .or_default()
            .push(o.value.as_f64().unwrap_or(f64::NAN));
    }
    m
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0)
}

/// A deterministic noisy signal with an offset and a few impacts.
fn noisy(n: usize) -> Vec<f64> {
    let mut seed = 99_u64;
    (0..n)
        .map(|i| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((seed >> 11) as f64 / (1_u64 << 53) as f64) - 0.5;
            let impact = if i % 97 == 0 { 4.0 } else { 0.0 };
            0.7 + 1.3 * (TAU * i as f64 / 37.0).sin() + noise + impact
        })
        .collect()
}

/// Pearson's kurtosis from the raw moments, a different route than the processor's
/// central moments: (E[x⁴] − 4μE[x³] + 6μ²E[x²] − 3μ⁴) / σ⁴, σ² from statrs.
fn kurtosis_from_raw_moments(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let raw = |k: i32| x.iter().map(|v| v.powi(k)).sum::<f64>() / n;
    let mu = x.iter().mean();
    let m4 = raw(4) - 4.0 * mu * raw(3) + 6.0 * mu * mu * raw(2) - 3.0 * mu.powi(4);
    m4 / x.iter().population_variance().powi(2)
}

#[test]
fn statistics_match_statrs_and_naive_formulas_block_by_block() {
    let signal = noisy(3 * 256 + 10);
    let mut p = vibration(json!({"blockSize": 256}));
    let (emitted, rejected) = run(&mut p, &samples(&signal, 0));
    assert!(rejected.is_empty(), "{rejected:?}");
    let got = by_name(&emitted);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "acc.crestFactor",
            "acc.kurtosis",
            "acc.mean",
            "acc.peak",
            "acc.peakToPeak",
            "acc.rms",
            "acc.stddev"
        ],
        "every feature but the band energies, which need bands"
    );
    for (b, x) in signal.chunks_exact(256).enumerate() {
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / 256.0).sqrt();
        let peak = Statistics::max(x.iter().map(|v| v.abs()));
        let expected = [
            ("acc.rms", rms),
            ("acc.peak", peak),
            (
                "acc.peakToPeak",
                Statistics::max(x.iter()) - Statistics::min(x.iter()),
            ),
            ("acc.crestFactor", peak / rms),
            ("acc.kurtosis", kurtosis_from_raw_moments(x)),
            ("acc.mean", x.iter().mean()),
            ("acc.stddev", x.iter().population_std_dev()),
        ];
        for (name, want) in expected {
            let have = got[name][b];
            assert!(
                close(have, want, 1e-9),
                "block {b} {name}: {have} vs {want}"
            );
        }
    }
    // The impacts make the distribution heavy-tailed.
    assert!(got["acc.kurtosis"].iter().all(|k| *k > 3.0), "{got:?}");

    // Shape of one result: source, time of the last sample, block attributes.
    let first = &emitted[0];
    assert_eq!(
        first.name,
        Sym::new("acc.rms"),
        "features in the documented order"
    );
    assert_eq!(first.source, Sym::new("box-1"));
    assert_eq!(first.timestamp, Timestamp::from_millis(255));
    assert_eq!(
        first.attribute("blockStart"),
        Some(&json!(Timestamp::from_millis(0).to_string()))
    );
    assert_eq!(
        first.attribute("blockEnd"),
        Some(&json!(Timestamp::from_millis(255).to_string()))
    );
    assert_eq!(first.attribute("samples"), Some(&json!(256)));
    assert_eq!(first.attribute("feature"), Some(&json!("rms")));
    assert_eq!(emitted.len(), 3 * 7);

    // The 10 samples left over are not features, and not silently dropped.
    let (more, rejected) = end(&mut p);
    assert!(more.is_empty());
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0].reason,
        "incomplete block of 10 of 256 samples at end of input"
    );
    assert_eq!(
        rejected[0].observation.value.to_json(),
        json!(signal[768..]),
        "the dead letter holds the samples"
    );
}

#[test]
fn a_sine_has_the_textbook_kurtosis_and_crest_factor() {
    // 8 whole periods: kurtosis 1.5 (3/8 ÷ (1/2)²), crest factor √2, RMS A/√2.
    let x: Vec<f64> = (0..512)
        .map(|i| 3.0 * (TAU * 8.0 * i as f64 / 512.0).sin())
        .collect();
    let mut p = vibration(json!({"blockSize": 512, "features": "kurtosis,crestFactor,rms"}));
    let got = by_name(&run(&mut p, &samples(&x, 0)).0);
    assert!(close(got["acc.kurtosis"][0], 1.5, 1e-12));
    assert!(close(got["acc.crestFactor"][0], 2_f64.sqrt(), 1e-12));
    assert!(close(got["acc.rms"][0], 3.0 / 2_f64.sqrt(), 1e-12));
    assert_eq!(got.len(), 3, "only the features asked for");
}

#[test]
fn a_constant_block_has_no_kurtosis_or_crest_factor_of_zero() {
    let mut p =
        vibration(json!({"blockSize": 4, "features": ["kurtosis", "crestFactor", "stddev"]}));
    let (emitted, _) = run(&mut p, &samples(&[0.0; 4], 0));
    let values: BTreeMap<String, Json> = emitted
        .iter()
        .map(|o| (o.name.to_string(), o.value.to_json()))
        .collect();
    assert_eq!(values["acc.kurtosis"], Json::Null);
    assert_eq!(values["acc.crestFactor"], Json::Null);
    assert_eq!(values["acc.stddev"], json!(0));
}

/// The one-sided band energies of `x` by the documented definition, with a naive DFT.
fn naive_band_energies(
    x: &[f64],
    rate: f64,
    bands: &[(f64, f64)],
    hann: bool,
    remove_mean: bool,
) -> Vec<f64> {
    let n = x.len();
    let nf = n as f64;
    let mean = if remove_mean {
        x.iter().sum::<f64>() / nf
    } else {
        0.0
    };
    let w: Vec<f64> = (0..n)
        .map(|i| {
            if hann {
                (std::f64::consts::PI * i as f64 / nf).sin().powi(2)
            } else {
                1.0
            }
        })
        .collect();
    let u = w.iter().map(|w| w * w).sum::<f64>() / nf;
    let y: Vec<f64> = x.iter().zip(&w).map(|(x, w)| (x - mean) * w).collect();
    let power: Vec<(f64, f64)> = (0..=n / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, v) in y.iter().enumerate() {
                // k·j mod n keeps the angle small, for accuracy.
                let angle = TAU * ((k * j) % n) as f64 / nf;
                re += v * angle.cos();
                im -= v * angle.sin();
            }
            let one_sided = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
            (
                k as f64 * rate / nf,
                one_sided * (re * re + im * im) / (nf * nf * u),
            )
        })
        .collect();
    bands
        .iter()
        .map(|(lo, hi)| {
            power
                .iter()
                .filter(|(f, _)| lo <= f && f < hi)
                .map(|(_, p)| p)
                .sum()
        })
        .collect()
}

/// 2·sin(2π·50t) + 0.5·sin(2π·300t) + 0.3 at `rate` Hz.
fn two_sines(n: usize, rate: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            2.0 * (TAU * 50.0 * t).sin() + 0.5 * (TAU * 300.0 * t).sin() + 0.3
        })
        .collect()
}

#[test]
fn band_energies_match_a_naive_dft_and_land_in_their_bands() {
    let bands = [(0.0, 100.0), (100.0, 500.0), (500.0, 1024.0)];
    // A power of two, and a size that is not one (the FFT takes any size).
    for (size, rate) in [(1024_usize, 2048.0), (1000, 2000.0)] {
        let x = two_sines(size, rate);
        for (window, hann) in [("hann", true), ("none", false)] {
            let mut p = vibration(json!({
                "blockSize": size,
                "sampleRate": rate,
                "bands": format!("0-100,100-500,500-{}", rate / 2.0 + 1.0),
                "features": "bandEnergy",
                "window": window,
            }));
            let (emitted, rejected) = run(&mut p, &[list(&x, 7)]);
            assert!(rejected.is_empty());
            assert_eq!(emitted.len(), 3, "one result per band");
            let hi = rate / 2.0 + 1.0;
            let expected_names = [
                "acc.band.0-100Hz".to_owned(),
                "acc.band.100-500Hz".to_owned(),
                format!("acc.band.500-{hi}Hz"),
            ];
            let mut bands = bands;
            bands[2].1 = hi;
            let naive = naive_band_energies(&x, rate, &bands, hann, true);
            for ((o, name), want) in emitted.iter().zip(&expected_names).zip(&naive) {
                assert_eq!(o.name.to_string(), *name);
                let have = o.value.as_f64().unwrap();
                assert!(
                    (have - want).abs() <= 1e-9,
                    "{size} {window} {name}: {have} vs naive DFT {want}"
                );
                assert_eq!(o.attribute("feature"), Some(&json!("bandEnergy")));
            }
            // Each sine's energy A²/2 lands in its band; the offset is removed.
            let have: Vec<f64> = emitted.iter().map(|o| o.value.as_f64().unwrap()).collect();
            assert!(close(have[0], 2.0 * 2.0 / 2.0, 1e-9), "{window}: {have:?}");
            assert!(close(have[1], 0.5 * 0.5 / 2.0, 1e-9), "{window}: {have:?}");
            assert!(have[2] < 1e-12, "{window}: {have:?}");
            assert_eq!(emitted[1].attribute("bandLow"), Some(&json!(100.0)));
            assert_eq!(emitted[1].attribute("bandHigh"), Some(&json!(500.0)));
        }
    }
}

#[test]
fn without_window_or_mean_removal_the_bands_add_up_to_the_mean_square() {
    // Parseval: bands covering 0 … sampleRate/2 hold Σx²/N, the offset in the 0 Hz bin.
    let x = noisy(600);
    let mut p = vibration(json!({
        "blockSize": 600,
        "sampleRate": 600,
        "bands": [[0, 0.5], [0.5, 100], ["100", 301]],
        "window": "none",
        "removeMean": false,
        "features": ["rms", "mean", "bandEnergy"],
    }));
    let got = by_name(&run(&mut p, &samples(&x, 0)).0);
    let total: f64 = [
        "acc.band.0-0.5Hz",
        "acc.band.0.5-100Hz",
        "acc.band.100-301Hz",
    ]
    .iter()
    .map(|n| got[*n][0])
    .sum();
    let mean_square = x.iter().map(|v| v * v).sum::<f64>() / 600.0;
    assert!(close(total, mean_square, 1e-9), "{total} vs {mean_square}");
    assert!(close(got["acc.rms"][0].powi(2), mean_square, 1e-12));
    let mean = got["acc.mean"][0];
    assert!(
        close(got["acc.band.0-0.5Hz"][0], mean * mean, 1e-9),
        "the 0 Hz bin is the offset's energy"
    );
}

#[test]
fn overlapping_blocks_advance_by_hop() {
    let x: Vec<f64> = (0..20).map(f64::from).collect();
    let mut p = vibration(json!({"blockSize": 8, "hop": 4, "features": "mean"}));
    let (emitted, rejected) = run(&mut p, &samples(&x, 0));
    assert!(rejected.is_empty());
    // Blocks 0–7, 4–11, 8–15, 12–19.
    assert_eq!(by_name(&emitted)["acc.mean"], [3.5, 7.5, 11.5, 15.5]);
    let starts: Vec<Json> = emitted
        .iter()
        .map(|o| o.attribute("blockStart").unwrap().clone())
        .collect();
    assert_eq!(
        starts,
        [0, 4, 8, 12].map(|ms| json!(Timestamp::from_millis(ms).to_string()))
    );
    let ends: Vec<Timestamp> = emitted.iter().map(|o| o.timestamp).collect();
    assert_eq!(ends, [7, 11, 15, 19].map(Timestamp::from_millis));

    // The overlap kept for the next block was used already: nothing is lost at the end...
    let mut snapshot_before = vibration(json!({"blockSize": 8, "hop": 4, "features": "mean"}));
    snapshot_before.restore(p.snapshot().unwrap()).unwrap();
    let (_, rejected) = end(&mut snapshot_before);
    assert!(rejected.is_empty(), "{rejected:?}");
    // ...but a sample in no block is.
    run(&mut p, &samples(&[20.0], 20));
    let (_, rejected) = end(&mut p);
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0].reason,
        "incomplete block of 5 of 8 samples at end of input (1 of them in no emitted block)"
    );
    assert_eq!(rejected[0].observation.value.to_json(), json!([20]));
}

#[test]
fn lists_fill_and_span_blocks_like_single_samples() {
    let x: Vec<f64> = (1..=11).map(f64::from).collect();
    let params = json!({"blockSize": 4, "features": "mean,peak"});
    let mut lists = vibration(params.clone());
    let (from_lists, rejected) = run(
        &mut lists,
        &[
            list(&x[..3], 100),
            list(&x[3..10], 200),
            samples(&x[10..], 300).remove(0),
        ],
    );
    assert!(rejected.is_empty());
    let mut singles = vibration(params);
    let (from_singles, _) = run(&mut singles, &samples(&x, 0));
    assert_eq!(by_name(&from_lists), by_name(&from_singles));
    assert_eq!(by_name(&from_lists)["acc.mean"], [2.5, 6.5]);
    // The samples of a list carry its time: block 1 runs from the first list to the second.
    assert_eq!(
        from_lists[0].attribute("blockStart"),
        Some(&json!(Timestamp::from_millis(100).to_string()))
    );
    assert_eq!(from_lists[0].timestamp, Timestamp::from_millis(200));
    assert_eq!(from_lists[2].timestamp, Timestamp::from_millis(200));
    let (_, rejected) = end(&mut lists);
    assert_eq!(
        rejected[0].reason,
        "incomplete block of 3 of 4 samples at end of input"
    );
    assert_eq!(rejected[0].observation.value.to_json(), json!([9, 10, 11]));
    assert_eq!(rejected[0].observation.name, Sym::new("acc"));
    assert_eq!(rejected[0].observation.source, Sym::new("box-1"));
}

#[test]
fn a_checkpoint_mid_block_gives_the_same_results_as_an_uninterrupted_run() {
    let params = json!({
        "blockSize": 128,
        "hop": 48,
        "sampleRate": 1000,
        "bands": "0-50,50-200,200-500",
    });
    let x = noisy(700);
    // Samples one by one, then lists, from two sources.
    let mut input = samples(&x[..300], 0);
    for (i, chunk) in x[300..].chunks(37).enumerate() {
        input.push(list(chunk, 1000 + i as i64));
    }
    let mut other = samples(&x[..200], 0);
    for o in &mut other {
        o.source = Sym::new("box-2");
    }
    input.extend(other);

    let mut whole = vibration(params.clone());
    let (mut expected, _) = run(&mut whole, &input);
    let (_, expected_end) = end(&mut whole);

    for cut in [1, 150, 305, 308, 450] {
        let mut first = vibration(params.clone());
        let (mut got, _) = run(&mut first, &input[..cut]);
        // Through text, as a checkpoint is stored.
        let text = first.snapshot().unwrap().to_string();
        let mut second = vibration(params.clone());
        second
            .restore(serde_json::from_str(&text).unwrap())
            .unwrap();
        got.extend(run(&mut second, &input[cut..]).0);
        assert_eq!(got.len(), expected.len(), "cut at {cut}");
        assert_eq!(got, expected, "cut at {cut}");
        let (_, got_end) = end(&mut second);
        assert_eq!(got_end, expected_end, "cut at {cut}");
    }
    expected.retain(|o| o.source == Sym::new("box-2"));
    assert!(!expected.is_empty(), "both sources reach full blocks");
}

#[test]
fn a_restored_snapshot_of_another_shape_is_refused() {
    let mut p = vibration(json!({}));
    assert!(
        p.restore(json!({"blocks": [{"values": [1], "times": []}]}))
            .is_err()
    );
    assert!(p.restore(json!(null)).is_err());
    assert!(
        p.restore(json!({"blocks": [{"values": [1], "times": [0], "used": 2}]}))
            .is_err()
    );
}

#[test]
fn values_that_are_not_numbers_go_to_the_dead_letters() {
    let mut input = samples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 0);
    input[1].value = Value::Text(Arc::new("loud".into()));
    input[2].value = Value::Bool(true);
    input[3].value = Value::Json(Arc::new(json!([1.0, "x", 2.0])));
    input[4].value = Value::Number(f64::NAN);
    input[5].value = Value::Json(Arc::new(json!({"x": 1})));
    input.push(list(&[], 10));
    input.push(list(&[8.0, 9.0], 11));
    let mut p = vibration(json!({"blockSize": 4, "features": "mean"}));
    let (emitted, rejected) = run(&mut p, &input);
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "vibration: a sample is a number or a list of numbers, and this value is text",
            "vibration: a sample is a number or a list of numbers, and this value is a boolean",
            "vibration: element 1 of the list of samples, \"x\", is not a finite number",
            "vibration: the sample NaN is not a finite number",
            "vibration: a sample is a number or a list of numbers, and this value is an object",
            "vibration: the list of samples is empty",
        ]
    );
    // The block is made of the usable samples only: 1, 7, 8, 9.
    assert_eq!(by_name(&emitted)["acc.mean"], [6.25]);
}

#[test]
fn grouping_and_names() {
    let mut a = samples(&[1.0, 2.0], 0);
    let mut b = samples(&[3.0, 4.0], 0);
    for o in &mut b {
        o.source = Sym::new("box-2");
    }
    let mut temperature = samples(&[50.0], 0);
    temperature[0].name = Sym::new("temperature");
    a.append(&mut b);
    a.append(&mut temperature);

    // By name: both boxes in one block, results from the sink.
    let mut p = vibration(
        json!({"blockSize": 4, "features": "mean", "groupBy": "name", "observationName": "acc"}),
    );
    let (emitted, rejected) = run(&mut p, &a);
    assert!(rejected.is_empty());
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].name, Sym::new("acc.mean"));
    assert_eq!(emitted[0].source, Sym::new("sink"));
    assert_eq!(emitted[0].value, Value::Number(2.5));

    // By source: named after the processor, or outputName.
    let mut p = vibration(json!({"blockSize": 2, "features": "peak", "groupBy": "source"}));
    let names: Vec<(String, String)> = run(&mut p, &a)
        .0
        .iter()
        .map(|o| (o.source.to_string(), o.name.to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("box-1".to_owned(), "vibration.peak".to_owned()),
            ("box-2".to_owned(), "vibration.peak".to_owned())
        ]
    );
    let mut p = vibration(json!({"blockSize": 2, "features": "peak", "outputName": "pump"}));
    let names: Vec<String> = run(&mut p, &a)
        .0
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(names, ["pump.peak", "pump.peak"]);
    let (_, rejected) = end(&mut p);
    assert_eq!(rejected.len(), 1, "temperature's lone sample");
    assert_eq!(rejected[0].observation.name, Sym::new("temperature"));
}

#[test]
fn the_registered_kind_runs_with_its_defaults() {
    let ctx = ProcessorContext::for_test(&json!({}), "sink");
    let mut p = (engine::processor::registration(KIND).unwrap().factory)(&ctx).unwrap();
    let (emitted, _) = run(p.as_mut(), &[list(&noisy(DEFAULT_BLOCK_SIZE), 0)]);
    assert_eq!(emitted.len(), 7);
    assert!(
        emitted
            .iter()
            .all(|o| o.attribute("samples") == Some(&json!(1024)))
    );
}

#[test]
fn bad_parameters_are_configuration_errors() {
    for (params, says) in [
        (json!({"bands": "0-100"}), "sampleRate is required"),
        (json!({"bands": "0-100", "sampleRate": 0}), "sampleRate 0"),
        (json!({"bands": "100-50", "sampleRate": 1000}), "lo < hi"),
        (json!({"bands": "50-50", "sampleRate": 1000}), "lo < hi"),
        (json!({"bands": [[10, 5]], "sampleRate": 1000}), "lo < hi"),
        (json!({"bands": "600-700", "sampleRate": 1000}), "Nyquist"),
        (json!({"bands": "-5-10", "sampleRate": 1000}), "not a band"),
        (
            json!({"bands": "low-high", "sampleRate": 1000}),
            "not a band",
        ),
        (
            json!({"bands": [[1, 2, 3]], "sampleRate": 1000}),
            "not a band",
        ),
        (json!({"bands": "", "sampleRate": 1000}), "no band"),
        (json!({"features": "bandEnergy"}), "needs bands"),
        (
            json!({"features": "rms", "bands": "0-10", "sampleRate": 100}),
            "leaves out bandEnergy",
        ),
        (json!({"features": "rms,loudness"}), "unknown feature"),
        (json!({"features": ""}), "empty"),
        (json!({"blockSize": 0}), "blockSize 0"),
        (json!({"blockSize": 1}), "blockSize 1"),
        (json!({"blockSize": -4}), "blockSize -4"),
        (json!({"blockSize": "many"}), "blockSize"),
        (json!({"blockSize": 8, "hop": 0}), "hop 0"),
        (json!({"blockSize": 8, "hop": 9}), "hop 9"),
        (json!({"window": "hamming"}), "window"),
        (json!({"groupBy": "all"}), "groupBy"),
        (json!({"removeMean": "maybe"}), "removeMean"),
    ] {
        match Vibration::from_context(&ProcessorContext::for_test(&params, "sink")) {
            Err(ProcessorError::Config(message)) => {
                assert!(message.message.contains(says), "{params}: {message}");
            }
            other => panic!("{params}: {other:?}"),
        }
    }
    // Any block size from 2 works, and so does a band reaching past the Nyquist frequency.
    assert!(
        Vibration::from_context(&ProcessorContext::for_test(
            &json!({"blockSize": 3, "bands": "0-10,10-60", "sampleRate": 100}),
            "sink"
        ))
        .is_ok()
    );
}
