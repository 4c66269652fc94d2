//! The engine as a library: the device registry driving connectors while instances run,
//! lifecycle transitions, pause/resume without loss, backpressure, failure isolation, and
//! dead letters.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::bus::Message;
use engine::connector::Speed;
use engine::processor::{
    Output, Processor, ProcessorContext, ProcessorError, ProcessorKind, ProcessorRegistration,
};
use engine::{DataSource, Engine, EngineConfig, EngineError, Observation, Plan, State, Sym};
use manifests::bundle::{Bundle, Syntax};
use manifests::model::Category;
use serde_json::{Value as Json, json};

/// A processor that panics on an observation valued 13, to check failure isolation.
struct Unlucky;

impl Processor for Unlucky {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            assert!(o.value.as_f64() != Some(13.0), "13 is unlucky");
            out.emit(o.clone());
        }
        Ok(())
    }
}

impl ProcessorKind for Unlucky {
    const KIND: &'static str = "test-unlucky";
    const CATEGORY: Category = Category::Preprocessor;
    const DESCRIPTION: &'static str = "Test processor: panics on the value 13.";
    type Config = manifests::config::NoConfig;

    fn new(_: Self::Config, _: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self)
    }
}

engine::inventory::submit!(ProcessorRegistration::of::<Unlucky>());

/// A validated model from bundle JSON: simulator and bus interfaces, and `extra` members.
fn model(dsms: Json, ams: Json, extra_apds: Json) -> manifests::Model {
    let mut apds = vec![
        json!({"id": "apd-echo", "processorType": "echo"}),
        json!({"id": "apd-map", "processorType": "map"}),
        json!({"id": "apd-store", "processorType": "store"}),
        json!({"id": "apd-unlucky", "processorType": "test-unlucky"}),
    ];
    apds.extend(extra_apds.as_array().cloned().unwrap_or_default());
    let bundle = json!({
        "kind": "Bundle",
        "dataInterfaces": {"dataInterface": [
            {"id": "di-sim", "communicationProtocol": "Simulator"},
            {"id": "di-bus", "communicationProtocol": "Bus"},
            {"id": "di-sqlite", "communicationProtocol": "SQLite"}
        ]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "x"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"},
            {"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"},
            {"id": "dsd-sqlite", "dataInterfaceReferenceID": "di-sqlite", "dataKindReferenceID": "dk"}
        ]},
        "dataSourceManifests": {"dataSourceManifest": dsms},
        "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": apds},
        "analyticsManifests": {"analyticsManifest": ams},
    });
    // Links the processor and connector catalogues into this test binary.
    assert!(!processors::catalogue().is_empty());
    assert!(!connectors::catalogue().is_empty());
    let mut b = Bundle::default();
    b.add_document("test.json".into(), bundle.to_string(), Syntax::Json, None);
    let catalogue = engine::Catalogue::get();
    let m = manifests::validate::validate(
        &mut b,
        &manifests::Options {
            catalogue: Some(catalogue),
            ..manifests::Options::default()
        },
    );
    assert!(!b.has_errors(), "{:#?}", b.diagnostics);
    m
}

fn sim(id: &str, params: Json) -> Json {
    let parameter: Vec<Json> = params
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    json!({"id": id, "dataSourceDefinitionReferenceID": "dsd-sim", "dataSourceDefinitionInterfaceParameters": {"parameter": parameter}})
}

fn bus(id: &str) -> Json {
    json!({"id": id, "dataSourceDefinitionReferenceID": "dsd-bus"})
}

fn am(id: &str, apd: &str, source: &str, sink: &str, params: Json) -> Json {
    let parameter: Vec<Json> = params
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()
        })
        .unwrap_or_default();
    json!({"id": id, "analyticsProcessors": {"apm": [{
        "id": format!("{id}-p"),
        "analyticsProcessorDefinitionReferenceID": apd,
        "parameters": {"parameter": parameter},
        "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": source}]},
        "dataSink": {"dataSourceManifestReferenceID": sink}
    }]}})
}

