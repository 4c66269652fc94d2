//! XML text → element tree, and the writer for the other direction.
//!
//! This layer knows XML only: elements, attributes, text, and where each was written. How an
//! element tree maps onto the model's JSON shape is decided by [`crate::mapping`], which is
//! steered by the JSON Schemas.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::node::Span;

/// Most element nesting accepted; deeper documents are refused rather than risk the stack.
pub const MAX_DEPTH: usize = 128;

/// One attribute of an element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name as written (with any prefix).
    pub name: String,
    /// Unescaped value.
    pub value: String,
    /// Where the attribute was written (the whole start tag; quick-xml reports no finer span).
    pub span: Span,
}

/// One element of an XML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Local name (any namespace prefix removed).
    pub name: String,
    /// The element's start tag.
    pub span: Span,
    /// Attributes, in document order, namespace declarations left out.
    pub attributes: Vec<Attribute>,
    /// Child elements, in document order.
    pub children: Vec<Element>,
    /// Character data directly inside this element (text and CDATA, entities resolved).
    pub text: String,
    /// Where the first non-blank text was written, if any.
    pub text_span: Option<Span>,
}

impl Element {
    /// The value of attribute `name`, if present.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Whether the element holds non-blank character data.
    #[must_use]
    pub fn has_text(&self) -> bool {
        !self.text.trim().is_empty()
    }
}

/// Why an XML text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct XmlSyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// How to fix it, when there is something specific to say.
    pub hint: Option<String>,
}

fn syntax(message: impl Into<String>, at: usize, hint: Option<&str>) -> XmlSyntaxError {
    XmlSyntaxError {
        message: message.into(),
        span: Span::new(at, at),
        hint: hint.map(str::to_owned),
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

fn resolve_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Reads an XML document into its root element.
///
/// # Errors
///
/// Malformed XML (with the byte offset where the reader stopped), a document with no root or
/// with content after it, unknown entities, or nesting deeper than [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Element, XmlSyntaxError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(0);
            let message = e.to_string();
            let message = message
                .strip_prefix("ill-formed document: ")
                .unwrap_or(&message);
            syntax(message.to_owned(), at, None)
        })?;
        let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let span = Span::new(start, end);
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                let is_empty = reader_last_was_empty(text, span);
                if root.is_some() && stack.is_empty() {
                    return Err(syntax(
                        "content after the root element",
                        start,
                        Some(
                            "an XML document has exactly one root element; wrap several entities in <bundle>",
                        ),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(syntax(
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                        start,
                        None,
                    ));
                }
                let name = local(tag.name().as_ref()).to_owned();
                let mut attributes = Vec::new();
                for attr in tag.attributes() {
                    let attr =
                        attr.map_err(|e| syntax(format!("malformed attribute: {e}"), start, None))?;
                    let key = attr.key.as_ref().to_owned();
                    if key == "xmlns" || key.starts_with("xmlns:") {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| {
                            syntax(format!("malformed attribute value: {e}"), start, None)
                        })?
                        .into_owned();
                    attributes.push(Attribute {
                        name: key,
                        value,
                        span,
                    });
                }
                let element = Element {
                    name,
                    span,
                    attributes,
                    children: Vec::new(),
                    text: String::new(),
                    text_span: None,
                };
                if is_empty {
                    close(element, &mut stack, &mut root);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // check_end_names guarantees a matching start on the stack.
                if let Some(element) = stack.pop() {
                    close(element, &mut stack, &mut root);
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content, span, start)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content().into_owned();
                push_text(&mut stack, &content, span, start)?;
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch,
                    Ok(None) => resolve_entity(&r).ok_or_else(|| {
                        syntax(
                            format!("unknown entity &{};", &*r),
                            start,
                            Some("only &lt; &gt; &amp; &apos; &quot; and character references are defined"),
                        )
                    })?,
                    Err(e) => return Err(syntax(format!("bad character reference: {e}"), start, None)),
                };
                push_text(&mut stack, ch.encode_utf8(&mut [0; 4]), span, start)?;
            }
            Event::DocType(_) => {
                return Err(syntax(
                    "DOCTYPE declarations are not accepted",
                    start,
                    Some(
                        "remove the <!DOCTYPE ...>; manifests are checked against DDA's own schemas",
                    ),
                ));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(syntax(
            format!("element <{}> is not closed", open.name),
            open.span.start,
            Some("add the matching end tag"),
        ));
    }
    root.ok_or_else(|| {
        syntax(
            "the document has no root element",
            0,
            Some("an XML manifest has one root element, such as <dataInterface>"),
        )
    })
}

/// quick-xml reports `<a/>` as `Event::Empty` only when not expanding; we read the raw
/// tag text to tell the two apart without keeping a second copy of the event.
fn reader_last_was_empty(text: &str, span: Span) -> bool {
    text.get(span.start..span.end)
        .is_some_and(|tag| tag.trim_end().ends_with("/>"))
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(
    stack: &mut [Element],
    content: &str,
    span: Span,
    at: usize,
) -> Result<(), XmlSyntaxError> {
    match stack.last_mut() {
        Some(element) => {
            if element.text_span.is_none() && !content.trim().is_empty() {
                element.text_span = Some(span);
            }
            element.text.push_str(content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None => Err(syntax(
            "text outside the root element",
            at,
            Some("all content belongs inside the document's root element"),
        )),
    }
}

/// Escapes text for element content or a double-quoted attribute value.
#[must_use]
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_attributes_text_and_entities() {
        let doc = r#"<?xml version="1.0"?>
<!-- a comment -->
<a xmlns="urn:x" k="v&amp;w"><b>1 &lt; 2</b><c/><d><![CDATA[<raw>]]></d></a>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.attributes.len(), 1);
        assert_eq!(root.attribute("k").unwrap().value, "v&w");
        assert_eq!(root.children[0].text, "1 < 2");
        assert_eq!(root.children[1].name, "c");
        assert!(root.children[1].children.is_empty());
        assert_eq!(root.children[2].text, "<raw>");
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<a>&bogus;</a>",
            "<!DOCTYPE a><a/>",
            "<a x=></a>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn mismatched_end_tag_points_at_the_end_tag() {
        let err = parse("<a>\n  <b></c>\n</a>").unwrap_err();
        assert!(err.message.contains("expected `</b>`"), "{}", err.message);
        assert!(err.span.start >= 6, "{:?}", err.span);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let doc = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&doc).unwrap_err().message.contains("deeper"));
    }
}
