//! `dda serve`'s configuration: a TOML file, overridden by environment variables, overridden
//! by command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:9999"     # loopback unless you say otherwise
//! data_dir = "dda-data"         # the model repository and instance state (SQLite)
//! speed = "1"                   # simulated time per wall-clock time, for simulators
//! recent = 100                  # recent observations kept per data source, for live views
//! stop_timeout = "10s"          # a stop drains within this; then sinks still retrying give up
//! checkpoint_interval = "10s"   # instances' checkpoints, in <data_dir>/checkpoints ("0s": none)
//! [checkpoint_intervals]        # per instance (analytics manifest id), instead ("0s": never)
//! "am-line-1-oee" = "1s"
//!
//! allowed_hosts = ["edge-7.plant.example"]  # Host names clients use, besides IP addresses and localhost
//! allowed_origins = ["https://dashboard.plant.example"]  # web pages that may change things
//! allowed_paths = ["/srv/plant-exports"]   # files manifests may name, besides the data directory
//!
//! [secrets]                     # where ${file:...} and ${env:...} in secret parameters may point
//! files = ["/run/secrets"]      # default: /run/secrets and <data_dir>/secrets
//! env_prefixes = ["DDA_SECRET_"] # default: DDA_SECRET_
//!
//! [[tokens]]                    # with tokens, every route but health needs one
//! name = "dashboard"
//! role = "viewer"               # viewer: read; operator: also lifecycle; admin: everything
//! sha256 = "9f86d081884c7d65..." # `dda token --name dashboard --role viewer` makes a token and its hash
//!
//! [store_and_forward]           # queues on disk of network sinks, in <data_dir>/queues
//! max_bytes = "1GiB"            # per sink (a number of bytes, or KiB, MiB, GiB, KB, MB, GB)
//! max_age = "7d"                # older queued observations go to the dead letters (default: none)
//! on_full = "backpressure"      # or "drop-oldest" (the oldest go to the dead letters, counted)
//! [store_and_forward.sinks."plant-uplink"]  # limits of one sink's queue, by DSM id
//! max_bytes = "64MiB"
//! on_full = "drop-oldest"
//!
//! [fleet]                       # the engine's place in a fleet (docs/fleet.md)
//! role = "standalone"           # or "edge" (the cloud holds the gateways) or "cloud"
//! call_timeout = "5s"           # calls to other engines (gateways') give up after this
//! ca_file = "fleet-ca.pem"      # a private CA other engines' certificates are signed by
//! poll_interval = "5s"          # a cloud asks each gateway's engine this often what it runs
//! cloud_token = "cloud"         # an edge takes deployments only with this token (of [[tokens]])
//! gateway = "edge-1"            # an edge's gateway id in the cloud (default: learnt from its calls)
//!
//! [tls]                         # HTTPS with rustls when given
//! cert = "server.crt"           # PEM chain
//! key = "server.key"            # PEM private key
//!
//! [[external.programs]]         # programs the `external` processor may run (docs/external.md)
//! name = "scorer"               # what manifests name
//! argv = ["python3", "examples/external-python/scorer.py"]  # no shell, ever
//! ```
//!
//! Environment: `DDA_LISTEN`, `DDA_DATA_DIR`, `DDA_ROLE`, `DDA_SPEED`, `DDA_RECENT`, `DDA_STOP_TIMEOUT`, `DDA_CHECKPOINT_INTERVAL`, `DDA_TLS_CERT`,
//! `DDA_TLS_KEY`, `DDA_ALLOWED_HOSTS` and `DDA_ALLOWED_ORIGINS` (comma-separated).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::origin::WebPolicy;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, and start, stop, pause and resume instances.
    Operator,
    /// Everything: create, update and delete too.
    Admin,
}

