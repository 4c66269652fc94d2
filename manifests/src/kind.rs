//! Entity kinds and every name a kind goes by.
//!
//! A document's entity kind is known, in this order, from:
//! 1. the XML root element (`<dataInterface>`) or a JSON `"kind"` marker (`"DataInterface"`);
//! 2. the folder the file is in, when it uses the original implementation's folder names
//!    (`data-interfaces/`, `analytics-manifests/`, ...);
//! 3. the document's distinctive fields (`communicationProtocol` → data interface, ...).
//!
//! A bundle (many entities in one document) has root element `<bundle>` or kind `"Bundle"`,
//! or is recognized by its list members (`"dataInterfaces": {"dataInterface": [...]}`).

use crate::model;
use crate::node::Node;

/// The kinds of entity in the digital models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// [`model::Object`], an object of the Common Interoperability Registry.
    Object,
    /// [`model::Repository`], a database the registry links objects to.
    Repository,
    /// [`model::Link`], an object's record in a repository.
    Link,
    /// [`model::DataInterface`].
    DataInterface,
    /// [`model::DataKind`].
    DataKind,
    /// [`model::DataSourceDefinition`].
    DataSourceDefinition,
    /// [`model::DataSourceManifest`].
    DataSourceManifest,
    /// [`model::DataConsumerManifest`].
    DataConsumerManifest,
    /// [`model::DataChannelDescriptor`].
    DataChannelDescriptor,
    /// [`model::EdgeGateway`].
    EdgeGateway,
    /// [`model::AnalyticsProcessorDefinition`].
    AnalyticsProcessorDefinition,
    /// [`model::AnalyticsProcessorManifest`] standing alone.
    AnalyticsProcessorManifest,
    /// [`model::AnalyticsManifest`].
    AnalyticsManifest,
    /// [`model::LiveDataSet`].
    LiveDataSet,
    /// [`model::Observation`] in the flat form.
    Observation,
}

/// Static facts about one kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The kind.
    pub kind: EntityKind,
    /// JSON `kind` marker value.
    pub marker: &'static str,
    /// XML root element, and the element name inside a bundle's list.
    pub element: &'static str,
    /// The bundle member holding a list of this kind.
    pub plural: &'static str,
    /// Folder name (the original implementation's, where it had one).
    pub folder: &'static str,
    /// Schema file name without `.schema.json`; also the name `dda schema` takes.
    pub schema: &'static str,
    /// Abbreviation used in the paper.
    pub short: &'static str,
    /// Plain-English name for messages.
    pub title: &'static str,
}

macro_rules! kinds {
    ($($kind:ident, $marker:literal, $element:literal, $plural:literal, $folder:literal, $schema:literal, $short:literal, $title:literal;)*) => {
        /// Facts about every kind, in dependency order (referenced kinds first).
        pub const KINDS: &[KindInfo] = &[$(KindInfo {
            kind: EntityKind::$kind,
            marker: $marker,
            element: $element,
            plural: $plural,
            folder: $folder,
            schema: $schema,
            short: $short,
            title: $title,
        },)*];
    };
}

kinds! {
    Object, "Object", "object", "objects", "cir-objects", "cir-object", "OBJ", "CIR object";
    Repository, "Repository", "repository", "repositories", "cir-repositories", "cir-repository", "REPO", "CIR repository";
    Link, "Link", "link", "links", "cir-links", "cir-link", "LINK", "CIR link";
    DataInterface, "DataInterface", "dataInterface", "dataInterfaces", "data-interfaces", "data-interface", "DI", "data interface";
    DataKind, "DataKind", "dataKind", "dataKinds", "data-kinds", "data-kind", "DK", "data kind";
    DataSourceDefinition, "DataSourceDefinition", "dataSourceDefinition", "dataSourceDefinitions", "data-source-definitions", "data-source-definition", "DSD", "data source definition";
    EdgeGateway, "EdgeGateway", "edgeGateway", "edgeGateways", "edge-gateways", "edge-gateway", "EG", "edge gateway";
    DataSourceManifest, "DataSourceManifest", "dataSourceManifest", "dataSourceManifests", "data-source-manifests", "data-source-manifest", "DSM", "data source manifest";
    DataConsumerManifest, "DataConsumerManifest", "dataConsumerManifest", "dataConsumerManifests", "data-consumer-manifests", "data-consumer-manifest", "DCM", "data consumer manifest";
    DataChannelDescriptor, "DataChannelDescriptor", "dataChannelDescriptor", "dataChannelDescriptors", "data-channel-descriptors", "data-channel-descriptor", "DCD", "data channel descriptor";
    AnalyticsProcessorDefinition, "AnalyticsProcessorDefinition", "analyticsProcessorDefinition", "analyticsProcessorDefinitions", "analytics-processor-definitions", "analytics-processor-definition", "APD", "analytics processor definition";
    AnalyticsProcessorManifest, "AnalyticsProcessorManifest", "analyticsProcessorManifest", "analyticsProcessorManifests", "analytics-processor-manifests", "analytics-processor-manifest", "APM", "analytics processor manifest";
    AnalyticsManifest, "AnalyticsManifest", "analyticsManifest", "analyticsManifests", "analytics-manifests", "analytics-manifest", "AM", "analytics manifest";
    LiveDataSet, "LiveDataSet", "liveDataSet", "liveDataSets", "live-data-sets", "live-data-set", "LDS", "live data set";
    Observation, "Observation", "observation", "observations", "observations", "observation", "OBS", "observation";
}

