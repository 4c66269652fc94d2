//! What the API does, independent of HTTP: the model repository, analytics instances and
//! their desired state, kept in step with the engine.
//!
//! Every change goes repository → store → engine. Lifecycle operations on one instance are
//! serialized (a second `start` racing the first sees it RUNNING and is refused), and each
//! persists the state asked for, so that a restarted server brings instances back as they
//! were: RUNNING ones run, PAUSED ones are paused, STOPPED ones stay stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use axum::http::StatusCode;
use engine::instance::Transition;
use engine::{DataSource, Engine, EngineConfig, InstanceStatus, Plan, State, Sym};
use manifests::{Entity, EntityKind, Model};
use serde_json::Value as Json;

use crate::config::{ServerConfig, TokenConfig};
use crate::error::ApiError;
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
    /// When the server started.
    pub started: Instant,
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

fn storage(e: StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "STORAGE", e.to_string())
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
}

impl Service {
    /// Opens the store, loads the repository, starts the engine, registers every data
    /// source, creates every instance, and brings each to its desired state.
    ///
    /// # Errors
    ///
    /// The store cannot be opened or the engine cannot start.
    pub async fn start(config: &ServerConfig) -> Result<Arc<Self>, StartError> {
        let store = Store::open(&config.data_dir)?;
        let repository = Repository::load(store.clone()).await?;
        let mut engine_config = EngineConfig {
            speed: engine::connector::Speed::parse(&config.speed).map_err(StartError::Config)?,
            recent: config.recent,
            external: config.external.clone(),
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
        let service = Arc::new(Self {
            engine,
            repository,
            store,
            locks: StdMutex::default(),
            tokens: config.tokens.clone(),
            started: Instant::now(),
        });
        service.recover().await?;
        Ok(service)
    }

    async fn recover(&self) -> Result<(), StartError> {
        let model = self.repository.model();
        self.sync_registry(&model).await;
        for am in model.analytics_manifests.values() {
            match Plan::new(am, &model) {
                Ok(plan) => self.engine.create(plan)?,
                Err(e) => {
                    tracing::error!(instance = %am.id, error = %e, "cannot recreate an analytics instance")
                }
            }
        }
        let desired = self.store.desired_states().await?;
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
            "recovered"
        );
        Ok(())
    }

