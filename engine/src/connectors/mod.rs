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

use serde::de::DeserializeOwned;

use crate::connector::ConnectorError;
use crate::registry::DataSource;

/// Reads a connector's typed configuration from a DSM's resolved parameters.
///
/// # Errors
///
/// The parameters do not fit the configuration (a wrong type, an unknown value).
pub fn config<T: DeserializeOwned>(dsm: &DataSource) -> Result<T, ConnectorError> {
    serde_json::from_value(dsm.parameters.to_json()).map_err(|e| ConnectorError::config(dsm, e))
}
