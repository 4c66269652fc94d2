//! Phase two of validation: the meaning of the models across documents.
//!
//! Runs over everything that passed phase one and reports every problem, not the first:
//! ids unique; references resolve (DSM → DSD → DI/DK, APM → APD, APM sources and sink →
//! DSM, AM → edge gateway, ...); parameter values match their definitions (DSMs against
//! their data interface, APMs against their processor definition and the processor
//! catalogue); each analytics manifest's processor graph is acyclic; every processor input
//! is fed by a source or by another processor; secrets are references, not plain text.
//!
//! The result is a [`Model`]: the entities by id, with parameters resolved and defaults
//! applied, ready for the engine.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use petgraph::graphmap::DiGraphMap;

use crate::bundle::{Bundle, LoadedEntity};
use crate::config::ConfigError;
use crate::diagnostic::Diagnostic;
use crate::kind::{Entity, EntityKind};
use crate::model::{
    AnalyticsManifest, AnalyticsProcessorDefinition, AnalyticsProcessorManifest, Category,
    DataChannelDescriptor, DataConsumerManifest, DataInterface, DataKind, DataSourceDefinition,
    DataSourceManifest, EdgeGateway, LiveDataSet, Observation, ParameterDefinition,
};
use crate::parameters::{self, ResolvedParameters};
use crate::suggest::closest;

/// The names of the engine's in-process bus protocol: a data interface naming one of them
/// (any case) has no external system behind it, so some processor must write its data
/// sources. The bus belongs to the engine, not to a connector: the validator knows it
/// without a catalogue.
pub const BUS_PROTOCOLS: &[&str] = &["Bus", "internal", "in-process"];

/// Whether `protocol` names the in-process bus.
#[must_use]
pub fn is_bus(protocol: &str) -> bool {
    BUS_PROTOCOLS
        .iter()
        .any(|b| b.eq_ignore_ascii_case(protocol.trim()))
}

/// What the engine's processor catalogue knows about one processor type.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessorSpec {
    /// Its category.
    pub category: Category,
    /// The parameters it takes.
    pub parameters: Vec<ParameterDefinition>,
    /// How many sources it reads at least.
    pub min_sources: usize,
}

/// What the engine's connector catalogue knows about one communication protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorSpec {
    /// The protocol's name, as the catalogue spells it (`MQTT`, `SQLite`).
    pub protocol: String,
    /// Other names data interfaces may give it (`mqtts`, `postgres`), any case.
    pub aliases: Vec<String>,
    /// The parameters its data sources take.
    pub parameters: Vec<ParameterDefinition>,
    /// Whether its data sources can be read (a source connector).
    pub reads: bool,
    /// Whether its data sources can be written (a sink connector).
    pub writes: bool,
    /// Whether its data exists only inside the engine (the in-process bus): no connector
    /// brings it in, so some processor must write it.
    pub internal: bool,
}

/// The processor types and protocols an engine can run, for validation. The engine
/// provides one; without it, processor types and parameters are checked only against the
/// definitions in the bundle, and protocols not at all.
pub trait Catalogue {
    /// The processor type `processor_type`, if the engine has it.
    fn processor(&self, processor_type: &str) -> Option<&ProcessorSpec>;
    /// Every processor type, for "did you mean" hints.
    fn processor_types(&self) -> Vec<String>;
    /// The connector of `protocol` (its name or an alias, any case), if the engine has one.
    fn connector(&self, protocol: &str) -> Option<&ConnectorSpec>;
    /// Every protocol's name, for "did you mean" hints.
    fn protocols(&self) -> Vec<String>;
    /// Checks a processor's parameter values (resolved against its definitions) as the
    /// processor will read them: ranges and combinations that types do not express.
    ///
    /// # Errors
    ///
    /// The first problem, naming its parameter when one is at fault.
    fn check_processor(
        &self,
        _processor_type: &str,
        _values: &ResolvedParameters,
    ) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Checks a data source's parameter values as its connector will read them.
    ///
    /// # Errors
    ///
    /// As [`Catalogue::check_processor`].
    fn check_connector(
        &self,
        _protocol: &str,
        _values: &ResolvedParameters,
    ) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Options of phase two.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// The processor catalogue, when known.
    pub catalogue: Option<&'a dyn Catalogue>,
    /// A server's limits on paths and secret references ([`crate::reach`]); none for a
    /// local bundle.
    pub reach: Option<&'a crate::reach::Reach>,
    /// Whether a data source is written by something outside the bundle (a repository
    /// validating a candidate with only what it refers to): such a bus topic is fed.
    pub fed_elsewhere: Option<&'a dyn Fn(&str) -> bool>,
    /// Whether edge gateways are registered elsewhere (an edge engine of a fleet: the
    /// cloud holds the gateway registry): references to them are not checked here.
    pub gateways_elsewhere: bool,
    /// Whether a data source manifest naming an edge gateway is read and written on that
    /// gateway (a cloud engine of a fleet): the files it names are not looked for here.
    pub files_on_gateways: bool,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("catalogue", &self.catalogue.is_some())
            .field("reach", &self.reach)
            .field("fed_elsewhere", &self.fed_elsewhere.is_some())
            .field("gateways_elsewhere", &self.gateways_elsewhere)
            .field("files_on_gateways", &self.files_on_gateways)
            .finish()
    }
}

/// The validated models, by id, with parameters resolved.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// CIR objects.
    pub objects: IndexMap<String, crate::cir::Object>,
    /// CIR repositories.
    pub repositories: IndexMap<String, crate::cir::Repository>,
    /// CIR links.
    pub links: IndexMap<String, crate::cir::Link>,
    /// Data interfaces.
    pub data_interfaces: IndexMap<String, DataInterface>,
    /// Data kinds.
    pub data_kinds: IndexMap<String, DataKind>,
    /// Data source definitions.
    pub data_source_definitions: IndexMap<String, DataSourceDefinition>,
    /// Data source manifests.
    pub data_source_manifests: IndexMap<String, DataSourceManifest>,
    /// Data consumer manifests.
    pub data_consumer_manifests: IndexMap<String, DataConsumerManifest>,
    /// Data channel descriptors.
    pub data_channel_descriptors: IndexMap<String, DataChannelDescriptor>,
    /// Edge gateways.
    pub edge_gateways: IndexMap<String, EdgeGateway>,
    /// Analytics processor definitions.
    pub analytics_processor_definitions: IndexMap<String, AnalyticsProcessorDefinition>,
    /// Stand-alone analytics processor manifests.
    pub analytics_processor_manifests: IndexMap<String, AnalyticsProcessorManifest>,
    /// Analytics manifests.
    pub analytics_manifests: IndexMap<String, AnalyticsManifest>,
    /// Live data sets (data, not configuration).
    pub live_data_sets: Vec<LiveDataSet>,
    /// Flat observations.
    pub observations: Vec<Observation>,
    /// Resolved parameters of each DSM, by DSM id.
    pub dsm_parameters: HashMap<String, ResolvedParameters>,
    /// Resolved parameters of each APM, by the id of its analytics manifest (empty for a
    /// stand-alone one) and its own: processors of two manifests may share an id. Read
    /// them with [`Model::parameters_of`].
    pub apm_parameters: HashMap<(String, String), ResolvedParameters>,
}

