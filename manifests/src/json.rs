//! JSON text ↔ [`Node`] tree.
//!
//! Reading keeps every value's byte span (for `line:column` in diagnostics) and every number's
//! exact text (for lossless conversion). The reader is strict JSON (RFC 8259): no comments,
//! no trailing commas, no duplicate keys.

use jsonc_parser::{CollectOptions, ParseOptions, ast};

use crate::node::{Member, Node, Span, Value};

/// Why a JSON text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonSyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// How to fix it, when there is something specific to say.
    pub hint: Option<String>,
}

/// Reads a JSON text into a tree.
///
/// # Errors
///
/// Returns the first syntax error (JSON has no meaningful recovery), or a duplicate key.
pub fn parse(text: &str) -> Result<Node, JsonSyntaxError> {
    let options = ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed =
        jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &options).map_err(|e| {
            let range = e.range();
            let hint = match e.kind() {
                jsonc_parser::errors::ParseErrorKind::CommentsNotAllowed => {
                    Some("JSON has no comments; use a \"description\" field instead".to_owned())
                }
                jsonc_parser::errors::ParseErrorKind::TrailingCommasNotAllowed => {
                    Some("remove the comma after the last element".to_owned())
                }
                jsonc_parser::errors::ParseErrorKind::ExpectedComma => Some(
                    "separate members and list items with commas; is one missing before this?"
                        .to_owned(),
                ),
                jsonc_parser::errors::ParseErrorKind::SingleQuotedStringsNotAllowed => {
                    Some("JSON strings use double quotes".to_owned())
                }
                _ => None,
            };
            JsonSyntaxError {
                message: e.kind().to_string(),
                span: Span::new(range.start, range.end),
                hint,
            }
        })?;
    match parsed.value {
        Some(value) => convert(value),
        None => Err(JsonSyntaxError {
            message: "the document is empty".to_owned(),
            span: Span::new(0, 0),
            hint: Some("a manifest document is a JSON object".to_owned()),
        }),
    }
}

fn span_of(r: jsonc_parser::common::Range) -> Span {
    Span::new(r.start, r.end)
}

fn convert(value: ast::Value<'_>) -> Result<Node, JsonSyntaxError> {
    Ok(match value {
        ast::Value::StringLit(s) => {
            Node::new(Value::String(s.value.into_owned()), span_of(s.range))
        }
        ast::Value::NumberLit(n) => Node::new(Value::Number(n.value.to_owned()), span_of(n.range)),
        ast::Value::BooleanLit(b) => Node::new(Value::Bool(b.value), span_of(b.range)),
        ast::Value::NullKeyword(n) => Node::new(Value::Null, span_of(n.range)),
        ast::Value::Array(a) => {
            let items = a
                .elements
                .into_iter()
                .map(convert)
                .collect::<Result<_, _>>()?;
            Node::new(Value::Array(items), span_of(a.range))
        }
        ast::Value::Object(o) => {
            let span = span_of(o.range);
            let mut members: Vec<Member> = Vec::with_capacity(o.properties.len());
            for prop in o.properties {
                let (key, key_span) = match prop.name {
                    ast::ObjectPropName::String(s) => (s.value.into_owned(), span_of(s.range)),
                    ast::ObjectPropName::Word(w) => (w.value.to_owned(), span_of(w.range)),
                };
                if members.iter().any(|m| m.key == key) {
                    return Err(JsonSyntaxError {
                        message: format!("duplicate key \"{key}\""),
                        span: key_span,
                        hint: Some(
                            "each key may appear once in an object; remove or rename one"
                                .to_owned(),
                        ),
                    });
                }
                members.push(Member {
                    key,
                    key_span,
                    value: convert(prop.value)?,
                });
            }
            Node::new(Value::Object(members), span)
        }
    })
}

/// Reads a text holding one JSON value, or several written one after another (JSON lines,
/// or concatenated objects as in the paper's Table 7). Spans are offsets into `text`.
///
/// # Errors
///
/// The first syntax error.
pub fn parse_stream(text: &str) -> Result<Vec<Node>, JsonSyntaxError> {
    let bounds = top_level_values(text);
    if bounds.len() <= 1 {
        return parse(text).map(|n| vec![n]);
    }
    let mut nodes = Vec::with_capacity(bounds.len());
    for (start, end) in bounds {
        let mut node = parse(&text[start..end]).map_err(|mut e| {
            e.span = Span::new(e.span.start + start, e.span.end + start);
            e
        })?;
        shift(&mut node, start);
        nodes.push(node);
    }
    Ok(nodes)
}

