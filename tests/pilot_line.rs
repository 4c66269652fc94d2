//! The paper's pilot line end to end, through `dda run`: a known data set is replayed for
//! the three infrastructure boxes through the example's edge and global analytics
//! manifests, and every stored hourly average is checked exactly against values computed
//! here, independently.
//!
//! The data set has 16 readings per box, quantity and hour, with integer values, so each
//! hourly mean is a sum divided by 16 — exact in binary floating point — and the mean across
//! the three boxes a single rounding of an exact sum: the engine and this test must agree to
//! the last bit, whatever order results arrive in.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first surprise"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};

mod common;

const HOURS: i64 = 6;
const PER_HOUR: i64 = 16;
const START_MS: i64 = 1_527_120_000_000; // 2018-05-24T00:00:00Z
const HOUR_MS: i64 = 3_600_000;

/// One reading: (box, quantity, epoch ms, value).
type Reading = (u32, &'static str, i64, i64);

/// A deterministic, irregular data set: each hour has 16 slots of 225 s; each reading lies
/// somewhere in its slot (the first of each hour exactly on the hour).
fn data_set() -> Vec<Reading> {
    data_set_of(HOURS)
}

/// [`data_set`] over `hours` hours.
fn data_set_of(hours: i64) -> Vec<Reading> {
    let mut out = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as i64
    };
    for b in 1..=3u32 {
        let mut energy = 1000 * i64::from(b);
        for h in 0..hours {
            for slot in 0..PER_HOUR {
                let jitter = if slot == 0 { 0 } else { next() % 200_000 };
                let t = START_MS + h * HOUR_MS + slot * 225_000 + jitter;
                let power = 800 * i64::from(b) + next() % 400;
                energy += power / 16;
                out.push((b, "TotalRealPower", t, power));
                out.push((b, "TotalRealEnergy", t + 1, energy));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Box `b`'s readings as the paper's LiveDataSets (Table 7), one per line.
fn write_replay(file: &Path, readings: &[Reading], b: u32) {
    let lines: Vec<String> = readings
        .iter()
        .filter(|r| r.0 == b)
        .map(|(_, name, t, v)| {
            json!({
                "id": format!("set-{b}-{t}"),
                "dataSourceManifestReferenceID": format!("dsm-ib{b}-meter"),
                "mobile": false,
                "timestamp": t,
                "observation": [{"name": name, "timestamp": t, "value": v}],
            })
            .to_string()
        })
        .collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// The example bundle with each box's meter replaced by a replay of its part of the data
/// set, written as the paper's LiveDataSets (Table 7), one per line.
fn bundle(dir: &Path, readings: &[Reading]) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption/json");
    let bundle = dir.join("bundle");
    copy_dir(&example, &bundle);
    for b in 1..=3u32 {
        let file = dir.join(format!("ib{b}.jsonl"));
        write_replay(&file, readings, b);
        let dsm_path = bundle.join(format!("data-source-manifests/ib{b}-meter.json"));
        let mut dsm: Json =
            serde_json::from_str(&std::fs::read_to_string(&dsm_path).unwrap()).unwrap();
        dsm["dataSourceDefinitionInterfaceParameters"]["parameter"] = json!([
            {"key": "mode", "value": "replay"},
            {"key": "file", "value": file.to_str().unwrap()},
        ]);
        std::fs::write(&dsm_path, serde_json::to_string_pretty(&dsm).unwrap()).unwrap();
    }
    bundle
}

/// Rows of a result table: (source, name, window end ms) → (value, count).
fn table(db: &Path, table: &str) -> BTreeMap<(String, String, i64), (f64, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT source, name, timestamp_ms, value, attributes FROM {table}"
        ))
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let attributes: String = r.get(4)?;
            let count = serde_json::from_str::<Json>(&attributes).unwrap()["count"]
                .as_u64()
                .unwrap();
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ),
                (r.get::<_, f64>(3)?, count),
            ))
        })
        .unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let (k, v) = row.unwrap();
        assert!(
            out.insert(k.clone(), v).is_none(),
            "{table} holds {k:?} twice"
        );
    }
    out
}

/// Results: (source, name, window end ms) → (value, count).
type Results = BTreeMap<(String, String, i64), (f64, u64)>;

/// Independently: per box, quantity and hour [h, h+1), the mean of the readings.
fn expected_edge(readings: &[Reading]) -> Results {
    let mut sums: BTreeMap<(u32, &str, i64), (i64, u64)> = BTreeMap::new();
    for (b, name, t, v) in readings {
        let end = (t - START_MS) / HOUR_MS * HOUR_MS + HOUR_MS + START_MS;
        let e = sums.entry((*b, *name, end)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    sums.iter()
        .map(|((b, name, end), (sum, n))| {
            (
                (format!("dsm-ib{b}-meter"), (*name).to_owned(), *end),
                (*sum as f64 / *n as f64, *n),
            )
        })
        .collect()
}

/// The global averages of the first `hours` hours: per quantity and hour, the mean of the
/// three boxes' means.
fn expected_global(edge: &Results, hours: i64) -> Results {
    let mut out = BTreeMap::new();
    for name in ["TotalRealPower", "TotalRealEnergy"] {
        for h in 1..=hours {
            let end = START_MS + h * HOUR_MS;
            let means: Vec<f64> = (1..=3)
                .map(|b| edge[&(format!("dsm-ib{b}-meter"), name.to_owned(), end)].0)
                .collect();
            out.insert(
                ("dsm-global-hourly".to_owned(), name.to_owned(), end),
                ((means[0] + means[1] + means[2]) / 3.0, 3),
            );
        }
    }
    out
}

/// Each box's edge database (`db(box)`) holds exactly that box's hourly averages.
fn each_edge_holds_its_box(expected_edge: &Results, db: impl Fn(u32) -> PathBuf) {
    for b in 1..=3u32 {
        let mine: BTreeMap<_, _> = expected_edge
            .iter()
            .filter(|(k, _)| k.0 == format!("dsm-ib{b}-meter"))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(
            table(&db(b), "hourly_averages"),
            mine,
            "box {b}'s edge database"
        );
    }
}

#[test]
fn the_pilot_line_stores_exactly_the_hourly_averages_of_a_replayed_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let readings = data_set();
    let bundle = bundle(dir.path(), &readings);
    let out = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", bundle.to_str().unwrap(), "--speed", "max", "--quiet"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("inputs exhausted"),
        "the run ends by itself: {stderr}"
    );
    assert!(stdout.contains("dead letters: 0"), "{stdout}");

    let expected_edge = expected_edge(&readings);
    assert_eq!(expected_edge.len() as i64, 3 * 2 * HOURS);
    for b in 1..=3u32 {
        let edge = table(
            &dir.path().join(format!("dda-output/ib{b}-edge.sqlite")),
            "hourly_averages",
        );
        let mine: BTreeMap<_, _> = expected_edge
            .iter()
            .filter(|(k, _)| k.0 == format!("dsm-ib{b}-meter"))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(edge, mine, "box {b}'s edge database");
    }
    let cloud = dir.path().join("dda-output/cloud.sqlite");
    assert_eq!(
        table(&cloud, "edge_hourly_averages"),
        expected_edge,
        "edge results forwarded to the cloud"
    );

    let expected_global = expected_global(&expected_edge, HOURS);
    assert_eq!(
        table(&cloud, "global_hourly_averages"),
        expected_global,
        "global hourly averages across the boxes"
    );
    // Stamped on the hour, as the edge results they average: they join by timestamp.
    let conn = rusqlite::Connection::open(&cloud).unwrap();
    let unmatched: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM global_hourly_averages g WHERE NOT EXISTS \
             (SELECT 1 FROM edge_hourly_averages e WHERE e.timestamp = g.timestamp AND e.name = g.name)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unmatched, 0, "every global average joins its edge averages");
    let (stamp, end): (String, String) = conn
        .query_row(
            "SELECT timestamp, json_extract(attributes, '$.windowEnd') FROM global_hourly_averages LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(stamp.ends_with(":00:00.000Z"), "{stamp}");
    assert_eq!(stamp, end);
}

