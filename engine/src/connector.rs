//! Connectors bridge DSMs whose data interface is an external system: a source connector
//! brings the system's data onto the DSM's bus topic, a sink connector writes the topic's
//! data to the system.
//!
//! Each protocol lives in its own folder under `connectors/` and registers itself with
//! [`inventory::submit!`]. Both halves are plain async functions of a context that hides the
//! bus: a source publishes batches and watermarks; a sink pulls batches until its input
//! ends, and the engine drains everything already accepted before a sink is told it ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{Envelope, Message, Publisher, Subscriber};
use crate::dead_letter::DeadLetters;
use crate::observation::{Batch, Observation};
use crate::registry::DataSource;
use crate::time::Timestamp;

/// A boxed future, for connector entry points.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a connector failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The DSM's parameters are unusable.
    #[error("invalid configuration of data source {dsm}: {message}")]
    Config {
        /// The DSM.
        dsm: String,
        /// What is wrong.
        message: String,
    },
    /// The external system failed.
    #[error("data source {dsm}: {message}")]
    Io {
        /// The DSM.
        dsm: String,
        /// What happened.
        message: String,
    },
}

impl ConnectorError {
    /// A configuration error of `dsm`.
    pub fn config(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::Config {
            dsm: dsm.id.to_string(),
            message: message.to_string(),
        }
    }

    /// An I/O error of `dsm`.
    pub fn io(dsm: &DataSource, message: impl std::fmt::Display) -> Self {
        Self::Io {
            dsm: dsm.id.to_string(),
            message: message.to_string(),
        }
    }
}

/// How fast simulated and replayed time runs against the wall clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes it.
    Max,
    /// This many times real time (1.0 is real time).
    Factor(f64),
}

impl Speed {
    /// Parses `max`, or a positive factor such as `3600`.
    ///
    /// # Errors
    ///
    /// Anything else.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match text.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Self::Factor(f)),
            _ => Err(format!(
                "speed {text:?}: write a positive factor such as 3600, or max"
            )),
        }
    }
}

/// Whether a connector reaches its system, and the last error if not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    /// Connected (or, for connectors without connections, working).
    pub connected: bool,
    /// The last error, while not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counters and link status of one connector.
#[derive(Debug, Default)]
pub struct ConnectorMetrics {
    /// Observations brought in (source) or written out (sink).
    pub observations: AtomicU64,
    /// Payloads or observations that went to the dead letters.
    pub rejected: AtomicU64,
    link: std::sync::Mutex<LinkStatus>,
}

impl ConnectorMetrics {
    /// Records that the connector reaches its system.
    pub fn connected(&self) {
        *self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = LinkStatus {
            connected: true,
            error: None,
        };
    }

    /// Records that the connector cannot reach its system (it keeps trying).
    pub fn failed(&self, error: impl std::fmt::Display) {
        *self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = LinkStatus {
            connected: false,
            error: Some(error.to_string()),
        };
    }

