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

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, RwLock, Weak};
use std::time::Duration;

use indexmap::IndexMap;
use manifests::Protocol;
use serde_json::Value as Json;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, Envelope, Subscriber, WatermarkTracker};
use crate::connector::{
    ConnectorError, ConnectorMetrics, SinkContext, SourceContext, Speed, connector, place,
};
use crate::dead_letter::DeadLetters;
use crate::external::ExternalConfig;
use crate::instance::{
    Control, Failure, InstanceStatus, ProcessorMetrics, ProcessorTask, State, Transition,
};
use crate::plan::Plan;
use crate::processor::{ProcessorContext, ProcessorError};
use crate::registry::{DataSource, DeviceRegistry};
use crate::symbol::Sym;

/// The DSM id dead letters go to unless configured otherwise.
pub const DEAD_LETTER_DSM: &str = "dda-dead-letters";

/// How long a stop waits for a source connector to end before aborting it.
const SOURCE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        let mut params = manifests::ResolvedParameters::default();
        params.insert("path", Json::String("dda-output/dead-letters.jsonl".into()));
        Self {
            speed: Speed::Factor(1.0),
            bus_capacity: Bus::DEFAULT_CAPACITY,
            dead_letters: DataSource::new(DEAD_LETTER_DSM, Protocol::File, params),
            recent: 0,
            external: ExternalConfig::default(),
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
}

struct RunningSink {
    stop: CancellationToken,
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
}

/// An instance: its plan (fixed for its life) and its lifecycle, behind an async lock so
/// that lifecycle operations on one instance are serialized.
struct Slot {
    plan: Arc<Plan>,
    instance: Mutex<Instance>,
}

struct Instance {
    plan: Arc<Plan>,
    state: State,
    failure: Option<Failure>,
    metrics: Vec<Arc<ProcessorMetrics>>,
    running: Option<Running>,
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
        let inner = Arc::new_cyclic(|this| Inner {
            config,
            recorders: StdMutex::default(),
            bus,
            registry: DeviceRegistry::default(),
            connectors: StdMutex::default(),
            instances: RwLock::default(),
            dead_letters,
            tracker: TaskTracker::new(),
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

    /// Subscribes to a DSM's topic, as a test does: losslessly, so a slow reader holds
    /// the publishers back.
    #[must_use]
    pub fn tap(&self, dsm: &str) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (mut s, rx) = self.inner.bus.subscriber();
        s.subscribe(&self.inner.bus, Sym::new(dsm));
        (s, rx)
    }

    /// Subscribes to a DSM's topic as a dashboard does: a slow reader loses messages, the
    /// pipeline never waits for it.
    #[must_use]
    pub fn tap_lossy(&self, dsm: &str) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (mut s, rx) = self.inner.bus.lossy_subscriber();
        s.subscribe(&self.inner.bus, Sym::new(dsm));
        (s, rx)
    }

    /// The last `n` observations published to a registered DSM, oldest first (`None` when
    /// the DSM is not registered or the engine keeps none).
    #[must_use]
    pub fn recent(&self, dsm: &str, n: usize) -> Option<Vec<crate::observation::Observation>> {
        let recorders = lock(&self.inner.recorders);
        let buffer = lock(&recorders.get(&Sym::new(dsm))?.buffer);
        Some(
            buffer
                .iter()
                .skip(buffer.len().saturating_sub(n))
                .cloned()
                .collect(),
        )
    }

