//! Live data of data sources: the most recent observations (`/data`) and a stream of
//! Server-Sent Events (`/stream`) that ends when the server stops. Live views never slow
//! the pipeline down: a client that cannot keep up loses events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::Svc;
use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, ServiceError};

/// Observations `/data` gives when `last` is not said.
const DEFAULT_LAST: usize = 10;

/// Most observations `/data` gives.
const MAX_LAST: usize = 10_000;

/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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

/// The `last` query parameter.
fn last_n(q: &HashMap<String, String>) -> Result<usize, ServiceError> {
    match q.get("last") {
        None => Ok(DEFAULT_LAST),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LAST).contains(n))
            .ok_or_else(|| {
                ServiceError::malformed(format!("last={v:?}: give a number from 1 to {MAX_LAST}"))
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
    let data = s
        .recent(&id, n)?
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
    let events = s.live(&id)?.flat_map(|batch| {
        let events: Vec<Result<Event, Infallible>> = batch
            .iter()
            .map(|o| {
                Ok(Event::default()
                    .event("observation")
                    .data(engine::codec::encode_live_data_set(o).to_string()))
            })
            .collect();
        futures_util::stream::iter(events)
    });
    // Sent at once, so that the client has the response head (and knows the stream is
    // open) before the first observation, however long that takes.
    let opening = futures_util::stream::once(async {
        Ok(Event::default().comment("stream open; observations follow as they arrive"))
    });
    Ok(Sse::new(opening.chain(events)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The live data routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/data-source-manifests/{id}/data", get(recent_data))
        .route(
            "/api/v1/data-source-manifests/{id}/stream",
            get(stream_data),
        )
}

/// The live data operations.
#[derive(OpenApi)]
#[openapi(paths(recent_data, stream_data))]
pub struct Doc;
