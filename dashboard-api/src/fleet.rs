//! The cloud's watch over its gateways: every `[fleet] poll_interval` it asks each
//! gateway's engine what it is and runs (`GET <edgeAnalyticsEngineBaseURL>/v1/engine`,
//! with the gateway's credential) and keeps the answer: online or offline, when last seen,
//! the last error, the engine's version and catalogues, and the state and counters of
//! every instance on it. An original FAR-EDGE edge engine, which has no such route, is
//! watched through its health check (`…/health-check`): online or not, and its uptime.
//! Each gateway that answers is then reconciled with the cloud's deployments
//! ([`crate::deploy`]); those of one that does not are pending until it is back.
//!
//! Polling, not heartbeats: the cloud already knows each gateway's URL and credential
//! (it calls them to forward and deploy), so an edge needs neither the cloud's address nor
//! a credential for it; an original edge engine, which sends nothing, is watched the same
//! way; and the cloud sets the load (100 gateways every 5 s is 20 small requests a second).
//! A gateway is offline from the first poll it fails until one succeeds; `lastSeen` says
//! since when.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::remote::join;
use crate::service::{GatewayTarget, Service};

/// Whether a gateway answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Not asked yet.
    Unknown,
    /// It answered the last poll.
    Online,
    /// It did not answer the last poll, or refused it.
    Offline,
}

/// What the cloud knows of a gateway.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The gateway's id.
    pub id: String,
    /// Whether it answers.
    pub status: Connection,
    /// When it last answered (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// When it was last asked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Why the last poll failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Its engine's version (`FAR-EDGE` for an original engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its engine's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Seconds since its engine started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// The processor types it runs.
    pub processors: Vec<String>,
    /// The protocols it speaks.
    pub connectors: Vec<String>,
    /// Its instances, as its engine reports them (state, failure, waiting, counters).
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<Value>,
}

impl GatewayStatus {
    fn unknown(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            status: Connection::Unknown,
            last_seen: None,
            last_checked: None,
            last_error: None,
            version: None,
            role: None,
            uptime: None,
            processors: Vec::new(),
            connectors: Vec::new(),
            instances: Vec::new(),
        }
    }
}

/// What a DDA engine answers on `/api/v1/engine`.
#[derive(Deserialize)]
struct EngineAnswer {
    version: Option<String>,
    role: Option<String>,
    uptime: Option<u64>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    connectors: Vec<String>,
    #[serde(default)]
    instances: Vec<Value>,
}

/// The gateways' statuses.
#[derive(Debug, Default)]
pub struct Fleet {
    statuses: Mutex<HashMap<String, GatewayStatus>>,
}

fn now() -> String {
    engine::Timestamp::now().to_string()
}

impl Fleet {
    /// Gateway `id`'s status as last polled (unknown before the first poll).
    #[must_use]
    pub fn status(&self, id: &str) -> GatewayStatus {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .unwrap_or_else(|| GatewayStatus::unknown(id))
    }

    fn record(&self, status: GatewayStatus) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(status.id.clone(), status);
    }

    /// Forgets the gateways not in `ids`.
    fn keep_only(&self, ids: &[String]) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| ids.contains(id));
    }
}

/// Asks gateway `t`'s engine what it is and runs.
async fn poll(s: &Service, t: &GatewayTarget) -> GatewayStatus {
    let mut status = s.fleet.status(&t.id);
    status.last_checked = Some(now());
    let Some(base) = t.analytics_engine.as_deref().filter(|b| !b.is_empty()) else {
        status.status = Connection::Offline;
        status.last_error = Some("the gateway has no edgeAnalyticsEngineBaseURL".into());
        return status;
    };
    let token = t.credentials();
    let answer = s
        .remote
        .call(Method::GET, &join(base, "/v1/engine"), token, None)
        .await;
    let outcome = match answer {
        Ok(a) if a.status.is_success() => serde_json::from_value::<EngineAnswer>(a.body)
            .map(|e| {
                status.version = e.version;
                status.role = e.role;
                status.uptime = e.uptime;
                status.processors = e.processors;
                status.connectors = e.connectors;
                status.instances = e.instances;
            })
            .map_err(|e| format!("an unreadable answer: {e}")),
        // An original FAR-EDGE engine: only its health check.
        Ok(a) if a.status == StatusCode::NOT_FOUND => {
            match s
                .remote
                .call(Method::GET, &join(base, "/health-check"), token, None)
                .await
            {
                Ok(h) if h.status.is_success() => {
                    status.version = Some("FAR-EDGE".into());
                    status.uptime = h.body.get("uptime").and_then(Value::as_u64);
                    Ok(())
                }
                Ok(h) => Err(format!("its health check answered {}", h.status)),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(a) => Err(format!(
            "answered {}{}",
            a.status,
            a.body
                .get("code")
                .or_else(|| a.body.get("error"))
                .and_then(Value::as_str)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(()) => {
            status.status = Connection::Online;
            status.last_seen.clone_from(&status.last_checked);
            status.last_error = None;
        }
        Err(e) => {
            if status.status != Connection::Offline {
                tracing::warn!(gateway = %t.id, error = %e, "a gateway is offline");
            }
            status.status = Connection::Offline;
            status.last_error = Some(e);
        }
    }
    status
}

/// Polls every gateway once, all at once, and reconciles each that answers with the
/// cloud's deployments ([`crate::deploy`]).
pub async fn poll_all(s: &Service) {
    let targets = s.gateway_targets();
    let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    let rounds = targets.iter().map(|t| async move {
        let status = poll(s, t).await;
        let was = s.fleet.status(&t.id).status;
        if status.status == Connection::Online && was != Connection::Online {
            tracing::info!(gateway = %t.id, version = ?status.version, "a gateway is online");
        }
        s.fleet.record(status.clone());
        if status.status == Connection::Online {
            crate::deploy::reconcile(s, t, &status.instances).await;
        } else {
            crate::deploy::gateway_away(s, &t.id, status.last_error.as_deref().unwrap_or(""));
        }
    });
    futures_util::future::join_all(rounds).await;
    s.fleet.keep_only(&ids);
}

/// Polls every `interval`, and at once after a change to the deployments, until the
/// service stops.
pub async fn watch(
    service: Weak<Service>,
    interval: Duration,
    stopping: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(s) = service.upgrade() else { return };
        tokio::select! {
            _ = ticks.tick() => {}
            () = s.deployments.wake.notified() => {}
            () = stopping.cancelled() => return,
        }
        poll_all(&s).await;
    }
}

/// Starts watching `service`'s gateways, when it is a cloud.
pub fn start(service: &Arc<Service>, interval: Duration) {
    if service.role == crate::config::FleetRole::Cloud && !interval.is_zero() {
        tokio::spawn(watch(
            Arc::downgrade(service),
            interval,
            service.stopping_token(),
        ));
    }
}
