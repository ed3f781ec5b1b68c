//! The durable pool of pre-signed authorizations.
//!
//! Rows go `available → held → spent`; a hold that ends without success goes back to
//! `available` and, keeping its position, is the next one handed out. `spent` is written in the
//! statement that ends the hold, before the caller answers its own client, so a crash never
//! makes a used authorization available again. A hold open at a crash might have reached the
//! seller: on open it becomes `burned`, never handed out again.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use obol_x402::network;
use obol_x402::wire::v2;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::presign::PreSigned;

/// Authorizations closer than this to expiry are not handed out.
pub const EXPIRY_MARGIN_SECS: u64 = 10;

const SCHEMA: &str = "
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
    /// The database failed.
    #[error("auth pool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Counts of one pool by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Ready to spend (including ones close to expiry).
    pub available: u64,
    /// Handed out, not yet confirmed or released.
    pub held: u64,
    /// Paid.
    pub spent: u64,
    /// Held at a crash; never reused.
    pub burned: u64,
}

/// The pools of one stack, in SQLite.
#[derive(Debug)]
pub struct AuthPool {
    db: Mutex<Connection>,
}

impl AuthPool {
    /// Opens (creating) the pool database at `path`, burning holds left by a crash.
    pub fn open(path: &Path) -> Result<Arc<Self>, PoolError> {
        Self::from_connection(Connection::open(path)?)
    }

    /// A pool database in memory (tests).
    pub fn in_memory() -> Result<Arc<Self>, PoolError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(db: Connection) -> Result<Arc<Self>, PoolError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a spent mark must survive power loss, not just a process crash.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
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
    /// were new (a nonce already in the pool is skipped).
    pub fn add(&self, pool: &str, auths: &[PreSigned]) -> Result<usize, PoolError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO presigned_auths (pool, nonce, valid_before, payload)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for auth in auths {
                let payload = serde_json::to_string(&auth.payload)
                    .map_err(|source| PoolError::Corrupt { id: -1, source })?;
                added += insert.execute(params![
                    pool,
                    auth.nonce.to_string(),
                    i64::try_from(auth.valid_before).unwrap_or(i64::MAX),
                    payload
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Holds the oldest authorization of `pool` that pays `asked` and is valid for at least
    /// [`EXPIRY_MARGIN_SECS`] more. The seller's terms are checked against what was signed
    /// first: a changed price, asset, payTo or network is refused with the differing term.
    pub fn take(
        self: &Arc<Self>,
        pool: &str,
        asked: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<Held, PoolError> {
        let db = self.db();
        let row = db
            .query_row(
                "UPDATE presigned_auths SET state = 'held'
                 WHERE id = (SELECT id FROM presigned_auths
                             WHERE pool = ?1 AND state = 'available' AND valid_before >= ?2
                             ORDER BY id LIMIT 1)
                 RETURNING id, payload",
                params![
                    pool,
                    i64::try_from(now.saturating_add(EXPIRY_MARGIN_SECS)).unwrap_or(i64::MAX)
                ],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()?;
        drop(db);
        let Some((id, payload)) = row else {
            return Err(PoolError::Exhausted {
                pool: pool.to_owned(),
            });
        };
        let held = Held {
            pool: self.clone(),
            id,
            done: false,
            sent: false,
            payload: serde_json::from_str(&payload)
                .map_err(|source| PoolError::Corrupt { id, source })?,
        };
        can_sign(&held.payload.accepted, asked)?;
        Ok(held)
    }

    /// Counts of `pool` by state.
    pub fn counts(&self, pool: &str) -> Result<PoolCounts, PoolError> {
        let db = self.db();
        let mut counts = PoolCounts::default();
        let mut query = db.prepare(
            "SELECT state, COUNT(*) FROM presigned_auths WHERE pool = ?1 GROUP BY state",
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
                _ => counts.burned = n,
            }
        }
        Ok(counts)
    }

    /// Removes every authorization of `pool` that is not held. Returns how many.
    pub fn remove(&self, pool: &str) -> Result<usize, PoolError> {
        Ok(self.db().execute(
            "DELETE FROM presigned_auths WHERE pool = ?1 AND state != 'held'",
            params![pool],
        )?)
    }

    fn finish(&self, id: i64, state: &str) -> Result<(), PoolError> {
        self.db().execute(
            "UPDATE presigned_auths SET state = ?2 WHERE id = ?1 AND state = 'held'",
            params![id, state],
        )?;
        Ok(())
    }
}

/// CanSign (obol-stack.md §5.5): the authorization pays exactly what the seller asks.
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
    if asked.extra != signed.extra {
        let show = |extra: &Option<serde_json::Map<String, serde_json::Value>>| {
            extra.as_ref().map_or_else(
                || "none".to_owned(),
                |e| serde_json::Value::Object(e.clone()).to_string(),
            )
        };
        return Err(mismatch("extra", &show(&asked.extra), &show(&signed.extra)));
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
/// was never [`Held::sent`], and burned if it was (the seller may have acted on it).
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
}