impl Model {
    /// The resolved parameters of processor `apm` of analytics manifest `am` (`None`: a
    /// stand-alone processor manifest).
    #[must_use]
    pub fn parameters_of(&self, am: Option<&str>, apm: &str) -> Option<&ResolvedParameters> {
        self.apm_parameters
            .get(&(am.unwrap_or_default().to_owned(), apm.to_owned()))
    }

    /// Adds or replaces what `part` holds — a model validated from some of the same
    /// entities (a candidate with what it refers to) — with its resolved parameters. Live
    /// data sets and observations, which have no ids, are not merged.
    pub fn absorb(&mut self, part: Self) {
        fn into<T>(to: &mut IndexMap<String, T>, from: IndexMap<String, T>) {
            for (id, v) in from {
                to.insert(id, v);
            }
        }
        into(&mut self.objects, part.objects);
        into(&mut self.repositories, part.repositories);
        into(&mut self.links, part.links);
        into(&mut self.data_interfaces, part.data_interfaces);
        into(&mut self.data_kinds, part.data_kinds);
        into(
            &mut self.data_source_definitions,
            part.data_source_definitions,
        );
        into(&mut self.data_source_manifests, part.data_source_manifests);
        into(
            &mut self.data_consumer_manifests,
            part.data_consumer_manifests,
        );
        into(
            &mut self.data_channel_descriptors,
            part.data_channel_descriptors,
        );
        into(&mut self.edge_gateways, part.edge_gateways);
        into(
            &mut self.analytics_processor_definitions,
            part.analytics_processor_definitions,
        );
        into(
            &mut self.analytics_processor_manifests,
            part.analytics_processor_manifests,
        );
        into(&mut self.analytics_manifests, part.analytics_manifests);
        self.dsm_parameters.extend(part.dsm_parameters);
        self.apm_parameters.extend(part.apm_parameters);
    }

    /// Entity `id` of `kind` as JSON (None: no such entity, or a kind without ids).
    #[must_use]
    pub fn entity_json(&self, kind: EntityKind, id: &str) -> Option<serde_json::Value> {
        fn json<T: serde::Serialize>(
            map: &IndexMap<String, T>,
            id: &str,
        ) -> Option<serde_json::Value> {
            map.get(id).and_then(|e| serde_json::to_value(e).ok())
        }
        match kind {
            EntityKind::Object => json(&self.objects, id),
            EntityKind::Repository => json(&self.repositories, id),
            EntityKind::Link => json(&self.links, id),
            EntityKind::DataInterface => json(&self.data_interfaces, id),
            EntityKind::DataKind => json(&self.data_kinds, id),
            EntityKind::DataSourceDefinition => json(&self.data_source_definitions, id),
            EntityKind::DataSourceManifest => json(&self.data_source_manifests, id),
            EntityKind::DataConsumerManifest => json(&self.data_consumer_manifests, id),
            EntityKind::DataChannelDescriptor => json(&self.data_channel_descriptors, id),
            EntityKind::EdgeGateway => json(&self.edge_gateways, id),
            EntityKind::AnalyticsProcessorDefinition => {
                json(&self.analytics_processor_definitions, id)
            }
            EntityKind::AnalyticsProcessorManifest => json(&self.analytics_processor_manifests, id),
            EntityKind::AnalyticsManifest => json(&self.analytics_manifests, id),
            EntityKind::LiveDataSet | EntityKind::Observation => None,
        }
    }

    /// Removes entity `id` of `kind`, with its resolved parameters (those of an analytics
    /// manifest's processors too).
    pub fn remove(&mut self, kind: EntityKind, id: &str) {
        match kind {
            EntityKind::Object => drop(self.objects.shift_remove(id)),
            EntityKind::Repository => drop(self.repositories.shift_remove(id)),
            EntityKind::Link => drop(self.links.shift_remove(id)),
            EntityKind::DataInterface => drop(self.data_interfaces.shift_remove(id)),
            EntityKind::DataKind => drop(self.data_kinds.shift_remove(id)),
            EntityKind::DataSourceDefinition => {
                drop(self.data_source_definitions.shift_remove(id));
            }
            EntityKind::DataSourceManifest => {
                self.data_source_manifests.shift_remove(id);
                self.dsm_parameters.remove(id);
            }
            EntityKind::DataConsumerManifest => {
                drop(self.data_consumer_manifests.shift_remove(id));
            }
            EntityKind::DataChannelDescriptor => {
                drop(self.data_channel_descriptors.shift_remove(id));
            }
            EntityKind::EdgeGateway => drop(self.edge_gateways.shift_remove(id)),
            EntityKind::AnalyticsProcessorDefinition => {
                drop(self.analytics_processor_definitions.shift_remove(id));
            }
            EntityKind::AnalyticsProcessorManifest => {
                self.analytics_processor_manifests.shift_remove(id);
                self.apm_parameters.remove(&(String::new(), id.to_owned()));
            }
            EntityKind::AnalyticsManifest => {
                if let Some(am) = self.analytics_manifests.shift_remove(id) {
                    for apm in am.apms() {
                        self.apm_parameters.remove(&(id.to_owned(), apm.id.clone()));
                    }
                }
            }
            EntityKind::LiveDataSet | EntityKind::Observation => {}
        }
    }

    /// The data interface of a DSM (through its definition).
    #[must_use]
    pub fn interface_of(&self, dsm: &DataSourceManifest) -> Option<&DataInterface> {
        let dsd = self
            .data_source_definitions
            .get(&dsm.data_source_definition_reference_id)?;
        self.data_interfaces.get(&dsd.data_interface_reference_id)
    }