#[test]
fn running_the_job_again_into_the_same_databases_keeps_one_row_per_result() {
    let dir = tempfile::tempdir().unwrap();
    let readings = data_set();
    let bundle = bundle(dir.path(), &readings);
    for run in 1..=2 {
        let out = Command::new(env!("CARGO_BIN_EXE_dda"))
            .args(["run", bundle.to_str().unwrap(), "--speed", "max", "--quiet"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `table` refuses a result stored twice; the values are those of one run.
    let expected_edge = expected_edge(&readings);
    let cloud = dir.path().join("dda-output/cloud.sqlite");
    assert_eq!(table(&cloud, "edge_hourly_averages"), expected_edge);
    assert_eq!(
        table(&cloud, "global_hourly_averages"),
        expected_global(&expected_edge, HOURS)
    );
    let rows: i64 = rusqlite::Connection::open(&cloud)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM edge_hourly_averages", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows as usize, expected_edge.len());
}

#[test]
fn a_run_stopped_in_the_middle_of_an_hour_marks_that_hour_incomplete_never_final() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption/json");
    // At 1800× real time, 2 s end half way through the second hour.
    let out = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args([
            "run",
            example.to_str().unwrap(),
            "--speed",
            "1800",
            "--for",
            "2s",
            "--quiet",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(dir.path().join("dda-output/ib1-edge.sqlite")).unwrap();
    let rows: Vec<(String, String, Option<bool>, i64)> = db
        .prepare(
            "SELECT name, timestamp, json_extract(attributes, '$.complete'), \
             json_extract(attributes, '$.count') FROM hourly_averages ORDER BY timestamp_ms",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty());
    let last = rows.iter().map(|r| r.1.clone()).max().unwrap();
    for (name, stamp, complete, count) in &rows {
        if *stamp == last {
            // Cut short by the end of the run: marked, and holding fewer than 60 readings.
            assert_eq!(*complete, Some(false), "{name} {stamp}");
            assert!(*count < 60, "{name} {stamp}: {count}");
        } else {
            assert_eq!(*complete, None, "{name} {stamp} is final");
            assert_eq!(*count, 60, "{name} {stamp}");
        }
    }
}

/// The pilot line as a fleet on loopback: three `dda serve` edges and one cloud; every
/// model and analytics manifest created only through the cloud's API. The cloud deploys
/// each box's manifest to its gateway; the edges send their hourly averages up the
/// embedded HTTP uplink; the cloud's global manifest averages them. Box 3's edge replays
/// at half the others' speed, and box 2's is SIGKILLed mid-run and started again: none of
/// the results is late, lost or counted twice, and the global hourly averages equal the
/// values computed here, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pilot_line_as_a_fleet_computes_exactly_the_global_averages_with_a_slow_and_a_killed_edge()
 {
    let dir = tempfile::tempdir().unwrap();
    let readings = data_set();
    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        "checkpoint_interval = \"1s\"\n[fleet]\nrole = \"edge\"\n",
    )
    .unwrap();
    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        "[fleet]\nrole = \"cloud\"\npoll_interval = \"200ms\"\n",
    )
    .unwrap();
    let mut edges = Vec::new();
    for b in 1..=3u32 {
        let data = dir.path().join(format!("edge{b}"));
        write_replay(&data.join(format!("replay/ib{b}.jsonl")), &readings, b);
        edges.push(
            common::Process::start_with(&data, common::free_port(), dir.path(), Some(&edge_config))
                .await,
        );
    }
    let cloud = common::Process::start_with(
        &dir.path().join("cloud"),
        common::free_port(),
        dir.path(),
        Some(&cloud_config),
    )
    .await;
    let http = cloud.http.clone();
    let uplink = common::free_port();
    let post = |route: &str, doc: Json| {
        let (http, route) = (http.clone(), route.to_owned());
        async move {
            let r = http.post(&format!("/api/v1/{route}"), &doc).await;
            assert!(r.status.is_success(), "{route}: {}", r.text());
        }
    };
    for folder in [
        "data-interfaces",
        "data-kinds",
        "data-source-definitions",
        "edge-gateways",
        "data-source-manifests",
        "analytics-processor-definitions",
    ] {
        for mut doc in common::example(folder) {
            let id = doc["id"].as_str().unwrap().to_owned();
            for b in 1..=3u32 {
                if id == format!("eg-ib{b}") {
                    doc["edgeAnalyticsEngineBaseURL"] =
                        json!(format!("{}/api", edges[b as usize - 1].http.base));
                }
                if id == format!("dsm-ib{b}-meter") {
                    // Replayed at 3600× real time; box 3 at half that.
                    let speed = if b == 3 { "1800" } else { "3600" };
                    doc["dataSourceDefinitionInterfaceParameters"]["parameter"] = json!([
                        {"key": "mode", "value": "replay"},
                        {"key": "file", "value": format!("replay/ib{b}.jsonl")},
                        {"key": "speed", "value": speed},
                    ]);
                }
            }
            post(folder, doc).await;
        }
    }
    // The uplink: the cloud's ingest endpoint, which the edges' webhooks post to.
    post(
        "data-interfaces",
        json!({"id": "di-http", "name": "HTTP", "communicationProtocol": "HTTP"}),
    )
    .await;
    post(
        "data-source-definitions",
        json!({"id": "dsd-statistics-over-http", "dataInterfaceReferenceID": "di-http",
            "dataKindReferenceIDs": {"dataKindReferenceID": ["dk-total-real-power", "dk-total-real-energy"]}}),
    )
    .await;
    let param = |k: &str, v: Json| json!({"key": k, "value": v});
    post(
        "data-source-manifests",
        json!({"id": "dsm-uplink", "name": "The edges' results, up to the cloud",
            "dataSourceDefinitionReferenceID": "dsd-statistics-over-http",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [
                param("host", json!("127.0.0.1")), param("port", json!(uplink)),
                param("path", json!("/ingest/uplink")),
                // Its senders: the gateways the global manifest names.
                param("url", json!(format!("http://127.0.0.1:{uplink}/ingest/uplink")))]}}),
    )
    .await;
    // The example's manifests, with the uplink where the single process used a table.
    let manifests: Vec<Json> = common::example("analytics-manifests")
        .into_iter()
        .map(|am| {
            let text = am
                .to_string()
                .replace("\"dsm-cloud-edge-results\"", "\"dsm-uplink\"");
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    let global = manifests.iter().find(|a| a["id"] == "am-global").unwrap();
    post("analytics-instances", global.clone()).await;
    let r = http
        .post_empty("/api/v1/analytics-instances/am-global/start")
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    for b in 1..=3u32 {
        let id = format!("am-ib{b}-edge");
        let am = manifests.iter().find(|a| a["id"] == id.as_str()).unwrap();
        post("analytics-instances", am.clone()).await;
        let r = http
            .post_empty(&format!("/api/v1/analytics-instances/{id}/start"))
            .await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    // Box 2's edge killed mid-run, and started again on its data directory.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let killed = edges.remove(1);
    let (data, port) = (killed.data_dir.clone(), killed.port);
    killed.kill();
    edges.insert(
        1,
        common::Process::start_with(&data, port, dir.path(), Some(&edge_config)).await,
    );
    let cloud_db = cloud.data_dir.join("dda-output/cloud.sqlite");
    let rows = || -> i64 {
        rusqlite::Connection::open(&cloud_db)
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM global_hourly_averages", [], |r| {
                    r.get(0)
                })
            })
            .unwrap_or(0)
    };
    let expected_edge = expected_edge(&readings);
    let expected_global = expected_global(&expected_edge, HOURS);
    common::eventually(90, "every global hour stored", || async {
        rows() >= expected_global.len() as i64
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        table(&cloud_db, "global_hourly_averages"),
        expected_global,
        "the global hourly averages of the three edges"
    );
    each_edge_holds_its_box(&expected_edge, |b| {
        edges[b as usize - 1]
            .data_dir
            .join(format!("dda-output/ib{b}-edge.sqlite"))
    });
    let dead =
        std::fs::read_to_string(cloud.data_dir.join("dead-letters.jsonl")).unwrap_or_default();
    assert!(dead.trim().is_empty(), "nothing late or lost: {dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_five_moments_and_a_graceful_stop_leave_exactly_the_results_of_an_uninterrupted_run()
 {
    const LONG: i64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("dda.toml");
    std::fs::write(&config, "checkpoint_interval = \"1s\"\n").unwrap();
    let readings = data_set_of(LONG);
    for b in 1..=3u32 {
        write_replay(&data.join(format!("replay/ib{b}.jsonl")), &readings, b);
    }
    let port = common::free_port();
    let mut server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
    let http = server.http.clone();
    common::load_models(&http, &data).await;
    for b in 1..=3u32 {
        let id = format!("dsm-ib{b}-meter");
        let mut dsm = common::example("data-source-manifests")
            .into_iter()
            .find(|d| d["id"] == id.as_str())
            .unwrap();
        // Replayed at 3600× real time: 30 hours in about 30 s.
        dsm["dataSourceDefinitionInterfaceParameters"]["parameter"] = json!([
            {"key": "mode", "value": "replay"},
            {"key": "file", "value": format!("replay/ib{b}.jsonl")},
            {"key": "speed", "value": "3600"},
        ]);
        let r = http
            .put(&format!("/api/v1/data-source-manifests/{id}"), &dsm)
            .await;
        assert!(r.status.is_success(), "{id}: {}", r.text());
    }
    let edges = ["am-ib1-edge", "am-ib2-edge", "am-ib3-edge"];
    for am in common::example("analytics-manifests")
        .into_iter()
        .filter(|a| edges.contains(&a["id"].as_str().unwrap()))
    {
        let r = http.post("/api/v1/analytics-instances", &am).await;
        assert!(r.status.is_success(), "{}", r.text());
        let r = http
            .post_empty(&format!(
                "/api/v1/analytics-instances/{}/start",
                am["id"].as_str().unwrap()
            ))
            .await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    let cloud = data.join("cloud.sqlite");
    let partial = || -> i64 {
        rusqlite::Connection::open(&cloud)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM edge_hourly_averages WHERE json_extract(attributes, '$.complete') = 0",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    // Killed at five moments spread over the run (seconds after the start), and stopped
    // gracefully at a sixth, each time at once restarted on the same data directory.
    let started = std::time::Instant::now();
    for at in [2.7, 7.9, 10.1, 12.3, 17.6, 23.1] {
        let due = std::time::Duration::from_secs_f64(at);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if at == 10.1 {
            // A graceful stop keeps the open hours in a last checkpoint: none is written
            // as partial.
            server.terminate();
            assert_eq!(partial(), 0, "a graceful stop wrote an open hour");
        } else {
            server.kill();
        }
        server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
    }
    let http = server.http.clone();
    let expected = expected_edge(&readings);
    let rows = |path: &Path, table: &str| -> i64 {
        rusqlite::Connection::open(path)
            .and_then(|c| c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
            .unwrap_or(0)
    };
    common::eventually(120, "every hour of every box stored", || async {
        rows(&cloud, "edge_hourly_averages") >= expected.len() as i64
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Exactly the uninterrupted run's: `table` refuses an hour stored twice.
    assert_eq!(table(&cloud, "edge_hourly_averages"), expected);
    for b in 1..=3u32 {
        let mine: BTreeMap<_, _> = expected
            .iter()
            .filter(|(k, _)| k.0 == format!("dsm-ib{b}-meter"))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(
            table(&data.join(format!("ib{b}-edge.sqlite")), "hourly_averages"),
            mine,
            "box {b}"
        );
    }
    assert_eq!(partial(), 0, "no partial hour");
    // The last start restored each instance from a checkpoint, and it checkpoints since.
    let metrics = http.get("/metrics").await.text();
    for am in edges {
        let doc = http
            .get(&format!("/api/v1/analytics-instances/{am}"))
            .await
            .json();
        assert!(
            doc["checkpoint"]["restoredFrom"].as_u64().is_some(),
            "{doc}"
        );
        let completed: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("dda_checkpoints_total{{instance=\"{am}\"}} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no checkpoint count of {am}: {metrics}"));
        assert!(completed > 0, "{am}");
    }
}

#[test]
fn a_run_stopped_part_way_goes_on_from_its_state_directory_to_exactly_the_full_results() {
    const LONG: i64 = 24;
    let dir = tempfile::tempdir().unwrap();
    let readings = data_set_of(LONG);
    let bundle = bundle(dir.path(), &readings);
    // At 3600x real time: 24 hours take about 24 s; the first run is stopped after 6.
    for b in 1..=3u32 {
        let path = bundle.join(format!("data-source-manifests/ib{b}-meter.json"));
        let mut dsm: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        dsm["dataSourceDefinitionInterfaceParameters"]["parameter"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "speed", "value": "3600"}));
        std::fs::write(&path, dsm.to_string()).unwrap();
    }
    let config = dir.path().join("dda.toml");
    std::fs::write(&config, "checkpoint_interval = \"1s\"\n").unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dda"))
            .args([
                "run",
                bundle.to_str().unwrap(),
                "--quiet",
                "--state-dir",
                "state",
            ])
            .arg("--config")
            .arg(&config)
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["--for", "6s"]);
    let cloud = dir.path().join("dda-output/cloud.sqlite");
    let partial = |db: &Path, table: &str| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE json_extract(attributes, '$.complete') = 0"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(
        partial(&cloud, "edge_hourly_averages") > 0,
        "the stop wrote its open hours as partial"
    );
    assert!(dir.path().join("state/am-ib1-edge.json").exists());
    // The second run goes on from the checkpoints to the end of the data: it reads only
    // what came after them.
    let summary = run(&[]);
    let per_box = readings.iter().filter(|r| r.0 == 1).count();
    let read: usize = summary
        .lines()
        .find_map(|l| l.strip_prefix("inputs read: "))
        .and_then(|l| l.split("dsm-ib1-meter (").nth(1))
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        read > 0 && read < per_box,
        "resumed, not started over: {read} of {per_box}"
    );
    let expected = expected_edge(&readings);
    assert_eq!(table(&cloud, "edge_hourly_averages"), expected);
    for b in 1..=3u32 {
        let db = dir.path().join(format!("dda-output/ib{b}-edge.sqlite"));
        assert_eq!(partial(&db, "hourly_averages"), 0, "box {b}");
        assert_eq!(
            table(&db, "hourly_averages").len(),
            expected.len() / 3,
            "box {b}"
        );
    }
    assert_eq!(
        partial(&cloud, "edge_hourly_averages"),
        0,
        "the final hours replaced the partial ones"
    );
}

/// The MQTT variant of the example: each box publishes its readings on its MQTT topic; the
/// edge engines store hourly averages in MongoDB and forward them over Kafka; the cloud
/// engine stores the averages across boxes in MongoDB. Run in-process against the shared
/// Mosquitto, Tansu and nx-27017, with names of its own.
mod over_mqtt {
    use std::time::Duration;

    use engine::{DataSource, Engine, EngineConfig, Plan};
    use mongodb::bson::{Document, doc};
    use rumqttc::{AsyncClient, MqttOptions, QoS};

    use super::*;

    /// The example bundle with topics, Kafka topic and database made unique.
    fn bundle(dir: &Path, tag: &str) -> PathBuf {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption-mqtt/bundle");
        let bundle = dir.join("bundle");
        copy_dir(&example, &bundle);
        for entry in std::fs::read_dir(bundle.join("data-source-manifests")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("far-edge/pilot-line/", &format!("dda-test/{tag}/"))
                .replace(
                    "far-edge.pilot-line.edge-hourly-averages",
                    &format!("dda-test-{tag}"),
                )
                .replace("\"pilot_line\"", &format!("\"pilot_{tag}\""));
            std::fs::write(&path, text).unwrap();
        }
        bundle
    }

    /// Documents of a collection as results.
    pub(super) async fn results(db: &mongodb::Database, collection: &str) -> Results {
        let mut cursor = db
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        while cursor.advance().await.unwrap() {
            let d: Document = cursor.deserialize_current().unwrap();
            let key = (
                d.get_str("source").unwrap().to_owned(),
                d.get_str("name").unwrap().to_owned(),
                d.get_datetime("timestamp").unwrap().timestamp_millis(),
            );
            let count = d.get_document("attributes").unwrap().get("count").unwrap();
            let count = count
                .as_i64()
                .or_else(|| count.as_i32().map(i64::from))
                .or_else(|| count.as_f64().map(|f| f as i64))
                .unwrap();
            let value = (d.get_f64("value").unwrap(), u64::try_from(count).unwrap());
            assert!(
                out.insert(key.clone(), value).is_none(),
                "{collection} holds {key:?} twice"
            );
        }
        out
    }

    /// The first `n` messages of a Kafka topic, as results' values.
    async fn kafka_topic(topic: &str, n: usize) -> BTreeMap<(String, String, i64), f64> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Message as _;
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let ctx = engine::codec::DecodeContext {
            dsm: engine::Sym::new("unknown"),
            default_name: engine::Sym::new("value"),
            default_kind: None,
        };
        let mut out = BTreeMap::new();
        let mut read = 0;
        while read < n {
            let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("the forwarded averages on Kafka")
                .unwrap();
            read += 1;
            let mut batch = Vec::new();
            engine::codec::decode_json(
                std::str::from_utf8(m.payload().unwrap()).unwrap(),
                &ctx,
                &mut batch,
            )
            .unwrap();
            for o in batch {
                let key = (
                    o.source.text().to_string(),
                    o.name.text().to_string(),
                    o.timestamp.as_micros() / 1000,
                );
                assert_eq!(m.key(), Some(o.source.text().as_bytes()), "keyed by source");
                assert!(
                    out.insert(key, o.value.to_json().as_f64().unwrap())
                        .is_none(),
                    "once each"
                );
            }
        }
        out
    }

    pub(super) fn live_data_set(b: u32, name: &str, t: i64, v: i64) -> Vec<u8> {
        json!({
            "id": format!("set-{b}-{name}-{t}"),
            "dataSourceManifestReferenceID": format!("dsm-ib{b}-meter"),
            "mobile": false,
            "timestamp": t,
            "observation": [{"name": name, "timestamp": t, "value": v}],
        })
        .to_string()
        .into_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn boxes_over_mosquitto_give_exact_hourly_averages_in_mongodb_and_on_kafka() {
        if !common::services::available("Mosquitto", 1883)
            || !common::services::available("Tansu (Kafka)", 9092)
            || !common::services::available("nx-27017 (MongoDB)", 27017)
        {
            return;
        }
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = tempfile::tempdir().unwrap();
        // Links the processor and connector catalogues into this test binary.
        assert!(!processors::catalogue().is_empty() && !connectors::catalogue().is_empty());
        let catalogue = engine::Catalogue::get();
        let (bundle, model) = manifests::load_and_validate(
            &[bundle(dir.path(), &tag)],
            &manifests::Options {
                catalogue: Some(catalogue),
                ..manifests::Options::default()
            },
        )
        .unwrap();
        assert!(!bundle.has_errors(), "{:#?}", bundle.diagnostics);
        let mut config = EngineConfig::default();
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
        let ams: Vec<String> = model
            .analytics_manifests
            .keys()
            .map(ToString::to_string)
            .collect();
        for am in ams.iter().rev() {
            engine
                .create(Plan::new(&model.analytics_manifests[am.as_str()], &model).unwrap())
                .unwrap();
            engine.start(am).await.unwrap();
        }
        for am in &ams {
            common::eventually(30, &format!("{am}'s connectors to connect"), || async {
                let s = engine.status(am).await.unwrap();
                s.connectors.iter().all(|c| c.link.connected)
            })
            .await;
        }

        let mongo = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017")
            .await
            .unwrap();
        let db = mongo.database(&format!("pilot_{tag}"));
        let mut options = MqttOptions::new(format!("boxes-{tag}"), "127.0.0.1", 1883);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 1000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });

        // Hour by hour, as the boxes would: each hour's averages close when the next hour's
        // first reading arrives; one reading after the last hour closes it.
        let readings = data_set();
        let closing: Vec<Reading> = (1..=3u32)
            .flat_map(|b| {
                let t = START_MS + HOURS * HOUR_MS;
                [
                    (b, "TotalRealPower", t, 0),
                    (b, "TotalRealEnergy", t + 1, 0),
                ]
            })
            .collect();
        for h in 0..=HOURS {
            let hour: Vec<&Reading> = readings
                .iter()
                .chain(&closing)
                .filter(|r| (r.2 - START_MS) / HOUR_MS == h)
                .collect();
            for (b, name, t, v) in hour {
                client
                    .publish(
                        format!("dda-test/{tag}/ib{b}/meter"),
                        QoS::AtLeastOnce,
                        false,
                        live_data_set(*b, name, *t, *v),
                    )
                    .await
                    .unwrap();
            }
            let closed = usize::try_from(2 * h).unwrap();
            common::eventually(30, &format!("the edges' averages of hour {h}"), || async {
                let mut all = 0;
                for b in 1..=3 {
                    all += results(&db, &format!("ib{b}_hourly_averages"))
                        .await
                        .len()
                        .min(closed);
                }
                all == 3 * closed
            })
            .await;
        }

        let expected_edge = expected_edge(&readings);
        let mut edges = BTreeMap::new();
        for b in 1..=3 {
            edges.extend(results(&db, &format!("ib{b}_hourly_averages")).await);
        }
        assert_eq!(
            edges, expected_edge,
            "the edges' hourly averages in MongoDB"
        );

        // What the edges forwarded over Kafka, read by a consumer of the test's own.
        let forwarded = kafka_topic(&format!("dda-test-{tag}"), expected_edge.len()).await;
        let values = |r: &Results| -> BTreeMap<(String, String, i64), f64> {
            r.iter().map(|(k, v)| (k.clone(), v.0)).collect()
        };
        assert_eq!(
            forwarded,
            values(&expected_edge),
            "the edges' averages on Kafka"
        );

        // In one process the cloud manifest reads the edges' results as they are forwarded,
        // with their event time: every hour closes.
        let expected_global = expected_global(&expected_edge, HOURS);
        common::eventually(60, "the cloud's averages", || async {
            results(&db, "global_hourly_averages").await.len() >= expected_global.len()
        })
        .await;
        assert_eq!(
            results(&db, "global_hourly_averages").await,
            expected_global,
            "the averages across boxes, from Kafka, in the cloud's MongoDB"
        );
        assert_eq!(engine.dead_letters().count(), 0);
        engine.shutdown().await;
        db.drop().await.unwrap();
    }
}

