//! The Common Interoperability Registry over the API (docs/cir.md): what the registry's
//! routes ask of the service beyond storing its objects, repositories and links as models.
//!
//! - [`Service::resolve`]: an object with every linked record fetched from its repository,
//!   all repositories at once, each within its timeout; a repository that does not answer
//!   is named with its error and the others' records are still given.
//! - [`Service::translate`]: a repository's local id to the CIR id and the local ids of
//!   the same object in every other repository.
//! - [`Service::search`]: objects by class, name, parent, attributes, or the DDA entity
//!   naming them.
//! - [`Service::import_links`]: many links from CSV or JSON lines, all or none.
//! - [`Service::cir_changes`]: every change to the registry, as it happens.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use connectors::records::{Found, RecordError, Records};
use manifests::EntityKind;
use manifests::model::{Link, Object, Repository as Repo, RepositoryType};
use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::sync::broadcast;

use crate::problem::Problem;
use crate::repository::RepositoryError;
use crate::service::{Service, ServiceError};

/// How many changes a slow reader of the change stream may fall behind before it is told
/// it missed some.
const CHANGES_KEPT: usize = 1024;

/// The registry's part of the service: the record fetcher and the change stream.
#[derive(Debug)]
pub struct Cir {
    /// Fetches records from linked repositories.
    pub records: Records,
    changes: broadcast::Sender<Change>,
    sequence: AtomicU64,
}

impl Cir {
    /// The registry's part of a server whose relative SQLite paths are in `base`.
    #[must_use]
    pub fn new(base: std::path::PathBuf) -> Self {
        Self {
            records: Records::with_base(base),
            changes: broadcast::channel(CHANGES_KEPT).0,
            sequence: AtomicU64::new(0),
        }
    }
}

/// The server's models and entities for the `enrich` processor's record loads
/// ([`connectors::linked`]): the repository as it is at each load, so that a link added
/// over the API is used from the next one.
#[derive(Debug)]
pub struct Directory {
    service: std::sync::OnceLock<std::sync::Weak<Service>>,
    records: Records,
}

impl Directory {
    /// A directory for a server whose relative SQLite paths are in `base`.
    #[must_use]
    pub fn new(base: std::path::PathBuf) -> Self {
        Self {
            service: std::sync::OnceLock::new(),
            records: Records::with_base(base),
        }
    }

    /// Binds the directory to the service it serves (once it exists).
    pub fn bind(&self, service: &std::sync::Arc<Service>) {
        let _ = self.service.set(std::sync::Arc::downgrade(service));
    }

    fn service(&self) -> Option<std::sync::Arc<Service>> {
        self.service.get()?.upgrade()
    }
}

impl connectors::linked::Directory for Directory {
    fn model(&self) -> Option<std::sync::Arc<manifests::Model>> {
        Some(self.service()?.repository.model())
    }

    fn records(&self) -> &Records {
        &self.records
    }

    fn own_records(&self, repository: &Repo, ids: &[String], _model: &manifests::Model) -> Found {
        self.service()
            .map(|s| s.own_records(repository, ids))
            .unwrap_or_default()
    }
}

/// One change to the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Its number since the server started (the event's id).
    pub sequence: u64,
    /// `created`, `updated`, `deleted` or `imported`.
    pub op: &'static str,
    /// `Object`, `Repository` or `Link`.
    pub kind: &'static str,
    /// The entity changed (none for an import).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How many entities an import created or replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
}

/// Whether entities of `kind` belong to the registry.
#[must_use]
pub const fn is_registry(kind: EntityKind) -> bool {
    matches!(
        kind,
        EntityKind::Object | EntityKind::Repository | EntityKind::Link
    )
}

impl Cir {
    /// Tells readers of the change stream (none listening is fine).
    pub fn announce(
        &self,
        op: &'static str,
        kind: EntityKind,
        id: Option<&str>,
        count: Option<usize>,
    ) {
        if !is_registry(kind) {
            return;
        }
        let change = Change {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            op,
            kind: kind.info().marker,
            id: id.map(str::to_owned),
            count,
        };
        let _ = self.changes.send(change);
    }

    /// A receiver of every change from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// An object in brief: id, name, class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Brief {
    /// The CIR id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its class.
    pub class: String,
}

impl From<&Object> for Brief {
    fn from(o: &Object) -> Self {
        Self {
            id: o.id.clone(),
            name: o.name.clone(),
            class: o.class.clone(),
        }
    }
}

