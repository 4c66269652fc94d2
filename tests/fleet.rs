//! A cloud and many edge engines, each a `dda serve` process: templates deployed by
//! selector, their data sources resolved per gateway, and a hundred edges converging.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Http, Process, eventually, free_port, start_edges};
use hyper::StatusCode;
use serde_json::{Value, json};

/// The token the cloud calls every edge with (its gateways' credential names it).
const EDGE_TOKEN: &str = "the-fleet-s-edges-take-this-token";

/// A cloud (polling every `poll`) and `n` edges taking deployments only from it.
async fn fleet(dir: &Path, n: usize, poll: &str) -> (Process, Vec<Process>) {
    let edge_config = dir.join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "[fleet]\nrole = \"edge\"\ncloud_token = \"cloud\"\n\
             [[tokens]]\nname = \"cloud\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            dashboard_api::config::sha256_hex(EDGE_TOKEN)
        ),
    )
    .unwrap();
    let cloud_config = dir.join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!("[fleet]\nrole = \"cloud\"\npoll_interval = \"{poll}\"\n"),
    )
    .unwrap();
    let edges = start_edges(dir, n, &edge_config).await;
    let cloud = Process::start_with_env(
        &dir.join("cloud"),
        free_port(),
        dir,
        Some(&cloud_config),
        &[("DDA_SECRET_EDGES", EDGE_TOKEN)],
    )
    .await;
    (cloud, edges)
}

const APD: &str = "apd-filter";
const DSD_TEMPERATURE: &str = "dsd-temperature";

