//! What a running connector is given: its data source, the bus behind a context, counters
//! and link status, event time, backoff between reconnections, and the resources the
//! engine owns for connectors ([`Shared`]).
//!
//! A source publishes batches and watermarks; a sink pulls batches until its input ends,
//! and the engine drains everything already accepted before a sink is told it ended.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Envelope, Message, Publisher, Subscriber};
use crate::dead_letter::DeadLetters;
use crate::observation::{Batch, Observation};
use crate::registry::DataSource;
use crate::spool::{Dropped, Queue, QueueStatus};
use crate::time::Timestamp;

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
    /// Sink: observations taken from the bus to write (delivered, rejected, undelivered or
    /// still on their way).
    accepted: AtomicU64,
    /// Sink: observations accepted but never acknowledged by the remote system: the sink
    /// was given up at the stop deadline, or ended with them unsent. Those whose content
    /// was still at hand went to the dead letters too.
    undelivered: AtomicU64,
    /// Sink: observations taken from its store-and-forward queue and not delivered when
    /// the sink ended: they stay queued for the next.
    requeued: AtomicU64,
    link: std::sync::Mutex<LinkStatus>,
    /// Sink: its store-and-forward queue, when it has one.
    queue: std::sync::Mutex<Option<Arc<Queue>>>,
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

    /// Sink: observations not delivered (see the field).
    #[must_use]
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }

    /// Sink: observations accepted and neither delivered, rejected nor counted undelivered:
    /// in flight while the sink runs; lost when it was aborted.
    #[must_use]
    pub fn unaccounted(&self) -> u64 {
        let done = self.observations()
            + self.rejected.load(Ordering::Relaxed)
            + self.undelivered()
            + self.requeued.load(Ordering::Relaxed);
        self.accepted.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// Sink: its store-and-forward queue's state, when it has one.
    #[must_use]
    pub fn queue(&self) -> Option<QueueStatus> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|q| q.status())
    }

    pub(crate) fn set_queue(&self, queue: Arc<Queue>) {
        *self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(queue);
    }

    /// Counts `n` more observations undelivered.
    pub fn add_undelivered(&self, n: u64) {
        self.undelivered.fetch_add(n, Ordering::Relaxed);
    }
}

/// Who the engine is, for the systems its connectors reach: the id of its installation
/// (unique per data directory; connectors derive their default client ids from it, so
/// that two engines never take each other's sessions) and, on an edge of a fleet, the id
/// of its gateway (results sent to the cloud are identified by it). Both unset in a
/// one-off run.
#[derive(Debug, Default)]
pub struct Identity {
    engine: std::sync::RwLock<Option<String>>,
    gateway: std::sync::RwLock<Option<String>>,
}

fn read_id(slot: &std::sync::RwLock<Option<String>>) -> Option<String> {
    slot.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write_id(slot: &std::sync::RwLock<Option<String>>, id: &str) {
    *slot
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id.to_owned());
}

impl Identity {
    /// The installation's id.
    #[must_use]
    pub fn engine(&self) -> Option<String> {
        read_id(&self.engine)
    }

    /// Sets the installation's id.
    pub fn set_engine(&self, id: &str) {
        write_id(&self.engine, id);
    }

    /// The gateway's id, on an edge.
    #[must_use]
    pub fn gateway(&self) -> Option<String> {
        read_id(&self.gateway)
    }

    /// Sets the gateway's id.
    pub fn set_gateway(&self, id: &str) {
        write_id(&self.gateway, id);
    }

