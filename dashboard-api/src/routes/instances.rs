//! `/api/v1/analytics-instances`: analytics instances from analytics manifests — create,
//! read, replace their specification, delete, their state and lifecycle (`start`, `stop`,
//! `pause`, `resume`), their metrics, and discovery — with the response types they share
//! with the compatibility routes ([`StateDoc`], [`DiscoverCriteria`]).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::instance::Transition;
use manifests::EntityKind;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{OpenApi, ToSchema};

use super::models::meets_criteria;
use super::{Svc, created, encode_path};
use crate::body::{parse_criteria, parse_entity, render_entity, request_syntax};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::AnalyticsManifestDoc;
use crate::service::{InstanceView, Service, ServiceError};

/// A state, as the API spells it.
pub(super) fn state_schema() -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(["STOPPED", "RUNNING", "PAUSED", "FAILED"]))
            .description(Some("Lifecycle state of an analytics instance."))
            .build(),
    ))
}

/// Why an instance failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDoc {
    /// The processor (APM id) or data source (DSM id) that failed.
    pub at: String,
    /// What happened.
    pub reason: String,
}

impl From<engine::instance::Failure> for FailureDoc {
    fn from(f: engine::instance::Failure) -> Self {
        Self {
            at: f.at,
            reason: f.reason,
        }
    }
}

/// An analytics instance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDoc {
    /// The instance id (its analytics manifest's id).
    pub id: String,
    /// The analytics manifest's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifecycle state.
    #[schema(schema_with = state_schema)]
    pub state: String,
    /// The analytics manifest (plain-text secrets shown as `********`).
    #[schema(value_type = AnalyticsManifestDoc)]
    pub specification: Value,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDoc>,
    /// Input data sources not registered: the instance waits for them.
    pub waiting_for: Vec<String>,
    /// The connectors of its inputs and outputs while it runs: whether each reaches its
    /// system (broker, database), and the last error when not.
    pub connectors: Vec<ConnectorDoc>,
    /// Its checkpoints, when the server takes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointDoc>,
    /// On a cloud, the gateway it is deployed to and how far (`state` is then the state
    /// asked for; `deployment.observed` the gateway's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::deploy::DeploymentStatus>,
    /// On a cloud, for a template (`edgeGatewaySelector`): how many of the gateways chosen
    /// are in each phase, and each one's deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::deploy::Rollout>,
}

/// How an instance's checkpoints went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointDoc {
    /// Checkpoints completed since the instance started.
    pub completed: u64,
    /// Checkpoints that did not complete in time, or could not be written.
    pub failures: u64,
    /// When the last one completed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Its size in bytes.
    pub last_bytes: u64,
    /// How long it took, in milliseconds.
    pub last_millis: u64,
    /// Why the instance is not checkpointed, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checkpointed: Option<String>,
    /// The checkpoint it was restored from when it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
}

impl From<engine::checkpoint::CheckpointStatus> for CheckpointDoc {
    fn from(c: engine::checkpoint::CheckpointStatus) -> Self {
        Self {
            completed: c.completed,
            failures: c.failures,
            last: c.last,
            last_bytes: c.last_bytes,
            last_millis: c.last_millis,
            not_checkpointed: c.not_checkpointed,
            restored_from: c.restored_from,
        }
    }
}

/// A connector an instance depends on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorDoc {
    /// The data source (DSM id) it bridges.
    pub data_source_manifest_id: String,
    /// `source` (brings data in) or `sink` (writes data out).
    #[schema(pattern = "^(source|sink)$")]
    pub role: String,
    /// Whether it reaches its system.
    pub connected: bool,
    /// The last error, while it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A sink's observations accepted and not delivered since the engine started: given
    /// up when a stop could not write them in time; they are in the dead letters.
    pub undelivered: u64,
    /// A network sink's store-and-forward queue on disk, or an MQTT source's input log
    /// (what it accepted and no durable checkpoint covers yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueDoc>,
}

/// A network sink's store-and-forward queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDoc {
    /// Observations queued and not yet delivered.
    pub observations: u64,
    /// Messages (batches) queued and not yet delivered.
    pub messages: u64,
    /// Bytes of the queue's files.
    pub bytes: u64,
    /// How long the oldest queued observation has waited, in milliseconds (at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    /// Observations dropped from the full queue (`on_full = drop-oldest`), to the dead
    /// letters.
    pub dropped: u64,
    /// Observations older than the queue's `max_age`, to the dead letters.
    pub expired: u64,
    /// The queue's limit in bytes.
    pub max_bytes: u64,
    /// What the queue does when full.
    #[schema(pattern = "^(backpressure|drop-oldest)$")]
    pub on_full: String,
}

