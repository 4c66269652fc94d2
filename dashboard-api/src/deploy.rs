//! A cloud's deployments: an analytics manifest whose `edgeGatewayReferenceID` names one of
//! the cloud's gateways runs on that gateway's engine, not in the cloud.
//!
//! The desired state lives in the cloud: the manifest (in its repository) and the state
//! asked for (in its store, as for its own instances). Whenever the cloud polls a gateway
//! ([`crate::fleet`]) and after every change through its API, a reconcile pass brings the
//! gateway to it:
//!
//! 1. every model the manifest needs (data interfaces, data kinds, data source definitions
//!    and manifests, processor definitions) is on the gateway as the cloud has it: created
//!    when missing, replaced when different;
//! 2. the instance is on the gateway with the cloud's specification: created when missing,
//!    replaced (stopped first) when the gateway's revision differs — an older
//!    specification, or one changed on the edge behind the cloud's back;
//! 3. the instance is in the desired state: started, resumed, paused or stopped.
//!
//! Drift is corrected, not only reported: the cloud's desired state wins. An instance
//! deleted or stopped on the edge directly is created or started again at the next poll;
//! to stop it for good, stop it through the cloud. An instance that fails on the edge is
//! reported `failed` with the edge's reason and started again at each poll while its
//! desired state is RUNNING. A manifest deleted from the cloud (or moved to another
//! gateway) is stopped and deleted on its old gateway, even one offline at the time: the
//! retirement is kept in the store until done. Instances the edge has of its own, which
//! the cloud never deployed, are left alone.
//!
//! Each deployment's phase is `pending` (not applied yet: the gateway is offline or not
//! yet reached), `applied` (the gateway has the specification and the desired state, not
//! running), `running`, or `failed` with the reason.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::{Method, StatusCode};
use engine::State;
use manifests::{Entity, EntityKind};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::remote::{Answer, join};
use crate::service::{GatewayTarget, Service};

/// Where a deployment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not applied yet: the gateway is offline or not yet reached.
    Pending,
    /// The gateway has the specification and the desired state, which is not RUNNING.
    Applied,
    /// It runs on the gateway.
    Running,
    /// The gateway refused it, or it failed there: see `reason`.
    Failed,
}

/// A deployment's status.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The gateway it is deployed to.
    pub gateway: String,
    /// Where it is.
    pub phase: Phase,
    /// Why it is pending or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its state on the gateway, as last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub observed: Option<State>,
    /// When the phase last changed (RFC 3339).
    pub since: String,
}

/// How far a template is deployed: the gateways its selector chooses, and how many of them
/// are in each phase.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The gateways chosen.
    pub targeted: usize,
    /// Not applied yet.
    pub pending: usize,
    /// Applied, not running (the state asked for is not RUNNING).
    pub applied: usize,
    /// Running.
    pub running: usize,
    /// Failed.
    pub failed: usize,
    /// Each chosen gateway's deployment.
    pub gateways: Vec<DeploymentStatus>,
}

impl Rollout {
    /// The counts over `gateways`.
    #[must_use]
    pub fn of(gateways: Vec<DeploymentStatus>) -> Self {
        let count = |p: Phase| gateways.iter().filter(|d| d.phase == p).count();
        Self {
            targeted: gateways.len(),
            pending: count(Phase::Pending),
            applied: count(Phase::Applied),
            running: count(Phase::Running),
            failed: count(Phase::Failed),
            gateways,
        }
    }
}