impl Role {
    /// The name, as configured.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// One API token, kept as the SHA-256 of its text.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who or what holds it (for logs).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

/// HTTPS settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The server's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the repository and instance state are kept.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Simulated time per wall-clock time (`1`, `3600`, `max`).
    #[serde(default = "default_speed")]
    pub speed: String,
    /// Recent observations kept per data source.
    #[serde(default = "default_recent")]
    pub recent: usize,
    /// How long stopping an instance may take (sources stop, processors drain, sinks write
    /// what they hold); past it, sinks still retrying a remote system give up and what they
    /// hold goes to the dead letters, counted undelivered. `dda run --config` uses it too.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: manifests::config::Duration,
    /// How often running instances are checkpointed (into `<data_dir>/checkpoints`, and
    /// restored from there at start); `0s`: never.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: manifests::config::Duration,
    /// How often particular instances are checkpointed, by analytics manifest id, instead
    /// of `checkpoint_interval` (`0s`: never). `dda run --config` uses them too.
    #[serde(default)]
    pub checkpoint_intervals: std::collections::HashMap<String, manifests::config::Duration>,
    /// API tokens; none means no authentication (loopback only is then advisable).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// HTTPS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Host names clients may use to reach the server, besides IP addresses and
    /// `localhost` (`*`: any); other names are refused, against DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://host[:port]`) of web pages that may change things (`*`: any);
    /// a browser request from any other page is refused.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Folders besides the data directory that file parameters of manifests may name
    /// (sinks' files and databases, replayed files, certificates, models).
    #[serde(default)]
    pub allowed_paths: Vec<PathBuf>,
    /// Where secret references of manifests may point.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// The programs `external` processors may run (`dda run --config` reads this table too).
    #[serde(default)]
    pub external: engine::external::ExternalConfig,
    /// The store-and-forward queues of network sinks (`dda run --state-dir` uses it too).
    #[serde(default)]
    pub store_and_forward: StoreAndForwardConfig,
    /// The engine's place in a fleet of engines (docs/fleet.md).
    #[serde(default)]
    pub fleet: FleetConfig,
}

/// What an engine is in a fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetRole {
    /// One engine on its own: it holds its models and its gateways, and runs what it is
    /// given (the default).
    #[default]
    Standalone,
    /// An edge engine of a fleet: the cloud holds the gateway registry, so references to
    /// edge gateways are not checked here.
    Edge,
    /// The cloud engine of a fleet: it holds the gateway registry and calls the gateways'
    /// engines.
    Cloud,
}

/// The engine's place in a fleet, and how it calls other engines.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `standalone`, `edge` or `cloud`.
    #[serde(default)]
    pub role: FleetRole,
    /// How long a call to another engine (a gateway's, for one) may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: manifests::config::Duration,
    /// PEM certificates of a private CA that other engines' HTTPS certificates are signed
    /// by, besides the Web PKI's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How often a cloud asks each gateway's engine what it is and runs (`0s`: never).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: manifests::config::Duration,
    /// On an edge, the name of the token (`[[tokens]]`) its cloud calls with: models and
    /// instances are then created, changed and deleted only with that token (deployments
    /// come from the cloud); other tokens keep their roles for reading and lifecycle.
    #[serde(default)]
    pub cloud_token: Option<String>,
    /// On an edge, its gateway's id in the cloud's registry; learnt from the cloud's calls
    /// when not given. What its webhook sinks send names it (`x-dda-gateway`).
    #[serde(default)]
    pub gateway: Option<String>,
}

fn default_poll_interval() -> manifests::config::Duration {
    manifests::config::Duration::from_secs(5)
}

fn default_call_timeout() -> manifests::config::Duration {
    manifests::config::Duration::from_secs(5)
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            role: FleetRole::default(),
            call_timeout: default_call_timeout(),
            ca_file: None,
            poll_interval: default_poll_interval(),
            cloud_token: None,
            gateway: None,
        }
    }
}

/// Limits of a network sink's store-and-forward queue.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueLimitsConfig {
    /// Most bytes on disk.
    #[serde(default = "default_queue_bytes")]
    pub max_bytes: ByteSize,
    /// Queued observations older than this go to the dead letters.
    #[serde(default)]
    pub max_age: Option<manifests::config::Duration>,
    /// What a full queue does.
    #[serde(default)]
    pub on_full: engine::spool::OnFull,
}

impl Default for QueueLimitsConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_queue_bytes(),
            max_age: None,
            on_full: engine::spool::OnFull::default(),
        }
    }
}

