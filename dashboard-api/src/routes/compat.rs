//! The original FAR-EDGE engine's routes, for its clients: `/api/analytics-instances...`
//! with its status codes (204 for lifecycle and delete) and error bodies
//! (`{"error": "ANALYTICS_INSTANCE_RUNNING"}`, see [`CompatError`]), and its health checks
//! (`/health-check`, `/api/health-check`). They call the same service as the v1 routes;
//! only the shapes differ. A call with `?edgeGatewayReferenceID=` goes to that gateway's
//! engine, as the original Open API forwarded it ([`super::scope`]); an instance's name is
//! unique, as the original required (`NAME_TAKEN`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
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
use super::scope::{Scope, Via, discover_local, forward};
use crate::body::{parse_criteria, parse_entity};
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
    /// The instances: those of gateways' engines (on a cloud) with their
    /// `edgeGatewayReferenceID`, then this engine's.
    #[schema(value_type = Vec<CompatInstance>)]
    pub analytics_instances: Vec<Value>,
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

/// A body as any JSON object (to forward: the gateway's engine checks it).
pub(super) fn json_object(bytes: &[u8]) -> Result<Value, CompatError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ServiceError::invalid("the body is a JSON object").into()),
        Err(e) => Err(ServiceError::malformed(format!("invalid JSON: {e}")).into()),
    }
}

/// The original's 400 with `code`.
pub(super) fn refused(code: &str, message: String) -> CompatError {
    CompatError::new(StatusCode::BAD_REQUEST, code, Some(message))
}

/// The original's checks of required fields, in its order: the first of `fields` (field,
/// code) that `doc` lacks or leaves empty is refused with its code.
pub(super) fn require(doc: &Value, fields: &[(&str, &str)], what: &str) -> Result<(), CompatError> {
    for (field, code) in fields {
        if doc
            .get(*field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(refused(code, format!("{what} needs `{field}`")));
        }
    }
    Ok(())
}

/// The original's `NAME_TAKEN`: another instance (than `own`) has the manifest's name.
fn name_free(s: &Service, doc: &Value, own: Option<&str>) -> Result<(), CompatError> {
    let Some(name) = doc.get("name").and_then(Value::as_str) else {
        return Ok(());
    };
    match s.named(EntityKind::AnalyticsManifest, name, own) {
        Some(other) => Err(refused(
            "NAME_TAKEN",
            format!("analytics instance `{other}` is named `{name}` already"),
        )),
        None => Ok(()),
    }
}

const COLLECTION: &str = "/api/analytics-instances";

/// Forwards a call on instance `id` (`suffix` after its path) to gateway `gateway`.
async fn to_gateway(
    s: &Service,
    gateway: &str,
    method: Method,
    id: &str,
    suffix: &str,
    body: Option<&Value>,
) -> Result<Response, CompatError> {
    let path = format!("/analytics-instances/{}{suffix}", super::encode_path(id));
    forward(
        s,
        gateway,
        Via::AnalyticsEngine,
        method,
        &path,
        body,
        COLLECTION,
    )
    .await
}

/// Create an instance (a new id is always given, as the original did).
#[utoipa::path(post, path = "/api/analytics-instances", tag = "FAR-EDGE compatibility",
    params(("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    request_body(content = AnalyticsManifestDoc),
    responses(
        (status = 201, description = "Created", body = CompatInstance, headers(("Location" = String, description = "Where the instance is"))),
        (status = 400, description = "Invalid, with the original engine's code", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_create(
    State(s): Svc,
    scope: Scope,
    body: Bytes,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        let doc = json_object(&body)?;
        return forward(
            &s,
            g,
            Via::AnalyticsEngine,
            Method::POST,
            "/analytics-instances",
            Some(&doc),
            COLLECTION,
        )
        .await;
    }
    let doc = manifest(&body)?;
    name_free(&s, &doc, None)?;
    Ok(create_from(&s, doc, true, COLLECTION, CompatInstance::from).await?)
}

/// Read an instance.
#[utoipa::path(get, path = "/api/analytics-instances/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 200, description = "The instance", body = CompatInstance),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 400, description = "EDGE_GATEWAY_NOT_FOUND: no such gateway", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_read(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        return to_gateway(&s, g, Method::GET, &id, "", None).await;
    }
    Ok(Json(CompatInstance::from(s.instance(&id).await?)).into_response())
}

/// Delete a stopped instance.
#[utoipa::path(delete, path = "/api/analytics-instances/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_delete(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        return to_gateway(&s, g, Method::DELETE, &id, "", None).await;
    }
    s.delete_instance(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Read an instance's specification.
#[utoipa::path(get, path = "/api/analytics-instances/{id}/specification", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 200, description = "The analytics manifest", body = AnalyticsManifestDoc),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 400, description = "EDGE_GATEWAY_NOT_FOUND: no such gateway", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_read_specification(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        return to_gateway(&s, g, Method::GET, &id, "/specification", None).await;
    }
    Ok(Json(s.instance(&id).await?.specification).into_response())
}

