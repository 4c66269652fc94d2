//! Checkpoints of running instances: barriers through the graph (Chandy–Lamport, aligned,
//! as Flink's).
//!
//! Checkpoint `n` of an instance starts at its sources: each source, between two batches,
//! sends barrier `n` after everything it published before and reports its position. A
//! processor takes barrier `n` from every publisher of its inputs that belongs to the
//! instance — holding back what those that sent it publish afterwards, so that its state
//! covers exactly what came before — then snapshots its state and passes the barrier on. A
//! sink confirms barrier `n` once it has written everything before it. When every source
//! has reported, every processor has snapshotted and every sink has confirmed, the
//! checkpoint is complete: its parts are mutually consistent, and every result computed
//! from the input before it is written. It is then written to a file, atomically.
//!
//! Restored, the processors take their snapshots back and the sources go on from their
//! positions: the results after the checkpoint are computed again, with the same result
//! ids, so a sink that keeps ids (SQLite, PostgreSQL) holds each once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::Notify;

use crate::bus::Barrier;
use crate::symbol::Sym;

/// What a checkpoint holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The instance.
    pub instance: String,
    /// Its number, counting from 1 for each run of the engine.
    pub n: u64,
    /// The plan it was taken under (a digest of the analytics manifest): a checkpoint of
    /// another plan is not restored.
    pub plan: String,
    /// When it was complete (RFC 3339).
    pub taken: String,
    /// Each source's position, by DSM.
    pub sources: HashMap<String, Json>,
    /// Each processor's snapshot, by APM id.
    pub processors: HashMap<String, Json>,
}

/// One checkpoint in progress.
struct Pending {
    sources: Vec<Sym>,
    sinks: Vec<Sym>,
    processors: Vec<String>,
    positions: HashMap<Sym, Json>,
    snapshots: HashMap<usize, Json>,
    confirmed: Vec<Sym>,
    done: Arc<Notify>,
}

impl Pending {
    fn complete(&self) -> bool {
        self.positions.len() == self.sources.len()
            && self.snapshots.len() == self.processors.len()
            && self.sinks.iter().all(|s| self.confirmed.contains(s))
    }
}

/// What takes part in a checkpoint: the instance's sources, processors (APM ids) and
/// sinks.
pub(crate) type Participants = (Vec<Sym>, Vec<String>, Vec<Sym>);

/// What a complete checkpoint gathered.
pub(crate) struct Parts {
    /// Each source's position, by DSM.
    pub positions: HashMap<Sym, Json>,
    /// Each processor's snapshot, by APM id.
    pub snapshots: Vec<(String, Json)>,
}

