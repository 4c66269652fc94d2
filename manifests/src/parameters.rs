//! Checking parameter values against parameter definitions, and applying defaults.
//!
//! The same rules hold for a data source manifest's values against its data interface and
//! for a processor manifest's values against its processor definition: known name, no
//! duplicates, a value of the declared type, required ones present, enumerations respected,
//! secrets given as references. Values are read leniently where the original engine was
//! lenient: it stored every value as a string, so `"38"` is a fine `float`.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::diagnostic::Severity;
use crate::model::{DataType, ParameterDefinition, ParameterValue};
use crate::secret::SecretRef;
use crate::suggest::did_you_mean;

/// Parameter values after checking: every defined parameter with a value (given or
/// default), converted to its declared type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedParameters {
    values: IndexMap<String, Json>,
    secret: Vec<String>,
}

impl ResolvedParameters {
    /// The value of parameter `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.values.get(name)
    }

    /// The value of `name` as text (numbers and booleans written out).
    #[must_use]
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The value of `name` as a number.
    #[must_use]
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(as_f64)
    }

    /// The value of `name` as an integer.
    #[must_use]
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(as_i64)
    }

    /// The value of `name` as a boolean.
    #[must_use]
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(as_bool)
    }

    /// The value of `name` as a duration.
    #[must_use]
    pub fn get_duration(&self, name: &str) -> Option<Duration> {
        self.get(name)
            .and_then(|v| v.as_str())
            .and_then(|s| parse_duration(s).ok())
    }

    /// Whether parameter `name` is a secret.
    #[must_use]
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret.iter().any(|s| s == name)
    }

    /// Every (name, value), in definition order then given order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets a value (used by callers that add values outside a manifest).
    pub fn insert(&mut self, name: impl Into<String>, value: Json) {
        self.values.insert(name.into(), value);
    }

    /// The values as a JSON object, secrets included: for the code that uses them (a
    /// connector's configuration), never for display.
    #[must_use]
    pub fn to_json(&self) -> Json {
        Json::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// The values as a JSON object, secrets replaced by [`crate::secret::REDACTED`].
    #[must_use]
    pub fn to_redacted_json(&self) -> Json {
        Json::Object(
            self.values
                .iter()
                .map(|(k, v)| {
                    let shown = if self.is_secret(k) && !crate::secret::is_reference(v) {
                        Json::String(crate::secret::REDACTED.to_owned())
                    } else {
                        v.clone()
                    };
                    (k.clone(), shown)
                })
                .collect(),
        )
    }
}

/// A problem with parameter values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterIssue {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code.
    pub code: &'static str,
    /// JSON pointer relative to the `{"parameter": [...]}` object (`/parameter/2/value`),
    /// or empty for the whole list.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// The outcome of [`resolve`].
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// The resolved values.
    pub parameters: ResolvedParameters,
    /// Problems found.
    pub issues: Vec<ParameterIssue>,
    /// Pointers (as in [`ParameterIssue::pointer`]) of values that are secrets: never show them.
    pub secret_values: Vec<String>,
}

