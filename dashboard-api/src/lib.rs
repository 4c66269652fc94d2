//! The DDA Open API: an engine controlled over HTTP (`dda serve`).
//!
//! # Layout
//!
//! - [`config`]: `dda.toml`, environment overrides, tokens, TLS.
//! - [`store`]: the embedded SQLite database holding models and desired states.
//! - [`repository`]: the model repository, validating like `dda validate`.
//! - [`service`]: repository, store and engine kept in step; lifecycle; restart recovery.
//! - [`routes`]: the HTTP routes (`/api/v1`, the original FAR-EDGE routes, operations).
//! - [`body`]: JSON and XML bodies and responses.
//! - [`auth`]: bearer tokens with roles.
//! - [`metrics`]: Prometheus metrics. [`openapi`]: the OpenAPI document.
//! - [`error`]: the error bodies.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod repository;
pub mod routes;
pub mod service;
pub mod store;

use std::sync::Arc;

use axum::Router;

pub use config::ServerConfig;
pub use service::Service;

/// The application: every route, with authentication, over `service`.
pub fn app(service: Arc<Service>) -> Router {
    routes::router()
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            auth::authorize,
        ))
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

/// Runs the server until `shutdown` completes, then stops every instance, draining it.
///
/// # Errors
///
/// The store, the engine, the certificates or the address cannot be used.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let service = Service::start(&config).await?;
    let app = app(service.clone());
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
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
    let served = match &config.tls {
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .map_err(|e| ServeError::Io(format!("TLS certificate or key: {e}")))?;
            axum_server::bind_rustls(config.listen, rustls_config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        None => {
            axum_server::bind(config.listen)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    };
    served.map_err(|e| ServeError::Io(format!("{}: {e}", config.listen)))?;
    service.engine.shutdown().await;
    Ok(())
}
