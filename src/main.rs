//! The `dda` command: CLI parsing and wiring only; the work is done by the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod cmd;

/// Manifest-driven stream analytics for the industrial edge.
#[derive(Debug, Parser)]
#[command(name = "dda", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How long a run lasts, and how fast simulated time goes.
#[derive(Args, Debug)]
struct Pace {
    /// How long to run (wall clock), e.g. 20s, 5m, PT1H.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Option<std::time::Duration>,
    /// Simulated time per wall-clock time (for every engine): a factor such as 3600 (an
    /// hour a second), or max.
    #[arg(long, default_value = "1", value_parser = parse_speed)]
    speed: engine::connector::Speed,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate manifests (files or directories, checked together as one bundle).
    ///
    /// Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.
    Validate {
        /// Files or directories holding .json / .xml documents.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Colour in human output.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Convert a document, or every document under a directory, between JSON and XML.
    Convert {
        /// Target syntax.
        #[arg(long, value_enum)]
        to: Target,
        /// A document, or a directory of documents.
        path: PathBuf,
        /// Where to write: a file (for one document) or a directory (for a directory).
        /// Without it a single document is written to standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run every analytics manifest of a bundle in one process, on embedded defaults.
    ///
    /// Validates first (like `validate`); runs until DURATION has passed, the inputs are
    /// exhausted, or Ctrl-C; then stops, draining everything accepted, and says where the
    /// results are.
    Run {
        /// Files or directories of the bundle.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        pace: Pace,
        /// No live progress lines.
        #[arg(long)]
        quiet: bool,
        /// Colour in diagnostics.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
        /// Engine configuration (TOML, as for `serve`): `run` reads its `[external]` table,
        /// the programs `external` processors may run.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Checkpoint the instances into DIR (every `checkpoint_interval` of `--config`,
        /// default 10 s), and go on from the checkpoints found there.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Run synthetic pipelines in-process and print throughput and latency.
    Bench {
        /// Cases to run: null, null-rate, sqlite, null-sliding, sliding, session, enrich, checkpoint,
        /// queue, create, mqtt, mqtt-qos1 (default: all but checkpoint, queue, create and the
        /// MQTT ones, which need a broker).
        cases: Vec<String>,
        /// Readings of each maximum-rate case.
        #[arg(long, default_value_t = 10_000_000)]
        observations: u64,
        /// Readings per second of the null-rate case.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// How long the null-rate case runs.
        #[arg(long = "for", value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
        duration: std::time::Duration,
        /// Worker threads; 1 runs everything on one core (SQLite writes excepted).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Where the SQLite case writes its database.
        #[arg(long, default_value = "dda-output")]
        out_dir: PathBuf,
        /// Messages of each MQTT case.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// The broker of the MQTT cases.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:1883")]
        broker: String,
        /// Checkpoint the engine cases' instance this often (into OUT_DIR/bench-checkpoints),
        /// to measure what checkpoints cost.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        checkpoint_interval: Option<std::time::Duration>,
    },
    /// Run an engine with the Open API (REST), persisting models and instance state.
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:9999).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Where models and instance state are kept (default dda-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run a bundle as a fleet on this machine: a cloud engine and, for each edge gateway,
    /// the edge engine its edgeAnalyticsEngineBaseURL names (a loopback URL), each a
    /// `dda serve` process; every model and analytics manifest is created through the
    /// cloud's API, which deploys them.
    ///
    /// Runs until DURATION has passed or Ctrl-C; then stops every engine gracefully (the
    /// edges first) and says where the results are.
    Fleet {
        /// Files or directories of the bundle.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        pace: Pace,
        /// Where the cloud engine listens.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9999")]
        listen: std::net::SocketAddr,
        /// Where the engines keep their data: DIR/cloud and DIR/<gateway id>.
        #[arg(long, value_name = "DIR", default_value = "dda-fleet")]
        data_dir: PathBuf,
        /// Colour in diagnostics.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Ask a running server's Common Interoperability Registry: resolve an object with its
    /// linked records, translate a local id, import links.
    ///
    /// Exit status: 0 done, 1 refused (every problem printed), 2 the server cannot be
    /// reached or the file cannot be read. A token, when the server wants one, is read from
    /// DDA_TOKEN.
    Cir {
        /// What to ask.
        #[command(subcommand)]
        ask: CirAsk,
        /// The server's address.
        #[arg(
            long,
            global = true,
            value_name = "URL",
            default_value = "http://127.0.0.1:9999"
        )]
        server: String,
    },
    /// Make an API token and the hash to configure for it.
    Token {
        /// Who or what will hold it.
        #[arg(long, default_value = "client")]
        name: String,
        /// What it may do: viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List the processor catalogue with each type's parameters.
    Processors {
        /// Output format (json: analytics processor definitions; markdown: the parameter
        /// tables of the reference documentation).
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// List the connector catalogue: every protocol a data interface may name, with the
    /// parameters its data sources take.
    Connectors {
        /// Output format (markdown: the parameter tables of the reference documentation).
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Print an entity's schema (JSON Schema, or the XSD derived from it).
    Schema {
        /// Entity: data-interface, DataInterface or DI (any of its names); bundle; common.
        entity: String,
        /// Schema language.
        #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
        format: SchemaFormat,
    },
}

/// What `dda cir` asks.
#[derive(Debug, Subcommand)]
enum CirAsk {
    /// An object (CIR id) with every linked record, fetched from its repository.
    Resolve {
        /// The object's CIR id.
        id: String,
    },
    /// A record's local id as the CIR id and the same object's ids in other repositories.
    Translate {
        /// The repository the id is from.
        repository: String,
        /// The record's id there.
        local_id: String,
        /// Only the ids in this repository.
        #[arg(long, value_name = "REPOSITORY")]
        to: Option<String>,
    },
    /// Links from a CSV file (by its .csv extension) or JSON lines: all or none.
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// Output format of `validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Diagnostics with source snippets, for people.
    Human,
    /// One JSON document, for tools.
    Json,
}

/// Output format of the catalogue listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// For people.
    Human,
    /// One JSON document, for tools.
    Json,
    /// Markdown tables, as the reference documentation holds them.
    Markdown,
}

/// When to colour output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// When writing to a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Target of `convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// JSON.
    Json,
    /// XML.
    Xml,
}

/// Language of `schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// JSON Schema 2020-12.
    Json,
    /// XML Schema 1.0.
    Xsd,
}

/// A `--for` value: `20s`, `5m`, `PT1H`; a bare number is refused with the unit it lacks.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "{t:?}: a duration cannot be negative; give one such as 20s"
        ));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{t:?} has no unit: write {t}s (seconds), {t}m (minutes) or {t}h (hours), or \
             an ISO 8601 duration such as PT{t}S"
        ));
    }
    manifests::parameters::parse_duration(t)
        .map_err(|_| format!("{t:?} is not a duration: write one such as 20s, 5m, 1h30m or PT1H"))
}

