//! The catalogue: every processor kind and every connector this engine has, as the
//! validator, `dda processors`, `dda connectors` and the API see them.
//!
//! Built once from the registrations (parameter definitions generated from each kind's
//! typed configuration), so that validating the ten-thousandth manifest costs what the
//! first did.

use std::sync::LazyLock;

use indexmap::IndexMap;
use manifests::config::ConfigError;
use manifests::{ConnectorSpec, ProcessorSpec, ResolvedParameters};

use crate::connector::{ConnectorRegistration, registrations as connectors};
use crate::processor::{ProcessorRegistration, registrations as processors};

/// The processor kinds and connectors of this engine.
#[derive(Debug)]
pub struct Catalogue {
    processors: IndexMap<&'static str, (ProcessorSpec, &'static ProcessorRegistration)>,
    connectors: Vec<(ConnectorSpec, &'static ConnectorRegistration)>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::build);

impl Catalogue {
    /// The catalogue of every registered kind.
    #[must_use]
    pub fn get() -> &'static Self {
        &CATALOGUE
    }

    fn build() -> Self {
        let processors = processors()
            .into_iter()
            .map(|r| {
                let spec = ProcessorSpec {
                    category: r.category,
                    parameters: (r.parameters)(),
                    min_sources: r.min_sources,
                };
                (r.kind, (spec, r))
            })
            .collect();
        let connectors = connectors()
            .into_iter()
            .map(|r| {
                let spec = ConnectorSpec {
                    protocol: r.protocol.to_owned(),
                    aliases: r.aliases.iter().map(|a| (*a).to_owned()).collect(),
                    parameters: (r.parameters)(),
                    reads: r.reads(),
                    writes: r.writes(),
                    internal: r.internal,
                };
                (spec, r)
            })
            .collect();
        Self {
            processors,
            connectors,
        }
    }

    /// Every processor kind with its definitions, sorted by `processorType`.
    pub fn processors(
        &self,
    ) -> impl Iterator<Item = (&ProcessorSpec, &'static ProcessorRegistration)> {
        self.processors.values().map(|(s, r)| (s, *r))
    }

    /// Every connector with its definitions, sorted by protocol.
    pub fn connectors(
        &self,
    ) -> impl Iterator<Item = (&ConnectorSpec, &'static ConnectorRegistration)> {
        self.connectors.iter().map(|(s, r)| (s, *r))
    }

    fn connector_entry(
        &self,
        protocol: &str,
    ) -> Option<&(ConnectorSpec, &'static ConnectorRegistration)> {
        self.connectors.iter().find(|(_, r)| r.is_named(protocol))
    }
}

impl manifests::Catalogue for Catalogue {
    fn processor(&self, processor_type: &str) -> Option<&ProcessorSpec> {
        self.processors.get(processor_type).map(|(s, _)| s)
    }

    fn processor_types(&self) -> Vec<String> {
        self.processors.keys().map(|k| (*k).to_owned()).collect()
    }

    fn connector(&self, protocol: &str) -> Option<&ConnectorSpec> {
        self.connector_entry(protocol).map(|(s, _)| s)
    }

    fn protocols(&self) -> Vec<String> {
        self.connectors
            .iter()
            .map(|(s, _)| s.protocol.clone())
            .collect()
    }

    fn check_processor(
        &self,
        processor_type: &str,
        values: &ResolvedParameters,
    ) -> Result<(), ConfigError> {
        match self.processors.get(processor_type) {
            Some((_, r)) => (r.check)(&values.to_json()),
            None => Ok(()),
        }
    }

    fn check_connector(
        &self,
        protocol: &str,
        values: &ResolvedParameters,
    ) -> Result<(), ConfigError> {
        match self.connector_entry(protocol) {
            Some((_, r)) => r.check(&values.to_json()),
            None => Ok(()),
        }
    }
}
