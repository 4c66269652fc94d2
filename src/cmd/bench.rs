//! `dda bench`: synthetic pipelines run in-process through the real engine, reporting
//! throughput and end-to-end latency.
//!
//! Each case is an analytics manifest like a user's: a simulator source, a `filter`
//! (keeping everything, so the average sees every reading), a tumbling `average`, and a
//! sink — a bus topic read by the benchmark itself (the "null sink"), or an SQLite table.
//! Throughput counts readings from the start until the last result reached the sink.
//! Latency is measured for every result: from the moment the newest reading it was
//! computed from entered the engine to the moment it reached the sink.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::bus::Message;
use engine::connector::Speed;
use engine::observation::ingest_clock;
use engine::{DataSource, Engine, EngineConfig, Plan};
use manifests::bundle::{Bundle, Syntax};
use serde_json::{Value as Json, json};

/// Options of `dda bench`.
#[derive(Debug)]
pub struct BenchOptions {
    /// Cases to run (all when empty).
    pub cases: Vec<String>,
    /// Readings per maximum-rate case.
    pub observations: u64,
    /// Readings per second of the rate-limited case.
    pub rate: u64,
    /// Wall-clock length of the rate-limited case.
    pub duration: Duration,
    /// Worker threads (1: everything on one core, apart from SQLite writes).
    pub threads: usize,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Where the SQLite case writes.
    pub out_dir: PathBuf,
    /// Messages per MQTT case.
    pub messages: u64,
    /// The MQTT broker of the MQTT cases, `HOST:PORT`.
    pub broker: String,
    /// Checkpoints of the engine cases' instance, this often.
    pub checkpoint_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
enum Sink {
    Null,
    Sqlite,
}

#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    sink: Sink,
    rate: Option<u64>,
}

const CASES: &[(&str, &str)] = &[
    (
        "null",
        "filter → tumbling average → null sink, at maximum rate",
    ),
    (
        "null-rate",
        "filter → tumbling average → null sink, at a fixed rate (--rate)",
    ),
    (
        "sqlite",
        "filter → tumbling average → SQLite store, at maximum rate",
    ),
    (
        "null-sliding",
        "filter → average over sliding windows of 1 min every 1 s → null sink, at maximum rate",
    ),
    (
        "sliding",
        "average over sliding windows of 1 min every 1 s, 10 sources, one core, no engine",
    ),
    (
        "session",
        "average over session windows (1 s gap), 10 bursty sources, one core, no engine",
    ),
    (
        "enrich",
        "enrich: three attributes from an SQLite ERP table linked through the CIR, 10 sources, warm cache, one core, no engine",
    ),
    (
        "checkpoint",
        "a checkpoint of 1,000,000 keys' open windows, written then restored (p50: writing, p99: restoring; only when named)",
    ),
    (
        "queue",
        "a network sink's store-and-forward queue: 2,000,000 window results appended to disk, then drained in order (p50: appending, p99: draining; only when named)",
    ),
    (
        "create",
        "10,000 analytics instances created one after another over HTTP on a dda serve in process (p50: the median of the first 100 creates, p99: of the last 100; only when named)",
    ),
    (
        "mqtt",
        "MQTT → engine (echo) → MQTT through the broker, QoS 0 (only when named)",
    ),
    (
        "mqtt-qos1",
        "MQTT → engine (echo) → MQTT through the broker, QoS 1 (only when named)",
    ),
];

/// The cases that run only when named: those that need a broker, the checkpoint, queue and
/// create cases.
fn only_when_named(name: &str) -> bool {
    name.starts_with("mqtt") || matches!(name, "checkpoint" | "queue" | "create")
}

