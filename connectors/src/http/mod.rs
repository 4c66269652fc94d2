//! `HTTP`: an ingest endpoint on the engine (source) and a webhook (sink).
//!
//! The parameters, their types, defaults and meaning are the fields of [`HttpConfig`] (listed
//! by `dda connectors`, tabled in docs/connectors.md).
//!
//! **Source** — the engine listens and takes data POSTed to `path`. Data sources on the same `host`:`port` share one listener. A request body is read in the
//! data kind's format: for LiveDataSet JSON a single LiveDataSet, an array of them or JSON
//! lines. The answer is `202 {"accepted": N}` once the engine has accepted the data (a slow
//! pipeline slows the client: backpressure, nothing dropped); `400` with the reason when the
//! body does not match (it goes to the dead letters too); `401` without the right token; `404`
//! for a path no data source uses.
//!
//! **Sink** — each batch written to the DSM is POSTed to the webhook `url`. The body is a JSON array of LiveDataSets (format LiveDataSet), JSON lines (flat JSON), or
//! lines of text (plain text, CSV). Retries back off from 200 ms doubling to 30 s. A batch the
//! receiver refuses (another 4xx) or that still fails after every retry goes to the dead
//! letters with the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use engine::codec::{Format, encode, encode_live_data_set};
use engine::connector::{
    Backoff, Connector, ConnectorError, ConnectorRegistration, Senders, Shared, Sink, SinkContext,
    Source, SourceContext,
};
use engine::processor::Rejected;
use engine::registry::DataSource;
use http_body_util::{BodyExt, Full};
use manifests::config::{Config, ConfigError, Duration as Span, Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<Http>());

const fn default_port() -> u16 {
    8480
}

const fn default_max_body() -> usize {
    16 * 1024 * 1024
}

fn default_timeout() -> Span {
    Span::from_secs(10)
}

const fn default_retries() -> u32 {
    10
}

/// The data source parameters of an ingest endpoint (source) or a webhook (sink).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Source: the address the engine listens on.
    #[serde(default = "crate::loopback")]
    pub host: String,
    /// Source: the port the engine listens on (data sources on one address share it).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Source: the data source's endpoint (default `/ingest/<dsm id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Source: the bearer token clients must send; sink: the token sent to the webhook
    /// (as `${env:NAME}` or `${file:PATH}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Source: the largest request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Source: how far event time trails the newest timestamp received (per sender: see
    /// `idleTimeout`).
    #[serde(default)]
    pub out_of_orderness: Span,
    /// Source: requests naming their sender (an edge engine's results, with its gateway in
    /// `x-dda-gateway`) keep event time per sender, and the source's event time is the
    /// earliest of the senders heard from within this (wall-clock time), so that a slower
    /// edge's results are never late; a sender silent for longer no longer holds event
    /// time back.
    #[serde(default = "crate::default_idle_timeout")]
    pub idle_timeout: Span,
    /// Source: the gateways expected to send (a global analytics manifest's
    /// `edgeGatewayReferenceIDs`): event time waits for each from the start, until it is
    /// heard from or silent for `idleTimeout`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    /// Source: what a gateway sends again — the same data source, quantity and time,
    /// within this much event time of the newest it sent (its results computed again after
    /// a crash) — is taken once.
    #[serde(default = "crate::default_duplicates_within")]
    pub duplicates_within: Span,
    /// Sink: the webhook, an `http://` or `https://` URL (may be a secret reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Sink: how long one request may take.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
    /// Sink: further attempts after a failure (connection error, 408, 429, 5xx).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Sink: PEM CA certificates to trust for `https` besides the web's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "input-file"))]
    pub ca_file: Option<String>,
}

impl Config for HttpConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.path
            && !p.starts_with('/')
        {
            return Err(ConfigError::at(
                "path",
                format!("path {p:?}: begin it with /"),
            ));
        }
        Ok(())
    }
}