async fn engine(speed: Speed, dir: &tempfile::TempDir) -> Engine {
    let mut config = EngineConfig {
        speed,
        ..EngineConfig::default()
    };
    config.dead_letters.parameters.insert(
        "path",
        json!(dir.path().join("dead-letters.jsonl").to_str().unwrap()),
    );
    Engine::new(config).await.unwrap()
}

/// Collects the values published on a DSM until its processor publisher leaves.
fn collect(engine: &Engine, dsm: &str) -> (Arc<AtomicU64>, tokio::task::JoinHandle<Vec<f64>>) {
    let (subscriber, mut rx) = engine.tap(dsm);
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let handle = tokio::spawn(async move {
        let _keep = subscriber;
        let mut values = Vec::new();
        while let Some(e) = rx.recv().await {
            match e.message {
                Message::Data(batch) => {
                    seen.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    values.extend(batch.iter().map(|o| o.value.as_f64().unwrap()));
                }
                Message::Leave => break,
                _ => {}
            }
        }
        values
    });
    (count, handle)
}

/// Creates and starts instance `am` and waits until its sources are exhausted.
async fn run_until_exhausted(engine: &Engine, model: &manifests::Model, am: &str) {
    engine
        .create(Plan::new(&model.analytics_manifests[am], model).unwrap())
        .unwrap();
    engine.start(am).await.unwrap();
    while !engine.sources_exhausted() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn register_all(engine: &Engine, model: &manifests::Model, except: &[&str]) {
    for id in model
        .data_source_manifests
        .keys()
        .filter(|id| !except.contains(&id.as_str()))
    {
        engine
            .register(DataSource::from_model(model, id).unwrap())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_registered_later_feeds_a_running_instance_and_deregistering_it_only_makes_it_wait()
 {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([sim("sensor", json!({"interval": "PT0.001S"})), bus("out")]),
        json!([am("am", "apd-echo", "sensor", "out", json!(null))]),
        json!([]),
    );
    let engine = engine(Speed::Factor(1.0), &dir).await;
    register_all(&engine, &model, &["sensor"]);
    engine
        .create(Plan::new(&model.analytics_manifests["am"], &model).unwrap())
        .unwrap();
    let (count, _handle) = collect(&engine, "out");
    engine.start("am").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = engine.status("am").await.unwrap();
    assert_eq!(status.state, State::Running);
    assert_eq!(status.waiting_for, ["sensor"]);
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "nothing flows before the source registers"
    );

    engine
        .register(DataSource::from_model(&model, "sensor").unwrap())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flowing = count.load(Ordering::SeqCst);
    assert!(
        flowing > 100,
        "data flows into the running instance: {flowing}"
    );
    assert!(engine.status("am").await.unwrap().waiting_for.is_empty());

    engine.deregister("sensor").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        after,
        "no data once the source is gone"
    );
    let status = engine.status("am").await.unwrap();
    assert_eq!(status.state, State::Running, "the instance keeps running");
    assert_eq!(status.waiting_for, ["sensor"], "and says what it waits for");
    assert!(status.failure.is_none());

    // A DSM a running instance writes cannot be pulled from under it.
    assert!(matches!(
        engine.deregister("out").await,
        Err(EngineError::InUse { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_and_resuming_under_load_loses_and_duplicates_nothing() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    // A counter from 0 by 1: reading k has value k.
    let series = json!([{"name": "x", "model": "counter", "start": 0, "step": 1}]);
    let model = model(
        json!([
            sim("sensor", json!({"readings": N, "series": series})),
            bus("out")
        ]),
        json!([am("am", "apd-echo", "sensor", "out", json!(null))]),
        json!([]),
    );
    let engine = engine(Speed::Max, &dir).await;
    register_all(&engine, &model, &[]);
    engine
        .create(Plan::new(&model.analytics_manifests["am"], &model).unwrap())
        .unwrap();
    let (count, handle) = collect(&engine, "out");
    engine.start("am").await.unwrap();
    let mut pauses = 0;
    while count.load(Ordering::SeqCst) < N && pauses < 50 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        engine.pause("am").await.unwrap();
        assert_eq!(engine.status("am").await.unwrap().state, State::Paused);
        let held = count.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            count.load(Ordering::SeqCst) - held <= 16 * 1024,
            "a paused instance holds its input"
        );
        engine.resume("am").await.unwrap();
        pauses += 1;
    }
    assert!(pauses >= 3, "paused several times under load");
    while !engine.sources_exhausted() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.stop("am").await.unwrap();
    let values = handle.await.unwrap();
    assert_eq!(values.len() as u64, N, "count in = count out");
    assert!(
        values.iter().enumerate().all(|(i, v)| *v == i as f64),
        "every reading once, in order"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_when_the_sink_is_slower_than_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([sim("sensor", json!({})), bus("out")]),
        json!([am("am", "apd-echo", "sensor", "out", json!(null))]),
        json!([]),
    );
    let engine = engine(Speed::Max, &dir).await;
    register_all(&engine, &model, &[]);
    engine
        .create(Plan::new(&model.analytics_manifests["am"], &model).unwrap())
        .unwrap();
    // A throttled sink: at most one batch every 5 ms.
    let (subscriber, mut rx) = engine.tap("out");
    let consumed = Arc::new(AtomicU64::new(0));
    let seen = consumed.clone();
    let sink = tokio::spawn(async move {
        let _keep = subscriber;
        while let Some(e) = rx.recv().await {
            if let Message::Data(b) = e.message {
                seen.fetch_add(b.len() as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    engine.start("am").await.unwrap();
    // In flight at most: two channels of 16 messages of 1024, and a batch in each hand.
    let bound = 2 * 16 * 1024 + 3 * 1024;
    let mut max_in_flight = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let read = engine
            .read()
            .iter()
            .find(|(d, _)| *d == Sym::new("sensor"))
            .map_or(0, |(_, n)| *n);
        let in_flight = read.saturating_sub(consumed.load(Ordering::SeqCst));
        max_in_flight = max_in_flight.max(in_flight);
        assert!(
            in_flight <= bound,
            "in flight {in_flight} > {bound}: the source was not held back"
        );
    }
    let read = engine
        .read()
        .iter()
        .find(|(d, _)| *d == Sym::new("sensor"))
        .map_or(0, |(_, n)| *n);
    assert!(
        read < 1_000_000,
        "an unthrottled source would have produced millions, not {read}"
    );
    assert!(max_in_flight > 0);
    engine.shutdown().await;
    sink.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_processor_fails_its_instance_only() {
    let dir = tempfile::tempdir().unwrap();
    let series = json!([{"name": "x", "model": "counter", "start": 0, "step": 1}]);
    let model = model(
        json!([
            sim("sensor", json!({"interval": "PT0.001S", "series": series})),
            bus("a"),
            bus("b")
        ]),
        json!([
            am("unlucky", "apd-unlucky", "sensor", "a", json!(null)),
            am("fine", "apd-echo", "sensor", "b", json!(null))
        ]),
        json!([]),
    );
    let engine = engine(Speed::Factor(1.0), &dir).await;
    register_all(&engine, &model, &[]);
    for id in ["unlucky", "fine"] {
        engine
            .create(Plan::new(&model.analytics_manifests[id], &model).unwrap())
            .unwrap();
    }
    let (count, _h) = collect(&engine, "b");
    engine
        .start_all(&["unlucky".into(), "fine".into()])
        .await
        .unwrap();
    // The panic is reported once its hook has run (with RUST_BACKTRACE set, symbolizing
    // the backtrace of a large test binary takes a while): wait for it, boundedly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while engine.status("unlucky").await.unwrap().state == State::Running
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = engine.status("unlucky").await.unwrap();
    assert_eq!(failed.state, State::Failed);
    let failure = failed.failure.unwrap();
    assert_eq!(failure.at, "unlucky-p", "the failing processor is named");
    assert!(
        failure.reason.contains("13 is unlucky"),
        "{}",
        failure.reason
    );
    let fine = engine.status("fine").await.unwrap();
    assert_eq!(fine.state, State::Running, "the other instance goes on");
    let before = count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        count.load(Ordering::SeqCst) > before,
        "and its data still flows"
    );
    // A failed instance can be stopped (or started again).
    engine.stop("unlucky").await.unwrap();
    assert_eq!(
        engine.status("unlucky").await.unwrap().state,
        State::Stopped
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_cannot_write_fails_the_instances_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([
            sim("sensor", json!({"interval": "PT0.01S"})),
            {"id": "db", "dataSourceDefinitionReferenceID": "dsd-sqlite",
             "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "path", "value": "/proc/dda-cannot-write-here/x.sqlite"}]}}
        ]),
        json!([am("store", "apd-store", "sensor", "db", json!(null))]),
        json!([]),
    );
    let engine = engine(Speed::Factor(1.0), &dir).await;
    register_all(&engine, &model, &[]);
    engine
        .create(Plan::new(&model.analytics_manifests["store"], &model).unwrap())
        .unwrap();
    engine.start("store").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = engine.status("store").await.unwrap();
    assert_eq!(status.state, State::Failed);
    let failure = status.failure.unwrap();
    assert_eq!(failure.at, "db");
    assert!(failure.reason.contains("cannot open"), "{}", failure.reason);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_transitions_are_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([sim("sensor", json!({"interval": "PT0.1S"})), bus("out")]),
        json!([am("am", "apd-echo", "sensor", "out", json!(null))]),
        json!([]),
    );
    let engine = engine(Speed::Factor(1.0), &dir).await;
    register_all(&engine, &model, &[]);
    engine
        .create(Plan::new(&model.analytics_manifests["am"], &model).unwrap())
        .unwrap();
    let illegal = |r: Result<(), EngineError>, verb: &str, state: State| match r {
        Err(EngineError::IllegalTransition {
            verb: v, state: s, ..
        }) => assert_eq!((v, s), (verb, state)),
        other => panic!("expected an illegal {verb} from {state}, got {other:?}"),
    };
    illegal(engine.stop("am").await, "stop", State::Stopped);
    illegal(engine.pause("am").await, "pause", State::Stopped);
    illegal(engine.resume("am").await, "resume", State::Stopped);
    engine.start("am").await.unwrap();
    illegal(engine.start("am").await, "start", State::Running);
    illegal(engine.resume("am").await, "resume", State::Running);
    illegal(engine.remove("am").await, "remove", State::Running);
    engine.pause("am").await.unwrap();
    illegal(engine.pause("am").await, "pause", State::Paused);
    illegal(engine.start("am").await, "start", State::Paused);
    assert_eq!(engine.status("am").await.unwrap().state, State::Paused);
    engine.stop("am").await.unwrap();
    engine.remove("am").await.unwrap();
    assert!(matches!(
        engine.status("am").await,
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        engine.start("nope").await,
        Err(EngineError::NotFound(_))
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_processed_goes_to_the_dead_letters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([
            sim("sensor", json!({"interval": "PT0.001S", "readings": 20})),
            bus("out")
        ]),
        json!([am(
            "am",
            "apd-map",
            "sensor",
            "out",
            json!({"expression": "value + missing"})
        )]),
        json!([]),
    );
    let engine = engine(Speed::Max, &dir).await;
    register_all(&engine, &model, &[]);
    run_until_exhausted(&engine, &model, "am").await;
    engine.shutdown().await;
    assert_eq!(engine.dead_letters().count(), 20);
    let letters = std::fs::read_to_string(dir.path().join("dead-letters.jsonl")).unwrap();
    let lines: Vec<Json> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    let letter = &lines[0]["observation"][0];
    assert_eq!(letter["name"], "dead-letter");
    assert!(
        letter["value"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("map: "),
        "{letter}"
    );
    assert_eq!(
        letter["value"]["at"],
        json!({"instance": "am", "processor": "am-p"})
    );
    assert_eq!(
        letter["value"]["payload"]["dataSourceManifestReferenceID"],
        "sensor"
    );
}

/// A window's late observations go to its `lateOutput` DSM, which the validator and the
/// engine treat as one the processor writes: a second processor counts them, the results
/// are the in-order ones, and nothing is in the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_observations_reach_the_late_output_and_whoever_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    // 1,024 readings a second apart (one batch, then its watermark), then three readings
    // of the first minute: late for its 10 s windows.
    let file = dir.path().join("readings.jsonl");
    let mut lines: Vec<String> = (0..1024)
        .map(|s| {
            format!(
                r#"{{"name":"x","timestamp":{},"value":1}}"#,
                1_700_000_000_000_i64 + s * 1000
            )
        })
        .collect();
    for s in [3_i64, 15, 42] {
        lines.push(format!(
            r#"{{"name":"x","timestamp":{},"value":100}}"#,
            1_700_000_000_000_i64 + s * 1000
        ));
    }
    std::fs::write(&file, lines.join("\n")).unwrap();
    let window = json!({"window": "PT10S", "lateOutput": "late"});
    let mut am_json = am("am", "apd-sum", "sensor", "sums", window);
    am_json["analyticsProcessors"]["apm"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "id": "late-count",
            "analyticsProcessorDefinitionReferenceID": "apd-count",
            "parameters": {"parameter": [{"key": "groupBy", "value": "all"}, {"key": "window", "value": "P1D"}]},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "late"}]},
            "dataSink": {"dataSourceManifestReferenceID": "late-counts"}
        }));
    let model = model(
        json!([
            sim(
                "sensor",
                json!({"mode": "replay", "file": file.to_str().unwrap()})
            ),
            bus("sums"),
            bus("late"),
            bus("late-counts")
        ]),
        json!([am_json]),
        json!([
            {"id": "apd-sum", "processorType": "sum"},
            {"id": "apd-count", "processorType": "count"}
        ]),
    );
    let engine = engine(Speed::Max, &dir).await;
    register_all(&engine, &model, &[]);
    let (_, sums) = collect(&engine, "sums");
    let (_, late) = collect(&engine, "late");
    let (_, counts) = collect(&engine, "late-counts");
    run_until_exhausted(&engine, &model, "am").await;
    engine.shutdown().await;
    let sums = sums.await.unwrap();
    assert_eq!(
        sums.len(),
        103,
        "1,024 s in 10 s windows (the first and last partial)"
    );
    assert_eq!(
        sums.iter().sum::<f64>(),
        1024.0,
        "the late ones are in no window"
    );
    assert_eq!(late.await.unwrap(), vec![100.0, 100.0, 100.0]);
    assert_eq!(
        counts.await.unwrap(),
        vec![3.0],
        "the late output feeds a processor"
    );
    assert_eq!(engine.dead_letters().count(), 0);
}

/// Processing-time windows close on the engine's timer while the instance runs, not only
/// when it stops, and count every reading once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_windows_close_on_the_wall_clock_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(
        json!([
            sim(
                "sensor",
                json!({"interval": "PT0.05S", "readings": 20, "start": "2001-01-01T00:00:00Z"})
            ),
            bus("counts")
        ]),
        json!([am(
            "am",
            "apd-count",
            "sensor",
            "counts",
            json!({"window": "PT0.2S", "time": "processing"})
        )]),
        json!([{"id": "apd-count", "processorType": "count"}]),
    );
    let engine = engine(Speed::Factor(1.0), &dir).await;
    register_all(&engine, &model, &[]);
    let (seen, counts) = collect(&engine, "counts");
    run_until_exhausted(&engine, &model, "am").await;
    // A window of 0.2 s and a 0.1 s timer: all but the last window closed while running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let while_running = seen.load(Ordering::SeqCst);
    engine.shutdown().await;
    let counts = counts.await.unwrap();
    assert!(
        while_running >= 4,
        "{while_running} results before the stop: windows closed on the wall clock"
    );
    assert_eq!(
        counts.iter().sum::<f64>(),
        20.0,
        "every reading counted once"
    );
}
