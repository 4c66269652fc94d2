//! The HTTP routes.
//!
//! - `/api/v1/<models>`: the model repository (data interfaces, data kinds, data source
//!   definitions, data source manifests, data consumer manifests, analytics processor
//!   definitions, edge gateways): list (with filters), create, read, update, delete,
//!   discover. Bodies in JSON or XML (`Content-Type`); entities back in JSON or XML
//!   (`Accept`).
//! - `/api/v1/analytics-instances`: instances from analytics manifests, their specification,
//!   state, lifecycle (`start`, `stop`, `pause`, `resume`) and metrics.
//! - `/api/v1/validate`, `/api/v1/processors`, live data of data sources (recent
//!   observations, and a Server-Sent-Events stream).
//! - `/api/analytics-instances...` and `/health-check`: the original FAR-EDGE engine's routes,
//!   codes and error bodies, for its clients.
//! - `/health`, `/metrics` (Prometheus), `/api/v1/openapi.json`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::instance::Transition;
use futures_util::Stream;
use manifests::EntityKind;
use manifests::bundle::Syntax;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{OpenApi, ToSchema};

use crate::body::{parse_entity, parse_text, render_entity, render_list, request_syntax};
use crate::error::{ApiError, CompatError, CompatErrorBody, Detail, ErrorBody};
use crate::openapi::{AnalyticsManifestDoc, AnyDocument};
use crate::service::{InstanceView, Service};

type Svc = State<Arc<Service>>;

/// A state, as the API spells it.
fn state_schema() -> RefOr<Schema> {
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
}

fn connector_docs(connectors: Vec<engine::instance::ConnectorStatus>) -> Vec<ConnectorDoc> {
    connectors
        .into_iter()
        .map(|c| ConnectorDoc {
            data_source_manifest_id: c.dsm,
            role: c.role.to_owned(),
            connected: c.link.connected,
            error: c.link.error,
        })
        .collect()
}

impl From<InstanceView> for InstanceDoc {
    fn from(v: InstanceView) -> Self {
        Self {
            id: v.id,
            name: v.name,
            state: v.state.as_str().to_owned(),
            specification: v.specification,
            failure: v.failure.map(|f| FailureDoc {
                at: f.at,
                reason: f.reason,
            }),
            waiting_for: v.waiting_for,
            connectors: connector_docs(v.connectors),
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

/// An instance's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateDoc {
    /// The instance id.
    pub id: String,
    /// Lifecycle state.
    #[schema(schema_with = state_schema)]
    pub state: String,
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

/// The result of validating a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationReport {
    /// Whether it is valid (warnings allowed).
    pub valid: bool,
    /// Number of errors.
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Every problem, errors and warnings.
    pub diagnostics: Vec<DiagnosticDoc>,
}

/// One problem found by validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticDoc {
    /// `error` or `warning`.
    pub severity: String,
    /// Stable code, e.g. `dangling-reference`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// JSON pointer into the document.
    pub pointer: String,
    /// Line, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Recent observations of a data source.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentData {
    /// The data source.
    pub data_source_manifest_reference_id: String,
    /// Its last observations, oldest first, each as a LiveDataSet (the paper's Table 7).
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// Health.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDoc {
    /// Always `ok` when the server answers.
    pub status: String,
    /// Seconds since the server started.
    pub uptime: u64,
    /// Analytics instances per state.
    #[schema(value_type = Object)]
    pub instances: Value,
}

/// The original engine's health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UptimeDoc {
    /// Seconds since the server started.
    pub uptime: u64,
}

/// The processor catalogue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorList {
    /// Every processor type, as an analytics processor definition.
    #[schema(value_type = Vec<crate::openapi::AnalyticsProcessorDefinitionDoc>)]
    pub analytics_processor_definitions: Vec<Value>,
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

fn query_filter(query: &HashMap<String, String>, doc: &Value) -> bool {
    query.iter().all(|(k, v)| match doc.get(k) {
        Some(Value::String(s)) => s == v,
        Some(Value::Number(n)) => n.to_string() == *v,
        Some(Value::Bool(b)) => b.to_string() == *v,
        _ => false,
    })
}