/// The bundle's XML root element.
pub const BUNDLE_ELEMENT: &str = "bundle";
/// The bundle's JSON `kind` marker.
pub const BUNDLE_MARKER: &str = "Bundle";
/// The bundle's schema name.
pub const BUNDLE_SCHEMA: &str = "bundle";

impl EntityKind {
    /// Facts about this kind.
    #[must_use]
    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every kind has a row in KINDS")
    }

    /// The kind whose JSON marker, XML element, schema name, folder or abbreviation is `name`
    /// (case-insensitive for abbreviations).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|k| {
                k.marker == name
                    || k.element == name
                    || k.schema == name
                    || k.folder == name
                    || k.short.eq_ignore_ascii_case(name)
            })
            .map(|k| k.kind)
    }

    /// The kind whose folder is `folder` (also `data-sets/`, the original's later name).
    #[must_use]
    pub fn from_folder(folder: &str) -> Option<Self> {
        if folder == "data-sets" {
            return Some(Self::LiveDataSet);
        }
        KINDS.iter().find(|k| k.folder == folder).map(|k| k.kind)
    }

    /// Recognizes a plain document by its distinctive fields.
    #[must_use]
    pub fn from_fields(node: &Node) -> Option<Self> {
        let has = |k: &str| node.get(k).is_some();
        Some(if has("communicationProtocol") {
            Self::DataInterface
        } else if has("processorType") {
            Self::AnalyticsProcessorDefinition
        } else if has("analyticsProcessors") {
            Self::AnalyticsManifest
        } else if has("analyticsProcessorDefinitionReferenceID") {
            Self::AnalyticsProcessorManifest
        } else if has("dataSourceDefinitionReferenceID") {
            Self::DataSourceManifest
        } else if has("dataInterfaceReferenceID") {
            Self::DataSourceDefinition
        } else if has("dataConsumerManifestReferenceID") {
            Self::DataChannelDescriptor
        } else if has("namespace")
            || has("edgeAnalyticsEngineBaseURL")
            || has("dataRouterAndPreprocessorBaseURL")
        {
            Self::EdgeGateway
        } else if has("localID") {
            Self::Link
        } else if has("repositoryType") {
            Self::Repository
        } else if has("class") {
            Self::Object
        } else if has("observation") {
            Self::LiveDataSet
        } else if has("value") {
            Self::Observation
        } else if has("quantityKind") || has("format") || has("modelType") {
            Self::DataKind
        } else if has("endpoint") {
            Self::DataConsumerManifest
        } else {
            return None;
        })
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info().title)
    }
}

/// An entity of any kind.
#[derive(Clone, Debug, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "entities are loaded once; boxing buys nothing"
)]
pub enum Entity {
    /// A CIR object.
    Object(model::Object),
    /// A CIR repository.
    Repository(model::Repository),
    /// A CIR link.
    Link(model::Link),
    /// A data interface.
    DataInterface(model::DataInterface),
    /// A data kind.
    DataKind(model::DataKind),
    /// A data source definition.
    DataSourceDefinition(model::DataSourceDefinition),
    /// A data source manifest.
    DataSourceManifest(model::DataSourceManifest),
    /// A data consumer manifest.
    DataConsumerManifest(model::DataConsumerManifest),
    /// A data channel descriptor.
    DataChannelDescriptor(model::DataChannelDescriptor),
    /// An edge gateway.
    EdgeGateway(model::EdgeGateway),
    /// An analytics processor definition.
    AnalyticsProcessorDefinition(model::AnalyticsProcessorDefinition),
    /// A stand-alone analytics processor manifest.
    AnalyticsProcessorManifest(model::AnalyticsProcessorManifest),
    /// An analytics manifest.
    AnalyticsManifest(model::AnalyticsManifest),
    /// A live data set.
    LiveDataSet(model::LiveDataSet),
    /// A flat observation.
    Observation(model::Observation),
}

