//! What the API does, independent of HTTP: the model repository, analytics instances and
//! their desired state, kept in step with the engine.
//!
//! Every change goes repository → store → engine. Lifecycle operations on one instance are
//! serialized (a second `start` racing the first sees it RUNNING and is refused), and each
//! persists the state asked for, so that a restarted server brings instances back as they
//! were: RUNNING ones run, PAUSED ones are paused, STOPPED ones stay stopped.
//!
//! Every method fails with a [`ServiceError`], data the HTTP layer maps onto its status
//! codes and bodies (`crate::error`); nothing here knows of HTTP.

pub mod error;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use engine::bus::Message;
use engine::instance::Transition;
use engine::{Batch, DataSource, Engine, EngineConfig, InstanceStatus, Plan, State, Sym};
use futures_util::{Stream, StreamExt};
use manifests::{Entity, EntityKind, Model};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

pub use self::error::ServiceError;
use crate::config::{FleetRole, ServerConfig, TokenConfig};
use crate::remote::Remote;
use crate::repository::{Checked, Repository, shown};
use crate::store::{Store, StoreError};

/// The application: engine, repository and store.
pub struct Service {
    /// The engine running the instances.
    pub engine: Engine,
    /// The model repository.
    pub repository: Repository,
    store: Store,
    locks: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The configured API tokens.
    pub tokens: Vec<TokenConfig>,
    /// On an edge, the token only which may create, update and delete (its cloud's).
    pub cloud_token: Option<String>,
    /// The hosts and origins the server answers to.
    pub web: crate::origin::WebPolicy,
    /// When the server started.
    pub started: Instant,
    /// Cancelled when the server stops: every live view ends then.
    stopping: CancellationToken,
    /// Where relative file paths of data sources resolve: the data directory.
    base: std::path::PathBuf,
    /// Data source manifests taken out of the live registry, their manifests kept (also in
    /// the store, so across restarts).
    unregistered: StdMutex<std::collections::HashSet<String>>,
    /// What the engine is in a fleet.
    pub role: FleetRole,
    /// Whether an edge's gateway id is configured (not learnt).
    gateway_configured: bool,
    /// The client calls to other engines go through.
    pub remote: Remote,
    /// On a cloud, what it knows of its gateways.
    pub fleet: crate::fleet::Fleet,
    /// On a cloud, the instances deployed to gateways.
    pub deployments: crate::deploy::Deployments,
    /// The Common Interoperability Registry's record fetcher and change stream.
    pub cir: crate::cir::Cir,
}

/// Where a gateway's engine answers, and how to call it.
#[derive(Clone)]
pub struct GatewayTarget {
    /// The gateway's id.
    pub id: String,
    /// `edgeAnalyticsEngineBaseURL`, the engine's `…/api` root.
    pub analytics_engine: Option<String>,
    /// `dataRouterAndPreprocessorBaseURL`.
    pub data_router: Option<String>,
    /// The token its credential resolves to.
    pub token: Option<String>,
}

impl GatewayTarget {
    /// What calls to it carry: its token, and its id (`x-dda-gateway`), by which the
    /// engine learns which gateway it is.
    #[must_use]
    pub fn credentials(&self) -> (Option<&str>, Option<&str>) {
        (self.token.as_deref(), Some(&self.id))
    }
}

impl std::fmt::Debug for GatewayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTarget")
            .field("id", &self.id)
            .field("analytics_engine", &self.analytics_engine)
            .field("data_router", &self.data_router)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A data source manifest in the live registry, or out of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceView {
    /// The data source manifest's id.
    pub id: String,
    /// Whether it is in the live registry: its connector runs when an instance reads it.
    pub registered: bool,
    /// The protocol of its data interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The running instances that read it and wait for it, while it is not registered.
    pub waiting: Vec<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The configuration.
    #[error("{0}")]
    Config(String),
}

/// An analytics instance as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// The instance id (its analytics manifest's id).
    pub id: String,
    /// The analytics manifest's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifecycle state.
    pub state: State,
    /// The analytics manifest.
    pub specification: Json,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<engine::instance::Failure>,
    /// Inputs not registered: it waits for them.
    pub waiting_for: Vec<String>,
    /// Its connectors while it runs, and whether they reach their systems.
    pub connectors: Vec<engine::instance::ConnectorStatus>,
    /// Its checkpoints, when the server takes them.
    pub checkpoint: Option<engine::checkpoint::CheckpointStatus>,
    /// On a cloud, where the instance is deployed and how far (its `state` is then the
    /// state asked for; `deployment.observed` is the gateway's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::deploy::DeploymentStatus>,
    /// On a cloud, for a template: the gateways it is deployed to and how far on each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::deploy::Rollout>,
}

