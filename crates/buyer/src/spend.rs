//! The durable daily spend of an unattended buyer (`obol mcp`, a purchase's autoRefill): what it
//! has signed, per scope (`mcp`, `refill:<namespace>/<name>`), UTC day, chain and token, checked
//! against a cap in the same `IMMEDIATE` transaction that counts it, so two processes sharing
//! the file cannot both pass a cap the sum of their payments exceeds.
//!
//! A payment counts when it is signed, whatever the seller then does: a signed authorization
//! can be settled until it expires, so until then it is money the agent may have spent. Nothing
//! is ever given back (a cap is a bound on exposure, not an account of settlements).

use std::path::Path;
use std::sync::Mutex;

use obol_sqlite::{MigrateError, Step};
use obol_x402::primitives::{Address, U256};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

/// One day in seconds.
const DAY: u64 = 86_400;

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

const STEPS: &[Step] = &[Step::Sql(
    "CREATE TABLE spend (
        scope TEXT NOT NULL,
        day INTEGER NOT NULL,
        chain_id INTEGER NOT NULL,
        asset TEXT NOT NULL,
        atomic TEXT NOT NULL,
        payments INTEGER NOT NULL,
        PRIMARY KEY (scope, day, chain_id, asset)
    );",
)];

/// Why a payment was not counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpendError {
    /// It would take the day's spend past the cap; nothing was counted.
    #[error(
        "over the daily cap: {spent} already spent today (UTC) + {amount} would exceed {cap} (atomic units of {asset})"
    )]
    OverCap {
        /// Spent today before this payment.
        spent: U256,
        /// This payment.
        amount: U256,
        /// The cap.
        cap: U256,
        /// The token.
        asset: Address,
    },
    /// The ledger file cannot be used.
    #[error("spend ledger: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for SpendError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.to_string())
    }
}

/// Today's spend of one token on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySpend {
    /// Atomic units signed today.
    pub atomic: U256,
    /// Payments signed today.
    pub payments: u64,
}

/// The ledger file.
#[derive(Debug)]
pub struct SpendLedger {
    db: Mutex<Connection>,
}

/// The UTC day (days since the epoch) of `unix` seconds.
pub fn day_of(unix: u64) -> u64 {
    unix / DAY
}

impl SpendLedger {
    /// Opens (creating) the ledger at `path`.
    ///
    /// # Errors
    ///
    /// [`SpendError::Store`] when the file cannot be opened or is of a newer schema.
    pub fn open(path: &Path) -> Result<Self, SpendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SpendError::Store(e.to_string()))?;
        }
        let mut db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        obol_sqlite::migrate(&mut db, "spend ledger", STEPS).map_err(|e| match e {
            MigrateError::Newer { found, known, .. } => SpendError::Store(format!(
                "schema version {found} is newer than this obol's ({known})"
            )),
            other => SpendError::Store(other.to_string()),
        })?;
        Ok(Self { db: Mutex::new(db) })
    }

    /// Counts a payment of `amount` of `asset` on `chain_id` on `day` in `scope` if the scope's
    /// total of the day stays within `cap`; returns the day's spend with it.
    ///
    /// # Errors
    ///
    /// [`SpendError::OverCap`] (nothing counted), or [`SpendError::Store`].
    pub fn spend(
        &self,
        scope: &str,
        day: u64,
        chain_id: u64,
        asset: Address,
        amount: U256,
        cap: U256,
    ) -> Result<DaySpend, SpendError> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| SpendError::Store("poisoned".into()))?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let key = Key {
            scope,
            day: to_i64(day)?,
            chain_id: to_i64(chain_id)?,
            asset: asset.to_checksum(None),
        };
        let before = read(&tx, &key)?;
        let total = before.atomic.checked_add(amount).unwrap_or(U256::MAX);
        if total > cap {
            return Err(SpendError::OverCap {
                spent: before.atomic,
                amount,
                cap,
                asset,
            });
        }
        let after = DaySpend {
            atomic: total,
            payments: before.payments + 1,
        };
        tx.execute(
            "INSERT INTO spend (scope, day, chain_id, asset, atomic, payments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (scope, day, chain_id, asset) DO UPDATE SET atomic = ?5, payments = ?6",
            params![
                key.scope,
                key.day,
                key.chain_id,
                key.asset,
                after.atomic.to_string(),
                to_i64(after.payments)?
            ],
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// The spend of `asset` on `chain_id` on `day` in `scope`.
    ///
    /// # Errors
    ///
    /// [`SpendError::Store`].
    pub fn day(
        &self,
        scope: &str,
        day: u64,
        chain_id: u64,
        asset: Address,
    ) -> Result<DaySpend, SpendError> {
        let db = self
            .db
            .lock()
            .map_err(|_| SpendError::Store("poisoned".into()))?;
        read(
            &db,
            &Key {
                scope,
                day: to_i64(day)?,
                chain_id: to_i64(chain_id)?,
                asset: asset.to_checksum(None),
            },
        )
    }
}