/// Replace a stopped instance's specification.
#[utoipa::path(put, path = "/api/analytics-instances/{id}/specification", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    request_body(content = AnalyticsManifestDoc),
    responses(
        (status = 200, description = "The new analytics manifest", body = AnalyticsManifestDoc),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING, or invalid with the original engine's code", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_update_specification(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        let doc = json_object(&body)?;
        return to_gateway(&s, g, Method::PUT, &id, "/specification", Some(&doc)).await;
    }
    // An unknown id is a 404 whatever the body.
    s.instance(&id).await?;
    let mut doc = manifest(&body)?;
    // The original ignored ids in bodies: the path names the instance.
    with_id(&mut doc, &id);
    name_free(&s, &doc, Some(&id))?;
    Ok(Json(s.update_instance(&id, doc).await?.specification).into_response())
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
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 200, description = "The state", body = StateDoc),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 400, description = "EDGE_GATEWAY_NOT_FOUND: no such gateway", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_state(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        return to_gateway(&s, g, Method::GET, &id, "/state", None).await;
    }
    Ok(Json(state_of(&s, id).await?).into_response())
}

/// Discover instances: `{id?, name?}`, exact matches (empty strings and nulls match all).
#[utoipa::path(post, path = "/api/analytics-instances/discover", tag = "FAR-EDGE compatibility",
    params(("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    request_body(content = DiscoverCriteria),
    responses(
        (status = 200, description = "The matching instances", body = CompatInstanceList),
        (status = 400, description = "The criteria are not a JSON object; EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_discover(
    State(s): Svc,
    scope: Scope,
    body: Bytes,
) -> Result<Json<CompatInstanceList>, CompatError> {
    let criteria = Value::Object(parse_criteria(&body)?);
    let mut found = discover_local(
        &s,
        &scope,
        Via::AnalyticsEngine,
        "/analytics-instances/discover",
        &criteria,
        "analyticsInstances",
    )
    .await?;
    if scope.gateway.is_none() {
        for v in discovered(&s, &body).await? {
            found.push(serde_json::to_value(CompatInstance::from(v)).unwrap_or_default());
        }
    }
    Ok(Json(CompatInstanceList {
        analytics_instances: found,
    }))
}

/// A lifecycle operation, answered as the original did: 204 and no body.
async fn lifecycle(
    s: &Service,
    scope: &Scope,
    id: &str,
    t: Transition,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        let suffix = format!("/{}", t.verb());
        return to_gateway(s, g, Method::POST, id, &suffix, None).await;
    }
    s.transition(id, t).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Start an instance.
#[utoipa::path(post, path = "/api/analytics-instances/{id}/start", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 204, description = "Started"),
        (status = 400, description = "ANALYTICS_INSTANCE_RUNNING, or FAILED when it cannot start", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_start(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    lifecycle(&s, &scope, &id, Transition::Start).await
}

/// Stop an instance.
#[utoipa::path(post, path = "/api/analytics-instances/{id}/stop", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose engine answers (its local scope); none: this engine")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, description = "ANALYTICS_INSTANCE_NOT_RUNNING", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn compat_stop(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    lifecycle(&s, &scope, &id, Transition::Stop).await
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