impl Service {
    /// Opens the store, loads the repository, starts the engine, registers every data
    /// source, creates every instance, and brings each to its desired state.
    ///
    /// # Errors
    ///
    /// The store cannot be opened or the engine cannot start.
    pub async fn start(config: &ServerConfig) -> Result<Arc<Self>, StartError> {
        // The engine finds processor kinds and connectors by their registrations, which a
        // binary links in only when it uses their crates: using them here makes every
        // server, in any binary, have the whole catalogue.
        let kinds = processors::catalogue().len() + connectors::catalogue().len();
        tracing::debug!(kinds, "catalogue");
        let store = Store::open(&config.data_dir)?;
        let repository =
            Repository::load(store.clone(), Some(config.reach()), config.fleet.role).await?;
        let directory = Arc::new(crate::cir::Directory::new(config.reach().base));
        let mut engine_config = EngineConfig {
            linked: Some(Arc::new(connectors::linked::Follower::new(
                directory.clone(),
            ))),
            speed: engine::connector::Speed::parse(&config.speed).map_err(StartError::Config)?,
            recent: config.recent,
            external: config.external.clone(),
            stop_timeout: config.stop_timeout.get(),
            checkpoints: (!config.checkpoint_interval.get().is_zero()
                || !config.checkpoint_intervals.is_empty())
            .then(|| {
                config.checkpoint_settings(
                    config.reach().base.join("checkpoints"),
                    config.checkpoint_interval.get(),
                )
            }),
            queues: Some(
                config
                    .store_and_forward
                    .settings(config.reach().base.join("queues")),
            ),
            ..EngineConfig::default()
        };
        engine_config.dead_letters.parameters.insert(
            "path",
            Json::String(
                config
                    .data_dir
                    .join("dead-letters.jsonl")
                    .to_string_lossy()
                    .into_owned(),
            ),
        );
        let engine = Engine::new(engine_config).await?;
        let identity = engine.shared().resource::<engine::connector::Identity>();
        identity.set_engine(&installation_id(&config.data_dir)?);
        let gateway = config.fleet.gateway.clone().or_else(|| {
            std::fs::read_to_string(config.data_dir.join(GATEWAY_FILE))
                .ok()
                .map(|g| g.trim().to_owned())
                .filter(|g| manifests::id::is_valid(g))
        });
        if let Some(g) = &gateway {
            identity.set_gateway(g);
        }
        let unregistered = StdMutex::new(store.unregistered().await?.into_iter().collect());
        let store_retired = store.retired().await?;
        let service = Arc::new(Self {
            engine,
            repository,
            store,
            locks: StdMutex::default(),
            tokens: config.tokens.clone(),
            cloud_token: config.fleet.cloud_token.clone(),
            web: config.into(),
            started: Instant::now(),
            stopping: CancellationToken::new(),
            base: config.reach().base,
            unregistered,
            role: config.fleet.role,
            gateway_configured: config.fleet.gateway.is_some(),
            remote: Remote::new(
                config.fleet.ca_file.as_deref(),
                config.fleet.call_timeout.get(),
            )
            .map_err(|e| StartError::Config(format!("fleet.ca_file: {e}")))?,
            fleet: crate::fleet::Fleet::default(),
            deployments: crate::deploy::Deployments::new(store_retired),
            cir: crate::cir::Cir::new(config.reach().base),
        });
        directory.bind(&service);
        service.recover().await?;
        crate::fleet::start(&service, config.fleet.poll_interval.get());
        Ok(service)
    }