impl HttpConfig {
    fn path(&self, dsm: &DataSource) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/ingest/{}", dsm.id))
    }

    fn address(&self, dsm: &DataSource) -> Result<SocketAddr, ConnectorError> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                ConnectorError::config(
                    dsm,
                    format!("host {:?}: not an address to listen on", self.host),
                )
            })
    }

    fn token(&self, dsm: &DataSource) -> Result<Option<String>, ConnectorError> {
        self.token
            .as_ref()
            .map(Secret::resolve)
            .transpose()
            .map_err(|e| ConnectorError::config(dsm, format!("token: {e}")))
    }

    /// The webhook's URL, when there is one.
    fn url(&self, dsm: &DataSource) -> Result<Option<Uri>, ConnectorError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let url = url
            .resolve()
            .map_err(|e| ConnectorError::config(dsm, format!("url: {e}")))?;
        let uri: Uri = url
            .parse()
            .map_err(|_| ConnectorError::config(dsm, "url: not a URL (http://host:port/path)"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConnectorError::config(
                dsm,
                "url: give an http:// or https:// URL with a host",
            ));
        }
        Ok(Some(uri))
    }
}

/// A data source taking data over HTTP, or writing it to a webhook.
#[derive(Debug)]
pub struct Http {
    config: HttpConfig,
    /// The endpoint, for a source.
    endpoint: String,
    /// The webhook, for a sink.
    webhook: Option<Uri>,
}

impl Connector for Http {
    const PROTOCOL: &'static str = "HTTP";
    const ALIASES: &'static [&'static str] = &["https", "webhook"];
    const DESCRIPTION: &'static str = "HTTP: an ingest endpoint on the engine (LiveDataSets, arrays, JSON lines) and a webhook sink with retries";
    type Config = HttpConfig;

    fn new(config: HttpConfig, dsm: &DataSource) -> Result<Self, ConnectorError> {
        let webhook = config.url(dsm)?;
        let endpoint = format!("http://{}:{}{}", config.host, config.port, config.path(dsm));
        Ok(Self {
            config,
            endpoint,
            webhook,
        })
    }

    fn place(&self) -> String {
        match &self.webhook {
            Some(uri) => format!("webhook {}", shown(uri)),
            None => self.endpoint.clone(),
        }
    }
}

// --- source: the ingest endpoint ------------------------------------------------------

/// A request for one data source, answered once the engine has taken it.
struct Delivery {
    body: Bytes,
    /// The gateway the request came from (`x-dda-gateway`), when it says.
    sender: Option<String>,
    /// The sender's watermark (`x-dda-watermark`), when it says.
    watermark: Option<engine::time::Timestamp>,
    reply: oneshot::Sender<Result<usize, String>>,
}

/// The header naming the gateway whose engine sent a request.
pub const GATEWAY_HEADER: &str = "x-dda-gateway";

/// The header carrying the sender's watermark (epoch microseconds): nothing older is to
/// come from it.
pub const WATERMARK_HEADER: &str = "x-dda-watermark";

struct Route {
    token: Option<String>,
    tx: mpsc::Sender<Delivery>,
}

/// One listening socket, shared by the data sources on its address.
struct Listener {
    routes: Mutex<HashMap<String, Route>>,
    stop: CancellationToken,
}

/// The engine's ingest listeners, by address.
#[derive(Default)]
struct Listeners(Mutex<HashMap<SocketAddr, Arc<Listener>>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Compares without an early exit, so that timing does not tell how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn ingest(
    State(listener): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let (tx, token) = {
        let routes = lock(&listener.routes);
        let Some(route) = routes.get(path) else {
            return answer(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("no data source takes data at {path}"),
            );
        };
        (route.tx.clone(), route.token.clone())
    };
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "",
        )
            .into_response();
    }
    if let Some(expected) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same(given.as_bytes(), expected.as_bytes()) {
            return answer(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "send the data source's token as Authorization: Bearer <token>",
            );
        }
    }
    let sender = match headers.get(GATEWAY_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(g)) if manifests::id::is_valid(g) => Some(g.to_owned()),
        Some(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                "BAD_GATEWAY_ID",
                "x-dda-gateway: give a gateway id (letters, digits, . _ - : ~)",
            );
        }
    };
    let watermark = match headers.get(WATERMARK_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(w)) if w.parse::<i64>().is_ok() => w.parse().ok().map(engine::time::Timestamp),
        Some(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                "BAD_WATERMARK",
                "x-dda-watermark: give epoch microseconds",
            );
        }
    };
    let (reply, answered) = oneshot::channel();
    let delivery = Delivery {
        body,
        sender,
        watermark,
        reply,
    };
    if tx.send(delivery).await.is_err() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the data source is stopping; try again",
        );
    }
    match answered.await {
        Ok(Ok(n)) => (StatusCode::ACCEPTED, axum::Json(json!({"accepted": n}))).into_response(),
        Ok(Err(reason)) => answer(StatusCode::BAD_REQUEST, "UNREADABLE_PAYLOAD", &reason),
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the data source stopped; try again",
        ),
    }
}

