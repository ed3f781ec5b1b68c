//! The embedded store: one SQLite file (WAL), versioned schema, a broadcast watch.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{
    ApplyMode, ApplyOutcome, DeleteOutcome, Event, ObjectKey, RawObject, Store, StoreError,
};
use crate::resource::{ObjectMeta, now_rfc3339};
use obol_sqlite::Step;

/// Schema migrations, applied in order ([`obol_sqlite::migrate`]); `PRAGMA user_version`
/// records how many ran.
const MIGRATIONS: &[Step] = &[Step::Sql(
    "
CREATE TABLE objects (
    kind               TEXT    NOT NULL,
    namespace          TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    generation         INTEGER NOT NULL,
    resource_version   INTEGER NOT NULL,
    creation_timestamp TEXT    NOT NULL,
    deletion_timestamp TEXT,
    finalizers         TEXT    NOT NULL,
    labels             TEXT    NOT NULL,
    annotations        TEXT    NOT NULL,
    spec               TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('resource_version', 0);
",
)];

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Resources in SQLite.
#[derive(Debug)]
pub struct SqliteStore {
    db: Mutex<Connection>,
    events: broadcast::Sender<Event>,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` and migrates it. The file, its side files and
    /// its directory are private to the owner ([`obol_config::fs::prepare_db_file`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        obol_config::fs::prepare_db_file(path).map_err(backend)?;
        Self::with_connection(Connection::open(path).map_err(backend)?)
    }

    /// A store in memory (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory().map_err(backend)?)
    }

    fn with_connection(mut db: Connection) -> Result<Self, StoreError> {
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        obol_sqlite::migrate(&mut db, "resource store", MIGRATIONS).map_err(backend)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            db: Mutex::new(db),
            events,
        })
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)
    }

    /// Copies the store, online and consistent, into the new file `dest` (SQLite's backup
    /// API; writers wait for the copy) and returns the copy's schema version.
    pub fn backup_to(&self, dest: &Path) -> Result<i64, StoreError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        obol_sqlite::backup(&db, dest).map_err(backend)
    }

    fn emit_removal(&self, key: ObjectKey, outcome: DeleteOutcome) {
        self.emit(match outcome {
            DeleteOutcome::Deleted => Event::Deleted(key),
            _ => Event::Modified(key),
        });
    }

    fn emit(&self, event: Event) {
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

const COLUMNS: &str = "kind, namespace, name, generation, resource_version, creation_timestamp, deletion_timestamp, finalizers, labels, annotations, spec, status";

fn row_to_object(row: &Row<'_>) -> rusqlite::Result<Result<RawObject, StoreError>> {
    let kind: String = row.get(0)?;
    let namespace: String = row.get(1)?;
    let name: String = row.get(2)?;
    let texts: [String; 5] = [
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
    ];
    let corrupt = |message: String| StoreError::Corrupt {
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        message,
    };
    let parse =
        |text: &str| serde_json::from_str::<Value>(text).map_err(|e| corrupt(e.to_string()));
    let decoded = (|| {
        let finalizers = serde_json::from_str(&texts[0]).map_err(|e| corrupt(e.to_string()))?;
        let labels = serde_json::from_str(&texts[1]).map_err(|e| corrupt(e.to_string()))?;
        let annotations = serde_json::from_str(&texts[2]).map_err(|e| corrupt(e.to_string()))?;
        Ok(RawObject {
            kind: kind.clone(),
            metadata: ObjectMeta {
                name: name.clone(),
                namespace: namespace.clone(),
                generation: row.get(3).map_err(backend)?,
                resource_version: row.get(4).map_err(backend)?,
                creation_timestamp: row.get(5).map_err(backend)?,
                deletion_timestamp: row.get(6).map_err(backend)?,
                finalizers,
                labels,
                annotations,
            },
            spec: parse(&texts[3])?,
            status: parse(&texts[4])?,
        })
    })();
    Ok(decoded)
}

fn next_version(tx: &rusqlite::Transaction<'_>) -> Result<i64, StoreError> {
    tx.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'resource_version' RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(backend)
}

fn fetch(
    db: &Connection,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<RawObject>, StoreError> {
    db.query_row(
        &format!("SELECT {COLUMNS} FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3"),
        params![kind, namespace, name],
        row_to_object,
    )
    .optional()
    .map_err(backend)?
    .transpose()
}

fn remove_row(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<DeleteOutcome, StoreError> {
    tx.execute(
        "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![kind, namespace, name],
    )
    .map_err(backend)?;
    next_version(tx)?;
    Ok(DeleteOutcome::Deleted)
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

fn not_found(kind: &str, namespace: &str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RawObject>, StoreError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        fetch(&db, kind, namespace, name)
    }

    async fn list_raw(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<RawObject>, StoreError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let mut statement = db
            .prepare(&format!(
                "SELECT {COLUMNS} FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2) ORDER BY namespace, name"
            ))
            .map_err(backend)?;
        let rows = statement
            .query_map(params![kind, namespace], row_to_object)
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            match row.map_err(backend)? {
                Ok(object) => out.push(object),
                Err(error) => tracing::error!(%error, "skipping a corrupt stored object"),
            }
        }
        Ok(out)
    }

    async fn apply_raw_with(
        &self,
        object: RawObject,
        mode: ApplyMode,
    ) -> Result<(RawObject, ApplyOutcome), StoreError> {
        let key = object.key();
        let (stored, outcome) = {
            let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = db.transaction().map_err(backend)?;
            let existing = fetch(&tx, &key.kind, &key.namespace, &key.name)?;
            let outcome = match &existing {
                // Read earlier, gone since (deleted): not brought back.
                None if object.metadata.generation > 0 => {
                    return Err(not_found(&key.kind, &key.namespace, &key.name));
                }
                None => {
                    let version = next_version(&tx)?;
                    tx.execute(
                        &format!("INSERT INTO objects ({COLUMNS}) VALUES (?1, ?2, ?3, 1, ?4, ?5, NULL, ?6, ?7, ?8, ?9, ?10)"),
                        params![
                            key.kind, key.namespace, key.name, version, now_rfc3339(),
                            json(&object.metadata.finalizers)?, json(&object.metadata.labels)?,
                            json(&object.metadata.annotations)?, json(&object.spec)?, json(&Value::Null)?
                        ],
                    )
                    .map_err(backend)?;
                    ApplyOutcome::Created
                }
                Some(_) if mode == ApplyMode::CreateOnly => {
                    return Err(StoreError::Exists {
                        kind: key.kind,
                        namespace: key.namespace,
                        name: key.name,
                    });
                }
                Some(current) if current.metadata.is_deleting() => {
                    return Err(StoreError::Deleting {
                        kind: key.kind,
                        namespace: key.namespace,
                        name: key.name,
                    });
                }
                // Read at another generation, or read from an object since deleted and
                // recreated (another creation time): refused.
                Some(current)
                    if object.metadata.generation > 0
                        && (object.metadata.generation != current.metadata.generation
                            || (!object.metadata.creation_timestamp.is_empty()
                                && object.metadata.creation_timestamp
                                    != current.metadata.creation_timestamp)) =>
                {
                    return Err(StoreError::Conflict {
                        kind: key.kind,
                        namespace: key.namespace,
                        name: key.name,
                        based_on: object.metadata.generation,
                        stored: current.metadata.generation,
                    });
                }
                Some(current) => {
                    let spec_changed = current.spec != object.spec;
                    let meta_changed = current.metadata.labels != object.metadata.labels
                        || current.metadata.annotations != object.metadata.annotations;
                    if !spec_changed && !meta_changed {
                        ApplyOutcome::Unchanged
                    } else {
                        let version = next_version(&tx)?;
                        let generation = current.metadata.generation + i64::from(spec_changed);
                        tx.execute(
                            "UPDATE objects SET generation = ?4, resource_version = ?5, labels = ?6, annotations = ?7, spec = ?8
                             WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                            params![
                                key.kind, key.namespace, key.name, generation, version,
                                json(&object.metadata.labels)?, json(&object.metadata.annotations)?, json(&object.spec)?
                            ],
                        )
                        .map_err(backend)?;
                        ApplyOutcome::Updated
                    }
                }
            };
            let stored = fetch(&tx, &key.kind, &key.namespace, &key.name)?
                .ok_or_else(|| not_found(&key.kind, &key.namespace, &key.name))?;
            tx.commit().map_err(backend)?;
            (stored, outcome)
        };
        match outcome {
            ApplyOutcome::Created => self.emit(Event::Added(key)),
            ApplyOutcome::Updated => self.emit(Event::Modified(key)),
            ApplyOutcome::Unchanged => {}
        }
        Ok((stored, outcome))
    }

    async fn patch_status_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<RawObject, StoreError> {
        let stored = {
            let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = db.transaction().map_err(backend)?;
            let mut current = fetch(&tx, kind, namespace, name)?
                .ok_or_else(|| not_found(kind, namespace, name))?;
            if current.status == status {
                return Ok(current);
            }
            let version = next_version(&tx)?;
            tx.execute(
                "UPDATE objects SET status = ?4, resource_version = ?5 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind, namespace, name, json(&status)?, version],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            // What was written, without reading the (possibly large) row back.
            current.status = status;
            current.metadata.resource_version = version;
            current
        };
        self.emit(Event::Modified(stored.key()));
        Ok(stored)
    }

    async fn set_finalizers(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        finalizers: Vec<String>,
    ) -> Result<DeleteOutcome, StoreError> {
        let key = ObjectKey {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let outcome = {
            let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = db.transaction().map_err(backend)?;
            let current = fetch(&tx, kind, namespace, name)?
                .ok_or_else(|| not_found(kind, namespace, name))?;
            let outcome = if current.metadata.is_deleting() && finalizers.is_empty() {
                remove_row(&tx, kind, namespace, name)?
            } else {
                let version = next_version(&tx)?;
                tx.execute(
                    "UPDATE objects SET finalizers = ?4, resource_version = ?5 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind, namespace, name, json(&finalizers)?, version],
                )
                .map_err(backend)?;
                DeleteOutcome::Marked
            };
            tx.commit().map_err(backend)?;
            outcome
        };
        self.emit_removal(key, outcome);
        Ok(outcome)
    }

    async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<DeleteOutcome, StoreError> {
        let key = ObjectKey {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let outcome = {
            let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = db.transaction().map_err(backend)?;
            let Some(current) = fetch(&tx, kind, namespace, name)? else {
                return Ok(DeleteOutcome::NotFound);
            };
            let outcome = if current.metadata.finalizers.is_empty() {
                remove_row(&tx, kind, namespace, name)?
            } else if current.metadata.is_deleting() {
                return Ok(DeleteOutcome::Marked);
            } else {
                let version = next_version(&tx)?;
                tx.execute(
                    "UPDATE objects SET deletion_timestamp = ?4, resource_version = ?5 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind, namespace, name, now_rfc3339(), version],
                )
                .map_err(backend)?;
                DeleteOutcome::Marked
            };
            tx.commit().map_err(backend)?;
            outcome
        };
        self.emit_removal(key, outcome);
        Ok(outcome)
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
