//! Online copies: SQLite's backup API run on a store's own connection, so the copy is one
//! consistent snapshot even while the store is written (the connection's writes wait for it).

use std::path::Path;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

/// Copies the database open on `source` into a new file `dest` (which must not exist; it is
/// created 0600) and returns the copy's schema version (`PRAGMA user_version`).
///
/// The whole database is copied in one step: `source` is borrowed for the copy's duration, so
/// a caller holding the store's lock keeps its writers out until the copy is done (a few
/// milliseconds per megabyte).
///
/// # Errors
///
/// SQLite's, when the file cannot be created or the copy fails (a partial `dest` may be left:
/// the caller removes its staging directory).
pub fn backup(source: &Connection, dest: &Path) -> Result<i64, rusqlite::Error> {
    if dest.exists() {
        return Err(rusqlite::Error::InvalidPath(dest.to_path_buf()));
    }
    let mut copy = Connection::open(dest)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600));
    }
    {
        let backup = Backup::new(source, &mut copy)?;
        // Every page in one step (-1): one snapshot. Busy or locked (another process writing
        // the file): try again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed busy for 10 s".to_owned()),
                    ));
                }
            }
        }
    }
    // A copy of a WAL database is a WAL database: fold it into one self-contained file.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    let version = copy.pragma_query_value(None, "user_version", |row| row.get(0))?;
    copy.close().map_err(|(_, e)| e)?;
    Ok(version)
}

/// The schema version of the database file at `path`, read without migrating or locking it
/// for long (opened read-only).
///
/// # Errors
///
/// SQLite's, when the file is not a database.
pub fn schema_version(path: &Path) -> Result<i64, rusqlite::Error> {
    let db = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_copy_taken_while_writing_is_a_consistent_snapshot_with_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sqlite");
        let db = Connection::open(&path).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch("CREATE TABLE t (v INTEGER); PRAGMA user_version = 3;")
            .unwrap();
        for i in 0..100 {
            db.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let dest = dir.path().join("copy.sqlite");
        assert_eq!(backup(&db, &dest).unwrap(), 3);
        db.execute("INSERT INTO t VALUES (100)", []).unwrap();
        let copy = Connection::open(&dest).unwrap();
        let rows: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 100, "the snapshot, not what came after");
        assert_eq!(schema_version(&dest).unwrap(), 3);
        assert!(
            !dir.path().join("copy.sqlite-wal").exists(),
            "one self-contained file"
        );
        assert!(backup(&db, &dest).is_err(), "never overwrites");
    }
}
