//! The Common Interoperability Registry's models (paper §3.4): objects, the databases that
//! hold records about them, and the links between the two.
//!
//! - An [`Object`] is one physical or logical thing (a site, a line, a machine, a sensor)
//!   with a CIR id, a UUID; objects form a hierarchy through their parents.
//! - A [`Repository`] is a database holding records about objects: PostgreSQL, MongoDB,
//!   SQLite, an HTTP/JSON endpoint, or the DDA's own model repository; it says how to
//!   fetch one record by its local id.
//! - A [`Link`] says that record `localID` of a repository is about an object. One local id
//!   of a repository is linked to one object; an object may have records in many
//!   repositories (that is what translating ids between systems reads).
//!
//! Data source manifests, data source definitions and edge gateways may name the object
//! they concern (`objectReferenceID`).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::diagnostic::Diagnostic;

/// A registered object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// The CIR id, a UUID.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name (required by the schema; defaulted so that an object missing it
    /// is still read for the checks across documents).
    #[serde(default)]
    pub name: String,
    /// What the object is: `site`, `line`, `machine`, `device`, `sensor`, or another class.
    #[serde(default)]
    pub class: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The object this one is part of.
    #[serde(
        rename = "parentObjectReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parent: Option<String>,
    /// Facts about the object kept in the registry itself (strings, numbers, booleans).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, Json>,
}

/// What kind of database a repository is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryType {
    /// A PostgreSQL table.
    #[default]
    Postgresql,
    /// A MongoDB collection.
    Mongodb,
    /// A SQLite table.
    Sqlite,
    /// An HTTP endpoint answering JSON, one URL per record.
    Http,
    /// The DDA's own model repository (the engine that holds the registry).
    Dda,
}

impl RepositoryType {
    /// The name as written in documents.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mongodb => "mongodb",
            Self::Sqlite => "sqlite",
            Self::Http => "http",
            Self::Dda => "dda",
        }
    }
}

/// A linked database and how to fetch one record of it by local id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The kind of database.
    #[serde(rename = "repositoryType")]
    pub repository_type: RepositoryType,
    /// PostgreSQL and MongoDB: the connection URL (no password in it); HTTP: the URL of one
    /// record, with `{localId}` where the local id goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SQLite: the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// MongoDB: the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// PostgreSQL and SQLite: the table; MongoDB: the collection; DDA: the collection of the
    /// API (`data-source-manifests`, `edge-gateways`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The column (field) holding the local id; `id` by default (`_id` for MongoDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The user to connect as (PostgreSQL, MongoDB; HTTP basic authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The password, as a secret reference (`${env:NAME}` or `${file:PATH}`), never the
    /// password itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// How long one fetch may take, a duration (`2s`, `500ms`, `PT2S`); 2 s by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The default time one fetch from a repository may take.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Repository {
    /// The column or field holding local ids.
    #[must_use]
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(match self.repository_type {
            RepositoryType::Mongodb => "_id",
            _ => "id",
        })
    }

    /// How long one fetch may take (the default when absent or unreadable; validation
    /// reports the latter).
    #[must_use]
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .as_deref()
            .and_then(|t| crate::parameters::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// Record `localID` of a repository is about an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Identifier; when absent, derived from the repository and local id (so that importing
    /// the same link twice replaces it).
    #[serde(alias = "_id", default)]
    pub id: String,
    /// The object.
    #[serde(rename = "objectReferenceID")]
    pub object: String,
    /// The repository holding the record.
    #[serde(rename = "repositoryReferenceID")]
    pub repository: String,
    /// The record's id in that repository.
    #[serde(rename = "localID")]
    pub local_id: String,
}

/// The namespace of link ids derived from (repository, local id).
const LINK_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6464_612d_6369_7200_8000_6c69_6e6b_7300);

impl Link {
    /// The id of the link of `repository`'s record `local_id`, when none is written.
    #[must_use]
    pub fn derived_id(repository: &str, local_id: &str) -> String {
        let mut name = Vec::with_capacity(repository.len() + local_id.len() + 1);
        name.extend_from_slice(repository.as_bytes());
        name.push(0);
        name.extend_from_slice(local_id.as_bytes());
        uuid::Uuid::new_v5(&LINK_NAMESPACE, &name).to_string()
    }
}

/// The API collections a `dda` repository may name (its `table`).
pub const DDA_COLLECTIONS: &[&str] = &[
    "data-interfaces",
    "data-kinds",
    "data-source-definitions",
    "data-source-manifests",
    "data-consumer-manifests",
    "analytics-processor-definitions",
    "edge-gateways",
    "analytics-manifests",
];

