//! `dda run PATH... [--for DURATION] [--speed N] [--config dda.toml] [--state-dir DIR]`:
//! every analytics manifest of a bundle, in one process, on embedded defaults (and the
//! external programs allowed by `--config`), checkpointed into and resumed from `--state-dir`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::connector::Speed;
use engine::{DataSource, Engine, EngineConfig, InstanceStatus, Plan, State};
use manifests::Severity;

use crate::Color;

/// Options of `dda run`.
#[derive(Debug)]
pub struct RunOptions {
    /// Files or directories of the bundle.
    pub paths: Vec<PathBuf>,
    /// Wall-clock duration; `None` runs until the inputs end or Ctrl-C.
    pub duration: Option<Duration>,
    /// Simulated time per wall-clock time.
    pub speed: Speed,
    /// Colour of diagnostics.
    pub color: Color,
    /// Progress lines on a terminal.
    pub progress: bool,
    /// Engine configuration file (`dda.toml`): only its `[external]` table is used.
    pub config: Option<PathBuf>,
    /// Where to keep checkpoints and go on from them.
    pub state_dir: Option<PathBuf>,
}

/// Validates the bundle (exit 1 with the diagnostics if invalid), runs it, prints a summary.
///
/// # Errors
///
/// Unreadable paths, or an engine that cannot start (exit status 2).
pub fn run(options: RunOptions) -> anyhow::Result<ExitCode> {
    let options_of_validation = manifests::Options {
        catalogue: Some(engine::Catalogue::get()),
        ..manifests::Options::default()
    };
    let Some((_, model)) = valid_bundle(
        &options.paths,
        &options_of_validation,
        options.color,
        "nothing was run",
    )?
    else {
        return Ok(ExitCode::from(1));
    };
    if model.analytics_manifests.is_empty() {
        bail!("the bundle holds no analytics manifest: nothing to run");
    }
    // The same file as `dda serve --config`; of the server's settings only `[external]`,
    // `stop_timeout`, `[store_and_forward]` and the checkpoint intervals apply here.
    let c = match &options.config {
        Some(path) => dashboard_api::ServerConfig::load(Some(path))?,
        None => dashboard_api::ServerConfig::default(),
    };
    let (external, stop_timeout) = (c.external.clone(), c.stop_timeout.get());
    let queues = options
        .state_dir
        .as_ref()
        .map(|dir| c.store_and_forward.settings(dir.join("queues")));
    let checkpoints = options.state_dir.as_ref().map(|dir| {
        let interval = if c.checkpoint_interval.get().is_zero() {
            EngineConfig::DEFAULT_STOP_TIMEOUT
        } else {
            c.checkpoint_interval.get()
        };
        c.checkpoint_settings(dir.clone(), interval)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_model(
        &model,
        &options,
        EngineConfig {
            speed: options.speed,
            external,
            stop_timeout,
            checkpoints,
            queues,
            linked: Some(std::sync::Arc::new(connectors::linked::Follower::new(
                std::sync::Arc::new(connectors::linked::Fixed::new(std::sync::Arc::new(
                    model.clone(),
                ))),
            ))),
            ..EngineConfig::default()
        },
    ))
}

/// Loads and validates a bundle: with errors, prints them and says `nothing` (what was
/// not done), and gives `None` (exit status 1); warnings are printed.
///
/// # Errors
///
/// Unreadable paths.
pub(crate) fn valid_bundle(
    paths: &[PathBuf],
    options: &manifests::Options<'_>,
    color: Color,
    nothing: &str,
) -> anyhow::Result<Option<(manifests::Bundle, manifests::Model)>> {
    let (bundle, model) = manifests::load_and_validate(paths, options)?;
    if bundle.has_errors() {
        crate::cmd::validate::print_human(&bundle, color)?;
        eprintln!("error: the bundle is invalid; {nothing}");
        return Ok(None);
    }
    for d in bundle
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        eprintln!("{d}");
    }
    Ok(Some((bundle, model)))
}

