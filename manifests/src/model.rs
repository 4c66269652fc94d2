//! The digital models, as typed Rust values.
//!
//! Field names follow the paper's tables exactly (`dataInterfaceReferenceID`,
//! `parameters.parameter[]`, ...). Every entity accepts `_id` (the paper) and `id` (the
//! original implementation); it is serialized back as `id`. The JSON Schemas in `schemas/`
//! are the contract: documents are checked against them before they are read into these
//! types, so these types only need to be as strict as the schemas already are.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use crate::cir::{Link, Object, Repository, RepositoryType};

/// The definition of one parameter of a data interface or processor definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterDefinition {
    /// Parameter name, unique within its definition.
    pub name: String,
    /// What the parameter does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Declared value type, as written (`string`, `int`, `float`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// Value used when a manifest gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Json>,
    /// Whether a manifest must give a value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Whether the value is a secret; `None` means "decide from the name".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<bool>,
    /// The accepted values, for an enumeration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<AllowedValues>,
    /// Unit of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The value names a file, and what is done with it: known from the engine's
    /// catalogue (a `path` or `input-file` format in a configuration's schema), never
    /// read from or written to documents.
    #[serde(skip)]
    pub file: Option<FileUse>,
}

/// What a file parameter's file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileUse {
    /// Written (created when missing): a sink's file or database.
    Written,
    /// Read, so it must exist: a replayed file, a certificate, a model.
    Read,
}

impl ParameterDefinition {
    /// The declared type, parsed.
    #[must_use]
    pub fn data_type(&self) -> DataType {
        self.data_type
            .as_deref()
            .map_or(DataType::String, DataType::parse)
    }

    /// Whether values of this parameter are secrets (explicit flag, else by name).
    #[must_use]
    pub fn is_secret(&self) -> bool {
        self.secret
            .unwrap_or_else(|| crate::secret::is_secret_name(&self.name))
    }
}

/// The values an enumerated parameter accepts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AllowedValues {
    /// The values.
    #[serde(default)]
    pub value: Vec<Json>,
}

/// A parameter's declared value type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataType {
    /// Text.
    String,
    /// A whole number (`int`, `integer`, `long`, `short`).
    Integer,
    /// A number (`float`, `double`, `number`, `decimal`).
    Number,
    /// `true` / `false` (`boolean`, `bool`).
    Boolean,
    /// A duration such as `PT1H`, `1h`, `90s`, `500ms`.
    Duration,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// A type DDA does not know; values are not checked.
    Other(String),
}

impl DataType {
    /// Parses a `dataType` as written (case-insensitive).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "text" => Self::String,
            "int" | "integer" | "long" | "short" | "int32" | "int64" => Self::Integer,
            "float" | "double" | "number" | "decimal" | "real" => Self::Number,
            "boolean" | "bool" => Self::Boolean,
            "duration" => Self::Duration,
            "object" | "json" | "map" => Self::Object,
            "array" | "list" => Self::Array,
            _ => Self::Other(text.to_owned()),
        }
    }

    /// The canonical name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::String => "string",
            Self::Integer => "int",
            Self::Number => "float",
            Self::Boolean => "boolean",
            Self::Duration => "duration",
            Self::Object => "object",
            Self::Array => "array",
            Self::Other(name) => name,
        }
    }
}

/// Parameter definitions in the paper's list shape (`{"parameter": [...]}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParameterDefinitions {
    /// The definitions.
    #[serde(default)]
    pub parameter: Vec<ParameterDefinition>,
}

/// A value given for one parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParameterValue {
    /// The parameter's name (`key` in the paper; `name` accepted too).
    #[serde(alias = "name")]
    pub key: String,
    /// The value.
    pub value: Json,
}

/// Parameter values in the paper's list shape (`{"parameter": [...]}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParameterValues {
    /// The values.
    #[serde(default)]
    pub parameter: Vec<ParameterValue>,
}

/// Geographic and/or virtual location.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// Coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<GeoLocation>,
    /// A named place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_location: Option<String>,
}

/// WGS 84 coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeoLocation {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// How to connect to a data source (paper Table 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataInterface {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Protocol: MQTT, Kafka, HTTP, ... (the engine's connector catalogue, `dda connectors`).
    pub communication_protocol: String,
    /// Connection parameters a data source manifest gives values for.
    #[serde(default)]
    pub parameters: ParameterDefinitions,
}

/// The semantics of a data source's values (paper Table 3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataKind {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Payload format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The quantity observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_kind: Option<String>,
    /// Model type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Unit of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The data kinds a source definition produces, in the paper's list shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataKindReferences {
    /// Data kind ids.
    #[serde(rename = "dataKindReferenceID", default)]
    pub data_kind_reference_id: Vec<String>,
}

/// A kind of data source (paper Table 2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSourceDefinition {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The data interface used to reach sources of this definition.
    #[serde(rename = "dataInterfaceReferenceID")]
    pub data_interface_reference_id: String,
    /// The data kinds produced (paper shape).
    #[serde(
        rename = "dataKindReferenceIDs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_kind_reference_ids: Option<DataKindReferences>,
    /// The data kind produced (the original implementation's single-kind variant).
    #[serde(
        rename = "dataKindReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_kind_reference_id: Option<String>,
    /// The CIR object this kind of data source concerns (DDA extension).
    #[serde(
        rename = "objectReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object: Option<String>,
}

