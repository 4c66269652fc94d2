//! The task that runs one processor: it reads the processor's input in order, hands
//! batches and watermarks to it, publishes what it emits (cut at the batch size, side
//! outputs to their data sources, rejects to the dead letters), follows its instance's
//! controls (run, pause, drain), and turns a panic of the processor's code into a failure of
//! its instance only.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};

use crate::bus::{Envelope, Message, Publisher, Subscriber, WatermarkTracker};
use crate::dead_letter::DeadLetters;
use crate::instance::{Control, ProcessorMetrics};
use crate::observation::{Batch, Observation};
use crate::processor::{Output, Processor, ProcessorError, Rejected};
use crate::symbol::Sym;
use crate::time::Timestamp;

/// Everything a processor task runs with.
pub(crate) struct ProcessorTask {
    pub processor: Box<dyn Processor>,
    pub subscriber: Subscriber,
    pub input: mpsc::Receiver<Envelope>,
    pub tracker: WatermarkTracker,
    pub publisher: Publisher,
    /// Publishers of its side outputs (`lateOutput`...), by DSM.
    pub side: Vec<(Sym, Publisher)>,
    pub control: watch::Receiver<Control>,
    pub metrics: Arc<ProcessorMetrics>,
    pub dead_letters: DeadLetters,
    pub place: Json,
    pub sink: Sym,
    /// Taking part in its instance's checkpoints, when the engine takes them.
    pub checkpoint: Option<TaskCheckpoint>,
}

/// How a processor takes part in its instance's checkpoints.
pub(crate) struct TaskCheckpoint {
    pub instance: Sym,
    /// Its number in the plan.
    pub index: usize,
    /// How many of its inputs' publishers belong to the instance: a barrier must come from
    /// each before the processor snapshots.
    pub expected: usize,
    pub checkpoints: Arc<crate::checkpoint::Checkpoints>,
}

/// A barrier being aligned: who sent it, and what came from them since.
#[derive(Default)]
struct Aligning {
    barrier: Option<crate::bus::Barrier>,
    seen: Vec<(Sym, crate::bus::PublisherId)>,
    held: std::collections::VecDeque<Envelope>,
}

impl ProcessorTask {
    /// Runs until drained (Ok) or failed (Err).
    pub(crate) async fn run(mut self) -> Result<(), ProcessorError> {
        let mut aligning = Aligning::default();
        let mut emitted: Vec<Observation> = Vec::with_capacity(Batch::MAX_LEN);
        let mut rejected: Vec<Rejected> = Vec::new();
        // The input watermark, and the one last passed downstream.
        let (mut input_watermark, mut output_watermark) = (Timestamp::MIN, Timestamp::MIN);
        let mut timer = self.processor.timer().map(|period| {
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut flush = true;
        loop {
            let control = *self.control.borrow_and_update();
            match control {
                Control::Drain => break,
                Control::Halt => {
                    flush = false;
                    break;
                }
                Control::Pause => {
                    if self.control.changed().await.is_err() {
                        break;
                    }
                    continue;
                }
                Control::Run => {}
            }
            tokio::select! {
                biased;
                changed = self.control.changed() => if changed.is_err() { break },
                envelope = self.input.recv() => match envelope {
                    Some(e) => {
                        let mut next = Some(e);
                        while let Some(e) = next.take() {
                            // What a barrier being aligned holds back comes after it.
                            let Some(e) = self.align(e, &mut aligning).await? else {
                                next = aligning.barrier.is_none().then(|| aligning.held.pop_front()).flatten();
                                continue;
                            };
                            if let Some(w) = self.handle(e, &mut emitted, &mut rejected).await? {
                                input_watermark = w;
                                output_watermark = output_watermark.max(self.processor.output_watermark(w));
                            }
                            next = aligning.barrier.is_none().then(|| aligning.held.pop_front()).flatten();
                        }
                    }
                    None => break,
                },
                _ = async { timer.as_mut().expect("guarded by the condition").tick().await }, if timer.is_some() => {
                    let mut out = Output::new(&mut emitted, &mut rejected, self.sink);
                    guarded(|| self.processor.on_timer(Timestamp::now(), &mut out))?;
                    let side = out.take_side();
                    self.metrics.add_events(out.take_counts());
                    self.outlet().publish(&mut emitted, &mut rejected, side).await;
                    let w = self.processor.output_watermark(input_watermark);
                    if w > output_watermark {
                        output_watermark = w;
                        self.outlet().watermark(w).await;
                    }
                }
            }
        }
        // Drain: nothing new is routed here; what was accepted is processed (a barrier
        // being aligned no longer matters: the instance is stopping).
        self.subscriber.unsubscribe_all();
        self.input.close();
        for e in std::mem::take(&mut aligning.held) {
            self.handle(e, &mut emitted, &mut rejected).await?;
        }
        while let Some(e) = self.input.recv().await {
            self.handle(e, &mut emitted, &mut rejected).await?;
        }
        if flush {
            let mut out = Output::new(&mut emitted, &mut rejected, self.sink);
            guarded(|| self.processor.flush(&mut out))?;
            let side = out.take_side();
            self.metrics.add_events(out.take_counts());
            self.outlet()
                .publish(&mut emitted, &mut rejected, side)
                .await;
        }
        self.publisher.leave().await;
        for (_, p) in &self.side {
            p.leave().await;
        }
        Ok(())
    }

    /// Aligns checkpoint barriers: returns the envelope to handle now, or `None` when it was
    /// a barrier (taken: snapshot and passed on once every publisher of the instance sent
    /// it) or is held back (it comes from a publisher that sent the barrier being aligned).
    async fn align(
        &mut self,
        e: Envelope,
        aligning: &mut Aligning,
    ) -> Result<Option<Envelope>, ProcessorError> {
        let from = (e.topic, e.publisher);
        if aligning.barrier.is_some() && aligning.seen.contains(&from) {
            aligning.held.push_back(e);
            return Ok(None);
        }
        let Message::Barrier(b) = e.message else {
            return Ok(Some(e));
        };
        let Some(cp) = &self.checkpoint else {
            return Ok(None);
        };
        if b.instance != cp.instance {
            // Another instance's checkpoint: not this processor's.
            return Ok(None);
        }
        aligning.barrier = Some(b);
        if !aligning.seen.contains(&from) {
            aligning.seen.push(from);
        }
        if aligning.seen.len() >= cp.expected {
            let snapshot = guarded_snapshot(&*self.processor)?;
            cp.checkpoints.processor_took(b, cp.index, snapshot);
            self.publisher.barrier(b).await;
            for (_, p) in &self.side {
                p.barrier(b).await;
            }
            aligning.barrier = None;
            aligning.seen.clear();
        }
        Ok(None)
    }

    /// Handles one envelope; returns the input watermark when it advanced.
    async fn handle(
        &mut self,
        e: Envelope,
        emitted: &mut Vec<Observation>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Timestamp>, ProcessorError> {
        match &e.message {
            Message::Data(batch) => {
                ProcessorMetrics::add(&self.metrics.received, batch.len());
                let started = Instant::now();
                let mut out = Output::new(emitted, rejected, self.sink);
                guarded(|| self.processor.process(batch, &mut out))?;
                let side = out.take_side();
                self.metrics.add_events(out.take_counts());
                self.metrics
                    .observe_batch(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
                ProcessorMetrics::add(&self.metrics.batches, 1);
                self.outlet().publish(emitted, rejected, side).await;
            }
            message => {
                if let Some(w) = self.tracker.update(e.topic, e.publisher, message) {
                    let mut out = Output::new(emitted, rejected, self.sink);
                    guarded(|| self.processor.on_watermark(w, &mut out))?;
                    let side = out.take_side();
                    self.metrics.add_events(out.take_counts());
                    self.outlet().publish(emitted, rejected, side).await;
                    self.metrics
                        .watermark
                        .store(w.as_micros() as u64, Ordering::Relaxed);
                    let out_w = self.processor.output_watermark(w);
                    self.outlet().watermark(out_w).await;
                    return Ok(Some(w));
                }
            }
        }
        Ok(None)
    }

    fn outlet(&self) -> Outlet<'_> {
        Outlet {
            publisher: &self.publisher,
            side: &self.side,
            metrics: &self.metrics,
            dead_letters: &self.dead_letters,
            place: &self.place,
        }
    }
}

/// A processor's snapshot; a panic is a failure of its instance.
fn guarded_snapshot(p: &dyn Processor) -> Result<Json, ProcessorError> {
    let mut snapshot = Json::Null;
    guarded(|| {
        snapshot = p.snapshot()?;
        Ok(())
    })?;
    Ok(snapshot)
}

/// Runs processor code, turning a panic into a failure of its instance (the engine and
/// the other instances go on).
fn guarded(f: impl FnOnce() -> Result<(), ProcessorError>) -> Result<(), ProcessorError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(ProcessorError::internal(format!(
            "the processor panicked: {message}"
        )))
    })
}

