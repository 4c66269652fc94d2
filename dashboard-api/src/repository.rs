//! The model repository: every entity the API manages — interfaces, kinds, definitions,
//! data source and consumer manifests, processor definitions, edge gateways, and the
//! analytics manifests of analytics instances — kept in memory and in the store.
//!
//! A candidate entity is validated as `dda validate` would validate it in a bundle holding
//! everything stored — structure, references, parameters, graphs, secrets — but with only
//! the stored entities it concerns, so that the 10,000th create costs what the first does.
//! Only the candidate's own diagnostics matter to the request.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use manifests::bundle::{Bundle, Syntax};
use manifests::{Diagnostic, Entity, EntityKind, Model, Severity};
use serde_json::Value as Json;

use crate::config::FleetRole;
use crate::problem::Problem;
use crate::store::{Store, StoreError};

/// The path the candidate document is given in the validation bundle.
const CANDIDATE: &str = "request";

/// Why the repository refused a request.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No entity of this kind has this id.
    #[error("no {kind} with id `{id}`")]
    NotFound {
        /// The kind asked for.
        kind: EntityKind,
        /// The id asked for.
        id: String,
    },
    /// Other entities refer to the one to delete.
    #[error(transparent)]
    Referenced(#[from] Referenced),
    /// The candidate is invalid: every problem the validator found in it.
    #[error("the {kind} is invalid: {} problem(s)", problems.len())]
    Invalid {
        /// The kind of the candidate.
        kind: EntityKind,
        /// Its problems, in the validator's order.
        problems: Vec<Problem>,
    },
    /// The candidate holds no entity of its kind.
    #[error("the body holds no {kind}")]
    Empty {
        /// The kind expected.
        kind: EntityKind,
    },
    /// The store cannot be read or written.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// An entity that others refer to: it cannot be deleted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{id}` is referred to by {} other entit(ies); delete or change them first", referrers.len())]
pub struct Referenced {
    /// The kind of the entity to delete.
    pub kind: EntityKind,
    /// Its id.
    pub id: String,
    /// Every entity referring to it, with where.
    pub referrers: Vec<Referrer>,
}

/// An entity referring to another, and where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Referrer {
    /// Its kind.
    pub kind: EntityKind,
    /// Its id.
    pub id: String,
    /// JSON pointer to the reference within it.
    pub pointer: String,
}

/// A candidate that passed validation.
#[derive(Debug)]
pub struct Checked {
    /// The entity, ids assigned.
    pub entity: Entity,
    /// The model with the candidate in it.
    pub model: Model,
    /// Warnings about the candidate (plain-text secrets, unknown fields).
    pub warnings: Vec<Diagnostic>,
}

/// An entity's kind and id.
type Key = (EntityKind, String);

/// What the stored entities say of each other, kept up to date as they change: who refers
/// to each, and which data sources processors write. A candidate is validated with only
/// the entities it concerns, found here, so that its cost does not grow with the
/// repository.
#[derive(Debug, Default)]
struct Links {
    /// By entity referred to: every reference to it.
    referrers: HashMap<Key, indexmap::IndexSet<Referrer>>,
    /// The data sources each analytics manifest or processor manifest writes.
    writes: HashMap<Key, Vec<String>>,
    /// How many of those write each data source.
    written: HashMap<String, usize>,
    /// The CIR link of each (repository, local id): one local id names one object.
    claims: HashMap<(String, String), String>,
}

impl Links {
    fn add(&mut self, entity: &Entity, model: &Model) {
        let Some(key) = key_of(entity) else { return };
        if let Entity::Link(l) = entity {
            self.claims
                .insert((l.repository.clone(), l.local_id.clone()), l.id.clone());
        }
        for r in entity.references() {
            self.referrers
                .entry((r.kind, r.id.to_owned()))
                .or_default()
                .insert(Referrer {
                    kind: key.0,
                    id: key.1.clone(),
                    pointer: r.pointer,
                });
        }
        let writes = manifests::validate::written_by(entity, model);
        for w in &writes {
            *self.written.entry(w.clone()).or_default() += 1;
        }
        if !writes.is_empty() {
            self.writes.insert(key, writes);
        }
    }