/// Checks `values` against `definitions` and applies defaults. `owner` names the
/// definitions in messages ("data interface \"MQTT topic\"").
///
/// When `definitions` is `None` nothing is known about the parameters: values are kept as
/// given, and only duplicates and secrets (judged by name) are checked.
#[must_use]
pub fn resolve(
    definitions: Option<&[ParameterDefinition]>,
    values: &[ParameterValue],
    owner: &str,
) -> Resolution {
    let mut out = Resolution::default();
    let issue = |out: &mut Resolution,
                 severity,
                 code,
                 pointer: String,
                 message: String,
                 hint: Option<String>| {
        out.issues.push(ParameterIssue {
            severity,
            code,
            pointer,
            message,
            hint,
        });
    };
    if let Some(defs) = definitions {
        for def in defs {
            if def.is_secret() {
                out.parameters.secret.push(def.name.clone());
            }
        }
    }
    for (i, given) in values.iter().enumerate() {
        let pointer = format!("/parameter/{i}");
        let value_pointer = format!("{pointer}/value");
        let name = given.key.as_str();
        if values[..i].iter().any(|v| v.key == name) {
            issue(
                &mut out,
                Severity::Error,
                "duplicate-parameter",
                pointer.clone(),
                format!("parameter `{name}` is given more than once"),
                Some("give each parameter once".to_owned()),
            );
            continue;
        }
        let def = definitions.and_then(|d| d.iter().find(|d| d.name == name));
        let secret = def.map_or_else(
            || crate::secret::is_secret_name(name),
            ParameterDefinition::is_secret,
        );
        if secret {
            out.secret_values.push(value_pointer.clone());
            if def.is_none() {
                out.parameters.secret.push(name.to_owned());
            }
        }
        let value = match (definitions, def) {
            (Some(defs), None) => {
                let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
                let known = if names.is_empty() {
                    "it takes no parameters".to_owned()
                } else {
                    format!("it takes: {}", names.join(", "))
                };
                issue(
                    &mut out,
                    Severity::Error,
                    "unknown-parameter",
                    format!("{pointer}/key"),
                    format!("{owner} has no parameter `{name}`"),
                    Some(did_you_mean(name, names.iter().copied()).unwrap_or(known)),
                );
                continue;
            }
            (_, Some(def)) => match coerce(&def.data_type(), &given.value) {
                Ok(v) => v,
                Err(expected) => {
                    let shown = if secret {
                        "a secret value".to_owned()
                    } else {
                        describe(&given.value)
                    };
                    issue(
                        &mut out,
                        Severity::Error,
                        "parameter-type",
                        value_pointer.clone(),
                        format!("parameter `{name}` should be {expected}, found {shown}"),
                        Some(type_hint(&def.data_type())),
                    );
                    continue;
                }
            },
            (None, None) => given.value.clone(),
        };
        if let Some(allowed) = def.and_then(|d| d.allowed_values.as_ref())
            && !allowed.value.iter().any(|a| same_value(a, &value))
        {
            let list: Vec<String> = allowed.value.iter().map(|v| v.to_string()).collect();
            issue(
                &mut out,
                Severity::Error,
                "parameter-value",
                value_pointer.clone(),
                format!("parameter `{name}` must be one of {}", list.join(", ")),
                value
                    .as_str()
                    .and_then(|s| did_you_mean(s, allowed.value.iter().filter_map(Json::as_str))),
            );
            continue;
        }
        if secret {
            check_secret(&mut out, name, &value, &value_pointer);
        }
        out.parameters.values.insert(name.to_owned(), value);
    }
    if let Some(defs) = definitions {
        for def in defs {
            if out.parameters.values.contains_key(&def.name)
                || values.iter().any(|v| v.key == def.name)
            {
                continue;
            }
            match &def.default_value {
                Some(default) => {
                    let v = coerce(&def.data_type(), default).unwrap_or_else(|_| default.clone());
                    out.parameters.values.insert(def.name.clone(), v);
                }
                None if def.required => issue(
                    &mut out,
                    Severity::Error,
                    "missing-parameter",
                    String::new(),
                    format!("required parameter `{}` of {owner} is not given", def.name),
                    Some(format!(
                        "add {{\"key\": \"{}\", \"value\": ...}}{}",
                        def.name,
                        def.description
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )),
                ),
                None => {}
            }
        }
        // Definition order first, then anything given without a definition.
        let mut ordered = IndexMap::new();
        for def in defs {
            if let Some(v) = out.parameters.values.shift_remove(&def.name) {
                ordered.insert(def.name.clone(), v);
            }
        }
        ordered.extend(out.parameters.values.drain(..));
        out.parameters.values = ordered;
    }
    out
}

/// An `http(s)://` URL that carries no credentials (no `user:password@`, no query string):
/// a secret parameter that may hold a URL (a webhook's) is then not a secret in plain text.
fn is_plain_url(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    !authority.contains('@') && !text.contains('?')
}

fn check_secret(out: &mut Resolution, name: &str, value: &Json, pointer: &str) {
    match value.as_str().map(SecretRef::parse) {
        Some(Some(Ok(_))) => {}
        Some(Some(Err(e))) => out.issues.push(ParameterIssue {
            severity: Severity::Error,
            code: "secret-reference",
            pointer: pointer.to_owned(),
            message: format!("parameter `{name}`: {e}"),
            hint: Some("write ${env:VARIABLE} or ${file:/path/to/file}".to_owned()),
        }),
        Some(None) if value.as_str() == Some("") => {}
        Some(None) if value.as_str().is_some_and(is_plain_url) => {}
        _ => out.issues.push(ParameterIssue {
            severity: Severity::Warning,
            code: "plain-text-secret",
            pointer: pointer.to_owned(),
            message: format!("parameter `{name}` is a secret given in plain text"),
            hint: Some(format!(
                "keep secrets out of manifests: write \"${{env:{}}}\" and set that variable, or \"${{file:/run/secrets/{name}}}\"",
                name.to_ascii_uppercase()
            )),
        }),
    }
}

