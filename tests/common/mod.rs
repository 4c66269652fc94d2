//! Shared helpers of the HTTP-level tests: a small client, servers in-process or as a
//! `dda serve` process, and the pilot line loaded through the API.

#![allow(dead_code, reason = "each test file uses a different part")]

pub mod services;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A client of one server.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            token: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some((ct, bytes)) => {
                req = req.header("content-type", ct);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
            &[],
        )
        .await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.request(Method::POST, path, None, &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(
            Method::PUT,
            path,
            Some(("application/json", body.to_string().into_bytes())),
            &[],
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None, &[]).await
    }
}

/// A free loopback port (released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server running in this process on a free port.
pub struct InProcess {
    pub http: Http,
    pub service: std::sync::Arc<dashboard_api::Service>,
    pub dir: tempfile::TempDir,
}

pub async fn in_process(configure: impl FnOnce(&mut dashboard_api::ServerConfig)) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dashboard_api::ServerConfig {
        data_dir: dir.path().join("data"),
        speed: "max".into(),
        ..dashboard_api::ServerConfig::default()
    };
    configure(&mut config);
    let service = dashboard_api::Service::start(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = dashboard_api::app(service.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    InProcess {
        http: Http::new(&base),
        service,
        dir,
    }
}

/// A `dda serve` process.
pub struct Process {
    pub http: Http,
    pub child: std::process::Child,
    pub data_dir: PathBuf,
    pub port: u16,
}

impl Process {
    pub async fn start(data_dir: &Path, port: u16, cwd: &Path) -> Self {
        Self::start_with(data_dir, port, cwd, None).await
    }

    /// With a configuration file (`dda serve --config`).
    pub async fn start_with(data_dir: &Path, port: u16, cwd: &Path, config: Option<&Path>) -> Self {
        Self::start_with_env(data_dir, port, cwd, config, &[]).await
    }

    /// With a configuration file and environment variables.
    pub async fn start_with_env(
        data_dir: &Path,
        port: u16,
        cwd: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dda"));
        command.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .current_dir(cwd)
            .env("DDA_SPEED", "3600")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the struct at once: its Drop kills and reaps the process on any panic.
        let process = Self {
            http: Http::new(&format!("http://127.0.0.1:{port}")),
            child,
            data_dir: data_dir.to_owned(),
            port,
        };
        for _ in 0..200 {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_millis(200),
                try_get(&process.http, "/health"),
            )
            .await
                && r.status == StatusCode::OK
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dda serve did not come up on port {port}");
    }

    /// SIGTERM, and waits until it has exited (a graceful stop).
    #[allow(dead_code)]
    pub fn terminate(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn try_get(http: &Http, path: &str) -> Result<Reply, ()> {
    let h = http.clone();
    let path = path.to_owned();
    tokio::spawn(async move { h.get(&path).await })
        .await
        .map_err(|_| ())
}

/// The example bundle's documents of one kind (folder), as JSON.
pub fn example(folder: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/power-consumption/json")
        .join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// Posts the pilot line's models (everything but the analytics manifests) in dependency
/// order; SQLite paths are made to point into `out`.
pub async fn load_models(http: &Http, out: &Path) {
    for (folder, route) in [
        ("data-interfaces", "data-interfaces"),
        ("data-kinds", "data-kinds"),
        ("data-source-definitions", "data-source-definitions"),
        ("edge-gateways", "edge-gateways"),
        ("data-source-manifests", "data-source-manifests"),
        (
            "analytics-processor-definitions",
            "analytics-processor-definitions",
        ),
    ] {
        for mut doc in example(folder) {
            if let Some(params) = doc
                .pointer_mut("/dataSourceDefinitionInterfaceParameters/parameter")
                .and_then(Value::as_array_mut)
            {
                for p in params {
                    if p["key"] == "path" {
                        let file = Path::new(p["value"].as_str().unwrap()).file_name().unwrap();
                        p["value"] = Value::String(out.join(file).to_string_lossy().into_owned());
                    }
                }
            }
            let r = http.post(&format!("/api/v1/{route}"), &doc).await;
            assert_eq!(r.status, StatusCode::CREATED, "{route}: {}", r.text());
        }
    }
}

/// Polls until `check` holds (or panics after `secs` seconds).
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `n` distinct free loopback ports (all held until every one is chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `n` edge engines (`dda serve` with configuration `config`), started all at once, each
/// with its own data directory `<dir>/edge<i>` (i from 1) and port.
pub async fn start_edges(dir: &Path, n: usize, config: &Path) -> Vec<Process> {
    let ports = free_ports(n);
    let starting = ports.iter().enumerate().map(|(i, &port)| {
        let data = dir.join(format!("edge{}", i + 1));
        async move { Process::start_with(&data, port, dir, Some(config)).await }
    });
    futures_util::future::join_all(starting).await
}
