//! The mechanical mapping between XML and the JSON shape of the models.
//!
//! The rules (documented for users in `docs/xml-mapping.md`):
//!
//! - A JSON object is an element whose children are its members; a member `"k": v` is a child
//!   element `<k>`. The document's root element names the entity (`<dataInterface>`).
//! - A JSON array member `"k": [a, b]` is repeated `<k>` elements, one per item. An empty
//!   array is one `<k type="array"/>`.
//! - Strings, numbers and booleans are the element's text. The schema says which members
//!   are numbers or booleans, so no markup is needed there: `<port>1883</port>`.
//! - Where the schema allows any type (a parameter `value`, a `defaultValue`, an observation
//!   `value`, a timestamp), text is a string unless a `type` attribute says otherwise:
//!   `<value type="number">1883</value>`, `<value type="boolean">true</value>`. Objects and
//!   arrays in such places are `type="object"` (members as children) and `type="array"`
//!   (items as `<item>` children).
//! - `null` anywhere is `<k type="null"/>`.
//!
//! Numbers keep their exact text both ways, and whitespace in strings is kept, so
//! JSON → XML → JSON gives the same value and XML → JSON → XML the same document.

use crate::node::{Member as NodeMember, Node, Span, Value, is_json_number};
use crate::schema::Shape;
use crate::xml::{Element, escape};

/// The attribute that carries a value's JSON type where the schema does not fix it.
pub const TYPE_ATTRIBUTE: &str = "type";
/// The element name of an item inside a `type="array"` value.
pub const ITEM_ELEMENT: &str = "item";

/// A problem mapping XML onto the model's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingError {
    /// What is wrong.
    pub message: String,
    /// Where in the XML.
    pub span: Span,
    /// JSON pointer of the value being built.
    pub pointer: String,
    /// How to fix it.
    pub hint: Option<String>,
}

struct XmlToNode {
    errors: Vec<MappingError>,
}

impl XmlToNode {
    fn error(&mut self, element: &Element, pointer: &str, message: String, hint: Option<String>) {
        self.errors.push(MappingError {
            message,
            span: element.span,
            pointer: pointer.to_owned(),
            hint,
        });
    }

    fn check_attributes(&mut self, element: &Element, pointer: &str) {
        for attr in &element.attributes {
            let n = attr.name.as_str();
            if n == TYPE_ATTRIBUTE || n.starts_with("xsi:") || n.starts_with("xml:") {
                continue;
            }
            self.error(
                element,
                pointer,
                format!("unexpected attribute `{n}` on <{}>", element.name),
                Some(
                    "DDA's XML uses child elements for fields; the only attribute is `type`"
                        .to_owned(),
                ),
            );
        }
    }