/// `dda serve` killed while the boxes' readings flow in from a real broker, with results
/// going to real databases: each box's hourly averages to a MongoDB collection of its own,
/// the forwarded ones of every box to one PostgreSQL table.
mod killed_beside_real_servers {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Replaces the example's meters with `meter(b)` read over `protocol` (declared with
    /// `parameters`), its edge databases with MongoDB collections in database `pilot_<tag>`
    /// and its cloud table with PostgreSQL table `t_<tag>` (database `test`); starts the
    /// three edge instances.
    async fn deploy(
        http: &common::Http,
        data: &Path,
        tag: &str,
        protocol: &str,
        parameters: &[(&str, &str)],
        meter: impl Fn(u32) -> Json,
    ) {
        common::load_models(http, data).await;
        let interface = |id: &str, protocol: &str, params: &[(&str, &str)]| {
            let parameter: Vec<Json> = params
                .iter()
                .map(|(name, t)| json!({"name": name, "dataType": t}))
                .collect();
            json!({"id": id, "communicationProtocol": protocol, "parameters": {"parameter": parameter}})
        };
        let kinds = json!({"dataKindReferenceID": ["dk-total-real-power", "dk-total-real-energy"]});
        for (di, dsd, protocol, params) in [
            ("di-meter-in", "dsd-meter-in", protocol, parameters),
            (
                "di-mongo",
                "dsd-in-mongo",
                "MongoDB",
                &[
                    ("host", "string"),
                    ("port", "int"),
                    ("database", "string"),
                    ("collection", "string"),
                ][..],
            ),
            (
                "di-postgres",
                "dsd-in-postgres",
                "PostgreSQL",
                &[
                    ("host", "string"),
                    ("port", "int"),
                    ("database", "string"),
                    ("table", "string"),
                ][..],
            ),
        ] {
            let r = http
                .post("/api/v1/data-interfaces", &interface(di, protocol, params))
                .await;
            assert!(r.status.is_success(), "{di}: {}", r.text());
            let r = http
                .post(
                    "/api/v1/data-source-definitions",
                    &json!({"id": dsd, "dataInterfaceReferenceID": di, "dataKindReferenceIDs": kinds}),
                )
                .await;
            assert!(r.status.is_success(), "{dsd}: {}", r.text());
        }
        let put = |id: String, dsd: &str, params: Json| {
            let mut dsm = common::example("data-source-manifests")
                .into_iter()
                .find(|d| d["id"] == id.as_str())
                .unwrap();
            dsm["dataSourceDefinitionReferenceID"] = json!(dsd);
            let parameter: Vec<Json> = params
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            dsm["dataSourceDefinitionInterfaceParameters"]["parameter"] = json!(parameter);
            async move {
                let r = http
                    .put(&format!("/api/v1/data-source-manifests/{id}"), &dsm)
                    .await;
                assert!(r.status.is_success(), "{id}: {}", r.text());
            }
        };
        for b in 1..=3u32 {
            put(format!("dsm-ib{b}-meter"), "dsd-meter-in", meter(b)).await;
            put(
                format!("dsm-ib{b}-edge-database"),
                "dsd-in-mongo",
                json!({"host": "127.0.0.1", "port": 27017, "database": format!("pilot_{tag}"), "collection": format!("ib{b}_hourly")}),
            )
            .await;
        }
        put(
            "dsm-cloud-edge-results".to_owned(),
            "dsd-in-postgres",
            json!({"host": "127.0.0.1", "port": 5432, "database": "test", "table": format!("t_{tag}")}),
        )
        .await;
        for am in EDGES {
            let doc = common::example("analytics-manifests")
                .into_iter()
                .find(|a| a["id"] == am)
                .unwrap();
            let r = http.post("/api/v1/analytics-instances", &doc).await;
            assert!(r.status.is_success(), "{}", r.text());
            let r = http
                .post_empty(&format!("/api/v1/analytics-instances/{am}/start"))
                .await;
            assert!(r.status.is_success(), "{}", r.text());
        }
    }

