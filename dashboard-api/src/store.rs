//! Persistence of the model repository and of analytics instances, in an embedded SQLite
//! database (`<data dir>/dda.sqlite`): nothing to install.
//!
//! Every change is committed before the request that made it is answered, so a process
//! killed at any moment (even with SIGKILL) comes back as it was.

use std::path::Path;
use std::sync::{Arc, Mutex};

use engine::State;
use rusqlite::{Connection, params};
use serde_json::Value as Json;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// Takes `<dir>/dda.lock` (an advisory lock the system releases when the process ends, even
/// by SIGKILL) and writes this process's id in it.
fn lock(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = dir.join("dda.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    if let Err(e) = file.try_lock() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let holder = match pid.trim() {
            "" => String::new(),
            pid => format!(" (process {pid})"),
        };
        return Err(StoreError(match e {
            std::fs::TryLockError::WouldBlock => format!(
                "the data directory {} is in use by another dda serve{holder}; stop it, or \
                 give this server a data directory of its own (--data-dir)",
                dir.display()
            ),
            std::fs::TryLockError::Error(e) => {
                format!("cannot lock {}: {e}", path.display())
            }
        }));
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    written.map_err(|e| StoreError(format!("cannot write {}: {e}", path.display())))?;
    Ok(file)
}

/// The database.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// `<data dir>/dda.lock`, locked while the store is open: one server per data directory.
    _lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn state_name(s: State) -> &'static str {
    s.as_str()
}

fn parse_state(s: &str) -> State {
    match s {
        "RUNNING" => State::Running,
        "PAUSED" => State::Paused,
        _ => State::Stopped,
    }
}

impl Store {
    /// Opens (creating) the database in `dir`.
    ///
    /// # Errors
    ///
    /// The folder or file cannot be created or opened.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock(dir)?;
        let conn = Connection::open(dir.join("dda.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entities (
               kind TEXT NOT NULL, id TEXT NOT NULL, document TEXT NOT NULL, updated TEXT NOT NULL,
               PRIMARY KEY (kind, id));
             CREATE TABLE IF NOT EXISTS instances (
               id TEXT PRIMARY KEY, desired_state TEXT NOT NULL, updated TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS unregistered (
               dsm TEXT PRIMARY KEY, updated TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS retired (
               instance TEXT NOT NULL, gateway TEXT NOT NULL, updated TEXT NOT NULL,
               PRIMARY KEY (instance, gateway));",
        )?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            _lock: Arc::new(lock),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError(e.to_string()))?
        .map_err(StoreError::from)
    }