/// A reference from one entity to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The kind referred to.
    pub kind: EntityKind,
    /// The id referred to.
    pub id: &'a str,
    /// Where the reference is, as a JSON pointer within the referring entity.
    pub pointer: String,
}

fn apm_references<'a>(
    apm: &'a model::AnalyticsProcessorManifest,
    base: &str,
    out: &mut Vec<Reference<'a>>,
) {
    out.push(Reference {
        kind: EntityKind::AnalyticsProcessorDefinition,
        id: &apm.analytics_processor_definition_reference_id,
        pointer: format!("{base}/analyticsProcessorDefinitionReferenceID"),
    });
    for (i, s) in apm.data_sources.data_source.iter().enumerate() {
        out.push(Reference {
            kind: EntityKind::DataSourceManifest,
            id: &s.data_source_manifest_reference_id,
            pointer: format!("{base}/dataSources/dataSource/{i}/dataSourceManifestReferenceID"),
        });
    }
    out.push(Reference {
        kind: EntityKind::DataSourceManifest,
        id: apm.sink_id(),
        pointer: format!("{base}/dataSink/dataSourceManifestReferenceID"),
    });
}

/// The reference of a DSD, DSM or edge gateway to the CIR object it concerns.
fn object_reference(id: Option<&str>) -> Option<Reference<'_>> {
    id.map(|id| Reference {
        kind: EntityKind::Object,
        id,
        pointer: "/objectReferenceID".into(),
    })
}

