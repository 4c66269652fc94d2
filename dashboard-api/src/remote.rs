//! Calls to other engines: a cloud forwarding the original Open API's calls to its edge
//! gateways' engines, and fanning discovery out to all of them.
//!
//! Every call has a deadline (`[fleet] call_timeout`), carries the gateway's credential as a
//! bearer token when it has one, and is marked [`FORWARDED`]: an engine answers a forwarded
//! call from what it holds itself and forwards it no further, so that a gateway whose URL
//! names the calling engine cannot make a loop. Credentials never reach messages or logs:
//! what goes wrong names the URL without its user information or query.

use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// The header marking a call one engine makes to another.
pub const FORWARDED: &str = "x-dda-forwarded";

/// Most bytes of an answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A client for other engines' APIs.
pub struct Remote {
    client: connectors::http::HttpsClient,
    timeout: Duration,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What another engine answered.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its JSON body; `Null` when empty, a string when not JSON.
    pub body: Value,
}

impl Answer {
    /// The original API's error code of a refusal (`{"error": CODE}`), if it gave one.
    #[must_use]
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }
}

/// Why another engine could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not one.
    #[error("`{url}` is not an http:// or https:// URL")]
    BadUrl {
        /// The URL, as shown.
        url: String,
    },
    /// No connection, or the connection failed.
    #[error("{url}: {message}")]
    Unreachable {
        /// The URL, as shown.
        url: String,
        /// Why.
        message: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL, as shown.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// `base` joined with `path` (`path` starts with `/`).
#[must_use]
pub fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

impl Remote {
    /// A client trusting the Web PKI and `ca_file`'s certificates, giving up on a call
    /// after `timeout`.
    ///
    /// # Errors
    ///
    /// `ca_file` cannot be read.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: connectors::http::https_client(ca_file)?,
            timeout,
        })
    }

    /// Calls `method url` with `body` (JSON) and, when given, `token` as a bearer token and
    /// `gateway` as the id the called engine is known by here (`x-dda-gateway`).
    ///
    /// # Errors
    ///
    /// The URL is invalid, the engine cannot be reached or does not answer in time. An
    /// answer of any status is an [`Answer`].
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        auth: (Option<&str>, Option<&str>),
        body: Option<&Value>,
    ) -> Result<Answer, RemoteError> {
        let payload = body.map(|b| {
            (
                "application/json",
                Bytes::from(serde_json::to_vec(b).unwrap_or_default()),
            )
        });
        self.send(method, url, auth, payload).await
    }

    /// Calls `method url` with a body of type `content_type` (CSV, JSON lines), as
    /// [`Remote::call`] does.
    ///
    /// # Errors
    ///
    /// As [`Remote::call`].
    pub async fn call_with(
        &self,
        method: Method,
        url: &str,
        auth: (Option<&str>, Option<&str>),
        content_type: &'static str,
        body: Bytes,
    ) -> Result<Answer, RemoteError> {
        self.send(method, url, auth, Some((content_type, body)))
            .await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        (token, gateway): (Option<&str>, Option<&str>),
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Answer, RemoteError> {
        let uri: Uri = url
            .parse()
            .ok()
            .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| RemoteError::BadUrl {
                url: url.split('?').next().unwrap_or_default().to_owned(),
            })?;
        let url = connectors::http::shown(&uri);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::USER_AGENT, "dda")
            .header(header::ACCEPT, "application/json")
            .header(FORWARDED, "1");
        if let Some(t) = token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            v.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, v);
        }
        if let Some(g) = gateway {
            request = request.header(connectors::http::GATEWAY_HEADER, g);
        }
        let payload = match body {
            Some((content_type, b)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                b
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| RemoteError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let timeout = self.timeout;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                RemoteError::Unreachable {
                    url: url.clone(),
                    message: format!("{e}{cause}"),
                }
            })?;
            let status = response.status();
            let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| RemoteError::Unreachable {
                    url: url.clone(),
                    message: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
                })
            };
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RemoteError::Timeout {
                url: url.clone(),
                timeout,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_joined() {
        assert_eq!(
            join("http://edge:9999/api/", "/analytics-instances"),
            "http://edge:9999/api/analytics-instances"
        );
    }

    #[tokio::test]
    async fn an_engine_that_is_not_there_is_unreachable_and_a_bad_url_is_said_so() {
        let remote = Remote::new(None, Duration::from_secs(2)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = remote
            .call(
                Method::GET,
                &format!("http://127.0.0.1:{port}/api/health-check"),
                (Some("tok"), Some("edge-1")),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
        assert!(!e.to_string().contains("tok"), "{e}");
        let e = remote
            .call(Method::GET, "ftp://x/y?secret=1", (None, None), None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`ftp://x/y` is not an http:// or https:// URL"
        );
    }
}