/// Byte ranges of the objects and arrays written one after another at the top level of
/// `text`. Anything else at the top level ends the split: the rest is one range, for the
/// parser to judge. Any Unicode white space separates values (the paper's Table 7 is
/// indented with em spaces).
fn top_level_values(text: &str) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let (mut depth, mut start, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for (i, ch) in text.char_indices() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' if depth > 0 => in_string = true,
            '{' | '[' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            '}' | ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    bounds.push((start, i + 1));
                }
            }
            c if depth == 0 && c.is_whitespace() => {}
            _ if depth == 0 => {
                bounds.push((i, text.len()));
                return bounds;
            }
            _ => {}
        }
    }
    if depth > 0 {
        bounds.push((start, text.len()));
    }
    bounds
}

fn shift(node: &mut Node, by: usize) {
    node.span = Span::new(node.span.start + by, node.span.end + by);
    match &mut node.value {
        Value::Array(items) => items.iter_mut().for_each(|n| shift(n, by)),
        Value::Object(members) => {
            for m in members {
                m.key_span = Span::new(m.key_span.start + by, m.key_span.end + by);
                shift(&mut m.value, by);
            }
        }
        _ => {}
    }
}

/// Writes a tree as pretty JSON (two-space indent), numbers exactly as they were read.
#[must_use]
pub fn to_string_pretty(node: &Node) -> String {
    let mut out = String::new();
    write_node(node, 0, &mut out);
    out.push('\n');
    out
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping cannot fail for a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_node(node: &Node, level: usize, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(level + 1, out);
                write_node(item, level + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(level, out);
            out.push(']');
        }
        Value::Object(members) if members.is_empty() => out.push_str("{}"),
        Value::Object(members) => {
            out.push_str("{\n");
            for (i, m) in members.iter().enumerate() {
                indent(level + 1, out);
                write_string(&m.key, out);
                out.push_str(": ");
                write_node(&m.value, level + 1, out);
                out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
            }
            indent(level, out);
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::LineIndex;

    #[test]
    fn parse_keeps_spans_and_number_text() {
        let text = "{\n  \"port\": 1883,\n  \"ratio\": 1.50\n}";
        let node = parse(text).unwrap();
        let port = node.member("port").unwrap();
        let idx = LineIndex::new(text);
        let pos = idx.position(text, port.key_span.start);
        assert_eq!((pos.line, pos.column), (2, 3));
        assert_eq!(
            node.get("ratio").unwrap().value,
            Value::Number("1.50".into())
        );
        assert_eq!(to_string_pretty(&node), format!("{text}\n"));
    }

    #[test]
    fn a_stream_of_values_is_split_with_spans_into_the_whole_text() {
        let text = "{\"a\": 1}{\"b\": 2}\n{\"c\": 3}\n";
        let nodes = parse_stream(text).unwrap();
        assert_eq!(nodes.len(), 3);
        let c = nodes[2].member("c").unwrap();
        assert_eq!(&text[c.key_span.start..c.key_span.end], "\"c\"");
        assert_eq!(parse_stream("{\"a\": 1}").unwrap().len(), 1);
        let err = parse_stream("{\"a\": 1}{\"b\": }").unwrap_err();
        assert!(err.span.start >= 9, "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_rejected_at_the_second_key() {
        let text = "{\"a\": 1,\n \"a\": 2}";
        let err = parse(text).unwrap_err();
        assert!(err.message.contains("duplicate key \"a\""));
        assert_eq!(err.span.start, 10);
    }

    #[test]
    fn comments_and_trailing_commas_are_errors_with_hints() {
        let err = parse("{\"a\": 1, // x\n}").unwrap_err();
        assert!(err.hint.unwrap().contains("no comments"));
        let err = parse("[1, 2,]").unwrap_err();
        assert!(err.hint.unwrap().contains("comma"));
        assert!(parse("").is_err());
    }
}
