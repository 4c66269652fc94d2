//! Analytics instances: their lifecycle states, their status and counters, and the task
//! that runs one processor.
//!
//! ```text
//!            start              pause
//!  STOPPED ─────────▶ RUNNING ◀─────────▶ PAUSED
//!     ▲     stop         │       resume      │
//!     └──────────────────┴───────────────────┘
//!   FAILED (with the processor and the reason) ─ start ▶ RUNNING, stop ▶ STOPPED
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::{mpsc, watch};

use crate::bus::{Envelope, Message, Publisher, Subscriber, WatermarkTracker};
use crate::dead_letter::DeadLetters;
use crate::observation::{Batch, Observation};
use crate::processor::{Output, Processor, ProcessorError, Rejected};
use crate::symbol::Sym;
use crate::time::Timestamp;

/// The lifecycle state of an analytics instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Not running; nothing held.
    Stopped,
    /// Processing.
    Running,
    /// Holding its input (publishers wait) and its state.
    Paused,
    /// A processor or connector failed; see the reason.
    Failed,
}

impl State {
    /// The name, as the API spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "STOPPED",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// STOPPED or FAILED → RUNNING.
    Start,
    /// RUNNING, PAUSED or FAILED → STOPPED.
    Stop,
    /// RUNNING → PAUSED.
    Pause,
    /// PAUSED → RUNNING.
    Resume,
}

impl Transition {
    /// The state this operation leads to from `from`, or `None` when it is not allowed.
    #[must_use]
    pub const fn apply(self, from: State) -> Option<State> {
        match (self, from) {
            (Self::Start, State::Stopped | State::Failed) | (Self::Resume, State::Paused) => {
                Some(State::Running)
            }
            (Self::Stop, State::Running | State::Paused | State::Failed) => Some(State::Stopped),
            (Self::Pause, State::Running) => Some(State::Paused),
            _ => None,
        }
    }

    /// The verb, for messages.
    #[must_use]
    pub const fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// Why an instance failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The processor (APM id) or connector (DSM id) that failed.
    pub at: String,
    /// What happened.
    pub reason: String,
}

/// Counters of one processor; shared with status readers.
#[derive(Debug, Default)]
pub struct ProcessorMetrics {
    /// Observations received.
    pub received: AtomicU64,
    /// Observations emitted.
    pub emitted: AtomicU64,
    /// Observations sent to the dead letters.
    pub rejected: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
    /// Nanoseconds spent processing.
    pub busy_ns: AtomicU64,
    /// Newest event-time watermark seen, microseconds (i64::MIN before any).
    pub watermark: AtomicU64,
    /// Batches by processing time, in the buckets of [`BATCH_BUCKETS_US`] (and one more
    /// for longer).
    pub batch_time: [AtomicU64; BATCH_BUCKETS_US.len() + 1],
}

/// Upper bounds (microseconds) of the batch processing-time histogram.
pub const BATCH_BUCKETS_US: [u64; 11] = [
    10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000,
];

impl ProcessorMetrics {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn observe_batch(&self, nanos: u64) {
        let us = nanos / 1_000;
        let bucket = BATCH_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BATCH_BUCKETS_US.len());
        self.batch_time[bucket].fetch_add(1, Ordering::Relaxed);
        self.busy_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Batch counts per processing-time bucket (not cumulative), the last for longer ones.
    #[must_use]
    pub fn batch_histogram(&self) -> Vec<u64> {
        self.batch_time
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// A snapshot for status reports.
    #[must_use]
    pub fn snapshot(&self, id: &str, processor_type: &str) -> ProcessorStatus {
        let watermark = self.watermark.load(Ordering::Relaxed) as i64;
        ProcessorStatus {
            id: id.to_owned(),
            processor_type: processor_type.to_owned(),
            received: self.received.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            busy_ms: self.busy_ns.load(Ordering::Relaxed) as f64 / 1e6,
            watermark: (watermark != 0 && watermark != i64::MIN)
                .then(|| Timestamp(watermark).to_string()),
            batch_time_histogram: self.batch_histogram(),
        }
    }
}

/// A processor's counters, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorStatus {
    /// APM id.
    pub id: String,
    /// Processor type.
    pub processor_type: String,
    /// Observations received.
    pub received: u64,
    /// Observations emitted.
    pub emitted: u64,
    /// Observations sent to the dead letters.
    pub rejected: u64,
    /// Batches processed.
    pub batches: u64,
    /// Time spent processing.
    pub busy_ms: f64,
    /// Event time reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Batches by processing time: counts for each bound of [`BATCH_BUCKETS_US`]
    /// (microseconds, not cumulative), then for longer ones.
    pub batch_time_histogram: Vec<u64>,
}

