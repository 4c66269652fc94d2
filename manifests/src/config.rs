//! Typed configuration: one struct per processor or connector kind is at once the data a
//! manifest gives, its documentation and its schema.
//!
//! A kind's configuration is a `FooConfig` with `#[derive(Serialize, Deserialize,
//! JsonSchema)]`, `#[serde(rename_all = "camelCase", deny_unknown_fields)]`, a `///` comment
//! on every field and defaults as named functions (`#[serde(default = "default_port")]`).
//! From it:
//!
//! - [`definitions`] generates the kind's parameter definitions (name, type, default,
//!   required, secret, allowed values, documentation) for the catalogue, `dda processors`,
//!   `dda connectors`, the API and the validator — so no default is written twice;
//! - [`parse`] reads a manifest's parameter values into the struct, once: values are first
//!   read leniently by their declared type, as the original FAR-EDGE engine stored every
//!   value as a string (`"38"` is a fine `float`), then deserialized, then checked with
//!   [`Config::check`]. Errors name the parameter and say what to write instead.
//!
//! Two value types have a meaning of their own: [`Duration`] (`PT1H`, `1h`, `500ms`; type
//! `duration`) and [`Secret`] (a value given as `${env:NAME}` or `${file:PATH}`, resolved
//! only when used and never shown).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use crate::model::{AllowedValues, DataType, ParameterDefinition};
use crate::parameters::{ResolvedParameters, coerce, parse_duration};
use crate::secret::SecretError;

/// A kind's typed configuration (see the [module documentation](self)).
pub trait Config: Serialize + DeserializeOwned + JsonSchema + Sized + 'static {
    /// Checks that types alone cannot express (ranges, combinations of parameters).
    ///
    /// # Errors
    ///
    /// The first problem found, naming its parameter.
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Parameter values that make a working configuration: the defaults, plus example
    /// values of the required parameters. The catalogue tests build every kind from it; the
    /// reference documentation shows it.
    #[must_use]
    fn example() -> Json {
        Json::Object(Map::new())
    }

    /// Rephrases an error [`parse`] found, for kinds whose messages follow a style of their
    /// own (the detection processors name the parameter at fault as `` parameter `x` `` in
    /// every message). By default, as [`parse`] phrased it.
    #[must_use]
    fn reword(error: ConfigError) -> ConfigError {
        error
    }
}

/// A parameter value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The parameter at fault, when one is (its top-level name).
    pub parameter: Option<String>,
    /// What is wrong and what to write instead; it names the parameter itself.
    pub message: String,
}

impl ConfigError {
    /// An error of parameter `name`.
    #[must_use]
    pub fn at(name: &str, message: impl Into<String>) -> Self {
        Self {
            parameter: Some(name.to_owned()),
            message: message.into(),
        }
    }

    /// An error of the configuration as a whole.
    #[must_use]
    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            parameter: None,
            message: message.into(),
        }
    }
}

/// The parameter definitions of configuration `C`, in field order.
#[must_use]
pub fn definitions<C: Config>() -> Vec<ParameterDefinition> {
    let schema = generator().into_root_schema_for::<C>();
    definitions_of(schema.as_value())
}

fn generator() -> SchemaGenerator {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
}

/// Reads the parameter definitions off a configuration's JSON Schema.
fn definitions_of(schema: &Json) -> Vec<ParameterDefinition> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Json::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let shape = Shape::of(property);
            ParameterDefinition {
                name: name.clone(),
                description: property
                    .get("description")
                    .and_then(Json::as_str)
                    .map(unwrap_lines),
                data_type: Some(shape.data_type.name().to_owned()),
                default_value: property.get("default").filter(|d| !d.is_null()).cloned(),
                required: required.contains(&name.as_str()),
                secret: shape.secret.then_some(true),
                allowed_values: (!shape.allowed.is_empty()).then(|| AllowedValues {
                    value: shape.allowed,
                }),
                unit: property
                    .get("unit")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                file: shape.file,
            }
        })
        .collect()
}