    /// The communication protocol of a DSM's data interface, as written.
    #[must_use]
    pub fn protocol_of(&self, dsm_id: &str) -> Option<&str> {
        let dsm = self.data_source_manifests.get(dsm_id)?;
        self.interface_of(dsm)
            .map(|di| di.communication_protocol.as_str())
    }

    /// The data kinds a DSM produces.
    #[must_use]
    pub fn kinds_of(&self, dsm: &DataSourceManifest) -> Vec<&DataKind> {
        self.data_source_definitions
            .get(&dsm.data_source_definition_reference_id)
            .map(|dsd| {
                dsd.data_kind_ids()
                    .into_iter()
                    .filter_map(|id| self.data_kinds.get(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The definition of an APM.
    #[must_use]
    pub fn definition_of(
        &self,
        apm: &AnalyticsProcessorManifest,
    ) -> Option<&AnalyticsProcessorDefinition> {
        self.analytics_processor_definitions
            .get(&apm.analytics_processor_definition_reference_id)
    }
}

/// Assigns ids to analytics manifests (and their processors) written without one, as the
/// paper's Table 6 is, and to CIR links written without one. The id is derived from the
/// content (a link's from its repository and local id), so it is the same every run.
pub fn assign_ids(bundle: &mut Bundle) {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6464_612d_616d_4000_8000_6d61_6e69_6673);
    for loaded in &mut bundle.entities {
        if let Entity::Link(l) = &*loaded.entity
            && l.id.is_empty()
            && let Entity::Link(l) = std::sync::Arc::make_mut(&mut loaded.entity)
        {
            l.id = crate::cir::Link::derived_id(&l.repository, &l.local_id);
        }
        if let Entity::AnalyticsManifest(am) = std::sync::Arc::make_mut(&mut loaded.entity) {
            if am.id.is_empty() {
                let canonical =
                    serde_json::to_vec(&Entity::AnalyticsManifest(am.clone()).to_json())
                        .unwrap_or_default();
                am.id = uuid::Uuid::new_v5(&NAMESPACE, &canonical).to_string();
            }
            let am_id = am.id.clone();
            for (i, apm) in am.analytics_processors.apm.iter_mut().enumerate() {
                if apm.id.is_empty() {
                    apm.id = uuid::Uuid::new_v5(&NAMESPACE, format!("{am_id}/apm/{i}").as_bytes())
                        .to_string();
                }
            }
        }
    }
}

/// Where each entity is, by kind and id (first occurrence).
struct Index<'b> {
    by_kind: HashMap<EntityKind, IndexMap<&'b str, &'b LoadedEntity>>,
}

impl<'b> Index<'b> {
    fn get(&self, kind: EntityKind, id: &str) -> Option<&'b LoadedEntity> {
        self.by_kind.get(&kind).and_then(|m| m.get(id)).copied()
    }

    fn ids(&self, kind: EntityKind) -> impl Iterator<Item = &'b str> + '_ {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flat_map(|m| m.keys().copied())
    }
}

struct Checker<'b> {
    bundle: &'b Bundle,
    index: Index<'b>,
    diags: Vec<Diagnostic>,
    /// (file, absolute pointer) of secret values, to mask in snippets.
    secrets: Vec<(usize, String)>,
}

impl<'b> Checker<'b> {
    fn report(&mut self, at: &LoadedEntity, pointer: &str, d: Diagnostic) {
        let file = &self.bundle.files[at.file];
        self.diags
            .push(file.place(d, &format!("{}{pointer}", at.pointer)));
    }

    /// Checks that `id` names an entity of `kind`; reports at `pointer` otherwise.
    fn reference(
        &mut self,
        from: &LoadedEntity,
        pointer: &str,
        kind: EntityKind,
        id: &str,
    ) -> Option<&'b LoadedEntity> {
        if let Some(found) = self.index.get(kind, id) {
            return Some(found);
        }
        if kind == EntityKind::DataSourceManifest && id == crate::DEAD_LETTER_DSM {
            // The engine's own: known everywhere, declared nowhere.
            return None;
        }
        let mut hint = closest(id, self.index.ids(kind)).map(|c| format!("did you mean `{c}`?"));
        if hint.is_none() {
            // The user may have written a name where an id belongs.
            let by_name = self
                .index
                .by_kind
                .get(&kind)
                .and_then(|m| m.values().find(|e| e.entity.name() == Some(id)));
            hint = by_name.and_then(|e| e.entity.id()).map(|real| {
                format!(
                    "`{id}` is the name of {} `{real}`; references use ids",
                    kind.info().short
                )
            });
        }
        if hint.is_none() {
            // Or an id of the wrong kind.
            hint = self
                .index
                .by_kind
                .iter()
                .find(|(k, m)| **k != kind && m.contains_key(id))
                .map(|(k, _)| format!("`{id}` is a {k}, not a {kind}"));
        }
        let hint = hint.unwrap_or_else(|| {
            format!(
                "define the {kind} in the bundle (validate all documents together: dda validate DIR...)"
            )
        });
        let d = Diagnostic::error("dangling-reference", format!("no {kind} with id `{id}`"))
            .with_hint(hint);
        self.report(from, pointer, d);
        None
    }

    fn parameter_issues(
        &mut self,
        at: &LoadedEntity,
        base: &str,
        resolution: &parameters::Resolution,
    ) {
        for issue in &resolution.issues {
            let d = Diagnostic {
                severity: issue.severity,
                ..Diagnostic::error(issue.code, issue.message.clone())
            }
            .with_hint_opt(issue.hint.clone());
            self.report(at, &format!("{base}{}", issue.pointer), d);
        }
        for p in &resolution.secret_values {
            self.secrets
                .push((at.file, format!("{}{base}{p}", at.pointer)));
        }
    }
}

