//! `dda fleet PATH... [--for DURATION] [--speed N] [--listen ADDR:PORT] [--data-dir DIR]`:
//! a bundle run as a fleet on this machine — a cloud engine and, for each edge gateway of
//! the bundle, the edge engine its `edgeAnalyticsEngineBaseURL` names, each a `dda serve`
//! process with its own data directory — with every model and analytics manifest created
//! through the cloud's API, as an operator would over a real fleet.
//!
//! Each gateway's engine listens where the gateway's URL says (it must be a loopback
//! `http://…/api` URL). Every secret the bundle names as `${env:NAME}` and the environment
//! does not set is made up for the run and given to every engine: so a gateway with a
//! `credential` gets an edge that takes deployments only with that token, and an uplink
//! with a `token` is authenticated both ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dashboard_api::remote::{Answer, Remote};
use engine::connector::Speed;
use hyper::{Method, StatusCode};
use manifests::{Entity, EntityKind, Model};
use serde_json::Value;

use crate::Color;

/// Options of `dda fleet`.
#[derive(Debug)]
pub struct FleetOptions {
    /// Files or directories of the bundle.
    pub paths: Vec<PathBuf>,
    /// Wall-clock duration; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Simulated time per wall-clock time, for every engine.
    pub speed: Speed,
    /// Where the cloud engine listens.
    pub listen: SocketAddr,
    /// Where the engines keep their data: `DIR/cloud`, `DIR/<gateway id>`.
    pub data_dir: PathBuf,
    /// Colour of diagnostics.
    pub color: Color,
}

/// One engine of the fleet.
struct Member {
    /// `cloud`, or the gateway's id.
    name: String,
    listen: SocketAddr,
    /// The token the cloud calls it with, when its gateway has a credential.
    token: Option<String>,
}

/// Validates the bundle (exit 1 with the diagnostics if invalid), starts the fleet, loads
/// the bundle through the cloud, runs it, stops every engine gracefully, and says where
/// the results are.
///
/// # Errors
///
/// Unreadable paths, a gateway this machine cannot run, an engine that does not start
/// or a model the cloud refuses (exit status 2).
pub fn run(options: FleetOptions) -> anyhow::Result<ExitCode> {
    // Validated as a cloud would: a data source's files are on its gateway.
    let validation = manifests::Options {
        catalogue: Some(engine::Catalogue::get()),
        files_on_gateways: true,
        ..manifests::Options::default()
    };
    let Some((bundle, model)) = crate::cmd::run::valid_bundle(
        &options.paths,
        &validation,
        options.color,
        "no engine was started",
    )?
    else {
        return Ok(ExitCode::from(1));
    };
    if model.edge_gateways.is_empty() {
        bail!("the bundle holds no edge gateway: `dda run` runs it in one process");
    }
    let secrets = made_up_secrets(&model);
    let mut members = vec![Member {
        name: "cloud".into(),
        listen: options.listen,
        token: None,
    }];
    for g in model.edge_gateways.values() {
        let token = match g
            .credential
            .as_deref()
            .map(manifests::secret::SecretRef::parse)
        {
            None => None,
            Some(Some(Ok(manifests::secret::SecretRef::Env(name)))) => Some(
                std::env::var(&name)
                    .ok()
                    .or_else(|| secrets.get(&name).cloned())
                    .context("a made-up secret")?,
            ),
            Some(_) => bail!(
                "gateway `{}`: `dda fleet` makes up credentials given as ${{env:NAME}} only",
                g.id
            ),
        };
        members.push(Member {
            name: g.id.clone(),
            listen: loopback(g).with_context(|| format!("gateway `{}`", g.id))?,
            token,
        });
    }
    let entities: Vec<Entity> = bundle
        .entities
        .iter()
        .map(|l| (*l.entity).clone())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_fleet(&options, &members, &secrets, &entities))
}