    fn record(&self, dsm: Sym) {
        let keep = self.inner.config.recent;
        let mut recorders = lock(&self.inner.recorders);
        if keep == 0 || recorders.contains_key(&dsm) {
            return;
        }
        let (mut subscriber, mut rx) = self.inner.bus.lossy_subscriber();
        subscriber.subscribe(&self.inner.bus, dsm);
        let buffer = Arc::new(StdMutex::new(std::collections::VecDeque::with_capacity(
            keep,
        )));
        let kept = buffer.clone();
        let task = self.inner.tracker.spawn(async move {
            let _subscription = subscriber;
            while let Some(e) = rx.recv().await {
                if let crate::bus::Message::Data(batch) = e.message {
                    let mut b = lock(&kept);
                    for o in batch.iter().skip(batch.len().saturating_sub(keep)) {
                        if b.len() == keep {
                            b.pop_front();
                        }
                        b.push_back(o.clone());
                    }
                }
            }
        });
        recorders.insert(dsm, Recorder { buffer, task });
    }

    // --- registry -------------------------------------------------------------------

    /// Registers (or updates) a data source and starts the connectors it now calls for.
    ///
    /// # Errors
    ///
    /// Its parameters do not suit its protocol's connector.
    pub fn register(&self, source: DataSource) -> Result<(), EngineError> {
        if let Some(c) = connector(&source.protocol) {
            (c.check)(&source)?;
        }
        let id = source.id;
        let replaced = self.inner.registry.register(source);
        self.record(id);
        {
            let mut c = lock(&self.inner.connectors);
            c.finished.retain(|f| *f != id);
            if replaced.is_some()
                && let Some(running) = c.sources.remove(&id)
            {
                // New parameters: restart the source with them.
                running.cancel.cancel();
            }
        }
        self.reconcile_source(id);
        Ok(())
    }

    /// Deregisters a data source: its source connector stops; instances reading it keep
    /// running and wait for it.
    ///
    /// # Errors
    ///
    /// A running instance writes it.
    pub async fn deregister(&self, id: &str) -> Result<(), EngineError> {
        let sym = Sym::new(id);
        if let Some(instance) = self.running_writer_of(sym).await {
            return Err(EngineError::InUse {
                dsm: id.to_owned(),
                instance,
            });
        }
        self.inner.registry.deregister(sym);
        if let Some(r) = lock(&self.inner.recorders).remove(&sym) {
            r.task.abort();
        }
        self.reconcile_source(sym);
        Ok(())
    }

    async fn running_writer_of(&self, dsm: Sym) -> Option<String> {
        for slot in self.slots() {
            if slot.plan.outputs().contains(&dsm)
                && slot.instance.lock().await.state != State::Stopped
            {
                return Some(slot.plan.id.clone());
            }
        }
        None
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.inner
            .instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Whether some instance of this engine has a processor writing `dsm`: then its data is
    /// on the bus already, and no source connector reads it from outside.
    fn written_locally(&self, dsm: Sym) -> bool {
        self.inner
            .instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|slot| slot.plan.outputs().contains(&dsm))
    }

    /// Starts or stops `dsm`'s source connector to match what should run.
    fn reconcile_source(&self, dsm: Sym) {
        let registered = self.inner.registry.get(dsm);
        let written = self.written_locally(dsm);
        let mut c = lock(&self.inner.connectors);
        let wanted = c.source_wants.get(&dsm).copied().unwrap_or(0) > 0;
        let source_fn = registered
            .as_ref()
            .filter(|d| !d.protocol.is_internal())
            .and_then(|d| connector(&d.protocol))
            .and_then(|r| r.source);
        let should_run = wanted && !written && source_fn.is_some() && !c.finished.contains(&dsm);
        let running = c.sources.get(&dsm).is_some_and(|s| !s.handle.is_finished());
        if should_run && !running {
            let (Some(ds), Some(run)) = (registered, source_fn) else {
                return;
            };
            let cancel = CancellationToken::new();
            let metrics = c.read.entry(dsm).or_default().clone();
            let inner = self.inner.clone();
            let cancel2 = cancel.clone();
            let handle = self.inner.tracker.spawn(async move {
                let publisher = inner.bus.publisher(dsm).await;
                let ctx = SourceContext {
                    dsm: ds,
                    publisher: publisher.clone(),
                    cancel: cancel2.clone(),
                    speed: inner.config.speed,
                    metrics,
                    dead_letters: inner.dead_letters.clone(),
                };
                let result = run(ctx).await;
                publisher.leave().await;
                match result {
                    Ok(()) if !cancel2.is_cancelled() => {
                        tracing::info!(dsm = %dsm, "source finished");
                        lock(&inner.connectors).finished.push(dsm);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(dsm = %dsm, error = %e, "source failed");
                        // From another task: failing the readers may wait for this one.
                        if let Some(engine) = inner.this.upgrade() {
                            let engine = Engine { inner: engine };
                            inner.tracker.spawn(async move {
                                engine.fail_readers(dsm, &e.to_string()).await
                            });
                        }
                    }
                }
            });
            c.sources.insert(dsm, RunningSource { cancel, handle });
        } else if !should_run && let Some(s) = c.sources.remove(&dsm) {
            s.cancel.cancel();
        }
    }

