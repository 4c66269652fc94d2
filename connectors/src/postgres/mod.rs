//! `PostgreSQL`: a table of observations (tokio-postgres), as sink.
//!
//! The parameters, their types, defaults and meaning are the fields of [`PostgresConfig`] (listed
//! by `dda connectors`, tabled in docs/connectors.md).
//!
//! Each batch is one multi-row `INSERT ... SELECT FROM unnest(...)`: one round trip and one
//! transaction per batch. The layout, for queries:
//!
//! ```sql
//! CREATE TABLE observations (
//!   id          bigserial PRIMARY KEY,     -- arrival order
//!   dsm         text NOT NULL,             -- the DSM written (this sink)
//!   source      text NOT NULL,             -- the DSM the observation came from
//!   name        text NOT NULL,             -- observed quantity, e.g. TotalRealPower
//!   data_kind   text,                      -- data kind id
//!   ts          timestamptz NOT NULL,      -- event time
//!   value       double precision,          -- the value, when it is a number
//!   value_json  jsonb,                     -- the value, when it is not a number
//!   attributes  jsonb,                     -- extra fields (window bounds, count...)
//!   batch       uuid NOT NULL,             -- the batch it was written in
//!   seq         integer NOT NULL,          -- its place in the batch
//!   UNIQUE (batch, seq)
//! );
//! ```
//!
//! When the connection breaks (the server restarts, the network fails), the sink reconnects
//! with backoff and writes the same batch again; `(batch, seq)` makes the retry idempotent,
//! so a batch whose commit was acknowledged but whose answer was lost is not written twice.
//! A batch the server refuses for its data (class 22/23 errors) goes to the dead letters.

use std::sync::Arc;
use std::time::Duration;

use engine::connector::{
    Backoff, Connector, ConnectorError, ConnectorRegistration, Shared, Sink, SinkContext,
};
use engine::observation::{Observation, Value};
use engine::processor::Rejected;
use engine::registry::DataSource;
use manifests::config::{Config, ConfigError, Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

engine::inventory::submit!(ConnectorRegistration::sink::<Postgres>());

const fn default_port() -> u16 {
    5432
}

fn default_database() -> String {
    "postgres".into()
}

fn default_table() -> String {
    "observations".into()
}

/// The data source parameters of a PostgreSQL table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresConfig {
    /// The server's host.
    #[serde(default = "crate::loopback")]
    pub host: String,
    /// The server's port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database.
    #[serde(default = "default_database")]
    pub database: String,
    /// The table, optionally `schema.table`; created when missing.
    #[serde(default = "default_table")]
    pub table: String,
    /// The user (default `postgres`), as it is: references are resolved only in secret
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, as `${env:NAME}` or `${file:PATH}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A connection string instead of the parameters above (`postgresql://...` or
    /// `host=... dbname=...`), as `${env:NAME}` or `${file:PATH}` when it holds a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<Secret>,
}

impl Config for PostgresConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !crate::sql_table(&self.table) {
            return Err(ConfigError::at(
                "table",
                format!(
                    "table {:?}: use letters, digits and _ (not first a digit), as table or schema.table",
                    self.table
                ),
            ));
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// The table, quoted for SQL.
    fn table(&self) -> String {
        self.table
            .split('.')
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn connection(&self, dsm: &DataSource) -> Result<tokio_postgres::Config, ConnectorError> {
        let resolve = |name: &str, s: &Secret| {
            s.resolve()
                .map_err(|e| ConnectorError::config(dsm, format!("{name}: {e}")))
        };
        if let Some(uri) = &self.uri {
            // The parse error never quotes the string (it may hold a password).
            return resolve("uri", uri)?
                .parse()
                .map_err(|_| ConnectorError::config(dsm, "uri: not a PostgreSQL connection string (postgresql://user@host:port/db or host=... dbname=...)"));
        }
        let user = self.username.as_deref().unwrap_or("postgres");
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(user)
            .application_name("dda")
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = &self.password {
            c.password(resolve("password", p)?);
        }
        Ok(c)
    }

    /// Where, for messages (no credentials).
    fn place(&self) -> String {
        let target = match &self.uri {
            None => format!("{}:{}/{}", self.host, self.port, self.database),
            Some(uri) => uri
                .resolve()
                .ok()
                .and_then(|u| u.parse::<tokio_postgres::Config>().ok())
                .map_or_else(|| "(connection string)".to_owned(), |c| target_of(&c)),
        };
        format!("PostgreSQL {target} table {}", self.table)
    }
}

/// A data source kept in a PostgreSQL table.
#[derive(Debug)]
pub struct Postgres {
    config: PostgresConfig,
}

impl Connector for Postgres {
    const PROTOCOL: &'static str = "PostgreSQL";
    const ALIASES: &'static [&'static str] = &["postgres"];
    const DESCRIPTION: &'static str = "A PostgreSQL table: one row per observation, one multi-row insert per batch, idempotent retries";
    type Config = PostgresConfig;

