//! `dda bench sliding`, `dda bench session`: one windowed processor driven directly on
//! the calling thread (one core), to measure the window machinery itself.
//!
//! Readings of 10 sources, each a reading per millisecond of event time, go in batches of
//! 1024 to an `average` processor, each batch followed by the watermark (the newest
//! timestamp less 1 µs). `sliding`: windows of 1 min sliding by 1 s (60 windows per
//! reading). `session`: each source reads for 2 s then pauses for 3 s; sessions end after
//! 1 s without readings. Throughput counts readings over the wall-clock time of processing
//! them and every result; the "latency" columns are the time one batch takes (its
//! readings in, its results out).

use std::time::Instant;

use anyhow::Context;
use engine::processor::{Output, ProcessorContext};
use engine::{Observation, Sym, Timestamp};
use serde_json::json;

use super::bench::{BenchOptions, Report, percentile};

const SOURCES: usize = 10;
const BATCH: usize = 1024;

/// Runs case `case` (`sliding` or `session`).
///
/// # Errors
///
/// The processor cannot be created.
pub fn run(
    case: &'static str,
    description: &'static str,
    options: &BenchOptions,
) -> anyhow::Result<Report> {
    let params = match case {
        "sliding" => json!({"windowType": "sliding", "window": "PT1M", "slide": "PT1S"}),
        _ => json!({"windowType": "session", "gap": "PT1S"}),
    };
    let ctx = ProcessorContext::for_test(&params, "results");
    let registration = engine::processor::registration("average").context("average")?;
    let mut processor = (registration.factory)(&ctx)?;
    let sources: Vec<Sym> = (0..SOURCES).map(|i| Sym::new(&format!("m{i}"))).collect();
    let name = Sym::new("power");
    let total = options.observations;
    // Event time in ms: reading n is source n % 10 at millisecond n / 10.
    let reading = |n: u64| -> Option<Observation> {
        let ms = (n / SOURCES as u64) as i64;
        let source = (n % SOURCES as u64) as usize;
        if case == "session" && (ms + source as i64 * 500) % 5_000 >= 2_000 {
            return None;
        }
        Some(Observation::number(
            sources[source],
            name,
            Timestamp::from_millis(1_527_120_000_000 + ms),
            (n % 1_000) as f64,
        ))
    };
    let mut batch = Vec::with_capacity(BATCH);
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let (mut observations, mut results) = (0_u64, 0_usize);
    let mut batch_nanos = Vec::new();
    let mut n = 0_u64;
    let started = Instant::now();
    while observations < total {
        batch.clear();
        while batch.len() < BATCH && observations + (batch.len() as u64) < total {
            if let Some(o) = reading(n) {
                batch.push(o);
            }
            n += 1;
        }
        let began = Instant::now();
        let newest = batch.last().map_or(Timestamp::MIN, |o| o.timestamp);
        let mut out = Output::new(&mut emitted, &mut rejected, ctx.sink);
        processor.process(&batch, &mut out)?;
        processor.on_watermark(Timestamp(newest.as_micros() - 1), &mut out)?;
        batch_nanos.push(began.elapsed().as_nanos() as u64);
        observations += batch.len() as u64;
        results += emitted.len();
        anyhow::ensure!(rejected.is_empty(), "rejected: {:?}", rejected.first());
        emitted.clear();
    }
    let mut out = Output::new(&mut emitted, &mut rejected, ctx.sink);
    processor.flush(&mut out)?;
    results += emitted.len();
    let seconds = started.elapsed().as_secs_f64();
    batch_nanos.sort_unstable();
    let ms = |nanos: u64| nanos as f64 / 1e6;
    Ok(Report {
        case,
        description,
        observations,
        seconds,
        observations_per_second: observations as f64 / seconds,
        results,
        p50_latency_ms: ms(percentile(&batch_nanos, 0.5)),
        p99_latency_ms: ms(percentile(&batch_nanos, 0.99)),
        max_latency_ms: ms(batch_nanos.last().copied().unwrap_or(0)),
    })
}
