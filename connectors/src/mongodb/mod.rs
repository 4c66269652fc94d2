//! `MongoDB`: a collection of observations, as sink and source (the `mongodb` driver).
//!
//! The parameters, their types, defaults and meaning are the fields of [`MongoConfig`] (listed
//! by `dda connectors`, tabled in docs/connectors.md).
//!
//! Each observation is one document:
//! `{_id, dsm, source, name, dataKind, timestamp: Date, value, attributes}` (`dsm` is the
//! DSM written; `source` the one the observation came from). The sink inserts each batch at
//! once, with ids chosen before the first attempt, so that a batch retried after a lost
//! connection is not written twice. A result's `_id` is its result id (instance, processor,
//! key, window): written again after a crash, it is found there and kept once — replacing
//! the copy there only when that one is incomplete (`complete: false`), as the SQL sinks
//! do. Documents the server refuses (other than as duplicates) go to the dead letters with
//! its reason.
//!
//! The source reads documents in `_id` order — the cloud engine reading what edges stored
//! (the paper's "hourly average for values from a database"). Object ids begin with their
//! writer's clock, so with several writers a document can arrive after one with a greater
//! id: each poll reads again from `lookback` before the newest id read and skips what it
//! has read (each poll costs a read of that span; lower it for busy collections with one
//! writer, raise it for writers whose clocks disagree). Documents that are not
//! observations go to the dead letters.

use std::sync::Arc;

use engine::connector::{
    Backoff, Connector, ConnectorError, ConnectorRegistration, EventClock, Sink, SinkContext,
    Source, SourceContext,
};
use engine::observation::{Observation, Value, ingest_clock};
use engine::processor::Rejected;
use engine::registry::DataSource;
use engine::symbol::Sym;
use engine::time::Timestamp;
use manifests::config::{Config, ConfigError, Duration as Span, Secret};
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::StartFrom;

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<Mongo>());

const fn default_port() -> u16 {
    27017
}

fn default_database() -> String {
    "dda".into()
}

fn default_collection() -> String {
    "observations".into()
}

const fn default_poll_interval() -> Span {
    Span::from_secs(1)
}

const fn default_lookback() -> Span {
    Span::from_secs(60)
}