/// Checks a definition's own default value (a secret must not have a plain-text default).
#[must_use]
pub fn check_definitions(definitions: &[ParameterDefinition]) -> Vec<ParameterIssue> {
    let mut out = Resolution::default();
    for (i, def) in definitions.iter().enumerate() {
        let pointer = format!("/parameter/{i}/defaultValue");
        if let Some(default) = &def.default_value {
            if let Err(expected) = coerce(&def.data_type(), default) {
                out.issues.push(ParameterIssue {
                    severity: Severity::Error,
                    code: "parameter-type",
                    pointer: pointer.clone(),
                    message: format!(
                        "default of `{}` should be {expected}, found {}",
                        def.name,
                        describe(default)
                    ),
                    hint: Some(type_hint(&def.data_type())),
                });
            } else if def.is_secret() {
                check_secret(&mut out, &def.name, default, &pointer);
            }
        }
        if let DataType::Other(t) = def.data_type() {
            out.issues.push(ParameterIssue {
                severity: Severity::Warning,
                code: "unknown-data-type",
                pointer: format!("/parameter/{i}/dataType"),
                message: format!(
                    "dataType `{t}` of `{}` is not one DDA knows; its values are not checked",
                    def.name
                ),
                hint: did_you_mean(
                    &t,
                    [
                        "string", "int", "float", "boolean", "duration", "object", "array",
                    ],
                ),
            });
        }
        if definitions[..i].iter().any(|d| d.name == def.name) {
            out.issues.push(ParameterIssue {
                severity: Severity::Error,
                code: "duplicate-parameter",
                pointer: format!("/parameter/{i}/name"),
                message: format!("parameter `{}` is defined more than once", def.name),
                hint: None,
            });
        }
    }
    out.issues
}

fn same_value(a: &Json, b: &Json) -> bool {
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) if a.is_number() || b.is_number() => (x - y).abs() < f64::EPSILON,
        _ => a == b,
    }
}

/// Describes a value's type for messages, without echoing long or structured values.
fn describe(v: &Json) -> String {
    match v {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => format!("{b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Json::String(_) => "a long string".to_owned(),
        Json::Array(_) => "a list".to_owned(),
        Json::Object(_) => "an object".to_owned(),
    }
}

fn type_hint(t: &DataType) -> String {
    match t {
        DataType::Integer => "write a whole number, e.g. 1883".to_owned(),
        DataType::Number => "write a number, e.g. 38 or 0.5".to_owned(),
        DataType::Boolean => "write true or false".to_owned(),
        DataType::Duration => "write a duration such as PT1H, 1h, 15m, 30s or 500ms".to_owned(),
        DataType::Object => "write a JSON object".to_owned(),
        DataType::Array => "write a JSON list".to_owned(),
        DataType::String | DataType::Other(_) => "write text".to_owned(),
    }
}

fn as_f64(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn as_i64(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Json::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn as_bool(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Json::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Converts `value` to `data_type`, or says what was expected.
///
/// # Errors
///
/// The value cannot be read as the type; the error names the type ("a whole number").
pub fn coerce(data_type: &DataType, value: &Json) -> Result<Json, &'static str> {
    match data_type {
        DataType::String => match value {
            Json::String(_) => Ok(value.clone()),
            Json::Number(n) => Ok(Json::String(n.to_string())),
            Json::Bool(b) => Ok(Json::String(b.to_string())),
            _ => Err("text"),
        },
        DataType::Integer => as_i64(value).map(Json::from).ok_or("a whole number"),
        DataType::Number => as_f64(value)
            .and_then(|f| {
                // Keep integers as integers so that `1883` stays `1883`.
                as_i64(value)
                    .map(Json::from)
                    .or_else(|| serde_json::Number::from_f64(f).map(Json::Number))
            })
            .ok_or("a number"),
        DataType::Boolean => as_bool(value).map(Json::Bool).ok_or("true or false"),
        DataType::Duration => match value {
            Json::String(s) if parse_duration(s).is_ok() => Ok(value.clone()),
            _ => Err("a duration"),
        },
        DataType::Object => value.is_object().then(|| value.clone()).ok_or("an object"),
        DataType::Array => value.is_array().then(|| value.clone()).ok_or("a list"),
        DataType::Other(_) => Ok(value.clone()),
    }
}

/// Parses a duration: ISO 8601 (`PT1H`, `P1D`, `PT0.5S`) or friendly (`1h`, `15m`, `30s`,
/// `500ms`, `1h 30m`, `2 days`). Days and weeks count 24 hours each; months and years are
/// refused (their length varies).
///
/// # Errors
///
/// Text that is not a duration, a negative one, or one with months or years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|e: jiff::Error| format!("{text:?} is not a duration: {e}"))?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!("{text:?}: months and years have no fixed length; use days or hours")
        })?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} is negative"))
}