/// The parts of a processor task that publish (all shareable across threads, unlike the
/// processor itself).
struct Outlet<'a> {
    publisher: &'a Publisher,
    side: &'a [(Sym, Publisher)],
    metrics: &'a ProcessorMetrics,
    dead_letters: &'a DeadLetters,
    place: &'a Json,
}

impl Outlet<'_> {
    /// Passes a watermark to the sink and the side outputs.
    async fn watermark(&self, w: Timestamp) {
        self.publisher.watermark(w).await;
        for (_, p) in self.side {
            p.watermark(w).await;
        }
    }

    async fn publish(
        &self,
        emitted: &mut Vec<Observation>,
        rejected: &mut Vec<Rejected>,
        side: Vec<(Sym, Observation)>,
    ) {
        if !side.is_empty() {
            let mut by_output: Vec<Vec<Observation>> = vec![Vec::new(); self.side.len()];
            for (dsm, observation) in side {
                match self.side.iter().position(|(d, _)| *d == dsm) {
                    Some(n) => by_output[n].push(observation),
                    None => rejected.push(Rejected {
                        observation,
                        reason: format!(
                            "side output `{dsm}` is not one of the processor's outputs"
                        ),
                    }),
                }
            }
            for ((_, publisher), batch) in self.side.iter().zip(by_output) {
                if !batch.is_empty() {
                    ProcessorMetrics::add(&self.metrics.emitted, batch.len());
                    publisher.send(batch.into()).await;
                }
            }
        }
        if !emitted.is_empty() {
            ProcessorMetrics::add(&self.metrics.emitted, emitted.len());
            // Cut at the batch size so downstream channels stay bounded in observations.
            while emitted.len() > Batch::MAX_LEN {
                let rest = emitted.split_off(Batch::MAX_LEN);
                let head = std::mem::replace(emitted, rest);
                self.publisher.send(head.into()).await;
            }
            let batch = std::mem::replace(emitted, Vec::with_capacity(Batch::MAX_LEN));
            self.publisher.send(batch.into()).await;
        }
        if !rejected.is_empty() {
            ProcessorMetrics::add(&self.metrics.rejected, rejected.len());
            self.dead_letters
                .rejected(self.place, std::mem::take(rejected))
                .await;
        }
    }
}
