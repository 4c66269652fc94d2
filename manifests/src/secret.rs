//! Secrets in manifests: which parameters are secret, and `${env:NAME}` / `${file:PATH}`
//! references to their values.
//!
//! A manifest should never hold a password in plain text. It holds a reference, resolved
//! only when a connector opens its connection; the resolved value is never logged, echoed
//! by the API, or shown in a diagnostic.

use std::path::PathBuf;

/// Whether a parameter named `name` holds a secret, judged by its name: `password`,
/// `passwd`, `token`, `secret`, `credentials`, or any name ending in `Key` / `_key`
/// (`apiKey`, `secret_key`, `privateKey`) — but not `key` itself or `keyField`-style names.
#[must_use]
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "credential",
    ];
    if WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    // camelCase `...Key` or snake `..._key`, with something before it.
    (name.len() > 3 && name.ends_with("Key")) || (lower.len() > 4 && lower.ends_with("_key"))
}

/// A reference to a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `${env:NAME}`: the environment variable `NAME`.
    Env(String),
    /// `${file:PATH}`: the contents of a file (trailing newline removed).
    File(PathBuf),
}

/// Why a secret reference is malformed or cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `${...}` that is not `${env:NAME}` or `${file:PATH}`.
    #[error("malformed secret reference: expected ${{env:NAME}} or ${{file:PATH}}")]
    Malformed,
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("cannot read secret file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl SecretRef {
    /// Parses a value: `None` when it is not written as a reference at all (`${` ... `}`),
    /// `Some(Err)` when it looks like one but is malformed.
    #[must_use]
    pub fn parse(value: &str) -> Option<Result<Self, SecretError>> {
        let inner = value.trim().strip_prefix("${")?.strip_suffix('}')?;
        Some(match inner.split_once(':') {
            Some(("env", name))
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(Self::Env(name.to_owned()))
            }
            Some(("file", path)) if !path.trim().is_empty() => Ok(Self::File(PathBuf::from(path))),
            _ => Err(SecretError::Malformed),
        })
    }

    /// Reads the secret's value.
    ///
    /// # Errors
    ///
    /// The variable is unset or the file unreadable.
    pub fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Self::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))
            }
            Self::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
        }
    }
}

/// Resolves a parameter value that may be a secret reference; plain values pass through.
///
/// # Errors
///
/// A malformed or unresolvable reference.
pub fn resolve_value(value: &str) -> Result<String, SecretError> {
    match SecretRef::parse(value) {
        None => Ok(value.to_owned()),
        Some(r) => r?.resolve(),
    }
}

/// Whether `value` is written as a well-formed secret reference (and so may be shown).
#[must_use]
pub fn is_reference(value: &serde_json::Value) -> bool {
    value
        .as_str()
        .and_then(SecretRef::parse)
        .is_some_and(|r| r.is_ok())
}

/// What a secret looks like wherever it might be shown.
pub const REDACTED: &str = "********";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for yes in [
            "password",
            "Password",
            "mqttPassword",
            "token",
            "accessToken",
            "apiKey",
            "secret_key",
            "clientSecret",
            "credentials",
        ] {
            assert!(is_secret_name(yes), "{yes}");
        }
        for no in [
            "key", "host", "port", "topic", "username", "keyField", "monkey", "Key",
        ] {
            assert!(!is_secret_name(no), "{no}");
        }
    }

    #[test]
    fn references_parse_and_resolve() {
        assert_eq!(SecretRef::parse("plain"), None);
        assert_eq!(
            SecretRef::parse("${env:MQTT_PASSWORD}"),
            Some(Ok(SecretRef::Env("MQTT_PASSWORD".into())))
        );
        assert_eq!(
            SecretRef::parse("${file:/run/secrets/pw}"),
            Some(Ok(SecretRef::File("/run/secrets/pw".into())))
        );
        assert_eq!(
            SecretRef::parse("${vault:x}"),
            Some(Err(SecretError::Malformed))
        );
        assert_eq!(
            SecretRef::parse("${env:}"),
            Some(Err(SecretError::Malformed))
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(
            resolve_value(&format!("${{file:{}}}", f.display())).unwrap(),
            "s3cret"
        );
        assert!(matches!(
            resolve_value("${env:DDA_TEST_SURELY_UNSET_VARIABLE}"),
            Err(SecretError::MissingEnv(_))
        ));
        assert_eq!(resolve_value("plain").unwrap(), "plain");
    }
}
