//! `dda validate PATH...`

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use manifests::{Severity, bundle::count, diagnostic::HumanRenderer};

use crate::{Color, Format};

/// Whether to colour output written to `stream_is_terminal`.
pub fn use_color(choice: Color, stream_is_terminal: bool) -> bool {
    match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stream_is_terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Validates `paths` together, against the processor catalogue too, and prints every
/// diagnostic.
///
/// # Errors
///
/// A path cannot be read (exit status 2).
pub fn run(paths: &[PathBuf], format: Format, color: Color) -> anyhow::Result<ExitCode> {
    let catalogue = engine::Catalogue::get();
    let (bundle, model) = manifests::load_and_validate(
        paths,
        &manifests::Options {
            catalogue: Some(catalogue),
            ..manifests::Options::default()
        },
    )?;
    let errors = count(&bundle.diagnostics, Severity::Error);
    match format {
        Format::Json => {
            let report = serde_json::json!({
                "valid": errors == 0,
                "errors": errors,
                "warnings": count(&bundle.diagnostics, Severity::Warning),
                "documents": bundle.files.len(),
                "entities": bundle.entities.len(),
                "analyticsManifests": model.analytics_manifests.keys().collect::<Vec<_>>(),
                "diagnostics": bundle.diagnostics,
            });
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&report)?
            )?;
        }
        Format::Human => print_human(&bundle, color)?,
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints every diagnostic with its snippet, then a one-line verdict.
///
/// # Errors
///
/// Standard output is closed.
pub fn print_human(bundle: &manifests::Bundle, color: Color) -> std::io::Result<()> {
    let errors = count(&bundle.diagnostics, Severity::Error);
    let warnings = count(&bundle.diagnostics, Severity::Warning);
    let mut out = std::io::stdout().lock();
    let renderer = HumanRenderer::new(use_color(color, std::io::stdout().is_terminal()));
    for d in &bundle.diagnostics {
        let source = bundle.file_for(d).map(manifests::bundle::SourceFile::view);
        writeln!(out, "{}\n", renderer.render(d, source))?;
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let summary = format!(
        "{} with {}, {} ({})",
        plural(bundle.files.len(), "document", "documents"),
        plural(bundle.entities.len(), "entity", "entities"),
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings"),
    );
    writeln!(
        out,
        "{}: {summary}",
        if errors == 0 { "valid" } else { "invalid" }
    )
}
