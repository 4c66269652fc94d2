//! `dda serve` as a process: recovery after SIGKILL, a session of an original FAR-EDGE
//! client, and HTTPS.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use std::time::Duration;

use common::{Http, Process, eventually, example, free_port, load_models};
use hyper::StatusCode;
use serde_json::{Value, json};

async fn received(http: &Http, id: &str) -> u64 {
    let m = http
        .get(&format!("/api/v1/analytics-instances/{id}/metrics"))
        .await
        .json();
    m["processors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["received"].as_u64().unwrap())
        .max()
        .unwrap_or(0)
}

async fn state(http: &Http, id: &str) -> String {
    http.get(&format!("/api/v1/analytics-instances/{id}/state"))
        .await
        .json()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_instances_come_back_running_paused_or_stopped_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server = Process::start(&data, port, dir.path()).await;
    let http = server.http.clone();
    load_models(&http, &data).await;
    for am in example("analytics-manifests")
        .into_iter()
        .filter(|a| a["id"] != "am-global")
    {
        assert_eq!(
            http.post("/api/v1/analytics-instances", &am).await.status,
            StatusCode::CREATED
        );
    }
    for (id, verb) in [
        ("am-ib1-edge", "start"),
        ("am-ib2-edge", "start"),
        ("am-ib2-edge", "pause"),
    ] {
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{id}/{verb}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{id} {verb}: {}", r.text());
    }
    eventually(15, "data in the running instance", || async {
        received(&http, "am-ib1-edge").await > 50
    })
    .await;
    server.kill();

    let server = Process::start(&data, port, dir.path()).await;
    let http = server.http.clone();
    assert_eq!(state(&http, "am-ib1-edge").await, "RUNNING");
    assert_eq!(state(&http, "am-ib2-edge").await, "PAUSED");
    assert_eq!(state(&http, "am-ib3-edge").await, "STOPPED");
    // The models came back too.
    assert_eq!(
        http.get("/api/v1/data-source-manifests/dsm-ib1-meter")
            .await
            .status,
        StatusCode::OK
    );
    // Data flows again into the running one; the paused one holds still.
    eventually(15, "data after the restart", || async {
        received(&http, "am-ib1-edge").await > 50
    })
    .await;
    let held = received(&http, "am-ib2-edge").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        received(&http, "am-ib2-edge").await,
        held,
        "a paused instance takes nothing in"
    );
    assert_eq!(
        http.post_empty("/api/v1/analytics-instances/am-ib2-edge/resume")
            .await
            .status,
        StatusCode::OK
    );
    eventually(15, "data after resuming", || async {
        received(&http, "am-ib2-edge").await > held + 50
    })
    .await;
    // Results reach the edge database of the running box.
    eventually(20, "stored hourly averages", || async {
        let path = data.join("ib1-edge.sqlite");
        rusqlite::Connection::open(path)
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM hourly_averages", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .is_ok_and(|n| n > 0)
    })
    .await;
}

