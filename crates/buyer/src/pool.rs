//! The durable pool of pre-signed authorizations.
//!
//! Rows go `available → held → spent`; a hold that ends without success goes back to
//! `available` and, keeping its position, is the next one handed out. `spent` is written in the
//! statement that ends the hold, before the caller answers its own client, so a crash never
//! makes a used authorization available again. A hold open at a crash might have reached the
//! seller: on open it becomes `burned`, never handed out again.
//!
//! Each row carries its terms key (see [`terms_key`]), computed once at [`AuthPool::add`]:
//! [`AuthPool::take`] holds the oldest row whose key equals the seller's requirement, so rows
//! signed for other terms never stand in the way of matching ones.
//!
//! A nonce is stored at most once in the whole database, whatever the pool: once seen, an
//! authorization can never be inserted again, so a spent or dropped one never comes back.
//! [`AuthPool::remove`] retires every row of a pool (a held one too, once its hold ends), which
//! keeps the history but leaves nothing for a new pool of the same name.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use obol_x402::network;
use obol_x402::wire::v2;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde_json::{Map, Value};

use crate::presign::PreSigned;

/// Authorizations closer than this to expiry are not handed out.
pub const EXPIRY_MARGIN_SECS: u64 = 10;

/// The schema version this code writes (`PRAGMA user_version`).
///
/// - 0: `presigned_auths` with `UNIQUE (pool, nonce)`, no terms, rows deleted on removal (or
///   no table at all: a new database).
/// - 1: nonces unique across pools, a `terms` key per row, removed pools `retired`, a
///   `dropped` state for rows retired unspent.
pub const SCHEMA_VERSION: i64 = 1;

/// The current table; `{table}` is its name (the migration builds it beside the old one).
const TABLE: &str = "
CREATE TABLE {table} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE,
    valid_before INTEGER NOT NULL,
    terms TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'available'
        CHECK (state IN ('available', 'held', 'spent', 'burned', 'dropped')),
    retired INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1))
);
";

/// The index `take` walks: one pool's available rows of one terms key, oldest first.
const TAKE_INDEX: &str =
    "CREATE INDEX presigned_auths_take ON presigned_auths (pool, state, terms, id);";

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
}

/// The pools of one stack, in SQLite.
#[derive(Debug)]
pub struct AuthPool {
    db: Mutex<Connection>,
}

