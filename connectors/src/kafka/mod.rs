//! `Kafka`: topics on a Kafka (or Kafka-compatible) cluster, via librdkafka, as source and
//! sink.
//!
//! Configured by the original engine's Kafka topic interface — `host`, `port`, `topic` — and
//! optional parameters:
//!
//! The parameters, their types, defaults and meaning are the fields of [`KafkaConfig`] (listed
//! by `dda connectors`, tabled in docs/connectors.md).
//!
//! Without checkpoints, a source joins a consumer group and commits a message's offset
//! only once the engine has accepted the message (at-least-once: a restarted consumer, or
//! another member after a rebalance, resumes after the last accepted message). When the
//! engine checkpoints (a data directory), the source assigns itself every partition of the
//! topic, reports each partition's next offset as its position in every checkpoint, goes
//! on from those offsets when restored, and commits offsets for its group only once a
//! checkpoint covering them is durable (the group's offsets serve a start without a
//! checkpoint and monitoring; two engines must not share a group then).
//!
//! A sink is an idempotent producer (`acks=all`, `enable.idempotence`) keyed by the
//! observation's source, so each source's order holds within its partition; at its end it
//! waits until every message is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use engine::codec::{Format, encode};
use engine::connector::{
    Backoff, Connector, ConnectorError, ConnectorRegistration, EventClock, Sink, SinkContext,
    Source, SourceContext,
};
use engine::processor::Rejected;
use engine::registry::DataSource;
use engine::time::Timestamp;
use manifests::config::{Config, ConfigError, Duration as Span};

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<Kafka>());

fn default_host() -> String {
    "localhost".into()
}

const fn default_port() -> u16 {
    9092
}

const fn default_partitions() -> i32 {
    3
}

const fn yes() -> bool {
    true
}

/// Where a new consumer group starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest message kept.
    #[default]
    Earliest,
    /// Messages produced after the group joined.
    Latest,
}

impl StartFrom {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The data source parameters of a Kafka topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaConfig {
    /// A broker's host (with `port`), when no `brokers`.
    #[serde(default = "default_host")]
    pub host: String,
    /// A broker's port, when no `brokers`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The topic: letters, digits, `.`, `_` and `-`.
    pub topic: String,
    /// Bootstrap servers (`host:port,host:port`), overriding `host` and `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Source: the consumer group (default `dda-<engine id>-<dsm id>`, the engine id being
    /// unique per data directory, so that two engines reading one topic each read all of
    /// it; `dda-<dsm id>` in a one-off `dda run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Source: where a new group starts, `earliest` or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Source: how far event time trails the newest timestamp of a partition.
    #[serde(default)]
    pub out_of_orderness: Span,
    /// Partitions of the topic when DDA creates it.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Create the topic when it does not exist.
    #[serde(default = "yes")]
    pub create_topic: bool,
}

impl Config for KafkaConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let topic = self.topic.as_str();
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError::at(
                "topic",
                format!("topic {topic:?}: give a Kafka topic name (letters, digits, . _ -)"),
            ));
        }
        if self.partitions < 1 {
            return Err(ConfigError::at("partitions", "partitions: at least 1"));
        }
        Ok(())
    }

    fn example() -> serde_json::Value {
        serde_json::json!({"topic": "dda-example"})
    }
}

impl KafkaConfig {
    fn brokers(&self) -> String {
        self.brokers
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port))
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers())
            .set("client.id", "dda")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "10000")
            .set("log_level", "3");
        c
    }
}

/// A data source on a Kafka topic.
#[derive(Debug)]
pub struct Kafka {
    config: KafkaConfig,
}

impl Connector for Kafka {
    const PROTOCOL: &'static str = "Kafka";
    const DESCRIPTION: &'static str = "Kafka topics: offsets committed after acceptance, or kept in checkpoints and committed once they are durable; idempotent keyed producer";
    type Config = KafkaConfig;

    fn new(config: KafkaConfig, _dsm: &DataSource) -> Result<Self, ConnectorError> {
        Ok(Self { config })
    }

    fn place(&self) -> String {
        format!(
            "Kafka {} topic {}",
            self.config.brokers(),
            self.config.topic()
        )
    }
}

