//! `dda bench queue`: a network sink's store-and-forward queue on disk, filled while its
//! remote is away, then drained.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use engine::spool::{Dropped, Queue, QueueLimits};
use engine::{Batch, Observation, Sym, Timestamp};
use serde_json::json;

use super::bench::{BenchOptions, Report};

/// Observations queued.
const OBSERVATIONS: usize = 2_000_000;
const BATCH: usize = 1024;

/// Fills a queue with window results (attributes as the window processors write them)
/// that no sink takes — all but the first few batches go to disk — then takes and
/// delivers them all, checking that every one comes back in order. p50 is the time to
/// fill, p99 the time to drain, in milliseconds.
pub fn run(description: &'static str, options: &BenchOptions) -> anyhow::Result<Report> {
    let dir = options.out_dir.join("bench-queue");
    let _ = std::fs::remove_dir_all(&dir);
    let queue = Queue::open(
        &dir,
        QueueLimits {
            max_bytes: 8 << 30,
            ..QueueLimits::default()
        },
    )
    .context("the queue")?;
    let batches = results();
    let started = Instant::now();
    let mut dropped = Dropped::default();
    for b in &batches {
        anyhow::ensure!(
            queue.push(b.clone(), &mut dropped)?.is_none(),
            "the queue refused input"
        );
    }
    queue.persist()?;
    let filled = started.elapsed();
    let bytes = queue.status().bytes;
    queue.end_input();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let taken = runtime.block_on(drain(&queue))?;
    let drained = started.elapsed();
    anyhow::ensure!(taken == OBSERVATIONS, "{taken} of {OBSERVATIONS} came back");
    anyhow::ensure!(queue.status().bytes == 0, "the queue did not empty");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "queue: {OBSERVATIONS} observations, {bytes} bytes on disk: appended at {:.0}/s, drained at {:.0}/s",
        OBSERVATIONS as f64 / filled.as_secs_f64(),
        OBSERVATIONS as f64 / drained.as_secs_f64()
    );
    Ok(Report::two_phases(
        "queue",
        description,
        OBSERVATIONS,
        filled,
        drained,
    ))
}

/// Takes and delivers everything, checking the order; how many observations came back.
async fn drain(queue: &Arc<Queue>) -> anyhow::Result<usize> {
    let mut dropped = Dropped::default();
    let mut next = 0i64;
    let mut taken = 0;
    while let Some(b) = queue.take(&mut dropped).await? {
        for o in b.iter() {
            anyhow::ensure!(o.timestamp.0 == next, "out of order at {next}");
            next += 1;
        }
        taken += b.len();
        queue.delivered_one();
    }
    Ok(taken)
}

/// Hourly results of 100 boxes, as a window processor emits them.
fn results() -> Vec<Batch> {
    let name = Sym::new("TotalRealPower");
    let attributes = Arc::new(
        json!({
            "windowStart": "2018-05-24T00:00:00Z",
            "windowEnd": "2018-05-24T01:00:00Z",
            "count": 60,
            "resultId": "8d1c3a52-7f7e-5b8e-9a51-2f0c1b6f4e21",
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    let sources: Vec<Sym> = (0..100).map(|b| Sym::new(&format!("dsm-ib{b}"))).collect();
    (0..OBSERVATIONS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| {
                    let mut o = Observation::number(
                        sources[i % sources.len()],
                        name,
                        Timestamp(i as i64),
                        749.5 + (i % 7) as f64,
                    );
                    o.attributes = Some(attributes.clone());
                    o
                })
                .collect::<Vec<_>>()
                .into()
        })
        .collect()
}
