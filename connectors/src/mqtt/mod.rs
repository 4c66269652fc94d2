//! `MQTT`: topics on an MQTT broker (rumqttc), as source and sink.
//!
//! Configured by the paper's Table 1 parameters — `host`, `port`, `username`, `password`,
//! `topic` — and optional ones:
//!
//! The parameters, their types, defaults and meaning are the fields of [`MqttConfig`] (listed
//! by `dda connectors`, tabled in docs/connectors.md).
//!
//! A source subscribes to `topic` (wildcards `+` and `#` allowed); every message is decoded
//! in the data kind's format and acknowledged only once the engine has accepted it, so with
//! QoS 1 and a persistent session nothing is lost while the engine or the broker restarts.
//! When the engine checkpoints (a data directory), what the source accepts goes first to a
//! durable input log and is acknowledged once synced there (see [`logged`]): a crash then
//! loses no window contents whose input was acknowledged.
//! A sink publishes every observation to `topic` (`{source}` and `{name}` in it are replaced
//! by the observation's source and name, `{gateway}` by the engine's gateway), and at its
//! end waits until the broker has acknowledged everything it sent.
//!
//! A topic naming `{gateway}` is the uplink of a fleet: each edge's sink publishes to its
//! own topic (`dda/uplink/{gateway}` → `dda/uplink/edge-1`, with `watermarks` passing its
//! event time on), and the cloud's source subscribes to all of them (`dda/uplink/+`) and
//! keeps event time per sender — the topic level where `{gateway}` stands — as the HTTP
//! ingest does ([`engine::connector::Senders`]). Passwords are given as `${env:NAME}` or `${file:PATH}`.
//! Connection failures (an unreachable broker, a wrong password) are retried with backoff and
//! shown in the status of the instances using the data source.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use engine::codec::{Format, encode};
use engine::connector::senders::{stamp, watermark_mark, watermark_message, watermark_of};
use engine::connector::{
    Backoff, Clock, Connector, ConnectorError, ConnectorRegistration, EventClock, Senders, Sink,
    SinkContext, Source, SourceContext,
};
use engine::registry::DataSource;
use manifests::config::{Config, ConfigError, Duration as Span, Secret};
use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use rumqttc::{Packet as Packet4, QoS, Transport};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod logged;

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<Mqtt>());

fn default_host() -> String {
    "localhost".into()
}

const fn default_port() -> u16 {
    1883
}

const fn default_qos() -> u8 {
    1
}

const fn default_keep_alive() -> Span {
    Span::from_secs(30)
}

/// The MQTT protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Version {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1", alias = "3", alias = "4", alias = "311")]
    V4,
    /// MQTT 5.
    #[serde(rename = "5", alias = "5.0")]
    V5,
}

