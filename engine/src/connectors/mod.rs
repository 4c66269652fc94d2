//! The connectors, one folder per protocol. Each registers itself; adding one is a folder
//! and a `mod` line here.

pub mod file;
pub mod http;
pub mod kafka;
pub mod mongodb;
pub mod mqtt;
pub mod postgres;
pub mod simulator;
pub mod sqlite;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::connector::ConnectorError;
use crate::registry::DataSource;

/// Reads a connector's typed configuration from a DSM's resolved parameters; an error
/// names the parameter.
///
/// # Errors
///
/// The parameters do not fit the configuration (a wrong type, an unknown value).
pub fn config<T: DeserializeOwned>(dsm: &DataSource) -> Result<T, ConnectorError> {
    serde_path_to_error::deserialize(dsm.parameters.to_json()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ConnectorError::config(dsm, e.into_inner())
        } else {
            ConnectorError::config(dsm, format!("{path}: {}", e.into_inner()))
        }
    })
}

/// Reads an optional duration parameter (`PT1S`, `1s`, `500ms`...), for
/// `#[serde(default, deserialize_with = "...")]`.
///
/// # Errors
///
/// Text that is not a duration.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| manifests::parameters::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// Where a polling source starts reading a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Everything stored (the default).
    #[default]
    Beginning,
    /// Only what is stored after the source started.
    End,
}

/// Whether `name` is a plain SQL identifier: letters, digits and `_`, not first a digit.
#[must_use]
pub fn sql_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}
