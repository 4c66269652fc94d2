//! XSDs for XML authoring, generated from the JSON Schemas' shapes.
//!
//! The JSON Schemas stay the single source of truth; an XSD is derived mechanically so
//! that XML editors can complete and check element names, nesting, and number/boolean
//! text. Members may come in any order (XSD 1.0 cannot express "any order, some
//! repeated"), so required members are checked by DDA itself, not by the XSD.

use std::fmt::Write as _;

use crate::bundle::DocumentKind;
use crate::mapping::TYPE_ATTRIBUTE;
use crate::schema::Shape;

/// The XSD for documents of `kind`.
#[must_use]
pub fn generate(kind: DocumentKind, schema_name: &str) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<!-- Generated from schemas/{schema_name}.schema.json by the command: dda schema {schema_name} (format xsd). Do not edit. -->"
    );
    out.push_str("<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" elementFormDefault=\"unqualified\">\n");
    element(&mut out, kind.element(), kind.shape(), None, 1, true);
    out.push_str(COMMON_TYPES);
    out.push_str("</xs:schema>\n");
    out
}

const COMMON_TYPES: &str = r#"  <xs:simpleType name="valueType">
    <xs:restriction base="xs:string">
      <xs:enumeration value="string"/>
      <xs:enumeration value="number"/>
      <xs:enumeration value="boolean"/>
      <xs:enumeration value="null"/>
      <xs:enumeration value="object"/>
      <xs:enumeration value="array"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="jsonBoolean">
    <xs:restriction base="xs:string">
      <xs:pattern value="\s*(true|false)\s*"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="jsonNumber">
    <xs:restriction base="xs:string">
      <xs:pattern value="\s*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+\-]?[0-9]+)?\s*"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="jsonInteger">
    <xs:restriction base="xs:string">
      <xs:pattern value="\s*-?(0|[1-9][0-9]*)\s*"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="anyValue" mixed="true">
    <xs:sequence>
      <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
    <xs:attribute name="type" type="valueType"/>
  </xs:complexType>
"#;

fn pad(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn documentation(out: &mut String, doc: Option<&str>, level: usize) {
    if let Some(doc) = doc {
        pad(out, level);
        out.push_str("<xs:annotation><xs:documentation>");
        out.push_str(&crate::xml::escape(doc));
        out.push_str("</xs:documentation></xs:annotation>\n");
    }
}

fn scalar(out: &mut String, name: &str, base: &str, doc: Option<&str>, level: usize, occurs: &str) {
    pad(out, level);
    let _ = writeln!(out, "<xs:element name=\"{name}\"{occurs}>");
    documentation(out, doc, level + 1);
    pad(out, level + 1);
    let _ = writeln!(
        out,
        "<xs:complexType><xs:simpleContent><xs:extension base=\"{base}\"><xs:attribute name=\"{TYPE_ATTRIBUTE}\" type=\"valueType\"/></xs:extension></xs:simpleContent></xs:complexType>"
    );
    pad(out, level);
    out.push_str("</xs:element>\n");
}

fn element(
    out: &mut String,
    name: &str,
    shape: &Shape,
    doc: Option<&str>,
    level: usize,
    global: bool,
) {
    let occurs = if global {
        ""
    } else {
        " minOccurs=\"0\" maxOccurs=\"unbounded\""
    };
    match shape {
        Shape::Any => {
            pad(out, level);
            let _ = write!(out, "<xs:element name=\"{name}\" type=\"anyValue\"{occurs}");
            if let Some(doc) = doc {
                out.push_str(">\n");
                documentation(out, Some(doc), level + 1);
                pad(out, level);
                out.push_str("</xs:element>\n");
            } else {
                out.push_str("/>\n");
            }
        }
        Shape::String => scalar(out, name, "xs:string", doc, level, occurs),
        Shape::Integer => scalar(out, name, "jsonInteger", doc, level, occurs),
        Shape::Number => scalar(out, name, "jsonNumber", doc, level, occurs),
        Shape::Boolean => scalar(out, name, "jsonBoolean", doc, level, occurs),
        // A list member is its item element, repeated; the choice below is unbounded anyway.
        Shape::Array(item) => element(out, name, item, doc, level, global),
        Shape::Object(obj) => {
            pad(out, level);
            let _ = writeln!(out, "<xs:element name=\"{name}\"{occurs}>");
            documentation(out, doc, level + 1);
            pad(out, level + 1);
            out.push_str("<xs:complexType>\n");
            if !obj.properties.is_empty() {
                pad(out, level + 2);
                out.push_str("<xs:choice minOccurs=\"0\" maxOccurs=\"unbounded\">\n");
                for (member, m) in &obj.properties {
                    element(
                        out,
                        member,
                        &m.shape,
                        m.description.as_deref(),
                        level + 3,
                        false,
                    );
                }
                pad(out, level + 2);
                out.push_str("</xs:choice>\n");
            }
            pad(out, level + 2);
            let _ = writeln!(
                out,
                "<xs:attribute name=\"{TYPE_ATTRIBUTE}\" type=\"valueType\"/>"
            );
            pad(out, level + 1);
            out.push_str("</xs:complexType>\n");
            pad(out, level);
            out.push_str("</xs:element>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::KINDS;

    /// The committed XSDs are exactly what the schemas generate (regenerate with
    /// `cargo run -- schema --format xsd NAME > schemas/xsd/NAME.xsd`).
    #[test]
    fn committed_xsds_match_the_json_schemas() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/xsd");
        let mut kinds: Vec<(DocumentKind, &str)> = KINDS
            .iter()
            .map(|k| (DocumentKind::Entity(k.kind), k.schema))
            .collect();
        kinds.push((DocumentKind::Bundle, crate::kind::BUNDLE_SCHEMA));
        for (kind, name) in kinds {
            let committed = std::fs::read_to_string(dir.join(format!("{name}.xsd")))
                .unwrap_or_else(|e| panic!("schemas/xsd/{name}.xsd: {e}"));
            assert_eq!(
                committed,
                generate(kind, name),
                "schemas/xsd/{name}.xsd is stale; regenerate it"
            );
        }
    }
}
