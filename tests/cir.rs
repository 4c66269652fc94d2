//! The Common Interoperability Registry through `dda serve`'s API (an in-process server),
//! against real repositories: PostgreSQL (127.0.0.1:5432, database `test`), MongoDB
//! (nx-27017 on 27017) and SQLite files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Http, in_process, services};
use hyper::Method;
use serde_json::{Value, json};

const MACHINE: &str = "6f1c3a52-0d7e-4c1b-9a53-2d8e4f1b7a01";
const LINE: &str = "0b6f86f4-51a2-4d3e-8b0c-7f4e2a9c1d02";

/// A SQLite ERP table with two assets.
fn sqlite_erp(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("erp.sqlite");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE assets (asset_no TEXT PRIMARY KEY, model TEXT, serial TEXT, interval_h INTEGER);
         INSERT INTO assets VALUES ('A-17', 'SPX-400', 'SN-0042', 500), ('A-18', 'SPX-400', 'SN-0043', 500);",
    )
    .unwrap();
    path
}

async fn pg_table(name: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id INTEGER PRIMARY KEY, asset TEXT, last_maintenance DATE, technician TEXT);
             INSERT INTO {name} VALUES (7, 'spindle', '2026-10-01', 'Ana');"
        ))
        .await
        .unwrap();
    client
}

async fn mongo_docs(db: &str, coll: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let client =
        mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=5000")
            .await
            .unwrap();
    let c = client.database(db).collection(coll);
    c.drop().await.ok();
    c.insert_one(mongodb::bson::doc! {"_id": "ML-3", "point": "spindle bearing", "unit": "mm/s"})
        .await
        .unwrap();
    c
}

/// The machine, and the SQLite ERP table (in the data directory) as repository `erp`.
async fn machine_with_erp(server: &common::InProcess) {
    let erp = sqlite_erp(&server.dir.path().join("data"));
    created(
        &server.http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "Spindle 1", "class": "machine"}),
    )
    .await;
    created(&server.http, "/api/v1/cir/repositories", json!({"id": "erp", "repositoryType": "sqlite", "path": erp, "table": "assets", "key": "asset_no"})).await;
}

async fn created(http: &Http, path: &str, body: Value) -> Value {
    let r = http.post(path, &body).await;
    assert_eq!(r.status, 201, "{path}: {}", r.text());
    r.json()
}