impl From<engine::spool::QueueStatus> for QueueDoc {
    fn from(q: engine::spool::QueueStatus) -> Self {
        Self {
            observations: q.observations,
            messages: q.messages,
            bytes: q.bytes,
            oldest_age_ms: q.oldest_age_ms,
            dropped: q.dropped,
            expired: q.expired,
            max_bytes: q.max_bytes,
            on_full: q.on_full.to_owned(),
        }
    }
}

impl From<engine::instance::ConnectorStatus> for ConnectorDoc {
    fn from(c: engine::instance::ConnectorStatus) -> Self {
        Self {
            data_source_manifest_id: c.dsm,
            role: c.role.to_owned(),
            connected: c.link.connected,
            error: c.link.error,
            undelivered: c.undelivered,
            queue: c.queue.map(QueueDoc::from),
        }
    }
}

impl From<InstanceView> for InstanceDoc {
    fn from(v: InstanceView) -> Self {
        Self {
            id: v.id,
            name: v.name,
            state: v.state.as_str().to_owned(),
            specification: v.specification,
            failure: v.failure.map(FailureDoc::from),
            waiting_for: v.waiting_for,
            connectors: v.connectors.into_iter().map(ConnectorDoc::from).collect(),
            checkpoint: v.checkpoint.map(CheckpointDoc::from),
            deployment: v.deployment,
            rollout: v.rollout,
        }
    }
}

/// Analytics instances.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceList {
    /// The instances.
    pub analytics_instances: Vec<InstanceDoc>,
}

impl FromIterator<InstanceView> for InstanceList {
    fn from_iter<I: IntoIterator<Item = InstanceView>>(views: I) -> Self {
        Self {
            analytics_instances: views.into_iter().map(InstanceDoc::from).collect(),
        }
    }
}

/// An instance's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateDoc {
    /// The instance id.
    pub id: String,
    /// Lifecycle state.
    #[schema(schema_with = state_schema)]
    pub state: String,
}

impl StateDoc {
    fn new(id: String, state: engine::State) -> Self {
        Self {
            id,
            state: state.as_str().to_owned(),
        }
    }
}

/// One processor's counters.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorMetricsDoc {
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
    /// Total time spent processing, milliseconds.
    pub busy_ms: f64,
    /// Mean processing time of a batch, milliseconds.
    pub mean_batch_ms: f64,
    /// Event time reached (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Batches by processing time: `[{"le": microseconds or null, "count": n}]`, not cumulative.
    pub batch_time: Vec<BucketDoc>,
    /// Named events the processor counted, by name (`enrich`: `unenriched-missing`,
    /// `unenriched-unreachable`, `stale`); absent when there are none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub events: std::collections::BTreeMap<String, u64>,
}

impl From<engine::instance::ProcessorStatus> for ProcessorMetricsDoc {
    fn from(p: engine::instance::ProcessorStatus) -> Self {
        let bounds = engine::instance::BATCH_BUCKETS_US;
        Self {
            mean_batch_ms: if p.batches == 0 {
                0.0
            } else {
                p.busy_ms / p.batches as f64
            },
            batch_time: p
                .batch_time_histogram
                .iter()
                .enumerate()
                .map(|(i, count)| BucketDoc {
                    le: bounds.get(i).copied(),
                    count: *count,
                })
                .collect(),
            id: p.id,
            processor_type: p.processor_type,
            received: p.received,
            emitted: p.emitted,
            rejected: p.rejected,
            batches: p.batches,
            busy_ms: p.busy_ms,
            watermark: p.watermark,
            events: p.events,
        }
    }
}

/// One histogram bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketDoc {
    /// Upper bound in microseconds (`null`: longer).
    pub le: Option<u64>,
    /// Batches in the bucket.
    pub count: u64,
}

/// An instance's metrics.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsDoc {
    /// The instance id.
    pub id: String,
    /// Lifecycle state.
    #[schema(schema_with = state_schema)]
    pub state: String,
    /// The last error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDoc>,
    /// Per-processor counters (of the current or last run).
    pub processors: Vec<ProcessorMetricsDoc>,
    /// The connectors of its inputs and outputs while it runs.
    pub connectors: Vec<ConnectorDoc>,
}

