//! The original FAR-EDGE engine's routes, for its clients: `/api/analytics-instances...`
//! with its status codes (204 for lifecycle and delete) and error bodies
//! (`{"error": "ANALYTICS_INSTANCE_RUNNING"}`, see [`CompatError`]), and its health checks
//! (`/health-check`, `/api/health-check`). They call the same service as the v1 routes;
//! only the shapes differ.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use engine::instance::Transition;
use manifests::EntityKind;
use manifests::bundle::Syntax;
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::Svc;
use super::instances::{
    DiscoverCriteria, StateDoc, create_from, discovered, state_of, state_schema,
};
use crate::body::parse_entity;
use crate::error::{CompatError, CompatErrorBody};
use crate::openapi::AnalyticsManifestDoc;
use crate::service::{InstanceView, Service, ServiceError};

/// The original engine's instance view.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatInstance {
    /// The instance id.
    pub id: String,
    /// The analytics manifest.
    #[schema(value_type = AnalyticsManifestDoc)]
    pub specification: Value,
    /// The state.
    #[schema(schema_with = state_schema)]
    pub state: String,
}

/// The original engine's discover answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatInstanceList {
    /// The instances.
    pub analytics_instances: Vec<CompatInstance>,
}

impl From<InstanceView> for CompatInstance {
    fn from(v: InstanceView) -> Self {
        Self {
            id: v.id,
            specification: v.specification,
            state: v.state.as_str().to_owned(),
        }
    }
}

/// The original engine's health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UptimeDoc {
    /// Seconds since the server started.
    pub uptime: u64,
}

/// An analytics manifest in JSON, the only syntax the original read.
fn manifest(bytes: &[u8]) -> Result<Value, ServiceError> {
    parse_entity(bytes, Syntax::Json, EntityKind::AnalyticsManifest)
}

/// Create an instance (a new id is always given, as the original did).
#[utoipa::path(post, path = "/api/analytics-instances", tag = "FAR-EDGE compatibility",
    request_body(content = AnalyticsManifestDoc),
    responses(
        (status = 201, description = "Created", body = CompatInstance, headers(("Location" = String, description = "Where the instance is"))),
        (status = 400, description = "Invalid, with the original engine's code", body = CompatErrorBody)))]
pub async fn compat_create(State(s): Svc, body: Bytes) -> Result<Response, CompatError> {
    let doc = manifest(&body)?;
    Ok(create_from(
        &s,
        doc,
        true,
        "/api/analytics-instances",
        CompatInstance::from,
    )
    .await?)
}

/// Read an instance.
#[utoipa::path(get, path = "/api/analytics-instances/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The instance", body = CompatInstance),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_read(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<CompatInstance>, CompatError> {
    Ok(Json(s.instance(&id).await?.into()))
}

/// Delete a stopped instance.
#[utoipa::path(delete, path = "/api/analytics-instances/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_delete(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<StatusCode, CompatError> {
    s.delete_instance(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read an instance's specification.
#[utoipa::path(get, path = "/api/analytics-instances/{id}/specification", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The analytics manifest", body = AnalyticsManifestDoc),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_read_specification(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<Value>, CompatError> {
    Ok(Json(s.instance(&id).await?.specification))
}

/// Replace a stopped instance's specification.
#[utoipa::path(put, path = "/api/analytics-instances/{id}/specification", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    request_body(content = AnalyticsManifestDoc),
    responses(
        (status = 200, description = "The new analytics manifest", body = AnalyticsManifestDoc),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING, or invalid with the original engine's code", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_update_specification(
    State(s): Svc,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, CompatError> {
    // An unknown id is a 404 whatever the body.
    s.instance(&id).await?;
    let mut doc = manifest(&body)?;
    // The original ignored ids in bodies: the path names the instance.
    with_id(&mut doc, &id);
    Ok(Json(s.update_instance(&id, doc).await?.specification))
}

/// Gives `doc` the id `id`, whatever id (`id` or `_id`) its body had: the original ignored
/// ids in bodies.
pub(super) fn with_id(doc: &mut Value, id: &str) {
    if let Some(o) = doc.as_object_mut() {
        o.remove("_id");
        o.insert("id".into(), Value::String(id.to_owned()));
    }
}

/// Read an instance's state.
#[utoipa::path(get, path = "/api/analytics-instances/{id}/state", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The state", body = StateDoc),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_state(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<StateDoc>, CompatError> {
    Ok(Json(state_of(&s, id).await?))
}

/// Discover instances: `{id?, name?}`, exact matches (empty strings and nulls match all).
#[utoipa::path(post, path = "/api/analytics-instances/discover", tag = "FAR-EDGE compatibility",
    request_body(content = DiscoverCriteria),
    responses(
        (status = 200, description = "The matching instances", body = CompatInstanceList),
        (status = 400, description = "The criteria are not a JSON object", body = CompatErrorBody)))]
pub async fn compat_discover(
    State(s): Svc,
    body: Bytes,
) -> Result<Json<CompatInstanceList>, CompatError> {
    Ok(Json(CompatInstanceList {
        analytics_instances: discovered(&s, &body)
            .await?
            .into_iter()
            .map(CompatInstance::from)
            .collect(),
    }))
}

/// A lifecycle operation, answered as the original did: 204 and no body.
async fn lifecycle(s: &Service, id: &str, t: Transition) -> Result<StatusCode, CompatError> {
    s.transition(id, t).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start an instance.
#[utoipa::path(post, path = "/api/analytics-instances/{id}/start", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 204, description = "Started"),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING, or FAILED when it cannot start", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_start(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<StatusCode, CompatError> {
    lifecycle(&s, &id, Transition::Start).await
}

/// Stop an instance.
#[utoipa::path(post, path = "/api/analytics-instances/{id}/stop", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, description = "ANALYTICS_INSTANCE_NOT_RUNNING", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_stop(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, CompatError> {
    lifecycle(&s, &id, Transition::Stop).await
}

/// The original engine's health check.
#[utoipa::path(get, path = "/health-check", tag = "FAR-EDGE compatibility",
    responses((status = 200, description = "The server is up", body = UptimeDoc)))]
pub async fn health_check(State(s): Svc) -> Json<UptimeDoc> {
    Json(UptimeDoc {
        uptime: s.started.elapsed().as_secs(),
    })
}

/// The original engine's health check, under `/api` as it was mounted.
#[utoipa::path(get, path = "/api/health-check", tag = "FAR-EDGE compatibility",
    responses((status = 200, description = "The server is up", body = UptimeDoc)))]
pub async fn api_health_check(state: Svc) -> Json<UptimeDoc> {
    health_check(state).await
}

/// The original engine's routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/health-check", get(health_check))
        .route("/api/health-check", get(api_health_check))
        .route("/api/analytics-instances", post(compat_create))
        .route("/api/analytics-instances/discover", post(compat_discover))
        .route(
            "/api/analytics-instances/{id}",
            get(compat_read).delete(compat_delete),
        )
        .route(
            "/api/analytics-instances/{id}/specification",
            get(compat_read_specification).put(compat_update_specification),
        )
        .route("/api/analytics-instances/{id}/state", get(compat_state))
        .route("/api/analytics-instances/{id}/start", post(compat_start))
        .route("/api/analytics-instances/{id}/stop", post(compat_stop))
}

/// The original engine's part of the document.
#[derive(OpenApi)]
#[openapi(paths(
    health_check,
    api_health_check,
    compat_create,
    compat_read,
    compat_delete,
    compat_read_specification,
    compat_update_specification,
    compat_state,
    compat_discover,
    compat_start,
    compat_stop,
))]
pub struct Doc;
