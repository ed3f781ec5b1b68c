//! The double-serve guard: one payment identity `(chain, asset, payer, nonce)` is served at most
//! once.
//!
//! While a paid request runs, its identity is *in flight*: a concurrent replay of the same
//! header is refused before it reaches the facilitator or the upstream. Once settled, the
//! identity is written to SQLite (WAL) before the paid response is released, so a replay after
//! a restart is refused too. Rows are kept until the authorization expires, after which it can
//! no longer be settled by anyone and the row is pruned.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use obol_facilitator::PaymentIdentity;
use rusqlite::{Connection, OptionalExtension as _, params};

/// Why the guard could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("payment guard store: {0}")]
pub struct GuardError(String);

impl From<rusqlite::Error> for GuardError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// Why a payment may not be served now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The same payment is being served right now.
    InFlight,
    /// The payment was already settled (transaction hash).
    Settled(String),
}

/// In-flight set plus the durable settled set.
#[derive(Debug)]
pub struct ReplayGuard {
    in_flight: Mutex<HashSet<PaymentIdentity>>,
    db: Mutex<Connection>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn key(id: &PaymentIdentity) -> (i64, Vec<u8>, Vec<u8>, Vec<u8>) {
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
    PRIMARY KEY (chain_id, asset, payer, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS settled_payments_expiry ON settled_payments (expires_at);
";

impl ReplayGuard {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, GuardError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| GuardError(format!("{}: {e}", parent.display())))?;
        }
        Self::from_connection(Connection::open(path)?)
    }

    /// A store that lives only in memory (tests, throwaway gateways).
    pub fn in_memory() -> Result<Self, GuardError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(db: Connection) -> Result<Self, GuardError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        db.execute(
            "DELETE FROM settled_payments WHERE expires_at < ?1",
            params![now()],
        )?;
        Ok(Self {
            in_flight: Mutex::new(HashSet::new()),
            db: Mutex::new(db),
        })
    }

    /// Claims `id` for one request. The returned [`Ticket`] releases the claim when dropped,
    /// unless [`Ticket::settled`] recorded the settlement first.
    pub fn claim(self: &Arc<Self>, id: PaymentIdentity) -> Result<Ticket, Refusal> {
        if let Some(tx) = self.settled_tx(&id) {
            return Err(Refusal::Settled(tx));
        }
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !in_flight.insert(id) {
            return Err(Refusal::InFlight);
        }
        Ok(Ticket {
            guard: Arc::clone(self),
            id,
        })
    }

    /// The transaction that settled `id`, if any.
    pub fn settled_tx(&self, id: &PaymentIdentity) -> Option<String> {
        let (chain, asset, payer, nonce) = key(id);
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.query_row(
            "SELECT tx FROM settled_payments WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            params![chain, asset, payer, nonce],
            |row| row.get(0),
        )
        .optional()
        .unwrap_or_else(|e| {
            // A read failure must not let a replay through: report it as settled.
            tracing::error!(error = %e, "payment guard read failed; refusing the payment");
            Some(String::new())
        })
    }

    fn record(&self, id: &PaymentIdentity, tx: &str, expires_at: u64) -> Result<(), GuardError> {
        let (chain, asset, payer, nonce) = key(id);
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        db.execute(
            "INSERT OR REPLACE INTO settled_payments (chain_id, asset, payer, nonce, tx, expires_at, settled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![chain, asset, payer, nonce, tx, i64::try_from(expires_at).unwrap_or(i64::MAX), now()],
        )?;
        Ok(())
    }

    fn release(&self, id: &PaymentIdentity) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// A claim on one payment identity for the lifetime of one request.
#[derive(Debug)]
pub struct Ticket {
    guard: Arc<ReplayGuard>,
    id: PaymentIdentity,
}

impl Ticket {
    /// The claimed identity.
    pub fn id(&self) -> &PaymentIdentity {
        &self.id
    }

    /// Records the settlement durably (before the paid response is released), then releases
    /// the in-flight claim.
    pub fn settled(self, tx: &str, expires_at: u64) -> Result<(), GuardError> {
        self.guard.record(&self.id, tx, expires_at)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.guard.release(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use obol_x402::primitives::{Address, B256};

    fn id(n: u8) -> PaymentIdentity {
        PaymentIdentity {
            chain_id: 84532,
            asset: Address::repeat_byte(1),
            payer: Address::repeat_byte(2),
            nonce: B256::repeat_byte(n),
        }
    }

    #[test]
    fn in_flight_then_released() {
        let guard = Arc::new(ReplayGuard::in_memory().unwrap());
        let ticket = guard.claim(id(1)).unwrap();
        assert_eq!(guard.claim(id(1)).unwrap_err(), Refusal::InFlight);
        assert!(guard.claim(id(2)).is_ok(), "other payments are independent");
        drop(ticket);
        assert!(
            guard.claim(id(1)).is_ok(),
            "a failed request frees the payment"
        );
    }

    #[test]
    fn settled_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("obol-guard-{}", std::process::id()));
        let path = dir.join("guard.sqlite");
        let _ = std::fs::remove_file(&path);
        let far = u64::try_from(now()).unwrap() + 3600;
        {
            let guard = Arc::new(ReplayGuard::open(&path).unwrap());
            guard.claim(id(7)).unwrap().settled("0xabc", far).unwrap();
            assert_eq!(
                guard.claim(id(7)).unwrap_err(),
                Refusal::Settled("0xabc".into())
            );
            // An expired row is pruned on the next open.
            guard.claim(id(8)).unwrap().settled("0xold", 1).unwrap();
        }
        let reopened = Arc::new(ReplayGuard::open(&path).unwrap());
        assert_eq!(
            reopened.claim(id(7)).unwrap_err(),
            Refusal::Settled("0xabc".into())
        );
        assert!(
            reopened.claim(id(8)).is_ok(),
            "expired authorizations are forgotten"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