/// Phase two over a loaded bundle: adds diagnostics to it and returns the model.
///
/// An entity defined twice with the same content (a JSON and an XML rendition of one
/// bundle, say) counts once; the same id with different content is a `duplicate-id` error.
pub fn validate(bundle: &mut Bundle, options: &Options<'_>) -> Model {
    assign_ids(bundle);
    let (model, diags, secrets) = {
        let mut index = Index {
            by_kind: HashMap::new(),
        };
        let mut diags = Vec::new();
        for loaded in &bundle.entities {
            let Some(id) = loaded.entity.id() else {
                continue;
            };
            let id_pointer = |file: &crate::bundle::SourceFile| {
                let field = if file.node_at(&format!("{}/_id", loaded.pointer)).is_some() {
                    "/_id"
                } else {
                    "/id"
                };
                format!("{}{field}", loaded.pointer)
            };
            let by_id = index.by_kind.entry(loaded.entity.kind()).or_default();
            if let Some(first) = by_id.get(id) {
                if first.entity == loaded.entity {
                    // The same entity written twice alike (say in a JSON and an XML rendition
                    // of one bundle) is one entity.
                    continue;
                }
                let file = &bundle.files[loaded.file];
                if loaded.entity.kind() == EntityKind::Link
                    && file.node_at(&format!("{}/id", loaded.pointer)).is_none()
                    && file.node_at(&format!("{}/_id", loaded.pointer)).is_none()
                {
                    // An id derived from the record it links: `duplicate-link` says it.
                    continue;
                }
                let first_file = &bundle.files[first.file];
                let pos = first_file
                    .lines
                    .position(&first_file.text, first_file.span_of(&first.pointer).start);
                let d = Diagnostic::error(
                    "duplicate-id",
                    format!("{} id `{id}` is used twice", loaded.entity.kind()),
                )
                .with_hint(format!(
                    "first defined at {}:{pos}; give each entity its own id",
                    first_file.path.display()
                ));
                let file = &bundle.files[loaded.file];
                diags.push(file.place(d, &id_pointer(file)));
            } else {
                by_id.insert(id, loaded);
            }
        }
        let mut checker = Checker {
            bundle,
            index,
            diags,
            secrets: Vec::new(),
        };
        let model = check_all(&mut checker, options);
        (model, checker.diags, checker.secrets)
    };
    for (file, pointer) in secrets {
        let span = bundle.files[file].span_of(&pointer);
        bundle.files[file].masked.push(span);
    }
    bundle.diagnostics.extend(diags);
    model
}

/// A gateway's labels are `key=value`; its credential is a secret reference the server
/// may resolve.
fn check_gateway(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    eg: &EdgeGateway,
    options: &Options<'_>,
) {
    if let Some(text) = &eg.credential
        && let Some(message) = refused_secret_reference(text, options)
    {
        let d = Diagnostic::error("reference-not-allowed", message).with_hint(
            "put the token in a file under an allowed secrets folder or in a DDA_SECRET_ variable, and name it here (docs/fleet.md)",
        );
        c.report(loaded, "/credential", d);
    }
}

/// Why `text`, which must be a secret reference (`${env:NAME}`, `${file:PATH}`), is
/// refused: not a reference, malformed, or out of the engine's reach.
pub(crate) fn refused_secret_reference(text: &str, options: &Options<'_>) -> Option<String> {
    match crate::secret::SecretRef::parse(text) {
        None => Some(
            "this is a secret reference, `${env:NAME}` or `${file:PATH}`, never the secret itself"
                .to_owned(),
        ),
        Some(Err(e)) => Some(e.to_string()),
        Some(Ok(reference)) => options.reach.and_then(|r| r.secret(&reference).err()),
    }
}

fn check_all(c: &mut Checker<'_>, options: &Options<'_>) -> Model {
    let mut model = Model::default();
    let bundle = c.bundle;
    for loaded in &bundle.entities {
        for r in loaded.entity.references() {
            if !(options.gateways_elsewhere && r.kind == EntityKind::EdgeGateway) {
                c.reference(loaded, &r.pointer, r.kind, r.id);
            }
        }
        match &*loaded.entity {
            Entity::Object(o) => {
                model
                    .objects
                    .entry(o.id.clone())
                    .or_insert_with(|| o.clone());
            }
            Entity::Repository(r) => {
                crate::cir::check_repository(&mut |p, d| c.report(loaded, p, d), r, options);
                // A password written in place (refused above) is never shown in a snippet.
                for (field, plain) in [
                    (
                        "password",
                        r.password.as_deref().is_some_and(|pw| {
                            !crate::secret::is_reference(&serde_json::Value::String(pw.to_owned()))
                        }),
                    ),
                    (
                        "url",
                        r.url.as_deref().is_some_and(crate::cir::url_has_password),
                    ),
                ] {
                    if plain {
                        c.secrets
                            .push((loaded.file, format!("{}/{field}", loaded.pointer)));
                    }
                }
                model
                    .repositories
                    .entry(r.id.clone())
                    .or_insert_with(|| r.clone());
            }
            Entity::Link(l) => {
                model.links.entry(l.id.clone()).or_insert_with(|| l.clone());
            }
            Entity::DataInterface(di) => {
                check_di(c, loaded, di, options);
                model
                    .data_interfaces
                    .entry(di.id.clone())
                    .or_insert_with(|| di.clone());
            }
            Entity::DataKind(dk) => {
                model
                    .data_kinds
                    .entry(dk.id.clone())
                    .or_insert_with(|| dk.clone());
            }
            Entity::DataSourceDefinition(dsd) => {
                model
                    .data_source_definitions
                    .entry(dsd.id.clone())
                    .or_insert_with(|| dsd.clone());
            }
            Entity::DataSourceManifest(dsm) => check_dsm(c, loaded, dsm, options, &mut model),
            Entity::DataConsumerManifest(dcm) => {
                model
                    .data_consumer_manifests
                    .entry(dcm.id.clone())
                    .or_insert_with(|| dcm.clone());
            }
            Entity::DataChannelDescriptor(dcd) => {
                model
                    .data_channel_descriptors
                    .entry(dcd.id.clone())
                    .or_insert_with(|| dcd.clone());
            }
            Entity::EdgeGateway(eg) => {
                check_gateway(c, loaded, eg, options);
                model
                    .edge_gateways
                    .entry(eg.id.clone())
                    .or_insert_with(|| eg.clone());
            }
            Entity::AnalyticsProcessorDefinition(apd) => {
                check_apd(c, loaded, apd, options);
                model
                    .analytics_processor_definitions
                    .entry(apd.id.clone())
                    .or_insert_with(|| apd.clone());
            }
            Entity::AnalyticsProcessorManifest(apm) => {
                check_apm(c, loaded, (None, ""), apm, options, &mut model);
                model
                    .analytics_processor_manifests
                    .entry(apm.id.clone())
                    .or_insert_with(|| apm.clone());
            }
            Entity::AnalyticsManifest(am) => {
                check_am(c, loaded, am, options, &mut model);
                model
                    .analytics_manifests
                    .entry(am.id.clone())
                    .or_insert_with(|| am.clone());
            }
            Entity::LiveDataSet(lds) => model.live_data_sets.push(lds.clone()),
            Entity::Observation(obs) => model.observations.push(obs.clone()),
        }
    }
    check_inputs_are_fed(c, &model, options);
    check_registry(c);
    model
}

