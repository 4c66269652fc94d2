//! `/api/v1/cir/...`: the Common Interoperability Registry's operations beyond storing its
//! objects, repositories and links (whose collections are in [`super::models`]): resolve,
//! translate, search, bulk import of links, and the stream of changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use serde_json::Value as Json;
use utoipa::OpenApi;

use super::Svc;
use crate::cir::{ImportFormat, SEARCH_LIMIT, Search};
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

/// The largest bulk import body, in bytes (a million links of CSV).
pub const IMPORT_MAX_BODY_BYTES: usize = 128 * 1024 * 1024;

/// The bulk import's path.
pub const IMPORT_PATH: &str = "/api/v1/cir/links/import";

/// How often an idle change stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BAD_QUERY", message)
}

/// Resolve: the object with every linked record fetched from its repository.
#[utoipa::path(get, path = "/api/v1/cir/objects/{id}/resolve", tag = "CIR",
    params(("id" = String, Path, description = "The object's CIR id")),
    responses(
        (status = 200, description = "The object, its ancestors, children and naming entities, the records fetched (each with its repository), records missing, and each repository that did not answer with its error (complete is then false)", body = Object),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such object", body = ErrorBody)))]
pub async fn resolve(State(s): Svc, Path(id): Path<String>) -> Result<Response, ApiError> {
    let resolved = s.resolve(&id).await?;
    Ok(axum::Json(resolved).into_response())
}

/// Translate: a repository's local id to the CIR id and the local ids in the others.
#[utoipa::path(get, path = "/api/v1/cir/translate", tag = "CIR",
    params(
        ("repository" = String, Query, description = "The repository the id is of"),
        ("localId" = String, Query, description = "The record's id there"),
        ("to" = Option<String>, Query, description = "Only the local ids in this repository")),
    responses(
        (status = 200, description = "The CIR id, the object in brief and its local ids elsewhere", body = Object),
        (status = 400, description = "repository or localId is missing", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "No such repository, or the record is not linked", body = ErrorBody)))]
pub async fn translate(
    State(s): Svc,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let need = |k: &str| {
        q.get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
            bad_query(format!(
                "`{k}` is missing: /api/v1/cir/translate?repository=ID&localId=ID[&to=ID]"
            ))
        })
    };
    let t = s.translate(
        need("repository")?,
        need("localId")?,
        q.get("to").map(String::as_str),
    )?;
    Ok(axum::Json(t).into_response())
}

/// The search a query asks for.
fn search_of(q: &HashMap<String, String>) -> Result<Search, ApiError> {
    let mut search = Search {
        limit: SEARCH_LIMIT.0,
        ..Search::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "class" => search.class = Some(v.clone()),
            "name" => search.name = Some(v.clone()),
            "q" => search.text = Some(v.clone()),
            "parent" => search.parent = Some(v.clone()),
            "entity" => {
                let (collection, id) = v.split_once('/').ok_or_else(|| {
                    bad_query(format!(
                        "entity `{v}`: write collection/id, e.g. data-source-manifests/dsm-1"
                    ))
                })?;
                search.entity = Some((collection.to_owned(), id.to_owned()));
            }
            "limit" | "offset" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| bad_query(format!("{k} `{v}` is not a whole number")))?;
                if k == "limit" {
                    search.limit = n.clamp(1, SEARCH_LIMIT.1);
                } else {
                    search.offset = n;
                }
            }
            _ => match k.strip_prefix("attributes.") {
                Some(name) if !name.is_empty() => {
                    search.attributes.push((name.to_owned(), v.clone()))
                }
                _ => {
                    return Err(bad_query(format!(
                        "unknown criterion `{k}`: search by class, name, q (part of the name), parent, attributes.NAME, entity (collection/id), with limit and offset"
                    )));
                }
            },
        }
    }
    search.attributes.sort();
    Ok(search)
}

