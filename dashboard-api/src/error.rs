//! API errors: `{code, message, details: [{pointer, message}]}`, with the status that fits.
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `MALFORMED` | the body is not JSON/XML, or a query parameter is unusable |
//! | 401 | `UNAUTHORIZED` | a token is needed and missing or unknown |
//! | 403 | `FORBIDDEN` | the token's role does not allow this |
//! | 403 | `HOST_NOT_ALLOWED`, `CROSS_ORIGIN` | a request a web page could have forged ([`crate::origin`]) |
//! | 404 | `NOT_FOUND` | no such entity, instance or route |
//! | 405 | `METHOD_NOT_ALLOWED` | the route exists, not with this method (`Allow` lists those it has) |
//! | 406 | `NOT_ACCEPTABLE` | the `Accept` header asks for a format the route cannot give |
//! | 409 | `ALREADY_EXISTS`, `REFERENCED`, `ILLEGAL_TRANSITION`, `IN_USE` | the request conflicts with the current state |
//! | 413 | `PAYLOAD_TOO_LARGE` | the body is larger than the server accepts |
//! | 415 | `UNSUPPORTED_MEDIA_TYPE` | the body is neither JSON nor XML |
//! | 422 | `INVALID` | the document is well-formed but invalid (every diagnostic in `details`) |
//! | 422 | `START_FAILED` | an instance cannot start (its processors or connectors refuse their configuration) |
//! | 503 | `STORAGE` | the store cannot be read or written |
//!
//! Bad input never produces a 500. The refusals the HTTP layer makes itself (a body over the
//! limit, a path segment that is not valid percent-encoded UTF-8, a method the route lacks)
//! are given the same shape by [`json_errors`].
//!
//! Both shapes — this one and the original FAR-EDGE engine's `{"error": "CODE"}`
//! ([`CompatError`]) — are built from a [`ServiceError`] by its variant and fields: a
//! diagnostic's code and pointer, a transition's state, a missing field's name. No message
//! text is ever read back.

use axum::Json;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{DANGLING_REFERENCE, MISSING_FIELD, Problem};
use crate::repository::Referrer;
use crate::service::ServiceError;

/// One problem of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Detail {
    /// JSON pointer into the request body (empty for the whole body).
    pub pointer: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl From<&Problem> for Detail {
    /// The problem's message, its code in brackets, then its hint.
    fn from(p: &Problem) -> Self {
        let mut message = p.message.clone();
        if let Some(code) = p.code {
            message.push_str(&format!(" [{code}]"));
        }
        if let Some(h) = &p.hint {
            message.push_str("; ");
            message.push_str(h);
        }
        Self {
            pointer: p.pointer.clone(),
            message,
        }
    }
}

impl From<&Referrer> for Detail {
    fn from(r: &Referrer) -> Self {
        Self {
            pointer: r.pointer.clone(),
            message: format!("{} `{}` refers to it at {}", r.kind, r.id, r.pointer),
        }
    }
}

/// The body of every error response of the `/api/v1` routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// Each problem found, where there are several.
    pub details: Vec<Detail>,
}

/// An error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with no details.
    #[must_use]
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                details: Vec::new(),
            },
        }
    }

    /// Adds details.
    #[must_use]
    pub fn with_details(mut self, details: Vec<Detail>) -> Self {
        self.body.details = details;
        self
    }
}

/// Each problem as a detail.
fn details<'a, T: 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<Detail>
where
    Detail: From<&'a T>,
{
    items.into_iter().map(Detail::from).collect()
}

