//! `dda cir resolve|translate|import`: the Common Interoperability Registry of a running
//! `dda serve`, over its API (docs/cir.md).
//!
//! - `resolve ID`: the object with every linked record, as JSON; a repository that did not
//!   answer is named on standard error (the exit status is still 0: the answer is partial,
//!   not wrong);
//! - `translate REPOSITORY LOCAL_ID [--to REPOSITORY]`: the CIR id and the other local ids;
//! - `import FILE`: links from CSV (header `objectReferenceID,repositoryReferenceID,localID`)
//!   or JSON lines, all or none.
//!
//! The server is `--server` (default `http://127.0.0.1:9999`); a token, when the server
//! asks for one, comes from the environment (`DDA_TOKEN`), never from the command line.
//! Exit status: 0 done, 1 refused (what the server said, with every problem), 2 the server
//! cannot be reached or the file cannot be read.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use dashboard_api::remote::{Answer, Remote, join};
use dashboard_api::routes::encode_path;
use hyper::Method;

/// How long a call may take (resolve waits for every repository's timeout at most).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What to ask.
#[derive(Debug)]
pub enum Ask {
    /// An object with its records.
    Resolve {
        /// The CIR id.
        id: String,
    },
    /// A local id in another repository's terms.
    Translate {
        /// The repository.
        repository: String,
        /// The record's id there.
        local_id: String,
        /// Only this repository's ids.
        to: Option<String>,
    },
    /// Links from a file.
    Import {
        /// CSV or JSON lines (by extension: .csv, else JSON lines).
        file: std::path::PathBuf,
    },
}

/// Runs `dda cir`.
///
/// # Errors
///
/// The runtime cannot start (other failures are reported and give exit status 1 or 2).
pub fn run(server: &str, ask: Ask) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(call(server, ask))
}

async fn call(server: &str, ask: Ask) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(None, CALL_TIMEOUT).map_err(anyhow::Error::msg)?;
    let token = std::env::var("DDA_TOKEN").ok().filter(|t| !t.is_empty());
    let auth = (token.as_deref(), None);
    let api = join(server, "/api/v1/cir");
    let answer = match &ask {
        Ask::Resolve { id } => {
            remote
                .call(
                    Method::GET,
                    &format!("{api}/objects/{}/resolve", encode_path(id)),
                    auth,
                    None,
                )
                .await
        }
        Ask::Translate {
            repository,
            local_id,
            to,
        } => {
            let mut url = format!(
                "{api}/translate?repository={}&localId={}",
                encode_path(repository),
                encode_path(local_id)
            );
            if let Some(t) = to {
                url.push_str(&format!("&to={}", encode_path(t)));
            }
            remote.call(Method::GET, &url, auth, None).await
        }
        Ask::Import { file } => {
            let body = match std::fs::read(file) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            remote
                .call_with(
                    Method::POST,
                    &format!("{api}/links/import"),
                    auth,
                    content_type(file),
                    body,
                )
                .await
        }
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "error: {e}\n  help: is `dda serve` running there? Give its address with --server http://HOST:PORT"
            );
            return Ok(ExitCode::from(2));
        }
    };
    if !answer.status.is_success() {
        refused(&answer);
        return Ok(ExitCode::from(1));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&answer.body).unwrap_or_default()
    );
    if let Ask::Resolve { .. } = ask {
        for e in answer.body["errors"].as_array().into_iter().flatten() {
            eprintln!(
                "warning: repository `{}` gave no records: {} {}",
                e["repository"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or_default()
            );
        }
        for m in answer.body["missing"].as_array().into_iter().flatten() {
            eprintln!(
                "warning: repository `{}` has no record `{}`",
                m["repository"].as_str().unwrap_or("?"),
                m["localID"]
                    .as_str()
                    .or_else(|| m["localId"].as_str())
                    .unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The body type of a file of links: CSV by extension, else JSON lines.
fn content_type(file: &Path) -> &'static str {
    if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        "text/csv"
    } else {
        "application/x-ndjson"
    }
}

/// Prints what the server refused and why (an RFC 9457 problem, with its details).
fn refused(answer: &Answer) {
    let b = &answer.body;
    let what = b["detail"]
        .as_str()
        .or_else(|| b["title"].as_str())
        .or_else(|| b.as_str())
        .unwrap_or_default();
    eprintln!("error: the server refused ({}): {what}", answer.status);
    for d in b["details"].as_array().into_iter().flatten() {
        let at = d["pointer"].as_str().filter(|p| !p.is_empty());
        eprintln!(
            "  {}{}",
            at.map(|p| format!("at {p}: ")).unwrap_or_default(),
            d["message"].as_str().unwrap_or_default()
        );
        if let Some(h) = d["hint"].as_str() {
            eprintln!("    help: {h}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_links_is_sent_as_what_its_extension_says() {
        assert_eq!(content_type(Path::new("links.csv")), "text/csv");
        assert_eq!(content_type(Path::new("LINKS.CSV")), "text/csv");
        assert_eq!(
            content_type(Path::new("links.jsonl")),
            "application/x-ndjson"
        );
    }
}
