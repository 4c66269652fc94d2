//! The external programs an engine allows: the allow-list of the `external` processor.
//!
//! A manifest may ask for an external program only by name; what runs — the program, its
//! fixed arguments, environment and working directory — is configured for the engine by
//! whoever runs it (the `[external]` table of `dda.toml`), never in manifests. So whoever
//! may write manifests cannot run arbitrary commands, and no command line ever passes
//! through a shell.
//!
//! ```toml
//! [[external.programs]]
//! name = "scorer"                                          # what manifests name
//! argv = ["python3", "examples/external-python/scorer.py"] # program and fixed arguments
//! env = { SCORER_WINDOW = "30" }                           # optional; values never logged
//! working_dir = "/srv/scorers"                             # optional
//! timeout = "PT5S"                                         # optional: answer timeout
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One program the engine may run, as configured.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalProgram {
    /// What manifests call it (the `external` processor's `program` parameter).
    pub name: String,
    /// The program (found on `PATH` when it has no `/`) and its fixed arguments, passed as
    /// they are: no shell, no expansion.
    pub argv: Vec<String>,
    /// Environment variables set for it; apart from these it gets only `PATH`. Values may be
    /// secrets: they are never logged or shown.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory (default: the engine's).
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// How long it may take to answer a request, unless the manifest says otherwise.
    #[serde(default, deserialize_with = "manifests::config::optional_duration")]
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ExternalProgram {
    /// Shows the names of the environment variables, not their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalProgram")
            .field("name", &self.name)
            .field("argv", &self.argv)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("working_dir", &self.working_dir)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The `[external]` table: the programs the `external` processor may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// The allowed programs; none by default (then no `external` processor can start).
    #[serde(default)]
    pub programs: Vec<ExternalProgram>,
}

impl ExternalConfig {
    /// The program called `name`.
    #[must_use]
    pub fn program(&self, name: &str) -> Option<&ExternalProgram> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The names of the allowed programs, in configuration order.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.programs.iter().map(|p| p.name.as_str()).collect()
    }

    /// Checks what the types do not: names present and unique, a program in every `argv`.
    ///
    /// # Errors
    ///
    /// Every problem found, one per line.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (i, p) in self.programs.iter().enumerate() {
            if p.name.trim().is_empty() {
                problems.push(format!("external.programs[{i}]: `name` is empty"));
            } else if self.programs[..i].iter().any(|q| q.name == p.name) {
                problems.push(format!(
                    "external.programs[{i}]: the name {:?} is used twice",
                    p.name
                ));
            }
            if p.argv.first().is_none_or(|a| a.trim().is_empty()) {
                problems.push(format!(
                    "external.programs[{i}] ({}): `argv` must start with the program to run",
                    p.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> Result<ExternalConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn programs_read_with_their_optional_settings() {
        let c = config(json!({"programs": [
            {"name": "scorer", "argv": ["python3", "scorer.py"], "env": {"TOKEN": "s3cret"},
             "working_dir": "/tmp", "timeout": "PT5S"},
            {"name": "plain", "argv": ["/bin/cat"]}
        ]}))
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.names(), ["scorer", "plain"]);
        let scorer = c.program("scorer").unwrap();
        assert_eq!(scorer.timeout, Some(Duration::from_secs(5)));
        assert_eq!(scorer.env["TOKEN"], "s3cret");
        assert!(c.program("plain").unwrap().env.is_empty());
        let shown = format!("{scorer:?}");
        assert!(
            shown.contains("TOKEN") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_programs_are_refused() {
        assert!(
            config(json!({"programs": [{"name": "x", "argv": ["a"], "shell": true}]})).is_err()
        );
        let c = config(json!({"programs": [
            {"name": "x", "argv": []},
            {"name": "x", "argv": ["a"]},
            {"name": " ", "argv": ["a"]}
        ]}))
        .unwrap();
        let problems = c.check().unwrap_err();
        assert_eq!(problems.lines().count(), 3, "{problems}");
        assert!(problems.contains("used twice"), "{problems}");
    }
}