/// The value at fraction `p` of sorted `values` (0 when there are none).
pub(crate) fn percentile(values: &[u64], p: f64) -> u64 {
    values
        .get(
            ((values.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(values.len().saturating_sub(1)),
        )
        .copied()
        .unwrap_or(0)
}

/// A result line.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    pub case: &'static str,
    pub description: &'static str,
    pub observations: u64,
    pub seconds: f64,
    pub observations_per_second: f64,
    pub results: usize,
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub max_latency_ms: f64,
}

impl Report {
    /// A case of two timed phases over `n` observations: the first shown as p50, the
    /// second as p99 (and max).
    pub(crate) fn two_phases(
        case: &'static str,
        description: &'static str,
        n: usize,
        first: Duration,
        second: Duration,
    ) -> Self {
        let seconds = (first + second).as_secs_f64();
        Self {
            case,
            description,
            observations: n as u64,
            seconds,
            observations_per_second: n as f64 / seconds,
            results: 0,
            p50_latency_ms: first.as_secs_f64() * 1e3,
            p99_latency_ms: second.as_secs_f64() * 1e3,
            max_latency_ms: second.as_secs_f64() * 1e3,
        }
    }
}

/// Runs the benchmark.
///
/// # Errors
///
/// An unknown case, or an engine that cannot start.
pub fn run(options: BenchOptions) -> anyhow::Result<ExitCode> {
    let selected: Vec<Case> = CASES
        .iter()
        .filter(|(name, _)| {
            if options.cases.is_empty() {
                !only_when_named(name)
            } else {
                options.cases.iter().any(|c| c == name)
            }
        })
        .map(|(name, _)| Case {
            name,
            sink: if *name == "sqlite" {
                Sink::Sqlite
            } else {
                Sink::Null
            },
            rate: (*name == "null-rate").then_some(options.rate),
        })
        .collect();
    if let Some(unknown) = options
        .cases
        .iter()
        .find(|c| !CASES.iter().any(|(n, _)| n == *c))
    {
        bail!(
            "unknown case `{unknown}`; cases: {}",
            CASES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        );
    }
    let mut builder = if options.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(options.threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut reports = Vec::new();
    for case in selected {
        if !options.json {
            eprintln!("running {} ...", case.name);
        }
        let report = match case.name {
            "mqtt" | "mqtt-qos1" => runtime.block_on(super::bench_mqtt::run(
                case.name,
                description(case.name),
                u8::from(case.name == "mqtt-qos1"),
                &options,
            )),
            "sliding" | "session" => {
                super::bench_window::run(case.name, description(case.name), &options)
            }
            "enrich" => super::bench_enrich::run(description(case.name), &options, &runtime),
            "checkpoint" => super::bench_window::checkpoint(description(case.name), &options),
            "queue" => super::bench_queue::run(description(case.name), &options),
            "create" => super::bench_api::run(description(case.name), &options, &runtime),
            _ => runtime.block_on(run_case(&case, &options)),
        };
        reports.push(report?);
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<12} {:>12} {:>9} {:>14} {:>8} {:>12} {:>12}",
            "case", "observations", "seconds", "obs/s", "results", "p50 latency", "p99 latency"
        );
        for r in &reports {
            println!(
                "{:<12} {:>12} {:>9.2} {:>14.0} {:>8} {:>9.3} ms {:>9.3} ms",
                r.case,
                r.observations,
                r.seconds,
                r.observations_per_second,
                r.results,
                r.p50_latency_ms,
                r.p99_latency_ms
            );
        }
        println!(
            "({} worker thread{}; cases: {})",
            options.threads,
            if options.threads == 1 { "" } else { "s" },
            CASES
                .iter()
                .map(|(n, d)| format!("{n} = {d}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bundle(case: &Case, options: &BenchOptions) -> anyhow::Result<manifests::Model> {
    let (sensor_params, mut window) = match case.rate {
        // Readings every 1/rate s of real time; 10 ms windows give a hundred results a second.
        Some(rate) => (
            json!([
                {"key": "interval", "value": format!("PT{:.9}S", 1.0 / rate.max(1) as f64)},
                {"key": "speed", "value": "1"},
            ]),
            json!([{"key": "window", "value": "PT0.01S"}]),
        ),
        // A reading every millisecond of simulated time, as fast as the pipeline takes them.
        None => (
            json!([
                {"key": "interval", "value": "PT0.001S"},
                {"key": "readings", "value": options.observations},
                {"key": "start", "value": "2018-05-24T00:00:00Z"},
            ]),
            json!([{"key": "window", "value": "PT1S"}]),
        ),
    };
    if case.name == "null-sliding" {
        window = json!([{"key": "windowType", "value": "sliding"}, {"key": "window", "value": "PT1M"},
                        {"key": "slide", "value": "PT1S"}]);
    }
    let sink = match case.sink {
        Sink::Null => json!({"id": "results", "dataSourceDefinitionReferenceID": "dsd-bus"}),
        Sink::Sqlite => json!({"id": "results", "dataSourceDefinitionReferenceID": "dsd-sqlite",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [
                {"key": "path", "value": options.out_dir.join("bench.sqlite").to_string_lossy()},
                {"key": "table", "value": "averages"}]}}),
    };
    let apm = |id: &str, apd: &str, from: &str, to: &str, params: Json| {
        json!({"id": id, "analyticsProcessorDefinitionReferenceID": apd, "parameters": {"parameter": params},
               "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
               "dataSink": {"dataSourceManifestReferenceID": to}})
    };
    let mut apms = vec![
        apm(
            "filter",
            "apd-filter",
            "sensor",
            "filtered",
            json!([{"key": "operator", "value": "GE"}, {"key": "threshold", "value": -1e18}]),
        ),
        apm("average", "apd-average", "filtered", "averages", window),
    ];
    match case.sink {
        Sink::Null => apms[1]["dataSink"]["dataSourceManifestReferenceID"] = json!("results"),
        Sink::Sqlite => apms.push(apm("store", "apd-store", "averages", "results", json!([]))),
    }
    let doc = json!({
        "kind": "Bundle",
        "dataInterfaces": {"dataInterface": [
            {"id": "di-sim", "communicationProtocol": "Simulator"},
            {"id": "di-bus", "communicationProtocol": "Bus"},
            {"id": "di-sqlite", "communicationProtocol": "SQLite"}]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "value"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"},
            {"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"},
            {"id": "dsd-sqlite", "dataInterfaceReferenceID": "di-sqlite", "dataKindReferenceID": "dk"}]},
        "dataSourceManifests": {"dataSourceManifest": [
            {"id": "sensor", "dataSourceDefinitionReferenceID": "dsd-sim",
             "dataSourceDefinitionInterfaceParameters": {"parameter": sensor_params}},
            {"id": "filtered", "dataSourceDefinitionReferenceID": "dsd-bus"},
            {"id": "averages", "dataSourceDefinitionReferenceID": "dsd-bus"},
            sink]},
        "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
            {"id": "apd-filter", "processorType": "filter"},
            {"id": "apd-average", "processorType": "average"},
            {"id": "apd-store", "processorType": "store"}]},
        "analyticsManifests": {"analyticsManifest": [{"id": "bench", "analyticsProcessors": {"apm": apms}}]},
    });
    validated(&doc, "bench.json")
}

