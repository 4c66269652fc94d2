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

/// Keys of the `checkpoint` case.
const KEYS: usize = 1_000_000;

/// `dda bench checkpoint`: an `average` over hourly windows holding one open window for
/// each of 1,000,000 sources; its state is snapshotted and written as a checkpoint file
/// (synced), then read back into a new processor. The "p50" column is the writing, the
/// "p99" column the restoring, in milliseconds.
///
/// # Errors
///
/// The processor cannot be created, or the file cannot be written or read back.
pub fn checkpoint(description: &'static str, options: &BenchOptions) -> anyhow::Result<Report> {
    let ctx = ProcessorContext::for_test(&json!({"window": "PT1H"}), "results");
    let registration = engine::processor::registration("average").context("average")?;
    let mut processor = (registration.factory)(&ctx)?;
    let name = Sym::new("power");
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut batch = Vec::with_capacity(BATCH);
    for k in 0..KEYS {
        batch.push(Observation::number(
            Sym::new(&format!("k{k}")),
            name,
            Timestamp::from_millis(1_527_120_000_000 + (k % 1000) as i64),
            k as f64,
        ));
        if batch.len() == BATCH || k + 1 == KEYS {
            let mut out = Output::new(&mut emitted, &mut rejected, ctx.sink);
            processor.process(&batch, &mut out)?;
            batch.clear();
        }
    }
    let dir = options.out_dir.join("bench-checkpoint");
    let started = Instant::now();
    let snapshot = processor.snapshot()?;
    let snapshotted = started.elapsed();
    let c = engine::checkpoint::Checkpoint {
        instance: "bench".into(),
        n: 1,
        processors: [("average".to_owned(), snapshot)].into(),
        ..engine::checkpoint::Checkpoint::default()
    };
    let bytes = engine::checkpoint::write(&dir, &c)?;
    let written = started.elapsed();
    let started = Instant::now();
    let mut back =
        engine::checkpoint::read(&dir, "bench").context("the checkpoint just written")?;
    let parsed = started.elapsed();
    let mut restored = (registration.factory)(&ctx)?;
    restored.restore(
        back.processors
            .remove("average")
            .context("the processor's snapshot")?,
    )?;
    let read = started.elapsed();
    // The restored processor holds the same windows: flushed, both give the same results.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    processor.flush(&mut Output::new(&mut a, &mut rejected, ctx.sink))?;
    restored.flush(&mut Output::new(&mut b, &mut rejected, ctx.sink))?;
    let results = |mut v: Vec<Observation>| {
        let mut keyed: Vec<_> = v
            .drain(..)
            .map(|o| {
                (
                    o.source.text().to_string(),
                    o.timestamp,
                    o.value.to_json().to_string(),
                    o.id,
                )
            })
            .collect();
        keyed.sort();
        keyed
    };
    anyhow::ensure!(
        a.len() == KEYS && results(a) == results(b),
        "the restored windows differ"
    );
    // This process knew the keys' names before restoring; a restore after a crash, in a new
    // process, interns them first: timed apart, with as many names not seen before.
    let fresh: Vec<String> = (0..KEYS).map(|k| format!("new-k{k}")).collect();
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let started = Instant::now();
    let interned = Sym::new_all(&fresh);
    let interning = started.elapsed();
    anyhow::ensure!(interned.len() == KEYS, "every name interned");
    eprintln!(
        "checkpoint: {KEYS} keys' open windows, {bytes} bytes: written in {:.3} s (snapshot {:.3} s), restored in {:.3} s (reading the file {:.3} s); interning {KEYS} names not seen before, as a restore in a new process does: {:.3} s more",
        written.as_secs_f64(),
        snapshotted.as_secs_f64(),
        read.as_secs_f64(),
        parsed.as_secs_f64(),
        interning.as_secs_f64()
    );
    Ok(Report::two_phases(
        "checkpoint",
        description,
        KEYS,
        written,
        read,
    ))
}
