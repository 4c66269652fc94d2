//! Problems of a request's document, as data.
//!
//! The validator, the JSON reader and the XML mapping each find problems at a place in the
//! document (a JSON pointer). A [`Problem`] keeps what each found as fields — the
//! validator's code, the pointer, the message, the hint, and for a missing field its name
//! — so that both error shapes of the API (the v1 `{code, message, details}` and the
//! original FAR-EDGE `{"error": "CODE"}`) are built from fields, never from message text.

use manifests::Diagnostic;
use manifests::schema::Shape;
use serde_json::Value as Json;

/// The validator's code for a reference to an entity that does not exist.
pub const DANGLING_REFERENCE: &str = "dangling-reference";

/// The validator's code for a required field that is absent.
pub const MISSING_FIELD: &str = "missing-field";

/// One problem of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The validator's stable code (`dangling-reference`, `missing-field`, ...); `None` for
    /// what the readers found before validation (syntax, XML mapping).
    pub code: Option<&'static str>,
    /// JSON pointer into the document (empty for the whole document).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// For a missing field (`missing-field`), the field's name: the problem's pointer is
    /// the object that lacks it.
    pub missing: Option<String>,
}

impl Problem {
    /// A problem found at `pointer` by a reader, without a code.
    #[must_use]
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: None,
            pointer: pointer.into(),
            message: message.into(),
            hint: None,
            missing: None,
        }
    }

    /// Adds how to fix it.
    #[must_use]
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// The problems of `diagnostics` about `document`, an entity of `shape`: each
    /// diagnostic's code, pointer, message and hint, and for a missing field its name (the
    /// required members absent from the object at the pointer, in the schema's order, one
    /// per diagnostic at that pointer).
    #[must_use]
    pub fn of_diagnostics(
        diagnostics: &[&Diagnostic],
        document: &Json,
        shape: &Shape,
    ) -> Vec<Self> {
        let mut absent: Vec<(&str, std::vec::IntoIter<String>)> = Vec::new();
        diagnostics
            .iter()
            .map(|d| {
                let missing = if d.code == MISSING_FIELD {
                    let at = match absent.iter().position(|(p, _)| *p == d.pointer) {
                        Some(i) => i,
                        None => {
                            let names = absent_required(document, shape, &d.pointer);
                            absent.push((d.pointer.as_str(), names.into_iter()));
                            absent.len() - 1
                        }
                    };
                    absent[at].1.next()
                } else {
                    None
                };
                Self {
                    code: Some(d.code),
                    pointer: d.pointer.clone(),
                    message: d.message.clone(),
                    hint: d.hint.clone(),
                    missing,
                }
            })
            .collect()
    }
}

/// The required members of the object at `pointer` of `document` that it lacks, in the
/// order of `shape` (the document's schema), then its identifier when it has none.
fn absent_required(document: &Json, shape: &Shape, pointer: &str) -> Vec<String> {
    let Some(Json::Object(object)) = document.pointer(pointer) else {
        return Vec::new();
    };
    let mut at = shape;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Shape::Object(_) => match at.member(&token) {
                Some(member) => member,
                None => return Vec::new(),
            },
            Shape::Array(item) => item,
            _ => return Vec::new(),
        };
    }
    let Shape::Object(members) = at else {
        return Vec::new();
    };
    let mut absent: Vec<String> = members
        .properties
        .iter()
        .filter(|(name, member)| member.required && !object.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect();
    // An identifier is required as `id` or `_id`, either one: the schema says so with
    // `anyOf`, which the shape does not keep.
    if members.properties.contains_key("id")
        && !object.contains_key("id")
        && !object.contains_key("_id")
    {
        absent.push("id".to_owned());
    }
    absent
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifests::EntityKind;
    use manifests::schema::schemas;
    use serde_json::json;

    #[test]
    fn a_missing_field_is_named_from_the_schema_and_the_document() {
        let shape = schemas().kind_shape(EntityKind::AnalyticsManifest);
        let document = json!({"id": "am", "name": "n"});
        let mut d = Diagnostic::error(
            MISSING_FIELD,
            "missing required field `analyticsProcessors`",
        );
        d.pointer = String::new();
        let problems = Problem::of_diagnostics(&[&d], &document, shape);
        assert_eq!(problems[0].missing.as_deref(), Some("analyticsProcessors"));
        assert_eq!(problems[0].code, Some(MISSING_FIELD));
        let anonymous = json!({"analyticsProcessors": {"apm": []}});
        let problems = Problem::of_diagnostics(&[&d], &anonymous, shape);
        assert_eq!(problems[0].missing.as_deref(), Some("id"));
        let other = Diagnostic::error(DANGLING_REFERENCE, "no such thing");
        let problems = Problem::of_diagnostics(&[&other], &document, shape);
        assert_eq!(problems[0].missing, None);
    }
}