/// A benchmark's bundle, validated as `dda validate` would.
pub(crate) fn validated(doc: &Json, file: &str) -> anyhow::Result<manifests::Model> {
    let mut b = Bundle::default();
    b.add_document(PathBuf::from(file), doc.to_string(), Syntax::Json, None);
    let catalogue = engine::Catalogue::get();
    let model = manifests::validate::validate(
        &mut b,
        &manifests::Options {
            catalogue: Some(catalogue),
            ..manifests::Options::default()
        },
    );
    if let Some(d) = b.diagnostics.iter().find(|d| d.is_error()) {
        bail!("the benchmark bundle is invalid: {d}");
    }
    Ok(model)
}

fn description(name: &str) -> &'static str {
    CASES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, d)| d)
}

async fn run_case(case: &Case, options: &BenchOptions) -> anyhow::Result<Report> {
    let model = bundle(case, options)?;
    // Each run measures from the start: no checkpoint of an earlier run is restored.
    let _ = std::fs::remove_dir_all(options.out_dir.join("bench-checkpoints"));
    let mut config = EngineConfig {
        speed: Speed::Max,
        checkpoints: options.checkpoint_interval.map(|interval| {
            engine::engine::CheckpointSettings {
                dir: options.out_dir.join("bench-checkpoints"),
                interval,
                instances: std::collections::HashMap::new(),
            }
        }),
        ..EngineConfig::default()
    };
    config.dead_letters.parameters.insert(
        "path",
        Json::String(
            options
                .out_dir
                .join("bench-dead-letters.jsonl")
                .to_string_lossy()
                .into_owned(),
        ),
    );
    let engine = Engine::new(config).await?;
    for id in model.data_source_manifests.keys() {
        engine.register(DataSource::from_model(&model, id).context("bench DSM")?)?;
    }
    engine.create(Plan::new(&model.analytics_manifests["bench"], &model)?)?;
    // The measuring sink: the topic averages are written to (the SQLite case's input to its
    // store, so the store's sink is exercised too).
    let measured = match case.sink {
        Sink::Null => "results",
        Sink::Sqlite => "averages",
    };
    let (subscriber, mut rx) = engine.tap(measured);
    let collector = tokio::spawn(async move {
        let _keep = subscriber;
        let mut latencies: Vec<u64> = Vec::new();
        let mut last = Instant::now();
        while let Some(e) = rx.recv().await {
            match e.message {
                Message::Data(batch) => {
                    let now = ingest_clock();
                    latencies.extend(batch.iter().map(|o| now.saturating_sub(o.ingested)));
                    last = Instant::now();
                }
                Message::Leave => break,
                _ => {}
            }
        }
        (latencies, last)
    });
    let started = Instant::now();
    engine.start("bench").await?;
    match case.rate {
        Some(_) => tokio::time::sleep(options.duration).await,
        None => {
            while !engine.sources_exhausted() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    if let Some(c) = engine.status("bench").await?.checkpoint {
        eprintln!(
            "{}: {} checkpoints ({} failed); the last {} bytes in {} ms",
            case.name, c.completed, c.failures, c.last_bytes, c.last_millis
        );
    }
    engine.stop("bench").await?;
    let (mut latencies, last) = collector.await?;
    let elapsed = match case.rate {
        Some(_) => options.duration,
        None => last.duration_since(started),
    };
    let observations = engine.read().iter().map(|(_, n)| *n).sum::<u64>();
    engine.shutdown().await;
    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p) as f64 / 1e6;
    Ok(Report {
        case: case.name,
        description: description(case.name),
        observations,
        seconds: elapsed.as_secs_f64(),
        observations_per_second: observations as f64 / elapsed.as_secs_f64().max(1e-9),
        results: latencies.len(),
        p50_latency_ms: pct(0.50),
        p99_latency_ms: pct(0.99),
        max_latency_ms: pct(1.0),
    })
}
