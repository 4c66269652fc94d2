//! `dda bench create`: the control plane's cost as the repository grows. A `dda serve` of
//! this build (in process, on loopback, its own data directory) is given a simulated
//! source and an average, then 10,000 analytics instances are created over HTTP, one
//! after another, each timed from request to response.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value as Json, json};

use super::bench::{BenchOptions, Report, percentile};

/// Instances created.
const INSTANCES: usize = 10_000;

/// A client of the server under test.
struct Api {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    /// Posts `doc` to `path`: the status and the time it took.
    async fn post(&self, path: &str, doc: &Json) -> anyhow::Result<(u16, Duration)> {
        let req = hyper::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(doc.to_string())))?;
        let started = Instant::now();
        let resp = self.client.request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        let took = started.elapsed();
        ensure!(
            (200..300).contains(&status),
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok((status, took))
    }
}

/// Runs the case on `runtime`: "observations" are the creates, "seconds" their total time,
/// "p50" the median create among the first 100, "p99" the median among the last 100.
///
/// # Errors
///
/// The server cannot start, or a create is refused.
pub fn run(
    description: &'static str,
    options: &BenchOptions,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Report> {
    let dir = options.out_dir.join("bench-create");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = dashboard_api::ServerConfig {
        data_dir: dir,
        ..dashboard_api::ServerConfig::default()
    };
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dashboard_api::serve(config, async {
            let _ = stopped.await;
        }));
        let api = Api {
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let created = create_all(&api).await;
        let _ = stop.send(());
        server.await.context("the server")??;
        let took = created?;
        let median = |part: &[Duration]| {
            let mut v: Vec<u64> = part.iter().map(|d| d.as_micros() as u64).collect();
            v.sort_unstable();
            Duration::from_micros(percentile(&v, 0.5))
        };
        let (first, last) = (median(&took[..100]), median(&took[took.len() - 100..]));
        eprintln!(
            "create: {INSTANCES} analytics instances over HTTP: the 1st in {:.2} ms, the median of the first 100 {:.2} ms, of the last 100 {:.2} ms, the {INSTANCES}th in {:.2} ms",
            took[0].as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            last.as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3,
        );
        let all: f64 = took.iter().map(Duration::as_secs_f64).sum();
        Ok(Report {
            seconds: all,
            observations_per_second: INSTANCES as f64 / all,
            ..Report::two_phases("create", description, INSTANCES, first, last)
        })
    })
}

async fn create_all(api: &Api) -> anyhow::Result<Vec<Duration>> {
    let mut up = false;
    for _ in 0..100 {
        if api
            .client
            .get(format!("{}/health", api.base).parse()?)
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        bail!("the server did not start on {}", api.base);
    }
    for (path, doc) in [
        (
            "data-interfaces",
            json!({"id": "di-sim", "communicationProtocol": "Simulator"}),
        ),
        (
            "data-interfaces",
            json!({"id": "di-bus", "communicationProtocol": "Bus"}),
        ),
        ("data-kinds", json!({"id": "dk", "name": "value"})),
        (
            "data-source-definitions",
            json!({"id": "dsd-sim", "dataInterfaceReferenceID": "di-sim", "dataKindReferenceID": "dk"}),
        ),
        (
            "data-source-definitions",
            json!({"id": "dsd-bus", "dataInterfaceReferenceID": "di-bus", "dataKindReferenceID": "dk"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "sensor", "dataSourceDefinitionReferenceID": "dsd-sim"}),
        ),
        (
            "data-source-manifests",
            json!({"id": "results", "dataSourceDefinitionReferenceID": "dsd-bus"}),
        ),
        (
            "analytics-processor-definitions",
            json!({"id": "apd-average", "processorType": "average"}),
        ),
    ] {
        api.post(&format!("/api/v1/{path}"), &doc).await?;
    }
    let mut took = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        // Every instance's processor is called `average`, as copies of one manifest are.
        let am = json!({"id": format!("am-{i}"), "name": format!("average {i}"),
            "analyticsProcessors": {"apm": [{"id": "average",
                "analyticsProcessorDefinitionReferenceID": "apd-average",
                "parameters": {"parameter": [{"key": "window", "value": format!("PT{}S", 1 + i % 60)}]},
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "sensor"}]},
                "dataSink": {"dataSourceManifestReferenceID": "results"}}]}});
        let (status, t) = api.post("/api/v1/analytics-instances", &am).await?;
        ensure!(status == 201, "instance {i}: {status}");
        took.push(t);
    }
    Ok(took)
}
