//! Loading documents into a [`Bundle`]: reading files, recognizing what each document is,
//! mapping XML, and checking structure against the JSON Schemas (phase one of validation).
//!
//! Every problem becomes a [`Diagnostic`] placed at its file, line and column; a document
//! with problems does not stop the others from loading.

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Severity};
use crate::kind::{BUNDLE_ELEMENT, BUNDLE_MARKER, Entity, EntityKind, KINDS};
use crate::node::{LineIndex, Node, Span, Value, pointer_tokens};
use crate::schema::{Shape, schemas};
use crate::suggest::did_you_mean;

/// The two syntaxes a document may be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syntax {
    /// JSON.
    Json,
    /// XML.
    Xml,
}

impl Syntax {
    /// The syntax a file name's extension says, if any.
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "xml" => Some(Self::Xml),
            _ => None,
        }
    }

    /// Guesses from the first non-blank character.
    #[must_use]
    pub fn sniff(text: &str) -> Self {
        if text.trim_start().starts_with('<') {
            Self::Xml
        } else {
            Self::Json
        }
    }
}

/// What a whole document holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// One entity.
    Entity(EntityKind),
    /// Many entities grouped by kind.
    Bundle,
}

impl DocumentKind {
    /// The schema documents of this kind are checked against.
    #[must_use]
    pub fn schema_name(self) -> &'static str {
        match self {
            Self::Entity(k) => k.info().schema,
            Self::Bundle => crate::kind::BUNDLE_SCHEMA,
        }
    }

    /// The XML root element.
    #[must_use]
    pub fn element(self) -> &'static str {
        match self {
            Self::Entity(k) => k.info().element,
            Self::Bundle => BUNDLE_ELEMENT,
        }
    }

    /// The shape of documents of this kind.
    #[must_use]
    pub fn shape(self) -> &'static Shape {
        match self {
            Self::Entity(k) => schemas().kind_shape(k),
            Self::Bundle => schemas().bundle_shape(),
        }
    }
}

/// One document read from a file (or an API request body).
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Where it came from.
    pub path: PathBuf,
    /// Its syntax.
    pub syntax: Syntax,
    /// Its text.
    pub text: String,
    /// Line index of the text.
    pub lines: LineIndex,
    /// The document as a tree, when it could be read.
    pub root: Option<Node>,
    /// What the document holds, when that could be told.
    pub kind: Option<DocumentKind>,
    /// Byte ranges of secret values: never shown.
    pub masked: Vec<Span>,
}

impl SourceFile {
    /// Where the value at `pointer` was written: the value itself when the pointer resolves,
    /// else the nearest enclosing value (where a missing member belongs).
    #[must_use]
    pub fn span_of(&self, pointer: &str) -> Span {
        self.root
            .as_ref()
            .map_or(Span::default(), |r| r.locate(pointer).0.span)
    }

    /// Where the member named by the last token of `pointer` was written (its key), falling
    /// back to the value.
    #[must_use]
    pub fn key_span_of(&self, pointer: &str) -> Span {
        self.root
            .as_ref()
            .map_or(Span::default(), |r| match r.locate(pointer) {
                (_, Some(key)) => key,
                (node, None) => node.span,
            })
    }

    /// The subtree at `pointer`.
    #[must_use]
    pub fn node_at(&self, pointer: &str) -> Option<&Node> {
        let root = self.root.as_ref()?;
        let mut node = root;
        for token in pointer_tokens(pointer) {
            node = match &node.value {
                Value::Object(members) => &members.iter().find(|m| m.key == token)?.value,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// A diagnostic placed at the value at `pointer`.
    #[must_use]
    pub fn place(&self, d: Diagnostic, pointer: &str) -> Diagnostic {
        let span = self.span_of(pointer);
        d.at_pointer(pointer)
            .in_file(&self.path, &self.text, &self.lines, span)
    }

    /// A diagnostic placed at the key of the member at `pointer`.
    #[must_use]
    pub fn place_key(&self, d: Diagnostic, pointer: &str) -> Diagnostic {
        let span = self.key_span_of(pointer);
        d.at_pointer(pointer)
            .in_file(&self.path, &self.text, &self.lines, span)
    }

    /// The view renderers need to show snippets of this file.
    #[must_use]
    pub fn view(&self) -> crate::diagnostic::SourceView<'_> {
        crate::diagnostic::SourceView {
            text: &self.text,
            lines: &self.lines,
            masked: &self.masked,
        }
    }
}

/// An entity and where it was read from.
#[derive(Clone, Debug)]
pub struct LoadedEntity {
    /// Index into [`Bundle::files`].
    pub file: usize,
    /// JSON pointer of the entity within its document (`""` for a one-entity document).
    pub pointer: String,
    /// The entity (shared: a repository hands its stored entities to validation without
    /// copying them).
    pub entity: std::sync::Arc<Entity>,
}

/// Why documents could not be read at all (as opposed to being invalid).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A directory holds no `.json` or `.xml` file.
    #[error("{0} holds no .json or .xml documents")]
    Empty(PathBuf),
}

/// Documents and the entities read from them.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// Every document read.
    pub files: Vec<SourceFile>,
    /// Every entity read, in document order.
    pub entities: Vec<LoadedEntity>,
    /// Problems found so far.
    pub diagnostics: Vec<Diagnostic>,
}