/// The listener on `addr`, started when none runs there yet; it is served by a task the
/// engine owns, which ends when its last route leaves or the engine shuts down.
fn listener(shared: &Shared, addr: SocketAddr, max_body: usize) -> std::io::Result<Arc<Listener>> {
    let listeners = shared.resource::<Listeners>();
    let mut all = lock(&listeners.0);
    if let Some(l) = all.get(&addr)
        && !l.stop.is_cancelled()
    {
        return Ok(l.clone());
    }
    let socket = std::net::TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpListener::from_std(socket)?;
    let l = Arc::new(Listener {
        routes: Mutex::default(),
        stop: CancellationToken::new(),
    });
    let app = Router::new()
        .fallback(ingest)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(l.clone());
    let stop = l.stop.clone();
    let engine_stops = shared.shutdown().clone();
    shared.spawn(async move {
        let served = axum::serve(socket, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = engine_stops.cancelled() => {}
                }
            })
            .await;
        if let Err(e) = served {
            tracing::error!(%addr, error = %e, "the HTTP ingest listener failed");
        }
    });
    tracing::info!(%addr, "HTTP ingest listener started");
    all.insert(addr, l.clone());
    Ok(l)
}

/// Removes a route; the last one on a listener stops it.
fn leave(shared: &Shared, addr: SocketAddr, path: &str) {
    let listeners = shared.resource::<Listeners>();
    let mut all = lock(&listeners.0);
    if let Some(l) = all.get(&addr) {
        let mut routes = lock(&l.routes);
        routes.remove(path);
        if routes.is_empty() {
            l.stop.cancel();
            drop(routes);
            all.remove(&addr);
        }
    }
}

impl Source for Http {
    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let addr = cfg.address(&ctx.dsm)?;
        let path = cfg.path(&ctx.dsm);
        let token = cfg.token(&ctx.dsm)?;
        let (tx, mut rx) = mpsc::channel::<Delivery>(16);
        let mut backoff = Backoff::default();
        let mut tx = Some(tx);
        loop {
            match listener(&ctx.shared, addr, cfg.max_body) {
                Ok(l) => {
                    let mut routes = lock(&l.routes);
                    if routes.contains_key(&path) {
                        return Err(ConnectorError::config(
                            &ctx.dsm,
                            format!(
                                "http://{addr}{path} is taken by another data source; give this one another `path`"
                            ),
                        ));
                    }
                    if let Some(tx) = tx.take() {
                        routes.insert(
                            path.clone(),
                            Route {
                                token: token.clone(),
                                tx,
                            },
                        );
                    }
                    break;
                }
                Err(e) => {
                    let message = format!("cannot listen on {addr}: {e}");
                    tracing::warn!(dsm = %ctx.dsm.id, error = %message, "retrying");
                    ctx.metrics.failed(&message);
                    if !backoff.wait(&ctx.cancel).await {
                        return Ok(());
                    }
                }
            }
        }
        ctx.metrics.connected();
        let mut senders = Senders::new(
            cfg.out_of_orderness.get(),
            cfg.idle_timeout.get(),
            cfg.duplicates_within.get(),
            &cfg.senders,
        );
        tracing::info!(dsm = %ctx.dsm.id, "taking data at http://{addr}{path}");
        loop {
            tokio::select! {
                d = rx.recv() => {
                    let Some(d) = d else { break };
                    let result = take(&ctx, &d, &mut senders).await;
                    let _ = d.reply.send(result);
                }
                () = ctx.cancel.cancelled() => break,
            }
        }
        leave(&ctx.shared, addr, &path);
        // Requests already handed over are still taken.
        rx.close();
        while let Some(d) = rx.recv().await {
            let result = take(&ctx, &d, &mut senders).await;
            let _ = d.reply.send(result);
        }
        Ok(())
    }
}