impl Entity {
    /// Every reference this entity makes to another, in document order. Live data sets and
    /// observations are data, not configuration: their references are not listed.
    #[must_use]
    pub fn references(&self) -> Vec<Reference<'_>> {
        let mut out = Vec::new();
        match self {
            Self::Object(o) => {
                if let Some(id) = &o.parent {
                    out.push(Reference {
                        kind: EntityKind::Object,
                        id,
                        pointer: "/parentObjectReferenceID".into(),
                    });
                }
            }
            Self::Link(l) => {
                out.push(Reference {
                    kind: EntityKind::Object,
                    id: &l.object,
                    pointer: "/objectReferenceID".into(),
                });
                out.push(Reference {
                    kind: EntityKind::Repository,
                    id: &l.repository,
                    pointer: "/repositoryReferenceID".into(),
                });
            }
            Self::DataSourceDefinition(d) => {
                out.push(Reference {
                    kind: EntityKind::DataInterface,
                    id: &d.data_interface_reference_id,
                    pointer: "/dataInterfaceReferenceID".into(),
                });
                if let Some(list) = &d.data_kind_reference_ids {
                    for (i, id) in list.data_kind_reference_id.iter().enumerate() {
                        out.push(Reference {
                            kind: EntityKind::DataKind,
                            id,
                            pointer: format!("/dataKindReferenceIDs/dataKindReferenceID/{i}"),
                        });
                    }
                }
                if let Some(id) = &d.data_kind_reference_id {
                    out.push(Reference {
                        kind: EntityKind::DataKind,
                        id,
                        pointer: "/dataKindReferenceID".into(),
                    });
                }
                out.extend(object_reference(d.object.as_deref()));
            }
            Self::DataSourceManifest(d) => {
                out.push(Reference {
                    kind: EntityKind::DataSourceDefinition,
                    id: &d.data_source_definition_reference_id,
                    pointer: "/dataSourceDefinitionReferenceID".into(),
                });
                if let Some(id) = &d.edge_gateway_reference_id {
                    out.push(Reference {
                        kind: EntityKind::EdgeGateway,
                        id,
                        pointer: "/edgeGatewayReferenceID".into(),
                    });
                }
                out.extend(object_reference(d.object.as_deref()));
            }
            Self::DataConsumerManifest(d) => {
                if let Some(id) = &d.edge_gateway_reference_id {
                    out.push(Reference {
                        kind: EntityKind::EdgeGateway,
                        id,
                        pointer: "/edgeGatewayReferenceID".into(),
                    });
                }
            }
            Self::DataChannelDescriptor(d) => {
                out.push(Reference {
                    kind: EntityKind::DataConsumerManifest,
                    id: &d.data_consumer_manifest_reference_id,
                    pointer: "/dataConsumerManifestReferenceID".into(),
                });
                out.push(Reference {
                    kind: EntityKind::DataSourceManifest,
                    id: &d.data_source_manifest_reference_id,
                    pointer: "/dataSourceManifestReferenceID".into(),
                });
            }
            Self::EdgeGateway(g) => {
                out.extend(object_reference(g.object.as_deref()));
                if let Some(list) = &g.data_source_manifest_reference_ids {
                    for (i, id) in list.data_source_manifest_reference_id.iter().enumerate() {
                        out.push(Reference {
                            kind: EntityKind::DataSourceManifest,
                            id,
                            pointer: format!(
                                "/dataSourceManifestReferenceIDs/dataSourceManifestReferenceID/{i}"
                            ),
                        });
                    }
                }
            }
            Self::AnalyticsProcessorManifest(apm) => apm_references(apm, "", &mut out),
            Self::AnalyticsManifest(am) => {
                if let Some(id) = &am.edge_gateway_reference_id {
                    out.push(Reference {
                        kind: EntityKind::EdgeGateway,
                        id,
                        pointer: "/edgeGatewayReferenceID".into(),
                    });
                }
                if let Some(list) = &am.edge_gateway_reference_ids {
                    for (i, id) in list.edge_gateway_reference_id.iter().enumerate() {
                        out.push(Reference {
                            kind: EntityKind::EdgeGateway,
                            id,
                            pointer: format!("/edgeGatewayReferenceIDs/edgeGatewayReferenceID/{i}"),
                        });
                    }
                }
                for (i, apm) in am.apms().iter().enumerate() {
                    apm_references(apm, &format!("/analyticsProcessors/apm/{i}"), &mut out);
                }
            }
            Self::Repository(_)
            | Self::DataInterface(_)
            | Self::DataKind(_)
            | Self::AnalyticsProcessorDefinition(_)
            | Self::LiveDataSet(_)
            | Self::Observation(_) => {}
        }
        out
    }

    /// Reads an entity of `kind` from a JSON value already checked against its schema.
    ///
    /// # Errors
    ///
    /// The value does not have the entity's shape.
    pub fn from_json(
        kind: EntityKind,
        value: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        use serde_json::from_value as read;
        Ok(match kind {
            EntityKind::Object => Self::Object(read(value)?),
            EntityKind::Repository => Self::Repository(read(value)?),
            EntityKind::Link => Self::Link(read(value)?),
            EntityKind::DataInterface => Self::DataInterface(read(value)?),
            EntityKind::DataKind => Self::DataKind(read(value)?),
            EntityKind::DataSourceDefinition => Self::DataSourceDefinition(read(value)?),
            EntityKind::DataSourceManifest => Self::DataSourceManifest(read(value)?),
            EntityKind::DataConsumerManifest => Self::DataConsumerManifest(read(value)?),
            EntityKind::DataChannelDescriptor => Self::DataChannelDescriptor(read(value)?),
            EntityKind::EdgeGateway => Self::EdgeGateway(read(value)?),
            EntityKind::AnalyticsProcessorDefinition => {
                Self::AnalyticsProcessorDefinition(read(value)?)
            }
            EntityKind::AnalyticsProcessorManifest => {
                Self::AnalyticsProcessorManifest(read(value)?)
            }
            EntityKind::AnalyticsManifest => Self::AnalyticsManifest(read(value)?),
            EntityKind::LiveDataSet => Self::LiveDataSet(read(value)?),
            EntityKind::Observation => Self::Observation(read(value)?),
        })
    }

    /// The entity's kind.
    #[must_use]
    pub const fn kind(&self) -> EntityKind {
        match self {
            Self::Object(_) => EntityKind::Object,
            Self::Repository(_) => EntityKind::Repository,
            Self::Link(_) => EntityKind::Link,
            Self::DataInterface(_) => EntityKind::DataInterface,
            Self::DataKind(_) => EntityKind::DataKind,
            Self::DataSourceDefinition(_) => EntityKind::DataSourceDefinition,
            Self::DataSourceManifest(_) => EntityKind::DataSourceManifest,
            Self::DataConsumerManifest(_) => EntityKind::DataConsumerManifest,
            Self::DataChannelDescriptor(_) => EntityKind::DataChannelDescriptor,
            Self::EdgeGateway(_) => EntityKind::EdgeGateway,
            Self::AnalyticsProcessorDefinition(_) => EntityKind::AnalyticsProcessorDefinition,
            Self::AnalyticsProcessorManifest(_) => EntityKind::AnalyticsProcessorManifest,
            Self::AnalyticsManifest(_) => EntityKind::AnalyticsManifest,
            Self::LiveDataSet(_) => EntityKind::LiveDataSet,
            Self::Observation(_) => EntityKind::Observation,
        }
    }

    /// The entity's id, when it has one (data sets and observations may not).
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Object(e) => Some(&e.id),
            Self::Repository(e) => Some(&e.id),
            Self::Link(e) => Some(&e.id),
            Self::DataInterface(e) => Some(&e.id),
            Self::DataKind(e) => Some(&e.id),
            Self::DataSourceDefinition(e) => Some(&e.id),
            Self::DataSourceManifest(e) => Some(&e.id),
            Self::DataConsumerManifest(e) => Some(&e.id),
            Self::DataChannelDescriptor(e) => Some(&e.id),
            Self::EdgeGateway(e) => Some(&e.id),
            Self::AnalyticsProcessorDefinition(e) => Some(&e.id),
            Self::AnalyticsProcessorManifest(e) => Some(&e.id),
            Self::AnalyticsManifest(e) => Some(&e.id),
            Self::LiveDataSet(e) => e.id.as_deref(),
            Self::Observation(e) => e.id.as_deref(),
        }
    }

    /// The entity's name, when it has one.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Object(e) => Some(&e.name),
            Self::Repository(e) => e.name.as_deref(),
            Self::Link(_) => None,
            Self::DataInterface(e) => e.name.as_deref(),
            Self::DataKind(e) => e.name.as_deref(),
            Self::DataSourceDefinition(e) => e.name.as_deref(),
            Self::DataSourceManifest(e) => e.name.as_deref(),
            Self::DataConsumerManifest(e) => Some(&e.name),
            Self::EdgeGateway(e) => e.name.as_deref(),
            Self::AnalyticsProcessorDefinition(e) => e.name.as_deref(),
            Self::AnalyticsProcessorManifest(e) => e.name.as_deref(),
            Self::AnalyticsManifest(e) => e.name.as_deref(),
            Self::DataChannelDescriptor(_) | Self::LiveDataSet(_) | Self::Observation(_) => None,
        }
    }

    /// Serializes to JSON (ids spelled `id`).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Self::Object(e) => serde_json::to_value(e),
            Self::Repository(e) => serde_json::to_value(e),
            Self::Link(e) => serde_json::to_value(e),
            Self::DataInterface(e) => serde_json::to_value(e),
            Self::DataKind(e) => serde_json::to_value(e),
            Self::DataSourceDefinition(e) => serde_json::to_value(e),
            Self::DataSourceManifest(e) => serde_json::to_value(e),
            Self::DataConsumerManifest(e) => serde_json::to_value(e),
            Self::DataChannelDescriptor(e) => serde_json::to_value(e),
            Self::EdgeGateway(e) => serde_json::to_value(e),
            Self::AnalyticsProcessorDefinition(e) => serde_json::to_value(e),
            Self::AnalyticsProcessorManifest(e) => serde_json::to_value(e),
            Self::AnalyticsManifest(e) => serde_json::to_value(e),
            Self::LiveDataSet(e) => serde_json::to_value(e),
            Self::Observation(e) => serde_json::to_value(e),
        };
        // Plain data with string keys always serializes.
        v.unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_a_kind_is_unique_across_kinds() {
        for (i, a) in KINDS.iter().enumerate() {
            for b in &KINDS[i + 1..] {
                for (x, y) in [
                    (a.marker, b.marker),
                    (a.element, b.element),
                    (a.plural, b.plural),
                    (a.folder, b.folder),
                    (a.schema, b.schema),
                    (a.short, b.short),
                ] {
                    assert_ne!(x, y, "{:?} and {:?} share a name", a.kind, b.kind);
                }
            }
            assert_eq!(a.kind.info().marker, a.marker);
            assert_eq!(EntityKind::from_name(a.marker), Some(a.kind));
            assert_eq!(EntityKind::from_name(a.element), Some(a.kind));
            assert_eq!(EntityKind::from_folder(a.folder), Some(a.kind));
        }
    }
}
