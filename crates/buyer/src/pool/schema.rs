//! The pool database's schema: the `presigned_auths` table and its index, the schema version
//! (`PRAGMA user_version`) and the in-place migration from version 0.
//!
//! [`migrate`] runs at every open: a no-op on a current database, it refuses a version it does
//! not know (a newer obol-stack's).

use obol_sqlite::{MigrateError, Step};
use obol_x402::wire::v2;
use rusqlite::{Connection, params};

use super::PoolError;
use super::terms::terms_key;

/// The schema version this code writes (`PRAGMA user_version`).
///
/// - 0: `presigned_auths` with `UNIQUE (pool, nonce)`, no terms, rows deleted on removal (or
///   no table at all: a new database).
/// - 1: nonces unique across pools, a `terms` key per row, removed pools `retired`, a
///   `dropped` state for rows retired unspent.
/// - 2: `charged`, what a spent row's seller said it charged (atomic units, decimal; metered
///   payments charge less than the ceiling signed), `NULL` when it did not say.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// The steps to [`SCHEMA_VERSION`], in order.
const STEPS: &[Step] = &[
    Step::Code(to_v1),
    Step::Sql("ALTER TABLE presigned_auths ADD COLUMN charged TEXT;"),
];

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

/// Brings `db` to [`SCHEMA_VERSION`] ([`obol_sqlite::migrate`]: one immediate transaction, so a
/// second process opening the same file waits, then finds the work done).
pub(super) fn migrate(db: &mut Connection) -> Result<(), PoolError> {
    obol_sqlite::migrate(db, "auth pool", STEPS)
        .map(drop)
        .map_err(|e| match e {
            MigrateError::Newer { found, .. } => PoolError::Schema { found },
            MigrateError::Sqlite { source, .. } => PoolError::from(source),
        })
}

/// Version 0 → 1: the table (created, or rebuilt from version 0's) and its index.
fn to_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master
                        WHERE type = 'table' AND name = 'presigned_auths')",
        [],
        |row| row.get(0),
    )?;
    if exists {
        migrate_from_v0(tx)?;
    } else {
        tx.execute_batch(&TABLE.replace("{table}", "presigned_auths"))?;
    }
    tx.execute_batch(TAKE_INDEX)
}

/// Version 0 → 1: rebuilds the table with nonces unique across pools and each row's terms key
/// read from its payload. A nonce stored in several pools (a pool deleted while a row was held,
/// then recreated) keeps one row, a used one before an available one, so it is never paid twice.
fn migrate_from_v0(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
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