/// Files under a directory that hold documents (`.json`, `.xml`), recursively, sorted,
/// hidden entries skipped.
///
/// # Errors
///
/// A directory cannot be read.
pub fn document_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            document_files(&path, out)?;
        } else if Syntax::from_path(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

impl Bundle {
    /// Loads every document at `paths` (files, or directories searched recursively for
    /// `.json` and `.xml` files) and checks each against its schema.
    ///
    /// # Errors
    ///
    /// A path that cannot be read, or a directory with no documents. Invalid documents are
    /// not errors here: they become diagnostics.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, LoadError> {
        let mut bundle = Self::default();
        for path in paths {
            let path = path.as_ref();
            let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
                path: path.to_owned(),
                source,
            })?;
            let files = if meta.is_dir() {
                let mut files = Vec::new();
                document_files(path, &mut files)?;
                if files.is_empty() {
                    return Err(LoadError::Empty(path.to_owned()));
                }
                files
            } else {
                vec![path.to_owned()]
            };
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
                    path: file.clone(),
                    source,
                })?;
                let folder = file
                    .parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .and_then(EntityKind::from_folder);
                let syntax = Syntax::from_path(&file).unwrap_or_else(|| Syntax::sniff(&text));
                bundle.add_document(file, text, syntax, folder);
            }
        }
        Ok(bundle)
    }

    /// Reads one document into the bundle. `folder` is the kind its folder implies, if any.
    /// A JSON text holding several values one after another (JSON lines, or concatenated
    /// objects as in the paper's Table 7) is read as that many documents of the same file.
    /// Returns the index of the (first) new file.
    pub fn add_document(
        &mut self,
        path: PathBuf,
        text: String,
        syntax: Syntax,
        folder: Option<EntityKind>,
    ) -> usize {
        let lines = LineIndex::new(&text);
        let first = self.files.len();
        let mut file = SourceFile {
            path,
            syntax,
            text,
            lines,
            root: None,
            kind: None,
            masked: Vec::new(),
        };
        let parsed: Vec<(Option<Node>, Option<DocumentKind>, Vec<Diagnostic>)> = match syntax {
            Syntax::Json => match crate::json::parse_stream(&file.text) {
                Ok(nodes) => nodes
                    .into_iter()
                    .map(|node| {
                        file.root = Some(node);
                        let (kind, diags) =
                            match document_kind(file.root.as_ref().expect("just set"), folder) {
                                Ok(kind) => (Some(kind), Vec::new()),
                                Err(pending) => (None, vec![pending.place_in(&file)]),
                            };
                        (file.root.take(), kind, diags)
                    })
                    .collect(),
                Err(e) => {
                    let d =
                        Diagnostic::error("json-syntax", format!("invalid JSON: {}", e.message))
                            .with_hint_opt(e.hint);
                    vec![(None, None, vec![at(&file, d, e.span)])]
                }
            },
            Syntax::Xml => vec![read_xml(&file)],
        };
        for (root, kind, mut diags) in parsed {
            let index = self.files.len();
            self.files.push(SourceFile {
                root,
                kind,
                ..file.clone()
            });
            if let Some(kind) = kind {
                diags.extend(check_schema(&self.files[index], kind));
                self.extract(index, kind, &diags);
            }
            self.diagnostics.extend(diags);
        }
        first
    }

    /// Adds an entity read and checked before (a repository's stored entity): it takes part
    /// in the cross-entity checks — references, ids — without being written out and parsed
    /// again. Its file has no text: diagnostics about it name its path and pointer only.
    pub fn add_entity(&mut self, path: PathBuf, entity: std::sync::Arc<Entity>) -> usize {
        let index = self.files.len();
        self.files.push(SourceFile {
            path,
            syntax: Syntax::Json,
            text: String::new(),
            lines: LineIndex::new(""),
            root: None,
            kind: Some(DocumentKind::Entity(entity.kind())),
            masked: Vec::new(),
        });
        self.entities.push(LoadedEntity {
            file: index,
            pointer: String::new(),
            entity,
        });
        index
    }

    /// Reads the entities of a checked document. An entity with structural errors is read
    /// without the members at fault, when it can be ([`salvage`]), and is otherwise left out.
    fn extract(&mut self, file: usize, kind: DocumentKind, diags: &[Diagnostic]) {
        let Some(root) = &self.files[file].root else {
            return;
        };
        let mut found: Vec<(EntityKind, String)> = Vec::new();
        match kind {
            DocumentKind::Entity(k) => found.push((k, String::new())),
            DocumentKind::Bundle => {
                for info in KINDS {
                    let items = root
                        .get(info.plural)
                        .and_then(|list| list.get(info.element))
                        .and_then(Node::as_array)
                        .map_or(0, <[Node]>::len);
                    for i in 0..items {
                        found.push((info.kind, format!("/{}/{}/{i}", info.plural, info.element)));
                    }
                }
            }
        }
        let broken = |pointer: &str| {
            let under = format!("{pointer}/");
            diags
                .iter()
                .any(|d| d.is_error() && (d.pointer == pointer || d.pointer.starts_with(&under)))
        };
        let mut new = Vec::new();
        for (k, pointer) in found {
            let Some(node) = self.files[file].node_at(&pointer) else {
                continue;
            };
            if broken(&pointer) {
                // Its errors are reported; read what is left of it, so that the checks of
                // the next phase (its references, who refers to it) still run rather than
                // being hidden by one wrong field.
                if let Some(entity) = salvage(k, node.to_json(), &pointer, diags) {
                    new.push(LoadedEntity {
                        file,
                        pointer,
                        entity: entity.into(),
                    });
                }
                continue;
            }
            match Entity::from_json(k, node.to_json()) {
                Ok(entity) => new.push(LoadedEntity {
                    file,
                    pointer,
                    entity: entity.into(),
                }),
                Err(e) => {
                    let d = Diagnostic::error(
                        "unreadable-entity",
                        format!("cannot read this {k}: {e}"),
                    )
                    .with_hint(
                        "this is a gap between DDA's schema and its model; please report it",
                    );
                    self.diagnostics.push(self.files[file].place(d, &pointer));
                }
            }
        }
        self.entities.extend(new);
    }

    /// The source file an entity came from.
    #[must_use]
    pub fn file_of(&self, entity: &LoadedEntity) -> &SourceFile {
        &self.files[entity.file]
    }

    /// Whether any error has been found.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Diagnostics in file order, then line, then column; errors before warnings at a tie.
    pub fn sort_diagnostics(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            (
                &a.file,
                a.position.map(|p| (p.line, p.column)),
                a.severity,
                &a.message,
            )
                .cmp(&(
                    &b.file,
                    b.position.map(|p| (p.line, p.column)),
                    b.severity,
                    &b.message,
                ))
        });
        self.diagnostics.dedup();
    }

    /// The file a diagnostic points into, for rendering snippets.
    #[must_use]
    pub fn file_for(&self, d: &Diagnostic) -> Option<&SourceFile> {
        let path = d.file.as_ref()?;
        self.files.iter().find(|f| &f.path == path)
    }
}

