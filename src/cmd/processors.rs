//! `dda processors`: the processor catalogue, from the registry.

use std::fmt::Write as _;
use std::process::ExitCode;

use manifests::model::ParameterDefinition;
use serde_json::json;

use crate::ListFormat;
use crate::cmd::emit;

/// Prints every processor type with its category, description and parameters.
///
/// # Errors
///
/// Standard output cannot be written (a closed pipe is not an error).
pub fn run(format: ListFormat) -> anyhow::Result<ExitCode> {
    let text = match format {
        ListFormat::Json => {
            // Each type as an analytics processor definition, ready to put in a bundle.
            let apds = processors::definitions();
            serde_json::to_string_pretty(
                &json!({"analyticsProcessorDefinitions": {"analyticsProcessorDefinition": apds}}),
            )? + "\n"
        }
        ListFormat::Markdown => processors::catalogue()
            .iter()
            .map(|r| super::connectors::markdown(r.kind, &(r.parameters)(), "processors"))
            .collect::<Vec<_>>()
            .join("\n"),
        ListFormat::Human => {
            let mut out = String::new();
            for r in processors::catalogue() {
                let _ = writeln!(out, "{} ({})\n    {}", r.kind, r.category, r.description);
                out.push_str(&parameters(&(r.parameters)()));
                out.push('\n');
            }
            out
        }
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Parameter definitions as indented lines: name, type, required, default, choices, and
/// what it does.
pub fn parameters(definitions: &[ParameterDefinition]) -> String {
    let mut out = String::new();
    for p in definitions {
        let mut facts = vec![p.data_type.clone().unwrap_or_else(|| "any".into())];
        if p.required {
            facts.push("required".into());
        }
        if p.is_secret() {
            facts.push("secret".into());
        }
        if let Some(d) = &p.default_value {
            facts.push(format!("default {d}"));
        }
        if let Some(a) = &p.allowed_values {
            facts.push(format!(
                "one of {}",
                a.value
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let _ = writeln!(
            out,
            "    {:<16} {}: {}",
            p.name,
            facts.join(", "),
            p.description.as_deref().unwrap_or_default()
        );
    }
    out
}
