//! The original FAR-EDGE Open API's data source routes, for its clients: `/api/data-sources`
//! register (`POST`), unregister (`DELETE /{id}`), discover and `{id}/data`, with its status
//! codes (201 with `Location`, 204) and error codes (`MISSING_NAME`, `NAME_TAKEN`,
//! `DATA_SOURCE_DEFINITION_NOT_FOUND`, `DUPLICATE_PARAMETER_VALUE`,
//! `DATA_SOURCE_NOT_FOUND`). With `?edgeGatewayReferenceID=` a call goes to that gateway's
//! data router ([`super::scope`]).
//!
//! The original deleted a data source manifest to unregister it. Here a device can leave
//! and come back while the instances reading it keep running: unregistering a manifest
//! that something refers to takes it out of the live registry and keeps it (the instances
//! wait for it, as `/api/v1/data-sources` shows); registering one of the same name again
//! puts it back, under its id, with the body's fields. A manifest nothing refers to is
//! deleted, as the original did.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use manifests::EntityKind;
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::Svc;
use super::compat::{json_object, refused, require, with_id};
use super::models::meets_criteria;
use super::scope::{Scope, Via, discover_local, forward};
use crate::body::parse_criteria;
use crate::error::{CompatError, CompatErrorBody};
use crate::openapi::DataSourceManifestDoc;
use crate::service::{Service, ServiceError};

const KIND: EntityKind = EntityKind::DataSourceManifest;
const COLLECTION: &str = "/api/data-sources";

/// How many recent observations `{id}/data` gives, as the original.
const RECENT: usize = 5;

/// The original's discover answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatSourceList {
    /// The registered data sources: gateways' (on a cloud) with their
    /// `edgeGatewayReferenceID`, then this engine's.
    #[schema(value_type = Vec<DataSourceManifestDoc>)]
    pub data_sources: Vec<Value>,
}

/// One observation as the original showed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatDatum {
    /// When, in UTC, as `D-MMM-YY HH:mm:ss`.
    pub timestamp: String,
    /// The value.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// The original's data answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatData {
    /// The last observations, oldest first; none when the source is unknown or silent.
    pub data: Vec<CompatDatum>,
}

fn not_found(id: &str) -> CompatError {
    CompatError::new(
        StatusCode::NOT_FOUND,
        "DATA_SOURCE_NOT_FOUND",
        Some(format!("no data source with id `{id}`")),
    )
}

/// Checks a data source as the original did, in its order: the fields it required, then
/// one value per parameter.
fn check(doc: &Value) -> Result<(), CompatError> {
    require(
        doc,
        &[
            ("name", "MISSING_NAME"),
            ("macAddress", "MISSING_MAC_ADDRESS"),
            (
                "dataSourceDefinitionReferenceID",
                "MISSING_DATA_SOURCE_DEFINITION_REFERENCE_ID",
            ),
        ],
        "a data source",
    )?;
    let keys: Vec<&str> = doc
        .pointer("/dataSourceDefinitionInterfaceParameters/parameter")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("key").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].contains(k) {
            return Err(refused(
                "DUPLICATE_PARAMETER_VALUE",
                format!("parameter `{k}` has more than one value"),
            ));
        }
    }
    Ok(())
}

/// Register a data source: a new manifest with a UUID, or, when an unregistered one has
/// its name, that one back in the live registry with the body's fields.
#[utoipa::path(post, path = "/api/data-sources", tag = "FAR-EDGE compatibility",
    params(("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose data router registers it; none: this engine")),
    request_body(content = DataSourceManifestDoc),
    responses(
        (status = 201, description = "Registered", body = DataSourceManifestDoc, headers(("Location" = String, description = "Where the data source is"))),
        (status = 400, description = "MISSING_<FIELD>, NAME_TAKEN, DATA_SOURCE_DEFINITION_NOT_FOUND, DUPLICATE_PARAMETER_VALUE, EDGE_GATEWAY_NOT_FOUND, or invalid", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn register(State(s): Svc, scope: Scope, body: Bytes) -> Result<Response, CompatError> {
    let mut doc = json_object(&body)?;
    if let Some(g) = &scope.gateway {
        return forward(
            &s,
            g,
            Via::DataRouter,
            Method::POST,
            "/data-sources",
            Some(&doc),
            COLLECTION,
        )
        .await;
    }
    check(&doc)?;
    let name = doc["name"].as_str().unwrap_or_default().to_owned();
    let entity = match s.named(KIND, &name, None) {
        Some(id) if !s.is_unregistered(&id) => {
            return Err(refused(
                "NAME_TAKEN",
                format!("data source `{id}` is named `{name}` already"),
            ));
        }
        Some(id) => {
            // The device is back: its manifest, as the body has it, registered again.
            with_id(&mut doc, &id);
            let entity = s.update_entity(KIND, &id, doc).await?;
            s.set_registered(&id, true).await?;
            entity
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            with_id(&mut doc, &id);
            s.create_entity(KIND, doc).await?
        }
    };
    let shown = s.show(&entity);
    let mut r = (StatusCode::CREATED, Json(shown)).into_response();
    if let Some(id) = entity.id()
        && let Ok(v) = format!("{COLLECTION}/{}", super::encode_path(id)).parse()
    {
        r.headers_mut().insert(LOCATION, v);
    }
    Ok(r)
}

/// Unregister a data source: deleted when nothing refers to it, otherwise taken out of the
/// live registry and kept (the instances reading it wait for it).
#[utoipa::path(delete, path = "/api/data-sources/{id}", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The data source's id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose data router unregisters it; none: this engine")),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 400, description = "IN_USE: a running instance writes it; EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody),
        (status = 404, description = "DATA_SOURCE_NOT_FOUND", body = CompatErrorBody),
        (status = 500, description = "FAILED: the gateway's engine could not be asked", body = CompatErrorBody)))]
