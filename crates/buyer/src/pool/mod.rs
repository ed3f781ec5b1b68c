//! The durable pool of pre-signed authorizations.
//!
//! Rows go `available → held → spent`; a hold that ends without success goes back to
//! `available` and, keeping its position, is the next one handed out. `spent` is written in the
//! statement that ends the hold, before the caller answers its own client, so a crash never
//! makes a used authorization available again. A hold open at a crash might have reached the
//! seller: on open it becomes `burned`, never handed out again. A hold whose settlement the
//! seller reported pending ends `spent` however it ends: the transfer may land.
//!
//! Each row carries its terms key (see [`terms_key`]), computed once at [`AuthPool::add`]:
//! [`AuthPool::take`] holds the oldest row whose key equals the seller's requirement, so rows
//! signed for other terms never stand in the way of matching ones.
//!
//! A nonce is stored at most once in the whole database, whatever the pool: once seen, an
//! authorization can never be inserted again, so a spent or dropped one never comes back.
//! [`AuthPool::remove`] retires every row of a pool (a held one too, once its hold ends), which
//! keeps the history but leaves nothing for a new pool of the same name.
//!
//! Writes are group-committed ([`obol_sqlite::GroupCommit`]): every hold and every end of a hold
//! is queued, and whichever caller gets the connection next runs all queued writes in one
//! transaction with one commit (one fsync). Each caller returns only once the commit carrying its write is done, so a spent
//! mark is as durable as before, and calls finishing together share the fsync.
//!
//! Layout: this module is the runtime API ([`AuthPool`], [`Held`], [`PoolError`],
//! [`PoolCounts`]); `schema` owns the table, its version and the migration from version 0;
//! `terms` computes the terms key and CanSign's comparison.

use std::path::Path;
use std::sync::{Arc, MutexGuard};

use obol_sqlite::{GroupCommit, WriteError};
use obol_x402::primitives::U256;
use obol_x402::wire::v2;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::presign::PreSigned;

mod schema;
mod terms;

pub use schema::SCHEMA_VERSION;
pub use terms::terms_key;

use schema::migrate;
use terms::can_sign;

/// Authorizations closer than this to expiry are not handed out; nor are those valid for
/// less than a gateway admits for the asked terms (`maxTimeoutSeconds` less
/// [`obol_x402::signer::ADMISSION_SLACK_SECS`]).
pub const EXPIRY_MARGIN_SECS: u64 = 10;

/// Why the pool could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Nothing left to spend.
    #[error("pre-signed auth pool exhausted: {pool} has no usable authorization left")]
    Exhausted {
        /// The pool.
        pool: String,
    },
    /// The seller now asks for something the pool's authorizations do not pay.
    #[error("the seller's terms changed: {term} is {asked}, the pool signed {signed}; not paying")]
    Mismatch {
        /// `network`, `payTo`, `asset`, `scheme`, `extra` or `amount`.
        term: &'static str,
        /// What the seller asks now.
        asked: String,
        /// What the authorizations pay.
        signed: String,
    },
    /// A stored payload no longer parses (database edited by hand?).
    #[error("stored authorization {id} is unreadable: {source}")]
    Corrupt {
        /// Row id.
        id: i64,
        /// Why.
        source: serde_json::Error,
    },
    /// The database was written by a newer obol-stack.
    #[error(
        "auth pool database has schema version {found}, newer than this obol-stack's \
         {SCHEMA_VERSION}; upgrade obol-stack"
    )]
    Schema {
        /// The database's `user_version`.
        found: i64,
    },
    /// The database failed.
    #[error("auth pool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction carrying this write (with other callers' writes) was not committed:
    /// none of its writes happened.
    #[error("auth pool database: the write was not committed: {0}")]
    Commit(String),
    /// The database file or its directory could not be made private.
    #[error("auth pool database: {0}")]
    Files(#[from] obol_config::ConfigError),
}

/// Counts of one pool's live rows (not those of a removed pool of the same name) by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Ready to spend (including ones close to expiry).
    pub available: u64,
    /// Handed out, not yet confirmed or released.
    pub held: u64,
    /// Paid.
    pub spent: u64,
    /// Held at a crash or sent without a clear refusal; never reused.
    pub burned: u64,
    /// What the spent ones whose seller said so were charged, in atomic units.
    pub charged: U256,
    /// Spent ones whose seller did not say what it charged (their price counts).
    pub spent_unstated: u64,
}

/// One pool's authorizations left to spend and how soon they expire ([`AuthPool::expiring`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolExpiry {
    /// The pool.
    pub pool: String,
    /// Available authorizations.
    pub available: u64,
    /// Of those, the ones expiring before the asked time.
    pub expiring: u64,
    /// The earliest expiry among the available ones (unix seconds).
    pub next_expiry: Option<u64>,
}