    fn declared_type<'e>(&mut self, element: &'e Element, pointer: &str) -> Option<&'e str> {
        let t = element
            .attribute(TYPE_ATTRIBUTE)
            .map(|a| a.value.as_str())?;
        if matches!(
            t,
            "string" | "number" | "boolean" | "null" | "object" | "array"
        ) {
            Some(t)
        } else {
            self.error(
                element,
                pointer,
                format!("unknown type=\"{t}\" on <{}>", element.name),
                Some("type is one of string, number, boolean, null, object, array".to_owned()),
            );
            None
        }
    }

    /// Reads an element's text as `want` (string, number, integer, boolean). Text that is
    /// not of that type stays a string, so that schema validation reports it in the same
    /// words for XML as for JSON.
    fn text_node(&mut self, element: &Element, pointer: &str, want: &str) -> Node {
        let span = element.text_span.unwrap_or(element.span);
        if !element.children.is_empty() {
            self.error(
                element,
                pointer,
                format!(
                    "<{}> should hold a {want}, not child elements",
                    element.name
                ),
                None,
            );
        }
        let raw = element.text.as_str();
        let t = raw.trim();
        let value = match want {
            "number" if is_json_number(t) => Value::Number(t.to_owned()),
            "integer" if is_json_number(t) && !t.contains(['.', 'e', 'E']) => {
                Value::Number(t.to_owned())
            }
            "boolean" if t == "true" || t == "false" => Value::Bool(t == "true"),
            _ => Value::String(raw.to_owned()),
        };
        Node::new(value, span)
    }

    /// Maps one element whose value has `shape`.
    fn value(&mut self, element: &Element, shape: &Shape, pointer: &str) -> Node {
        self.check_attributes(element, pointer);
        let declared = self.declared_type(element, pointer);
        if declared == Some("null") {
            return Node::new(Value::Null, element.span);
        }
        match shape {
            Shape::Any => match declared {
                None | Some("string") => self.text_node(element, pointer, "string"),
                Some("number") => self.text_node(element, pointer, "number"),
                Some("boolean") => self.text_node(element, pointer, "boolean"),
                Some("object") => self.object(element, None, pointer),
                Some("array") => self.any_array(element, pointer),
                Some(_) => Node::new(Value::Null, element.span),
            },
            Shape::String => self.typed(element, declared, "string", pointer),
            Shape::Integer => self.typed(element, declared, "integer", pointer),
            Shape::Number => self.typed(element, declared, "number", pointer),
            Shape::Boolean => self.typed(element, declared, "boolean", pointer),
            Shape::Object(_) => match declared {
                Some(d) if d != "object" => self.value(element, &Shape::Any, pointer),
                _ => self.object(element, Some(shape), pointer),
            },
            // An array nested directly in an array has no element name of its own.
            Shape::Array(_) => self.any_array(element, pointer),
        }
    }

    fn typed(
        &mut self,
        element: &Element,
        declared: Option<&str>,
        want: &str,
        pointer: &str,
    ) -> Node {
        match declared {
            // A declared type wins, so that even a document the schema rejects converts
            // back unchanged; the schema then reports the mismatch.
            Some(d) if d != want => self.value(element, &Shape::Any, pointer),
            _ => self.text_node(element, pointer, want),
        }
    }

    fn any_array(&mut self, element: &Element, pointer: &str) -> Node {
        if element.has_text() {
            self.error(
                element,
                pointer,
                format!(
                    "<{}> is an array: put its items in <item> elements",
                    element.name
                ),
                None,
            );
        }
        let mut items = Vec::new();
        for (i, child) in element.children.iter().enumerate() {
            let p = format!("{pointer}/{i}");
            if child.name != ITEM_ELEMENT {
                self.error(
                    child,
                    &p,
                    format!(
                        "expected <{ITEM_ELEMENT}> inside an array, found <{}>",
                        child.name
                    ),
                    None,
                );
            }
            items.push(self.value(child, &Shape::Any, &p));
        }
        Node::new(Value::Array(items), element.span)
    }

    /// Maps an element holding an object; `shape` is `None` for an untyped object.
    fn object(&mut self, element: &Element, shape: Option<&Shape>, pointer: &str) -> Node {
        if element.has_text() {
            self.error(
                element,
                pointer,
                format!(
                    "<{}> holds fields as child elements, not text",
                    element.name
                ),
                Some("wrap the text in the child element it belongs to".to_owned()),
            );
        }
        let mut members: Vec<NodeMember> = Vec::new();
        for child in &element.children {
            let name = child.name.as_str();
            let member_shape = shape.and_then(|s| s.member(name));
            let p = crate::node::pointer_push(pointer, name);
            let is_list = matches!(member_shape, Some(Shape::Array(_)));
            if let Some(existing) = members.iter_mut().find(|m| m.key == name) {
                if let (true, Value::Array(items), Some(Shape::Array(item_shape))) =
                    (is_list, &mut existing.value.value, member_shape)
                {
                    let p = format!("{p}/{}", items.len());
                    items.push(self.value(child, item_shape, &p));
                } else {
                    self.error(
                        child,
                        &p,
                        format!("<{name}> appears more than once but is not a list"),
                        Some("remove the repeated element".to_owned()),
                    );
                }
                continue;
            }
            let value = match member_shape {
                Some(Shape::Array(item_shape)) => {
                    let empty = child
                        .attribute(TYPE_ATTRIBUTE)
                        .is_some_and(|a| a.value == "array");
                    if empty {
                        self.check_attributes(child, &p);
                        if !child.children.is_empty() || child.has_text() {
                            self.error(
                                child,
                                &p,
                                format!(
                                    "<{name} type=\"array\"/> marks an empty list and holds nothing"
                                ),
                                None,
                            );
                        }
                        Node::new(Value::Array(Vec::new()), child.span)
                    } else {
                        let first = self.value(child, item_shape, &format!("{p}/0"));
                        Node::new(Value::Array(vec![first]), child.span)
                    }
                }
                Some(s) => self.value(child, s, &p),
                None => self.value(child, &Shape::Any, &p),
            };
            members.push(NodeMember {
                key: name.to_owned(),
                key_span: child.span,
                value,
            });
        }
        Node::new(Value::Object(members), element.span)
    }
}