async fn run_model(
    model: &manifests::Model,
    options: &RunOptions,
    config: EngineConfig,
) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(config).await?;
    let mut sinks: Vec<DataSource> = Vec::new();
    for id in model.data_source_manifests.keys() {
        let source = DataSource::from_model(model, id)
            .with_context(|| format!("data source {id} does not resolve"))?;
        sinks.push(source.clone());
        engine.register(source)?;
    }
    let mut ids = Vec::new();
    for am in model.analytics_manifests.values() {
        engine.create(Plan::new(am, model)?)?;
        ids.push(am.id.clone());
    }
    let started = Instant::now();
    engine.start_all(&ids).await?;
    let speed = match options.speed {
        Speed::Max => "max speed".to_owned(),
        Speed::Factor(f) => format!("{f}× real time"),
    };
    eprintln!(
        "running {} analytics instance(s) at {speed}{}; Ctrl-C (or SIGTERM) stops and drains",
        ids.len(),
        options
            .duration
            .map(|d| format!(" for {}", fmt_duration(d)))
            .unwrap_or_default()
    );
    let live = options.progress && std::io::stderr().is_terminal();
    let mut drawn = 0;
    let mut last = Vec::new();
    // Ctrl-C and SIGTERM both stop the run the same way: drained, with a summary.
    let stop = crate::cmd::stop_signal();
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            signal = &mut stop => break signal,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let statuses = statuses(&engine, &ids).await;
        if live {
            drawn = draw(&statuses, drawn);
        }
        last.clone_from(&statuses);
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break "time is up";
        }
        if engine.sources_exhausted() {
            break "inputs exhausted";
        }
        if statuses.iter().all(|s| s.state == State::Failed) {
            break "every instance failed";
        }
    };
    eprintln!("{reason}: stopping and draining (Ctrl-C or SIGTERM again exits at once)");
    // A drain can wait on a system that does not answer: a second request to stop is the
    // user's way out, and is obeyed at once.
    tokio::select! {
        () = engine.shutdown() => {}
        signal = crate::cmd::stop_signal() => {
            eprintln!(
                "{signal} again: exiting without draining; what was not yet written (see the \
                 warnings above) is not delivered"
            );
            std::process::exit(if signal == "interrupted" { 130 } else { 143 });
        }
    }
    let statuses = statuses(&engine, &ids).await;
    if live {
        draw(&statuses, drawn);
    }
    summary(&engine, &statuses, &last, &sinks, started.elapsed())?;
    // Results not delivered are a failure of the run, as a failed instance is.
    Ok(
        if statuses.iter().any(|s| s.failure.is_some()) || !engine.undelivered().is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

async fn statuses(engine: &Engine, ids: &[String]) -> Vec<InstanceStatus> {
    let mut out = Vec::new();
    for id in ids {
        if let Ok(s) = engine.status(id).await {
            out.push(s);
        }
    }
    out
}

fn line(s: &InstanceStatus) -> String {
    let received = s.processors.iter().map(|p| p.received).max().unwrap_or(0);
    let emitted: u64 = s.processors.iter().map(|p| p.emitted).sum();
    let mut text = format!(
        "{:<28} {:<8} in {:>10}  out {:>8}  dead letters {:>5}",
        s.id,
        s.state.as_str(),
        group(received),
        group(emitted),
        group(s.rejected())
    );
    if !s.waiting_for.is_empty() {
        text.push_str(&format!("  waiting for {}", s.waiting_for.join(", ")));
    }
    if let Some(f) = &s.failure {
        text.push_str(&format!("  failed at {}: {}", f.at, f.reason));
    }
    if let Some((c, error)) = s
        .connectors
        .iter()
        .find_map(|c| c.link.error.as_ref().map(|e| (c, e)))
    {
        text.push_str(&format!("  {} cannot connect: {error}", c.dsm));
    }
    text
}

/// Redraws the progress block in place; returns how many lines it drew.
fn draw(statuses: &[InstanceStatus], previous: usize) -> usize {
    let mut err = std::io::stderr().lock();
    if previous > 0 {
        let _ = write!(err, "\x1b[{previous}A");
    }
    for s in statuses {
        let _ = writeln!(err, "\x1b[2K{}", line(s));
    }
    statuses.len()
}

/// `running` holds the statuses last seen while the instances ran (with their connectors).
fn summary(
    engine: &Engine,
    statuses: &[InstanceStatus],
    running: &[InstanceStatus],
    sources: &[DataSource],
    elapsed: Duration,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ran {} analytics instance(s) for {}:",
        statuses.len(),
        fmt_duration(elapsed)
    );
    for s in statuses {
        let _ = writeln!(out, "  {}", line(s));
        // Events processors counted: enrich's readings passed without a field, say.
        for p in s.processors.iter().filter(|p| !p.events.is_empty()) {
            let events: Vec<String> = p
                .events
                .iter()
                .map(|(e, n)| format!("{e} {}", group(*n)))
                .collect();
            let _ = writeln!(
                out,
                "    {} ({}): {}",
                p.id,
                p.processor_type,
                events.join(", ")
            );
        }
    }
    let inputs: Vec<String> = engine
        .read()
        .into_iter()
        .map(|(dsm, n)| format!("{dsm} ({})", group(n)))
        .collect();
    if !inputs.is_empty() {
        let _ = writeln!(out, "inputs read: {}", inputs.join(", "));
    }
    let written = engine.written();
    let mut results = Vec::new();
    for (dsm, count) in written {
        if !sources.iter().any(|s| s.id == dsm) {
            continue;
        }
        let Some(place) = engine.place(dsm) else {
            continue;
        };
        results.push(format!("  {dsm}: {} observations → {place}", group(count)));
    }
    if results.is_empty() {
        let _ = writeln!(out, "no results were stored");
    } else {
        let _ = writeln!(out, "results:");
        for r in results {
            let _ = writeln!(out, "{r}");
        }
    }
    let undelivered = engine.undelivered();
    if !undelivered.is_empty() {
        let _ = writeln!(
            out,
            "NOT delivered (not acknowledged by their systems when the sinks gave up; in the dead letters):"
        );
        for (dsm, n) in undelivered {
            let place = engine.place(dsm).unwrap_or_default();
            let _ = writeln!(out, "  {dsm}: {} observations → {place}", group(n));
        }
    }
    let problems: Vec<String> = running
        .iter()
        .flat_map(|s| &s.connectors)
        .filter_map(|c| {
            c.link
                .error
                .as_ref()
                .map(|e| format!("  {} ({}): {e}", c.dsm, c.role))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "connectors that could not reach their systems:");
        for p in problems {
            let _ = writeln!(out, "{p}");
        }
    }
    let dead = engine.dead_letters().count();
    let _ = writeln!(
        out,
        "dead letters: {}{}",
        group(dead),
        if dead > 0 {
            " (dda-output/dead-letters.jsonl)"
        } else {
            ""
        }
    );
    // A reader that stopped reading (`| head -1`) is not an error.
    crate::cmd::emit(&out)
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn numbers_are_grouped_in_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