fn criteria_filter(criteria: &serde_json::Map<String, Value>, doc: &Value) -> bool {
    criteria
        .iter()
        .all(|(k, v)| v.is_null() || v == &Value::String(String::new()) || doc.get(k) == Some(v))
}

fn parse_object(bytes: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID",
            "discover criteria are a JSON object",
        )),
        Err(e) => Err(ApiError::malformed(format!("invalid JSON: {e}"))),
    }
}

fn created(location: String, response: Response) -> Response {
    let mut r = response;
    *r.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn encode_path(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// --- the model repository ---------------------------------------------------------------

/// Generates the six routes of one model collection, with their OpenAPI annotations.
macro_rules! model_routes {
    ($module:ident, $kind:expr, $doc:ty, $tag:literal, $collection:literal, $item:literal, $discover:literal) => {
        /// Routes of one model collection.
        pub mod $module {
            use super::*;

            /// The entity kind.
            pub const KIND: EntityKind = $kind;

            /// List, with filters: `?name=...` keeps entities whose field equals the value.
            #[utoipa::path(get, path = $collection, tag = $tag,
                params(("name" = Option<String>, Query, description = "Keep only entities with this name (any top-level field may be a filter)")),
                responses(
                    (status = 200, description = "The entities, in the paper's list shape", body = Object),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not read", body = ErrorBody)))]
            pub async fn list(State(s): Svc, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
                let items: Vec<Value> = s.repository.list(KIND).iter().map(|e| s.show(e)).filter(|d| query_filter(&q, d)).collect();
                render_list(KIND, items, &headers)
            }

            /// Create (without an id, one is given). Answers 201 with a Location.
            #[utoipa::path(post, path = $collection, tag = $tag, request_body(content = $doc, description = "The entity, in JSON or XML"),
                responses(
                    (status = 201, description = "Created", body = $doc, headers(("Location" = String, description = "Where the entity is"))),
                    (status = 400, description = "The body is not JSON or XML", body = ErrorBody),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not create", body = ErrorBody),
                    (status = 409, description = "The id is taken", body = ErrorBody),
                    (status = 415, description = "Neither JSON nor XML", body = ErrorBody),
                    (status = 422, description = "Invalid: every problem in details", body = ErrorBody)))]
            pub async fn create(State(s): Svc, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
                let doc = parse_entity(&body, request_syntax(&headers)?, KIND)?;
                let entity = s.create_entity(KIND, doc).await?;
                let id = entity.id().unwrap_or_default().to_owned();
                Ok(created(format!("{}/{}", $collection, encode_path(&id)), render_entity(StatusCode::CREATED, KIND, &s.show(&entity), &headers)))
            }

            /// Read.
            #[utoipa::path(get, path = $item, tag = $tag, params(("id" = String, Path, description = "The entity's id")),
                responses(
                    (status = 200, description = "The entity", body = $doc),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not read", body = ErrorBody),
                    (status = 404, description = "No such entity", body = ErrorBody)))]
            pub async fn read(State(s): Svc, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
                let entity = s.repository.get(KIND, &id).ok_or_else(|| ApiError::not_found(KIND.info().title, &id))?;
                Ok(render_entity(StatusCode::OK, KIND, &s.show(&entity), &headers))
            }

            /// Replace.
            #[utoipa::path(put, path = $item, tag = $tag, params(("id" = String, Path, description = "The entity's id")),
                request_body(content = $doc, description = "The whole entity, in JSON or XML"),
                responses(
                    (status = 200, description = "Replaced", body = $doc),
                    (status = 400, description = "The body is not JSON or XML", body = ErrorBody),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not update", body = ErrorBody),
                    (status = 404, description = "No such entity", body = ErrorBody),
                    (status = 415, description = "Neither JSON nor XML", body = ErrorBody),
                    (status = 422, description = "Invalid: every problem in details", body = ErrorBody)))]
            pub async fn update(State(s): Svc, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
                if s.repository.get(KIND, &id).is_none() {
                    return Err(ApiError::not_found(KIND.info().title, &id));
                }
                let doc = parse_entity(&body, request_syntax(&headers)?, KIND)?;
                let entity = s.update_entity(KIND, &id, doc).await?;
                Ok(render_entity(StatusCode::OK, KIND, &s.show(&entity), &headers))
            }

            /// Delete (refused while something refers to it).
            #[utoipa::path(delete, path = $item, tag = $tag, params(("id" = String, Path, description = "The entity's id")),
                responses(
                    (status = 204, description = "Deleted"),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not delete", body = ErrorBody),
                    (status = 404, description = "No such entity", body = ErrorBody),
                    (status = 409, description = "Still referred to: the referrers are in details", body = ErrorBody)))]
            pub async fn delete(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
                s.delete_entity(KIND, &id).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            /// Discover: entities whose fields equal every given criterion.
            #[utoipa::path(post, path = $discover, tag = $tag, request_body(content = Object, description = "Criteria, e.g. {\"name\": \"MQTT topic\"}"),
                responses(
                    (status = 200, description = "The matching entities, in the paper's list shape", body = Object),
                    (status = 400, description = "The body is not JSON", body = ErrorBody),
                    (status = 401, description = "A token is needed", body = ErrorBody),
                    (status = 403, description = "The token may not read", body = ErrorBody),
                    (status = 422, description = "The criteria are not an object", body = ErrorBody)))]
            pub async fn discover(State(s): Svc, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
                let criteria = parse_object(&body)?;
                let items: Vec<Value> = s.repository.list(KIND).iter().map(|e| s.show(e)).filter(|d| criteria_filter(&criteria, d)).collect();
                Ok(render_list(KIND, items, &headers))
            }

            /// The collection's routes.
            pub fn router() -> Router<Arc<Service>> {
                Router::new()
                    .route($collection, get(list).post(create))
                    .route($discover, post(discover))
                    .route($item, get(read).put(update).delete(delete))
            }

            /// The collection's operations.
            #[derive(OpenApi)]
            #[openapi(paths(list, create, read, update, delete, discover))]
            pub struct Doc;
        }
    };
}

