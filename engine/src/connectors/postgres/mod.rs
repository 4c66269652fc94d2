//! `PostgreSQL`: a table of observations (tokio-postgres), as sink.
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `host`, `port` | server | `127.0.0.1`, `5432` |
//! | `database` | database | `postgres` |
//! | `username`, `password` | credentials (`password` as `${env:NAME}` or `${file:PATH}`) | `postgres`, none |
//! | `uri` | a connection string instead of the above (`postgresql://...` or `key=value ...`) | — |
//! | `table` | table, optionally `schema.table`; created when missing | `observations` |
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

use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::connector::{
    Backoff, BoxFuture, ConnectorError, ConnectorRegistration, SinkContext, secret_param,
};
use crate::observation::{Observation, Value};
use crate::processor::Rejected;
use crate::registry::DataSource;

/// The protocol name.
pub const KIND: &str = "PostgreSQL";

inventory::submit! {
    ConnectorRegistration {
        protocol: KIND,
        description: "A PostgreSQL table: one row per observation, one multi-row insert per batch, idempotent retries",
        source: None,
        sink: Some(sink),
        check,
        place,
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}

const fn default_port() -> u16 {
    5432
}

fn default_database() -> String {
    "postgres".into()
}

fn default_table() -> String {
    "observations".into()
}

/// The DSM parameters this connector reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostgresConfig {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_table")]
    table: String,
}

fn identifier(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 63
        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !part.starts_with(|c: char| c.is_ascii_digit())
}

impl PostgresConfig {
    fn read(dsm: &DataSource) -> Result<Self, ConnectorError> {
        let cfg: Self = super::config(dsm)?;
        let parts: Vec<&str> = cfg.table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| identifier(p)) {
            return Err(ConnectorError::config(
                dsm,
                format!(
                    "table {:?}: use letters, digits and _ (not first a digit), as table or schema.table",
                    cfg.table
                ),
            ));
        }
        Ok(cfg)
    }

    /// The table, quoted for SQL.
    fn table(&self) -> String {
        self.table
            .split('.')
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn connection(&self, dsm: &DataSource) -> Result<tokio_postgres::Config, ConnectorError> {
        if let Some(uri) = secret_param(dsm, "uri")? {
            // The parse error never quotes the string (it may hold a password).
            return uri
                .parse()
                .map_err(|_| ConnectorError::config(dsm, "uri: not a PostgreSQL connection string (postgresql://user@host:port/db or host=... dbname=...)"));
        }
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(
                secret_param(dsm, "username")?
                    .as_deref()
                    .unwrap_or("postgres"),
            )
            .application_name("dda")
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = secret_param(dsm, "password")? {
            c.password(p);
        }
        Ok(c)
    }

    /// Where, for messages (no credentials).
    fn place(&self) -> String {
        format!(
            "PostgreSQL {}:{}/{} table {}",
            self.host, self.port, self.database, self.table
        )
    }
}

fn check(dsm: &DataSource) -> Result<(), ConnectorError> {
    PostgresConfig::read(dsm)?.connection(dsm).map(|_| ())
}

fn place(dsm: &DataSource) -> String {
    PostgresConfig::read(dsm).map_or_else(|_| KIND.to_owned(), |c| c.place())
}

async fn connect(
    config: &tokio_postgres::Config,
    table: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
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
               UNIQUE (batch, seq)
             );
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
        }
        c
    }
}

fn insert_statement(table: &str) -> String {
    format!(
        "INSERT INTO {table} (dsm, source, name, data_kind, ts, value, value_json, attributes, batch, seq)
         SELECT $1, s, n, k, t::timestamptz, v, j::jsonb, a::jsonb, $2::text::uuid, q
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[], $10::int4[])
           AS u(s, n, k, t, v, j, a, q)
         ON CONFLICT (batch, seq) DO NOTHING"
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

fn sink(mut ctx: SinkContext) -> BoxFuture<Result<(), ConnectorError>> {
    Box::pin(async move {
        let cfg = PostgresConfig::read(&ctx.dsm)?;
        let config = cfg.connection(&ctx.dsm)?;
        let table = cfg.table();
        let statement = insert_statement(&table);
        let dsm = ctx.dsm.id.to_string();
        let mut client: Option<Client> = None;
        let mut backoff = Backoff::default();
        // Connect up front, so that the status says at once whether the server is there.
        match connect(&config, &table).await {
            Ok(c) => {
                ctx.metrics.connected();
                client = Some(c);
            }
            Err(e) => ctx.metrics.failed(format!("{}: {e}", cfg.place())),
        }
        while let Some(batch) = ctx.next().await {
            let columns = Columns::of(&batch, 0);
            let batch_id = uuid::Uuid::new_v4().to_string();
            loop {
                let c = match client.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => match connect(&config, &table).await {
                        Ok(c) => c,
                        Err(e) => {
                            let message = format!("{}: {e}", cfg.place());
                            tracing::warn!(dsm = %ctx.dsm.id, error = %message, "cannot connect; retrying");
                            ctx.metrics.failed(&message);
                            tokio::time::sleep(backoff.delay()).await;
                            continue;
                        }
                    },
                };
                match write(&c, &statement, &dsm, &batch_id, &columns).await {
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
                            continue;
                        }
                        tracing::warn!(dsm = %ctx.dsm.id, refused = refused.len(), "observations refused by the server sent to the dead letters");
                        client = Some(c);
                        ctx.metrics.add(written);
                        ctx.reject(refused).await;
                        break;
                    }
                    Err(e) => {
                        let message = format!("{}: {e}", cfg.place());
                        tracing::warn!(dsm = %ctx.dsm.id, error = %message, "write failed; retrying the batch");
                        ctx.metrics.failed(&message);
                        if !c.is_closed() {
                            client = Some(c);
                        }
                        tokio::time::sleep(backoff.delay()).await;
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        for good in ["observations", "plant_1.hourly", "_x"] {
            assert!(good.split('.').all(identifier), "{good}");
        }
        for bad in ["", "1x", "a;drop", "a.b.c", "x\"y"] {
            let parts: Vec<_> = bad.split('.').collect();
            assert!(
                parts.len() > 2 || !parts.iter().all(|p| identifier(p)),
                "{bad}"
            );
        }
        let cfg = PostgresConfig {
            host: default_host(),
            port: 5432,
            database: "test".into(),
            table: "plant_1.hourly".into(),
        };
        assert_eq!(cfg.table(), "\"plant_1\".\"hourly\"");
    }
}