    fn remove(&mut self, entity: &Entity) {
        let Some(key) = key_of(entity) else { return };
        if let Entity::Link(l) = entity {
            let claim = (l.repository.clone(), l.local_id.clone());
            if self.claims.get(&claim) == Some(&l.id) {
                self.claims.remove(&claim);
            }
        }
        for r in entity.references() {
            let to = (r.kind, r.id.to_owned());
            if let Some(list) = self.referrers.get_mut(&to) {
                // In O(1): an object may have a hundred thousand links. Readers sort by
                // stored order ([`Repository::referrers`]).
                list.swap_remove(&Referrer {
                    kind: key.0,
                    id: key.1.clone(),
                    pointer: r.pointer,
                });
                if list.is_empty() {
                    self.referrers.remove(&to);
                }
            }
        }
        for w in self.writes.remove(&key).unwrap_or_default() {
            if let Some(n) = self.written.get_mut(&w) {
                *n -= 1;
                if *n == 0 {
                    self.written.remove(&w);
                }
            }
        }
    }

    /// Whether something other than `except` writes data source `id`.
    fn is_written(&self, id: &str, except: Option<&Key>) -> bool {
        let mine = except
            .and_then(|k| self.writes.get(k))
            .map_or(0, |w| w.iter().filter(|w| *w == id).count());
        self.written.get(id).is_some_and(|n| *n > mine)
    }
}

fn key_of(entity: &Entity) -> Option<Key> {
    entity.id().map(|id| (entity.kind(), id.to_owned()))
}

/// The repository.
#[derive(Debug)]
pub struct Repository {
    entries: RwLock<IndexMap<Key, Arc<Entity>>>,
    links: RwLock<Links>,
    model: RwLock<Arc<Model>>,
    store: Store,
    /// What the manifests may reach (paths, secret references); `None`: anything.
    reach: Option<manifests::reach::Reach>,
    /// What the engine is in a fleet: an edge's gateways are registered elsewhere; a
    /// cloud's data sources naming a gateway have their files there.
    role: FleetRole,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Repository {
    /// Loads what the store holds and validates it as one bundle (problems are logged: the
    /// server starts with what is usable). On an edge of a fleet (`role`), references to
    /// edge gateways are not checked; on a cloud, the files of data sources naming a
    /// gateway are not looked for (they are on the gateway).
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn load(
        store: Store,
        reach: Option<manifests::reach::Reach>,
        role: FleetRole,
    ) -> Result<Self, StoreError> {
        let mut entries = IndexMap::new();
        for (schema, id, doc) in store.entities().await? {
            let Some(kind) = EntityKind::from_name(&schema) else {
                tracing::warn!(kind = %schema, id = %id, "ignoring a stored entity of an unknown kind");
                continue;
            };
            match Entity::from_json(kind, doc) {
                Ok(entity) => {
                    entries.insert((kind, id), Arc::new(entity));
                }
                Err(e) => {
                    tracing::warn!(kind = %schema, id = %id, error = %e, "ignoring an unreadable stored entity")
                }
            }
        }
        let repo = Self {
            entries: RwLock::new(entries),
            links: RwLock::default(),
            model: RwLock::new(Arc::new(Model::default())),
            store,
            reach,
            role,
        };
        let (bundle, model) = repo.validate_all(None, None);
        for d in bundle.diagnostics.iter().filter(|d| d.is_error()) {
            tracing::warn!(diagnostic = %d, "stored models have a problem");
        }
        {
            let mut links = write(&repo.links);
            for entity in read(&repo.entries).values() {
                links.add(entity, &model);
            }
        }
        *write(&repo.model) = Arc::new(model);
        Ok(repo)
    }

    /// The validation options of the engine's role in a fleet.
    fn fleet_options(&self) -> manifests::Options<'static> {
        manifests::Options {
            gateways_elsewhere: self.role == FleetRole::Edge,
            files_on_gateways: self.role == FleetRole::Cloud,
            ..manifests::Options::default()
        }
    }

    /// The current model (everything stored, validated, parameters resolved).
    #[must_use]
    pub fn model(&self) -> Arc<Model> {
        read(&self.model).clone()
    }

