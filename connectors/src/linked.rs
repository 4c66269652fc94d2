//! The host side of enrichment: loading the records the CIR links to data sources'
//! objects, in the background, every TTL (see [`engine::linked`]).
//!
//! A [`Follower`] answers [`LinkedRecords::follow`] by spawning one task per follow: it
//! loads the table of the followed sources (DSM → its object, else its definition's →
//! the links of the object and of its ancestors, nearest first → one fetch per
//! repository, all repositories at once, each within its timeout), publishes it, sleeps a TTL and loads again, until the processor that
//! follows is gone. A load that finds the same records as the one before publishes
//! nothing. A repository that fails keeps the records of the last load that reached it,
//! marked with the error, so that a processor can use them (`onUnreachable: stale`).
//!
//! Where the models come from is the host's: [`Directory`] (the bundle `dda run` loaded,
//! or the server's live repository, where a link added is seen at the next load).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use engine::Sym;
use engine::linked::{
    LinkedRecord, LinkedRecords, LinkedTable, LinkedUpdates, LinkedView, SourceRecords, linked_view,
};
use manifests::Model;
use manifests::cir::{Repository, RepositoryType};

use crate::records::{Found, RecordError, Records};

/// Where a [`Follower`] finds the models and fetches records.
pub trait Directory: Send + Sync + 'static {
    /// The models as they are now (None: the host is shutting down).
    fn model(&self) -> Option<Arc<Model>>;

    /// The record fetcher (its clients are kept between loads).
    fn records(&self) -> &Records;

    /// The records `ids` of a repository of type `dda`: the host's own entities.
    fn own_records(&self, repository: &Repository, ids: &[String], model: &Model) -> Found;
}

/// Follows linked records for processors (see the [module documentation](self)).
pub struct Follower<D> {
    directory: Arc<D>,
}

impl<D> Follower<D> {
    /// A follower over `directory`.
    pub const fn new(directory: Arc<D>) -> Self {
        Self { directory }
    }
}

impl<D> fmt::Debug for Follower<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower").finish_non_exhaustive()
    }
}

impl<D: Directory> LinkedRecords for Follower<D> {
    fn follow(&self, sources: &[Sym], ttl: Duration) -> Result<LinkedView, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the engine has no async runtime to load records in".to_owned())?;
        let (tx, rx) = linked_view();
        runtime.spawn(reload(self.directory.clone(), sources.to_vec(), ttl, tx));
        Ok(rx)
    }
}