fn at(file: &SourceFile, d: Diagnostic, span: Span) -> Diagnostic {
    d.in_file(&file.path, &file.text, &file.lines, span)
}

fn kind_names() -> String {
    KINDS
        .iter()
        .map(|k| k.marker)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A diagnostic waiting to be placed at a pointer of a file.
struct Pending {
    d: Diagnostic,
    pointer: String,
}

impl Pending {
    fn place_in(self, file: &SourceFile) -> Diagnostic {
        file.place(self.d, &self.pointer)
    }
}

fn document_kind(node: &Node, folder: Option<EntityKind>) -> Result<DocumentKind, Box<Pending>> {
    let Value::Object(members) = &node.value else {
        return Err(Box::new(Pending {
            d: Diagnostic::error(
                "not-an-object",
                format!(
                    "a manifest document is a JSON object, not {}",
                    node.type_name()
                ),
            )
            .with_hint("write the entity's fields between { and }"),
            pointer: String::new(),
        }));
    };
    if let Some(marker) = node.get("kind") {
        let name = marker.as_str().unwrap_or_default();
        if name == BUNDLE_MARKER {
            return Ok(DocumentKind::Bundle);
        }
        if let Some(info) = KINDS.iter().find(|k| k.marker == name) {
            return Ok(DocumentKind::Entity(info.kind));
        }
        let markers = KINDS.iter().map(|k| k.marker).chain([BUNDLE_MARKER]);
        return Err(Box::new(Pending {
            d: Diagnostic::error(
                "unknown-kind",
                format!("unknown kind {}", serde_json::Value::from(name)),
            )
            .with_hint(
                did_you_mean(name, markers)
                    .unwrap_or_else(|| format!("kind is one of {}, Bundle", kind_names())),
            ),
            pointer: "/kind".to_owned(),
        }));
    }
    if let Some(k) = folder {
        return Ok(DocumentKind::Entity(k));
    }
    if members
        .iter()
        .any(|m| KINDS.iter().any(|k| k.plural == m.key))
    {
        return Ok(DocumentKind::Bundle);
    }
    EntityKind::from_fields(node).map(DocumentKind::Entity).ok_or_else(|| Box::new(Pending {
        d: Diagnostic::error("unknown-entity", "cannot tell which kind of entity this document is")
            .with_hint(format!(
                "add a \"kind\" member (one of {}, Bundle), or put the file in a folder named after its kind (data-interfaces/, analytics-manifests/, ...)",
                kind_names()
            )),
        pointer: String::new(),
    }))
}

/// Parses an XML document, tells what it holds from its root element, and maps it.
fn read_xml(file: &SourceFile) -> (Option<Node>, Option<DocumentKind>, Vec<Diagnostic>) {
    let root = match crate::xml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => {
            let d = Diagnostic::error("xml-syntax", format!("invalid XML: {}", e.message))
                .with_hint_opt(e.hint);
            return (None, None, vec![at(file, d, e.span)]);
        }
    };
    let kind = if root.name == BUNDLE_ELEMENT {
        DocumentKind::Bundle
    } else if let Some(info) = KINDS.iter().find(|k| k.element == root.name) {
        DocumentKind::Entity(info.kind)
    } else {
        let elements = KINDS.iter().map(|k| k.element).chain([BUNDLE_ELEMENT]);
        let d = Diagnostic::error(
            "unknown-root-element",
            format!("<{}> is not a DDA document", root.name),
        )
        .with_hint(did_you_mean(&root.name, elements).unwrap_or_else(|| {
            format!(
                "the root element is one of {}, bundle",
                KINDS
                    .iter()
                    .map(|k| k.element)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }));
        return (None, None, vec![at(file, d, root.span)]);
    };
    match crate::mapping::xml_to_node(&root, kind.shape()) {
        Ok(node) => (Some(node), Some(kind), Vec::new()),
        Err((node, errors)) => {
            let diags = errors
                .into_iter()
                .map(|e| {
                    at(
                        file,
                        Diagnostic::error("xml-mapping", e.message)
                            .with_hint_opt(e.hint)
                            .at_pointer(e.pointer),
                        e.span,
                    )
                })
                .collect();
            (Some(node), Some(kind), diags)
        }
    }
}

/// The shape at `pointer` within `shape`.
fn shape_at<'s>(shape: &'s Shape, pointer: &str) -> Option<&'s Shape> {
    let mut s = shape;
    for token in pointer_tokens(pointer) {
        s = match s {
            Shape::Object(_) => s.member(&token)?,
            Shape::Array(item) => item,
            _ => return None,
        };
    }
    Some(s)
}

