//! Schema versions: one way for every store to read and bump `PRAGMA user_version`, inside one
//! `IMMEDIATE` transaction so that two processes opening the same old file never both migrate
//! it (the second waits on the write lock, then finds the version current).

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// One step from version `n` to `n + 1` (step `i` of the list brings `i` to `i + 1`).
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// SQL run as a batch.
    Sql(&'static str),
    /// Code, for steps that read and rewrite rows.
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Why a store could not be brought to its version.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer program.
    #[error("{what}: schema version {found} is newer than this program's ({known}); upgrade obol")]
    Newer {
        /// What the file holds, e.g. `payment guard`.
        what: &'static str,
        /// Its version.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// SQLite failed (nothing was committed).
    #[error("{what}: {source}")]
    Sqlite {
        /// What the file holds.
        what: &'static str,
        /// The failure.
        source: rusqlite::Error,
    },
}

/// Brings `db` to version `steps.len()`, running the steps it lacks in one `IMMEDIATE`
/// transaction, and returns the versions before and after. A file at a higher version is
/// refused, untouched.
pub fn migrate(
    db: &mut Connection,
    what: &'static str,
    steps: &[Step],
) -> Result<(i64, i64), MigrateError> {
    let sqlite = |source| MigrateError::Sqlite { what, source };
    let known = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if found > known {
        return Err(MigrateError::Newer { what, found, known });
    }
    for step in steps.iter().skip(usize::try_from(found).unwrap_or(0)) {
        match step {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Code(run) => run(&tx),
        }
        .map_err(sqlite)?;
    }
    if found < known {
        tx.pragma_update(None, "user_version", known)
            .map_err(sqlite)?;
        tracing::info!(what, from = found, to = known, "schema migrated");
    }
    tx.commit().map_err(sqlite)?;
    Ok((found, known))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const STEPS: [Step; 2] = [
        Step::Sql("CREATE TABLE t (a INTEGER);"),
        Step::Code(|tx| tx.execute_batch("ALTER TABLE t ADD COLUMN b TEXT;")),
    ];

    #[test]
    fn steps_run_once_in_order_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut db = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut db, "test", &STEPS[..1]).unwrap(), (0, 1));
        assert_eq!(migrate(&mut db, "test", &STEPS).unwrap(), (1, 2));
        assert_eq!(migrate(&mut db, "test", &STEPS).unwrap(), (2, 2));
        db.execute("INSERT INTO t (a, b) VALUES (1, 'x')", [])
            .unwrap();

        let error = migrate(&mut db, "test", &STEPS[..1]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "test: schema version 2 is newer than this program's (1); upgrade obol"
        );
    }

    #[test]
    fn a_failed_step_leaves_the_file_as_it_was() {
        let mut db = Connection::open_in_memory().unwrap();
        let broken = [STEPS[0], Step::Sql("NOT SQL;")];
        assert!(migrate(&mut db, "test", &broken).is_err());
        let version: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 0);
        let tables: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the first step was rolled back too");
    }

    #[test]
    fn two_processes_opening_an_old_file_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let runs = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut db = Connection::open(&path).unwrap();
                    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                    let (from, _) = migrate(&mut db, "test", &STEPS).unwrap();
                    if from == 0 {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(runs.into_inner(), 1);
    }
}