    /// Every stored entity: (kind schema name, id, document).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn entities(&self) -> Result<Vec<(String, String, Json)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT kind, id, document FROM entities ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| {
                let doc: String = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    serde_json::from_str(&doc).unwrap_or(Json::Null),
                ))
            })?;
            rows.collect()
        })
        .await
    }

    /// Creates or replaces an entity.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn put_entity(
        &self,
        kind: &str,
        id: &str,
        document: &Json,
    ) -> Result<(), StoreError> {
        self.put_entities(kind, vec![(id.to_owned(), document.clone())])
            .await
    }

    /// Creates or replaces many entities of one kind in one transaction: all or none.
    ///
    /// # Errors
    ///
    /// The database cannot be written (nothing is then kept).
    pub async fn put_entities(
        &self,
        kind: &str,
        documents: Vec<(String, Json)>,
    ) -> Result<(), StoreError> {
        let kind = kind.to_owned();
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let now = engine::Timestamp::now().to_string();
                let mut stmt = tx.prepare(
                    "INSERT INTO entities (kind, id, document, updated) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, id) DO UPDATE SET document = excluded.document, updated = excluded.updated",
                )?;
                for (id, doc) in &documents {
                    stmt.execute(params![kind, id, doc.to_string(), now])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Deletes an entity.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn delete_entity(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM entities WHERE kind = ?1 AND id = ?2",
                params![kind, id],
            )
            .map(|_| ())
        })
        .await
    }

    /// The desired state of every instance (its analytics manifest is an entity).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn desired_states(&self) -> Result<Vec<(String, State)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT id, desired_state FROM instances ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| {
                let desired: String = r.get(1)?;
                Ok((r.get(0)?, parse_state(&desired)))
            })?;
            rows.collect()
        })
        .await
    }

    /// Records the desired state of an instance.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn set_desired(&self, id: &str, desired: State) -> Result<(), StoreError> {
        let (id, desired) = (id.to_owned(), state_name(desired));
        self.call(move |c| {
            c.execute(
                "INSERT INTO instances (id, desired_state, updated) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET desired_state = excluded.desired_state, updated = excluded.updated",
                params![id, desired, engine::Timestamp::now().to_string()],
            )
            .map(|_| ())
        })
        .await
    }

    /// The data source manifests taken out of the live registry (their manifests stay).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn unregistered(&self) -> Result<Vec<String>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT dsm FROM unregistered ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    /// Records whether data source manifest `dsm` is registered.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn set_registered(&self, dsm: &str, registered: bool) -> Result<(), StoreError> {
        let dsm = dsm.to_owned();
        self.call(move |c| {
            if registered {
                c.execute("DELETE FROM unregistered WHERE dsm = ?1", params![dsm])
            } else {
                c.execute(
                    "INSERT INTO unregistered (dsm, updated) VALUES (?1, ?2)
                     ON CONFLICT (dsm) DO UPDATE SET updated = excluded.updated",
                    params![dsm, engine::Timestamp::now().to_string()],
                )
            }
            .map(|_| ())
        })
        .await
    }

    /// The deployments to remove from their gateways: (instance, gateway).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn retired(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT instance, gateway FROM retired ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Records that `instance` is to be removed from `gateway`, or, with `retired` false,
    /// that it is done (or not to be).
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn set_retired(
        &self,
        instance: &str,
        gateway: &str,
        retired: bool,
    ) -> Result<(), StoreError> {
        let (instance, gateway) = (instance.to_owned(), gateway.to_owned());
        self.call(move |c| {
            if retired {
                c.execute(
                    "INSERT INTO retired (instance, gateway, updated) VALUES (?1, ?2, ?3)
                     ON CONFLICT (instance, gateway) DO UPDATE SET updated = excluded.updated",
                    params![instance, gateway, engine::Timestamp::now().to_string()],
                )
            } else {
                c.execute(
                    "DELETE FROM retired WHERE instance = ?1 AND gateway = ?2",
                    params![instance, gateway],
                )
            }
            .map(|_| ())
        })
        .await
    }

    /// Forgets an instance's desired state.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn delete_instance(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM instances WHERE id = ?1", params![id])
                .map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn what_is_stored_comes_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_entity("data-kind", "dk", &json!({"id": "dk", "name": "a"}))
                .await
                .unwrap();
            s.put_entity("data-kind", "dk", &json!({"id": "dk", "name": "b"}))
                .await
                .unwrap();
            s.put_entity("data-kind", "gone", &json!({"id": "gone"}))
                .await
                .unwrap();
            s.delete_entity("data-kind", "gone").await.unwrap();
            s.set_desired("am", State::Stopped).await.unwrap();
            s.set_desired("am", State::Paused).await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.entities().await.unwrap(),
            vec![(
                "data-kind".into(),
                "dk".into(),
                json!({"id": "dk", "name": "b"})
            )]
        );
        assert_eq!(
            s.desired_states().await.unwrap(),
            vec![("am".into(), State::Paused)]
        );
        s.delete_instance("am").await.unwrap();
        assert!(s.desired_states().await.unwrap().is_empty());
        s.set_retired("am", "edge-1", true).await.unwrap();
        s.set_retired("am", "edge-2", true).await.unwrap();
        s.set_retired("am", "edge-1", false).await.unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.retired().await.unwrap(),
            vec![("am".to_owned(), "edge-2".to_owned())]
        );
    }
}
