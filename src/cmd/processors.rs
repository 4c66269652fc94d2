//! `dda processors`: the processor catalogue, from the registry.

use std::process::ExitCode;

use serde_json::json;

use crate::Format;

/// Prints every processor type with its category, description and parameters.
///
/// # Errors
///
/// Standard output is closed.
pub fn run(format: Format) -> anyhow::Result<ExitCode> {
    let catalogue = processors::catalogue();
    match format {
        Format::Json => {
            // Each type as an analytics processor definition, ready to put in a bundle.
            let apds = processors::definitions();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"analyticsProcessorDefinitions": {"analyticsProcessorDefinition": apds}})
                )?
            );
        }
        Format::Human => {
            for r in catalogue {
                println!("{} ({})\n    {}", r.kind, r.category, r.description);
                for p in (r.parameters)() {
                    let mut facts = vec![p.data_type.clone().unwrap_or_else(|| "any".into())];
                    if p.required {
                        facts.push("required".into());
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
                    println!(
                        "    {:<16} {}: {}",
                        p.name,
                        facts.join(", "),
                        p.description.unwrap_or_default()
                    );
                }
                println!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
