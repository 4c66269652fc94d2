//! `SQLite`: DDA's embedded storage (nothing to install).
//!
//! Sink: every observation written to the DSM is a row of table `table` (default
//! `observations`) in the database file `path` (default `dda-output/dda.sqlite`; created,
//! with its folder, when missing). One transaction per batch. The layout, for queries:
//!
//! ```sql
//! CREATE TABLE observations (
//!   id           INTEGER PRIMARY KEY,  -- arrival order
//!   dsm          TEXT NOT NULL,        -- the DSM written (this sink)
//!   source       TEXT NOT NULL,        -- the DSM the observation came from
//!   name         TEXT NOT NULL,        -- observed quantity, e.g. TotalRealPower
//!   data_kind    TEXT,                 -- data kind id
//!   timestamp    TEXT NOT NULL,        -- event time, RFC 3339 UTC (2018-05-24T15:00:00.000Z)
//!   timestamp_ms INTEGER NOT NULL,     -- event time, epoch milliseconds
//!   value        REAL,                 -- the value, when it is a number
//!   value_json   TEXT,                 -- the value as JSON, when it is not a number
//!   attributes   TEXT,                 -- extra fields as a JSON object (window bounds, count...)
//!   uid          TEXT UNIQUE           -- the observation's id, when it has one
//! );
//! ```
//!
//! Idempotent for observations with ids — window results (one id per instance, processor,
//! key and window) and observations that arrived with one: writing one again replaces its
//! row rather than adding one, except that a partial window (`complete: false`) never
//! replaces a final one. So a replay, or re-running a job into the same database, keeps one
//! row per result. A table of an older layout gains the column when first opened.
//!
//! Source: reads rows of that layout in arrival order (for a cloud engine computing over
//! what edges stored), from the `beginning` (default) or the `end` of the table, polling
//! every `pollInterval` (default 1 s); the watermark trails the newest timestamp by
//! `outOfOrderness` (default 0).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::connector::{
    Connector, ConnectorError, ConnectorRegistration, EventClock, Sink, SinkContext, Source,
    SourceContext,
};
use engine::observation::{Observation, Value, ingest_clock};
use engine::registry::DataSource;
use engine::symbol::Sym;
use engine::time::Timestamp;
use manifests::config::{Config, ConfigError, Duration as Span};
use rusqlite::{Connection, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::StartFrom;

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<Sqlite>());

fn default_path() -> String {
    "dda-output/dda.sqlite".to_owned()
}

fn default_table() -> String {
    "observations".to_owned()
}

const fn default_poll_interval() -> Span {
    Span::from_secs(1)
}

/// The data source parameters of an SQLite table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file (created, with its folder, when missing).
    #[serde(default = "default_path")]
    #[schemars(extend("format" = "path"))]
    pub path: String,
    /// The table: letters, digits and `_`, not first a digit.
    #[serde(default = "default_table")]
    pub table: String,
    /// Source: read from the `beginning` of the table or only what is written after the
    /// source started (`end`).
    #[serde(default)]
    pub from: StartFrom,
    /// Source: how often to look for new rows.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Span,
    /// Source: how far event time trails the newest timestamp read.
    #[serde(default)]
    pub out_of_orderness: Span,
}

impl Config for SqliteConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !crate::sql_identifier(&self.table) {
            return Err(ConfigError::at(
                "table",
                format!(
                    "table {:?}: use letters, digits and _ (not first a digit)",
                    self.table
                ),
            ));
        }
        Ok(())
    }
}

/// A data source kept in an SQLite table.
#[derive(Debug)]
pub struct Sqlite {
    config: SqliteConfig,
}

impl Connector for Sqlite {
    const PROTOCOL: &'static str = "SQLite";
    const DESCRIPTION: &'static str = "An embedded SQLite database file: one row per observation";
    type Config = SqliteConfig;

    fn new(mut config: SqliteConfig, dsm: &DataSource) -> Result<Self, ConnectorError> {
        config.path = dsm.path(&config.path);
        Ok(Self { config })
    }

    fn place(&self) -> String {
        format!("{} (SQLite), table {}", self.config.path, self.config.table)
    }
}

