//! JSON at the edges: LiveDataSets and observations in, LiveDataSets out.
//!
//! Accepted input, in any mix: the paper's LiveDataSet (`{"observation": [...], ...}`,
//! Table 7), the flat observation of the original engine's later data router
//! (`{"value": ..., "acquisitionTimestamp": ...}`), a JSON array of either, and several of
//! them one after another (JSON lines, or concatenated as in Table 7). Output is a
//! LiveDataSet holding one observation, as Table 7 shows results.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use crate::observation::{Observation, Value, ingest_clock};
use crate::symbol::Sym;
use crate::time::Timestamp;

/// What a connector knows about the stream it decodes.
#[derive(Clone, Copy, Debug)]
pub struct DecodeContext {
    /// The data source the payload arrived on; the observations' source unless the payload
    /// names another.
    pub dsm: Sym,
    /// Name for observations that carry none (e.g. the DSM's data kind name).
    pub default_name: Sym,
    /// Data kind for observations that name none.
    pub default_kind: Option<Sym>,
}

/// Why a payload could not be read as observations: the payload's fault (an external
/// error, not retryable: the same payload fails again).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
    source: Option<crate::error::BoxError>,
}

impl PartialEq for DecodeError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for DecodeError {}

impl DecodeError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error saying `message`, caused by `source`.
    pub fn caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(crate::error::boxed(source)),
        }
    }

    /// What is wrong with the payload.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whose problem it is: the payload's sender.
    #[must_use]
    pub const fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::External
    }

    /// Whether reading it again can help: no.
    #[must_use]
    pub const fn retryable(&self) -> bool {
        false
    }
}

fn field<'a>(obj: &'a Map<String, Json>, names: &[&str]) -> Option<&'a Json> {
    names
        .iter()
        .find_map(|n| obj.get(*n))
        .filter(|v| !v.is_null())
}

const KNOWN: &[&str] = &[
    "id",
    "_id",
    "name",
    "dataKindReferenceID",
    "timestamp",
    "value",
    "dataSourceManifestReferenceID",
    "acquisitionTimestamp",
    "collectionTimestamp",
    "edgeGatewayReferenceID",
];

fn observation(
    obj: &Map<String, Json>,
    set: Option<&Map<String, Json>>,
    ctx: &DecodeContext,
    ingested: u64,
) -> Result<Observation, DecodeError> {
    let value = obj
        .get("value")
        .ok_or_else(|| DecodeError::new("an observation has no \"value\"".to_owned()))?;
    let timestamp = match field(
        obj,
        &["timestamp", "acquisitionTimestamp", "collectionTimestamp"],
    )
    .or_else(|| set.and_then(|s| field(s, &["timestamp"])))
    {
        Some(t) => Timestamp::from_json(t).map_err(|e| DecodeError::new(e.to_string()))?,
        None => Timestamp::now(),
    };
    let source = field(obj, &["dataSourceManifestReferenceID"])
        .or_else(|| set.and_then(|s| field(s, &["dataSourceManifestReferenceID"])))
        .and_then(Json::as_str)
        .map_or(ctx.dsm, Sym::new);
    let data_kind = field(obj, &["dataKindReferenceID"])
        .and_then(Json::as_str)
        .map(Sym::new);
    let name = field(obj, &["name"])
        .and_then(Json::as_str)
        .map(|n| Sym::new(n.trim()))
        .or(data_kind.filter(|_| ctx.default_kind.is_none()))
        .unwrap_or(ctx.default_name);
    let mut extra: Option<Map<String, Json>> = None;
    for (k, v) in obj {
        if !KNOWN.contains(&k.as_str()) && !v.is_null() {
            extra
                .get_or_insert_with(Map::new)
                .insert(k.clone(), v.clone());
        }
    }
    if let Some(loc) = set.and_then(|s| field(s, &["location"])) {
        extra
            .get_or_insert_with(Map::new)
            .entry("location")
            .or_insert_with(|| loc.clone());
    }
    let id = field(obj, &["id", "_id"]).and_then(|v| match v {
        Json::String(s) if !s.is_empty() => Some(Arc::new(s.clone())),
        Json::Number(n) => Some(Arc::new(n.to_string())),
        _ => None,
    });
    Ok(Observation {
        source,
        name,
        timestamp,
        value: Value::from_json(value),
        data_kind: data_kind.or(ctx.default_kind),
        ingested,
        attributes: extra.map(Arc::new),
        id,
    })
}