    // --- sinks ------------------------------------------------------------------------

    fn acquire_sink(&self, dsm: Sym) -> Result<(), EngineError> {
        let mut c = lock(&self.inner.connectors);
        *c.sink_wants.entry(dsm).or_insert(0) += 1;
        if c.sinks.contains_key(&dsm) {
            return Ok(());
        }
        let Some(ds) = self.inner.registry.get(dsm) else {
            return Ok(());
        };
        let Some(sink) = connector(&ds.protocol).and_then(|r| r.sink) else {
            return Ok(());
        };
        if let Some(r) = connector(&ds.protocol) {
            (r.check)(&ds)?;
        }
        let (mut subscriber, rx) = self.inner.bus.subscriber();
        subscriber.subscribe(&self.inner.bus, dsm);
        let stop = CancellationToken::new();
        let metrics = c.written.entry(dsm).or_default().clone();
        let ctx = SinkContext::new(
            ds,
            metrics.clone(),
            self.inner.dead_letters.clone(),
            subscriber,
            rx,
            stop.clone(),
        );
        let inner = self.inner.clone();
        let handle = self.inner.tracker.spawn(async move {
            if let Err(e) = sink(ctx).await {
                tracing::error!(dsm = %dsm, error = %e, "sink failed");
                // Failing the writers releases this sink and waits for this very task: do it
                // from another task, once this one has ended.
                if let Some(engine) = inner.this.upgrade() {
                    let engine = Engine { inner: engine };
                    inner
                        .tracker
                        .spawn(async move { engine.fail_writers(dsm, &e.to_string()).await });
                }
            }
        });
        c.sinks.insert(dsm, RunningSink { stop, handle });
        Ok(())
    }

    /// Releases a sink; the last release drains it and waits until it has written
    /// everything it accepted.
    async fn release_sink(&self, dsm: Sym) {
        let finishing = {
            let mut c = lock(&self.inner.connectors);
            let wants = c.sink_wants.entry(dsm).or_insert(1);
            *wants -= 1;
            if *wants == 0 {
                c.sink_wants.remove(&dsm);
                c.sinks.remove(&dsm)
            } else {
                None
            }
        };
        if let Some(s) = finishing {
            s.stop.cancel();
            let _ = s.handle.await;
        }
    }

    /// Observations each sink connector has written since the engine started, by DSM.
    #[must_use]
    pub fn written(&self) -> Vec<(Sym, u64)> {
        Self::totals(&lock(&self.inner.connectors).written)
    }

    /// Observations each source connector has read since the engine started, by DSM.
    #[must_use]
    pub fn read(&self) -> Vec<(Sym, u64)> {
        Self::totals(&lock(&self.inner.connectors).read)
    }

    fn totals(metrics: &HashMap<Sym, Arc<ConnectorMetrics>>) -> Vec<(Sym, u64)> {
        let mut out: Vec<(Sym, u64)> = metrics
            .iter()
            .map(|(d, m)| (*d, m.observations()))
            .collect();
        out.sort_by_key(|(d, _)| d.to_string());
        out
    }