/// Where gateway `g`'s engine is to listen: its `edgeAnalyticsEngineBaseURL`, which must
/// be `http://<loopback>:<port>/api`.
fn loopback(g: &manifests::model::EdgeGateway) -> anyhow::Result<SocketAddr> {
    let url = g
        .edge_analytics_engine_base_url
        .as_deref()
        .context("it has no edgeAnalyticsEngineBaseURL: give it http://127.0.0.1:PORT/api")?;
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("edgeAnalyticsEngineBaseURL `{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h
            .trim_matches(['[', ']'])
            .parse()
            .ok()
            .filter(std::net::IpAddr::is_loopback)
            .with_context(|| {
                format!("edgeAnalyticsEngineBaseURL `{url}` is not on this machine: `dda fleet` runs each gateway's engine on a loopback address (127.0.0.1)")
            })?,
    };
    if uri.scheme_str() != Some("http") || uri.path().trim_end_matches('/') != "/api" {
        bail!(
            "edgeAnalyticsEngineBaseURL `{url}`: `dda fleet` runs an engine at http://HOST:PORT/api"
        );
    }
    let port = uri
        .port_u16()
        .with_context(|| format!("edgeAnalyticsEngineBaseURL `{url}` names no port"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A random value for every `${env:NAME}` the bundle names (gateway credentials, data
/// source and processor parameters) that the environment does not set.
fn made_up_secrets(model: &Model) -> BTreeMap<String, String> {
    let mut names = Vec::new();
    let mut collect = |v: &Value| walk_strings(v, &mut |s| names.push(s.to_owned()));
    for g in model.edge_gateways.values() {
        if let Some(c) = &g.credential {
            collect(&Value::String(c.clone()));
        }
    }
    for d in model.data_source_manifests.values() {
        for p in &d.data_source_definition_interface_parameters.parameter {
            collect(&p.value);
        }
    }
    for am in model.analytics_manifests.values() {
        for apm in am.apms() {
            for p in &apm.parameters.parameter {
                collect(&p.value);
            }
        }
    }
    names
        .iter()
        .filter_map(|s| match manifests::secret::SecretRef::parse(s) {
            Some(Ok(manifests::secret::SecretRef::Env(name))) => Some(name),
            _ => None,
        })
        .filter(|name| std::env::var_os(name).is_none())
        .map(|name| {
            let value = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            (name, value)
        })
        .collect()
}

fn walk_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| walk_strings(v, f)),
        Value::Object(o) => o.values().for_each(|v| walk_strings(v, f)),
        _ => {}
    }
}

/// The engines' processes, killed if the command ends before stopping them.
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    /// Stops every engine gracefully (SIGTERM: each drains its instances), the edges
    /// first so that what they send last reaches the cloud.
    fn stop(mut self) {
        let all = std::mem::take(&mut self.0);
        let (cloud, edges): (Vec<_>, Vec<_>) = all.into_iter().partition(|(n, _)| n == "cloud");
        for group in [edges, cloud] {
            let mut group = group;
            for (_, child) in &group {
                terminate(child);
            }
            for (name, child) in &mut group {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            eprintln!("{name} did not stop within 60 s: killed");
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
        }
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

async fn run_fleet(
    options: &FleetOptions,
    members: &[Member],
    secrets: &BTreeMap<String, String>,
    entities: &[Entity],
) -> anyhow::Result<ExitCode> {
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the dda executable")?;
    let speed = match options.speed {
        Speed::Max => "max".to_owned(),
        Speed::Factor(f) => f.to_string(),
    };
    let mut processes = Processes(Vec::new());
    for m in members {
        let config = dir.join(format!("{}.toml", m.name));
        std::fs::write(&config, config_of(m))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = std::fs::File::create(dir.join(format!("{}.log", m.name)))
            .with_context(|| format!("cannot write {}/{}.log", dir.display(), m.name))?;
        let child = std::process::Command::new(&exe)
            .arg("serve")
            .arg("--listen")
            .arg(m.listen.to_string())
            .arg("--data-dir")
            .arg(dir.join(&m.name))
            .arg("--config")
            .arg(&config)
            .env("DDA_SPEED", &speed)
            .envs(secrets)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}'s engine", m.name))?;
        processes.0.push((m.name.clone(), child));
    }
    let remote = Remote::new(None, Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
    for (m, (_, child)) in members.iter().zip(&mut processes.0) {
        up(&remote, m, child, dir).await?;
        eprintln!(
            "{} engine on http://{}{}",
            if m.name == "cloud" { "cloud" } else { "edge" },
            m.listen,
            if m.name == "cloud" {
                String::new()
            } else {
                format!(" (gateway {})", m.name)
            }
        );
    }
    let cloud = Cloud {
        remote: &remote,
        base: format!("http://{}/api/v1", options.listen),
    };
    let instances = cloud.load(entities).await?;
    let started = Instant::now();
    let stop = crate::cmd::stop_signal();
    tokio::pin!(stop);
    let mut shown = BTreeMap::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    let reason = loop {
        tokio::select! {
            why = &mut stop => break why,
            _ = ticks.tick() => {}
        }
        cloud.show_progress(&instances, &mut shown).await;
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break "the time is up";
        }
    };
    eprintln!("stopping ({reason}): the edges, then the cloud, each draining its instances");
    processes.stop();
    summary(dir, members, started.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

/// A member's `dda serve` configuration.
fn config_of(m: &Member) -> String {
    if m.name == "cloud" {
        return "[fleet]\nrole = \"cloud\"\npoll_interval = \"1s\"\n".into();
    }
    let mut c = format!("[fleet]\nrole = \"edge\"\ngateway = \"{}\"\n", m.name);
    if let Some(token) = &m.token {
        c.push_str(&format!(
            "cloud_token = \"cloud\"\n\n[[tokens]]\nname = \"cloud\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            dashboard_api::config::sha256_hex(token)
        ));
    }
    c
}

/// Waits until member `m` answers its health check.
async fn up(remote: &Remote, m: &Member, child: &mut Child, dir: &Path) -> anyhow::Result<()> {
    let url = format!("http://{}/health", m.listen);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{}'s engine ended ({status}) before answering on {}: see {}/{}.log (is the port taken?)",
                m.name,
                m.listen,
                dir.display(),
                m.name
            );
        }
        if let Ok(a) = remote
            .call(Method::GET, &url, (m.token.as_deref(), None), None)
            .await
            && a.status == StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}'s engine does not answer on {}", m.name, m.listen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cloud's API.
struct Cloud<'a> {
    remote: &'a Remote,
    base: String,
}

/// The order entities are created in: what is referred to before what refers to it.
const ORDER: [EntityKind; 10] = [
    EntityKind::DataInterface,
    EntityKind::DataKind,
    EntityKind::DataSourceDefinition,
    EntityKind::EdgeGateway,
    EntityKind::DataSourceManifest,
    EntityKind::DataConsumerManifest,
    EntityKind::DataChannelDescriptor,
    EntityKind::AnalyticsProcessorDefinition,
    EntityKind::AnalyticsProcessorManifest,
    EntityKind::AnalyticsManifest,
];

fn route(kind: EntityKind) -> &'static str {
    if kind == EntityKind::AnalyticsManifest {
        "analytics-instances"
    } else {
        kind.info().folder
    }
}