fn decode_value(
    v: &Json,
    ctx: &DecodeContext,
    ingested: u64,
    out: &mut Vec<Observation>,
) -> Result<(), DecodeError> {
    match v {
        Json::Array(items) => items
            .iter()
            .try_for_each(|i| decode_value(i, ctx, ingested, out)),
        Json::Object(obj) => match obj.get("observation") {
            Some(Json::Array(list)) => {
                for o in list {
                    let o = o.as_object().ok_or_else(|| {
                        DecodeError::new(
                            "an element of \"observation\" is not an object".to_owned(),
                        )
                    })?;
                    out.push(observation(o, Some(obj), ctx, ingested)?);
                }
                Ok(())
            }
            Some(Json::Object(o)) => {
                out.push(observation(o, Some(obj), ctx, ingested)?);
                Ok(())
            }
            Some(_) => Err(DecodeError::new("\"observation\" is not a list".to_owned())),
            None => {
                out.push(observation(obj, None, ctx, ingested)?);
                Ok(())
            }
        },
        _ => Err(DecodeError::new(format!(
            "expected a LiveDataSet or an observation (a JSON object), found {}",
            match v {
                Json::Null => "null",
                Json::Bool(_) => "a boolean",
                Json::Number(_) => "a number",
                _ => "text",
            }
        ))),
    }
}

/// Reads every observation in a JSON payload; on error nothing is appended.
///
/// # Errors
///
/// Malformed JSON, or a value that is not a LiveDataSet or observation; the message says
/// which and where.
pub fn decode_json(
    payload: &str,
    ctx: &DecodeContext,
    out: &mut Vec<Observation>,
) -> Result<usize, DecodeError> {
    let before = out.len();
    let ingested = ingest_clock();
    let mut stream = serde_json::Deserializer::from_str(payload).into_iter::<Json>();
    let mut result = Ok(());
    for item in stream.by_ref() {
        match item {
            Ok(v) => {
                if let Err(e) = decode_value(&v, ctx, ingested, out) {
                    result = Err(e);
                    break;
                }
            }
            Err(e) => {
                result = Err(DecodeError::new(format!("invalid JSON: {e}")));
                break;
            }
        }
    }
    if result.is_err() {
        out.truncate(before);
        // Strict JSON failed; the manifest reader also accepts Unicode white space between
        // tokens (the paper's Table 7 is indented with em spaces). Its error wins otherwise.
        if let Ok(nodes) = manifests::json::parse_stream(payload) {
            let mut lenient = Ok(());
            for node in nodes {
                lenient = decode_value(&node.to_json(), ctx, ingested, out);
                if lenient.is_err() {
                    break;
                }
            }
            result = lenient;
        }
    }
    match result {
        Ok(()) => Ok(out.len() - before),
        Err(e) => {
            out.truncate(before);
            Err(e)
        }
    }
}

/// A payload format, chosen by a data kind's `format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The paper's LiveDataSet (Table 7), flat observations, arrays of them, JSON lines.
    /// `format`: `JSON`, `LiveDataSet` (and the default).
    LiveDataSet,
    /// One value as text: `210`, `36.6`, `on` ("Total real energy in plain text").
    /// `format`: `Plain text`, `text`.
    PlainText,
    /// A flat JSON object of name → value with a timestamp:
    /// `{"timestamp": "...", "TotalRealPower": 1500, "TotalRealEnergy": 10.5}`.
    /// `format`: `JSON object`, `flat JSON`.
    FlatJson,
    /// CSV lines `timestamp,name,value` (or with a header line, as files are read).
    /// `format`: `CSV`.
    Csv,
}