/// Opens (creating when missing) the database and the table. SQLite answers "busy" at once,
/// without waiting, when two connections set a new file up together (say two sinks on one
/// file starting at once on a loaded machine): the opening is tried again, for as long as a
/// write would wait.
fn open(path: &str, table: &str) -> rusqlite::Result<Connection> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match open_once(path, table) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// How long a write waits for another writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn open_once(path: &str, table: &str) -> rusqlite::Result<Connection> {
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // One write transaction, taken at once (waiting for another writer, such as a second
    // sink on the same file setting up its table), so that no step finds the file locked.
    let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" (
           id INTEGER PRIMARY KEY,
           dsm TEXT NOT NULL,
           source TEXT NOT NULL,
           name TEXT NOT NULL,
           data_kind TEXT,
           timestamp TEXT NOT NULL,
           timestamp_ms INTEGER NOT NULL,
           value REAL,
           value_json TEXT,
           attributes TEXT,
           uid TEXT
         );
         CREATE INDEX IF NOT EXISTS \"{table}_name_time\" ON \"{table}\" (name, timestamp_ms);"
    ))?;
    // Tables made before results had ids: the column is added.
    let has_uid = tx
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'uid'"
        ))?
        .exists([])?;
    if !has_uid {
        tx.execute_batch(&format!("ALTER TABLE \"{table}\" ADD COLUMN uid TEXT"))?;
    }
    tx.execute_batch(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS \"{table}_uid\" ON \"{table}\" (uid)"
    ))?;
    tx.commit()?;
    Ok(conn)
}

fn write(
    conn: &mut Connection,
    table: &str,
    dsm: &str,
    batch: &[Observation],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO \"{table}\" (dsm, source, name, data_kind, timestamp, timestamp_ms, value, value_json, attributes, uid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (uid) DO UPDATE SET dsm = excluded.dsm, source = excluded.source,
               name = excluded.name, data_kind = excluded.data_kind, timestamp = excluded.timestamp,
               timestamp_ms = excluded.timestamp_ms, value = excluded.value,
               value_json = excluded.value_json, attributes = excluded.attributes
             WHERE json_extract(\"{table}\".attributes, '$.complete') IS 0
               OR json_extract(excluded.attributes, '$.complete') IS NOT 0"
        ))?;
        for o in batch {
            let (number, json) = match &o.value {
                Value::Number(n) if n.is_finite() => (Some(*n), None),
                other => (None, Some(other.to_json().to_string())),
            };
            let attributes = o
                .attributes
                .as_ref()
                .map(|a| Json::Object((**a).clone()).to_string());
            insert.execute(params![
                dsm,
                &*o.source.text(),
                &*o.name.text(),
                o.data_kind.map(|k| k.text().to_string()),
                o.timestamp.to_string(),
                o.timestamp.as_millis(),
                number,
                json,
                attributes,
                o.id.as_deref(),
            ])?;
        }
    }
    tx.commit()
}

impl Sink for Sqlite {
    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let dsm = ctx.dsm.clone();
        let (path, table) = (cfg.path.clone(), cfg.table.clone());
        let conn = tokio::task::spawn_blocking(move || open(&path, &table))
            .await
            .map_err(|e| ConnectorError::io(&dsm, e))?
            .map_err(|e| ConnectorError::io(&dsm, format!("cannot open {}: {e}", cfg.path)))?;
        let conn = Arc::new(Mutex::new(conn));
        ctx.metrics.connected();
        let dsm_id = ctx.dsm.id.to_string();
        while let Some(batch) = ctx.next().await {
            let conn = conn.clone();
            let (table, dsm_id) = (cfg.table.clone(), dsm_id.clone());
            let written = batch.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut c = conn
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                write(&mut c, &table, &dsm_id, &written)
            })
            .await
            .map_err(|e| ConnectorError::io(&ctx.dsm, e))?;
            result.map_err(|e| {
                ConnectorError::io(
                    &ctx.dsm,
                    format!("cannot write to {} table {}: {e}", cfg.path, cfg.table),
                )
            })?;
            ctx.metrics.add(batch.len());
        }
        Ok(())
    }
}

fn row_to_observation(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Observation)> {
    let id: i64 = row.get(0)?;
    let source: String = row.get(1)?;
    let name: String = row.get(2)?;
    let kind: Option<String> = row.get(3)?;
    let ms: i64 = row.get(4)?;
    let value: Option<f64> = row.get(5)?;
    let json: Option<String> = row.get(6)?;
    let attributes: Option<String> = row.get(7)?;
    let uid: Option<String> = row.get(8)?;
    let value = match (value, json) {
        (Some(n), _) => Value::Number(n),
        (None, Some(j)) => Value::from_json(&serde_json::from_str(&j).unwrap_or(Json::String(j))),
        (None, None) => Value::Json(Arc::new(Json::Null)),
    };
    let attributes = attributes
        .and_then(|a| serde_json::from_str::<serde_json::Map<String, Json>>(&a).ok())
        .map(Arc::new);
    Ok((
        id,
        Observation {
            source: Sym::new(&source),
            name: Sym::new(&name),
            timestamp: Timestamp::from_millis(ms),
            value,
            data_kind: kind.as_deref().map(Sym::new),
            ingested: ingest_clock(),
            attributes,
            id: uid.map(Arc::new),
        },
    ))
}

