//! `dda serve` and `dda token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use dashboard_api::ServerConfig;

/// Runs the server until Ctrl-C or SIGTERM, then drains every instance.
///
/// # Errors
///
/// An unusable configuration, store, address or certificate.
pub fn run(
    config: Option<&Path>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = ServerConfig::load(config)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if !cfg.listen.ip().is_loopback() && cfg.tokens.is_empty() {
        eprintln!(
            "warning: listening on {} with no API tokens: anyone who can reach it controls the engine",
            cfg.listen
        );
    }
    if cfg.fleet.role == dashboard_api::config::FleetRole::Edge && cfg.tokens.is_empty() {
        eprintln!(
            "warning: an edge engine with no API tokens takes deployments from anyone who can reach it: configure [[tokens]] and [fleet] cloud_token (docs/fleet.md)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (first, asked) = tokio::sync::oneshot::channel::<()>();
        let serving = dashboard_api::serve(cfg, async {
            let signal = crate::cmd::stop_signal().await;
            eprintln!(
                "dda: {signal}: draining every instance (Ctrl-C or SIGTERM again exits at once)"
            );
            let _ = first.send(());
        });
        // A drain can wait on systems that do not answer (for the stop deadline): a second
        // request to stop is obeyed at once.
        let again = async {
            if asked.await.is_err() {
                return std::future::pending().await;
            }
            crate::cmd::stop_signal().await
        };
        tokio::select! {
            served = serving => served.map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from),
            signal = again => {
                eprintln!(
                    "dda: {signal} again: exiting without draining; what sinks had not written is not delivered"
                );
                std::process::exit(if signal == "interrupted" { 130 } else { 143 });
            }
        }
    })
}

/// Prints a new random token and the `[[tokens]]` entry to configure for it.
///
/// # Errors
///
/// An unknown role.
pub fn token(name: &str, role: &str) -> anyhow::Result<ExitCode> {
    if !["viewer", "operator", "admin"].contains(&role) {
        bail!("unknown role `{role}`: use viewer, operator or admin");
    }
    let token = format!(
        "dda_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    println!("token (give it to the client; it is not stored anywhere):\n  {token}\n");
    println!(
        "add to dda.toml:\n[[tokens]]\nname = {name:?}\nrole = {role:?}\nsha256 = {:?}",
        dashboard_api::config::sha256_hex(&token)
    );
    Ok(ExitCode::SUCCESS)
}