/// Discover criteria of the original engine: exact matches, all of them.
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
pub struct DiscoverCriteria {
    /// The instance id.
    #[serde(default)]
    pub id: Option<String>,
    /// The analytics manifest's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// The instances whose id and name equal every criterion of `body` (both generations of
/// the API discover alike).
pub(super) async fn discovered(
    s: &Service,
    body: &[u8],
) -> Result<Vec<InstanceView>, ServiceError> {
    let mut criteria = parse_criteria(body)?;
    // The original Open API asked its gateways by `_id`.
    if let Some(id) = criteria.remove("_id") {
        criteria.entry("id").or_insert(id);
    }
    Ok(s.instances()
        .await
        .into_iter()
        .filter(|v| meets_criteria(&criteria, &json!({"id": v.id, "name": v.name})))
        .collect())
}

/// The state of instance `id`.
pub(super) async fn state_of(s: &Service, id: String) -> Result<StateDoc, ServiceError> {
    let status = s.status(&id).await?;
    Ok(StateDoc::new(id, status.state))
}

/// Creates an instance from an analytics manifest already read, answering 201 with its
/// `Location` under `collection` and the body `shown` makes of it.
pub(super) async fn create_from<T: Serialize>(
    s: &Service,
    doc: Value,
    fresh_id: bool,
    collection: &str,
    shown: impl FnOnce(InstanceView) -> T,
) -> Result<Response, ServiceError> {
    let view = s.create_instance(doc, fresh_id).await?;
    let location = format!("{collection}/{}", encode_path(&view.id));
    Ok(created(location, Json(shown(view)).into_response()))
}

/// List analytics instances.
#[utoipa::path(get, path = "/api/v1/analytics-instances", tag = "analytics instances",
    responses(
        (status = 200, description = "Every instance", body = InstanceList),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn list_instances(State(s): Svc) -> Json<InstanceList> {
    Json(s.instances().await.into_iter().collect())
}

/// Create an analytics instance (STOPPED) from an analytics manifest, validated exactly as
/// `dda validate` would.
#[utoipa::path(post, path = "/api/v1/analytics-instances", tag = "analytics instances",
    request_body(content = AnalyticsManifestDoc, description = "The analytics manifest, in JSON or XML"),
    responses(
        (status = 201, description = "Created", body = InstanceDoc, headers(("Location" = String, description = "Where the instance is"))),
        (status = 400, description = "The body is not JSON or XML", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not create", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 415, description = "Neither JSON nor XML", body = ErrorBody),
        (status = 422, description = "Invalid: every problem in details", body = ErrorBody)))]
pub async fn create_instance(
    State(s): Svc,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc = parse_entity(
        &body,
        request_syntax(&headers)?,
        EntityKind::AnalyticsManifest,
    )?;
    Ok(create_from(
        &s,
        doc,
        false,
        "/api/v1/analytics-instances",
        InstanceDoc::from,
    )
    .await?)
}

/// Read an analytics instance.
#[utoipa::path(get, path = "/api/v1/analytics-instances/{id}", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The instance", body = InstanceDoc),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn read_instance(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<InstanceDoc>, ApiError> {
    Ok(Json(s.instance(&id).await?.into()))
}

/// Delete an analytics instance (refused while running or paused).
#[utoipa::path(delete, path = "/api/v1/analytics-instances/{id}", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not delete", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "Running or paused: stop it first", body = ErrorBody)))]
pub async fn delete_instance(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_instance(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read an instance's specification (its analytics manifest).
#[utoipa::path(get, path = "/api/v1/analytics-instances/{id}/specification", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The analytics manifest", body = AnalyticsManifestDoc),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn read_specification(
    State(s): Svc,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = s.instance(&id).await?;
    Ok(render_entity(
        StatusCode::OK,
        EntityKind::AnalyticsManifest,
        &view.specification,
        &headers,
    ))
}

/// Replace an instance's specification (refused while running or paused).
#[utoipa::path(put, path = "/api/v1/analytics-instances/{id}/specification", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    request_body(content = AnalyticsManifestDoc, description = "The analytics manifest, in JSON or XML"),
    responses(
        (status = 200, description = "Replaced; the instance is STOPPED", body = InstanceDoc),
        (status = 400, description = "The body is not JSON or XML", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not update", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "Running or paused: stop it first", body = ErrorBody),
        (status = 415, description = "Neither JSON nor XML", body = ErrorBody),
        (status = 422, description = "Invalid: every problem in details", body = ErrorBody)))]
pub async fn update_specification(
    State(s): Svc,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<InstanceDoc>, ApiError> {
    // An unknown id is a 404 whatever the body.
    s.instance(&id).await?;
    let doc = parse_entity(
        &body,
        request_syntax(&headers)?,
        EntityKind::AnalyticsManifest,
    )?;
    Ok(Json(s.update_instance(&id, doc).await?.into()))
}

/// Read an instance's state.
#[utoipa::path(get, path = "/api/v1/analytics-instances/{id}/state", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The state", body = StateDoc),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn read_state(State(s): Svc, Path(id): Path<String>) -> Result<Json<StateDoc>, ApiError> {
    Ok(Json(state_of(&s, id).await?))
}