/// The data source parameters of an MQTT topic (the paper's Table 1, and more).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttConfig {
    /// The host where the MQTT broker runs.
    #[serde(default = "default_host")]
    pub host: String,
    /// The port where the MQTT broker listens.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The username to connect with, as it is: references are resolved only in secret
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password to connect with, as `${env:NAME}` or `${file:PATH}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The MQTT topic: a source subscribes to it (wildcards `+` and `#` allowed); a sink
    /// publishes to it (`{source}` and `{name}` are replaced by the observation's). A
    /// level `{gateway}` makes it an uplink: a sink publishes to it with the engine's
    /// gateway id (its engine id when it is no gateway's); a source subscribes with `+`
    /// there and keeps event time per sender (see `idleTimeout`).
    pub topic: String,
    /// The quality of service: 0 (at most once) or 1 (at least once).
    #[serde(default = "default_qos")]
    #[schemars(extend("enum" = [0, 1]))]
    pub qos: u8,
    /// The protocol version: `3.1.1` or `5`.
    #[serde(default)]
    pub version: Version,
    /// The session's client id (default `dda-<engine id>-<dsm id>-source` / `-sink`, the
    /// engine id being unique per data directory, so that two engines never take each
    /// other's session; `dda-<dsm id>-source` / `-sink` in a one-off `dda run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Start a new session at each connection (default: a persistent session, so that
    /// nothing is lost while the engine or the broker restarts).
    #[serde(default)]
    pub clean_session: bool,
    /// The keep-alive interval (at least 5 s).
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Span,
    /// Connect with TLS (needs `caFile`).
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificates for TLS (the system's web roots are not used: give one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "input-file"))]
    pub ca_file: Option<String>,
    /// Sink: publish retained messages.
    #[serde(default)]
    pub retain: bool,
    /// Source: how far event time trails the newest timestamp received (per sender, on
    /// an uplink topic).
    #[serde(default)]
    pub out_of_orderness: Span,
    /// Source, on an uplink topic (`{gateway}`): event time is the earliest of the
    /// senders' heard from within this (wall-clock time), so that a slower edge's results
    /// are never late; a sender silent for longer no longer holds event time back. Each
    /// observation is stamped with its sender (attribute `gateway`).
    #[serde(default = "crate::default_idle_timeout")]
    pub idle_timeout: Span,
    /// Source, on an uplink topic: the gateways expected to send (a global analytics
    /// manifest's `edgeGatewayReferenceIDs`): event time waits for each from the start,
    /// until it is heard from or silent for `idleTimeout`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    /// Source, on an uplink topic: what a gateway sends again — the same data source,
    /// quantity and time, within this much event time of the newest it sent (its results
    /// computed again after a crash) — is taken once.
    #[serde(default = "crate::default_duplicates_within")]
    pub duplicates_within: Span,
    /// Sink: pass event time on (the uplink of an edge to its cloud): its input's
    /// watermark is published to `topic` as `{"dda:watermark": <epoch µs>}`, in order with
    /// the data, at most every 200 ms and at the end of the input, at QoS 0 (a newer one
    /// supersedes a lost one). Needs `qos` 1 and a topic without `{source}` or `{name}`.
    #[serde(default)]
    pub watermarks: bool,
}

impl Config for MqttConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.topic.is_empty() {
            return Err(ConfigError::at(
                "topic",
                "the parameter `topic` is required",
            ));
        }
        if self.qos > 1 {
            return Err(ConfigError::at(
                "qos",
                format!("qos {}: use 0 or 1", self.qos),
            ));
        }
        if self.tls && self.ca_file.is_none() {
            return Err(ConfigError::at(
                "caFile",
                "tls needs `caFile`, the broker's CA certificate (PEM)",
            ));
        }
        if self.topic.contains("{gateway}") && self.gateway_level().is_none() {
            return Err(ConfigError::at(
                "topic",
                "`{gateway}` must be a topic level of its own, once (`dda/uplink/{gateway}`)",
            ));
        }
        if self.watermarks && self.qos == 0 {
            return Err(ConfigError::at(
                "watermarks",
                "watermarks need qos 1 (the data is counted delivered by the broker's acknowledgements; watermarks go at QoS 0 beside it)",
            ));
        }
        if self.watermarks && (self.topic.contains("{source}") || self.topic.contains("{name}")) {
            return Err(ConfigError::at(
                "watermarks",
                "watermarks are published to the sink's one topic: name no {source} or {name} in it (`dda/uplink/{gateway}`, say)",
            ));
        }
        Ok(())
    }

    fn example() -> serde_json::Value {
        serde_json::json!({"topic": "dda/example"})
    }
}

impl MqttConfig {
    /// Where `{gateway}` stands in an uplink topic (from 0), when it does.
    fn gateway_level(&self) -> Option<usize> {
        let levels: Vec<&str> = self.topic.split('/').collect();
        let at = levels.iter().position(|l| *l == "{gateway}")?;
        (levels.iter().filter(|l| l.contains("{gateway}")).count() == 1).then_some(at)
    }

    /// The topic a source subscribes to: an uplink's with `+` for `{gateway}`.
    fn subscription(&self) -> String {
        self.topic.replace("{gateway}", "+")
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    fn qos5(&self) -> rumqttc::v5::mqttbytes::QoS {
        if self.qos == 0 {
            rumqttc::v5::mqttbytes::QoS::AtMostOnce
        } else {
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce
        }
    }

    fn keep_alive(&self) -> Duration {
        self.keep_alive.get().max(Duration::from_secs(5))
    }

    fn transport(&self, dsm: &DataSource) -> Result<Transport, ConnectorError> {
        if !self.tls {
            return Ok(Transport::Tcp);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = match &self.ca_file {
            Some(path) => std::fs::read(dsm.path(path))
                .map_err(|e| ConnectorError::config(dsm, format!("caFile {path}: {e}")))?,
            None => {
                return Err(ConnectorError::config(
                    dsm,
                    "tls needs `caFile`, the broker's CA certificate (PEM)",
                ));
            }
        };
        Ok(Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth: None,
        }))
    }
}

