//! The data bus: topics keyed by data source manifest id, fanned out to every subscriber.
//!
//! A topic has publishers (processors writing the DSM, a source connector) and subscribers
//! (processors reading it, a sink connector). Every subscriber has one bounded channel, so a
//! slow subscriber slows its publishers down (backpressure) and memory stays bounded; nothing
//! is dropped. Publishers announce themselves (`Join`), send data and watermarks, and say
//! goodbye (`Leave`), so a subscriber knows whose event time it must wait for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::observation::Batch;
use crate::symbol::Sym;
use crate::time::Timestamp;

/// Identifies a publisher on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId(pub u32);

/// Identifies a subscriber on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId(u32);

/// What travels on a topic.
#[derive(Clone, Debug)]
pub enum Message {
    /// Observations.
    Data(Batch),
    /// The publisher will send no observation at or before this time.
    Watermark(Timestamp),
    /// The publisher started writing this topic.
    Join,
    /// The publisher stopped writing this topic.
    Leave,
    /// A checkpoint's barrier: everything the publisher sent before it belongs to the
    /// checkpoint, everything after to the next.
    Barrier(Barrier),
}

/// A checkpoint barrier of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Barrier {
    /// The instance checkpointing.
    pub instance: Sym,
    /// The checkpoint's number.
    pub n: u64,
}

/// A message, with where it was published and by whom.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The topic (DSM id).
    pub topic: Sym,
    /// The publisher.
    pub publisher: PublisherId,
    /// The message.
    pub message: Message,
}

#[derive(Clone)]
struct SubscriberEntry {
    id: SubscriberId,
    tx: mpsc::Sender<Envelope>,
    /// A lossy subscriber (a dashboard tap) never holds publishers back: what does not fit
    /// in its channel is dropped for it alone, and counted.
    lossy: Option<Arc<AtomicU64>>,
}

#[derive(Default)]
struct TopicState {
    subscribers: Arc<Vec<SubscriberEntry>>,
    publishers: Vec<PublisherId>,
}

/// One topic.
pub struct Topic {
    id: Sym,
    state: RwLock<TopicState>,
}

impl Topic {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, TopicState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TopicState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends to every current subscriber, waiting for room in each channel; subscribers that
    /// have gone are forgotten.
    async fn deliver(&self, publisher: PublisherId, message: Message) {
        let subscribers = self.read().subscribers.clone();
        let mut gone = Vec::new();
        for sub in subscribers.iter() {
            let envelope = Envelope {
                topic: self.id,
                publisher,
                message: message.clone(),
            };
            match &sub.lossy {
                None => {
                    if sub.tx.send(envelope).await.is_err() {
                        gone.push(sub.id);
                    }
                }
                Some(dropped) => match sub.tx.try_send(envelope) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => gone.push(sub.id),
                },
            }
        }
        if !gone.is_empty() {
            let mut state = self.write();
            let kept: Vec<SubscriberEntry> = state
                .subscribers
                .iter()
                .filter(|s| !gone.contains(&s.id))
                .cloned()
                .collect();
            state.subscribers = Arc::new(kept);
        }
    }

    /// The topic's DSM id.
    #[must_use]
    pub fn id(&self) -> Sym {
        self.id
    }

    /// Number of subscribers.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.read().subscribers.len()
    }

    /// Number of publishers.
    #[must_use]
    pub fn publisher_count(&self) -> usize {
        self.read().publishers.len()
    }

    /// Observations waiting in subscribers' channels (messages, not observations).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.read()
            .subscribers
            .iter()
            .map(|s| s.tx.max_capacity() - s.tx.capacity())
            .sum()
    }
}

/// The bus.
pub struct Bus {
    topics: RwLock<HashMap<Sym, Arc<Topic>>>,
    next_id: AtomicU32,
    capacity: usize,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Default room in each subscriber's channel, in messages (a message carries up to
    /// [`Batch::MAX_LEN`] observations).
    pub const DEFAULT_CAPACITY: usize = 16;

