//! The lifecycle of analytics instances: create, replace, remove; start (sinks first, then
//! processors from the last wave to the first, then sources); stop, draining (sources
//! first, then each wave of processors, then the sinks); pause and resume; failure of one
//! instance when one of its processors or connectors fails. Operations on one instance are
//! serialized by its lock.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use super::{Engine, EngineError, GIVE_UP_GRACE, Instance, Running, Slot, View, lock};
use crate::bus::WatermarkTracker;
use crate::connector::place;
use crate::instance::{Control, Failure, InstanceStatus, ProcessorMetrics, State, Transition};
use crate::plan::Plan;
use crate::processor::{ProcessorContext, ProcessorError, READY_TIMEOUT};
use crate::symbol::Sym;
use crate::task::{ProcessorTask, TaskCheckpoint};

impl Engine {
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
                    running: None,
                }),
                checkpoint_n: std::sync::atomic::AtomicU64::new(0),
                view: std::sync::Mutex::new(View {
                    state: State::Stopped,
                    failure: None,
                    metrics,
                    checkpoint: crate::checkpoint::CheckpointStatus::default(),
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
        let state = slot.state();
        if matches!(state, State::Running | State::Paused) {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: "remove",
                state,
            });
        }
        drop(guard);
        self.inner
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shift_remove(id);
        // Its state goes with it: an instance created again under this id starts afresh.
        if let Some(settings) = &self.inner.config.checkpoints {
            let _ = std::fs::remove_file(crate::checkpoint::file(&settings.dir, id));
        }
        Ok(())
    }

    pub(super) fn instance(&self, id: &str) -> Result<Arc<Slot>, EngineError> {
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

    /// The status of instance `id`. It never waits for a lifecycle operation in progress
    /// (it shows the state before it).
    ///
    /// # Errors
    ///
    /// Unknown instance.
    pub async fn status(&self, id: &str) -> Result<InstanceStatus, EngineError> {
        let slot = self.instance(id)?;
        Ok(self.status_of(&slot.plan, &slot.view()))
    }

    pub(super) fn status_of(&self, plan: &Plan, i: &View) -> InstanceStatus {
        let waiting_for = if matches!(i.state, State::Running | State::Paused) {
            plan.inputs()
                .into_iter()
                .filter(|d| self.inner.registry.get(*d).is_none() && !self.written_locally(*d))
                .map(|d| d.to_string())
                .collect()
        } else {
            Vec::new()
        };
        InstanceStatus {
            id: plan.id.clone(),
            name: plan.name.clone(),
            state: i.state,
            failure: i.failure.clone(),
            waiting_for,
            processors: plan
                .processors
                .iter()
                .zip(&i.metrics)
                .map(|(p, m)| m.snapshot(&p.id, p.registration.kind))
                .collect(),
            connectors: if matches!(i.state, State::Running | State::Paused | State::Failed) {
                self.connector_statuses(plan)
            } else {
                Vec::new()
            },
            checkpoint: self
                .inner
                .config
                .checkpoints
                .is_some()
                .then(|| i.checkpoint.clone()),
        }
    }

    pub(super) fn connector_statuses(&self, plan: &Plan) -> Vec<crate::instance::ConnectorStatus> {
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
                        undelivered: m.undelivered(),
                        queue: m.queue(),
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
            let state = slot.state();
            if Transition::Start.apply(state).is_none() {
                return Err(EngineError::IllegalTransition {
                    id: id.clone(),
                    verb: "start",
                    state,
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
    pub(super) async fn wire(
        &self,
        i: &mut Instance,
        handle: &Arc<Slot>,
    ) -> Result<(), EngineError> {
        let plan = i.plan.clone();
        let fail = |reason: String| EngineError::StartFailed {
            id: plan.id.clone(),
            reason,
        };
        // Create every processor first: configuration errors leave nothing behind.
        let mut processors = Vec::with_capacity(plan.processors.len());
        for (n, p) in plan.processors.iter().enumerate() {
            let ctx = ProcessorContext {
                id: p.id.clone(),
                instance: plan.id.clone(),
                parameters: p.parameters.clone(),
                sources: p.sources.clone(),
                upstream: plan.upstream(n),
                sink: p.sink,
                sink_protocol: self.inner.registry.get(p.sink).map(|d| d.protocol.clone()),
                external: self.inner.config.external.clone(),
                linked: self.inner.config.linked.clone(),
            };
            let processor = (p.registration.factory)(&ctx)
                .map_err(|e| fail(format!("processor {}: {e}", p.id)))?;
            processors.push(Some(processor));
        }
        // What processors need before data comes (linked records loaded), all at once.
        let ready: Vec<_> = processors
            .iter()
            .zip(&plan.processors)
            .filter_map(|(p, plan)| Some((plan.id.clone(), p.as_ref()?.ready()?)))
            .collect();
        for (processor, r) in ready {
            if tokio::time::timeout(READY_TIMEOUT, r).await.is_err() {
                tracing::warn!(instance = %plan.id, %processor, "a processor was not ready in time; the instance starts anyway");
            }
        }
        let restored = self.restore(&plan, &mut processors)?;
        let sinks = plan.outputs();
        for (n, s) in sinks.iter().enumerate() {
            if let Err(e) = self.acquire_sink(*s) {
                for done in &sinks[..n] {
                    self.release_sink(*done, self.deadline()).await;
                }
                return Err(fail(e.to_string()));
            }
        }
        let metrics: Vec<Arc<ProcessorMetrics>> = plan
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
                let task =
                    ProcessorTask {
                        processor: processors[n]
                            .take()
                            .expect("each processor is created once"),
                        subscriber,
                        input,
                        tracker,
                        publisher,
                        side,
                        control: control_rx,
                        metrics: metrics[n].clone(),
                        dead_letters: self.inner.dead_letters.clone(),
                        place: place(&plan.id, &p.id),
                        sink: p.sink,
                        checkpoint: self.inner.config.checkpoints.as_ref().map(|_| {
                            TaskCheckpoint {
                                instance: Sym::new(&plan.id),
                                index: n,
                                expected: expected_barriers(&plan, n),
                                checkpoints: self.inner.checkpoints.clone(),
                            }
                        }),
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
        self.want_sources(&sources);
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
        let checkpointer = self.inner.config.checkpoints.as_ref().map(|settings| {
            let engine = self.clone();
            let (plan, settings, slot) = (plan.clone(), settings.clone(), handle.clone());
            self.inner
                .tracker
                .spawn(async move { engine.checkpoint_loop(&plan, &settings, &slot).await })
        });
        i.running = Some(Running {
            controls: controls.into_iter().map(|(_, c)| c).collect(),
            tasks,
            sources,
            sinks,
            watcher,
            checkpointer,
        });
        handle.show(|v| {
            *v = View {
                state: State::Running,
                failure: None,
                metrics,
                checkpoint: crate::checkpoint::CheckpointStatus {
                    restored_from: restored,
                    ..crate::checkpoint::CheckpointStatus::default()
                },
            }
        });
        tracing::info!(instance = %plan.id, "started");
        Ok(())
    }

    /// Stops instance `id`, draining it: nothing it accepted is lost. It takes at most the
    /// stop deadline ([`super::EngineConfig::stop_timeout`]) and a few seconds' grace: sinks
    /// still retrying a remote system then are given up, and what they hold goes to the
    /// dead letters, counted as undelivered (see [`Engine::undelivered`]).
    ///
    /// # Errors
    ///
    /// Unknown, or already STOPPED.
    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        self.stop_with(id, true).await
    }

    /// Stops instance `id`; with `flush` false its processors keep their open windows
    /// (they are in its last checkpoint) instead of emitting them.
    pub(super) async fn stop_with(&self, id: &str, flush: bool) -> Result<(), EngineError> {
        let slot = self.instance(id)?;
        let mut i = slot.instance.lock().await;
        let state = slot.state();
        if Transition::Stop.apply(state).is_none() {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: "stop",
                state,
            });
        }
        if let Some(running) = i.running.take() {
            self.drain(&i.plan, running, flush).await;
        }
        slot.show(|v| v.state = State::Stopped);
        tracing::info!(instance = %id, "stopped");
        Ok(())
    }

    /// When a stop starting now must be over.
    pub(super) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.inner.config.stop_timeout
    }

    pub(super) async fn drain(&self, plan: &Plan, mut running: Running, flush: bool) {
        let deadline = self.deadline();
        running.watcher.abort();
        if let Some(c) = running.checkpointer.take() {
            c.abort();
        }
        // Let paused processors consume, so that sources are not stuck sending to them.
        for c in &running.controls {
            let _ = c.send(Control::Run);
        }
        // 1. Sources: stop those no other running instance reads, and wait for them.
        for h in self.release_sources(&running.sources) {
            let abort = h.abort_handle();
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                tracing::warn!(instance = %plan.id, "a source did not stop by the stop deadline; aborted");
                abort.abort();
            }
        }
        // 2. Processors, wave by wave: each drains what it accepted, flushes, and leaves. One
        // still busy at the deadline is usually waiting on a sink that cannot write: the
        // instance's sinks are given up, so that their input flows to the dead letters.
        let mut late = false;
        for wave in &plan.waves {
            for &n in wave {
                if let Some(c) = running.controls.get(n) {
                    let _ = c.send(if flush { Control::Drain } else { Control::Halt });
                }
            }
            for &n in wave {
                let Some(mut task) = running.tasks.get_mut(n).and_then(Option::take) else {
                    continue;
                };
                let ended = match tokio::time::timeout_at(deadline, &mut task).await {
                    Ok(ended) => Some(ended),
                    Err(_) => {
                        if !late {
                            late = true;
                            self.give_up_sinks(&running.sinks);
                        }
                        tokio::time::timeout(GIVE_UP_GRACE, &mut task).await.ok()
                    }
                };
                let processor = &plan.processors[n].id;
                match ended {
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        tracing::warn!(instance = %plan.id, processor = %processor, error = %e, "failed while draining")
                    }
                    Some(Err(e)) => {
                        tracing::warn!(instance = %plan.id, processor = %processor, error = %e, "ended abnormally while draining")
                    }
                    None => {
                        task.abort();
                        tracing::error!(instance = %plan.id, processor = %processor, "still draining past the stop deadline; aborted (what it held is lost)");
                    }
                }
            }
        }
        // 3. Sinks write what they hold, until the deadline.
        for s in running.sinks {
            self.release_sink(s, deadline).await;
        }
    }

    /// Marks an instance FAILED: its processors are aborted, its connectors released.
    pub(super) async fn fail(&self, slot: &Arc<Slot>, at: String, reason: String) {
        let mut i = slot.instance.lock().await;
        if !matches!(slot.state(), State::Running | State::Paused) {
            return;
        }
        tracing::error!(instance = %i.plan.id, at = %at, reason = %reason, "analytics instance failed");
        if let Some(mut running) = i.running.take() {
            if let Some(c) = running.checkpointer.take() {
                c.abort();
            }
            for t in running.tasks.iter_mut().filter_map(Option::take) {
                t.abort();
            }
            // Cancelled; they end on their own (the engine's tracker owns them).
            drop(self.release_sources(&running.sources));
            let deadline = self.deadline();
            for s in running.sinks {
                self.release_sink(s, deadline).await;
            }
        }
        slot.show(|v| {
            v.state = State::Failed;
            v.failure = Some(Failure { at, reason });
        });
    }

    pub(super) async fn fail_matching(
        &self,
        reason: &str,
        dsm: Sym,
        matches: impl Fn(&Plan) -> bool,
    ) {
        for slot in self.slots().into_iter().filter(|s| matches(&s.plan)) {
            self.fail(&slot, dsm.to_string(), reason.to_owned()).await;
        }
    }

    pub(super) async fn fail_readers(&self, dsm: Sym, reason: &str) {
        self.fail_matching(reason, dsm, |p| p.inputs().contains(&dsm))
            .await;
    }

    pub(super) async fn fail_writers(&self, dsm: Sym, reason: &str) {
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

    pub(super) async fn set_control(
        &self,
        id: &str,
        t: Transition,
        control: Control,
    ) -> Result<(), EngineError> {
        let slot = self.instance(id)?;
        let i = slot.instance.lock().await;
        let state = slot.state();
        let Some(next) = t.apply(state) else {
            return Err(EngineError::IllegalTransition {
                id: id.to_owned(),
                verb: t.verb(),
                state,
            });
        };
        if let Some(r) = &i.running {
            for c in &r.controls {
                let _ = c.send(control);
            }
        }
        slot.show(|v| v.state = next);
        tracing::info!(instance = %id, state = %next, "state changed");
        Ok(())
    }
}

/// How many barriers processor `n` of `plan` waits for: one from the source connector of
/// each of its inputs the instance reads from outside, one from each processor of the
/// instance writing each of its other inputs.
fn expected_barriers(plan: &Plan, n: usize) -> usize {
    let inputs = plan.inputs();
    plan.processors[n]
        .sources
        .iter()
        .map(|s| {
            if inputs.contains(s) {
                1
            } else {
                plan.processors
                    .iter()
                    .filter(|q| q.writes().any(|w| w == *s))
                    .count()
            }
        })
        .sum()
}