impl From<QueueLimitsConfig> for engine::spool::QueueLimits {
    fn from(c: QueueLimitsConfig) -> Self {
        Self {
            max_bytes: c.max_bytes.0,
            max_age: c.max_age.map(manifests::config::Duration::get),
            on_full: c.on_full,
        }
    }
}

/// The `[store_and_forward]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreAndForwardConfig {
    /// Most bytes on disk, per sink.
    #[serde(default = "default_queue_bytes")]
    pub max_bytes: ByteSize,
    /// Queued observations older than this go to the dead letters.
    #[serde(default)]
    pub max_age: Option<manifests::config::Duration>,
    /// What a full queue does.
    #[serde(default)]
    pub on_full: engine::spool::OnFull,
    /// Limits of particular sinks' queues, by DSM id.
    #[serde(default)]
    pub sinks: std::collections::HashMap<String, QueueLimitsConfig>,
}

impl Default for StoreAndForwardConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_queue_bytes(),
            max_age: None,
            on_full: engine::spool::OnFull::default(),
            sinks: std::collections::HashMap::new(),
        }
    }
}

impl StoreAndForwardConfig {
    /// The engine's queue settings, with the queues in `dir`.
    #[must_use]
    pub fn settings(&self, dir: PathBuf) -> engine::engine::QueueSettings {
        engine::engine::QueueSettings {
            dir,
            limits: QueueLimitsConfig {
                max_bytes: self.max_bytes,
                max_age: self.max_age,
                on_full: self.on_full,
            }
            .into(),
            sinks: self
                .sinks
                .iter()
                .map(|(k, v)| (k.clone(), (*v).into()))
                .collect(),
        }
    }
}

/// A size in bytes: a number, or text with a unit (`512KiB`, `64MiB`, `1GiB`, `10MB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Reads `64MiB`, `1 GB`, `4096`.
    ///
    /// # Errors
    ///
    /// Anything else.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: write a number of bytes, such as 64MiB or 1GiB"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" => 1 << 10,
            "mb" => 1_000_000,
            "mib" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?}; use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB"
                ));
            }
        };
        n.checked_mul(factor)
            .filter(|b| *b > 0)
            .map(Self)
            .ok_or_else(|| format!("{text:?}: write a size above zero and below 16 EiB"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(0) => Err(serde::de::Error::custom("a size must be above zero")),
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

const fn default_queue_bytes() -> ByteSize {
    ByteSize(engine::spool::QueueLimits::DEFAULT_MAX_BYTES)
}

/// Where `${file:PATH}` and `${env:NAME}` references in secret parameters may point.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Folders secret files may be read from; a relative one is inside the data directory.
    #[serde(default = "default_secret_files")]
    pub files: Vec<PathBuf>,
    /// Prefixes of the environment variables secrets may be read from.
    #[serde(default = "default_secret_env_prefixes")]
    pub env_prefixes: Vec<String>,
}

fn default_secret_files() -> Vec<PathBuf> {
    vec![PathBuf::from("/run/secrets"), PathBuf::from("secrets")]
}

fn default_secret_env_prefixes() -> Vec<String> {
    vec!["DDA_SECRET_".to_owned()]
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            files: default_secret_files(),
            env_prefixes: default_secret_env_prefixes(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9999))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("dda-data")
}

fn default_speed() -> String {
    "1".to_owned()
}

const fn default_recent() -> usize {
    100
}

fn default_checkpoint_interval() -> manifests::config::Duration {
    manifests::config::Duration::from_secs(10)
}