    /// A bus whose subscriber channels hold `capacity` messages.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            topics: RwLock::default(),
            next_id: AtomicU32::new(1),
            capacity: capacity.max(1),
        }
    }

    /// The topic `id`, created on first use.
    #[must_use]
    pub fn topic(&self, id: Sym) -> Arc<Topic> {
        if let Some(t) = self
            .topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
        {
            return t.clone();
        }
        self.topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Topic {
                    id,
                    state: RwLock::default(),
                })
            })
            .clone()
    }

    /// Every topic that exists, with its subscriber and queued-message counts.
    #[must_use]
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn next(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts publishing to topic `id`: current subscribers are told (`Join`).
    pub async fn publisher(&self, id: Sym) -> Publisher {
        let topic = self.topic(id);
        let me = PublisherId(self.next());
        topic.write().publishers.push(me);
        topic.deliver(me, Message::Join).await;
        Publisher {
            inner: Arc::new(PublisherInner {
                topic,
                id: me,
                left: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// A new subscriber with its own channel; subscribe it to topics with
    /// [`Subscriber::subscribe`].
    #[must_use]
    pub fn subscriber(&self) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel(self.capacity);
        let sub = Subscriber {
            id: SubscriberId(self.next()),
            tx,
            topics: Vec::new(),
            lossy: None,
        };
        (sub, rx)
    }

    /// A lossy subscriber, for taps that must never slow the pipeline down: when its channel
    /// is full, messages are dropped for it (and counted in [`Subscriber::dropped`]).
    #[must_use]
    pub fn lossy_subscriber(&self) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (mut sub, rx) = self.subscriber();
        sub.lossy = Some(Arc::new(AtomicU64::new(0)));
        (sub, rx)
    }
}

/// Writes one topic. Clones share one registration; it ends with [`Publisher::leave`] or,
/// failing that, when the last clone is dropped.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    topic: Arc<Topic>,
    id: PublisherId,
    left: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Publisher({:?} on {})",
            self.inner.id, self.inner.topic.id
        )
    }
}

impl Publisher {
    /// The topic written.
    #[must_use]
    pub fn topic(&self) -> Sym {
        self.inner.topic.id
    }

    /// This publisher's id.
    #[must_use]
    pub fn id(&self) -> PublisherId {
        self.inner.id
    }

    /// Publishes observations to every subscriber, waiting while any has no room.
    pub async fn send(&self, batch: Batch) {
        if !batch.is_empty() {
            self.inner
                .topic
                .deliver(self.inner.id, Message::Data(batch))
                .await;
        }
    }

    /// Sends a checkpoint barrier after everything sent so far.
    pub async fn barrier(&self, b: Barrier) {
        self.inner
            .topic
            .deliver(self.inner.id, Message::Barrier(b))
            .await;
    }

    /// Declares that nothing at or before `t` will follow.
    pub async fn watermark(&self, t: Timestamp) {
        self.inner
            .topic
            .deliver(self.inner.id, Message::Watermark(t))
            .await;
    }

    /// Stops publishing: subscribers stop waiting for this publisher's event time. Only the
    /// first call has an effect.
    pub async fn leave(&self) {
        if self.inner.left.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner
            .topic
            .write()
            .publishers
            .retain(|p| *p != self.inner.id);
        self.inner
            .topic
            .deliver(self.inner.id, Message::Leave)
            .await;
    }
}

impl Drop for PublisherInner {
    /// A publisher dropped without [`Publisher::leave`] (its task was aborted) is still
    /// removed from the topic, so later subscribers do not wait for it.
    fn drop(&mut self) {
        if !self.left.load(Ordering::SeqCst) {
            self.topic.write().publishers.retain(|p| *p != self.id);
        }
    }
}

