//! The embedded guard store: claims in this process's memory, the record in an SQLite file
//! (WAL) locked by this one process (a second process on the same file could serve a payment
//! the first is serving, so it is refused).
//!
//! Writes are group-committed ([`obol_sqlite::GroupCommit`]): paid requests finishing together
//! share one transaction, and each returns only once the commit carrying its row is done.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use obol_config::time::unix_now;
use obol_facilitator::PaymentIdentity;
use obol_sqlite::GroupCommit;
use obol_x402::primitives::{B256, U256};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::{
    Account, Claimed, Granted, GuardError, Pending, Record, Recorded, Refusal, State, Store,
};

#[derive(Debug, Default)]
struct Live {
    in_flight: HashSet<PaymentIdentity>,
    outstanding: HashMap<Account, U256>,
}

/// In-flight claims and per-payer exposure in memory, the record in SQLite.
#[derive(Debug)]
pub(super) struct SqliteStore {
    live: Mutex<Live>,
    /// The durable record; its writes are group-committed.
    store: GroupCommit<Write, ()>,
}

/// A row's primary key: chain id, asset, payer, nonce.
type Key = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

/// One durable write (group-committed).
#[derive(Debug)]
enum Write {
    /// Record a payment's state.
    Put {
        key: Key,
        state: &'static str,
        tx: String,
        /// What was charged, when the receipt said (a metered payment's actual amount).
        amount: Option<String>,
        expires_at: i64,
        digest: B256,
    },
    /// Forget a payment.
    Forget(Key),
}