/// Maps an XML element onto the JSON shape `shape` (the root element's own name is not
/// part of the value).
///
/// # Errors
///
/// Every place where the XML does not fit the shape (text where fields belong, a word where
/// a number belongs, an unknown attribute...). The tree is still built as far as it can be.
pub fn xml_to_node(root: &Element, shape: &Shape) -> Result<Node, (Node, Vec<MappingError>)> {
    let mut m = XmlToNode { errors: Vec::new() };
    let node = m.value(root, shape, "");
    if m.errors.is_empty() {
        Ok(node)
    } else {
        Err((node, m.errors))
    }
}

/// Why a value cannot be written as XML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ToXmlError {
    /// JSON pointer of the value.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// Whether `name` can be an XML element name as written (no prefix).
#[must_use]
pub fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

/// Whether XML 1.0 can hold `c` at all (even as a character reference).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

struct NodeToXml {
    out: String,
}

impl NodeToXml {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str, ty: Option<&str>, level: usize) {
        self.indent(level);
        self.out.push('<');
        self.out.push_str(name);
        if let Some(t) = ty {
            self.out.push_str(&format!(" {TYPE_ATTRIBUTE}=\"{t}\""));
        }
    }

    fn element(
        &mut self,
        name: &str,
        node: &Node,
        shape: &Shape,
        level: usize,
        pointer: &str,
    ) -> Result<(), ToXmlError> {
        if !is_xml_name(name) {
            return Err(ToXmlError {
                pointer: pointer.to_owned(),
                message: format!("the key {name:?} is not a valid XML element name"),
            });
        }
        let untyped = matches!(shape, Shape::Any);
        match &node.value {
            Value::Null => {
                self.open(name, Some("null"), level);
                self.out.push_str("/>\n");
            }
            Value::Bool(b) => {
                self.open(name, untyped.then_some("boolean"), level);
                self.out.push_str(&format!(">{b}</{name}>\n"));
            }
            Value::Number(n) => {
                let ty = (untyped || matches!(shape, Shape::String)).then_some("number");
                self.open(name, ty, level);
                self.out.push_str(&format!(">{n}</{name}>\n"));
            }
            Value::String(s) => {
                if let Some(bad) = s.chars().find(|c| !is_xml_char(*c)) {
                    return Err(ToXmlError {
                        pointer: pointer.to_owned(),
                        message: format!(
                            "the character U+{:04X} cannot be written in XML 1.0",
                            u32::from(bad)
                        ),
                    });
                }
                let ty = (!matches!(shape, Shape::String | Shape::Any)).then_some("string");
                self.open(name, ty, level);
                self.out.push('>');
                // XML readers turn a carriage return into a line feed unless it is a reference.
                self.out.push_str(&escape(s).replace('\r', "&#13;"));
                self.out.push_str(&format!("</{name}>\n"));
            }
            Value::Array(items) => {
                // Only reached for arrays in untyped positions or nested arrays; arrays in
                // typed positions are written as repeated elements by `members`.
                self.open(name, Some("array"), level);
                if items.is_empty() {
                    self.out.push_str("/>\n");
                } else {
                    self.out.push_str(">\n");
                    for (i, item) in items.iter().enumerate() {
                        self.element(
                            ITEM_ELEMENT,
                            item,
                            &Shape::Any,
                            level + 1,
                            &format!("{pointer}/{i}"),
                        )?;
                    }
                    self.indent(level);
                    self.out.push_str(&format!("</{name}>\n"));
                }
            }
            Value::Object(members) => {
                let typed = matches!(shape, Shape::Object(_));
                self.open(name, (!typed).then_some("object"), level);
                if members.is_empty() {
                    self.out.push_str("/>\n");
                } else {
                    self.out.push_str(">\n");
                    self.members(members, typed.then_some(shape), level + 1, pointer)?;
                    self.indent(level);
                    self.out.push_str(&format!("</{name}>\n"));
                }
            }
        }
        Ok(())
    }

    fn members(
        &mut self,
        members: &[NodeMember],
        shape: Option<&Shape>,
        level: usize,
        pointer: &str,
    ) -> Result<(), ToXmlError> {
        for m in members {
            let p = crate::node::pointer_push(pointer, &m.key);
            let member_shape = shape.and_then(|s| s.member(&m.key)).unwrap_or(&Shape::Any);
            match (member_shape, &m.value.value) {
                (Shape::Array(item_shape), Value::Array(items)) => {
                    if items.is_empty() {
                        self.open(&m.key, Some("array"), level);
                        self.out.push_str("/>\n");
                    }
                    for (i, item) in items.iter().enumerate() {
                        if matches!(item.value, Value::Array(_))
                            && !matches!(**item_shape, Shape::Any)
                        {
                            return Err(ToXmlError {
                                pointer: format!("{p}/{i}"),
                                message: "a list directly inside a list has no XML form here"
                                    .to_owned(),
                            });
                        }
                        self.element(&m.key, item, item_shape, level, &format!("{p}/{i}"))?;
                    }
                }
                (s, _) => self.element(&m.key, &m.value, s, level, &p)?,
            }
        }
        Ok(())
    }
}

