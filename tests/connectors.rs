//! The connectors against real servers: data in equals data out (count and content), across
//! restarts of the broker or database and of the engine, and clear errors for bad payloads,
//! unreachable servers and wrong passwords.
//!
//! Shared servers (started by `scripts/test`): Mosquitto on 1883, PostgreSQL on 5432, Tansu
//! on 9092, nx-27017 on 27017. Tests that restart a server start their own on a free port.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::services;
use engine::bus::Message;
use engine::codec::encode_live_data_set;
use engine::{DataSource, Engine, EngineConfig, InstanceStatus, Observation, Plan, Sym, Timestamp};
use serde_json::{Value as Json, json};

// --- the test rig ---------------------------------------------------------------------

/// A data source of a test bundle.
struct Dsm {
    id: String,
    protocol: &'static str,
    format: Option<&'static str>,
    params: Json,
}

fn dsm(id: &str, protocol: &'static str, params: Json) -> Dsm {
    Dsm {
        id: id.to_owned(),
        protocol,
        format: None,
        params,
    }
}

impl Dsm {
    fn format(mut self, format: &'static str) -> Self {
        self.format = Some(format);
        self
    }
}

fn data_type(v: &Json) -> &'static str {
    match v {
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "int",
        Json::Number(_) => "double",
        _ => "string",
    }
}

/// A validated model: a data interface per protocol declaring the parameters its data
/// sources use, a data kind per payload format, the data sources, and one `echo` analytics
/// manifest per pipe `(id, from, to)`.
fn model(dsms: &[Dsm], pipes: &[(&str, &str, &str)]) -> manifests::Model {
    let mut interfaces: BTreeMap<&str, BTreeMap<String, &str>> = BTreeMap::new();
    for d in dsms {
        let defs = interfaces.entry(d.protocol).or_default();
        for (k, v) in d.params.as_object().unwrap() {
            defs.insert(k.clone(), data_type(v));
        }
    }
    let formats: BTreeSet<&str> = dsms.iter().map(|d| d.format.unwrap_or("JSON")).collect();
    let dis: Vec<Json> = interfaces
        .iter()
        .map(|(p, defs)| {
            let parameter: Vec<Json> = defs
                .iter()
                .map(|(name, t)| json!({"name": name, "dataType": t}))
                .collect();
            json!({"id": format!("di-{p}"), "communicationProtocol": p, "parameters": {"parameter": parameter}})
        })
        .collect();
    let dks: Vec<Json> = formats
        .iter()
        .map(|f| json!({"id": format!("dk-{}", f.replace(' ', "-")), "name": "value", "format": f}))
        .collect();
    let mut dsds = Vec::new();
    for p in interfaces.keys() {
        for f in &formats {
            dsds.push(json!({
                "id": format!("dsd-{p}-{}", f.replace(' ', "-")),
                "dataInterfaceReferenceID": format!("di-{p}"),
                "dataKindReferenceID": format!("dk-{}", f.replace(' ', "-")),
            }));
        }
    }
    let manifests: Vec<Json> = dsms
        .iter()
        .map(|d| {
            let parameter: Vec<Json> = d
                .params
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            json!({
                "id": d.id,
                "dataSourceDefinitionReferenceID": format!("dsd-{}-{}", d.protocol, d.format.unwrap_or("JSON").replace(' ', "-")),
                "dataSourceDefinitionInterfaceParameters": {"parameter": parameter},
            })
        })
        .collect();
    let ams: Vec<Json> = pipes
        .iter()
        .map(|(id, from, to)| {
            json!({"id": id, "analyticsProcessors": {"apm": [{
                "id": format!("{id}-echo"),
                "analyticsProcessorDefinitionReferenceID": "apd-echo",
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
                "dataSink": {"dataSourceManifestReferenceID": to}
            }]}})
        })
        .collect();
    let bundle = json!({
        "kind": "Bundle",
        "dataInterfaces": {"dataInterface": dis},
        "dataKinds": {"dataKind": dks},
        "dataSourceDefinitions": {"dataSourceDefinition": dsds},
        "dataSourceManifests": {"dataSourceManifest": manifests},
        "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
            {"id": "apd-echo", "processorType": "echo"}
        ]},
        "analyticsManifests": {"analyticsManifest": ams},
    });
    assert!(!processors::catalogue().is_empty());
    assert!(!connectors::catalogue().is_empty());
    let mut b = manifests::bundle::Bundle::default();
    b.add_document(
        "test.json".into(),
        bundle.to_string(),
        manifests::bundle::Syntax::Json,
        None,
    );
    let catalogue = engine::Catalogue::get();
    let m = manifests::validate::validate(
        &mut b,
        &manifests::Options {
            catalogue: Some(catalogue),
            ..manifests::Options::default()
        },
    );
    // The tests feed bus data sources themselves, as a processor would.
    let errors: Vec<_> = b
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.code != "unfed-input")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    m
}

/// An engine running a test model.
struct Rig {
    engine: Engine,
    ams: Vec<String>,
    model: manifests::Model,
    queues: Option<engine::spool::QueueLimits>,
    _dir: Arc<tempfile::TempDir>,
}

async fn rig(dsms: &[Dsm], pipes: &[(&str, &str, &str)]) -> Rig {
    let model = model(dsms, pipes);
    let ams = pipes.iter().map(|p| p.0.to_owned()).collect();
    rig_of(model, ams, Arc::new(tempfile::tempdir().unwrap()), None).await
}

/// A rig whose network sinks queue in `dir` with `queues` limits (store and forward); the
/// stop deadline is 2 s.
async fn rig_of(
    model: manifests::Model,
    ams: Vec<String>,
    dir: Arc<tempfile::TempDir>,
    queues: Option<engine::spool::QueueLimits>,
) -> Rig {
    let mut config = EngineConfig {
        speed: engine::connector::Speed::Max,
        queues: queues.map(|limits| engine::engine::QueueSettings {
            dir: dir.path().join("queues"),
            limits,
            sinks: HashMap::new(),
        }),
        ..EngineConfig::default()
    };
    if queues.is_some() {
        config.stop_timeout = Duration::from_secs(2);
    }
    config.dead_letters.parameters.insert(
        "path",
        json!(dir.path().join("dead-letters.jsonl").to_str().unwrap()),
    );
    let engine = Engine::new(config).await.unwrap();
    for id in model.data_source_manifests.keys() {
        engine
            .register(DataSource::from_model(&model, id).unwrap())
            .unwrap();
    }
    for id in &ams {
        engine
            .create(Plan::new(&model.analytics_manifests[id.as_str()], &model).unwrap())
            .unwrap();
    }
    Rig {
        engine,
        ams,
        model,
        queues,
        _dir: dir,
    }
}

impl Rig {
    /// Shuts the engine down gracefully and starts a new one on the same folder, its
    /// instances started.
    async fn restart(self) -> Self {
        self.engine.shutdown().await;
        let rig = rig_of(self.model, self.ams, self._dir, self.queues).await;
        rig.start().await;
        rig
    }

    /// The store-and-forward queue of sink `dsm`.
    async fn queue(&self, am: &str, dsm: &str) -> engine::spool::QueueStatus {
        self.status(am)
            .await
            .connectors
            .into_iter()
            .find(|c| c.dsm == dsm && c.role == "sink")
            .and_then(|c| c.queue)
            .unwrap_or_default()
    }

    async fn start(&self) {
        for am in &self.ams {
            self.engine.start(am).await.unwrap();
        }
    }

    async fn status(&self, am: &str) -> InstanceStatus {
        self.engine.status(am).await.unwrap()
    }

    /// Waits until every connector of every instance reaches its system.
    async fn connected(&self) {
        for am in &self.ams {
            common::eventually(30, &format!("{am}'s connectors to connect"), || async {
                let s = self.status(am).await;
                !s.connectors.is_empty() && s.connectors.iter().all(|c| c.link.connected)
            })
            .await;
        }
    }

    /// Publishes observations on a bus data source, as a processor would.
    async fn inject(&self, dsm: &str, batch: Vec<Observation>) {
        let publisher = self.engine.bus().publisher(Sym::new(dsm)).await;
        publisher.send(batch.into()).await;
    }