/// A doc comment as one line per paragraph: the line breaks of the source (comments
/// wrapped at the line width) are not the documentation's.
fn unwrap_lines(doc: &str) -> String {
    doc.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// What a property's schema says about its values.
struct Shape {
    data_type: DataType,
    secret: bool,
    file: Option<crate::model::FileUse>,
    allowed: Vec<Json>,
}

impl Shape {
    fn of(property: &Json) -> Self {
        let mut types: Vec<&str> = Vec::new();
        let mut formats: Vec<&str> = Vec::new();
        let mut allowed: Vec<Json> = Vec::new();
        collect(property, &mut types, &mut formats, &mut allowed);
        let data_type = if formats.contains(&"duration") {
            DataType::Duration
        } else {
            match types.first().copied() {
                Some("integer") if types.iter().all(|t| *t == "integer") => DataType::Integer,
                Some("integer" | "number")
                    if types.iter().all(|t| *t == "integer" || *t == "number") =>
                {
                    DataType::Number
                }
                Some("boolean") => DataType::Boolean,
                Some("object") => DataType::Object,
                Some("array") => DataType::Array,
                // Text, and values of several types (a version written 5 or "3.1.1").
                _ => DataType::String,
            }
        };
        Self {
            data_type,
            secret: formats.contains(&"secret"),
            file: if formats.contains(&"path") {
                Some(crate::model::FileUse::Written)
            } else if formats.contains(&"input-file") {
                Some(crate::model::FileUse::Read)
            } else {
                None
            },
            allowed,
        }
    }
}

/// Gathers the non-null types, formats and enumerated values of a schema and its
/// alternatives (`oneOf`, `anyOf`: an enumeration with documented variants, an `Option`).
fn collect<'a>(
    schema: &'a Json,
    types: &mut Vec<&'a str>,
    formats: &mut Vec<&'a str>,
    allowed: &mut Vec<Json>,
) {
    match schema.get("type") {
        Some(Json::String(t)) if t != "null" => types.push(t),
        Some(Json::Array(ts)) => {
            types.extend(ts.iter().filter_map(Json::as_str).filter(|t| *t != "null"))
        }
        _ => {}
    }
    if let Some(f) = schema.get("format").and_then(Json::as_str) {
        formats.push(f);
    }
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        allowed.extend(values.iter().filter(|v| !v.is_null()).cloned());
    }
    if let Some(c) = schema.get("const").filter(|c| !c.is_null()) {
        allowed.push(c.clone());
    }
    for key in ["oneOf", "anyOf"] {
        for alternative in schema
            .get(key)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            collect(alternative, types, formats, allowed);
        }
    }
}

/// Reads parameter values (a JSON object) into configuration `C`: lenient by declared
/// type, then strict (no unknown parameter), then [`Config::check`]; errors are then
/// [`Config::reword`]ed.
///
/// # Errors
///
/// The first unusable value, naming its parameter and what to write instead.
pub fn parse<C: Config>(values: &Json) -> Result<C, ConfigError> {
    read::<C>(values).map_err(C::reword)
}