pub async fn unregister(
    State(s): Svc,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Response, CompatError> {
    if let Some(g) = &scope.gateway {
        let path = format!("/data-sources/{}", super::encode_path(&id));
        return forward(
            &s,
            g,
            Via::DataRouter,
            Method::DELETE,
            &path,
            None,
            COLLECTION,
        )
        .await;
    }
    if s.entity(KIND, &id).is_err() || s.is_unregistered(&id) {
        return Err(not_found(&id));
    }
    match s.delete_entity(KIND, &id).await {
        Ok(()) => {}
        Err(ServiceError::Referenced(_)) => {
            s.set_registered(&id, false).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This engine's registered data sources meeting `criteria`.
fn registered(s: &Service, criteria: &serde_json::Map<String, Value>) -> Vec<Value> {
    s.shown_entities(KIND, |d| {
        meets_criteria(criteria, d) && d["id"].as_str().is_some_and(|id| !s.is_unregistered(id))
    })
}

/// Discover registered data sources: `{id?, name?, dataSourceDefinitionReferenceID?}`,
/// exact matches.
#[utoipa::path(post, path = "/api/data-sources/discover", tag = "FAR-EDGE compatibility",
    params(("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway whose data sources to discover; none: this engine's and, on a cloud, every gateway's")),
    request_body(content = Object, description = "Criteria, e.g. {\"dataSourceDefinitionReferenceID\": \"dsd-1\"}"),
    responses(
        (status = 200, description = "The matching data sources", body = CompatSourceList),
        (status = 400, description = "The criteria are not a JSON object; EDGE_GATEWAY_NOT_FOUND", body = CompatErrorBody)))]
pub async fn discover(
    State(s): Svc,
    scope: Scope,
    body: Bytes,
) -> Result<Json<CompatSourceList>, CompatError> {
    let mut criteria = parse_criteria(&body)?;
    if let Some(id) = criteria.remove("_id") {
        criteria.entry("id").or_insert(id);
    }
    let mut found = discover_local(
        &s,
        &scope,
        Via::DataRouter,
        "/data-sources/discover",
        &Value::Object(criteria.clone()),
        "dataSources",
    )
    .await?;
    if scope.gateway.is_none() {
        found.extend(registered(&s, &criteria));
    }
    Ok(Json(CompatSourceList {
        data_sources: found,
    }))
}

/// A data source's last observations, as the original answered: always 200, with none
/// when the data source is unknown, silent or on a gateway that does not answer.
#[utoipa::path(get, path = "/api/data-sources/{id}/data", tag = "FAR-EDGE compatibility",
    params(("id" = String, Path, description = "The data source's id"),
        ("edgeGatewayReferenceID" = Option<String>, Query, description = "The gateway the data source is on; none: this engine")),
    responses((status = 200, description = "Its last five observations, oldest first", body = CompatData)))]
pub async fn data(State(s): Svc, scope: Scope, Path(id): Path<String>) -> Response {
    if let Some(g) = &scope.gateway {
        let path = format!("/data-sources/{}/data", super::encode_path(&id));
        match forward(&s, g, Via::DataRouter, Method::GET, &path, None, COLLECTION).await {
            Ok(r) if r.status() == StatusCode::OK => return r,
            Ok(_) | Err(_) => return Json(CompatData { data: Vec::new() }).into_response(),
        }
    }
    let data = s
        .recent(&id, RECENT)
        .unwrap_or_default()
        .into_iter()
        .map(|o| CompatDatum {
            timestamp: o.timestamp.format_utc("%-d-%b-%y %H:%M:%S"),
            value: o.value.to_json(),
        })
        .collect();
    Json(CompatData { data }).into_response()
}

/// The routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route(COLLECTION, post(register))
        .route("/api/data-sources/discover", post(discover))
        .route("/api/data-sources/{id}", delete(unregister))
        .route("/api/data-sources/{id}/data", get(data))
}

/// The operations.
#[derive(OpenApi)]
#[openapi(paths(register, unregister, discover, data))]
pub struct Doc;