/// A cloud's deployments.
#[derive(Debug, Default)]
pub struct Deployments {
    /// By (analytics manifest, gateway).
    statuses: Mutex<HashMap<(String, String), DeploymentStatus>>,
    /// (analytics manifest, gateway) to stop and delete on the gateway.
    retired: Mutex<Vec<(String, String)>>,
    /// The state asked for each deployed instance (also in the store).
    desired: Mutex<HashMap<String, State>>,
    /// By (analytics manifest, gateway): the digest of the models last made to hold on
    /// the gateway, so that a model changed in the cloud is sent again.
    models: Mutex<HashMap<(String, String), String>>,
    /// Woken by every change, for a reconcile pass at once.
    pub wake: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Deployments {
    /// With the retirements the store kept.
    #[must_use]
    pub fn new(retired: Vec<(String, String)>) -> Self {
        Self {
            retired: Mutex::new(retired),
            ..Self::default()
        }
    }

    /// The state asked for deployed instance `id` (STOPPED when never asked).
    #[must_use]
    pub fn desired(&self, id: &str) -> State {
        lock(&self.desired)
            .get(id)
            .copied()
            .unwrap_or(State::Stopped)
    }

    /// Records the state asked for `id` (the caller keeps it in the store too).
    pub fn set_desired(&self, id: &str, state: State) {
        lock(&self.desired).insert(id.to_owned(), state);
    }

    /// Forgets `id`: no longer deployed.
    pub fn remove(&self, id: &str) {
        lock(&self.desired).remove(id);
        lock(&self.statuses).retain(|(i, _), _| i != id);
        lock(&self.models).retain(|(i, _), _| i != id);
    }

    /// Forgets the deployment of `id` to `gateway`: not deployed there any more.
    pub fn forget(&self, id: &str, gateway: &str) {
        let key = (id.to_owned(), gateway.to_owned());
        lock(&self.statuses).remove(&key);
        lock(&self.models).remove(&key);
    }

    /// The status of the deployment of `id` to `gateway` (pending before the first pass).
    #[must_use]
    pub fn status(&self, id: &str, gateway: &str) -> DeploymentStatus {
        lock(&self.statuses)
            .get(&(id.to_owned(), gateway.to_owned()))
            .cloned()
            .unwrap_or_else(|| DeploymentStatus {
                gateway: gateway.to_owned(),
                phase: Phase::Pending,
                reason: Some("not applied yet".into()),
                observed: None,
                since: engine::Timestamp::now().to_string(),
            })
    }

    fn set(
        &self,
        id: &str,
        gateway: &str,
        phase: Phase,
        reason: Option<String>,
        observed: Option<State>,
    ) {
        let mut all = lock(&self.statuses);
        let key = (id.to_owned(), gateway.to_owned());
        let before = all.get(&key);
        let since = match before {
            Some(d) if d.phase == phase => d.since.clone(),
            _ => engine::Timestamp::now().to_string(),
        };
        if phase == Phase::Failed && before.is_none_or(|d| d.phase != Phase::Failed) {
            tracing::warn!(instance = %id, gateway = %gateway, reason = ?reason, "a deployment failed");
        }
        all.insert(
            key,
            DeploymentStatus {
                gateway: gateway.to_owned(),
                phase,
                reason,
                observed,
                since,
            },
        );
    }

    /// The retirements still to do on `gateway`.
    fn retired_on(&self, gateway: &str) -> Vec<String> {
        lock(&self.retired)
            .iter()
            .filter(|(_, g)| g == gateway)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Notes that `id` is to be removed from `gateway` (kept in the store by the caller).
    pub fn retire(&self, id: &str, gateway: &str) {
        let mut r = lock(&self.retired);
        if !r.iter().any(|(i, g)| i == id && g == gateway) {
            r.push((id.to_owned(), gateway.to_owned()));
        }
    }

    /// Notes that `id` is on `gateway` again: not to be removed from it.
    pub fn unretire(&self, id: &str, gateway: &str) -> bool {
        let mut r = lock(&self.retired);
        let before = r.len();
        r.retain(|(i, g)| !(i == id && g == gateway));
        r.len() != before
    }
}

/// An entity's revision: the SHA-256 of its JSON (the same on every engine holding it).
#[must_use]
pub fn revision(entity: &Entity) -> String {
    crate::config::sha256_hex(&entity.to_json().to_string())
}

/// The order models are created in: what is referred to before what refers to it.
fn rank(kind: EntityKind) -> Option<u8> {
    Some(match kind {
        EntityKind::DataInterface => 0,
        EntityKind::DataKind => 1,
        EntityKind::DataSourceDefinition => 2,
        EntityKind::DataSourceManifest => 3,
        EntityKind::AnalyticsProcessorDefinition => 4,
        EntityKind::AnalyticsProcessorManifest => 5,
        _ => return None,
    })
}

/// Every model `am` needs, directly or not, in the order to create them (gateways are the
/// cloud's: never sent).
fn needed(s: &Service, am: &Entity) -> Vec<Entity> {
    let mut out: Vec<Entity> = Vec::new();
    let mut seen: Vec<(EntityKind, String)> = Vec::new();
    let mut todo: Vec<(EntityKind, String)> = am
        .references()
        .iter()
        .map(|r| (r.kind, r.id.to_owned()))
        .collect();
    // Side outputs (`lateOutput`) are data source manifests named by a parameter.
    if let Entity::AnalyticsManifest(m) = am {
        todo.extend(
            m.apms()
                .iter()
                .flat_map(|apm| &apm.parameters.parameter)
                .filter(|p| manifests::parameters::SIDE_OUTPUT_PARAMETERS.contains(&p.key.as_str()))
                .filter_map(|p| p.value.as_str())
                .map(|id| (EntityKind::DataSourceManifest, id.to_owned())),
        );
    }
    while let Some((kind, id)) = todo.pop() {
        if rank(kind).is_none() || seen.contains(&(kind, id.clone())) {
            continue;
        }
        seen.push((kind, id.clone()));
        if let Some(e) = s.repository.get(kind, &id) {
            todo.extend(e.references().iter().map(|r| (r.kind, r.id.to_owned())));
            out.push(e);
        }
    }
    out.sort_by_key(|e| rank(e.kind()));
    out
}

/// Calls the gateway's engine.
struct Edge<'a> {
    s: &'a Service,
    t: &'a GatewayTarget,
    base: &'a str,
}

impl Edge<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        self.s
            .remote
            .call(method, &join(self.base, path), self.t.credentials(), body)
            .await
            .map_err(|e| e.to_string())
    }

    /// Calls, and wants a success.
    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, String> {
        let what = format!("{method} {path}");
        let a = self.call(method, path, body).await?;
        if a.status.is_success() {
            Ok(a)
        } else {
            Err(refusal(&what, &a))
        }
    }

    /// Makes the gateway hold `e` as the cloud has it: created (one call to a gateway
    /// that lacks it), or, when it is there, replaced if different.
    async fn ensure_model(&self, e: &Entity, shown: &Value) -> Result<(), String> {
        let folder = e.kind().info().folder;
        let doc = e.to_json();
        let created = self
            .call(Method::POST, &format!("/v1/{folder}"), Some(&doc))
            .await?;
        if created.status.is_success() {
            return Ok(());
        }
        if created.status != StatusCode::CONFLICT {
            return Err(refusal(&format!("POST /v1/{folder}"), &created));
        }
        let id = crate::routes::encode_path(e.id().unwrap_or_default());
        let item = format!("/v1/{folder}/{id}");
        let have = self.call(Method::GET, &item, None).await?;
        match have.status {
            s if s.is_success() && &have.body == shown => Ok(()),
            s if s.is_success() => self.ok(Method::PUT, &item, Some(&doc)).await.map(drop),
            _ => Err(refusal(&format!("GET {item}"), &have)),
        }
    }
}

