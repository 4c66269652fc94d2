//! `dda bench mqtt` and `mqtt-qos1`: MQTT → engine → MQTT through a real broker.
//!
//! The benchmark publishes LiveDataSets on one topic as fast as its client can; the engine
//! reads them with its MQTT connector, passes them through an `echo` processor and publishes
//! them with its MQTT sink on another topic, which the benchmark reads back. Each message
//! carries the moment it was sent, so the latency of every message is measured end to end
//! (broker both ways included). Throughput counts messages received back over the time from
//! the first sent to the last received.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::{DataSource, Engine, EngineConfig, Plan};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value as Json, json};

use super::bench::{BenchOptions, Report, percentile, validated};

fn model(host: &str, port: u16, qos: u8, tag: &str) -> anyhow::Result<manifests::Model> {
    let topic = |side: &str| {
        json!([
            {"key": "host", "value": host}, {"key": "port", "value": port},
            {"key": "topic", "value": format!("dda-bench/{tag}/{side}")},
            {"key": "qos", "value": qos},
            {"key": "clientId", "value": format!("dda-bench-{tag}-{side}")},
        ])
    };
    let doc = json!({
        "kind": "Bundle",
        "dataInterfaces": {"dataInterface": [{"id": "di-mqtt", "communicationProtocol": "MQTT",
            "parameters": {"parameter": [
                {"name": "host", "dataType": "string"}, {"name": "port", "dataType": "int"},
                {"name": "topic", "dataType": "string"}, {"name": "qos", "dataType": "int"},
                {"name": "clientId", "dataType": "string"}]}}]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "value"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd-mqtt", "dataInterfaceReferenceID": "di-mqtt", "dataKindReferenceID": "dk"}]},
        "dataSourceManifests": {"dataSourceManifest": [
            {"id": "in", "dataSourceDefinitionReferenceID": "dsd-mqtt",
             "dataSourceDefinitionInterfaceParameters": {"parameter": topic("in")}},
            {"id": "out", "dataSourceDefinitionReferenceID": "dsd-mqtt",
             "dataSourceDefinitionInterfaceParameters": {"parameter": topic("out")}}]},
        "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
            {"id": "apd-echo", "processorType": "echo"}]},
        "analyticsManifests": {"analyticsManifest": [{"id": "bench", "analyticsProcessors": {"apm": [
            {"id": "echo", "analyticsProcessorDefinitionReferenceID": "apd-echo",
             "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "in"}]},
             "dataSink": {"dataSourceManifestReferenceID": "out"}}]}}]},
    });
    validated(&doc, "bench-mqtt.json")
}

fn client(host: &str, port: u16, id: String) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(1 << 16, 1 << 16);
    AsyncClient::new(o, 10_000)
}

/// Runs one MQTT case at `qos`.
///
/// # Errors
///
/// The broker is unreachable, or the engine cannot start.
pub async fn run(
    name: &'static str,
    description: &'static str,
    qos: u8,
    options: &BenchOptions,
) -> anyhow::Result<Report> {
    let (host, port) = options
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--broker {:?}: give HOST:PORT", options.broker))?;
    tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("no MQTT broker at {host}:{port} (start one: mosquitto -d)"))?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let model = model(&host, port, qos, &tag)?;
    let mut config = EngineConfig::default();
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
    engine.start("bench").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !engine
        .status("bench")
        .await?
        .connectors
        .iter()
        .all(|c| c.link.connected)
    {
        if Instant::now() > deadline {
            bail!("the engine's MQTT connectors did not connect to {host}:{port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let qos_level = if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let epoch = Instant::now();
    let total = options.messages;
    // The reader: latencies of what comes back.
    let (reader, mut reader_events) = client(&host, port, format!("dda-bench-{tag}-reader"));
    reader
        .subscribe(format!("dda-bench/{tag}/out"), qos_level)
        .await?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let collector = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut last = Instant::now();
        let mut subscribed = Some(done_tx);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), reader_events.poll()).await;
            match event {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    last = Instant::now();
                    let sent = serde_json::from_slice::<Json>(&p.payload)
                        .ok()
                        .and_then(|v| v["observation"][0]["value"].as_u64());
                    if let Some(sent) = sent {
                        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latencies.push(now.saturating_sub(sent));
                    }
                    if latencies.len() as u64 >= total {
                        break;
                    }
                }
                Ok(Ok(_)) => {}
                // Nothing for 5 s, or the connection failed: what came back is the result.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        (latencies, last)
    });
    done_rx
        .await
        .context("the benchmark's reader could not subscribe")?;

    // The writer: as fast as its client goes.
    let (writer, mut writer_events) = client(&host, port, format!("dda-bench-{tag}-writer"));
    let driver = tokio::spawn(async move { while writer_events.poll().await.is_ok() {} });
    let started = Instant::now();
    let topic = format!("dda-bench/{tag}/in");
    for i in 0..total {
        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let payload = json!({
            "id": i, "dataSourceManifestReferenceID": "in", "timestamp": 1_527_120_000_000_u64 + i,
            "observation": [{"name": "value", "timestamp": 1_527_120_000_000_u64 + i, "value": now}],
        })
        .to_string();
        writer.publish(&topic, qos_level, false, payload).await?;
    }
    let (mut latencies, last) = collector.await?;
    let _ = writer.disconnect().await;
    driver.abort();
    engine.shutdown().await;
    let elapsed = last.duration_since(started);
    latencies.sort_unstable();
    let received = latencies.len();
    let ms = |us: u64| us as f64 / 1e3;
    Ok(Report {
        case: name,
        description,
        observations: received as u64,
        seconds: elapsed.as_secs_f64(),
        observations_per_second: received as f64 / elapsed.as_secs_f64().max(1e-9),
        results: received,
        p50_latency_ms: ms(percentile(&latencies, 0.50)),
        p99_latency_ms: ms(percentile(&latencies, 0.99)),
        max_latency_ms: ms(percentile(&latencies, 1.0)),
    })
}