model_routes!(
    data_interfaces,
    EntityKind::DataInterface,
    crate::openapi::DataInterfaceDoc,
    "data interfaces",
    "/api/v1/data-interfaces",
    "/api/v1/data-interfaces/{id}",
    "/api/v1/data-interfaces/discover"
);
model_routes!(
    data_kinds,
    EntityKind::DataKind,
    crate::openapi::DataKindDoc,
    "data kinds",
    "/api/v1/data-kinds",
    "/api/v1/data-kinds/{id}",
    "/api/v1/data-kinds/discover"
);
model_routes!(
    data_source_definitions,
    EntityKind::DataSourceDefinition,
    crate::openapi::DataSourceDefinitionDoc,
    "data source definitions",
    "/api/v1/data-source-definitions",
    "/api/v1/data-source-definitions/{id}",
    "/api/v1/data-source-definitions/discover"
);
model_routes!(
    data_source_manifests,
    EntityKind::DataSourceManifest,
    crate::openapi::DataSourceManifestDoc,
    "data source manifests",
    "/api/v1/data-source-manifests",
    "/api/v1/data-source-manifests/{id}",
    "/api/v1/data-source-manifests/discover"
);
model_routes!(
    data_consumer_manifests,
    EntityKind::DataConsumerManifest,
    crate::openapi::DataConsumerManifestDoc,
    "data consumer manifests",
    "/api/v1/data-consumer-manifests",
    "/api/v1/data-consumer-manifests/{id}",
    "/api/v1/data-consumer-manifests/discover"
);
model_routes!(
    analytics_processor_definitions,
    EntityKind::AnalyticsProcessorDefinition,
    crate::openapi::AnalyticsProcessorDefinitionDoc,
    "analytics processor definitions",
    "/api/v1/analytics-processor-definitions",
    "/api/v1/analytics-processor-definitions/{id}",
    "/api/v1/analytics-processor-definitions/discover"
);
model_routes!(
    edge_gateways,
    EntityKind::EdgeGateway,
    crate::openapi::EdgeGatewayDoc,
    "edge gateways",
    "/api/v1/edge-gateways",
    "/api/v1/edge-gateways/{id}",
    "/api/v1/edge-gateways/discover"
);