/// A data source on an MQTT topic.
#[derive(Debug)]
pub struct Mqtt {
    config: Arc<MqttConfig>,
}

impl Connector for Mqtt {
    const PROTOCOL: &'static str = "MQTT";
    const ALIASES: &'static [&'static str] = &["mqtts"];
    const DESCRIPTION: &'static str = "MQTT 3.1.1 and 5 topics: subscribe (wildcards), publish; QoS 0/1, persistent sessions, a durable input log with checkpoints, TLS";
    type Config = MqttConfig;

    fn new(config: MqttConfig, _dsm: &DataSource) -> Result<Self, ConnectorError> {
        Ok(Self {
            config: Arc::new(config),
        })
    }

    fn place(&self) -> String {
        format!(
            "MQTT {}:{} topic {}",
            self.config.host, self.config.port, self.config.topic
        )
    }
}

/// A connection of either protocol version.
enum Connection {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

/// What the event loop reported.
enum Incoming {
    Connected {
        session_present: bool,
    },
    Message(Box<Message>),
    Acked,
    /// A publish was written to the connection.
    Sent,
    Other,
}

/// A received message, kept for its acknowledgement.
enum Message {
    V4(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

impl Message {
    fn payload(&self) -> &Bytes {
        match self {
            Self::V4(p) => &p.payload,
            Self::V5(p) => &p.payload,
        }
    }

    fn topic(&self) -> &[u8] {
        match self {
            Self::V4(p) => p.topic.as_bytes(),
            Self::V5(p) => &p.topic,
        }
    }

    const fn pkid(&self) -> u16 {
        match self {
            Self::V4(p) => p.pkid,
            Self::V5(p) => p.pkid,
        }
    }

    /// Whether the broker flagged it as sent again.
    const fn dup(&self) -> bool {
        match self {
            Self::V4(p) => p.dup,
            Self::V5(p) => p.dup,
        }
    }
}

fn describe(e: impl std::fmt::Display, cfg: &MqttConfig) -> String {
    let text = e.to_string();
    let advice = if text.contains("NotAuthorized")
        || text.contains("BadUserNamePassword")
        || text.contains("BadUsernamePassword")
    {
        " (check username and password)"
    } else if text.contains("refused") || text.contains("Refused") {
        " (is the broker running?)"
    } else {
        ""
    };
    format!("MQTT broker {}:{}: {text}{advice}", cfg.host, cfg.port)
}

impl Connection {
    fn open(
        dsm: &DataSource,
        cfg: &MqttConfig,
        role: &str,
        shared: &engine::connector::Shared,
    ) -> Result<Self, ConnectorError> {
        let client_id = cfg.client_id.clone().unwrap_or_else(|| {
            shared
                .resource::<engine::connector::Identity>()
                .client_id(&dsm.id.to_string(), role)
        });
        let username = cfg.username.clone();
        let password = cfg
            .password
            .as_ref()
            .map(Secret::resolve)
            .transpose()
            .map_err(|e| ConnectorError::config(dsm, format!("password: {e}")))?;
        let transport = cfg.transport(dsm)?;
        Ok(match cfg.version {
            Version::V4 => {
                let mut o = rumqttc::MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
                o.set_keep_alive(cfg.keep_alive())
                    .set_clean_session(cfg.clean_session)
                    .set_manual_acks(true)
                    .set_transport(transport);
                if let Some(u) = username {
                    o.set_credentials(u, password.unwrap_or_default());
                }
                let (c, l) = rumqttc::AsyncClient::new(o, 1024);
                Self::V4(c, Box::new(l))
            }
            Version::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
                o.set_keep_alive(cfg.keep_alive())
                    .set_clean_start(cfg.clean_session)
                    .set_manual_acks(true)
                    .set_transport(transport);
                if !cfg.clean_session {
                    // Keep the session a day while disconnected.
                    o.set_session_expiry_interval(Some(86_400));
                }
                if let Some(u) = username {
                    o.set_credentials(u, password.unwrap_or_default());
                }
                let (c, l) = rumqttc::v5::AsyncClient::new(o, 1024);
                Self::V5(c, Box::new(l))
            }
        })
    }

    async fn poll(&mut self) -> Result<Incoming, String> {
        match self {
            Self::V4(_, l) => match l.poll().await.map_err(|e| e.to_string())? {
                rumqttc::Event::Incoming(Packet4::ConnAck(a)) => Ok(Incoming::Connected {
                    session_present: a.session_present,
                }),
                rumqttc::Event::Incoming(Packet4::Publish(p)) => {
                    Ok(Incoming::Message(Box::new(Message::V4(p))))
                }
                rumqttc::Event::Incoming(Packet4::PubAck(_)) => Ok(Incoming::Acked),
                rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_)) => Ok(Incoming::Sent),
                _ => Ok(Incoming::Other),
            },
            Self::V5(_, l) => match l.poll().await.map_err(|e| e.to_string())? {
                rumqttc::v5::Event::Incoming(Packet5::ConnAck(a)) => Ok(Incoming::Connected {
                    session_present: a.session_present,
                }),
                rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => {
                    Ok(Incoming::Message(Box::new(Message::V5(p))))
                }
                rumqttc::v5::Event::Incoming(Packet5::PubAck(_)) => Ok(Incoming::Acked),
                rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(_)) => Ok(Incoming::Sent),
                _ => Ok(Incoming::Other),
            },
        }
    }

    fn client(&self) -> Client {
        match self {
            Self::V4(c, _) => Client::V4(c.clone()),
            Self::V5(c, _) => Client::V5(c.clone()),
        }
    }
}

