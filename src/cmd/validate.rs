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

/// Validates `paths` together and prints every diagnostic.
///
/// # Errors
///
/// A path cannot be read (exit status 2).
pub fn run(paths: &[PathBuf], format: Format, color: Color) -> anyhow::Result<ExitCode> {
    let (bundle, model) = manifests::load_and_validate(paths, &manifests::Options::default())?;
    let errors = count(&bundle.diagnostics, Severity::Error);
    let warnings = count(&bundle.diagnostics, Severity::Warning);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let report = serde_json::json!({
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "documents": bundle.files.len(),
                "entities": bundle.entities.len(),
                "analyticsManifests": model.analytics_manifests.keys().collect::<Vec<_>>(),
                "diagnostics": bundle.diagnostics,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Format::Human => {
            let renderer = HumanRenderer::new(use_color(color, std::io::stdout().is_terminal()));
            for d in &bundle.diagnostics {
                let source = bundle.file_for(d).map(manifests::bundle::SourceFile::view);
                writeln!(out, "{}\n", renderer.render(d, source))?;
            }
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            let summary = format!(
                "{} with {}, {} ({})",
                plural(bundle.files.len(), "document"),
                plural(bundle.entities.len(), "entity").replace("entitys", "entities"),
                plural(errors, "error"),
                plural(warnings, "warning"),
            );
            if errors == 0 {
                writeln!(out, "valid: {summary}")?;
            } else {
                writeln!(out, "invalid: {summary}")?;
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
