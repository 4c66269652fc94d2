//! The JSON Schemas in `schemas/`: embedded, compiled once, and turned into [`Shape`]s.
//!
//! The schemas are the single source of truth for the documents' structure. They are used
//! three ways: `jsonschema` validates every document (JSON, or XML after mapping) against
//! them; [`Shape`] (a simplified view: which members exist, which are lists, which are
//! numbers) steers the XML ↔ JSON mapping; and the XSDs for XML editors are generated from
//! the same shapes ([`crate::xsd`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::kind::{BUNDLE_SCHEMA, EntityKind, KINDS};

/// Base URI of the schemas' `$id`s.
pub const BASE_URI: &str = "https://dda.invalid/schemas/";

macro_rules! schema_files {
    ($($name:literal),* $(,)?) => {
        /// Every schema file: (name without `.schema.json`, text).
        pub const SCHEMA_FILES: &[(&str, &str)] = &[$(
            ($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/", $name, ".schema.json"))),
        )*];
    };
}

schema_files!(
    "common",
    "cir-object",
    "cir-repository",
    "cir-link",
    "data-interface",
    "data-kind",
    "data-source-definition",
    "data-source-manifest",
    "data-consumer-manifest",
    "data-channel-descriptor",
    "edge-gateway",
    "analytics-processor-definition",
    "analytics-processor-manifest",
    "analytics-manifest",
    "live-data-set",
    "observation",
    "bundle",
);

/// The value type a schema position holds, as far as the XML mapping needs to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Any JSON value (the XML carries a `type` attribute when it is not a string).
    Any,
    /// A string.
    String,
    /// An integer.
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An object.
    Object(ObjectShape),
    /// An array of items of one shape.
    Array(Box<Shape>),
}

/// The members of an object position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectShape {
    /// Known members and their shapes, in schema order.
    pub properties: IndexMap<String, Member>,
    /// Whether members not listed are allowed by the schema.
    pub open: bool,
}

/// One known member of an object shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its shape.
    pub shape: Shape,
    /// Whether the schema requires it.
    pub required: bool,
    /// Its documentation.
    pub description: Option<String>,
}

impl Shape {
    /// The shape of member `name`, when this is an object shape that lists it.
    #[must_use]
    pub fn member(&self, name: &str) -> Option<&Shape> {
        match self {
            Self::Object(o) => o.properties.get(name).map(|m| &m.shape),
            _ => None,
        }
    }

    /// Known member names (for "did you mean" hints).
    #[must_use]
    pub fn member_names(&self) -> Vec<&str> {
        match self {
            Self::Object(o) => o.properties.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Compiled schemas.
pub struct Schemas {
    raw: BTreeMap<&'static str, Json>,
    validators: BTreeMap<&'static str, jsonschema::Validator>,
    shapes: BTreeMap<&'static str, Shape>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("names", &self.raw.keys())
            .finish()
    }
}

/// The compiled schemas (built on first use).
///
/// # Panics
///
/// Only if an embedded schema is broken, which the crate's tests rule out.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::compile().expect("the embedded schemas compile (tested)"))
}

/// Why the embedded schemas failed to compile (a bug in `schemas/`, caught by tests).
#[derive(Debug, thiserror::Error)]
#[error("schema {name}: {message}")]
pub struct SchemaError {
    name: String,
    message: String,
}

fn err(name: &str, message: impl std::fmt::Display) -> SchemaError {
    SchemaError {
        name: name.to_owned(),
        message: message.to_string(),
    }
}

impl Schemas {
    fn compile() -> Result<Self, SchemaError> {
        let mut raw = BTreeMap::new();
        for (name, text) in SCHEMA_FILES {
            let value: Json = serde_json::from_str(text).map_err(|e| err(name, e))?;
            raw.insert(*name, value);
        }
        let mut builder = jsonschema::Registry::new();
        for (name, value) in &raw {
            builder = builder
                .add(format!("{BASE_URI}{name}.schema.json"), value.clone())
                .map_err(|e| err(name, e))?;
        }
        let registry = builder.prepare().map_err(|e| err("registry", e))?;
        let mut validators = BTreeMap::new();
        let mut shapes = BTreeMap::new();
        for name in raw.keys().copied().filter(|n| *n != "common") {
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_registry(&registry)
                .build(&raw[name])
                .map_err(|e| err(name, e))?;
            validators.insert(name, validator);
            let shape = ShapeCompiler {
                raw: &raw,
                depth: 0,
            }
            .compile(name, &raw[name])?;
            shapes.insert(name, shape);
        }
        Ok(Self {
            raw,
            validators,
            shapes,
        })
    }

    /// The schema document named `name` (`data-interface`, `bundle`, `common`, ...).
    #[must_use]
    pub fn raw(&self, name: &str) -> Option<&Json> {
        self.raw.get(name)
    }

    /// Names of every schema, entity schemas first, in dependency order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        KINDS
            .iter()
            .map(|k| k.schema)
            .chain([BUNDLE_SCHEMA, "common"])
    }

    /// The validator for schema `name`.
    #[must_use]
    pub fn validator(&self, name: &str) -> Option<&jsonschema::Validator> {
        self.validators.get(name)
    }

    /// The shape of schema `name`.
    #[must_use]
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The shape of an entity kind's documents.
    #[must_use]
    pub fn kind_shape(&self, kind: EntityKind) -> &Shape {
        self.shapes
            .get(kind.info().schema)
            .expect("every kind has a schema (tested)")
    }