/// Asks the cluster for its metadata: whether it answers at all (librdkafka's clients
/// otherwise retry quietly), then creates the topic when it does not exist (an existing one
/// is left as it is). Returns the topic's partitions (none when it does not exist).
async fn ensure_topic(cfg: &KafkaConfig) -> Result<Vec<i32>, String> {
    let admin: AdminClient<DefaultClientContext> =
        cfg.client().create().map_err(|e| e.to_string())?;
    let (admin, _) = metadata(admin, None).await?;
    if cfg.create_topic {
        let topic = NewTopic::new(cfg.topic(), cfg.partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| e.to_string())?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(format!("cannot create topic {t}: {code}")),
            }
        }
    }
    let (_, partitions) = metadata(admin, Some(cfg.topic().to_owned())).await?;
    Ok(partitions)
}

/// The cluster's metadata, of one topic or of all; the partitions of the first topic.
async fn metadata(
    admin: AdminClient<DefaultClientContext>,
    topic: Option<String>,
) -> Result<(AdminClient<DefaultClientContext>, Vec<i32>), String> {
    tokio::task::spawn_blocking(move || {
        let m = admin
            .inner()
            .fetch_metadata(topic.as_deref(), Duration::from_secs(5))
            .map_err(|e| format!("the cluster does not answer (is the broker running?): {e}"))?;
        let partitions = m
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        Ok((admin, partitions))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn describe(e: impl std::fmt::Display, cfg: &KafkaConfig) -> String {
    format!("Kafka {} topic {}: {e}", cfg.brokers(), cfg.topic())
}

/// Messages taken at once, at most.
const MAX_MESSAGES: usize = 1024;

/// Each partition's next offset, as a checkpoint keeps it: `{"offsets": {"0": 42}}`.
type Offsets = std::collections::BTreeMap<i32, i64>;

fn position(next: &Offsets) -> serde_json::Value {
    serde_json::json!({ "offsets": next })
}

fn offsets(position: Option<&serde_json::Value>) -> Offsets {
    position
        .and_then(|p| p.get("offsets"))
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Commits `next` for the consumer's group.
fn commit(
    consumer: &StreamConsumer,
    topic: &str,
    next: &Offsets,
    mode: CommitMode,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut list = TopicPartitionList::new();
    for (p, o) in next {
        list.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    if list.count() == 0 {
        return Ok(());
    }
    consumer.commit(&list, mode)
}

/// What the source may commit for its group.
struct Commits {
    /// The positions of durable checkpoints.
    durable: tokio::sync::watch::Receiver<Option<serde_json::Value>>,
    /// The offsets committed last, from a checkpoint.
    committed: Offsets,
    /// Offsets of accepted messages were stored since the last commit.
    stored: bool,
}

impl Commits {
    /// Commits what may be committed: while the instance is checkpointed, the offsets of
    /// its last durable checkpoint; otherwise what the engine accepted.
    fn commit(
        &mut self,
        ctx: &SourceContext,
        consumer: &StreamConsumer,
        topic: &str,
        mode: CommitMode,
    ) {
        let done = if ctx.acknowledges_at_checkpoints() {
            let upto = offsets(self.durable.borrow_and_update().as_ref());
            if upto == self.committed {
                return;
            }
            commit(consumer, topic, &upto, mode).map(|()| self.committed = upto)
        } else if std::mem::take(&mut self.stored) {
            consumer.commit_consumer_state(mode)
        } else {
            return;
        };
        if let Err(e) = done {
            tracing::debug!(dsm = %ctx.dsm.id, error = %e, "offset commit deferred");
        }
    }
}

impl Source for Kafka {
    const RESUMABLE: bool = true;

    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let topic = cfg.topic();
        let out_of_orderness = cfg.out_of_orderness.get();
        // With checkpoints, the source assigns itself every partition of the topic (as
        // Flink's does) and goes on from the checkpoint's offsets: the group only keeps
        // the offsets of durable checkpoints, committed, for a start without one.
        let assigned = ctx.checkpoints.enabled();
        let mut backoff = Backoff::default();
        let partitions = loop {
            let e = match ensure_topic(cfg).await {
                Ok(p) if !p.is_empty() || !assigned => break p,
                Ok(_) => format!("topic {topic} does not exist (create it, or set createTopic)"),
                Err(e) => e,
            };
            let message = describe(&e, cfg);
            tracing::warn!(dsm = %ctx.dsm.id, error = %message, "retrying");
            ctx.metrics.failed(&message);
            if !backoff.wait(&ctx.cancel).await {
                return Ok(());
            }
        };
        ctx.metrics.connected();
        let consumer: StreamConsumer = cfg
            .client()
            .set(
                "group.id",
                cfg.group_id.clone().unwrap_or_else(|| {
                    let identity = ctx.shared.resource::<engine::connector::Identity>();
                    match identity.engine() {
                        Some(e) => format!("dda-{e}-{}", ctx.dsm.id),
                        None => format!("dda-{}", ctx.dsm.id),
                    }
                }),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", cfg.start_from.as_str())
            .set("session.timeout.ms", "10000")
            .create()
            .map_err(|e| ConnectorError::io(&ctx.dsm, describe(e, cfg)))?;
        // Each partition's next offset after what was published.
        let mut next = offsets(ctx.resume.as_ref());
        if assigned {
            let mut list = TopicPartitionList::new();
            for p in partitions {
                let from = next.get(&p).map_or(Offset::Stored, |o| Offset::Offset(*o));
                list.add_partition_offset(topic, p, from)
                    .map_err(|e| ConnectorError::io(&ctx.dsm, describe(e, cfg)))?;
            }
            consumer.assign(&list)
        } else {
            consumer.subscribe(&[topic])
        }
        .map_err(|e| ConnectorError::io(&ctx.dsm, describe(e, cfg)))?;
        let format = Format::of(&ctx.dsm);
        let decode = ctx.dsm.decode_context();
        // Event time per partition; the source's is the least of them.
        let mut clocks: HashMap<i32, EventClock> = HashMap::new();
        let mut sent = Timestamp::MIN;
        let mut backoff = Backoff::default();
        let mut commits = Commits {
            durable: ctx.durable_positions(),
            committed: Offsets::new(),
            stored: false,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = tick.tick() => {
                    ctx.offer_checkpoint(|| position(&next)).await;
                    commits.commit(&ctx, &consumer, topic, CommitMode::Async);
                    continue;
                }
                () = ctx.cancel.cancelled() => {
                    commits.commit(&ctx, &consumer, topic, CommitMode::Sync);
                    return Ok(());
                }
            };
            let mut messages = match first {
                Ok(m) => vec![m],
                Err(e) => {
                    let message = describe(&e, cfg);
                    tracing::warn!(dsm = %ctx.dsm.id, error = %message, "Kafka consumer error; retrying");
                    ctx.metrics.failed(&message);
                    if !backoff.wait(&ctx.cancel).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            // Whatever else is there already goes in the same batch.
            while messages.len() < MAX_MESSAGES
                && let Some(Ok(m)) = consumer.recv().now_or_never()
            {
                messages.push(m);
            }
            backoff.reset();
            ctx.metrics.connected();
            let mut batch = Vec::new();
            for m in &messages {
                let payload = m.payload().unwrap_or_default();
                let from = batch.len();
                match engine::codec::decode(payload, format, &decode, &mut batch) {
                    Ok(_) => clocks
                        .entry(m.partition())
                        .or_insert_with(|| EventClock::new(out_of_orderness))
                        .observe(&batch[from..]),
                    Err(e) => {
                        ctx.unreadable(e.message(), &String::from_utf8_lossy(payload))
                            .await;
                    }
                }
            }
            if !batch.is_empty() {
                ctx.publish(batch).await;
            }
            if let Some(w) = clocks.values().map(EventClock::watermark).min()
                && w > sent
            {
                sent = w;
                ctx.watermark(w).await;
            }
            // Accepted (or dead-lettered): now their offsets may be committed, or, with
            // checkpoints, once a durable checkpoint covers them.
            for m in &messages {
                next.insert(m.partition(), m.offset() + 1);
                if let Err(e) = consumer.store_offset_from_message(m) {
                    tracing::debug!(dsm = %ctx.dsm.id, error = %e, "cannot store an offset");
                }
            }
            commits.stored = true;
            ctx.offer_checkpoint(|| position(&next)).await;
        }
    }
}

/// Delivery attempts of a message before it goes to the dead letters (each attempt waits
/// up to `message.timeout.ms` for the cluster).
const DELIVERY_ATTEMPTS: u32 = 8;

fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    cfg.client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
}

/// Sends `batch[i]` for each `i` of `which`, in order; the ones that failed, with why.
async fn deliver(
    producer: &FutureProducer,
    topic: &str,
    format: Format,
    batch: &[engine::observation::Observation],
    which: &[usize],
) -> Vec<(usize, rdkafka::error::KafkaError)> {
    let pending = which.iter().map(|&i| {
        let o = &batch[i];
        let payload = encode(o, format);
        async move {
            let key = o.source.text();
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(&payload);
            (i, producer.send(record, Duration::from_secs(30)).await)
        }
    });
    futures_util::future::join_all(pending)
        .await
        .into_iter()
        .filter_map(|(i, r)| r.err().map(|(e, _)| (i, e)))
        .collect()
}

/// Drops a producer on a blocking thread: with the broker away, librdkafka's destroy can
/// take as long as its connection timeouts, and must not hold an async worker meanwhile.
fn drop_aside(producer: FutureProducer) {
    drop(tokio::task::spawn_blocking(move || drop(producer)));
}

/// Whether the broker refused a message for good (sending it again cannot help).
fn refused_for_good(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}

impl Sink for Kafka {
    const STORE_AND_FORWARD: bool = true;

    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let mut producer =
            producer(cfg).map_err(|e| ConnectorError::io(&ctx.dsm, describe(e, cfg)))?;
        match ctx.attempt(ensure_topic(cfg)).await {
            Some(Ok(_)) => ctx.metrics.connected(),
            // The producer retries on its own; say why data may not flow yet.
            Some(Err(e)) => ctx.metrics.failed(describe(&e, cfg)),
            None => {}
        }
        let format = Format::of(&ctx.dsm);
        let mut backoff = Backoff::default();
        while let Some(batch) = ctx.next().await {
            let mut which: Vec<usize> = (0..batch.len()).collect();
            let mut attempt = 1;
            // How many of the batch were not delivered (dead-lettered).
            let lost = loop {
                let Some(failed) = ctx
                    .attempt(deliver(&producer, cfg.topic(), format, &batch, &which))
                    .await
                else {
                    let pending: Vec<_> = which.iter().map(|&i| batch[i].clone()).collect();
                    ctx.undelivered(
                        &pending,
                        "given up while waiting for the broker's acknowledgement",
                    )
                    .await;
                    break pending.len();
                };
                let Some((_, why)) = failed.first() else {
                    backoff.reset();
                    ctx.metrics.connected();
                    break 0;
                };
                let message = describe(why, cfg);
                ctx.metrics.failed(&message);
                // With a store-and-forward queue, only what the broker refuses for good
                // goes to the dead letters; the rest is sent again until delivered.
                let for_good = failed.iter().all(|(_, e)| refused_for_good(e));
                if attempt >= DELIVERY_ATTEMPTS && (for_good || !ctx.is_spooled()) {
                    tracing::error!(dsm = %ctx.dsm.id, error = %message, undelivered = failed.len(), "messages not delivered after {DELIVERY_ATTEMPTS} attempts; sent to the dead letters");
                    let lost = failed.len();
                    let rejected = failed
                        .into_iter()
                        .map(|(i, why)| Rejected {
                            observation: batch[i].clone(),
                            reason: format!("{} did not take the message after {DELIVERY_ATTEMPTS} attempts: {why}", self.place()),
                        })
                        .collect();
                    ctx.reject(rejected).await;
                    break lost;
                }
                tracing::warn!(dsm = %ctx.dsm.id, error = %message, undelivered = failed.len(), attempt, "delivery failed; sending again");
                // The producer may be stuck on what failed (an idempotent producer whose
                // sequence has a gap waits for it): a new one starts afresh. A message that
                // did reach the broker before its answer was lost may then be there twice
                // (at-least-once).
                match self::producer(cfg) {
                    Ok(p) => drop_aside(std::mem::replace(&mut producer, p)),
                    Err(e) => ctx.metrics.failed(describe(e, cfg)),
                }
                which = failed.into_iter().map(|(i, _)| i).collect();
                if !ctx.retry_after(&mut backoff).await {
                    let pending: Vec<_> = which.iter().map(|&i| batch[i].clone()).collect();
                    ctx.undelivered(&pending, &message).await;
                    break pending.len();
                }
                attempt += 1;
            };
            ctx.metrics.add(batch.len() - lost);
        }
        drop_aside(producer);
        Ok(())
    }
}