impl Format {
    /// The format a data kind's `format` names (case-insensitive; LiveDataSet JSON when
    /// absent or unknown).
    #[must_use]
    pub fn parse(text: Option<&str>) -> Self {
        let t = text
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], " ");
        match t.as_str() {
            "plain text" | "text" | "plain" | "text/plain" => Self::PlainText,
            "json object" | "flat json" | "object" | "key value" => Self::FlatJson,
            "csv" | "text/csv" => Self::Csv,
            _ => Self::LiveDataSet,
        }
    }

    /// The format of a data source's payloads: its first data kind's.
    #[must_use]
    pub fn of(source: &crate::registry::DataSource) -> Self {
        Self::parse(source.data_kinds.first().and_then(|k| k.format.as_deref()))
    }
}

/// Reads a payload in `format`; on error nothing is appended.
///
/// # Errors
///
/// A payload that does not match the format; the message says how.
pub fn decode(
    payload: &[u8],
    format: Format,
    ctx: &DecodeContext,
    out: &mut Vec<Observation>,
) -> Result<usize, DecodeError> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| DecodeError::new("the payload is not UTF-8 text".to_owned()))?;
    let before = out.len();
    let result = match format {
        Format::LiveDataSet => return decode_json(text, ctx, out),
        Format::PlainText => {
            let t = text.trim();
            if t.is_empty() {
                Err(DecodeError::new(
                    "an empty plain-text payload holds no value".to_owned(),
                ))
            } else {
                out.push(Observation {
                    source: ctx.dsm,
                    name: ctx.default_name,
                    timestamp: Timestamp::now(),
                    value: Value::from_json(&Json::String(t.to_owned())),
                    data_kind: ctx.default_kind,
                    ingested: ingest_clock(),
                    attributes: None,
                    id: None,
                });
                Ok(())
            }
        }
        Format::FlatJson => decode_flat(text, ctx, out),
        Format::Csv => decode_csv(text, ctx, out),
    };
    match result {
        Ok(()) => Ok(out.len() - before),
        Err(e) => {
            out.truncate(before);
            Err(e)
        }
    }
}

const TIME_KEYS: &[&str] = &["timestamp", "time", "acquisitionTimestamp"];

fn decode_flat(
    text: &str,
    ctx: &DecodeContext,
    out: &mut Vec<Observation>,
) -> Result<(), DecodeError> {
    let ingested = ingest_clock();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Json>() {
        let item = item.map_err(|e| DecodeError::caused(format!("invalid JSON: {e}"), e))?;
        let Json::Object(obj) = item else {
            return Err(DecodeError::new(
                "a flat JSON payload is an object of name → value".to_owned(),
            ));
        };
        let timestamp = match field(&obj, TIME_KEYS) {
            Some(t) => Timestamp::from_json(t).map_err(|e| DecodeError::new(e.to_string()))?,
            None => Timestamp::now(),
        };
        let source = field(&obj, &["dataSourceManifestReferenceID"])
            .and_then(Json::as_str)
            .map_or(ctx.dsm, Sym::new);
        let mut any = false;
        for (k, v) in &obj {
            if TIME_KEYS.contains(&k.as_str())
                || k == "dataSourceManifestReferenceID"
                || v.is_null()
            {
                continue;
            }
            any = true;
            out.push(Observation {
                source,
                name: Sym::new(k),
                timestamp,
                value: Value::from_json(v),
                data_kind: ctx.default_kind,
                ingested,
                attributes: None,
                id: None,
            });
        }
        if !any {
            return Err(DecodeError::new("the object names no value".to_owned()));
        }
    }
    Ok(())
}