    /// Everything published on a data source from now on.
    fn collect(&self, dsm: &str) -> Collected {
        let (subscriber, mut rx) = self.engine.tap(dsm);
        let seen = Collected::default();
        let into = seen.clone();
        tokio::spawn(async move {
            let _keep = subscriber;
            while let Some(e) = rx.recv().await {
                if let Message::Data(batch) = e.message {
                    into.0.lock().unwrap().extend(batch.iter().cloned());
                }
            }
        });
        seen
    }

    /// Waits until a connector of `am` reports an error containing `text`; the instance
    /// keeps running meanwhile.
    async fn reports_error(&self, am: &str, text: &str) {
        common::eventually(30, &format!("{am}'s error \"{text}\""), || async {
            self.status(am)
                .await
                .connectors
                .iter()
                .any(|c| c.link.error.as_deref().is_some_and(|e| e.contains(text)))
        })
        .await;
        assert_eq!(self.status(am).await.state, engine::State::Running);
    }

    fn dead_letters(&self) -> u64 {
        self.engine.dead_letters().count()
    }
}

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Observation>>>);

impl Collected {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn all(&self) -> Vec<Observation> {
        self.0.lock().unwrap().clone()
    }
}

/// What identifies an observation's content in these tests.
type Key = (String, String, i64, String);

fn key(o: &Observation) -> Key {
    (
        o.source.text().to_string(),
        o.name.text().to_string(),
        o.timestamp.as_micros(),
        o.value.to_json().to_string(),
    )
}

fn keys(all: &[Observation]) -> BTreeSet<Key> {
    all.iter().map(key).collect()
}

const T0: i64 = 1_700_000_000_000;

/// `n` observations of `sources` sources, values 0..n, a millisecond apart.
fn observations(prefix: &str, sources: usize, n: usize) -> Vec<Observation> {
    (0..n)
        .map(|i| {
            Observation::number(
                Sym::new(&format!("{prefix}-{}", i % sources)),
                Sym::new("value"),
                Timestamp::from_millis(T0 + i as i64),
                i as f64,
            )
        })
        .collect()
}

fn payload(o: &Observation) -> Vec<u8> {
    encode_live_data_set(o).to_string().into_bytes()
}

/// Reads LiveDataSet payloads back into observations.
fn decode(payloads: &[Vec<u8>]) -> Vec<Observation> {
    let ctx = engine::codec::DecodeContext {
        dsm: Sym::new("unknown"),
        default_name: Sym::new("value"),
        default_kind: None,
    };
    let mut out = Vec::new();
    for p in payloads {
        engine::codec::decode_json(std::str::from_utf8(p).unwrap(), &ctx, &mut out).unwrap();
    }
    out
}

/// Payloads in the order they arrived.
type Payloads = Arc<Mutex<Vec<Vec<u8>>>>;

/// The keys of LiveDataSet payloads as they arrive, decoded once each.
#[derive(Clone, Default)]
struct Arrivals {
    payloads: Payloads,
    keys: Arc<Mutex<Vec<Key>>>,
}

