//! `gating.sqlite`: the sign-in nonces already used (and, with free quotas, the calls each
//! wallet took). Its own file, held exclusively like the payment guard's: sign-in traffic
//! never waits on the paid path's commits.
//!
//! A nonce is single use because its row is inserted, and committed, before access is granted;
//! rows are kept until the nonce could no longer be accepted anyway (its issue time plus the
//! window) and pruned after.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS siwx_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS siwx_nonces_expiry ON siwx_nonces (expires_at);
";

/// The store could not be opened or written (the caller answers 503, never a grant).
#[derive(Debug, thiserror::Error)]
#[error("sign-in store: {0}")]
pub struct GatingStoreError(String);

impl From<rusqlite::Error> for GatingStoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// The used-nonce set.
#[derive(Debug, Clone)]
pub struct GatingStore {
    db: Arc<Mutex<Connection>>,
}

impl GatingStore {
    /// The store in `path` (0600, created when absent).
    pub fn open(path: &Path) -> Result<Self, GatingStoreError> {
        obol_config::fs::prepare_db_file(path)
            .map_err(|e| GatingStoreError(format!("{}: {e}", path.display())))?;
        let db = Connection::open(path)?;
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        Self::from_connection(db)
    }

    /// A store in memory (tests, embeddings without a data directory).
    pub fn in_memory() -> Result<Self, GatingStoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(db: Connection) -> Result<Self, GatingStoreError> {
        db.busy_timeout(std::time::Duration::from_secs(2))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Marks `nonce` used until `expires_at` (unix seconds): `false` when it already was.
    /// Expired rows are pruned on the way.
    pub async fn consume_nonce(
        &self,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GatingStoreError> {
        let db = self.db.clone();
        let nonce = nonce.to_owned();
        let as_sql = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        let (expires_at, now) = (as_sql(expires_at), as_sql(now));
        tokio::task::spawn_blocking(move || {
            let db = db.lock().unwrap_or_else(|e| e.into_inner());
            db.prepare_cached("DELETE FROM siwx_nonces WHERE expires_at < ?1")?
                .execute(params![now])?;
            let inserted = db
                .prepare_cached(
                    "INSERT INTO siwx_nonces (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![nonce, expires_at])?;
            Ok(inserted == 1)
        })
        .await
        .map_err(|e| GatingStoreError(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_nonce_is_used_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gating.sqlite");
        let store = GatingStore::open(&path).unwrap();
        assert!(store.consume_nonce("n1", 2000, 1000).await.unwrap());
        assert!(!store.consume_nonce("n1", 2000, 1000).await.unwrap());
        assert!(store.consume_nonce("n2", 1500, 1000).await.unwrap());
        drop(store);

        let store = GatingStore::open(&path).unwrap();
        assert!(
            !store.consume_nonce("n1", 2000, 1001).await.unwrap(),
            "after a restart"
        );
        // Past its expiry the row is pruned (the nonce itself is refused by its time).
        assert!(store.consume_nonce("n2", 1500, 1600).await.unwrap());
    }
}