fn decode_csv(
    text: &str,
    ctx: &DecodeContext,
    out: &mut Vec<Observation>,
) -> Result<(), DecodeError> {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let has_header = first
        .split(',')
        .any(|c| TIME_KEYS.iter().any(|k| c.trim().eq_ignore_ascii_case(k)));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(has_header)
        .flexible(true)
        .from_reader(text.as_bytes());
    let layout = if has_header {
        CsvLayout::from_header(
            reader
                .headers()
                .map_err(|e| DecodeError::caused(e.to_string(), e))?,
        )?
    } else {
        // timestamp,name,value — or timestamp,value for a source of one kind.
        let width = first.split(',').count();
        let header = if width >= 3 {
            vec!["timestamp", "name", "value", "dataKindReferenceID"]
        } else {
            vec!["timestamp", "value"]
        };
        CsvLayout::from_header(&csv::StringRecord::from(
            header[..width.clamp(2, 4)].to_vec(),
        ))?
    };
    for record in reader.records() {
        let record = record.map_err(|e| DecodeError::caused(format!("invalid CSV: {e}"), e))?;
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        layout.decode(&record, ctx, out)?;
    }
    Ok(())
}

/// Writes one observation in `format`.
#[must_use]
pub fn encode(obs: &Observation, format: Format) -> Vec<u8> {
    match format {
        Format::LiveDataSet => encode_live_data_set(obs).to_string().into_bytes(),
        Format::PlainText => match &obs.value {
            Value::Text(t) => t.as_bytes().to_vec(),
            other => other.to_json().to_string().into_bytes(),
        },
        Format::FlatJson => {
            let mut o = Map::new();
            o.insert("timestamp".into(), Json::String(obs.timestamp.to_string()));
            o.insert(
                "dataSourceManifestReferenceID".into(),
                Json::String(obs.source.text().to_string()),
            );
            o.insert(obs.name.text().to_string(), obs.value.to_json());
            Json::Object(o).to_string().into_bytes()
        }
        Format::Csv => {
            let value = match &obs.value {
                Value::Text(t) => t.to_string(),
                other => other.to_json().to_string(),
            };
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::new());
            let _ = w.write_record([
                obs.timestamp.to_string(),
                obs.name.text().to_string(),
                value,
            ]);
            w.into_inner().unwrap_or_default()
        }
    }
}

/// How the columns of a CSV file map to observations.
///
/// Long form: a `timestamp` column (or `time`), a `name` column and a `value` column,
/// optionally `dataKindReferenceID` and `dataSourceManifestReferenceID`. Wide form: a
/// `timestamp` column and one column per series, named after it; empty cells are skipped.
#[derive(Clone, Debug)]
pub struct CsvLayout {
    timestamp: usize,
    name: Option<usize>,
    value: Option<usize>,
    kind: Option<usize>,
    source: Option<usize>,
    series: Vec<(usize, Sym)>,
}

impl CsvLayout {
    /// Reads the header row.
    ///
    /// # Errors
    ///
    /// No timestamp column, or neither a value column nor any series column.
    pub fn from_header(header: &csv::StringRecord) -> Result<Self, DecodeError> {
        let find = |names: &[&str]| {
            header
                .iter()
                .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
        };
        let timestamp = find(&["timestamp", "time", "acquisitionTimestamp"])
            .ok_or_else(|| DecodeError::new("the CSV header has no timestamp column".to_owned()))?;
        let name = find(&["name"]);
        let value = find(&["value"]);
        let kind = find(&["dataKindReferenceID", "dataKind"]);
        let source = find(&["dataSourceManifestReferenceID", "source"]);
        let taken = [Some(timestamp), name, value, kind, source];
        let series = if value.is_some() {
            Vec::new()
        } else {
            header
                .iter()
                .enumerate()
                .filter(|(i, h)| !taken.contains(&Some(*i)) && !h.trim().is_empty())
                .map(|(i, h)| (i, Sym::new(h.trim())))
                .collect()
        };
        if value.is_none() && series.is_empty() {
            return Err(DecodeError::new(
                "the CSV header has no value column and no series columns".to_owned(),
            ));
        }
        Ok(Self {
            timestamp,
            name,
            value,
            kind,
            source,
            series,
        })
    }

