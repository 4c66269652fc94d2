//! Operations and catalogues: `/health`, `/metrics` (Prometheus), `/api/v1/engine` (what
//! the engine is and runs, for a cloud watching it), `/api/v1/validate`, the
//! processor and connector catalogues (`/api/v1/processors`, `/api/v1/connectors`) and
//! the OpenAPI document (`/api/v1/openapi.json`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use manifests::model::ParameterDefinitions;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use super::Svc;
use crate::body::{parse_text, request_syntax};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{AnalyticsProcessorDefinitionDoc, AnyDocument, ParameterDefinitionsDoc};
use crate::service::Service;

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

impl From<&manifests::Diagnostic> for DiagnosticDoc {
    fn from(d: &manifests::Diagnostic) -> Self {
        Self {
            severity: if d.is_error() { "error" } else { "warning" }.to_owned(),
            code: d.code.to_owned(),
            message: d.message.clone(),
            pointer: d.pointer.clone(),
            line: d.position.map(|p| p.line),
            column: d.position.map(|p| p.column),
            hint: d.hint.clone(),
        }
    }
}

/// Health.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDoc {
    /// Always `ok` when the server answers.
    pub status: String,
    /// Seconds since the server started.
    pub uptime: u64,
    /// The engine's version.
    pub version: String,
    /// What the engine is in a fleet: `standalone`, `edge` or `cloud`.
    #[schema(value_type = String)]
    pub role: crate::config::FleetRole,
    /// Analytics instances per state.
    #[schema(value_type = Object)]
    pub instances: Value,
}

/// What an engine is and runs: a cloud polls it to watch its gateways.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineDoc {
    /// The engine's version.
    pub version: String,
    /// What the engine is in a fleet: `standalone`, `edge` or `cloud`.
    #[schema(value_type = String)]
    pub role: crate::config::FleetRole,
    /// Seconds since the server started.
    pub uptime: u64,
    /// On an edge, the id of its gateway in its cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The processor types it runs.
    pub processors: Vec<String>,
    /// The communication protocols it speaks.
    pub connectors: Vec<String>,
    /// Every analytics instance: its state, why it failed, what it waits for, its
    /// per-processor counters, its connectors, and the `revision` of its specification
    /// (the SHA-256 of its JSON, the same on every engine holding it).
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<Value>,
}

/// The processor catalogue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorList {
    /// Every processor type, as an analytics processor definition.
    #[schema(value_type = Vec<AnalyticsProcessorDefinitionDoc>)]
    pub analytics_processor_definitions: Vec<Value>,
}

/// The connector catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorList {
    /// Every communication protocol, sorted by name.
    pub connectors: Vec<ProtocolDoc>,
}

/// One communication protocol of the connector catalogue: what a data interface's
/// `communicationProtocol` may name, and the parameters its data sources take.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProtocolDoc {
    /// The protocol's name, as a data interface's `communicationProtocol` gives it
    /// (`MQTT`, `SQLite`).
    pub protocol: String,
    /// Other names data interfaces may give it, any case.
    pub aliases: Vec<String>,
    /// What it connects to.
    pub description: String,
    /// Whether its data sources can be read (it has a source connector).
    pub reads: bool,
    /// Whether its data sources can be written (it has a sink connector).
    pub writes: bool,
    /// Whether its data exists only inside the engine (the in-process bus): no connector
    /// brings it in; a processor writes it.
    pub internal: bool,
    /// The parameters its data sources take, in the paper's list shape.
    #[schema(value_type = ParameterDefinitionsDoc)]
    pub parameters: ParameterDefinitions,
}

/// Health: the server answers, with uptime and instances per state.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The server is up", body = HealthDoc)))]
pub async fn health(State(s): Svc) -> Json<HealthDoc> {
    let mut per_state: HashMap<&str, usize> = HashMap::new();
    for status in s.statuses().await {
        *per_state.entry(status.state.as_str()).or_default() += 1;
    }
    Json(HealthDoc {
        status: "ok".into(),
        uptime: s.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        role: s.role,
        instances: json!(per_state),
    })
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
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    Ok(Json(ValidationReport {
        valid: errors == 0,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics: diagnostics.iter().map(DiagnosticDoc::from).collect(),
    }))
}

/// The engine: version, role, catalogues, and every instance's status and counters.
#[utoipa::path(get, path = "/api/v1/engine", tag = "operations",
    responses(
        (status = 200, description = "What the engine is and runs", body = EngineDoc),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn engine_status(
    State(s): Svc,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
) -> Json<EngineDoc> {
    // An edge learns its gateway id from its cloud's polls.
    let from_cloud = match (&s.cloud_token, &caller) {
        (Some(cloud), Some(axum::Extension(c))) => &c.0 == cloud,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if from_cloud
        && let Some(g) = headers
            .get(connectors::http::GATEWAY_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        s.learn_gateway(g);
    }
    Json(EngineDoc {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        role: s.role,
        uptime: s.started.elapsed().as_secs(),
        gateway: s
            .engine
            .shared()
            .resource::<engine::connector::Identity>()
            .gateway(),
        processors: processors::definitions()
            .into_iter()
            .map(|d| d.processor_type)
            .collect(),
        connectors: engine::Catalogue::get()
            .connectors()
            .map(|(spec, _)| spec.protocol.clone())
            .collect(),
        instances: s
            .statuses()
            .await
            .into_iter()
            .map(|status| {
                let revision = s
                    .repository
                    .get(manifests::EntityKind::AnalyticsManifest, &status.id)
                    .map(|am| crate::deploy::revision(&am));
                let mut v = serde_json::to_value(status).unwrap_or_default();
                if let (Some(o), Some(r)) = (v.as_object_mut(), revision) {
                    o.insert("revision".into(), Value::String(r));
                }
                v
            })
            .collect(),
    })
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

/// The connector catalogue, from the engine's registry: every communication protocol a
/// data interface may name, what it can do, and the parameters its data sources take.
#[utoipa::path(get, path = "/api/v1/connectors", tag = "models",
    responses(
        (status = 200, description = "Every protocol with its parameter definitions", body = ConnectorList),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn connector_catalogue() -> Json<ConnectorList> {
    Json(ConnectorList {
        connectors: engine::Catalogue::get()
            .connectors()
            .map(|(spec, registration)| ProtocolDoc {
                protocol: spec.protocol.clone(),
                aliases: spec.aliases.clone(),
                description: registration.description.to_owned(),
                reads: spec.reads,
                writes: spec.writes,
                internal: spec.internal,
                parameters: ParameterDefinitions {
                    parameter: spec.parameters.clone(),
                },
            })
            .collect(),
    })
}

/// The operation routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/engine", get(engine_status))
        .route("/api/v1/processors", get(processor_catalogue))
        .route("/api/v1/connectors", get(connector_catalogue))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// The operations' part of the document.
#[derive(OpenApi)]
#[openapi(paths(
    validate,
    engine_status,
    processor_catalogue,
    connector_catalogue,
    health,
    metrics,
    openapi_json,
))]
pub struct Doc;
