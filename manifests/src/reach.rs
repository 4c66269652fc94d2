//! What manifests may reach on the machine that runs them.
//!
//! A local bundle (`dda validate`, `dda run`) is its user's own: its paths are read and
//! written relative to where it runs, and its secret references resolve as written. A server
//! (`dda serve`) is sent manifests by others, so it confines them with a [`Reach`]: a file
//! parameter (a sink's database or file, a replayed file, a CA certificate, a model) must
//! name a path inside the data directory or under a root its configuration allows — a
//! relative path is taken inside the data directory — and a secret reference must name a
//! file under an allowed secrets folder or an environment variable with an allowed prefix.
//!
//! Paths are compared after resolving `.` and `..` lexically (`a/../../etc` is outside);
//! symbolic links inside an allowed root are followed, as the server's own folders are not
//! writable through the API.

use std::path::{Component, Path, PathBuf};

use crate::secret::SecretRef;

/// A server's limits on manifests' paths and secret references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Where relative paths resolve (the data directory); allowed as a root too.
    pub base: PathBuf,
    /// Further folders file parameters may name.
    pub roots: Vec<PathBuf>,
    /// Folders `${file:PATH}` references may name.
    pub secret_files: Vec<PathBuf>,
    /// Prefixes of the environment variables `${env:NAME}` references may name.
    pub secret_env_prefixes: Vec<String>,
}

/// `path` with `.` and `..` resolved lexically, against `base` when relative.
fn normalize(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "none".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Reach {
    /// The folders file parameters may name: the base, then the configured roots.
    #[must_use]
    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        std::iter::once(&self.base)
            .chain(&self.roots)
            .map(|r| normalize(&self.base, r))
            .collect()
    }

    /// Where a file parameter's value points: inside the base when relative.
    ///
    /// # Errors
    ///
    /// It points outside every allowed root (the message names them).
    pub fn path(&self, value: &str) -> Result<PathBuf, String> {
        let resolved = normalize(&self.base, Path::new(value));
        let roots = self.allowed_roots();
        if roots.iter().any(|r| resolved.starts_with(r)) {
            return Ok(resolved);
        }
        Err(format!(
            "`{value}` is outside the folders this server may use: {}",
            list(&roots)
        ))
    }

    /// Whether a secret reference may be resolved here.
    ///
    /// # Errors
    ///
    /// It names a file outside the secrets folders, or a variable without an allowed
    /// prefix (the message says which are allowed).
    pub fn secret(&self, reference: &SecretRef) -> Result<(), String> {
        match reference {
            SecretRef::File(path) => {
                let resolved = normalize(&self.base, path);
                let roots: Vec<PathBuf> = self
                    .secret_files
                    .iter()
                    .map(|r| normalize(&self.base, r))
                    .collect();
                if roots.iter().any(|r| resolved.starts_with(r)) {
                    Ok(())
                } else {
                    Err(format!(
                        "`${{file:{}}}` is outside the folders secrets may be read from: {}",
                        path.display(),
                        list(&roots)
                    ))
                }
            }
            SecretRef::Env(name) => {
                if self
                    .secret_env_prefixes
                    .iter()
                    .any(|p| name.starts_with(p.as_str()))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "`${{env:{name}}}` is not among the variables secrets may be read from: names starting with {}",
                        if self.secret_env_prefixes.is_empty() {
                            "(none configured)".to_owned()
                        } else {
                            self.secret_env_prefixes.join(", ")
                        }
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach() -> Reach {
        Reach {
            base: PathBuf::from("/srv/dda/data"),
            roots: vec![PathBuf::from("/srv/exports")],
            secret_files: vec![PathBuf::from("/run/secrets")],
            secret_env_prefixes: vec!["DDA_SECRET_".into()],
        }
    }

    #[test]
    fn relative_paths_land_in_the_base_and_may_not_climb_out() {
        let r = reach();
        assert_eq!(
            r.path("out/x.sqlite").unwrap(),
            PathBuf::from("/srv/dda/data/out/x.sqlite")
        );
        assert_eq!(
            r.path("/srv/exports/a.jsonl").unwrap(),
            PathBuf::from("/srv/exports/a.jsonl")
        );
        for outside in [
            "../../../tmp/x.sqlite",
            "/tmp/x.jsonl",
            "/etc/shadow",
            "/srv/dda/database",
        ] {
            let e = r.path(outside).unwrap_err();
            assert!(e.contains("/srv/dda/data, /srv/exports"), "{e}");
        }
    }

    #[test]
    fn secret_references_are_kept_to_their_folders_and_prefixes() {
        let r = reach();
        assert!(
            r.secret(&SecretRef::File("/run/secrets/mqtt".into()))
                .is_ok()
        );
        assert!(r.secret(&SecretRef::Env("DDA_SECRET_MQTT".into())).is_ok());
        assert!(r.secret(&SecretRef::File("/etc/shadow".into())).is_err());
        assert!(
            r.secret(&SecretRef::File("/run/secrets/../../etc/shadow".into()))
                .is_err()
        );
        assert!(r.secret(&SecretRef::Env("HOME".into())).is_err());
    }
}