    /// Entity `id` of `kind`.
    #[must_use]
    pub fn get(&self, kind: EntityKind, id: &str) -> Option<Entity> {
        read(&self.entries)
            .get(&(kind, id.to_owned()))
            .map(|e| (**e).clone())
    }

    /// The ids of the entities of `kind` named `name`, in creation order.
    #[must_use]
    pub fn ids_named(&self, kind: EntityKind, name: &str) -> Vec<String> {
        read(&self.entries)
            .iter()
            .filter(|((k, _), e)| *k == kind && e.name() == Some(name))
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    /// Every entity of `kind`, in creation order.
    #[must_use]
    pub fn list(&self, kind: EntityKind) -> Vec<Entity> {
        read(&self.entries)
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, e)| (**e).clone())
            .collect()
    }

    /// Validates everything stored, with `candidate` (text, syntax, expected kind) in it and
    /// `replacing` left out.
    fn validate_all(
        &self,
        candidate: Option<(String, Syntax, Option<EntityKind>)>,
        replacing: Option<(EntityKind, &str)>,
    ) -> (Bundle, Model) {
        let mut bundle = Bundle::default();
        if let Some((text, syntax, kind)) = candidate {
            bundle.add_document(PathBuf::from(CANDIDATE), text, syntax, kind);
        }
        for ((kind, id), entity) in read(&self.entries).iter() {
            if replacing.is_some_and(|(k, r)| k == *kind && r == id) {
                continue;
            }
            let path = PathBuf::from(format!("repository/{}/{id}.json", kind.info().folder));
            // Checked when stored: only the cross-entity checks run again.
            bundle.add_entity(path, entity.clone());
        }
        let catalogue = engine::Catalogue::get();
        let model = manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                catalogue: Some(catalogue),
                reach: self.reach.as_ref(),
                fed_elsewhere: None,
                ..self.fleet_options()
            },
        );
        (bundle, model)
    }

    /// Validates `candidate` (text, syntax, expected kind) with only the stored entities it
    /// concerns, `replacing` left out: the stored entity of its id (a duplicate), those it
    /// refers to, directly or not, and those referring to it, directly or not, with what
    /// they refer to. Whether a bus topic is fed is answered from [`Links`]. None of the
    /// checks reads anything else, so the candidate's diagnostics are the same as among
    /// everything stored — except for hints naming entities left out (`did you mean`),
    /// which is why [`Repository::check`] validates again with everything when the
    /// candidate has errors. The model holds the candidate and the entities validated
    /// with it.
    fn validate_near(
        &self,
        (text, syntax, kind): (String, Syntax, EntityKind),
        replacing: Option<(EntityKind, &str)>,
    ) -> (Bundle, Model) {
        let mut bundle = Bundle::default();
        bundle.add_document(PathBuf::from(CANDIDATE), text, syntax, Some(kind));
        let entries = read(&self.entries);
        let links = read(&self.links);
        let replaced = replacing.map(|(k, id)| (k, id.to_owned()));
        let skip = |key: &Key| replaced.as_ref() == Some(key);
        // Upwards: the candidate's stored namesake and everything referring to it.
        let mut up: Vec<Key> = bundle
            .entities
            .iter()
            .filter_map(|e| key_of(&e.entity))
            .collect();
        let mut upwards: HashSet<Key> = up.iter().cloned().collect();
        let mut i = 0;
        while let Some(key) = up.get(i).cloned() {
            i += 1;
            for r in links.referrers.get(&key).into_iter().flatten() {
                let from = (r.kind, r.id.clone());
                if !skip(&from) && upwards.insert(from.clone()) {
                    up.push(from);
                }
            }
        }
        // The links claiming the candidate links' records (one record names one object).
        let claimants = bundle.entities.iter().filter_map(|e| match &*e.entity {
            Entity::Link(l) => links
                .claims
                .get(&(l.repository.clone(), l.local_id.clone()))
                .map(|id| (EntityKind::Link, id.clone())),
            _ => None,
        });
        // Downwards: those and everything they and the candidate refer to.
        let mut queue: Vec<Key> = bundle
            .entities
            .iter()
            .flat_map(|e| e.entity.references())
            .map(|r| (r.kind, r.id.to_owned()))
            .chain(claimants)
            .chain(up)
            .collect();
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some(key) = queue.pop() {
            if skip(&key) {
                continue;
            }
            let Some(i) = entries.get_index_of(&key) else {
                continue;
            };
            if seen.insert(i) {
                queue.extend(
                    entries[i]
                        .references()
                        .into_iter()
                        .map(|r| (r.kind, r.id.to_owned())),
                );
            }
        }
        let mut near: Vec<usize> = seen.into_iter().collect();
        near.sort_unstable();
        for i in near {
            let ((kind, id), entity) = entries.get_index(i).expect("an index of the map");
            let path = PathBuf::from(format!("repository/{}/{id}.json", kind.info().folder));
            bundle.add_entity(path, entity.clone());
        }
        drop(entries);
        let catalogue = engine::Catalogue::get();
        let fed = |id: &str| links.is_written(id, replaced.as_ref());
        let model = manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                catalogue: Some(catalogue),
                reach: self.reach.as_ref(),
                fed_elsewhere: Some(&fed),
                ..self.fleet_options()
            },
        );
        (bundle, model)
    }

    /// Validates a candidate entity of `kind` against everything stored; `replacing` is the
    /// id it replaces (an update), left out of the bundle.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Invalid`] with every problem of the candidate;
    /// [`RepositoryError::Empty`] when it holds no entity of `kind`.
    pub fn check(
        &self,
        kind: EntityKind,
        candidate: &Json,
        replacing: Option<&str>,
    ) -> Result<Checked, RepositoryError> {
        let text = serde_json::to_string_pretty(candidate).unwrap_or_default();
        let ours = |d: &&Diagnostic| d.file.as_deref() == Some(std::path::Path::new(CANDIDATE));
        let replacing = replacing.map(|r| (kind, r));
        let (mut bundle, mut model) =
            self.validate_near((text.clone(), Syntax::Json, kind), replacing);
        let mut errors: Vec<&Diagnostic> = bundle
            .diagnostics
            .iter()
            .filter(ours)
            .filter(|d| d.is_error())
            .collect();
        if !errors.is_empty() {
            // Again with everything stored, for hints that name what was left out.
            (bundle, model) = self.validate_all(Some((text, Syntax::Json, Some(kind))), replacing);
            errors = bundle
                .diagnostics
                .iter()
                .filter(ours)
                .filter(|d| d.is_error())
                .collect();
        }
        if !errors.is_empty() {
            return Err(RepositoryError::Invalid {
                kind,
                problems: Problem::of_diagnostics(
                    &errors,
                    candidate,
                    manifests::schema::schemas().kind_shape(kind),
                ),
            });
        }
        let entity = bundle
            .entities
            .iter()
            .find(|e| bundle.files[e.file].path.as_os_str() == CANDIDATE)
            .map(|e| (*e.entity).clone())
            .ok_or(RepositoryError::Empty { kind })?;
        let warnings = bundle
            .diagnostics
            .iter()
            .filter(ours)
            .filter(|d| d.severity == Severity::Warning)
            .cloned()
            .collect();
        Ok(Checked {
            entity,
            model,
            warnings,
        })
    }

    /// The diagnostics of a document (one entity or a bundle) validated with everything
    /// stored, in file order; nothing is stored.
    #[must_use]
    pub fn validate_document(&self, text: String, syntax: Syntax) -> Vec<Diagnostic> {
        let (mut bundle, _) = self.validate_all(Some((text, syntax, None)), None);
        bundle.sort_diagnostics();
        bundle
            .diagnostics
            .into_iter()
            .filter(|d| d.file.as_deref() == Some(std::path::Path::new(CANDIDATE)))
            .collect()
    }

    /// Stores a checked entity and brings the model up to date with it.
    ///
    /// # Errors
    ///
    /// The store cannot be written (the entity is then not kept).
    pub async fn put(&self, checked: Checked) -> Result<Entity, StoreError> {
        let entity = checked.entity;
        let kind = entity.kind();
        let id = entity.id().unwrap_or_default().to_owned();
        self.store
            .put_entity(kind.info().schema, &id, &entity.to_json())
            .await?;
        let key = (kind, id);
        let mut entries = write(&self.entries);
        let mut links = write(&self.links);
        let mut model = write(&self.model);
        let model = Arc::make_mut(&mut model);
        if let Some(old) = entries.get(&key) {
            links.remove(old);
            model.remove(kind, &key.1);
        }
        model.absorb(checked.model);
        links.add(&entity, model);
        entries.insert(key, Arc::new(entity.clone()));
        Ok(entity)
    }

    /// Validates and stores many CIR links at once, all or none: each row (a label such as
    /// `line 7`, and its link) is checked, as one bundle, against the stored objects and
    /// repositories it names and the stored links claiming the same records — never
    /// against everything stored, so that importing costs what the rows cost. A row with
    /// the id of a stored link replaces it. Answers how many rows replaced a stored link.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::Invalid`] with every problem of every row (its pointer starts
    /// with the row's label), [`RepositoryError::Storage`].
    pub async fn import_links(
        &self,
        rows: Vec<(String, manifests::model::Link)>,
    ) -> Result<usize, RepositoryError> {
        let kind = EntityKind::Link;
        let mut bundle = Bundle::default();
        let ids: HashSet<String> = rows.iter().map(|(_, l)| l.id.clone()).collect();
        let labels: Vec<String> = rows.iter().map(|(label, _)| label.clone()).collect();
        let mut near: HashSet<usize> = HashSet::new();
        {
            let entries = read(&self.entries);
            let links = read(&self.links);
            let mut queue: Vec<Key> = Vec::new();
            for (label, link) in rows {
                if let Some(stored) = links
                    .claims
                    .get(&(link.repository.clone(), link.local_id.clone()))
                    && !ids.contains(stored)
                {
                    queue.push((kind, stored.clone()));
                }
                let entity = Entity::Link(link);
                queue.extend(
                    entity
                        .references()
                        .into_iter()
                        .map(|r| (r.kind, r.id.to_owned())),
                );
                bundle.add_entity(PathBuf::from(label), Arc::new(entity));
            }
            while let Some(key) = queue.pop() {
                if key.0 == kind && ids.contains(&key.1) {
                    continue;
                }
                if let Some(i) = entries.get_index_of(&key)
                    && near.insert(i)
                {
                    queue.extend(
                        entries[i]
                            .references()
                            .into_iter()
                            .map(|r| (r.kind, r.id.to_owned())),
                    );
                }
            }
            let mut near: Vec<usize> = near.iter().copied().collect();
            near.sort_unstable();
            for i in near {
                let ((k, id), entity) = entries.get_index(i).expect("an index of the map");
                bundle.add_entity(
                    PathBuf::from(format!("repository/{}/{id}.json", k.info().folder)),
                    entity.clone(),
                );
            }
        }
        let model = manifests::validate::validate(
            &mut bundle,
            &manifests::Options {
                reach: self.reach.as_ref(),
                ..self.fleet_options()
            },
        );
        // The rows are the bundle's first files, in order.
        let rows = labels.len();
        let labels: HashSet<&str> = labels.iter().map(String::as_str).collect();
        let problems: Vec<Problem> = bundle
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .filter_map(|d| {
                let row = d.file.as_deref()?.to_str()?;
                labels.contains(row).then(|| Problem {
                    code: Some(d.code),
                    pointer: format!("/{row}{}", d.pointer),
                    message: d.message.clone(),
                    hint: d.hint.clone(),
                    missing: None,
                })
            })
            .collect();
        if !problems.is_empty() {
            return Err(RepositoryError::Invalid { kind, problems });
        }
        let imported: Vec<Arc<Entity>> = bundle
            .entities
            .iter()
            .filter(|e| e.file < rows)
            .map(|e| e.entity.clone())
            .collect();
        self.store
            .put_entities(
                kind.info().schema,
                imported
                    .iter()
                    .map(|e| (e.id().unwrap_or_default().to_owned(), e.to_json()))
                    .collect(),
            )
            .await?;
        let mut entries = write(&self.entries);
        let mut links = write(&self.links);
        let mut current = write(&self.model);
        let current = Arc::make_mut(&mut current);
        let mut replaced = 0;
        for entity in &imported {
            let key = key_of(entity).expect("a link has an id");
            if let Some(old) = entries.get(&key) {
                // Its model entry is overwritten in place below (removing it from the
                // ordered map would cost what the map holds).
                links.remove(old);
                replaced += 1;
            }
        }
        current.absorb(model);
        for entity in imported {
            links.add(&entity, current);
            let key = key_of(&entity).expect("a link has an id");
            entries.insert(key, entity);
        }
        Ok(replaced)
    }

    /// Deletes an entity nothing refers to.
    ///
    /// # Errors
    ///
    /// [`RepositoryError::NotFound`] when absent, [`RepositoryError::Referenced`] (with
    /// the referrers) when referred to, [`RepositoryError::Storage`].
    pub async fn delete(&self, kind: EntityKind, id: &str) -> Result<(), RepositoryError> {
        if self.get(kind, id).is_none() {
            return Err(RepositoryError::NotFound {
                kind,
                id: id.to_owned(),
            });
        }
        let referrers = self.referrers(kind, id);
        if !referrers.is_empty() {
            return Err(Referenced {
                kind,
                id: id.to_owned(),
                referrers,
            }
            .into());
        }
        self.store.delete_entity(kind.info().schema, id).await?;
        let mut entries = write(&self.entries);
        if let Some(old) = entries.shift_remove(&(kind, id.to_owned())) {
            write(&self.links).remove(&old);
        }
        Arc::make_mut(&mut write(&self.model)).remove(kind, id);
        Ok(())
    }

    /// The CIR link claiming record `local_id` of `repository`, when one does.
    #[must_use]
    pub fn claimed_by(&self, repository: &str, local_id: &str) -> Option<String> {
        read(&self.links)
            .claims
            .get(&(repository.to_owned(), local_id.to_owned()))
            .cloned()
    }

    /// Every entity referring to entity `id` of `kind`, with where, in the order they were
    /// stored.
    #[must_use]
    pub fn referrers(&self, kind: EntityKind, id: &str) -> Vec<Referrer> {
        let mut out: Vec<Referrer> = read(&self.links)
            .referrers
            .get(&(kind, id.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let entries = read(&self.entries);
        out.sort_by_key(|r| entries.get_index_of(&(r.kind, r.id.clone())));
        out
    }
}

/// The items of a `{"parameter": [...]}` list (none when it is absent or not a list).
fn parameter_items(list: Option<&mut Json>) -> &mut [Json] {
    list.and_then(|l| l.get_mut("parameter"))
        .and_then(Json::as_array_mut)
        .map_or(&mut [], Vec::as_mut_slice)
}

/// Replaces plain-text secret values of a `{"parameter": [...]}` list of values.
fn redact_values(list: Option<&mut Json>, is_secret: &dyn Fn(&str) -> bool) {
    for item in parameter_items(list) {
        let name = item
            .get("key")
            .or_else(|| item.get("name"))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        if is_secret(&name)
            && let Some(v) = item.get_mut("value")
            && !manifests::secret::is_reference(v)
        {
            *v = Json::String(manifests::secret::REDACTED.to_owned());
        }
    }
}

/// Replaces plain-text secret defaults of a `{"parameter": [...]}` list of definitions.
fn redact_definitions(list: Option<&mut Json>) {
    for item in parameter_items(list) {
        let def: Option<manifests::model::ParameterDefinition> =
            serde_json::from_value(item.clone()).ok();
        if def.is_some_and(|d| d.is_secret())
            && let Some(v) = item.get_mut("defaultValue")
            && !manifests::secret::is_reference(v)
        {
            *v = Json::String(manifests::secret::REDACTED.to_owned());
        }
    }
}

/// An entity as the API shows it: secrets given in plain text are replaced by `********`.
#[must_use]
pub fn shown(entity: &Entity, model: &Model) -> Json {
    let mut json = entity.to_json();
    match entity {
        Entity::DataSourceManifest(dsm) => {
            let params = model.dsm_parameters.get(&dsm.id);
            let is_secret = |name: &str| {
                params.map_or_else(
                    || manifests::secret::is_secret_name(name),
                    |p| p.is_secret(name) || manifests::secret::is_secret_name(name),
                )
            };
            redact_values(
                json.get_mut("dataSourceDefinitionInterfaceParameters"),
                &is_secret,
            );
        }
        Entity::DataInterface(_) | Entity::AnalyticsProcessorDefinition(_) => {
            redact_definitions(json.get_mut("parameters"))
        }
        Entity::AnalyticsProcessorManifest(apm) => {
            let params = model.parameters_of(None, &apm.id);
            let is_secret = |name: &str| {
                params.is_some_and(|p| p.is_secret(name)) || manifests::secret::is_secret_name(name)
            };
            redact_values(json.get_mut("parameters"), &is_secret);
        }
        Entity::AnalyticsManifest(am) => {
            if let Some(apms) = json
                .pointer_mut("/analyticsProcessors/apm")
                .and_then(Json::as_array_mut)
            {
                for (apm, doc) in am.apms().iter().zip(apms.iter_mut()) {
                    let params = model.parameters_of(None, &apm.id);
                    let is_secret = |name: &str| {
                        params.is_some_and(|p| p.is_secret(name))
                            || manifests::secret::is_secret_name(name)
                    };
                    redact_values(doc.get_mut("parameters"), &is_secret);
                }
            }
        }
        _ => {}
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::service::ServiceError;
    use serde_json::json;

    /// A refusal as the API answers it.
    fn api(e: RepositoryError) -> ApiError {
        ApiError::from(ServiceError::from(e))
    }

    async fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (
            dir,
            Repository::load(store, None, FleetRole::Standalone)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn candidates_are_validated_against_what_is_stored() {
        let (_d, repo) = repo().await;
        let dk = json!({"id": "dk", "name": "Power"});
        repo.put(repo.check(EntityKind::DataKind, &dk, None).unwrap())
            .await
            .unwrap();
        let dsd =
            json!({"id": "dsd", "dataInterfaceReferenceID": "di", "dataKindReferenceID": "dk"});
        let err = api(repo
            .check(EntityKind::DataSourceDefinition, &dsd, None)
            .unwrap_err());
        assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.body.details[0].pointer, "/dataInterfaceReferenceID");
        assert!(err.body.details[0].message.contains("dangling-reference"));
        let di = json!({"id": "di", "communicationProtocol": "Bus"});
        repo.put(repo.check(EntityKind::DataInterface, &di, None).unwrap())
            .await
            .unwrap();
        repo.put(
            repo.check(EntityKind::DataSourceDefinition, &dsd, None)
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(repo.model().data_source_definitions.len(), 1);
        // Referred to: no delete.
        let conflict = api(repo.delete(EntityKind::DataKind, "dk").await.unwrap_err());
        assert_eq!(conflict.status, axum::http::StatusCode::CONFLICT);
        assert_eq!(conflict.body.details[0].pointer, "/dataKindReferenceID");
        repo.delete(EntityKind::DataSourceDefinition, "dsd")
            .await
            .unwrap();
        repo.delete(EntityKind::DataKind, "dk").await.unwrap();
        assert!(repo.get(EntityKind::DataKind, "dk").is_none());
    }

    #[test]
    fn plain_text_secrets_are_never_shown() {
        let dsm: Entity = Entity::from_json(
            EntityKind::DataSourceManifest,
            json!({"id": "d", "dataSourceDefinitionReferenceID": "x", "dataSourceDefinitionInterfaceParameters": {"parameter": [
                {"key": "password", "value": "hunter2"}, {"key": "token", "value": "${env:T}"}, {"key": "host", "value": "h"}]}}),
        )
        .unwrap();
        let shown = shown(&dsm, &Model::default());
        let params = &shown["dataSourceDefinitionInterfaceParameters"]["parameter"];
        assert_eq!(params[0]["value"], "********");
        assert_eq!(params[1]["value"], "${env:T}");
        assert_eq!(params[2]["value"], "h");
    }
}