/// The v1 status and code of a refusal.
fn status_and_code(e: &ServiceError) -> (StatusCode, &'static str) {
    match e {
        ServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        ServiceError::AlreadyExists { .. } => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        ServiceError::Referenced(_) => (StatusCode::CONFLICT, "REFERENCED"),
        ServiceError::IllegalTransition { .. } => (StatusCode::CONFLICT, "ILLEGAL_TRANSITION"),
        ServiceError::InUse { .. } => (StatusCode::CONFLICT, "IN_USE"),
        ServiceError::Invalid { .. }
        | ServiceError::IdMismatch { .. }
        | ServiceError::Unplannable(_)
        | ServiceError::Connector(_) => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID"),
        ServiceError::Malformed { .. } => (StatusCode::BAD_REQUEST, "MALFORMED"),
        ServiceError::StartFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "START_FAILED"),
        ServiceError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORAGE"),
        ServiceError::Remote(_) => (StatusCode::BAD_GATEWAY, "GATEWAY_UNREACHABLE"),
    }
}

impl From<ServiceError> for ApiError {
    /// The status and code of the variant, its message, and as details every problem of a
    /// document or every referrer of an entity.
    fn from(e: ServiceError) -> Self {
        let (status, code) = status_and_code(&e);
        let details = match &e {
            ServiceError::Invalid { problems, .. } | ServiceError::Malformed { problems, .. } => {
                details(problems)
            }
            ServiceError::Referenced(r) => details(&r.referrers),
            _ => Vec::new(),
        };
        Self::new(status, code, e.to_string()).with_details(details)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Gives an error response that is not JSON — the HTTP layer's own refusals, in plain text
/// or empty — the documented body, keeping its status and headers (`Allow`,
/// `WWW-Authenticate`) and its text as the message.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json") || v.contains("xml"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The HTTP layer's refusals are a line of text; more is not a refusal of its own.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_uppercase().replace([' ', '-'], "_");
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not take this method; the Allow header lists those it takes".to_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the body is larger than the server accepts ({MAX_BODY_BYTES} bytes); split it, \
             or send models one by one"
        ),
        _ if text.is_empty() => reason.to_owned(),
        _ => text,
    };
    let body = serde_json::to_vec(&ErrorBody {
        code,
        message,
        details: Vec::new(),
    })
    .unwrap_or_default();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The largest request body the server reads, in bytes (axum's default limit).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The original FAR-EDGE engine's error body: `{"error": "CODE"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CompatErrorBody {
    /// The original engine's error code, e.g. `ANALYTICS_INSTANCE_RUNNING`.
    pub error: String,
    /// Why, in words (DDA adds it; the original had only the code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An error of the compatibility routes, in the original engine's shape and codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatError {
    /// The status (400 or 404, as the original).
    pub status: StatusCode,
    /// The body.
    pub body: CompatErrorBody,
}

impl CompatError {
    /// An error with an original code.
    #[must_use]
    pub fn new(status: StatusCode, code: &str, message: Option<String>) -> Self {
        Self {
            status,
            body: CompatErrorBody {
                error: code.to_owned(),
                message,
            },
        }
    }
}

/// The original engine's code for an invalid document, from its first problem: a
/// reference to a missing sink, source, processor definition or gateway is
/// `<THING>_NOT_FOUND`; a missing field `MISSING_<FIELD>`; anything else
/// `INVALID_SPECIFICATION`.
fn invalid_code(first: Option<&Problem>) -> String {
    let Some(p) = first else {
        return "INVALID_SPECIFICATION".to_owned();
    };
    let pointer = p.pointer.as_str();
    match p.code {
        Some(DANGLING_REFERENCE) => if pointer.contains("/dataSink/") {
            "DATA_SINK_NOT_FOUND"
        } else if pointer.contains("/dataSources/") {
            "DATA_SOURCE_NOT_FOUND"
        } else if pointer.ends_with("analyticsProcessorDefinitionReferenceID") {
            "ANALYTICS_PROCESSOR_DEFINITION_NOT_FOUND"
        } else if pointer.ends_with("edgeGatewayReferenceID") {
            "EDGE_GATEWAY_NOT_FOUND"
        } else if pointer.ends_with("dataSourceDefinitionReferenceID") {
            "DATA_SOURCE_DEFINITION_NOT_FOUND"
        } else {
            "INVALID_SPECIFICATION"
        }
        .to_owned(),
        Some(MISSING_FIELD) => format!(
            "MISSING_{}",
            screaming(p.missing.as_deref().unwrap_or("FIELD"))
        ),
        _ => "INVALID_SPECIFICATION".to_owned(),
    }
}

impl From<ServiceError> for CompatError {
    /// Maps DDA's errors onto the original engine's codes: an unknown instance is
    /// `ANALYTICS_INSTANCE_NOT_FOUND` (404), an unknown gateway `EDGE_GATEWAY_NOT_FOUND`; a reference to a missing source, sink or
    /// processor definition is `DATA_SOURCE_NOT_FOUND`, `DATA_SINK_NOT_FOUND`,
    /// `ANALYTICS_PROCESSOR_DEFINITION_NOT_FOUND`; a missing field `MISSING_<FIELD>`; other
    /// invalid documents `INVALID_SPECIFICATION`; a transition refused while RUNNING or
    /// PAUSED `ANALYTICS_INSTANCE_RUNNING`, otherwise `ANALYTICS_INSTANCE_NOT_RUNNING` —
    /// all 400, as the original answered.
    fn from(e: ServiceError) -> Self {
        let message = Some(e.to_string());
        let code = match &e {
            ServiceError::NotFound { what, .. } => {
                // `analytics instance` → ANALYTICS_INSTANCE_NOT_FOUND, `edge gateway` →
                // EDGE_GATEWAY_NOT_FOUND.
                let code = format!("{}_NOT_FOUND", what.to_uppercase().replace(' ', "_"));
                return Self::new(StatusCode::NOT_FOUND, &code, message);
            }
            ServiceError::Invalid { problems, .. } => invalid_code(problems.first()),
            ServiceError::IdMismatch { .. }
            | ServiceError::Unplannable(_)
            | ServiceError::Connector(_)
            | ServiceError::Malformed { .. } => invalid_code(None),
            ServiceError::IllegalTransition {
                state: State::Running | State::Paused,
                ..
            } => "ANALYTICS_INSTANCE_RUNNING".to_owned(),
            ServiceError::IllegalTransition { .. } => "ANALYTICS_INSTANCE_NOT_RUNNING".to_owned(),
            ServiceError::StartFailed { .. } => "FAILED".to_owned(),
            // The original answered 500 FAILED when a gateway failed it.
            ServiceError::Remote(_) => {
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "FAILED", message);
            }
            // The original had no such conflicts: DDA's own codes.
            ServiceError::AlreadyExists { .. }
            | ServiceError::Referenced(_)
            | ServiceError::InUse { .. }
            | ServiceError::Storage(_) => status_and_code(&e).1.to_owned(),
        };
        Self::new(StatusCode::BAD_REQUEST, &code, message)
    }
}

/// `analyticsProcessors` → `ANALYTICS_PROCESSORS`, as the original engine spelled codes.
fn screaming(field: &str) -> String {
    let mut out = String::new();
    for (i, c) in field.replacen("ID", "Id", 1).chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::Referenced;
    use engine::EngineError;

    #[test]
    fn original_codes_are_spelled_as_the_original_did() {
        assert_eq!(screaming("analyticsProcessors"), "ANALYTICS_PROCESSORS");
        assert_eq!(
            screaming("dataSourceManifestReferenceID"),
            "DATA_SOURCE_MANIFEST_REFERENCE_ID"
        );
        assert_eq!(screaming("name"), "NAME");
    }

    fn illegal(verb: &'static str, state: State) -> ServiceError {
        EngineError::IllegalTransition {
            id: "a".into(),
            verb,
            state,
        }
        .into()
    }

    #[test]
    fn lifecycle_conflicts_map_to_the_original_codes() {
        let running = ApiError::from(illegal("start", State::Running));
        assert_eq!(running.status, StatusCode::CONFLICT);
        let compat = CompatError::from(illegal("start", State::Running));
        assert_eq!(
            (compat.status, compat.body.error.as_str()),
            (StatusCode::BAD_REQUEST, "ANALYTICS_INSTANCE_RUNNING")
        );
        let stopped = illegal("stop", State::Stopped);
        assert_eq!(
            CompatError::from(stopped).body.error,
            "ANALYTICS_INSTANCE_NOT_RUNNING"
        );
        let missing = CompatError::from(ServiceError::no_instance("x"));
        assert_eq!(
            (missing.status, missing.body.error.as_str()),
            (StatusCode::NOT_FOUND, "ANALYTICS_INSTANCE_NOT_FOUND")
        );
    }

    fn invalid(code: &'static str, pointer: &str, missing: Option<&str>) -> ServiceError {
        ServiceError::Invalid {
            message: "the analytics manifest is invalid: 1 problem(s)".into(),
            problems: vec![Problem {
                code: Some(code),
                pointer: pointer.into(),
                message: "whatever the validator says".into(),
                hint: None,
                missing: missing.map(str::to_owned),
            }],
        }
    }

    #[test]
    fn invalid_documents_map_to_the_original_codes_by_code_pointer_and_field() {
        for (error, expected) in [
            (
                invalid(
                    DANGLING_REFERENCE,
                    "/analyticsProcessors/apm/0/dataSink/dataSourceManifestReferenceID",
                    None,
                ),
                "DATA_SINK_NOT_FOUND",
            ),
            (
                invalid(
                    DANGLING_REFERENCE,
                    "/analyticsProcessors/apm/0/dataSources/dataSource/0/dataSourceManifestReferenceID",
                    None,
                ),
                "DATA_SOURCE_NOT_FOUND",
            ),
            (
                invalid(
                    DANGLING_REFERENCE,
                    "/analyticsProcessors/apm/0/analyticsProcessorDefinitionReferenceID",
                    None,
                ),
                "ANALYTICS_PROCESSOR_DEFINITION_NOT_FOUND",
            ),
            (
                invalid(DANGLING_REFERENCE, "/edgeGatewayReferenceID", None),
                "EDGE_GATEWAY_NOT_FOUND",
            ),
            (
                invalid(DANGLING_REFERENCE, "/dataSourceDefinitionReferenceID", None),
                "DATA_SOURCE_DEFINITION_NOT_FOUND",
            ),
            (
                invalid(MISSING_FIELD, "", Some("analyticsProcessors")),
                "MISSING_ANALYTICS_PROCESSORS",
            ),
            (invalid("schema", "/name", None), "INVALID_SPECIFICATION"),
            (ServiceError::malformed("not JSON"), "INVALID_SPECIFICATION"),
            (
                ServiceError::StartFailed {
                    id: "a".into(),
                    reason: "no".into(),
                },
                "FAILED",
            ),
            (
                ServiceError::AlreadyExists {
                    kind: manifests::EntityKind::AnalyticsManifest,
                    id: "a".into(),
                },
                "ALREADY_EXISTS",
            ),
        ] {
            let compat = CompatError::from(error);
            assert_eq!(
                (compat.status, compat.body.error.as_str()),
                (StatusCode::BAD_REQUEST, expected)
            );
        }
    }

    #[test]
    fn v1_statuses_and_codes_follow_the_variant() {
        let invalid = ApiError::from(invalid(MISSING_FIELD, "", Some("analyticsProcessors")));
        assert_eq!(
            (invalid.status, invalid.body.code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "INVALID")
        );
        assert_eq!(
            invalid.body.details[0].message,
            "whatever the validator says [missing-field]"
        );
        let referenced = ApiError::from(ServiceError::Referenced(Referenced {
            kind: manifests::EntityKind::DataKind,
            id: "dk".into(),
            referrers: vec![Referrer {
                kind: manifests::EntityKind::DataSourceDefinition,
                id: "dsd".into(),
                pointer: "/dataKindReferenceID".into(),
            }],
        }));
        assert_eq!(
            (referenced.status, referenced.body.code.as_str()),
            (StatusCode::CONFLICT, "REFERENCED")
        );
        assert_eq!(
            referenced.body.details[0].message,
            "data source definition `dsd` refers to it at /dataKindReferenceID"
        );
        assert_eq!(
            ApiError::from(ServiceError::malformed("x")).status,
            StatusCode::BAD_REQUEST
        );
    }
}