/// Across the registry: every object's id is a UUID and no object is its own ancestor;
/// one local id of a repository is linked to one object.
fn check_registry(c: &mut Checker<'_>) {
    let bundle = c.bundle;
    let mut claimed: HashMap<(&str, &str), &LoadedEntity> = HashMap::new();
    for loaded in &bundle.entities {
        match &*loaded.entity {
            Entity::Object(o) => {
                if uuid::Uuid::try_parse(&o.id).is_err() {
                    let d = Diagnostic::error("not-a-uuid", format!("CIR id `{}` is not a UUID", o.id))
                        .with_hint(format!(
                            "an object's id is a UUID such as `{}`; leave it out when creating over the API and one is given",
                            uuid::Uuid::new_v4()
                        ));
                    let field = if bundle.files[loaded.file]
                        .node_at(&format!("{}/_id", loaded.pointer))
                        .is_some()
                    {
                        "/_id"
                    } else {
                        "/id"
                    };
                    c.report(loaded, field, d);
                }
                if let Some(path) = ancestry_cycle(&c.index, o) {
                    let d = Diagnostic::error(
                        "cycle",
                        format!(
                            "object `{}` is its own ancestor: {}",
                            o.id,
                            path.join(" → ")
                        ),
                    )
                    .with_hint(
                        "an object's parent is what it is part of; remove one parent of the cycle",
                    );
                    c.report(loaded, "/parentObjectReferenceID", d);
                }
            }
            Entity::Link(l) => {
                let Some(first) = claimed
                    .get(&(l.repository.as_str(), l.local_id.as_str()))
                    .copied()
                else {
                    claimed.insert((&l.repository, &l.local_id), loaded);
                    continue;
                };
                if first.entity == loaded.entity {
                    // The same link written twice alike.
                    continue;
                }
                let Entity::Link(other) = &*first.entity else {
                    continue;
                };
                // Both are reported: either may be the one to correct (a repository
                // validating a candidate keeps only the candidate's problems).
                for (at, this, that, there) in
                    [(loaded, l, other, first), (first, other, l, loaded)]
                {
                    let file = &bundle.files[there.file];
                    let pos = file
                        .lines
                        .position(&file.text, file.span_of(&there.pointer).start);
                    let d = Diagnostic::error(
                        "duplicate-link",
                        format!(
                            "record `{}` of repository `{}` is linked twice (to object `{}` and `{}`)",
                            this.local_id, this.repository, this.object, that.object
                        ),
                    )
                    .with_hint(format!(
                        "also linked by link `{}` at {}:{pos}; a record is about one object: delete one link or correct its localID",
                        that.id,
                        file.path.display()
                    ));
                    c.report(at, "/localID", d);
                }
            }
            _ => {}
        }
    }
}

/// The cycle through `o`'s parents back to `o`, when there is one (ids, `o`'s first and
/// last).
fn ancestry_cycle(index: &Index<'_>, o: &crate::cir::Object) -> Option<Vec<String>> {
    let mut path = vec![o.id.clone()];
    let mut seen = HashSet::new();
    let mut next = o.parent.as_deref();
    while let Some(id) = next {
        path.push(id.to_owned());
        if id == o.id {
            return Some(path);
        }
        if !seen.insert(id) {
            return None;
        }
        next = match index.get(EntityKind::Object, id).map(|e| &*e.entity) {
            Some(Entity::Object(p)) => p.parent.as_deref(),
            _ => None,
        };
    }
    None
}

fn report_issue(
    c: &mut Checker<'_>,
    at: &LoadedEntity,
    base: &str,
    issue: &parameters::ParameterIssue,
) {
    let d = Diagnostic {
        severity: issue.severity,
        ..Diagnostic::error(issue.code, issue.message.clone())
    }
    .with_hint_opt(issue.hint.clone());
    c.report(at, &format!("{base}{}", issue.pointer), d);
}

/// A data interface's own parameter definitions against its protocol's connector: each
/// must be one the connector reads.
fn check_di(c: &mut Checker<'_>, loaded: &LoadedEntity, di: &DataInterface, options: &Options<'_>) {
    for issue in parameters::check_definitions(&di.parameters.parameter) {
        report_issue(c, loaded, "/parameters", &issue);
    }
    let Some(catalogue) = options.catalogue else {
        return;
    };
    let Some(spec) = catalogue.connector(&di.communication_protocol) else {
        let names = catalogue.protocols();
        let d = Diagnostic::warning(
            "unknown-protocol",
            format!(
                "communication protocol `{}` is not one DDA connects to",
                di.communication_protocol
            ),
        )
        .with_hint(
            crate::suggest::did_you_mean(
                &di.communication_protocol,
                names.iter().map(String::as_str),
            )
            .unwrap_or_else(|| {
                format!(
                    "known protocols: {} (see `dda connectors`)",
                    names.join(", ")
                )
            }),
        );
        c.report(loaded, "/communicationProtocol", d);
        return;
    };
    for (i, def) in di.parameters.parameter.iter().enumerate() {
        let Some(known) = spec.parameters.iter().find(|p| p.name == def.name) else {
            let names: Vec<&str> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
            let d = Diagnostic::error(
                "unknown-parameter",
                format!(
                    "the {} connector has no parameter `{}`",
                    spec.protocol, def.name
                ),
            )
            .with_hint(
                crate::suggest::did_you_mean(&def.name, names.iter().copied()).unwrap_or_else(
                    || {
                        if names.is_empty() {
                            "it takes no parameters".to_owned()
                        } else {
                            format!("it takes: {} (see `dda connectors`)", names.join(", "))
                        }
                    },
                ),
            );
            c.report(loaded, &format!("/parameters/parameter/{i}/name"), d);
            continue;
        };
        let (declared, read) = (def.data_type(), known.data_type());
        let compatible = declared == read
            || matches!(declared, crate::model::DataType::Other(_))
            || def.data_type.is_none()
            || (declared == crate::model::DataType::Integer
                && read == crate::model::DataType::Number);
        if !compatible {
            let d = Diagnostic::warning(
                "definition-type",
                format!(
                    "parameter `{}` is declared {}, but the {} connector reads it as {}",
                    def.name,
                    declared.name(),
                    spec.protocol,
                    read.name()
                ),
            )
            .with_hint(format!(
                "declare \"dataType\": \"{}\"; values are read as {} either way",
                read.name(),
                read.name()
            ));
            c.report(loaded, &format!("/parameters/parameter/{i}/dataType"), d);
        }
    }
}

