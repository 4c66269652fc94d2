//! The OpenAPI 3.1 document, generated from the code: operations, parameters, status codes
//! and the API's own types come from `utoipa` annotations on the handlers (each module of
//! `crate::routes` contributes its `Doc`); the entity schemas are DDA's JSON Schemas
//! (`schemas/`), the single source of truth, put in as components with their references
//! rewritten.

use std::borrow::Cow;

use serde_json::{Map, Value as Json};
use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};

use crate::error::{CompatErrorBody, Detail, ErrorBody};

use crate::routes::{
    cir, compat, compat_gateways, compat_sources, instances, live, models, operations, sources,
};

use manifests::kind::KINDS;
use manifests::schema::schemas;

/// Declares a type standing for an entity schema in annotations; its real schema is put in
/// by [`document`].
macro_rules! entity_schema {
    ($($marker:ident => $name:literal),* $(,)?) => {
        $(
            #[doc = concat!("The `", $name, "` JSON Schema (see `dda schema`).")]
            #[derive(Debug)]
            pub struct $marker;

            impl utoipa::PartialSchema for $marker {
                fn schema() -> RefOr<Schema> {
                    RefOr::T(Schema::Object(ObjectBuilder::new().build()))
                }
            }

            impl utoipa::ToSchema for $marker {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed($name)
                }
            }
        )*
    };
}

entity_schema! {
    DataInterfaceDoc => "DataInterface",
    DataKindDoc => "DataKind",
    DataSourceDefinitionDoc => "DataSourceDefinition",
    DataSourceManifestDoc => "DataSourceManifest",
    DataConsumerManifestDoc => "DataConsumerManifest",
    EdgeGatewayDoc => "EdgeGateway",
    AnalyticsProcessorDefinitionDoc => "AnalyticsProcessorDefinition",
    AnalyticsManifestDoc => "AnalyticsManifest",
    BundleDoc => "Bundle",
    ObjectDoc => "Object",
    RepositoryDoc => "Repository",
    LinkDoc => "Link",
    AnyDocument => "AnyDocument",
    ParameterDefinitionsDoc => "Common.parameterDefinitions",
}

/// The document's description and the error bodies every part refers to.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DDA Open API",
        description = "Models, analytics instances and live data of a DDA engine. Entity schemas are DDA's JSON Schemas (`dda schema`); bodies are accepted in JSON or XML."
    ),
    components(schemas(ErrorBody, Detail, CompatErrorBody))
)]
pub struct ApiDoc;

/// Every operation of every route module, without the entity schemas.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        instances::Doc::openapi(),
        live::Doc::openapi(),
        operations::Doc::openapi(),
        compat::Doc::openapi(),
        compat_gateways::Doc::openapi(),
        compat_sources::Doc::openapi(),
        sources::Doc::openapi(),
        cir::Doc::openapi(),
        models::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// The component name of a schema file (`data-interface` → `DataInterface`).
fn component_name(file: &str) -> String {
    let stem = file.trim_end_matches(".schema.json");
    if stem == "common" {
        return "Common".into();
    }
    KINDS.iter().find(|k| k.schema == stem).map_or_else(
        || {
            if stem == "bundle" {
                "Bundle".into()
            } else {
                stem.into()
            }
        },
        |k| k.marker.to_owned(),
    )
}

/// Rewrites one schema file's references to OpenAPI component references.
fn rewrite(value: &mut Json, file: &str) {
    match value {
        Json::Object(map) => {
            map.remove("$schema");
            map.remove("$id");
            if let Some(Json::String(r)) = map.get_mut("$ref") {
                let (target, pointer) = r.split_once('#').unwrap_or((r.as_str(), ""));
                let target = if target.is_empty() { file } else { target };
                let name = component_name(target);
                *r = match pointer.strip_prefix("/$defs/") {
                    Some(def) => format!("#/components/schemas/{name}.{def}"),
                    None => format!("#/components/schemas/{name}"),
                };
            }
            for v in map.values_mut() {
                rewrite(v, file);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| rewrite(v, file)),
        _ => {}
    }
}

/// Every JSON Schema as OpenAPI components: entities by their kind name, common
/// definitions as `Common.<name>`.
fn entity_components() -> Map<String, Json> {
    let mut out = Map::new();
    let s = schemas();
    for name in s.names() {
        let Some(raw) = s.raw(name) else { continue };
        let file = format!("{name}.schema.json");
        let mut schema = raw.clone();
        if let Some(defs) = schema
            .as_object_mut()
            .and_then(|o| o.remove("$defs"))
            .and_then(|d| match d {
                Json::Object(m) => Some(m),
                _ => None,
            })
        {
            for (def, mut body) in defs {
                rewrite(&mut body, &file);
                out.insert(format!("{}.{def}", component_name(&file)), body);
            }
        }
        if name != "common" {
            rewrite(&mut schema, &file);
            out.insert(component_name(&file), schema);
        }
    }
    // Any document the validator reads: an entity of any kind, or a bundle.
    let mut any: Vec<Json> = KINDS
        .iter()
        .map(|k| serde_json::json!({"$ref": format!("#/components/schemas/{}", k.marker)}))
        .collect();
    any.push(serde_json::json!({"$ref": "#/components/schemas/Bundle"}));
    out.insert("AnyDocument".into(), serde_json::json!({"description": "Any DDA document: one entity or a bundle.", "anyOf": any}));
    out
}

/// The OpenAPI document as JSON.
#[must_use]
pub fn document() -> Json {
    let api = openapi();
    let mut doc = serde_json::to_value(&api).unwrap_or(Json::Null);
    if let Some(components) = doc
        .pointer_mut("/components/schemas")
        .and_then(Json::as_object_mut)
    {
        for (name, schema) in entity_components() {
            components.insert(name, schema);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        fn refs(v: &Json, out: &mut Vec<String>) {
            match v {
                Json::Object(m) => {
                    if let Some(Json::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Json::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.trim_start_matches('#').replace("~1", "/");
            let path: Vec<&str> = pointer.split('/').skip(1).collect();
            let mut at = &doc;
            for p in &path {
                at = at.get(*p).unwrap_or_else(|| panic!("unresolved {r}"));
            }
        }
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true)
        );
        assert!(
            doc["components"]["schemas"]["DataInterface"]["properties"]["communicationProtocol"]
                .is_object()
        );
    }
}