/// Objects, repositories of three kinds and links.
async fn registry(http: &Http, erp: &std::path::Path, pg_table: &str, mongo_coll: &str) {
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": LINE, "name": "Line 1", "class": "line"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "Spindle 1", "class": "machine", "parentObjectReferenceID": LINE, "attributes": {"vendor": "Acme", "axes": 5}}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/repositories",
        json!({"id": "erp", "repositoryType": "sqlite", "path": erp, "table": "assets", "key": "asset_no"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/repositories",
        json!({"id": "cmms", "repositoryType": "postgresql", "url": "postgresql://postgres@127.0.0.1:5432/test", "table": pg_table}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/repositories",
        json!({"id": "points", "repositoryType": "mongodb", "url": "mongodb://127.0.0.1:27017", "database": "dda_cir", "table": mongo_coll}),
    )
    .await;
    for (repo, local) in [("erp", "A-17"), ("cmms", "7"), ("points", "ML-3")] {
        let link = created(
            http,
            "/api/v1/cir/links",
            json!({"objectReferenceID": MACHINE, "repositoryReferenceID": repo, "localID": local}),
        )
        .await;
        // Without an id, the link's id is derived from the record.
        assert!(
            link["id"].as_str().is_some_and(|id| id.len() == 36),
            "{link}"
        );
    }
}

#[tokio::test]
async fn resolve_fetches_every_linked_record_from_postgres_mongodb_and_sqlite() {
    if !services::available("PostgreSQL", 5432) || !services::available("nx-27017 (MongoDB)", 27017)
    {
        return;
    }
    let server = in_process(|_| {}).await;
    let http = &server.http;
    let erp = sqlite_erp(&server.dir.path().join("data"));
    let pg = pg_table("cir_work_orders_resolve").await;
    mongo_docs("dda_cir", "points_resolve").await;
    registry(http, &erp, "cir_work_orders_resolve", "points_resolve").await;

    let r = http
        .get(&format!("/api/v1/cir/objects/{MACHINE}/resolve"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["object"]["name"], "Spindle 1");
    assert_eq!(
        v["ancestors"],
        json!([{"id": LINE, "name": "Line 1", "class": "line"}])
    );
    assert_eq!(
        v["records"],
        json!([
            {"repository": "erp", "repositoryType": "sqlite", "localId": "A-17", "link": v["records"][0]["link"],
             "record": {"asset_no": "A-17", "model": "SPX-400", "serial": "SN-0042", "interval_h": 500}},
            {"repository": "cmms", "repositoryType": "postgresql", "localId": "7", "link": v["records"][1]["link"],
             "record": {"id": 7, "asset": "spindle", "last_maintenance": "2026-10-01", "technician": "Ana"}},
            {"repository": "points", "repositoryType": "mongodb", "localId": "ML-3", "link": v["records"][2]["link"],
             "record": {"_id": "ML-3", "point": "spindle bearing", "unit": "mm/s"}},
        ])
    );
    // A change in a linked database is what the next resolve reads.
    pg.execute(
        &"UPDATE cir_work_orders_resolve SET technician = 'Bo' WHERE id = 7".to_string(),
        &[],
    )
    .await
    .unwrap();
    let v = http
        .get(&format!("/api/v1/cir/objects/{MACHINE}/resolve"))
        .await
        .json();
    assert_eq!(v["records"][1]["record"]["technician"], "Bo");

    // Translate round-trips between every pair of repositories.
    let t = http
        .get("/api/v1/cir/translate?repository=erp&localId=A-17")
        .await;
    assert_eq!(t.status, 200, "{}", t.text());
    let t = t.json();
    assert_eq!(t["cirId"], MACHINE);
    assert_eq!(
        t["localIds"],
        json!([{"repository": "cmms", "localId": "7"}, {"repository": "points", "localId": "ML-3"}])
    );
    let back = http
        .get("/api/v1/cir/translate?repository=cmms&localId=7&to=erp")
        .await
        .json();
    assert_eq!(back["cirId"], MACHINE);
    assert_eq!(
        back["localIds"],
        json!([{"repository": "erp", "localId": "A-17"}])
    );
    let unknown = http
        .get("/api/v1/cir/translate?repository=erp&localId=A-99")
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    // Search by class, attribute, parent and text.
    let s = http
        .get("/api/v1/cir/search?class=machine&attributes.vendor=Acme")
        .await
        .json();
    assert_eq!(s["total"], 1, "{s}");
    assert_eq!(s["objects"][0]["id"], MACHINE);
    assert_eq!(s["objects"][0]["links"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        http.get(&format!("/api/v1/cir/search?parent={LINE}"))
            .await
            .json()["total"],
        1
    );
    assert_eq!(
        http.get("/api/v1/cir/search?q=spindle").await.json()["total"],
        1
    );
    assert_eq!(
        http.get("/api/v1/cir/search?class=site").await.json()["total"],
        0
    );
    assert_eq!(http.get("/api/v1/cir/search?colour=red").await.status, 400);
}

#[tokio::test]
async fn a_repository_down_gives_a_partial_result_naming_its_error() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    machine_with_erp(&server).await;
    // Nothing listens on this port; the other takes connections and never answers.
    let closed = common::free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    created(http, "/api/v1/cir/repositories", json!({"id": "cmms", "repositoryType": "postgresql", "url": format!("postgresql://postgres@127.0.0.1:{closed}/test"), "table": "orders"})).await;
    created(http, "/api/v1/cir/repositories", json!({"id": "far", "repositoryType": "mongodb", "url": format!("mongodb://127.0.0.1:{silent_port}/?directConnection=true"), "database": "x", "table": "y", "timeout": "300ms"})).await;
    for (repo, local) in [
        ("erp", "A-17"),
        ("cmms", "7"),
        ("far", "F-1"),
        ("erp", "A-404"),
    ] {
        created(
            http,
            "/api/v1/cir/links",
            json!({"objectReferenceID": MACHINE, "repositoryReferenceID": repo, "localID": local}),
        )
        .await;
    }
    let started = Instant::now();
    let r = http
        .get(&format!("/api/v1/cir/objects/{MACHINE}/resolve"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["complete"], false);
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["records"][0]["record"]["serial"], "SN-0042");
    assert_eq!(
        v["missing"],
        json!([{"repository": "erp", "localId": "A-404"}])
    );
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    let by = |id: &str| {
        errors
            .iter()
            .find(|e| e["repository"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by("cmms")["code"], "UNREACHABLE", "{v}");
    assert_eq!(by("cmms")["localIds"], json!(["7"]));
    assert_eq!(by("far")["code"], "TIMEOUT", "{v}");
    assert!(
        by("far")["message"].as_str().unwrap().contains("300 ms"),
        "{v}"
    );
}

#[tokio::test]
async fn malformed_and_dangling_cir_documents_get_422_with_every_problem_located() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    let r = http
        .post(
            "/api/v1/cir/objects",
            &json!({"id": MACHINE, "class": "machine"}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("`name`"), "{}", r.text());
    let r = http.post("/api/v1/cir/objects", &json!({"id": "not-a-uuid", "name": "M", "class": "machine", "parentObjectReferenceID": "nowhere"})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let details = r.json()["details"].clone();
    let pointers: Vec<&str> = details
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["pointer"].as_str())
        .collect();
    for p in ["/id", "/parentObjectReferenceID"] {
        assert!(pointers.contains(&p), "{p} in {details}");
    }

    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "M", "class": "machine"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": LINE, "name": "L", "class": "line", "parentObjectReferenceID": MACHINE}),
    )
    .await;
    // A cycle: the machine's parent would be the line whose parent is the machine.
    let r = http
        .put(&format!("/api/v1/cir/objects/{MACHINE}"), &json!({"id": MACHINE, "name": "M", "class": "machine", "parentObjectReferenceID": LINE}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("its own ancestor"), "{}", r.text());

    // A repository without what its type needs, and a plain-text password.
    let r = http
        .post("/api/v1/cir/repositories", &json!({"id": "pg", "repositoryType": "postgresql", "url": "postgresql://u:hunter2@db/x", "password": "hunter2"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    for p in ["\"/url\"", "\"/password\"", "table"] {
        assert!(text.contains(p), "{p} in {text}");
    }
    assert!(!text.contains("hunter2\""), "a secret is echoed: {text}");
    // A SQLite file outside what the server may read, and an XML body.
    let r = http
        .request(
            Method::POST,
            "/api/v1/cir/repositories",
            Some(("application/xml", b"<repository><id>etc</id><repositoryType>sqlite</repositoryType><path>/etc/passwd.sqlite</path><table>t</table></repository>".to_vec())),
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("path-not-allowed") || r.text().contains("outside the folders"),
        "{}",
        r.text()
    );

    created(http, "/api/v1/cir/repositories", json!({"id": "erp", "repositoryType": "http", "url": "http://127.0.0.1:1/assets/{localId}"})).await;
    let r = http.post("/api/v1/cir/links", &json!({"objectReferenceID": "ghost", "repositoryReferenceID": "erq", "localID": "A-1"})).await;
    assert_eq!(r.status, 422);
    let text = r.text();
    assert!(
        text.contains("/objectReferenceID") && text.contains("/repositoryReferenceID"),
        "{text}"
    );
    assert!(text.contains("did you mean `erp`"), "{text}");
    // One record, two objects.
    created(
        http,
        "/api/v1/cir/links",
        json!({"objectReferenceID": MACHINE, "repositoryReferenceID": "erp", "localID": "A-1"}),
    )
    .await;
    let r = http.post("/api/v1/cir/links", &json!({"id": "other", "objectReferenceID": LINE, "repositoryReferenceID": "erp", "localID": "A-1"})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("duplicate-link") || r.text().contains("linked twice"),
        "{}",
        r.text()
    );
    // Something refers to the repository: it stays.
    assert_eq!(
        http.delete("/api/v1/cir/repositories/erp").await.status,
        409
    );
}

#[tokio::test]
async fn a_hundred_thousand_links_are_imported_in_one_request() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "M", "class": "machine"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": LINE, "name": "L", "class": "line"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/repositories",
        json!({"id": "erp", "repositoryType": "dda", "table": "edge-gateways"}),
    )
    .await;
    let mut csv = String::from("objectReferenceID,repositoryReferenceID,localID\n");
    for i in 0..100_000 {
        let object = if i % 2 == 0 { MACHINE } else { LINE };
        csv.push_str(&format!("{object},erp,R-{i}\n"));
    }
    let started = Instant::now();
    let r = http
        .request(
            Method::POST,
            "/api/v1/cir/links/import",
            Some(("text/csv", csv.clone().into_bytes())),
            &[],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"imported": 100_000, "created": 100_000, "replaced": 0})
    );
    assert!(
        took < Duration::from_secs(10),
        "100,000 links took {took:?}"
    );
    eprintln!("100,000 links imported in {took:?}");
    let t = http
        .get("/api/v1/cir/translate?repository=erp&localId=R-99999")
        .await
        .json();
    assert_eq!(t["cirId"], LINE);
    // Again: the same links are replaced, not doubled.
    let r = http
        .request(
            Method::POST,
            "/api/v1/cir/links/import",
            Some(("text/csv", csv.into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.json()["replaced"], 100_000, "{}", r.text());

    // A bad import stores nothing and locates every problem by line.
    let bad = format!(
        "{{\"objectReferenceID\": \"{MACHINE}\", \"repositoryReferenceID\": \"erp\", \"localID\": \"N-1\"}}\n\
         {{\"objectReferenceID\": \"ghost\", \"repositoryReferenceID\": \"erp\", \"localID\": \"N-2\"}}\n\
         not json\n\
         {{\"objectReferenceID\": \"{LINE}\", \"repositoryReferenceID\": \"erp\", \"localID\": \"R-0\"}}\n"
    );
    let r = http
        .request(
            Method::POST,
            "/api/v1/cir/links/import",
            Some(("application/x-ndjson", bad.into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    assert!(text.contains("line 3"), "{text}");
    let r = http
        .request(
            Method::POST,
            "/api/v1/cir/links/import?format=jsonl",
            Some(("application/octet-stream", format!(
                "{{\"objectReferenceID\": \"ghost\", \"repositoryReferenceID\": \"erp\", \"localID\": \"N-2\"}}\n\
                 {{\"objectReferenceID\": \"{LINE}\", \"repositoryReferenceID\": \"erp\", \"localID\": \"R-0\"}}\n"
            ).into_bytes())),
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let pointers: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        pointers.contains(&"/1/objectReferenceID".to_owned()),
        "{pointers:?}"
    );
    assert_eq!(pointers.len(), 1, "{pointers:?}");
    assert_eq!(
        http.get("/api/v1/cir/translate?repository=erp&localId=N-1")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn registry_changes_stream_as_server_sent_events() {
    use http_body_util::BodyExt;
    let server = in_process(|_| {}).await;
    let http = server.http.clone();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let resp = client
        .get(format!("{}/api/v1/cir/changes", http.base).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    created(
        &http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "M", "class": "machine"}),
    )
    .await;
    assert_eq!(
        http.delete(&format!("/api/v1/cir/objects/{MACHINE}"))
            .await
            .status,
        204
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("\"deleted\"") && Instant::now() < deadline {
        if let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(1), body.frame()).await
            && let Some(data) = frame.data_ref()
        {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
    assert!(
        seen.contains(&format!(
            "{{\"sequence\":1,\"op\":\"created\",\"kind\":\"Object\",\"id\":\"{MACHINE}\"}}"
        )),
        "{seen}"
    );
    assert!(
        seen.contains(&format!(
            "{{\"sequence\":2,\"op\":\"deleted\",\"kind\":\"Object\",\"id\":\"{MACHINE}\"}}"
        )),
        "{seen}"
    );
}

/// The latest observation of bus topic `dsm` (as kept for live views), if any.
async fn latest(http: &Http, dsm: &str) -> Option<Value> {
    let data = http
        .get(&format!("/api/v1/data-source-manifests/{dsm}/data?last=1"))
        .await
        .json();
    data["data"][0]["observation"][0]
        .as_object()
        .map(|o| Value::Object(o.clone()))
}

/// `enrich` through the server: the meter's DSM names the machine; its readings get the
/// machine's serial number (SQLite), last maintenance date (PostgreSQL) and measurement
/// point (MongoDB); a change in PostgreSQL is seen within the TTL; a link deleted over the
/// API leaves its field out, counted as `missing` in the instance's metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_adds_linked_fields_and_sees_a_change_in_a_linked_database_within_its_ttl() {
    if !services::available("PostgreSQL", 5432) || !services::available("nx-27017 (MongoDB)", 27017)
    {
        return;
    }
    let server = in_process(|c| c.speed = "3600".into()).await;
    let http = &server.http;
    let erp = sqlite_erp(&server.dir.path().join("data"));
    let pg = pg_table("cir_enrich_cmms").await;
    mongo_docs("dda_cir", "enrich_points").await;
    // A relative path is read in the data directory.
    assert!(erp.starts_with(server.dir.path().join("data")));
    registry(
        http,
        std::path::Path::new("erp.sqlite"),
        "cir_enrich_cmms",
        "enrich_points",
    )
    .await;
    common::load_models(http, &server.dir.path().join("data")).await;
    let mut meter = http
        .get("/api/v1/data-source-manifests/dsm-ib1-meter")
        .await
        .json();
    meter["objectReferenceID"] = json!(MACHINE);
    let r = http
        .put("/api/v1/data-source-manifests/dsm-ib1-meter", &meter)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The enriched readings go to a JSON-lines file (and are kept for live views).
    let out = server.dir.path().join("data").join("enriched-meter.jsonl");
    created(
        http,
        "/api/v1/data-interfaces",
        json!({"id": "di-jsonl", "communicationProtocol": "File"}),
    )
    .await;
    created(
        http,
        "/api/v1/data-source-definitions",
        json!({"id": "dsd-meter-file", "dataInterfaceReferenceID": "di-jsonl",
               "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power", "dk-total-real-energy"]}}),
    )
    .await;
    created(
        http,
        "/api/v1/data-source-manifests",
        json!({"id": "enriched-meter", "dataSourceDefinitionReferenceID": "dsd-meter-file",
               "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "path", "value": out}]}}),
    )
    .await;
    created(
        http,
        "/api/v1/analytics-processor-definitions",
        json!({"id": "apd-enrich", "name": "enrich", "processorType": "enrich"}),
    )
    .await;
    let ttl_ms = 500;
    created(
        http,
        "/api/v1/analytics-instances",
        json!({"id": "enriched", "analyticsProcessors": {"apm": [{"id": "enrich",
            "analyticsProcessorDefinitionReferenceID": "apd-enrich",
            "parameters": {"parameter": [
                {"key": "fields", "value": "serialNumber=erp:serial,lastMaintenance=cmms:last_maintenance,point=points:point"},
                {"key": "ttl", "value": format!("{ttl_ms}ms")}]},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "dsm-ib1-meter"}]},
            "dataSink": {"dataSourceManifestReferenceID": "enriched-meter"}}]}}),
    )
    .await;
    let r = http
        .post_empty("/api/v1/analytics-instances/enriched/start")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    common::eventually(10, "an enriched reading", || async {
        latest(http, "enriched-meter").await.is_some()
    })
    .await;
    let o = latest(http, "enriched-meter").await.unwrap();
    assert_eq!(
        (&o["serialNumber"], &o["lastMaintenance"], &o["point"]),
        (
            &json!("SN-0042"),
            &json!("2026-10-01"),
            &json!("spindle bearing")
        ),
        "{o}"
    );

    pg.execute(
        "UPDATE cir_enrich_cmms SET last_maintenance = '2026-12-02' WHERE id = 7",
        &[],
    )
    .await
    .unwrap();
    let changed = Instant::now();
    loop {
        let o = latest(http, "enriched-meter").await.unwrap();
        if o["lastMaintenance"] == "2026-12-02" {
            break;
        }
        assert_eq!(o["lastMaintenance"], "2026-10-01", "{o}");
        assert!(
            changed.elapsed() < Duration::from_millis(ttl_ms + 2_000),
            "the change is not seen within the TTL ({ttl_ms} ms) and the time of a load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A link deleted over the API: its field is left out from the next load on, counted.
    let erp_link = http
        .get("/api/v1/cir/translate?repository=erp&localId=A-17")
        .await
        .json();
    assert_eq!(erp_link["cirId"], MACHINE, "{erp_link}");
    let links = http.get("/api/v1/cir/links").await.json();
    let id = links["links"]["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["repositoryReferenceID"] == "erp")
        .and_then(|l| l["id"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the ERP link is listed: {links}"));
    let r = http.delete(&format!("/api/v1/cir/links/{id}")).await;
    assert_eq!(r.status, 204, "{}", r.text());
    common::eventually(5, "readings without a serial number", || async {
        latest(http, "enriched-meter")
            .await
            .unwrap()
            .get("serialNumber")
            .is_none()
    })
    .await;
    let o = latest(http, "enriched-meter").await.unwrap();
    assert_eq!(
        (&o["lastMaintenance"], &o["point"]),
        (&json!("2026-12-02"), &json!("spindle bearing"))
    );
    let metrics = http
        .get("/api/v1/analytics-instances/enriched/metrics")
        .await
        .json();
    let missing = metrics["processors"][0]["events"]["missing"]
        .as_u64()
        .unwrap_or(0);
    assert!(missing > 0, "{metrics}");
    let prometheus = http.get("/metrics").await.text();
    assert!(
        prometheus.contains("dda_processor_events_total{instance=\"enriched\",processor=\"enrich\",type=\"enrich\",event=\"missing\"}"),
        "{prometheus}"
    );

    // Every reading written, from the very first: enriched with what was linked when it
    // went through (the records were loaded before the meter was started).
    let r = http
        .post_empty("/api/v1/analytics-instances/enriched/stop")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 10, "{}", lines.len());
    assert_eq!(lines[0]["dataSourceManifestReferenceID"], "dsm-ib1-meter");
    let (mut before, mut after, mut without) = (0, 0, 0);
    for (n, l) in lines.iter().enumerate() {
        let o = &l["observation"][0];
        assert_eq!(o["point"], "spindle bearing", "line {n}: {o}");
        match (o.get("serialNumber"), o["lastMaintenance"].as_str()) {
            (Some(s), Some("2026-10-01")) if s == "SN-0042" && after == 0 && without == 0 => {
                before += 1
            }
            (Some(s), Some("2026-12-02")) if s == "SN-0042" && without == 0 => after += 1,
            (None, Some("2026-12-02")) if after > 0 => without += 1,
            _ => panic!("line {n} is out of order: {o}"),
        }
    }
    assert!(
        before > 0 && after > 0 && without > 0,
        "{before} {after} {without}"
    );
}

/// `dda cir` against the server, as a separate process.
async fn dda_cir(base: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut argv: Vec<String> = vec!["cir".into(), "--server".into(), base.into()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dda"))
            .args(&argv)
            .env("NO_COLOR", "1")
            .env_remove("DDA_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (
        o.status.code(),
        out,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cir_command_line_resolves_translates_and_imports() {
    let server = in_process(|_| {}).await;
    let http = &server.http;
    let base = http.base.clone();
    machine_with_erp(&server).await;
    // A repository nothing answers at.
    created(http, "/api/v1/cir/repositories", json!({"id": "qms", "repositoryType": "http", "url": "http://127.0.0.1:1/defects/{localId}", "timeout": "300ms"})).await;

    // Import: links from a CSV file, then a file with a bad line (nothing stored).
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("links.csv");
    std::fs::write(&good, format!("objectReferenceID,repositoryReferenceID,localID\n{MACHINE},erp,A-17\n{MACHINE},qms,D-1\n")).unwrap();
    let (code, out, err) = dda_cir(&base, &["import", good.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, json!({"imported": 2, "created": 2, "replaced": 0}));
    let bad = dir.path().join("links.jsonl");
    std::fs::write(&bad, format!("{{\"objectReferenceID\": \"{MACHINE}\", \"repositoryReferenceID\": \"erp\", \"localID\": \"A-18\"}}\n{{\"objectReferenceID\": \"{MACHINE}\", \"localID\": \"A-19\"}}\n")).unwrap();
    let (code, _, err) = dda_cir(&base, &["import", bad.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 2") && err.contains("repositoryReferenceID"),
        "{err}"
    );
    assert_eq!(
        http.get("/api/v1/cir/translate?repository=erp&localId=A-18")
            .await
            .status,
        404,
        "a refused import stores nothing"
    );

    // Resolve: the ERP row exactly; the QMS named as unreachable, exit status 0.
    let (code, out, err) = dda_cir(&base, &["resolve", MACHINE]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out["records"][0]["record"]["serial"], "SN-0042", "{out}");
    assert_eq!(out["complete"], false);
    assert!(
        err.contains("warning: repository `qms` gave no records: UNREACHABLE"),
        "{err}"
    );

    // Translate, both ways round.
    let (code, out, err) = dda_cir(&base, &["translate", "erp", "A-17"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out["cirId"], MACHINE);
    let (_, back, _) = dda_cir(&base, &["translate", "qms", "D-1", "--to", "erp"]).await;
    assert_eq!(back["cirId"], MACHINE);
    assert_eq!(
        back["localIds"],
        json!([{"repository": "erp", "localId": "A-17"}]),
        "{back}"
    );

    // Unknown ids: refused, exit status 1; no server: exit status 2.
    let (code, _, err) = dda_cir(&base, &["translate", "erp", "nope"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = dda_cir("http://127.0.0.1:1", &["resolve", MACHINE]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--server"), "{err}");
}

/// An HTTP/JSON repository: a live endpoint that wants basic authentication, the password
/// read from a secret file; a record it does not have (404) is missing, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_repository_is_fetched_with_its_credentials_from_a_secret_file() {
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // "erp:s3cret", as basic authentication sends it.
    let expected = "Basic ZXJwOnMzY3JldA==";
    let app = axum::Router::new().route(
        "/assets/{id}",
        axum::routing::get(
            move |axum::extract::Path(id): axum::extract::Path<String>, headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected) {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "who are you"})));
                }
                match id.as_str() {
                    "A 17/x" => (StatusCode::OK, axum::Json(json!({"asset": id, "serial": "SN-0042", "interval_h": 500}))),
                    _ => (StatusCode::NOT_FOUND, axum::Json(json!({}))),
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = in_process(|_| {}).await;
    let http = &server.http;
    let secrets = server.dir.path().join("data/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("erp-http"), "s3cret\n").unwrap();
    created(
        http,
        "/api/v1/cir/objects",
        json!({"id": MACHINE, "name": "Spindle 1", "class": "machine"}),
    )
    .await;
    created(
        http,
        "/api/v1/cir/repositories",
        json!({"id": "erp-web", "repositoryType": "http", "url": format!("http://127.0.0.1:{port}/assets/{{localId}}"),
               "user": "erp", "password": format!("${{file:{}}}", secrets.join("erp-http").display())}),
    )
    .await;
    for local in ["A 17/x", "A-99"] {
        created(http, "/api/v1/cir/links", json!({"objectReferenceID": MACHINE, "repositoryReferenceID": "erp-web", "localID": local})).await;
    }
    let r = http
        .get(&format!("/api/v1/cir/objects/{MACHINE}/resolve"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let resolved = r.json();
    assert_eq!(
        resolved["records"].as_array().unwrap().len(),
        1,
        "{resolved}"
    );
    // The local id went into the URL percent-encoded, and came back as the endpoint read it.
    assert_eq!(
        resolved["records"][0]["record"],
        json!({"asset": "A 17/x", "serial": "SN-0042", "interval_h": 500})
    );
    assert_eq!(
        resolved["missing"],
        json!([{"repository": "erp-web", "localId": "A-99"}]),
        "{resolved}"
    );
    assert!(
        resolved["errors"].as_array().unwrap().is_empty(),
        "{resolved}"
    );
    // The repository as shown names the secret, never the password.
    let shown = http.get("/api/v1/cir/repositories/erp-web").await.text();
    assert!(!shown.contains("s3cret"), "{shown}");
}
