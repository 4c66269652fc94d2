//! Taking and restoring the checkpoints of running instances (see [`crate::checkpoint`]).
//!
//! An instance is checkpointed when every input it reads from outside comes from a source
//! that can be resumed and that no other instance reads (a shared source has one position
//! for several instances), and the engine has a checkpoint folder. Its checkpointer starts
//! checkpoint `n + 1` every interval (the engine's, or the instance's own; zero: never)
//! while it runs; one that does not complete within twice
//! the interval (at least 10 s) is abandoned and counted as a failure. Restored at start,
//! its processors take their snapshots back and its sources go on from their positions.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{CheckpointSettings, Engine, EngineError, Slot, lock};
use crate::bus::Barrier;
use crate::checkpoint::{self, Checkpoint};
use crate::instance::State;
use crate::plan::Plan;
use crate::processor::Processor;
use crate::symbol::Sym;

/// A digest of the analytics manifest a plan comes from: a checkpoint of another plan is
/// not restored.
fn digest(plan: &Plan) -> String {
    const PLANS: uuid::Uuid = uuid::Uuid::from_u128(0x6464_612d_706c_616e_0000_0000_0000_0001);
    let text = serde_json::to_vec(&plan.manifest).unwrap_or_default();
    uuid::Uuid::new_v5(&PLANS, &text).to_string()
}

impl Engine {
    /// Restores `processors` (created for `plan`) from the instance's last checkpoint, and
    /// leaves its sources' positions for them; the checkpoint's number, when there was one.
    ///
    /// # Errors
    ///
    /// A processor refuses its snapshot (the message says which file to remove to start
    /// afresh).
    pub(super) fn restore(
        &self,
        plan: &Plan,
        processors: &mut [Option<Box<dyn Processor>>],
    ) -> Result<Option<u64>, EngineError> {
        let Some(settings) = &self.inner.config.checkpoints else {
            return Ok(None);
        };
        if settings.interval_of(&plan.id).is_zero() {
            return Ok(None);
        }
        let Some(mut c) = checkpoint::read(&settings.dir, &plan.id) else {
            return Ok(None);
        };
        if c.plan != digest(plan) {
            tracing::info!(instance = %plan.id, "the analytics manifest changed since its last checkpoint: starting afresh");
            return Ok(None);
        }
        for (p, processor) in plan.processors.iter().zip(processors.iter_mut()) {
            let (Some(state), Some(processor)) = (c.processors.remove(&p.id), processor) else {
                continue;
            };
            processor
                .restore(state)
                .map_err(|e| EngineError::StartFailed {
                    id: plan.id.clone(),
                    reason: format!(
                        "processor {} cannot take back its state of checkpoint {}: {e} (remove {} to start afresh)",
                        p.id,
                        c.n,
                        checkpoint::file(&settings.dir, &plan.id).display()
                    ),
                })?;
        }
        let mut resume = lock(&self.inner.resume);
        for (dsm, position) in c.sources {
            resume.insert(Sym::new(&dsm), position);
        }
        tracing::info!(instance = %plan.id, checkpoint = c.n, taken = %c.taken, "restored from its checkpoint");
        Ok(Some(c.n))
    }

    /// Why the instance cannot be checkpointed now, if it cannot.
    fn not_checkpointable(&self, plan: &Plan) -> Option<String> {
        if self
            .inner
            .config
            .checkpoints
            .as_ref()
            .is_some_and(|s| s.interval_of(&plan.id).is_zero())
        {
            return Some("its checkpoint interval is 0s".to_owned());
        }
        let c = lock(&self.inner.connectors);
        for s in plan.inputs() {
            match self.inner.registry.connector(s) {
                Some((_, Some(p))) if p.reads() && p.resumable() => {}
                _ => {
                    return Some(format!(
                        "input {s} is not read by a source that can be resumed (simulator, file)"
                    ));
                }
            }
            if c.source_wants.get(&s).copied().unwrap_or(0) > 1 {
                return Some(format!("input {s} is read by another instance too"));
            }
        }
        None
    }