/// Loads, publishes and sleeps until no one follows.
async fn reload<D: Directory>(
    directory: Arc<D>,
    sources: Vec<Sym>,
    ttl: Duration,
    tx: LinkedUpdates,
) {
    loop {
        let previous = tx.borrow().clone();
        let table = load(&*directory, &sources, &previous).await;
        log_changes(&previous, &table);
        tx.send_if_modified(|t| {
            let changed = **t != table;
            if changed {
                *t = Arc::new(table);
            }
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(ttl) => {}
            () = tx.closed() => break,
        }
    }
}

/// Says when a repository starts failing and when it answers again (not at every load).
fn log_changes(previous: &LinkedTable, now: &LinkedTable) {
    let failing = |t: &LinkedTable| -> BTreeMap<String, String> {
        t.sources
            .values()
            .flat_map(|s| &s.records)
            .filter_map(|r| Some((r.repository.clone(), r.error.clone()?)))
            .collect()
    };
    let (before, after) = (failing(previous), failing(now));
    for (repository, error) in &after {
        if !before.contains_key(repository) {
            tracing::warn!(%repository, %error, "a CIR repository gives no records for enrichment; the last ones fetched are used where the policy says so");
        }
    }
    for repository in before.keys().filter(|r| !after.contains_key(*r)) {
        if now
            .sources
            .values()
            .flat_map(|s| &s.records)
            .any(|r| &r.repository == repository)
        {
            tracing::info!(%repository, "a CIR repository answers again");
        }
    }
}

/// One load of the records of `sources`.
pub async fn load<D: Directory>(
    directory: &D,
    sources: &[Sym],
    previous: &LinkedTable,
) -> LinkedTable {
    let Some(model) = directory.model() else {
        return previous.clone();
    };
    let object_of = |s: &Sym| {
        let dsm = model.data_source_manifests.get(&*s.text())?;
        dsm.object.clone().or_else(|| {
            model
                .data_source_definitions
                .get(&dsm.data_source_definition_reference_id)?
                .object
                .clone()
        })
    };
    let objects: Vec<(Sym, Option<String>)> = sources.iter().map(|s| (*s, object_of(s))).collect();
    // Each object with its ancestors, nearest first (a sensor's measurement location, then
    // the asset it is on, its line, its site).
    let lineage = |object: &str| {
        let mut chain: Vec<&str> = Vec::new();
        let mut next = model.objects.get_key_value(object).map(|(k, _)| k.as_str());
        while let Some(o) = next.filter(|o| !chain.contains(o)) {
            chain.push(o);
            next = model
                .objects
                .get(o)
                .and_then(|o| o.parent.as_deref())
                .and_then(|p| model.objects.get_key_value(p))
                .map(|(k, _)| k.as_str());
        }
        chain
    };
    let lineages: HashMap<&str, Vec<&str>> = objects
        .iter()
        .filter_map(|(_, o)| o.as_deref())
        .map(|o| (o, lineage(o)))
        .collect();
    let wanted: HashSet<&str> = lineages.values().flatten().copied().collect();
    // Each object's links, sorted by repository then local id; each repository's ids.
    let mut links: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for l in model
        .links
        .values()
        .filter(|l| wanted.contains(l.object.as_str()))
    {
        links
            .entry(l.object.as_str())
            .or_default()
            .push((l.repository.as_str(), l.local_id.as_str()));
    }
    let mut asked: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for list in links.values_mut() {
        list.sort_unstable();
        for (repo, id) in list.iter() {
            let ids = asked.entry(repo).or_default();
            if !ids.iter().any(|i| i == id) {
                ids.push((*id).to_owned());
            }
        }
    }
    let fetches = asked.iter().map(|(repo_id, ids)| {
        let repo = model.repositories.get(*repo_id);
        let model = &model;
        async move {
            let found = match repo {
                None => Err(RecordError::Misconfigured(format!(
                    "no repository `{repo_id}`"
                ))),
                Some(r) if r.repository_type == RepositoryType::Dda => {
                    Ok(directory.own_records(r, ids, model))
                }
                Some(r) => directory.records().fetch(r, ids).await,
            };
            (*repo_id, found)
        }
    });
    let answers: HashMap<&str, Result<Found, RecordError>> =
        futures_util::future::join_all(fetches)
            .await
            .into_iter()
            .collect();
    let mut table = LinkedTable {
        loaded: true,
        sources: HashMap::with_capacity(objects.len()),
    };
    for (source, object) in &objects {
        let source = *source;
        let records = object
            .as_deref()
            .and_then(|o| lineages.get(o))
            .map(|chain| {
                chain
                    .iter()
                    .filter_map(|o| links.get(o))
                    .flatten()
                    .map(|(repo, id)| match answers.get(repo) {
                        Some(Ok(found)) => LinkedRecord {
                            repository: (*repo).to_owned(),
                            local_id: (*id).to_owned(),
                            record: found.get(*id).cloned().map(Arc::new),
                            error: None,
                        },
                        failed => LinkedRecord {
                            repository: (*repo).to_owned(),
                            local_id: (*id).to_owned(),
                            record: last_fetched(previous, source, repo, id),
                            error: Some(match failed {
                                Some(Err(e)) => format!("{}: {e}", e.code()),
                                _ => "not fetched".to_owned(),
                            }),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        table.sources.insert(
            source,
            SourceRecords {
                object: object.clone(),
                records,
            },
        );
    }
    table
}

/// The record an earlier load fetched, for a repository that failed now.
fn last_fetched(
    previous: &LinkedTable,
    source: Sym,
    repository: &str,
    local_id: &str,
) -> Option<Arc<serde_json::Value>> {
    previous
        .sources
        .get(&source)?
        .records
        .iter()
        .find(|r| r.repository == repository && r.local_id == local_id)?
        .record
        .clone()
}

/// A directory over models that do not change (`dda run`'s bundle).
pub struct Fixed {
    model: Arc<Model>,
    records: Records,
}

impl Fixed {
    /// A directory over `model`.
    #[must_use]
    pub fn new(model: Arc<Model>) -> Self {
        Self {
            model,
            records: Records::default(),
        }
    }
}

impl Directory for Fixed {
    fn model(&self) -> Option<Arc<Model>> {
        Some(self.model.clone())
    }

    fn records(&self) -> &Records {
        &self.records
    }

    fn own_records(&self, repository: &Repository, ids: &[String], model: &Model) -> Found {
        own_records(repository, ids, model)
    }
}

/// The records of the DDA's own repository: the entities of its collection (`table`), as
/// the models hold them.
#[must_use]
pub fn own_records(repository: &Repository, ids: &[String], model: &Model) -> Found {
    let Some(kind) = repository
        .table
        .as_deref()
        .and_then(manifests::EntityKind::from_folder)
    else {
        return Found::new();
    };
    ids.iter()
        .filter_map(|id| Some((id.clone(), model.entity_json(kind, id)?)))
        .collect()
}
