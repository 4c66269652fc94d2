//! Requests a web page could make on its visitor's behalf.
//!
//! An engine on `127.0.0.1` without tokens (the default) is reachable by every web page its
//! user opens: a page cannot read a cross-origin response, but it can send a form POST, and
//! with DNS rebinding (a name of the attacker's that first resolves to the attacker, then to
//! `127.0.0.1`) it can read responses too. Two checks close both, with or without tokens:
//!
//! - **Host**: a request is answered only if its `Host` (or HTTP/2 `:authority`) is an IP
//!   address, `localhost` (or a name under `.localhost`, which browsers resolve to loopback
//!   themselves), or a name listed in `allowed_hosts`. A rebound name is none of these.
//!   A request without a `Host` is not a browser's, and is answered.
//! - **Origin**: a request that changes something (any method but `GET`, `HEAD` and
//!   `OPTIONS`) that carries an `Origin` — every browser sends one with a cross-origin
//!   `POST`, `PUT` or `DELETE` — is refused unless that origin is the server's own (same
//!   host and port as the request's `Host`) or is listed in `allowed_origins`. `Origin: null`
//!   (sandboxed frames, `file:` pages) is refused. A request marked `Sec-Fetch-Site:
//!   cross-site` is refused likewise. Programs (curl, the cloud engine, scripts) send no
//!   `Origin` and are not affected.
//!
//! See docs/security.md for the threat model.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::service::Service;

/// Which hosts and origins the server answers to, besides its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebPolicy {
    /// Names clients may use in `Host` (lowercase; `*` allows any).
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`, lowercase) whose pages may change things; `*` allows
    /// any.
    pub allowed_origins: Vec<String>,
}

impl WebPolicy {
    /// Why a request with this `Host` is refused, if it is.
    #[must_use]
    pub fn refuse_host(&self, host: &str) -> Option<String> {
        let name = host_name(host);
        let ok = name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(&name));
        (!ok).then(|| {
            format!(
                "this server does not answer to the host name `{name}`: it answers to IP \
                 addresses, localhost and the names in `allowed_hosts` (dda.toml, or \
                 DDA_ALLOWED_HOSTS=name,name); add `{name}` there if clients use it"
            )
        })
    }

    /// Why a mutation from a page of `origin` is refused, if it is, for a request whose
    /// `Host` is `host`.
    #[must_use]
    pub fn refuse_origin(&self, origin: &str, host: Option<&str>) -> Option<String> {
        let origin = origin.trim().to_ascii_lowercase();
        let allowed = self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || *o == origin);
        let same = host.is_some_and(|h| same_origin(&origin, h));
        (!(allowed || same)).then(|| {
            format!(
                "a page of {origin} may not change this server (its requests carry that \
                 `Origin`); list the origin in `allowed_origins` (dda.toml, or \
                 DDA_ALLOWED_ORIGINS) to let a web application of yours do it"
            )
        })
    }
}

/// The name part of a `Host` value: lowercase, without port or IPv6 brackets.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `origin` (`scheme://authority`) names the same host and port as `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |a: &str| -> String {
        let a = a.trim().to_ascii_lowercase();
        let has_port = a
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !a.ends_with(']');
        if has_port {
            a
        } else {
            format!("{a}:{default_port}")
        }
    };
    with_port(authority) == with_port(host)
}

/// The middleware.
pub async fn guard(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    let refuse = |code: &str, message: String| {
        tracing::info!(code, %message, path = %request.uri().path(), "refused");
        ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
    };
    if let Some(message) = host.as_deref().and_then(|h| service.web.refuse_host(h)) {
        return refuse("HOST_NOT_ALLOWED", message);
    }
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes {
        let headers = request.headers();
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            if let Some(message) = service.web.refuse_origin(origin, host.as_deref()) {
                return refuse("CROSS_ORIGIN", message);
            }
        } else if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return refuse(
                "CROSS_ORIGIN",
                "a request from another site may not change this server (Sec-Fetch-Site: \
                 cross-site); call it from a program, or from a page listed in \
                 `allowed_origins`"
                    .to_owned(),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_addresses_localhost_or_listed() {
        let p = WebPolicy {
            allowed_hosts: vec!["edge-7.plant.example".into()],
            ..WebPolicy::default()
        };
        for ok in [
            "127.0.0.1:9999",
            "127.0.0.1",
            "[::1]:9999",
            "10.1.2.3:80",
            "localhost:9999",
            "LOCALHOST",
            "dash.localhost:8080",
            "edge-7.plant.example:9999",
            "Edge-7.Plant.Example.",
        ] {
            assert_eq!(p.refuse_host(ok), None, "{ok}");
        }
        for refused in [
            "evil.example:9999",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
        ] {
            let why = p.refuse_host(refused).expect(refused);
            assert!(why.contains("allowed_hosts"), "{why}");
        }
        let any = WebPolicy {
            allowed_hosts: vec!["*".into()],
            ..WebPolicy::default()
        };
        assert_eq!(any.refuse_host("anything.example"), None);
    }

    #[test]
    fn mutations_come_from_the_servers_own_origin_or_a_listed_one() {
        let p = WebPolicy {
            allowed_origins: vec!["https://dashboard.plant.example".into()],
            ..WebPolicy::default()
        };
        let host = Some("127.0.0.1:9999");
        assert_eq!(p.refuse_origin("http://127.0.0.1:9999", host), None);
        assert_eq!(
            p.refuse_origin("http://localhost", Some("localhost:80")),
            None
        );
        assert_eq!(
            p.refuse_origin("https://localhost", Some("localhost:443")),
            None
        );
        assert_eq!(
            p.refuse_origin("https://Dashboard.Plant.Example", host),
            None
        );
        for refused in [
            "http://evil.example",
            "http://127.0.0.1:8080",
            "null",
            "https://127.0.0.1:9999x",
            "file://",
        ] {
            assert!(p.refuse_origin(refused, host).is_some(), "{refused}");
        }
        assert!(p.refuse_origin("http://127.0.0.1:9999", None).is_some());
    }
}