/// The data source parameters of a MongoDB collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MongoConfig {
    /// A connection string instead of `host`, `port`, `username` and `password` (as
    /// `${env:NAME}` or `${file:PATH}` when it holds a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<Secret>,
    /// The server's host, when no `uri`.
    #[serde(default = "crate::loopback")]
    pub host: String,
    /// The server's port, when no `uri`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The user, when no `uri`, as it is: references are resolved only in secret
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, when no `uri`, as `${env:NAME}` or `${file:PATH}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The database.
    #[serde(default = "default_database")]
    pub database: String,
    /// The collection.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Sink: create the collection as a time-series collection (MongoDB 5+; a server
    /// without them gets a plain one). MongoDB does not keep `_id` unique in a
    /// time-series collection, so a result written again after a crash is kept twice
    /// there: leave it off for exactly-once results.
    #[serde(default)]
    pub time_series: bool,
    /// Source: how often to look for new documents.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Span,
    /// Source: read from the `beginning` of the collection, or only what is stored after
    /// the source started (`end`).
    #[serde(default)]
    pub from: StartFrom,
    /// Source: how far event time trails the newest timestamp read.
    #[serde(default)]
    pub out_of_orderness: Span,
    /// Source: how late a document may arrive after one with a greater id.
    #[serde(default = "default_lookback")]
    pub lookback: Span,
}

impl Config for MongoConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.database.is_empty() || self.collection.is_empty() {
            return Err(ConfigError::whole(
                "database and collection must not be empty",
            ));
        }
        Ok(())
    }
}

impl MongoConfig {
    fn uri(&self, dsm: &DataSource) -> Result<String, ConnectorError> {
        let resolve = |name: &str, s: &Secret| {
            s.resolve()
                .map_err(|e| ConnectorError::config(dsm, format!("{name}: {e}")))
        };
        if let Some(uri) = &self.uri {
            return resolve("uri", uri);
        }
        let credentials = match (&self.username, &self.password) {
            (Some(user), p) => {
                let password = p
                    .as_ref()
                    .map(|p| resolve("password", p))
                    .transpose()?
                    .unwrap_or_default();
                format!(
                    "{}:{}@",
                    crate::http::percent_encode(user),
                    crate::http::percent_encode(&password)
                )
            }
            _ => String::new(),
        };
        Ok(format!(
            "mongodb://{credentials}{}:{}/?serverSelectionTimeoutMS=5000&connectTimeoutMS=5000",
            self.host, self.port
        ))
    }

    /// Where, for messages (no credentials).
    fn place(&self) -> String {
        let hosts = match &self.uri {
            None => format!("{}:{}", self.host, self.port),
            Some(uri) => uri
                .resolve()
                .ok()
                .and_then(|u| uri_hosts(&u))
                .unwrap_or_else(|| "(connection string)".to_owned()),
        };
        format!("MongoDB {hosts} {}.{}", self.database, self.collection)
    }
}

/// A data source kept in a MongoDB collection.
#[derive(Debug)]
pub struct Mongo {
    config: MongoConfig,
}

impl Connector for Mongo {
    const PROTOCOL: &'static str = "MongoDB";
    const ALIASES: &'static [&'static str] = &["mongo"];
    const DESCRIPTION: &'static str = "MongoDB collections: batched inserts, results once each by result id (time-series on request), and reading stored observations";
    type Config = MongoConfig;

    fn new(config: MongoConfig, dsm: &DataSource) -> Result<Self, ConnectorError> {
        config.uri(dsm)?;
        Ok(Self { config })
    }

    fn place(&self) -> String {
        self.config.place()
    }
}

async fn collection(
    dsm: &DataSource,
    cfg: &MongoConfig,
) -> Result<mongodb::Collection<Document>, ConnectorError> {
    let client = mongodb::Client::with_uri_str(cfg.uri(dsm)?)
        .await
        .map_err(|e| {
            ConnectorError::config(dsm, format!("{}: {}", cfg.place(), redact(&e.to_string())))
        })?;
    Ok(client.database(&cfg.database).collection(&cfg.collection))
}

/// The hosts of a connection string (`mongodb://user:pw@a:1,b:2/db?x=y` → `a:1,b:2`), never
/// its credentials.
fn uri_hosts(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("://")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hosts = rest.split(['/', '?']).next()?;
    (!hosts.is_empty()).then(|| hosts.to_owned())
}

/// Error texts of the driver may quote the connection string: keep credentials out.
fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://********{}", &text[..a], &text[b..]),
        _ => text.to_owned(),
    }
}

/// Creates the collection as a time-series collection when it does not exist and the
/// server supports them; otherwise leaves it to be created by the first insert.
/// Whether the server answers; then [`prepare`].
async fn ready(
    coll: &mongodb::Collection<Document>,
    cfg: &MongoConfig,
) -> Result<(), mongodb::error::Error> {
    coll.client()
        .database(&cfg.database)
        .run_command(doc! {"ping": 1})
        .await?;
    prepare(coll, cfg).await;
    Ok(())
}

async fn prepare(coll: &mongodb::Collection<Document>, cfg: &MongoConfig) {
    if !cfg.time_series {
        return;
    }
    let db = coll.client().database(&cfg.database);
    let exists = db
        .list_collection_names()
        .await
        .map(|names| names.iter().any(|n| n == &cfg.collection))
        .unwrap_or(true);
    if exists {
        return;
    }
    let options = mongodb::options::TimeseriesOptions::builder()
        .time_field("timestamp".to_owned())
        .meta_field(Some("source".to_owned()))
        .build();
    if let Err(e) = db
        .create_collection(&cfg.collection)
        .timeseries(options)
        .await
    {
        tracing::info!(collection = %cfg.collection, error = %e, "no time-series collection (the server may not support them); using a plain one");
    }
}

fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Number(n) => Bson::Double(*n),
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Text(t) => Bson::String(t.to_string()),
        Value::Json(j) => Bson::try_from((**j).clone()).unwrap_or(Bson::Null),
    }
}

