//! The HTTP routes, by concern; each module has its handlers, their response types, its
//! `router()` and its part of the OpenAPI document (`Doc`).
//!
//! - [`models`]: `/api/v1/<models>`, the model repository (data interfaces, data kinds,
//!   data source definitions, data source manifests, data consumer manifests, analytics
//!   processor definitions, edge gateways): list (with filters), create, read, update,
//!   delete, discover. Bodies in JSON or XML (`Content-Type`); entities back in JSON or XML
//!   (`Accept`).
//! - [`instances`]: `/api/v1/analytics-instances`, instances from analytics manifests,
//!   their specification, state, lifecycle (`start`, `stop`, `pause`, `resume`), metrics
//!   and discovery.
//! - [`live`]: live data of data sources (recent observations, and a Server-Sent-Events
//!   stream).
//! - [`operations`]: `/health`, `/metrics` (Prometheus), `/api/v1/validate`, the processor
//!   and connector catalogues, `/api/v1/openapi.json`.
//! - [`compat`]: `/api/analytics-instances...` and `/health-check`, the original FAR-EDGE
//!   engine's routes, codes and error bodies, for its clients; [`compat_gateways`] and
//!   [`compat_sources`]: the original Open API's `/api/edge-gateways` and
//!   `/api/data-sources`; [`scope`]: its forwarding of calls naming a gateway to that
//!   gateway's engine, and discovery over every gateway.
//! - [`sources`]: `/api/v1/data-sources`, the live registry of data sources.
//! - [`cir`]: `/api/v1/cir/...`, the Common Interoperability Registry: resolve, translate,
//!   search, bulk import of links, changes (its objects, repositories and links are
//!   collections of [`models`]).
//!
//! Handlers read the request, call the [`Service`] and shape its answer; what can go wrong
//! is a `ServiceError`, answered as an [`ApiError`] or, on the compatibility routes, a
//! `CompatError`.

pub mod cir;
pub mod compat;
pub mod compat_gateways;
pub mod compat_sources;
pub mod instances;
pub mod live;
pub mod models;
pub mod operations;
pub mod scope;
pub mod sources;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::error::ApiError;
use crate::service::Service;

/// The state every handler extracts.
type Svc = State<Arc<Service>>;

/// `response` as a 201 with a `Location`.
fn created(location: String, response: Response) -> Response {
    let mut r = response;
    *r.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// An id as one path segment, percent-encoded.
#[must_use]
pub fn encode_path(id: &str) -> String {
    connectors::http::percent_encode(id)
}

/// Every route (state not yet attached); anything else is a JSON 404.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .merge(models::router())
        .merge(instances::router())
        .merge(live::router())
        .merge(operations::router())
        .merge(compat::router())
        .merge(compat_gateways::router())
        .merge(compat_sources::router())
        .merge(sources::router())
        .merge(cir::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
}
