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

const HOURS: i64 = 6;
const PER_HOUR: i64 = 16;
const START_MS: i64 = 1_527_120_000_000; // 2018-05-24T00:00:00Z
const HOUR_MS: i64 = 3_600_000;

/// One reading: (box, quantity, epoch ms, value).
type Reading = (u32, &'static str, i64, i64);

/// A deterministic, irregular data set: each hour has 16 slots of 225 s; each reading lies
/// somewhere in its slot (the first of each hour exactly on the hour).
fn data_set() -> Vec<Reading> {
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
        for h in 0..HOURS {
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

/// The example bundle with each box's meter replaced by a replay of its part of the data
/// set, written as the paper's LiveDataSets (Table 7), one per line.
fn bundle(dir: &Path, readings: &[Reading]) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption/json");
    let bundle = dir.join("bundle");
    copy_dir(&example, &bundle);
    for b in 1..=3u32 {
        let file = dir.join(format!("ib{b}.jsonl"));
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
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
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

    // Independently: per box, quantity and hour [h, h+1), the mean of the readings.
    let mut sums: BTreeMap<(u32, &str, i64), (i64, u64)> = BTreeMap::new();
    for (b, name, t, v) in &readings {
        let end = (t - START_MS) / HOUR_MS * HOUR_MS + HOUR_MS + START_MS;
        let e = sums.entry((*b, *name, end)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    assert_eq!(sums.len() as i64, 3 * 2 * HOURS);
    let expected_edge: BTreeMap<(String, String, i64), (f64, u64)> = sums
        .iter()
        .map(|((b, name, end), (sum, n))| {
            (
                (format!("dsm-ib{b}-meter"), (*name).to_owned(), *end),
                (*sum as f64 / *n as f64, *n),
            )
        })
        .collect();

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

    // The global averages: per quantity and hour, the mean of the three boxes' means.
    let mut expected_global = BTreeMap::new();
    for name in ["TotalRealPower", "TotalRealEnergy"] {
        for h in 1..=HOURS {
            let end = START_MS + h * HOUR_MS;
            let means: Vec<f64> = (1..=3)
                .map(|b| expected_edge[&(format!("dsm-ib{b}-meter"), name.to_owned(), end)].0)
                .collect();
            expected_global.insert(
                ("dsm-global-hourly".to_owned(), name.to_owned(), end),
                ((means[0] + means[1] + means[2]) / 3.0, 3),
            );
        }
    }
    assert_eq!(
        table(&cloud, "global_hourly_averages"),
        expected_global,
        "global hourly averages across the boxes"
    );
}
