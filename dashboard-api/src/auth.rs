//! Bearer tokens with roles.
//!
//! When tokens are configured, every route but the health checks needs
//! `Authorization: Bearer <token>`. A viewer may read (`GET`, and the read-only `discover`
//! and `validate` requests); an operator may also start, stop, pause and resume instances;
//! an admin may do everything (create, update, delete). Tokens are configured as SHA-256
//! hashes and compared in constant time; a token never appears in logs. On an edge with
//! `[fleet] cloud_token`, only that token may create, update and delete: deployments come
//! from the cloud.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{Role, TokenConfig, sha256_hex};
use crate::error::ApiError;
use crate::service::Service;

/// Routes anyone may call.
const OPEN: &[&str] = &["/health", "/health-check", "/api/health-check"];

/// The role a request needs.
#[must_use]
pub fn required_role(method: &Method, path: &str) -> Role {
    let last = path.rsplit('/').next().unwrap_or_default();
    if method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && matches!(last, "discover" | "validate"))
    {
        Role::Viewer
    } else if method == Method::POST && matches!(last, "start" | "stop" | "pause" | "resume") {
        Role::Operator
    } else {
        Role::Admin
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The configured token matching `presented`, if any.
#[must_use]
pub fn find<'a>(tokens: &'a [TokenConfig], presented: &str) -> Option<&'a TokenConfig> {
    let hash = sha256_hex(presented);
    // Compare with every token, so that timing says nothing about which matched.
    let mut found = None;
    for t in tokens {
        if constant_time_eq(t.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes()) {
            found = Some(t);
        }
    }
    found
}

/// The middleware.
pub async fn authorize(
    State(service): State<Arc<Service>>,
    request: Request,
    next: Next,
) -> Response {
    if service.tokens.is_empty() || OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let mut request = request;
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim);
    let Some(token) = presented.and_then(|p| find(&service.tokens, p)) else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this route needs `Authorization: Bearer <token>` with a configured token",
        )
        .into_response();
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let needed = required_role(request.method(), request.uri().path());
    if token.role < needed {
        tracing::info!(token = %token.name, role = token.role.as_str(), needed = needed.as_str(), path = %request.uri().path(), "refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "this needs the {} role; the token has {}",
                needed.as_str(),
                token.role.as_str()
            ),
        )
        .into_response();
    }
    if needed == Role::Admin
        && let Some(cloud) = &service.cloud_token
        && &token.name != cloud
    {
        tracing::info!(token = %token.name, path = %request.uri().path(), "refused: deployments come from the cloud");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "CLOUD_ONLY",
            format!(
                "this edge takes models and instances only from its cloud (token `{cloud}`): make the change through the cloud"
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller(token.name.clone()));
    next.run(request).await
}

/// The name of the token a request was authorized with (none without tokens).
#[derive(Clone, Debug)]
pub struct Caller(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_what_a_request_does() {
        assert_eq!(
            required_role(&Method::GET, "/api/v1/data-kinds"),
            Role::Viewer
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/data-kinds/discover"),
            Role::Viewer
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/analytics-instances/x/start"),
            Role::Operator
        );
        assert_eq!(
            required_role(&Method::POST, "/api/analytics-instances/x/stop"),
            Role::Operator
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/data-kinds"),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::DELETE, "/api/v1/data-kinds/x"),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::PUT, "/api/v1/analytics-instances/x/specification"),
            Role::Admin
        );
    }

    #[test]
    fn tokens_match_by_hash_only() {
        let tokens = vec![TokenConfig {
            name: "ops".into(),
            role: Role::Operator,
            sha256: sha256_hex("s3cret"),
        }];
        assert_eq!(
            find(&tokens, "s3cret").map(|t| t.role),
            Some(Role::Operator)
        );
        assert!(find(&tokens, "s3cre").is_none());
        assert!(find(&tokens, "").is_none());
    }
}