/// The pools of one stack, in SQLite.
#[derive(Debug)]
pub struct AuthPool {
    /// The connection; holds and ends of holds are group-committed through it.
    store: GroupCommit<Write, Written>,
}

/// One durable write of a hold's life.
#[derive(Debug)]
enum Write {
    /// Hold the oldest available row of `pool` whose terms key is `terms`, valid until at least
    /// `fresh`.
    Hold {
        pool: String,
        terms: String,
        fresh: i64,
    },
    /// End hold `id` as `state` (a release of a retired row drops it instead), recording what
    /// the seller charged when it said.
    Finish {
        id: i64,
        state: &'static str,
        charged: Option<String>,
    },
    /// Record what the seller charged for spent row `id`, learnt after it was marked spent.
    Charged { id: i64, charged: String },
}

/// What a write returns: the row a hold took (`None` when none matched, and for a finish).
type Written = Option<(i64, String)>;

impl AuthPool {
    /// Opens (creating) the pool database at `path`, migrating an older schema in place and
    /// burning holds left by a crash. The file, its side files and its directory are private
    /// to the owner ([`obol_config::fs::prepare_db_file`]).
    ///
    /// # Errors
    ///
    /// [`PoolError::Schema`] for a database written by a newer version,
    /// [`PoolError::Files`] when the files cannot be made private,
    /// [`PoolError::Sqlite`] when SQLite fails.
    pub fn open(path: &Path) -> Result<Arc<Self>, PoolError> {
        obol_config::fs::prepare_db_file(path)?;
        Self::from_connection(Connection::open(path)?)
    }

