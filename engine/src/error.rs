//! What errors have in common: whose problem they are, and whether trying again can help.
//!
//! Processor, connector and decode errors each carry an [`ErrorKind`] and a retry hint, so
//! that the engine, the API and people can act on them without reading their text: a user
//! error is fixed in a manifest, an external one is a system outside the engine failing (a
//! broker away, a database refusing), an internal one is a defect of DDA.

use std::sync::Arc;

/// Whose problem an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// A manifest or a configuration is wrong: its author fixes it; retrying does not help.
    User,
    /// A system outside the engine failed or refused (a broker, a database, a device's
    /// payload).
    External,
    /// A defect of the engine itself.
    Internal,
}

impl ErrorKind {
    /// The name, as the API spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::External => "external",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An underlying error, shared so that errors stay cheap to clone.
pub type BoxError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Wraps an error as a [`BoxError`].
pub fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Arc::new(e)
}