    const EDGES: [&str; 3] = ["am-ib1-edge", "am-ib2-edge", "am-ib3-edge"];

    /// Rows of a PostgreSQL result table, as [`table`] reads SQLite ones; the incomplete
    /// ones counted apart.
    async fn pg_table(table: &str) -> (Results, usize) {
        let (client, connection) = tokio_postgres::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let rows = client
            .query(
                &format!(
                    "SELECT source, name, (extract(epoch FROM ts) * 1000)::int8, value, attributes::text FROM {table}"
                ),
                &[],
            )
            .await
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        let mut incomplete = 0;
        for r in rows {
            let attributes: Json = serde_json::from_str(&r.get::<_, String>(4)).unwrap();
            if attributes["complete"] == json!(false) {
                incomplete += 1;
            }
            let key = (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
            );
            let value = (r.get::<_, f64>(3), attributes["count"].as_u64().unwrap());
            assert!(
                out.insert(key.clone(), value).is_none(),
                "{table} holds {key:?} twice"
            );
        }
        (out, incomplete)
    }

    /// Box `b`'s readings of hour `h`, as LiveDataSets (one per reading); at hour `long`,
    /// past the data set, the readings that close the last hour.
    fn hour_of(readings: &[Reading], b: u32, h: i64, long: i64) -> Vec<Vec<u8>> {
        if h == long {
            return closing(b, long);
        }
        readings
            .iter()
            .filter(|r| r.0 == b && (r.2 - START_MS) / HOUR_MS == h)
            .map(|(_, name, t, v)| over_mqtt::live_data_set(b, name, *t, *v))
            .collect()
    }