// --- analytics instances -------------------------------------------------------------------

/// List analytics instances.
#[utoipa::path(get, path = "/api/v1/analytics-instances", tag = "analytics instances",
    responses(
        (status = 200, description = "Every instance", body = InstanceList),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn list_instances(State(s): Svc) -> Json<InstanceList> {
    Json(InstanceList {
        analytics_instances: s
            .instances()
            .await
            .into_iter()
            .map(InstanceDoc::from)
            .collect(),
    })
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
    let view = s.create_instance(doc, false).await?;
    let location = format!("/api/v1/analytics-instances/{}", encode_path(&view.id));
    Ok(created(
        location,
        Json(InstanceDoc::from(view)).into_response(),
    ))
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
    let status = s.engine.status(&id).await?;
    Ok(Json(StateDoc {
        id,
        state: status.state.as_str().to_owned(),
    }))
}

async fn transition(s: &Service, id: &str, t: Transition) -> Result<Json<StateDoc>, ApiError> {
    let status = s.transition(id, t).await?;
    Ok(Json(StateDoc {
        id: id.to_owned(),
        state: status.state.as_str().to_owned(),
    }))
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
            transition(&s, &id, $t).await
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
    let status = s.engine.status(&id).await?;
    let bounds = engine::instance::BATCH_BUCKETS_US;
    Ok(Json(MetricsDoc {
        id,
        state: status.state.as_str().to_owned(),
        connectors: connector_docs(status.connectors),
        failure: status.failure.map(|f| FailureDoc {
            at: f.at,
            reason: f.reason,
        }),
        processors: status
            .processors
            .into_iter()
            .map(|p| ProcessorMetricsDoc {
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
            })
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
    let criteria = parse_object(&body)?;
    let instances = s
        .instances()
        .await
        .into_iter()
        .filter(|v| criteria_filter(&criteria, &json!({"id": v.id, "name": v.name})))
        .map(InstanceDoc::from)
        .collect();
    Ok(Json(InstanceList {
        analytics_instances: instances,
    }))
}

// --- validation, catalogue, live data -----------------------------------------------------

/// Validate a document or a bundle, in JSON or XML, against the stored models, without
/// storing anything. Always 200: see `valid`.
#[utoipa::path(post, path = "/api/v1/validate", tag = "models",
    request_body(content = AnyDocument, description = "A document or a bundle, in JSON or XML"),
    responses(
        (status = 200, description = "The diagnostics of the document", body = ValidationReport),
        (status = 400, description = "The body is not UTF-8", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not validate", body = ErrorBody),
        (status = 415, description = "Neither JSON nor XML", body = ErrorBody)))]
pub async fn validate(
    State(s): Svc,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ValidationReport>, ApiError> {
    let syntax = request_syntax(&headers)?;
    let text = parse_text(&body)?;
    let diagnostics = s.repository.validate_document(text, syntax);
    let ours: Vec<&manifests::Diagnostic> = diagnostics.iter().collect();
    let errors = ours.iter().filter(|d| d.is_error()).count();
    Ok(Json(ValidationReport {
        valid: errors == 0,
        errors,
        warnings: ours.len() - errors,
        diagnostics: ours
            .into_iter()
            .map(|d| DiagnosticDoc {
                severity: if d.is_error() { "error" } else { "warning" }.to_owned(),
                code: d.code.to_owned(),
                message: d.message.clone(),
                pointer: d.pointer.clone(),
                line: d.position.map(|p| p.line),
                column: d.position.map(|p| p.column),
                hint: d.hint.clone(),
            })
            .collect(),
    }))
}

/// The processor catalogue, from the engine's registry.
#[utoipa::path(get, path = "/api/v1/processors", tag = "models",
    responses(
        (status = 200, description = "Every processor type with its parameter definitions", body = ProcessorList),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn processor_catalogue() -> Json<ProcessorList> {
    Json(ProcessorList {
        analytics_processor_definitions: processors::definitions()
            .into_iter()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect(),
    })
}

fn last_n(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("last") {
        None => Ok(10),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ApiError::malformed(format!("last={v:?}: give a number from 1 to 10000"))
            }),
    }
}

/// The most recent observations of a data source (as many as the server keeps, `recent`).
#[utoipa::path(get, path = "/api/v1/data-source-manifests/{id}/data", tag = "live data",
    params(("id" = String, Path, description = "The data source manifest id"),
           ("last" = Option<u32>, Query, description = "How many, from 1 to 10000 (default 10)")),
    responses(
        (status = 200, description = "The last observations, oldest first", body = RecentData),
        (status = 400, description = "An unusable `last`", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such data source", body = ErrorBody)))]
pub async fn recent_data(
    State(s): Svc,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<RecentData>, ApiError> {
    let n = last_n(&q)?;
    if s.repository
        .get(EntityKind::DataSourceManifest, &id)
        .is_none()
    {
        return Err(ApiError::not_found("data source manifest", &id));
    }
    let data = s
        .engine
        .recent(&id, n)
        .unwrap_or_default()
        .iter()
        .map(engine::codec::encode_live_data_set)
        .collect();
    Ok(Json(RecentData {
        data_source_manifest_reference_id: id,
        data,
    }))
}

/// A live stream of a data source's observations (Server-Sent Events, one `observation`
/// event per observation, data a LiveDataSet). A slow client loses events; the pipeline
/// never waits for it.
#[utoipa::path(get, path = "/api/v1/data-source-manifests/{id}/stream", tag = "live data",
    params(("id" = String, Path, description = "The data source manifest id")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such data source", body = ErrorBody)))]
pub async fn stream_data(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if s.repository
        .get(EntityKind::DataSourceManifest, &id)
        .is_none()
    {
        return Err(ApiError::not_found("data source manifest", &id));
    }
    let (subscriber, rx) = s.engine.tap_lossy(&id);
    let stream = futures_util::stream::unfold(
        (subscriber, rx, Vec::<Event>::new()),
        |(sub, mut rx, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop() {
                    return Some((Ok(e), (sub, rx, pending)));
                }
                let envelope = rx.recv().await?;
                if let engine::bus::Message::Data(batch) = envelope.message {
                    pending = batch
                        .iter()
                        .rev()
                        .map(|o| {
                            Event::default()
                                .event("observation")
                                .data(engine::codec::encode_live_data_set(o).to_string())
                        })
                        .collect();
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// --- operations ---------------------------------------------------------------------------

/// Health: the server answers, with uptime and instances per state.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The server is up", body = HealthDoc)))]
pub async fn health(State(s): Svc) -> Json<HealthDoc> {
    let mut per_state: HashMap<&str, usize> = HashMap::new();
    for id in s.engine.ids() {
        if let Ok(st) = s.engine.status(&id).await {
            *per_state.entry(st.state.as_str()).or_default() += 1;
        }
    }
    Json(HealthDoc {
        status: "ok".into(),
        uptime: s.started.elapsed().as_secs(),
        instances: json!(per_state),
    })
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

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn metrics(State(s): Svc) -> Response {
    let text = crate::metrics::render(&s).await;
    let mut r = text.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn openapi_json() -> Json<Value> {
    Json(crate::openapi::document())
}

// --- the original engine's routes -----------------------------------------------------------

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

fn compat_json(bytes: &Bytes) -> Result<Value, CompatError> {
    parse_entity(bytes, Syntax::Json, EntityKind::AnalyticsManifest).map_err(CompatError::from)
}

/// Create an instance (a new id is always given, as the original did).
#[utoipa::path(post, path = "/api/analytics-instances", tag = "FAR-EDGE compatibility",
    request_body(content = AnalyticsManifestDoc),
    responses(
        (status = 201, description = "Created", body = CompatInstance, headers(("Location" = String, description = "Where the instance is"))),
        (status = 400, description = "Invalid, with the original engine's code", body = CompatErrorBody)))]
pub async fn compat_create(State(s): Svc, body: Bytes) -> Result<Response, CompatError> {
    let doc = compat_json(&body)?;
    let view = s.create_instance(doc, true).await?;
    let location = format!("/api/analytics-instances/{}", encode_path(&view.id));
    Ok(created(
        location,
        Json(CompatInstance::from(view)).into_response(),
    ))
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
    s.instance(&id).await?;
    let mut doc = compat_json(&body)?;
    // The original ignored ids in bodies: the path names the instance.
    if let Some(o) = doc.as_object_mut() {
        o.remove("_id");
        o.insert("id".into(), Value::String(id.clone()));
    }
    Ok(Json(s.update_instance(&id, doc).await?.specification))
}

/// Read an instance's state.
#[utoipa::path(get, path = "/api/analytics-instances/{id}/state", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 200, description = "The state", body = StateDoc),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_state(state: Svc, id: Path<String>) -> Result<Json<StateDoc>, CompatError> {
    Ok(read_state(state, id).await?)
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
    let criteria = parse_object(&body).map_err(CompatError::from)?;
    let instances = s
        .instances()
        .await
        .into_iter()
        .filter(|v| criteria_filter(&criteria, &json!({"id": v.id, "name": v.name})))
        .map(CompatInstance::from)
        .collect();
    Ok(Json(CompatInstanceList {
        analytics_instances: instances,
    }))
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
    s.transition(&id, Transition::Start).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop an instance.
#[utoipa::path(post, path = "/api/analytics-instances/{id}/stop", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The instance id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, description = "ANALYTICS_INSTANCE_NOT_RUNNING", body = CompatErrorBody),
        (status = 404, description = "ANALYTICS_INSTANCE_NOT_FOUND", body = CompatErrorBody)))]
pub async fn compat_stop(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, CompatError> {
    s.transition(&id, Transition::Stop).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every documented operation but the model collections'.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DDA Open API",
        description = "Models, analytics instances and live data of a DDA engine. Entity schemas are DDA's JSON Schemas (`dda schema`); bodies are accepted in JSON or XML."
    ),
    paths(
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
        validate,
        processor_catalogue,
        recent_data,
        stream_data,
        health,
        health_check,
        api_health_check,
        metrics,
        openapi_json,
        compat_create,
        compat_read,
        compat_delete,
        compat_read_specification,
        compat_update_specification,
        compat_state,
        compat_discover,
        compat_start,
        compat_stop,
    ),
    components(schemas(ErrorBody, Detail, CompatErrorBody))
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`] and every model collection.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        data_interfaces::Doc::openapi(),
        data_kinds::Doc::openapi(),
        data_source_definitions::Doc::openapi(),
        data_source_manifests::Doc::openapi(),
        data_consumer_manifests::Doc::openapi(),
        analytics_processor_definitions::Doc::openapi(),
        edge_gateways::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// Every route (state not yet attached).
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .merge(data_interfaces::router())
        .merge(data_kinds::router())
        .merge(data_source_definitions::router())
        .merge(data_source_manifests::router())
        .merge(data_consumer_manifests::router())
        .merge(analytics_processor_definitions::router())
        .merge(edge_gateways::router())
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
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/processors", get(processor_catalogue))
        .route("/api/v1/data-source-manifests/{id}/data", get(recent_data))
        .route(
            "/api/v1/data-source-manifests/{id}/stream",
            get(stream_data),
        )
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/health", get(health))
        .route("/health-check", get(health_check))
        .route("/api/health-check", get(api_health_check))
        .route("/metrics", get(metrics))
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
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
}