/// The request side of a connection, usable from another task than its event loop.
#[derive(Clone)]
enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    async fn subscribe(&self, topic: &str, cfg: &MqttConfig) -> Result<(), String> {
        match self {
            Self::V4(c) => c
                .subscribe(topic, cfg.qos())
                .await
                .map_err(|e| e.to_string()),
            Self::V5(c) => c
                .subscribe(topic, cfg.qos5())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes without waiting (from the task that drains the request channel).
    fn try_subscribe(&self, topic: &str, cfg: &MqttConfig) -> Result<(), String> {
        match self {
            Self::V4(c) => c.try_subscribe(topic, cfg.qos()).map_err(|e| e.to_string()),
            Self::V5(c) => c
                .try_subscribe(topic, cfg.qos5())
                .map_err(|e| e.to_string()),
        }
    }

    /// Publishes at the data source's `qos`, or at QoS 0 when `at_most_once`.
    async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        cfg: &MqttConfig,
        at_most_once: bool,
    ) -> Result<(), String> {
        match self {
            Self::V4(c) => {
                let qos = if at_most_once {
                    QoS::AtMostOnce
                } else {
                    cfg.qos()
                };
                c.publish(topic, qos, cfg.retain, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Self::V5(c) => {
                let qos = if at_most_once {
                    rumqttc::v5::mqttbytes::QoS::AtMostOnce
                } else {
                    cfg.qos5()
                };
                c.publish(topic, qos, cfg.retain, payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    async fn ack(&self, m: &Message) -> Result<(), String> {
        match (self, m) {
            (Self::V4(c), Message::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Self::V5(c), Message::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Asks for a clean DISCONNECT without waiting.
    fn try_disconnect(&self) {
        match self {
            Self::V4(c) => {
                let _ = c.try_disconnect();
            }
            Self::V5(c) => {
                let _ = c.try_disconnect();
            }
        }
    }

    async fn disconnect(&self) {
        match self {
            Self::V4(c) => {
                let _ = c.disconnect().await;
            }
            Self::V5(c) => {
                let _ = c.disconnect().await;
            }
        }
    }
}

/// Messages taken into one batch, at most.
const MAX_MESSAGES: usize = 512;

/// What the event loop hands the source.
enum Delivered {
    Message(Box<Message>),
    Connected,
    Failed(String),
}

/// Drives a source's connection: keeps it alive (pings, reconnection with backoff,
/// subscribing again when the broker lost the session) and hands messages over. It never
/// waits on the engine but to hand a message over; with QoS 1 the broker sends only so many
/// unacknowledged messages, so the hand-over channel never fills up.
async fn drive(
    mut conn: Connection,
    client: Client,
    cfg: Arc<MqttConfig>,
    dsm: Arc<DataSource>,
    tx: tokio::sync::mpsc::Sender<Delivered>,
    closing: Arc<AtomicBool>,
) {
    let topic = cfg.subscription();
    let mut backoff = Backoff::default();
    let mut first = true;
    // A subscription to send again: the request channel is drained by this very task, so
    // it is queued without waiting, and retried at the next event while the queue is full.
    let mut resubscribe = false;
    loop {
        if resubscribe && client.try_subscribe(&topic, &cfg).is_ok() {
            resubscribe = false;
        }
        let delivered = match conn.poll().await {
            Ok(Incoming::Connected { session_present }) => {
                backoff.reset();
                tracing::info!(dsm = %dsm.id, host = %cfg.host, port = cfg.port, session_present, "connected to the MQTT broker");
                resubscribe |= !session_present && !first;
                first = false;
                Delivered::Connected
            }
            Ok(Incoming::Message(m)) => Delivered::Message(m),
            Ok(Incoming::Acked | Incoming::Sent | Incoming::Other) => continue,
            // The source disconnected on purpose.
            Err(_) if closing.load(Ordering::Relaxed) => return,
            Err(e) => {
                let message = describe(&e, &cfg);
                tracing::warn!(dsm = %dsm.id, error = %message, "MQTT connection failed; retrying");
                if tx.send(Delivered::Failed(message)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff.delay()).await;
                continue;
            }
        };
        if tx.send(delivered).await.is_err() {
            return;
        }
    }
}

async fn ack(client: &Client, ctx: &SourceContext, m: &Message) {
    if let Err(e) = client.ack(m).await {
        tracing::warn!(dsm = %ctx.dsm.id, error = %e, "cannot acknowledge a message");
    }
}

impl Source for Mqtt {
    const RESUMABLE: bool = true;

    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let cfg = self.config.clone();
        let topic = cfg.subscription();
        let conn = Connection::open(&ctx.dsm, &cfg, "source", &ctx.shared)?;
        let client = conn.client();
        // Subscribe once up front; the driver subscribes again after any connection that
        // lost the session.
        client
            .subscribe(&topic, &cfg)
            .await
            .map_err(|e| ConnectorError::io(&ctx.dsm, e))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4 * MAX_MESSAGES);
        let closing = Arc::new(AtomicBool::new(false));
        let driver = tokio::spawn(drive(
            conn,
            client.clone(),
            cfg.clone(),
            ctx.dsm.clone(),
            tx,
            closing.clone(),
        ));
        let mut clock = match cfg.gateway_level() {
            None => Clock::One(EventClock::new(cfg.out_of_orderness.get())),
            Some(_) => Clock::PerSender(Senders::new(
                cfg.out_of_orderness.get(),
                cfg.idle_timeout.get(),
                cfg.duplicates_within.get(),
                &cfg.senders,
            )),
        };
        let mut messages = Vec::with_capacity(MAX_MESSAGES);
        let mut log = logged::InputLog::open(&ctx)?;
        let mut durable = ctx.durable_positions();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        if let Some(log) = &mut log {
            log.publish(&ctx, &mut clock).await?;
        }
        loop {
            let first = tokio::select! {
                d = rx.recv() => d,
                _ = tick.tick() => {
                    if let Some(log) = &log {
                        ctx.offer_checkpoint(|| log.position()).await;
                    }
                    continue;
                }
                Ok(()) = durable.changed(), if log.is_some() => {
                    let position = durable.borrow_and_update().clone();
                    if let (Some(log), Some(p)) = (&log, position) {
                        log.covered(&p);
                    }
                    continue;
                }
                () = ctx.cancel.cancelled() => None,
            };
            let Some(first) = first else { break };
            // What has arrived already goes in one batch.
            let mut next = Some(first);
            while let Some(d) = next.take() {
                match d {
                    Delivered::Message(m) => messages.push(m),
                    Delivered::Connected => ctx.metrics.connected(),
                    Delivered::Failed(e) => ctx.metrics.failed(e),
                }
                if messages.len() < MAX_MESSAGES {
                    next = rx.try_recv().ok();
                }
            }
            if messages.is_empty() {
                continue;
            }
            let mut batch = Vec::with_capacity(messages.len());
            if let Some(log) = &mut log {
                // Logged, durably, before acknowledged; published from the log.
                let mut fresh = Vec::with_capacity(messages.len());
                for m in messages.drain(..) {
                    if log.is_redelivery(&m) {
                        tracing::debug!(dsm = %ctx.dsm.id, "dropping a message the broker sent again (logged already)");
                        ack(&client, &ctx, &m).await;
                    } else {
                        read_message(&ctx, &cfg, &m, &mut batch).await;
                        fresh.push(m);
                    }
                }
                if !log.append(&ctx, &fresh, batch).await? {
                    break;
                }
                for m in &fresh {
                    ack(&client, &ctx, m).await;
                }
                log.publish(&ctx, &mut clock).await?;
                ctx.offer_checkpoint(|| log.position()).await;
                continue;
            }
            for m in &messages {
                read_message(&ctx, &cfg, m, &mut batch).await;
            }
            ctx.publish_timed(batch, &mut clock).await;
            // Accepted by the engine (or dead-lettered): now acknowledged.
            for m in messages.drain(..) {
                ack(&client, &ctx, &m).await;
            }
        }
        // Unacknowledged messages stay with the broker, for the session's next connection.
        closing.store(true, Ordering::Relaxed);
        drop(rx);
        client.disconnect().await;
        end_driver(driver).await;
        Ok(())
    }
}

/// Reads message `m` onto `batch` (what does not match the format goes to the dead
/// letters); on an uplink topic, what it holds is stamped with its sender (the topic level
/// of `{gateway}`), and a watermark message is its sender's mark.
async fn read_message(
    ctx: &SourceContext,
    cfg: &MqttConfig,
    m: &Message,
    batch: &mut Vec<engine::Observation>,
) {
    let Some(level) = cfg.gateway_level() else {
        let _ = ctx.decode(m.payload(), batch).await;
        return;
    };
    let topic = String::from_utf8_lossy(m.topic());
    let sender = topic.split('/').nth(level).unwrap_or_default();
    if let Some(w) = watermark_of(m.payload()) {
        batch.push(watermark_mark(ctx.dsm.id, sender, w));
        return;
    }
    let start = batch.len();
    let _ = ctx.decode(m.payload(), batch).await;
    stamp(&mut batch[start..], sender);
}

/// A request the sink handed to its event loop, held back by the sink between connections
/// (so that it decides what is sent again, rather than the event loop, which drops its
/// resend queue when the broker has no session for it).
trait Held: Sized {
    /// The publish's packet id and duplicate flag, when it is a publish.
    fn publish_ids(&mut self) -> Option<(&mut u16, &mut bool)>;
    /// The payload of a publish, as text.
    fn payload_text(&self) -> Option<String>;
}

/// The same for both protocol versions' requests.
macro_rules! held {
    ($request:ty) => {
        impl Held for $request {
            fn publish_ids(&mut self) -> Option<(&mut u16, &mut bool)> {
                match self {
                    Self::Publish(p) => Some((&mut p.pkid, &mut p.dup)),
                    _ => None,
                }
            }

            fn payload_text(&self) -> Option<String> {
                match self {
                    Self::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
                    _ => None,
                }
            }
        }
    };
}

held!(rumqttc::Request);
held!(rumqttc::v5::Request);

/// Publishes a sink sent and the broker has not acknowledged, taken from the event loop
/// when the connection failed.
enum Unacked {
    V4(Vec<rumqttc::Request>),
    V5(Vec<rumqttc::v5::Request>),
}

impl Unacked {
    fn len(&self) -> usize {
        match self {
            Self::V4(v) => v.len(),
            Self::V5(v) => v.len(),
        }
    }

    fn payloads(self) -> Vec<String> {
        fn texts<R: Held>(v: Vec<R>) -> Vec<String> {
            v.iter().filter_map(Held::payload_text).collect()
        }
        match self {
            Self::V4(v) => texts(v),
            Self::V5(v) => texts(v),
        }
    }
}

/// Moves the publishes of `pending` (the event loop's resend queue) to `held`.
fn hold<R: Held>(pending: &mut std::collections::VecDeque<R>, held: &mut Vec<R>) {
    held.extend(pending.drain(..).filter_map(|mut r| {
        // A watermark is superseded by the next one, and is not data: not sent again.
        let watermark = r
            .payload_text()
            .is_some_and(|t| watermark_of(t.as_bytes()).is_some());
        (r.publish_ids().is_some() && !watermark).then_some(r)
    }));
}

/// Puts `held` at the head of the event loop's queue, to be sent first on the new
/// connection: as duplicates with their packet ids when the broker kept the session, as new
/// publishes otherwise.
fn resend<R: Held>(
    pending: &mut std::collections::VecDeque<R>,
    held: &mut Vec<R>,
    session_present: bool,
) {
    for mut r in held.drain(..).rev() {
        if let Some((pkid, dup)) = r.publish_ids() {
            if session_present {
                *dup = true;
            } else {
                (*pkid, *dup) = (0, false);
            }
        }
        pending.push_front(r);
    }
}

impl Connection {
    fn unacked(&self) -> Unacked {
        match self {
            Self::V4(..) => Unacked::V4(Vec::new()),
            Self::V5(..) => Unacked::V5(Vec::new()),
        }
    }

    /// After a connection failure: takes what the event loop would send again.
    fn hold(&mut self, held: &mut Unacked) {
        match (self, held) {
            (Self::V4(_, l), Unacked::V4(h)) => hold(&mut l.pending, h),
            (Self::V5(_, l), Unacked::V5(h)) => hold(&mut l.pending, h),
            _ => {}
        }
    }

    /// On a new connection: sends `held` first.
    fn resend(&mut self, held: &mut Unacked, session_present: bool) {
        match (self, held) {
            (Self::V4(_, l), Unacked::V4(h)) => resend(&mut l.pending, h, session_present),
            (Self::V5(_, l), Unacked::V5(h)) => resend(&mut l.pending, h, session_present),
            _ => {}
        }
    }

    /// At the end: everything not acknowledged — held, in flight, or still queued.
    fn into_unacked(mut self, mut held: Unacked) -> Unacked {
        match &mut self {
            Self::V4(_, l) => l.clean(),
            Self::V5(_, l) => l.clean(),
        }
        self.hold(&mut held);
        held
    }
}

/// What a sink's connection delivered: counted, and reported to the sink's queue.
struct Deliveries {
    count: Arc<AtomicU64>,
    queue: engine::connector::Acknowledger,
}

impl Deliveries {
    fn one(&self) {
        self.queue
            .acknowledged(self.count.fetch_add(1, Ordering::Relaxed) + 1);
    }
}

/// Drives a sink's connection: keeps it alive, counts what the broker acknowledged (QoS 1)
/// or what was written (QoS 0) as delivered, and sends again after a reconnection what was
/// not acknowledged — whether or not the broker kept the session. Ends when `stop` is
/// cancelled, or once the sink disconnected; returns what was never acknowledged.
async fn drive_sink(
    mut conn: Connection,
    cfg: Arc<MqttConfig>,
    dsm: Arc<DataSource>,
    metrics: Arc<engine::connector::ConnectorMetrics>,
    delivered: Deliveries,
    closing: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
) -> Unacked {
    let mut held = conn.unacked();
    let mut backoff = Backoff::default();
    loop {
        let polled = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            polled = conn.poll() => polled,
        };
        match polled {
            Ok(Incoming::Connected { session_present }) => {
                backoff.reset();
                metrics.connected();
                if held.len() > 0 {
                    tracing::info!(dsm = %dsm.id, messages = held.len(), session_present, "sending again what the broker had not acknowledged");
                }
                conn.resend(&mut held, session_present);
            }
            Ok(Incoming::Acked) if cfg.qos > 0 => {
                delivered.one();
                metrics.add(1);
            }
            Ok(Incoming::Sent) if cfg.qos == 0 => {
                delivered.one();
                metrics.add(1);
            }
            Ok(_) => {}
            // The sink disconnected on purpose.
            Err(_) if closing.load(Ordering::Relaxed) => break,
            Err(e) => {
                conn.hold(&mut held);
                let message = describe(&e, &cfg);
                tracing::warn!(dsm = %dsm.id, error = %message, unacknowledged = held.len(), "MQTT connection failed; retrying");
                metrics.failed(&message);
                if !backoff.wait(&stop).await {
                    break;
                }
            }
        }
    }
    conn.into_unacked(held)
}

impl Sink for Mqtt {
    const STORE_AND_FORWARD: bool = true;

    /// With `watermarks`: the uplink of an edge to its cloud.
    fn forwards_watermarks(&self) -> bool {
        self.config.watermarks
    }

    /// Publishes every observation; counts it delivered only once the broker acknowledged
    /// it (QoS 1) or it was written to the connection (QoS 0); sends again, after a
    /// reconnection, whatever was not acknowledged. At the end it waits for the
    /// acknowledgements until the engine gives it up (the stop deadline); what is still
    /// unacknowledged then goes to the dead letters, counted undelivered.
    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = self.config.clone();
        let identity = ctx.shared.resource::<engine::connector::Identity>();
        let topic = if cfg.topic.contains("{gateway}") {
            let me = identity
                .gateway()
                .or_else(|| identity.engine())
                .unwrap_or_else(|| "dda".to_owned());
            cfg.topic.replace("{gateway}", &me)
        } else {
            cfg.topic.clone()
        };
        let format = Format::of(&ctx.dsm);
        // Delivered means acknowledged, which comes after `next`: reported to the sink's
        // queue as acknowledgements come; without a queue, not a checkpoint's sink.
        ctx.writes_are_acknowledged_later();
        let conn = Connection::open(&ctx.dsm, &cfg, "sink", &ctx.shared)?;
        let client = conn.client();
        let delivered = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let stop = tokio_util::sync::CancellationToken::new();
        let mut driver = tokio::spawn(drive_sink(
            conn,
            cfg.clone(),
            ctx.dsm.clone(),
            ctx.metrics.clone(),
            Deliveries {
                count: delivered.clone(),
                queue: ctx.acknowledger(),
            },
            closing.clone(),
            stop.clone(),
        ));
        let mut sent: u64 = 0;
        let mut passed_on = None;
        'input: while let Some(batch) = ctx.next().await {
            for (n, o) in batch.iter().enumerate() {
                let t = topic
                    .replace("{source}", &o.source.text())
                    .replace("{name}", &o.name.text());
                match ctx
                    .attempt(client.publish(t, encode(o, format), &cfg, false))
                    .await
                {
                    Some(Ok(())) => sent += 1,
                    Some(Err(e)) => {
                        ctx.undelivered(&batch[n..], &e).await;
                        break 'input;
                    }
                    None => {
                        ctx.undelivered(&batch[n..], "given up while the broker was unreachable")
                            .await;
                        break 'input;
                    }
                }
            }
            // Event time passed on after the data it follows, at QoS 0: not counted as
            // data delivered; a newer one supersedes a lost one.
            if let Some(w) = ctx.watermark().filter(|w| passed_on < Some(*w))
                && client
                    .publish(topic.clone(), watermark_message(w), &cfg, true)
                    .await
                    .is_ok()
            {
                passed_on = Some(w);
            }
        }
        // Wait for the acknowledgements of everything sent, until given up.
        while delivered.load(Ordering::Relaxed) < sent && !ctx.given_up() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
                () = ctx.giving_up() => {}
            }
        }
        if delivered.load(Ordering::Relaxed) >= sent {
            // Everything acknowledged: a clean DISCONNECT, for up to a second.
            closing.store(true, Ordering::Relaxed);
            client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut driver).await;
        }
        stop.cancel();
        let unacked = driver.await.map(Unacked::payloads).unwrap_or_default();
        ctx.undelivered_payloads(
            unacked,
            "the broker had not acknowledged it when the sink was given up",
        )
        .await;
        Ok(())
    }
}

/// Lets a connection's driver finish sending what is queued (the DISCONNECT last), for up
/// to 2 s, then stops it.
async fn end_driver(driver: tokio::task::JoinHandle<()>) {
    let aborter = driver.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), driver)
        .await
        .is_err()
    {
        aborter.abort();
    }
}