/// The original engine's sample analytics manifest (`check-whether-bob-has-fever.json`),
/// with the models it names.
fn bob() -> (Vec<(&'static str, Value)>, Value) {
    let models = vec![
        (
            "data-interfaces",
            json!({"id": "bb3f7a0d-da9a-4b5a-8699-0a2d95da5843", "name": "Simulated temperature", "communicationProtocol": "Simulator"}),
        ),
        (
            "data-interfaces",
            json!({"id": "569b4562-871b-4f55-863c-1aea0b47f57f", "name": "Bus topic", "communicationProtocol": "Bus"}),
        ),
        (
            "data-kinds",
            json!({"id": "b77108b7-a8c2-40e1-b794-d3a21239487a", "name": "Temperature (in Celsius) in JSON", "description": "Temperature values (in Celsius) in JSON format.", "format": "JSON", "quantityKind": "Temperature"}),
        ),
        (
            "data-source-definitions",
            json!({"id": "1b1b623c-cf1d-4dfb-a84a-3329dc79aac3", "name": "Temperature", "dataInterfaceReferenceID": "bb3f7a0d-da9a-4b5a-8699-0a2d95da5843", "dataKindReferenceIDs": {"dataKindReferenceID": ["b77108b7-a8c2-40e1-b794-d3a21239487a"]}}),
        ),
        (
            "data-source-definitions",
            json!({"id": "13b66a56-0000-4000-8000-000000000001", "name": "Fever", "dataInterfaceReferenceID": "569b4562-871b-4f55-863c-1aea0b47f57f", "dataKindReferenceID": "b77108b7-a8c2-40e1-b794-d3a21239487a"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "9ecf1a34-846a-4b77-82f6-b9991874065b", "name": "Bob temperature", "macAddress": "B7-7A-7C-5C-E7-FC", "dataSourceDefinitionReferenceID": "1b1b623c-cf1d-4dfb-a84a-3329dc79aac3"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "685e8a7e-f609-4573-ac04-cf76e258fc00", "name": "Bob fever", "macAddress": "B7-7A-7C-5C-E7-FC", "dataSourceDefinitionReferenceID": "13b66a56-0000-4000-8000-000000000001"}),
        ),
        (
            "analytics-processor-definitions",
            json!({
            "id": "b6cbf43d-6378-47cf-bd19-330521d9cfa6", "name": "Filterer",
            "description": "Processors that filter values based on some condition.",
            "processorType": "filter", "version": "1.0.0", "copyright": "Athens Information Technology",
            "processorLocation": "/var/processors/filter-1.0.0-jar-with-dependencies.jar",
            "parameters": {"parameter": [
                {"name": "operator", "description": "The operator in the condition (EQ, GE, GT, LE, LT, NE).", "dataType": "string"},
                {"name": "threshold", "description": "The threshold in the condition.", "dataType": "float"}]}}),
        ),
    ];
    let am = json!({
        "id": "ca233753-90f3-40ea-be95-8d6611c65199",
        "name": "Bob fever detector",
        "description": "Detects whether Bob has fever.",
        "analyticsProcessors": {"apm": [{
            "id": "4cbd1964-1abb-41af-afed-9afc8f82331b",
            "name": "Bob temperature filterer",
            "description": "Filters Bob's temperature and keeps only the values that show that Bob has fever.",
            "analyticsProcessorDefinitionReferenceID": "b6cbf43d-6378-47cf-bd19-330521d9cfa6",
            "parameters": {"parameter": [{"key": "operator", "value": "GE"}, {"key": "threshold", "value": 38}]},
            "dataSink": {"dataSourceManifestReferenceID": "685e8a7e-f609-4573-ac04-cf76e258fc00"},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "9ecf1a34-846a-4b77-82f6-b9991874065b"}]}
        }]}
    });
    (models, am)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_far_edge_client_session_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("data"), free_port(), dir.path()).await;
    let http = server.http.clone();
    let (models, am) = bob();
    for (route, doc) in models {
        let r = http.post(&format!("/api/v1/{route}"), &doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
    }
    assert!(
        http.get("/health-check").await.json()["uptime"]
            .as_u64()
            .is_some()
    );

    // Create: 201 and a Location; the original gave every instance a new id.
    let r = http.post("/api/analytics-instances", &am).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "ca233753-90f3-40ea-be95-8d6611c65199");
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/analytics-instances/{id}")
    );
    assert_eq!(created["state"], "STOPPED");
    assert_eq!(created["specification"]["name"], "Bob fever detector");
    let base = format!("/api/analytics-instances/{id}");
    let r = http.get(&base).await.json();
    assert_eq!(
        (r["id"].as_str(), r["state"].as_str()),
        (Some(id.as_str()), Some("STOPPED"))
    );
    assert_eq!(
        http.get(&format!("{base}/specification")).await.json()["analyticsProcessors"]["apm"][0]["parameters"]
            ["parameter"][1]["value"],
        38
    );
    assert_eq!(
        http.get(&format!("{base}/state")).await.json(),
        json!({"id": id, "state": "STOPPED"})
    );
    // Stop when not running: 400 ANALYTICS_INSTANCE_NOT_RUNNING.
    let r = http.post_empty(&format!("{base}/stop")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "ANALYTICS_INSTANCE_NOT_RUNNING");
    // Start: 204, then RUNNING; again: 400 ANALYTICS_INSTANCE_RUNNING.
    let r = http.post_empty(&format!("{base}/start")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        http.get(&format!("{base}/state")).await.json()["state"],
        "RUNNING"
    );
    let r = http.post_empty(&format!("{base}/start")).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("ANALYTICS_INSTANCE_RUNNING"))
    );
    // Update and delete while running: 400 ANALYTICS_INSTANCE_RUNNING.
    let r = http.put(&format!("{base}/specification"), &am).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("ANALYTICS_INSTANCE_RUNNING"))
    );
    let r = http.delete(&base).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("ANALYTICS_INSTANCE_RUNNING"))
    );
    // Discover by name and by id.
    let found = http
        .post(
            "/api/analytics-instances/discover",
            &json!({"name": "Bob fever detector", "id": ""}),
        )
        .await
        .json();
    assert_eq!(found["analyticsInstances"][0]["id"], id);
    let found = http
        .post("/api/analytics-instances/discover", &json!({"id": id}))
        .await
        .json();
    assert_eq!(found["analyticsInstances"].as_array().unwrap().len(), 1);
    // Stop: 204; update: 200; delete: 204; then 404 ANALYTICS_INSTANCE_NOT_FOUND.
    assert_eq!(
        http.post_empty(&format!("{base}/stop")).await.status,
        StatusCode::NO_CONTENT
    );
    let mut changed = am.clone();
    changed["analyticsProcessors"]["apm"][0]["parameters"]["parameter"][1]["value"] = json!("37.5");
    let r = http.put(&format!("{base}/specification"), &changed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["id"], id);
    assert_eq!(http.delete(&base).await.status, StatusCode::NO_CONTENT);
    let r = http.get(&base).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::NOT_FOUND, json!("ANALYTICS_INSTANCE_NOT_FOUND"))
    );
    // An analytics manifest naming a missing sink: 400 DATA_SINK_NOT_FOUND, as the original.
    let mut broken = am.clone();
    broken["analyticsProcessors"]["apm"][0]["dataSink"]["dataSourceManifestReferenceID"] =
        json!("00000000-0000-4000-8000-000000000000");
    let r = http.post("/api/analytics-instances", &broken).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("DATA_SINK_NOT_FOUND"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_api_speaks_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_port();
    let config = dir.path().join("dda.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n", dir.path().join("data").display(), cert.display(), key.display()),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |scheme: &str| {
        std::process::Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "2",
                &format!("{scheme}://127.0.0.1:{port}/health"),
            ])
            .output()
            .unwrap()
    };
    let mut ok = None;
    for _ in 0..100 {
        let out = curl("https");
        if out.status.success() {
            ok = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plain = curl("http");
    child.kill().unwrap();
    child.wait().unwrap();
    let body = ok.expect("HTTPS answers");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("\"status\":\"ok\""),
        "plain HTTP is not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Process::start(&data, free_port(), dir.path()).await;
    let http = server.http.clone();
    load_models(&http, &data).await;
    let am = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib1-edge")
        .unwrap();
    assert_eq!(
        http.post("/api/v1/analytics-instances", &am).await.status,
        StatusCode::CREATED
    );
    let r = http
        .post_empty("/api/v1/analytics-instances/am-ib1-edge/start")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let second_port = free_port();
    let second = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_dda"))
                .args(["serve", "--listen", &format!("127.0.0.1:{second_port}")])
                .arg("--data-dir")
                .arg(&data)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second server gives up at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by another dda serve")
            && stderr.contains(&format!("(process {})", server.child.id()))
            && stderr.contains("--data-dir"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", second_port)).is_err(),
        "the second server never listened"
    );
    // The first one runs on, its instance too.
    assert_eq!(state(&http, "am-ib1-edge").await, "RUNNING");
    let before = received(&http, "am-ib1-edge").await;
    eventually(
        15,
        "the first server's instance still receiving",
        || async { received(&http, "am-ib1-edge").await > before },
    )
    .await;
}

/// Posts, for each protocol, a data interface, a data source definition and a DSM pointing at
/// a port nothing listens on, and an instance storing box 1's hourly averages there.
async fn instances_writing_to_unreachable_systems(http: &Http) -> Vec<String> {
    let mut ids = Vec::new();
    for (protocol, extra) in [
        ("PostgreSQL", json!([])),
        ("MongoDB", json!([])),
        ("Kafka", json!([{"key": "topic", "value": "averages"}])),
        ("MQTT", json!([{"key": "topic", "value": "averages"}])),
    ] {
        let p = protocol.to_lowercase();
        let post = |route: &'static str, doc: Value| async move {
            let r = http.post(&format!("/api/v1/{route}"), &doc).await;
            assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
        };
        // The hourly averages go to a data bus DSM of the instance's own.
        let mut hourly = example("data-source-manifests")
            .into_iter()
            .find(|d| d["id"] == "dsm-ib1-hourly")
            .unwrap();
        hourly["id"] = json!(format!("dsm-{p}-hourly"));
        post("data-source-manifests", hourly).await;
        post(
            "data-interfaces",
            json!({"id": format!("di-{p}"), "name": p, "communicationProtocol": protocol}),
        )
        .await;
        post(
            "data-source-definitions",
            json!({"id": format!("dsd-{p}"), "name": p, "dataInterfaceReferenceID": format!("di-{p}"),
                   "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power", "dk-total-real-energy"]}}),
        )
        .await;
        let mut parameters = vec![json!({"key": "port", "value": free_port()})];
        parameters.extend(extra.as_array().unwrap().iter().cloned());
        post(
            "data-source-manifests",
            json!({"id": format!("dsm-{p}"), "name": p, "dataSourceDefinitionReferenceID": format!("dsd-{p}"),
                   "dataSourceDefinitionInterfaceParameters": {"parameter": parameters}}),
        )
        .await;
        let id = format!("am-into-{p}");
        post(
            "analytics-instances",
            json!({"id": id, "name": p, "analyticsProcessors": {"apm": [
                {"id": "apm-hourly", "analyticsProcessorDefinitionReferenceID": "apd-average",
                 "parameters": {"parameter": [{"key": "window", "value": "PT1H"}, {"key": "observationName", "value": "TotalRealPower"}]},
                 "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-ib1-meter"}]},
                 "dataSink": {"dataSourceManifestReferenceID": format!("dsm-{p}-hourly")}},
                {"id": "apm-store", "analyticsProcessorDefinitionReferenceID": "apd-store",
                 "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": format!("dsm-{p}-hourly")}]},
                 "dataSink": {"dataSourceManifestReferenceID": format!("dsm-{p}")}}
            ]}}),
        )
        .await;
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_on_unreachable_systems_hold_up_no_call_and_a_stop_keeps_what_they_could_not_deliver_queued()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dda.toml");
    std::fs::write(&config, "stop_timeout = \"2s\"\n").unwrap();
    let data = dir.path().join("data");
    let server = Process::start_with(&data, free_port(), dir.path(), Some(&config)).await;
    let http = server.http.clone();
    load_models(&http, &data).await;
    let stuck = instances_writing_to_unreachable_systems(&http).await;
    let healthy = example("analytics-manifests")
        .into_iter()
        .find(|a| a["id"] == "am-ib2-edge")
        .unwrap();
    assert_eq!(
        http.post("/api/v1/analytics-instances", &healthy)
            .await
            .status,
        StatusCode::CREATED
    );
    for id in &stuck {
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.text());
    }
    // At 3600× an hour passes every second: averages pile up for the sinks that cannot write.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every call about something else answers at once, while each stuck sink retries.
    for round in 0..2 {
        let on = |verb: &str| format!("/api/v1/analytics-instances/am-ib2-edge/{verb}");
        within_2s(&format!("start ({round})"), http.post_empty(&on("start"))).await;
        within_2s("health", http.get("/health")).await;
        within_2s("metrics", http.get("/metrics")).await;
        within_2s("the list", http.get("/api/v1/analytics-instances")).await;
        for id in &stuck {
            let path = format!("/api/v1/analytics-instances/{id}/state");
            within_2s(&format!("the status of {id}"), http.get(&path)).await;
        }
        within_2s(&format!("stop ({round})"), http.post_empty(&on("stop"))).await;
    }

    // Stopping a stuck instance takes the stop deadline (2 s) and a grace period, not
    // forever.
    let dead_before = dead_letters(&http).await;
    for id in &stuck {
        let r = tokio::time::timeout(
            Duration::from_secs(8),
            http.post_empty(&format!("/api/v1/analytics-instances/{id}/stop")),
        )
        .await
        .unwrap_or_else(|_| panic!("stopping {id} took more than 8 s"));
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.text());
    }
    for id in &stuck {
        let doc = http
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .json();
        assert_eq!(doc["state"], "STOPPED", "{id}: {doc}");
    }
    let metrics = http.get("/metrics").await.text();
    // Network sinks write through their store-and-forward queues: what they could not
    // deliver stays queued on disk for their next start, not in the dead letters.
    for p in ["postgresql", "mongodb", "kafka", "mqtt"] {
        let queued: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("dda_sink_queue_observations{{dsm=\"dsm-{p}\"}} "))
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no queue of dsm-{p}:\n{metrics}"));
        assert!(queued > 0, "dsm-{p}: {metrics}");
        assert!(
            !metrics.contains(&format!(
                "dda_connector_undelivered_total{{dsm=\"dsm-{p}\"}}"
            )),
            "dsm-{p}: {metrics}"
        );
    }
    assert_eq!(dead_letters(&http).await, dead_before);
    // A stuck instance starts again at once.
    let path = format!("/api/v1/analytics-instances/{}/start", stuck[0]);
    within_2s("starting a stuck instance again", http.post_empty(&path)).await;
}