impl AuthPool {
    /// Opens (creating) the pool database at `path`, migrating an older schema in place and
    /// burning holds left by a crash.
    ///
    /// # Errors
    ///
    /// [`PoolError::Schema`] for a database written by a newer version,
    /// [`PoolError::Sqlite`] when SQLite fails.
    pub fn open(path: &Path) -> Result<Arc<Self>, PoolError> {
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
        Ok(Arc::new(Self { db: Mutex::new(db) }))
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let fresh = i64::try_from(now.saturating_add(EXPIRY_MARGIN_SECS)).unwrap_or(i64::MAX);
        let db = self.db();
        let row = match terms_key(asked) {
            Some(terms) => db
                .query_row(
                    "UPDATE presigned_auths SET state = 'held'
                     WHERE id = (SELECT id FROM presigned_auths
                                 WHERE pool = ?1 AND state = 'available' AND terms = ?3
                                   AND retired = 0 AND valid_before >= ?2
                                 ORDER BY id LIMIT 1)
                     RETURNING id, payload",
                    params![pool, fresh, terms],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()?,
            None => None,
        };
        let Some((id, payload)) = row else {
            // Nothing pays these terms: say why, against the oldest usable row.
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
        drop(db);
        match serde_json::from_str(&payload) {
            Ok(payload) => Ok(Held {
                pool: self.clone(),
                id,
                done: false,
                sent: false,
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
        Ok(counts)
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

    /// Ends hold `id` as `state`; a release of a retired row drops it instead.
    fn finish(&self, id: i64, state: &str) -> Result<(), PoolError> {
        self.db().execute(
            "UPDATE presigned_auths
             SET state = CASE WHEN retired = 1 AND ?2 = 'available' THEN 'dropped' ELSE ?2 END
             WHERE id = ?1 AND state = 'held'",
            params![id, state],
        )?;
        Ok(())
    }
}

/// Brings `db` to [`SCHEMA_VERSION`] in one immediate transaction (a second process opening
/// the same file waits, then finds the work done).
fn migrate(db: &mut Connection) -> Result<(), PoolError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        SCHEMA_VERSION => return Ok(()),
        0 => {}
        found => return Err(PoolError::Schema { found }),
    }
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master
                        WHERE type = 'table' AND name = 'presigned_auths')",
        [],
        |row| row.get(0),
    )?;
    if exists {
        migrate_from_v0(&tx)?;
    } else {
        tx.execute_batch(&TABLE.replace("{table}", "presigned_auths"))?;
    }
    tx.execute_batch(TAKE_INDEX)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 0 → 1: rebuilds the table with nonces unique across pools and each row's terms key
/// read from its payload. A nonce stored in several pools (a pool deleted while a row was held,
/// then recreated) keeps one row, a used one before an available one, so it is never paid twice.
fn migrate_from_v0(tx: &rusqlite::Transaction<'_>) -> Result<(), PoolError> {
    tx.execute_batch(&TABLE.replace("{table}", "presigned_auths_v1"))?;
    let (mut kept, mut duplicates) = (0_usize, 0_usize);
    {
        let mut read = tx.prepare(
            "SELECT id, pool, nonce, valid_before, payload, state FROM presigned_auths
             ORDER BY state = 'available', id",
        )?;
        let mut write = tx.prepare(
            "INSERT OR IGNORE INTO presigned_auths_v1
                 (id, pool, nonce, valid_before, terms, payload, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let payload: String = row.get(4)?;
            let terms = serde_json::from_str::<v2::PaymentPayload>(&payload)
                .ok()
                .and_then(|p| terms_key(&p.accepted));
            // A row whose terms cannot be read could never be matched: it would count as
            // remaining forever. It is burned, not silently kept.
            let state: String = row.get(5)?;
            let state = if terms.is_none() && state == "available" {
                "burned".to_owned()
            } else {
                state
            };
            let written = write.execute(params![
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                terms,
                payload,
                state,
            ])?;
            if written == 1 {
                kept += 1;
            } else {
                duplicates += 1;
            }
        }
    }
    tx.execute_batch(
        "DROP TABLE presigned_auths;
         ALTER TABLE presigned_auths_v1 RENAME TO presigned_auths;",
    )?;
    tracing::info!(
        kept,
        duplicates,
        "auth pool database migrated to schema version {SCHEMA_VERSION}"
    );
    Ok(())
}

/// The terms an authorization pays, as one comparable string: the EVM chain id (so any naming
/// of the network matches), `payTo` and `asset` lower-cased, the scheme, the exact amount and
/// `extra` with its keys sorted. `None` for a network without a known EVM chain id: such a
/// requirement matches nothing.
///
/// Stored per row; changing this format requires a new [`SCHEMA_VERSION`] that recomputes it.
pub fn terms_key(terms: &v2::PaymentRequirements) -> Option<String> {
    let chain_id = network::resolve(&terms.network).ok()?.chain_id?;
    let key = Value::Array(vec![
        Value::from(chain_id),
        Value::from(terms.pay_to.to_ascii_lowercase()),
        Value::from(terms.asset.to_ascii_lowercase()),
        Value::from(terms.scheme.as_str()),
        Value::from(terms.amount.to_string()),
        canonical_extra(terms.extra.as_ref()),
    ]);
    Some(key.to_string())
}

/// `extra` with every object's keys sorted (recursively); `null` when absent.
fn canonical_extra(extra: Option<&Map<String, Value>>) -> Value {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(sorted(map)),
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    fn sorted(map: &Map<String, Value>) -> Map<String, Value> {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
            .into_iter()
            .map(|(k, v)| (k.clone(), canonical(v)))
            .collect()
    }
    extra.map_or(Value::Null, |map| Value::Object(sorted(map)))
}

/// CanSign (obol-stack.md §5.5): the authorization pays exactly what the seller asks; else the
/// first differing term, in the order network, payTo, asset, scheme, extra, amount. Agrees
/// with [`terms_key`]: two requirements pass exactly when their keys are equal.
fn can_sign(
    signed: &v2::PaymentRequirements,
    asked: &v2::PaymentRequirements,
) -> Result<(), PoolError> {
    let mismatch = |term, asked: &str, signed: &str| PoolError::Mismatch {
        term,
        asked: asked.to_owned(),
        signed: signed.to_owned(),
    };
    let chain = |n: &str| network::resolve(n).ok().and_then(|known| known.chain_id);
    if chain(&asked.network).is_none() || chain(&asked.network) != chain(&signed.network) {
        return Err(mismatch("network", &asked.network, &signed.network));
    }
    if !asked.pay_to.eq_ignore_ascii_case(&signed.pay_to) {
        return Err(mismatch("payTo", &asked.pay_to, &signed.pay_to));
    }
    if !asked.asset.eq_ignore_ascii_case(&signed.asset) {
        return Err(mismatch("asset", &asked.asset, &signed.asset));
    }
    if asked.scheme != signed.scheme {
        return Err(mismatch("scheme", &asked.scheme, &signed.scheme));
    }
    let (asked_extra, signed_extra) = (
        canonical_extra(asked.extra.as_ref()),
        canonical_extra(signed.extra.as_ref()),
    );
    if asked_extra != signed_extra {
        let show = |extra: &Value| {
            if extra.is_null() {
                "none".to_owned()
            } else {
                extra.to_string()
            }
        };
        return Err(mismatch("extra", &show(&asked_extra), &show(&signed_extra)));
    }
    if asked.amount != signed.amount {
        return Err(mismatch(
            "amount",
            &asked.amount.to_string(),
            &signed.amount.to_string(),
        ));
    }
    Ok(())
}

/// An authorization handed out for one request. [`Held::confirm`] marks it spent and
/// [`Held::release`] returns it to the head of the queue. Dropped otherwise, it is released if it
/// was never [`Held::sent`], and burned if it was (the seller may have acted on it). A release
/// after its pool was [removed](AuthPool::remove) drops it instead: it is never handed out again.
#[derive(Debug)]
pub struct Held {
    pool: Arc<AuthPool>,
    id: i64,
    done: bool,
    sent: bool,
    payload: v2::PaymentPayload,
}

impl Held {
    /// The payment to send.
    pub fn payload(&self) -> &v2::PaymentPayload {
        &self.payload
    }

    /// Marks the authorization as handed to the seller: from now on, losing track of it burns it.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// The seller accepted it (status < 400): spent, durably, before returning.
    ///
    /// # Errors
    ///
    /// [`PoolError::Sqlite`] when the spent mark could not be written.
    pub fn confirm(mut self) -> Result<(), PoolError> {
        self.done = true;
        self.pool.finish(self.id, "spent")
    }

    /// The seller clearly did not take it: back to the head of the queue.
    pub fn release(mut self) {
        self.sent = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let state = if self.sent { "burned" } else { "available" };
        if let Err(error) = self.pool.finish(self.id, state) {
            tracing::error!(%error, id = self.id, state, "could not end a held authorization");
        }
    }
}

#[cfg(test)]
mod tests {
    use obol_x402::LocalSigner;
    use serde_json::json;

    use super::*;
    use crate::presign::{PresignOptions, presign};

    const NOW: u64 = 1_800_000_000;

    fn requirement() -> v2::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}
        }))
        .unwrap()
    }

    fn filled(count: usize, ttl_secs: u64) -> (Arc<AuthPool>, Vec<PreSigned>) {
        let pool = AuthPool::in_memory().unwrap();
        let signed = presign(
            &LocalSigner::random(),
            &requirement(),
            None,
            PresignOptions {
                count,
                ttl_secs,
                now: NOW,
            },
            &|_| {},
        )
        .unwrap();
        assert_eq!(pool.add("p", &signed).unwrap(), count);
        assert_eq!(
            pool.add("p", &signed).unwrap(),
            0,
            "same nonces are not added twice"
        );
        (pool, signed)
    }

    /// `count` authorizations signed by a fresh key for `requirement()` edited by `edit`.
    fn signed_for(count: usize, edit: &serde_json::Value) -> Vec<PreSigned> {
        let mut value = serde_json::to_value(requirement()).unwrap();
        for (k, v) in edit.as_object().unwrap() {
            value[k] = v.clone();
        }
        let asked: v2::PaymentRequirements = serde_json::from_value(value).unwrap();
        presign(
            &LocalSigner::random(),
            &asked,
            None,
            PresignOptions {
                count,
                ttl_secs: 3600,
                now: NOW,
            },
            &|_| {},
        )
        .unwrap()
    }

    #[test]
    fn take_confirm_release_and_exhaustion() {
        let (pool, signed) = filled(3, 3600);
        let first = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(first.payload(), &signed[0].payload, "oldest first");
        let second = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(second.payload(), &signed[1].payload, "never the held one");
        drop(first);
        let again = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(again.payload(), &signed[0].payload, "released to the head");
        again.confirm().unwrap();
        second.confirm().unwrap();
        let last = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(last.payload(), &signed[2].payload);
        last.confirm().unwrap();
        let error = pool.take("p", &requirement(), NOW).unwrap_err();
        assert!(
            error.to_string().contains("pre-signed auth pool exhausted"),
            "{error}"
        );
        let counts = pool.counts("p").unwrap();
        assert_eq!((counts.available, counts.spent), (0, 3));
    }

    #[test]
    fn a_sent_authorization_is_burned_unless_released() {
        let (pool, signed) = filled(2, 3600);
        let mut held = pool.take("p", &requirement(), NOW).unwrap();
        held.sent();
        drop(held); // the call was cancelled after the seller got the header
        let mut next = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(
            next.payload(),
            &signed[1].payload,
            "the sent one never comes back"
        );
        next.sent();
        next.release(); // the seller clearly did not take it
        let counts = pool.counts("p").unwrap();
        assert_eq!((counts.available, counts.burned), (1, 1));
    }

    #[test]
    fn changed_terms_are_refused_and_nothing_is_lost() {
        let (pool, _) = filled(1, 3600);
        let mut asked = requirement();
        asked.amount = "2000".parse().unwrap();
        let error = pool.take("p", &asked, NOW).unwrap_err();
        assert!(
            matches!(&error, PoolError::Mismatch { term: "amount", .. }),
            "{error}"
        );
        for (term, edit) in [
            (
                "payTo",
                json!({"payTo": "0x0000000000000000000000000000000000000001"}),
            ),
            (
                "asset",
                json!({"asset": "0x0000000000000000000000000000000000000002"}),
            ),
            ("network", json!({"network": "eip155:8453"})),
            ("scheme", json!({"scheme": "upto"})),
            (
                "extra",
                json!({"extra": {"name": "USDC", "version": "2", "assetTransferMethod": "permit2"}}),
            ),
        ] {
            let mut value = serde_json::to_value(requirement()).unwrap();
            for (k, v) in edit.as_object().unwrap() {
                value[k] = v.clone();
            }
            let asked: v2::PaymentRequirements = serde_json::from_value(value).unwrap();
            match pool.take("p", &asked, NOW).unwrap_err() {
                PoolError::Mismatch { term: got, .. } => assert_eq!(got, term),
                other => panic!("{other}"),
            }
        }
        // Legacy network name and lower-case addresses are the same terms.
        let mut same = requirement();
        same.network = "base-sepolia".into();
        same.pay_to = same.pay_to.to_lowercase();
        pool.take("p", &same, NOW).unwrap().confirm().unwrap();
    }

    #[test]
    fn nearly_expired_authorizations_are_skipped() {
        let (pool, _) = filled(1, 600);
        let late = NOW + 600 - EXPIRY_MARGIN_SECS + 1;
        assert!(matches!(
            pool.take("p", &requirement(), late),
            Err(PoolError::Exhausted { .. })
        ));
        assert!(pool.take("p", &requirement(), late - 1).is_ok());
    }

    #[test]
    fn concurrent_takes_never_share_and_a_crash_burns_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auths.sqlite");
        let pool = AuthPool::open(&path).unwrap();
        let signed = presign(
            &LocalSigner::random(),
            &requirement(),
            None,
            PresignOptions {
                count: 40,
                ttl_secs: 3600,
                now: NOW,
            },
            &|_| {},
        )
        .unwrap();
        pool.add("p", &signed).unwrap();
        let nonces: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let pool = pool.clone();
                    scope.spawn(move || {
                        (0..5)
                            .map(|_| {
                                let held = pool.take("p", &requirement(), NOW).unwrap();
                                let nonce = held.payload().payload["authorization"]["nonce"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned();
                                std::mem::forget(held); // a crash: never confirmed nor released
                                nonce
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<_> = nonces.iter().collect();
        assert_eq!(distinct.len(), 40, "40 takes, 40 different authorizations");
        drop(pool);
        let reopened = AuthPool::open(&path).unwrap();
        assert_eq!(reopened.counts("p").unwrap().burned, 40);
        assert!(matches!(
            reopened.take("p", &requirement(), NOW),
            Err(PoolError::Exhausted { .. })
        ));
    }

    #[test]
    fn rows_for_other_terms_never_block_matching_ones() {
        let pool = AuthPool::in_memory().unwrap();
        let dearer = signed_for(2, &json!({"amount": "2000"}));
        let elsewhere = signed_for(
            1,
            &json!({"payTo": "0x0000000000000000000000000000000000000001"}),
        );
        // Same terms, another spelling: legacy network name, lower-case addresses, extra reordered.
        let matching = signed_for(
            2,
            &json!({
                "network": "base-sepolia",
                "payTo": "0x209693bc6afc0c5328ba36faf03c514ef312287c",
                "extra": {"assetTransferMethod": "eip3009", "version": "2", "name": "USDC"}
            }),
        );
        for batch in [&dearer, &elsewhere, &matching] {
            pool.add("p", batch).unwrap();
        }
        let first = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(
            first.payload(),
            &matching[0].payload,
            "the oldest matching row"
        );
        let second = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(second.payload(), &matching[1].payload);
        first.confirm().unwrap();
        second.confirm().unwrap();

        // Only rows for other terms are left: the oldest says which term differs.
        match pool.take("p", &requirement(), NOW).unwrap_err() {
            PoolError::Mismatch {
                term,
                asked,
                signed,
            } => assert_eq!(
                (term, asked.as_str(), signed.as_str()),
                ("amount", "1000", "2000")
            ),
            other => panic!("{other}"),
        }
        let error = pool.take("p", &requirement(), NOW).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the seller's terms changed: amount is 1000, the pool signed 2000; not paying"
        );
        // The dearer rows still pay a seller asking that price.
        let mut dearer_ask = requirement();
        dearer_ask.amount = "2000".parse().unwrap();
        let held = pool.take("p", &dearer_ask, NOW).unwrap();
        assert_eq!(held.payload(), &dearer[0].payload);
        drop(held);
        let counts = pool.counts("p").unwrap();
        assert_eq!((counts.available, counts.spent), (3, 2));

        // An empty pool is exhausted, whatever is asked.
        let empty = AuthPool::in_memory().unwrap();
        assert!(matches!(
            empty.take("p", &requirement(), NOW),
            Err(PoolError::Exhausted { .. })
        ));
        // Rows of another pool are not this pool's.
        assert!(matches!(
            pool.take("q", &requirement(), NOW),
            Err(PoolError::Exhausted { .. })
        ));
    }

    #[test]
    fn a_removed_pool_gives_nothing_back() {
        let (pool, signed) = filled(3, 3600);
        pool.take("p", &requirement(), NOW)
            .unwrap()
            .confirm()
            .unwrap();
        assert_eq!(pool.remove("p").unwrap(), 2, "two unspent rows dropped");
        assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());
        assert!(matches!(
            pool.take("p", &requirement(), NOW),
            Err(PoolError::Exhausted { .. })
        ));
        // The same authorizations, spent or dropped, in the recreated pool or another one.
        assert_eq!(pool.add("p", &signed).unwrap(), 0);
        assert_eq!(pool.add("other", &signed).unwrap(), 0);
        assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());
        assert_eq!(pool.counts("other").unwrap(), PoolCounts::default());
        // A nonce seen in one pool is never inserted into another.
        let fresh = signed_for(1, &json!({}));
        assert_eq!(pool.add("a", &fresh).unwrap(), 1);
        assert_eq!(pool.add("b", &fresh).unwrap(), 0);
        assert_eq!(pool.remove("nothing").unwrap(), 0);
    }

    #[test]
    fn a_hold_ending_after_its_pool_was_removed_stays_unusable() {
        let (pool, _) = filled(2, 3600);
        let released = pool.take("p", &requirement(), NOW).unwrap();
        let confirmed = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(pool.remove("p").unwrap(), 0, "both rows are held");
        assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());

        // The pool is recreated with new authorizations before the holds end.
        let renewed = signed_for(1, &json!({}));
        assert_eq!(pool.add("p", &renewed).unwrap(), 1);
        drop(released); // never sent: would go back to the queue, but its pool is gone
        confirmed.confirm().unwrap();
        let counts = pool.counts("p").unwrap();
        assert_eq!(
            (counts.available, counts.held, counts.spent, counts.burned),
            (1, 0, 0, 0),
            "only the recreated pool's own row"
        );
        let held = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(held.payload(), &renewed[0].payload);
        held.confirm().unwrap();
        assert!(matches!(
            pool.take("p", &requirement(), NOW),
            Err(PoolError::Exhausted { .. })
        ));
        assert_eq!(pool.counts("p").unwrap().spent, 1);
    }

    /// The table as every database written before schema version 1 has it.
    const SCHEMA_V0: &str = "
        CREATE TABLE IF NOT EXISTS presigned_auths (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            pool TEXT NOT NULL,
            nonce TEXT NOT NULL,
            valid_before INTEGER NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'available'
                CHECK (state IN ('available', 'held', 'spent', 'burned')),
            UNIQUE (pool, nonce)
        );
        CREATE INDEX IF NOT EXISTS presigned_auths_take ON presigned_auths (pool, state, id);
    ";

    #[test]
    fn a_version_0_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auths.sqlite");
        let dearer = signed_for(1, &json!({"amount": "2000"}));
        let matching = signed_for(4, &json!({}));
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(SCHEMA_V0).unwrap();
            let mut insert = db
                .prepare(
                    "INSERT INTO presigned_auths (pool, nonce, valid_before, payload, state)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            let rows = [
                ("p", &dearer[0], "available"),
                ("p", &matching[0], "spent"),
                ("p", &matching[1], "held"),
                ("p", &matching[2], "available"),
                ("p", &matching[3], "available"),
                // matching[0] again, in a pool recreated under another name: already spent.
                ("q", &matching[0], "available"),
            ];
            for (pool, auth, state) in rows {
                insert
                    .execute(params![
                        pool,
                        auth.nonce.to_string(),
                        i64::try_from(auth.valid_before).unwrap(),
                        serde_json::to_string(&auth.payload).unwrap(),
                        state
                    ])
                    .unwrap();
            }
            // A row whose payload cannot be read: it could never be matched.
            insert
                .execute(params![
                    "p",
                    "0xunreadable",
                    4_102_444_800_i64,
                    "{not json",
                    "available"
                ])
                .unwrap();
        }
        let pool = AuthPool::open(&path).unwrap();
        let version: i64 = pool
            .db()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let counts = pool.counts("p").unwrap();
        assert_eq!(
            (counts.available, counts.held, counts.spent, counts.burned),
            (3, 0, 1, 2),
            "the held row and the unreadable one burned at open"
        );
        assert_eq!(
            pool.counts("q").unwrap(),
            PoolCounts::default(),
            "a spent nonce never comes back"
        );
        // Terms were computed from the stored payloads: the older, dearer row is passed over.
        let held = pool.take("p", &requirement(), NOW).unwrap();
        assert_eq!(held.payload(), &matching[2].payload);
        held.confirm().unwrap();
        assert_eq!(pool.add("q", &matching).unwrap(), 0, "nonces now unique");
        drop(pool);

        // Opening again is a no-op; a newer schema is refused.
        let pool = AuthPool::open(&path).unwrap();
        assert_eq!(pool.counts("p").unwrap().available, 2);
        pool.db()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(pool);
        assert!(matches!(
            AuthPool::open(&path),
            Err(PoolError::Schema { found }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[test]
    fn terms_keys_ignore_spelling_and_see_every_term() {
        let key = terms_key(&requirement()).unwrap();
        let mut same = requirement();
        same.network = "BASE-SEPOLIA".into();
        same.asset = same.asset.to_uppercase().replace("0X", "0x");
        same.max_timeout_seconds = 60;
        assert_eq!(terms_key(&same).unwrap(), key);
        let mut unknown = requirement();
        unknown.network = "eip155:999999999".into();
        assert_eq!(terms_key(&unknown), None);
        let mut no_extra = requirement();
        no_extra.extra = None;
        assert_ne!(terms_key(&no_extra).unwrap(), key);
        assert!(can_sign(&requirement(), &no_extra).is_err());
    }
}