    fn new(config: PostgresConfig, dsm: &DataSource) -> Result<Self, ConnectorError> {
        config.connection(dsm)?;
        Ok(Self { config })
    }

    fn place(&self) -> String {
        self.config.place()
    }
}

/// `host:port/database` of a parsed connection string (never its credentials).
fn target_of(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().or(c.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

async fn connect(
    config: &tokio_postgres::Config,
    table: &str,
    shared: &Shared,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    // The connection is driven by a task the engine owns; it ends when the client is
    // dropped (or the server goes away).
    shared.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    let index = table.replace('"', "").replace('.', "_");
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
               id bigserial PRIMARY KEY,
               dsm text NOT NULL,
               source text NOT NULL,
               name text NOT NULL,
               data_kind text,
               ts timestamptz NOT NULL,
               value double precision,
               value_json jsonb,
               attributes jsonb,
               batch uuid NOT NULL,
               seq integer NOT NULL,
               uid text,
               UNIQUE (batch, seq)
             );
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS uid text;
             CREATE UNIQUE INDEX IF NOT EXISTS \"{index}_uid\" ON {table} (uid);
             CREATE INDEX IF NOT EXISTS \"{index}_name_ts\" ON {table} (name, ts);"
        ))
        .await?;
    Ok(client)
}

/// A batch as column arrays.
struct Columns {
    source: Vec<String>,
    name: Vec<String>,
    data_kind: Vec<Option<String>>,
    ts: Vec<String>,
    value: Vec<Option<f64>>,
    value_json: Vec<Option<String>>,
    attributes: Vec<Option<String>>,
    seq: Vec<i32>,
    uid: Vec<Option<String>>,
}

impl Columns {
    /// The columns of `batch`, whose first observation is number `first` of its batch.
    fn of(batch: &[Observation], first: usize) -> Self {
        let mut c = Self {
            source: Vec::with_capacity(batch.len()),
            name: Vec::with_capacity(batch.len()),
            data_kind: Vec::with_capacity(batch.len()),
            ts: Vec::with_capacity(batch.len()),
            value: Vec::with_capacity(batch.len()),
            value_json: Vec::with_capacity(batch.len()),
            attributes: Vec::with_capacity(batch.len()),
            seq: Vec::with_capacity(batch.len()),
            uid: Vec::with_capacity(batch.len()),
        };
        for (i, o) in batch.iter().enumerate() {
            let (number, json) = match &o.value {
                Value::Number(n) if n.is_finite() => (Some(*n), None),
                other => (None, Some(other.to_json().to_string())),
            };
            c.source.push(o.source.text().to_string());
            c.name.push(o.name.text().to_string());
            c.data_kind.push(o.data_kind.map(|k| k.text().to_string()));
            c.ts.push(o.timestamp.to_string());
            c.value.push(number);
            c.value_json.push(json);
            c.attributes.push(
                o.attributes
                    .as_ref()
                    .map(|a| serde_json::Value::Object((**a).clone()).to_string()),
            );
            c.seq.push(i32::try_from(first + i).unwrap_or(i32::MAX));
            c.uid.push(o.id.as_deref().cloned());
        }
        c
    }
}

fn insert_statement(table: &str) -> String {
    format!(
        "INSERT INTO {table} (dsm, source, name, data_kind, ts, value, value_json, attributes, batch, seq, uid)
         SELECT $1, s, n, k, t::timestamptz, v, j::jsonb, a::jsonb, $2::text::uuid, q,
           COALESCE(d, $2::text || '/' || q::text)
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[], $10::int4[], $11::text[])
           AS u(s, n, k, t, v, j, a, q, d)
         ON CONFLICT (uid) DO UPDATE SET dsm = EXCLUDED.dsm, source = EXCLUDED.source,
           name = EXCLUDED.name, data_kind = EXCLUDED.data_kind, ts = EXCLUDED.ts,
           value = EXCLUDED.value, value_json = EXCLUDED.value_json, attributes = EXCLUDED.attributes
         WHERE {table}.attributes->>'complete' IS NOT DISTINCT FROM 'false'
           OR EXCLUDED.attributes->>'complete' IS DISTINCT FROM 'false'"
    )
}

