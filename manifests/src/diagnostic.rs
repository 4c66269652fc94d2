//! Diagnostics: what is wrong, where (file, line:column, JSON pointer), and how to fix it.
//!
//! Rendering follows rustc: a headline with a stable code, the source line with the place
//! marked, and a `help:` line. Secret values are masked in every snippet shown.

use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use crate::node::{LineIndex, Position, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The documents are invalid.
    Error,
    /// The documents are valid but something deserves attention.
    Warning,
}

/// One problem found in the documents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable, searchable code such as `dangling-reference`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// The file, when the problem is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Line and column in the file.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// JSON pointer to the value within the file's document (empty for the whole document).
    pub pointer: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The byte range in the file, for snippets.
    #[serde(skip)]
    pub span: Option<Span>,
}

impl Diagnostic {
    /// An error.
    #[must_use]
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            position: None,
            pointer: String::new(),
            hint: None,
            span: None,
        }
    }

    /// A warning.
    #[must_use]
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets a hint when there is one.
    #[must_use]
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Sets the JSON pointer.
    #[must_use]
    pub fn at_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = pointer.into();
        self
    }

    /// Places the diagnostic in a file at a byte span.
    #[must_use]
    pub fn in_file(mut self, file: &Path, text: &str, lines: &LineIndex, span: Span) -> Self {
        self.file = Some(file.to_owned());
        self.position = Some(lines.position(text, span.start));
        self.span = Some(span);
        self
    }

    /// Whether this is an error.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Diagnostic {
    /// One line: `file:line:col: error[code]: message (pointer)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(p) = self.position {
                write!(f, ":{p}")?;
            }
            f.write_str(": ")?;
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}[{}]: {}", self.code, self.message)?;
        if !self.pointer.is_empty() {
            write!(f, " (at {})", self.pointer)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; help: {h}")?;
        }
        Ok(())
    }
}

/// A source text and what is needed to show snippets of it.
#[derive(Clone, Copy, Debug)]
pub struct SourceView<'a> {
    /// The text.
    pub text: &'a str,
    /// Its line index.
    pub lines: &'a LineIndex,
    /// Byte ranges whose characters must never be shown (secret values).
    pub masked: &'a [Span],
}

/// Renders diagnostics for a terminal, rustc style.
#[derive(Debug)]
pub struct HumanRenderer {
    renderer: Renderer,
}

impl HumanRenderer {
    /// A renderer; `color` adds ANSI styling.
    #[must_use]
    pub fn new(color: bool) -> Self {
        Self {
            renderer: if color {
                Renderer::styled()
            } else {
                Renderer::plain()
            },
        }
    }

    /// Renders one diagnostic, with a snippet when its source is given.
    #[must_use]
    pub fn render(&self, d: &Diagnostic, source: Option<SourceView<'_>>) -> String {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(d.message.as_str()).id(d.code);
        let path = d.file.as_ref().map(|p| p.display().to_string());
        let mut group: Group<'_> = Group::with_title(title);
        let shown;
        match (source, d.span, d.position, path.as_deref()) {
            (Some(src), Some(span), Some(pos), Some(path)) => {
                // Show only the line holding the start of the span, with secrets masked.
                let line = src.lines.line_span(src.text, pos.line);
                shown = mask(src.text, line, src.masked);
                let start = span.start.clamp(line.start, line.end) - line.start;
                let end = span.end.clamp(line.start, line.end) - line.start;
                let end = if end <= start {
                    (start + 1).min(shown.len())
                } else {
                    end
                };
                let start = floor_char_boundary(&shown, start);
                let end = floor_char_boundary(&shown, end).max(start);
                let label = if d.pointer.is_empty() {
                    "here".to_owned()
                } else {
                    d.pointer.clone()
                };
                group = group.element(
                    Snippet::source(shown.as_str())
                        .line_start(pos.line)
                        .path(path)
                        .annotation(AnnotationKind::Primary.span(start..end).label(label)),
                );
            }
            (_, _, _, Some(path)) => {
                let place = match d.position {
                    Some(p) => format!("{path}:{p}"),
                    None => path.to_owned(),
                };
                group = group.element(Level::NOTE.message(format!("in {place}")));
                if !d.pointer.is_empty() {
                    group = group.element(Level::NOTE.message(format!("at {}", d.pointer)));
                }
            }
            _ => {}
        }
        if let Some(h) = &d.hint {
            group = group.element(Level::HELP.message(h.as_str()));
        }
        self.renderer.render(&[group])
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text of `line` with every masked byte range's characters replaced by `*`.
fn mask(text: &str, line: Span, masked: &[Span]) -> String {
    let slice = &text[line.start..line.end];
    let mut out = String::with_capacity(slice.len());
    for (i, ch) in slice.char_indices() {
        let at = line.start + i;
        if masked.iter().any(|m| at >= m.start && at < m.end) {
            // Keep byte offsets stable for the annotation: one '*' per byte.
            for _ in 0..ch.len_utf8() {
                out.push('*');
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_shows_file_line_column_pointer_and_help() {
        let text = "{\n  \"dataSourceDefinitionReferenceID\": \"nope\"\n}";
        let lines = LineIndex::new(text);
        let span = Span::new(39, 45);
        let d = Diagnostic::error(
            "dangling-reference",
            "no data source definition with id \"nope\"",
        )
        .at_pointer("/dataSourceDefinitionReferenceID")
        .with_hint("did you mean \"dsd-1\"?")
        .in_file(Path::new("dsm.json"), text, &lines, span);
        let out = HumanRenderer::new(false).render(
            &d,
            Some(SourceView {
                text,
                lines: &lines,
                masked: &[],
            }),
        );
        assert!(
            out.contains("error[dangling-reference]: no data source definition"),
            "{out}"
        );
        assert!(out.contains("dsm.json:2:38"), "{out}");
        assert!(out.contains("^^^^^^"), "{out}");
        assert!(out.contains("help: did you mean \"dsd-1\"?"), "{out}");
        assert_eq!(
            d.to_string(),
            "dsm.json:2:38: error[dangling-reference]: no data source definition with id \"nope\" (at /dataSourceDefinitionReferenceID); help: did you mean \"dsd-1\"?"
        );
    }

    #[test]
    fn masked_spans_never_reach_the_output() {
        let text = "{\"key\": \"password\", \"value\": \"hunter2\"}";
        let lines = LineIndex::new(text);
        let secret = Span::new(30, 39);
        let d = Diagnostic::warning("plain-text-secret", "secret in plain text").in_file(
            Path::new("x.json"),
            text,
            &lines,
            Span::new(8, 18),
        );
        let out = HumanRenderer::new(false).render(
            &d,
            Some(SourceView {
                text,
                lines: &lines,
                masked: &[secret],
            }),
        );
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("*********"), "{out}");
    }
}
