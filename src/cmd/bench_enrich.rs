//! `dda bench enrich`: the `enrich` processor on one core with a warm cache.
//!
//! Ten data sources, each a DSM naming a CIR object linked to a row of an ERP table in
//! SQLite (written into `--out-dir`) — model, serial number, maintenance interval. The
//! records are loaded as `dda run` and `dda serve` load them (the host's follower, through
//! the SQLite repository) and the processor waits for that first load; then readings of
//! the ten sources go to it in batches of 1024, each enriched with three attributes.
//! Throughput counts readings over the wall-clock time of processing them; the "latency"
//! columns are the time one batch takes. Every result is checked to carry its source's
//! serial number.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use engine::processor::{Output, ProcessorContext};
use engine::{Observation, Sym, Timestamp};
use serde_json::json;

use super::bench::{BenchOptions, Report, percentile, validated};

const SOURCES: usize = 10;
const BATCH: usize = 1024;

/// Runs the case.
///
/// # Errors
///
/// The ERP file cannot be written, or the processor cannot be created or loaded.
pub fn run(
    description: &'static str,
    options: &BenchOptions,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;
    let erp = options.out_dir.join("bench-erp.sqlite");
    let _ = std::fs::remove_file(&erp);
    {
        let c = rusqlite::Connection::open(&erp).context("the bench ERP table")?;
        c.execute_batch("CREATE TABLE equipment (equipment_no TEXT PRIMARY KEY, model TEXT, serial_number TEXT, interval_days INTEGER)")?;
        for i in 0..SOURCES {
            c.execute(
                "INSERT INTO equipment VALUES (?1, 'DMS 090', ?2, 90)",
                (format!("E-{i}"), format!("SN-{i:04}")),
            )?;
        }
    }
    let uuid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let dsms: Vec<_> = (0..SOURCES)
        .map(|i| json!({"id": format!("m{i}"), "dataSourceDefinitionReferenceID": "dsd-bus", "objectReferenceID": uuid(i)}))
        .collect();
    let objects: Vec<_> = (0..SOURCES)
        .map(|i| json!({"id": uuid(i), "name": format!("Spindle {i}"), "class": "asset"}))
        .collect();
    let links: Vec<_> = (0..SOURCES)
        .map(|i| json!({"objectReferenceID": uuid(i), "repositoryReferenceID": "erp", "localID": format!("E-{i}")}))
        .collect();
    let doc = json!({
        "kind": "Bundle",
        "dataInterfaces": {"dataInterface": [{"id": "di-bus", "communicationProtocol": "Bus"}]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "value"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"}]},
        "dataSourceManifests": {"dataSourceManifest": dsms},
        "objects": {"object": objects},
        "repositories": {"repository": [{"id": "erp", "repositoryType": "sqlite",
            "path": erp.to_string_lossy(), "table": "equipment", "key": "equipment_no"}]},
        "links": {"link": links},
    });
    let model = Arc::new(validated(&doc, "bench-enrich.json")?);
    let sources: Vec<Sym> = (0..SOURCES).map(|i| Sym::new(&format!("m{i}"))).collect();
    let mut ctx = ProcessorContext::for_test(
        &json!({"fields": "model,serialNumber=erp:serial_number,maintenanceIntervalDays=erp:interval_days"}),
        "results",
    );
    ctx.sources.clone_from(&sources);
    ctx.upstream.clone_from(&sources);
    ctx.linked = Some(Arc::new(connectors::linked::Follower::new(Arc::new(
        connectors::linked::Fixed::new(model),
    ))));
    let registration = engine::processor::registration("enrich").context("enrich")?;
    // Created and loaded in the runtime, as the engine does.
    let mut processor = runtime.block_on(async {
        let p = (registration.factory)(&ctx)?;
        if let Some(ready) = p.ready() {
            ready.await;
        }
        anyhow::Ok(p)
    })?;
    let name = Sym::new("vibration");
    let total = options.observations;
    let reading = |n: u64| {
        Observation::number(
            sources[(n % SOURCES as u64) as usize],
            name,
            Timestamp::from_millis(1_527_120_000_000 + (n / SOURCES as u64) as i64),
            (n % 1_000) as f64,
        )
    };
    let mut batch = Vec::with_capacity(BATCH);
    let (mut emitted, mut rejected) = (Vec::with_capacity(BATCH), Vec::new());
    let mut observations = 0_u64;
    let mut batch_nanos = Vec::with_capacity((total as usize).div_ceil(BATCH));
    let mut seconds = 0.0;
    while observations < total {
        batch.clear();
        while batch.len() < BATCH && observations + (batch.len() as u64) < total {
            batch.push(reading(observations + batch.len() as u64));
        }
        emitted.clear();
        let began = Instant::now();
        let mut out = Output::new(&mut emitted, &mut rejected, ctx.sink);
        processor.process(&batch, &mut out)?;
        let took = began.elapsed();
        seconds += took.as_secs_f64();
        batch_nanos.push(took.as_nanos() as u64);
        ensure!(
            out.take_counts().is_empty(),
            "some readings were not enriched"
        );
        ensure!(rejected.is_empty(), "rejected: {:?}", rejected.first());
        ensure!(emitted.len() == batch.len(), "every reading is passed on");
        for (i, o) in emitted.iter().enumerate() {
            let n = observations + i as u64;
            let serial = o.attribute("serialNumber").and_then(|s| s.as_str());
            ensure!(
                serial == Some(format!("SN-{:04}", n % SOURCES as u64).as_str()),
                "reading {n} carries {serial:?}"
            );
        }
        observations += batch.len() as u64;
    }
    batch_nanos.sort_unstable();
    Ok(Report {
        case: "enrich",
        description,
        observations,
        seconds,
        observations_per_second: observations as f64 / seconds,
        results: observations as usize,
        p50_latency_ms: percentile(&batch_nanos, 0.50) as f64 / 1e6,
        p99_latency_ms: percentile(&batch_nanos, 0.99) as f64 / 1e6,
        max_latency_ms: batch_nanos.last().copied().unwrap_or(0) as f64 / 1e6,
    })
}