    /// Reads one CSV record.
    ///
    /// # Errors
    ///
    /// A missing or unreadable timestamp, or a missing value.
    pub fn decode(
        &self,
        record: &csv::StringRecord,
        ctx: &DecodeContext,
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let cell = |i: usize| record.get(i).map(str::trim).filter(|c| !c.is_empty());
        let timestamp = Timestamp::parse(
            cell(self.timestamp)
                .ok_or_else(|| DecodeError::new("a CSV row has no timestamp".to_owned()))?,
        )
        .map_err(|e| DecodeError::new(e.to_string()))?;
        let source = self.source.and_then(cell).map_or(ctx.dsm, Sym::new);
        let data_kind = self.kind.and_then(cell).map(Sym::new).or(ctx.default_kind);
        let ingested = ingest_clock();
        let mut push = |name: Sym, text: &str| {
            out.push(Observation {
                source,
                name,
                timestamp,
                value: Value::from_json(&Json::String(text.to_owned())),
                data_kind,
                ingested,
                attributes: None,
                id: None,
            });
        };
        if let Some(v) = self.value {
            let text =
                cell(v).ok_or_else(|| DecodeError::new("a CSV row has no value".to_owned()))?;
            let name = self.name.and_then(cell).map_or(ctx.default_name, Sym::new);
            push(name, text);
        } else {
            for (i, name) in &self.series {
                if let Some(text) = cell(*i) {
                    push(*name, text);
                }
            }
        }
        Ok(())
    }
}

