//! Supervision of connectors: the device registry decides which source and sink
//! connectors run. A source runs while some running instance reads its data source, the
//! data source is registered, its protocol is external and no processor of this engine
//! writes it; a sink runs while some running instance writes it. Registering a data source
//! starts what now should run; deregistering stops it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, GIVE_UP_GRACE, RunningSink, RunningSource, Slot, lock};
use crate::connector::context::SinkControl;
use crate::connector::{ConnectorMetrics, SinkContext, SourceContext};
use crate::instance::State;
use crate::registry::DataSource;
use crate::symbol::Sym;

impl Engine {
    /// Registers (or updates) a data source and starts the connectors it now calls for.
    ///
    /// # Errors
    ///
    /// Its parameters do not suit its protocol's connector.
    pub fn register(&self, source: DataSource) -> Result<(), EngineError> {
        let prepared = match source.protocol.registration() {
            Some(r) => r.prepare(&source)?,
            None => None,
        };
        let id = source.id;
        let replaced = self.inner.registry.register(source, prepared);
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

    pub(super) async fn running_writer_of(&self, dsm: Sym) -> Option<String> {
        for slot in self.slots() {
            if slot.plan.outputs().contains(&dsm) && slot.state() != State::Stopped {
                return Some(slot.plan.id.clone());
            }
        }
        None
    }

    /// The running (or paused) instances that read data source `dsm` and wait for it, as it
    /// is neither registered nor written by an instance here: the `waitingFor` of their
    /// status, seen from the source.
    #[must_use]
    pub fn waiting_for(&self, dsm: &str) -> Vec<String> {
        let sym = Sym::new(dsm);
        if self.inner.registry.get(sym).is_some() || self.written_locally(sym) {
            return Vec::new();
        }
        self.slots()
            .into_iter()
            .filter(|s| {
                matches!(s.state(), State::Running | State::Paused)
                    && s.plan.inputs().contains(&sym)
            })
            .map(|s| s.plan.id.clone())
            .collect()
    }

    pub(super) fn slots(&self) -> Vec<Arc<Slot>> {
        self.inner
            .instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Whether some instance of this engine has a processor writing `dsm`, or it is the dead
    /// letters' DSM: then its data is on the bus already, and no source connector reads it
    /// from outside.
    pub(super) fn written_locally(&self, dsm: Sym) -> bool {
        dsm == self.inner.dead_letters.topic()
            || self
                .inner
                .instances
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .any(|slot| slot.plan.outputs().contains(&dsm))
    }

    /// Starts or stops `dsm`'s source connector to match what should run.
    pub(super) fn reconcile_source(&self, dsm: Sym) {
        let registered = self.inner.registry.connector(dsm);
        let written = self.written_locally(dsm);
        let mut c = lock(&self.inner.connectors);
        let wanted = c.source_wants.get(&dsm).copied().unwrap_or(0) > 0;
        let readable = registered
            .as_ref()
            .and_then(|(_, p)| p.as_ref())
            .filter(|p| p.reads());
        let should_run = wanted && !written && readable.is_some() && !c.finished.contains(&dsm);
        let running = c.sources.get(&dsm).is_some_and(|s| !s.handle.is_finished());
        if should_run && !running {
            let Some((ds, Some(connector))) = registered else {
                return;
            };
            let cancel = CancellationToken::new();
            let exhausted = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let metrics = c.read.entry(dsm).or_default().clone();
            let exhausted2 = exhausted.clone();
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
                    shared: inner.shared.clone(),
                    checkpoints: inner.checkpoints.clone(),
                    resume: lock(&inner.resume).remove(&dsm),
                    input_log: inner
                        .config
                        .queues
                        .as_ref()
                        .filter(|_| inner.config.checkpoints.is_some())
                        .map(|q| {
                            // Accepted input is never dropped: a full log holds the
                            // source back (its broker keeps what is not acknowledged).
                            let limits = crate::spool::QueueLimits {
                                max_age: None,
                                on_full: crate::spool::OnFull::Backpressure,
                                ..q.limits
                            };
                            (q.input_log_of(&dsm.to_string()), limits)
                        }),
                    exhausted: exhausted2,
                    halted: std::sync::atomic::AtomicBool::new(false),
                };
                let result = match connector.read(ctx) {
                    Some(run) => run.await,
                    None => Ok(()),
                };
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
            c.sources.insert(
                dsm,
                RunningSource {
                    cancel,
                    handle,
                    exhausted,
                },
            );
        } else if !should_run && let Some(s) = c.sources.remove(&dsm) {
            s.cancel.cancel();
        }
    }

    /// Counts one more running instance reading each of `sources`.
    pub(super) fn want_sources(&self, sources: &[Sym]) {
        let mut c = lock(&self.inner.connectors);
        for s in sources {
            *c.source_wants.entry(*s).or_insert(0) += 1;
        }
    }

    /// Counts one running instance less reading each of `sources`; cancels the source
    /// connectors nobody reads any more and returns their tasks, to wait for.
    pub(super) fn release_sources(&self, sources: &[Sym]) -> Vec<JoinHandle<()>> {
        let mut ending = Vec::new();
        let mut c = lock(&self.inner.connectors);
        for s in sources {
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
        ending
    }

    // --- sinks ------------------------------------------------------------------------

    pub(super) fn acquire_sink(&self, dsm: Sym) -> Result<(), EngineError> {
        let mut c = lock(&self.inner.connectors);
        *c.sink_wants.entry(dsm).or_insert(0) += 1;
        if c.sinks.contains_key(&dsm) {
            return Ok(());
        }
        let Some((ds, Some(connector))) = self.inner.registry.connector(dsm) else {
            return Ok(());
        };
        if !connector.writes() {
            return Ok(());
        }
        let (mut subscriber, rx) = self.inner.bus.subscriber();
        subscriber.subscribe(&self.inner.bus, dsm);
        let control = SinkControl::default();
        let metrics = c.written.entry(dsm).or_default().clone();
        let mut ctx = SinkContext::new(
            ds,
            metrics.clone(),
            self.inner.dead_letters.clone(),
            self.inner.shared.clone(),
            (subscriber, rx),
            control.clone(),
            self.inner.checkpoints.clone(),
        );
        if connector.forwards_watermarks() {
            ctx.forward_watermarks();
        }
        let filler = self
            .open_queue(dsm, connector.store_and_forward())
            .map(|queue| {
                self.inner
                    .tracker
                    .spawn(ctx.spooled(queue, control.give_up.clone()))
            });
        let Some(sink) = connector.write(ctx) else {
            return Ok(());
        };
        let inner = self.inner.clone();
        let handle = self.inner.tracker.spawn(async move {
            let ended = sink.await;
            if let Some(filler) = filler {
                // Whatever was still on its way is queued for the next start.
                let _ = filler.await;
            }
            if let Err(e) = ended {
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
        c.sinks.insert(dsm, RunningSink { control, handle });
        Ok(())
    }

    /// The store-and-forward queue of sink `dsm`, when it writes to a remote system and
    /// the engine keeps queues; a queue that cannot be opened is reported, and the sink
    /// runs without one.
    fn open_queue(&self, dsm: Sym, store_and_forward: bool) -> Option<Arc<crate::spool::Queue>> {
        let settings = self
            .inner
            .config
            .queues
            .as_ref()
            .filter(|_| store_and_forward)?;
        let id = dsm.to_string();
        let dir = settings.dir_of(&id);
        match crate::spool::Queue::open(&dir, settings.limits_of(&id)) {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::error!(dsm = %dsm, error = %e, "cannot open the sink's store-and-forward queue; it runs without one");
                None
            }
        }
    }

    /// Releases a sink; the last release drains it and waits until it has written
    /// everything it accepted, or until `deadline`: then the sink is given up (what it
    /// holds goes to the dead letters, counted undelivered) and, if it still does not end
    /// within a grace period, aborted (what it held is counted undelivered).
    pub(super) async fn release_sink(&self, dsm: Sym, deadline: tokio::time::Instant) {
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
        let Some(mut s) = finishing else { return };
        s.control.stop.cancel();
        if tokio::time::timeout_at(deadline, &mut s.handle)
            .await
            .is_ok()
        {
            return self.account(dsm);
        }
        tracing::warn!(dsm = %dsm, "the sink did not write what it holds by the stop deadline; giving it up");
        s.control.give_up.cancel();
        if tokio::time::timeout(GIVE_UP_GRACE, &mut s.handle)
            .await
            .is_err()
        {
            s.handle.abort();
            let _ = s.handle.await;
            tracing::error!(dsm = %dsm, "the sink did not end when given up; aborted");
        }
        self.account(dsm);
    }

    /// Gives up, at once, the sinks among `dsms` that only the instance being stopped
    /// writes (a sink others still write keeps going).
    pub(super) fn give_up_sinks(&self, dsms: &[Sym]) {
        let c = lock(&self.inner.connectors);
        for dsm in dsms {
            if c.sink_wants.get(dsm) == Some(&1)
                && let Some(s) = c.sinks.get(dsm)
            {
                tracing::warn!(dsm = %dsm, "the instance did not drain by the stop deadline; giving its sink up");
                s.control.stop.cancel();
                s.control.give_up.cancel();
            }
        }
    }

    /// Once a sink has ended, and unless another has started for its DSM since: what it
    /// accepted and neither delivered, rejected nor counted undelivered (it was aborted
    /// mid-write) is counted undelivered.
    fn account(&self, dsm: Sym) {
        let c = lock(&self.inner.connectors);
        if c.sinks.contains_key(&dsm) {
            return;
        }
        if let Some(m) = c.written.get(&dsm) {
            let lost = m.unaccounted();
            if lost > 0 {
                tracing::error!(dsm = %dsm, lost, "observations the sink had accepted were lost when it ended");
                m.add_undelivered(lost);
            }
        }
    }

    /// Where a registered data source's data is, for people: its connector's place, or its
    /// protocol's name when it has no connector.
    #[must_use]
    pub fn place(&self, dsm: Sym) -> Option<String> {
        let (source, connector) = self.inner.registry.connector(dsm)?;
        Some(connector.map_or_else(|| source.protocol.to_string(), |c| c.place().to_owned()))
    }

    /// Observations each sink connector has written since the engine started, by DSM.
    #[must_use]
    pub fn written(&self) -> Vec<(Sym, u64)> {
        Self::totals(
            &lock(&self.inner.connectors).written,
            ConnectorMetrics::observations,
        )
    }

    /// Observations each sink connector accepted and did not deliver since the engine
    /// started, by DSM (only those with some).
    #[must_use]
    pub fn undelivered(&self) -> Vec<(Sym, u64)> {
        let mut out = Self::totals(
            &lock(&self.inner.connectors).written,
            ConnectorMetrics::undelivered,
        );
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// The store-and-forward queue of each sink that has one, by DSM.
    #[must_use]
    pub fn queues(&self) -> Vec<(Sym, crate::spool::QueueStatus)> {
        let c = lock(&self.inner.connectors);
        let mut out: Vec<_> = c
            .written
            .iter()
            .filter_map(|(d, m)| Some((*d, m.queue()?)))
            .collect();
        out.sort_by_key(|(d, _)| d.to_string());
        out
    }

    /// Observations each source connector has read since the engine started, by DSM.
    #[must_use]
    pub fn read(&self) -> Vec<(Sym, u64)> {
        Self::totals(
            &lock(&self.inner.connectors).read,
            ConnectorMetrics::observations,
        )
    }

    pub(super) fn totals(
        metrics: &HashMap<Sym, Arc<ConnectorMetrics>>,
        count: fn(&ConnectorMetrics) -> u64,
    ) -> Vec<(Sym, u64)> {
        let mut out: Vec<(Sym, u64)> = metrics.iter().map(|(d, m)| (*d, count(m))).collect();
        out.sort_by_key(|(d, _)| d.to_string());
        out
    }

    /// Whether every source connector that was started has ended by itself (finite inputs
    /// exhausted), and at least one was started.
    #[must_use]
    pub fn sources_exhausted(&self) -> bool {
        let c = lock(&self.inner.connectors);
        let done = |s: &RunningSource| {
            s.handle.is_finished() || s.exhausted.load(std::sync::atomic::Ordering::Relaxed)
        };
        let exhausted = c
            .sources
            .values()
            .any(|s| s.exhausted.load(std::sync::atomic::Ordering::Relaxed));
        (!c.finished.is_empty() || exhausted) && c.sources.values().all(done)
    }
}