fn read<C: Config>(values: &Json) -> Result<C, ConfigError> {
    let definitions = definitions::<C>();
    let mut object = Map::new();
    // Values that could not be read as their declared type: the deserializer then says
    // precisely why (a duration's syntax), or is told here what was expected.
    let mut unreadable: Vec<(&str, &'static str)> = Vec::new();
    if let Some(given) = values.as_object() {
        for (name, value) in given {
            if value.is_null() {
                continue;
            }
            // Unknown parameters are refused here, not only by `deny_unknown_fields`: a
            // configuration that flattens shared parts (which serde cannot combine with
            // `deny_unknown_fields`) is as strict as any other.
            let Some(def) = definitions.iter().find(|d| &d.name == name) else {
                return Err(unknown(name, &definitions));
            };
            // Durations and enumerations are checked here, by their definitions, rather than
            // left to the deserializer: it cannot say which parameter an error is about when
            // the parameter belongs to a flattened part of the configuration.
            let value = match coerce(&def.data_type(), value) {
                Ok(value) => value,
                Err(expected) => {
                    if let (DataType::Duration, Json::String(text)) = (def.data_type(), value)
                        && let Err(why) = parse_duration(text)
                    {
                        return Err(ConfigError::at(name, format!("{name}: {why}")));
                    }
                    unreadable.push((def.name.as_str(), expected));
                    value.clone()
                }
            };
            if let Some(allowed) = &def.allowed_values
                && !allowed.value.contains(&value)
            {
                let written = match &value {
                    Json::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                let choices: Vec<String> = allowed
                    .value
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect();
                let choices: Vec<&str> = choices.iter().map(String::as_str).collect();
                return Err(ConfigError::at(
                    name,
                    format!("{name} {written}{}", use_one_of(&choices)),
                ));
            }
            object.insert(name.clone(), value);
        }
    } else if !values.is_null() {
        return Err(ConfigError::whole("the parameters are not an object"));
    }
    let shown = |name: &str| -> String {
        let secret = definitions.iter().any(|d| d.name == name && d.is_secret());
        match object.get(name) {
            Some(_) if secret => "a secret value".to_owned(),
            Some(v) => describe(v),
            None => "nothing".to_owned(),
        }
    };
    let config: C = match serde_path_to_error::deserialize(Json::Object(object.clone())) {
        Ok(c) => c,
        Err(e) => {
            let mut error = explain(&e, &definitions);
            // The value at fault: the one the deserializer names, or, when it names none (a
            // parameter of a flattened part), the one value not readable as its type.
            let culprit = unreadable
                .iter()
                .find(|(n, _)| error.parameter.as_deref() == Some(*n))
                .or_else(|| {
                    error
                        .parameter
                        .is_none()
                        .then(|| unreadable.first())
                        .flatten()
                });
            if let Some((name, expected)) = culprit
                && e.inner().to_string().starts_with("invalid type")
            {
                error = ConfigError::at(
                    name,
                    format!(
                        "parameter `{name}` should be {expected}, found {}",
                        shown(name)
                    ),
                );
            }
            return Err(error);
        }
    };
    config.check()?;
    Ok(config)
}

/// [`parse`] of resolved parameters.
///
/// # Errors
///
/// As [`parse`].
pub fn from_parameters<C: Config>(parameters: &ResolvedParameters) -> Result<C, ConfigError> {
    parse(&parameters.to_json())
}

/// The configuration written out as parameter values (a JSON object), defaults included.
///
/// # Errors
///
/// The configuration cannot be written as JSON (a map with non-text keys).
pub fn to_values<C: Config>(config: &C) -> Result<Json, ConfigError> {
    serde_json::to_value(config).map_err(|e| ConfigError::whole(e.to_string()))
}

/// Parameter values as configuration `C` reads them, written back: defaults filled in,
/// lenient values in their type (`"38"` → `38`). Reading the result again gives the same
/// configuration.
///
/// # Errors
///
/// As [`parse`].
pub fn canonical<C: Config>(values: &Json) -> Result<Json, ConfigError> {
    to_values(&parse::<C>(values)?)
}

fn describe(v: &Json) -> String {
    match v {
        Json::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Json::String(_) => "a long string".to_owned(),
        Json::Number(n) => format!("the number {n}"),
        Json::Array(_) => "a list".to_owned(),
        Json::Object(_) => "an object".to_owned(),
        other => other.to_string(),
    }
}

/// An unknown parameter, with the closest known one.
fn unknown(name: &str, definitions: &[ParameterDefinition]) -> ConfigError {
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    let hint = crate::suggest::did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
        if names.is_empty() {
            "it takes no parameters".to_owned()
        } else {
            format!("it takes: {}", names.join(", "))
        }
    });
    ConfigError::at(name, format!("unknown parameter `{name}`; {hint}"))
}