async fn write(
    client: &Client,
    statement: &str,
    dsm: &str,
    batch_id: &str,
    c: &Columns,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            statement,
            &[
                &dsm,
                &batch_id,
                &c.source,
                &c.name,
                &c.data_kind,
                &c.ts,
                &c.value,
                &c.value_json,
                &c.attributes,
                &c.seq,
                &c.uid,
            ],
        )
        .await
}

/// Whether the server refused the batch for its data: retrying will not help.
fn refused_data(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let code = c.code();
        (code.starts_with("22") || code.starts_with("23")) && *c != SqlState::UNIQUE_VIOLATION
    })
}

impl Sink for Postgres {
    const STORE_AND_FORWARD: bool = true;

    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let config = cfg.connection(&ctx.dsm)?;
        let table = cfg.table();
        let statement = insert_statement(&table);
        let dsm = ctx.dsm.id.to_string();
        let mut client: Option<Client> = None;
        let mut backoff = Backoff::default();
        // Connect up front, so that the status says at once whether the server is there.
        match ctx.attempt(connect(&config, &table, &ctx.shared)).await {
            Some(Ok(c)) => {
                ctx.metrics.connected();
                client = Some(c);
            }
            Some(Err(e)) => ctx.metrics.failed(format!("{}: {e}", cfg.place())),
            None => {}
        }
        while let Some(batch) = ctx.next().await {
            let columns = Columns::of(&batch, 0);
            let batch_id = uuid::Uuid::new_v4().to_string();
            // Until written, refused, or given up at the stop deadline.
            let mut last_error = String::new();
            loop {
                if !last_error.is_empty() && !ctx.retry_after(&mut backoff).await {
                    ctx.undelivered(&batch, &last_error).await;
                    break;
                }
                let c = match client.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => match ctx.attempt(connect(&config, &table, &ctx.shared)).await {
                        Some(Ok(c)) => c,
                        Some(Err(e)) => {
                            last_error = format!("{}: {e}", cfg.place());
                            tracing::warn!(dsm = %ctx.dsm.id, error = %last_error, "cannot connect; retrying");
                            ctx.metrics.failed(&last_error);
                            continue;
                        }
                        None => {
                            ctx.undelivered(&batch, "given up while connecting").await;
                            break;
                        }
                    },
                };
                let Some(written) = ctx
                    .attempt(write(&c, &statement, &dsm, &batch_id, &columns))
                    .await
                else {
                    ctx.undelivered(&batch, "given up while writing").await;
                    break;
                };
                match written {
                    Ok(_) => {
                        client = Some(c);
                        backoff.reset();
                        ctx.metrics.connected();
                        ctx.metrics.add(batch.len());
                        break;
                    }
                    Err(e) if refused_data(&e) => {
                        // Row by row: the rows the server takes are written, the others go
                        // to the dead letters with the server's reason.
                        let (mut refused, mut written) = (Vec::new(), 0);
                        for (i, o) in batch.iter().enumerate() {
                            let row = Columns::of(std::slice::from_ref(o), i);
                            match write(&c, &statement, &dsm, &batch_id, &row).await {
                                Ok(_) => written += 1,
                                Err(e) if refused_data(&e) => refused.push(Rejected {
                                    observation: o.clone(),
                                    reason: format!("{} refused the observation: {e}", cfg.place()),
                                }),
                                // The connection broke: the whole batch again (idempotent).
                                Err(_) => break,
                            }
                        }
                        if c.is_closed() {
                            last_error = format!("{}: the connection broke", cfg.place());
                            continue;
                        }
                        tracing::warn!(dsm = %ctx.dsm.id, refused = refused.len(), "observations refused by the server sent to the dead letters");
                        client = Some(c);
                        ctx.metrics.add(written);
                        ctx.reject(refused).await;
                        break;
                    }
                    Err(e) => {
                        last_error = format!("{}: {e}", cfg.place());
                        tracing::warn!(dsm = %ctx.dsm.id, error = %last_error, "write failed; retrying the batch");
                        ctx.metrics.failed(&last_error);
                        if !c.is_closed() {
                            client = Some(c);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        for good in ["observations", "plant_1.hourly", "_x"] {
            assert!(crate::sql_table(good), "{good}");
        }
        for bad in ["", "1x", "a;drop", "a.b.c", "x\"y"] {
            assert!(!crate::sql_table(bad), "{bad}");
        }
        let cfg = PostgresConfig {
            host: crate::loopback(),
            port: 5432,
            database: "test".into(),
            table: "plant_1.hourly".into(),
            username: None,
            password: None,
            uri: None,
        };
        assert_eq!(cfg.table(), "\"plant_1\".\"hourly\"");
    }
}