/// The checkpoints in progress, shared by the sources, processors and sinks taking part.
#[derive(Default)]
pub struct Checkpoints {
    /// Whether the engine checkpoints at all.
    enabled: bool,
    pending: Mutex<HashMap<Barrier, Pending>>,
    /// Barriers sources are asked to send, by DSM.
    requests: Mutex<HashMap<Sym, Vec<Barrier>>>,
    /// The engine is taking its last checkpoints (it shuts down): a source that sends a
    /// barrier now sends nothing after it.
    halting: std::sync::atomic::AtomicBool,
    /// Each source's position in its instance's last durable checkpoint, by DSM, for
    /// sources that acknowledge their input only once a checkpoint covers it.
    durable: Mutex<HashMap<Sym, tokio::sync::watch::Sender<Option<Json>>>>,
    /// Sources whose instance cannot be checkpointed now (see
    /// [`Checkpoints::set_uncovered`]).
    uncovered: Mutex<std::collections::HashSet<Sym>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Checkpoints {
    /// Checkpoints of an engine that takes them (`enabled`) or not.
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// Whether the engine takes checkpoints.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts checkpoint `b`: asks `sources` for a barrier; it completes when they have
    /// reported, `processors` snapshotted and `sinks` confirmed. Returns what to wait on.
    pub(crate) fn begin(
        &self,
        b: Barrier,
        sources: Vec<Sym>,
        processors: Vec<String>,
        sinks: Vec<Sym>,
    ) -> Arc<Notify> {
        self.start(vec![(b, (sources, processors, sinks))], false)
            .pop()
            .unwrap_or_default()
    }

    /// Starts the last checkpoints before a shutdown, all at once (see
    /// [`Checkpoints::halting`]): each barrier with its sources, processors and sinks.
    pub(crate) fn begin_final(
        &self,
        checkpoints: Vec<(Barrier, Participants)>,
    ) -> Vec<Arc<Notify>> {
        self.start(checkpoints, true)
    }

    /// Starts `checkpoints` at once (no source sees some of their requests without the
    /// others); `halting`: they are the last before a shutdown.
    fn start(&self, checkpoints: Vec<(Barrier, Participants)>, halting: bool) -> Vec<Arc<Notify>> {
        let mut requests = lock(&self.requests);
        if halting {
            self.halting
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut pending = lock(&self.pending);
        let mut out = Vec::new();
        for (b, (sources, processors, sinks)) in checkpoints {
            for s in &sources {
                requests.entry(*s).or_default().push(b);
            }
            let done = Arc::new(Notify::new());
            pending.insert(
                b,
                Pending {
                    sources,
                    sinks,
                    processors,
                    positions: HashMap::new(),
                    snapshots: HashMap::new(),
                    confirmed: Vec::new(),
                    done: done.clone(),
                },
            );
            out.push(done);
        }
        out
    }

    /// The last checkpoints are over (complete or not).
    pub(crate) fn end_final(&self) {
        self.halting
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a source that sends a barrier now must send nothing after it: the engine
    /// takes its last checkpoints before shutting down.
    pub(crate) fn halting(&self) -> bool {
        self.halting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends checkpoint `b`, complete or not: its parts when complete.
    pub(crate) fn end(&self, b: Barrier) -> Option<Parts> {
        for list in lock(&self.requests).values_mut() {
            list.retain(|r| *r != b);
        }
        let p = lock(&self.pending).remove(&b)?;
        if !p.complete() {
            return None;
        }
        let mut snapshots = p.snapshots;
        let processors = p
            .processors
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), snapshots.remove(&i).unwrap_or(Json::Null)))
            .collect();
        Some(Parts {
            positions: p.positions,
            snapshots: processors,
        })
    }

    fn update(&self, b: Barrier, change: impl FnOnce(&mut Pending)) {
        let mut pending = lock(&self.pending);
        if let Some(p) = pending.get_mut(&b) {
            change(p);
            if p.complete() {
                p.done.notify_one();
            }
        }
    }

    /// The barriers the source of `dsm` is asked to send (taken).
    pub(crate) fn requested(&self, dsm: Sym) -> Vec<Barrier> {
        lock(&self.requests)
            .get_mut(&dsm)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The position of `dsm`'s source in the last durable checkpoint of its instance, as
    /// it changes: a source that acknowledges input upstream (a Kafka commit) does so up to
    /// there, and no further, so that a crash loses nothing the checkpoint does not hold.
    #[must_use]
    pub fn durable(&self, dsm: Sym) -> tokio::sync::watch::Receiver<Option<Json>> {
        lock(&self.durable)
            .entry(dsm)
            .or_insert_with(|| tokio::sync::watch::Sender::new(None))
            .subscribe()
    }

    /// A checkpoint holding these sources' positions is durable.
    pub(crate) fn made_durable(&self, positions: &HashMap<Sym, Json>) {
        let durable = lock(&self.durable);
        for (dsm, position) in positions {
            if let Some(tx) = durable.get(dsm) {
                tx.send_replace(Some(position.clone()));
            }
        }
    }

    /// Whether the source of `dsm` takes part in checkpoints now: the engine takes them
    /// and its instance can be checkpointed. A source that holds back acknowledgements
    /// until a checkpoint covers them acknowledges at once otherwise.
    #[must_use]
    pub fn covers(&self, dsm: Sym) -> bool {
        self.enabled && !lock(&self.uncovered).contains(&dsm)
    }

    /// Whether the instance reading `dsms` cannot be checkpointed now.
    pub(crate) fn set_uncovered(&self, dsms: &[Sym], uncovered: bool) {
        let mut set = lock(&self.uncovered);
        for d in dsms {
            if uncovered {
                set.insert(*d);
            } else {
                set.remove(d);
            }
        }
    }

    /// The source of `dsm` sent barrier `b` at `position`.
    pub(crate) fn source_sent(&self, b: Barrier, dsm: Sym, position: Json) {
        self.update(b, |p| {
            p.positions.insert(dsm, position);
        });
    }

    /// Processor number `index` of the instance took barrier `b` with this `snapshot`.
    pub(crate) fn processor_took(&self, b: Barrier, index: usize, snapshot: Json) {
        self.update(b, |p| {
            p.snapshots.insert(index, snapshot);
        });
    }

    /// The sink of `dsm` wrote everything before barrier `b`.
    pub(crate) fn sink_confirmed(&self, b: Barrier, dsm: Sym) {
        self.update(b, |p| {
            if !p.confirmed.contains(&dsm) {
                p.confirmed.push(dsm);
            }
        });
    }
}

/// The file of instance `id`'s last checkpoint in `dir`.
#[must_use]
pub fn file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes a checkpoint atomically: to a temporary file, synced, then renamed over the last
/// one. Returns its size in bytes.
///
/// # Errors
///
/// The directory or file cannot be written.
pub fn write(dir: &Path, c: &Checkpoint) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    let path = file(dir, &c.instance);
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(text.len() as u64)
}

/// Reads instance `id`'s last checkpoint, if there is a readable one.
#[must_use]
pub fn read(dir: &Path, id: &str) -> Option<Checkpoint> {
    let text = std::fs::read(file(dir, id)).ok()?;
    match serde_json::from_slice(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "ignoring an unreadable checkpoint");
            None
        }
    }
}

/// How an instance's checkpoints went, for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Checkpoints completed since the instance started.
    pub completed: u64,
    /// Checkpoints that did not complete in time.
    pub failures: u64,
    /// When the last one completed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Its size in bytes.
    pub last_bytes: u64,
    /// How long it took, in milliseconds.
    pub last_millis: u64,
    /// Why the instance is not checkpointed, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checkpointed: Option<String>,
    /// The checkpoint the instance was restored from when it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
}