fn to_i64(n: u64) -> Result<i64, SpendError> {
    i64::try_from(n).map_err(|_| SpendError::Store(format!("{n} does not fit the ledger")))
}

/// One row's key.
struct Key<'a> {
    scope: &'a str,
    day: i64,
    chain_id: i64,
    asset: String,
}

fn read(db: &Connection, key: &Key<'_>) -> Result<DaySpend, SpendError> {
    let row: Option<(String, i64)> = db
        .query_row(
            "SELECT atomic, payments FROM spend
             WHERE scope = ?1 AND day = ?2 AND chain_id = ?3 AND asset = ?4",
            params![key.scope, key.day, key.chain_id, key.asset],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => DaySpend {
            atomic: U256::ZERO,
            payments: 0,
        },
        Some((atomic, payments)) => DaySpend {
            atomic: atomic
                .parse()
                .map_err(|_| SpendError::Store(format!("unreadable amount {atomic:?}")))?,
            payments: u64::try_from(payments).unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const USDC: Address = Address::repeat_byte(0x11);

    #[test]
    fn the_cap_holds_across_reopening_and_days() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.sqlite");
        let cap = U256::from(2500u64);
        let ledger = SpendLedger::open(&path).unwrap();
        let today = day_of(1_800_000_000);
        let first = ledger
            .spend("mcp", today, 84532, USDC, U256::from(1000u64), cap)
            .unwrap();
        assert_eq!(first.atomic, U256::from(1000u64));
        ledger
            .spend("mcp", today, 84532, USDC, U256::from(1000u64), cap)
            .unwrap();
        drop(ledger);

        let ledger = SpendLedger::open(&path).unwrap();
        let refused = ledger
            .spend("mcp", today, 84532, USDC, U256::from(1000u64), cap)
            .unwrap_err();
        assert!(
            matches!(refused, SpendError::OverCap { spent, .. } if spent == U256::from(2000u64)),
            "{refused}"
        );
        assert_eq!(
            ledger.day("mcp", today, 84532, USDC).unwrap(),
            DaySpend {
                atomic: U256::from(2000u64),
                payments: 2
            },
            "a refusal counts nothing"
        );
        ledger
            .spend("mcp", today, 84532, USDC, U256::from(500u64), cap)
            .unwrap();
        ledger
            .spend("mcp", today + 1, 84532, USDC, U256::from(2500u64), cap)
            .unwrap();
        ledger
            .spend("mcp", today, 1, USDC, U256::from(2500u64), cap)
            .unwrap();
        ledger
            .spend(
                "refill:buy/m1",
                today,
                84532,
                USDC,
                U256::from(2500u64),
                cap,
            )
            .unwrap();
    }

    #[test]
    fn two_ledgers_on_one_file_never_pass_the_cap_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.sqlite");
        let cap = U256::from(10u64);
        let ledgers: Vec<SpendLedger> = (0..2).map(|_| SpendLedger::open(&path).unwrap()).collect();
        let counted = std::thread::scope(|s| {
            let handles: Vec<_> = ledgers
                .iter()
                .map(|ledger| {
                    s.spawn(move || {
                        (0..10)
                            .filter(|_| {
                                ledger
                                    .spend("mcp", 7, 1, USDC, U256::from(1u64), cap)
                                    .is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(counted, 10);
        assert_eq!(ledgers[0].day("mcp", 7, 1, USDC).unwrap().atomic, cap);
    }
}
