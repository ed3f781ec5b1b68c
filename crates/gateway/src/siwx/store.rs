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
CREATE TABLE IF NOT EXISTS free_quota (
    offer TEXT NOT NULL,
    route TEXT NOT NULL,
    wallet BLOB NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (offer, route, wallet, day)
) WITHOUT ROWID;
";

/// The schema steps ([`obol_sqlite::migrate`]).
const STEPS: &[obol_sqlite::Step] = &[obol_sqlite::Step::Sql(SCHEMA)];

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// Whose free calls are counted: an offer's route, a wallet, a UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaKey {
    /// `namespace/name` of the offer.
    pub offer: String,
    /// The route's pattern.
    pub route: String,
    /// The signed-in wallet.
    pub wallet: [u8; 20],
    /// Days since the epoch (UTC).
    pub day: u64,
}

/// The store could not be opened or written (the caller answers 503, never a grant).
#[derive(Debug, thiserror::Error)]
#[error("sign-in store: {0}")]
pub struct GatingStoreError(String);

impl From<rusqlite::Error> for GatingStoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// The tables of the shared store ([`GatingStore::postgres`]).
const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gating_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS gating_nonces_expiry ON gating_nonces (expires_at);
CREATE TABLE IF NOT EXISTS gating_free_quota (
    offer  TEXT    NOT NULL,
    route  TEXT    NOT NULL,
    wallet BYTEA   NOT NULL,
    day    BIGINT  NOT NULL,
    used   INTEGER NOT NULL,
    PRIMARY KEY (offer, route, wallet, day)
);
";

/// The used-nonce set and the free calls taken: an SQLite file (one process), or a PostgreSQL
/// database shared by gateway replicas, so a nonce is single use and a quota counted once
/// whichever replica a wallet reaches.
#[derive(Debug, Clone)]
pub struct GatingStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(deadpool_postgres::Pool),
}

