//! The DDA Open API: an engine controlled over HTTP (`dda serve`).
//!
//! # Layout
//!
//! - [`config`]: `dda.toml`, environment overrides, tokens, TLS.
//! - [`store`]: the embedded SQLite database holding models and desired states.
//! - [`repository`]: the model repository, validating like `dda validate`.
//! - [`service`]: repository, store and engine kept in step; lifecycle; restart recovery;
//!   live views. Independent of HTTP: it fails with a typed [`service::ServiceError`].
//! - [`problem`]: the problems of a request's document (validator diagnostics, reader
//!   errors) as data.
//! - [`routes`]: the HTTP routes by concern (models, instances, live data, operations,
//!   the original FAR-EDGE routes).
//! - [`body`]: JSON and XML bodies and responses.
//! - [`auth`]: bearer tokens with roles.
//! - [`remote`]: calls to other engines (a cloud's to its gateways'); [`fleet`]: a
//!   cloud's watch over its gateways; [`deploy`]: its deployments to them, reconciled.
//! - [`cir`]: the Common Interoperability Registry's resolve, translate, search, import
//!   and change stream.
//! - [`metrics`]: Prometheus metrics. [`openapi`]: the OpenAPI document.
//! - [`error`]: the error bodies of both API generations, built from `ServiceError`s.
//!
//! [`serve`] owns everything it starts: the server runs in its own future, the shutdown
//! signal is awaited beside it, and live views end when it stops; nothing outlives it.

pub mod auth;
pub mod body;
pub mod cir;
pub mod config;
pub mod deploy;
pub mod error;
pub mod fleet;
pub mod metrics;
pub mod openapi;
pub mod origin;
pub mod problem;
pub mod remote;
pub mod repository;
pub mod routes;
pub mod service;
pub mod store;
pub mod template;

use std::sync::Arc;

use axum::Router;

pub use config::ServerConfig;
pub use service::Service;

/// The application: every route, with authentication, over `service`; requests a web page
/// could forge are refused first ([`origin`]).
pub fn app(service: Arc<Service>) -> Router {
    routes::router()
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            origin::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(error::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body::refuse_oversized))
        .layer(axum::middleware::from_fn(body::refuse_unacceptable))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(service)
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// It could not start.
    #[error(transparent)]
    Start(#[from] service::StartError),
    /// Listening or serving failed.
    #[error("{0}")]
    Io(String),
}

/// How long connections may take to finish once the server is asked to stop.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the server until `shutdown` completes, then ends every live view, lets requests in
/// flight finish (for [`GRACE`] at most) and stops every instance, draining it.
///
/// # Errors
///
/// The store, the engine, the certificates or the address cannot be used.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let service = Service::start(&config).await?;
    let served = serve_until(&config, service.clone(), shutdown).await;
    // The engine stops whether serving ended well or not: its instances drain, those
    // that can be checkpointed into a last checkpoint, their open windows kept there.
    service.engine.shutdown_to_checkpoints().await;
    served
}

/// Serves `service` on the configured address until `shutdown` completes and the
/// connections have finished.
async fn serve_until(
    config: &ServerConfig,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let app = app(service.clone());
    let handle = axum_server::Handle::new();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %config.listen, "serving {scheme}://{}", config.listen);
    eprintln!(
        "dda: serving {scheme}://{} (data in {})",
        config.listen,
        config.data_dir.display()
    );
    let serving = async {
        match &config.tls {
            Some(tls) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let rustls_config =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|e| ServeError::Io(format!("TLS certificate or key: {e}")))?;
                axum_server::bind_rustls(config.listen, rustls_config)
                    .handle(handle.clone())
                    .serve(app.into_make_service())
                    .await
            }
            None => {
                axum_server::bind(config.listen)
                    .handle(handle.clone())
                    .serve(app.into_make_service())
                    .await
            }
        }
        .map_err(|e| ServeError::Io(format!("{}: {e}", config.listen)))
    };
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served,
        () = shutdown => {
            // Live views never end by themselves: end them, so that their connections
            // close within the grace period like every other.
            service.stop_live();
            handle.graceful_shutdown(Some(GRACE));
            serving.await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use manifests::EntityKind;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Reads from `stream` until `done` says what was read is enough, or the end.
    async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> (String, bool) {
        let mut seen = String::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return (seen, true);
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if done(&seen) {
                return (seen, false);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_the_server_ends_live_streams_and_serve_returns_within_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = ServerConfig {
            listen: ([127, 0, 0, 1], port).into(),
            data_dir: dir.path().join("data"),
            ..ServerConfig::default()
        };
        // A data source to stream, stored before the server starts.
        {
            let service = Service::start(&config).await.unwrap();
            for (kind, doc) in [
                (
                    EntityKind::DataInterface,
                    json!({"id": "di", "communicationProtocol": "Bus"}),
                ),
                (EntityKind::DataKind, json!({"id": "dk"})),
                (
                    EntityKind::DataSourceDefinition,
                    json!({"id": "dsd", "dataInterfaceReferenceID": "di", "dataKindReferenceID": "dk"}),
                ),
                (
                    EntityKind::DataSourceManifest,
                    json!({"id": "dsm", "dataSourceDefinitionReferenceID": "dsd"}),
                ),
            ] {
                service.create_entity(kind, doc).await.unwrap();
            }
            service.engine.shutdown().await;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let client = async move {
            let mut stream = loop {
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            stream
                .write_all(b"GET /api/v1/data-source-manifests/dsm/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
                .await
                .unwrap();
            let (head, _) = read_until(&mut stream, |s| s.contains("\r\n\r\n")).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/event-stream"), "{head}");
            stop.send(()).unwrap();
            let (_, ended) = read_until(&mut stream, |_| false).await;
            assert!(ended, "the stream ends when the server stops");
        };
        let serving = async {
            tokio::time::timeout(
                GRACE / 2,
                serve(config, async {
                    let _ = stopped.await;
                }),
            )
            .await
        };
        let (served, ()) = tokio::join!(serving, client);
        served
            .expect("serve returns before the grace period is over")
            .unwrap();
    }
}