/// Carries out one write inside a group commit.
fn apply(db: &Transaction<'_>, write: &Write) -> Result<(), rusqlite::Error> {
    match write {
        Write::Put {
            key: (chain, asset, payer, nonce),
            state,
            tx,
            amount,
            expires_at,
            digest,
        } => db
            .prepare_cached(
                "INSERT INTO settled_payments (chain_id, asset, payer, nonce, tx, expires_at, settled_at, state, digest, amount)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET tx = excluded.tx,
                   expires_at = excluded.expires_at, settled_at = excluded.settled_at,
                   state = excluded.state, digest = excluded.digest, amount = excluded.amount",
            )?
            .execute(params![chain, asset, payer, nonce, tx, expires_at, now(), state, digest.as_slice(), amount])?,
        Write::Forget((chain, asset, payer, nonce)) => db
            .prepare_cached(
                "DELETE FROM settled_payments WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            )?
            .execute(params![chain, asset, payer, nonce])?,
    };
    Ok(())
}

fn now() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

fn key(id: &PaymentIdentity) -> Key {
    (
        i64::try_from(id.chain_id).unwrap_or(i64::MAX),
        id.asset.to_vec(),
        id.payer.to_vec(),
        id.nonce.to_vec(),
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settled_payments (
    chain_id   INTEGER NOT NULL,
    asset      BLOB    NOT NULL,
    payer      BLOB    NOT NULL,
    nonce      BLOB    NOT NULL,
    tx         TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'settled',
    digest     BLOB,
    PRIMARY KEY (chain_id, asset, payer, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS settled_payments_expiry ON settled_payments (expires_at);
";

struct Row {
    state: String,
    tx: String,
    digest: Option<Vec<u8>>,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`: 0600 in a 0700 directory, whatever the umask.
    pub(super) fn open(path: &Path) -> Result<Self, GuardError> {
        obol_config::fs::prepare_db_file(path)
            .map_err(|e| GuardError(format!("{}: {e}", path.display())))?;
        Self::from_connection(Connection::open(path)?)
    }

    /// A store that lives only in memory (tests, throwaway gateways).
    pub(super) fn in_memory() -> Result<Self, GuardError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut db: Connection) -> Result<Self, GuardError> {
        // One gateway process owns its guard: the in-flight set lives in its memory, so a
        // second process on the same file could serve a payment the first is serving. The
        // exclusive lock (taken by the prune below, held until close) refuses that second
        // process, and spares every transaction its file locking and shared-memory index.
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // Durable across a crash of the process (kill -9): a committed row is in the WAL the
        // OS holds. A power loss may forget the last rows (docs/design/gateway.md).
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(2))?;
        obol_sqlite::migrate(&mut db, "payment guard", STEPS)
            .map_err(|e| GuardError(e.to_string()))?;
        db.execute(
            "DELETE FROM settled_payments WHERE expires_at < ?1",
            params![now()],
        )?;
        Ok(Self {
            live: Mutex::new(Live::default()),
            store: GroupCommit::new(db, "payment guard", apply),
        })
    }

    fn row(&self, id: &PaymentIdentity) -> Option<Row> {
        let (chain, asset, payer, nonce) = key(id);
        let db = self.store.db();
        db.prepare_cached(
            "SELECT state, tx, digest FROM settled_payments WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
        )
        .and_then(|mut select| {
            select.query_row(params![chain, asset, payer, nonce], |row| {
                Ok(Row { state: row.get(0)?, tx: row.get(1)?, digest: row.get(2)? })
            })
        })
        .optional()
        .unwrap_or_else(|e| {
            // A read failure must not let a replay through: report it as settled.
            tracing::error!(error = %e, "payment guard read failed; refusing the payment");
            Some(Row { state: State::Settled.as_str().to_owned(), tx: String::new(), digest: None })
        })
    }

    fn write(&self, write: Write) -> Result<(), GuardError> {
        self.store
            .write(write)
            .map_err(|e| GuardError(e.to_string()))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(
        &self,
        id: &PaymentIdentity,
        digest: B256,
        amount: U256,
        _lease_until: u64,
    ) -> Result<Granted, Refusal> {
        let unsettled = match self.row(id) {
            None => None,
            Some(row) if row.state == State::Settled.as_str() => {
                return Err(Refusal::Settled(row.tx));
            }
            Some(row) if row.digest.as_deref() != Some(digest.as_slice()) => {
                return Err(Refusal::OtherTerms);
            }
            Some(row) => Some(row.tx),
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if !live.in_flight.insert(*id) {
            return Err(Refusal::InFlight);
        }
        let reserved = live.outstanding.entry(Account::from(id)).or_default();
        let reserved_before = *reserved;
        *reserved = reserved.saturating_add(amount);
        Ok(Granted {
            reserved_before,
            unsettled,
            // One process holds the file: its claims need no token.
            token: 0,
        })
    }

    fn release(&self, claimed: Claimed<'_>, _ended: bool) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.in_flight.remove(claimed.id);
        let account = Account::from(claimed.id);
        if let Some(reserved) = live.outstanding.get_mut(&account) {
            *reserved = reserved.saturating_sub(claimed.amount);
            if reserved.is_zero() {
                live.outstanding.remove(&account);
            }
        }
    }

    async fn record(&self, claimed: Claimed<'_>, record: Record<'_>) -> Result<(), GuardError> {
        self.write(Write::Put {
            key: key(claimed.id),
            state: record.state.as_str(),
            tx: record.tx.to_owned(),
            amount: record.amount.map(|a| a.to_string()),
            expires_at: i64::try_from(record.expires_at).unwrap_or(i64::MAX),
            digest: claimed.digest,
        })
    }

    async fn forget(&self, claimed: Claimed<'_>) -> Result<(), GuardError> {
        self.write(Write::Forget(key(claimed.id)))
    }

    async fn receipt(&self, nonce: B256) -> Option<Recorded> {
        let db = self.store.db();
        let mut select = db
            .prepare_cached(
                "SELECT chain_id, payer, state, tx, amount FROM settled_payments WHERE nonce = ?1 LIMIT 2",
            )
            .ok()?;
        let rows: Vec<Recorded> = select
            .query_map(params![nonce.to_vec()], |row| {
                let payer: Vec<u8> = row.get(1)?;
                let state: String = row.get(2)?;
                Ok(Recorded::from_columns(
                    row.get(0)?,
                    &payer,
                    &state,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .ok()?
            .filter_map(Result::ok)
            .collect();
        match rows.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    async fn add_usage(
        &self,
        namespace: &str,
        name: &str,
        charge: &crate::metering::Charge,
    ) -> Result<(), GuardError> {
        let db = self.store.db();
        let before = read_usage(&db, namespace, name)?.unwrap_or_default();
        let after = before.plus(charge);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        db.execute(
            "INSERT INTO metered_usage
                 (namespace, name, requests, prompt_tokens, completion_tokens, charged)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (namespace, name) DO UPDATE SET requests = ?3, prompt_tokens = ?4,
                 completion_tokens = ?5, charged = ?6",
            params![
                namespace,
                name,
                count(after.requests),
                count(after.prompt_tokens),
                count(after.completion_tokens),
                after.charged.to_string()
            ],
        )?;
        Ok(())
    }

    async fn usage(&self, namespace: &str, name: &str) -> Option<crate::metering::MeteredUsage> {
        read_usage(&self.store.db(), namespace, name).ok().flatten()
    }

    fn backup_to(&self, dest: &Path) -> Result<Option<i64>, GuardError> {
        Ok(Some(obol_sqlite::backup(&self.store.db(), dest)?))
    }

    async fn outstanding(&self, account: &Account) -> U256 {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.outstanding.get(account).copied().unwrap_or_default()
    }

    async fn pending(&self, now: u64) -> Result<Pending, GuardError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let db = self.store.db();
        let (unsettled, expired, next): (i64, i64, Option<i64>) = db.query_row(
            "SELECT COALESCE(SUM(expires_at >= ?1), 0), COALESCE(SUM(expires_at < ?1), 0),
                    MIN(CASE WHEN expires_at >= ?1 THEN expires_at END)
             FROM settled_payments WHERE state = 'unsettled'",
            params![now],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(Pending {
            unsettled: count(unsettled),
            expired: count(expired),
            next_expiry: next.map(count),
        })
    }
}

/// The schema version this code writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// The guard's schema versions ([`obol_sqlite::migrate`]): 1 the table, 2 an index by nonce
/// for receipt lookups, 3 what each offer's metered calls used and were charged, 4 what each
/// payment was charged when its receipt said (metered payments, for receipt lookups).
const STEPS: &[obol_sqlite::Step] = &[
    obol_sqlite::Step::Code(to_v1),
    obol_sqlite::Step::Sql(
        "CREATE INDEX IF NOT EXISTS settled_payments_nonce ON settled_payments (nonce);",
    ),
    obol_sqlite::Step::Sql(
        "CREATE TABLE metered_usage (
             namespace TEXT NOT NULL,
             name TEXT NOT NULL,
             requests INTEGER NOT NULL,
             prompt_tokens INTEGER NOT NULL,
             completion_tokens INTEGER NOT NULL,
             charged TEXT NOT NULL,
             PRIMARY KEY (namespace, name)
         ) WITHOUT ROWID;",
    ),
    obol_sqlite::Step::Sql("ALTER TABLE settled_payments ADD COLUMN amount TEXT;"),
];

fn read_usage(
    db: &Connection,
    namespace: &str,
    name: &str,
) -> rusqlite::Result<Option<crate::metering::MeteredUsage>> {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    db.query_row(
        "SELECT requests, prompt_tokens, completion_tokens, charged FROM metered_usage
         WHERE namespace = ?1 AND name = ?2",
        params![namespace, name],
        |row| {
            Ok(crate::metering::MeteredUsage {
                requests: count(row.get(0)?),
                prompt_tokens: count(row.get(1)?),
                completion_tokens: count(row.get(2)?),
                charged: row.get::<_, String>(3)?.parse().unwrap_or_default(),
            })
        },
    )
    .optional()
}

/// Version 1: the table and its index, created, or completed on a file from before the
/// unsettled state (version 0 with no `state`/`digest` columns).
fn to_v1(db: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut columns = Vec::new();
    let mut statement = db.prepare("PRAGMA table_info(settled_payments)")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        columns.push(row.get::<_, String>(1)?);
    }
    if !columns.is_empty() && !columns.iter().any(|c| c == "state") {
        db.execute_batch(
            "ALTER TABLE settled_payments ADD COLUMN state TEXT NOT NULL DEFAULT 'settled';
             ALTER TABLE settled_payments ADD COLUMN digest BLOB;",
        )?;
    }
    db.execute_batch(SCHEMA)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::guard::ReplayGuard;
    use crate::guard::tests::{claim, id};

    #[tokio::test]
    async fn metered_usage_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        {
            let guard = ReplayGuard::open(&path).unwrap();
            crate::guard::tests::metered_usage_adds_up(&guard).await;
        }
        let guard = ReplayGuard::open(&path).unwrap();
        assert_eq!(
            guard.usage("default", "llm").await,
            Some(crate::metering::MeteredUsage {
                requests: 2,
                prompt_tokens: 112,
                completion_tokens: 234,
                charged: U256::from(158),
            })
        );
    }

    #[test]
    fn the_guard_has_a_schema_version_and_refuses_a_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        drop(ReplayGuard::open(&path).unwrap());
        let db = Connection::open(&path).unwrap();
        let version: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 4);
        db.pragma_update(None, "user_version", 5).unwrap();
        drop(db);
        let refused = ReplayGuard::open(&path).unwrap_err().to_string();
        assert!(
            refused.contains("payment guard: schema version 5 is newer than this program's (4)"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_payment_being_settled_when_the_process_dies_comes_back_unsettled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        let far = unix_now() + 3600;
        {
            let guard = Arc::new(ReplayGuard::open(&path).unwrap());
            let taken = claim(&guard, 1).await.unwrap();
            taken.ticket.settling(far).await.unwrap();
            // A refused settlement with nothing delivered frees the payment again.
            let refused = claim(&guard, 2).await.unwrap();
            refused.ticket.settling(far).await.unwrap();
            refused.ticket.released().await.unwrap();
            // The process dies mid-settlement: nothing after `settling` is written (a drop
            // only frees what lives in memory).
            drop(taken);
        }
        let restarted = Arc::new(ReplayGuard::open(&path).unwrap());
        let again = claim(&restarted, 1).await.unwrap();
        assert_eq!(again.unsettled.as_deref(), Some(""));
        assert!(claim(&restarted, 2).await.unwrap().unsettled.is_none());
    }

    #[tokio::test]
    async fn settled_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        let far = unix_now() + 3600;
        {
            let guard = Arc::new(ReplayGuard::open(&path).unwrap());
            let taken = claim(&guard, 7).await.unwrap();
            taken.ticket.settled("0xabc", None, far).await.unwrap();
            // An expired row is pruned on the next open.
            let old = claim(&guard, 8).await.unwrap();
            old.ticket.settled("0xold", None, 1).await.unwrap();
        }
        let reopened = Arc::new(ReplayGuard::open(&path).unwrap());
        assert_eq!(
            claim(&reopened, 7).await.unwrap_err(),
            Refusal::Settled("0xabc".into())
        );
        assert!(
            claim(&reopened, 8).await.is_ok(),
            "expired authorizations are forgotten"
        );
    }

    #[tokio::test]
    async fn a_second_guard_on_the_same_store_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        let first = Arc::new(ReplayGuard::open(&path).unwrap());
        let error = ReplayGuard::open(&path).unwrap_err();
        assert!(error.to_string().contains("locked"), "{error}");
        // The first goes on, and once closed the store opens again with what it recorded.
        let far = unix_now() + 3600;
        let taken = claim(&first, 3).await.unwrap();
        taken.ticket.settled("0x3", None, far).await.unwrap();
        drop(first);
        let reopened = Arc::new(ReplayGuard::open(&path).unwrap());
        assert_eq!(
            claim(&reopened, 3).await.unwrap_err(),
            Refusal::Settled("0x3".into())
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_store_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("guard.sqlite");
        let guard = Arc::new(ReplayGuard::open(&path).unwrap());
        let taken = claim(&guard, 1).await.unwrap();
        taken
            .ticket
            .settled("0x1", None, unix_now() + 60)
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let wal = path.with_extension("sqlite-wal");
        assert_eq!(mode(&wal), 0o600, "SQLite's side files follow the database");
    }

    #[tokio::test]
    async fn a_store_from_before_the_unsettled_state_opens_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.sqlite");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE settled_payments (chain_id INTEGER NOT NULL, asset BLOB NOT NULL,
                 payer BLOB NOT NULL, nonce BLOB NOT NULL, tx TEXT NOT NULL,
                 expires_at INTEGER NOT NULL, settled_at INTEGER NOT NULL,
                 PRIMARY KEY (chain_id, asset, payer, nonce)) WITHOUT ROWID;",
            )
            .unwrap();
            let (chain, asset, payer, nonce) = key(&id(1));
            db.execute(
                "INSERT INTO settled_payments VALUES (?1, ?2, ?3, ?4, '0xold', ?5, 0)",
                params![chain, asset, payer, nonce, now() + 3600],
            )
            .unwrap();
        }
        let guard = Arc::new(ReplayGuard::open(&path).unwrap());
        assert_eq!(
            claim(&guard, 1).await.unwrap_err(),
            Refusal::Settled("0xold".into())
        );
    }
}