/// Writes one observation as a LiveDataSet (paper Table 7): the observation keeps the id it
/// arrived with (a result gets a fresh one); the LiveDataSet around it is new, with a fresh
/// id.
#[must_use]
pub fn encode_live_data_set(obs: &Observation) -> Json {
    let ts = obs.timestamp.to_string();
    let mut o = Map::new();
    let id = obs
        .id
        .as_deref()
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    o.insert("id".into(), Json::String(id));
    o.insert("name".into(), Json::String(obs.name.text().to_string()));
    if let Some(dk) = obs.data_kind {
        o.insert(
            "dataKindReferenceID".into(),
            Json::String(dk.text().to_string()),
        );
    }
    o.insert("timestamp".into(), Json::String(ts.clone()));
    o.insert("value".into(), obs.value.to_json());
    if let Some(attrs) = &obs.attributes {
        for (k, v) in attrs.iter() {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "dataSourceManifestReferenceID": obs.source.text().to_string(),
        "timestamp": ts,
        "observation": [Json::Object(o)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DecodeContext {
        DecodeContext {
            dsm: Sym::new("dsm-x"),
            default_name: Sym::new("value"),
            default_kind: None,
        }
    }

    #[test]
    fn reads_the_papers_table_7_as_written() {
        // Indented with em spaces, as printed in the paper.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/paper/table-7-live-data-sets.json"
        ))
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(decode_json(&text, &ctx(), &mut out).unwrap(), 3);
        assert_eq!(out[0].name, Sym::new("PhoenixIB-TotalRealEnergy"));
        assert_eq!(
            out[1].name,
            Sym::new("PhoenixIB-TotalRealEnergy"),
            "names are trimmed"
        );
        assert_eq!(
            out[0].source,
            Sym::new("2fae2556-d516-464d-8b18-aeb2b473e759")
        );
        assert_eq!(
            out[0].timestamp,
            Timestamp::parse("2018-05-24 14:59:14.924").unwrap()
        );
        assert_eq!(out[2].value, Value::Number(205.0));
    }

    #[test]
    fn an_observation_is_written_under_the_id_it_arrived_with_and_a_result_under_a_new_one() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/paper/table-7-live-data-sets.json"
        ))
        .unwrap();
        let mut out = Vec::new();
        decode_json(&text, &ctx(), &mut out).unwrap();
        assert_eq!(
            out[0].id.as_deref().map(String::as_str),
            Some("84190868-8dbb-41ea-8b90-ea8f4699f43a")
        );
        let written = encode_live_data_set(&out[0]);
        assert_eq!(
            written["observation"][0]["id"],
            "84190868-8dbb-41ea-8b90-ea8f4699f43a"
        );
        // Read again, it is the same observation.
        let mut again = Vec::new();
        decode_json(&written.to_string(), &ctx(), &mut again).unwrap();
        assert_eq!(again[0].id, out[0].id);
        // A result carries no id: each writing gives one.
        let result = Observation::number(Sym::new("s"), Sym::new("avg"), Timestamp(0), 1.0);
        let (a, b) = (encode_live_data_set(&result), encode_live_data_set(&result));
        assert!(uuid::Uuid::parse_str(a["observation"][0]["id"].as_str().unwrap()).is_ok());
        assert_ne!(a["observation"][0]["id"], b["observation"][0]["id"]);
    }

    #[test]
    fn reads_flat_observations_arrays_and_json_lines() {
        let text = r#"{"value": "36", "acquisitionTimestamp": "2018-06-19T14:40:34.688Z", "dataKindReferenceID": "dk"}
[{"value": 1, "timestamp": 1529419234688}, {"observation": {"value": true, "timestamp": "2018-06-19 14:40:34.688"}}]"#;
        let mut out = Vec::new();
        assert_eq!(decode_json(text, &ctx(), &mut out).unwrap(), 3);
        assert_eq!(out[0].value, Value::Number(36.0));
        assert_eq!(
            out[0].name,
            Sym::new("dk"),
            "a nameless observation takes its data kind's id"
        );
        assert_eq!(out[0].source, Sym::new("dsm-x"));
        assert!(out.iter().all(|o| o.timestamp == out[0].timestamp));
    }

    #[test]
    fn reads_csv_in_long_and_wide_form() {
        let mut out = Vec::new();
        let mut long = csv::Reader::from_reader(
            "timestamp,name,value\n2018-05-24 14:00:00,TotalRealPower,1500\n".as_bytes(),
        );
        let layout = CsvLayout::from_header(long.headers().unwrap()).unwrap();
        for r in long.records() {
            layout.decode(&r.unwrap(), &ctx(), &mut out).unwrap();
        }
        let mut wide = csv::Reader::from_reader(
            "time,TotalRealPower,TotalRealEnergy\n1527170400000,1500,\n".as_bytes(),
        );
        let layout = CsvLayout::from_header(wide.headers().unwrap()).unwrap();
        for r in wide.records() {
            layout.decode(&r.unwrap(), &ctx(), &mut out).unwrap();
        }
        assert_eq!(out.len(), 2, "the empty energy cell is skipped");
        assert_eq!(
            out[0],
            Observation {
                ingested: out[0].ingested,
                ..out[1].clone()
            }
        );
        let bad = csv::Reader::from_reader("name,value\n".as_bytes())
            .headers()
            .unwrap()
            .clone();
        assert!(CsvLayout::from_header(&bad).is_err());
    }

    #[test]
    fn every_payload_format_reads_what_it_writes() {
        let mut obs = Observation::number(
            Sym::new("dsm-x"),
            Sym::new("value"),
            Timestamp::from_millis(1_527_174_000_000),
            36.5,
        );
        obs.data_kind = None;
        for format in [Format::LiveDataSet, Format::FlatJson, Format::Csv] {
            let bytes = encode(&obs, format);
            let mut back = Vec::new();
            assert_eq!(
                decode(&bytes, format, &ctx(), &mut back).unwrap(),
                1,
                "{format:?}"
            );
            assert_eq!(
                (back[0].name, back[0].timestamp, &back[0].value),
                (obs.name, obs.timestamp, &obs.value),
                "{format:?}"
            );
        }
        let mut back = Vec::new();
        decode(
            &encode(&obs, Format::PlainText),
            Format::PlainText,
            &ctx(),
            &mut back,
        )
        .unwrap();
        assert_eq!(back[0].value, Value::Number(36.5));
        assert_eq!(
            back[0].name,
            Sym::new("value"),
            "plain text takes the data kind's name"
        );
    }

    #[test]
    fn flat_objects_and_csv_lines_hold_several_values() {
        let mut out = Vec::new();
        let flat = br#"{"timestamp": "2018-05-24 15:00:00", "TotalRealPower": 1500, "TotalRealEnergy": "10.5"}"#;
        assert_eq!(decode(flat, Format::FlatJson, &ctx(), &mut out).unwrap(), 2);
        assert_eq!(out[1].value, Value::Number(10.5));
        out.clear();
        let csv =
            b"2018-05-24T15:00:00Z,TotalRealPower,1500\n2018-05-24T15:01:00Z,TotalRealPower,1510\n";
        assert_eq!(decode(csv, Format::Csv, &ctx(), &mut out).unwrap(), 2);
        out.clear();
        let with_header = b"time,TotalRealPower,TotalRealEnergy\n1527174000000,1500,10\n";
        assert_eq!(
            decode(with_header, Format::Csv, &ctx(), &mut out).unwrap(),
            2
        );
        for bad in [&b"{}"[..], b"[1]", b"\xff"] {
            assert!(decode(bad, Format::FlatJson, &ctx(), &mut out).is_err());
        }
        assert!(decode(b"  ", Format::PlainText, &ctx(), &mut out).is_err());
        assert!(decode(b"soon,x,1", Format::Csv, &ctx(), &mut out).is_err());
        assert_eq!(Format::parse(Some("Plain text")), Format::PlainText);
        assert_eq!(Format::parse(Some("JSON")), Format::LiveDataSet);
        assert_eq!(Format::parse(Some("json-object")), Format::FlatJson);
        assert_eq!(Format::parse(None), Format::LiveDataSet);
    }

    #[test]
    fn bad_payloads_are_errors_and_append_nothing() {
        let mut out = Vec::new();
        for bad in [
            "{\"value\": 1}{",
            "42",
            "{\"name\": \"x\"}",
            "{\"value\": 1, \"timestamp\": \"soon\"}",
            "{\"observation\": 3}",
        ] {
            assert!(decode_json(bad, &ctx(), &mut out).is_err(), "{bad}");
            assert!(out.is_empty(), "{bad}");
        }
    }

    #[test]
    fn encoding_writes_a_table_7_live_data_set_that_reads_back() {
        let mut obs = Observation::number(
            Sym::new("dsm-a"),
            Sym::new("TotalRealPower"),
            Timestamp::from_millis(1_527_174_000_000),
            1500.5,
        );
        obs.data_kind = Some(Sym::new("dk-p"));
        let mut attrs = Map::new();
        attrs.insert("count".into(), json!(60));
        obs.attributes = Some(Arc::new(attrs));
        let j = encode_live_data_set(&obs);
        assert_eq!(j["dataSourceManifestReferenceID"], "dsm-a");
        assert_eq!(j["observation"][0]["timestamp"], "2018-05-24T15:00:00.000Z");
        assert_eq!(j["observation"][0]["count"], 60);
        let mut back = Vec::new();
        decode_json(&j.to_string(), &ctx(), &mut back).unwrap();
        assert_eq!(back[0].value, obs.value);
        assert_eq!(back[0].timestamp, obs.timestamp);
        assert_eq!(back[0].source, obs.source);
        assert_eq!(back[0].attribute("count"), Some(&json!(60)));
    }
}