/// Reads topics through one channel.
pub struct Subscriber {
    id: SubscriberId,
    tx: mpsc::Sender<Envelope>,
    topics: Vec<Arc<Topic>>,
    lossy: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscriber({:?})", self.id)
    }
}

impl Subscriber {
    /// Subscribes to `topic`; returns the publishers already writing it (later ones
    /// announce themselves with `Join`).
    pub fn subscribe(&mut self, bus: &Bus, topic: Sym) -> Vec<PublisherId> {
        let t = bus.topic(topic);
        let publishers = {
            let mut state = t.write();
            let mut subs: Vec<SubscriberEntry> = state.subscribers.iter().cloned().collect();
            subs.push(SubscriberEntry {
                id: self.id,
                tx: self.tx.clone(),
                lossy: self.lossy.clone(),
            });
            state.subscribers = Arc::new(subs);
            state.publishers.clone()
        };
        self.topics.push(t);
        publishers
    }

    /// Unsubscribes from every topic: nothing more is routed to this subscriber's channel;
    /// what is already in it can still be received (close the receiver, then drain it).
    pub fn unsubscribe_all(&mut self) {
        for t in self.topics.drain(..) {
            let mut state = t.write();
            let kept: Vec<SubscriberEntry> = state
                .subscribers
                .iter()
                .filter(|s| s.id != self.id)
                .cloned()
                .collect();
            state.subscribers = Arc::new(kept);
        }
    }

    /// Messages dropped for this subscriber because its channel was full (lossy ones only).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.lossy.as_ref().map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Topics subscribed to.
    #[must_use]
    pub fn topics(&self) -> Vec<Sym> {
        self.topics.iter().map(|t| t.id).collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.unsubscribe_all();
    }
}

/// The combined event time of everything a subscriber reads: the least watermark over the
/// publishers of all its topics.
#[derive(Debug, Default)]
pub struct WatermarkTracker {
    publishers: HashMap<(Sym, PublisherId), Timestamp>,
    current: Option<Timestamp>,
}

impl WatermarkTracker {
    /// Publishers already writing `topic` when it was subscribed to.
    pub fn known(&mut self, topic: Sym, publishers: &[PublisherId]) {
        for p in publishers {
            self.publishers.entry((topic, *p)).or_insert(Timestamp::MIN);
        }
    }

    /// Applies one message; returns the combined watermark when it moved forward.
    pub fn update(
        &mut self,
        topic: Sym,
        publisher: PublisherId,
        message: &Message,
    ) -> Option<Timestamp> {
        match message {
            Message::Data(_) | Message::Barrier(_) => return None,
            Message::Join => {
                self.publishers
                    .entry((topic, publisher))
                    .or_insert(Timestamp::MIN);
            }
            Message::Leave => {
                self.publishers.remove(&(topic, publisher));
            }
            Message::Watermark(t) => {
                let w = self
                    .publishers
                    .entry((topic, publisher))
                    .or_insert(Timestamp::MIN);
                *w = (*w).max(*t);
            }
        }
        let combined = self.publishers.values().copied().min()?;
        if combined > Timestamp::MIN && self.current.is_none_or(|c| combined > c) {
            self.current = Some(combined);
            Some(combined)
        } else {
            None
        }
    }

    /// The combined watermark so far.
    #[must_use]
    pub fn current(&self) -> Option<Timestamp> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Observation;