    /// A client id for data source `dsm` in `role` (`source`, `sink`):
    /// `dda-<engine>-<dsm>-<role>`, or `dda-<dsm>-<role>` when the engine has no id.
    #[must_use]
    pub fn client_id(&self, dsm: &str, role: &str) -> String {
        match self.engine() {
            Some(e) => format!("dda-{e}-{dsm}-{role}"),
            None => format!("dda-{dsm}-{role}"),
        }
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
    /// What the engine owns for connectors.
    pub shared: Shared,
    /// Checkpoints asking for barriers.
    pub checkpoints: Arc<crate::checkpoint::Checkpoints>,
    /// Where to go on from: the position of the checkpoint the instance was restored from.
    pub resume: Option<serde_json::Value>,
    /// Where the source may keep a durable log of the input it accepted, with its
    /// limits (see [`SourceContext::input_log`]); `None` when the engine does not
    /// checkpoint.
    pub input_log: Option<(std::path::PathBuf, crate::spool::QueueLimits)>,
    /// Set once the source has sent everything (it may stay, for checkpoints).
    pub exhausted: Arc<AtomicBool>,
    /// Set once the source sent the barrier of a last checkpoint before a shutdown: what
    /// it would publish afterwards is not sent (it reads it again from its position).
    pub halted: AtomicBool,
}

/// A source's event time: the watermark trails the newest timestamp seen by the allowed
/// out-of-orderness, and by one microsecond more, so that further observations stamped
/// with the newest timestamp (another quantity of the same reading) are not late.
#[derive(Clone, Copy, Debug)]
pub struct EventClock {
    newest: Timestamp,
    out_of_orderness: std::time::Duration,
    sent: Timestamp,
    /// A watermark the sender reported (an edge passing its event time on).
    reported: Timestamp,
}

impl EventClock {
    /// A clock allowing observations up to `out_of_orderness` older than the newest.
    #[must_use]
    pub fn new(out_of_orderness: std::time::Duration) -> Self {
        Self {
            newest: Timestamp::MIN,
            out_of_orderness,
            sent: Timestamp::MIN,
            reported: Timestamp::MIN,
        }
    }

    /// Takes note of a batch's timestamps.
    pub fn observe(&mut self, batch: &[Observation]) {
        self.newest = batch
            .iter()
            .map(|o| o.timestamp)
            .fold(self.newest, Timestamp::max);
    }

    /// Takes note of a watermark the sender reported: nothing older is to come from it.
    pub fn report(&mut self, w: Timestamp) {
        self.reported = self.reported.max(w);
    }

    /// The watermark now.
    #[must_use]
    pub fn watermark(&self) -> Timestamp {
        if self.newest == Timestamp::MIN {
            return self.reported;
        }
        Timestamp(self.newest.as_micros().saturating_sub(1))
            .minus(self.out_of_orderness)
            .max(self.reported)
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
            self.unreadable(e.message(), &String::from_utf8_lossy(payload))
                .await;
        }
        decoded
    }

    /// Publishes a batch and counts it.
    pub async fn publish(&self, batch: Vec<Observation>) {
        if self.halted.load(Ordering::Relaxed) {
            return;
        }
        self.metrics.add(batch.len());
        self.publisher.send(batch.into()).await;
    }

    /// Publishes a batch (what `clock` keeps of it: see [`crate::connector::Timekeeper::take`]), then the
    /// watermark when the batch advanced it.
    pub async fn publish_timed(
        &self,
        mut batch: Vec<Observation>,
        clock: &mut impl crate::connector::Timekeeper,
    ) {
        if batch.is_empty() {
            return;
        }
        clock.take(&mut batch);
        if !batch.is_empty() {
            self.publish(batch).await;
        }
        if let Some(w) = clock.advance() {
            self.watermark(w).await;
        }
    }

    /// Between two batches: sends the barriers of the checkpoints asking for one, each after
    /// everything published so far, and reports `position` — where to go on from to send
    /// what follows — for them. A source that can be resumed calls this between batches.
    pub async fn offer_checkpoint(&self, position: impl Fn() -> serde_json::Value) {
        if self.halted.load(Ordering::Relaxed) {
            return;
        }
        let requested = self.checkpoints.requested(self.dsm.id);
        let halting = !requested.is_empty() && self.checkpoints.halting();
        for b in requested {
            self.publisher.barrier(b).await;
            self.checkpoints.source_sent(b, self.dsm.id, position());
        }
        if halting {
            tracing::debug!(dsm = %self.dsm.id, "sent the barrier of the last checkpoint; sending nothing more");
            self.halted.store(true, Ordering::Relaxed);
        }
    }

