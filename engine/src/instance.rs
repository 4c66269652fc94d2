//! Analytics instances: their lifecycle states, their status and counters (the task that
//! runs one processor is in [`crate::task`]).
//!
//! ```text
//!            start              pause
//!  STOPPED ─────────▶ RUNNING ◀─────────▶ PAUSED
//!     ▲     stop         │       resume      │
//!     └──────────────────┴───────────────────┘
//!   FAILED (with the processor and the reason) ─ start ▶ RUNNING, stop ▶ STOPPED
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

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
    /// Named events the processor counted (see [`crate::Output::count`]).
    pub events: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

/// Upper bounds (microseconds) of the batch processing-time histogram.
pub const BATCH_BUCKETS_US: [u64; 11] = [
    10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000,
];

impl ProcessorMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn observe_batch(&self, nanos: u64) {
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

    /// Adds events a processor counted in one call.
    pub(crate) fn add_events(&self, counts: Vec<(&'static str, u64)>) {
        if counts.is_empty() {
            return;
        }
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (event, n) in counts {
            match events.iter_mut().find(|(e, _)| *e == event) {
                Some((_, c)) => *c += n,
                None => events.push((event, n)),
            }
        }
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
            events: self
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(e, n)| ((*e).to_owned(), *n))
                .collect(),
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
    /// Named events the processor counted (`unenriched`, say), by name.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub events: std::collections::BTreeMap<String, u64>,
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
    /// Its checkpoints, when the engine takes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::CheckpointStatus>,
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
    /// Sink: observations accepted and not delivered (given up at a stop deadline; in the
    /// dead letters), since the engine started.
    pub undelivered: u64,
    /// Sink: its store-and-forward queue, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::spool::QueueStatus>,
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
    /// As `Drain`, without flushing: the state is in the instance's last checkpoint.
    Halt,
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
