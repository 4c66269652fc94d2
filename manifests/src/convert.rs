//! `dda convert`: one document from JSON to XML or back, losslessly.

use std::path::Path;

use crate::bundle::{Bundle, Syntax};
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
}

/// Converts the document `text` (read from `path`, for messages and folder-based kind
/// recognition) to `to`. Converting to the syntax it is already in re-formats it.
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
    let index = bundle.add_document(path.to_owned(), text.to_owned(), from, folder);
    let file = &bundle.files[index];
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
    let (Some(root), Some(kind)) = (&file.root, file.kind) else {
        return Err(ConvertError::Unreadable(blocking));
    };
    if !blocking.is_empty() {
        return Err(ConvertError::Unreadable(blocking));
    }
    Ok(match to {
        Syntax::Json => crate::json::to_string_pretty(root),
        Syntax::Xml => crate::mapping::node_to_xml(root, kind.element(), kind.shape())?,
    })
}
