//! The Open API over HTTP: every route of the model repository and of analytics instances,
//! every illegal transition and every 4xx, content negotiation, access control, live data
//! and metrics. Servers run in-process on loopback ports.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use std::time::Duration;

use common::{Http, Process, eventually, example, free_port, in_process, load_models};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Every model collection, with a valid document, an update of it, and one that refers
/// to it (or `None`).
fn collections() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "data-interfaces",
            json!({"id": "di-x", "name": "Bus", "communicationProtocol": "Bus"}),
            json!({"id": "di-x", "name": "Bus topic", "communicationProtocol": "Bus"}),
        ),
        (
            "data-kinds",
            json!({"id": "dk-x", "name": "Power", "unit": "W"}),
            json!({"id": "dk-x", "name": "Power", "unit": "kW"}),
        ),
        (
            "data-source-definitions",
            json!({"id": "dsd-x", "dataInterfaceReferenceID": "di-x", "dataKindReferenceID": "dk-x"}),
            json!({"id": "dsd-x", "name": "renamed", "dataInterfaceReferenceID": "di-x", "dataKindReferenceID": "dk-x"}),
        ),
        (
            "edge-gateways",
            json!({"id": "eg-x", "name": "Gateway", "namespace": "g"}),
            json!({"id": "eg-x", "name": "Gateway 2", "namespace": "g"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "dsm-x", "name": "Topic", "dataSourceDefinitionReferenceID": "dsd-x", "edgeGatewayReferenceID": "eg-x"}),
            json!({"id": "dsm-x", "name": "Topic 2", "dataSourceDefinitionReferenceID": "dsd-x"}),
        ),
        (
            "data-consumer-manifests",
            json!({"id": "dcm-x", "name": "Dashboard", "edgeGatewayReferenceID": "eg-x"}),
            json!({"id": "dcm-x", "name": "Dashboard 2"}),
        ),
        (
            "analytics-processor-definitions",
            json!({"id": "apd-x", "name": "Echo", "processorType": "echo"}),
            json!({"id": "apd-x", "name": "Echoer", "processorType": "echo", "version": "1.0.0"}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_collection_supports_create_read_list_discover_update_and_delete() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    for (route, doc, updated) in collections() {
        let id = doc["id"].as_str().unwrap();
        let r = http.post(&format!("/api/v1/{route}"), &doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
        assert_eq!(
            r.header("location").unwrap(),
            format!("/api/v1/{route}/{id}")
        );
        assert_eq!(r.json()["id"], id);
        // A second create with the same id is a conflict.
        let r = http.post(&format!("/api/v1/{route}"), &doc).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{route}");
        assert_eq!(r.json()["code"], "ALREADY_EXISTS");
        let r = http.get(&format!("/api/v1/{route}/{id}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["id"], id);
        let list = http.get(&format!("/api/v1/{route}")).await.json();
        let plural = list.as_object().unwrap().keys().next().unwrap().clone();
        let items = list[&plural]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(items.len(), 1, "{route}");
        if let Some(name) = doc.get("name").and_then(Value::as_str) {
            let filtered = http
                .get(&format!(
                    "/api/v1/{route}?name={}",
                    name.replace(' ', "%20")
                ))
                .await
                .json();
            assert_eq!(
                filtered[&plural]
                    .as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
            let none = http.get(&format!("/api/v1/{route}?name=nope")).await.json();
            assert!(
                none[&plural]
                    .as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .is_empty()
            );
            let found = http
                .post(&format!("/api/v1/{route}/discover"), &json!({"name": name}))
                .await;
            assert_eq!(found.status, StatusCode::OK);
            assert_eq!(
                found.json()[&plural]
                    .as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
        }
        let r = http.put(&format!("/api/v1/{route}/{id}"), &updated).await;
        assert_eq!(r.status, StatusCode::OK, "{route}: {}", r.text());
        let r = http.get(&format!("/api/v1/{route}/{id}")).await.json();
        for (k, v) in updated.as_object().unwrap() {
            assert_eq!(&r[k], v, "{route}.{k} updated");
        }
        // Unknown ids.
        assert_eq!(
            http.get(&format!("/api/v1/{route}/nope")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            http.put(&format!("/api/v1/{route}/nope"), &updated)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            http.delete(&format!("/api/v1/{route}/nope")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    // Everything refers back down the chain: deleting from the bottom is refused.
    let r = http.delete("/api/v1/data-interfaces/di-x").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let body = r.json();
    assert_eq!(body["code"], "REFERENCED");
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("dsd-x"),
        "{body}"
    );
    // Deleting from the top down works.
    for route in [
        "data-consumer-manifests/dcm-x",
        "data-source-manifests/dsm-x",
        "edge-gateways/eg-x",
        "data-source-definitions/dsd-x",
        "data-kinds/dk-x",
        "data-interfaces/di-x",
        "analytics-processor-definitions/apd-x",
    ] {
        let r = http.delete(&format!("/api/v1/{route}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{route}: {}", r.text());
        assert_eq!(
            http.get(&format!("/api/v1/{route}")).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_the_right_4xx_and_never_a_500() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    // Malformed JSON: 400.
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some(("application/json", b"{\"id\": ".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "MALFORMED");
    // Not UTF-8: 400.
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some(("application/json", vec![0xff, 0xfe])),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Neither JSON nor XML: 415.
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some(("text/plain", b"hello".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Well-formed but invalid: 422 with every problem.
    let r = http.post("/api/v1/data-source-definitions", &json!({"id": "d", "dataInterfaceReferenceID": "nope", "dataKindReferenceID": "nope-2", "colour": 1})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.json();
    assert_eq!(body["code"], "INVALID");
    let pointers: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/dataInterfaceReferenceID")
            && pointers.contains(&"/dataKindReferenceID"),
        "{body}"
    );
    // A JSON array, not an object: 422.
    assert_eq!(
        http.post("/api/v1/data-kinds", &json!([1, 2])).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The body's id differs from the path's: 422.
    http.post("/api/v1/data-kinds", &json!({"id": "dk"})).await;
    assert_eq!(
        http.put("/api/v1/data-kinds/dk", &json!({"id": "other"}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Discover criteria that are not an object: 422; not JSON: 400.
    assert_eq!(
        http.post("/api/v1/data-kinds/discover", &json!(3))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds/discover",
            Some(("application/json", b"{".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Unknown routes: a JSON 404.
    let r = http.get("/api/v1/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "NOT_FOUND");
    // Bad query: 400.
    assert_eq!(
        http.get("/api/v1/data-source-manifests/x/data?last=zero")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_in_and_out() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    let xml = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/power-consumption/xml/data-interfaces/mqtt-topic.xml"
    ))
    .unwrap();
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-interfaces",
            Some(("application/xml", xml)),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let as_json = http
        .get("/api/v1/data-interfaces/di-mqtt-topic")
        .await
        .json();
    assert_eq!(
        as_json,
        example("data-interfaces")
            .into_iter()
            .find(|d| d["id"] == "di-mqtt-topic")
            .unwrap()
    );
    let r = http
        .request(
            Method::GET,
            "/api/v1/data-interfaces/di-mqtt-topic",
            None,
            &[("accept", "application/xml")],
        )
        .await;
    assert_eq!(r.header("content-type").as_deref(), Some("application/xml"));
    assert!(
        r.text()
            .contains("<defaultValue type=\"number\">1883</defaultValue>"),
        "{}",
        r.text()
    );
    let r = http
        .request(
            Method::GET,
            "/api/v1/data-interfaces",
            None,
            &[("accept", "application/xml")],
        )
        .await;
    assert!(
        r.text().contains("<bundle>") && r.text().contains("<dataInterface>"),
        "{}",
        r.text()
    );
    // XML of another entity, for this collection: 422; broken XML: 400.
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some((
                "application/xml",
                b"<dataInterface><id>x</id></dataInterface>".to_vec(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some(("application/xml", b"<dataKind><id>x</id>".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_asked_for_in_a_type_it_does_not_come_in_is_refused_not_answered_in_json() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    let get = |path: &'static str, accept: &'static str| async move {
        http.request(Method::GET, path, None, &[("accept", accept)])
            .await
    };
    for path in [
        "/api/v1/analytics-instances",
        "/api/v1/connectors",
        "/metrics",
    ] {
        let r = get(path, "application/xml").await;
        assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "NOT_ACCEPTABLE");
        assert!(r.json()["message"].as_str().unwrap().contains("ask for"));
        // With a fallback, the type the route has.
        let r = get(path, "application/xml, */*;q=0.1").await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let r = get("/api/v1/data-kinds", "application/xml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().contains("xml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_secrets_are_stored_but_never_returned() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    load_models(http, &server.dir.path().join("data")).await;
    let dsm = json!({"id": "dsm-secret", "dataSourceDefinitionReferenceID": "dsd-ib-meter-over-mqtt",
        "dataSourceDefinitionInterfaceParameters": {"parameter": [
            {"key": "topic", "value": "a/b"}, {"key": "password", "value": "hunter2"}, {"key": "username", "value": "u"}]}});
    let r = http.post("/api/v1/data-source-manifests", &dsm).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(!r.text().contains("hunter2"));
    for path in [
        "/api/v1/data-source-manifests/dsm-secret",
        "/api/v1/data-source-manifests",
    ] {
        let r = http.get(path).await;
        assert!(!r.text().contains("hunter2"), "{path}: {}", r.text());
        assert!(r.text().contains("********"), "{path}");
    }
    let r = http
        .request(
            Method::GET,
            "/api/v1/data-source-manifests/dsm-secret",
            None,
            &[("accept", "application/xml")],
        )
        .await;
    assert!(!r.text().contains("hunter2"));
    // The engine has the real value.
    let registered = server
        .service
        .engine
        .registry()
        .get(engine::Sym::new("dsm-secret"))
        .unwrap();
    assert_eq!(
        registered.parameters.get_str("password").as_deref(),
        Some("hunter2")
    );
}

async fn pilot_line_instance(http: &Http, out: &std::path::Path) -> String {
    load_models(http, out).await;
    let am = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib1-edge")
        .unwrap();
    let r = http.post("/api/v1/analytics-instances", &am).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.header("location").unwrap(),
        "/api/v1/analytics-instances/am-ib1-edge"
    );
    assert_eq!(r.json()["state"], "STOPPED");
    "am-ib1-edge".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_go_through_their_lifecycle_and_refuse_every_illegal_transition() {
    let server = in_process(|c| c.speed = "3600".into()).await;
    let http = &server.http;
    let id = pilot_line_instance(http, &server.dir.path().join("data")).await;
    let base = format!("/api/v1/analytics-instances/{id}");
    let state = |r: common::Reply| r.json()["state"].as_str().unwrap().to_owned();
    let conflict = |r: common::Reply, verb: &str| {
        assert_eq!(r.status, StatusCode::CONFLICT, "{verb}: {}", r.text());
        assert_eq!(r.json()["code"], "ILLEGAL_TRANSITION", "{verb}");
    };
    // From STOPPED: stop, pause and resume are illegal.
    conflict(http.post_empty(&format!("{base}/stop")).await, "stop");
    conflict(http.post_empty(&format!("{base}/pause")).await, "pause");
    conflict(http.post_empty(&format!("{base}/resume")).await, "resume");
    // Start.
    let r = http.post_empty(&format!("{base}/start")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(state(r), "RUNNING");
    assert_eq!(state(http.get(&format!("{base}/state")).await), "RUNNING");
    // From RUNNING: start and resume are illegal; so are update and delete.
    conflict(http.post_empty(&format!("{base}/start")).await, "start");
    conflict(http.post_empty(&format!("{base}/resume")).await, "resume");
    let spec = http.get(&format!("{base}/specification")).await.json();
    conflict(
        http.put(&format!("{base}/specification"), &spec).await,
        "update",
    );
    assert_eq!(http.delete(&base).await.status, StatusCode::CONFLICT);
    // Pause: from PAUSED, pause and start are illegal.
    assert_eq!(
        state(http.post_empty(&format!("{base}/pause")).await),
        "PAUSED"
    );
    conflict(http.post_empty(&format!("{base}/pause")).await, "pause");
    conflict(http.post_empty(&format!("{base}/start")).await, "start");
    assert_eq!(http.delete(&base).await.status, StatusCode::CONFLICT);
    assert_eq!(
        state(http.post_empty(&format!("{base}/resume")).await),
        "RUNNING"
    );
    // Data flows: metrics count it.
    eventually(10, "observations", || async {
        let m = http.get(&format!("{base}/metrics")).await.json();
        m["processors"][0]["received"].as_u64().unwrap() > 10
    })
    .await;
    let m = http.get(&format!("{base}/metrics")).await.json();
    assert_eq!(m["processors"].as_array().unwrap().len(), 4);
    assert!(m["processors"][0]["batchTime"].as_array().unwrap().len() > 5);
    // Stop, then update and delete are allowed.
    assert_eq!(
        state(http.post_empty(&format!("{base}/stop")).await),
        "STOPPED"
    );
    let mut renamed = spec.clone();
    renamed["name"] = json!("renamed");
    let r = http.put(&format!("{base}/specification"), &renamed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(http.get(&base).await.json()["name"], "renamed");
    // Discover.
    let found = http
        .post(
            "/api/v1/analytics-instances/discover",
            &json!({"name": "renamed"}),
        )
        .await
        .json();
    assert_eq!(found["analyticsInstances"].as_array().unwrap().len(), 1);
    let none = http
        .post(
            "/api/v1/analytics-instances/discover",
            &json!({"id": "nope"}),
        )
        .await
        .json();
    assert!(none["analyticsInstances"].as_array().unwrap().is_empty());
    assert_eq!(
        http.get("/api/v1/analytics-instances").await.json()["analyticsInstances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A DSM an instance uses cannot be deleted.
    assert_eq!(
        http.delete("/api/v1/data-source-manifests/dsm-ib1-meter")
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(http.delete(&base).await.status, StatusCode::NO_CONTENT);
    // Every instance route on an unknown id: 404.
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::GET, "/specification"),
        (Method::PUT, "/specification"),
        (Method::GET, "/state"),
        (Method::POST, "/start"),
        (Method::POST, "/stop"),
        (Method::POST, "/pause"),
        (Method::POST, "/resume"),
        (Method::GET, "/metrics"),
    ] {
        let body =
            (method == Method::PUT).then(|| ("application/json", spec.to_string().into_bytes()));
        let r = http
            .request(method.clone(), &format!("{base}{suffix}"), body, &[])
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {suffix}: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_analytics_manifests_are_refused_with_every_problem() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    load_models(http, &server.dir.path().join("data")).await;
    let mut am = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib2-edge")
        .unwrap();
    am["analyticsProcessors"]["apm"][0]["dataSources"]["dataSource"][0]["dataSourceManifestReferenceID"] =
        json!("dsm-ib2-metre");
    am["analyticsProcessors"]["apm"][1]["parameters"]["parameter"][0]["value"] = json!("soon");
    let r = http.post("/api/v1/analytics-instances", &am).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.json();
    let messages: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("did you mean `dsm-ib2-meter`?")),
        "{body}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("parameter `window` should be a duration")),
        "{body}"
    );
    // An id in use: 409.
    let ok = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib2-edge")
        .unwrap();
    assert_eq!(
        http.post("/api/v1/analytics-instances", &ok).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        http.post("/api/v1/analytics-instances", &ok).await.status,
        StatusCode::CONFLICT
    );
    // No id: one is given.
    let mut anonymous = ok.clone();
    anonymous.as_object_mut().unwrap().remove("id");
    let r = http.post("/api/v1/analytics-instances", &anonymous).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(r.json()["id"], "am-ib2-edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_starts_give_one_success_and_one_conflict() {
    let server = in_process(|c| c.speed = "1".into()).await;
    let http = &server.http;
    let id = pilot_line_instance(http, &server.dir.path().join("data")).await;
    for _ in 0..5 {
        let path = format!("/api/v1/analytics-instances/{id}/start");
        let (a, b) = tokio::join!(http.post_empty(&path), http.post_empty(&path));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
        let path = format!("/api/v1/analytics-instances/{id}/stop");
        let (a, b) = tokio::join!(http.post_empty(&path), http.post_empty(&path));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    }
    assert_eq!(
        http.get(&format!("/api/v1/analytics-instances/{id}/state"))
            .await
            .json()["state"],
        "STOPPED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_data_recent_observations_and_a_stream() {
    let server = in_process(|c| c.speed = "3600".into()).await;
    let http = &server.http;
    let id = pilot_line_instance(http, &server.dir.path().join("data")).await;
    assert_eq!(
        http.post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await
            .status,
        StatusCode::OK
    );
    eventually(10, "recent data", || async {
        http.get("/api/v1/data-source-manifests/dsm-ib1-meter/data?last=5")
            .await
            .json()["data"]
            .as_array()
            .unwrap()
            .len()
            == 5
    })
    .await;
    let recent = http
        .get("/api/v1/data-source-manifests/dsm-ib1-meter/data?last=5")
        .await
        .json();
    let first = &recent["data"][0]["observation"][0];
    assert!(
        first["name"] == "TotalRealPower" || first["name"] == "TotalRealEnergy",
        "{recent}"
    );
    assert_eq!(
        http.get("/api/v1/data-source-manifests/nope/data")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.get("/api/v1/data-source-manifests/nope/stream")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The stream: read until a few events have arrived.
    let addr = http.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /api/v1/data-source-manifests/dsm-ib1-meter/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 8192];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.matches("event: observation").count() < 3 && std::time::Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.matches("event: observation").count() >= 3, "{seen}");
    assert!(seen.contains("\"dataSourceManifestReferenceID\":\"dsm-ib1-meter\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_health_metrics_processors_validation_and_openapi() {
    let server = in_process(|c| c.speed = "3600".into()).await;
    let http = &server.http;
    let id = pilot_line_instance(http, &server.dir.path().join("data")).await;
    http.post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
        .await;
    let h = http.get("/health").await.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["instances"]["RUNNING"], 1);
    assert!(http.get("/health-check").await.json()["uptime"].is_u64());
    assert!(http.get("/api/health-check").await.json()["uptime"].is_u64());
    eventually(10, "metrics with data", || async {
        http.get("/metrics")
            .await
            .text()
            .contains("dda_connector_observations_total{dsm=\"dsm-ib1-meter\",direction=\"read\"}")
    })
    .await;
    let metrics = http.get("/metrics").await;
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for needle in [
        "dda_instance_state{instance=\"am-ib1-edge\",state=\"RUNNING\"} 1",
        "dda_processor_received_total{instance=\"am-ib1-edge\",processor=\"apm-ib1-hourly-power\",type=\"average\"}",
        "dda_processor_batch_seconds_bucket{instance=\"am-ib1-edge\",processor=\"apm-ib1-hourly-power\",type=\"average\",le=\"+Inf\"}",
        "dda_bus_queued_messages{topic=\"dsm-ib1-meter\"}",
        "dda_dead_letters_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }
    let catalogue = http.get("/api/v1/processors").await.json();
    let types: Vec<&str> = catalogue["analyticsProcessorDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["processorType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"average") && types.contains(&"filter"),
        "{types:?}"
    );
    // Validation against the stored models, nothing stored.
    let am = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib3-edge")
        .unwrap();
    let report = http.post("/api/v1/validate", &am).await.json();
    assert_eq!(report["valid"], true, "{report}");
    let mut broken = am.clone();
    broken["edgeGatewayReferenceID"] = json!("eg-ib4");
    let report = http.post("/api/v1/validate", &broken).await.json();
    assert_eq!(report["valid"], false);
    assert_eq!(report["diagnostics"][0]["code"], "dangling-reference");
    assert_eq!(
        report["diagnostics"][0]["pointer"],
        "/edgeGatewayReferenceID"
    );
    assert!(
        http.get("/api/v1/analytics-instances/am-ib3-edge")
            .await
            .status
            == StatusCode::NOT_FOUND,
        "validate stores nothing"
    );
    let xml = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/power-consumption/xml/analytics-manifests/ib3-edge.xml"
    ))
    .unwrap();
    let report = http
        .request(
            Method::POST,
            "/api/v1/validate",
            Some(("application/xml", xml)),
            &[],
        )
        .await
        .json();
    assert_eq!(report["valid"], true, "{report}");
    let doc = http.get("/api/v1/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/data-interfaces/{id}",
        "/api/v1/analytics-instances/{id}/pause",
        "/api/analytics-instances/discover",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_catalogue_lists_every_protocol_with_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("data"), free_port(), dir.path()).await;
    let r = server.http.get("/api/v1/connectors").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let catalogue = r.json();
    let connectors = catalogue["connectors"].as_array().unwrap();
    let protocol = |name: &str| {
        connectors
            .iter()
            .find(|c| c["protocol"] == name)
            .unwrap_or_else(|| panic!("no {name} in {catalogue}"))
            .clone()
    };
    let mqtt = protocol("MQTT");
    assert_eq!(
        (&mqtt["reads"], &mqtt["writes"], &mqtt["internal"]),
        (&json!(true), &json!(true), &json!(false)),
        "{mqtt}"
    );
    let parameters: Vec<&str> = mqtt["parameters"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(parameters.contains(&"topic"), "{parameters:?}");
    assert!(!mqtt["description"].as_str().unwrap().is_empty());
    let bus = protocol("Bus");
    assert_eq!(bus["internal"], true, "{bus}");
    // Documented, and readable by a viewer like the processor list.
    let doc = server.http.get("/api/v1/openapi.json").await.json();
    assert!(doc["paths"]["/api/v1/connectors"]["get"].is_object());
    let viewer = "viewer-token";
    let guarded = in_process(|c| {
        c.tokens = vec![dashboard_api::config::TokenConfig {
            name: "v".into(),
            role: dashboard_api::config::Role::Viewer,
            sha256: dashboard_api::config::sha256_hex(viewer),
        }];
    })
    .await;
    assert_eq!(
        guarded.http.get("/api/v1/connectors").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        guarded
            .http
            .with_token(viewer)
            .get("/api/v1/connectors")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_guard_every_route_but_health() {
    let viewer = "viewer-token";
    let operator = "operator-token";
    let admin = "admin-token";
    let server = in_process(|c| {
        c.tokens = [
            ("v", viewer, dashboard_api::config::Role::Viewer),
            ("o", operator, dashboard_api::config::Role::Operator),
            ("a", admin, dashboard_api::config::Role::Admin),
        ]
        .into_iter()
        .map(|(name, token, role)| dashboard_api::config::TokenConfig {
            name: name.into(),
            role,
            sha256: dashboard_api::config::sha256_hex(token),
        })
        .collect();
    })
    .await;
    let anonymous = &server.http;
    assert_eq!(anonymous.get("/health").await.status, StatusCode::OK);
    assert_eq!(anonymous.get("/health-check").await.status, StatusCode::OK);
    let r = anonymous.get("/api/v1/data-kinds").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(
        anonymous.get("/metrics").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous
            .with_token("wrong")
            .get("/api/v1/data-kinds")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let v = anonymous.with_token(viewer);
    let o = anonymous.with_token(operator);
    let a = anonymous.with_token(admin);
    assert_eq!(v.get("/api/v1/data-kinds").await.status, StatusCode::OK);
    assert_eq!(
        v.post("/api/v1/data-kinds/discover", &json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let r = v.post("/api/v1/data-kinds", &json!({"id": "dk"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["code"], "FORBIDDEN");
    assert_eq!(
        o.post("/api/v1/data-kinds", &json!({"id": "dk"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.post("/api/v1/data-kinds", &json!({"id": "dk"}))
            .await
            .status,
        StatusCode::CREATED
    );
    // Lifecycle: operators yes, viewers no.
    let id = pilot_line_instance(&a, &server.dir.path().join("data")).await;
    assert_eq!(
        v.post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        o.post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        o.post_empty(&format!("/api/analytics-instances/{id}/stop"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        o.delete(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.delete(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

/// A candidate is validated with only what it concerns, yet as among everything stored: a
/// bus topic is fed when any stored manifest writes it, and no longer once none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_topic_is_fed_by_whatever_stored_manifest_writes_it() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    load_models(http, &server.dir.path().join("data")).await;
    for id in ["topic-x", "topic-y", "topic-z"] {
        let dsm = json!({"id": id, "dataSourceDefinitionReferenceID": "dsd-statistics-on-bus"});
        let r = http.post("/api/v1/data-source-manifests", &dsm).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let am = |id: &str, from: &str, to: &str| {
        json!({"id": id, "analyticsProcessors": {"apm": [{"id": "average",
            "analyticsProcessorDefinitionReferenceID": "apd-average",
            "parameters": {"parameter": [{"key": "window", "value": "PT1H"}]},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
            "dataSink": {"dataSourceManifestReferenceID": to}}]}})
    };
    // Creates an instance reading `from` and writing `to`: accepted, or refused because
    // nothing feeds topic-x.
    let create = |id: &'static str, from: &'static str, to: &'static str, accepted: bool| {
        let doc = am(id, from, to);
        async move {
            let r = http.post("/api/v1/analytics-instances", &doc).await;
            if accepted {
                assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.text());
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{id}: {}",
                    r.text()
                );
                assert!(
                    r.text().contains("nothing feeds data source `topic-x`"),
                    "{id}: {}",
                    r.text()
                );
            }
        }
    };
    create("reader", "topic-x", "topic-z", false).await;
    create("writer", "dsm-ib1-meter", "topic-x", true).await;
    create("reader", "topic-x", "topic-z", true).await;
    // The data source cannot go while the reader and the writer refer to it, in that order.
    let r = http.delete("/api/v1/data-source-manifests/topic-x").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let referrers: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        referrers,
        [
            "analytics manifest `writer` refers to it at /analyticsProcessors/apm/0/dataSink/dataSourceManifestReferenceID",
            "analytics manifest `reader` refers to it at /analyticsProcessors/apm/0/dataSources/dataSource/0/dataSourceManifestReferenceID"
        ],
        "{}",
        r.text()
    );
    // The writer changed to write elsewhere: topic-x is no longer fed.
    let r = http
        .put(
            "/api/v1/analytics-instances/writer/specification",
            &am("writer", "dsm-ib1-meter", "topic-y"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    create("reader-2", "topic-x", "topic-z", false).await;
    // Once more fed, then not after its writer is deleted.
    create("writer-2", "dsm-ib2-meter", "topic-x", true).await;
    create("reader-2", "topic-x", "topic-z", true).await;
    for id in ["reader", "reader-2", "writer-2"] {
        let r = http
            .delete(&format!("/api/v1/analytics-instances/{id}"))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    }
    create("reader-3", "topic-x", "topic-z", false).await;
}

/// A device leaves and comes back over REST: unregistered, its data source stops while its
/// manifest stays, and the instance reading it keeps running, waiting for it (kept across a
/// restart); registered again, its data flows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_source_leaves_and_rejoins_over_rest_while_its_reader_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::services::write(dir.path(), "dda.toml", "speed = \"3600\"\n");
    let data = dir.path().join("data");
    let port = free_port();
    let server = Process::start_with(&data, port, dir.path(), Some(&config)).await;
    let http = server.http.clone();
    let id = pilot_line_instance(&http, &data).await;
    let base = format!("/api/v1/analytics-instances/{id}");
    let r = http.post_empty(&format!("{base}/start")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let received = |http: Http| {
        let path = format!("{base}/metrics");
        async move {
            http.get(&path).await.json()["processors"][0]["received"]
                .as_u64()
                .unwrap()
        }
    };
    eventually(10, "observations", || {
        let r = received(http.clone());
        async move { r.await > 10 }
    })
    .await;
    let meter = "/api/v1/data-sources/dsm-ib1-meter";
    let r = http.get(meter).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["registered"], true, "{}", r.text());
    // What the running instance writes cannot leave; what nothing models is not found.
    let r = http
        .post_empty("/api/v1/data-sources/dsm-ib1-hourly/unregister")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["code"], "IN_USE");
    let r = http
        .post_empty("/api/v1/data-sources/dsm-none/unregister")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    // The meter leaves: its reader runs on and waits for it, and no data comes.
    let r = http.post_empty(&format!("{meter}/unregister")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "dsm-ib1-meter", "registered": false, "protocol": "Simulator", "waiting": [id]})
    );
    let waits = |v: Value| {
        assert_eq!(v["state"], "RUNNING", "{v}");
        assert_eq!(v["waitingFor"], json!(["dsm-ib1-meter"]), "{v}");
    };
    waits(http.get(&base).await.json());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = received(http.clone()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        received(http.clone()).await,
        before,
        "no data while it is away"
    );
    let listed = http.get("/api/v1/data-sources").await.json();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "dsm-ib1-meter")
        .cloned();
    assert_eq!(
        entry.map(|e| e["registered"].clone()),
        Some(json!(false)),
        "{listed}"
    );
    assert_eq!(
        http.get("/api/v1/data-source-manifests/dsm-ib1-meter")
            .await
            .status,
        StatusCode::OK
    );
    // Across a restart it stays away, and its reader runs on waiting.
    server.terminate();
    let server = Process::start_with(&data, port, dir.path(), Some(&config)).await;
    let http = server.http.clone();
    assert_eq!(http.get(meter).await.json()["registered"], false);
    waits(http.get(&base).await.json());
    // Back: its data flows again.
    let r = http.post_empty(&format!("{meter}/register")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["registered"], true);
    eventually(10, "observations after the return", || {
        let r = received(http.clone());
        async move { r.await > 10 }
    })
    .await;
    assert_eq!(http.get(&base).await.json()["waitingFor"], json!([]));
}