/// Writes `node` as an XML document with root element `root`, steered by `shape`.
///
/// # Errors
///
/// A member name that is not a valid XML name, or a list nested directly in a typed list.
pub fn node_to_xml(node: &Node, root: &str, shape: &Shape) -> Result<String, ToXmlError> {
    let mut w = NodeToXml {
        out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
    };
    w.element(root, node, shape, 0, "")?;
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::EntityKind;
    use crate::schema::schemas;

    fn roundtrip_json(kind: EntityKind, json: &str) -> (String, serde_json::Value) {
        let shape = schemas().kind_shape(kind);
        let node = crate::json::parse(json).unwrap();
        let xml = node_to_xml(&node, kind.info().element, shape).unwrap();
        let element = crate::xml::parse(&xml).unwrap();
        let back = xml_to_node(&element, shape).unwrap_or_else(|(_, e)| panic!("{e:?}\n{xml}"));
        (xml, back.to_json())
    }

    #[test]
    fn numbers_stay_numbers_and_strings_stay_strings() {
        let json = r#"{"id": "x", "dataSourceDefinitionReferenceID": "d",
            "dataSourceDefinitionInterfaceParameters": {"parameter": [
              {"key": "port", "value": 1883}, {"key": "host", "value": "1883"},
              {"key": "tls", "value": false}, {"key": "opts", "value": {"a": [1, "b", null]}},
              {"key": "empty", "value": []}, {"key": "nothing", "value": null}]}}"#;
        let (xml, back) = roundtrip_json(EntityKind::DataSourceManifest, json);
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap(),
            "{xml}"
        );
        assert!(xml.contains("<value type=\"number\">1883</value>"), "{xml}");
        assert!(xml.contains("<value>1883</value>"), "{xml}");
    }

    #[test]
    fn lists_are_repeated_elements_and_an_empty_list_is_marked() {
        let json =
            r#"{"_id": "a", "communicationProtocol": "MQTT", "parameters": {"parameter": []}}"#;
        let (xml, back) = roundtrip_json(EntityKind::DataInterface, json);
        assert!(xml.contains("<parameter type=\"array\"/>"), "{xml}");
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
    }

    #[test]
    fn typed_positions_read_plain_text() {
        let xml = "<liveDataSet><mobile>false</mobile><observation><value>210</value></observation></liveDataSet>";
        let element = crate::xml::parse(xml).unwrap();
        let node = xml_to_node(&element, schemas().kind_shape(EntityKind::LiveDataSet)).unwrap();
        assert_eq!(
            node.to_json(),
            serde_json::json!({"mobile": false, "observation": [{"value": "210"}]})
        );
    }

    #[test]
    fn misfits_are_reported_with_their_pointer() {
        let xml = "<dataInterface>\n<parameters><parameter><name>p<b/></name><required>yes</required></parameter></parameters>\n<id k=\"v\">x</id></dataInterface>";
        let element = crate::xml::parse(xml).unwrap();
        let (_, errors) =
            xml_to_node(&element, schemas().kind_shape(EntityKind::DataInterface)).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].pointer, "/parameters/parameter/0/name");
        assert!(
            errors[0].message.contains("not child elements"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].pointer, "/id");
        assert!(errors[1].message.contains("unexpected attribute `k`"));
    }

    #[test]
    fn keys_that_are_not_xml_names_are_refused() {
        let node = crate::json::parse(r#"{"id": "a", "value": {"type": "object", "bad key": 1}}"#)
            .unwrap();
        let err = node_to_xml(
            &node,
            "observation",
            schemas().kind_shape(EntityKind::Observation),
        )
        .unwrap_err();
        assert_eq!(err.pointer, "/value/bad key");
    }
}
