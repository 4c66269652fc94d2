//! The live registry of data sources: `/api/v1/data-sources`. A data source manifest is a
//! model; registering it puts the device in the engine's live registry (its connector runs,
//! its data flows), unregistering takes it out while its manifest stays. A device can
//! leave and come back without its model being deleted and created again: the instances
//! reading it keep running and say, in `waitingFor`, that they wait for it. Also a
//! gateway's status as its cloud last saw it (`/api/v1/edge-gateways/{id}/status`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use utoipa::OpenApi;

use super::Svc;
use crate::error::{ApiError, ErrorBody};
use crate::fleet::GatewayStatus;
use crate::service::{DataSourceView, Service};

/// Every data source manifest, registered or not.
#[utoipa::path(get, path = "/api/v1/data-sources", tag = "data sources",
    responses(
        (status = 200, description = "Every data source manifest, with whether it is registered", body = Vec<DataSourceView>),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn list(State(s): Svc) -> Json<Vec<DataSourceView>> {
    Json(s.data_sources())
}

/// One data source manifest's registration.
#[utoipa::path(get, path = "/api/v1/data-sources/{id}", tag = "data sources",
    params(("id" = String, Path, description = "The data source manifest's id")),
    responses(
        (status = 200, description = "Whether it is registered", body = DataSourceView),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such data source manifest", body = ErrorBody)))]
pub async fn read(State(s): Svc, Path(id): Path<String>) -> Result<Json<DataSourceView>, ApiError> {
    Ok(Json(s.registration(&id)?))
}

/// Registers a data source: its connector starts and its data reaches the instances
/// reading it. Registering one already registered changes nothing.
#[utoipa::path(post, path = "/api/v1/data-sources/{id}/register", tag = "data sources",
    params(("id" = String, Path, description = "The data source manifest's id")),
    responses(
        (status = 200, description = "Registered", body = DataSourceView),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not change it", body = ErrorBody),
        (status = 404, description = "No such data source manifest", body = ErrorBody),
        (status = 422, description = "Its parameters do not suit its protocol's connector", body = ErrorBody)))]
pub async fn register(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<DataSourceView>, ApiError> {
    Ok(Json(s.set_registered(&id, true).await?))
}

/// Unregisters a data source, keeping its manifest: its connector stops; the instances
/// reading it keep running and wait for it. Kept across restarts.
#[utoipa::path(post, path = "/api/v1/data-sources/{id}/unregister", tag = "data sources",
    params(("id" = String, Path, description = "The data source manifest's id")),
    responses(
        (status = 200, description = "Unregistered", body = DataSourceView),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not change it", body = ErrorBody),
        (status = 404, description = "No such data source manifest", body = ErrorBody),
        (status = 409, description = "A running instance writes it", body = ErrorBody)))]
pub async fn unregister(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<DataSourceView>, ApiError> {
    Ok(Json(s.set_registered(&id, false).await?))
}

/// What the cloud knows of a gateway: online or offline, when last seen, its engine's
/// version and catalogues, and its instances' states and counters (polled every
/// `[fleet] poll_interval`; `unknown` on an engine that is not a cloud).
#[utoipa::path(get, path = "/api/v1/edge-gateways/{id}/status", tag = "edge gateways",
    params(("id" = String, Path, description = "The gateway's id")),
    responses(
        (status = 200, description = "The gateway's status", body = GatewayStatus),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such gateway", body = ErrorBody)))]
pub async fn gateway_status(
    State(s): Svc,
    Path(id): Path<String>,
) -> Result<Json<GatewayStatus>, ApiError> {
    s.entity(manifests::EntityKind::EdgeGateway, &id)?;
    Ok(Json(s.fleet.status(&id)))
}

/// The routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/edge-gateways/{id}/status", get(gateway_status))
        .route("/api/v1/data-sources", get(list))
        .route("/api/v1/data-sources/{id}", get(read))
        .route("/api/v1/data-sources/{id}/register", post(register))
        .route("/api/v1/data-sources/{id}/unregister", post(unregister))
}

/// The operations.
#[derive(OpenApi)]
#[openapi(paths(list, read, register, unregister, gateway_status))]
pub struct Doc;