/// The document of an observation: a result's `_id` is its result id, so that a result
/// written again (after a crash or a retry) finds its copy there already.
fn document(o: &Observation, dsm: &str) -> Document {
    let id = o.id.as_deref().map_or_else(
        || Bson::ObjectId(ObjectId::new()),
        |uid| Bson::String(uid.clone()),
    );
    let mut d = doc! {
        "_id": id,
        "dsm": dsm,
        "source": o.source.text().to_string(),
        "name": o.name.text().to_string(),
        "timestamp": DateTime::from_millis(o.timestamp.as_millis()),
        "value": to_bson(&o.value),
    };
    if let Some(k) = o.data_kind {
        d.insert("dataKind", k.text().to_string());
    }
    if let Some(a) = &o.attributes
        && let Ok(b) = Bson::try_from(serde_json::Value::Object((**a).clone()))
    {
        d.insert("attributes", b);
    }
    d
}

/// What the server refused of an insert that it answered with write errors only (no
/// connection or write concern failure).
#[derive(Debug, Default)]
struct Refusals {
    /// The documents it refused, by index in the batch, with its reason.
    refused: Vec<(usize, String)>,
    /// The documents whose `_id` it holds already, by index: an earlier attempt wrote them
    /// before its answer was lost, or they are results written again, which replace an
    /// incomplete copy (see [`replace_incomplete`]).
    duplicates: Vec<usize>,
}

fn refused(e: &mongodb::error::Error) -> Option<Refusals> {
    const DUPLICATE_KEY: i32 = 11000;
    let mut out = Refusals::default();
    let mut sort = |index: usize, code: i32, message: &str| {
        if code == DUPLICATE_KEY {
            out.duplicates.push(index);
        } else {
            out.refused.push((index, format!("code {code}: {message}")));
        }
    };
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
            for w in failure.write_errors.iter().flatten() {
                sort(w.index, w.code, &w.message);
            }
        }
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            sort(0, w.code, &w.message);
        }
        _ => return None,
    }
    Some(out)
}

/// Results the collection holds already: each replaces its copy there when that copy is
/// incomplete (`attributes.complete: false`, flushed at the end of a run) — a final
/// result is never replaced, as in the SQL sinks.
async fn replace_incomplete(
    coll: &mongodb::Collection<Document>,
    docs: &[Document],
    which: &[usize],
) -> Result<(), mongodb::error::Error> {
    for d in which.iter().filter_map(|&i| docs.get(i)) {
        let Some(Bson::String(id)) = d.get("_id") else {
            continue;
        };
        coll.replace_one(doc! {"_id": id, "attributes.complete": false}, d.clone())
            .await?;
    }
    Ok(())
}

impl Sink for Mongo {
    const STORE_AND_FORWARD: bool = true;

    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let coll = collection(&ctx.dsm, cfg).await?;
        // Ask at once, so that the status says whether the server is there.
        let mut prepared = match ready(&coll, cfg).await {
            Ok(()) => {
                ctx.metrics.connected();
                true
            }
            Err(e) => {
                ctx.metrics
                    .failed(format!("{}: {}", cfg.place(), redact(&e.to_string())));
                false
            }
        };
        let dsm = ctx.dsm.id.to_string();
        let mut backoff = Backoff::default();
        while let Some(batch) = ctx.next().await {
            if !prepared {
                prepared = ctx
                    .attempt(ready(&coll, cfg))
                    .await
                    .is_some_and(|r| r.is_ok());
            }
            let docs: Vec<Document> = batch.iter().map(|o| document(o, &dsm)).collect();
            // Until written, refused, or given up at the stop deadline.
            let refusals = loop {
                let Some(inserted) = ctx
                    .attempt(coll.insert_many(docs.clone()).ordered(false))
                    .await
                else {
                    ctx.undelivered(&batch, "given up while writing").await;
                    break None;
                };
                let failed = match inserted {
                    Ok(_) => break Some(Vec::new()),
                    Err(e) => match refused(&e) {
                        Some(r) if r.duplicates.is_empty() => break Some(r.refused),
                        Some(r) => match replace_incomplete(&coll, &docs, &r.duplicates).await {
                            Ok(()) => break Some(r.refused),
                            Err(e) => e,
                        },
                        None => e,
                    },
                };
                let message = format!("{}: {}", cfg.place(), redact(&failed.to_string()));
                tracing::warn!(dsm = %ctx.dsm.id, error = %message, "insert failed; retrying");
                ctx.metrics.failed(&message);
                if !ctx.retry_after(&mut backoff).await {
                    ctx.undelivered(&batch, &message).await;
                    break None;
                }
            };
            let Some(refusals) = refusals else { continue };
            backoff.reset();
            ctx.metrics.connected();
            ctx.metrics.add(batch.len() - refusals.len());
            if !refusals.is_empty() {
                let rejected = refusals
                    .into_iter()
                    .filter_map(|(i, why)| {
                        batch.get(i).map(|o| Rejected {
                            observation: o.clone(),
                            reason: format!("{} refused the document: {why}", cfg.place()),
                        })
                    })
                    .collect();
                ctx.reject(rejected).await;
            }
        }
        Ok(())
    }
}

