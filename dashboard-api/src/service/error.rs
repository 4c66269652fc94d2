//! What can go wrong in the service, as data: [`ServiceError`].
//!
//! Each variant carries what a caller needs to answer: the instance, the verb and the
//! [`State`] of an illegal transition; every [`Problem`] of an invalid document; the
//! [`Referrer`]s of an entity still referred to. The HTTP layer (`crate::error`) builds
//! both error shapes of the API from these fields; the engine's and the repository's
//! errors convert into it variant by variant.

use engine::{EngineError, State};
use manifests::EntityKind;

use crate::problem::Problem;
use crate::repository::{Referenced, RepositoryError};
use crate::store::StoreError;

/// The verb of an illegal update of an instance's specification.
pub const UPDATE: &str = "update";

/// Why the service refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such entity, instance or data source.
    #[error("no {what} with id `{id}`")]
    NotFound {
        /// What was asked for (`analytics instance`, an entity kind's title).
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The id is taken. An analytics manifest is the API's analytics instance.
    #[error(
        "{} with id `{id}` exists already",
        if *kind == EntityKind::AnalyticsManifest { "an analytics instance".to_owned() } else { format!("a {kind}") }
    )]
    AlreadyExists {
        /// The kind of the entity to create.
        kind: EntityKind,
        /// The id taken.
        id: String,
    },
    /// Other entities refer to the one to delete: they are named.
    #[error(transparent)]
    Referenced(Referenced),
    /// The instance's state does not allow the operation.
    #[error(
        "cannot {verb} analytics instance `{id}`: it is {state}{}",
        if *verb == UPDATE { "; stop it first" } else { "" }
    )]
    IllegalTransition {
        /// The instance.
        id: String,
        /// What was asked (`start`, `stop`, `pause`, `resume`, `remove`, [`UPDATE`]).
        verb: &'static str,
        /// The state it is in.
        state: State,
    },
    /// A data source is written by a running instance.
    #[error("data source `{dsm}` is written by running analytics instance `{instance}`")]
    InUse {
        /// The data source (DSM id).
        dsm: String,
        /// The running instance writing it.
        instance: String,
    },
    /// A well-formed document the models refuse: every problem found.
    #[error("{message}")]
    Invalid {
        /// What is wrong, in a sentence.
        message: String,
        /// Each problem, in the order found.
        problems: Vec<Problem>,
    },
    /// Another engine could not be asked, or its answer is unusable.
    #[error("{0}")]
    Remote(String),
    /// The body's id is not the one the path names.
    #[error("the body's id `{given}` is not the path's `{path}`")]
    IdMismatch {
        /// The id in the body.
        given: String,
        /// The id in the path.
        path: String,
    },
    /// An analytics manifest the engine cannot plan (an unknown definition or type, a
    /// cycle).
    #[error(transparent)]
    Unplannable(#[from] engine::plan::PlanError),
    /// A data source's parameters do not suit its connector.
    #[error(transparent)]
    Connector(#[from] engine::connector::ConnectorError),
    /// A body or parameter that cannot be read (not JSON, XML or UTF-8; not the expected
    /// document; an unusable query parameter).
    #[error("{message}")]
    Malformed {
        /// What is wrong, in a sentence.
        message: String,
        /// Where, when the reader knows.
        problems: Vec<Problem>,
    },
    /// An instance cannot start: its processors or connectors refuse their configuration.
    #[error("analytics instance `{id}` cannot start: {reason}")]
    StartFailed {
        /// The instance.
        id: String,
        /// Why.
        reason: String,
    },
    /// The store cannot be read or written.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl ServiceError {
    /// No analytics instance `id`.
    #[must_use]
    pub fn no_instance(id: &str) -> Self {
        Self::NotFound {
            what: INSTANCE,
            id: id.to_owned(),
        }
    }

    /// An unreadable body or parameter, with no detail.
    #[must_use]
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::Malformed {
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// An invalid document, with no detail.
    #[must_use]
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            problems: Vec::new(),
        }
    }
}

/// What the API calls an analytics manifest the engine runs.
const INSTANCE: &str = "analytics instance";

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => Self::no_instance(&id),
            EngineError::Exists(id) => Self::AlreadyExists {
                kind: EntityKind::AnalyticsManifest,
                id,
            },
            EngineError::IllegalTransition { id, verb, state } => {
                Self::IllegalTransition { id, verb, state }
            }
            EngineError::StartFailed { id, reason } => Self::StartFailed { id, reason },
            EngineError::InUse { dsm, instance } => Self::InUse { dsm, instance },
            EngineError::Connector(e) => Self::Connector(e),
        }
    }
}

impl From<RepositoryError> for ServiceError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::NotFound { kind, id } => Self::NotFound {
                what: kind.info().title,
                id,
            },
            RepositoryError::Referenced(r) => Self::Referenced(r),
            RepositoryError::Invalid { kind, problems } => Self::Invalid {
                message: format!("the {kind} is invalid: {} problem(s)", problems.len()),
                problems,
            },
            RepositoryError::Empty { kind } => Self::malformed(format!("the body holds no {kind}")),
            RepositoryError::Storage(e) => Self::Storage(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_which() {
        let update = ServiceError::IllegalTransition {
            id: "a".into(),
            verb: UPDATE,
            state: State::Running,
        };
        assert_eq!(
            update.to_string(),
            "cannot update analytics instance `a`: it is RUNNING; stop it first"
        );
        let engine: ServiceError = EngineError::IllegalTransition {
            id: "a".into(),
            verb: "start",
            state: State::Paused,
        }
        .into();
        assert_eq!(
            engine.to_string(),
            "cannot start analytics instance `a`: it is PAUSED"
        );
        let taken = ServiceError::AlreadyExists {
            kind: EntityKind::DataKind,
            id: "dk".into(),
        };
        assert_eq!(taken.to_string(), "a data kind with id `dk` exists already");
        let taken = ServiceError::AlreadyExists {
            kind: EntityKind::AnalyticsManifest,
            id: "am".into(),
        };
        assert_eq!(
            taken.to_string(),
            "an analytics instance with id `am` exists already"
        );
    }
}