/// An instance's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Name of its analytics manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifecycle state.
    pub state: State,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Input DSMs not registered: the instance waits for them.
    pub waiting_for: Vec<String>,
    /// Per-processor counters (of the current or last run).
    pub processors: Vec<ProcessorStatus>,
    /// The connectors of its inputs and outputs, and whether they reach their systems.
    pub connectors: Vec<ConnectorStatus>,
}

/// A connector an instance depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectorStatus {
    /// The DSM it bridges.
    pub dsm: String,
    /// `source` (brings data in) or `sink` (writes data out).
    pub role: &'static str,
    /// Connected, and the last error when not.
    #[serde(flatten)]
    pub link: crate::connector::LinkStatus,
}

impl InstanceStatus {
    /// Observations taken in by the instance's first processors.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.processors.iter().map(|p| p.received).sum()
    }

    /// Observations rejected anywhere in the instance.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.processors.iter().map(|p| p.rejected).sum()
    }
}

/// What a processor task is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Read input and process.
    Run,
    /// Stop reading input; keep state.
    Pause,
    /// Unsubscribe, process what was accepted, flush, leave.
    Drain,
}

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
}

impl ProcessorTask {
    /// Runs until drained (Ok) or failed (Err).
    pub(crate) async fn run(mut self) -> Result<(), ProcessorError> {
        let mut emitted: Vec<Observation> = Vec::with_capacity(Batch::MAX_LEN);
        let mut rejected: Vec<Rejected> = Vec::new();
        // The input watermark, and the one last passed downstream.
        let (mut input_watermark, mut output_watermark) = (Timestamp::MIN, Timestamp::MIN);
        let mut timer = self.processor.timer().map(|period| {
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let control = *self.control.borrow_and_update();
            match control {
                Control::Drain => break,
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
                    Some(e) => if let Some(w) = self.handle(e, &mut emitted, &mut rejected).await? {
                        input_watermark = w;
                        output_watermark = output_watermark.max(self.processor.output_watermark(w));
                    },
                    None => break,
                },
                _ = async { timer.as_mut().expect("guarded by the condition").tick().await }, if timer.is_some() => {
                    let mut out = Output::new(&mut emitted, &mut rejected, self.sink);
                    guarded(|| self.processor.on_timer(Timestamp::now(), &mut out))?;
                    let side = out.take_side();
                    self.outlet().publish(&mut emitted, &mut rejected, side).await;
                    let w = self.processor.output_watermark(input_watermark);
                    if w > output_watermark {
                        output_watermark = w;
                        self.outlet().watermark(w).await;
                    }
                }
            }
        }
        // Drain: nothing new is routed here; what was accepted is processed.
        self.subscriber.unsubscribe_all();
        self.input.close();
        while let Some(e) = self.input.recv().await {
            self.handle(e, &mut emitted, &mut rejected).await?;
        }
        let mut out = Output::new(&mut emitted, &mut rejected, self.sink);
        guarded(|| self.processor.flush(&mut out))?;
        let side = out.take_side();
        self.outlet()
            .publish(&mut emitted, &mut rejected, side)
            .await;
        self.publisher.leave().await;
        for (_, p) in &self.side {
            p.leave().await;
        }
        Ok(())
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

/// Runs processor code, turning a panic into a failure of its instance (the engine and
/// the other instances go on).
fn guarded(f: impl FnOnce() -> Result<(), ProcessorError>) -> Result<(), ProcessorError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(ProcessorError::Failed(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_lifecycle_and_refuse_the_rest() {
        use State::*;
        use Transition::*;
        let allowed = [
            (Start, Stopped, Running),
            (Start, Failed, Running),
            (Pause, Running, Paused),
            (Resume, Paused, Running),
            (Stop, Running, Stopped),
            (Stop, Paused, Stopped),
            (Stop, Failed, Stopped),
        ];
        for t in [Start, Stop, Pause, Resume] {
            for s in [Stopped, Running, Paused, Failed] {
                let expected = allowed
                    .iter()
                    .find(|(a, b, _)| *a == t && *b == s)
                    .map(|(_, _, c)| *c);
                assert_eq!(t.apply(s), expected, "{t:?} from {s:?}");
            }
        }
    }
}