/// Checks what a repository needs for its type, reporting at pointers within it.
pub(crate) fn check_repository(
    report: &mut dyn FnMut(&str, Diagnostic),
    r: &Repository,
    options: &crate::Options<'_>,
) {
    let ty = r.repository_type.name();
    let mut need = |field: &str, value: &Option<String>, what: &str| {
        if value.as_deref().is_none_or(str::is_empty) {
            report(
                "",
                Diagnostic::error(
                    "missing-field",
                    format!("a {ty} repository needs `{field}`: {what}"),
                )
                .with_hint(format!(
                    "add `\"{field}\": ...` (docs/cir.md, Repositories)"
                )),
            );
        }
    };
    match r.repository_type {
        RepositoryType::Postgresql => {
            need(
                "url",
                &r.url,
                "the connection URL, postgresql://user@host:5432/database",
            );
            need("table", &r.table, "the table holding the records");
        }
        RepositoryType::Mongodb => {
            need("url", &r.url, "the connection URL, mongodb://host:27017");
            need("database", &r.database, "the database");
            need("table", &r.table, "the collection holding the records");
        }
        RepositoryType::Sqlite => {
            need("path", &r.path, "the database file");
            need("table", &r.table, "the table holding the records");
        }
        RepositoryType::Http => {
            need(
                "url",
                &r.url,
                "the URL of one record, with {localId} where its id goes",
            );
            if let Some(url) = &r.url
                && !url.contains("{localId}")
            {
                report(
                    "/url",
                    Diagnostic::error("wrong-value", "an HTTP repository's URL has no `{localId}`")
                        .with_hint("write where the record's id goes, e.g. http://erp:8080/assets/{localId}"),
                );
            }
        }
        RepositoryType::Dda => {
            need(
                "table",
                &r.table,
                "the API collection, e.g. data-source-manifests",
            );
            if let Some(t) = &r.table
                && !t.is_empty()
                && !DDA_COLLECTIONS.contains(&t.as_str())
            {
                let hint = crate::suggest::closest(t, DDA_COLLECTIONS.iter().copied()).map_or_else(
                    || format!("one of: {}", DDA_COLLECTIONS.join(", ")),
                    |c| format!("did you mean `{c}`?"),
                );
                report(
                    "/table",
                    Diagnostic::error(
                        "wrong-value",
                        format!("`{t}` is not a collection of the DDA's API"),
                    )
                    .with_hint(hint),
                );
            }
        }
    }
    if matches!(
        r.repository_type,
        RepositoryType::Postgresql | RepositoryType::Sqlite
    ) {
        for (field, value) in [("/table", r.table.as_deref()), ("/key", r.key.as_deref())] {
            if let Some(v) = value
                && !v.is_empty()
                && !(if field == "/table" {
                    crate::id::sql_table(v)
                } else {
                    crate::id::sql_identifier(v)
                })
            {
                report(
                    field,
                    Diagnostic::error("wrong-value", format!("`{v}` is not a plain SQL name"))
                        .with_hint("letters, digits and `_`, not starting with a digit, optionally schema.table"),
                );
            }
        }
    }
    if r.repository_type == RepositoryType::Sqlite
        && let (Some(path), Some(reach)) = (&r.path, options.reach)
        && let Err(message) = reach.path(path)
    {
        report(
            "/path",
            Diagnostic::error("path-not-allowed", message).with_hint(
                "use a path inside the data directory (a relative path is taken there), or allow the folder in dda.toml (`allowed_paths`)",
            ),
        );
    }
    if r.url.as_deref().is_some_and(url_has_password) {
        report(
            "/url",
            Diagnostic::error("plain-text-secret", "the URL holds a password").with_hint(
                "leave it out of the URL and give `password` as ${env:NAME} or ${file:PATH}",
            ),
        );
    }
    if let Some(pw) = &r.password
        && !crate::secret::is_reference(&serde_json::Value::String(pw.clone()))
    {
        report(
            "/password",
            Diagnostic::error(
                "plain-text-secret",
                "`password` holds a password, not a reference to one",
            )
            .with_hint(
                "give it as ${env:NAME} or ${file:PATH}: the registry never stores, shows or logs a password (docs/security.md)",
            ),
        );
    } else if let Some(pw) = &r.password
        && let Some(message) = crate::validate::refused_secret_reference(pw, options)
    {
        report(
            "/password",
            Diagnostic::error("reference-not-allowed", message).with_hint(
                "put the password in a file under an allowed secrets folder or in a DDA_SECRET_ variable, and name it here (docs/security.md)",
            ),
        );
    }
    if let Some(t) = &r.timeout
        && let Err(e) = crate::parameters::parse_duration(t)
    {
        report(
            "/timeout",
            Diagnostic::error("wrong-value", format!("`{t}` is not a duration: {e}"))
                .with_hint("e.g. 2s, 500ms or PT2S"),
        );
    }
}

/// Whether `url` holds a password (`scheme://user:password@host`).
#[must_use]
pub fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(authority, _)| authority.contains(':') && !authority.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_link_ids_tell_repository_from_local_id() {
        assert_eq!(
            Link::derived_id("erp", "A-1"),
            Link::derived_id("erp", "A-1")
        );
        assert_ne!(
            Link::derived_id("erp", "A-1"),
            Link::derived_id("erpA", "-1")
        );
        assert_ne!(
            Link::derived_id("erp", "A-1"),
            Link::derived_id("cmms", "A-1")
        );
    }
}
