//! API errors: `{code, message, details: [{pointer, message}]}`, with the status that fits.
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `MALFORMED` | the body is not JSON/XML, or a query parameter is unusable |
//! | 401 | `UNAUTHORIZED` | a token is needed and missing or unknown |
//! | 403 | `FORBIDDEN` | the token's role does not allow this |
//! | 404 | `NOT_FOUND` | no such entity or instance |
//! | 406 | `NOT_ACCEPTABLE` | the `Accept` header asks for a format the route cannot give |
//! | 409 | `ALREADY_EXISTS`, `REFERENCED`, `ILLEGAL_TRANSITION`, `IN_USE` | the request conflicts with the current state |
//! | 415 | `UNSUPPORTED_MEDIA_TYPE` | the body is neither JSON nor XML |
//! | 422 | `INVALID` | the document is well-formed but invalid (every diagnostic in `details`) |
//! | 422 | `START_FAILED` | an instance cannot start (its processors or connectors refuse their configuration) |
//!
//! Bad input never produces a 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use manifests::Diagnostic;
use serde::Serialize;
use utoipa::ToSchema;

/// One problem of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Detail {
    /// JSON pointer into the request body (empty for the whole body).
    pub pointer: String,
    /// What is wrong, and how to fix it.
    pub message: String,
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

    /// 404.
    #[must_use]
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no {what} with id `{id}`"),
        )
    }

    /// 400 for an unusable body or parameter.
    #[must_use]
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MALFORMED", message)
    }

    /// 409.
    #[must_use]
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 with every diagnostic as a detail.
    #[must_use]
    pub fn invalid(message: impl Into<String>, diagnostics: &[&Diagnostic]) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID", message)
            .with_details(diagnostics.iter().map(|d| detail(d)).collect())
    }
}

/// A diagnostic as a detail: its message, its hint, its code.
#[must_use]
pub fn detail(d: &Diagnostic) -> Detail {
    let mut message = format!("{} [{}]", d.message, d.code);
    if let Some(h) = &d.hint {
        message.push_str("; ");
        message.push_str(h);
    }
    Detail {
        pointer: d.pointer.clone(),
        message,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::NotFound(id) => Self::not_found("analytics instance", &id),
            EngineError::Exists(_) => Self::conflict("ALREADY_EXISTS", message),
            EngineError::IllegalTransition { .. } => Self::conflict("ILLEGAL_TRANSITION", message),
            EngineError::InUse { .. } => Self::conflict("IN_USE", message),
            EngineError::StartFailed { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "START_FAILED", message)
            }
            EngineError::Connector(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

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

impl From<ApiError> for CompatError {
    /// Maps DDA's errors onto the original engine's codes: an unknown instance is
    /// `ANALYTICS_INSTANCE_NOT_FOUND` (404); a reference to a missing source, sink or
    /// processor definition is `DATA_SOURCE_NOT_FOUND`, `DATA_SINK_NOT_FOUND`,
    /// `ANALYTICS_PROCESSOR_DEFINITION_NOT_FOUND`; a missing field `MISSING_<FIELD>`; other
    /// invalid documents `INVALID_SPECIFICATION` — all 400, as the original answered.
    fn from(e: ApiError) -> Self {
        let message = Some(e.body.message.clone());
        if e.status == StatusCode::NOT_FOUND {
            return Self::new(
                StatusCode::NOT_FOUND,
                "ANALYTICS_INSTANCE_NOT_FOUND",
                message,
            );
        }
        let first = e.body.details.first();
        let code = match (e.body.code.as_str(), first) {
            ("INVALID", Some(d)) if d.message.contains("[dangling-reference]") => {
                if d.pointer.contains("/dataSink/") {
                    "DATA_SINK_NOT_FOUND".to_owned()
                } else if d.pointer.contains("/dataSources/") {
                    "DATA_SOURCE_NOT_FOUND".to_owned()
                } else if d
                    .pointer
                    .ends_with("analyticsProcessorDefinitionReferenceID")
                {
                    "ANALYTICS_PROCESSOR_DEFINITION_NOT_FOUND".to_owned()
                } else if d.pointer.ends_with("edgeGatewayReferenceID") {
                    "EDGE_GATEWAY_NOT_FOUND".to_owned()
                } else {
                    "INVALID_SPECIFICATION".to_owned()
                }
            }
            ("INVALID", Some(d)) if d.message.contains("[missing-field]") => {
                let field = d.message.split('`').nth(1).unwrap_or("FIELD");
                format!("MISSING_{}", screaming(field))
            }
            ("INVALID" | "MALFORMED", _) => "INVALID_SPECIFICATION".to_owned(),
            ("ILLEGAL_TRANSITION", _)
                if e.body.message.contains("it is RUNNING")
                    || e.body.message.contains("it is PAUSED") =>
            {
                "ANALYTICS_INSTANCE_RUNNING".to_owned()
            }
            ("ILLEGAL_TRANSITION", _) => "ANALYTICS_INSTANCE_NOT_RUNNING".to_owned(),
            ("START_FAILED", _) => "FAILED".to_owned(),
            (other, _) => other.to_owned(),
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

    #[test]
    fn original_codes_are_spelled_as_the_original_did() {
        assert_eq!(screaming("analyticsProcessors"), "ANALYTICS_PROCESSORS");
        assert_eq!(
            screaming("dataSourceManifestReferenceID"),
            "DATA_SOURCE_MANIFEST_REFERENCE_ID"
        );
        assert_eq!(screaming("name"), "NAME");
    }

    #[test]
    fn lifecycle_conflicts_map_to_the_original_codes() {
        let running: ApiError = EngineError::IllegalTransition {
            id: "a".into(),
            verb: "start",
            state: engine::State::Running,
        }
        .into();
        assert_eq!(running.status, StatusCode::CONFLICT);
        let compat = CompatError::from(running);
        assert_eq!(
            (compat.status, compat.body.error.as_str()),
            (StatusCode::BAD_REQUEST, "ANALYTICS_INSTANCE_RUNNING")
        );
        let stopped: ApiError = EngineError::IllegalTransition {
            id: "a".into(),
            verb: "stop",
            state: engine::State::Stopped,
        }
        .into();
        assert_eq!(
            CompatError::from(stopped).body.error,
            "ANALYTICS_INSTANCE_NOT_RUNNING"
        );
        let missing = CompatError::from(ApiError::not_found("analytics instance", "x"));
        assert_eq!(
            (missing.status, missing.body.error.as_str()),
            (StatusCode::NOT_FOUND, "ANALYTICS_INSTANCE_NOT_FOUND")
        );
    }
}
