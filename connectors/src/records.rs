//! Records of the Common Interoperability Registry's repositories, fetched by local id
//! (docs/cir.md).
//!
//! One call fetches every asked record of one repository with one query (`key IN (...)`)
//! and within the repository's timeout; a record that is not there is absent from the
//! answer, a repository that cannot answer is a [`RecordError`]. Clients of PostgreSQL and
//! MongoDB are kept between calls, one per repository configuration; a SQLite file is
//! opened read-only for each call. The DDA's own repository is not fetched here: the engine
//! holding the registry answers it from its models.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use manifests::cir::{Repository, RepositoryType};
use serde_json::{Map, Value as Json};

/// Why a repository gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// It did not answer within its timeout.
    Timeout(Duration),
    /// It cannot be reached (connection refused, unknown host, authentication).
    Unreachable(String),
    /// It answered with an error (no such table, a failed query, a bad HTTP status).
    Failed(String),
    /// Its configuration cannot be used (an unresolvable secret, a malformed URL).
    Misconfigured(String),
}

impl RecordError {
    /// A stable code for API answers.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "TIMEOUT",
            Self::Unreachable(_) => "UNREACHABLE",
            Self::Failed(_) => "FAILED",
            Self::Misconfigured(_) => "MISCONFIGURED",
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
            Self::Unreachable(e) => write!(f, "unreachable: {e}"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Misconfigured(e) => write!(f, "misconfigured: {e}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Records by local id.
pub type Found = HashMap<String, Json>;

/// Fetches records, keeping database clients between calls.
#[derive(Default)]
pub struct Records {
    postgres: Mutex<HashMap<String, Arc<tokio_postgres::Client>>>,
    mongo: Mutex<HashMap<String, mongodb::Client>>,
    http: Mutex<Option<crate::http::HttpsClient>>,
    /// The folder a relative SQLite path is read from (None: the working directory).
    base: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn password(repo: &Repository) -> Result<Option<String>, RecordError> {
    repo.password
        .as_deref()
        .map(|p| {
            manifests::secret::resolve_value(p)
                .map_err(|e| RecordError::Misconfigured(format!("password: {e}")))
        })
        .transpose()
}

/// Error texts of drivers may quote a connection string: keep credentials out.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://********{}", &text[..a], &text[b..]),
        _ => text.to_owned(),
    }
}

/// A table name quoted for SQL (`schema.table` → `"schema"."table"`); checked by validation.
fn quoted(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

impl Records {
    /// A fetcher reading relative SQLite paths from `base` (a server's data directory, as
    /// for its data sources' files).
    #[must_use]
    pub fn with_base(base: std::path::PathBuf) -> Self {
        Self {
            base: Some(base),
            ..Self::default()
        }
    }

    /// The records `ids` of `repo` that exist, within its timeout.
    ///
    /// # Errors
    ///
    /// The repository did not answer in time, cannot be reached, refused the query, or is
    /// of the DDA's own type (answered by the engine holding the registry).
    pub async fn fetch(&self, repo: &Repository, ids: &[String]) -> Result<Found, RecordError> {
        if ids.is_empty() {
            return Ok(Found::new());
        }
        let timeout = repo.timeout();
        let work = async {
            match repo.repository_type {
                RepositoryType::Postgresql => self.postgres(repo, ids).await,
                RepositoryType::Mongodb => self.mongo(repo, ids).await,
                RepositoryType::Sqlite => sqlite(repo, self.base.as_deref(), ids.to_vec()).await,
                RepositoryType::Http => self.http(repo, ids).await,
                RepositoryType::Dda => Err(RecordError::Misconfigured(
                    "the DDA's own repository is answered by the engine".into(),
                )),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| RecordError::Timeout(timeout))?
    }

    async fn postgres_client(
        &self,
        repo: &Repository,
    ) -> Result<Arc<tokio_postgres::Client>, RecordError> {
        let url = repo.url.clone().unwrap_or_default();
        let cache_key = format!(
            "{url}\0{}\0{}",
            repo.user.as_deref().unwrap_or_default(),
            repo.password.as_deref().unwrap_or_default()
        );
        if let Some(c) = lock(&self.postgres).get(&cache_key)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            RecordError::Misconfigured(
                "url: not a PostgreSQL connection string (postgresql://user@host:port/db)".into(),
            )
        })?;
        if let Some(u) = &repo.user {
            config.user(u);
        }
        if let Some(p) = password(repo)? {
            config.password(p);
        }
        config
            .application_name("dda-cir")
            .connect_timeout(repo.timeout());
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| RecordError::Unreachable(redact(&e.to_string())))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "CIR PostgreSQL connection ended");
            }
        });
        let client = Arc::new(client);
        lock(&self.postgres).insert(cache_key, client.clone());
        Ok(client)
    }

    async fn postgres(&self, repo: &Repository, ids: &[String]) -> Result<Found, RecordError> {
        let client = self.postgres_client(repo).await?;
        let table = quoted(repo.table.as_deref().unwrap_or_default());
        let key = quoted(repo.key());
        let sql = format!(
            "SELECT t.{key}::text, row_to_json(t)::text FROM {table} t WHERE t.{key}::text = ANY($1)"
        );
        let rows = client.query(&sql, &[&ids]).await.map_err(|e| {
            if client.is_closed() {
                RecordError::Unreachable(e.to_string())
            } else {
                RecordError::Failed(
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                )
            }
        })?;
        let mut found = Found::new();
        for row in rows {
            let id: Option<String> = row.get(0);
            let doc: Option<String> = row.get(1);
            if let (Some(id), Some(doc)) = (id, doc) {
                let value = serde_json::from_str(&doc).unwrap_or(Json::String(doc));
                found.insert(id, value);
            }
        }
        Ok(found)
    }

    async fn mongo(&self, repo: &Repository, ids: &[String]) -> Result<Found, RecordError> {
        use mongodb::bson::{Bson, Document, doc};
        let url = repo.url.clone().unwrap_or_default();
        let cache_key = format!(
            "{url}\0{}\0{}",
            repo.user.as_deref().unwrap_or_default(),
            repo.password.as_deref().unwrap_or_default()
        );
        let cached = lock(&self.mongo).get(&cache_key).cloned();
        let client = match cached {
            Some(c) => c,
            None => {
                let mut options = mongodb::options::ClientOptions::parse(&url)
                    .await
                    .map_err(|e| RecordError::Misconfigured(redact(&e.to_string())))?;
                if let Some(user) = &repo.user {
                    options.credential = Some(
                        mongodb::options::Credential::builder()
                            .username(user.clone())
                            .password(password(repo)?)
                            .build(),
                    );
                }
                // Longer than the fetch may take: a server that does not answer is a timeout.
                options.server_selection_timeout = Some(repo.timeout() * 2);
                options.connect_timeout = Some(repo.timeout());
                options.app_name = Some("dda-cir".into());
                let c = mongodb::Client::with_options(options)
                    .map_err(|e| RecordError::Misconfigured(redact(&e.to_string())))?;
                lock(&self.mongo).insert(cache_key, c.clone());
                c
            }
        };
        let coll = client
            .database(repo.database.as_deref().unwrap_or_default())
            .collection::<Document>(repo.table.as_deref().unwrap_or_default());
        let key = repo.key();
        // A local id is text; the database may keep it as a number.
        let mut wanted: Vec<Bson> = Vec::with_capacity(ids.len() * 2);
        for id in ids {
            wanted.push(Bson::String(id.clone()));
            if let Ok(n) = id.parse::<i64>() {
                wanted.push(Bson::Int64(n));
                if let Ok(n) = i32::try_from(n) {
                    wanted.push(Bson::Int32(n));
                }
            }
        }
        let failed = |e: mongodb::error::Error| match *e.kind {
            mongodb::error::ErrorKind::ServerSelection { .. }
            | mongodb::error::ErrorKind::Io(_)
            | mongodb::error::ErrorKind::Authentication { .. } => {
                RecordError::Unreachable(redact(&e.to_string()))
            }
            _ => RecordError::Failed(redact(&e.to_string())),
        };
        let mut cursor = coll
            .find(doc! {key: {"$in": wanted}})
            .await
            .map_err(failed)?;
        let mut found = Found::new();
        while cursor.advance().await.map_err(failed)? {
            let d: Document = cursor.deserialize_current().map_err(failed)?;
            let id = match d.get(key) {
                Some(Bson::String(s)) => s.clone(),
                Some(Bson::Int32(n)) => n.to_string(),
                Some(Bson::Int64(n)) => n.to_string(),
                Some(Bson::ObjectId(o)) => o.to_hex(),
                _ => continue,
            };
            found.insert(id, Bson::Document(d).into_relaxed_extjson());
        }
        Ok(found)
    }

    async fn http(&self, repo: &Repository, ids: &[String]) -> Result<Found, RecordError> {
        let client = {
            let mut c = lock(&self.http);
            if c.is_none() {
                *c = Some(crate::http::https_client(None).map_err(RecordError::Misconfigured)?);
            }
            c.clone().unwrap_or_else(|| unreachable!("set above"))
        };
        let auth = match (&repo.user, password(repo)?) {
            (Some(u), p) => {
                use base64::Engine as _;
                let pair = format!("{u}:{}", p.unwrap_or_default());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (None, _) => None,
        };
        let template = repo.url.clone().unwrap_or_default();
        let one = |id: String| {
            let client = client.clone();
            let auth = auth.clone();
            let url = template.replace("{localId}", &crate::http::percent_encode(&id));
            async move {
                let mut req = axum::http::Request::get(&url);
                req = req.header(axum::http::header::ACCEPT, "application/json");
                if let Some(a) = auth {
                    req = req.header(axum::http::header::AUTHORIZATION, a);
                }
                let req = req
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| RecordError::Misconfigured(format!("url: {e}")))?;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| RecordError::Unreachable(redact(&format!("{e:?}"))))?;
                let status = resp.status();
                if status == axum::http::StatusCode::NOT_FOUND {
                    return Ok((id, None));
                }
                if !status.is_success() {
                    return Err(RecordError::Failed(format!("HTTP {status}")));
                }
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| RecordError::Unreachable(e.to_string()))?
                    .to_bytes();
                let value: Json = serde_json::from_slice(&body)
                    .map_err(|e| RecordError::Failed(format!("not JSON: {e}")))?;
                Ok((id, Some(value)))
            }
        };
        let answers = futures_util::future::join_all(ids.iter().cloned().map(one)).await;
        let mut found = Found::new();
        for a in answers {
            if let (id, Some(v)) = a? {
                found.insert(id, v);
            }
        }
        Ok(found)
    }
}