/// Awaits `call`, which must answer with a success within 2 s.
async fn within_2s(what: &str, call: impl Future<Output = common::Reply>) {
    let r = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within 2 s"));
    assert!(r.status.is_success(), "{what}: {} {}", r.status, r.text());
}

async fn dead_letters(http: &Http) -> u64 {
    let metrics = http.get("/metrics").await.text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("dda_dead_letters_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_under_dda_serve_reads_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Process::start(&data, free_port(), dir.path()).await;
    let http = server.http.clone();
    load_models(&http, &data).await;
    let ingest = free_port();
    let post = |route: &'static str, doc: Value| {
        let http = http.clone();
        async move {
            let r = http.post(&format!("/api/v1/{route}"), &doc).await;
            assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
        }
    };
    for (id, protocol) in [("http", "HTTP"), ("file", "File")] {
        post(
            "data-interfaces",
            json!({"id": format!("di-{id}"), "communicationProtocol": protocol}),
        )
        .await;
        post(
            "data-source-definitions",
            json!({"id": format!("dsd-{id}"), "dataInterfaceReferenceID": format!("di-{id}"),
                   "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power"]}}),
        )
        .await;
    }
    post(
        "data-source-manifests",
        json!({"id": "dsm-http", "dataSourceDefinitionReferenceID": "dsd-http",
               "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "port", "value": ingest}]}}),
    )
    .await;
    for (id, path) in [
        ("dsm-ingested", "ingested.jsonl"),
        ("dsm-dead-copy", "copies/dead.jsonl"),
    ] {
        post(
            "data-source-manifests",
            json!({"id": id, "dataSourceDefinitionReferenceID": "dsd-file",
                   "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "path", "value": path}]}}),
        )
        .await;
    }
    for (am, from, to) in [
        ("am-ingest", "dsm-http", "dsm-ingested"),
        ("am-dead-letters", "dda-dead-letters", "dsm-dead-copy"),
    ] {
        post(
            "analytics-instances",
            json!({"id": am, "analyticsProcessors": {"apm": [
                {"id": "apm-store", "analyticsProcessorDefinitionReferenceID": "apd-store",
                 "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
                 "dataSink": {"dataSourceManifestReferenceID": to}}]}}),
        )
        .await;
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{am}/start"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{am}: {}", r.text());
    }
    // A payload the ingest endpoint cannot read becomes a dead letter.
    let endpoint = Http::new(&format!("http://127.0.0.1:{ingest}"));
    let mut refused = None;
    for _ in 0..50 {
        let r = endpoint
            .request(
                hyper::Method::POST,
                "/ingest/dsm-http",
                Some(("application/json", b"{not json".to_vec())),
                &[],
            )
            .await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(r.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused, Some(StatusCode::BAD_REQUEST));
    let copy = data.join("copies/dead.jsonl");
    eventually(20, "the dead letter read by an instance", || async {
        std::fs::read_to_string(&copy)
            .is_ok_and(|t| t.contains("dead-letter") && t.contains("{not json"))
    })
    .await;
    // The dead letters were read from the bus, not from their file a second time.
    let status = http
        .get("/api/v1/analytics-instances/am-dead-letters")
        .await
        .json();
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert!(
        status["waitingFor"].as_array().unwrap().is_empty(),
        "{status}"
    );
}

/// Sends `signal` (`-TERM`) to a server.
fn signal(server: &Process, signal: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([signal, &server.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits up to `limit` for the server to exit; its exit code and how long it took.
fn exit_within(server: &mut Process, limit: Duration) -> (Option<i32>, Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = server.child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("dda serve did not exit within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_draining_into_an_unreachable_database_stops_by_its_deadline_or_at_a_second_signal()
 {
    for (stop_timeout, signals, code, limit) in [
        // One SIGTERM: the drain gives the stuck sink up at the deadline.
        ("2s", 1, Some(0), Duration::from_secs(9)),
        // A long deadline, and a second SIGTERM: out at once.
        ("60s", 2, Some(143), Duration::from_secs(3)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dda.toml");
        std::fs::write(&config, format!("stop_timeout = {stop_timeout:?}\n")).unwrap();
        let data = dir.path().join("data");
        let mut server = Process::start_with(&data, free_port(), dir.path(), Some(&config)).await;
        let http = server.http.clone();
        load_models(&http, &data).await;
        let stuck = instances_writing_to_unreachable_systems(&http).await;
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{}/start", stuck[0]))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Hourly averages wait for the PostgreSQL nothing listens for.
        tokio::time::sleep(Duration::from_secs(3)).await;
        signal(&server, "-TERM");
        if signals == 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            signal(&server, "-TERM");
        }
        let (exited, took) = exit_within(&mut server, limit);
        assert_eq!(
            exited, code,
            "stop_timeout {stop_timeout}, {signals} signal(s), {took:?}"
        );
    }
}

/// `[checkpoint_intervals]` gives instances intervals of their own: one checkpointed every
/// second while the engine's interval is an hour, one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_checkpoints_at_its_own_interval_or_never() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("dda.toml");
    std::fs::write(
        &config,
        "checkpoint_interval = \"1h\"\n[checkpoint_intervals]\n\"am-ib1-edge\" = \"1s\"\n\"am-ib2-edge\" = \"0s\"\n",
    )
    .unwrap();
    let server = Process::start_with(&data, free_port(), dir.path(), Some(&config)).await;
    let http = server.http.clone();
    load_models(&http, &data).await;
    let edges = ["am-ib1-edge", "am-ib2-edge", "am-ib3-edge"];
    for am in example("analytics-manifests")
        .into_iter()
        .filter(|a| edges.contains(&a["id"].as_str().unwrap()))
    {
        let r = http.post("/api/v1/analytics-instances", &am).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let id = am["id"].as_str().unwrap();
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    let checkpoint = |id: &'static str| {
        let http = http.clone();
        async move {
            http.get(&format!("/api/v1/analytics-instances/{id}"))
                .await
                .json()["checkpoint"]
                .clone()
        }
    };
    eventually(20, "three checkpoints of am-ib1-edge", || async {
        checkpoint("am-ib1-edge").await["completed"].as_u64() >= Some(3)
    })
    .await;
    let never = checkpoint("am-ib2-edge").await;
    assert_eq!(never["completed"], json!(0), "{never}");
    assert!(
        never["notCheckpointed"]
            .as_str()
            .is_some_and(|w| w.contains("0s")),
        "{never}"
    );
    let hourly = checkpoint("am-ib3-edge").await;
    assert_eq!(hourly["completed"], json!(0), "{hourly}");
    assert!(hourly.get("notCheckpointed").is_none(), "{hourly}");
    drop(server);
}

/// An original client manages edge gateways through `/api/edge-gateways` as it did: 201
/// with a `Location` and a UUID, 400 with the original's codes (`MISSING_NAMESPACE`,
/// `NAME_TAKEN`, `NAMESPACE_TAKEN`), a full replacement on PUT, discover by fields, 204 on
/// delete and `EDGE_GATEWAY_NOT_FOUND` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_client_manages_edge_gateways_as_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("data"), free_port(), dir.path()).await;
    let http = server.http.clone();
    let gateway = |name: &str, namespace: &str| {
        json!({
            "name": name, "description": "A gateway of the original's samples", "namespace": namespace,
            "macAddress": "00:0a:95:9d:68:16",
            "location": {"virtualLocation": "Line 1", "geoLocation": {"latitude": 45.07, "longitude": 7.69}},
            "dataRouterAndPreprocessorBaseURL": "http://127.0.0.1:9998/api",
            "edgeAnalyticsEngineBaseURL": "http://127.0.0.1:9999/api",
            "additionalInformation": ["rack 3"]
        })
    };
    let code = |r: &common::Reply| r.json()["error"].as_str().unwrap_or_default().to_owned();
    let r = http
        .post("/api/edge-gateways", &gateway("bob", "bob-ns"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let bob = r.json();
    let id = bob["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/edge-gateways/{id}")
    );
    assert_eq!(bob["namespace"], "bob-ns");
    assert_eq!(bob["location"]["geoLocation"]["latitude"], 45.07);
    // What the original refused, it refuses with its codes.
    let mut no_namespace = gateway("alice", "x");
    no_namespace.as_object_mut().unwrap().remove("namespace");
    let r = http.post("/api/edge-gateways", &no_namespace).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "MISSING_NAMESPACE".into()),
        "{}",
        r.text()
    );
    let r = http
        .post("/api/edge-gateways", &gateway("bob", "other-ns"))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "NAME_TAKEN".into()),
        "{}",
        r.text()
    );
    let r = http
        .post("/api/edge-gateways", &gateway("alice", "bob-ns"))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "NAMESPACE_TAKEN".into()),
        "{}",
        r.text()
    );
    let r = http
        .post("/api/edge-gateways", &gateway("alice", "alice-ns"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Read, and the same gateway through the v1 routes.
    let r = http.get(&format!("/api/edge-gateways/{id}")).await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, bob.clone()));
    assert_eq!(
        http.get(&format!("/api/v1/edge-gateways/{id}"))
            .await
            .json()["name"],
        "bob"
    );
    // A replacement keeps its own name and namespace, and clears what it leaves out.
    let mut replaced = gateway("bob", "bob-ns");
    replaced
        .as_object_mut()
        .unwrap()
        .remove("additionalInformation");
    replaced["description"] = json!("moved");
    let r = http
        .put(&format!("/api/edge-gateways/{id}"), &replaced)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["description"], "moved");
    assert!(
        r.json().get("additionalInformation").is_none(),
        "{}",
        r.text()
    );
    let r = http
        .put(
            &format!("/api/edge-gateways/{id}"),
            &gateway("bob", "alice-ns"),
        )
        .await;
    assert_eq!(code(&r), "NAMESPACE_TAKEN", "{}", r.text());
    // Discover: by a field, or everything.
    let r = http
        .post(
            "/api/edge-gateways/discover",
            &json!({"namespace": "alice-ns"}),
        )
        .await;
    let names = |v: Value| -> Vec<String> {
        v["edgeGateways"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(r.json()), ["alice"]);
    assert_eq!(
        names(
            http.post("/api/edge-gateways/discover", &json!({}))
                .await
                .json()
        ),
        ["bob", "alice"]
    );
    // Delete: 204, then not found.
    assert_eq!(
        http.delete(&format!("/api/edge-gateways/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = http.get(&format!("/api/edge-gateways/{id}")).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::NOT_FOUND, "EDGE_GATEWAY_NOT_FOUND".into())
    );
    let r = http.delete(&format!("/api/edge-gateways/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// An original Open API client against a cloud engine and one edge engine: the gateway
/// registered at the cloud, the data sources registered in its scope, the instance
/// created, started, discovered, stopped and deleted through the cloud, every call
/// forwarded to the edge with the gateway's credential (the edge refuses calls without
/// it); a data source unregistered and registered again while the instance reading it
/// runs; a gateway that is down contributing nothing to discovery and failing a forwarded
/// call with 500 `FAILED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_open_api_client_drives_an_edge_through_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let token = "edge-1-token-for-the-cloud";
    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "[fleet]\nrole = \"edge\"\n[[tokens]]\nname = \"cloud\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            dashboard_api::config::sha256_hex(token)
        ),
    )
    .unwrap();
    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        "[fleet]\nrole = \"cloud\"\npoll_interval = \"200ms\"\n",
    )
    .unwrap();
    let edge = Process::start_with(
        &dir.path().join("edge"),
        free_port(),
        dir.path(),
        Some(&edge_config),
    )
    .await;
    let cloud = Process::start_with_env(
        &dir.path().join("cloud"),
        free_port(),
        dir.path(),
        Some(&cloud_config),
        &[("DDA_SECRET_EDGE_1", token)],
    )
    .await;
    let on_edge = edge.http.with_token(token);
    let http = cloud.http.clone();
    let code = |r: &common::Reply| r.json()["error"].as_str().unwrap_or_default().to_owned();
    // The edge's definitions (its engine's catalogue of interfaces, kinds and processors).
    let (models, am) = bob();
    let dsms: Vec<Value> = models
        .iter()
        .filter(|(route, _)| *route == "data-source-manifests")
        .map(|(_, d)| d.clone())
        .collect();
    for (route, doc) in models.iter().filter(|(r, _)| *r != "data-source-manifests") {
        let r = on_edge.post(&format!("/api/v1/{route}"), doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
    }
    assert_eq!(
        edge.http.get("/api/v1/analytics-instances").await.status,
        StatusCode::UNAUTHORIZED,
        "the edge takes calls only with its token"
    );

    // The gateway, registered at the cloud with its credential as a secret reference.
    let edge_api = format!("{}/api", edge.http.base);
    let r = http
        .post(
            "/api/edge-gateways",
            &json!({"name": "edge-1", "namespace": "line-1", "macAddress": "00:0a:95:9d:68:16",
                "dataRouterAndPreprocessorBaseURL": edge_api, "edgeAnalyticsEngineBaseURL": edge_api,
                "credential": "${env:DDA_SECRET_EDGE_1}"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let g = r.json()["id"].as_str().unwrap().to_owned();
    assert!(!r.text().contains(token), "{}", r.text());
    let scoped = |path: &str| format!("{path}?edgeGatewayReferenceID={g}");

    // Data sources registered in the gateway's scope: on the edge, each given its UUID.
    let mut ids = Vec::new();
    for mut dsm in dsms.clone() {
        dsm.as_object_mut().unwrap().remove("id");
        let r = http.post(&scoped("/api/data-sources"), &dsm).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["edgeGatewayReferenceID"], g.as_str());
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let (temperature, fever) = (ids[0].clone(), ids[1].clone());
    let r = http.post(&scoped("/api/data-sources"), &dsms[0]).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "NAME_TAKEN".into()),
        "{}",
        r.text()
    );
    // Discovery on the cloud reaches the gateway; each data source is tagged with it.
    let found = http
        .post("/api/data-sources/discover", &json!({}))
        .await
        .json();
    let listed: Vec<(String, String)> = found["dataSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["edgeGatewayReferenceID"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(temperature.clone(), g.clone()), (fever.clone(), g.clone())]
    );

    // The instance, created in the gateway's scope; its name is unique there.
    let mut am = am;
    am["edgeGatewayReferenceID"] = json!(g);
    let apm = &mut am["analyticsProcessors"]["apm"][0];
    apm["dataSources"]["dataSource"][0]["dataSourceManifestReferenceID"] = json!(temperature);
    apm["dataSink"]["dataSourceManifestReferenceID"] = json!(fever);
    let r = http.post(&scoped("/api/analytics-instances"), &am).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["edgeGatewayReferenceID"], g.as_str());
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/analytics-instances/{id}?edgeGatewayReferenceID={g}")
    );
    let r = http.post(&scoped("/api/analytics-instances"), &am).await;
    assert_eq!(code(&r), "NAME_TAKEN", "{}", r.text());
    let base = format!("/api/analytics-instances/{id}");
    let r = http.post_empty(&scoped(&format!("{base}/start"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        http.get(&scoped(&format!("{base}/state"))).await.json(),
        json!({"id": id, "state": "RUNNING", "edgeGatewayReferenceID": g})
    );
    assert_eq!(
        on_edge
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .json()["state"],
        "RUNNING",
        "it runs on the edge"
    );
    let found = http
        .post(
            "/api/analytics-instances/discover",
            &json!({"name": "Bob fever detector"}),
        )
        .await
        .json();
    let found = found["analyticsInstances"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&found[0]["id"], &found[0]["edgeGatewayReferenceID"]),
        (&json!(id), &json!(g))
    );
    // The cloud watches the gateway: online, its engine's version and catalogues, and the
    // instance running there.
    eventually(
        10,
        "the gateway's status showing the instance running",
        || async {
            let st = http
                .get(&format!("/api/v1/edge-gateways/{g}/status"))
                .await
                .json();
            st["status"] == "online"
                && st["instances"].as_array().is_some_and(|i| {
                    i.iter()
                        .any(|i| i["id"] == id.as_str() && i["state"] == "RUNNING")
                })
        },
    )
    .await;
    let st = http
        .get(&format!("/api/v1/edge-gateways/{g}/status"))
        .await
        .json();
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["role"], "edge");
    assert!(st["lastSeen"].is_string(), "{st}");
    assert!(
        st["processors"]
            .as_array()
            .unwrap()
            .contains(&json!("filter"))
            && st["connectors"]
                .as_array()
                .unwrap()
                .contains(&json!("MQTT")),
        "{st}"
    );
    // The simulated temperatures reach the gateway; the cloud shows the last ones.
    eventually(20, "data from the gateway's data source", || async {
        let r = http
            .get(&scoped(&format!("/api/data-sources/{temperature}/data")))
            .await
            .json();
        r["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let data = http
        .get(&scoped(&format!("/api/data-sources/{temperature}/data")))
        .await
        .json();
    let first = &data["data"][0];
    assert!(first["value"].is_number(), "{data}");
    assert!(
        first["timestamp"]
            .as_str()
            .is_some_and(|t| t.len() >= 16 && t.contains('-') && t.contains(':')),
        "{data}"
    );
    assert_eq!(
        http.get("/api/data-sources/nothing/data").await.json(),
        json!({"data": []})
    );

    // The device leaves: the instance keeps running and waits for it; it comes back under
    // its id when registered again by name.
    let r = http
        .delete(&scoped(&format!("/api/data-sources/{temperature}")))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let on = on_edge
        .get(&format!("/api/v1/data-sources/{temperature}"))
        .await
        .json();
    assert_eq!(
        (&on["registered"], &on["waiting"]),
        (&json!(false), &json!([id]))
    );
    let found = http
        .post("/api/data-sources/discover", &json!({}))
        .await
        .json();
    assert_eq!(found["dataSources"].as_array().unwrap().len(), 1, "{found}");
    let r = http.post(&scoped("/api/data-sources"), &dsms[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["id"], temperature.as_str());
    assert_eq!(
        on_edge
            .get(&format!("/api/v1/data-sources/{temperature}"))
            .await
            .json()["registered"],
        true
    );
    assert_eq!(
        on_edge
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .json()["state"],
        "RUNNING"
    );

    // A gateway that is down: discovery goes on without it; a call to it fails.
    let r = http
        .post(
            "/api/edge-gateways",
            &json!({"name": "edge-2", "namespace": "line-2", "macAddress": "00:0a:95:9d:68:17",
                "dataRouterAndPreprocessorBaseURL": format!("http://127.0.0.1:{}/api", free_port()),
                "edgeAnalyticsEngineBaseURL": format!("http://127.0.0.1:{}/api", free_port())}),
        )
        .await;
    let down = r.json()["id"].as_str().unwrap().to_owned();
    eventually(10, "the gateway that is down shown offline", || async {
        let st = http
            .get(&format!("/api/v1/edge-gateways/{down}/status"))
            .await
            .json();
        st["status"] == "offline" && st["lastError"].is_string() && st.get("lastSeen").is_none()
    })
    .await;
    let found = http
        .post("/api/analytics-instances/discover", &json!({}))
        .await
        .json();
    assert_eq!(
        found["analyticsInstances"].as_array().unwrap().len(),
        1,
        "{found}"
    );
    let r = http
        .get(&format!("{base}/state?edgeGatewayReferenceID={down}"))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::INTERNAL_SERVER_ERROR, "FAILED".into()),
        "{}",
        r.text()
    );
    let r = http
        .get(&format!(
            "{base}/state?edgeGatewayReferenceID=no-such-gateway"
        ))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "EDGE_GATEWAY_NOT_FOUND".into())
    );

    // Stop and delete through the cloud; the edge's refusals come back with their codes.
    let r = http.post_empty(&scoped(&format!("{base}/stop"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = http.post_empty(&scoped(&format!("{base}/stop"))).await;
    assert_eq!(
        (r.status, code(&r)),
        (
            StatusCode::BAD_REQUEST,
            "ANALYTICS_INSTANCE_NOT_RUNNING".into()
        )
    );
    assert_eq!(
        http.delete(&scoped(&base)).await.status,
        StatusCode::NO_CONTENT
    );
    let r = http.get(&scoped(&base)).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::NOT_FOUND, "ANALYTICS_INSTANCE_NOT_FOUND".into())
    );
}

/// An admin token of the plant's own on the fleet's edge.
const PLANT_TOKEN: &str = "the-plant-s-own-admin-token";

/// The edge and the cloud of a fleet, each in a temporary directory: the edge takes calls
/// only with `token`; the cloud polls every 200 ms and knows the token as
/// `DDA_SECRET_EDGE_1`.
struct Fleet {
    dir: tempfile::TempDir,
    /// None while it is down.
    edge: Option<Process>,
    cloud: Process,
    edge_port: u16,
    token: &'static str,
}

impl Fleet {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = "edge-1-token-for-the-cloud";
        std::fs::write(
            dir.path().join("edge.toml"),
            format!(
                "[fleet]\nrole = \"edge\"\ncloud_token = \"cloud\"\n\
                 [[tokens]]\nname = \"cloud\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
                 [[tokens]]\nname = \"plant\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
                dashboard_api::config::sha256_hex(token),
                dashboard_api::config::sha256_hex(PLANT_TOKEN)
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("cloud.toml"),
            "[fleet]\nrole = \"cloud\"\npoll_interval = \"200ms\"\n",
        )
        .unwrap();
        let edge_port = free_port();
        let edge = Self::start_edge(dir.path(), edge_port).await;
        let cloud = Process::start_with_env(
            &dir.path().join("cloud"),
            free_port(),
            dir.path(),
            Some(&dir.path().join("cloud.toml")),
            &[("DDA_SECRET_EDGE_1", token)],
        )
        .await;
        Self {
            dir,
            edge: Some(edge),
            cloud,
            edge_port,
            token,
        }
    }

    async fn start_edge(dir: &std::path::Path, port: u16) -> Process {
        Process::start_with(&dir.join("edge"), port, dir, Some(&dir.join("edge.toml"))).await
    }

    fn on_edge(&self) -> Http {
        self.edge
            .as_ref()
            .expect("the edge is up")
            .http
            .with_token(self.token)
    }

    /// The state of instance `id` on the edge, or the status code when it has none.
    async fn edge_state(&self, id: &str) -> String {
        let r = self
            .on_edge()
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await;
        if r.status == StatusCode::OK {
            r.json()["state"].as_str().unwrap_or_default().to_owned()
        } else {
            r.status.as_u16().to_string()
        }
    }

    /// The phase of instance `id`'s deployment, as the cloud shows it.
    async fn phase(&self, id: &str) -> String {
        let v = self
            .cloud
            .http
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .json();
        v["deployment"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Deployment with reconciliation: every model and the analytics manifest created only
/// through the cloud's API; the manifest naming the gateway runs on the edge, not in the
/// cloud, with every model it needs; its lifecycle and update driven from the cloud;
/// drift on the edge (stopped, deleted behind the cloud's back) corrected at the next
/// poll; a manifest deployed while its gateway is down converging once it is back; one
/// deleted from the cloud removed from the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_deploys_to_its_gateway_and_keeps_it_as_desired() {
    let fleet = Fleet::start().await;
    let http = fleet.cloud.http.clone();
    let (models, am) = bob();
    for (route, doc) in &models {
        let r = http.post(&format!("/api/v1/{route}"), doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
    }
    let r = http
        .post(
            "/api/v1/edge-gateways",
            &json!({"id": "edge-1", "name": "Line 1", "namespace": "line-1",
                "edgeAnalyticsEngineBaseURL": format!("http://127.0.0.1:{}/api", fleet.edge_port),
                "labels": ["line=1"], "credential": "${env:DDA_SECRET_EDGE_1}"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut am = am;
    am["edgeGatewayReferenceID"] = json!("edge-1");
    let id = am["id"].as_str().unwrap().to_owned();
    let r = http.post("/api/v1/analytics-instances", &am).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["deployment"]["gateway"], "edge-1");

    // Applied: the edge has the instance, stopped, and the models it needs.
    eventually(10, "the deployment applied", || async {
        fleet.phase(&id).await == "applied"
    })
    .await;
    assert_eq!(fleet.edge_state(&id).await, "STOPPED");
    let on_edge = fleet.on_edge();
    for (route, doc) in &models {
        let r = on_edge
            .get(&format!("/api/v1/{route}/{}", doc["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{route} on the edge: {}",
            r.text()
        );
    }
    // Deployments come from the cloud only: the plant's own admin token reads, but does
    // not change models or instances on the edge.
    let plant = fleet.edge.as_ref().unwrap().http.with_token(PLANT_TOKEN);
    assert_eq!(
        plant
            .get(&format!("/api/v1/analytics-instances/{id}"))
            .await
            .status,
        StatusCode::OK
    );
    for r in [
        plant
            .post("/api/v1/data-kinds", &json!({"id": "dk-local"}))
            .await,
        plant
            .delete(&format!("/api/v1/analytics-instances/{id}"))
            .await,
    ] {
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (StatusCode::FORBIDDEN, json!("CLOUD_ONLY")),
            "{}",
            r.text()
        );
    }
    // The edge learnt from its cloud's calls which gateway it is: what its webhook sinks
    // send to the cloud names it.
    assert_eq!(
        on_edge.get("/api/v1/engine").await.json()["gateway"],
        "edge-1"
    );
    let cloud_health = http.get("/health").await.json();
    assert!(
        cloud_health["instances"].as_object().unwrap().is_empty(),
        "nothing runs in the cloud: {cloud_health}"
    );

    // Started from the cloud: it runs on the edge.
    let r = http
        .post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(10, "the deployment running", || async {
        fleet.phase(&id).await == "running"
    })
    .await;
    assert_eq!(fleet.edge_state(&id).await, "RUNNING");
    let r = http
        .post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "started twice: {}",
        r.text()
    );

    // Drift: stopped on the edge behind the cloud's back, then deleted there: corrected.
    let r = on_edge
        .post_empty(&format!("/api/v1/analytics-instances/{id}/stop"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(10, "a stopped instance started again", || async {
        fleet.edge_state(&id).await == "RUNNING"
    })
    .await;
    on_edge
        .post_empty(&format!("/api/v1/analytics-instances/{id}/stop"))
        .await;
    let r = on_edge
        .delete(&format!("/api/v1/analytics-instances/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    eventually(10, "a deleted instance made again", || async {
        fleet.edge_state(&id).await == "RUNNING"
    })
    .await;

    // Updated from the cloud: stopped, the new specification on the edge, started again.
    let r = http
        .post_empty(&format!("/api/v1/analytics-instances/{id}/stop"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut changed = am.clone();
    changed["analyticsProcessors"]["apm"][0]["parameters"]["parameter"][1]["value"] = json!(37.5);
    let r = http
        .put(
            &format!("/api/v1/analytics-instances/{id}/specification"),
            &changed,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    http.post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
        .await;
    eventually(10, "the new specification running on the edge", || async {
        let spec = on_edge
            .get(&format!("/api/v1/analytics-instances/{id}/specification"))
            .await
            .json();
        spec["analyticsProcessors"]["apm"][0]["parameters"]["parameter"][1]["value"] == json!(37.5)
            && fleet.edge_state(&id).await == "RUNNING"
    })
    .await;

    // The gateway down at deploy time: pending, then converging once it is back.
    let mut fleet = fleet;
    fleet.edge.take().unwrap().terminate();
    let mut second = am.clone();
    second["id"] = json!("am-second");
    second["name"] = json!("Bob fever detector, again");
    let r = http.post("/api/v1/analytics-instances", &second).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    http.post_empty("/api/v1/analytics-instances/am-second/start")
        .await;
    eventually(
        10,
        "the deployment pending while the gateway is away",
        || async {
            let v = http
                .get("/api/v1/analytics-instances/am-second")
                .await
                .json();
            v["deployment"]["phase"] == "pending"
                && v["deployment"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("offline"))
        },
    )
    .await;
    let status = http.get("/api/v1/edge-gateways/edge-1/status").await.json();
    assert_eq!(status["status"], "offline", "{status}");
    fleet.edge = Some(Fleet::start_edge(fleet.dir.path(), fleet.edge_port).await);
    eventually(10, "the deployment made while away running", || async {
        fleet.phase("am-second").await == "running"
    })
    .await;
    assert_eq!(fleet.edge_state("am-second").await, "RUNNING");
    assert_eq!(
        fleet.edge_state(&id).await,
        "RUNNING",
        "the first one ran on"
    );

    // Deleted from the cloud: stopped and deleted on the edge.
    http.post_empty(&format!("/api/v1/analytics-instances/{id}/stop"))
        .await;
    let r = http
        .delete(&format!("/api/v1/analytics-instances/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    eventually(10, "the instance removed from the edge", || async {
        fleet.edge_state(&id).await == "404"
    })
    .await;
}

/// A global analytics manifest over the uplink from the edges (the cloud's HTTP ingest):
/// event time is kept per sending gateway, so a window closes only when every expected
/// gateway has passed it; the slower gateway's results, sent after the faster one's are
/// hours ahead, are in every window, and none is late; the last window closes once each
/// gateway has passed its watermark on. Each result is stamped with its gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_window_waits_for_the_slowest_gateway_and_loses_none_of_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(&dir.path().join("data"), free_port(), dir.path()).await;
    let http = server.http.clone();
    for folder in [
        "data-interfaces",
        "data-kinds",
        "data-source-definitions",
        "analytics-processor-definitions",
    ] {
        for doc in example(folder) {
            let r = http.post(&format!("/api/v1/{folder}"), &doc).await;
            assert_eq!(r.status, StatusCode::CREATED, "{folder}: {}", r.text());
        }
    }
    let uplink = free_port();
    let param = |k: &str, v: Value| json!({"key": k, "value": v});
    for (route, doc) in [
        (
            "data-interfaces",
            json!({"id": "di-http", "communicationProtocol": "HTTP"}),
        ),
        (
            "data-source-definitions",
            json!({"id": "dsd-statistics-over-http", "dataInterfaceReferenceID": "di-http",
                "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power"]}}),
        ),
        (
            "data-source-manifests",
            json!({"id": "dsm-uplink", "dataSourceDefinitionReferenceID": "dsd-statistics-over-http",
                "dataSourceDefinitionInterfaceParameters": {"parameter": [
                    param("host", json!("127.0.0.1")), param("port", json!(uplink)),
                    param("path", json!("/ingest/uplink")),
                    param("senders", json!(["edge-a", "edge-b"]))]}}),
        ),
        (
            "data-source-manifests",
            json!({"id": "dsm-hourly", "dataSourceDefinitionReferenceID": "dsd-statistics-on-bus"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "dsm-results", "dataSourceDefinitionReferenceID": "dsd-statistics-in-sqlite",
                "dataSourceDefinitionInterfaceParameters": {"parameter": [
                    param("path", json!("dda-output/global.sqlite")), param("table", json!("global"))]}}),
        ),
        (
            "analytics-instances",
            json!({"id": "am-global", "name": "Hourly power across the gateways",
                "analyticsProcessors": {"apm": [
                    {"id": "apm-hourly", "analyticsProcessorDefinitionReferenceID": "apd-average",
                     "parameters": {"parameter": [param("window", json!("PT1H")),
                        param("observationName", json!("TotalRealPower")), param("groupBy", json!("name"))]},
                     "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-uplink"}]},
                     "dataSink": {"dataSourceManifestReferenceID": "dsm-hourly"}},
                    {"id": "apm-store", "analyticsProcessorDefinitionReferenceID": "apd-store",
                     "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-hourly"}]},
                     "dataSink": {"dataSourceManifestReferenceID": "dsm-results"}}]}}),
        ),
    ] {
        let r = http.post(&format!("/api/v1/{route}"), &doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
    }
    let r = http
        .post_empty("/api/v1/analytics-instances/am-global/start")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Hourly results of two gateways; edge-b's come when edge-a is three hours ahead.
    let start_ms: i64 = 1_527_120_000_000;
    let ingest = Http::new(&format!("http://127.0.0.1:{uplink}"));
    let send = |gateway: &'static str, base: i64| {
        let ingest = ingest.clone();
        async move {
            for h in 0..4i64 {
                let t = start_ms + h * 3_600_000 + 60_000;
                let set = json!({"id": format!("{gateway}-{h}"), "dataSourceManifestReferenceID": "dsm-uplink",
                    "timestamp": t, "observation": [{"name": "TotalRealPower", "timestamp": t, "value": base + 10 * (h + 1)}]});
                let r = ingest
                    .request(
                        hyper::Method::POST,
                        "/ingest/uplink",
                        Some(("application/json", set.to_string().into_bytes())),
                        &[("x-dda-gateway", gateway)],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
            }
        }
    };
    eventually(10, "the uplink listening", || async {
        std::net::TcpStream::connect(("127.0.0.1", uplink)).is_ok()
    })
    .await;
    send("edge-a", 0).await;
    // What a gateway sends again (after a crash, say) is taken once.
    send("edge-a", 0).await;
    send("edge-b", 100).await;
    let db = server.data_dir.join("dda-output/global.sqlite");
    let rows = || -> Vec<(i64, f64, u64)> {
        let Ok(c) = rusqlite::Connection::open(&db) else {
            return Vec::new();
        };
        let Ok(mut stmt) =
            c.prepare("SELECT timestamp_ms, value, attributes FROM global ORDER BY timestamp_ms")
        else {
            return Vec::new();
        };
        stmt.query_map([], |r| {
            let a: String = r.get(2)?;
            let count = serde_json::from_str::<Value>(&a).unwrap()["count"]
                .as_u64()
                .unwrap();
            Ok((r.get(0)?, r.get(1)?, count))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    eventually(10, "three closed hours stored", || async {
        rows().len() >= 3
    })
    .await;
    // Each closed hour holds both gateways' results (the fourth is open: edge-b's event
    // time has not passed it).
    let hour = |h: i64| start_ms + h * 3_600_000;
    assert_eq!(
        rows(),
        [(hour(1), 60.0, 2), (hour(2), 70.0, 2), (hour(3), 80.0, 2)]
    );
    // Each gateway passes its event time on (an edge's uplink does it after its last
    // results): the last hour closes.
    for gateway in ["edge-a", "edge-b"] {
        let end = i64::MAX.to_string();
        let r = ingest
            .request(
                hyper::Method::POST,
                "/ingest/uplink",
                None,
                &[("x-dda-gateway", gateway), ("x-dda-watermark", &end)],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    }
    eventually(10, "the last hour stored", || async { rows().len() >= 4 }).await;
    assert_eq!(rows()[3], (hour(4), 90.0, 2));
    let dead =
        std::fs::read_to_string(server.data_dir.join("dead-letters.jsonl")).unwrap_or_default();
    assert!(dead.trim().is_empty(), "nothing late: {dead}");
    // Stamped with their gateway on the way in.
    let live = http
        .get("/api/v1/data-source-manifests/dsm-uplink/data?last=8")
        .await
        .json();
    let gateways: std::collections::BTreeSet<String> = live["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|set| set["observation"].as_array().unwrap().clone())
        .map(|o| o["gateway"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        gateways.into_iter().collect::<Vec<_>>(),
        ["edge-a", "edge-b"],
        "{live}"
    );
}