fn default_stop_timeout() -> manifests::config::Duration {
    engine::EngineConfig::DEFAULT_STOP_TIMEOUT.into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            speed: default_speed(),
            recent: default_recent(),
            stop_timeout: default_stop_timeout(),
            checkpoint_interval: default_checkpoint_interval(),
            checkpoint_intervals: std::collections::HashMap::new(),
            tokens: Vec::new(),
            tls: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_paths: Vec::new(),
            secrets: SecretsConfig::default(),
            external: engine::external::ExternalConfig::default(),
            store_and_forward: StoreAndForwardConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or variable).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ServerConfig {
    /// The checkpoint settings of an engine checkpointing into `dir` every `interval`, with
    /// the instances' own intervals.
    #[must_use]
    pub fn checkpoint_settings(
        &self,
        dir: PathBuf,
        interval: std::time::Duration,
    ) -> engine::engine::CheckpointSettings {
        engine::engine::CheckpointSettings {
            dir,
            interval,
            instances: self
                .checkpoint_intervals
                .iter()
                .map(|(id, d)| (id.clone(), d.get()))
                .collect(),
        }
    }

    /// Reads `path` (if given), then applies the environment.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid file, or an invalid environment variable.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str::<Self>(&text).map_err(|e| ConfigError::Invalid {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.check()?;
        Ok(config)
    }

    /// Applies `DDA_*` overrides read through `var`.
    ///
    /// # Errors
    ///
    /// A variable with an invalid value.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let invalid = |name: &str, message: String| ConfigError::Invalid {
            path: name.to_owned(),
            message,
        };
        if let Some(v) = var("DDA_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e| invalid("DDA_LISTEN", format!("{v:?}: {e}")))?;
        }
        if let Some(v) = var("DDA_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("DDA_SPEED") {
            self.speed = v;
        }
        if let Some(v) = var("DDA_RECENT") {
            self.recent = v
                .parse()
                .map_err(|e| invalid("DDA_RECENT", format!("{v:?}: {e}")))?;
        }
        if let Some(v) = var("DDA_CHECKPOINT_INTERVAL") {
            self.checkpoint_interval = manifests::parameters::parse_duration(&v)
                .map(manifests::config::Duration)
                .map_err(|e| invalid("DDA_CHECKPOINT_INTERVAL", e))?;
        }
        if let Some(v) = var("DDA_STOP_TIMEOUT") {
            self.stop_timeout = manifests::parameters::parse_duration(&v)
                .map(manifests::config::Duration)
                .map_err(|e| invalid("DDA_STOP_TIMEOUT", e))?;
        }
        if let Some(v) = var("DDA_ROLE") {
            self.fleet.role = match v.as_str() {
                "standalone" => FleetRole::Standalone,
                "edge" => FleetRole::Edge,
                "cloud" => FleetRole::Cloud,
                _ => {
                    return Err(invalid(
                        "DDA_ROLE",
                        format!("{v:?}: give standalone, edge or cloud"),
                    ));
                }
            };
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = var("DDA_ALLOWED_HOSTS") {
            self.allowed_hosts = list(v);
        }
        if let Some(v) = var("DDA_ALLOWED_ORIGINS") {
            self.allowed_origins = list(v);
        }
        match (var("DDA_TLS_CERT"), var("DDA_TLS_KEY")) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsConfig {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "DDA_TLS_CERT",
                    "set both DDA_TLS_CERT and DDA_TLS_KEY".into(),
                ));
            }
        }
        Ok(())
    }

    /// What manifests sent to this server may reach: files inside the data directory or the
    /// allowed paths, secrets in the configured folders and variables.
    #[must_use]
    pub fn reach(&self) -> manifests::reach::Reach {
        let base = std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        manifests::reach::Reach {
            roots: self
                .allowed_paths
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            secret_files: self.secrets.files.iter().map(|p| base.join(p)).collect(),
            secret_env_prefixes: self.secrets.env_prefixes.clone(),
            base,
        }
    }

    /// Checks values the types do not.
    ///
    /// # Errors
    ///
    /// An invalid speed, token hash or external program.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.external
            .check()
            .map_err(|message| ConfigError::Invalid {
                path: "external".into(),
                message,
            })?;
        engine::connector::Speed::parse(&self.speed).map_err(|message| ConfigError::Invalid {
            path: "speed".into(),
            message,
        })?;
        for o in &self.allowed_origins {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            let well_formed = o == "*"
                || rest.is_some_and(|r| {
                    let r = r.strip_suffix('/').unwrap_or(r);
                    !r.is_empty() && !r.contains(['/', '?', '#'])
                });
            if !well_formed {
                return Err(ConfigError::Invalid {
                    path: "allowed_origins".into(),
                    message: format!(
                        "{o:?} is not an origin: write scheme://host[:port], such as \
                         https://dashboard.plant.example, without a path"
                    ),
                });
            }
        }
        if let Some(name) = &self.fleet.cloud_token {
            let known = self
                .tokens
                .iter()
                .any(|t| &t.name == name && t.role == Role::Admin);
            if !known || self.fleet.role != FleetRole::Edge {
                return Err(ConfigError::Invalid {
                    path: "fleet.cloud_token".into(),
                    message: format!(
                        "{name:?} must name an admin token of [[tokens]], on an engine whose fleet.role is \"edge\""
                    ),
                });
            }
        }
        for t in &self.tokens {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid {
                    path: format!("tokens.{}", t.name),
                    message: "sha256 must be 64 hex digits (make one with `dda token`)".into(),
                });
            }
        }
        Ok(())
    }
}