    /// Registers, updates and deregisters data sources to match `model`.
    async fn sync_registry(&self, model: &Model) {
        for id in model.data_source_manifests.keys() {
            let Some(source) = DataSource::from_model(model, id) else {
                continue;
            };
            if self.engine.registry().get(source.id).as_deref() != Some(&source)
                && let Err(e) = self.engine.register(source)
            {
                tracing::warn!(dsm = %id, error = %e, "cannot register a data source");
            }
        }
        let dead_letters = Sym::new(engine::engine::DEAD_LETTER_DSM);
        for registered in self.engine.registry().all() {
            let id = registered.id.to_string();
            if registered.id != dead_letters
                && !model.data_source_manifests.contains_key(&id)
                && let Err(e) = self.engine.deregister(&id).await
            {
                tracing::warn!(dsm = %id, error = %e, "cannot deregister a data source");
            }
        }
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
    fn settle_id(doc: &mut Json, path_id: Option<&str>) -> Result<String, ApiError> {
        let given = doc
            .get("id")
            .or_else(|| doc.get("_id"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        let id = match (given, path_id) {
            (Some(g), Some(p)) if g != p => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID",
                    format!("the body's id `{g}` is not the path's `{p}`"),
                ));
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

    /// Creates a model entity.
    ///
    /// # Errors
    ///
    /// 409 when the id is taken, 422 when invalid.
    pub async fn create_entity(&self, kind: EntityKind, mut doc: Json) -> Result<Entity, ApiError> {
        let id = Self::settle_id(&mut doc, None)?;
        if self.repository.get(kind, &id).is_some() {
            return Err(ApiError::conflict(
                "ALREADY_EXISTS",
                format!("a {kind} with id `{id}` exists already"),
            ));
        }
        let checked = self.repository.check(kind, &doc, None)?;
        self.commit(checked).await
    }

    /// Replaces model entity `id`.
    ///
    /// # Errors
    ///
    /// 404 when absent, 422 when invalid.
    pub async fn update_entity(
        &self,
        kind: EntityKind,
        id: &str,
        mut doc: Json,
    ) -> Result<Entity, ApiError> {
        if self.repository.get(kind, id).is_none() {
            return Err(ApiError::not_found(kind.info().title, id));
        }
        Self::settle_id(&mut doc, Some(id))?;
        let checked = self.repository.check(kind, &doc, Some(id))?;
        self.commit(checked).await
    }

    async fn commit(&self, checked: Checked) -> Result<Entity, ApiError> {
        for w in &checked.warnings {
            tracing::warn!(diagnostic = %w, "accepted with a warning");
        }
        let entity = self.repository.put(checked).await?;
        self.sync_registry(&self.repository.model()).await;
        Ok(entity)
    }

    /// Deletes a model entity nothing refers to (a data source manifest is deregistered).
    ///
    /// # Errors
    ///
    /// 404 when absent, 409 when referred to.
    pub async fn delete_entity(&self, kind: EntityKind, id: &str) -> Result<(), ApiError> {
        self.repository.delete(kind, id).await?;
        self.sync_registry(&self.repository.model()).await;
        Ok(())
    }

    /// Creates an analytics instance (STOPPED) from an analytics manifest. With `fresh_id`
    /// a new id is always given, as the original engine did.
    ///
    /// # Errors
    ///
    /// 409 when the id is taken, 422 when invalid.
    pub async fn create_instance(
        &self,
        mut doc: Json,
        fresh_id: bool,
    ) -> Result<InstanceView, ApiError> {
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
            return Err(ApiError::conflict(
                "ALREADY_EXISTS",
                format!("an analytics instance with id `{id}` exists already"),
            ));
        }
        let checked = self
            .repository
            .check(EntityKind::AnalyticsManifest, &doc, None)?;
        let plan = plan_of(&checked)?;
        let entity = self.repository.put(checked).await?;
        self.store
            .set_desired(&id, State::Stopped)
            .await
            .map_err(storage)?;
        self.engine.create(plan)?;
        self.sync_registry(&self.repository.model()).await;
        self.view_of(&entity).await
    }

    /// Replaces the analytics manifest of a stopped (or failed) instance.
    ///
    /// # Errors
    ///
    /// 404 when absent, 409 while running or paused, 422 when invalid.
    pub async fn update_instance(&self, id: &str, mut doc: Json) -> Result<InstanceView, ApiError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let status = self.engine.status(id).await?;
        if matches!(status.state, State::Running | State::Paused) {
            return Err(ApiError::conflict(
                "ILLEGAL_TRANSITION",
                format!(
                    "cannot update analytics instance `{id}`: it is {}; stop it first",
                    status.state
                ),
            ));
        }
        Self::settle_id(&mut doc, Some(id))?;
        let checked = self
            .repository
            .check(EntityKind::AnalyticsManifest, &doc, Some(id))?;
        let plan = plan_of(&checked)?;
        let entity = self.repository.put(checked).await?;
        self.engine.replace(plan).await?;
        self.store
            .set_desired(id, State::Stopped)
            .await
            .map_err(storage)?;
        self.view_of(&entity).await
    }

    /// Deletes a stopped (or failed) instance.
    ///
    /// # Errors
    ///
    /// 404 when absent, 409 while running or paused.
    pub async fn delete_instance(&self, id: &str) -> Result<(), ApiError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        self.engine.remove(id).await?;
        self.repository
            .delete(EntityKind::AnalyticsManifest, id)
            .await?;
        self.store.delete_instance(id).await.map_err(storage)?;
        self.sync_registry(&self.repository.model()).await;
        Ok(())
    }

    /// Starts, stops, pauses or resumes an instance, and remembers the state asked for.
    ///
    /// # Errors
    ///
    /// 404 when absent, 409 for an illegal transition, 422 when it cannot start.
    pub async fn transition(&self, id: &str, t: Transition) -> Result<InstanceStatus, ApiError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
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
        self.store.set_desired(id, desired).await.map_err(storage)?;
        Ok(self.engine.status(id).await?)
    }

    /// The instance `id`.
    ///
    /// # Errors
    ///
    /// 404 when absent.
    pub async fn instance(&self, id: &str) -> Result<InstanceView, ApiError> {
        let entity = self
            .repository
            .get(EntityKind::AnalyticsManifest, id)
            .ok_or_else(|| ApiError::not_found("analytics instance", id))?;
        self.view_of(&entity).await
    }

    async fn view_of(&self, am: &Entity) -> Result<InstanceView, ApiError> {
        let id = am.id().unwrap_or_default();
        let status = self.engine.status(id).await?;
        Ok(InstanceView {
            id: id.to_owned(),
            name: am.name().map(str::to_owned),
            state: status.state,
            specification: self.show(am),
            failure: status.failure,
            waiting_for: status.waiting_for,
            connectors: status.connectors,
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
}

fn plan_of(checked: &Checked) -> Result<Plan, ApiError> {
    let Entity::AnalyticsManifest(am) = &checked.entity else {
        return Err(ApiError::malformed("the body is not an analytics manifest"));
    };
    Plan::new(am, &checked.model)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID", e.to_string()))
}