fn check_dsm(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    dsm: &DataSourceManifest,
    options: &Options<'_>,
    model: &mut Model,
) {
    if dsm.id == crate::DEAD_LETTER_DSM {
        let d = Diagnostic::error(
            "reserved-id",
            format!("`{}` is the engine's own data source of dead letters", dsm.id),
        )
        .with_hint("give this data source manifest another id; analytics manifests read the dead letters by this id without declaring it");
        c.report(loaded, "/id", d);
        return;
    }
    let di = c
        .index
        .get(
            EntityKind::DataSourceDefinition,
            &dsm.data_source_definition_reference_id,
        )
        .and_then(|e| match &*e.entity {
            Entity::DataSourceDefinition(d) => c
                .index
                .get(EntityKind::DataInterface, &d.data_interface_reference_id),
            _ => None,
        })
        .and_then(|e| match &*e.entity {
            Entity::DataInterface(di) => Some(di),
            _ => None,
        });
    let owner = di.map_or_else(String::new, |di| {
        format!("data interface `{}`", di.name.as_deref().unwrap_or(&di.id))
    });
    // The connector's definitions, with the interface's own overriding defaults and
    // documentation; without a connector, the interface's alone. Without a resolvable
    // interface (a dangling reference has been reported already), or with neither, the
    // values cannot be checked.
    let connector = di.and_then(|di| {
        options
            .catalogue
            .and_then(|cat| cat.connector(&di.communication_protocol))
    });
    let defs = di.and_then(|di| {
        effective_definitions(
            connector.map(|s| s.parameters.as_slice()),
            &di.parameters.parameter,
        )
    });
    let values = &dsm.data_source_definition_interface_parameters.parameter;
    let base = "/dataSourceDefinitionInterfaceParameters";
    let mut resolution = parameters::resolve(defs.as_deref(), values, &owner);
    c.parameter_issues(loaded, base, &resolution);
    let files_here = !(options.files_on_gateways && dsm.edge_gateway_reference_id.is_some());
    check_reach(
        c,
        loaded,
        base,
        values,
        defs.as_deref(),
        &mut resolution,
        (options, files_here),
    );
    if let (Some(catalogue), Some(spec)) = (options.catalogue, connector)
        && resolution
            .issues
            .iter()
            .all(|i| i.severity != crate::diagnostic::Severity::Error)
        && let Err(e) = catalogue.check_connector(&spec.protocol, &resolution.parameters)
    {
        report_config_error(c, loaded, base, values, &e);
    }
    model
        .dsm_parameters
        .entry(dsm.id.clone())
        .or_insert(resolution.parameters);
    model
        .data_source_manifests
        .entry(dsm.id.clone())
        .or_insert_with(|| dsm.clone());
}

