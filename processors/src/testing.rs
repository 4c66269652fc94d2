//! Helpers for processor tests.

use engine::processor::{Output, Processor, Rejected};
use engine::{Observation, Sym, Timestamp};

/// Numeric observations named `x` from source `s`, one second apart from t = 0.
pub fn numbers(values: &[f64]) -> Vec<Observation> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Observation::number(
                Sym::new("s"),
                Sym::new("x"),
                Timestamp::from_millis(i as i64 * 1000),
                *v,
            )
        })
        .collect()
}

/// Feeds one batch; returns what was emitted and rejected.
pub fn run(p: &mut dyn Processor, input: &[Observation]) -> (Vec<Observation>, Vec<Rejected>) {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.process(input, &mut out).expect("processes");
    (emitted, rejected)
}

/// Advances event time; returns what was emitted.
pub fn watermark(p: &mut dyn Processor, t: Timestamp) -> Vec<Observation> {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.on_watermark(t, &mut out).expect("advances");
    emitted
}

/// Ends the input; returns what was emitted.
pub fn flush(p: &mut dyn Processor) -> Vec<Observation> {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.flush(&mut out).expect("flushes");
    emitted
}

/// Feeds one batch; returns what was emitted, rejected and sent to side outputs.
pub fn run_with_side(
    p: &mut dyn Processor,
    input: &[Observation],
) -> (Vec<Observation>, Vec<Rejected>, Vec<(Sym, Observation)>) {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
    p.process(input, &mut out).expect("processes");
    let side = out.take_side();
    (emitted, rejected, side)
}