/// A deserialization error in words a manifest's author can act on.
fn explain(
    e: &serde_path_to_error::Error<serde_json::Error>,
    definitions: &[ParameterDefinition],
) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // serde_json appends " at line L column C", meaningless for a value built in memory.
    let inner = inner
        .rsplit_once(" at line ")
        .map_or(inner.as_str(), |(head, _)| head);
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    let top = path
        .split(['.', '['])
        .next()
        .filter(|p| !p.is_empty() && *p != "?")
        .map(str::to_owned);
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let hint = crate::suggest::did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
            if names.is_empty() {
                "it takes no parameters".to_owned()
            } else {
                format!("it takes: {}", names.join(", "))
            }
        });
        let at = if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return ConfigError::at(
            top.as_deref().unwrap_or(name),
            format!("unknown parameter `{at}`; {hint}"),
        );
    }
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let at = if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return ConfigError::at(
            top.as_deref().unwrap_or(name),
            format!("parameter `{at}` is required"),
        );
    }
    if let Some(rest) = inner.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let choices = use_one_of(&expected);
        return ConfigError {
            parameter: top,
            message: format!("{path} {value:?}{choices}"),
        };
    }
    ConfigError {
        parameter: top,
        message: if path == "." || path.is_empty() {
            inner.to_owned()
        } else {
            format!("{path}: {inner}")
        },
    }
}

/// `: use a or b`, `: use one of a, b, c`: what to write instead of a value not allowed.
fn use_one_of(choices: &[&str]) -> String {
    match choices {
        [] => String::new(),
        [one] => format!(": use {one}"),
        [a, b] => format!(": use {a} or {b}"),
        many => format!(": use one of {}", many.join(", ")),
    }
}

