//! Request bodies in JSON or XML (by `Content-Type`), and entity responses in JSON or XML
//! (by `Accept`), through the same mapping as `dda convert`.
//!
//! What cannot be read is a [`ServiceError`] (malformed or invalid, with every problem
//! found): the compatibility routes answer it in the original engine's codes as they do
//! any other refusal. Only the media type is HTTP's own error ([`request_syntax`]).

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use manifests::EntityKind;
use manifests::bundle::Syntax;
use manifests::node::Node;
use manifests::schema::{Shape, schemas};
use serde_json::Value as Json;

use crate::error::ApiError;
use crate::problem::Problem;
use crate::service::ServiceError;

/// Refuses a request whose `Content-Length` is over [`crate::error::MAX_BODY_BYTES`] (the
/// bulk import's own limit on its route) before
/// its body is read (a body sent without a length is cut off at the limit as it is read).
pub async fn refuse_oversized(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let length = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = if request.uri().path() == crate::routes::cir::IMPORT_PATH {
        crate::routes::cir::IMPORT_MAX_BODY_BYTES
    } else {
        crate::error::MAX_BODY_BYTES
    };
    if length.is_some_and(|n| n > limit as u64) {
        // The body is not read: the connection is not reused.
        let mut r = StatusCode::PAYLOAD_TOO_LARGE.into_response();
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        return r;
    }
    next.run(request).await
}

/// The syntax of a request body, from its `Content-Type` (JSON when absent).
///
/// # Errors
///
/// 415 for anything but JSON or XML.
pub fn request_syntax(headers: &HeaderMap) -> Result<Syntax, ApiError> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(Syntax::Json);
    };
    let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media == "application/json" || media.ends_with("+json") {
        Ok(Syntax::Json)
    } else if media == "application/xml" || media == "text/xml" || media.ends_with("+xml") {
        Ok(Syntax::Xml)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("send application/json or application/xml, not {media:?}"),
        ))
    }
}

/// Whether the client asks for XML (`Accept: application/xml`, ranked before JSON).
#[must_use]
pub fn wants_xml(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for (media, q) in ranges(accept) {
        let xml = match media.as_str() {
            "application/xml" | "text/xml" => true,
            "application/json" | "*/*" | "application/*" => false,
            _ => continue,
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, xml));
        }
    }
    best.is_some_and(|(_, xml)| xml)
}

/// The media ranges of an `Accept` header, lowercase, with their quality (1 unless given).
fn ranges(accept: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    accept.split(',').map(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        (media, q)
    })
}

/// Whether an `Accept` header takes `content_type` (parameters such as `charset` aside).
fn accepts(accept: &str, content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let kind = essence.split('/').next().unwrap_or_default();
    ranges(accept).any(|(media, q)| {
        q > 0.0
            && (media == "*/*"
                || media == essence
                || media.strip_suffix("/*").is_some_and(|k| k == kind))
    })
}

/// Refuses, with 406, a successful response of a media type the request's `Accept` does
/// not take (a list asked for in XML where only JSON exists), rather than answering in a
/// type the client did not ask for. Error responses are JSON whatever was asked.
pub async fn refuse_unacceptable(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let (Some(accept), true) = (accept, response.status().is_success()) else {
        return response;
    };
    let Some(content_type) = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return response;
    };
    if accepts(&accept, &content_type) {
        return response;
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        format!(
            "this route answers {essence} only, which `Accept: {accept}` does not take: ask for {essence} (or */*)"
        ),
    )
    .into_response()
}

/// Reads a body holding one entity of `kind` into the JSON shape of the models.
///
/// # Errors
///
/// [`ServiceError::Malformed`] for text that is not JSON / XML or not UTF-8,
/// [`ServiceError::Invalid`] for something other than an object, XML of another entity, or
/// XML that does not fit the model.
pub fn parse_entity(bytes: &[u8], syntax: Syntax, kind: EntityKind) -> Result<Json, ServiceError> {
    parse(
        bytes,
        syntax,
        kind.info().element,
        schemas().kind_shape(kind),
    )
}

/// Reads a body holding a document or a bundle, for validation.
///
/// # Errors
///
/// [`ServiceError::Malformed`] when it is not UTF-8.
pub fn parse_text(bytes: &[u8]) -> Result<String, ServiceError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ServiceError::malformed("the body is not UTF-8 text"))
}

/// Reads discover criteria: a JSON object (an empty body is no criterion).
///
/// # Errors
///
/// [`ServiceError::Malformed`] for text that is not JSON, [`ServiceError::Invalid`] for
/// JSON that is not an object.
pub fn parse_criteria(bytes: &[u8]) -> Result<serde_json::Map<String, Json>, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Json>(bytes) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(ServiceError::invalid("discover criteria are a JSON object")),
        Err(e) => Err(ServiceError::malformed(format!("invalid JSON: {e}"))),
    }
}

