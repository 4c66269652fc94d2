//! The `dda` command line: exit statuses, output formats, and the commands' contracts.

#![allow(
    clippy::unwrap_used,
    reason = "a test or benchmark fails loudly on the first surprise"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

fn dda(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("dda runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_exits_zero_for_the_example_in_either_syntax() {
    for path in [
        "examples/power-consumption",
        "examples/power-consumption/json",
        "examples/power-consumption/xml",
    ] {
        let o = dda(&["validate", path]);
        assert_eq!(o.status.code(), Some(0), "{path}: {}", stdout(&o));
        assert!(stdout(&o).starts_with("valid: "), "{}", stdout(&o));
    }
}

#[test]
fn validate_exits_one_with_every_diagnostic_and_two_on_io_errors() {
    let o = dda(&["validate", "tests/fixtures/broken/parameters.json"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for code in [
        "parameter-value",
        "parameter-type",
        "unknown-parameter",
        "missing-parameter",
    ] {
        assert!(out.contains(&format!("error[{code}]")), "{out}");
    }
    assert!(
        out.contains("tests/fixtures/broken/parameters.json:33:21"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("4 errors (0 warnings)"), "{out}");
    assert!(out.contains("invalid: 1 document with"), "{out}");

    let o = dda(&["validate", "no/such/path"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read no/such/path"));
    let o = dda(&["validate"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "missing arguments are a usage error"
    );
}

#[test]
fn validate_locates_every_problem_of_cir_documents_in_json_and_xml_and_never_prints_a_password() {
    for file in [
        "tests/fixtures/broken/cir.json",
        "tests/fixtures/broken/cir.xml",
    ] {
        let o = dda(&["validate", "--format", "json", file]);
        assert_eq!(o.status.code(), Some(1), "{file}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut found: Vec<(String, String)> = report["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["code"].as_str().unwrap().to_owned(),
                    d["pointer"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        let expected = [
            ("cycle", "/objects/object/1/parentObjectReferenceID"),
            ("cycle", "/objects/object/2/parentObjectReferenceID"),
            ("dangling-reference", "/links/link/2/repositoryReferenceID"),
            ("duplicate-link", "/links/link/0/localID"),
            ("duplicate-link", "/links/link/1/localID"),
            ("missing-field", "/repositories/repository/1"),
            ("not-a-uuid", "/objects/object/0/id"),
            ("plain-text-secret", "/repositories/repository/0/password"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(c, p)| ((*c).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(found, expected, "{file}");
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("hunter2"),
            "{file}"
        );
        let human = dda(&["validate", file]);
        assert!(!String::from_utf8_lossy(&human.stderr).contains("hunter2"));
        assert!(!String::from_utf8_lossy(&human.stdout).contains("hunter2"));
    }
}

#[test]
fn validate_json_format_is_machine_readable() {
    let o = dda(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/broken/dangling-reference.json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 2);
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "dangling-reference");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 13);
    assert_eq!(d["column"], 56);
    assert_eq!(
        d["pointer"],
        "/dataSourceDefinitions/dataSourceDefinition/0/dataKindReferenceIDs/dataKindReferenceID/0"
    );
    assert_eq!(d["hint"], "did you mean `dk-power`?");
    assert!(
        d["file"]
            .as_str()
            .unwrap()
            .ends_with("dangling-reference.json")
    );
}

#[test]
fn warnings_alone_leave_a_bundle_valid_and_secrets_unprinted() {
    let o = dda(&["validate", "tests/fixtures/broken/plain-text-password.json"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("warning[plain-text-secret]"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let o = dda(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/broken/plain-text-password.json",
    ]);
    assert!(!stdout(&o).contains("hunter2"));
}

#[test]
fn schema_prints_every_entity_in_both_languages() {
    for name in [
        "data-interface",
        "DataKind",
        "DSD",
        "dataSourceManifest",
        "data-consumer-manifest",
        "DCD",
        "edge-gateway",
        "APD",
        "APM",
        "AM",
        "live-data-set",
        "observation",
        "bundle",
    ] {
        let o = dda(&["schema", name]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let o = dda(&["schema", "--format", "xsd", name]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        assert!(stdout(&o).contains("<xs:schema"));
    }
    let o = dda(&["schema", "data-interfase"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `data-interface`?"));
}

#[test]
fn convert_writes_one_document_to_stdout_and_a_directory_to_a_tree() {
    let o = dda(&[
        "convert",
        "--to",
        "xml",
        "tests/fixtures/paper/table-1-data-interface.json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let xml = stdout(&o);
    assert!(xml.contains("<dataInterface>"));
    assert!(
        xml.contains("<defaultValue type=\"number\">1883</defaultValue>"),
        "{xml}"
    );

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("xml");
    let o = dda(&[
        "convert",
        "--to",
        "xml",
        "examples/power-consumption/json",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = dda(&["validate", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        PathBuf::from(&target)
            .join("analytics-manifests/global.xml")
            .exists()
    );

    let o = dda(&[
        "convert",
        "--to",
        "json",
        "tests/fixtures/broken/malformed.xml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error[xml-syntax]"));
    let o = dda(&["convert", "--to", "xml", "examples/power-consumption/json"]);
    assert_eq!(o.status.code(), Some(2), "a directory needs --output");
}

/// The example of the `external` processor, end to end: `dda run --config` starts the Python
/// scorer it allows, and the z-scores written match ones computed here from the inputs.
#[test]
fn run_scores_the_external_python_example_with_its_configured_program() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples/external-python");
    let dir = tempfile::tempdir().unwrap();
    // The example's dda.toml names the script relative to the repository root; here the
    // working directory is a temporary one, so the same entry names it absolutely.
    let config = std::fs::read_to_string(example.join("dda.toml"))
        .unwrap()
        .replace(
            "\"examples/external-python/scorer.py\"",
            &format!("{:?}", example.join("scorer.py").to_str().unwrap()),
        );
    std::fs::write(dir.path().join("dda.toml"), config).unwrap();
    let run = |config: bool| {
        let mut args = vec!["run", "--speed", "max", "--quiet"];
        if config {
            args.extend(["--config", "dda.toml"]);
        }
        Command::new(env!("CARGO_BIN_EXE_dda"))
            .args(args)
            .arg(example.join("bundle"))
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };

    let refused = run(false);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("allows no external programs"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let o = run(true);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written =
        std::fs::read_to_string(dir.path().join("dda-output/motor-zscores.jsonl")).unwrap();
    let results: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["observation"][0].clone())
        .collect();
    assert_eq!(results.len(), 600, "one score per reading");
    // Rolling z-score against the previous 30 inputs, two-pass sample deviation.
    let mut past: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let mut anomalies = 0;
    for r in &results {
        assert_eq!(r["name"], "MotorCurrent-zscore");
        let x = r["input"].as_f64().unwrap();
        let n = past.len() as f64;
        let expected = if past.len() >= 2 {
            let mean = past.iter().sum::<f64>() / n;
            let sd = (past.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            if sd > 0.0 { (x - mean) / sd } else { 0.0 }
        } else {
            0.0
        };
        let z = r["value"].as_f64().unwrap();
        assert!((z - expected).abs() < 1e-9, "{r}: expected {expected}");
        assert_eq!(r["anomaly"], expected.abs() > 3.0, "{r}");
        anomalies += usize::from(expected.abs() > 3.0);
        past.push_back(x);
        if past.len() > 30 {
            past.pop_front();
        }
    }
    assert!(anomalies < 600, "{anomalies}");
}

/// `dda processors` lists the whole catalogue; its JSON form is a bundle of APDs that
/// validates as it is.
#[test]
fn processors_lists_the_catalogue_as_definitions_that_validate() {
    let o = dda(&["processors"]);
    assert_eq!(o.status.code(), Some(0));
    let human = stdout(&o);
    for kind in [
        "average",
        "percentile",
        "integral",
        "trend",
        "rul",
        "threshold",
        "zscore",
        "vibration",
        "external",
        "onnx",
    ] {
        assert!(
            human.contains(&format!("\n{kind} (")) || human.starts_with(&format!("{kind} (")),
            "{kind} is listed"
        );
    }
    assert!(human.contains("windowType"), "window parameters are listed");

    let o = dda(&["processors", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let apds = doc["analyticsProcessorDefinitions"]["analyticsProcessorDefinition"]
        .as_array()
        .unwrap();
    assert!(apds.len() >= 29, "{} definitions", apds.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apds.json");
    std::fs::write(&file, &o.stdout).unwrap();
    let o = dda(&["validate", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Runs an example's bundle with `dda run --speed max --quiet` in a temporary working
/// directory holding `files` (copied from the repository at the same relative paths), and
/// returns that directory.
fn run_example(bundle: &str, files: &[&str]) -> tempfile::TempDir {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), to).unwrap();
    }
    run_in(&dir, &[root.join(bundle)]);
    dir
}

/// `dda run --speed max --quiet PATHS` in `dir`, which must succeed; its output.
fn run_in(dir: &tempfile::TempDir, paths: &[PathBuf]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", "--speed", "max", "--quiet"])
        .args(paths)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn run_from_another_directory_says_where_a_relative_input_path_was_looked_for() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", "--speed", "max", "--quiet"])
        .arg(root.join("examples/mass-customization/bundle"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "every instance failed");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("cannot read examples/mass-customization/orders.jsonl"),
        "{out}"
    );
    says_where_relative_paths_are_read(&out, dir.path());
}

/// That `out` says a relative path is read from the working directory, `dir`.
fn says_where_relative_paths_are_read(out: &str, dir: &std::path::Path) {
    let cwd = dir.canonicalize().unwrap();
    assert!(
        out.contains(&format!(
            "a relative path is read from the working directory, {}",
            cwd.display()
        )),
        "{out}"
    );
}

/// `dda ARGS` run in `dir`.
fn dda_in(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The observations of a JSON-lines file sink, one LiveDataSet per line.
fn results(dir: &tempfile::TempDir, file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.path().join("dda-output").join(file))
        .unwrap()
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["observation"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn micros(timestamp: &serde_json::Value) -> i64 {
    engine::Timestamp::parse(timestamp.as_str().unwrap())
        .unwrap()
        .as_micros()
}

/// Runs the predictive-maintenance example in a new folder: its CIR script first (with
/// `setup` arguments), then the bundle with the repositories of `cir/<variant>`.
fn run_predictive_maintenance(variant: &str, setup: &[&str]) -> tempfile::TempDir {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples/predictive-maintenance");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .arg(example.join("cir/setup.py"))
        .args(setup)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_in(
        &dir,
        &[example.join("bundle"), example.join("cir").join(variant)],
    );
    // Every reading found its records: no processor counted a missing or unreachable one.
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(!summary.contains("(enrich):"), "{summary}");
    dir
}

/// What the example's CIR links to the spindle, from the SQLite files its script wrote:
/// the attributes its RUL and alerts must carry.
fn spindle_records(dir: &std::path::Path) -> serde_json::Value {
    let cris = rusqlite::Connection::open(dir.join("dda-output/cir/cris.sqlite")).unwrap();
    let erp = rusqlite::Connection::open(dir.join("dda-output/cir/erp.sqlite")).unwrap();
    let text =
        |c: &rusqlite::Connection, q: &str| -> String { c.query_row(q, [], |r| r.get(0)).unwrap() };
    let interval: i64 = cris
        .query_row(
            "SELECT maintenance_interval_days FROM cris_asset WHERE asset_id = 'SP-3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::json!({
        "asset": text(&cris, "SELECT name FROM cris_asset WHERE asset_id = 'SP-3'"),
        "serialNumber": text(&erp, "SELECT serial_number FROM erp_equipment WHERE equipment_no = '10004711'"),
        "lastMaintenance": text(&cris, "SELECT last_maintenance FROM cris_asset_maintenance WHERE asset_id = 'SP-3'"),
        "maintenanceIntervalDays": interval,
        "measurementLocation": text(&cris, "SELECT name FROM cris_meas_location WHERE meas_loc_id = 'SP-3-H1'"),
    })
}

/// The attributes of `o` named in `expected`.
fn picked(o: &serde_json::Value, expected: &serde_json::Value) -> serde_json::Value {
    expected
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), o[k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[test]
fn the_predictive_maintenance_examples_alerts_carry_the_spindles_records_from_postgres_and_mongodb()
{
    if !common::services::available("PostgreSQL", 5432)
        || !common::services::available("nx-27017 (MongoDB)", 27017)
    {
        return;
    }
    // The maintenance database in PostgreSQL, the ERP in MongoDB; the SQLite files are
    // written too, as the reference of what the records hold.
    let dir = run_predictive_maintenance(
        "servers",
        &[
            "--sqlite",
            "dda-output/cir",
            "--postgres",
            "postgresql://postgres@127.0.0.1:5432/test",
            "--mongodb",
            "mongodb://127.0.0.1:27017",
        ],
    );
    let expected = spindle_records(dir.path());
    for file in ["spindle-alerts.jsonl", "spindle-rul.jsonl"] {
        let out = results(&dir, file);
        assert!(!out.is_empty(), "{file}");
        for o in &out {
            assert_eq!(picked(o, &expected), expected, "{file}: {o}");
        }
    }
}

#[test]
fn run_finds_the_predictive_maintenance_examples_wear_and_remaining_life() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bundle = "examples/predictive-maintenance/bundle";
    let dir = run_predictive_maintenance("sqlite", &[]);
    // The alert and every RUL carry the spindle's records, through the CIR: its asset's
    // (the parent of the measurement location the DSM names) in the maintenance database
    // and the ERP.
    let expected = spindle_records(dir.path());
    assert_eq!(expected["serialNumber"], "KS-090-22-4711");
    for file in ["spindle-alerts.jsonl", "spindle-rul.jsonl"] {
        for o in &results(&dir, file) {
            assert_eq!(picked(o, &expected), expected, "{file}: {o}");
        }
    }
    // The raw accelerometer's features are not enriched.
    assert!(
        results(&dir, "spindle-features.jsonl")[0]
            .get("serialNumber")
            .is_none()
    );

    // The simulator's counter series, from the DSM itself.
    let dsm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join(bundle)
                .join("data-source-manifests/spindle-vibration.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let param = |key: &str| {
        dsm["dataSourceDefinitionInterfaceParameters"]["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap()["value"]
            .clone()
    };
    let start = micros(&param("start"));
    let interval = i64::try_from(
        manifests::parameters::parse_duration(param("interval").as_str().unwrap())
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let readings = param("readings").as_u64().unwrap();
    let series = &param("series")[0];
    assert_eq!(series["model"], "counter");
    let (first, step) = (
        series["start"].as_f64().unwrap(),
        series["step"].as_f64().unwrap(),
    );
    let last_reading = start + (i64::try_from(readings).unwrap() - 1) * interval;

    // threshold GT 4.5 for PT5M: the first reading above 4.5, then the first one at least
    // five minutes later (the counter only rises, so the condition holds from there on).
    let mut value = first;
    let mut k = 0_i64;
    while value <= 4.5 {
        value += step;
        k += 1;
    }
    let since = start + k * interval;
    let raised = since + (300_000_000 + interval - 1) / interval * interval;
    let alerts = results(&dir, "spindle-alerts.jsonl");
    assert_eq!(alerts.len(), 1, "raised once, never cleared: {alerts:?}");
    assert_eq!(alerts[0]["state"], "raised");
    assert_eq!(micros(&alerts[0]["since"]), since, "{}", alerts[0]);
    assert_eq!(micros(&alerts[0]["timestamp"]), raised, "{}", alerts[0]);
    assert!(alerts[0]["value"].as_f64().unwrap() > 4.5);

    // RUL: one per hourly hop, finite, falling by an hour per hour while the windows
    // advance over the readings, and matching the straight line the counter draws.
    let rul = results(&dir, "spindle-rul.jsonl");
    assert!(rul.len() >= 48, "{}", rul.len());
    let slope_per_hour = step * 3_600_000_000.0 / interval as f64;
    let mut previous = f64::INFINITY;
    for r in &rul {
        let hours = r["value"].as_f64().unwrap_or_else(|| panic!("{r}"));
        assert!(hours.is_finite() && hours > 0.0, "{r}");
        let end = micros(&r["windowEnd"]).min(last_reading + interval);
        let now = end - interval; // the window's last reading
        let level = first + step * ((now - start) / interval) as f64;
        let expected = (7.1 - level) / slope_per_hour;
        assert!((hours - expected).abs() < 1e-6, "{r}: expected {expected}");
        if end <= last_reading {
            assert!(hours < previous, "{r} after {previous}");
        } else {
            assert!(hours <= previous + 1e-9, "{r} after {previous}");
        }
        previous = hours;
    }
    assert!(previous < 5.0, "the last RUL approaches 0: {previous}");
}

#[test]
fn run_averages_the_mass_customization_examples_assembly_times_per_variant() {
    let orders_file = "examples/mass-customization/orders.jsonl";
    let dir = run_example("examples/mass-customization/bundle", &[orders_file]);

    // The shipped order log, grouped by variant and hour.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut by_hour: std::collections::BTreeMap<(String, String), Vec<f64>> =
        std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(root.join(orders_file)).unwrap();
    for line in text.lines() {
        let order: serde_json::Value = serde_json::from_str(line).unwrap();
        let hour = order["timestamp"].as_str().unwrap()[..13].to_owned();
        let variant = order["productType"].as_str().unwrap().to_owned();
        by_hour
            .entry((hour, variant))
            .or_default()
            .push(order["value"].as_f64().unwrap());
    }
    assert!(by_hour.len() > 20);

    let averages = results(&dir, "assembly-time-average.jsonl");
    assert_eq!(averages.len(), by_hour.len(), "one per variant and hour");
    let counts = results(&dir, "orders-per-hour.jsonl");
    assert_eq!(counts.len(), by_hour.len());
    for (results, average) in [(&averages, true), (&counts, false)] {
        for r in results {
            let hour = r["windowStart"].as_str().unwrap()[..13].to_owned();
            let variant = r["productType"].as_str().unwrap().to_owned();
            let values = &by_hour[&(hour, variant)];
            let expected = if average {
                values.iter().sum::<f64>() / values.len() as f64
            } else {
                values.len() as f64
            };
            let got = r["value"].as_f64().unwrap();
            assert!((got - expected).abs() < 1e-9, "{r}: expected {expected}");
        }
    }
    let percentiles = results(&dir, "assembly-time-percentiles.jsonl");
    assert_eq!(percentiles.len(), by_hour.len());
    assert!(
        percentiles
            .iter()
            .all(|p| p["value"]["p50"].as_f64().unwrap() <= p["value"]["p95"].as_f64().unwrap())
    );
    let batches = results(&dir, "orders-per-batch.jsonl");
    let orders: f64 = batches.iter().map(|b| b["value"].as_f64().unwrap()).sum();
    assert_eq!(
        orders as usize,
        text.lines().count(),
        "every order in one batch run"
    );
    assert!(!results(&dir, "long-assemblies.jsonl").is_empty());
}

#[test]
fn validate_finds_a_replay_file_that_does_not_exist_and_a_reference_in_a_parameter_that_is_no_secret()
 {
    let dir = tempfile::tempdir().unwrap();
    let bundle = serde_json::json!({"kind": "Bundle",
        "dataInterfaces": {"dataInterface": [
            {"id": "di-sim", "communicationProtocol": "Simulator"},
            {"id": "di-mqtt", "communicationProtocol": "MQTT"}]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "x", "quantityKind": "x"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"},
            {"id": "dsd-mqtt", "dataInterfaceReferenceID": "di-mqtt", "dataKindReferenceID": "dk"}]},
        "dataSourceManifests": {"dataSourceManifest": [
            {"id": "replayed", "dataSourceDefinitionReferenceID": "dsd-sim",
             "dataSourceDefinitionInterfaceParameters": {"parameter": [
                 {"key": "mode", "value": "replay"}, {"key": "file", "value": "readings/missing.csv"}]}},
            {"id": "out", "dataSourceDefinitionReferenceID": "dsd-mqtt",
             "dataSourceDefinitionInterfaceParameters": {"parameter": [
                 {"key": "topic", "value": "t"}, {"key": "username", "value": "${env:USER}"}]}}]},
    });
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle.to_string()).unwrap();
    let o = dda_in(dir.path(), &["validate".as_ref(), path.as_os_str()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[missing-file]: cannot read readings/missing.csv: no such file"),
        "{out}"
    );
    says_where_relative_paths_are_read(&out, dir.path());
    assert!(
        out.contains("error[reference-not-allowed]: parameter `username` is not a secret"),
        "{out}"
    );
    // Once the file is there, it is only the reference.
    std::fs::create_dir_all(dir.path().join("readings")).unwrap();
    std::fs::write(dir.path().join("readings/missing.csv"), "timestamp,value\n").unwrap();
    let o = dda_in(dir.path(), &["validate".as_ref(), path.as_os_str()]);
    let out = stdout(&o);
    assert!(!out.contains("missing-file"), "{out}");
    assert!(out.contains("reference-not-allowed"), "{out}");
}

#[test]
fn validate_checks_connector_parameters_with_located_did_you_mean_hints() {
    let o = dda(&["validate", "tests/fixtures/connectors/misspelled.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    // The data interface declares a parameter its connector does not read.
    assert!(
        out.contains("error[unknown-parameter]: the MQTT connector has no parameter `cleanSesion`"),
        "{out}"
    );
    assert!(
        out.contains("/dataInterfaces/dataInterface/0/parameters/parameter/1/name"),
        "{out}"
    );
    // The data source gives one the connector does not know, a value out of range and a
    // value of the wrong type: each at its place.
    assert!(
        out.contains("has no parameter `cleansession`")
            && out.contains("help: did you mean `cleanSession`?"),
        "{out}"
    );
    assert!(
        out.contains("parameter `qos` must be one of 0, 1")
            && out.contains("dataSourceDefinitionInterfaceParameters/parameter/1/value"),
        "{out}"
    );
    assert!(
        out.contains("parameter `keepAlive` should be a duration")
            && out.contains("dataSourceDefinitionInterfaceParameters/parameter/3/value"),
        "{out}"
    );
    assert!(out.contains("misspelled.json:3:83"), "{out}");
    assert!(out.trim_end().ends_with("4 errors (0 warnings)"), "{out}");
}

#[test]
fn connectors_lists_every_protocol_with_its_parameters() {
    let o = dda(&["connectors"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for protocol in [
        "Bus (in-process)",
        "File (source, sink)",
        "HTTP (source, sink)",
        "Kafka (source, sink)",
        "MongoDB (source, sink)",
        "MQTT (source, sink)",
        "PostgreSQL (sink)",
        "Simulator (source)",
        "SQLite (source, sink)",
    ] {
        assert!(out.contains(protocol), "{protocol}: {out}");
    }
    assert!(out.contains("cleanSession"), "{out}");
    let o = dda(&["connectors", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = doc["connectors"].as_array().unwrap();
    let mqtt = all.iter().find(|c| c["protocol"] == "MQTT").unwrap();
    assert_eq!(mqtt["reads"], true);
    assert_eq!(mqtt["aliases"], serde_json::json!(["mqtts"]));
    let params = mqtt["parameters"]["parameter"].as_array().unwrap();
    let qos = params.iter().find(|p| p["name"] == "qos").unwrap();
    assert_eq!(qos["defaultValue"], 1);
    assert_eq!(qos["allowedValues"]["value"], serde_json::json!([0, 1]));
    let password = params.iter().find(|p| p["name"] == "password").unwrap();
    assert_eq!(password["secret"], true);
    let topic = params.iter().find(|p| p["name"] == "topic").unwrap();
    assert_eq!(topic["required"], true);
    let bus = all.iter().find(|c| c["protocol"] == "Bus").unwrap();
    assert_eq!(bus["internal"], true);
}

#[test]
fn listings_end_quietly_when_their_reader_goes_away() {
    for command in ["processors", "connectors"] {
        let mut dda = Command::new(env!("CARGO_BIN_EXE_dda"));
        dda.arg(command);
        ends_quietly_on_a_closed_pipe(&mut dda);
    }
}

/// Runs `command` with nobody reading its output — as `dda processors | head` once head has
/// exited: every write fails with a broken pipe — and checks that it ends well, unpanicked.
fn ends_quietly_on_a_closed_pipe(command: &mut Command) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{command:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{command:?}: {stderr}");
}

#[test]
fn convert_writes_every_live_data_set_of_the_papers_table_7() {
    // Table 7 holds three LiveDataSets one after another: XML has one root, so they become
    // one bundle of three, which converts back to the same three.
    let o = dda(&[
        "convert",
        "--to",
        "xml",
        "tests/fixtures/paper/table-7-live-data-sets.json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let xml = stdout(&o);
    assert_eq!(xml.matches("<liveDataSet>").count(), 3, "{xml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table-7.xml");
    std::fs::write(&path, &xml).unwrap();
    let back = dda(&["convert", "--to", "json", path.to_str().unwrap()]);
    assert_eq!(back.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    // As printed in the paper: indented with em spaces, which DDA reads as white space.
    let text: String = std::fs::read_to_string("tests/fixtures/paper/table-7-live-data-sets.json")
        .unwrap()
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let original: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let sets = doc["liveDataSets"]["liveDataSet"].as_array().unwrap();
    assert_eq!(sets.len(), 3);
    for (got, want) in sets.iter().zip(&original) {
        assert_eq!(got["id"], want["id"]);
        assert_eq!(
            got["observation"][0]["value"], want["observation"][0]["value"],
            "{got}"
        );
    }
    // To JSON the three stay three documents.
    let o = dda(&[
        "convert",
        "--to",
        "json",
        "tests/fixtures/paper/table-7-live-data-sets.json",
    ]);
    let n = serde_json::Deserializer::from_slice(&o.stdout)
        .into_iter::<serde_json::Value>()
        .count();
    assert_eq!(n, 3);
}

#[test]
fn run_drains_and_summarizes_on_sigterm_as_on_ctrl_c() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", "--speed", "3600", "--quiet"])
        .arg(root.join("examples/power-consumption"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Three simulated hours, so that the edges have stored results.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let (out, err) = (stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("terminated: stopping and draining"), "{err}");
    assert!(out.contains("ran 4 analytics instance(s)"), "{out}");
    assert!(out.contains("dsm-ib1-edge-database: "), "{out}");
    // The drained edge results are in the database the summary names.
    let db = rusqlite::Connection::open(dir.path().join("dda-output/ib1-edge.sqlite")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM hourly_averages", [], |r| r.get(0))
        .unwrap();
    assert!(rows >= 2, "{rows} rows: {out}");
}

#[test]
fn the_reference_documentation_holds_the_generated_parameter_tables() {
    // The tables in docs/ are what `dda connectors` and `dda processors --format markdown`
    // print, so that no default or description is written twice: regenerate them when a
    // configuration changes. Every connector has its table; so do the windows (`average`).
    let docs: String = ["docs/connectors.md", "docs/runtime.md", "docs/cir.md"]
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for (command, required) in [("connectors", 8), ("processors", 0)] {
        let o = dda(&[command, "--format", "markdown"]);
        assert_eq!(o.status.code(), Some(0));
        let generated = stdout(&o);
        let blocks: Vec<&str> = generated
            .split("<!-- parameters: ")
            .skip(1)
            .map(|b| b.trim_end())
            .collect();
        let mut documented = 0;
        for block in &blocks {
            let name = block.split_whitespace().next().unwrap();
            let marker = format!("<!-- parameters: {name} (");
            if docs.contains(&marker) {
                documented += 1;
                assert!(
                    docs.contains(&format!("<!-- parameters: {block}")),
                    "docs/ hold the parameter table of {name} as `dda {command} --format markdown` prints it:\n<!-- parameters: {block}"
                );
            } else {
                assert!(
                    required == 0,
                    "docs/ hold no parameter table of {name}: paste it from `dda {command} --format markdown`"
                );
            }
        }
        assert!(
            documented >= required.max(1),
            "{command}: {documented} tables"
        );
    }
    assert!(docs.contains("<!-- parameters: enrich ("), "enrich's table");
    assert!(
        docs.contains("<!-- parameters: average ("),
        "the windows' table"
    );
}

#[test]
fn observations_keep_their_ids_through_processors_that_pass_them_on() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["obs-a", "obs-b", "obs-c"];
    let input: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"id": format!("lds-{i}"), "dataSourceManifestReferenceID": "readings",
                "observation": [{"id": id, "name": "x", "timestamp": format!("2018-05-24T15:00:0{i}Z"), "value": 40 + i}]})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), input).unwrap();
    let file = |id: &str, path: &str| {
        serde_json::json!({"id": id, "dataSourceDefinitionReferenceID": "dsd",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [{"key": "path", "value": path}]}})
    };
    let apm = |id: &str, apd: &str, from: &str, to: &str, parameters: serde_json::Value| {
        serde_json::json!({"id": id, "analyticsProcessorDefinitionReferenceID": apd,
            "parameters": {"parameter": parameters},
            "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": from}]},
            "dataSink": {"dataSourceManifestReferenceID": to}})
    };
    let bundle = serde_json::json!({"kind": "Bundle",
        "dataInterfaces": {"dataInterface": [{"id": "di", "communicationProtocol": "File"},
                                             {"id": "di-bus", "communicationProtocol": "Bus"}]},
        "dataKinds": {"dataKind": [{"id": "dk", "name": "x", "quantityKind": "x"}]},
        "dataSourceDefinitions": {"dataSourceDefinition": [
            {"id": "dsd", "dataInterfaceReferenceID": "di", "dataKindReferenceID": "dk"},
            {"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"}]},
        "dataSourceManifests": {"dataSourceManifest": [
            file("readings", "input.jsonl"),
            {"id": "kept", "dataSourceDefinitionReferenceID": "dsd-bus"},
            file("out", "out.jsonl")]},
        "analyticsProcessorDefinitions": {"analyticsProcessorDefinition": [
            {"id": "apd-filter", "processorType": "filter"}, {"id": "apd-echo", "processorType": "echo"}]},
        "analyticsManifests": {"analyticsManifest": [{"id": "am", "analyticsProcessors": {"apm": [
            apm("f", "apd-filter", "readings", "kept",
                serde_json::json!([{"key": "operator", "value": "GE"}, {"key": "threshold", "value": "41"}])),
            apm("e", "apd-echo", "kept", "out", serde_json::json!([]))]}}]},
    });
    std::fs::write(dir.path().join("bundle.json"), bundle.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", "--speed", "max", "--quiet", "bundle.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let written: Vec<String> = out
        .lines()
        .map(|l| {
            let lds: serde_json::Value = serde_json::from_str(l).unwrap();
            lds["observation"][0]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        written,
        ["obs-b", "obs-c"],
        "filter and echo keep the ids: {out}"
    );
}

#[test]
fn run_ends_quietly_when_its_reader_goes_away() {
    // `dda run … | head -1` once head has exited.
    let dir = tempfile::tempdir().unwrap();
    let mut dda = Command::new(env!("CARGO_BIN_EXE_dda"));
    dda.args(["run", "--speed", "max", "--for", "2s", "--quiet"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption/json"))
        .current_dir(dir.path());
    ends_quietly_on_a_closed_pipe(&mut dda);
}

#[test]
fn mistyped_flags_and_durations_get_a_fix_not_parser_jargon() {
    let bundle = "examples/power-consumption/json";
    for (args, wanted) in [
        (&["run", bundle, "--for", "5"][..], "write 5s (seconds)"),
        (&["run", bundle, "--for", "-5s"][..], "cannot be negative"),
        (&["run", bundle, "--for", "soon"][..], "such as 20s"),
        (
            &["run", bundle, "--fro", "5s"][..],
            "a similar argument exists: '--for'",
        ),
        (
            &["run", bundle, "--speeed", "5"][..],
            "a similar argument exists: '--speed'",
        ),
        (&["bench", "--for", "10"][..], "write 10s (seconds)"),
    ] {
        let o = dda(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
        assert!(!stderr.contains("friendly"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_type_error_in_one_field_hides_no_other_error_of_its_document() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = copy_of_the_example(dir.path());
    // One document, two mistakes: a name that is a number, a reference to nothing.
    let dsm = bundle.join("data-source-manifests/cloud-edge-results.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dsm).unwrap()).unwrap();
    doc["name"] = serde_json::json!(5);
    doc["dataSourceDefinitionReferenceID"] = serde_json::json!("dsd-nope");
    std::fs::write(&dsm, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let o = dda(&["validate", bundle.to_str().unwrap()]);
    let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("error[wrong-type]"), "{out}");
    assert!(
        out.contains("no data source definition with id `dsd-nope`"),
        "{out}"
    );
    // The manifest is still known to those that refer to it.
    assert!(
        !out.contains("no data source manifest with id `dsm-cloud-edge-results`"),
        "{out}"
    );
    assert!(out.contains("2 errors"), "{out}");
}

/// A copy of the pilot line's JSON bundle in `dir`/b, to change.
fn copy_of_the_example(dir: &std::path::Path) -> PathBuf {
    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/power-consumption/json");
    let bundle = dir.join("b");
    for entry in walk(&source) {
        let to = bundle.join(entry.strip_prefix(&source).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, to).unwrap();
    }
    bundle
}

#[test]
fn a_second_stop_request_exits_at_once_when_a_drain_cannot_finish() {
    // Every result goes to a PostgreSQL nothing listens for (port 1): the drain cannot
    // finish, and a second SIGTERM must end the run anyway.
    let dir = tempfile::tempdir().unwrap();
    let bundle = copy_of_the_example(dir.path());
    let edit = |file: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let path = bundle.join(file);
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut doc);
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    };
    edit("data-interfaces/sqlite-database.json", &|d| {
        d["communicationProtocol"] = serde_json::json!("PostgreSQL");
        d["parameters"]["parameter"] = serde_json::json!([]);
    });
    for dsm in [
        "ib1-edge-database",
        "ib2-edge-database",
        "ib3-edge-database",
        "cloud-edge-results",
        "cloud-global-results",
    ] {
        edit(&format!("data-source-manifests/{dsm}.json"), &|d| {
            d["dataSourceDefinitionInterfaceParameters"]["parameter"] =
                serde_json::json!([{"key": "port", "value": 1}]);
        });
    }
    let child = Command::new(env!("CARGO_BIN_EXE_dda"))
        .args(["run", "--speed", "3600", "--quiet"])
        .arg(&bundle)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Two simulated hours: results are waiting for the unreachable sinks.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let term = || {
        assert!(
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    term();
    std::thread::sleep(std::time::Duration::from_secs(1));
    term();
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let o = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the second SIGTERM ends the run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("terminated: stopping and draining"), "{err}");
    assert!(
        err.contains("terminated again: exiting without draining"),
        "{err}"
    );
}