    async fn recover(&self) -> Result<(), StartError> {
        let model = self.repository.model();
        self.sync_registry(&model).await;
        let mut deployed = std::collections::HashSet::new();
        for am in model.analytics_manifests.values() {
            if self.is_deployed(am) {
                deployed.insert(am.id.clone());
                continue;
            }
            match Plan::new(am, &model) {
                Ok(plan) => self.engine.create(plan)?,
                Err(e) => {
                    tracing::error!(instance = %am.id, error = %e, "cannot recreate an analytics instance")
                }
            }
        }
        let mut desired = self.store.desired_states().await?;
        desired.retain(|(id, state)| {
            let remote = deployed.contains(id);
            if remote {
                self.deployments.set_desired(id, *state);
            }
            !remote
        });
        let to_run: Vec<String> = desired
            .iter()
            .filter(|(id, s)| {
                matches!(s, State::Running | State::Paused)
                    && model.analytics_manifests.contains_key(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if let Err(e) = self.engine.start_all(&to_run).await {
            tracing::error!(error = %e, "an analytics instance could not be restarted");
        }
        for (id, state) in desired {
            if state == State::Paused
                && let Err(e) = self.engine.pause(&id).await
            {
                tracing::error!(instance = %id, error = %e, "cannot pause again");
            }
        }
        tracing::info!(
            instances = model.analytics_manifests.len(),
            running = to_run.len(),
            deployed = deployed.len(),
            "recovered"
        );
        Ok(())
    }

    /// On an edge whose gateway id is not configured, takes `id` as it: the id its cloud
    /// knows it by (kept in the data directory).
    pub fn learn_gateway(&self, id: &str) {
        if self.role != FleetRole::Edge || self.gateway_configured || !manifests::id::is_valid(id) {
            return;
        }
        let identity = self
            .engine
            .shared()
            .resource::<engine::connector::Identity>();
        if identity.gateway().as_deref() == Some(id) {
            return;
        }
        tracing::info!(gateway = %id, "this edge is gateway {id} of its cloud");
        identity.set_gateway(id);
        if let Err(e) = std::fs::write(self.base.join(GATEWAY_FILE), id) {
            tracing::warn!(error = %e, "cannot keep the gateway id");
        }
    }

    /// Cancelled when the server stops.
    #[must_use]
    pub fn stopping_token(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Whether data source manifest `id` is out of the live registry.
    #[must_use]
    pub fn is_unregistered(&self, id: &str) -> bool {
        self.unregistered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// Registers, updates and deregisters data sources to match `model` (and the data
    /// sources taken out of the registry).
    async fn sync_registry(&self, model: &Model) {
        for id in model.data_source_manifests.keys() {
            if self.is_unregistered(id) {
                continue;
            }
            if let Err(e) = self.register_as_modelled(model, id) {
                tracing::warn!(dsm = %id, error = %e, "cannot register a data source");
            }
        }
        let dead_letters = Sym::new(engine::engine::DEAD_LETTER_DSM);
        for registered in self.engine.registry().all() {
            let id = registered.id.to_string();
            if registered.id != dead_letters
                && (!model.data_source_manifests.contains_key(&id) || self.is_unregistered(&id))
                && let Err(e) = self.engine.deregister(&id).await
            {
                tracing::warn!(dsm = %id, error = %e, "cannot deregister a data source");
            }
        }
    }

    /// Registers data source `id` as `model` has it, unless the registry has it so already.
    fn register_as_modelled(&self, model: &Model, id: &str) -> Result<(), engine::EngineError> {
        let source = DataSource::from_model(model, id).map(|s| with_senders(model, s));
        match source.map(|s| s.within(&self.base)) {
            Some(source) if self.engine.registry().get(source.id).as_deref() != Some(&source) => {
                self.engine.register(source)
            }
            _ => Ok(()),
        }
    }

    /// Every data source manifest, in the live registry or out of it.
    pub fn data_sources(&self) -> Vec<DataSourceView> {
        let model = self.repository.model();
        model
            .data_source_manifests
            .keys()
            .map(|id| self.view_of_source(&model, id))
            .collect()
    }

    /// Data source manifest `id`, in the live registry or out of it.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such manifest.
    pub fn registration(&self, id: &str) -> Result<DataSourceView, ServiceError> {
        self.data_source(id)?;
        Ok(self.view_of_source(&self.repository.model(), id))
    }

    fn view_of_source(&self, model: &Model, id: &str) -> DataSourceView {
        let registered = !self.is_unregistered(id);
        let waiting = if registered {
            Vec::new()
        } else {
            self.engine.waiting_for(id)
        };
        DataSourceView {
            id: id.to_owned(),
            registered,
            protocol: model.protocol_of(id).map(str::to_owned),
            waiting,
        }
    }

    /// Puts data source manifest `id` in the live registry, or takes it out (its manifest
    /// stays; instances reading it wait for it); kept across restarts.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such manifest, [`ServiceError::InUse`]
    /// to unregister one a running instance writes, [`ServiceError::Connector`] when its
    /// parameters do not suit its connector.
    pub async fn set_registered(
        &self,
        id: &str,
        registered: bool,
    ) -> Result<DataSourceView, ServiceError> {
        self.data_source(id)?;
        let lock = self.lock_for(&format!("data source {id}"));
        let _guard = lock.lock().await;
        if registered {
            self.store.set_registered(id, true).await?;
            self.unregistered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
            self.register_as_modelled(&self.repository.model(), id)?;
        } else if !self.is_unregistered(id) {
            self.engine.deregister(id).await?;
            self.unregistered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned());
            self.store.set_registered(id, false).await?;
        }
        self.registration(id)
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// An entity as shown (secrets redacted).
    #[must_use]
    pub fn show(&self, entity: &Entity) -> Json {
        shown(entity, &self.repository.model())
    }

    /// Sets the document's id: the one given (`id` or `_id`), the one the path names, or a
    /// new one.
    ///
    /// # Errors
    ///
    /// A body id that differs from the path's.
    fn settle_id(doc: &mut Json, path_id: Option<&str>) -> Result<String, ServiceError> {
        let given = doc
            .get("id")
            .or_else(|| doc.get("_id"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        let id = match (given, path_id) {
            (Some(given), Some(path)) if given != path => {
                return Err(ServiceError::IdMismatch {
                    given,
                    path: path.to_owned(),
                });
            }
            (Some(g), _) => g,
            (None, Some(p)) => p.to_owned(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };
        if let Some(obj) = doc.as_object_mut()
            && !obj.contains_key("id")
            && !obj.contains_key("_id")
        {
            obj.insert("id".into(), Json::String(id.clone()));
        }
        Ok(id)
    }

    /// Entity `id` of `kind`.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent.
    pub fn entity(&self, kind: EntityKind, id: &str) -> Result<Entity, ServiceError> {
        self.repository
            .get(kind, id)
            .ok_or_else(|| ServiceError::NotFound {
                what: kind.info().title,
                id: id.to_owned(),
            })
    }

    /// Gateway `id`'s engine: its URLs and the token its credential resolves to.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such gateway,
    /// [`ServiceError::Remote`] when its credential cannot be resolved.
    pub fn gateway_target(&self, id: &str) -> Result<GatewayTarget, ServiceError> {
        let model = self.repository.model();
        let g = model
            .edge_gateways
            .get(id)
            .ok_or_else(|| ServiceError::NotFound {
                what: EntityKind::EdgeGateway.info().title,
                id: id.to_owned(),
            })?;
        Self::target_of(g)
    }

    fn target_of(g: &manifests::model::EdgeGateway) -> Result<GatewayTarget, ServiceError> {
        let token = match &g.credential {
            Some(reference) => Some(manifests::secret::resolve_value(reference).map_err(|e| {
                ServiceError::Remote(format!(
                    "the credential of edge gateway `{}` cannot be read: {e}",
                    g.id
                ))
            })?),
            None => None,
        };
        Ok(GatewayTarget {
            id: g.id.clone(),
            analytics_engine: g.edge_analytics_engine_base_url.clone(),
            data_router: g.data_router_and_preprocessor_base_url.clone(),
            token,
        })
    }

    /// Every gateway's engine, in creation order; a gateway whose credential cannot be
    /// read is left out, with a warning.
    #[must_use]
    pub fn gateway_targets(&self) -> Vec<GatewayTarget> {
        let model = self.repository.model();
        model
            .edge_gateways
            .values()
            .filter_map(|g| match Self::target_of(g) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(gateway = %g.id, error = %e, "cannot call a gateway");
                    None
                }
            })
            .collect()
    }

    /// The id of an entity of `kind` other than `own` named `name`, if there is one.
    #[must_use]
    pub fn named(&self, kind: EntityKind, name: &str, own: Option<&str>) -> Option<String> {
        self.repository
            .ids_named(kind, name)
            .into_iter()
            .find(|id| Some(id.as_str()) != own)
    }

    /// Every entity of `kind` as shown, in creation order, that `keep` accepts.
    pub fn shown_entities(&self, kind: EntityKind, keep: impl Fn(&Json) -> bool) -> Vec<Json> {
        self.repository
            .list(kind)
            .iter()
            .map(|e| self.show(e))
            .filter(|shown| keep(shown))
            .collect()
    }

    /// Creates a model entity.
    ///
    /// # Errors
    ///
    /// [`ServiceError::AlreadyExists`] when the id is taken, [`ServiceError::Invalid`]
    /// when invalid.
    pub async fn create_entity(
        &self,
        kind: EntityKind,
        mut doc: Json,
    ) -> Result<Entity, ServiceError> {
        if kind == EntityKind::Link
            && let Some(obj) = doc.as_object_mut()
            && !obj.contains_key("id")
            && !obj.contains_key("_id")
            && let (Some(Json::String(repo)), Some(Json::String(local))) =
                (obj.get("repositoryReferenceID"), obj.get("localID"))
        {
            // The id of a record's link is derived from the record: importing it again
            // replaces it.
            let id = manifests::model::Link::derived_id(repo, local);
            obj.insert("id".into(), Json::String(id));
        }
        let id = Self::settle_id(&mut doc, None)?;
        if self.repository.get(kind, &id).is_some() {
            return Err(ServiceError::AlreadyExists { kind, id });
        }
        let checked = self.repository.check(kind, &doc, None)?;
        self.commit(checked, "created").await
    }

    /// Replaces model entity `id`.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent, [`ServiceError::Invalid`] when invalid.
    pub async fn update_entity(
        &self,
        kind: EntityKind,
        id: &str,
        mut doc: Json,
    ) -> Result<Entity, ServiceError> {
        self.entity(kind, id)?;
        Self::settle_id(&mut doc, Some(id))?;
        let checked = self.repository.check(kind, &doc, Some(id))?;
        self.commit(checked, "updated").await
    }

    async fn commit(&self, checked: Checked, op: &'static str) -> Result<Entity, ServiceError> {
        for w in &checked.warnings {
            tracing::warn!(diagnostic = %w, "accepted with a warning");
        }
        let before = self.repository.model();
        let entity = self.repository.put(checked).await?;
        self.sync_registry(&self.repository.model()).await;
        if let Entity::EdgeGateway(g) = &entity {
            self.regateway(&before, &g.id).await?;
        }
        self.cir.announce(op, entity.kind(), entity.id(), None);
        Ok(entity)
    }

    /// Deletes a model entity nothing refers to (a data source manifest is deregistered).
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent, [`ServiceError::Referenced`] when referred
    /// to.
    pub async fn delete_entity(&self, kind: EntityKind, id: &str) -> Result<(), ServiceError> {
        let before = self.repository.model();
        self.repository.delete(kind, id).await?;
        self.cir.announce("deleted", kind, Some(id), None);
        if kind == EntityKind::EdgeGateway {
            self.regateway(&before, id).await?;
        }
        if kind == EntityKind::DataSourceManifest && self.is_unregistered(id) {
            // A manifest of this id made again starts registered.
            self.store.set_registered(id, true).await?;
            self.unregistered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
        }
        self.sync_registry(&self.repository.model()).await;
        Ok(())
    }

    /// Creates an analytics instance (STOPPED) from an analytics manifest. With `fresh_id`
    /// a new id is always given, as the original engine did.
    ///
    /// # Errors
    ///
    /// [`ServiceError::AlreadyExists`] when the id is taken, [`ServiceError::Invalid`] or
    /// [`ServiceError::Unplannable`] when invalid.
    pub async fn create_instance(
        &self,
        mut doc: Json,
        fresh_id: bool,
    ) -> Result<InstanceView, ServiceError> {
        if fresh_id && let Some(obj) = doc.as_object_mut() {
            obj.remove("_id");
            obj.insert("id".into(), Json::String(uuid::Uuid::new_v4().to_string()));
        }
        let id = Self::settle_id(&mut doc, None)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        if self
            .repository
            .get(EntityKind::AnalyticsManifest, &id)
            .is_some()
        {
            return Err(ServiceError::AlreadyExists {
                kind: EntityKind::AnalyticsManifest,
                id,
            });
        }
        let checked = self
            .repository
            .check(EntityKind::AnalyticsManifest, &doc, None)?;
        let plan = plan_of(&checked)?;
        let gateways = self.placement(&checked.entity, &self.repository.model());
        let entity = self.repository.put(checked).await?;
        self.store.set_desired(&id, State::Stopped).await?;
        match gateways {
            Some(gs) => self.deploy(&id, &gs, State::Stopped).await?,
            None => self.engine.create(plan)?,
        }
        self.sync_registry(&self.repository.model()).await;
        self.view_of(&entity).await
    }

    /// Whether analytics manifest `am` runs on gateways rather than here: on a cloud, one
    /// whose `edgeGatewayReferenceID` names a gateway (a manifest naming several in
    /// `edgeGatewayReferenceIDs` runs in the cloud over their results), or a template
    /// (`edgeGatewaySelector`, [`crate::template`]).
    #[must_use]
    pub fn is_deployed(&self, am: &manifests::model::AnalyticsManifest) -> bool {
        self.role == FleetRole::Cloud && am.runs_on_gateways()
    }

    fn deployed(&self, e: &Entity) -> bool {
        matches!(e, Entity::AnalyticsManifest(am) if self.is_deployed(am))
    }

    /// The gateways `e` is deployed to in `model` (`None`: it runs here).
    fn placement(&self, e: &Entity, model: &Model) -> Option<Vec<String>> {
        let Entity::AnalyticsManifest(am) = e else {
            return None;
        };
        self.is_deployed(am)
            .then(|| match &am.edge_gateway_selector {
                Some(_) => crate::template::targets(am, model),
                None => am.edge_gateway_reference_id.iter().cloned().collect(),
            })
    }

    /// Records that instance `id` is deployed to `gateways` in `state`, and reconciles.
    async fn deploy(
        &self,
        id: &str,
        gateways: &[String],
        state: State,
    ) -> Result<(), ServiceError> {
        for gateway in gateways {
            if self.deployments.unretire(id, gateway) {
                self.store.set_retired(id, gateway, false).await?;
            }
        }
        self.deployments.set_desired(id, state);
        self.deployments.wake.notify_one();
        Ok(())
    }

    /// Records that instance `id` is to be removed from `gateway`, and reconciles.
    async fn retire(&self, id: &str, gateway: &str) -> Result<(), ServiceError> {
        self.store.set_retired(id, gateway, true).await?;
        self.deployments.retire(id, gateway);
        self.deployments.forget(id, gateway);
        self.deployments.wake.notify_one();
        Ok(())
    }

    /// After gateway `gateway` changed (`before`: the model before): the templates that
    /// chose it and no longer do are retired from it. A gateway deleted is no longer
    /// reached: what runs on it is left alone.
    async fn regateway(&self, before: &Model, gateway: &str) -> Result<(), ServiceError> {
        if self.role != FleetRole::Cloud {
            return Ok(());
        }
        let after = self.repository.model();
        let now = after.edge_gateways.get(gateway);
        let Some(old) = before.edge_gateways.get(gateway) else {
            // A new gateway: the templates choosing it are deployed at once.
            self.deployments.wake.notify_one();
            return Ok(());
        };
        for am in after.analytics_manifests.values() {
            let Some(selector) = am.edge_gateway_selector.as_ref() else {
                continue;
            };
            if !selector.matches(old) {
                continue;
            }
            match now {
                Some(g) if selector.matches(g) => {}
                Some(_) => self.retire(&am.id, gateway).await?,
                None => self.deployments.forget(&am.id, gateway),
            }
        }
        self.deployments.wake.notify_one();
        Ok(())
    }

    /// A retirement done.
    pub async fn forget_retired(&self, id: &str, gateway: &str) {
        if let Err(e) = self.store.set_retired(id, gateway, false).await {
            tracing::warn!(instance = %id, gateway = %gateway, error = %e, "cannot record a retirement done");
        }
    }

    /// The analytics manifests deployed to `gateway`: each one's id and the manifest the
    /// gateway is to run (a template's copy for it, or why there is none).
    #[must_use]
    pub fn deployed_on(&self, gateway: &str) -> Vec<(String, Result<Entity, String>)> {
        let model = self.repository.model();
        let Some(g) = model.edge_gateways.get(gateway) else {
            return Vec::new();
        };
        model
            .analytics_manifests
            .values()
            .filter(|am| self.is_deployed(am))
            .filter(|am| match &am.edge_gateway_selector {
                Some(selector) => selector.matches(g),
                None => am.edge_gateway_reference_id.as_deref() == Some(gateway),
            })
            .filter_map(|am| {
                let stored = self.repository.get(EntityKind::AnalyticsManifest, &am.id)?;
                let spec = match stored {
                    Entity::AnalyticsManifest(t) if t.edge_gateway_selector.is_some() => {
                        crate::template::copy_for(&t, gateway, &model)
                            .map(Entity::AnalyticsManifest)
                    }
                    other => Ok(other),
                };
                Some((am.id.clone(), spec))
            })
            .collect()
    }

    /// The state of instance `id`: the engine's, or, deployed, the state asked for.
    async fn state_now(&self, am: &Entity) -> Result<State, ServiceError> {
        let id = am.id().unwrap_or_default();
        if self.deployed(am) {
            Ok(self.deployments.desired(id))
        } else {
            Ok(self.engine.status(id).await?.state)
        }
    }

    /// Replaces the analytics manifest of a stopped (or failed) instance.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent, [`ServiceError::IllegalTransition`] while
    /// running or paused, [`ServiceError::Invalid`] when invalid.
    pub async fn update_instance(
        &self,
        id: &str,
        mut doc: Json,
    ) -> Result<InstanceView, ServiceError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let old = self
            .repository
            .get(EntityKind::AnalyticsManifest, id)
            .ok_or_else(|| ServiceError::no_instance(id))?;
        let state = self.state_now(&old).await?;
        if matches!(state, State::Running | State::Paused) {
            return Err(ServiceError::IllegalTransition {
                id: id.to_owned(),
                verb: error::UPDATE,
                state,
            });
        }
        Self::settle_id(&mut doc, Some(id))?;
        let checked = self
            .repository
            .check(EntityKind::AnalyticsManifest, &doc, Some(id))?;
        let plan = plan_of(&checked)?;
        let model = self.repository.model();
        let (was, now) = (
            self.placement(&old, &model),
            self.placement(&checked.entity, &model),
        );
        let entity = self.repository.put(checked).await?;
        for g in was.iter().flatten() {
            if !now.iter().flatten().any(|n| n == g) {
                self.retire(id, g).await?;
            }
        }
        match (&was, &now) {
            (None, None) => self.engine.replace(plan).await?,
            (None, Some(_)) => self.engine.remove(id).await?,
            (Some(_), None) => {
                self.deployments.remove(id);
                self.engine.create(plan)?;
            }
            (Some(_), Some(_)) => {}
        }
        if let Some(gs) = &now {
            self.deploy(id, gs, State::Stopped).await?;
        }
        self.store.set_desired(id, State::Stopped).await?;
        self.view_of(&entity).await
    }

    /// Deletes a stopped (or failed) instance.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent, [`ServiceError::IllegalTransition`] while
    /// running or paused.
    pub async fn delete_instance(&self, id: &str) -> Result<(), ServiceError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let am = self
            .repository
            .get(EntityKind::AnalyticsManifest, id)
            .ok_or_else(|| ServiceError::no_instance(id))?;
        let gateways = self.placement(&am, &self.repository.model());
        match &gateways {
            Some(_) => {
                let state = self.deployments.desired(id);
                if matches!(state, State::Running | State::Paused) {
                    return Err(ServiceError::IllegalTransition {
                        id: id.to_owned(),
                        verb: "remove",
                        state,
                    });
                }
            }
            None => self.engine.remove(id).await?,
        }
        self.repository
            .delete(EntityKind::AnalyticsManifest, id)
            .await?;
        self.store.delete_instance(id).await?;
        if let Some(gs) = gateways {
            self.deployments.remove(id);
            for g in gs {
                self.retire(id, &g).await?;
            }
        }
        self.sync_registry(&self.repository.model()).await;
        Ok(())
    }

    /// Starts, stops, pauses or resumes an instance, and remembers the state asked for.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent, [`ServiceError::IllegalTransition`] for an
    /// illegal transition, [`ServiceError::StartFailed`] when it cannot start.
    pub async fn transition(
        &self,
        id: &str,
        t: Transition,
    ) -> Result<InstanceStatus, ServiceError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        if let Some(am) = self.repository.get(EntityKind::AnalyticsManifest, id)
            && let Some(gs) = self.placement(&am, &self.repository.model())
        {
            let from = self.deployments.desired(id);
            let to = t
                .apply(from)
                .ok_or_else(|| ServiceError::IllegalTransition {
                    id: id.to_owned(),
                    verb: t.verb(),
                    state: from,
                })?;
            self.store.set_desired(id, to).await?;
            self.deploy(id, &gs, to).await?;
            return self.status(id).await;
        }
        match t {
            Transition::Start => self.engine.start(id).await?,
            Transition::Stop => self.engine.stop(id).await?,
            Transition::Pause => self.engine.pause(id).await?,
            Transition::Resume => self.engine.resume(id).await?,
        }
        let desired = match t {
            Transition::Start | Transition::Resume => State::Running,
            Transition::Pause => State::Paused,
            Transition::Stop => State::Stopped,
        };
        self.store.set_desired(id, desired).await?;
        self.status(id).await
    }

    /// The status of instance `id` in the engine: state, counters, connectors.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent.
    pub async fn status(&self, id: &str) -> Result<InstanceStatus, ServiceError> {
        if let Some(am) = self.repository.get(EntityKind::AnalyticsManifest, id)
            && self.deployed(&am)
        {
            return Ok(InstanceStatus {
                id: id.to_owned(),
                name: am.name().map(str::to_owned),
                state: self.deployments.desired(id),
                failure: None,
                waiting_for: Vec::new(),
                processors: Vec::new(),
                connectors: Vec::new(),
                checkpoint: None,
            });
        }
        Ok(self.engine.status(id).await?)
    }

    /// The status of every instance in the engine.
    pub async fn statuses(&self) -> Vec<InstanceStatus> {
        let mut out = Vec::new();
        for id in self.engine.ids() {
            if let Ok(status) = self.engine.status(&id).await {
                out.push(status);
            }
        }
        out
    }

    /// The instance `id`.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent.
    pub async fn instance(&self, id: &str) -> Result<InstanceView, ServiceError> {
        let entity = self
            .repository
            .get(EntityKind::AnalyticsManifest, id)
            .ok_or_else(|| ServiceError::no_instance(id))?;
        self.view_of(&entity).await
    }

    async fn view_of(&self, am: &Entity) -> Result<InstanceView, ServiceError> {
        let id = am.id().unwrap_or_default();
        let status = self.status(id).await?;
        let (mut deployment, mut rollout) = (None, None);
        if let Some(gateways) = self.placement(am, &self.repository.model()) {
            let statuses = gateways.iter().map(|g| self.deployments.status(id, g));
            match am {
                Entity::AnalyticsManifest(t) if t.edge_gateway_selector.is_some() => {
                    rollout = Some(crate::deploy::Rollout::of(statuses.collect()));
                }
                _ => deployment = statuses.last(),
            }
        }
        Ok(InstanceView {
            id: id.to_owned(),
            name: am.name().map(str::to_owned),
            state: status.state,
            specification: self.show(am),
            failure: status.failure,
            waiting_for: status.waiting_for,
            connectors: status.connectors,
            checkpoint: status.checkpoint,
            deployment,
            rollout,
        })
    }

    /// Every instance, in creation order.
    pub async fn instances(&self) -> Vec<InstanceView> {
        let mut out = Vec::new();
        for am in self.repository.list(EntityKind::AnalyticsManifest) {
            if let Ok(v) = self.view_of(&am).await {
                out.push(v);
            }
        }
        out
    }

    /// The data source manifest `id`.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when absent.
    fn data_source(&self, id: &str) -> Result<Entity, ServiceError> {
        self.entity(EntityKind::DataSourceManifest, id)
    }

    /// The last `n` observations of data source `id`, oldest first.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such data source manifest.
    pub fn recent(&self, id: &str, n: usize) -> Result<Vec<engine::Observation>, ServiceError> {
        self.data_source(id)?;
        Ok(self.engine.recent(id, n).unwrap_or_default())
    }

    /// The batches of observations published to data source `id` from now on, until the
    /// server stops ([`Service::stop_live`]). Lossy: a reader that cannot keep up misses
    /// batches; the pipeline never waits for it.
    ///
    /// # Errors
    ///
    /// [`ServiceError::NotFound`] when there is no such data source manifest.
    pub fn live(&self, id: &str) -> Result<impl Stream<Item = Batch> + Send + use<>, ServiceError> {
        self.data_source(id)?;
        let (subscriber, rx) = self.engine.tap_lossy(id);
        let batches =
            futures_util::stream::unfold((subscriber, rx), |(subscriber, mut rx)| async move {
                loop {
                    if let Message::Data(batch) = rx.recv().await?.message {
                        return Some((batch, (subscriber, rx)));
                    }
                }
            });
        Ok(batches.take_until(self.stopping.clone().cancelled_owned()))
    }

    /// Ends every live view ([`Service::live`]): the server is stopping.
    pub fn stop_live(&self) {
        self.stopping.cancel();
    }
}

/// An uplink's expected senders when its manifest lists none: the gateways named by the
/// global analytics manifests reading it (`edgeGatewayReferenceIDs`), so that its event
/// time waits for each of them from the start.
fn with_senders(model: &Model, mut source: DataSource) -> DataSource {
    let listed = source
        .parameters
        .get("senders")
        .and_then(Json::as_array)
        .is_some_and(|a| !a.is_empty());
    // The sources keeping event time per sender: the HTTP ingest, and an MQTT uplink
    // topic (naming `{gateway}`).
    let per_sender = match source.protocol.name() {
        "HTTP" => true,
        "MQTT" => source
            .parameters
            .get("topic")
            .and_then(Json::as_str)
            .is_some_and(|t| t.contains("{gateway}")),
        _ => false,
    };
    if listed || !per_sender {
        return source;
    }
    let id = source.id.to_string();
    let mut senders: Vec<String> = Vec::new();
    for am in model.analytics_manifests.values() {
        let Some(list) = &am.edge_gateway_reference_ids else {
            continue;
        };
        let reads = am.apms().iter().any(|apm| {
            apm.data_sources
                .data_source
                .iter()
                .any(|d| d.data_source_manifest_reference_id == id)
        });
        if reads {
            for g in &list.edge_gateway_reference_id {
                if !senders.contains(g) {
                    senders.push(g.clone());
                }
            }
        }
    }
    if !senders.is_empty() {
        source
            .parameters
            .insert("senders", serde_json::json!(senders));
    }
    source
}

/// Where an edge keeps the gateway id it learnt, in its data directory.
const GATEWAY_FILE: &str = "gateway-id";

/// The installation's id: made at the first start and kept in the data directory
/// (`engine-id`), so that the connectors' default client ids are the same across restarts
/// and differ between engines.
fn installation_id(dir: &std::path::Path) -> Result<String, StartError> {
    let path = dir.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if manifests::id::is_valid(id) {
            return Ok(id.to_owned());
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    std::fs::write(&path, &id)
        .map_err(|e| StartError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

fn plan_of(checked: &Checked) -> Result<Plan, ServiceError> {
    let Entity::AnalyticsManifest(am) = &checked.entity else {
        return Err(ServiceError::malformed(
            "the body is not an analytics manifest",
        ));
    };
    Ok(Plan::new(am, &checked.model)?)
}