/// A duration parameter: `PT1H`, `1h`, `15m`, `30s`, `500ms`, `1h 30m` (see
/// [`parse_duration`]); written back in ISO 8601 (`PT1H`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// `secs` seconds.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// `millis` milliseconds.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// The duration.
    #[must_use]
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole microseconds (saturating).
    #[must_use]
    pub fn as_micros(self) -> i64 {
        i64::try_from(self.0.as_micros()).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(d) => write!(f, "{d}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        parse_duration(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "duration"})
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Reads an optional duration (text such as `PT1S` or `500ms`) into a
/// [`std::time::Duration`], for configuration files outside manifests
/// (`#[serde(default, deserialize_with = "manifests::config::optional_duration")]`).
///
/// # Errors
///
/// Text that is not a duration.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    Option::<Duration>::deserialize(d).map(|o| o.map(Duration::get))
}

/// A secret parameter: a reference (`${env:NAME}`, `${file:PATH}`), or — with a warning from
/// the validator — the value itself. Resolved only when used; never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret as written in a manifest.
    #[must_use]
    pub fn new(written: impl Into<String>) -> Self {
        Self(written.into())
    }

    /// The value: the reference resolved, or the value as written.
    ///
    /// # Errors
    ///
    /// A malformed reference, an unset variable, an unreadable file (the message never
    /// holds the value).
    pub fn resolve(&self) -> Result<String, SecretError> {
        crate::secret::resolve_value(&self.0)
    }

    /// Whether it was given as a reference rather than in plain text.
    #[must_use]
    pub fn is_reference(&self) -> bool {
        crate::secret::SecretRef::parse(&self.0).is_some()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_reference() {
            write!(f, "Secret({:?})", self.0)
        } else {
            f.write_str("Secret(********)")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "secret"})
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A configuration without parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl Config for NoConfig {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A comparison.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "UPPERCASE")]
    enum Op {
        /// Equal.
        Eq,
        /// Greater than.
        Gt,
    }

    /// Where to look.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Side {
        Left,
        Right,
    }

    const fn default_port() -> u16 {
        1883
    }

    const fn default_op() -> Op {
        Op::Gt
    }

    const fn default_window() -> Duration {
        Duration::from_secs(3600)
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct TestConfig {
        /// The port.
        #[serde(default = "default_port")]
        port: u16,

        /// The operator.
        #[serde(default = "default_op")]
        operator: Op,
        /// A side.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        side: Option<Side>,
        /// The threshold.
        threshold: f64,
        /// The window.
        #[serde(default = "default_window")]
        window: Duration,
        /// The password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// Start a new session.
        #[serde(default)]
        clean_session: bool,
    }

    impl Config for TestConfig {
        fn check(&self) -> Result<(), ConfigError> {
            if self.threshold < 0.0 {
                return Err(ConfigError::at(
                    "threshold",
                    "threshold must not be negative",
                ));
            }
            Ok(())
        }

        fn example() -> Json {
            json!({"threshold": 1})
        }
    }

    #[test]
    fn definitions_carry_names_types_defaults_documentation_and_choices() {
        let defs = definitions::<TestConfig>();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "port",
                "operator",
                "side",
                "threshold",
                "window",
                "password",
                "cleanSession"
            ]
        );
        let get = |n: &str| defs.iter().find(|d| d.name == n).unwrap();
        assert_eq!(get("port").data_type.as_deref(), Some("int"));
        assert_eq!(get("port").default_value, Some(json!(1883)));
        assert_eq!(get("port").description.as_deref(), Some("The port."));
        assert_eq!(
            get("operator").allowed_values.as_ref().unwrap().value,
            [json!("EQ"), json!("GT")]
        );
        assert_eq!(get("operator").default_value, Some(json!("GT")));
        assert_eq!(
            get("side").allowed_values.as_ref().unwrap().value,
            [json!("left"), json!("right")]
        );
        assert!(!get("side").required);
        assert!(get("threshold").required);
        assert_eq!(get("threshold").data_type.as_deref(), Some("float"));
        assert_eq!(get("window").data_type.as_deref(), Some("duration"));
        assert_eq!(get("window").default_value, Some(json!("PT1H")));
        assert_eq!(get("password").secret, Some(true));
        assert_eq!(get("password").data_type.as_deref(), Some("string"));
        assert_eq!(get("cleanSession").data_type.as_deref(), Some("boolean"));
        assert_eq!(get("cleanSession").default_value, Some(json!(false)));
    }

    #[test]
    fn values_are_read_leniently_then_strictly() {
        let c: TestConfig = parse(
            &json!({"threshold": "38", "port": "1884", "window": "15m", "cleanSession": "true"}),
        )
        .unwrap();
        assert_eq!(c.threshold, 38.0);
        assert_eq!(c.port, 1884);
        assert_eq!(c.window, Duration::from_secs(900));
        assert!(c.clean_session);
        assert_eq!(c.operator, Op::Gt);
    }

    #[test]
    fn errors_name_the_parameter_and_what_to_write() {
        let err = |v: Json| parse::<TestConfig>(&v).unwrap_err();
        let e = err(json!({"threshold": 1, "cleanSesion": true}));
        assert_eq!(e.parameter.as_deref(), Some("cleanSesion"));
        assert!(e.message.contains("did you mean `cleanSession`?"), "{e}");
        let e = err(json!({}));
        assert_eq!(e.message, "parameter `threshold` is required");
        let e = err(json!({"threshold": 1, "operator": "LT"}));
        assert_eq!(e.message, "operator \"LT\": use EQ or GT");
        assert_eq!(e.parameter.as_deref(), Some("operator"));
        let e = err(json!({"threshold": 1, "window": "soon"}));
        assert!(e.message.starts_with("window: "), "{e}");
        let e = err(json!({"threshold": "high"}));
        assert!(e.message.contains("should be a number"), "{e}");
        let e = err(json!({"threshold": -1}));
        assert_eq!(e.parameter.as_deref(), Some("threshold"));
        let e = err(json!({"threshold": 1, "port": 70000}));
        assert_eq!(e.parameter.as_deref(), Some("port"));
        assert!(e.message.starts_with("port: "), "{e}");
    }

    #[test]
    fn a_configuration_round_trips_through_its_values() {
        let c: TestConfig = parse(&TestConfig::example()).unwrap();
        let values = to_values(&c).unwrap();
        assert_eq!(values["window"], json!("PT1H"));
        assert_eq!(parse::<TestConfig>(&values).unwrap(), c);
    }

    const fn default_side() -> Side {
        Side::Left
    }

    /// A part several configurations share.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Part {
        /// The side.
        #[serde(default = "default_side")]
        side: Side,
        /// The pause.
        #[serde(default = "default_window")]
        pause: Duration,
        /// How many.
        #[serde(default)]
        count: u32,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    struct Whole {
        /// The port.
        #[serde(default = "default_port")]
        port: u16,
        #[serde(flatten)]
        part: Part,
    }

    impl Config for Whole {}

    /// Whole, with every message naming its parameter.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    struct Named(Whole);

    impl Config for Named {
        fn reword(e: ConfigError) -> ConfigError {
            match &e.parameter {
                Some(p) if !e.message.contains('`') => {
                    ConfigError::at(p, format!("parameter `{p}`: {}", e.message))
                }
                _ => e,
            }
        }
    }

    #[test]
    fn errors_in_a_flattened_part_name_their_parameter() {
        let err = |v: Json| parse::<Whole>(&v).unwrap_err();
        let e = err(json!({"side": "up"}));
        assert_eq!(e.parameter.as_deref(), Some("side"));
        assert_eq!(e.message, "side \"up\": use left or right");
        let e = err(json!({"pause": "soon"}));
        assert_eq!(e.parameter.as_deref(), Some("pause"));
        assert!(
            e.message.starts_with("pause: \"soon\" is not a duration"),
            "{e}"
        );
        let e = err(json!({"count": "many"}));
        assert_eq!(e.parameter.as_deref(), Some("count"));
        assert_eq!(
            e.message,
            "parameter `count` should be a whole number, found \"many\""
        );
        let e = err(json!({"cuont": 1}));
        assert!(e.message.contains("did you mean `count`?"), "{e}");
        let w: Whole = parse(&json!({"count": "3", "side": "right"})).unwrap();
        assert_eq!((w.part.count, w.part.side), (3, Side::Right));
        assert_eq!(parse::<Whole>(&to_values(&w).unwrap()).unwrap(), w);
    }

    #[test]
    fn a_kind_may_reword_its_errors() {
        let e = parse::<Named>(&json!({"side": "up"})).unwrap_err();
        assert_eq!(
            e.message,
            "parameter `side`: side \"up\": use left or right"
        );
        let e = parse::<Named>(&json!({"count": "many"})).unwrap_err();
        assert!(e.message.starts_with("parameter `count` should"), "{e}");
    }

    /// Documented at length.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    struct Wrapped {
        /// A documentation
        /// wrapped in the source.
        ///
        /// A second paragraph.
        #[serde(default)]
        long: bool,
    }

    impl Config for Wrapped {}

    #[test]
    fn documentation_is_one_line_per_paragraph() {
        let defs = definitions::<Wrapped>();
        assert_eq!(
            defs[0].description.as_deref(),
            Some("A documentation wrapped in the source.\n\nA second paragraph.")
        );
    }

    #[test]
    fn secrets_are_never_shown_in_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(********)");
        let r = Secret::new("${env:DDA_TEST_UNSET_SECRET}");
        assert!(r.is_reference());
        assert!(r.resolve().is_err());
        assert_eq!(Secret::new("plain").resolve().unwrap(), "plain");
    }
}