fn pg_error(e: impl std::fmt::Display) -> GatingStoreError {
    GatingStoreError(e.to_string())
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

    fn from_connection(mut db: Connection) -> Result<Self, GatingStoreError> {
        db.busy_timeout(std::time::Duration::from_secs(2))?;
        obol_sqlite::migrate(&mut db, "sign-in store", STEPS)
            .map_err(|e| GatingStoreError(e.to_string()))?;
        Ok(Self {
            backend: Backend::Sqlite(Arc::new(Mutex::new(db))),
        })
    }

    /// The store in the PostgreSQL database at `url`, shared by gateway replicas (its tables
    /// created when missing).
    pub async fn postgres(url: &str) -> Result<Self, GatingStoreError> {
        let version = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
        let pool = crate::pg::connect(
            url,
            "sign-in store",
            version,
            PG_SCHEMA,
            "DELETE FROM gating_nonces WHERE expires_at < $1",
        )
        .await
        .map_err(GatingStoreError)?;
        Ok(Self {
            backend: Backend::Postgres(pool),
        })
    }

    /// Copies the store, online and consistent, into the new file `dest` (SQLite's backup
    /// API) and returns the copy's schema version; `None` for a PostgreSQL store (back it up
    /// with the database).
    pub fn backup_to(&self, dest: &Path) -> Result<Option<i64>, GatingStoreError> {
        let Backend::Sqlite(db) = &self.backend else {
            return Ok(None);
        };
        let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some(obol_sqlite::backup(&db, dest)?))
    }

    /// The shared store's pool, or `None` for SQLite.
    fn pg(&self) -> Option<&deadpool_postgres::Pool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// Marks `nonce` used until `expires_at` (unix seconds): `false` when it already was.
    /// Expired rows are pruned on the way.
    pub async fn consume_nonce(
        &self,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GatingStoreError> {
        let nonce = nonce.to_owned();
        let as_sql = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        let (expires_at, now) = (as_sql(expires_at), as_sql(now));
        if let Some(pool) = self.pg() {
            let client = pool.get().await.map_err(pg_error)?;
            client
                .execute("DELETE FROM gating_nonces WHERE expires_at < $1", &[&now])
                .await
                .map_err(pg_error)?;
            let inserted = client
                .execute(
                    "INSERT INTO gating_nonces (nonce, expires_at) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&nonce, &expires_at],
                )
                .await
                .map_err(pg_error)?;
            return Ok(inserted == 1);
        }
        self.run(move |db| {
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
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, GatingStoreError> {
        let Backend::Sqlite(db) = &self.backend else {
            return Err(GatingStoreError("not an SQLite store".into()));
        };
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let db = db.lock().unwrap_or_else(|e| e.into_inner());
            work(&db).map_err(GatingStoreError::from)
        })
        .await
        .map_err(|e| GatingStoreError(e.to_string()))?
    }

    /// Takes one of `quota` free calls of `key`'s day: `false` when all are taken. Atomic: no
    /// number of concurrent calls takes more than `quota`. Days before yesterday are pruned.
    pub async fn take_free_call(
        &self,
        key: &QuotaKey,
        quota: u32,
    ) -> Result<bool, GatingStoreError> {
        let key = key.clone();
        let day = i64::try_from(key.day).unwrap_or(i64::MAX);
        if let Some(pool) = self.pg() {
            let client = pool.get().await.map_err(pg_error)?;
            client
                .execute(
                    "DELETE FROM gating_free_quota WHERE day < $1",
                    &[&(day - 1)],
                )
                .await
                .map_err(pg_error)?;
            let quota_sql = i32::try_from(quota).unwrap_or(i32::MAX);
            let taken = client
                .execute(
                    "INSERT INTO gating_free_quota (offer, route, wallet, day, used)
                     VALUES ($1, $2, $3, $4, 1)
                     ON CONFLICT (offer, route, wallet, day) DO UPDATE
                     SET used = gating_free_quota.used + 1 WHERE gating_free_quota.used < $5",
                    &[
                        &key.offer,
                        &key.route,
                        &key.wallet.as_slice(),
                        &day,
                        &quota_sql,
                    ],
                )
                .await
                .map_err(pg_error)?;
            return Ok(taken == 1 && quota > 0);
        }
        self.run(move |db| {
            db.prepare_cached("DELETE FROM free_quota WHERE day < ?1")?
                .execute(params![day - 1])?;
            let taken = db
                .prepare_cached(
                    "INSERT INTO free_quota (offer, route, wallet, day, used) VALUES (?1, ?2, ?3, ?4, 1)
                     ON CONFLICT (offer, route, wallet, day) DO UPDATE SET used = used + 1 WHERE used < ?5",
                )?
                .execute(params![key.offer, key.route, key.wallet, day, quota])?;
            Ok(taken == 1 && quota > 0)
        })
        .await
    }

    /// Gives a free call taken with [`Self::take_free_call`] back (the upstream failed).
    pub async fn give_back(&self, key: &QuotaKey) -> Result<(), GatingStoreError> {
        let key = key.clone();
        let day = i64::try_from(key.day).unwrap_or(i64::MAX);
        if let Some(pool) = self.pg() {
            let client = pool.get().await.map_err(pg_error)?;
            client
                .execute(
                    "UPDATE gating_free_quota SET used = used - 1
                     WHERE offer = $1 AND route = $2 AND wallet = $3 AND day = $4 AND used > 0",
                    &[&key.offer, &key.route, &key.wallet.as_slice(), &day],
                )
                .await
                .map_err(pg_error)?;
            return Ok(());
        }
        self.run(move |db| {
            db.prepare_cached(
                "UPDATE free_quota SET used = used - 1
                 WHERE offer = ?1 AND route = ?2 AND wallet = ?3 AND day = ?4 AND used > 0",
            )?
            .execute(params![key.offer, key.route, key.wallet, day])
            .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> QuotaKey {
        QuotaKey {
            offer: "default/api".into(),
            route: "/services/api/*".into(),
            wallet: [7; 20],
            day: 20_000,
        }
    }

    /// The rules, on `a` and `b`: one store twice (SQLite), or two replicas' stores on one
    /// database (PostgreSQL).
    async fn nonces_are_single_use(a: &GatingStore, b: &GatingStore) {
        assert!(a.consume_nonce("n1", 2000, 1000).await.unwrap());
        assert!(!b.consume_nonce("n1", 2000, 1000).await.unwrap());
        assert!(b.consume_nonce("n2", 1500, 1000).await.unwrap());
        // Past its expiry the row is pruned (the nonce itself is refused by its time).
        assert!(a.consume_nonce("n2", 1500, 1600).await.unwrap());
    }

    async fn free_calls_never_exceed_the_quota(a: &GatingStore, b: &GatingStore) {
        let key = key();
        // 16 at once, half on each, for a quota of 3: exactly 3 taken.
        let takes = (0..16).map(|i| {
            let (store, key) = (if i % 2 == 0 { a } else { b }.clone(), key.clone());
            tokio::spawn(async move { store.take_free_call(&key, 3).await.unwrap() })
        });
        let mut taken = 0;
        for take in takes {
            taken += usize::from(take.await.unwrap());
        }
        assert_eq!(taken, 3);
        a.give_back(&key).await.unwrap();
        assert!(
            b.take_free_call(&key, 3).await.unwrap(),
            "a failed call is given back"
        );
        assert!(!a.take_free_call(&key, 3).await.unwrap());
        let other = |edit: fn(&mut QuotaKey)| {
            let mut k = key.clone();
            edit(&mut k);
            k
        };
        for fresh in [
            other(|k| k.wallet = [8; 20]),
            other(|k| k.route = "/services/api/x".into()),
            other(|k| k.day += 1),
        ] {
            assert!(b.take_free_call(&fresh, 3).await.unwrap(), "{fresh:?}");
        }
        assert!(!a.take_free_call(&key, 0).await.unwrap(), "no quota");
    }

    #[tokio::test]
    async fn sqlite_keeps_the_rules_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gating.sqlite");
        let store = GatingStore::open(&path).unwrap();
        nonces_are_single_use(&store, &store).await;
        free_calls_never_exceed_the_quota(&store, &store).await;
        drop(store);
        let store = GatingStore::open(&path).unwrap();
        assert!(
            !store.consume_nonce("n1", 2000, 1001).await.unwrap(),
            "after a restart"
        );
        assert!(
            !store.take_free_call(&key(), 3).await.unwrap(),
            "after a restart"
        );
        assert!(
            store
                .backup_to(&dir.path().join("copy.sqlite"))
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_on_one_postgresql_share_nonces_and_quotas() {
        let Some(server) = obol_testkit::postgres::PgServer::start() else {
            return;
        };
        let url = server.database("gating");
        let a = GatingStore::postgres(&url).await.unwrap();
        let b = GatingStore::postgres(&url).await.unwrap();
        nonces_are_single_use(&a, &b).await;
        free_calls_never_exceed_the_quota(&a, &b).await;
        assert!(a.backup_to(Path::new("/nonexistent")).unwrap().is_none());
    }
}