    fn batch(n: usize) -> Batch {
        (0..n)
            .map(|i| {
                Observation::number(
                    Sym::new("s"),
                    Sym::new("x"),
                    Timestamp::from_millis(i as i64),
                    i as f64,
                )
            })
            .collect::<Vec<_>>()
            .into()
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message_in_order() {
        let bus = Bus::new(4);
        let topic = Sym::new("fan-out");
        let (mut a, mut ra) = bus.subscriber();
        let (mut b, mut rb) = bus.subscriber();
        assert!(a.subscribe(&bus, topic).is_empty());
        b.subscribe(&bus, topic);
        let p = bus.publisher(topic).await;
        p.send(batch(3)).await;
        p.watermark(Timestamp::from_millis(2)).await;
        for rx in [&mut ra, &mut rb] {
            assert!(matches!(rx.recv().await.unwrap().message, Message::Join));
            assert!(matches!(rx.recv().await.unwrap().message, Message::Data(d) if d.len() == 3));
            assert!(
                matches!(rx.recv().await.unwrap().message, Message::Watermark(t) if t == Timestamp::from_millis(2))
            );
        }
        let (mut late, _rl) = bus.subscriber();
        assert_eq!(
            late.subscribe(&bus, topic),
            vec![p.id()],
            "a late subscriber learns who publishes"
        );
    }

    #[tokio::test]
    async fn a_full_subscriber_holds_the_publisher_back() {
        let bus = Bus::new(1);
        let topic = Sym::new("backpressure");
        let (mut s, mut rx) = bus.subscriber();
        s.subscribe(&bus, topic);
        let p = Arc::new(bus.publisher(topic).await);
        // The Join fills the channel; the next send must wait until it is received.
        let sender = {
            let p = p.clone();
            tokio::spawn(async move { p.send(batch(1)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "the publisher waits for room");
        rx.recv().await.unwrap();
        sender.await.unwrap();
        assert!(matches!(rx.recv().await.unwrap().message, Message::Data(_)));
    }

    #[tokio::test]
    async fn a_lossy_subscriber_never_holds_the_publisher_back() {
        let bus = Bus::new(1);
        let topic = Sym::new("lossy");
        let (mut tap, mut rx) = bus.lossy_subscriber();
        tap.subscribe(&bus, topic);
        let p = bus.publisher(topic).await;
        for _ in 0..10 {
            p.send(batch(1)).await;
        }
        assert_eq!(
            tap.dropped(),
            10,
            "the Join filled the channel; every batch was dropped"
        );
        assert!(matches!(rx.recv().await.unwrap().message, Message::Join));
        p.send(batch(2)).await;
        assert!(matches!(rx.recv().await.unwrap().message, Message::Data(b) if b.len() == 2));
    }

    #[tokio::test]
    async fn unsubscribed_and_dropped_subscribers_are_forgotten() {
        let bus = Bus::new(4);
        let topic = Sym::new("forget");
        let (mut s, rx) = bus.subscriber();
        s.subscribe(&bus, topic);
        assert_eq!(bus.topic(topic).subscriber_count(), 1);
        drop(rx);
        let p = bus.publisher(topic).await;
        p.send(batch(1)).await;
        assert_eq!(bus.topic(topic).subscriber_count(), 0);
        s.unsubscribe_all();
        p.leave().await;
        assert_eq!(bus.topic(topic).publisher_count(), 0);
    }

    #[test]
    fn the_combined_watermark_waits_for_the_slowest_publisher() {
        let t = Sym::new("wm");
        let mut w = WatermarkTracker::default();
        w.known(t, &[PublisherId(1)]);
        assert_eq!(w.update(t, PublisherId(2), &Message::Join), None);
        assert_eq!(
            w.update(t, PublisherId(1), &Message::Watermark(Timestamp(10))),
            None
        );
        assert_eq!(
            w.update(t, PublisherId(2), &Message::Watermark(Timestamp(5))),
            Some(Timestamp(5))
        );
        assert_eq!(
            w.update(t, PublisherId(2), &Message::Watermark(Timestamp(20))),
            Some(Timestamp(10))
        );
        assert_eq!(
            w.update(t, PublisherId(1), &Message::Leave),
            Some(Timestamp(20))
        );
        assert_eq!(
            w.update(t, PublisherId(2), &Message::Leave),
            None,
            "no publisher: event time stays"
        );
        assert_eq!(w.current(), Some(Timestamp(20)));
    }
}