impl Arrivals {
    fn keys(&self) -> Vec<Key> {
        let mut keys = self.keys.lock().unwrap();
        let payloads = self.payloads.lock().unwrap();
        if payloads.len() > keys.len() {
            let new = decode(&payloads[keys.len()..]);
            keys.extend(new.iter().map(key));
        }
        keys.clone()
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

// --- MQTT -----------------------------------------------------------------------------

mod mqtt {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    use super::*;

    /// A client of the test, driven in the background; its received messages and the
    /// acknowledgements of what it published.
    pub struct Client {
        pub client: AsyncClient,
        pub received: Arc<Mutex<Vec<Vec<u8>>>>,
        pub acked: Arc<std::sync::atomic::AtomicUsize>,
    }

    pub fn client(port: u16, id: &str, clean: bool) -> Client {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(o, 10_000);
        let received = Arc::new(Mutex::new(Vec::new()));
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, a) = (received.clone(), acked.clone());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        r.lock().unwrap().push(p.payload.to_vec());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Client {
            client,
            received,
            acked,
        }
    }

    impl Client {
        pub async fn subscribe(&self, topic: &str) {
            self.client
                .subscribe(topic, QoS::AtLeastOnce)
                .await
                .unwrap();
            // The SUBACK is not reported separately: give the broker a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }

        pub fn received(&self) -> Vec<Vec<u8>> {
            self.received.lock().unwrap().clone()
        }
    }

    fn topic_dsm(id: &str, port: u16, topic: &str, extra: Json) -> Dsm {
        let mut params = json!({"host": "127.0.0.1", "port": port, "topic": topic});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        dsm(id, "MQTT", params)
    }

    #[test]
    fn a_clean_stop_disconnects_without_a_warning() {
        if !services::available("Mosquitto", 1883) {
            return;
        }
        let topic = format!("dda-test/{}/clean", unique());
        let mqtt = |id: &str, role: &str| {
            json!({"id": id, "dataSourceDefinitionReferenceID": "dsd-mqtt",
                "dataSourceDefinitionInterfaceParameters": {"parameter": [
                    {"key": "host", "value": "127.0.0.1"}, {"key": "topic", "value": topic},
                    {"key": "clientId", "value": format!("dda-{}-{role}", unique())}]}})
        };
        let am = |id: &str, from: &str, to: &str| {
            json!({"id": id, "analyticsProcessors": {"apm": [{"id": format!("{id}-p"),
                "analyticsProcessorDefinitionReferenceID": "apd-echo",
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
                "dataSink": {"dataSourceManifestReferenceID": to}}]}})
        };
        let bundle = json!({"kind": "Bundle",
            "dataInterfaces": {"dataInterface": [
                {"id": "di-sim", "communicationProtocol": "Simulator"},
                {"id": "di-mqtt", "communicationProtocol": "MQTT"},
                {"id": "di-file", "communicationProtocol": "File"}]},
            "dataKinds": {"dataKind": [{"id": "dk", "name": "x", "quantityKind": "x"}]},
            "dataSourceDefinitions": {"dataSourceDefinition": [
                {"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"},
                {"id": "dsd-mqtt", "dataInterfaceReferenceID": "di-mqtt", "dataKindReferenceID": "dk"},
                {"id": "dsd-file", "dataInterfaceReferenceID": "di-file", "dataKindReferenceID": "dk"}]},
            "dataSourceManifests": {"dataSourceManifest": [
                {"id": "sim", "dataSourceDefinitionReferenceID": "dsd-sim",
                 "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "interval", "value": "PT0.1S"}]}},
                mqtt("out", "sink"), mqtt("in", "source"),
                {"id": "file", "dataSourceDefinitionReferenceID": "dsd-file"}]},
            "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
                {"id": "apd-echo", "processorType": "echo"}]},
            "analyticsManifests": {"analyticsManifest": [am("publish", "sim", "out"), am("subscribe", "in", "file")]},
        });
        let dir = tempfile::tempdir().unwrap();
        let path = services::write(dir.path(), "bundle.json", &bundle.to_string());
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dda"))
            .args(["run", "--for", "2s", "--quiet"])
            .arg(&path)
            .current_dir(dir.path())
            .env("DDA_LOG", "info")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(err.contains("connected to the MQTT broker"), "{err}");
        assert!(
            !err.contains("MQTT connection failed") && !err.contains("WARN"),
            "a clean stop is no connection failure: {err}"
        );
        let stored = std::fs::read_to_string(dir.path().join("dda-output/file.jsonl")).unwrap();
        assert!(
            stored.lines().count() > 5,
            "data went through the broker: {stored}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_in_equal_messages_out_over_mqtt_3_and_5_with_wildcards_and_plain_text() {
        // A broker of its own: 2,000 messages sent at once exceed the queue of 1,000 a
        // default Mosquitto keeps for a subscriber that lags (it drops the rest).
        let Some(broker) = services::mosquitto(false) else {
            return;
        };
        let port = broker.port;
        let p = format!("dda-test/{}", unique());
        let rig = rig(
            &[
                topic_dsm(
                    "in",
                    port,
                    &format!("{p}/in/+"),
                    json!({"version": "5", "clientId": format!("dda-{}", unique())}),
                ),
                topic_dsm(
                    "out",
                    port,
                    &format!("{p}/out"),
                    json!({"version": "3.1.1"}),
                ),
                topic_dsm(
                    "text-in",
                    port,
                    &format!("{p}/text"),
                    json!({"clientId": format!("dda-{}", unique())}),
                )
                .format("Plain text"),
                dsm("text-out", "Bus", json!({})),
            ],
            &[("am-json", "in", "out"), ("am-text", "text-in", "text-out")],
        )
        .await;
        let subscriber = client(port, &format!("test-sub-{}", unique()), true);
        subscriber.subscribe(&format!("{p}/out")).await;
        let text = rig.collect("text-out");
        rig.start().await;
        rig.connected().await;

        let sent = observations("device", 3, 2000);
        let publisher = client(port, &format!("test-pub-{}", unique()), true);
        for (i, o) in sent.iter().enumerate() {
            publisher
                .publish(&format!("{p}/in/device-{}", i % 3), payload(o))
                .await;
        }
        for v in ["21.5", "-3", "on"] {
            publisher
                .publish(&format!("{p}/text"), v.as_bytes().to_vec())
                .await;
        }
        common::eventually(60, "2000 messages out", || async {
            subscriber.received().len() >= sent.len()
        })
        .await;
        common::eventually(30, "3 plain-text values", || async { text.len() >= 3 }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        let out = decode(&subscriber.received());
        assert_eq!(out.len(), sent.len(), "nothing lost, nothing duplicated");
        assert_eq!(keys(&out), keys(&sent), "the same content");
        let values: Vec<Json> = text.all().iter().map(|o| o.value.to_json()).collect();
        assert_eq!(values, [json!(21.5), json!(-3), json!("on")]);
        assert!(
            text.all()
                .iter()
                .all(|o| o.source == Sym::new("text-in") && o.name == Sym::new("value"))
        );

        // A payload that is not a LiveDataSet: a dead letter, and the instance runs on.
        publisher
            .publish(&format!("{p}/in/device-0"), b"{not json".to_vec())
            .await;
        common::eventually(30, "a dead letter", || async { rig.dead_letters() == 1 }).await;
        publisher
            .publish(&format!("{p}/in/device-0"), payload(&sent[0]))
            .await;
        common::eventually(30, "the next message", || async {
            subscriber.received().len() > sent.len()
        })
        .await;
        assert_eq!(rig.status("am-json").await.state, engine::State::Running);
        rig.engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_persistent_session_keeps_what_is_published_while_the_engine_is_stopped() {
        if !services::available("Mosquitto", 1883) {
            return;
        }
        let p = format!("dda-test/{}", unique());
        let rig = rig(
            &[
                topic_dsm(
                    "in",
                    1883,
                    &format!("{p}/in"),
                    json!({"clientId": format!("dda-{}", unique())}),
                ),
                dsm("out", "Bus", json!({})),
            ],
            &[("am", "in", "out")],
        )
        .await;
        let out = rig.collect("out");
        rig.start().await;
        rig.connected().await;
        let sent = observations("box", 1, 600);
        let publisher = client(1883, &format!("test-pub-{}", unique()), true);
        for o in &sent[..200] {
            publisher.publish(&format!("{p}/in"), payload(o)).await;
        }
        common::eventually(30, "the first 200", || async { out.len() >= 200 }).await;
        rig.engine.stop("am").await.unwrap();
        for o in &sent[200..] {
            publisher.publish(&format!("{p}/in"), payload(o)).await;
        }
        common::eventually(30, "the broker to take them", || async {
            publisher.acked.load(std::sync::atomic::Ordering::SeqCst) >= sent.len()
        })
        .await;
        rig.engine.start("am").await.unwrap();
        common::eventually(30, "all 600", || async { out.len() >= 600 }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            keys(&out.all()),
            keys(&sent),
            "what was published while stopped arrives"
        );
        rig.engine.shutdown().await;
    }

    /// A bundle publishing simulated readings, every `interval`, to `topic` on the broker at
    /// `port` (QoS 1).
    fn publishing_bundle(port: u16, topic: &str, interval: &str) -> Json {
        json!({"kind": "Bundle",
            "dataInterfaces": {"dataInterface": [
                {"id": "di-sim", "communicationProtocol": "Simulator"},
                {"id": "di-mqtt", "communicationProtocol": "MQTT"}]},
            "dataKinds": {"dataKind": [{"id": "dk", "name": "x", "quantityKind": "x"}]},
            "dataSourceDefinitions": {"dataSourceDefinition": [
                {"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"},
                {"id": "dsd-mqtt", "dataInterfaceReferenceID": "di-mqtt", "dataKindReferenceID": "dk"}]},
            "dataSourceManifests": {"dataSourceManifest": [
                {"id": "sim", "dataSourceDefinitionReferenceID": "dsd-sim",
                 "dataSourceDefinitionInterfaceParameters": {"parameter": [
                     {"key": "interval", "value": interval}, {"key": "start", "value": "2026-01-01T00:00:00Z"}]}},
                {"id": "out", "dataSourceDefinitionReferenceID": "dsd-mqtt",
                 "dataSourceDefinitionInterfaceParameters": {"parameter": [
                     {"key": "host", "value": "127.0.0.1"}, {"key": "port", "value": port},
                     {"key": "topic", "value": topic},
                     {"key": "clientId", "value": format!("dda-{}-sink", unique())}]}}]},
            "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
                {"id": "apd-echo", "processorType": "echo"}]},
            "analyticsManifests": {"analyticsManifest": [{"id": "publish", "analyticsProcessors": {"apm": [
                {"id": "p", "analyticsProcessorDefinitionReferenceID": "apd-echo",
                 "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "sim"}]},
                 "dataSink": {"dataSourceManifestReferenceID": "out"}}]}}]},
        })
    }

    /// `dda run --speed 1 --quiet ARGS BUNDLE` in `dir`, started.
    fn spawn_run(dir: &std::path::Path, bundle: &Json, args: &[&str]) -> std::process::Child {
        let path = services::write(dir, "bundle.json", &bundle.to_string());
        std::process::Command::new(env!("CARGO_BIN_EXE_dda"))
            .args(["run", "--speed", "1", "--quiet"])
            .args(args)
            .arg(&path)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// How many readings a `dda run` summary says the simulator produced.
    fn produced(summary: &str) -> u64 {
        summary
            .lines()
            .find_map(|l| l.strip_prefix("inputs read: sim ("))
            .and_then(|r| r.trim_end_matches(')').replace(',', "").parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no input count: {summary}"))
    }

    /// The number in a `dda run` summary line `  <dsm>: 12,345 observations → ...`.
    fn summary_count(summary: &str, dsm: &str) -> Option<u64> {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{dsm}: ")))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.replace(',', "").parse().ok())
    }

    #[test]
    fn dda_run_delivers_every_message_through_two_broker_restarts_and_counts_only_acknowledged_ones()
     {
        let Some(mut broker) = services::mosquitto(false) else {
            return;
        };
        let port = broker.port;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let subscriber = runtime.block_on(async {
            let s = client(port, &format!("test-subscriber-{}", unique()), false);
            s.subscribe("plant/readings").await;
            s
        });
        // 1,000 readings a second, for 14 s, each published at QoS 1.
        let dir = tempfile::tempdir().unwrap();
        let bundle = publishing_bundle(port, "plant/readings", "PT0.001S");
        let run = spawn_run(dir.path(), &bundle, &["--for", "14s"]);
        // Down twice, for a second and for two, while the run publishes.
        std::thread::sleep(Duration::from_secs(3));
        broker.restart(Duration::from_secs(1));
        std::thread::sleep(Duration::from_secs(3));
        broker.restart(Duration::from_secs(2));
        let o = run.wait_with_output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
        let produced = produced(&out);
        let delivered = out
            .split_once("results:")
            .and_then(|(_, r)| summary_count(r, "out"))
            .unwrap_or_else(|| panic!("no result count: {out}"));
        assert!(produced > 5_000, "{out}");
        assert_eq!(delivered, produced, "every reading acknowledged: {out}");
        assert!(!out.contains("NOT delivered"), "{out}");
        // The subscriber (a persistent session) gets each of them, some more than once.
        runtime.block_on(common::eventually(
            60,
            "every message at the subscriber",
            || async { keys(&decode(&subscriber.received())).len() as u64 >= produced },
        ));
        let received = decode(&subscriber.received());
        assert_eq!(keys(&received).len() as u64, delivered);
        eprintln!(
            "{delivered} delivered, {} received ({} more than once)",
            received.len(),
            received.len() as u64 - delivered
        );
    }

    #[test]
    fn dda_run_counts_what_a_broker_that_went_away_never_acknowledged_as_undelivered() {
        let Some(mut broker) = services::mosquitto(false) else {
            return;
        };
        let port = broker.port;
        let dir = tempfile::tempdir().unwrap();
        let bundle = publishing_bundle(port, "plant/gone", "PT0.01S");
        let config = services::write(dir.path(), "dda.toml", "stop_timeout = \"2s\"\n");
        let config = config.to_str().unwrap();
        let run = spawn_run(dir.path(), &bundle, &["--for", "5s", "--config", config]);
        // The broker goes away for good after 2 s: the last 3 s of readings cannot arrive.
        std::thread::sleep(Duration::from_secs(2));
        broker.stop();
        let started = std::time::Instant::now();
        let o = run.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run ends at its time and the stop deadline: {:?}",
            started.elapsed()
        );
        assert_eq!(
            o.status.code(),
            Some(1),
            "undelivered results fail the run: {out}"
        );
        let produced = produced(&out);
        let (results, undelivered) = out
            .split_once("NOT delivered")
            .unwrap_or_else(|| panic!("{out}"));
        let delivered = results
            .split_once("results:")
            .and_then(|(_, r)| summary_count(r, "out"))
            .unwrap_or(0);
        let undelivered = summary_count(undelivered, "out").unwrap_or_else(|| panic!("{out}"));
        assert!(undelivered > 100, "{out}");
        assert_eq!(
            delivered + undelivered,
            produced,
            "every reading is accounted for: {out}"
        );
        let dead =
            std::fs::read_to_string(dir.path().join("dda-output/dead-letters.jsonl")).unwrap();
        assert_eq!(
            dead.lines()
                .filter(|l| l.contains("not delivered to out"))
                .count() as u64,
            undelivered,
            "each undelivered reading is a dead letter"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_at_qos_1_when_the_broker_restarts_mid_stream() {
        let Some(mut broker) = services::mosquitto(false) else {
            return;
        };
        let port = broker.port;
        let rig = rig(
            &[
                topic_dsm("in", port, "plant/in", json!({})),
                topic_dsm("out", port, "plant/out", json!({})),
            ],
            &[("am", "in", "out")],
        )
        .await;
        let subscriber = client(port, "test-subscriber", false);
        subscriber.subscribe("plant/out").await;
        rig.start().await;
        rig.connected().await;

        let sent = observations("box", 2, 3000);
        let publisher = client(port, "test-publisher", false);
        let to_send: Vec<Vec<u8>> = sent.iter().map(payload).collect();
        let feeder = tokio::spawn({
            let publisher = publisher.client.clone();
            async move {
                for (i, p) in to_send.into_iter().enumerate() {
                    publisher
                        .publish("plant/in", QoS::AtLeastOnce, false, p)
                        .await
                        .unwrap();
                    if i % 100 == 99 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        common::eventually(60, "a third of the stream", || async {
            subscriber.received().len() >= 1000
        })
        .await;
        let broker = tokio::task::spawn_blocking(move || {
            broker.restart(Duration::from_millis(500));
            broker
        })
        .await
        .unwrap();
        feeder.await.unwrap();
        common::eventually(60, "every message out", || async {
            keys(&decode(&subscriber.received())).len() >= sent.len()
        })
        .await;
        let out = decode(&subscriber.received());
        assert_eq!(keys(&out), keys(&sent), "no message lost at QoS 1");
        eprintln!(
            "{} messages out for {} in ({} redelivered at least once)",
            out.len(),
            sent.len(),
            out.len() - sent.len()
        );
        assert!(
            rig.status("am")
                .await
                .connectors
                .iter()
                .all(|c| c.link.connected),
            "connected again"
        );
        rig.engine.shutdown().await;
        drop(broker);
    }

    /// A rig writing `plant/out` of a private broker through a store-and-forward queue
    /// with `limits`, and a subscriber of the test's, persistent, taking it.
    async fn queued_rig(
        limits: engine::spool::QueueLimits,
    ) -> Option<(services::Server, Rig, Client)> {
        let broker = services::mosquitto(false)?;
        let port = broker.port;
        let rig = queued(topic_dsm("out", port, "plant/out", json!({})), limits).await;
        let subscriber = client(port, &format!("test-{}", unique()), false);
        subscriber.subscribe("plant/out").await;
        Some((broker, rig, subscriber))
    }

    /// Every source's observations arrived in order.
    fn in_order(all: &[Observation]) -> bool {
        let mut last: HashMap<Sym, Timestamp> = HashMap::new();
        all.iter().all(|o| {
            last.insert(o.source, o.timestamp)
                .is_none_or(|t| t < o.timestamp)
        })
    }

    async fn stop(mut broker: services::Server) -> services::Server {
        tokio::task::spawn_blocking(move || {
            broker.stop();
            broker
        })
        .await
        .unwrap()
    }

    async fn start(mut broker: services::Server) -> services::Server {
        tokio::task::spawn_blocking(move || {
            broker.start();
            broker
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_made_while_the_broker_is_down_are_queued_on_disk_across_an_engine_restart_and_all_arrive_once_in_order()
     {
        let Some((broker, rig, subscriber)) =
            queued_rig(engine::spool::QueueLimits::default()).await
        else {
            return;
        };
        let arrivals = Arrivals {
            payloads: subscriber.received.clone(),
            ..Arrivals::default()
        };
        let broker = through_an_outage(rig, broker, 100_000, || {
            let arrivals = arrivals.clone();
            async move { arrivals.keys() }
        })
        .await;
        drop(broker);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_its_oldest_to_the_dead_letters_or_holds_the_input_back() {
        let cap = 64 * 1024;
        let limits = |on_full| engine::spool::QueueLimits {
            max_bytes: cap,
            max_age: None,
            on_full,
        };
        // Drop oldest: what does not fit goes to the dead letters, counted; the rest
        // arrives; together they are everything, once.
        let Some((broker, rig, subscriber)) =
            queued_rig(limits(engine::spool::OnFull::DropOldest)).await
        else {
            return;
        };
        let broker = stop(broker).await;
        rig.start().await;
        let sent = observations("box", 2, 20_000);
        feed(&rig, "in", &sent, 500).await;
        common::eventually(30, "the input taken", || async {
            let q = rig.queue("am", "out").await;
            q.observations + q.dropped >= sent.len() as u64
        })
        .await;
        let q = rig.queue("am", "out").await;
        assert!(q.dropped > 0 && q.bytes <= cap, "{q:?}");
        common::eventually(30, "the dropped in the dead letters", || async {
            rig.dead_letters() >= q.dropped
        })
        .await;
        assert_eq!(rig.dead_letters(), q.dropped);
        let broker = start(broker).await;
        common::eventually(60, "the rest delivered", || async {
            subscriber.received().len() as u64 >= sent.len() as u64 - q.dropped
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = decode(&subscriber.received());
        assert_eq!(out.len() as u64 + q.dropped, sent.len() as u64);
        assert!(in_order(&out));
        rig.engine.shutdown().await;
        drop(broker);

        // Backpressure: the input waits while the queue is full, nothing is dropped, and
        // everything arrives once the broker is back.
        let Some((broker, rig, subscriber)) =
            queued_rig(limits(engine::spool::OnFull::Backpressure)).await
        else {
            return;
        };
        let broker = stop(broker).await;
        rig.start().await;
        let rig = Arc::new(rig);
        let feeder = tokio::spawn({
            let (rig, sent) = (rig.clone(), sent.clone());
            async move { feed(&rig, "in", &sent, 500).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!feeder.is_finished(), "the input is held back");
        let q = rig.queue("am", "out").await;
        assert!(
            q.dropped == 0 && q.bytes <= cap && q.observations > 0,
            "{q:?}"
        );
        let broker = start(broker).await;
        feeder.await.unwrap();
        common::eventually(60, "everything delivered", || async {
            subscriber.received().len() >= sent.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = decode(&subscriber.received());
        assert_eq!(keys(&out), keys(&sent));
        assert_eq!(out.len(), sent.len());
        assert_eq!(rig.dead_letters(), 0);
        rig.engine.shutdown().await;
        drop(broker);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_broker_and_a_wrong_password_are_clear_errors_in_the_status() {
        let Some(broker) = services::mosquitto(true) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let secret = services::write(dir.path(), "mqtt-password", "not-the-password");
        let nowhere = common::free_port();
        let rig = rig(
            &[
                topic_dsm("nowhere", nowhere, "x", json!({})),
                topic_dsm(
                    "guarded",
                    broker.port,
                    "x",
                    json!({"username": "dda", "password": format!("${{file:{}}}", secret.display())}),
                ),
                dsm("out", "Bus", json!({})),
            ],
            &[("am-nowhere", "nowhere", "out"), ("am-guarded", "guarded", "out")],
        )
        .await;
        rig.start().await;
        let error = |am: &'static str| {
            let rig = &rig;
            async move {
                rig.status(am)
                    .await
                    .connectors
                    .iter()
                    .find_map(|c| c.link.error.clone())
                    .unwrap_or_default()
            }
        };
        common::eventually(30, "the unreachable broker's error", || async {
            error("am-nowhere").await.contains("is the broker running?")
        })
        .await;
        common::eventually(30, "the wrong password's error", || async {
            error("am-guarded")
                .await
                .contains("check username and password")
        })
        .await;
        let text = error("am-nowhere").await;
        assert!(text.contains(&format!("127.0.0.1:{nowhere}")), "{text}");
        assert!(!error("am-guarded").await.contains("not-the-password"));
        for am in ["am-nowhere", "am-guarded"] {
            assert_eq!(
                rig.status(am).await.state,
                engine::State::Running,
                "{am} keeps trying"
            );
        }
        rig.engine.shutdown().await;
    }
}

/// Observations of every value type: numbers (whole and not), text, booleans, JSON.
fn mixed(prefix: &str, n: usize) -> Vec<Observation> {
    (0..n)
        .map(|i| {
            let mut o = Observation::number(
                Sym::new(&format!("{prefix}-{}", i % 2)),
                Sym::new(if i % 2 == 0 {
                    "TotalRealPower"
                } else {
                    "State"
                }),
                Timestamp::from_millis(T0 + i as i64),
                0.0,
            );
            o.value = match i % 4 {
                0 => engine::observation::Value::Number(i as f64 * 0.25),
                1 => engine::observation::Value::Text(format!("state {i} ü").into()),
                2 => engine::observation::Value::Number(i as f64),
                _ => engine::observation::Value::Bool(i % 8 == 3),
            };
            o
        })
        .collect()
}

/// Sends `all` into a bus data source in batches of `chunk`, pausing between them.
async fn feed(rig: &Rig, dsm: &str, all: &[Observation], chunk: usize) {
    for part in all.chunks(chunk) {
        rig.inject(dsm, part.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Feeds `sent` into the bus data source `in`: a thousand, then the rest while `server`
/// restarts, waiting (`patience`: seconds for the first thousand, then for all) until
/// `written` — how many of them the far side holds — reaches each mark. Returns the server,
/// running again.
async fn feed_across_a_restart<F, Fut>(
    rig: &Rig,
    server: services::Server,
    sent: &[Observation],
    patience: (u64, u64),
    written: F,
) -> services::Server
where
    F: Fn() -> Fut,
    Fut: Future<Output = usize>,
{
    feed(rig, "in", &sent[..1000], 50).await;
    common::eventually(patience.0, "the first thousand", || async {
        written().await >= 1000
    })
    .await;
    let restart = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart(Duration::from_millis(500));
        server
    });
    feed(rig, "in", &sent[1000..], 50).await;
    let server = restart.await.unwrap();
    common::eventually(patience.1, "all of them", || async {
        written().await >= sent.len()
    })
    .await;
    server
}

/// A rig whose instance `am` passes bus data source `in` on to sink `out`, through a
/// store-and-forward queue with `limits`.
async fn queued(out: Dsm, limits: engine::spool::QueueLimits) -> Rig {
    let model = model(&[dsm("in", "Bus", json!({})), out], &[("am", "in", "out")]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    rig_of(model, vec!["am".into()], dir, Some(limits)).await
}

/// Store and forward through an outage of `server`, which the sink `out` of instance `am`
/// writes: the server is stopped before the instance starts (it runs all the same);
/// `n` observations go into `in` while it is down, half before and half after an engine
/// restart, and stay queued on disk; the server starts again, and `arrived` — what the far
/// side holds, in the order it arrived — must hold every one exactly once, in order per
/// source. Returns the server, running.
async fn through_an_outage<F, Fut>(
    rig: Rig,
    server: services::Server,
    n: usize,
    arrived: F,
) -> services::Server
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<Key>>,
{
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        server
    })
    .await
    .unwrap();
    rig.start().await;
    assert_eq!(rig.status("am").await.state, engine::State::Running);
    let sent = observations("box", 4, n);
    feed(&rig, "in", &sent[..n / 2], 1000).await;
    common::eventually(60, "the first half queued", || async {
        rig.queue("am", "out").await.observations >= (n / 2) as u64
    })
    .await;
    eprintln!("half queued; restarting the engine");
    // An engine restart in the middle of the outage: what is queued stays queued.
    let rig = rig.restart().await;
    let q = rig.queue("am", "out").await;
    assert_eq!(q.observations, (n / 2) as u64, "{q:?}");
    eprintln!("restarted");
    feed(&rig, "in", &sent[n / 2..], 1000).await;
    common::eventually(60, "everything queued", || async {
        rig.queue("am", "out").await.observations >= n as u64
    })
    .await;
    let q = rig.queue("am", "out").await;
    assert!(q.bytes > 0 && q.oldest_age_ms.is_some(), "{q:?}");
    assert!(arrived().await.is_empty());
    eprintln!("all queued; starting the server again");
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.start();
        server
    })
    .await
    .unwrap();
    common::eventually(180, "every result delivered", || async {
        let got = arrived().await.len();
        if std::env::var_os("DDA_TEST_TRACE").is_some() {
            eprintln!("{got} arrived; queue {:?}", rig.queue("am", "out").await);
        }
        got >= n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = arrived().await;
    assert_eq!(out.len(), n, "none twice");
    assert_eq!(
        out.iter().cloned().collect::<BTreeSet<_>>(),
        keys(&sent),
        "none lost"
    );
    let mut last: HashMap<&str, i64> = HashMap::new();
    assert!(
        out.iter()
            .all(|k| last.insert(&k.0, k.2).is_none_or(|t| t < k.2)),
        "in order per source"
    );
    common::eventually(30, "the queue empty", || async {
        let q = rig.queue("am", "out").await;
        q.observations == 0 && q.bytes == 0
    })
    .await;
    assert_eq!(rig.dead_letters(), 0);
    rig.engine.shutdown().await;
    server
}

// --- PostgreSQL -----------------------------------------------------------------------

mod postgres {
    use tokio_postgres::NoTls;

    use super::*;

    async fn client(port: u16, db: &str) -> Option<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=postgres dbname={db}"),
            NoTls,
        )
        .await
        .ok()?;
        tokio::spawn(connection);
        Some(client)
    }

    /// The rows a sink wrote, as observations' keys; and how many rows there are.
    async fn rows(port: u16, db: &str, table: &str) -> Vec<Key> {
        let Some(c) = client(port, db).await else {
            return Vec::new();
        };
        let Ok(rows) = c
            .query(
                &format!(
                    "SELECT source, name, (extract(epoch FROM ts) * 1000000)::bigint, value, value_json::text
                     FROM {table} ORDER BY id"
                ),
                &[],
            )
            .await
        else {
            return Vec::new();
        };
        rows.iter()
            .map(|r| {
                let value = match r.get::<_, Option<f64>>(3) {
                    Some(v) => engine::observation::Value::Number(v).to_json(),
                    None => serde_json::from_str(r.get::<_, &str>(4)).unwrap(),
                };
                (r.get(0), r.get(1), r.get(2), value.to_string())
            })
            .collect()
    }

    fn table_dsm(id: &str, port: u16, db: &str, table: &str) -> Dsm {
        dsm(
            id,
            "PostgreSQL",
            json!({"host": "127.0.0.1", "port": port, "database": db, "table": table}),
        )
    }

    /// An engine writing bus DSM `in` into a new table of the shared PostgreSQL, started and
    /// connected; `None` when PostgreSQL is not there outside CI.
    async fn bus_into_a_new_table() -> Option<(Rig, String)> {
        if !services::available("PostgreSQL", 5432) {
            return None;
        }
        let table = format!("t_{}", unique());
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                table_dsm("out", 5432, "test", &table),
            ],
            &[("am", "in", "out")],
        )
        .await;
        rig.start().await;
        rig.connected().await;
        Some((rig, table))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_in_the_table_equal_observations_in_and_refused_ones_are_dead_letters() {
        let Some((rig, table)) = bus_into_a_new_table().await else {
            return;
        };
        let mut sent = mixed("box", 2001);
        feed(&rig, "in", &sent, 97).await;
        // Text with a NUL character: PostgreSQL refuses it; the rest of its batch is written.
        let mut bad = sent[0].clone();
        bad.value = engine::observation::Value::Text("a\0b".to_owned().into());
        bad.timestamp = Timestamp::from_millis(T0 - 1);
        let mut good = sent[1].clone();
        good.timestamp = Timestamp::from_millis(T0 - 2);
        rig.inject("in", vec![bad, good.clone()]).await;
        sent.push(good);
        common::eventually(30, "every row", || async {
            rows(5432, "test", &table).await.len() >= sent.len()
        })
        .await;
        common::eventually(30, "the refused one in the dead letters", || async {
            rig.dead_letters() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = rows(5432, "test", &table).await;
        assert_eq!(got.len(), sent.len(), "one row per observation");
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            keys(&sent),
            "the same content"
        );
        assert_eq!(rig.status("am").await.state, engine::State::Running);
        rig.engine.shutdown().await;
        let c = client(5432, "test").await.unwrap();
        c.batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_result_written_again_keeps_one_row_and_a_partial_one_never_replaces_the_final() {
        let Some((rig, table)) = bus_into_a_new_table().await else {
            return;
        };
        let result = |value: f64, complete: bool| {
            let mut o = Observation::number(
                Sym::new("box-1"),
                Sym::new("TotalRealPower"),
                Timestamp::from_millis(T0),
                value,
            );
            o.id = Some(Arc::new("result-1".to_owned()));
            let mut a = serde_json::Map::new();
            a.insert("count".into(), json!(if complete { 60 } else { 30 }));
            if !complete {
                a.insert("complete".into(), json!(false));
            }
            o.attributes = Some(Arc::new(a));
            o
        };
        // Partial, then final, then final again (a replay), then partial again.
        for (value, complete) in [(1.0, false), (2.0, true), (2.0, true), (3.0, false)] {
            rig.inject("in", vec![result(value, complete)]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let c = client(5432, "test").await.unwrap();
        common::eventually(30, "the writes", || async {
            rig.engine
                .written()
                .iter()
                .any(|(d, n)| d.text().as_ref() == "out" && *n >= 4)
        })
        .await;
        let rows = c
            .query(
                &format!("SELECT value, attributes->>'count' FROM {table}"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "one row per result id");
        assert_eq!(rows[0].get::<_, f64>(0), 2.0, "the final value is kept");
        assert_eq!(rows[0].get::<_, String>(1), "60");
        rig.engine.shutdown().await;
        c.batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_or_doubled_when_the_database_restarts_mid_stream() {
        let Some(server) = services::postgres() else {
            return;
        };
        let port = server.port;
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                table_dsm("out", port, "postgres", "plant.results"),
            ],
            &[("am", "in", "out")],
        )
        .await;
        client(port, "postgres")
            .await
            .unwrap()
            .batch_execute("CREATE SCHEMA plant")
            .await
            .unwrap();
        rig.start().await;
        rig.connected().await;
        let sent = observations("box", 3, 3000);
        let server = feed_across_a_restart(&rig, server, &sent, (30, 60), || async {
            rows(port, "postgres", "plant.results").await.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = rows(port, "postgres", "plant.results").await;
        assert_eq!(got.len(), sent.len(), "no row lost, none written twice");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), keys(&sent));
        assert!(
            rig.status("am")
                .await
                .connectors
                .iter()
                .all(|c| c.link.connected)
        );
        rig.engine.shutdown().await;
        drop(server);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_made_while_the_database_is_down_are_queued_on_disk_across_an_engine_restart_and_all_arrive_once_in_order()
     {
        let Some(server) = services::postgres() else {
            return;
        };
        let port = server.port;
        // Listening is not accepting yet: a fresh server may still be starting up.
        let mut admin = None;
        for _ in 0..100 {
            admin = client(port, "postgres").await;
            if admin.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin
            .expect("the private PostgreSQL accepts connections")
            .batch_execute("CREATE SCHEMA plant")
            .await
            .unwrap();
        let rig = queued(
            table_dsm("out", port, "postgres", "plant.results"),
            engine::spool::QueueLimits::default(),
        )
        .await;
        let server = through_an_outage(rig, server, 100_000, || async {
            rows(port, "postgres", "plant.results").await
        })
        .await;
        drop(server);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_is_a_clear_error_in_the_status() {
        let nowhere = common::free_port();
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                table_dsm("out", nowhere, "test", "results"),
            ],
            &[("am", "in", "out")],
        )
        .await;
        rig.start().await;
        common::eventually(30, "the error", || async {
            rig.status("am").await.connectors.iter().any(|c| {
                c.link.error.as_deref().is_some_and(|e| {
                    e.contains(&format!(
                        "PostgreSQL 127.0.0.1:{nowhere}/test table results"
                    ))
                })
            })
        })
        .await;
        assert_eq!(rig.status("am").await.state, engine::State::Running);
        rig.engine.shutdown().await;
    }
}

// --- MongoDB --------------------------------------------------------------------------

mod mongo {
    use mongodb::bson::{Document, doc};

    use super::*;

    async fn collection(port: u16, db: &str, name: &str) -> mongodb::Collection<Document> {
        let client = mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"
        ))
        .await
        .unwrap();
        client.database(db).collection(name)
    }

    /// The documents of a collection as observations' keys (none when the server is down).
    async fn stored(port: u16, db: &str, name: &str) -> Vec<Key> {
        let Ok(mut cursor) = collection(port, db, name).await.find(doc! {}).await else {
            return Vec::new();
        };
        let mut docs = Vec::new();
        loop {
            match cursor.advance().await {
                Ok(true) => docs.push(cursor.deserialize_current().unwrap()),
                Ok(false) => break,
                Err(_) => return Vec::new(),
            }
        }
        docs.iter()
            .filter(|d| d.contains_key("source"))
            .map(|d| {
                let value: Json = d.get("value").unwrap().clone().into_relaxed_extjson();
                let value = match value.as_f64() {
                    Some(v) => engine::observation::Value::Number(v).to_json(),
                    None => value,
                };
                (
                    d.get_str("source").unwrap().to_owned(),
                    d.get_str("name").unwrap().to_owned(),
                    d.get_datetime("timestamp").unwrap().timestamp_millis() * 1000,
                    value.to_string(),
                )
            })
            .collect()
    }

    fn collection_dsm(id: &str, port: u16, name: &str, extra: Json) -> Dsm {
        let mut params =
            json!({"host": "127.0.0.1", "port": port, "database": "dda_test", "collection": name});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        dsm(id, "MongoDB", params)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_an_edge_stores_a_cloud_engine_reads_back_unchanged() {
        if !services::available("nx-27017 (MongoDB)", 27017) {
            return;
        }
        let name = format!("c_{}", unique());
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                collection_dsm("store", 27017, &name, json!({})),
                collection_dsm("read", 27017, &name, json!({"pollInterval": "100ms"})),
                dsm("back", "Bus", json!({})),
            ],
            &[("edge", "in", "store"), ("cloud", "read", "back")],
        )
        .await;
        let back = rig.collect("back");
        rig.start().await;
        rig.connected().await;
        let sent = mixed("box", 2000);
        feed(&rig, "in", &sent, 128).await;
        common::eventually(30, "every document stored", || async {
            stored(27017, "dda_test", &name).await.len() >= sent.len()
        })
        .await;
        common::eventually(30, "every document read back", || async {
            back.len() >= sent.len()
        })
        .await;
        // A document that is not an observation: a dead letter for the reader.
        collection(27017, "dda_test", &name)
            .await
            .insert_one(doc! {"hello": "world"})
            .await
            .unwrap();
        common::eventually(30, "a dead letter", || async { rig.dead_letters() == 1 }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        let docs = stored(27017, "dda_test", &name).await;
        assert_eq!(docs.len(), sent.len(), "one document per observation");
        assert_eq!(docs.into_iter().collect::<BTreeSet<_>>(), keys(&sent));
        assert_eq!(back.len(), sent.len(), "each read once");
        assert_eq!(keys(&back.all()), keys(&sent), "the same content");
        rig.engine.shutdown().await;
        collection(27017, "dda_test", &name)
            .await
            .drop()
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_or_doubled_when_the_database_restarts_mid_stream() {
        let Some(server) = services::nx_27017() else {
            return;
        };
        let port = server.port;
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                collection_dsm("out", port, "results", json!({})),
            ],
            &[("am", "in", "out")],
        )
        .await;
        rig.start().await;
        rig.connected().await;
        let sent = observations("box", 3, 3000);
        let server = feed_across_a_restart(&rig, server, &sent, (30, 60), || async {
            stored(port, "dda_test", "results").await.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = stored(port, "dda_test", "results").await;
        assert_eq!(
            got.len(),
            sent.len(),
            "no document lost, none written twice"
        );
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), keys(&sent));
        rig.engine.shutdown().await;
        drop(server);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_is_a_clear_error_in_the_status() {
        let nowhere = common::free_port();
        let rig = rig(
            &[
                collection_dsm("read", nowhere, "results", json!({})),
                dsm("out", "Bus", json!({})),
            ],
            &[("am", "read", "out")],
        )
        .await;
        rig.start().await;
        rig.reports_error(
            "am",
            &format!("MongoDB 127.0.0.1:{nowhere} dda_test.results"),
        )
        .await;
        rig.engine.shutdown().await;
    }
}

// --- Kafka ----------------------------------------------------------------------------

mod kafka {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    use super::*;

    fn topic_dsm(id: &str, port: u16, topic: &str, extra: Json) -> Dsm {
        let mut params = json!({"host": "127.0.0.1", "port": port, "topic": topic});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        dsm(id, "Kafka", params)
    }

    /// Publishes LiveDataSets on a topic as another system would, keyed by source.
    async fn produce(port: u16, topic: &str, all: &[Observation]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for o in all {
            let payload = payload(o);
            let key = o.source.text().to_string();
            producer
                .send(
                    FutureRecord::to(topic).payload(&payload).key(&key),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
        }
    }

    /// Whether each source's observations arrived in the order they were sent.
    fn in_order_per_source(all: &[Observation]) -> bool {
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        all.iter().all(|o| {
            let t = o.timestamp.as_micros();
            last.insert(o.source.text().to_string(), t)
                .is_none_or(|before| before < t)
        })
    }

    /// A consumer of the test's own reading `topic` from its beginning, in the background:
    /// the payloads in the order they arrived, and the task (abort it while the broker is
    /// still there: a consumer closing waits for its broker).
    fn consume(port: u16, topic: &str) -> (Payloads, tokio::task::JoinHandle<()>) {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Message as _;
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .set("group.id", format!("test-{}", unique()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let received: Payloads = Arc::default();
        let into = received.clone();
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => into
                        .lock()
                        .unwrap()
                        .push(m.payload().unwrap_or_default().to_vec()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        (received, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_made_while_the_broker_is_down_are_queued_on_disk_across_an_engine_restart_and_all_arrive_once_in_order()
     {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let Some(broker) = services::tansu() else {
            return;
        };
        let port = broker.port;
        let topic = format!("dda-test-{}", unique());
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{port}"))
            .create()
            .unwrap();
        let created = admin
            .create_topics(
                &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        assert!(created.iter().all(Result::is_ok), "{created:?}");
        drop(admin);
        let (received, consumer) = consume(port, &topic);
        let rig = queued(
            topic_dsm("out", port, &topic, json!({})),
            engine::spool::QueueLimits::default(),
        )
        .await;
        let arrivals = Arrivals {
            payloads: received,
            ..Arrivals::default()
        };
        let broker = through_an_outage(rig, broker, 100_000, || {
            let arrivals = arrivals.clone();
            async move { arrivals.keys() }
        })
        .await;
        consumer.abort();
        let _ = consumer.await;
        drop(broker);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_a_producer_sends_a_consumer_receives_in_order_per_source() {
        if !services::available("Tansu (Kafka)", 9092) {
            return;
        }
        let topic = format!("dda-test-{}", unique());
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                topic_dsm("out", 9092, &topic, json!({})),
                topic_dsm("read", 9092, &topic, json!({})),
                dsm("back", "Bus", json!({})),
            ],
            &[("edge", "in", "out"), ("cloud", "read", "back")],
        )
        .await;
        let back = rig.collect("back");
        rig.start().await;
        rig.connected().await;
        let sent = observations("box", 4, 4000);
        feed(&rig, "in", &sent, 100).await;
        common::eventually(60, "every message back", || async {
            back.len() >= sent.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = back.all();
        assert_eq!(got.len(), sent.len(), "nothing lost, nothing duplicated");
        assert_eq!(keys(&got), keys(&sent), "the same content");
        assert!(in_order_per_source(&got), "each source's order holds");
        rig.engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_group_resumes_after_what_it_accepted_across_engine_restarts() {
        if !services::available("Tansu (Kafka)", 9092) {
            return;
        }
        let topic = format!("dda-test-{}", unique());
        let rig = rig(
            &[
                topic_dsm(
                    "read",
                    9092,
                    &topic,
                    json!({"groupId": format!("g-{}", unique())}),
                ),
                dsm("back", "Bus", json!({})),
            ],
            &[("am", "read", "back")],
        )
        .await;
        let back = rig.collect("back");
        rig.start().await;
        rig.connected().await;
        let sent = observations("line", 2, 600);
        produce(9092, &topic, &sent[..300]).await;
        common::eventually(60, "the first 300", || async { back.len() >= 300 }).await;
        rig.engine.stop("am").await.unwrap();
        produce(9092, &topic, &sent[300..]).await;
        rig.engine.start("am").await.unwrap();
        common::eventually(60, "all 600", || async { back.len() >= 600 }).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = back.all();
        assert_eq!(
            got.len(),
            sent.len(),
            "the committed ones are not read again"
        );
        assert_eq!(keys(&got), keys(&sent));
        assert!(in_order_per_source(&got));
        rig.engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_when_the_broker_restarts_mid_stream() {
        let Some(server) = services::tansu() else {
            return;
        };
        let port = server.port;
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                topic_dsm("out", port, "results", json!({})),
                topic_dsm("read", port, "results", json!({})),
                dsm("back", "Bus", json!({})),
            ],
            &[("edge", "in", "out"), ("cloud", "read", "back")],
        )
        .await;
        let back = rig.collect("back");
        rig.start().await;
        rig.connected().await;
        let sent = observations("box", 3, 3000);
        let server = feed_across_a_restart(&rig, server, &sent, (60, 90), || async {
            keys(&back.all()).len()
        })
        .await;
        let got = back.all();
        assert_eq!(keys(&got), keys(&sent), "no message lost");
        eprintln!(
            "{} messages back for {} sent ({} delivered again)",
            got.len(),
            sent.len(),
            got.len() - sent.len()
        );
        rig.engine.shutdown().await;
        drop(server);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_broker_is_a_clear_error_in_the_status() {
        let nowhere = common::free_port();
        let rig = rig(
            &[
                topic_dsm("read", nowhere, "results", json!({})),
                dsm("out", "Bus", json!({})),
            ],
            &[("am", "read", "out")],
        )
        .await;
        rig.start().await;
        rig.reports_error("am", &format!("Kafka 127.0.0.1:{nowhere} topic results"))
            .await;
        rig.engine.shutdown().await;
    }
}

// --- HTTP -----------------------------------------------------------------------------

mod http {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use hyper::Method;

    use super::*;

    fn endpoint_dsm(id: &str, port: u16, extra: Json) -> Dsm {
        let mut params = json!({"host": "127.0.0.1", "port": port});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        dsm(id, "HTTP", params)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ingest_endpoint_takes_every_payload_format_and_refuses_clearly() {
        let port = common::free_port();
        let dir = tempfile::tempdir().unwrap();
        let token = services::write(dir.path(), "token", "s3cret-token");
        let rig = rig(
            &[
                endpoint_dsm(
                    "lds",
                    port,
                    json!({"token": format!("${{file:{}}}", token.display())}),
                ),
                endpoint_dsm("flat", port, json!({})).format("Flat JSON"),
                endpoint_dsm("csv", port, json!({})).format("CSV"),
                dsm("out", "Bus", json!({})),
                dsm("out-flat", "Bus", json!({})),
                dsm("out-csv", "Bus", json!({})),
            ],
            &[
                ("am", "lds", "out"),
                ("am-flat", "flat", "out-flat"),
                ("am-csv", "csv", "out-csv"),
            ],
        )
        .await;
        let (out, flat, csv) = (
            rig.collect("out"),
            rig.collect("out-flat"),
            rig.collect("out-csv"),
        );
        rig.start().await;
        rig.connected().await;
        let base = format!("http://127.0.0.1:{port}");
        let client = common::Http::new(&base).with_token("s3cret-token");
        let json_body = |v: &Json| Some(("application/json", v.to_string().into_bytes()));

        // One LiveDataSet, an array of them, and JSON lines.
        let sent = observations("press", 2, 30);
        let sets: Vec<Json> = sent.iter().map(encode_live_data_set).collect();
        let one = client
            .request(Method::POST, "/ingest/lds", json_body(&sets[0]), &[])
            .await;
        assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.text());
        assert_eq!(one.json()["accepted"], 1);
        let array = client
            .request(
                Method::POST,
                "/ingest/lds",
                json_body(&json!(sets[1..10])),
                &[],
            )
            .await;
        assert_eq!(array.json()["accepted"], 9);
        let lines: String = sets[10..].iter().map(|s| format!("{s}\n")).collect();
        let lines = client
            .request(
                Method::POST,
                "/ingest/lds",
                Some(("application/x-ndjson", lines.into_bytes())),
                &[],
            )
            .await;
        assert_eq!(lines.json()["accepted"], 20);

        // A flat object of name → value with a timestamp, and CSV lines.
        let flat_body = json!({"timestamp": "2018-05-24 14:59:14.924", "TotalRealPower": 1250.5, "TotalRealEnergy": 17});
        let r = client
            .request(Method::POST, "/ingest/flat", json_body(&flat_body), &[])
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let csv_body = "timestamp,name,value\n2018-05-24T14:59:14.924Z,TotalRealPower,1250.5\n1527173955924,TotalRealPower,1260\n";
        let r = client
            .request(
                Method::POST,
                "/ingest/csv",
                Some(("text/csv", csv_body.as_bytes().to_vec())),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());

        // Refusals: no token, an unknown path, a wrong method, a body that does not parse.
        let anonymous = common::Http::new(&base);
        let r = anonymous
            .request(Method::POST, "/ingest/lds", json_body(&sets[0]), &[])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = client
            .request(
                Method::POST,
                "/ingest/nothing-here",
                json_body(&sets[0]),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = client.get("/ingest/lds").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = client
            .request(
                Method::POST,
                "/ingest/lds",
                Some(("application/json", b"{\"value\": ".to_vec())),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.json()["message"]
                .as_str()
                .is_some_and(|e| e.contains("invalid JSON")),
            "{}",
            r.text()
        );

        common::eventually(30, "every observation", || async {
            out.len() >= 30 && flat.len() >= 2 && csv.len() >= 2
        })
        .await;
        common::eventually(30, "a dead letter", || async { rig.dead_letters() == 1 }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            out.len(),
            30,
            "nothing lost, nothing duplicated, nothing from the refused"
        );
        assert_eq!(keys(&out.all()), keys(&sent));
        let t = Timestamp::parse("2018-05-24 14:59:14.924")
            .unwrap()
            .as_micros();
        let flat_keys: BTreeSet<Key> = [
            ("flat".into(), "TotalRealEnergy".into(), t, "17".into()),
            ("flat".into(), "TotalRealPower".into(), t, "1250.5".into()),
        ]
        .into();
        assert_eq!(keys(&flat.all()), flat_keys);
        let csv_keys: BTreeSet<Key> = [
            ("csv".into(), "TotalRealPower".into(), t, "1250.5".into()),
            (
                "csv".into(),
                "TotalRealPower".into(),
                t + 1_000_000,
                "1260".into(),
            ),
        ]
        .into();
        assert_eq!(keys(&csv.all()), csv_keys);
        rig.engine.shutdown().await;
    }

    /// A webhook receiver that answers with `answers` in turn (then 200), keeping what it
    /// was sent.
    async fn receiver(answers: Vec<u16>) -> (u16, Arc<Mutex<Vec<Json>>>, Arc<AtomicUsize>) {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (b, c) = (bodies.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let (b, c) = (b.clone(), c.clone());
                let answers = answers.clone();
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    let status = answers.get(n).copied().unwrap_or(200);
                    if status == 200 {
                        b.lock()
                            .unwrap()
                            .push(serde_json::from_str::<Json>(&body).unwrap());
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, bodies, calls)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_webhook_retries_until_taken_and_dead_letters_what_is_refused() {
        let (ok_port, bodies, calls) = receiver(vec![503, 503]).await;
        let (bad_port, refused, bad_calls) = receiver(vec![400; 100]).await;
        let rig = rig(
            &[
                dsm("in", "Bus", json!({})),
                dsm(
                    "hook",
                    "HTTP",
                    json!({"url": format!("http://127.0.0.1:{ok_port}/hook")}),
                ),
                dsm("in-bad", "Bus", json!({})),
                dsm(
                    "hook-bad",
                    "HTTP",
                    json!({"url": format!("http://127.0.0.1:{bad_port}/hook")}),
                ),
            ],
            &[("am", "in", "hook"), ("am-bad", "in-bad", "hook-bad")],
        )
        .await;
        rig.start().await;
        let sent = observations("box", 2, 50);
        rig.inject("in", sent.clone()).await;
        rig.inject("in-bad", sent[..5].to_vec()).await;
        common::eventually(30, "the webhook to take the batch", || async {
            !bodies.lock().unwrap().is_empty()
        })
        .await;
        common::eventually(30, "the refused batch in the dead letters", || async {
            rig.dead_letters() == 5
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "two 503s, then taken");
        let got: Vec<Json> = bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.as_array().unwrap().clone())
            .collect();
        let got = decode(
            &got.iter()
                .map(|g| g.to_string().into_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(got.len(), sent.len(), "each observation once");
        assert_eq!(keys(&got), keys(&sent));
        assert_eq!(bad_calls.load(Ordering::SeqCst), 1, "a 400 is not retried");
        assert!(refused.lock().unwrap().is_empty());
        rig.engine.shutdown().await;
    }
}