/// The models every gateway's copy needs (but its own data source): a simulated
/// temperature, a bus for the results, a filter.
fn models() -> Vec<(&'static str, Value)> {
    vec![
        (
            "data-interfaces",
            json!({"id": "di-simulated", "communicationProtocol": "Simulator"}),
        ),
        (
            "data-interfaces",
            json!({"id": "di-bus", "communicationProtocol": "Bus"}),
        ),
        (
            "data-kinds",
            json!({"id": "dk-temperature", "format": "JSON", "quantityKind": "Temperature"}),
        ),
        (
            "data-source-definitions",
            json!({"id": DSD_TEMPERATURE, "dataInterfaceReferenceID": "di-simulated", "dataKindReferenceID": "dk-temperature"}),
        ),
        (
            "data-source-definitions",
            json!({"id": "dsd-fever", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk-temperature"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "dsm-fever", "name": "fever", "dataSourceDefinitionReferenceID": "dsd-fever"}),
        ),
        (
            "analytics-processor-definitions",
            json!({"id": APD, "processorType": "filter", "parameters": {"parameter": [
                {"name": "operator", "dataType": "string"}, {"name": "threshold", "dataType": "float"}]}}),
        ),
    ]
}

/// Gateway `id` on edge engine `edge`.
fn gateway(id: &str, edge: &Process, namespace: &str, labels: &[&str]) -> Value {
    json!({"id": id, "namespace": namespace, "labels": labels,
        "edgeAnalyticsEngineBaseURL": format!("{}/api", edge.http.base),
        "credential": "${env:DDA_SECRET_EDGES}"})
}

/// Gateway `gateway`'s temperature sensor.
fn sensor(gateway: &str) -> Value {
    json!({"id": format!("dsm-temperature-{gateway}"), "name": "temperature",
        "dataSourceDefinitionReferenceID": DSD_TEMPERATURE, "edgeGatewayReferenceID": gateway})
}

/// A template written for gateway `gw-1` (it reads `gw-1`'s sensor), choosing `selector`.
fn template(selector: Value) -> Value {
    json!({"id": "am-fever", "name": "Fever on every press",
        "edgeGatewaySelector": selector,
        "analyticsProcessors": {"apm": [{
            "id": "filter", "analyticsProcessorDefinitionReferenceID": APD,
            "parameters": {"parameter": [{"key": "operator", "value": "GE"}, {"key": "threshold", "value": 38}]},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-temperature-gw-1"}]},
            "dataSink": {"dataSourceManifestReferenceID": "dsm-fever"}}]}})
}

async fn created(http: &Http, route: &str, doc: &Value) {
    let r = http.post(&format!("/api/v1/{route}"), doc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
}

async fn rollout(http: &Http, id: &str) -> Value {
    http.get(&format!("/api/v1/analytics-instances/{id}"))
        .await
        .json()["rollout"]
        .clone()
}

/// The instance `id` on edge `edge` (with the cloud's token), or None when it has none.
async fn on_edge(edge: &Process, id: &str) -> Option<Value> {
    let r = edge
        .http
        .with_token(EDGE_TOKEN)
        .get(&format!("/api/v1/analytics-instances/{id}"))
        .await;
    (r.status == StatusCode::OK).then(|| r.json())
}

/// What the instance on an edge reads.
fn reads(instance: &Value) -> Value {
    instance["specification"]["analyticsProcessors"]["apm"][0]["dataSources"]["dataSource"][0]
        ["dataSourceManifestReferenceID"]
        .clone()
}

/// A template: deployed to the gateways its selector chooses (namespace and labels), each
/// copy naming its gateway and reading that gateway's own sensor; started and stopped on
/// all at once, with counts per phase; a gateway relabelled into the selector gets it (at
/// first failing for want of a sensor, with the reason, until its sensor is registered),
/// one relabelled out of it loses it, and deleting the template removes it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_runs_on_every_gateway_its_selector_chooses_each_reading_its_own_sources() {
    let dir = tempfile::tempdir().unwrap();
    let (cloud, edges) = fleet(dir.path(), 3, "200ms").await;
    let http = cloud.http.clone();
    for (route, doc) in models() {
        created(&http, route, &doc).await;
    }
    let gateways = [
        gateway("gw-1", &edges[0], "plant-a", &["kind=press", "line=1"]),
        gateway("gw-2", &edges[1], "plant-a", &["kind=press", "line=2"]),
        gateway("gw-3", &edges[2], "plant-b", &["kind=press"]),
    ];
    for g in &gateways {
        created(&http, "edge-gateways", g).await;
    }
    for g in ["gw-1", "gw-2"] {
        created(&http, "data-source-manifests", &sensor(g)).await;
    }

    let selector = json!({"namespace": "plant-a", "labels": ["kind=press"]});
    let r = http
        .post("/api/v1/analytics-instances", &template(selector))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["rollout"]["targeted"], 2, "{}", r.text());
    let r = http
        .post_empty("/api/v1/analytics-instances/am-fever/start")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(
        15,
        "the template running on both presses of plant A",
        || async { rollout(&http, "am-fever").await["running"] == 2 },
    )
    .await;
    let r = rollout(&http, "am-fever").await;
    assert_eq!(
        (&r["targeted"], &r["pending"], &r["failed"]),
        (&json!(2), &json!(0), &json!(0)),
        "{r}"
    );
    for (edge, g) in edges.iter().zip(["gw-1", "gw-2"]) {
        let i = on_edge(edge, "am-fever").await.expect("deployed");
        assert_eq!(i["state"], "RUNNING", "{i}");
        assert_eq!(i["specification"]["edgeGatewayReferenceID"], g);
        assert!(i["specification"].get("edgeGatewaySelector").is_none());
        assert_eq!(reads(&i), format!("dsm-temperature-{g}"), "{i}");
        // The gateway's copy came with its own sensor.
        let r = edge
            .http
            .with_token(EDGE_TOKEN)
            .get(&format!(
                "/api/v1/data-source-manifests/dsm-temperature-{g}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert!(
        on_edge(&edges[2], "am-fever").await.is_none(),
        "plant B is not chosen"
    );
    assert!(
        http.get("/health").await.json()["instances"]
            .as_object()
            .unwrap()
            .is_empty(),
        "a template does not run in the cloud"
    );

    // gw-3 moves into plant A: chosen, but it has no sensor yet: failed, with the reason.
    let mut moved = gateways[2].clone();
    moved["namespace"] = json!("plant-a");
    let r = http.put("/api/v1/edge-gateways/gw-3", &moved).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(15, "gw-3 failing for want of a sensor", || async {
        let r = rollout(&http, "am-fever").await;
        r["targeted"] == 3 && r["failed"] == 1
    })
    .await;
    let r = rollout(&http, "am-fever").await;
    let failed = r["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["phase"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(failed["gateway"], "gw-3", "{r}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no data source manifest of definition `dsd-temperature`"),
        "{failed}"
    );
    assert_eq!(r["running"], 2, "the others are not held back: {r}");
    created(&http, "data-source-manifests", &sensor("gw-3")).await;
    eventually(15, "gw-3 running once its sensor is registered", || async {
        rollout(&http, "am-fever").await["running"] == 3
    })
    .await;
    let i = on_edge(&edges[2], "am-fever").await.unwrap();
    assert_eq!(reads(&i), "dsm-temperature-gw-3", "{i}");

    // gw-1 becomes a lathe: no longer chosen, the template leaves it.
    let mut lathe = gateways[0].clone();
    lathe["labels"] = json!(["kind=lathe", "line=1"]);
    let r = http.put("/api/v1/edge-gateways/gw-1", &lathe).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(15, "the template gone from gw-1", || async {
        on_edge(&edges[0], "am-fever").await.is_none()
    })
    .await;
    let r = rollout(&http, "am-fever").await;
    assert_eq!(
        (&r["targeted"], &r["running"]),
        (&json!(2), &json!(2)),
        "{r}"
    );

    // Stopped from the cloud: stopped everywhere; deleted: gone everywhere.
    let r = http
        .post_empty("/api/v1/analytics-instances/am-fever/stop")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(15, "the template stopped on its gateways", || async {
        rollout(&http, "am-fever").await["applied"] == 2
    })
    .await;
    for edge in &edges[1..] {
        assert_eq!(on_edge(edge, "am-fever").await.unwrap()["state"], "STOPPED");
    }
    let r = http.delete("/api/v1/analytics-instances/am-fever").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    eventually(15, "the template gone from every gateway", || async {
        on_edge(&edges[1], "am-fever").await.is_none()
            && on_edge(&edges[2], "am-fever").await.is_none()
    })
    .await;
}

/// A template manifest that names its gateways too is refused, with the place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_also_names_a_gateway_is_refused_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let (cloud, edges) = fleet(dir.path(), 1, "1s").await;
    let http = cloud.http.clone();
    for (route, doc) in models() {
        created(&http, route, &doc).await;
    }
    created(
        &http,
        "edge-gateways",
        &gateway("gw-1", &edges[0], "plant-a", &[]),
    )
    .await;
    created(&http, "data-source-manifests", &sensor("gw-1")).await;
    let mut both = template(json!({"labels": ["kind"]}));
    both["edgeGatewayReferenceID"] = json!("gw-1");
    let r = http.post("/api/v1/analytics-instances", &both).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let problems = r.json()["details"].clone();
    assert!(
        problems.as_array().unwrap().iter().any(|p| {
            p["pointer"] == "/edgeGatewayReferenceID"
                && p["message"]
                    .as_str()
                    .unwrap()
                    .contains("`edgeGatewaySelector`")
        }),
        "{problems}"
    );
}

/// A hundred edge engines, each its own `dda serve` process, take one template through a
/// selector, each with its own sensor: all run it within 10 s of its creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_edges_take_a_template_through_a_selector_within_ten_seconds() {
    const EDGES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let setup = Instant::now();
    let (cloud, edges) = fleet(dir.path(), EDGES, "2s").await;
    eprintln!("{EDGES} edges and a cloud up in {:?}", setup.elapsed());
    let http = cloud.http.clone();
    for (route, doc) in models() {
        created(&http, route, &doc).await;
    }
    for (i, edge) in edges.iter().enumerate() {
        let id = format!("gw-{}", i + 1);
        let labels = if i % 10 == 9 {
            ["kind=lathe"]
        } else {
            ["kind=press"]
        };
        created(
            &http,
            "edge-gateways",
            &gateway(&id, edge, "plant", &labels),
        )
        .await;
        created(&http, "data-source-manifests", &sensor(&id)).await;
    }
    eventually(30, "every gateway online", || async {
        let mut online = 0;
        for i in 1..=EDGES {
            let s = http
                .get(&format!("/api/v1/edge-gateways/gw-{i}/status"))
                .await
                .json();
            online += usize::from(s["status"] == "online");
        }
        online == EDGES
    })
    .await;

    eprintln!("gateways registered and online after {:?}", setup.elapsed());
    let chosen = EDGES - EDGES / 10;
    let began = Instant::now();
    let r = http
        .post(
            "/api/v1/analytics-instances",
            &template(json!({"labels": ["kind=press"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["rollout"]["targeted"], chosen);
    let r = http
        .post_empty("/api/v1/analytics-instances/am-fever/start")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut last = Value::Null;
    while began.elapsed() < Duration::from_secs(10) {
        last = rollout(&http, "am-fever").await;
        if last["running"] == chosen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = began.elapsed();
    assert_eq!(last["running"], chosen, "not converged within 10 s: {last}");
    eprintln!("{chosen} of {EDGES} gateways running the template {took:?} after its creation");
    for (i, edge) in edges.iter().enumerate() {
        let instance = on_edge(edge, "am-fever").await;
        if i % 10 == 9 {
            assert!(instance.is_none(), "gw-{} is a lathe", i + 1);
        } else {
            let instance = instance.unwrap();
            assert_eq!(instance["state"], "RUNNING", "gw-{}", i + 1);
            assert_eq!(reads(&instance), format!("dsm-temperature-gw-{}", i + 1));
        }
    }
}
