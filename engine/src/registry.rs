//! The device registry: the data sources (DSMs) this engine knows, with what it takes to
//! reach them. DSMs register and deregister while the engine runs; the engine starts and
//! stops their connectors to match.

use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use manifests::{Model, ResolvedParameters};

use crate::connector::{Prepared, Protocol};
use crate::symbol::Sym;

/// A data kind, as far as the runtime needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataKindInfo {
    /// Its id.
    pub id: Sym,
    /// Its name (observations of this kind are named after it when they carry no name).
    pub name: Option<String>,
    /// Payload format (`JSON`, `Plain text`, ...).
    pub format: Option<String>,
    /// Unit.
    pub unit: Option<String>,
}

/// A registered data source: a DSM resolved through its definition and interface.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSource {
    /// The DSM id (and bus topic).
    pub id: Sym,
    /// Its name.
    pub name: Option<String>,
    /// Its data interface's protocol.
    pub protocol: Protocol,
    /// Its interface parameters, checked, defaults applied.
    pub parameters: ResolvedParameters,
    /// The data kinds it produces.
    pub data_kinds: Vec<DataKindInfo>,
    /// The edge gateway it is registered to.
    pub edge_gateway: Option<String>,
    /// Where relative file paths in its parameters resolve (a server's data directory);
    /// `None`: the working directory.
    pub base: Option<Arc<std::path::Path>>,
}

impl DataSource {
    /// Resolves DSM `id` of a validated model.
    #[must_use]
    pub fn from_model(model: &Model, id: &str) -> Option<Self> {
        let dsm = model.data_source_manifests.get(id)?;
        let di = model.interface_of(dsm)?;
        Some(Self {
            id: Sym::new(id),
            name: dsm.name.clone(),
            protocol: Protocol::parse(&di.communication_protocol),
            parameters: model.dsm_parameters.get(id).cloned().unwrap_or_default(),
            data_kinds: model
                .kinds_of(dsm)
                .into_iter()
                .map(|dk| DataKindInfo {
                    id: Sym::new(&dk.id),
                    name: dk.name.clone(),
                    format: dk.format.clone(),
                    unit: dk.unit.clone(),
                })
                .collect(),
            edge_gateway: dsm.edge_gateway_reference_id.clone(),
            base: None,
        })
    }

    /// The same data source, its relative file paths resolving inside `base`.
    #[must_use]
    pub fn within(mut self, base: &std::path::Path) -> Self {
        self.base = Some(Arc::from(base));
        self
    }

    /// A file path of its parameters, as the connector opens it: inside [`DataSource::base`]
    /// when relative.
    #[must_use]
    pub fn path(&self, path: &str) -> String {
        match &self.base {
            Some(base) if std::path::Path::new(path).is_relative() => {
                base.join(path).to_string_lossy().into_owned()
            }
            _ => path.to_owned(),
        }
    }

    /// A data source with no model behind it (built-in DSMs, tests).
    #[must_use]
    pub fn new(id: &str, protocol: Protocol, parameters: ResolvedParameters) -> Self {
        Self {
            id: Sym::new(id),
            name: None,
            protocol,
            parameters,
            data_kinds: Vec::new(),
            edge_gateway: None,
            base: None,
        }
    }

    /// The name for observations that carry none: the single data kind's name, else "value".
    #[must_use]
    pub fn default_name(&self) -> Sym {
        match self.data_kinds.as_slice() {
            [only] => Sym::new(only.name.as_deref().unwrap_or("value")),
            _ => Sym::new("value"),
        }
    }

    /// The data kind for observations that name none: the single data kind, if only one.
    #[must_use]
    pub fn default_kind(&self) -> Option<Sym> {
        match self.data_kinds.as_slice() {
            [only] => Some(only.id),
            _ => None,
        }
    }

    /// What decoders of this source's payloads need.
    #[must_use]
    pub fn decode_context(&self) -> crate::codec::DecodeContext {
        crate::codec::DecodeContext {
            dsm: self.id,
            default_name: self.default_name(),
            default_kind: self.default_kind(),
        }
    }

    /// The data kind whose name is `name`, if any.
    #[must_use]
    pub fn kind_named(&self, name: &str) -> Option<Sym> {
        self.data_kinds
            .iter()
            .find(|k| k.name.as_deref() == Some(name))
            .map(|k| k.id)
    }
}

/// A registered data source with its connector, prepared once from its parameters.
#[derive(Clone, Debug)]
struct Entry {
    source: Arc<DataSource>,
    connector: Option<Prepared>,
}

/// The registered data sources.
#[derive(Debug, Default)]
pub struct DeviceRegistry {
    sources: RwLock<IndexMap<Sym, Entry>>,
}

impl DeviceRegistry {
    /// Registers (or replaces) a data source with its prepared connector (`None` for an
    /// internal protocol or one without a connector); returns the one it replaced.
    pub fn register(
        &self,
        source: DataSource,
        connector: Option<Prepared>,
    ) -> Option<Arc<DataSource>> {
        self.sources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                source.id,
                Entry {
                    source: Arc::new(source),
                    connector,
                },
            )
            .map(|e| e.source)
    }

    /// Deregisters a data source; returns it if it was registered.
    pub fn deregister(&self, id: Sym) -> Option<Arc<DataSource>> {
        self.sources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shift_remove(&id)
            .map(|e| e.source)
    }

    /// The data source `id`, if registered.
    #[must_use]
    pub fn get(&self, id: Sym) -> Option<Arc<DataSource>> {
        self.sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .map(|e| e.source.clone())
    }

    /// The data source `id` and its connector, if registered.
    #[must_use]
    pub fn connector(&self, id: Sym) -> Option<(Arc<DataSource>, Option<Prepared>)> {
        self.sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .map(|e| (e.source.clone(), e.connector.clone()))
    }

    /// Every registered data source.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<DataSource>> {
        self.sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|e| e.source.clone())
            .collect()
    }
}
