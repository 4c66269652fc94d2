//! The engine: a bus, a device registry, the connectors the registry calls for, and the
//! analytics instances, with their lifecycle.
//!
//! Connectors run on demand: a source connector runs while some running instance reads its
//! DSM, the DSM is registered, its protocol is external, and no processor of this engine
//! writes it (then the data is already on the bus); a sink connector runs while some
//! running instance writes its DSM. Registering a DSM starts what now should run;
//! deregistering stops it — instances reading it keep running and report that they wait.
//!
//! Starting an instance goes sinks first: sink connectors, then processors from the last
//! wave to the first, then source connectors. Stopping goes the other way and drains: the
//! sources stop, then each wave of processors processes everything it accepted, flushes and
//! leaves, then the sinks write what they hold. Lifecycle operations on one instance are
//! serialized; a processor that fails fails its instance only.

mod checkpointing;
mod lifecycle;
mod live;
mod supervision;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, RwLock, Weak};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::connector::{ConnectorError, ConnectorMetrics, Protocol, Shared, Speed};
use crate::dead_letter::DeadLetters;
use crate::external::ExternalConfig;
use crate::instance::{Control, Failure, ProcessorMetrics, State};
use crate::plan::Plan;
use crate::processor::ProcessorError;
use crate::registry::{DataSource, DeviceRegistry};
use crate::symbol::Sym;

/// The DSM id dead letters go to unless configured otherwise.
pub const DEAD_LETTER_DSM: &str = manifests::DEAD_LETTER_DSM;

/// How long a shutdown waits for the engine's tasks to end once everything is stopped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a sink connector, or a processor, is given after the stop deadline to end
/// once told to give up, before it is aborted.
const GIVE_UP_GRACE: Duration = Duration::from_secs(2);

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How fast simulated time runs.
    pub speed: Speed,
    /// Room in each subscriber's channel, in messages.
    pub bus_capacity: usize,
    /// The dead-letter DSM (its sink connector writes them; File by default).
    pub dead_letters: DataSource,
    /// How many recent observations to keep per registered DSM, for live views (0: none).
    pub recent: usize,
    /// The programs `external` processors may run (none by default); handed to every
    /// processor's factory in [`ProcessorContext::external`].
    pub external: ExternalConfig,
    /// The host's access to linked records (see [`crate::linked`]); handed to every
    /// processor's factory in [`ProcessorContext::linked`]. None by default: `enrich`
    /// cannot start.
    pub linked: Option<Arc<dyn crate::linked::LinkedRecords>>,
    /// How long stopping an instance may take: sources stop, processors drain and sinks
    /// write what they hold within it. Past it, sinks still retrying a remote system are
    /// given up, and what they hold goes to the dead letters, counted as undelivered.
    pub stop_timeout: Duration,
    /// Checkpoints of running instances: where, and how often (none by default).
    pub checkpoints: Option<CheckpointSettings>,
    /// Store-and-forward queues of network sinks: where, and their limits (none by
    /// default: network sinks then hold only what they are writing).
    pub queues: Option<QueueSettings>,
}

/// Where the store-and-forward queues of network sinks are kept, and their limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// The folder holding one folder per sink DSM.
    pub dir: std::path::PathBuf,
    /// The limits of every sink's queue unless given for it.
    pub limits: crate::spool::QueueLimits,
    /// The limits of particular sinks' queues, by DSM id.
    pub sinks: HashMap<String, crate::spool::QueueLimits>,
}

impl QueueSettings {
    /// The queue folder of sink `dsm`: its id, with anything but letters, digits, `-`,
    /// `_` and `.` written as `%XX`.
    #[must_use]
    pub fn dir_of(&self, dsm: &str) -> std::path::PathBuf {
        self.dir.join(folder_name(dsm))
    }