    /// A source that has sent everything (its input is exhausted): while the engine takes
    /// checkpoints, it stays to send their barriers, at `position`, until cancelled, so
    /// that they complete; otherwise it returns at once.
    pub async fn linger_for_checkpoints(&self, position: impl Fn() -> serde_json::Value) {
        self.exhausted.store(true, Ordering::Relaxed);
        if !self.checkpoints.enabled() {
            return;
        }
        loop {
            self.offer_checkpoint(&position).await;
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// For a source that acknowledges its input upstream (a Kafka commit): whether it
    /// acknowledges only what a durable checkpoint covers — the engine checkpoints its
    /// instance — rather than what the engine accepted.
    #[must_use]
    pub fn acknowledges_at_checkpoints(&self) -> bool {
        self.checkpoints.covers(self.dsm.id)
    }

    /// The source's position in the last durable checkpoint of its instance, as it
    /// changes: what it may acknowledge upstream.
    #[must_use]
    pub fn durable_positions(&self) -> tokio::sync::watch::Receiver<Option<serde_json::Value>> {
        self.checkpoints.durable(self.dsm.id)
    }

    /// Opens the source's durable input log, for a source that cannot hold back its
    /// acknowledgements until a checkpoint covers them (MQTT): it appends what it accepts,
    /// synced, before acknowledging it upstream, publishes it from there, names its
    /// position by the log's sequence numbers, and drops from the log what a durable
    /// checkpoint covers ([`crate::spool::Queue::delivered_before`]). `None` when the
    /// engine does not checkpoint.
    ///
    /// # Errors
    ///
    /// The log's folder cannot be read or written.
    pub fn open_input_log(&self) -> Result<Option<Arc<Queue>>, crate::spool::QueueError> {
        let log = self
            .input_log
            .as_ref()
            .map(|(dir, limits)| Queue::open(dir, *limits))
            .transpose()?;
        if let Some(q) = &log {
            // Shown as the source's `queue` in its status.
            self.metrics.set_queue(q.clone());
        }
        Ok(log)
    }

    /// Declares event time.
    pub async fn watermark(&self, t: Timestamp) {
        if self.halted.load(Ordering::Relaxed) {
            return;
        }
        self.publisher.watermark(t).await;
    }

    /// Sends an unreadable payload to the dead letters.
    pub async fn unreadable(&self, reason: &str, payload: &str) {
        self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        let place = connector_place(&self.dsm);
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
    /// What the engine owns for connectors.
    pub shared: Shared,
    subscriber: Option<Subscriber>,
    input: mpsc::Receiver<Envelope>,
    stop: CancellationToken,
    give_up: CancellationToken,
    checkpoints: Arc<crate::checkpoint::Checkpoints>,
    /// Whether a checkpoint barrier is confirmed when it comes (what came before is
    /// written); false for a sink whose writes are acknowledged later.
    confirms: bool,
    /// The store-and-forward queue the sink takes its input from, when it has one.
    spool: Option<Spooled>,
    /// For a sink passing event time on: the watermark of its input so far.
    forwarding: Option<Forwarding>,
}

/// The name of the observations that carry a watermark through a sink's store-and-forward
/// queue, in order with the data (never given to the sink as data).
pub const WATERMARK_MARK: &str = "dda:watermark";

/// How often, at most, a sink passing event time on is given a watermark alone (the end
/// of its input, [`Timestamp::MAX`], at once).
const WATERMARK_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// A watermark on its way through a sink.
#[derive(Debug, Default)]
struct Forwarding {
    /// The newest watermark seen.
    seen: Option<Timestamp>,
    /// The newest watermark given on alone, and when.
    given: Option<(Timestamp, std::time::Instant)>,
}

impl Forwarding {
    /// Takes note of watermark `w`; whether it is due to be passed on alone.
    fn note(&mut self, w: Timestamp) -> bool {
        if self.seen.is_some_and(|s| s >= w) {
            return false;
        }
        self.seen = Some(w);
        let due = match self.given {
            None => true,
            Some((g, at)) => w > g && (w == Timestamp::MAX || at.elapsed() >= WATERMARK_EVERY),
        };
        if due {
            self.given = Some((w, std::time::Instant::now()));
        }
        due
    }
}

/// A sink's side of its store-and-forward queue.
struct Spooled {
    queue: Arc<Queue>,
    /// Tells the task filling the queue to take no more input from the bus.
    close: CancellationToken,
    /// A batch was taken and, unless the sink acknowledges later or reported it
    /// undelivered, is delivered once the sink asks for the next.
    took: AtomicBool,
    acknowledges_later: bool,
}

/// Reports a sink's deliveries to its store-and-forward queue, for a sink whose writes
/// are acknowledged after [`SinkContext::next`] returns (see
/// [`SinkContext::writes_are_acknowledged_later`]).
#[derive(Clone, Debug, Default)]
pub struct Acknowledger(Option<Arc<Queue>>);

impl Acknowledger {
    /// `total` observations of those the sink took since it started are delivered (in
    /// the order it took them).
    pub fn acknowledged(&self, total: u64) {
        if let Some(q) = &self.0 {
            q.acknowledged(total);
        }
    }
}

/// How the engine ends a sink: `stop` asks it to write what it accepted and end; `give_up`,
/// once the stop deadline has passed, tells it to stop trying (see [`SinkContext::given_up`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct SinkControl {
    pub stop: CancellationToken,
    pub give_up: CancellationToken,
}

impl SinkContext {
    pub(crate) fn new(
        dsm: Arc<DataSource>,
        metrics: Arc<ConnectorMetrics>,
        dead_letters: DeadLetters,
        shared: Shared,
        (subscriber, input): (Subscriber, mpsc::Receiver<Envelope>),
        control: SinkControl,
        checkpoints: Arc<crate::checkpoint::Checkpoints>,
    ) -> Self {
        Self {
            dsm,
            metrics,
            dead_letters,
            shared,
            subscriber: Some(subscriber),
            input,
            stop: control.stop,
            give_up: control.give_up,
            checkpoints,
            confirms: true,
            spool: None,
            forwarding: None,
        }
    }

    /// Passes event time on ([`crate::connector::Sink::FORWARDS_WATERMARKS`]); before the
    /// store-and-forward queue is set up.
    pub(crate) fn forward_watermarks(&mut self) {
        self.forwarding = Some(Forwarding::default());
    }

    /// For a sink passing event time on: the watermark of what it was given so far (its
    /// input has nothing older to come).
    #[must_use]
    pub fn watermark(&self) -> Option<Timestamp> {
        self.forwarding.as_ref().and_then(|f| f.seen)
    }

    /// Puts a store-and-forward queue between the bus and the sink: returns the task that
    /// fills the queue from the bus (the engine runs it beside the sink, and awaits it
    /// after the sink ended). Barriers are confirmed by that task, once what came before
    /// them is on disk or delivered.
    pub(crate) fn spooled(
        &mut self,
        queue: Arc<Queue>,
        give_up: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let close = CancellationToken::new();
        let (_, closed) = mpsc::channel(1);
        let input = std::mem::replace(&mut self.input, closed);
        let subscriber = self.subscriber.take();
        self.metrics.set_queue(queue.clone());
        self.spool = Some(Spooled {
            queue: queue.clone(),
            close: close.clone(),
            took: AtomicBool::new(false),
            acknowledges_later: false,
        });
        let filler = Filler {
            queue,
            forwarding: self.forwarding.is_some().then(Forwarding::default),
            dsm: self.dsm.clone(),
            metrics: self.metrics.clone(),
            dead_letters: self.dead_letters.clone(),
            checkpoints: self.checkpoints.clone(),
            give_up,
        };
        filler.run(subscriber, input, close)
    }

    /// For a sink whose writes are acknowledged after [`SinkContext::next`] returns (MQTT).
    /// With a store-and-forward queue, the sink reports deliveries through
    /// [`SinkContext::acknowledger`]; without one, checkpoints of the instances writing it
    /// are not confirmed by it, so they do not complete.
    pub fn writes_are_acknowledged_later(&mut self) {
        self.confirms = false;
        if let Some(s) = &mut self.spool {
            s.acknowledges_later = true;
        }
    }

    /// Where a sink acknowledging later reports its deliveries.
    #[must_use]
    pub fn acknowledger(&self) -> Acknowledger {
        Acknowledger(self.spool.as_ref().map(|s| s.queue.clone()))
    }

    /// Whether the sink takes its input from a store-and-forward queue: what it does not
    /// deliver stays queued (on disk) for the next run instead of going to the dead
    /// letters.
    #[must_use]
    pub fn is_spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// A barrier reached the sink: everything before it was taken by `next` and written
    /// before `next` was called again.
    fn barrier(&self, b: crate::bus::Barrier) {
        if self.confirms {
            self.checkpoints.sink_confirmed(b, self.dsm.id);
        }
    }

    /// Whether the engine has given up on this sink: it was asked to stop and did not end
    /// within the stop deadline. A sink retrying a remote that does not answer then hands
    /// what it holds to [`SinkContext::undelivered`] and calls [`SinkContext::next`], which
    /// sends the rest of its input to the dead letters and returns `None`.
    #[must_use]
    pub fn given_up(&self) -> bool {
        self.give_up.is_cancelled()
    }

    /// Resolves when the engine gives up on this sink (see [`SinkContext::given_up`]).
    pub async fn giving_up(&self) {
        self.give_up.cancelled().await;
    }

    /// Runs one attempt at the remote system; `None` when the engine gave up on the sink
    /// first (the attempt is dropped).
    pub async fn attempt<F: IntoFuture>(&self, attempt: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.give_up.cancelled() => None,
            out = attempt.into_future() => Some(out),
        }
    }

    /// Waits `backoff`'s next delay before a retry; false when the engine gave up on the
    /// sink first.
    pub async fn retry_after(&self, backoff: &mut Backoff) -> bool {
        backoff.wait(&self.give_up).await
    }

    /// Observations accepted and not delivered: counted, and sent to the dead letters with
    /// `why`.
    pub async fn undelivered(&self, observations: &[Observation], why: &str) {
        if let Some(spool) = &self.spool {
            // Taken from the queue and not delivered: it stays queued.
            spool.took.store(false, Ordering::Relaxed);
            tracing::warn!(dsm = %self.dsm.id, kept = observations.len(), reason = %why, "observations not delivered; they stay in the sink's queue");
            return;
        }
        undelivered(
            &self.metrics,
            &self.dead_letters,
            &self.dsm,
            observations,
            why,
        )
        .await;
    }

    /// Messages accepted and not delivered, as encoded for the remote: counted, and sent to
    /// the dead letters with `why` (each with its text).
    pub async fn undelivered_payloads(&self, payloads: Vec<String>, why: &str) {
        if payloads.is_empty() || self.spool.is_some() {
            // With a queue, what the payloads came from stays queued.
            return;
        }
        self.metrics.add_undelivered(payloads.len() as u64);
        tracing::error!(dsm = %self.dsm.id, undelivered = payloads.len(), reason = %why, "messages not delivered; sent to the dead letters");
        let reason = format!("not delivered to {}: {why}", self.dsm.id);
        let place = connector_place(&self.dsm);
        self.dead_letters
            .payloads(self.dsm.id, &place, &reason, payloads)
            .await;
    }

    /// The next batch to write; `None` once the sink has been released and everything
    /// accepted before has been returned.
    ///
    /// Once the engine has given up on the sink, the rest of the input goes to the dead
    /// letters as undelivered and this returns `None`.
    pub async fn next(&mut self) -> Option<Batch> {
        if self.spool.is_some() {
            return self.next_queued().await;
        }
        loop {
            if self.give_up.is_cancelled() {
                self.divert_rest().await;
                return None;
            }
            let envelope = tokio::select! {
                biased;
                () = self.give_up.cancelled() => continue,
                () = self.stop.cancelled(), if self.subscriber.is_some() => {
                    self.drain_mode();
                    continue;
                }
                e = self.input.recv() => e,
            };
            match envelope?.message {
                Message::Data(batch) => {
                    self.metrics
                        .accepted
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Some(batch);
                }
                Message::Barrier(b) => self.barrier(b),
                Message::Watermark(w) => {
                    if self.forwarding.as_mut().is_some_and(|f| f.note(w)) {
                        return Some(Batch::from(Vec::new()));
                    }
                }
                Message::Join | Message::Leave => {}
            }
        }
    }

    /// [`SinkContext::next`] from the store-and-forward queue.
    async fn next_queued(&mut self) -> Option<Batch> {
        let spool = self.spool.as_mut()?;
        if spool.took.swap(false, Ordering::Relaxed) && !spool.acknowledges_later {
            spool.queue.delivered_one();
        }
        loop {
            let spool = self.spool.as_mut()?;
            if self.give_up.is_cancelled() {
                self.keep_queued();
                return None;
            }
            let mut dropped = Dropped::default();
            let taken = tokio::select! {
                biased;
                () = self.give_up.cancelled() => continue,
                () = self.stop.cancelled(), if !spool.close.is_cancelled() => {
                    spool.close.cancel();
                    continue;
                }
                taken = spool.queue.take(&mut dropped) => taken,
            };
            let queue = spool.queue.clone();
            dead_letter_dropped(&self.dead_letters, &self.dsm, &queue, dropped).await;
            let taken = match (taken, self.forwarding.as_mut()) {
                (Ok(Some(batch)), Some(f)) => {
                    let mark = crate::Sym::new(WATERMARK_MARK);
                    let (marks, data): (Vec<&Observation>, Vec<&Observation>) =
                        batch.as_slice().iter().partition(|o| o.name == mark);
                    if let Some(w) = marks.iter().map(|o| o.timestamp).max() {
                        f.note(w);
                        if let Some(s) = &self.spool {
                            s.took.store(true, Ordering::Relaxed);
                            if data.is_empty() && s.acknowledges_later {
                                s.queue.marks_taken();
                            }
                        }
                        if data.is_empty() {
                            return Some(Batch::from(Vec::new()));
                        }
                    }
                    Ok(Some(if marks.is_empty() {
                        batch
                    } else {
                        Batch::from(data.into_iter().cloned().collect::<Vec<_>>())
                    }))
                }
                (other, _) => other,
            };
            match taken {
                Ok(Some(batch)) if batch.is_empty() => {}
                Ok(Some(batch)) => {
                    if let Some(s) = &self.spool {
                        s.took.store(true, Ordering::Relaxed);
                    }
                    self.metrics
                        .accepted
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Some(batch);
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(dsm = %self.dsm.id, error = %e, "cannot read the sink's queue; what it holds stays there");
                    self.metrics.failed(&e);
                    self.keep_queued();
                    return None;
                }
            }
        }
    }

    /// The sink ends with batches taken and not delivered: they stay queued.
    fn keep_queued(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        spool.close.cancel();
        match spool.queue.keep_for_later() {
            Ok(kept) => {
                self.metrics.requeued.fetch_add(kept, Ordering::Relaxed);
                if kept > 0 {
                    tracing::warn!(dsm = %self.dsm.id, kept, "the sink ended with observations it had not delivered; they stay queued for the next start");
                }
            }
            Err(e) => {
                tracing::error!(dsm = %self.dsm.id, error = %e, "cannot keep what the sink had not delivered in its queue");
            }
        }
    }

    /// Sends everything still on the way to this sink to the dead letters as undelivered.
    async fn divert_rest(&mut self) {
        self.drain_mode();
        while let Some(e) = self.input.recv().await {
            if let Message::Data(batch) = e.message {
                self.metrics
                    .accepted
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.undelivered(&batch, "the sink was given up at the stop deadline")
                    .await;
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
        let place = connector_place(&self.dsm);
        self.dead_letters.rejected(&place, rejected).await;
    }
}

/// Fills a sink's store-and-forward queue from the bus.
struct Filler {
    queue: Arc<Queue>,
    /// For a sink passing event time on: the watermarks queued with the data.
    forwarding: Option<Forwarding>,
    dsm: Arc<DataSource>,
    metrics: Arc<ConnectorMetrics>,
    dead_letters: DeadLetters,
    checkpoints: Arc<crate::checkpoint::Checkpoints>,
    give_up: CancellationToken,
}

impl Filler {
    /// Until the input ends (once `close` is cancelled: the sink is released): queues
    /// each batch, waiting while a full queue holds input back; confirms each barrier once
    /// what came before it is on disk; expires what is older than the age limit.
    async fn run(
        mut self,
        mut subscriber: Option<Subscriber>,
        mut input: mpsc::Receiver<Envelope>,
        close: CancellationToken,
    ) {
        let mut expiry = tokio::time::interval(std::time::Duration::from_secs(1));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let envelope = tokio::select! {
                biased;
                () = close.cancelled(), if subscriber.is_some() => {
                    if let Some(mut s) = subscriber.take() {
                        s.unsubscribe_all();
                    }
                    input.close();
                    continue;
                }
                e = input.recv() => e,
                _ = expiry.tick() => {
                    let mut dropped = Dropped::default();
                    if let Err(e) = self.queue.expire(&mut dropped) {
                        tracing::error!(dsm = %self.dsm.id, error = %e, "cannot expire the sink's queue");
                    }
                    dead_letter_dropped(&self.dead_letters, &self.dsm, &self.queue, dropped).await;
                    continue;
                }
            };
            let Some(envelope) = envelope else { break };
            match envelope.message {
                Message::Data(batch) => self.push(batch).await,
                Message::Barrier(b) => match self.queue.persist() {
                    Ok(()) => self.checkpoints.sink_confirmed(b, self.dsm.id),
                    Err(e) => {
                        tracing::error!(dsm = %self.dsm.id, error = %e, "cannot make the sink's queue durable; the checkpoint will not complete");
                    }
                },
                Message::Watermark(w) => {
                    if self.forwarding.as_mut().is_some_and(|f| f.note(w)) {
                        let mark = Observation::number(
                            self.dsm.id,
                            crate::Sym::new(WATERMARK_MARK),
                            w,
                            0.0,
                        );
                        self.push(Batch::from(vec![mark])).await;
                    }
                }
                Message::Join | Message::Leave => {}
            }
        }
        self.queue.end_input();
    }

    async fn push(&self, batch: Batch) {
        let mut pending = batch;
        loop {
            let mut dropped = Dropped::default();
            let pushed = self.queue.push(pending, &mut dropped);
            dead_letter_dropped(&self.dead_letters, &self.dsm, &self.queue, dropped).await;
            match pushed {
                Ok(None) => return,
                Ok(Some(held)) if self.give_up.is_cancelled() => {
                    self.metrics
                        .accepted
                        .fetch_add(held.len() as u64, Ordering::Relaxed);
                    undelivered(
                        &self.metrics,
                        &self.dead_letters,
                        &self.dsm,
                        &held,
                        "the sink was given up while its queue was full",
                    )
                    .await;
                    return;
                }
                Ok(Some(held)) => {
                    pending = held;
                    self.queue
                        .wait_writable(std::time::Duration::from_millis(100))
                        .await;
                }
                Err(e) => {
                    tracing::error!(dsm = %self.dsm.id, error = %e, "cannot queue for the sink");
                    self.metrics.failed(&e);
                    return;
                }
            }
        }
    }
}

/// Sends what a queue dropped (full) or expired to the dead letters.
async fn dead_letter_dropped(
    dead_letters: &DeadLetters,
    dsm: &DataSource,
    queue: &Queue,
    dropped: Dropped,
) {
    if dropped.is_empty() {
        return;
    }
    let status = queue.status();
    let place = connector_place(dsm);
    for (observations, reason) in [
        (
            dropped.full,
            format!(
                "dropped from the full store-and-forward queue of {} ({} bytes, on_full = drop-oldest)",
                dsm.id, status.max_bytes
            ),
        ),
        (
            dropped.expired,
            format!(
                "expired in the store-and-forward queue of {}: older than its max_age",
                dsm.id
            ),
        ),
    ] {
        if observations.is_empty() {
            continue;
        }
        tracing::warn!(dsm = %dsm.id, observations = observations.len(), reason = %reason, "observations left the sink's queue undelivered; sent to the dead letters");
        let rejected = observations
            .into_iter()
            .map(|observation| crate::processor::Rejected {
                observation,
                reason: reason.clone(),
            })
            .collect();
        dead_letters.rejected(&place, rejected).await;
    }
}

/// Where a connector's dead letters come from.
fn connector_place(dsm: &DataSource) -> serde_json::Value {
    json!({"connector": dsm.protocol.name(), "dsm": dsm.id.to_string()})
}

/// Counts `observations` undelivered and sends them to the dead letters with `why`.
async fn undelivered(
    metrics: &ConnectorMetrics,
    dead_letters: &DeadLetters,
    dsm: &DataSource,
    observations: &[Observation],
    why: &str,
) {
    if observations.is_empty() {
        return;
    }
    metrics.add_undelivered(observations.len() as u64);
    tracing::error!(dsm = %dsm.id, undelivered = observations.len(), reason = %why, "observations not delivered; sent to the dead letters");
    let reason = format!("not delivered to {}: {why}", dsm.id);
    let place = connector_place(dsm);
    let rejected = observations
        .iter()
        .map(|o| crate::processor::Rejected {
            observation: o.clone(),
            reason: reason.clone(),
        })
        .collect();
    dead_letters.rejected(&place, rejected).await;
}

impl Drop for SinkContext {
    /// A sink that ended (or was aborted) with input still on its way: that input goes to
    /// the dead letters as undelivered, from a task of the engine's, so that nothing
    /// accepted vanishes and its publishers are not left waiting.
    fn drop(&mut self) {
        if self.spool.is_some() {
            self.keep_queued();
            return;
        }
        self.drain_mode();
        if self.input.is_empty() && self.input.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (_, closed) = mpsc::channel(1);
        let mut rest = std::mem::replace(&mut self.input, closed);
        let (metrics, dead_letters, dsm) = (
            self.metrics.clone(),
            self.dead_letters.clone(),
            self.dsm.clone(),
        );
        self.shared.tasks.spawn_on(
            async move {
                while let Some(e) = rest.recv().await {
                    if let Message::Data(batch) = e.message {
                        metrics
                            .accepted
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        undelivered(&metrics, &dead_letters, &dsm, &batch, "its sink had ended")
                            .await;
                    }
                }
            },
            &runtime,
        );
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

/// What an engine owns on behalf of its connectors: resources several data sources share
/// (one HTTP listener for every ingest endpoint on its address), and the tasks that serve
/// them. Tasks spawned here are tracked by the engine and are cancelled and awaited when it
/// shuts down; nothing a connector starts outlives its engine.
#[derive(Clone, Default)]
pub struct Shared {
    resources: Arc<std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The engine's one `T` (created on first use): state a protocol shares between its
    /// data sources.
    #[must_use]
    pub fn resource<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut all = self
            .resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = all
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        entry
            .clone()
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("resources are kept by their own type"))
    }

    /// Spawns a task the engine owns: it is awaited when the engine shuts down, and should
    /// end when [`Shared::shutdown`] is cancelled.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Cancelled when the engine shuts down.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancels [`Shared::shutdown`] and waits for every task spawned here.
    pub async fn close(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