fn from_bson(v: &Bson) -> Value {
    match v {
        Bson::Double(f) => Value::Number(*f),
        Bson::Int32(i) => Value::Number(f64::from(*i)),
        Bson::Int64(i) => Value::Number(*i as f64),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::String(s) => Value::Text(Arc::new(s.clone())),
        other => Value::Json(Arc::new(other.clone().into_relaxed_extjson())),
    }
}

fn observation(d: &Document, dsm: Sym) -> Option<Observation> {
    let timestamp = match d.get("timestamp")? {
        Bson::DateTime(t) => Timestamp::from_millis(t.timestamp_millis()),
        Bson::String(s) => Timestamp::parse(s).ok()?,
        Bson::Int64(ms) => Timestamp::from_millis(*ms),
        _ => return None,
    };
    Some(Observation {
        source: d.get_str("source").map_or(dsm, Sym::new),
        name: Sym::new(d.get_str("name").ok()?),
        timestamp,
        value: from_bson(d.get("value")?),
        data_kind: d.get_str("dataKind").ok().map(Sym::new),
        ingested: ingest_clock(),
        attributes: d.get_document("attributes").ok().and_then(|a| {
            match Bson::Document(a.clone()).into_relaxed_extjson() {
                serde_json::Value::Object(m) => Some(Arc::new(m)),
                _ => None,
            }
        }),
        id: None,
    })
}

/// Documents read per query, at most.
const PAGE: i64 = 1024;

/// The smallest object id of second `secs`.
fn id_at(secs: u32) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

/// Reading position: documents with ids after `low`, minus those already read. Object ids
/// begin with their writer's clock, so a document may arrive after one with a greater id
/// (another writer, a retried insert): every poll reads again from `lookback` before the
/// newest id read, and skips the ids it has seen.
struct Position {
    lookback: u32,
    newest: Option<ObjectId>,
    seen: std::collections::BTreeSet<ObjectId>,
    /// Ids that are not object ids are read in order after the greatest one.
    other: Option<Bson>,
}

impl Position {
    fn low(&self) -> Option<ObjectId> {
        self.newest.map(|n| {
            let secs = u32::try_from(n.timestamp().timestamp_millis() / 1000).unwrap_or(0);
            id_at(secs.saturating_sub(self.lookback))
        })
    }

    fn filter(&self, after: Option<&Bson>) -> Document {
        match (after, self.low(), &self.other) {
            (Some(a), _, _) => doc! {"_id": {"$gt": a.clone()}},
            (None, Some(low), _) => doc! {"_id": {"$gt": low}},
            (None, None, Some(o)) => doc! {"_id": {"$gt": o.clone()}},
            (None, None, None) => Document::new(),
        }
    }

    /// Whether a document is new; notes it as read.
    fn take(&mut self, id: &Bson) -> bool {
        match id {
            Bson::ObjectId(o) => {
                if self.low().is_some_and(|low| *o <= low) || !self.seen.insert(*o) {
                    return false;
                }
                self.newest = Some(self.newest.map_or(*o, |n| n.max(*o)));
                true
            }
            other => {
                self.other = Some(other.clone());
                true
            }
        }
    }