impl From<&ServerConfig> for WebPolicy {
    fn from(config: &ServerConfig) -> Self {
        Self {
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }
}

/// Lowercase hex SHA-256 of `text`.
#[must_use]
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback() {
        let c = ServerConfig::default();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn the_file_then_the_environment() {
        let text = format!(
            "listen = \"127.0.0.1:7000\"\nrecent = 5\n[[tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            sha256_hex("secret")
        );
        let mut c: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.tokens[0].role, Role::Operator);
        c.apply_env(|k| (k == "DDA_LISTEN").then(|| "127.0.0.1:7001".to_owned()))
            .unwrap();
        assert_eq!(c.listen.port(), 7001);
        assert!(
            c.apply_env(|k| (k == "DDA_TLS_CERT").then(|| "x".to_owned()))
                .is_err()
        );
        c.check().unwrap();
    }

    #[test]
    fn the_external_programs_are_read_from_the_file() {
        let text = r#"
[[external.programs]]
name = "scorer"
argv = ["python3", "examples/external-python/scorer.py", "; touch /tmp/x"]
env = { SCORER_WINDOW = "30" }
timeout = "PT5S"

[[external.programs]]
name = "cat"
argv = ["/bin/cat"]
working_dir = "/tmp"
"#;
        let c: ServerConfig = toml::from_str(text).unwrap();
        c.check().unwrap();
        assert_eq!(c.external.names(), ["scorer", "cat"]);
        let scorer = c.external.program("scorer").unwrap();
        assert_eq!(
            scorer.argv[2], "; touch /tmp/x",
            "arguments are kept as written"
        );
        assert_eq!(scorer.env["SCORER_WINDOW"], "30");
        assert_eq!(scorer.timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(
            c.external.program("cat").unwrap().working_dir,
            Some(PathBuf::from("/tmp"))
        );
        assert!(ServerConfig::default().external.programs.is_empty());
        let twice: ServerConfig = toml::from_str(
            "[[external.programs]]\nname = \"a\"\nargv = [\"x\"]\n[[external.programs]]\nname = \"a\"\nargv = [\"y\"]\n",
        )
        .unwrap();
        assert!(twice.check().is_err(), "names are unique");
        assert!(
            toml::from_str::<ServerConfig>(
                "[[external.programs]]\nname = \"a\"\ncommand = \"x\"\n"
            )
            .is_err(),
            "no command line, only argv"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            toml::from_str::<ServerConfig>("lisen = \"x\"").is_err(),
            "unknown keys are errors"
        );
        let c = ServerConfig {
            speed: "fast".into(),
            ..ServerConfig::default()
        };
        assert!(c.check().is_err());
        // An edge's cloud token names one of its admin tokens.
        let edge = |tokens: &str| {
            toml::from_str::<ServerConfig>(&format!(
                "[fleet]\nrole = \"edge\"\ncloud_token = \"cloud\"\n{tokens}"
            ))
            .unwrap()
            .check()
        };
        let token = |role: &str| {
            format!(
                "[[tokens]]\nname = \"cloud\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
                sha256_hex("t")
            )
        };
        assert!(edge("").is_err());
        assert!(edge(&token("viewer")).is_err());
        assert!(edge(&token("admin")).is_ok());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
