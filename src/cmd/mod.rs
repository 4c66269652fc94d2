//! One module per subcommand.

pub mod bench;
pub mod bench_api;
pub mod bench_enrich;
pub mod bench_mqtt;
pub mod bench_queue;
pub mod bench_window;
pub mod cir;
pub mod connectors;
pub mod convert;
pub mod fleet;
pub mod processors;
pub mod run;
pub mod schema;
pub mod serve;
pub mod validate;

use std::io::Write;

/// Writes `text` to standard output. A reader that went away (`dda processors | head`)
/// is not an error: the rest is not written, and the command ends normally.
///
/// # Errors
///
/// Standard output cannot be written for another reason.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Waits for a request to stop: Ctrl-C (SIGINT) or SIGTERM (what service managers and
/// `kill` send). Returns which, for messages.
pub async fn stop_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "interrupted",
        () = term => "terminated",
    }
}