    /// The input log folder of source `dsm` (see [`crate::connector::SourceContext::input_log`]):
    /// `inputs/<dsm>` beside the queues' folder.
    #[must_use]
    pub fn input_log_of(&self, dsm: &str) -> std::path::PathBuf {
        self.dir.with_file_name("inputs").join(folder_name(dsm))
    }

    /// The limits of sink `dsm`'s queue.
    #[must_use]
    pub fn limits_of(&self, dsm: &str) -> crate::spool::QueueLimits {
        self.sinks.get(dsm).copied().unwrap_or(self.limits)
    }
}

/// A DSM id as a folder name: anything but letters, digits, `-`, `_` and `.` (not first)
/// written as `%XX`.
fn folder_name(dsm: &str) -> String {
    {
        let mut name = String::with_capacity(dsm.len());
        for b in dsm.bytes() {
            if b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_')
                || (b == b'.' && !name.is_empty())
            {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        name
    }
}

/// Where and how often the engine checkpoints its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The folder of the checkpoint files (one per instance).
    pub dir: std::path::PathBuf,
    /// How often.
    pub interval: Duration,
    /// How often for particular instances, by id (zero: never), instead of `interval`.
    pub instances: HashMap<String, Duration>,
}

impl CheckpointSettings {
    /// How often instance `id` is checkpointed (zero: never).
    #[must_use]
    pub fn interval_of(&self, id: &str) -> Duration {
        self.instances.get(id).copied().unwrap_or(self.interval)
    }
}

impl EngineConfig {
    /// The stop deadline unless configured otherwise.
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for EngineConfig {
    fn default() -> Self {
        let mut params = manifests::ResolvedParameters::default();
        params.insert("path", Json::String("dda-output/dead-letters.jsonl".into()));
        Self {
            speed: Speed::Factor(1.0),
            bus_capacity: Bus::DEFAULT_CAPACITY,
            dead_letters: DataSource::new(DEAD_LETTER_DSM, Protocol::parse("File"), params),
            recent: 0,
            external: ExternalConfig::default(),
            linked: None,
            stop_timeout: Self::DEFAULT_STOP_TIMEOUT,
            checkpoints: None,
            queues: None,
        }
    }
}

/// Why an engine operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No instance with this id.
    #[error("no analytics instance `{0}`")]
    NotFound(String),
    /// An instance with this id exists already.
    #[error("analytics instance `{0}` exists already")]
    Exists(String),
    /// The operation is not allowed in the instance's state.
    #[error("cannot {verb} analytics instance `{id}`: it is {state}")]
    IllegalTransition {
        /// The instance.
        id: String,
        /// What was asked.
        verb: &'static str,
        /// Its state.
        state: State,
    },
    /// The instance could not start.
    #[error("analytics instance `{id}` cannot start: {reason}")]
    StartFailed {
        /// The instance.
        id: String,
        /// Why.
        reason: String,
    },
    /// The DSM is written by a running instance and cannot be deregistered.
    #[error("data source `{dsm}` is written by running analytics instance `{instance}`")]
    InUse {
        /// The DSM.
        dsm: String,
        /// The instance.
        instance: String,
    },
    /// A DSM's parameters do not suit its connector.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

struct RunningSource {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    /// Set when the source has sent everything, though it may stay for checkpoints.
    exhausted: Arc<std::sync::atomic::AtomicBool>,
}

struct RunningSink {
    control: crate::connector::context::SinkControl,
    handle: JoinHandle<()>,
}

#[derive(Default)]
struct Connectors {
    /// Running instances reading each DSM.
    source_wants: HashMap<Sym, usize>,
    sources: HashMap<Sym, RunningSource>,
    /// Sources that ended by themselves (a replayed file): not restarted until re-registered.
    finished: Vec<Sym>,
    /// Running instances writing each DSM.
    sink_wants: HashMap<Sym, usize>,
    sinks: HashMap<Sym, RunningSink>,
    /// Counters of every source connector ever started, by DSM (they add up over restarts).
    read: HashMap<Sym, Arc<ConnectorMetrics>>,
    /// Counters of every sink connector ever started, by DSM.
    written: HashMap<Sym, Arc<ConnectorMetrics>>,
}

struct Running {
    controls: Vec<watch::Sender<Control>>,
    tasks: Vec<Option<JoinHandle<Result<(), ProcessorError>>>>,
    sources: Vec<Sym>,
    sinks: Vec<Sym>,
    watcher: JoinHandle<()>,
    /// Takes the instance's checkpoints, when the engine takes them.
    checkpointer: Option<JoinHandle<()>>,
}

/// An instance: its plan (fixed for its life), its lifecycle behind an async lock so that
/// lifecycle operations on one instance are serialized, and what it shows — its state,
/// failure and counters — behind a lock of its own, never held across an await: reading a
/// status never waits for a lifecycle operation (a stop waiting on a sink, say).
struct Slot {
    plan: Arc<Plan>,
    instance: Mutex<Instance>,
    view: StdMutex<View>,
    /// The number of the instance's last checkpoint started.
    checkpoint_n: std::sync::atomic::AtomicU64,
}

impl Slot {
    fn view(&self) -> View {
        lock(&self.view).clone()
    }

    fn state(&self) -> State {
        lock(&self.view).state
    }

    fn show(&self, change: impl FnOnce(&mut View)) {
        change(&mut lock(&self.view));
    }
}

struct Instance {
    plan: Arc<Plan>,
    running: Option<Running>,
}

#[derive(Clone)]
struct View {
    state: State,
    failure: Option<Failure>,
    metrics: Vec<Arc<ProcessorMetrics>>,
    checkpoint: crate::checkpoint::CheckpointStatus,
}

/// The most recent observations of one DSM, kept by a lossy subscriber.
struct Recorder {
    buffer: Arc<StdMutex<std::collections::VecDeque<crate::observation::Observation>>>,
    task: JoinHandle<()>,
}

struct Inner {
    config: EngineConfig,
    recorders: StdMutex<HashMap<Sym, Recorder>>,
    bus: Bus,
    registry: DeviceRegistry,
    connectors: StdMutex<Connectors>,
    instances: RwLock<IndexMap<String, Arc<Slot>>>,
    dead_letters: DeadLetters,
    tracker: TaskTracker,
    /// What connectors share and the tasks serving it (closed last on shutdown).
    shared: Shared,
    /// The checkpoints in progress.
    checkpoints: Arc<crate::checkpoint::Checkpoints>,
    /// Positions sources go on from, by DSM, when their instance was restored.
    resume: StdMutex<HashMap<Sym, Json>>,
    this: Weak<Inner>,
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Engine {
    /// Starts an engine: the bus, the registry (holding only the dead-letter DSM), and the
    /// dead-letter sink.
    ///
    /// # Errors
    ///
    /// The dead-letter DSM's connector rejects its configuration.
    pub async fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let bus = Bus::new(config.bus_capacity);
        let dead_topic = config.dead_letters.id;
        let dead_letters = DeadLetters::new(bus.publisher(dead_topic).await);
        let checkpoints = Arc::new(crate::checkpoint::Checkpoints::new(
            config.checkpoints.is_some(),
        ));
        let inner = Arc::new_cyclic(|this| Inner {
            checkpoints,
            resume: StdMutex::default(),
            config,
            recorders: StdMutex::default(),
            bus,
            registry: DeviceRegistry::default(),
            connectors: StdMutex::default(),
            instances: RwLock::default(),
            dead_letters,
            tracker: TaskTracker::new(),
            shared: Shared::default(),
            this: this.clone(),
        });
        let engine = Self { inner };
        engine.register(engine.inner.config.dead_letters.clone())?;
        engine.acquire_sink(dead_topic)?;
        Ok(engine)
    }

    /// The bus (for taps and tests).
    #[must_use]
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// What the engine's connectors share, such as its [`crate::connector::Identity`].
    #[must_use]
    pub fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The device registry.
    #[must_use]
    pub fn registry(&self) -> &DeviceRegistry {
        &self.inner.registry
    }

    /// The dead letters.
    #[must_use]
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }

    /// Stops every running or paused instance, writers before their readers (instances at
    /// one depth together, so that a shutdown takes a stop deadline per depth, not per
    /// instance), then the dead-letter sink. The engine cannot be used afterwards.
    ///
    /// Open windows are flushed (marked incomplete): the end of a run.
    pub async fn shutdown(&self) {
        self.shutdown_with(std::collections::HashSet::new()).await;
    }

    /// Shuts down as [`Engine::shutdown`] does, after a last checkpoint of every instance
    /// that can be checkpointed: those stop without flushing, their open windows kept in
    /// the checkpoint to go on from at the next start (a graceful stop of `dda serve`).
    pub async fn shutdown_to_checkpoints(&self) {
        let kept = self.final_checkpoints().await.into_iter().collect();
        self.shutdown_with(kept).await;
    }

    /// Shuts down; the instances in `kept` stop without flushing.
    async fn shutdown_with(&self, kept: std::collections::HashSet<String>) {
        let plans: Vec<Arc<Plan>> = self.slots().iter().map(|s| s.plan.clone()).collect();
        let mut by_depth: std::collections::BTreeMap<usize, Vec<String>> =
            std::collections::BTreeMap::new();
        for p in &plans {
            by_depth
                .entry(depth(p, &plans))
                .or_default()
                .push(p.id.clone());
        }
        for ids in by_depth.into_values() {
            let mut stopping = tokio::task::JoinSet::new();
            for id in ids {
                let engine = self.clone();
                let flush = !kept.contains(&id);
                stopping.spawn(async move { (engine.stop_with(&id, flush).await, id) });
            }
            while let Some(stopped) = stopping.join_next().await {
                match stopped {
                    Ok((Ok(()) | Err(EngineError::IllegalTransition { .. }), _)) => {}
                    Ok((Err(e), id)) => {
                        tracing::warn!(instance = %id, error = %e, "stop failed");
                    }
                    Err(e) => tracing::warn!(error = %e, "a stop ended abnormally"),
                }
            }
        }
        self.inner.dead_letters.leave().await;
        self.release_sink(self.inner.config.dead_letters.id, self.deadline())
            .await;
        let sources: Vec<RunningSource> = lock(&self.inner.connectors)
            .sources
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in sources {
            s.cancel.cancel();
        }
        for (_, r) in lock(&self.inner.recorders).drain() {
            r.task.abort();
        }
        // Every task the engine started ends with it: wait for them (sources finishing
        // their last batch, sinks their last write), then for what connectors share
        // (listeners).
        self.inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tracker.len(),
                "tasks still running {SHUTDOWN_TIMEOUT:?} after the engine shut down"
            );
        }
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.inner.shared.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "connector tasks still running {SHUTDOWN_TIMEOUT:?} after the engine shut down"
            );
        }
    }
}

/// How many other plans feed `plan`'s inputs, transitively: stop order (writers first).
fn depth(plan: &Plan, plans: &[Arc<Plan>]) -> usize {
    let mut depth = 0;
    let mut frontier = plan.inputs();
    let mut seen = vec![plan.id.clone()];
    while !frontier.is_empty() {
        let writers: Vec<&Arc<Plan>> = plans
            .iter()
            .filter(|p| !seen.contains(&p.id) && p.outputs().iter().any(|o| frontier.contains(o)))
            .collect();
        if writers.is_empty() {
            break;
        }
        depth += 1;
        frontier = writers.iter().flat_map(|p| p.inputs()).collect();
        seen.extend(writers.iter().map(|p| p.id.clone()));
    }
    depth
}
