//! Records linked to the objects data sources concern, for enrichment.
//!
//! The Common Interoperability Registry links a data source's object to records in other
//! databases (a machine's row in an ERP table, its asset in a maintenance database). The
//! engine does not read those databases itself: its host ([`EngineConfig::linked`], set
//! by `dda run` and `dda serve`) implements [`LinkedRecords`]. A processor that needs the
//! records (`enrich`) [follows](LinkedRecords::follow) its sources once, when it is
//! created, and from then on reads a [`LinkedView`]: a table of every source's records the
//! host loads in the background and reloads every TTL, so that no observation waits for
//! a database. The engine wires an instance's sources only once each such processor's
//! view is [ready](crate::Processor::ready): the first observation is enriched like the
//! millionth.
//!
//! [`EngineConfig::linked`]: crate::EngineConfig::linked

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::watch;

use crate::symbol::Sym;

/// The host's access to linked records.
pub trait LinkedRecords: Send + Sync + fmt::Debug {
    /// Starts keeping the records linked to the objects of `sources` (DSM ids) loaded,
    /// reloading them every `ttl`, until every [`LinkedView`] of this call is dropped.
    ///
    /// # Errors
    ///
    /// The host cannot follow records (no runtime to load them in).
    fn follow(&self, sources: &[Sym], ttl: Duration) -> Result<LinkedView, String>;
}

/// What is known of the records linked to a set of sources: the newest table, replaced as
/// a whole by every reload.
pub type LinkedView = watch::Receiver<Arc<LinkedTable>>;

/// The writing end of a [`LinkedView`]: the host's.
pub type LinkedUpdates = watch::Sender<Arc<LinkedTable>>;

/// A new view with an empty table that is not loaded yet, and its writing end.
#[must_use]
pub fn linked_view() -> (LinkedUpdates, LinkedView) {
    watch::channel(Arc::new(LinkedTable::default()))
}

/// Waits until the view's first load is done (whatever it found).
pub async fn loaded(mut view: LinkedView) {
    // An error means the host dropped its end: nothing more will come.
    let _ = view.wait_for(|t| t.loaded).await;
}

/// One load of linked records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkedTable {
    /// Whether a load has been done (false only before the first).
    pub loaded: bool,
    /// The records of each source followed.
    pub sources: HashMap<Sym, SourceRecords>,
}

/// The records linked to one source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceRecords {
    /// The CIR object the source concerns (its DSM's, else its definition's); `None`: it
    /// names none (or the DSM is not known).
    pub object: Option<String>,
    /// Every record linked to the object, then to its parent, and so on up (nearest
    /// first; by repository id then local id for each object).
    pub records: Vec<LinkedRecord>,
}

/// One linked record, as last fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkedRecord {
    /// The repository id.
    pub repository: String,
    /// The record's id there.
    pub local_id: String,
    /// The record, as last fetched; `None`: the repository has no such record, or has
    /// never answered.
    pub record: Option<Arc<Json>>,
    /// Why the last load could not fetch it (the repository is down, timed out, refused);
    /// `record` is then what an earlier load fetched, if any.
    pub error: Option<String>,
}

impl fmt::Display for LinkedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.repository, self.local_id)
    }
}

/// Linked records that never change: a table given once (benchmarks, tests, and a host
/// that has loaded what it needs beforehand).
#[derive(Debug, Default)]
pub struct Fixed(pub Arc<LinkedTable>);

impl LinkedRecords for Fixed {
    fn follow(&self, _sources: &[Sym], _ttl: Duration) -> Result<LinkedView, String> {
        let mut table = (*self.0).clone();
        table.loaded = true;
        // The writing end goes: the table never changes.
        Ok(watch::channel(Arc::new(table)).1)
    }
}