/// A local id in a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalId {
    /// The repository.
    pub repository: String,
    /// The record's id there.
    pub local_id: String,
}

/// A DDA entity naming an object (`objectReferenceID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Naming {
    /// Its kind (`DataSourceManifest`, ...).
    pub kind: &'static str,
    /// Its API collection (`data-source-manifests`, ...).
    pub collection: &'static str,
    /// Its id.
    pub id: String,
}

/// A record fetched for an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The repository it came from.
    pub repository: String,
    /// That repository's type.
    pub repository_type: &'static str,
    /// Its local id.
    pub local_id: String,
    /// The link naming it.
    pub link: String,
    /// The record as the repository holds it.
    pub record: Json,
}

/// A repository that gave no records.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFailure {
    /// The repository.
    pub repository: String,
    /// Its type.
    pub repository_type: &'static str,
    /// `TIMEOUT`, `UNREACHABLE`, `FAILED`, `MISCONFIGURED`.
    pub code: &'static str,
    /// What happened.
    pub message: String,
    /// The local ids that were asked for.
    pub local_ids: Vec<String>,
}

/// An object with everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The object (as the API shows it).
    pub object: Json,
    /// Its parent, the parent's parent, ... up to the root.
    pub ancestors: Vec<Brief>,
    /// The objects whose parent it is.
    pub children: Vec<Brief>,
    /// The DDA entities naming it.
    pub entities: Vec<Naming>,
    /// The linked records fetched, in link order.
    pub records: Vec<Record>,
    /// Links whose repository answered without the record.
    pub missing: Vec<LocalId>,
    /// Repositories that did not answer, with why.
    pub errors: Vec<RepositoryFailure>,
    /// Whether every linked record was fetched.
    pub complete: bool,
}

/// An id of one system in the others'.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Translation {
    /// The CIR id.
    pub cir_id: String,
    /// The object in brief.
    pub object: Brief,
    /// What was asked.
    pub from: LocalId,
    /// The same object's local ids in the other repositories (or the one asked for).
    pub local_ids: Vec<LocalId>,
}

/// What a search asks for; every given criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// The class, exactly.
    pub class: Option<String>,
    /// The name, exactly.
    pub name: Option<String>,
    /// Text the name contains, in any case.
    pub text: Option<String>,
    /// The parent's CIR id.
    pub parent: Option<String>,
    /// Attributes, each equal as text.
    pub attributes: Vec<(String, String)>,
    /// The DDA entity naming the object: (collection, id).
    pub entity: Option<(String, String)>,
    /// At most this many answers.
    pub limit: usize,
    /// After skipping this many.
    pub offset: usize,
}

/// The default and largest number of objects one search answers.
pub const SEARCH_LIMIT: (usize, usize) = (100, 1000);

/// An object found, with its links.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The object.
    #[serde(flatten)]
    pub object: Object,
    /// Its records' local ids.
    pub links: Vec<LocalId>,
}

/// A page of search answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hits {
    /// How many objects match in all.
    pub total: usize,
    /// Those of this page.
    pub objects: Vec<Hit>,
}

/// The syntax of a bulk import's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// A header row (`objectReferenceID,repositoryReferenceID,localID[,id]`), then one link
    /// per row.
    Csv,
    /// One link document per line.
    JsonLines,
}

/// The CSV columns a link import knows, by the names they may go by.
const COLUMNS: &[(&str, &[&str])] = &[
    (
        "objectReferenceID",
        &["objectreferenceid", "object", "cirid"],
    ),
    (
        "repositoryReferenceID",
        &["repositoryreferenceid", "repository"],
    ),
    ("localID", &["localid", "local_id"]),
    ("id", &["id", "_id", "link"]),
];