fn read_after(path: &str, table: &str, after: i64) -> rusqlite::Result<Vec<(i64, Observation)>> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, source, name, data_kind, timestamp_ms, value, value_json, attributes, uid FROM \"{table}\" WHERE id > ?1 ORDER BY id LIMIT 1024"
    ))?;
    let rows = stmt.query_map([after], row_to_observation)?;
    rows.collect()
}

fn last_id(path: &str, table: &str) -> rusqlite::Result<i64> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.query_row(
        &format!("SELECT COALESCE(MAX(id), 0) FROM \"{table}\""),
        [],
        |r| r.get(0),
    )
}

impl Source for Sqlite {
    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let poll = cfg.poll_interval.get();
        let mut clock = EventClock::new(cfg.out_of_orderness.get());
        ctx.metrics.connected();
        let mut after: Option<i64> = (cfg.from == StartFrom::Beginning).then_some(0);
        loop {
            if ctx.cancel.is_cancelled() {
                return Ok(());
            }
            let (path, table) = (cfg.path.clone(), cfg.table.clone());
            let position = after;
            // A missing database or table is not an error: the writer may not have started.
            let rows = tokio::task::spawn_blocking(move || match position {
                None => last_id(&path, &table).map(|id| (Some(id), Vec::new())),
                Some(a) => read_after(&path, &table, a).map(|rows| (Some(a), rows)),
            })
            .await
            .map_err(|e| ConnectorError::io(&ctx.dsm, e))?;
            match rows {
                Ok((_, rows)) if !rows.is_empty() => {
                    after = rows.last().map(|(id, _)| *id);
                    let batch: Vec<Observation> = rows.into_iter().map(|(_, o)| o).collect();
                    ctx.publish_timed(batch, &mut clock).await;
                    continue;
                }
                Ok((position, _)) => after = after.or(position),
                Err(e) => {
                    tracing::debug!(dsm = %ctx.dsm.id, error = %e, "waiting for the table to exist")
                }
            }
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

    fn result(value: f64, complete: bool) -> Observation {
        let mut o = Observation::number(
            Sym::new("box-1"),
            Sym::new("TotalRealPower"),
            Timestamp::from_millis(1_527_123_600_000),
            value,
        );
        o.id = Some(Arc::new("result-1".to_owned()));
        let mut a = serde_json::Map::new();
        if !complete {
            a.insert("complete".into(), Json::Bool(false));
        }
        o.attributes = Some(Arc::new(a));
        o
    }

    /// Sinks of one new file starting together (the pilot line's edge and global results
    /// share `cloud.sqlite`) all open it, each with its table.
    #[test]
    fn sinks_opening_one_new_file_at_once_all_open_it() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let path = dir.path().join(format!("shared-{round}.sqlite"));
            let opened: Vec<_> = (0..6)
                .map(|i| {
                    let path = path.to_str().unwrap().to_owned();
                    std::thread::spawn(move || open(&path, &format!("t{i}")).map(drop))
                })
                .collect();
            for t in opened {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn a_result_written_again_keeps_one_row_and_a_partial_one_never_replaces_the_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite");
        let path = path.to_str().unwrap();
        let mut conn = open(path, "results").unwrap();
        for (value, complete) in [(1.0, false), (2.0, true), (2.0, true), (3.0, false)] {
            write(&mut conn, "results", "out", &[result(value, complete)]).unwrap();
        }
        // One without an id is a row of its own each time.
        let mut plain = result(5.0, true);
        plain.id = None;
        write(&mut conn, "results", "out", &[plain.clone(), plain]).unwrap();
        let rows: Vec<(f64, Option<String>)> = conn
            .prepare("SELECT value, uid FROM results ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            vec![(2.0, Some("result-1".to_owned())), (5.0, None), (5.0, None)]
        );
        // A table of the older layout gains the column.
        let old = Connection::open(dir.path().join("old.sqlite")).unwrap();
        old.execute_batch(
            "CREATE TABLE results (id INTEGER PRIMARY KEY, dsm TEXT NOT NULL, source TEXT NOT NULL,
               name TEXT NOT NULL, data_kind TEXT, timestamp TEXT NOT NULL,
               timestamp_ms INTEGER NOT NULL, value REAL, value_json TEXT, attributes TEXT)",
        )
        .unwrap();
        drop(old);
        let old_path = dir.path().join("old.sqlite");
        let mut conn = open(old_path.to_str().unwrap(), "results").unwrap();
        write(
            &mut conn,
            "results",
            "out",
            &[result(2.0, true), result(2.0, true)],
        )
        .unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