fn parse(bytes: &[u8], syntax: Syntax, element: &str, shape: &Shape) -> Result<Json, ServiceError> {
    let text = parse_text(bytes)?;
    match syntax {
        Syntax::Json => {
            let node = manifests::json::parse(&text).map_err(|e| ServiceError::Malformed {
                message: format!("invalid JSON: {}", e.message),
                problems: vec![
                    Problem::at("", format!("at byte {}", e.span.start)).with_hint(e.hint),
                ],
            })?;
            if !matches!(node.value, manifests::node::Value::Object(_)) {
                return Err(ServiceError::invalid(format!(
                    "expected a JSON object, found {}",
                    node.type_name()
                )));
            }
            Ok(node.to_json())
        }
        Syntax::Xml => {
            let root = manifests::xml::parse(&text)
                .map_err(|e| ServiceError::malformed(format!("invalid XML: {}", e.message)))?;
            if root.name != element {
                return Err(ServiceError::invalid(format!(
                    "expected a <{element}> document, found <{}>",
                    root.name
                )));
            }
            manifests::mapping::xml_to_node(&root, shape)
                .map(|n| n.to_json())
                .map_err(|(_, errors)| ServiceError::Invalid {
                    message: "the XML does not fit the model".to_owned(),
                    problems: errors
                        .into_iter()
                        .map(|e| Problem::at(e.pointer, e.message))
                        .collect(),
                })
        }
    }
}

/// A JSON document as a response, or as XML when asked and the document has an XML form.
#[must_use]
pub fn render(
    status: StatusCode,
    value: &Json,
    xml: bool,
    element: &str,
    shape: &Shape,
) -> Response {
    if xml
        && let Ok(text) = manifests::mapping::node_to_xml(&Node::from_json(value), element, shape)
    {
        let mut r = (status, text).into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        return r;
    }
    (status, axum::Json(value.clone())).into_response()
}

/// An entity as a response.
#[must_use]
pub fn render_entity(
    status: StatusCode,
    kind: EntityKind,
    value: &Json,
    headers: &HeaderMap,
) -> Response {
    render(
        status,
        value,
        wants_xml(headers),
        kind.info().element,
        schemas().kind_shape(kind),
    )
}

/// A list of entities of one kind as a response, in the bundle's list shape:
/// `{"dataInterfaces": {"dataInterface": [...]}}`.
#[must_use]
pub fn render_list(kind: EntityKind, items: Vec<Json>, headers: &HeaderMap) -> Response {
    let info = kind.info();
    let value = serde_json::json!({ info.plural: { info.element: items } });
    render(
        StatusCode::OK,
        &value,
        wants_xml(headers),
        manifests::kind::BUNDLE_ELEMENT,
        schemas().bundle_shape(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: axum::http::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn content_types_and_accept_headers_are_negotiated() {
        assert_eq!(request_syntax(&HeaderMap::new()).unwrap(), Syntax::Json);
        assert_eq!(
            request_syntax(&headers(CONTENT_TYPE, "application/xml; charset=utf-8")).unwrap(),
            Syntax::Xml
        );
        assert_eq!(
            request_syntax(&headers(CONTENT_TYPE, "text/plain"))
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(!wants_xml(&HeaderMap::new()));
        assert!(wants_xml(&headers(ACCEPT, "application/xml")));
        assert!(!wants_xml(&headers(
            ACCEPT,
            "application/xml;q=0.5, application/json"
        )));
        assert!(wants_xml(&headers(ACCEPT, "text/html, application/xml")));
        assert!(accepts("application/xml, */*;q=0.1", "application/json"));
        assert!(accepts("application/*", "application/json; charset=utf-8"));
        assert!(accepts("text/event-stream", "text/event-stream"));
        assert!(!accepts("application/xml", "application/json"));
        assert!(!accepts(
            "application/json;q=0, application/xml",
            "application/json"
        ));
    }

    #[test]
    fn xml_bodies_read_into_the_same_json_as_json_bodies() {
        let xml = b"<dataKind><id>dk</id><name>Power</name></dataKind>";
        let json = br#"{"id": "dk", "name": "Power"}"#;
        assert_eq!(
            parse_entity(xml, Syntax::Xml, EntityKind::DataKind).unwrap(),
            parse_entity(json, Syntax::Json, EntityKind::DataKind).unwrap()
        );
        let wrong = ApiError::from(
            parse_entity(b"<dataInterface/>", Syntax::Xml, EntityKind::DataKind).unwrap_err(),
        );
        assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            ApiError::from(parse_entity(b"{", Syntax::Json, EntityKind::DataKind).unwrap_err())
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from(parse_entity(&[0xff], Syntax::Json, EntityKind::DataKind).unwrap_err())
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
