//! `dda convert --to json|xml PATH`

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use manifests::Syntax;
use manifests::convert::ConvertError;
use manifests::diagnostic::HumanRenderer;

use crate::Target;

/// Converts one document; on failure prints its diagnostics and returns `None`.
fn convert_one(path: &Path, to: Syntax) -> anyhow::Result<Option<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match manifests::convert::convert(path, &text, to) {
        Ok(out) => Ok(Some(out)),
        Err(ConvertError::Unreadable(diags)) => {
            let renderer = HumanRenderer::new(false);
            let lines = manifests::node::LineIndex::new(&text);
            for d in diags {
                let view = manifests::diagnostic::SourceView {
                    text: &text,
                    lines: &lines,
                    masked: &[],
                };
                eprintln!("{}\n", renderer.render(&d, Some(view)));
            }
            Ok(None)
        }
        Err(e @ (ConvertError::NotRepresentable(_) | ConvertError::NotBundled)) => {
            eprintln!("error: {}: cannot convert: {e}", path.display());
            Ok(None)
        }
    }
}

/// Converts `path` (a document or a directory) to `to`.
///
/// # Errors
///
/// I/O errors, or a directory without `--output` (exit status 2).
pub fn run(to: Target, path: &Path, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (syntax, ext) = match to {
        Target::Json => (Syntax::Json, "json"),
        Target::Xml => (Syntax::Xml, "xml"),
    };
    if path.is_dir() {
        let Some(out_dir) = output else {
            bail!("converting a directory needs --output DIR");
        };
        let mut files = Vec::new();
        manifests::bundle::document_files(path, &mut files)?;
        let mut failed = 0;
        for file in &files {
            let Some(text) = convert_one(file, syntax)? else {
                failed += 1;
                continue;
            };
            let relative = file.strip_prefix(path).unwrap_or(file);
            let target = out_dir.join(relative).with_extension(ext);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
        eprintln!(
            "converted {} of {} documents into {}",
            files.len() - failed,
            files.len(),
            out_dir.display()
        );
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let Some(text) = convert_one(path, syntax)? else {
        return Ok(ExitCode::from(1));
    };
    match output {
        Some(file) => std::fs::write(file, text)
            .with_context(|| format!("cannot write {}", file.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