    /// Whether every source connector that was started has ended by itself (finite inputs
    /// exhausted), and at least one was started.
    #[must_use]
    pub fn sources_exhausted(&self) -> bool {
        let c = lock(&self.inner.connectors);
        !c.finished.is_empty() && c.sources.values().all(|s| s.handle.is_finished())
    }

    // --- instances ----------------------------------------------------------------------

    /// Adds an instance (STOPPED).
    ///
    /// # Errors
    ///
    /// The id is taken.
    pub fn create(&self, plan: Plan) -> Result<(), EngineError> {
        let mut instances = self
            .inner
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if instances.contains_key(&plan.id) {
            return Err(EngineError::Exists(plan.id));
        }
        let metrics = plan
            .processors
            .iter()
            .map(|_| Arc::new(ProcessorMetrics::default()))
            .collect();
        let plan = Arc::new(plan);
        instances.insert(
            plan.id.clone(),
            Arc::new(Slot {
                plan: plan.clone(),
                instance: Mutex::new(Instance {
                    plan,
                    state: State::Stopped,
                    failure: None,
                    metrics,
                    running: None,
                }),
            }),
        );
        Ok(())
    }

    /// Replaces the plan of a stopped (or failed) instance, which becomes STOPPED.
    ///
    /// # Errors
    ///
    /// Unknown, or running or paused.
    pub async fn replace(&self, plan: Plan) -> Result<(), EngineError> {
        self.remove(&plan.id).await?;
        self.create(plan)
    }