    /// The shape of a bundle document.
    #[must_use]
    pub fn bundle_shape(&self) -> &Shape {
        self.shapes
            .get(BUNDLE_SCHEMA)
            .expect("the bundle schema exists (tested)")
    }
}

struct ShapeCompiler<'a> {
    raw: &'a BTreeMap<&'static str, Json>,
    depth: usize,
}

impl ShapeCompiler<'_> {
    fn resolve(&self, file: &str, reference: &str) -> Result<(String, Json), SchemaError> {
        let (target_file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let target_file = if target_file.is_empty() {
            file.to_owned()
        } else {
            target_file
                .trim_start_matches(BASE_URI)
                .trim_end_matches(".schema.json")
                .to_owned()
        };
        let doc = self
            .raw
            .get(target_file.as_str())
            .ok_or_else(|| err(file, format!("$ref to unknown schema {reference}")))?;
        let target = doc
            .pointer(pointer)
            .ok_or_else(|| err(file, format!("$ref to missing {reference}")))?;
        Ok((target_file, target.clone()))
    }

    fn compile(&mut self, file: &str, schema: &Json) -> Result<Shape, SchemaError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(err(file, "schema nesting too deep (a $ref cycle?)"));
        }
        let shape = self.compile_inner(file, schema);
        self.depth -= 1;
        shape
    }

    fn compile_inner(&mut self, file: &str, schema: &Json) -> Result<Shape, SchemaError> {
        let Some(obj) = schema.as_object() else {
            return Ok(Shape::Any);
        };
        if let Some(reference) = obj.get("$ref").and_then(Json::as_str) {
            let (target_file, target) = self.resolve(file, reference)?;
            return self.compile(&target_file, &target);
        }
        // `anyOf: [X, {"type": "null"}]` is a nullable X; null is expressible at any position.
        for combinator in ["anyOf", "oneOf"] {
            if let Some(branches) = obj.get(combinator).and_then(Json::as_array)
                && !obj.contains_key("type")
                && !obj.contains_key("properties")
            {
                let non_null: Vec<&Json> = branches
                    .iter()
                    .filter(|b| b.get("type").and_then(Json::as_str) != Some("null"))
                    .collect();
                return match non_null.as_slice() {
                    [only] => self.compile(file, only),
                    _ => Ok(Shape::Any),
                };
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts
                .iter()
                .filter_map(Json::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => Vec::new(),
        };
        let ty = match types.as_slice() {
            [one] => *one,
            [] if obj.contains_key("properties") => "object",
            [] if obj.contains_key("items") => "array",
            [] => {
                let all_strings = |key: &str| {
                    obj.get(key).is_some_and(|v| match v {
                        Json::String(_) => true,
                        Json::Array(items) => items.iter().all(Json::is_string),
                        _ => false,
                    })
                };
                return Ok(if all_strings("const") || all_strings("enum") {
                    Shape::String
                } else {
                    Shape::Any
                });
            }
            _ => return Ok(Shape::Any),
        };
        Ok(match ty {
            "string" => Shape::String,
            "integer" => Shape::Integer,
            "number" => Shape::Number,
            "boolean" => Shape::Boolean,
            "array" => Shape::Array(Box::new(match obj.get("items") {
                Some(items) => self.compile(file, items)?,
                None => Shape::Any,
            })),
            "object" => {
                let required: Vec<&str> = obj
                    .get("required")
                    .and_then(Json::as_array)
                    .map(|r| r.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                let mut properties = IndexMap::new();
                if let Some(props) = obj.get("properties").and_then(Json::as_object) {
                    for (name, sub) in props {
                        let description = sub
                            .get("description")
                            .and_then(Json::as_str)
                            .map(str::to_owned);
                        let shape = self.compile(file, sub)?;
                        properties.insert(
                            name.clone(),
                            Member {
                                shape,
                                required: required.contains(&name.as_str()),
                                description,
                            },
                        );
                    }
                }
                let open = obj.get("additionalProperties") != Some(&Json::Bool(false));
                Shape::Object(ObjectShape { properties, open })
            }
            other => return Err(err(file, format!("unsupported type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles_and_every_kind_has_one() {
        let s = schemas();
        for info in KINDS {
            assert!(s.validator(info.schema).is_some(), "{}", info.schema);
            assert!(matches!(s.kind_shape(info.kind), Shape::Object(_)));
        }
        assert!(matches!(s.bundle_shape(), Shape::Object(_)));
    }

    #[test]
    fn shapes_know_lists_numbers_and_polymorphic_values() {
        let s = schemas();
        let di = s.kind_shape(EntityKind::DataInterface);
        let params = di.member("parameters").unwrap();
        let Shape::Array(item) = params.member("parameter").unwrap() else {
            panic!("parameter is a list");
        };
        assert_eq!(item.member("defaultValue"), Some(&Shape::Any));
        assert_eq!(item.member("required"), Some(&Shape::Boolean));
        let lds = s.kind_shape(EntityKind::LiveDataSet);
        assert_eq!(lds.member("mobile"), Some(&Shape::Boolean));
        // location is `anyOf [location, null]`: an object position that may be null.
        assert!(matches!(lds.member("location"), Some(Shape::Object(_))));
        assert_eq!(lds.member("timestamp"), Some(&Shape::Any));
        let am = s.kind_shape(EntityKind::AnalyticsManifest);
        let Shape::Array(apm) = am
            .member("analyticsProcessors")
            .unwrap()
            .member("apm")
            .unwrap()
        else {
            panic!("apm is a list");
        };
        assert!(apm.member("dataSink").is_some());
        assert!(
            apm.member("analyticsProcessorDefinitionReferenceID")
                .is_some()
        );
    }
}