    fn prune(&mut self) {
        if let Some(low) = self.low() {
            self.seen = self.seen.split_off(&low);
        }
    }
}

async fn page(
    coll: &mongodb::Collection<Document>,
    filter: Document,
) -> Result<Vec<Document>, mongodb::error::Error> {
    let mut cursor = coll.find(filter).sort(doc! {"_id": 1}).limit(PAGE).await?;
    let mut docs = Vec::new();
    while cursor.advance().await? {
        docs.push(cursor.deserialize_current()?);
    }
    Ok(docs)
}

impl Source for Mongo {
    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let coll = collection(&ctx.dsm, cfg).await?;
        let poll = cfg.poll_interval.get();
        let mut clock = EventClock::new(cfg.out_of_orderness.get());
        let mut position = Position {
            lookback: u32::try_from(cfg.lookback.get().as_secs()).unwrap_or(u32::MAX),
            newest: None,
            seen: std::collections::BTreeSet::new(),
            other: None,
        };
        let mut backoff = Backoff::default();
        let mut skip = cfg.from == StartFrom::End;
        loop {
            if ctx.cancel.is_cancelled() {
                return Ok(());
            }
            // One poll: every page after the position.
            let mut after: Option<Bson> = None;
            let failed = loop {
                let docs = match page(&coll, position.filter(after.as_ref())).await {
                    Ok(docs) => docs,
                    Err(e) => break Some(e),
                };
                backoff.reset();
                ctx.metrics.connected();
                after = docs.last().and_then(|d| d.get("_id")).cloned();
                let full = docs.len() == PAGE as usize;
                let mut batch = Vec::with_capacity(docs.len());
                for d in &docs {
                    let Some(id) = d.get("_id") else { continue };
                    if !position.take(id) || skip {
                        continue;
                    }
                    match observation(d, ctx.dsm.id) {
                        Some(o) => batch.push(o),
                        None => {
                            let text = Bson::Document(d.clone()).into_relaxed_extjson().to_string();
                            ctx.unreadable(
                                "the document is not an observation: it needs name, timestamp (a date, RFC 3339 text or epoch milliseconds) and value",
                                &text,
                            )
                            .await;
                        }
                    }
                }
                if !batch.is_empty() {
                    ctx.publish_timed(batch, &mut clock).await;
                }
                if !full {
                    break None;
                }
            };
            position.prune();
            if let Some(e) = failed {
                let message = format!("{}: {}", cfg.place(), redact(&e.to_string()));
                tracing::warn!(dsm = %ctx.dsm.id, error = %message, "reading failed; retrying");
                ctx.metrics.failed(&message);
                if !backoff.wait(&ctx.cancel).await {
                    return Ok(());
                }
                continue;
            }
            skip = false;
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = ctx.cancel.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            uri_hosts("mongodb://user:p@ss@db1:27017,db2:27018/plant?authSource=admin").as_deref(),
            Some("db1:27017,db2:27018")
        );
        assert_eq!(
            redact("error for mongodb://user:pw@host:27017: timeout"),
            "error for mongodb://********@host:27017: timeout"
        );
        assert_eq!(redact("no credentials here"), "no credentials here");
        assert_eq!(crate::http::percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn documents_read_back_as_the_observations_written() {
        let mut o = Observation::number(
            Sym::new("box-1"),
            Sym::new("TotalRealPower"),
            Timestamp::from_millis(1_527_174_000_000),
            1500.5,
        );
        o.data_kind = Some(Sym::new("dk"));
        let mut attrs = serde_json::Map::new();
        attrs.insert("count".into(), serde_json::json!(60));
        o.attributes = Some(Arc::new(attrs));
        let d = document(&o, "edge-db");
        let back = observation(&d, Sym::new("x")).unwrap();
        assert_eq!(
            (
                back.source,
                back.name,
                back.timestamp,
                back.value.clone(),
                back.data_kind
            ),
            (o.source, o.name, o.timestamp, o.value.clone(), o.data_kind)
        );
        assert_eq!(
            back.attribute("count").and_then(serde_json::Value::as_i64),
            Some(60)
        );
    }
}