/// Parameters whose value names a DSM a processor writes besides its sink (a side output,
/// such as the late observations of a window). The validator counts them as writers of
/// that DSM; the engine publishes to it.
pub const SIDE_OUTPUT_PARAMETERS: &[&str] = &["lateOutput"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, ty: &str) -> ParameterDefinition {
        ParameterDefinition {
            name: name.into(),
            data_type: Some(ty.into()),
            ..ParameterDefinition::default()
        }
    }

    fn val(key: &str, value: Json) -> ParameterValue {
        ParameterValue {
            key: key.into(),
            value,
        }
    }

    #[test]
    fn durations_in_both_notations() {
        assert_eq!(parse_duration("PT1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("P1D").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("PT0S").unwrap(), Duration::ZERO);
        for bad in ["", "abc", "P1M", "-1h", "1x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_coerced_defaults_applied_and_order_follows_definitions() {
        let mut port = def("port", "int");
        port.default_value = Some(json!(1883));
        let defs = vec![def("host", "string"), port, def("threshold", "float")];
        let r = resolve(
            Some(&defs),
            &[val("threshold", json!("38")), val("host", json!("h"))],
            "x",
        );
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        let names: Vec<&str> = r.parameters.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["host", "port", "threshold"]);
        assert_eq!(r.parameters.get("port"), Some(&json!(1883)));
        assert_eq!(r.parameters.get("threshold"), Some(&json!(38)));
        assert_eq!(r.parameters.get_f64("threshold"), Some(38.0));
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let mut op = def("operator", "string");
        op.allowed_values = Some(crate::model::AllowedValues {
            value: vec![json!("EQ"), json!("GE")],
        });
        let mut req = def("window", "duration");
        req.required = true;
        let defs = vec![def("port", "int"), op, req];
        let r = resolve(
            Some(&defs),
            &[
                val("port", json!("abc")),
                val("prot", json!(1)),
                val("operator", json!("Ge")),
                val("port", json!(1)),
            ],
            "processor \"f\"",
        );
        let codes: Vec<(&str, &str)> = r
            .issues
            .iter()
            .map(|i| (i.code, i.pointer.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                ("parameter-type", "/parameter/0/value"),
                ("unknown-parameter", "/parameter/1/key"),
                ("parameter-value", "/parameter/2/value"),
                ("duplicate-parameter", "/parameter/3"),
                ("missing-parameter", ""),
            ]
        );
        assert_eq!(r.issues[1].hint.as_deref(), Some("did you mean `port`?"));
        assert_eq!(r.issues[2].hint.as_deref(), Some("did you mean `GE`?"));
    }

    #[test]
    fn secrets_must_be_references_and_are_never_echoed() {
        let defs = vec![def("password", "int")];
        let r = resolve(Some(&defs), &[val("password", json!("hunter2"))], "x");
        assert_eq!(r.issues.len(), 1);
        assert!(
            !r.issues[0].message.contains("hunter2"),
            "{}",
            r.issues[0].message
        );
        assert_eq!(r.secret_values, ["/parameter/0/value"]);

        let defs = vec![def("password", "string"), def("token", "string")];
        let r = resolve(
            Some(&defs),
            &[
                val("password", json!("hunter2")),
                val("token", json!("${env:TOKEN}")),
            ],
            "x",
        );
        assert_eq!(r.issues.len(), 1);
        assert_eq!(r.issues[0].code, "plain-text-secret");
        assert_eq!(r.issues[0].severity, Severity::Warning);
        assert!(!r.issues[0].message.contains("hunter2"));
        let shown = r.parameters.to_redacted_json();
        assert_eq!(shown["password"], json!("********"));
        assert_eq!(shown["token"], json!("${env:TOKEN}"));
    }

    #[test]
    fn a_secret_url_in_plain_text_is_a_warning_only_when_it_carries_credentials() {
        let warned = |url: &str| {
            let mut d = def("url", "string");
            d.secret = Some(true);
            resolve(Some(&[d]), &[val("url", json!(url))], "x")
                .issues
                .iter()
                .any(|i| i.code == "plain-text-secret")
        };
        assert!(!warned("http://127.0.0.1:8480/ingest/uplink"));
        assert!(!warned("https://cloud.example/ingest"));
        assert!(warned("https://user:pass@cloud.example/ingest"));
        assert!(warned("https://hooks.example/services?token=abc"));
        assert!(warned("abc123"));
    }

    #[test]
    fn without_definitions_values_pass_through() {
        let r = resolve(
            None,
            &[val("anything", json!(5)), val("apiKey", json!("k"))],
            "x",
        );
        assert_eq!(r.parameters.get("anything"), Some(&json!(5)));
        assert_eq!(r.issues.len(), 1);
        assert_eq!(r.issues[0].code, "plain-text-secret");
    }
}