macro_rules! lifecycle_route {
    ($name:ident, $path:literal, $t:expr, $summary:literal, $conflict:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "analytics instances",
            params(("id" = String, Path, description = "The instance id")),
            responses(
                (status = 200, description = "Done: the new state", body = StateDoc),
                (status = 401, description = "A token is needed", body = ErrorBody),
                (status = 403, description = "The token may not change the lifecycle", body = ErrorBody),
                (status = 404, description = "No such instance", body = ErrorBody),
                (status = 409, description = $conflict, body = ErrorBody),
                (status = 422, description = "It cannot start: a processor or connector refuses its configuration", body = ErrorBody)))]
        pub async fn $name(State(s): Svc, Path(id): Path<String>) -> Result<Json<StateDoc>, ApiError> {
            let status = s.transition(&id, $t).await?;
            Ok(Json(StateDoc::new(id, status.state)))
        }
    };
}

lifecycle_route!(
    start,
    "/api/v1/analytics-instances/{id}/start",
    Transition::Start,
    "Start a STOPPED or FAILED instance.",
    "Not STOPPED or FAILED"
);
lifecycle_route!(
    stop,
    "/api/v1/analytics-instances/{id}/stop",
    Transition::Stop,
    "Stop a RUNNING, PAUSED or FAILED instance, draining it.",
    "Already STOPPED"
);
lifecycle_route!(
    pause,
    "/api/v1/analytics-instances/{id}/pause",
    Transition::Pause,
    "Pause a RUNNING instance: it keeps its state and holds its input.",
    "Not RUNNING"
);
lifecycle_route!(
    resume,
    "/api/v1/analytics-instances/{id}/resume",
    Transition::Resume,
    "Resume a PAUSED instance.",
    "Not PAUSED"
);

/// An instance's metrics: per processor counters and batch processing times, and the last
/// error.
#[utoipa::path(get, path = "/api/v1/analytics-instances/{id}/metrics", tag = "analytics instances",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The metrics", body = MetricsDoc),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn instance_metrics(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<MetricsDoc>, ApiError> {
    let status = s.status(&id).await?;
    Ok(Json(MetricsDoc {
        id,
        state: status.state.as_str().to_owned(),
        connectors: status
            .connectors
            .into_iter()
            .map(ConnectorDoc::from)
            .collect(),
        failure: status.failure.map(FailureDoc::from),
        processors: status
            .processors
            .into_iter()
            .map(ProcessorMetricsDoc::from)
            .collect(),
    }))
}

/// Discover instances: `{id?, name?}`, exact matches.
#[utoipa::path(post, path = "/api/v1/analytics-instances/discover", tag = "analytics instances",
    request_body(content = DiscoverCriteria),
    responses(
        (status = 200, description = "The matching instances", body = InstanceList),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 422, description = "The criteria are not an object", body = ErrorBody)))]
pub async fn discover_instances(
    State(s): Svc,
    body: Bytes,
) -> Result<Json<InstanceList>, ApiError> {
    Ok(Json(discovered(&s, &body).await?.into_iter().collect()))
}

/// The instance routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route(
            "/api/v1/analytics-instances",
            get(list_instances).post(create_instance),
        )
        .route(
            "/api/v1/analytics-instances/discover",
            post(discover_instances),
        )
        .route(
            "/api/v1/analytics-instances/{id}",
            get(read_instance).delete(delete_instance),
        )
        .route(
            "/api/v1/analytics-instances/{id}/specification",
            get(read_specification).put(update_specification),
        )
        .route("/api/v1/analytics-instances/{id}/state", get(read_state))
        .route("/api/v1/analytics-instances/{id}/start", post(start))
        .route("/api/v1/analytics-instances/{id}/stop", post(stop))
        .route("/api/v1/analytics-instances/{id}/pause", post(pause))
        .route("/api/v1/analytics-instances/{id}/resume", post(resume))
        .route(
            "/api/v1/analytics-instances/{id}/metrics",
            get(instance_metrics),
        )
}

/// The instance operations.
#[derive(OpenApi)]
#[openapi(paths(
    list_instances,
    create_instance,
    read_instance,
    delete_instance,
    read_specification,
    update_specification,
    read_state,
    start,
    stop,
    pause,
    resume,
    instance_metrics,
    discover_instances,
))]
pub struct Doc;