/// Reads a request's payload and publishes it, each observation stamped with the gateway
/// that sent it (attribute `gateway`), with the event time it advances to (the sender's
/// watermark, when it sends one, taken too); what a gateway sends again is dropped.
async fn take(ctx: &SourceContext, d: &Delivery, senders: &mut Senders) -> Result<usize, String> {
    let mut batch = Vec::new();
    let n = if d.watermark.is_some() && d.body.iter().all(u8::is_ascii_whitespace) {
        0
    } else {
        ctx.decode(&d.body, &mut batch)
            .await
            .map_err(|e| e.message().to_owned())?
    };
    if let Some(g) = &d.sender {
        engine::connector::senders::stamp(&mut batch, g);
    }
    if let Some(w) = d.watermark {
        let sender = d.sender.as_deref().unwrap_or_default();
        batch.push(engine::connector::senders::watermark_mark(
            ctx.dsm.id, sender, w,
        ));
    }
    ctx.publish_timed(batch, senders).await;
    Ok(n)
}

// --- sink: the webhook ----------------------------------------------------------------

/// An HTTP client that speaks HTTPS too (rustls).
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTP and HTTPS client trusting the Web PKI roots and, when given, the PEM
/// certificates of `ca_file` (a private CA).
///
/// # Errors
///
/// The file cannot be read or holds no usable certificate.
pub fn https_client(ca_file: Option<&std::path::Path>) -> Result<HttpsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{shown}: {e}"))?;
        for cert in certs {
            roots
                .add(cert.map_err(|e| format!("{shown}: {e}"))?)
                .map_err(|e| format!("{shown}: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

fn client(cfg: &HttpConfig, dsm: &DataSource) -> Result<HttpsClient, ConnectorError> {
    let ca = cfg.ca_file.as_deref().map(|p| dsm.path(p));
    https_client(ca.as_deref().map(std::path::Path::new))
        .map_err(|e| ConnectorError::config(dsm, format!("caFile {e}")))
}

/// A batch as one request body, and its content type.
fn body(batch: &[engine::Observation], format: Format) -> (Bytes, &'static str) {
    match format {
        Format::LiveDataSet => {
            let all: Vec<_> = batch.iter().map(encode_live_data_set).collect();
            (
                serde_json::to_vec(&all).unwrap_or_default().into(),
                "application/json",
            )
        }
        other => {
            let mut out = Vec::new();
            for o in batch {
                out.extend(encode(o, other));
                if out.last() != Some(&b'\n') {
                    out.push(b'\n');
                }
            }
            let kind = match other {
                Format::FlatJson => "application/x-ndjson",
                Format::Csv => "text/csv",
                _ => "text/plain; charset=utf-8",
            };
            (out.into(), kind)
        }
    }
}

/// The URL without credentials or query, for messages.
#[must_use]
pub fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority()
            .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or_default()),
        uri.path()
    )
}

enum Attempt {
    Done,
    Retry(String),
    Refused(String),
}

async fn post(
    client: &HttpsClient,
    uri: &Uri,
    (token, gateway, watermark): (Option<&str>, Option<&str>, Option<&str>),
    body: &Bytes,
    kind: &str,
    timeout: Duration,
) -> Attempt {
    let mut request = axum::http::Request::post(uri.clone())
        .header(header::CONTENT_TYPE, kind)
        .header(header::USER_AGENT, "dda");
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(g) = gateway {
        request = request.header(GATEWAY_HEADER, g);
    }
    if let Some(w) = watermark {
        request = request.header(WATERMARK_HEADER, w);
    }
    let request = match request.body(Full::new(body.clone())) {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Attempt::Retry(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Attempt::Retry(format!(
            "{e} ({})",
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        )),
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() {
                return Attempt::Done;
            }
            let text = match tokio::time::timeout(timeout, response.into_body().collect()).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes())
                    .chars()
                    .take(200)
                    .collect(),
                _ => String::new(),
            };
            let message = format!("answered {status}: {text}");
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Retry(message)
            } else {
                Attempt::Refused(message)
            }
        }
    }
}

