//! The original FAR-EDGE Open API's edge gateway routes, for its clients: `/api/edge-gateways`
//! with its status codes (201 with `Location`, 204 for delete, every refusal a 400 or a
//! 404) and error codes (`MISSING_NAMESPACE`, `NAME_TAKEN`, `NAMESPACE_TAKEN`,
//! `EDGE_GATEWAY_NOT_FOUND`). The gateways are the repository's, as through
//! `/api/v1/edge-gateways`; a gateway made here gets a UUID, as the original gave.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use manifests::EntityKind;
use manifests::bundle::Syntax;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};

use super::Svc;
use super::compat::{refused, require, with_id};
use super::models::meets_criteria;
use crate::body::{parse_criteria, parse_entity};
use crate::error::{CompatError, CompatErrorBody};
use crate::openapi::EdgeGatewayDoc;
use crate::service::Service;

const KIND: EntityKind = EntityKind::EdgeGateway;

/// The original's discover answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatGatewayList {
    /// The gateways.
    #[schema(value_type = Vec<EdgeGatewayDoc>)]
    pub edge_gateways: Vec<Value>,
}

/// Checks a gateway as the original did, in its order: the fields it required, then a
/// name and a namespace no other gateway has.
fn check(s: &Service, doc: &Value, own: Option<&str>) -> Result<(), CompatError> {
    require(
        doc,
        &[
            ("name", "MISSING_NAME"),
            ("namespace", "MISSING_NAMESPACE"),
            ("macAddress", "MISSING_MAC_ADDRESS"),
            (
                "dataRouterAndPreprocessorBaseURL",
                "MISSING_DATA_ROUTER_AND_PREPROCESSOR_BASE_URL",
            ),
            (
                "edgeAnalyticsEngineBaseURL",
                "MISSING_EDGE_ANALYTICS_ENGINE_BASE_URL",
            ),
        ],
        "an edge gateway",
    )?;
    let others = s.shown_entities(KIND, |g| g.get("id").and_then(Value::as_str) != own);
    for (field, code) in [("name", "NAME_TAKEN"), ("namespace", "NAMESPACE_TAKEN")] {
        let value = &doc[field];
        if let Some(other) = others.iter().find(|g| &g[field] == value) {
            return Err(refused(
                code,
                format!("edge gateway `{}` has this {field} already", other["id"]),
            ));
        }
    }
    Ok(())
}

fn gateway(body: &[u8]) -> Result<Value, CompatError> {
    Ok(parse_entity(body, Syntax::Json, KIND)?)
}

/// Register a gateway.
#[utoipa::path(post, path = "/api/edge-gateways", tag = "FAR-EDGE compatibility",
    request_body(content = EdgeGatewayDoc),
    responses(
        (status = 201, description = "Created", body = EdgeGatewayDoc, headers(("Location" = String, description = "Where the gateway is"))),
        (status = 400, description = "MISSING_<FIELD>, NAME_TAKEN, NAMESPACE_TAKEN, or invalid", body = CompatErrorBody)))]
pub async fn create(State(s): Svc, body: Bytes) -> Result<Response, CompatError> {
    let mut doc = gateway(&body)?;
    check(&s, &doc, None)?;
    let id = uuid::Uuid::new_v4().to_string();
    with_id(&mut doc, &id);
    let entity = s.create_entity(KIND, doc).await?;
    let mut r = (StatusCode::CREATED, Json(s.show(&entity))).into_response();
    if let Ok(v) = format!("/api/edge-gateways/{id}").parse() {
        r.headers_mut().insert(LOCATION, v);
    }
    Ok(r)
}

/// Read a gateway.
#[utoipa::path(get, path = "/api/edge-gateways/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The gateway's id")),
    responses(
        (status = 200, description = "The gateway", body = EdgeGatewayDoc),
        (status = 404, description = "EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody)))]
pub async fn read(State(s): Svc, Path(id): Path<String>) -> Result<Json<Value>, CompatError> {
    Ok(Json(s.show(&s.entity(KIND, &id)?)))
}

/// Replace a gateway (every field: what the body leaves out is cleared).
#[utoipa::path(put, path = "/api/edge-gateways/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The gateway's id")),
    request_body(content = EdgeGatewayDoc),
    responses(
        (status = 200, description = "The gateway as replaced", body = EdgeGatewayDoc),
        (status = 400, description = "MISSING_<FIELD>, NAME_TAKEN, NAMESPACE_TAKEN, or invalid", body = CompatErrorBody),
        (status = 404, description = "EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody)))]
pub async fn update(
    State(s): Svc,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, CompatError> {
    s.entity(KIND, &id)?;
    let mut doc = gateway(&body)?;
    check(&s, &doc, Some(&id))?;
    with_id(&mut doc, &id);
    Ok(Json(s.show(&s.update_entity(KIND, &id, doc).await?)))
}

/// Delete a gateway.
#[utoipa::path(delete, path = "/api/edge-gateways/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The gateway's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "REFERENCED: manifests still name it", body = CompatErrorBody),
        (status = 404, description = "EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody)))]
pub async fn delete(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, CompatError> {
    s.delete_entity(KIND, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Discover gateways: `{id?, name?, namespace?, macAddress?}`, exact matches; an empty body
/// lists them all.
#[utoipa::path(post, path = "/api/edge-gateways/discover", tag = "FAR-EDGE compatibility",
    request_body(content = Object, description = "Criteria, e.g. {\"namespace\": \"ib1\"}"),
    responses(
        (status = 200, description = "The matching gateways", body = CompatGatewayList),
        (status = 400, description = "The criteria are not a JSON object", body = CompatErrorBody)))]
pub async fn discover(State(s): Svc, body: Bytes) -> Result<Json<CompatGatewayList>, CompatError> {
    let criteria = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_criteria(&body)?
    };
    Ok(Json(CompatGatewayList {
        edge_gateways: s.shown_entities(KIND, |g| meets_criteria(&criteria, g)),
    }))
}

/// The routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/edge-gateways", post(create))
        .route("/api/edge-gateways/discover", post(discover))
        .route(
            "/api/edge-gateways/{id}",
            get(read).put(update).delete(delete),
        )
}

/// The operations.
#[derive(OpenApi)]
#[openapi(paths(create, read, update, delete, discover))]
pub struct Doc;