/// SQLite rows, read-only, off the async threads.
async fn sqlite(
    repo: &Repository,
    base: Option<&std::path::Path>,
    ids: Vec<String>,
) -> Result<Found, RecordError> {
    let written = repo.path.clone().unwrap_or_default();
    let path = match base {
        Some(b) if std::path::Path::new(&written).is_relative() => {
            b.join(&written).to_string_lossy().into_owned()
        }
        _ => written,
    };
    let table = quoted(repo.table.as_deref().unwrap_or_default());
    let key = quoted(repo.key());
    tokio::task::spawn_blocking(move || {
        use rusqlite::OpenFlags;
        use rusqlite::types::ValueRef;
        if !std::path::Path::new(&path).exists() {
            return Err(RecordError::Unreachable(format!("{path}: no such file")));
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| RecordError::Unreachable(format!("{path}: {e}")))?;
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let mut found = Found::new();
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT * FROM {table} WHERE CAST({key} AS TEXT) IN ({marks})");
            let mut stmt = conn
                .prepare(&sql)
                .map_err(|e| RecordError::Failed(e.to_string()))?;
            let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            let key_at = names
                .iter()
                .position(|n| Some(n.as_str()) == quoted_inner(&key))
                .unwrap_or(0);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(chunk.iter()))
                .map_err(|e| RecordError::Failed(e.to_string()))?;
            while let Some(row) = rows
                .next()
                .map_err(|e| RecordError::Failed(e.to_string()))?
            {
                let mut doc = Map::new();
                let mut id = String::new();
                for (i, name) in names.iter().enumerate() {
                    let v = match row
                        .get_ref(i)
                        .map_err(|e| RecordError::Failed(e.to_string()))?
                    {
                        ValueRef::Null => Json::Null,
                        ValueRef::Integer(n) => Json::from(n),
                        ValueRef::Real(f) => {
                            serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
                        }
                        ValueRef::Text(t) => Json::String(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => {
                            Json::String(b.iter().map(|x| format!("{x:02x}")).collect())
                        }
                    };
                    if i == key_at {
                        id = match &v {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                    }
                    doc.insert(name.clone(), v);
                }
                found.insert(id, Json::Object(doc));
            }
        }
        Ok(found)
    })
    .await
    .map_err(|e| RecordError::Failed(e.to_string()))?
}

/// `"name"` → `name`.
fn quoted_inner(q: &str) -> Option<&str> {
    q.strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_hold_no_credentials() {
        assert_eq!(
            redact("cannot connect to mongodb://u:secret@db:27017"),
            "cannot connect to mongodb://********@db:27017"
        );
        assert_eq!(quoted("maint.assets"), "\"maint\".\"assets\"");
    }
}