    /// Removes a stopped (or failed) instance.
    ///
    /// # Errors
    ///
    /// Unknown, or running or paused.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let slot = self.instance(id)?;
        let guard = slot.instance.lock().await;
        if matches!(guard.state, State::Running | State::Paused) {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: "remove",
                state: guard.state,
            });
        }
        drop(guard);
        self.inner
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shift_remove(id);
        Ok(())
    }

    fn instance(&self, id: &str) -> Result<Arc<Slot>, EngineError> {
        self.inner
            .instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(id.to_owned()))
    }

    /// Ids of every instance, in creation order.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        self.inner
            .instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The plan of instance `id`.
    ///
    /// # Errors
    ///
    /// Unknown instance.
    pub fn plan(&self, id: &str) -> Result<Arc<Plan>, EngineError> {
        Ok(self.instance(id)?.plan.clone())
    }

    /// The status of instance `id`.
    ///
    /// # Errors
    ///
    /// Unknown instance.
    pub async fn status(&self, id: &str) -> Result<InstanceStatus, EngineError> {
        let slot = self.instance(id)?;
        let i = slot.instance.lock().await;
        Ok(self.status_of(&i))
    }

    fn status_of(&self, i: &Instance) -> InstanceStatus {
        let waiting_for = if matches!(i.state, State::Running | State::Paused) {
            i.plan
                .inputs()
                .into_iter()
                .filter(|d| self.inner.registry.get(*d).is_none() && !self.written_locally(*d))
                .map(|d| d.to_string())
                .collect()
        } else {
            Vec::new()
        };
        InstanceStatus {
            id: i.plan.id.clone(),
            name: i.plan.name.clone(),
            state: i.state,
            failure: i.failure.clone(),
            waiting_for,
            processors: i
                .plan
                .processors
                .iter()
                .zip(&i.metrics)
                .map(|(p, m)| m.snapshot(&p.id, p.registration.kind))
                .collect(),
            connectors: if matches!(i.state, State::Running | State::Paused | State::Failed) {
                self.connector_statuses(&i.plan)
            } else {
                Vec::new()
            },
        }
    }

    fn connector_statuses(&self, plan: &Plan) -> Vec<crate::instance::ConnectorStatus> {
        let c = lock(&self.inner.connectors);
        let mut out = Vec::new();
        for (role, dsms, metrics) in [
            ("source", plan.inputs(), &c.read),
            ("sink", plan.outputs(), &c.written),
        ] {
            for dsm in dsms {
                if let Some(m) = metrics.get(&dsm) {
                    out.push(crate::instance::ConnectorStatus {
                        dsm: dsm.to_string(),
                        role,
                        link: m.link(),
                    });
                }
            }
        }
        out
    }

    /// Starts instance `id`.
    ///
    /// # Errors
    ///
    /// Unknown, not STOPPED or FAILED, or a processor or connector cannot be created.
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.start_all(&[id.to_owned()]).await
    }

    /// Starts several instances so that none sees data before all are wired: every
    /// instance's sinks and processors first, then every instance's sources.
    ///
    /// # Errors
    ///
    /// As [`Engine::start`], for the first that fails (those started before stay running).
    pub async fn start_all(&self, ids: &[String]) -> Result<(), EngineError> {
        let mut started = Vec::new();
        for id in ids {
            let slot = self.instance(id)?;
            let mut guard = slot.instance.lock().await;
            if Transition::Start.apply(guard.state).is_none() {
                return Err(EngineError::IllegalTransition {
                    id: id.clone(),
                    verb: "start",
                    state: guard.state,
                });
            }
            self.wire(&mut guard, &slot).await?;
            drop(guard);
            started.push(slot);
        }
        for slot in started {
            let guard = slot.instance.lock().await;
            if let Some(r) = &guard.running {
                for s in r.sources.clone() {
                    self.reconcile_source(s);
                }
            }
        }
        Ok(())
    }

    /// Sinks, then processors (last wave first); sources are reconciled by the caller.
    async fn wire(&self, i: &mut Instance, handle: &Arc<Slot>) -> Result<(), EngineError> {
        let plan = i.plan.clone();
        let fail = |reason: String| EngineError::StartFailed {
            id: plan.id.clone(),
            reason,
        };
        // Create every processor first: configuration errors leave nothing behind.
        let mut processors = Vec::with_capacity(plan.processors.len());
        for p in &plan.processors {
            let ctx = ProcessorContext {
                id: p.id.clone(),
                instance: plan.id.clone(),
                parameters: p.parameters.clone(),
                sources: p.sources.clone(),
                sink: p.sink,
                sink_protocol: self.inner.registry.get(p.sink).map(|d| d.protocol.clone()),
                external: self.inner.config.external.clone(),
            };
            let processor = (p.registration.factory)(&ctx)
                .map_err(|e| fail(format!("processor {}: {e}", p.id)))?;
            processors.push(Some(processor));
        }
        let sinks = plan.outputs();
        for (n, s) in sinks.iter().enumerate() {
            if let Err(e) = self.acquire_sink(*s) {
                for done in &sinks[..n] {
                    self.release_sink(*done).await;
                }
                return Err(fail(e.to_string()));
            }
        }
        i.metrics = plan
            .processors
            .iter()
            .map(|_| Arc::new(ProcessorMetrics::default()))
            .collect();
        let (failures_tx, mut failures_rx) =
            mpsc::channel::<(String, String)>(plan.processors.len().max(1));
        let mut controls = Vec::new();
        let mut tasks: Vec<Option<JoinHandle<Result<(), ProcessorError>>>> =
            (0..plan.processors.len()).map(|_| None).collect();
        for wave in plan.waves.iter().rev() {
            for &n in wave {
                let p = &plan.processors[n];
                let (mut subscriber, input) = self.inner.bus.subscriber();
                let mut tracker = WatermarkTracker::default();
                for s in &p.sources {
                    let known = subscriber.subscribe(&self.inner.bus, *s);
                    tracker.known(*s, &known);
                }
                let publisher = self.inner.bus.publisher(p.sink).await;
                let mut side = Vec::new();
                for dsm in &p.side_outputs {
                    side.push((*dsm, self.inner.bus.publisher(*dsm).await));
                }
                let (control_tx, control_rx) = watch::channel(Control::Run);
                let task = ProcessorTask {
                    processor: processors[n]
                        .take()
                        .expect("each processor is created once"),
                    subscriber,
                    input,
                    tracker,
                    publisher,
                    side,
                    control: control_rx,
                    metrics: i.metrics[n].clone(),
                    dead_letters: self.inner.dead_letters.clone(),
                    place: place(&plan.id, &p.id),
                    sink: p.sink,
                };
                let failures = failures_tx.clone();
                let apm = p.id.clone();
                tasks[n] = Some(self.inner.tracker.spawn(async move {
                    let result = task.run().await;
                    if let Err(e) = &result {
                        let _ = failures.send((apm, e.to_string())).await;
                    }
                    result
                }));
                controls.push((n, control_tx));
            }
        }
        controls.sort_by_key(|(n, _)| *n);
        let sources = plan.inputs();
        {
            let mut c = lock(&self.inner.connectors);
            for s in &sources {
                *c.source_wants.entry(*s).or_insert(0) += 1;
            }
        }
        // Fail the instance when a processor fails (or panics).
        let weak = Arc::downgrade(handle);
        let engine = self.clone();
        let watcher = self.inner.tracker.spawn(async move {
            if let Some((apm, reason)) = failures_rx.recv().await
                && let Some(slot) = weak.upgrade()
            {
                engine.fail(&slot, apm, reason).await;
            }
        });
        i.running = Some(Running {
            controls: controls.into_iter().map(|(_, c)| c).collect(),
            tasks,
            sources,
            sinks,
            watcher,
        });
        i.state = State::Running;
        i.failure = None;
        tracing::info!(instance = %plan.id, "started");
        Ok(())
    }

    /// Stops instance `id`, draining it: nothing it accepted is lost.
    ///
    /// # Errors
    ///
    /// Unknown, or already STOPPED.
    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        let slot = self.instance(id)?;
        let mut i = slot.instance.lock().await;
        if Transition::Stop.apply(i.state).is_none() {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: "stop",
                state: i.state,
            });
        }
        if let Some(running) = i.running.take() {
            self.drain(&i.plan, running).await;
        }
        i.state = State::Stopped;
        tracing::info!(instance = %id, "stopped");
        Ok(())
    }

    async fn drain(&self, plan: &Plan, mut running: Running) {
        running.watcher.abort();
        // Let paused processors consume, so that sources are not stuck sending to them.
        for c in &running.controls {
            let _ = c.send(Control::Run);
        }
        // 1. Sources: stop those no other running instance reads, and wait for them.
        let mut ending = Vec::new();
        {
            let mut c = lock(&self.inner.connectors);
            for s in &running.sources {
                let wants = c.source_wants.entry(*s).or_insert(1);
                *wants -= 1;
                if *wants == 0 {
                    c.source_wants.remove(s);
                    if let Some(src) = c.sources.remove(s) {
                        src.cancel.cancel();
                        ending.push(src.handle);
                    }
                }
            }
        }
        for h in ending {
            let abort = h.abort_handle();
            if tokio::time::timeout(SOURCE_STOP_TIMEOUT, h).await.is_err() {
                abort.abort();
            }
        }
        // 2. Processors, wave by wave: each drains what it accepted, flushes, and leaves.
        for wave in &plan.waves {
            for &n in wave {
                if let Some(c) = running.controls.get(n) {
                    let _ = c.send(Control::Drain);
                }
            }
            for &n in wave {
                if let Some(task) = running.tasks.get_mut(n).and_then(Option::take) {
                    match task.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(instance = %plan.id, processor = %plan.processors[n].id, error = %e, "failed while draining")
                        }
                        Err(e) => {
                            tracing::warn!(instance = %plan.id, processor = %plan.processors[n].id, error = %e, "ended abnormally while draining")
                        }
                    }
                }
            }
        }
        // 3. Sinks write what they hold.
        for s in running.sinks {
            self.release_sink(s).await;
        }
    }

    /// Marks an instance FAILED: its processors are aborted, its connectors released.
    async fn fail(&self, slot: &Arc<Slot>, at: String, reason: String) {
        let mut i = slot.instance.lock().await;
        if !matches!(i.state, State::Running | State::Paused) {
            return;
        }
        tracing::error!(instance = %i.plan.id, at = %at, reason = %reason, "analytics instance failed");
        if let Some(mut running) = i.running.take() {
            for t in running.tasks.iter_mut().filter_map(Option::take) {
                t.abort();
            }
            {
                let mut c = lock(&self.inner.connectors);
                for s in &running.sources {
                    let wants = c.source_wants.entry(*s).or_insert(1);
                    *wants -= 1;
                    if *wants == 0 {
                        c.source_wants.remove(s);
                        if let Some(src) = c.sources.remove(s) {
                            src.cancel.cancel();
                        }
                    }
                }
            }
            for s in running.sinks {
                self.release_sink(s).await;
            }
        }
        i.state = State::Failed;
        i.failure = Some(Failure { at, reason });
    }

    async fn fail_matching(&self, reason: &str, dsm: Sym, matches: impl Fn(&Plan) -> bool) {
        for slot in self.slots().into_iter().filter(|s| matches(&s.plan)) {
            self.fail(&slot, dsm.to_string(), reason.to_owned()).await;
        }
    }

    async fn fail_readers(&self, dsm: Sym, reason: &str) {
        self.fail_matching(reason, dsm, |p| p.inputs().contains(&dsm))
            .await;
    }

    async fn fail_writers(&self, dsm: Sym, reason: &str) {
        self.fail_matching(reason, dsm, |p| p.outputs().contains(&dsm))
            .await;
    }

    /// Pauses instance `id`: its processors stop reading (publishers wait) and keep state.
    ///
    /// # Errors
    ///
    /// Unknown, or not RUNNING.
    pub async fn pause(&self, id: &str) -> Result<(), EngineError> {
        self.set_control(id, Transition::Pause, Control::Pause)
            .await
    }

    /// Resumes a paused instance.
    ///
    /// # Errors
    ///
    /// Unknown, or not PAUSED.
    pub async fn resume(&self, id: &str) -> Result<(), EngineError> {
        self.set_control(id, Transition::Resume, Control::Run).await
    }

    async fn set_control(
        &self,
        id: &str,
        t: Transition,
        control: Control,
    ) -> Result<(), EngineError> {
        let slot = self.instance(id)?;
        let mut i = slot.instance.lock().await;
        let Some(next) = t.apply(i.state) else {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: t.verb(),
                state: i.state,
            });
        };
        if let Some(r) = &i.running {
            for c in &r.controls {
                let _ = c.send(control);
            }
        }
        i.state = next;
        tracing::info!(instance = %id, state = %next, "state changed");
        Ok(())
    }

    /// Stops every running or paused instance, writers before their readers, then the
    /// dead-letter sink. The engine cannot be used afterwards.
    pub async fn shutdown(&self) {
        let plans: Vec<Arc<Plan>> = self.slots().iter().map(|s| s.plan.clone()).collect();
        let mut order: Vec<(usize, String)> = plans
            .iter()
            .map(|p| (depth(p, &plans), p.id.clone()))
            .collect();
        order.sort();
        for (_, id) in order {
            match self.stop(&id).await {
                Ok(()) | Err(EngineError::IllegalTransition { .. }) => {}
                Err(e) => tracing::warn!(instance = %id, error = %e, "stop failed"),
            }
        }
        self.inner.dead_letters.leave().await;
        self.release_sink(self.inner.config.dead_letters.id).await;
        let sources: Vec<RunningSource> = lock(&self.inner.connectors)
            .sources
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in sources {
            s.cancel.cancel();
        }
        self.inner.tracker.close();
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