    /// Feeds the readings hour by hour through `send(box, payload)` (an hour every 700 ms,
    /// then one more reading per box that closes the last hour) while `dda serve` is
    /// killed at five moments and restarted; then checks the databases hold exactly the
    /// uninterrupted run's results.
    async fn killed_five_times<F, Fut>(
        tag: &str,
        protocol: &str,
        parameters: &[(&str, &str)],
        meter: impl Fn(u32) -> Json,
        send: F,
    ) where
        F: Fn(u32, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        const LONG: i64 = 24;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("dda.toml");
        std::fs::write(&config, "checkpoint_interval = \"1s\"\n").unwrap();
        let readings = data_set_of(LONG);
        let port = common::free_port();
        let mut server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
        deploy(&server.http, &data, tag, protocol, parameters, meter).await;
        connected(&server.http).await;
        let feeding = {
            let readings = readings.clone();
            tokio::spawn(async move {
                for h in 0..=LONG {
                    for b in 1..=3u32 {
                        for payload in hour_of(&readings, b, h, LONG) {
                            send(b, payload).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
            })
        };
        let started = std::time::Instant::now();
        for at in [1.9, 5.3, 8.2, 11.6, 14.9] {
            let due = Duration::from_secs_f64(at);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            server.kill();
            server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
        }
        feeding.await.unwrap();
        check(&server, tag, &expected_edge(&readings)).await;
        drop(server);
    }

    /// Waits until every edge instance's connectors are connected.
    async fn connected(http: &common::Http) {
        for am in EDGES {
            common::eventually(30, &format!("{am}'s connectors to connect"), || async {
                let doc = http
                    .get(&format!("/api/v1/analytics-instances/{am}"))
                    .await
                    .json();
                doc["connectors"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["connected"] == json!(true)))
            })
            .await;
        }
    }

    /// Box `b`'s first readings of hour `long`, which close the hour before.
    fn closing(b: u32, long: i64) -> Vec<Vec<u8>> {
        let t = START_MS + long * HOUR_MS;
        vec![
            over_mqtt::live_data_set(b, "TotalRealPower", t, 0),
            over_mqtt::live_data_set(b, "TotalRealEnergy", t + 1, 0),
        ]
    }

    /// Waits until PostgreSQL holds every forwarded hour, then checks it and each box's
    /// MongoDB collection hold exactly `expected` (each result once, none incomplete), and
    /// that every edge instance was restored from a checkpoint; drops the test's database.
    async fn check(server: &common::Process, tag: &str, expected: &Results) {
        let mongo = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017")
            .await
            .unwrap();
        let db = mongo.database(&format!("pilot_{tag}"));
        let table = format!("t_{tag}");
        common::eventually(120, "every hour of every box stored", || async {
            pg_table(&table).await.0.len() >= expected.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (cloud, incomplete) = pg_table(&table).await;
        assert_eq!(&cloud, expected, "the forwarded averages in PostgreSQL");
        assert_eq!(incomplete, 0, "no incomplete hour in PostgreSQL");
        for b in 1..=3u32 {
            let mine: Results = expected
                .iter()
                .filter(|(k, _)| k.0 == format!("dsm-ib{b}-meter"))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            common::eventually(30, &format!("box {b}'s hours in MongoDB"), || async {
                over_mqtt::results(&db, &format!("ib{b}_hourly"))
                    .await
                    .len()
                    >= mine.len()
            })
            .await;
            assert_eq!(
                over_mqtt::results(&db, &format!("ib{b}_hourly")).await,
                mine,
                "box {b} in MongoDB"
            );
        }
        for am in EDGES {
            let doc = server
                .http
                .get(&format!("/api/v1/analytics-instances/{am}"))
                .await
                .json();
            assert!(
                doc["checkpoint"]["restoredFrom"].as_u64().is_some(),
                "{doc}"
            );
        }
        db.drop().await.unwrap();
    }

    /// A tag for the test's names when the broker `(name, port)`, PostgreSQL and
    /// nx-27017 are there (outside CI, `None` skips the test when one is missing).
    fn servers_beside(broker: (&str, u16)) -> Option<String> {
        (common::services::available(broker.0, broker.1)
            && common::services::available("PostgreSQL", 5432)
            && common::services::available("nx-27017 (MongoDB)", 27017))
        .then(|| uuid::Uuid::new_v4().simple().to_string()[..10].to_owned())
    }

    /// The parameters of an MQTT meter, as its data interface declares them.
    const MQTT_PARAMETERS: &[(&str, &str)] = &[
        ("host", "string"),
        ("port", "int"),
        ("topic", "string"),
        ("qos", "int"),
        ("clientId", "string"),
    ];

    /// Box `b`'s meter over MQTT QoS 1 through the broker on `port`, with a client id
    /// of its own (a persistent session).
    fn mqtt_meter(tag: &str, port: u16) -> impl Fn(u32) -> Json + use<> {
        let tag = tag.to_owned();
        move |b: u32| {
            json!({"host": "127.0.0.1", "port": port, "topic": format!("dda-test/{tag}/ib{b}"),
                   "qos": 1, "clientId": format!("dda-{tag}-ib{b}")})
        }
    }

    /// The boxes' MQTT client, publishing to the shared Mosquitto.
    fn boxes(tag: &str) -> rumqttc::AsyncClient {
        let mut options = rumqttc::MqttOptions::new(format!("boxes-{tag}"), "127.0.0.1", 1883);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = rumqttc::AsyncClient::new(options, 1000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        client
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_at_five_moments_with_kafka_in_and_postgresql_and_mongodb_out_leaves_exactly_the_uninterrupted_results()
     {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let Some(tag) = servers_beside(("Tansu (Kafka)", 9092)) else {
            return;
        };
        let topic = {
            let tag = tag.clone();
            move |b: u32| format!("dda-test-{tag}-ib{b}")
        };
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .create()
            .unwrap();
        let topics: Vec<String> = (1..=3).map(topic.clone()).collect();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
            .collect();
        admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .unwrap();
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9092")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .create()
            .unwrap();
        let meter = {
            let topic = topic.clone();
            move |b: u32| json!({"brokers": "127.0.0.1:9092", "topic": topic(b), "partitions": 1})
        };
        let send = move |b: u32, payload: Vec<u8>| {
            let (producer, topic) = (producer.clone(), topic(b));
            async move {
                producer
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
            }
        };
        killed_five_times(
            &tag,
            "Kafka",
            &[
                ("brokers", "string"),
                ("topic", "string"),
                ("partitions", "int"),
            ],
            meter,
            send,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_at_five_moments_with_mqtt_qos_1_in_and_postgresql_and_mongodb_out_leaves_exactly_the_uninterrupted_results()
     {
        let Some(tag) = servers_beside(("Mosquitto", 1883)) else {
            return;
        };
        let meter = mqtt_meter(&tag, 1883);
        let client = boxes(&tag);
        let send = {
            let tag = tag.clone();
            move |b: u32, payload: Vec<u8>| {
                let (client, topic) = (client.clone(), format!("dda-test/{tag}/ib{b}"));
                async move {
                    client
                        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                        .await
                        .unwrap();
                }
            }
        };
        killed_five_times(&tag, "MQTT", MQTT_PARAMETERS, meter, send).await;
    }

    /// A TCP proxy to the shared Mosquitto that, while `drop` is set, drops the PUBACKs
    /// its clients send (so the broker never hears of them). Returns its port.
    async fn puback_eater(drop: Arc<AtomicBool>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = tokio::net::TcpStream::connect("127.0.0.1:1883").await else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_broker, mut to_broker) = broker.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
                });
                let drop = drop.clone();
                tokio::spawn(async move {
                    // MQTT framing: a type byte, the remaining length (7 bits a byte), the rest.
                    loop {
                        let Ok(kind) = from_client.read_u8().await else {
                            return;
                        };
                        let mut header = vec![kind];
                        let (mut len, mut shift) = (0usize, 0);
                        loop {
                            let Ok(b) = from_client.read_u8().await else {
                                return;
                            };
                            header.push(b);
                            len |= usize::from(b & 0x7f) << shift;
                            shift += 7;
                            if b & 0x80 == 0 {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        if from_client.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        if kind >> 4 == 4 && drop.load(Ordering::SeqCst) {
                            continue;
                        }
                        header.extend_from_slice(&body);
                        if to_broker.write_all(&header).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// The broker sends again, flagged as duplicates, the messages the engine logged but
    /// whose acknowledgements it never heard of (eaten by a proxy, then the engine killed):
    /// the engine keeps each once, and the results are exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_the_broker_sends_again_after_lost_acknowledgements_and_a_sigkill_count_once()
    {
        let Some(tag) = servers_beside(("Mosquitto", 1883)) else {
            return;
        };
        const LONG: i64 = 4;
        let eat = Arc::new(AtomicBool::new(false));
        let proxy = puback_eater(eat.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("dda.toml");
        std::fs::write(&config, "checkpoint_interval = \"1s\"\n").unwrap();
        let port = common::free_port();
        let server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
        deploy(
            &server.http,
            &data,
            &tag,
            "MQTT",
            MQTT_PARAMETERS,
            mqtt_meter(&tag, proxy),
        )
        .await;
        connected(&server.http).await;
        let client = boxes(&tag);
        let readings = data_set_of(LONG);
        eat.store(true, Ordering::SeqCst);
        for h in 0..=LONG {
            for b in 1..=3u32 {
                for payload in hour_of(&readings, b, h, LONG) {
                    client
                        .publish(
                            format!("dda-test/{tag}/ib{b}"),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await
                        .unwrap();
                }
            }
        }
        // The engine logs what the broker lets through unacknowledged (its in-flight
        // window), and waits for the rest; its sources show their input logs.
        for b in 1..=3u32 {
            common::eventually(30, &format!("box {b}'s input log"), || async {
                let doc = server
                    .http
                    .get(&format!("/api/v1/analytics-instances/am-ib{b}-edge"))
                    .await
                    .json();
                doc["connectors"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["role"] == "source" && c["queue"]["observations"].as_u64() > Some(0)
                    })
                })
            })
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.kill();
        eat.store(false, Ordering::SeqCst);
        let server = common::Process::start_with(&data, port, dir.path(), Some(&config)).await;
        let expected = expected_edge(&readings);
        check(&server, &tag, &expected).await;
        drop(server);
    }
}

/// The fleet example with its one command, `dda fleet`: a cloud and three edge engines
/// started on loopback, every model and manifest created through the cloud's API, one
/// template deployed to the three gateways by its selector, each copy reading its own box;
/// the boxes replay the known data set; the cloud's global hourly averages (over the
/// embedded HTTP uplink, authenticated with a token `dda fleet` made up) equal the values
/// computed here, exactly, and each edge's database holds its own box's.
#[test]
fn the_fleet_example_runs_with_one_command_and_its_global_averages_are_exact() {
    fleet_example("power-consumption-fleet", false, &|uplink, port| {
        for p in uplink["dataSourceDefinitionInterfaceParameters"]["parameter"]
            .as_array_mut()
            .unwrap()
        {
            match p["key"].as_str().unwrap() {
                "port" => p["value"] = json!(port),
                "url" => p["value"] = json!(format!("http://127.0.0.1:{port}/ingest/uplink")),
                _ => {}
            }
        }
    });
}

/// Its variant over MQTT (Mosquitto on 1883): each edge publishes to its gateway's topic,
/// passing its event time on; the cloud subscribes to every gateway's and keeps event time
/// per gateway: with box 3 replaying at half the others' speed, the same exact results
/// (with one event time for all, box 3's results would be late).
#[test]
fn the_fleet_example_over_mqtt_gives_the_same_exact_averages() {
    let topic = format!(
        "dda-test-{}/uplink/{{gateway}}",
        uuid::Uuid::new_v4().simple()
    );
    fleet_example("power-consumption-fleet-mqtt", true, &|uplink, _| {
        for p in uplink["dataSourceDefinitionInterfaceParameters"]["parameter"]
            .as_array_mut()
            .unwrap()
        {
            if p["key"] == "topic" {
                p["value"] = json!(topic);
            }
        }
    });
}

/// Runs example `name` with `dda fleet` on free ports (`edit_uplink` is given the uplink
/// data source manifest and a free port), each box replaying the known data set (box 3 at
/// half speed when `slow`), and checks every table.
fn fleet_example(name: &str, slow: bool, edit_uplink: &dyn Fn(&mut Json, u16)) {
    let dir = tempfile::tempdir().unwrap();
    let readings = data_set();
    let bundle = dir.path().join("bundle");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        &bundle,
    );
    // Free ports where the example has fixed ones: the cloud, three edges, the uplink.
    let ports = common::free_ports(5);
    let edit = |file: &str, change: &dyn Fn(&mut Json)| {
        let path = bundle.join(file);
        let mut doc: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut doc);
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    };
    let fleet = dir.path().join("fleet");
    for b in 1..=3u32 {
        let port = ports[b as usize];
        edit(&format!("edge-gateways/ib{b}.json"), &|g| {
            g["edgeAnalyticsEngineBaseURL"] = json!(format!("http://127.0.0.1:{port}/api"));
        });
        edit(&format!("data-source-manifests/ib{b}-meter.json"), &|d| {
            let speed = if slow && b == 3 { "1800" } else { "3600" };
            d["dataSourceDefinitionInterfaceParameters"]["parameter"] = json!([
                {"key": "mode", "value": "replay"},
                {"key": "file", "value": format!("replay/ib{b}.jsonl")},
                {"key": "speed", "value": speed},
            ]);
        });
        // Each edge's data directory holds its box's recording.
        write_replay(
            &fleet.join(format!("eg-ib{b}/replay/ib{b}.jsonl")),
            &readings,
            b,
        );
    }
    edit("data-source-manifests/uplink.json", &|d| {
        edit_uplink(d, ports[4])
    });
    let out = Command::new(env!("CARGO_BIN_EXE_dda"))
        .arg("fleet")
        .arg(&bundle)
        .args([
            "--for",
            if slow { "18s" } else { "12s" },
            "--speed",
            "3600",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", ports[0]))
        .arg("--data-dir")
        .arg(&fleet)
        .env_remove("DDA_SECRET_UPLINK")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ran a fleet of a cloud and 3 edge engine(s)")
            && stdout.contains("dead letters: cloud 0, eg-ib1 0, eg-ib2 0, eg-ib3 0"),
        "{stdout}"
    );
    assert!(
        stderr.contains("am-box-edge: 3 of 3 gateways running"),
        "{stderr}"
    );
    let expected_edge = expected_edge(&readings);
    assert_eq!(
        table(
            &fleet.join("cloud/dda-output/cloud.sqlite"),
            "global_hourly_averages"
        ),
        expected_global(&expected_edge, HOURS),
        "the global hourly averages of the three edges"
    );
    each_edge_holds_its_box(&expected_edge, |b| {
        fleet.join(format!("eg-ib{b}/dda-output/ib{b}-edge.sqlite"))
    });
    // The cloud keeps every edge result, stamped with the gateway it came from.
    let conn = rusqlite::Connection::open(fleet.join("cloud/dda-output/cloud.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT source, attributes FROM edge_hourly_averages")
        .unwrap();
    let stamped: Vec<(String, String)> = stmt
        .query_map([], |r| {
            let attributes: String = r.get(1)?;
            let a: Json = serde_json::from_str(&attributes).unwrap();
            Ok((
                r.get(0)?,
                a["gateway"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stamped.len(), expected_edge.len());
    for (source, gateway) in stamped {
        assert_eq!(
            source.replace("dsm-ib", "eg-ib").replace("-meter", ""),
            gateway
        );
    }
}