/// A refusal, in words: what was asked, the status, the code and message given.
fn refusal(what: &str, a: &Answer) -> String {
    let code = a
        .body
        .get("code")
        .or_else(|| a.body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = a
        .body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{what}: the gateway answered {} {code} {message}", a.status)
        .trim_end()
        .to_owned()
}

fn state_of(v: &Value) -> Option<State> {
    serde_json::from_value(v.get("state")?.clone()).ok()
}

/// Brings instance `am` on gateway `edge` to the cloud's desired state, from what the
/// gateway showed (`observed`); the state it ends in.
async fn apply(edge: &Edge<'_>, am: &Entity, observed: Option<&Value>) -> Result<State, String> {
    let s = edge.s;
    let id = am.id().unwrap_or_default();
    let path = format!("/v1/analytics-instances/{}", crate::routes::encode_path(id));
    let rev = revision(am);
    let mut state = observed.and_then(state_of);
    let current = observed
        .and_then(|o| o.get("revision"))
        .and_then(Value::as_str)
        == Some(rev.as_str());
    let models = needed(s, am);
    let digest = crate::config::sha256_hex(
        &models
            .iter()
            .map(|m| m.to_json().to_string())
            .collect::<String>(),
    );
    let key = (id.to_owned(), edge.t.id.clone());
    if !current || lock(&s.deployments.models).get(&key) != Some(&digest) {
        for model in models {
            edge.ensure_model(&model, &s.show(&model))
                .await
                .map_err(|e| {
                    format!(
                        "model {} `{}`: {e}",
                        model.kind(),
                        model.id().unwrap_or_default()
                    )
                })?;
        }
        lock(&s.deployments.models).insert(key, digest);
    }
    if !current {
        let doc = am.to_json();
        let replace = match state {
            None => {
                let created = edge
                    .call(Method::POST, "/v1/analytics-instances", Some(&doc))
                    .await?;
                if created.status == StatusCode::CONFLICT {
                    // It is there, not yet seen by a poll: replace it.
                    let a = edge.ok(Method::GET, &format!("{path}/state"), None).await?;
                    state = state_of(&a.body);
                    true
                } else if created.status.is_success() {
                    state = Some(State::Stopped);
                    false
                } else {
                    return Err(refusal("POST /v1/analytics-instances", &created));
                }
            }
            Some(_) => true,
        };
        if replace {
            if matches!(state, Some(State::Running | State::Paused)) {
                edge.ok(Method::POST, &format!("{path}/stop"), None).await?;
            }
            edge.ok(Method::PUT, &format!("{path}/specification"), Some(&doc))
                .await?;
            state = Some(State::Stopped);
        }
    }
    let mut state = state.unwrap_or(State::Stopped);
    // The desired state as it is now: a change asked for while the models and the
    // specification went over (a start right after a create) is applied in this pass,
    // not the next.
    let desired = s.deployments.desired(id);
    // The desired state, one transition at a time (at most three: stop, start, pause).
    for _ in 0..3 {
        if state == desired {
            break;
        }
        let verb = match (state, desired) {
            (State::Paused, State::Running) => "resume",
            (State::Running, State::Paused) => "pause",
            (State::Stopped | State::Failed, State::Running | State::Paused) => "start",
            (_, State::Stopped) => "stop",
            _ => return Err(format!("cannot bring it from {state} to {desired}")),
        };
        let a = edge
            .ok(Method::POST, &format!("{path}/{verb}"), None)
            .await?;
        state = state_of(&a.body).unwrap_or(desired);
        if verb == "start" && state == State::Failed {
            break;
        }
    }
    Ok(state)
}

/// Brings gateway `t` to the cloud's desired state, from what its last poll showed
/// (`instances`, its engine's instance statuses).
pub async fn reconcile(s: &Service, t: &GatewayTarget, instances: &[Value]) {
    let Some(base) = t.analytics_engine.as_deref() else {
        return;
    };
    let edge = Edge { s, t, base };
    let observed = |id: &str| instances.iter().find(|i| i["id"] == id);
    for (id, am) in s.deployed_on(&t.id) {
        if s.deployments.unretire(&id, &t.id) {
            s.forget_retired(&id, &t.id).await;
        }
        let seen = observed(&id);
        let outcome = match am {
            Ok(am) => apply(&edge, &am, seen).await,
            Err(e) => Err(e),
        };
        let (phase, reason, state) = match outcome {
            Ok(State::Failed) => {
                let why = seen
                    .and_then(|o| o.pointer("/failure/message"))
                    .and_then(Value::as_str)
                    .unwrap_or("it failed on the gateway");
                (Phase::Failed, Some(why.to_owned()), Some(State::Failed))
            }
            Ok(State::Running) => (Phase::Running, None, Some(State::Running)),
            Ok(other) => (Phase::Applied, None, Some(other)),
            Err(e) => (Phase::Failed, Some(e), seen.and_then(state_of)),
        };
        s.deployments.set(&id, &t.id, phase, reason, state);
    }
    for id in s.deployments.retired_on(&t.id) {
        let path = format!(
            "/v1/analytics-instances/{}",
            crate::routes::encode_path(&id)
        );
        if let Some(seen) = observed(&id) {
            if matches!(state_of(seen), Some(State::Running | State::Paused)) {
                let _ = edge.call(Method::POST, &format!("{path}/stop"), None).await;
            }
            match edge.call(Method::DELETE, &path, None).await {
                Ok(a) if a.status.is_success() || a.status == StatusCode::NOT_FOUND => {}
                Ok(a) => {
                    tracing::warn!(instance = %id, gateway = %t.id, error = %refusal("DELETE", &a), "cannot retire a deployment yet");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(instance = %id, gateway = %t.id, error = %e, "cannot retire a deployment yet");
                    continue;
                }
            }
        }
        s.deployments.unretire(&id, &t.id);
        s.forget_retired(&id, &t.id).await;
    }
}

/// Marks every deployment on gateway `gateway`, offline, pending (a failure stays).
pub fn gateway_away(s: &Service, gateway: &str, why: &str) {
    for (id, _) in s.deployed_on(gateway) {
        let id = id.as_str();
        let now = s.deployments.status(id, gateway);
        if now.phase != Phase::Failed || now.observed.is_some() {
            s.deployments.set(
                id,
                gateway,
                Phase::Pending,
                Some(format!("the gateway is offline: {why}")),
                now.observed,
            );
        }
    }
}