    /// The link status.
    #[must_use]
    pub fn link(&self) -> LinkStatus {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds to the observation count.
    pub fn add(&self, n: usize) {
        self.observations.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The observation count.
    #[must_use]
    pub fn observations(&self) -> u64 {
        self.observations.load(Ordering::Relaxed)
    }
}

/// What a source connector runs with.
pub struct SourceContext {
    /// The data source.
    pub dsm: Arc<DataSource>,
    /// Publishes onto the DSM's topic.
    pub publisher: Publisher,
    /// Cancelled when the source should stop.
    pub cancel: CancellationToken,
    /// How fast simulated time runs.
    pub speed: Speed,
    /// Counters.
    pub metrics: Arc<ConnectorMetrics>,
    /// Where unreadable payloads go.
    pub dead_letters: DeadLetters,
}

/// A source's event time: the watermark trails the newest timestamp seen by the allowed
/// out-of-orderness, and by one microsecond more, so that further observations stamped
/// with the newest timestamp (another quantity of the same reading) are not late.
#[derive(Clone, Copy, Debug)]
pub struct EventClock {
    newest: Timestamp,
    out_of_orderness: std::time::Duration,
    sent: Timestamp,
}

impl EventClock {
    /// A clock allowing observations up to `out_of_orderness` older than the newest.
    #[must_use]
    pub fn new(out_of_orderness: std::time::Duration) -> Self {
        Self {
            newest: Timestamp::MIN,
            out_of_orderness,
            sent: Timestamp::MIN,
        }
    }

    /// Takes note of a batch's timestamps.
    pub fn observe(&mut self, batch: &[Observation]) {
        self.newest = batch
            .iter()
            .map(|o| o.timestamp)
            .fold(self.newest, Timestamp::max);
    }

    /// The watermark now.
    #[must_use]
    pub fn watermark(&self) -> Timestamp {
        if self.newest == Timestamp::MIN {
            return Timestamp::MIN;
        }
        Timestamp(self.newest.as_micros().saturating_sub(1)).minus(self.out_of_orderness)
    }

    /// The watermark, when it has advanced since it was last taken.
    pub fn advance(&mut self) -> Option<Timestamp> {
        let w = self.watermark();
        (w > self.sent).then(|| {
            self.sent = w;
            w
        })
    }
}

impl SourceContext {
    /// Reads a payload in the source's format and publishes it with the event time it
    /// advances to; a payload that does not match goes to the dead letters. Returns once
    /// subscribers have accepted it.
    ///
    /// # Errors
    ///
    /// The payload does not match the format (it went to the dead letters).
    pub async fn ingest(
        &self,
        payload: &[u8],
        clock: &mut EventClock,
    ) -> Result<usize, crate::codec::DecodeError> {
        let mut batch = Vec::new();
        let n = self.decode(payload, &mut batch).await?;
        self.publish_timed(batch, clock).await;
        Ok(n)
    }

    /// Reads a payload in the source's format onto `batch`; a payload that does not match
    /// goes to the dead letters (and nothing is appended).
    ///
    /// # Errors
    ///
    /// The payload does not match the format.
    pub async fn decode(
        &self,
        payload: &[u8],
        batch: &mut Vec<Observation>,
    ) -> Result<usize, crate::codec::DecodeError> {
        let decoded = crate::codec::decode(
            payload,
            crate::codec::Format::of(&self.dsm),
            &self.dsm.decode_context(),
            batch,
        );
        if let Err(e) = &decoded {
            self.unreadable(&e.0, &String::from_utf8_lossy(payload))
                .await;
        }
        decoded
    }

    /// Publishes a batch and counts it.
    pub async fn publish(&self, batch: Vec<Observation>) {
        self.metrics.add(batch.len());
        self.publisher.send(batch.into()).await;
    }

    /// Publishes a batch, then the watermark when the batch advanced it.
    pub async fn publish_timed(&self, batch: Vec<Observation>, clock: &mut EventClock) {
        if batch.is_empty() {
            return;
        }
        clock.observe(&batch);
        self.publish(batch).await;
        if let Some(w) = clock.advance() {
            self.watermark(w).await;
        }
    }

    /// Declares event time.
    pub async fn watermark(&self, t: Timestamp) {
        self.publisher.watermark(t).await;
    }

    /// Sends an unreadable payload to the dead letters.
    pub async fn unreadable(&self, reason: &str, payload: &str) {
        self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        let place = json!({"connector": self.dsm.protocol.name(), "dsm": self.dsm.id.to_string()});
        self.dead_letters
            .unreadable(self.dsm.id, &place, reason, payload)
            .await;
    }
}

/// What a sink connector runs with.
pub struct SinkContext {
    /// The data source written.
    pub dsm: Arc<DataSource>,
    /// Counters.
    pub metrics: Arc<ConnectorMetrics>,
    /// Where observations that cannot be written go.
    pub dead_letters: DeadLetters,
    subscriber: Option<Subscriber>,
    input: mpsc::Receiver<Envelope>,
    stop: CancellationToken,
}

impl SinkContext {
    pub(crate) fn new(
        dsm: Arc<DataSource>,
        metrics: Arc<ConnectorMetrics>,
        dead_letters: DeadLetters,
        subscriber: Subscriber,
        input: mpsc::Receiver<Envelope>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            dsm,
            metrics,
            dead_letters,
            subscriber: Some(subscriber),
            input,
            stop,
        }
    }

    /// The next batch to write; `None` once the sink has been released and everything
    /// accepted before has been returned.
    pub async fn next(&mut self) -> Option<Batch> {
        loop {
            let envelope = if self.subscriber.is_some() {
                tokio::select! {
                    biased;
                    e = self.input.recv() => e,
                    () = self.stop.cancelled() => {
                        self.drain_mode();
                        continue;
                    }
                }
            } else {
                self.input.recv().await
            };
            match envelope?.message {
                Message::Data(batch) => return Some(batch),
                Message::Watermark(_) | Message::Join | Message::Leave => {}
            }
        }
    }

    fn drain_mode(&mut self) {
        if let Some(mut s) = self.subscriber.take() {
            s.unsubscribe_all();
        }
        self.input.close();
    }

    /// Sends observations that cannot be written to the dead letters.
    pub async fn reject(&self, rejected: Vec<crate::processor::Rejected>) {
        self.metrics
            .rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let place = json!({"connector": self.dsm.protocol.name(), "dsm": self.dsm.id.to_string()});
        self.dead_letters.rejected(&place, rejected).await;
    }
}

/// Exponential backoff between reconnection attempts, with jitter: 100 ms, doubling, at
/// most 30 s by default.
#[derive(Debug)]
pub struct Backoff {
    next: std::time::Duration,
    min: std::time::Duration,
    max: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(30),
        )
    }
}