/// The rows of a bulk import, each labelled by its line (1-based) and as a link document.
///
/// # Errors
///
/// Every row that cannot be read (a malformed line, an unknown column), located.
pub fn import_rows(body: &[u8], format: ImportFormat) -> Result<Vec<(usize, Json)>, Vec<Problem>> {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    match format {
        ImportFormat::JsonLines => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                let line_no = i + 1;
                let text = line.strip_suffix(b"\r").unwrap_or(line);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Json>(text) {
                    Ok(doc @ Json::Object(_)) => rows.push((line_no, doc)),
                    Ok(_) => problems.push(
                        Problem::at(format!("/{line_no}"), format!("line {line_no} is not a JSON object"))
                            .with_hint(Some("one link per line: {\"objectReferenceID\": ..., \"repositoryReferenceID\": ..., \"localID\": ...}".into())),
                    ),
                    Err(e) => problems.push(
                        Problem::at(format!("/{line_no}"), format!("line {line_no} is not JSON: {e}"))
                            .with_hint(Some("one link document per line, each on one line".into())),
                    ),
                }
            }
        }
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .trim(csv::Trim::All)
                .from_reader(body);
            let headers = match reader.headers() {
                Ok(h) => h.clone(),
                Err(e) => {
                    return Err(vec![Problem::at(
                        "/1",
                        format!("the header row cannot be read: {e}"),
                    )]);
                }
            };
            let mut columns = Vec::new();
            for (i, h) in headers.iter().enumerate() {
                let lower = h.to_ascii_lowercase();
                match COLUMNS.iter().find(|(_, names)| names.contains(&lower.as_str())) {
                    Some((field, _)) => columns.push(*field),
                    None => problems.push(
                        Problem::at(format!("/1/{i}"), format!("unknown column `{h}`"))
                            .with_hint(Some("the columns are objectReferenceID, repositoryReferenceID, localID and, optionally, id".into())),
                    ),
                }
            }
            if !problems.is_empty() {
                return Err(problems);
            }
            for record in reader.records() {
                match record {
                    Ok(r) => {
                        let line_no = r.position().map_or(0, |p| p.line() as usize);
                        let mut doc = serde_json::Map::new();
                        for (field, value) in columns.iter().zip(r.iter()) {
                            if !(value.is_empty() && *field == "id") {
                                doc.insert((*field).to_owned(), Json::String(value.to_owned()));
                            }
                        }
                        rows.push((line_no, Json::Object(doc)));
                    }
                    Err(e) => {
                        let line_no = e.position().map_or(0, |p| p.line() as usize);
                        problems.push(Problem::at(
                            format!("/{line_no}"),
                            format!("line {line_no}: {e}"),
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

impl Service {
    /// The object `id` with everything linked to it: its records fetched from every
    /// repository at once, each within its timeout.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such object.
    pub async fn resolve(&self, id: &str) -> Result<Resolved, ServiceError> {
        let entity = self.entity(EntityKind::Object, id)?;
        let model = self.repository.model();
        let mut ancestors = Vec::new();
        let mut next = model.objects.get(id).and_then(|o| o.parent.clone());
        while let Some(p) = next {
            let Some(o) = model.objects.get(&p) else {
                break;
            };
            if o.id == id || ancestors.iter().any(|a: &Brief| a.id == o.id) {
                break;
            }
            ancestors.push(Brief::from(o));
            next = o.parent.clone();
        }
        let mut children = Vec::new();
        let mut entities = Vec::new();
        let mut links: Vec<Link> = Vec::new();
        for r in self.repository.referrers(EntityKind::Object, id) {
            match r.kind {
                EntityKind::Object => {
                    if let Some(o) = model.objects.get(&r.id) {
                        children.push(Brief::from(o));
                    }
                }
                EntityKind::Link => {
                    if let Some(l) = model.links.get(&r.id) {
                        links.push(l.clone());
                    }
                }
                kind => entities.push(Naming {
                    kind: kind.info().marker,
                    collection: kind.info().folder,
                    id: r.id,
                }),
            }
        }
        // One fetch per repository, all at once.
        let mut asked: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for l in &links {
            asked
                .entry(&l.repository)
                .or_default()
                .push(l.local_id.clone());
        }
        let fetches = asked.iter().map(|(repo_id, ids)| {
            let repo = model.repositories.get(*repo_id).cloned();
            async move {
                let found = match &repo {
                    None => Err(RecordError::Misconfigured("no such repository".into())),
                    Some(r) if r.repository_type == RepositoryType::Dda => {
                        Ok(self.own_records(r, ids))
                    }
                    Some(r) => self.cir.records.fetch(r, ids).await,
                };
                ((*repo_id).to_owned(), repo, found)
            }
        });
        let answers = futures_util::future::join_all(fetches).await;
        let mut by_repo: HashMap<String, Found> = HashMap::new();
        let mut errors = Vec::new();
        for (repo_id, repo, found) in answers {
            match found {
                Ok(f) => {
                    by_repo.insert(repo_id, f);
                }
                Err(e) => {
                    tracing::warn!(repository = %repo_id, error = %e, "a CIR repository gave no records");
                    errors.push(RepositoryFailure {
                        local_ids: asked.get(repo_id.as_str()).cloned().unwrap_or_default(),
                        repository: repo_id,
                        repository_type: repo.map_or("unknown", |r| r.repository_type.name()),
                        code: e.code(),
                        message: e.to_string(),
                    });
                }
            }
        }
        let mut records = Vec::new();
        let mut missing = Vec::new();
        for l in links {
            let Some(found) = by_repo.get_mut(&l.repository) else {
                continue;
            };
            match found.get(&l.local_id) {
                Some(record) => records.push(Record {
                    repository_type: model
                        .repositories
                        .get(&l.repository)
                        .map_or("unknown", |r| r.repository_type.name()),
                    repository: l.repository,
                    local_id: l.local_id,
                    link: l.id,
                    record: record.clone(),
                }),
                None => missing.push(LocalId {
                    repository: l.repository,
                    local_id: l.local_id,
                }),
            }
        }
        Ok(Resolved {
            object: self.show(&entity),
            ancestors,
            children,
            entities,
            complete: errors.is_empty() && missing.is_empty(),
            records,
            missing,
            errors,
        })
    }

    /// The records of the DDA's own repository: entities of a collection, as shown.
    fn own_records(&self, repo: &Repo, ids: &[String]) -> Found {
        let Some(kind) = repo.table.as_deref().and_then(EntityKind::from_folder) else {
            return Found::new();
        };
        ids.iter()
            .filter_map(|id| {
                self.repository
                    .get(kind, id)
                    .map(|e| (id.clone(), self.show(&e)))
            })
            .collect()
    }

    /// Record `local_id` of `repository` as a CIR id and the same object's local ids in the
    /// other repositories (only in `to`, when given).
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when the repository is unknown or the record is not
    /// linked.
    pub fn translate(
        &self,
        repository: &str,
        local_id: &str,
        to: Option<&str>,
    ) -> Result<Translation, ServiceError> {
        self.entity(EntityKind::Repository, repository)?;
        if let Some(t) = to {
            self.entity(EntityKind::Repository, t)?;
        }
        let model = self.repository.model();
        let link = self
            .repository
            .claimed_by(repository, local_id)
            .and_then(|l| model.links.get(&l).cloned())
            .ok_or_else(|| ServiceError::NotFound {
                what: "CIR link of record",
                id: format!("{repository}/{local_id}"),
            })?;
        let object = model
            .objects
            .get(&link.object)
            .ok_or_else(|| ServiceError::NotFound {
                what: EntityKind::Object.info().title,
                id: link.object.clone(),
            })?;
        let local_ids = self
            .links_of(&model, &object.id)
            .into_iter()
            .filter(|l| l.id != link.id)
            .filter(|l| to.is_none_or(|t| l.repository == t))
            .map(|l| LocalId {
                repository: l.repository,
                local_id: l.local_id,
            })
            .collect();
        Ok(Translation {
            cir_id: object.id.clone(),
            object: Brief::from(object),
            from: LocalId {
                repository: repository.to_owned(),
                local_id: local_id.to_owned(),
            },
            local_ids,
        })
    }

    /// The links of object `id` in `model` (a snapshot of the repository's), in the order
    /// they were stored.
    fn links_of(&self, model: &manifests::Model, id: &str) -> Vec<Link> {
        self.repository
            .referrers(EntityKind::Object, id)
            .into_iter()
            .filter(|r| r.kind == EntityKind::Link)
            .filter_map(|r| model.links.get(&r.id).cloned())
            .collect()
    }

    /// The objects meeting every criterion of `search`, in the order they were stored.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when the entity searched by does not exist.
    pub fn search(&self, search: &Search) -> Result<Hits, ServiceError> {
        let model = self.repository.model();
        let named: Option<Vec<String>> = match &search.entity {
            None => None,
            Some((collection, id)) => Some(self.objects_of_entity(collection, id)?),
        };
        let text = search.text.as_deref().map(str::to_lowercase);
        let matching: Vec<&Object> = model
            .objects
            .values()
            .filter(|o| search.class.as_ref().is_none_or(|c| &o.class == c))
            .filter(|o| search.name.as_ref().is_none_or(|n| &o.name == n))
            .filter(|o| {
                text.as_ref()
                    .is_none_or(|t| o.name.to_lowercase().contains(t))
            })
            .filter(|o| {
                search
                    .parent
                    .as_ref()
                    .is_none_or(|p| o.parent.as_ref() == Some(p))
            })
            .filter(|o| {
                search
                    .attributes
                    .iter()
                    .all(|(k, v)| match o.attributes.get(k) {
                        Some(Json::String(s)) => s == v,
                        Some(other) => serde_json::from_str::<Json>(v).is_ok_and(|x| &x == other),
                        None => false,
                    })
            })
            .filter(|o| named.as_ref().is_none_or(|n| n.contains(&o.id)))
            .collect();
        let objects = matching
            .iter()
            .skip(search.offset)
            .take(search.limit)
            .map(|o| Hit {
                object: (*o).clone(),
                links: self
                    .links_of(&model, &o.id)
                    .into_iter()
                    .map(|l| LocalId {
                        repository: l.repository,
                        local_id: l.local_id,
                    })
                    .collect(),
            })
            .collect();
        Ok(Hits {
            total: matching.len(),
            objects,
        })
    }

    /// The objects a DDA entity concerns: the one it names (`objectReferenceID`), and those
    /// with a link to it through a repository of the DDA's own type.
    fn objects_of_entity(&self, collection: &str, id: &str) -> Result<Vec<String>, ServiceError> {
        let kind = EntityKind::from_folder(collection)
            .or_else(|| EntityKind::from_name(collection))
            .ok_or_else(|| ServiceError::NotFound {
                what: "collection",
                id: collection.to_owned(),
            })?;
        let entity = self.entity(kind, id)?;
        let model = self.repository.model();
        let mut out: Vec<String> = entity
            .references()
            .into_iter()
            .filter(|r| r.kind == EntityKind::Object && r.pointer == "/objectReferenceID")
            .map(|r| r.id.to_owned())
            .collect();
        for repo in model.repositories.values() {
            if repo.repository_type == RepositoryType::Dda
                && repo.table.as_deref() == Some(kind.info().folder)
                && let Some(link) = self.repository.claimed_by(&repo.id, id)
                && let Some(l) = model.links.get(&link)
                && !out.contains(&l.object)
            {
                out.push(l.object.clone());
            }
        }
        Ok(out)
    }

    /// Imports links from `body`, all or none; answers how many were imported and how many
    /// of those replaced a stored link.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Invalid`] with every problem of every row, located by line.
    pub async fn import_links(
        &self,
        body: &[u8],
        format: ImportFormat,
    ) -> Result<Json, ServiceError> {
        let invalid = |problems| {
            ServiceError::from(RepositoryError::Invalid {
                kind: EntityKind::Link,
                problems,
            })
        };
        let rows = import_rows(body, format).map_err(invalid)?;
        if rows.is_empty() {
            return Err(invalid(vec![Problem::at("", "the body holds no links")
                .with_hint(Some("send a header row and one link per row (CSV), or one link per line (JSON lines)".into()))]));
        }
        let mut problems = Vec::new();
        let mut links = Vec::with_capacity(rows.len());
        for (line, doc) in rows {
            let found = manifests::bundle::schema_problems(EntityKind::Link, &doc);
            let errors: Vec<_> = found.iter().filter(|d| d.is_error()).collect();
            if !errors.is_empty() {
                problems.extend(errors.into_iter().map(|d| Problem {
                    code: Some(d.code),
                    pointer: format!("/{line}{}", d.pointer),
                    message: format!("line {line}: {}", d.message),
                    hint: d.hint.clone(),
                    missing: None,
                }));
                continue;
            }
            match serde_json::from_value::<Link>(doc) {
                Ok(mut link) => {
                    if link.id.is_empty() {
                        link.id = Link::derived_id(&link.repository, &link.local_id);
                    }
                    links.push((line.to_string(), link));
                }
                Err(e) => {
                    problems.push(Problem::at(format!("/{line}"), format!("line {line}: {e}")))
                }
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let count = links.len();
        let replaced = self
            .repository
            .import_links(links)
            .await
            .map_err(|e| match e {
                RepositoryError::Invalid { kind, problems } => RepositoryError::Invalid {
                    kind,
                    problems: problems
                        .into_iter()
                        .map(|p| {
                            let line = p
                                .pointer
                                .trim_start_matches('/')
                                .split('/')
                                .next()
                                .unwrap_or_default()
                                .to_owned();
                            Problem {
                                message: format!("line {line}: {}", p.message),
                                ..p
                            }
                        })
                        .collect(),
                },
                other => other,
            })?;
        self.cir
            .announce("imported", EntityKind::Link, None, Some(count));
        Ok(json!({"imported": count, "created": count - replaced, "replaced": replaced}))
    }

    /// Every change to the registry from now on, until the server stops.
    pub fn cir_changes(&self) -> broadcast::Receiver<Change> {
        self.cir.subscribe()
    }
}