    /// Checkpoints the instance every interval while it runs.
    pub(super) async fn checkpoint_loop(
        &self,
        plan: &Plan,
        settings: &CheckpointSettings,
        slot: &Arc<Slot>,
    ) {
        let restored = slot.view().checkpoint.restored_from.unwrap_or(0);
        slot.checkpoint_n.fetch_max(restored, Ordering::Relaxed);
        let interval = settings.interval_of(&plan.id);
        if interval.is_zero() {
            let why = self.not_checkpointable(plan);
            self.inner.checkpoints.set_uncovered(&plan.inputs(), true);
            slot.show(|v| v.checkpoint.not_checkpointed = why);
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let patience = (interval * 2).max(Duration::from_secs(10));
        loop {
            ticker.tick().await;
            let why = self.not_checkpointable(plan);
            self.inner
                .checkpoints
                .set_uncovered(&plan.inputs(), why.is_some());
            let skip = why.is_some() || slot.state() != State::Running;
            slot.show(|v| v.checkpoint.not_checkpointed = why);
            if skip {
                continue;
            }
            let (b, parts) = self.checkpoint_parts(plan, slot);
            let started = Instant::now();
            let done = self.inner.checkpoints.begin(b, parts.0, parts.1, parts.2);
            let _ = tokio::time::timeout(patience, done.notified()).await;
            self.finish_checkpoint(plan, settings, slot, b, started)
                .await;
        }
    }

    /// The next checkpoint's barrier, and what takes part in it: the instance's sources,
    /// processors, and the sinks it writes that are running.
    fn checkpoint_parts(&self, plan: &Plan, slot: &Slot) -> (Barrier, checkpoint::Participants) {
        let n = slot.checkpoint_n.fetch_add(1, Ordering::Relaxed) + 1;
        let b = Barrier {
            instance: Sym::new(&plan.id),
            n,
        };
        let sinks: Vec<Sym> = plan
            .outputs()
            .into_iter()
            .filter(|d| lock(&self.inner.connectors).sinks.contains_key(d))
            .collect();
        let processors = plan.processors.iter().map(|p| p.id.clone()).collect();
        (b, (plan.inputs(), processors, sinks))
    }

    /// Ends checkpoint `b`: written when complete; counted as a failure otherwise.
    /// Whether it was written.
    async fn finish_checkpoint(
        &self,
        plan: &Plan,
        settings: &CheckpointSettings,
        slot: &Slot,
        b: Barrier,
        started: Instant,
    ) -> bool {
        let Some(checkpoint::Parts {
            positions,
            snapshots,
        }) = self.inner.checkpoints.end(b)
        else {
            tracing::warn!(instance = %plan.id, checkpoint = b.n, "a checkpoint did not complete in time");
            slot.show(|v| v.checkpoint.failures += 1);
            return false;
        };
        let c = Checkpoint {
            instance: plan.id.clone(),
            n: b.n,
            plan: digest(plan),
            taken: crate::time::Timestamp::now().to_string(),
            sources: positions
                .iter()
                .map(|(d, p)| (d.to_string(), p.clone()))
                .collect(),
            processors: snapshots.into_iter().collect(),
        };
        let dir = settings.dir.clone();
        let taken = c.taken.clone();
        let written = tokio::task::spawn_blocking(move || checkpoint::write(&dir, &c)).await;
        match written {
            Ok(Ok(bytes)) => {
                self.inner.checkpoints.made_durable(&positions);
                slot.show(|v| {
                    let s = &mut v.checkpoint;
                    s.completed += 1;
                    s.last = Some(taken);
                    s.last_bytes = bytes;
                    s.last_millis =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                });
                true
            }
            Ok(Err(e)) => {
                tracing::error!(instance = %plan.id, error = %e, "cannot write a checkpoint");
                slot.show(|v| v.checkpoint.failures += 1);
                false
            }
            Err(e) => {
                tracing::error!(instance = %plan.id, error = %e, "writing a checkpoint failed");
                slot.show(|v| v.checkpoint.failures += 1);
                false
            }
        }
    }

    /// At shutdown: the last checkpoint of every running instance that can be
    /// checkpointed, taken at once. Its sources stop sending right after its barrier, so
    /// that nothing after the checkpoint reaches processors or sinks: the instance can then
    /// stop without flushing, its open windows kept in the checkpoint. Returns the
    /// instances whose last checkpoint was written.
    pub(super) async fn final_checkpoints(&self) -> Vec<String> {
        let Some(settings) = self.inner.config.checkpoints.clone() else {
            return Vec::new();
        };
        let slots: Vec<Arc<Slot>> = self
            .slots()
            .into_iter()
            .filter(|s| s.state() == State::Running && self.not_checkpointable(&s.plan).is_none())
            .collect();
        if slots.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let barriers: Vec<_> = slots
            .iter()
            .map(|s| self.checkpoint_parts(&s.plan, s))
            .collect();
        let done = self.inner.checkpoints.begin_final(barriers.clone());
        let patience = self.inner.config.stop_timeout;
        let mut finishing = tokio::task::JoinSet::new();
        for ((slot, (b, _)), done) in slots.into_iter().zip(barriers).zip(done) {
            let (engine, settings) = (self.clone(), settings.clone());
            finishing.spawn(async move {
                let _ = tokio::time::timeout(patience, done.notified()).await;
                let plan = slot.plan.clone();
                let written = engine
                    .finish_checkpoint(&plan, &settings, &slot, b, started)
                    .await;
                written.then(|| plan.id.clone())
            });
        }
        let mut out = Vec::new();
        while let Some(r) = finishing.join_next().await {
            if let Ok(Some(id)) = r {
                out.push(id);
            }
        }
        self.inner.checkpoints.end_final();
        out
    }
}