    /// A pool database in memory (tests).
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when SQLite fails.
    pub fn in_memory() -> Result<Arc<Self>, PoolError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut db: Connection) -> Result<Arc<Self>, PoolError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a spent mark must survive power loss, not just a process crash.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut db)?;
        let burned = db.execute(
            "UPDATE presigned_auths SET state = 'burned' WHERE state = 'held'",
            [],
        )?;
        if burned > 0 {
            tracing::warn!(
                burned,
                "authorizations held at the last shutdown were burned (they may have been paid)"
            );
        }
        Ok(Arc::new(Self {
            store: GroupCommit::new(db, "auth pool", apply),
        }))
    }

    /// Copies the pool database, online and consistent, into the new file `dest` (SQLite's
    /// backup API; writes wait for the copy) and returns the copy's schema version.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the copy fails.
    pub fn backup_to(&self, dest: &Path) -> Result<i64, PoolError> {
        Ok(obol_sqlite::backup(&self.db(), dest)?)
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.store.db()
    }

    /// Carries out `write` durably, in the next group commit ([`GroupCommit::write`]).
    fn write(&self, write: Write) -> Result<Written, PoolError> {
        self.store.write(write).map_err(|e| match e {
            WriteError::Sqlite(e) => PoolError::Sqlite(e),
            WriteError::Commit(e) => PoolError::Commit(e),
        })
    }

    /// Adds signed authorizations to `pool`, in order, in one transaction. Returns how many
    /// were new: a nonce the database has seen before, in this pool or any other (removed ones
    /// included), is skipped, so a spent or dropped authorization never comes back.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when SQLite fails (nothing is added).
    pub fn add(&self, pool: &str, auths: &[PreSigned]) -> Result<usize, PoolError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO presigned_auths (pool, nonce, valid_before, terms, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for auth in auths {
                let payload = serde_json::to_string(&auth.payload)
                    .map_err(|source| PoolError::Corrupt { id: -1, source })?;
                added += insert.execute(params![
                    pool,
                    auth.nonce.to_string(),
                    i64::try_from(auth.valid_before).unwrap_or(i64::MAX),
                    terms_key(&auth.payload.accepted),
                    payload
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Holds the oldest authorization of `pool` that pays exactly `asked` (same terms key) and
    /// is valid for at least [`EXPIRY_MARGIN_SECS`] more; rows signed for other terms are
    /// passed over.
    ///
    /// # Errors
    ///
    /// - [`PoolError::Mismatch`] when no usable row pays `asked` but some usable row exists:
    ///   the first term on which the oldest one differs (a changed price, asset, payTo,
    ///   network, scheme or `extra`).
    /// - [`PoolError::Exhausted`] when the pool has no usable row at all.
    /// - [`PoolError::Corrupt`] when the chosen row's payload does not parse (it is burned).
    /// - [`PoolError::Sqlite`] when SQLite fails.
    pub fn take(
        self: &Arc<Self>,
        pool: &str,
        asked: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<Held, PoolError> {
        let margin =
            obol_x402::signer::admissible_validity(asked.max_timeout_seconds, EXPIRY_MARGIN_SECS);
        let fresh = i64::try_from(now.saturating_add(margin)).unwrap_or(i64::MAX);
        let row = match terms_key(asked) {
            Some(terms) => self.write(Write::Hold {
                pool: pool.to_owned(),
                terms,
                fresh,
            })?,
            None => None,
        };
        let Some((id, payload)) = row else {
            // Nothing pays these terms: say why, against the oldest usable row.
            let db = self.db();
            let oldest = db
                .query_row(
                    "SELECT id, payload FROM presigned_auths
                     WHERE pool = ?1 AND state = 'available' AND retired = 0
                       AND valid_before >= ?2
                     ORDER BY id LIMIT 1",
                    params![pool, fresh],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()?;
            drop(db);
            let exhausted = || PoolError::Exhausted {
                pool: pool.to_owned(),
            };
            let Some((id, payload)) = oldest else {
                return Err(exhausted());
            };
            let signed: v2::PaymentPayload = serde_json::from_str(&payload)
                .map_err(|source| PoolError::Corrupt { id, source })?;
            // The keys differ, so a term does; should CanSign find none, nothing is payable.
            return Err(can_sign(&signed.accepted, asked)
                .err()
                .unwrap_or_else(exhausted));
        };
        match serde_json::from_str(&payload) {
            Ok(payload) => Ok(Held {
                pool: self.clone(),
                id,
                done: false,
                on_drop: "available",
                payload,
            }),
            Err(source) => {
                // Never handed out, never retried: an unreadable row would fail every call.
                self.finish(id, "burned")?;
                Err(PoolError::Corrupt { id, source })
            }
        }
    }

    /// Counts of `pool`'s live rows by state (a removed pool of the same name is not counted).
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when SQLite fails.
    pub fn counts(&self, pool: &str) -> Result<PoolCounts, PoolError> {
        let db = self.db();
        let mut counts = PoolCounts::default();
        let mut query = db.prepare(
            "SELECT state, COUNT(*) FROM presigned_auths
             WHERE pool = ?1 AND retired = 0 GROUP BY state",
        )?;
        let rows = query.query_map(params![pool], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "available" => counts.available = n,
                "held" => counts.held = n,
                "spent" => counts.spent = n,
                "burned" => counts.burned = n,
                _ => {}
            }
        }
        let mut charged = db.prepare(
            "SELECT charged FROM presigned_auths
             WHERE pool = ?1 AND retired = 0 AND state = 'spent'",
        )?;
        let amounts = charged.query_map(params![pool], |row| row.get::<_, Option<String>>(0))?;
        for amount in amounts {
            match amount?.and_then(|a| a.parse::<U256>().ok()) {
                Some(amount) => counts.charged = counts.charged.saturating_add(amount),
                None => counts.spent_unstated += 1,
            }
        }
        Ok(counts)
    }

    /// Every pool with authorizations left to spend: how many, how many expire before
    /// `before` (unix seconds), and the earliest expiry; sorted by pool.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when SQLite fails.
    pub fn expiring(&self, before: u64) -> Result<Vec<PoolExpiry>, PoolError> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let db = self.db();
        let mut query = db.prepare(
            "SELECT pool, COUNT(*), SUM(valid_before < ?1), MIN(valid_before) FROM presigned_auths
             WHERE state = 'available' AND retired = 0 GROUP BY pool ORDER BY pool",
        )?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        let rows = query.query_map(params![before], |row| {
            Ok(PoolExpiry {
                pool: row.get(0)?,
                available: count(row.get(1)?),
                expiring: count(row.get(2)?),
                next_expiry: row.get::<_, Option<i64>>(3)?.map(count),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Retires every row of `pool`: available ones become `dropped`, held ones become
    /// `dropped` (or `spent`, or `burned`) when their hold ends, and none is ever handed out
    /// again or counted for a new pool of the same name. Spent and burned rows stay as history,
    /// and their nonces can never be added again. Returns how many available rows were dropped.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when SQLite fails (nothing is retired).
    pub fn remove(&self, pool: &str) -> Result<usize, PoolError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let dropped = tx.execute(
            "UPDATE presigned_auths SET state = 'dropped', retired = 1
             WHERE pool = ?1 AND retired = 0 AND state = 'available'",
            params![pool],
        )?;
        tx.execute(
            "UPDATE presigned_auths SET retired = 1 WHERE pool = ?1 AND retired = 0",
            params![pool],
        )?;
        tx.commit()?;
        Ok(dropped)
    }

    /// Ends hold `id` as `state`, durably (group-committed); a release of a retired row drops
    /// it instead.
    fn finish(&self, id: i64, state: &'static str) -> Result<(), PoolError> {
        self.write(Write::Finish {
            id,
            state,
            charged: None,
        })
        .map(drop)
    }
}

/// One write inside a group commit.
fn apply(tx: &rusqlite::Transaction<'_>, write: &Write) -> Result<Written, rusqlite::Error> {
    match write {
        Write::Hold { pool, terms, fresh } => tx
            .prepare_cached(
                "UPDATE presigned_auths SET state = 'held'
                 WHERE id = (SELECT id FROM presigned_auths
                             WHERE pool = ?1 AND state = 'available' AND terms = ?3
                               AND retired = 0 AND valid_before >= ?2
                             ORDER BY id LIMIT 1)
                 RETURNING id, payload",
            )?
            .query_row(params![pool, fresh, terms], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .optional(),
        Write::Finish { id, state, charged } => {
            tx.prepare_cached(
                "UPDATE presigned_auths
                 SET state = CASE WHEN retired = 1 AND ?2 = 'available' THEN 'dropped' ELSE ?2 END,
                     charged = ?3
                 WHERE id = ?1 AND state = 'held'",
            )?
            .execute(params![id, state, charged])?;
            Ok(None)
        }
        Write::Charged { id, charged } => {
            tx.prepare_cached(
                "UPDATE presigned_auths SET charged = ?2
                 WHERE id = ?1 AND state = 'spent' AND charged IS NULL",
            )?
            .execute(params![id, charged])?;
            Ok(None)
        }
    }
}

/// An authorization handed out for one request. [`Held::confirm`] marks it spent and
/// [`Held::release`] returns it to the head of the queue. Dropped otherwise, it is released if it
/// was never [`Held::sent`], burned if it was (the seller may have acted on it), and spent once
/// [`Held::pending`] (the seller said its transfer is under way). A release after its pool was
/// [removed](AuthPool::remove) drops it instead: it is never handed out again.
#[derive(Debug)]
pub struct Held {
    pool: Arc<AuthPool>,
    id: i64,
    done: bool,
    /// The state a drop ends the hold in.
    on_drop: &'static str,
    payload: v2::PaymentPayload,
}

impl Held {
    /// The payment to send.
    pub fn payload(&self) -> &v2::PaymentPayload {
        &self.payload
    }

    /// Marks the authorization as handed to the seller: from now on, losing track of it burns it.
    pub fn sent(&mut self) {
        self.on_drop = "burned";
    }

    /// The seller reported its settlement pending (the transfer may land): from now on, losing
    /// track of it marks it spent.
    pub fn pending(&mut self) {
        self.on_drop = "spent";
    }

    /// The seller accepted it (status < 400), or its settlement is pending: spent, durably,
    /// before returning.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the spent mark could not be written.
    pub fn confirm(self) -> Result<(), PoolError> {
        self.confirm_charged(None)
    }

    /// [`Held::confirm`], recording what the seller said it charged (its receipt's `amount`,
    /// less than the authorization for a metered payment).
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the spent mark could not be written.
    pub fn confirm_charged(mut self, charged: Option<U256>) -> Result<(), PoolError> {
        self.done = true;
        self.pool
            .write(Write::Finish {
                id: self.id,
                state: "spent",
                charged: charged.map(|c| c.to_string()),
            })
            .map(drop)
    }

    /// [`Held::confirm`] for an answer whose charge is only known later (a metered stream's
    /// receipt comes after it): spent now, the charge recorded by [`Spent::charged`].
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the spent mark could not be written.
    pub fn confirm_spent(self) -> Result<Spent, PoolError> {
        let (pool, id) = (self.pool.clone(), self.id);
        self.confirm_charged(None)?;
        Ok(Spent { pool, id })
    }

    /// The seller clearly did not take it: back to the head of the queue.
    pub fn release(mut self) {
        self.on_drop = "available";
    }
}

/// A spent authorization whose charge is not known yet ([`Held::confirm_spent`]).
#[derive(Debug)]
pub struct Spent {
    pool: Arc<AuthPool>,
    id: i64,
}

impl Spent {
    /// Records what the seller charged for it (once: a recorded charge is kept).
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the charge could not be written.
    pub fn charged(self, amount: U256) -> Result<(), PoolError> {
        self.pool
            .write(Write::Charged {
                id: self.id,
                charged: amount.to_string(),
            })
            .map(drop)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let state = self.on_drop;
        if let Err(error) = self.pool.finish(self.id, state) {
            tracing::error!(%error, id = self.id, state, "could not end a held authorization");
        }
    }
}

#[cfg(test)]
mod tests;