impl DataSourceDefinition {
    /// Every data kind id this definition names, whichever variant it uses.
    #[must_use]
    pub fn data_kind_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .data_kind_reference_ids
            .iter()
            .flat_map(|r| r.data_kind_reference_id.iter().map(String::as_str))
            .collect();
        ids.extend(self.data_kind_reference_id.as_deref());
        ids
    }
}

/// One data source instance (paper Table 4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSourceManifest {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hardware address of the device.
    #[serde(
        rename = "macAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mac_address: Option<String>,
    /// The definition this source is an instance of.
    #[serde(rename = "dataSourceDefinitionReferenceID")]
    pub data_source_definition_reference_id: String,
    /// The edge gateway the source is registered to.
    #[serde(
        rename = "edgeGatewayReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_reference_id: Option<String>,
    /// Values for the data interface's parameters.
    #[serde(rename = "dataSourceDefinitionInterfaceParameters", default)]
    pub data_source_definition_interface_parameters: ParameterValues,
    /// Where the source is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The CIR object this data source concerns (DDA extension).
    #[serde(
        rename = "objectReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object: Option<String>,
}

/// One data consumer instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataConsumerManifest {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hardware address of the device.
    #[serde(
        rename = "macAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mac_address: Option<String>,
    /// The edge gateway the consumer is attached to.
    #[serde(
        rename = "edgeGatewayReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_reference_id: Option<String>,
    /// Where the consumer receives data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Where the consumer is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// State of a data channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelState {
    /// Data flows.
    #[default]
    Open,
    /// Closed.
    Closed,
}

/// A live association between a consumer and a source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataChannelDescriptor {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// The consumer.
    #[serde(rename = "dataConsumerManifestReferenceID")]
    pub data_consumer_manifest_reference_id: String,
    /// The source.
    #[serde(rename = "dataSourceManifestReferenceID")]
    pub data_source_manifest_reference_id: String,
    /// Whether the channel is open.
    #[serde(default)]
    pub state: ChannelState,
    /// When the channel was established or last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Json>,
}

/// Data source manifests registered to a gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSourceManifestReferences {
    /// DSM ids.
    #[serde(rename = "dataSourceManifestReferenceID", default)]
    pub data_source_manifest_reference_id: Vec<String>,
}

/// An edge gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EdgeGateway {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Short unique name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Hardware address.
    #[serde(
        rename = "macAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mac_address: Option<String>,
    /// Where the gateway is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Base URL of the original engine's data router.
    #[serde(
        rename = "dataRouterAndPreprocessorBaseURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_router_and_preprocessor_base_url: Option<String>,
    /// Base URL of the gateway's engine API.
    #[serde(
        rename = "edgeAnalyticsEngineBaseURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_analytics_engine_base_url: Option<String>,
    /// Free-form notes.
    #[serde(
        rename = "additionalInformation",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_information: Vec<String>,
    /// Data sources registered to this gateway.
    #[serde(
        rename = "dataSourceManifestReferenceIDs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_source_manifest_reference_ids: Option<DataSourceManifestReferences>,
    /// Labels, each `key=value`, that deployments choose gateways by (DDA extension).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The token the cloud calls the gateway's engine with, as a secret reference
    /// (`${env:NAME}` or `${file:PATH}`), never the token itself (DDA extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The CIR object this gateway concerns (DDA extension).
    #[serde(
        rename = "objectReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object: Option<String>,
}

impl EdgeGateway {
    /// Its labels as (key, value) pairs; a label without `=` has an empty value.
    pub fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .map(|l| l.split_once('=').unwrap_or((l.as_str(), "")))
    }
}

/// A processor's category (paper §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Prepares streams (filtering, mapping) for other processors.
    Preprocessor,
    /// Computes results (statistics, detection, ML).
    Analytics,
    /// Persists streams.
    Storage,
}

impl Category {
    /// The name as written in manifests.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Preprocessor => "preprocessor",
            Self::Analytics => "analytics",
            Self::Storage => "storage",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A processor type and the parameters its instances take (paper Table 5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsProcessorDefinition {
    /// Identifier.
    #[serde(alias = "_id")]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The processor implementation (`average`, `filter`, `store`, ...).
    pub processor_type: String,
    /// Category; when absent, the processor catalogue's category applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Version of the definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Copyright holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copyright: Option<String>,
    /// The original engine's program path; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_location: Option<String>,
    /// Parameters instances take.
    #[serde(default)]
    pub parameters: ParameterDefinitions,
}

/// A reference to a data source manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSourceReference {
    /// The DSM id.
    #[serde(rename = "dataSourceManifestReferenceID")]
    pub data_source_manifest_reference_id: String,
}

/// The sources a processor reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSources {
    /// References, in order.
    #[serde(rename = "dataSource", default)]
    pub data_source: Vec<DataSourceReference>,
}