/// Checks what parameters reach outside the manifests: secret references only in secret
/// parameters (and, on a server, only to allowed files and variables); files read must
/// exist; on a server, files only inside its allowed folders, a relative path being taken
/// inside its data directory (the resolved path replaces the value in the model).
fn check_reach(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    base: &str,
    values: &[crate::model::ParameterValue],
    defs: Option<&[ParameterDefinition]>,
    resolution: &mut parameters::Resolution,
    (options, files_here): (&Options<'_>, bool),
) {
    use crate::model::FileUse;
    let Some(defs) = defs else { return };
    let pointer = |name: &str| {
        values.iter().position(|v| v.key == name).map_or_else(
            || base.to_owned(),
            |i| format!("{base}/parameter/{i}/value"),
        )
    };
    for def in defs {
        let Some(text) = resolution
            .parameters
            .get(&def.name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if let Some(Ok(reference)) = crate::secret::SecretRef::parse(&text) {
            let refused = if def.is_secret() {
                options.reach.and_then(|r| r.secret(&reference).err())
            } else {
                Some(format!(
                    "parameter `{}` is not a secret: `${{env:...}}` and `${{file:...}}` are resolved only in secret parameters",
                    def.name
                ))
            };
            if let Some(message) = refused {
                let d = Diagnostic::error("reference-not-allowed", message).with_hint(
                    "give the value itself, or a reference in a secret parameter to a file or variable the server allows (docs/security.md)",
                );
                c.report(loaded, &pointer(&def.name), d);
                // Never passed on, even where the error does not stop the model being
                // used (stored manifests loaded at start).
                resolution
                    .parameters
                    .insert(def.name.clone(), serde_json::Value::Null);
            }
            continue;
        }
        let Some(usage) = def.file else { continue };
        let path = match options.reach {
            Some(reach) => match reach.path(&text) {
                Ok(p) => p,
                Err(message) => {
                    let d = Diagnostic::error("path-not-allowed", message).with_hint(
                        "use a path inside the data directory (a relative path is taken there), or allow the folder in dda.toml (`allowed_paths`)",
                    );
                    c.report(loaded, &pointer(&def.name), d);
                    resolution
                        .parameters
                        .insert(def.name.clone(), serde_json::Value::Null);
                    continue;
                }
            },
            None => std::path::PathBuf::from(&text),
        };
        if usage == FileUse::Read && files_here && !path.is_file() {
            let place = match options.reach {
                Some(reach) => format!(
                    "a relative path is read from the data directory, {}",
                    reach.base.display()
                ),
                None => format!(
                    "a relative path is read from the working directory, {}",
                    std::env::current_dir()
                        .map_or_else(|_| "?".to_owned(), |d| d.display().to_string())
                ),
            };
            let d = Diagnostic::error("missing-file", format!("cannot read {text}: no such file"))
                .with_hint(place);
            c.report(loaded, &pointer(&def.name), d);
        }
        if options.reach.is_some() {
            resolution.parameters.insert(
                def.name.clone(),
                serde_json::Value::String(path.to_string_lossy().into_owned()),
            );
        }
    }
}

/// Reports what a kind's own check found, at the value of the parameter at fault when it
/// was given, else at the parameter list.
fn report_config_error(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    base: &str,
    values: &[crate::model::ParameterValue],
    e: &ConfigError,
) {
    let pointer = e
        .parameter
        .as_deref()
        .and_then(|name| values.iter().position(|v| v.key == name))
        .map_or_else(
            || base.to_owned(),
            |i| format!("{base}/parameter/{i}/value"),
        );
    let d = Diagnostic::error("parameter-value", e.message.clone());
    c.report(loaded, &pointer, d);
}

fn check_apd(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    apd: &AnalyticsProcessorDefinition,
    options: &Options<'_>,
) {
    for issue in parameters::check_definitions(&apd.parameters.parameter) {
        report_issue(c, loaded, "/parameters", &issue);
    }
    let Some(catalogue) = options.catalogue else {
        return;
    };
    let Some(spec) = catalogue.processor(&apd.processor_type) else {
        let types = catalogue.processor_types();
        let d = Diagnostic::error(
            "unknown-processor-type",
            format!("no processor type `{}` in this engine", apd.processor_type),
        )
        .with_hint(
            crate::suggest::did_you_mean(&apd.processor_type, types.iter().map(String::as_str))
                .unwrap_or_else(|| {
                    format!("available: {} (see `dda processors`)", types.join(", "))
                }),
        );
        c.report(loaded, "/processorType", d);
        return;
    };
    if let Some(category) = apd.category
        && category != spec.category
    {
        let d = Diagnostic::error(
            "wrong-category",
            format!(
                "processor type `{}` is a {} processor, not {category}",
                apd.processor_type, spec.category
            ),
        )
        .with_hint(format!(
            "set \"category\": \"{}\" or leave it out",
            spec.category
        ));
        c.report(loaded, "/category", d);
    }
    for (i, def) in apd.parameters.parameter.iter().enumerate() {
        if !spec.parameters.iter().any(|p| p.name == def.name) {
            let names: Vec<&str> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
            let d = Diagnostic::error(
                "unknown-parameter",
                format!(
                    "processor type `{}` has no parameter `{}`",
                    apd.processor_type, def.name
                ),
            )
            .with_hint(
                crate::suggest::did_you_mean(&def.name, names.iter().copied())
                    .unwrap_or_else(|| format!("it takes: {}", names.join(", "))),
            );
            c.report(loaded, &format!("/parameters/parameter/{i}/name"), d);
        }
    }
}

/// The parameter definitions that apply to a manifest's values: the catalogue's (the
/// implementation's truth), with the entity's own definitions (an APD's, a data
/// interface's) overriding defaults and documentation; or the entity's alone without a
/// catalogue entry; or none when nothing is known.
fn effective_definitions(
    catalogue: Option<&[ParameterDefinition]>,
    own: &[ParameterDefinition],
) -> Option<Vec<ParameterDefinition>> {
    match catalogue {
        Some(known) => Some(
            known
                .iter()
                .cloned()
                .map(|mut def| {
                    if let Some(o) = own.iter().find(|o| o.name == def.name) {
                        if o.default_value.is_some() {
                            def.default_value.clone_from(&o.default_value);
                        }
                        if o.description.is_some() {
                            def.description.clone_from(&o.description);
                        }
                        def.required |= o.required;
                    }
                    def
                })
                .collect(),
        ),
        None if own.is_empty() => None,
        None => Some(own.to_vec()),
    }
}

/// Checks processor manifest `apm`, of analytics manifest `am` at `base` within it, or
/// standing alone (`None`, "").
fn check_apm(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    (am, base): (Option<&str>, &str),
    apm: &AnalyticsProcessorManifest,
    options: &Options<'_>,
    model: &mut Model,
) {
    for (i, src) in apm.data_sources.data_source.iter().enumerate() {
        if src.data_source_manifest_reference_id == apm.sink_id() {
            let d = Diagnostic::error("cycle", "a processor cannot read the data source it writes")
                .with_hint("write the results to another data source manifest");
            c.report(
                loaded,
                &format!("{base}/dataSources/dataSource/{i}/dataSourceManifestReferenceID"),
                d,
            );
        }
    }
    let apd = c
        .index
        .get(
            EntityKind::AnalyticsProcessorDefinition,
            &apm.analytics_processor_definition_reference_id,
        )
        .and_then(|e| match &*e.entity {
            Entity::AnalyticsProcessorDefinition(d) => Some(d),
            _ => None,
        });
    let Some(apd) = apd else { return };
    if let Some(spec) = options
        .catalogue
        .and_then(|cat| cat.processor(&apd.processor_type))
        && apm.data_sources.data_source.len() < spec.min_sources
    {
        let d = Diagnostic::error(
            "too-few-sources",
            format!(
                "processor type `{}` reads at least {} sources",
                apd.processor_type, spec.min_sources
            ),
        );
        c.report(loaded, &format!("{base}/dataSources"), d);
    }
    let spec = options
        .catalogue
        .and_then(|cat| cat.processor(&apd.processor_type));
    let defs = effective_definitions(
        spec.map(|s| s.parameters.as_slice()),
        &apd.parameters.parameter,
    );
    let owner = format!("processor `{}`", apd.processor_type);
    let values = &apm.parameters.parameter;
    let mut resolution = parameters::resolve(defs.as_deref(), values, &owner);
    c.parameter_issues(loaded, &format!("{base}/parameters"), &resolution);
    check_reach(
        c,
        loaded,
        &format!("{base}/parameters"),
        values,
        defs.as_deref(),
        &mut resolution,
        (options, true),
    );
    if let (Some(catalogue), Some(_)) = (options.catalogue, spec)
        && resolution
            .issues
            .iter()
            .all(|i| i.severity != crate::diagnostic::Severity::Error)
        && let Err(e) = catalogue.check_processor(&apd.processor_type, &resolution.parameters)
    {
        report_config_error(c, loaded, &format!("{base}/parameters"), values, &e);
    }
    // A side output (such as `lateOutput`) names a DSM the processor writes.
    for name in parameters::SIDE_OUTPUT_PARAMETERS {
        let Some(dsm) = resolution.parameters.get_str(name) else {
            continue;
        };
        let Some(i) = apm.parameters.parameter.iter().position(|p| p.key == *name) else {
            continue;
        };
        let pointer = format!("{base}/parameters/parameter/{i}/value");
        c.reference(loaded, &pointer, EntityKind::DataSourceManifest, &dsm);
        if apm.source_ids().any(|s| s == dsm.as_str()) {
            let d = Diagnostic::error(
                "cycle",
                format!("a processor cannot read the data source `{dsm}` its {name} writes"),
            )
            .with_hint("send it to a data source manifest the processor does not read");
            c.report(loaded, &pointer, d);
        }
    }
    model
        .apm_parameters
        .entry((am.unwrap_or_default().to_owned(), apm.id.clone()))
        .or_insert(resolution.parameters);
}

fn check_am(
    c: &mut Checker<'_>,
    loaded: &LoadedEntity,
    am: &AnalyticsManifest,
    options: &Options<'_>,
    model: &mut Model,
) {
    if am.edge_gateway_selector.is_some() {
        let placed = [
            (
                am.edge_gateway_reference_id.is_some(),
                "/edgeGatewayReferenceID",
            ),
            (
                am.edge_gateway_reference_ids.is_some(),
                "/edgeGatewayReferenceIDs",
            ),
        ];
        for (_, pointer) in placed.iter().filter(|(set, _)| *set) {
            let d = Diagnostic::error(
                "conflicting-fields",
                "a template chooses its gateways by `edgeGatewaySelector`: it cannot also name them",
            )
            .with_hint(format!(
                "remove `{}` (each gateway's copy names its gateway), or remove `edgeGatewaySelector`",
                &pointer[1..]
            ));
            c.report(loaded, pointer, d);
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, apm) in am.apms().iter().enumerate() {
        let base = format!("/analyticsProcessors/apm/{i}");
        if let Some(first) = seen.insert(apm.id.as_str(), i) {
            let d = Diagnostic::error(
                "duplicate-id",
                format!(
                    "processor id `{}` is used twice in this analytics manifest",
                    apm.id
                ),
            )
            .with_hint(format!(
                "it is also the id of processor {first}; give each processor its own id"
            ));
            c.report(loaded, &format!("{base}/id"), d);
        }
        check_apm(c, loaded, (Some(&am.id), &base), apm, options, model);
    }
    check_acyclic(c, loaded, am);
}

/// Processors are joined through DSMs: A → B when A's sink is one of B's sources.
fn check_acyclic(c: &mut Checker<'_>, loaded: &LoadedEntity, am: &AnalyticsManifest) {
    let apms = am.apms();
    let mut graph: DiGraphMap<usize, ()> = DiGraphMap::new();
    for i in 0..apms.len() {
        graph.add_node(i);
    }
    for (a, producer) in apms.iter().enumerate() {
        for (b, consumer) in apms.iter().enumerate() {
            if a != b && consumer.source_ids().any(|s| s == producer.sink_id()) {
                graph.add_edge(a, b, ());
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() < 2 {
            continue;
        }
        let mut members: Vec<usize> = scc.clone();
        members.sort_unstable();
        let name = |i: usize| {
            let apm = &apms[i];
            apm.name.clone().map_or_else(
                || format!("`{}`", apm.id),
                |n| format!("`{}` ({n})", apm.id),
            )
        };
        // Walk the cycle from its first member for a readable path.
        let start = members[0];
        let mut path = vec![start];
        let mut at = start;
        loop {
            let next = graph
                .neighbors(at)
                .filter(|n| members.contains(n))
                .find(|n| *n == start || !path.contains(n));
            match next {
                Some(n) if n == start => break,
                Some(n) => {
                    path.push(n);
                    at = n;
                }
                None => break,
            }
        }
        let mut words: Vec<String> = path.iter().map(|&i| name(i)).collect();
        words.push(name(start));
        let via: Vec<String> = path
            .iter()
            .map(|&i| format!("`{}`", apms[i].sink_id()))
            .collect();
        let d = Diagnostic::error(
            "cycle",
            format!("processors form a cycle: {}", words.join(" → ")),
        )
        .with_hint(format!(
            "through data sources {}; an analytics manifest must be a directed acyclic graph",
            via.join(", ")
        ));
        c.report(
            loaded,
            &format!("/analyticsProcessors/apm/{start}/dataSink"),
            d,
        );
    }
}

/// Every processor input must be fed: by an external source (its interface is a real
/// protocol), or by some processor writing it.
/// The data sources an analytics manifest or a stand-alone processor manifest writes: each
/// processor's sink and side outputs (as resolved in `model`); none for other entities.
#[must_use]
pub fn written_by(entity: &Entity, model: &Model) -> Vec<String> {
    match entity {
        Entity::AnalyticsManifest(am) => written_by_apms(Some(&am.id), am.apms(), model).collect(),
        Entity::AnalyticsProcessorManifest(apm) => written_by_apms(None, [apm], model).collect(),
        _ => Vec::new(),
    }
}

fn written_by_apms<'m>(
    am: Option<&'m str>,
    apms: impl IntoIterator<Item = &'m AnalyticsProcessorManifest>,
    model: &'m Model,
) -> impl Iterator<Item = String> {
    apms.into_iter().flat_map(move |apm| {
        let sides = model.parameters_of(am, &apm.id).into_iter().flat_map(|p| {
            parameters::SIDE_OUTPUT_PARAMETERS
                .iter()
                .filter_map(|name| p.get_str(name))
        });
        std::iter::once(apm.sink_id().to_owned()).chain(sides)
    })
}

fn check_inputs_are_fed(c: &mut Checker<'_>, model: &Model, options: &Options<'_>) {
    let mut written: HashSet<String> = HashSet::new();
    for am in model.analytics_manifests.values() {
        written.extend(written_by_apms(Some(&am.id), am.apms(), model));
    }
    written.extend(written_by_apms(
        None,
        model.analytics_processor_manifests.values(),
        model,
    ));
    let bundle = c.bundle;
    for loaded in &bundle.entities {
        let (apms, prefix): (Vec<&AnalyticsProcessorManifest>, bool) = match &*loaded.entity {
            Entity::AnalyticsManifest(am) => (am.apms().iter().collect(), true),
            Entity::AnalyticsProcessorManifest(apm) => (vec![apm], false),
            _ => continue,
        };
        for (i, apm) in apms.iter().enumerate() {
            for (j, src) in apm.data_sources.data_source.iter().enumerate() {
                let id = src.data_source_manifest_reference_id.as_str();
                if written.contains(id) || options.fed_elsewhere.is_some_and(|fed| fed(id)) {
                    continue;
                }
                let internal = model.protocol_of(id).is_some_and(|p| {
                    is_bus(p)
                        || options
                            .catalogue
                            .and_then(|cat| cat.connector(p))
                            .is_some_and(|spec| spec.internal)
                });
                if internal {
                    let base = if prefix {
                        format!("/analyticsProcessors/apm/{i}")
                    } else {
                        String::new()
                    };
                    let d = Diagnostic::error("unfed-input", format!("nothing feeds data source `{id}`: it is an in-process bus topic and no processor writes it"))
                        .with_hint("make it the dataSink of a processor, or give it an external interface (MQTT, Kafka, simulator, ...)");
                    c.report(
                        loaded,
                        &format!("{base}/dataSources/dataSource/{j}/dataSourceManifestReferenceID"),
                        d,
                    );
                }
            }
        }
    }
}