impl Backoff {
    /// Backoff from `min`, doubling up to `max`.
    #[must_use]
    pub fn new(min: std::time::Duration, max: std::time::Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// After a success: start again from the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay (grows).
    pub fn delay(&mut self) -> std::time::Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // Up to 25 % jitter, so that many clients do not retry in step.
        let nanos = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
        );
        base + base.mul_f64((nanos % 250) as f64 / 1000.0)
    }

    /// Waits the next delay; false if cancelled first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let d = self.delay();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = cancel.cancelled() => false,
        }
    }
}

/// A parameter that may be a secret reference, resolved.
///
/// # Errors
///
/// A malformed or unresolvable reference (the message never holds the value).
pub fn secret_param(dsm: &DataSource, name: &str) -> Result<Option<String>, ConnectorError> {
    dsm.parameters
        .get_str(name)
        .map(|v| {
            manifests::secret::resolve_value(&v)
                .map_err(|e| ConnectorError::config(dsm, format!("{name}: {e}")))
        })
        .transpose()
}

/// Runs a source until it ends or is cancelled.
pub type SourceFn = fn(SourceContext) -> BoxFuture<Result<(), ConnectorError>>;
/// Runs a sink until its input ends.
pub type SinkFn = fn(SinkContext) -> BoxFuture<Result<(), ConnectorError>>;
/// Checks a DSM's parameters before anything starts.
pub type CheckFn = fn(&DataSource) -> Result<(), ConnectorError>;
/// Says where a DSM's data is, for people (never with credentials).
pub type PlaceFn = fn(&DataSource) -> String;

/// A protocol's connector, as registered by its folder.
pub struct ConnectorRegistration {
    /// Protocol name, as data interfaces spell it (`Simulator`, `SQLite`, ...).
    pub protocol: &'static str,
    /// What it connects to.
    pub description: &'static str,
    /// The source half, if the protocol can be read.
    pub source: Option<SourceFn>,
    /// The sink half, if the protocol can be written.
    pub sink: Option<SinkFn>,
    /// Parameter checks shared by both halves.
    pub check: CheckFn,
    /// Where a DSM of this protocol reads or writes, for people.
    pub place: PlaceFn,
}

inventory::collect!(ConnectorRegistration);

impl std::fmt::Debug for ConnectorRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorRegistration")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The connector for `protocol`, if there is one.
#[must_use]
pub fn connector(protocol: &manifests::Protocol) -> Option<&'static ConnectorRegistration> {
    inventory::iter::<ConnectorRegistration>
        .into_iter()
        .find(|r| manifests::Protocol::parse(r.protocol) == *protocol)
}

/// Every registered connector.
#[must_use]
pub fn connectors() -> Vec<&'static ConnectorRegistration> {
    let mut all: Vec<_> = inventory::iter::<ConnectorRegistration>
        .into_iter()
        .collect();
    all.sort_by_key(|r| r.protocol);
    all
}

/// Where a place in the engine is, for dead letters and errors.
#[must_use]
pub fn place(instance: &str, processor: &str) -> Json {
    json!({"instance": instance, "processor": processor})
}
