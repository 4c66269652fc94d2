//! `dda serve` against what a web page can make a browser send (forged `Origin`, `Sec-Fetch-Site`
//! and rebound `Host` headers), with and without tokens; error bodies of the HTTP layer's own
//! refusals; ids.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use common::{Http, Process, Reply, example, free_port};
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data_kind(id: &str) -> Value {
    let mut dk = example("data-kinds").remove(0);
    dk["id"] = Value::String(id.to_owned());
    dk
}

async fn post_with(http: &Http, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    http.request(
        Method::POST,
        path,
        Some(("application/json", serde_json::to_vec(body).unwrap())),
        headers,
    )
    .await
}

fn assert_refused(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["details"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_a_web_page_can_neither_drive_nor_read_a_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Process::start(&dir.path().join("data"), port, dir.path()).await;
    let http = &server.http;
    let evil = [("origin", "http://evil.example")];

    // A form-like cross-origin POST: no usable content type, an attacker's Origin.
    let r = http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some(("", serde_json::to_vec(&data_kind("dk-csrf")).unwrap())),
            &evil,
        )
        .await;
    assert_refused(&r, StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("allowed_origins")
    );
    let r = post_with(http, "/api/v1/data-kinds", &data_kind("dk-csrf"), &evil).await;
    assert_refused(&r, StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    assert_eq!(
        http.get("/api/v1/data-kinds/dk-csrf").await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    // Bodiless lifecycle calls, a delete, a sandboxed frame, and a browser that says only
    // Sec-Fetch-Site.
    for (method, path, headers) in [
        (
            Method::POST,
            "/api/v1/analytics-instances/am-ib1-edge/start",
            &evil[..],
        ),
        (Method::DELETE, "/api/v1/data-kinds/dk-x", &evil[..]),
        (
            Method::POST,
            "/api/v1/data-kinds",
            &[("origin", "null")][..],
        ),
        (
            Method::POST,
            "/api/v1/data-kinds",
            &[("sec-fetch-site", "cross-site")][..],
        ),
        // Another port of the same machine is another origin.
        (
            Method::POST,
            "/api/v1/data-kinds",
            &[("origin", "http://127.0.0.1:1")][..],
        ),
    ] {
        let r = http.request(method, path, None, headers).await;
        assert_refused(&r, StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    }

    // DNS rebinding: a name of the attacker's that now resolves to 127.0.0.1. Reads are
    // refused too, or the page could read the answers.
    let rebound = format!("rebind.evil.example:{port}");
    for path in ["/api/v1/data-kinds", "/metrics", "/api/v1/openapi.json"] {
        let r = http
            .request(Method::GET, path, None, &[("host", &rebound)])
            .await;
        assert_refused(&r, StatusCode::FORBIDDEN, "HOST_NOT_ALLOWED");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("allowed_hosts")
        );
    }

    // What is not a forgery still works: programs send no Origin; the server's own pages
    // send its origin; IP addresses and localhost are the server's names.
    let r = post_with(http, "/api/v1/data-kinds", &data_kind("dk-program"), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let own = format!("http://127.0.0.1:{port}");
    let r = post_with(
        http,
        "/api/v1/data-kinds",
        &data_kind("dk-own-page"),
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let localhost = format!("localhost:{port}");
    let r = http
        .request(
            Method::GET,
            "/api/v1/data-kinds/dk-program",
            None,
            &[("host", &localhost)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A cross-origin read is answered (the browser keeps it from the page: no CORS).
    let r = http
        .request(Method::GET, "/api/v1/data-kinds/dk-program", None, &evil)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_a_forged_origin_is_refused_even_with_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-token-for-the-test";
    let config = dir.path().join("dda.toml");
    std::fs::write(
        &config,
        format!(
            "allowed_hosts = [\"edge-7.plant.example\"]\n\
             allowed_origins = [\"https://dashboard.plant.example\"]\n\
             [[tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            dashboard_api::config::sha256_hex(admin)
        ),
    )
    .unwrap();
    let port = free_port();
    let server =
        Process::start_with(&dir.path().join("data"), port, dir.path(), Some(&config)).await;
    let http = server.http.with_token(admin);

    let r = post_with(
        &http,
        "/api/v1/data-kinds",
        &data_kind("dk-forged"),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_refused(&r, StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    let r = http
        .request(
            Method::GET,
            "/api/v1/data-kinds",
            None,
            &[("host", "evil.example")],
        )
        .await;
    assert_refused(&r, StatusCode::FORBIDDEN, "HOST_NOT_ALLOWED");

    // The configured web application and host name are let through, with the token.
    let r = post_with(
        &http,
        "/api/v1/data-kinds",
        &data_kind("dk-dashboard"),
        &[
            ("origin", "https://dashboard.plant.example"),
            ("host", "edge-7.plant.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // ... and not without it.
    let r = server
        .http
        .request(
            Method::POST,
            "/api/v1/data-kinds",
            Some((
                "application/json",
                serde_json::to_vec(&data_kind("dk-no-token")).unwrap(),
            )),
            &[("origin", "https://dashboard.plant.example")],
        )
        .await;
    assert_refused(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // The scheme of `Authorization` is case-insensitive.
    let bearer = format!("bearer {admin}");
    let r = server
        .http
        .request(
            Method::GET,
            "/api/v1/data-kinds/dk-dashboard",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_layers_own_refusals_have_the_documented_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Process::start(&dir.path().join("data"), port, dir.path()).await;
    let http = &server.http;

    // A body over the limit: refused on its Content-Length, before it is read (so over a
    // raw connection: a client still sending would see the connection close).
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/data-kinds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        dashboard_api::error::MAX_BODY_BYTES + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The answer: its head, then as many bytes as its Content-Length says.
    let mut answer = Vec::new();
    let complete = |a: &[u8]| {
        let text = String::from_utf8_lossy(a).to_ascii_lowercase();
        text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .is_some_and(|n| body.len() >= n)
        })
    };
    while !complete(&answer) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the server answers within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the answer was complete: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("2097152"),
        "{body}"
    );
    // A path segment that is not percent-encoded UTF-8.
    let r = http.get("/api/v1/data-kinds/%FF%FE").await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(
        r.json()["details"],
        Value::Array(Vec::new()),
        "{}",
        r.text()
    );
    assert!(r.json()["code"].is_string());
    // A method the route lacks keeps its Allow header.
    let r = http.delete("/health").await;
    assert_refused(&r, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    assert!(r.header("allow").unwrap().contains("GET"));
    assert!(r.json()["message"].as_str().unwrap().contains("Allow"));
    // No route.
    assert_refused(
        &http.get("/api/v1/no-such-thing").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_kept_to_a_safe_character_set() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Process::start(&dir.path().join("data"), port, dir.path()).await;
    let http = &server.http;
    for id in [
        "../etc",
        "a/b",
        "a\\b",
        "nul\u{0}id",
        "with space",
        "..",
        "",
    ] {
        let r = http.post("/api/v1/data-kinds", &data_kind(id)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id:?}: {}",
            r.text()
        );
        let body = r.json();
        let detail = body["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["message"].as_str().unwrap().contains("id"))
            .unwrap_or_else(|| panic!("{id:?}: {body}"))
            .clone();
        assert_eq!(detail["pointer"], "/id", "{id:?}: {body}");
    }
    for id in [
        "dk-1",
        "urn:plant:dk.1",
        "14358864-c768-4bc2-bdb3-19aa88d482e1",
        "a_b~c",
    ] {
        let r = http.post("/api/v1/data-kinds", &data_kind(id)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{id:?}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_answers_at_once_even_before_its_first_observation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Process::start(&dir.path().join("data"), port, dir.path()).await;
    common::load_models(&server.http, &dir.path().join("data")).await;
    // Nothing runs: no observation will come.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /api/v1/data-source-manifests/dsm-ib1-meter/stream HTTP/1.1\r\n\
              Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !String::from_utf8_lossy(&head).contains("\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut chunk))
            .await
            .expect("the response head comes within 2 s, before any event")
            .unwrap();
        assert!(n > 0, "closed");
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
}

/// Creates, for a protocol, a data interface, a definition, a DSM with `parameters` and an
/// instance writing box 1's readings to it; returns the DSM's creation reply.
async fn sink_of(http: &Http, protocol: &str, id: &str, parameters: Value) -> Reply {
    for (route, doc) in [
        (
            "data-interfaces",
            serde_json::json!({"id": format!("di-{id}"), "communicationProtocol": protocol}),
        ),
        (
            "data-source-definitions",
            serde_json::json!({"id": format!("dsd-{id}"), "dataInterfaceReferenceID": format!("di-{id}"),
                "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power"]}}),
        ),
    ] {
        let r = http.post(&format!("/api/v1/{route}"), &doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
    }
    http.post(
        "/api/v1/data-source-manifests",
        &serde_json::json!({"id": id, "dataSourceDefinitionReferenceID": format!("dsd-{id}"),
            "dataSourceDefinitionInterfaceParameters": {"parameter": parameters}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_secret_of_every_connector_is_masked_in_every_response() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server = Process::start(&data, port, dir.path()).await;
    let http = server.http.clone();
    common::load_models(&http, &data).await;
    let connectors = http.get("/api/v1/connectors").await.json();
    let mut secrets = Vec::new();
    for c in connectors["connectors"].as_array().unwrap() {
        let protocol = c["protocol"].as_str().unwrap();
        let params = c["parameters"]["parameter"].as_array().unwrap();
        for p in params.iter().filter(|p| p["secret"] == true) {
            let name = p["name"].as_str().unwrap();
            let secret = format!("pw-{}-{name}-Zq8", protocol.to_lowercase());
            // A connection string holds the password among what may be shown.
            let value = match (protocol, name) {
                ("PostgreSQL", "uri") => format!("postgresql://dda:{secret}@127.0.0.1:1/plant"),
                ("MongoDB", "uri") => format!("mongodb://dda:{secret}@127.0.0.1:1/plant"),
                ("HTTP", "url") => format!("http://127.0.0.1:1/hook?key={secret}"),
                _ => secret.clone(),
            };
            let mut given = vec![serde_json::json!({"key": name, "value": value})];
            for required in params.iter().filter(|r| r["required"] == true) {
                given.push(serde_json::json!({"key": required["name"], "value": "plant/x"}));
            }
            if protocol != "PostgreSQL" && protocol != "MongoDB" || name != "uri" {
                given.push(serde_json::json!({"key": "port", "value": 1}));
            }
            let id = format!("dsm-{}-{name}", protocol.to_lowercase());
            let r = sink_of(&http, protocol, &id, Value::Array(given)).await;
            assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.text());
            assert!(
                !r.text().contains(&secret),
                "the creation reply: {}",
                r.text()
            );
            let am = serde_json::json!({"id": format!("am-{id}"), "analyticsProcessors": {"apm": [
                {"id": "apm-store", "analyticsProcessorDefinitionReferenceID": "apd-store",
                 "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-ib1-meter"}]},
                 "dataSink": {"dataSourceManifestReferenceID": id}}]}});
            let r = http.post("/api/v1/analytics-instances", &am).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            let r = http
                .post_empty(&format!("/api/v1/analytics-instances/am-{id}/start"))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            secrets.push((protocol.to_owned(), name.to_owned(), id, secret));
        }
    }
    let protocols: std::collections::BTreeSet<&str> =
        secrets.iter().map(|(p, ..)| p.as_str()).collect();
    for expected in ["HTTP", "MQTT", "MongoDB", "PostgreSQL"] {
        assert!(
            protocols.contains(expected),
            "{expected} has secrets: {protocols:?}"
        );
    }
    // Let the sinks try, fail and report.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let xml = [("accept", "application/xml")];
    let mut shown = Vec::new();
    for (_, _, id, _) in &secrets {
        for path in [
            format!("/api/v1/data-source-manifests/{id}"),
            format!("/api/v1/analytics-instances/am-{id}"),
            format!("/api/v1/analytics-instances/am-{id}/specification"),
            format!("/api/v1/analytics-instances/am-{id}/state"),
            format!("/api/v1/analytics-instances/am-{id}/metrics"),
            format!("/api/analytics-instances/am-{id}"),
        ] {
            shown.push((path.clone(), http.get(&path).await.text()));
            let r = http.request(Method::GET, &path, None, &xml).await;
            shown.push((format!("{path} (XML)"), r.text()));
        }
    }
    for path in [
        "/api/v1/data-source-manifests",
        "/api/v1/analytics-instances",
        "/metrics",
        "/api/v1/data-source-manifests/dda-dead-letters/data",
    ] {
        shown.push((path.to_owned(), http.get(path).await.text()));
        let r = http.request(Method::GET, path, None, &xml).await;
        shown.push((format!("{path} (XML)"), r.text()));
    }
    // The dead letters' live stream, for a moment.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /api/v1/data-source-manifests/dda-dead-letters/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut chunk = vec![0; 1 << 16];
    let mut sse = String::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        sse.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    shown.push(("the dead letters' stream".to_owned(), sse));
    for (protocol, name, _, secret) in &secrets {
        for (path, text) in &shown {
            assert!(
                !text.contains(secret.as_str()),
                "{protocol} `{name}` shown by {path}: {text}"
            );
        }
    }
    // A connection string's sink is named by where it points, not by the defaults.
    let status = http
        .get("/api/v1/analytics-instances/am-dsm-postgresql-uri")
        .await
        .json();
    let error = status["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "sink")
        .and_then(|c| c["error"].as_str())
        .unwrap_or_default();
    assert!(error.contains("127.0.0.1:1/plant"), "{status}");
    let masked = http
        .get("/api/v1/data-source-manifests/dsm-postgresql-uri")
        .await
        .text();
    assert!(masked.contains("********"), "{masked}");
}

/// The `code` of each problem of a 422 reply.
fn problems(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_sent_to_a_server_reach_only_its_data_directory_and_allowed_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let config = dir.path().join("dda.toml");
    std::fs::write(
        &config,
        format!("allowed_paths = [{:?}]\n", exports.to_str().unwrap()),
    )
    .unwrap();
    let server = Process::start_with(&data, free_port(), dir.path(), Some(&config)).await;
    let http = server.http.clone();
    common::load_models(&http, &data).await;
    let roots = format!("{}, {}", data.display(), exports.display());
    // Files outside the data directory and the allowed folder: refused, naming both.
    for (n, (protocol, key, value)) in [
        ("File", "path", "/tmp/x.jsonl".to_owned()),
        ("SQLite", "path", "../../../tmp/x.sqlite".to_owned()),
        ("Simulator", "file", "/etc/shadow".to_owned()),
        (
            "SQLite",
            "path",
            format!("{}/../x.sqlite", exports.display()),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut params = vec![serde_json::json!({"key": key, "value": value})];
        if protocol == "Simulator" {
            params.push(serde_json::json!({"key": "mode", "value": "replay"}));
        }
        let r = sink_of(
            &http,
            protocol,
            &format!("dsm-out-{n}"),
            Value::Array(params),
        )
        .await;
        let found = problems(&r);
        assert!(
            found
                .iter()
                .any(|m| m.contains("path-not-allowed") && m.contains(&roots)),
            "{value}: {found:?}"
        );
    }
    // Inside them: accepted, a relative path taken inside the data directory.
    let r = sink_of(
        &http,
        "File",
        "dsm-in-data",
        serde_json::json!([{"key": "path", "value": "results/out.jsonl"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let allowed = exports.join("out.sqlite");
    let r = sink_of(
        &http,
        "SQLite",
        "dsm-in-exports",
        serde_json::json!([{"key": "path", "value": allowed.to_str().unwrap()}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let am = serde_json::json!({"id": "am-relative", "analyticsProcessors": {"apm": [
        {"id": "apm-store", "analyticsProcessorDefinitionReferenceID": "apd-store",
         "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-ib1-meter"}]},
         "dataSink": {"dataSourceManifestReferenceID": "dsm-in-data"}}]}});
    assert_eq!(
        http.post("/api/v1/analytics-instances", &am).await.status,
        StatusCode::CREATED
    );
    let r = http
        .post_empty("/api/v1/analytics-instances/am-relative/start")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let written = data.join("results/out.jsonl");
    common::eventually(20, "results in the data directory", || async {
        std::fs::metadata(&written).is_ok_and(|m| m.len() > 0)
    })
    .await;
    assert!(!dir.path().join("results").exists());

    // References: only in secret parameters, and only to allowed files and variables.
    for (n, (key, value, expected)) in [
        ("username", "${file:/etc/hostname}", "is not a secret"),
        ("topic", "${env:HOME}", "is not a secret"),
        (
            "password",
            "${file:/etc/shadow}",
            "outside the folders secrets may be read from",
        ),
        ("password", "${env:HOME}", "names starting with DDA_SECRET_"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut params = vec![serde_json::json!({"key": key, "value": value})];
        if key != "topic" {
            params.push(serde_json::json!({"key": "topic", "value": "plant/x"}));
        }
        let r = sink_of(&http, "MQTT", &format!("dsm-ref-{n}"), Value::Array(params)).await;
        let found = problems(&r);
        assert!(
            found
                .iter()
                .any(|m| m.contains("reference-not-allowed") && m.contains(expected)),
            "{key} = {value}: {found:?}"
        );
    }
    let r = sink_of(
        &http,
        "MQTT",
        "dsm-ref-ok",
        serde_json::json!([{"key": "topic", "value": "plant/x"},
            {"key": "password", "value": "${env:DDA_SECRET_MQTT}"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}