impl Cloud<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        self.remote
            .call(method.clone(), &url, (None, None), body)
            .await
            .with_context(|| format!("{method} {url}"))
    }

    /// Calls, and wants a success.
    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let a = self.call(method.clone(), path, body).await?;
        if !a.status.is_success() {
            bail!(
                "the cloud refused {method} {path}: {} {}",
                a.status,
                serde_json::to_string_pretty(&a.body).unwrap_or_default()
            );
        }
        Ok(a)
    }

    /// Creates (or, made by an earlier run, replaces) every entity, then starts every
    /// analytics instance: the ids of the instances.
    async fn load(&self, entities: &[Entity]) -> anyhow::Result<Vec<String>> {
        let mut later = Vec::new();
        let mut made = 0;
        for kind in ORDER {
            for e in entities.iter().filter(|e| e.kind() == kind) {
                let mut doc = e.to_json();
                if let Entity::EdgeGateway(g) = e
                    && g.data_source_manifest_reference_ids.is_some()
                    && let Some(o) = doc.as_object_mut()
                {
                    // Its data sources are created after it: named once they are.
                    o.remove("dataSourceManifestReferenceIDs");
                    later.push(e.to_json());
                }
                self.put(kind, e.id().unwrap_or_default(), &doc).await?;
                made += 1;
            }
            if kind == EntityKind::DataSourceManifest {
                for doc in later.drain(..) {
                    let id = doc["id"].as_str().unwrap_or_default().to_owned();
                    self.put(EntityKind::EdgeGateway, &id, &doc).await?;
                }
            }
        }
        // The cloud's own (global) instances first, so that their inputs are there when
        // the edges' results come up.
        let mut ams: Vec<(bool, String)> = entities
            .iter()
            .filter_map(|e| match e {
                Entity::AnalyticsManifest(am) => Some((am.runs_on_gateways(), am.id.clone())),
                _ => None,
            })
            .collect();
        ams.sort_by_key(|(deployed, _)| *deployed);
        let ams: Vec<String> = ams.into_iter().map(|(_, id)| id).collect();
        eprintln!(
            "created {made} entities through the cloud's API; starting {} analytics instance(s)",
            ams.len()
        );
        for id in &ams {
            let a = self
                .call(
                    Method::POST,
                    &format!("/analytics-instances/{}/start", enc(id)),
                    None,
                )
                .await?;
            if !(a.status.is_success() || a.status == StatusCode::CONFLICT) {
                bail!("the cloud cannot start `{id}`: {} {}", a.status, a.body);
            }
        }
        Ok(ams)
    }

    /// Creates entity `id`, or replaces it when an earlier run made it.
    async fn put(&self, kind: EntityKind, id: &str, doc: &Value) -> anyhow::Result<()> {
        let folder = route(kind);
        let a = self
            .call(Method::POST, &format!("/{folder}"), Some(doc))
            .await?;
        if a.status.is_success() {
            return Ok(());
        }
        if a.status != StatusCode::CONFLICT {
            bail!(
                "the cloud refused {} `{id}`: {} {}",
                kind,
                a.status,
                serde_json::to_string_pretty(&a.body).unwrap_or_default()
            );
        }
        let item = format!("/{folder}/{}", enc(id));
        if kind == EntityKind::AnalyticsManifest {
            self.call(Method::POST, &format!("{item}/stop"), None)
                .await?;
            self.ok(Method::PUT, &format!("{item}/specification"), Some(doc))
                .await?;
        } else {
            self.ok(Method::PUT, &item, Some(doc)).await?;
        }
        Ok(())
    }

    /// Prints where each instance is when that changed.
    async fn show_progress(&self, ids: &[String], shown: &mut BTreeMap<String, String>) {
        for id in ids {
            let Ok(a) = self
                .call(
                    Method::GET,
                    &format!("/analytics-instances/{}", enc(id)),
                    None,
                )
                .await
            else {
                continue;
            };
            let v = &a.body;
            let now = if let Some(d) = v.get("deployment") {
                format!(
                    "{} on {}{}",
                    d["phase"].as_str().unwrap_or("?"),
                    d["gateway"].as_str().unwrap_or("?"),
                    d["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            } else if let Some(r) = v.get("rollout") {
                format!(
                    "{} of {} gateways running, {} failed",
                    r["running"], r["targeted"], r["failed"]
                )
            } else {
                format!("{} in the cloud", v["state"].as_str().unwrap_or("?"))
            };
            if shown.get(id) != Some(&now) {
                eprintln!("  {id}: {now}");
                shown.insert(id.clone(), now);
            }
        }
    }
}

fn enc(id: &str) -> String {
    dashboard_api::routes::encode_path(id)
}

/// What ran, where the results are (every file under each engine's `dda-output`), and
/// how many dead letters each engine has.
fn summary(dir: &Path, members: &[Member], elapsed: Duration) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ran a fleet of a cloud and {} edge engine(s) for {}:",
        members.len() - 1,
        crate::cmd::run::fmt_duration(elapsed)
    );
    let _ = writeln!(out, "results:");
    let mut dead = Vec::new();
    for m in members {
        let data = dir.join(&m.name);
        if let Ok(entries) = std::fs::read_dir(data.join("dda-output")) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                let _ = writeln!(out, "  {}", f.display());
            }
        }
        let n = std::fs::read_to_string(data.join("dead-letters.jsonl"))
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0);
        dead.push(format!("{} {n}", m.name));
    }
    let _ = writeln!(out, "dead letters: {}", dead.join(", "));
    let _ = writeln!(
        out,
        "each engine's log and configuration: {}/<engine>.log, .toml",
        dir.display()
    );
    crate::cmd::emit(&out)
}
