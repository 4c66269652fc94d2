//! `dda schema ENTITY`

use std::process::ExitCode;

use anyhow::anyhow;
use manifests::bundle::DocumentKind;
use manifests::kind::{BUNDLE_ELEMENT, BUNDLE_MARKER, BUNDLE_SCHEMA, EntityKind, KINDS};

use crate::SchemaFormat;

/// Prints the schema of `entity` (any of its names).
///
/// # Errors
///
/// An unknown entity name (exit status 2).
pub fn run(entity: &str, format: SchemaFormat) -> anyhow::Result<ExitCode> {
    let kind = if [BUNDLE_SCHEMA, BUNDLE_MARKER, BUNDLE_ELEMENT].contains(&entity) {
        Some(DocumentKind::Bundle)
    } else {
        EntityKind::from_name(entity).map(DocumentKind::Entity)
    };
    let schemas = manifests::schema::schemas();
    let name = match kind {
        Some(k) => k.schema_name(),
        None if entity == "common" && format == SchemaFormat::Json => "common",
        None => {
            let names: Vec<&str> = KINDS
                .iter()
                .map(|k| k.schema)
                .chain([BUNDLE_SCHEMA])
                .collect();
            return Err(anyhow!(
                "unknown entity `{entity}`{}; entities: {}",
                manifests::suggest::did_you_mean(entity, names.iter().copied())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default(),
                names.join(", ")
            ));
        }
    };
    match (format, kind) {
        (SchemaFormat::Xsd, Some(k)) => print!("{}", manifests::xsd::generate(k, name)),
        _ => {
            let raw = schemas
                .raw(name)
                .ok_or_else(|| anyhow!("schema {name} is missing"))?;
            println!("{}", serde_json::to_string_pretty(raw)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