/// Phase one: the document against its JSON Schema.
fn check_schema(file: &SourceFile, kind: DocumentKind) -> Vec<Diagnostic> {
    let Some(root) = &file.root else {
        return Vec::new();
    };
    schema_diagnostics(kind, &root.to_json())
        .into_iter()
        .map(|(d, at)| match at {
            At::Key(p) => file.place_key(d, &p),
            At::Value(p) => file.place(d, &p),
        })
        .collect()
}

/// Where a schema diagnostic belongs.
enum At {
    /// At the key of the member at this pointer.
    Key(String),
    /// At the value at this pointer.
    Value(String),
}

/// The problems of `instance`, a document of `kind`, against its schema, each with its
/// JSON pointer (set on the diagnostic) but no file: what a reader of documents that are
/// not files (the rows of a bulk import) reports by line.
#[must_use]
pub fn schema_problems(kind: EntityKind, instance: &serde_json::Value) -> Vec<Diagnostic> {
    schema_diagnostics(DocumentKind::Entity(kind), instance)
        .into_iter()
        .map(|(d, at)| match at {
            At::Key(p) | At::Value(p) => d.at_pointer(&p),
        })
        .collect()
}

fn schema_diagnostics(kind: DocumentKind, instance: &serde_json::Value) -> Vec<(Diagnostic, At)> {
    let Some(validator) = schemas().validator(kind.schema_name()) else {
        return Vec::new();
    };
    let at = |pointer: &str| {
        instance
            .pointer(pointer)
            .unwrap_or(&serde_json::Value::Null)
    };
    let mut out = Vec::new();
    for error in validator.iter_errors(instance) {
        let pointer = error.instance_path().as_str().to_owned();
        let schema_path = error.schema_path().as_str().to_owned();
        use jsonschema::error::ValidationErrorKind as K;
        match error.kind() {
            K::AdditionalProperties { unexpected } => {
                let known = shape_at(kind.shape(), &pointer)
                    .map(Shape::member_names)
                    .unwrap_or_default();
                for name in unexpected {
                    let p = crate::node::pointer_push(&pointer, name);
                    let at_bundle_root = kind == DocumentKind::Bundle && pointer.is_empty();
                    let d = if at_bundle_root {
                        Diagnostic::error(
                            "unknown-field",
                            format!(
                                "unknown bundle member `{name}`: its contents would be ignored"
                            ),
                        )
                    } else {
                        Diagnostic::warning(
                            "unknown-field",
                            format!("unknown field `{name}` is ignored"),
                        )
                    };
                    let hint = did_you_mean(name, known.iter().copied())
                        .unwrap_or_else(|| format!("known fields here: {}", known.join(", ")));
                    out.push((d.with_hint(hint), At::Key(p)));
                }
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let description = shape_at(kind.shape(), &pointer)
                    .and_then(|s| match s {
                        Shape::Object(o) => {
                            o.properties.get(name).and_then(|m| m.description.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                let d =
                    Diagnostic::error("missing-field", format!("missing required field `{name}`"))
                        .with_hint(format!(
                            "add \"{name}\"{}",
                            if description.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", lower_first(description.trim_end_matches('.')))
                            }
                        ));
                out.push((d, At::Value(pointer.clone())));
            }
            K::Not { .. } if schema_path.ends_with("/not") => {
                let d = Diagnostic::error("both-ids", "both `_id` and `id` are given")
                    .with_hint("give the identifier once, as `id` or `_id`");
                out.push((d, At::Key(format!("{pointer}/id"))));
            }
            K::AnyOf { .. }
                if schema_path.ends_with("/anyOf")
                    && at(&pointer).get("id").is_none()
                    && at(&pointer).get("_id").is_none() =>
            {
                let d = Diagnostic::error("missing-field", "missing required field `id`")
                    .with_hint("add \"id\" (or \"_id\"): the entity's identifier, e.g. a UUID");
                out.push((d, At::Value(pointer.clone())));
            }
            K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } => {
                let (message, hint) = one_of_message(
                    &schema_path,
                    matches!(error.kind(), K::OneOfMultipleValid { .. }),
                );
                out.push((
                    Diagnostic::error("schema", message).with_hint(hint),
                    At::Value(pointer.clone()),
                ));
            }
            K::Type { .. } => {
                let found = json_type_name(at(&pointer));
                let expected = match shape_at(kind.shape(), &pointer) {
                    Some(Shape::String) => "text",
                    Some(Shape::Integer) => "a whole number",
                    Some(Shape::Number) => "a number",
                    Some(Shape::Boolean) => "true or false",
                    Some(Shape::Object(_)) => "an object",
                    Some(Shape::Array(_)) => "a list",
                    Some(Shape::Any) | None => "another type",
                };
                let d = Diagnostic::error(
                    "wrong-type",
                    format!("expected {expected}, found {}", type_words(found)),
                )
                .with_hint(match expected {
                    "true or false" => "write true or false",
                    "a whole number" => "write a whole number such as 1883",
                    "a number" => "write a number such as 38 or 0.5",
                    "text" => "write the value in double quotes",
                    _ => "see `dda schema` for the expected shape",
                });
                out.push((d, At::Value(pointer.clone())));
            }
            K::MinLength { .. } => {
                out.push((
                    Diagnostic::error("empty-value", "must not be empty"),
                    At::Value(pointer.clone()),
                ));
            }
            K::MinItems { .. } => {
                out.push((
                    Diagnostic::error("empty-list", "the list must not be empty")
                        .with_hint("add at least one item"),
                    At::Value(pointer.clone()),
                ));
            }
            K::Pattern { .. }
                if schema_path.contains("/id")
                    || pointer.ends_with("ID")
                    || pointer.ends_with("id") =>
            {
                out.push((
                    Diagnostic::error(
                        "bad-id",
                        "an id is letters, digits and `.` `_` `-` `:` `~`, not starting with \
                             a dot (no spaces, slashes, backslashes or control characters)",
                    )
                    .with_hint(
                        "use a UUID or a name-like id such as dsm-box-1-power: ids appear in \
                             URLs, file names and topics",
                    ),
                    At::Value(pointer.clone()),
                ));
            }
            K::Constant { expected_value } => {
                let d = Diagnostic::error("wrong-value", format!("must be {expected_value}"));
                out.push((d, At::Value(pointer.clone())));
            }
            K::Enum { options } => {
                let given = at(&pointer).as_str().unwrap_or_default().to_owned();
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let d =
                    Diagnostic::error("wrong-value", format!("must be one of {}", opts.join(", ")))
                        .with_hint_opt(did_you_mean(&given, opts.iter().map(String::as_str)));
                out.push((d, At::Value(pointer.clone())));
            }
            _ => {
                let message = error.masked_with("the value").to_string();
                out.push((
                    Diagnostic::error("schema", message),
                    At::Value(pointer.clone()),
                ));
            }
        }
    }
    out
}

/// The JSON type of a value, in the words of [`Node::type_name`].
const fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

fn type_words(json_type: &str) -> &'static str {
    match json_type {
        "null" => "null",
        "boolean" => "a boolean",
        "number" => "a number",
        "string" => "text",
        "array" => "a list",
        _ => "an object",
    }
}

fn one_of_message(schema_path: &str, many: bool) -> (String, String) {
    if schema_path.contains("parameterValue") || schema_path.contains("/parameter/") {
        return (
            if many {
                "a parameter value names its parameter twice".to_owned()
            } else {
                "a parameter value must name its parameter".to_owned()
            },
            "give the name once, as \"key\" (or \"name\")".to_owned(),
        );
    }
    if many {
        (
            "both `dataKindReferenceIDs` and `dataKindReferenceID` are given".to_owned(),
            "use the list form dataKindReferenceIDs, or the single dataKindReferenceID, not both"
                .to_owned(),
        )
    } else {
        (
            "no data kind is given".to_owned(),
            "add \"dataKindReferenceIDs\": {\"dataKindReferenceID\": [\"<data kind id>\"]}"
                .to_owned(),
        )
    }
}

/// Severity helper for callers that count.
#[must_use]
pub fn count(diags: &[Diagnostic], severity: Severity) -> usize {
    diags.iter().filter(|d| d.severity == severity).count()
}

/// An entity read without the members its errors point at (a value of the wrong type, say),
/// when what is left can be read; `None` when an error is about the entity as a whole (a
/// missing field) or what is left is still unreadable.
fn salvage(
    kind: EntityKind,
    mut json: serde_json::Value,
    entity: &str,
    diags: &[Diagnostic],
) -> Option<Entity> {
    let under = format!("{entity}/");
    for d in diags.iter().filter(|d| d.is_error()) {
        if d.pointer == entity {
            return None;
        }
        let Some(inner) = d.pointer.strip_prefix(&under) else {
            continue;
        };
        let (parent, last) = match inner.rsplit_once('/') {
            Some((parent, last)) => (format!("/{parent}"), last),
            None => (String::new(), inner),
        };
        let key = last.replace("~1", "/").replace("~0", "~");
        match json.pointer_mut(&parent) {
            Some(serde_json::Value::Object(members)) => {
                members.remove(&key);
            }
            _ => return None,
        }
    }
    Entity::from_json(kind, json).ok()
}
