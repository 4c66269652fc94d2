//! The original Open API's scopes: a call naming a gateway (`?edgeGatewayReferenceID=`) is
//! forwarded to that gateway's engine (its local scope); one naming none is answered here
//! (the global scope); discovery on the cloud lists both, each local result tagged with its
//! gateway.
//!
//! Forwarding follows the original: the gateway's `edgeAnalyticsEngineBaseURL` (the
//! engine's `…/api` root) takes `/analytics-instances…`, its
//! `dataRouterAndPreprocessorBaseURL` takes `/data-sources…`; an unknown gateway is 400
//! `EDGE_GATEWAY_NOT_FOUND`; the gateway's 400 and 404 come back with its codes, anything
//! else it answers (or failing to answer) is 500 `FAILED`; object answers get the
//! gateway's `edgeGatewayReferenceID`. A gateway failing a fan-out contributes nothing, as
//! in the original, and is logged. A call that is itself forwarded ([`FORWARDED`]) is
//! answered from what this engine holds, never forwarded again.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::CompatError;
use crate::remote::{Answer, FORWARDED, join};
use crate::service::{GatewayTarget, Service, ServiceError};

/// The query parameter naming a gateway.
pub const GATEWAY_PARAM: &str = "edgeGatewayReferenceID";

/// Where a call of the original Open API is to be answered.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The gateway the query names (none when empty, or when the call is forwarded).
    pub gateway: Option<String>,
    /// Whether another engine forwarded the call.
    pub forwarded: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let forwarded = parts.headers.contains_key(FORWARDED);
        let gateway = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(q)| q.get(GATEWAY_PARAM).cloned())
            .filter(|g| !g.is_empty() && !forwarded);
        Ok(Self { gateway, forwarded })
    }
}

/// Which of a gateway's URLs a call goes to.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// `edgeAnalyticsEngineBaseURL`: analytics instances.
    AnalyticsEngine,
    /// `dataRouterAndPreprocessorBaseURL`: data sources.
    DataRouter,
}

impl Via {
    fn base(self, t: &GatewayTarget) -> Result<&str, String> {
        let (url, field) = match self {
            Self::AnalyticsEngine => (&t.analytics_engine, "edgeAnalyticsEngineBaseURL"),
            Self::DataRouter => (&t.data_router, "dataRouterAndPreprocessorBaseURL"),
        };
        url.as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("edge gateway `{}` has no `{field}`", t.id))
    }
}

fn failed(message: String) -> CompatError {
    CompatError::new(StatusCode::INTERNAL_SERVER_ERROR, "FAILED", Some(message))
}

/// Gateway `id`'s engine, or the original's 400 `EDGE_GATEWAY_NOT_FOUND`.
fn target(s: &Service, id: &str) -> Result<GatewayTarget, CompatError> {
    s.gateway_target(id).map_err(|e| match e {
        ServiceError::NotFound { .. } => CompatError::new(
            StatusCode::BAD_REQUEST,
            "EDGE_GATEWAY_NOT_FOUND",
            Some(e.to_string()),
        ),
        other => other.into(),
    })
}

/// Calls `method path` on gateway `t`'s engine `via` one of its URLs.
async fn call(
    s: &Service,
    t: &GatewayTarget,
    via: Via,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, String> {
    let url = join(via.base(t)?, path);
    let answer = s
        .remote
        .call(method, &url, t.credentials(), body)
        .await
        .map_err(|e| format!("edge gateway `{}`: {e}", t.id))?;
    Ok(answer)
}

/// `body` with the gateway's id filled in, when it is an object.
fn tagged(mut body: Value, gateway: &str) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.insert(GATEWAY_PARAM.into(), Value::String(gateway.to_owned()));
    }
    body
}

/// Forwards `method path` (with `body`) to gateway `gateway`'s engine and answers as the
/// original did: the gateway's success with its status and, for an object, the gateway
/// filled in (a 201 gets a `Location` under `collection`); its 400 and 404 with their
/// codes; anything else 500 `FAILED`.
///
/// # Errors
///
/// The gateway is unknown, refuses, or cannot be reached.
pub async fn forward(
    s: &Service,
    gateway: &str,
    via: Via,
    method: Method,
    path: &str,
    body: Option<&Value>,
    collection: &str,
) -> Result<Response, CompatError> {
    let t = target(s, gateway)?;
    let answer = call(s, &t, via, method, path, body).await.map_err(|e| {
        tracing::warn!(gateway = %t.id, error = %e, "a forwarded call failed");
        failed(e)
    })?;
    let status = answer.status;
    if status.is_success() {
        if status == StatusCode::NO_CONTENT || answer.body.is_null() {
            return Ok(status.into_response());
        }
        let body = tagged(answer.body, gateway);
        let location = (status == StatusCode::CREATED)
            .then(|| body.get("id").and_then(Value::as_str))
            .flatten()
            .and_then(|id| {
                HeaderValue::from_str(&format!(
                    "{collection}/{}?{GATEWAY_PARAM}={}",
                    super::encode_path(id),
                    super::encode_path(gateway)
                ))
                .ok()
            });
        let mut r = (status, Json(body)).into_response();
        if let Some(v) = location {
            r.headers_mut().insert(LOCATION, v);
        }
        return Ok(r);
    }
    let code = answer.error_code().unwrap_or("FAILED").to_owned();
    let message = Some(format!("edge gateway `{gateway}` answered {status}"));
    Err(match status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => CompatError::new(status, &code, message),
        _ => failed(format!(
            "edge gateway `{gateway}` answered {status} ({code})"
        )),
    })
}

/// Discovery in the local scopes: `POST path` with `criteria` to the one gateway `scope`
/// names or, unscoped on a cloud, to every gateway at once; each gateway's `list` items
/// tagged with it. A gateway that fails contributes nothing.
///
/// # Errors
///
/// The gateway the scope names is unknown.
pub async fn discover_local(
    s: &Service,
    scope: &Scope,
    via: Via,
    path: &str,
    criteria: &Value,
    list: &str,
) -> Result<Vec<Value>, CompatError> {
    let targets = match &scope.gateway {
        Some(g) => vec![target(s, g)?],
        None if !scope.forwarded && s.role == crate::config::FleetRole::Cloud => {
            s.gateway_targets()
        }
        None => return Ok(Vec::new()),
    };
    let calls = targets.iter().map(|t| async move {
        let answer = call(s, t, via, Method::POST, path, Some(criteria)).await;
        match answer {
            Ok(a) if a.status.is_success() => a
                .body
                .get(list)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|i| tagged(i.clone(), &t.id))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
            Ok(a) => {
                tracing::warn!(gateway = %t.id, status = %a.status, "a gateway refused a discovery");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(gateway = %t.id, error = %e, "a gateway failed a discovery");
                Vec::new()
            }
        }
    });
    Ok(futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect())
}
