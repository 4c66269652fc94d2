//! `dda convert`: one document from JSON to XML or back, losslessly.

use std::path::Path;

use crate::bundle::{Bundle, DocumentKind, Syntax};
use crate::diagnostic::Diagnostic;
use crate::kind::EntityKind;

/// Why a document could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The document cannot be read (syntax errors, unknown kind, XML that does not fit).
    #[error("the document cannot be read")]
    Unreadable(Vec<Diagnostic>),
    /// A value has no representation in the target syntax.
    #[error(transparent)]
    NotRepresentable(#[from] crate::mapping::ToXmlError),
    /// Several documents of one text, some of them bundles already, cannot be one XML
    /// document.
    #[error("several documents, some of them bundles, cannot be written as one XML document")]
    NotBundled,
}

/// Converts the document `text` (read from `path`, for messages and folder-based kind
/// recognition) to `to`. Converting to the syntax it is already in re-formats it. A JSON
/// text holding several documents one after another is converted whole: to JSON as as
/// many documents, to XML as one bundle holding them.
///
/// # Errors
///
/// The document cannot be read, or holds a value the target syntax cannot write.
pub fn convert(path: &Path, text: &str, to: Syntax) -> Result<String, ConvertError> {
    let from = Syntax::from_path(path).unwrap_or_else(|| Syntax::sniff(text));
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(EntityKind::from_folder);
    let mut bundle = Bundle::default();
    let first = bundle.add_document(path.to_owned(), text.to_owned(), from, folder);
    let blocking: Vec<Diagnostic> = bundle
        .diagnostics
        .iter()
        .filter(|d| {
            matches!(
                d.code,
                "json-syntax"
                    | "xml-syntax"
                    | "xml-mapping"
                    | "unknown-kind"
                    | "unknown-entity"
                    | "unknown-root-element"
                    | "not-an-object"
            )
        })
        .cloned()
        .collect();
    if !blocking.is_empty() {
        return Err(ConvertError::Unreadable(blocking));
    }
    // A JSON text may hold several documents one after another (the paper's Table 7: three
    // LiveDataSets): each is converted.
    let documents = &bundle.files[first..];
    let mut read = Vec::with_capacity(documents.len());
    for file in documents {
        let (Some(root), Some(kind)) = (&file.root, file.kind) else {
            return Err(ConvertError::Unreadable(blocking));
        };
        read.push((root, kind));
    }
    match (to, read.as_slice()) {
        (_, []) => Err(ConvertError::Unreadable(blocking)),
        (Syntax::Json, documents) => Ok(documents
            .iter()
            .map(|(root, _)| crate::json::to_string_pretty(root))
            .collect::<Vec<_>>()
            .join("\n")),
        (Syntax::Xml, [(root, kind)]) => Ok(crate::mapping::node_to_xml(
            root,
            kind.element(),
            kind.shape(),
        )?),
        // XML has one root: several documents become one bundle of them, by kind.
        (Syntax::Xml, documents) => {
            let mut groups: indexmap::IndexMap<&str, (&str, Vec<serde_json::Value>)> =
                indexmap::IndexMap::new();
            for (root, kind) in documents {
                let DocumentKind::Entity(entity) = kind else {
                    return Err(ConvertError::NotBundled);
                };
                let info = entity.info();
                let value: serde_json::Value =
                    serde_json::from_str(&crate::json::to_string_pretty(root))
                        .map_err(|_| ConvertError::NotBundled)?;
                groups
                    .entry(info.plural)
                    .or_insert_with(|| (info.element, Vec::new()))
                    .1
                    .push(value);
            }
            let mut doc = serde_json::Map::new();
            doc.insert("kind".into(), serde_json::Value::String("Bundle".into()));
            for (plural, (element, values)) in groups {
                let mut list = serde_json::Map::new();
                list.insert(element.to_owned(), serde_json::Value::Array(values));
                doc.insert(plural.to_owned(), serde_json::Value::Object(list));
            }
            convert(
                &path.with_extension("json"),
                &serde_json::Value::Object(doc).to_string(),
                Syntax::Xml,
            )
        }
    }
}