/// Why a batch was not delivered to a webhook.
enum Failure {
    /// Refused, or retried as many times as allowed: the batch is rejected.
    Refused(String),
    /// Given up at the stop deadline: the batch is undelivered.
    GivenUp(String),
}

impl Sink for Http {
    const STORE_AND_FORWARD: bool = true;
    /// A webhook passes its event time on (`x-dda-watermark`): the uplink of an edge to
    /// its cloud, whose windows close when every edge has passed them.
    const FORWARDS_WATERMARKS: bool = true;

    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let cfg = &self.config;
        let uri = self
            .webhook
            .clone()
            .ok_or_else(|| ConnectorError::config(&ctx.dsm, "a webhook sink needs `url`"))?;
        let token = cfg.token(&ctx.dsm)?;
        // On an edge of a fleet, what it sends names its gateway.
        let gateway = ctx
            .shared
            .resource::<engine::connector::Identity>()
            .gateway();
        let timeout = cfg.timeout.get();
        let client = client(cfg, &ctx.dsm)?;
        let format = Format::of(&ctx.dsm);
        let place = shown(&uri);
        while let Some(batch) = ctx.next().await {
            let watermark = ctx.watermark().map(|w| w.as_micros().to_string());
            if batch.is_empty() && watermark.is_none() {
                continue;
            }
            let (body, kind) = if batch.is_empty() {
                (Bytes::new(), "application/json")
            } else {
                body(&batch, format)
            };
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
            let mut attempts = 0;
            let failure = loop {
                attempts += 1;
                let Some(answer) = ctx
                    .attempt(post(
                        &client,
                        &uri,
                        (token.as_deref(), gateway.as_deref(), watermark.as_deref()),
                        &body,
                        kind,
                        timeout,
                    ))
                    .await
                else {
                    break Some(Failure::GivenUp(format!(
                        "webhook {place}: given up while posting"
                    )));
                };
                match answer {
                    Attempt::Done => break None,
                    Attempt::Refused(why) => {
                        break Some(Failure::Refused(format!("webhook {place} {why}")));
                    }
                    Attempt::Retry(why) => {
                        let message = format!("webhook {place}: {why}");
                        ctx.metrics.failed(&message);
                        // With a store-and-forward queue, a webhook that is away is waited
                        // for: what follows is queued meanwhile.
                        if attempts > cfg.retries && !ctx.is_spooled() {
                            break Some(Failure::Refused(format!(
                                "{message} (gave up after {attempts} attempts)"
                            )));
                        }
                        tracing::warn!(dsm = %ctx.dsm.id, error = %message, "retrying");
                        if !ctx.retry_after(&mut backoff).await {
                            break Some(Failure::GivenUp(message));
                        }
                    }
                }
            };
            match failure {
                Some(Failure::GivenUp(why)) => ctx.undelivered(&batch, &why).await,
                None => {
                    ctx.metrics.connected();
                    ctx.metrics.add(batch.len());
                }
                Some(Failure::Refused(reason)) => {
                    tracing::error!(dsm = %ctx.dsm.id, error = %reason, "batch sent to the dead letters");
                    ctx.metrics.failed(&reason);
                    ctx.reject(
                        batch
                            .iter()
                            .map(|o| Rejected {
                                observation: o.clone(),
                                reason: reason.clone(),
                            })
                            .collect(),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }
}

/// `part` percent-encoded for one URL path segment or query value (RFC 3986: everything
/// but unreserved characters).
#[must_use]
pub fn percent_encode(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret-longer"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn urls_in_messages_hold_no_credentials() {
        let uri: Uri = "https://user:pw@hooks.example.com:8443/in?key=abc"
            .parse()
            .unwrap();
        assert_eq!(shown(&uri), "https://hooks.example.com:8443/in");
    }
}