/// A processor instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsProcessorManifest {
    /// Identifier (assigned when absent).
    #[serde(alias = "_id", default)]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The processor definition.
    #[serde(rename = "analyticsProcessorDefinitionReferenceID")]
    pub analytics_processor_definition_reference_id: String,
    /// Parameter values.
    #[serde(default)]
    pub parameters: ParameterValues,
    /// The sources read.
    #[serde(rename = "dataSources")]
    pub data_sources: DataSources,
    /// The sink written.
    #[serde(rename = "dataSink")]
    pub data_sink: DataSourceReference,
}

impl AnalyticsProcessorManifest {
    /// Ids of the DSMs this processor reads.
    pub fn source_ids(&self) -> impl Iterator<Item = &str> {
        self.data_sources
            .data_source
            .iter()
            .map(|s| s.data_source_manifest_reference_id.as_str())
    }

    /// Id of the DSM this processor writes.
    #[must_use]
    pub fn sink_id(&self) -> &str {
        &self.data_sink.data_source_manifest_reference_id
    }
}

/// The processor instances of an analytics manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsProcessors {
    /// The instances.
    #[serde(default)]
    pub apm: Vec<AnalyticsProcessorManifest>,
}

/// Edge gateways a global analytics manifest combines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EdgeGatewayReferences {
    /// Gateway ids.
    #[serde(rename = "edgeGatewayReferenceID", default)]
    pub edge_gateway_reference_id: Vec<String>,
}

/// The gateways a template deploys to: those in `namespace` (when given) that carry every
/// one of `labels` (DDA extension). A label `key=value` wants that value, a bare `key`
/// any value; a selector with neither chooses every gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeGatewaySelector {
    /// The gateways' namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels every chosen gateway carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl EdgeGatewaySelector {
    /// Whether it chooses gateway `g`.
    #[must_use]
    pub fn matches(&self, g: &EdgeGateway) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|n| g.namespace.as_ref() == Some(n))
            && self.labels.iter().all(|want| match want.split_once('=') {
                Some((k, v)) => g.label_pairs().any(|(gk, gv)| gk == k && gv == v),
                None => g.label_pairs().any(|(gk, _)| gk == want),
            })
    }
}

/// An analytics workflow (paper Table 6).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsManifest {
    /// Identifier (assigned when absent, as in the paper's Table 6).
    #[serde(alias = "_id", default)]
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The gateway that runs this workflow; `None` for a global workflow.
    #[serde(
        rename = "edgeGatewayReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_reference_id: Option<String>,
    /// Gateways a global workflow combines.
    #[serde(
        rename = "edgeGatewayReferenceIDs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_reference_ids: Option<EdgeGatewayReferences>,
    /// Makes this manifest a template: on a cloud, it runs on every gateway the selector
    /// chooses, its data sources resolved per gateway (DDA extension).
    #[serde(
        rename = "edgeGatewaySelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_selector: Option<EdgeGatewaySelector>,
    /// The processor instances.
    #[serde(rename = "analyticsProcessors")]
    pub analytics_processors: AnalyticsProcessors,
}

impl AnalyticsManifest {
    /// Whether this is an edge workflow (runs on one gateway) rather than a global one.
    #[must_use]
    pub const fn is_edge(&self) -> bool {
        self.edge_gateway_reference_id.is_some()
    }

    /// Whether a cloud deploys it to gateways rather than running it itself: a template
    /// (`edgeGatewaySelector`), or a manifest naming one gateway (`edgeGatewayReferenceID`
    /// and not `edgeGatewayReferenceIDs`, which a global manifest combines).
    #[must_use]
    pub const fn runs_on_gateways(&self) -> bool {
        self.edge_gateway_selector.is_some()
            || (self.edge_gateway_reference_id.is_some()
                && self.edge_gateway_reference_ids.is_none())
    }

    /// The processor instances.
    #[must_use]
    pub fn apms(&self) -> &[AnalyticsProcessorManifest] {
        &self.analytics_processors.apm
    }
}

/// One observed value (paper Table 7), nested or in the flat form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Identifier.
    #[serde(alias = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name of the observed quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Data kind of the value.
    #[serde(
        rename = "dataKindReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_kind_reference_id: Option<String>,
    /// When observed (text or epoch milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Json>,
    /// The value.
    pub value: Json,
    /// Where observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Source (flat form).
    #[serde(
        rename = "dataSourceManifestReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_source_manifest_reference_id: Option<String>,
    /// Gateway (flat form).
    #[serde(
        rename = "edgeGatewayReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub edge_gateway_reference_id: Option<String>,
    /// Acquisition time (flat form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquisition_timestamp: Option<Json>,
    /// Collection time (flat form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_timestamp: Option<Json>,
}

/// Observations from one source (paper Table 7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDataSet {
    /// Identifier.
    #[serde(alias = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The source.
    #[serde(
        rename = "dataSourceManifestReferenceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_source_manifest_reference_id: Option<String>,
    /// When produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Json>,
    /// Whether the source is mobile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<bool>,
    /// Where the source was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The observations.
    #[serde(default)]
    pub observation: Vec<Observation>,
}