fn parse_speed(text: &str) -> Result<engine::connector::Speed, String> {
    engine::connector::Speed::parse(text)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DDA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The command line, or exit with clap's message — with a "did you mean" for a mistyped
/// flag that clap's own similarity misses (a transposition such as `--fro`).
fn parse_cli() -> Cli {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    if e.kind() == ErrorKind::UnknownArgument
        && e.get(ContextKind::SuggestedArg).is_none()
        && let Some(ContextValue::String(wrong)) = e.get(ContextKind::InvalidArg)
        && let Some(wrong) = wrong.strip_prefix("--").map(str::to_owned)
    {
        let command = Cli::command();
        let sub = std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .and_then(|name| command.find_subcommand(&name).cloned());
        let longs: Vec<String> = sub
            .as_ref()
            .unwrap_or(&command)
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        // One edit away (a letter missing, added, changed or two swapped).
        if let Some(best) = longs
            .iter()
            .find(|l| l.len() >= 3 && strsim::damerau_levenshtein(&wrong, l) == 1)
        {
            e.insert(
                ContextKind::SuggestedArg,
                ContextValue::String(format!("--{best}")),
            );
        }
    }
    e.exit()
}

fn main() -> ExitCode {
    let cli = parse_cli();
    init_logging();
    let result = match cli.command {
        Command::Run {
            paths,
            pace: Pace { duration, speed },
            quiet,
            color,
            config,
            state_dir,
        } => cmd::run::run(cmd::run::RunOptions {
            paths,
            duration,
            speed,
            color,
            progress: !quiet,
            config,
            state_dir,
        }),
        Command::Processors { format } => cmd::processors::run(format),
        Command::Connectors { format } => cmd::connectors::run(format),
        Command::Serve {
            config,
            listen,
            data_dir,
        } => cmd::serve::run(config.as_deref(), listen, data_dir),
        Command::Fleet {
            paths,
            pace: Pace { duration, speed },
            listen,
            data_dir,
            color,
        } => cmd::fleet::run(cmd::fleet::FleetOptions {
            paths,
            duration,
            speed,
            listen,
            data_dir,
            color,
        }),
        Command::Token { name, role } => cmd::serve::token(&name, &role),
        Command::Cir { ask, server } => cmd::cir::run(
            &server,
            match ask {
                CirAsk::Resolve { id } => cmd::cir::Ask::Resolve { id },
                CirAsk::Translate {
                    repository,
                    local_id,
                    to,
                } => cmd::cir::Ask::Translate {
                    repository,
                    local_id,
                    to,
                },
                CirAsk::Import { file } => cmd::cir::Ask::Import { file },
            },
        ),
        Command::Bench {
            cases,
            observations,
            rate,
            duration,
            threads,
            json,
            out_dir,
            messages,
            broker,
            checkpoint_interval,
        } => cmd::bench::run(cmd::bench::BenchOptions {
            cases,
            observations,
            rate,
            duration,
            threads,
            json,
            out_dir,
            messages,
            broker,
            checkpoint_interval,
        }),
        Command::Validate {
            paths,
            format,
            color,
        } => cmd::validate::run(&paths, format, color),
        Command::Convert { to, path, output } => cmd::convert::run(to, &path, output.as_deref()),
        Command::Schema { entity, format } => cmd::schema::run(&entity, format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