/// Search objects: every criterion given must hold.
#[utoipa::path(get, path = "/api/v1/cir/search", tag = "CIR",
    params(
        ("class" = Option<String>, Query, description = "The class, exactly"),
        ("name" = Option<String>, Query, description = "The name, exactly"),
        ("q" = Option<String>, Query, description = "Text the name holds, in any case"),
        ("parent" = Option<String>, Query, description = "The parent's CIR id"),
        ("entity" = Option<String>, Query, description = "The DDA entity naming the object, collection/id (data-source-manifests/dsm-1)"),
        ("limit" = Option<usize>, Query, description = "At most this many (100 by default, 1000 at most)"),
        ("offset" = Option<usize>, Query, description = "After skipping this many")),
    responses(
        (status = 200, description = "{total, objects: [object with its links]}", body = Object),
        (status = 400, description = "An unknown criterion", body = ErrorBody),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "The entity searched by does not exist", body = ErrorBody)))]
pub async fn search(
    State(s): Svc,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let hits = s.search(&search_of(&q)?)?;
    Ok(axum::Json(hits).into_response())
}

/// The import format a request says, by `?format=` or its `Content-Type`.
fn import_format(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<ImportFormat, ApiError> {
    let given = q.get("format").cloned().unwrap_or_else(|| {
        headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match given.as_str() {
        "csv" | "text/csv" => Ok(ImportFormat::Csv),
        "jsonl"
        | "ndjson"
        | "application/x-ndjson"
        | "application/jsonl"
        | "application/jsonlines" => Ok(ImportFormat::JsonLines),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "cannot import `{other}`: send text/csv or application/x-ndjson (or say ?format=csv|jsonl)"
            ),
        )),
    }
}

/// Bulk import of links, all or none.
#[utoipa::path(post, path = "/api/v1/cir/links/import", tag = "CIR",
    params(("format" = Option<String>, Query, description = "csv or jsonl, when the Content-Type does not say")),
    request_body(content = String, description = "CSV with a header row (objectReferenceID,repositoryReferenceID,localID[,id]) or JSON lines, one link per line", content_type = "text/csv"),
    responses(
        (status = 200, description = "{imported, created, replaced}", body = Object),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not create", body = ErrorBody),
        (status = 413, description = "Larger than 128 MiB", body = ErrorBody),
        (status = 415, description = "Neither CSV nor JSON lines", body = ErrorBody),
        (status = 422, description = "Nothing imported: every problem of every row in details, its pointer starting with the row's line", body = ErrorBody)))]
pub async fn import(
    State(s): Svc,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let format = import_format(&q, &headers)?;
    let answer: Json = s.import_links(&body, format).await?;
    Ok(axum::Json(answer).into_response())
}

/// The registry's changes as Server-Sent Events, from now on.
#[utoipa::path(get, path = "/api/v1/cir/changes", tag = "CIR",
    responses(
        (status = 200, description = "Events `change`, each {sequence, op (created, updated, deleted, imported), kind (Object, Repository, Link), id or count}; `missed` when the reader fell behind", content_type = "text/event-stream", body = String),
        (status = 401, description = "A token is needed", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody)))]
pub async fn changes(State(s): Svc) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.cir_changes();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(change) => Event::default()
                .event("change")
                .id(change.sequence.to_string())
                .data(serde_json::to_string(&change).unwrap_or_default()),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("missed")
                .data(format!("{{\"missed\":{n}}}")),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    })
    .take_until(s.stopping_token().cancelled_owned());
    let opening = futures_util::stream::once(async {
        Ok(Event::default().comment("stream open; changes follow as they happen"))
    });
    Sse::new(opening.chain(events)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The registry's routes (its collections are in [`super::models`]).
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/cir/objects/{id}/resolve", get(resolve))
        .route("/api/v1/cir/translate", get(translate))
        .route("/api/v1/cir/search", get(search))
        .route(
            IMPORT_PATH,
            post(import).layer(axum::extract::DefaultBodyLimit::max(IMPORT_MAX_BODY_BYTES)),
        )
        .route("/api/v1/cir/changes", get(changes))
}

/// The registry's operations.
#[derive(OpenApi)]
#[openapi(paths(resolve, translate, search, import, changes))]
pub struct Doc;
